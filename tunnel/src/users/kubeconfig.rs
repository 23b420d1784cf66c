//! The kubeconfig `causeway user add` writes: one context per cluster, each pointing at
//! the stub's `/clusters/<id>` and trusting only the stub CA.

use base64::Engine;
use causeway_model::ClusterId;
use kube::config::{
    AuthInfo, Cluster, Context, Kubeconfig, NamedAuthInfo, NamedCluster, NamedContext, Preferences,
};

use super::records::{UsersError, invalid};
use crate::pki::IssuedCert;

/// Checks the stub's users URL as a kubeconfig's server prefix: `https://`, with no
/// query, fragment, space or control character.
pub fn check_stub_url(stub_url: &str) -> Result<(), UsersError> {
    let base = stub_url.trim_end_matches('/');
    if !base.starts_with("https://") || base.len() <= "https://".len() {
        return Err(invalid(
            "--stub-url",
            format!("{stub_url:?} must be an https:// URL"),
        ));
    }
    if base.contains(['?', '#']) || base.chars().any(|c| c.is_control() || c == ' ') {
        return Err(invalid(
            "--stub-url",
            format!("{stub_url:?} must not hold a query, fragment, space or control character"),
        ));
    }
    Ok(())
}

/// A kubeconfig for `user` with one context per cluster, each pointing at
/// `<stub_url>/clusters/<id>` and trusting only the stub CA. The first context is
/// current.
pub fn kubeconfig_yaml(
    stub_url: &str,
    ca_pem: &str,
    user: &str,
    cert: &IssuedCert,
    clusters: &[ClusterId],
) -> Result<String, UsersError> {
    check_stub_url(stub_url)?;
    let base = stub_url.trim_end_matches('/');
    let b64 = |s: &str| base64::engine::general_purpose::STANDARD.encode(s.as_bytes());
    let kc = Kubeconfig {
        api_version: Some("v1".into()),
        kind: Some("Config".into()),
        current_context: Some(clusters.first().map(|c| c.to_string()).unwrap_or_default()),
        preferences: Some(Preferences::default()),
        clusters: clusters
            .iter()
            .map(|c| NamedCluster {
                name: c.to_string(),
                cluster: Some(Cluster {
                    server: Some(format!("{base}/clusters/{c}")),
                    certificate_authority_data: Some(b64(ca_pem)),
                    ..Cluster::default()
                }),
                ..NamedCluster::default()
            })
            .collect(),
        auth_infos: vec![NamedAuthInfo {
            name: user.to_owned(),
            auth_info: Some(AuthInfo {
                client_certificate_data: Some(b64(&cert.cert_pem)),
                client_key_data: Some(b64(cert.key_pem.expose()).into()),
                ..AuthInfo::default()
            }),
            ..NamedAuthInfo::default()
        }],
        contexts: clusters
            .iter()
            .map(|c| NamedContext {
                name: c.to_string(),
                context: Some(Context {
                    cluster: c.to_string(),
                    user: Some(user.to_owned()),
                    ..Context::default()
                }),
                ..NamedContext::default()
            })
            .collect(),
        ..Kubeconfig::default()
    };
    serde_yaml_ng::to_string(&kc).map_err(|e| invalid("kubeconfig", e.to_string()))
}
