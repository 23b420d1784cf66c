use std::fs;

use base64::Engine;

use super::*;
use crate::authz::AccessPolicy;
use crate::config::OneDocumentFile;
use crate::identity::Identity;
use crate::pki::Ca;
use crate::state::StateDir;
use causeway_model::ClusterId;
use std::path::Path;
use std::time::Duration;

fn setup() -> (tempfile::TempDir, StateDir, Ca) {
    let dir = tempfile::tempdir().unwrap();
    let state = StateDir::open(dir.path()).unwrap();
    let ca = Ca::load_or_create(dir.path()).unwrap();
    (dir, state, ca)
}

fn new_user(name: &str, groups: &[&str], clusters: &[&str]) -> NewUser {
    NewUser {
        name: name.into(),
        groups: groups.iter().map(|g| g.to_string()).collect(),
        clusters: clusters.iter().map(|c| c.to_string()).collect(),
        read_only: false,
        ttl: Duration::from_secs(3600),
    }
}

fn ids(v: &[&str]) -> Vec<ClusterId> {
    v.iter().map(|c| ClusterId::new(*c).unwrap()).collect()
}

#[test]
fn add_writes_a_kubeconfig_with_one_context_per_allowed_cluster() {
    let (_d, state, ca) = setup();
    let known = ids(&["idc-bj", "idc-sh", "aws-sg"]);
    let added = add_user(
        &state,
        &ca,
        &new_user("alice", &["dev"], &["idc-*", "gcp-tokyo"]),
        &known,
    )
    .unwrap();
    assert_eq!(added.contexts, ids(&["gcp-tokyo", "idc-bj", "idc-sh"]));
    assert!(!added.updated);
    let yaml = kubeconfig_yaml(
        "https://127.0.0.1:6443/",
        &ca.cert_pem(),
        "alice",
        &added.cert,
        &added.contexts,
    )
    .unwrap();
    let v: serde_yaml_ng::Value = serde_yaml_ng::from_str(&yaml).unwrap();
    assert_eq!(v["kind"], "Config");
    assert_eq!(v["current-context"], "gcp-tokyo");
    let servers: Vec<_> = v["clusters"]
        .as_sequence()
        .unwrap()
        .iter()
        .map(|c| c["cluster"]["server"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(
        servers,
        [
            "https://127.0.0.1:6443/clusters/gcp-tokyo",
            "https://127.0.0.1:6443/clusters/idc-bj",
            "https://127.0.0.1:6443/clusters/idc-sh"
        ]
    );
    let b64 = base64::engine::general_purpose::STANDARD;
    let ca_data = b64
        .decode(
            v["clusters"][0]["cluster"]["certificate-authority-data"]
                .as_str()
                .unwrap(),
        )
        .unwrap();
    assert_eq!(String::from_utf8(ca_data).unwrap(), ca.cert_pem());
    let cert = b64
        .decode(
            v["users"][0]["user"]["client-certificate-data"]
                .as_str()
                .unwrap(),
        )
        .unwrap();
    let cu = crate::pki::user_from_cert(
        &crate::pki::parse_cert_pem(&String::from_utf8(cert).unwrap()).unwrap()[0],
    )
    .unwrap();
    assert_eq!(cu.user, "alice");
    assert_eq!(v["contexts"][1]["context"]["user"], "alice");
    assert_eq!(v["contexts"][1]["context"]["cluster"], "idc-bj");

    let store = UserStore::load(state.path(), None).unwrap();
    assert_eq!(store.owner_of(&added.cert.serial), Some("alice"));
    assert_eq!(store.user("alice").unwrap().groups, ["dev"]);
    assert_eq!(store.recorded_policy().rules().len(), 1);

    // Adding again updates the record and keeps both certificates.
    let again = add_user(&state, &ca, &new_user("alice", &["ops"], &["*"]), &known).unwrap();
    assert!(again.updated);
    let users = list_users(&state).unwrap();
    assert_eq!(users.len(), 1);
    assert_eq!(users[0].certs.len(), 2);
    assert_eq!(users[0].groups, ["ops"]);
}

#[test]
fn bad_arguments_are_refused_naming_the_flag() {
    let (_d, state, ca) = setup();
    let cases = [
        (new_user("causeway:agent:x", &[], &["*"]), "user name"),
        (new_user("a\r\nb", &[], &["*"]), "user name"),
        (new_user("alice", &["dev\n"], &["*"]), "--group"),
        (new_user("alice", &[], &[]), "--clusters"),
        (new_user("alice", &[], &["IDC/*"]), "--clusters"),
        (
            NewUser {
                ttl: Duration::ZERO,
                ..new_user("alice", &[], &["*"])
            },
            "--ttl",
        ),
    ];
    for (nu, field) in cases {
        let err = add_user(&state, &ca, &nu, &[]).unwrap_err().to_string();
        assert!(err.contains(field), "{field}: {err}");
    }
    assert!(list_users(&state).unwrap().is_empty());
    let c = crate::pki::Ca::generate().unwrap();
    let cert = c.issue_user("x", &[], Duration::from_secs(60)).unwrap();
    for bad in [
        "http://stub",
        "stub:6443",
        "https://",
        "https://a b",
        "https://s?x=1",
    ] {
        assert!(kubeconfig_yaml(bad, "", "x", &cert, &[]).is_err(), "{bad}");
    }
}

#[test]
fn remove_revokes_every_certificate() {
    let (_d, state, ca) = setup();
    let a1 = add_user(&state, &ca, &new_user("alice", &[], &["*"]), &[]).unwrap();
    let a2 = add_user(&state, &ca, &new_user("alice", &[], &["*"]), &[]).unwrap();
    let b = add_user(&state, &ca, &new_user("bob", &[], &["*"]), &[]).unwrap();
    let handle = UserStoreHandle::load(state.path(), None).unwrap();
    assert!(handle.current().user("alice").is_some());
    let revoked = remove_user(&state, "alice").unwrap();
    assert_eq!(revoked, [a1.cert.serial.clone(), a2.cert.serial.clone()]);
    // The old snapshot is unchanged until reload.
    assert!(handle.current().user("alice").is_some());
    handle.reload().unwrap();
    let store = handle.current();
    assert!(store.user("alice").is_none());
    assert!(store.is_revoked(&a1.cert.serial) && store.is_revoked(&a2.cert.serial));
    assert!(!store.is_revoked(&b.cert.serial));
    assert!(matches!(
        remove_user(&state, "alice"),
        Err(UsersError::NoSuchUser(_))
    ));
}

#[tokio::test]
async fn watch_reloads_after_a_change_and_keeps_the_last_good_store() {
    let (_d, state, ca) = setup();
    add_user(&state, &ca, &new_user("alice", &[], &["*"]), &[]).unwrap();
    let handle = UserStoreHandle::load(state.path(), None).unwrap();
    let task = handle.watch(Duration::from_millis(20));
    remove_user(&state, "alice").unwrap();
    let mut gone = false;
    for _ in 0..200 {
        if handle.current().user("alice").is_none() {
            gone = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(gone, "the watcher did not pick up the removal");
    add_user(&state, &ca, &new_user("bob", &[], &["*"]), &[]).unwrap();
    fs::write(state.file(USERS_FILE), "users: [{name: 1, bogus: 2}]\n").unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    // The broken file is not loaded; the last good store stays.
    assert!(handle.reload().is_err());
    assert!(handle.current().user("alice").is_none());
    task.abort();
}

const TOKENS: &str = r#"# comment
0123456789abcdef-token-a,alice,alice-uid,"dev,ops"

0123456789abcdef-token-b,bob,,
0123456789abcdef-token-c,carol,c-uid
0123456789abcdef-token-d,"dave ""the"" admin",d,single
"#;

#[test]
fn token_file_parses_like_kube_apiserver() {
    let toks = parse_token_file(TOKENS, Path::new("t.csv")).unwrap();
    let got: Vec<_> = toks
        .iter()
        .map(|t| {
            (
                t.identity.user.as_str(),
                t.identity.uid.as_deref(),
                t.identity.groups.clone(),
            )
        })
        .collect();
    assert_eq!(
        got,
        [
            (
                "alice",
                Some("alice-uid"),
                vec!["dev".to_owned(), "ops".to_owned()]
            ),
            ("bob", None, vec![]),
            ("carol", Some("c-uid"), vec![]),
            ("dave \"the\" admin", Some("d"), vec!["single".to_owned()]),
        ]
    );
    assert_eq!(format!("{:?}", toks[0].token), "MASKED");
    let store = UserStore::from_parts(vec![], vec![], toks, Path::new("x")).unwrap();
    assert_eq!(
        store
            .identity_for_token("0123456789abcdef-token-a")
            .unwrap()
            .user,
        "alice"
    );
    for wrong in [
        "",
        "0123456789abcdef-token-",
        "0123456789abcdef-token-aa",
        "0123456789ABCDEF-TOKEN-A",
    ] {
        assert!(store.identity_for_token(wrong).is_none(), "{wrong}");
    }
}

#[test]
fn bad_token_files_name_the_line() {
    let cases = [
        ("0123456789abcdef-x,alice\n", 1, "column"),
        ("# c\nshort,alice,1\n", 2, "shorter"),
        (
            "0123456789abcdef-x,alice,1\n0123456789abcdef-x,bob,2\n",
            2,
            "twice",
        ),
        ("0123456789abcdef-x,\"al\rice\",1\n", 1, "control"),
        ("0123456789abcdef-x,\"alice,1\n", 1, "unterminated"),
        ("0123456789abcdef-x,,1\n", 1, "empty"),
        ("0123456789 abcdef,alice,1\n", 1, "space"),
    ];
    for (text, line, word) in cases {
        let err = parse_token_file(text, Path::new("/etc/tokens.csv"))
            .unwrap_err()
            .to_string();
        assert!(
            err.starts_with(&format!("/etc/tokens.csv:{line}:")) && err.contains(word),
            "{word}: {err}"
        );
        assert!(!err.contains("0123456789abcdef"), "token leaked into {err}");
    }
}

#[test]
fn example_token_file_parses() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/tunnel/tokens.csv");
    let text = fs::read_to_string(&path).unwrap();
    assert_eq!(parse_token_file(&text, &path).unwrap().len(), 2);
}

#[test]
fn store_rules_add_to_the_policy_file() {
    use crate::authz::{AuthzError, Verb, authorize};
    let (_d, state, ca) = setup();
    add_user(&state, &ca, &new_user("alice", &["dev"], &["idc-*"]), &[]).unwrap();
    add_user(
        &state,
        &ca,
        &NewUser {
            read_only: true,
            ..new_user("olive", &[], &["*"])
        },
        &[],
    )
    .unwrap();
    let store = UserStore::load(state.path(), None).unwrap();
    let file = AccessPolicy::parse(
        "apiVersion: causeway.dev/v1alpha1\nkind: AccessPolicy\nmetadata: {name: p}\nspec:\n  rules:\n  - subjects: {groups: [dev]}\n    clusters: [aws-sg]\n",
        Path::new("p.yaml"),
    )
    .unwrap();
    let alice = Identity::user("alice", vec!["dev".into()]).unwrap();
    let olive = Identity::user("olive", vec![]).unwrap();
    let c = |s: &str| ClusterId::new(s).unwrap();
    assert!(
        authorize(
            &file,
            store.recorded_policy(),
            &alice,
            &c("idc-bj"),
            Verb::Create
        )
        .is_ok()
    );
    assert!(
        authorize(
            &file,
            store.recorded_policy(),
            &alice,
            &c("aws-sg"),
            Verb::Create
        )
        .is_ok()
    );
    assert!(matches!(
        authorize(
            &file,
            store.recorded_policy(),
            &alice,
            &c("gcp-x"),
            Verb::Get
        ),
        Err(AuthzError::NoRule { .. })
    ));
    assert!(
        authorize(
            &file,
            store.recorded_policy(),
            &olive,
            &c("gcp-x"),
            Verb::Watch
        )
        .is_ok()
    );
    assert!(matches!(
        authorize(
            &file,
            store.recorded_policy(),
            &olive,
            &c("gcp-x"),
            Verb::Create
        ),
        Err(AuthzError::ReadOnly { .. })
    ));
}

#[test]
fn user_tokens_authenticate_until_the_user_is_removed() {
    let (_d, state, ca) = setup();
    add_user(&state, &ca, &new_user("sched", &["ops"], &["*"]), &[]).unwrap();
    let token = issue_user_token(&state, "sched").unwrap();
    assert!(token.expose().starts_with(USER_TOKEN_PREFIX));
    let stored = fs::read_to_string(state.file(USERS_FILE)).unwrap();
    assert!(!stored.contains(token.expose()), "token stored in clear");
    let store = UserStore::load(state.path(), None).unwrap();
    let id = store.identity_for_token(token.expose()).unwrap();
    assert_eq!(
        (id.user.as_str(), id.groups.clone()),
        ("sched", vec!["ops".to_owned()])
    );
    assert!(
        store
            .identity_for_token(&format!("{}x", token.expose()))
            .is_none()
    );
    remove_user(&state, "sched").unwrap();
    let store = UserStore::load(state.path(), None).unwrap();
    assert!(store.identity_for_token(token.expose()).is_none());
    assert!(matches!(
        issue_user_token(&state, "sched"),
        Err(UsersError::NoSuchUser(_))
    ));
    // A corrupt hash is refused naming the field.
    fs::write(
        state.file(USERS_FILE),
        "users:\n- name: x\n  tokens: [{sha256: zz, createdAt: now}]\n",
    )
    .unwrap();
    let err = UserStore::load(state.path(), None).unwrap_err().to_string();
    assert!(err.contains("users[0].tokens[0].sha256"), "{err}");
    // So is a hash of the right length with a sign, space or other junk for a digit
    // (`+f` parsed as 0x0f with the hand-written decoder this replaced).
    for junk in ["+f", "-f", " f", "0x", "g0"] {
        let sha = format!("{junk}{}", "0".repeat(62));
        fs::write(
            state.file(USERS_FILE),
            format!("users:\n- name: x\n  tokens: [{{sha256: '{sha}', createdAt: now}}]\n"),
        )
        .unwrap();
        let err = UserStore::load(state.path(), None).unwrap_err().to_string();
        assert!(err.contains("users[0].tokens[0].sha256"), "{junk:?}: {err}");
    }
    fs::write(
        state.file(USERS_FILE),
        format!(
            "users:\n- name: x\n  tokens: [{{sha256: '{}', createdAt: now}}]\n",
            "0f".repeat(32)
        ),
    )
    .unwrap();
    UserStore::load(state.path(), None).unwrap();
}
