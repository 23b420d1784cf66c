//! The agent-side identity rewrite against a real kube-apiserver (testbed cluster
//! `tb-a`), with `curl` as the HTTP client: the headers `rewrite_for_apiserver` builds
//! from a client request full of forged credentials make the member cluster see
//! exactly the stub's user, and RBAC there decides per namespace. The agent's
//! ServiceAccount alone can do nothing but impersonate.
//!
//! Needs the testbed binaries (`testbed/build-bins.sh`) and `curl`.

#[path = "support/tunnel.rs"]
mod tunnel_support;

use std::collections::BTreeMap;
use std::path::Path;

use causeway_testbed::testing::{Curl, CurlResponse, Kubectl, require_tools};
use causeway_tunnel::identity::Identity;
use causeway_tunnel::impersonate::rewrite_for_apiserver;
use http::{HeaderMap, HeaderName, HeaderValue};
use tunnel_support::*;

/// `curl METHOD url` trusting `ca`, with `headers` and an optional JSON body.
fn curl(
    method: &str,
    url: &str,
    ca: &Path,
    headers: &HeaderMap,
    body: Option<&str>,
) -> CurlResponse {
    let mut c = Curl::new(method, url).cacert(ca);
    for (k, v) in headers {
        c = c.header(k.as_str(), v.to_str().expect("an ASCII header"));
    }
    if let Some(b) = body {
        c = c.json(b);
    }
    c.send()
}

#[tokio::test(flavor = "multi_thread")]
async fn member_cluster_sees_only_the_stubs_identity() {
    require_tools(&[("curl", "curl")]);
    let tb = causeway_testbed::shared().await;
    let c = tb.cluster("tb-a").expect("cluster tb-a");
    Kubectl::admin(c).apply(MEMBER_RBAC);
    let sa_token = agent_token(c, "1h");

    // A client request carrying every forged credential we can think of.
    let mut h = HeaderMap::new();
    for (k, v) in [
        ("Authorization", "Bearer client-token"),
        ("Impersonate-User", "admin"),
        ("impersonate-group", "system:masters"),
        ("IMPERSONATE-GROUP", "system:masters"),
        ("Impersonate-Uid", "0"),
        ("Impersonate-Extra-Scopes", "all"),
    ] {
        h.append(
            HeaderName::from_bytes(k.as_bytes()).unwrap(),
            HeaderValue::from_str(v).unwrap(),
        );
    }
    let alice = Identity::new(
        "alice",
        None,
        vec!["dev".into(), "system:authenticated".into()],
        BTreeMap::new(),
    )
    .unwrap();
    rewrite_for_apiserver(&mut h, &alice, &sa_token).unwrap();

    // `kubectl auth whoami` is a SelfSubjectReview.
    let CurlResponse { code, body, .. } = curl(
        "POST",
        &format!(
            "{}/apis/authentication.k8s.io/v1/selfsubjectreviews",
            c.server
        ),
        &c.ca_cert,
        &h,
        Some(SELF_SUBJECT_REVIEW),
    );
    assert_eq!(code, 201, "{body}");
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    let info = &v["status"]["userInfo"];
    assert_eq!(info["username"], "alice", "{body}");
    let groups: Vec<&str> = info["groups"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|g| g.as_str())
        .collect();
    assert!(groups.contains(&"dev"), "{groups:?}");
    assert!(!groups.contains(&"system:masters"), "{groups:?}");
    assert!(info.get("uid").is_none_or(|u| u != "0"), "{body}");

    // RBAC on the member decides: team-a yes, team-b no.
    let CurlResponse { code, body, .. } = curl(
        "GET",
        &format!("{}/api/v1/namespaces/team-a/pods", c.server),
        &c.ca_cert,
        &h,
        None,
    );
    assert_eq!(code, 200, "{body}");
    let CurlResponse { code, body, .. } = curl(
        "GET",
        &format!("{}/api/v1/namespaces/team-b/pods", c.server),
        &c.ca_cert,
        &h,
        None,
    );
    assert_eq!(code, 403, "{body}");
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    let message = v["message"].as_str().unwrap_or_default();
    assert!(message.contains("User \"alice\" cannot list"), "{body}");

    // The ServiceAccount on its own holds impersonation rights only.
    let mut sa_only = HeaderMap::new();
    sa_only.insert(
        http::header::AUTHORIZATION,
        HeaderValue::from_str(&format!("Bearer {sa_token}")).unwrap(),
    );
    let CurlResponse { code, body, .. } = curl(
        "GET",
        &format!("{}/api/v1/namespaces/team-a/pods", c.server),
        &c.ca_cert,
        &sa_only,
        None,
    );
    assert_eq!(code, 403, "{body}");
    assert!(
        body.contains("system:serviceaccount:causeway-system:causeway-agent"),
        "{body}"
    );
}
