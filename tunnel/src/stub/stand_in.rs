//! STAND-IN until T2's `crate::authn` and `crate::users` land: client certificates
//! from the stub CA only.

use rustls::pki_types::CertificateDer;

use crate::identity::Identity;

/// Stand-in user store (no revocation, no tokens).
#[derive(Default)]
pub struct UserStore;

/// Authenticates by client certificate only.
pub fn authenticate(
    cert: Option<&CertificateDer<'static>>,
    _headers: &http::HeaderMap,
    _users: &UserStore,
) -> Result<Identity, String> {
    let cert = cert.ok_or_else(|| "no client certificate".to_owned())?;
    let u = crate::pki::user_from_cert(cert).map_err(|e| e.to_string())?;
    let mut groups = u.groups;
    groups.push("system:authenticated".into());
    Identity::user(u.user, groups).map_err(|e| e.to_string())
}
