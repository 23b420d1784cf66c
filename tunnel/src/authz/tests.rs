use super::*;
use crate::config::OneDocumentFile;
use http::Method;
use std::path::Path;

#[test]
fn verb_mapping_follows_kubernetes_request_info() {
    use Verb::*;
    let cases: &[(Method, &str, Option<&str>, Verb)] = &[
        // Collections vs objects.
        (Method::GET, "/api/v1/namespaces/a/pods", None, List),
        (Method::GET, "/api/v1/namespaces/a/pods/p", None, Get),
        (Method::HEAD, "/api/v1/namespaces/a/pods/p", None, Get),
        (Method::GET, "/api/v1/pods", None, List),
        (Method::GET, "/api/v1/nodes/n1", None, Get),
        (Method::GET, "/api/v1/namespaces", None, List),
        (Method::GET, "/api/v1/namespaces/a", None, Get),
        (
            Method::GET,
            "/apis/apps/v1/namespaces/a/deployments",
            None,
            List,
        ),
        (
            Method::GET,
            "/apis/apps/v1/namespaces/a/deployments/d",
            None,
            Get,
        ),
        // Watch.
        (
            Method::GET,
            "/api/v1/namespaces/a/pods",
            Some("watch=1"),
            Watch,
        ),
        (
            Method::GET,
            "/api/v1/namespaces/a/pods",
            Some("watch=true"),
            Watch,
        ),
        (
            Method::GET,
            "/api/v1/pods",
            Some("labelSelector=x&watch=True"),
            Watch,
        ),
        (Method::GET, "/api/v1/pods", Some("watch=0"), List),
        (Method::GET, "/api/v1/pods", Some("watch=false"), List),
        (Method::GET, "/api/v1/pods", Some("watchx=1"), List),
        (Method::GET, "/api/v1/watch/namespaces/a/pods", None, Watch),
        (Method::GET, "/apis/apps/v1/watch/deployments", None, Watch),
        // Writes.
        (Method::POST, "/api/v1/namespaces/a/pods", None, Create),
        (Method::PUT, "/api/v1/namespaces/a/pods/p", None, Update),
        (Method::PATCH, "/api/v1/namespaces/a/pods/p", None, Patch),
        (
            Method::PUT,
            "/api/v1/namespaces/a/pods/p/status",
            None,
            Update,
        ),
        (Method::DELETE, "/api/v1/namespaces/a/pods/p", None, Delete),
        (
            Method::DELETE,
            "/api/v1/namespaces/a/pods",
            None,
            DeleteCollection,
        ),
        (
            Method::DELETE,
            "/apis/apps/v1/namespaces/a/deployments",
            None,
            DeleteCollection,
        ),
        (Method::DELETE, "/api/v1/namespaces/a", None, Delete),
        // Streaming subresources are create whatever the method.
        (
            Method::GET,
            "/api/v1/namespaces/a/pods/p/exec",
            Some("command=sh"),
            Create,
        ),
        (
            Method::POST,
            "/api/v1/namespaces/a/pods/p/exec",
            Some("command=sh"),
            Create,
        ),
        (
            Method::GET,
            "/api/v1/namespaces/a/pods/p/attach",
            None,
            Create,
        ),
        (
            Method::POST,
            "/api/v1/namespaces/a/pods/p/attach",
            None,
            Create,
        ),
        (
            Method::GET,
            "/api/v1/namespaces/a/pods/p/portforward",
            None,
            Create,
        ),
        (
            Method::POST,
            "/api/v1/namespaces/a/pods/p/portforward",
            None,
            Create,
        ),
        (
            Method::GET,
            "/api/v1/namespaces/a/services/s/proxy/x/y",
            None,
            Create,
        ),
        (Method::GET, "/api/v1/nodes/n/proxy/metrics", None, Create),
        (
            Method::GET,
            "/api/v1/proxy/namespaces/a/pods/p",
            None,
            Create,
        ),
        (Method::GET, "/api/v1/namespaces/a/pods/p/log", None, Get),
        // Non-resource requests.
        (Method::GET, "/api", None, Get),
        (Method::GET, "/apis", None, Get),
        (Method::GET, "/api/v1", None, Get),
        (Method::GET, "/apis/apps/v1", None, Get),
        (Method::GET, "/version", None, Get),
        (Method::GET, "/openapi/v3", None, Get),
        (
            Method::POST,
            "/apis/authentication.k8s.io/v1/selfsubjectreviews",
            None,
            Create,
        ),
        (Method::OPTIONS, "/api/v1/pods", None, Unknown),
    ];
    for (method, path, query, want) in cases {
        assert_eq!(
            verb_of(method, path, *query),
            *want,
            "{method} {path}?{query:?}"
        );
    }
}

/// group, version, namespace, resource, name, subresource
type Fields<'a> = (&'a str, &'a str, &'a str, &'a str, &'a str, &'a str);

#[test]
fn request_info_fields() {
    let cases: &[(&str, Fields)] = &[
        (
            "/api/v1/namespaces/a/pods/p/exec",
            ("", "v1", "a", "pods", "p", "exec"),
        ),
        (
            "/apis/apps/v1/namespaces/b/deployments/d/scale",
            ("apps", "v1", "b", "deployments", "d", "scale"),
        ),
        ("/api/v1/nodes/n", ("", "v1", "", "nodes", "n", "")),
        (
            "/api/v1/namespaces/a",
            ("", "v1", "a", "namespaces", "a", ""),
        ),
        (
            "/api/v1/namespaces/a/status",
            ("", "v1", "a", "namespaces", "a", "status"),
        ),
        (
            "/api/v1/watch/namespaces/a/pods",
            ("", "v1", "a", "pods", "", ""),
        ),
    ];
    for (path, (group, version, ns, resource, name, sub)) in cases {
        let i = RequestInfo::parse(&Method::GET, path, None);
        assert!(i.is_resource_request, "{path}");
        assert_eq!(
            (
                i.api_group.as_str(),
                i.api_version.as_str(),
                i.namespace.as_str(),
                i.resource.as_str(),
                i.name.as_str(),
                i.subresource.as_str()
            ),
            (*group, *version, *ns, *resource, *name, *sub),
            "{path}"
        );
    }
    assert!(!RequestInfo::parse(&Method::GET, "/healthz", None).is_resource_request);
}

#[test]
fn request_paths_with_tricks_are_refused() {
    let bad = [
        "/clusters/a/../b/api/v1/pods",
        "/clusters/a/./api",
        "/clusters/a/%2e%2e/b/api",
        "/clusters/a/%2E%2E/b/api",
        "/clusters/a%2Fb/api",
        "/clusters/a%2fb/api",
        "/clusters/a/api/v1/pods%5c",
        "/clusters/a/api%00",
        "/clusters/a//api/v1",
        "/clusters/a/api\\v1",
        "/clusters/a/api\r\nX: y",
        "clusters/a/api",
        "/clusters/a/..",
    ];
    for p in bad {
        assert!(check_request_path(p).is_err(), "{p:?}");
    }
    let good = [
        "/clusters/a/api/v1/namespaces/x/pods",
        "/clusters/a/api/",
        "/clusters/a/apis/apps/v1/deployments",
        "/clusters/a/api/v1/namespaces/x/pods/p%3Ax",
        "/clusters/a/api/v1/namespaces/x/pods/a.b..c",
        "/",
    ];
    for p in good {
        assert_eq!(check_request_path(p), Ok(()), "{p:?}");
    }
}

#[test]
fn globs() {
    let cases = [
        ("idc-*", "idc-bj", true),
        ("idc-*", "idc-", true),
        ("idc-*", "aws-idc-bj", false),
        ("*", "anything", true),
        ("*-sg", "aws-sg", true),
        ("*-sg", "aws-sg1", false),
        ("aws-?g", "aws-sg", true),
        ("aws-?g", "aws-ssg", false),
        ("idc-bj", "idc-bj", true),
        ("idc-bj", "idc-bj2", false),
        ("a*b*c", "aXXbYYc", true),
        ("a*b*c", "aXXbYY", false),
    ];
    for (glob, text, want) in cases {
        assert_eq!(glob_match(glob, text), want, "{glob} vs {text}");
    }
    for bad in ["", "IDC-*", "a/b", "a b", "[ab]", "a..b"] {
        assert!(check_glob(bad).is_err(), "{bad:?}");
    }
}

const POLICY: &str = r#"
apiVersion: causeway.dev/v1alpha1
kind: AccessPolicy
metadata:
  name: default
spec:
  rules:
  - subjects: {groups: [dev]}
    clusters: ["idc-*"]
  - subjects: {users: [auditor]}
    clusters: ["*"]
    readOnly: true
  - subjects: {users: [carol], groups: [ops]}
    clusters: [aws-sg]
"#;

fn id(user: &str, groups: &[&str]) -> Identity {
    Identity::user(user, groups.iter().map(|g| g.to_string()).collect()).unwrap()
}

#[test]
fn policy_decisions() {
    let p = AccessPolicy::parse(POLICY, Path::new("p.yaml")).unwrap();
    let c = |s: &str| ClusterId::new(s).unwrap();
    let cases: &[(Identity, &str, Verb, bool)] = &[
        (id("alice", &["dev"]), "idc-bj", Verb::Create, true),
        (id("alice", &["dev"]), "idc-sh", Verb::Delete, true),
        (id("alice", &["dev"]), "aws-sg", Verb::Get, false),
        (id("alice", &[]), "idc-bj", Verb::Get, false),
        (id("auditor", &[]), "aws-sg", Verb::List, true),
        (id("auditor", &[]), "idc-bj", Verb::Watch, true),
        (id("auditor", &[]), "idc-bj", Verb::Get, true),
        (id("auditor", &[]), "idc-bj", Verb::Create, false),
        (id("auditor", &[]), "idc-bj", Verb::Patch, false),
        (id("auditor", &[]), "idc-bj", Verb::DeleteCollection, false),
        (id("auditor", &[]), "idc-bj", Verb::Unknown, false),
        // The read-only rule does not limit a rule that is not read-only.
        (id("auditor", &["dev"]), "idc-bj", Verb::Create, true),
        (id("carol", &[]), "aws-sg", Verb::Create, true),
        (id("dave", &["ops"]), "aws-sg", Verb::Create, true),
        (id("dave", &["ops"]), "aws-sg2", Verb::Get, false),
        // Subject match is exact: no prefix or case games.
        (id("Alice", &["Dev"]), "idc-bj", Verb::Get, false),
        (id("carol2", &[]), "aws-sg", Verb::Get, false),
    ];
    for (who, cluster, verb, allowed) in cases {
        let got = p.authorize(who, &c(cluster), *verb);
        assert_eq!(got.is_ok(), *allowed, "{who:?} {verb} {cluster}: {got:?}");
    }
    let err = p
        .authorize(&id("auditor", &[]), &c("idc-bj"), Verb::Create)
        .unwrap_err();
    assert!(matches!(err, AuthzError::ReadOnly { .. }), "{err}");
    let err = p
        .authorize(&id("x", &[]), &c("idc-bj"), Verb::Get)
        .unwrap_err();
    assert!(matches!(err, AuthzError::NoRule { .. }), "{err}");
    // Empty policy: default deny.
    assert!(
        AccessPolicy::default()
            .authorize(&id("alice", &["dev"]), &c("idc-bj"), Verb::Get)
            .is_err()
    );
}

#[test]
fn bad_policies_name_file_and_field() {
    let cases = [
        (
            "apiVersion: v1\nkind: AccessPolicy\nmetadata: {name: p}\nspec: {rules: []}\n",
            "apiVersion",
        ),
        (
            "apiVersion: causeway.dev/v1alpha1\nkind: Policy\nmetadata: {name: p}\nspec: {rules: []}\n",
            "kind",
        ),
        (
            "apiVersion: causeway.dev/v1alpha1\nkind: AccessPolicy\nmetadata: {name: p}\nspec:\n  rules:\n  - subjects: {users: [a]}\n    clusters: [x]\n    readonly: true\n",
            "readonly",
        ),
        (
            "apiVersion: causeway.dev/v1alpha1\nkind: AccessPolicy\nmetadata: {name: p}\nspec:\n  rules:\n  - subjects: {}\n    clusters: [x]\n",
            "spec.rules[0].subjects",
        ),
        (
            "apiVersion: causeway.dev/v1alpha1\nkind: AccessPolicy\nmetadata: {name: p}\nspec:\n  rules:\n  - subjects: {users: [a]}\n    clusters: [ok, 'Bad/']\n",
            "spec.rules[0].clusters[1]",
        ),
        (
            "apiVersion: causeway.dev/v1alpha1\nkind: AccessPolicy\nmetadata: {name: p}\nspec:\n  rules:\n  - subjects: {users: [a]}\n    clusters: []\n",
            "spec.rules[0].clusters",
        ),
        (
            "apiVersion: causeway.dev/v1alpha1\nkind: AccessPolicy\nmetadata: {name: p}\nspec: {rules: []}\nextra: 1\n",
            "extra",
        ),
        (
            "apiVersion: causeway.dev/v1alpha1\nkind: AccessPolicy\nmetadata: {name: p}\nspec: {rules: []}\n---\napiVersion: causeway.dev/v1alpha1\nkind: AccessPolicy\nmetadata: {name: q}\nspec: {rules: []}\n",
            "a second AccessPolicy",
        ),
    ];
    for (text, field) in cases {
        let err = AccessPolicy::parse(text, Path::new("/etc/p.yaml"))
            .unwrap_err()
            .to_string();
        assert!(
            err.starts_with("/etc/p.yaml:") && err.contains(field),
            "{field}: {err}"
        );
    }
}

/// A good policy with one line changed, as `AccessPolicy::parse` reports it.
fn policy_error(from: &str, to: &str) -> String {
    const GOOD: &str = "\
apiVersion: causeway.dev/v1alpha1
kind: AccessPolicy
metadata: {name: p}
spec:
  rules:
  - subjects: {groups: [dev]}
    clusters: [\"idc-*\"]
  - subjects: {users: [alice, bob]}
    clusters: [\"idc-*\", aws-sg]
";
    AccessPolicy::parse(GOOD, Path::new("/etc/p.yaml")).unwrap();
    assert!(GOOD.contains(from), "{from}");
    AccessPolicy::parse(&GOOD.replace(from, to), Path::new("/etc/p.yaml"))
        .unwrap_err()
        .to_string()
}

#[test]
fn policy_errors_point_at_the_line_and_column_of_the_mistake() {
    // An unknown field: at its key.
    let err = policy_error(
        "    clusters: [\"idc-*\", aws",
        "    clusterz: [\"idc-*\", aws",
    );
    assert!(
        err.starts_with("/etc/p.yaml:9:5: AccessPolicy/p: spec.rules[1].clusterz: unknown field"),
        "{err}"
    );
    // A value of the wrong type inside a list: at that item.
    let err = policy_error("[alice, bob]", "[alice, [bob]]");
    assert!(
        err.starts_with(
            "/etc/p.yaml:8:31: AccessPolicy/p: spec.rules[1].subjects.users[1]: invalid type"
        ),
        "{err}"
    );
    // A value the policy refuses (semantic): at that item.
    let err = policy_error("\"idc-*\", aws-sg", "\"idc-*\", AWS_SG");
    assert_eq!(
        err,
        "/etc/p.yaml:9:25: AccessPolicy/p: spec.rules[1].clusters[1]: \
         cluster glob \"AWS_SG\" contains 'A'; use a-z, 0-9, '-', '*' and '?'"
    );
}

#[test]
fn example_policy_loads() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/tunnel/access-policy.yaml");
    let p = AccessPolicy::load(&path).unwrap();
    assert!(!p.rules().is_empty());
}

#[test]
fn hostile_paths_never_panic() {
    // Random paths over an alphabet of separators, dots, escapes and multi-byte text.
    let alphabet = [
        "/",
        "/",
        ".",
        "..",
        "%",
        "%2",
        "%2e",
        "%2F",
        "a",
        "api",
        "apis",
        "v1",
        "namespaces",
        "pods",
        "exec",
        "watch",
        "proxy",
        "é",
        "漢",
        "\\",
        "?",
        "#",
        " ",
        "\r",
        "\n",
    ];
    let methods = [
        Method::GET,
        Method::POST,
        Method::DELETE,
        Method::PUT,
        Method::OPTIONS,
    ];
    for i in 0..20_000u32 {
        let n = (rand::random::<u8>() % 12) as usize;
        let path: String = (0..n)
            .map(|_| alphabet[rand::random::<u32>() as usize % alphabet.len()])
            .collect();
        let method = &methods[i as usize % methods.len()];
        let _ = check_request_path(&path);
        let info = RequestInfo::parse(method, &path, Some(&path));
        assert!(info.verb.is_some(), "{path:?}");
    }
}
