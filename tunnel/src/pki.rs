//! The stub's certificate authority and the rustls configurations built on it.
//!
//! One CA (ECDSA P-256, `ca.crt`/`ca.key` in the state directory) signs three kinds of
//! certificate, told apart by their names, never by who asks:
//!
//! | kind   | subject                                   | SAN                          | EKU        |
//! |--------|-------------------------------------------|------------------------------|------------|
//! | server | CN=first SAN                              | DNS names / IPs              | serverAuth |
//! | user   | CN=user, O=first group (Kubernetes style)  | none                         | clientAuth |
//! | agent  | `CN=causeway:agent:<id>`, `O=causeway:agents` | URI `causeway://agent/<id>` | clientAuth |
//!
//! A user certificate never carries a `causeway://` URI or the `causeway:agents`
//! organisation (user names starting with `causeway:` are refused), so it never passes
//! [`agent_cluster_from_cert`]; [`user_from_cert`] refuses anything that looks like an
//! agent certificate. Signature, validity and chain checks are rustls's
//! (`WebPkiClientVerifier`): these functions only read names from certificates that
//! rustls has already verified.
//!
//! rcgen keeps one value per attribute type in a subject, so a user certificate carries
//! only its first group as `O`; the stub takes groups from its user store
//! (`users.yaml`), which is also what makes `causeway user remove` effective at once.

use std::fmt;
use std::fs;
use std::io::BufReader;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use causeway_model::ClusterId;
use rcgen::{
    BasicConstraints, CertificateParams, CertificateSigningRequestParams, DistinguishedName,
    DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair, KeyUsagePurpose, PublicKeyData,
    SanType, SerialNumber,
};
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::server::WebPkiClientVerifier;
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, ServerConfig, SignatureScheme};
use sha2::{Digest, Sha256};
use x509_parser::prelude::{FromDer, GeneralName, X509Certificate};

use crate::identity::{Secret, check_field};
use crate::state::{create_private_dir, write_atomic};

/// Organisation (`O`) of every agent certificate.
pub const AGENT_ORG: &str = "causeway:agents";
/// Prefix of the URI SAN binding an agent certificate to its cluster.
pub const AGENT_URI_PREFIX: &str = "causeway://agent/";
/// Prefix of an agent certificate's common name.
pub const AGENT_CN_PREFIX: &str = "causeway:agent:";
/// User names with this prefix are reserved for Causeway itself.
pub const RESERVED_PREFIX: &str = "causeway:";

/// File name of the CA certificate inside a state directory.
pub const CA_CERT_FILE: &str = "ca.crt";
/// File name of the CA private key inside a state directory.
pub const CA_KEY_FILE: &str = "ca.key";

/// Errors of the CA and of certificate checks.
#[derive(Debug, thiserror::Error)]
pub enum PkiError {
    /// A file could not be read or written.
    #[error("{path}: {reason}")]
    File {
        /// The file.
        path: PathBuf,
        /// What went wrong.
        reason: String,
    },
    /// rcgen could not build or sign a certificate.
    #[error("cannot issue certificate: {0}")]
    Issue(#[from] rcgen::Error),
    /// A certificate could not be parsed.
    #[error("malformed certificate: {0}")]
    Malformed(String),
    /// The certificate is not an agent certificate, or is bound to no valid cluster.
    #[error("not an agent certificate: {0}")]
    NotAgent(String),
    /// The certificate is not a user certificate.
    #[error("not a user certificate: {0}")]
    NotUser(String),
    /// A name to put in a certificate was refused.
    #[error("invalid name {name:?}: {reason}")]
    InvalidName {
        /// The name.
        name: String,
        /// Why.
        reason: String,
    },
    /// A `sha256:<hex>` CA pin could not be parsed.
    #[error("invalid CA hash {0:?}: expected sha256:<64 hex digits>")]
    InvalidPin(String),
    /// rustls refused the configuration.
    #[error("TLS configuration: {0}")]
    Tls(String),
}

impl PkiError {
    fn file(path: &Path, reason: impl fmt::Display) -> Self {
        PkiError::File {
            path: path.to_owned(),
            reason: reason.to_string(),
        }
    }
}

/// A certificate and its private key, both PEM.
#[derive(Clone, Debug)]
pub struct IssuedCert {
    /// The leaf certificate (PEM).
    pub cert_pem: String,
    /// The leaf's private key (PKCS#8 PEM), masked in `Debug`.
    pub key_pem: Secret,
    /// The serial number, lower-case hex without leading zeros (as in `revoked.yaml`).
    pub serial: String,
    /// End of validity.
    pub not_after: SystemTime,
}

/// The ring crypto provider used by every configuration here.
pub fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// The stub's certificate authority.
pub struct Ca {
    cert_pem: String,
    cert_der: CertificateDer<'static>,
    key: KeyPair,
}

impl fmt::Debug for Ca {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Ca").field("pin", &self.pin()).finish()
    }
}

// === impl Ca ===

impl Ca {
    /// Loads `ca.crt`/`ca.key` from `state_dir`, or creates them (key mode 0600).
    pub fn load_or_create(state_dir: &Path) -> Result<Ca, PkiError> {
        let cert_path = state_dir.join(CA_CERT_FILE);
        let key_path = state_dir.join(CA_KEY_FILE);
        match (cert_path.exists(), key_path.exists()) {
            (true, true) => Self::load(&cert_path, &key_path),
            (false, false) => {
                create_private_dir(state_dir).map_err(|e| PkiError::file(state_dir, e))?;
                let ca = Self::generate()?;
                write_atomic(&key_path, ca.key.serialize_pem().as_bytes(), 0o600)
                    .map_err(|e| PkiError::file(&key_path, e))?;
                write_atomic(&cert_path, ca.cert_pem.as_bytes(), 0o644)
                    .map_err(|e| PkiError::file(&cert_path, e))?;
                tracing::info!(path = %cert_path.display(), pin = %ca.pin(), "created the stub CA");
                Ok(ca)
            }
            (true, false) => Err(PkiError::file(&key_path, "missing while ca.crt exists")),
            (false, true) => Err(PkiError::file(&cert_path, "missing while ca.key exists")),
        }
    }

    /// Loads a CA from a certificate and key file.
    pub fn load(cert_path: &Path, key_path: &Path) -> Result<Ca, PkiError> {
        let cert_pem = fs::read_to_string(cert_path).map_err(|e| PkiError::file(cert_path, e))?;
        let key_pem = fs::read_to_string(key_path).map_err(|e| PkiError::file(key_path, e))?;
        let cert_der = parse_cert_pem(&cert_pem)
            .map_err(|e| PkiError::file(cert_path, e))?
            .into_iter()
            .next()
            .ok_or_else(|| PkiError::file(cert_path, "no certificate in file"))?;
        let key = KeyPair::from_pem(&key_pem)
            .map_err(|e| PkiError::file(key_path, format!("not a private key: {e}")))?;
        let (_, parsed) = X509Certificate::from_der(&cert_der)
            .map_err(|e| PkiError::file(cert_path, format!("malformed certificate: {e}")))?;
        if parsed.public_key().raw != key.subject_public_key_info().as_slice() {
            return Err(PkiError::file(key_path, "does not match ca.crt"));
        }
        Ok(Ca {
            cert_pem,
            cert_der,
            key,
        })
    }

    /// A new self-signed CA valid for ten years, in memory.
    pub fn generate() -> Result<Ca, PkiError> {
        let key = KeyPair::generate()?;
        let mut params = CertificateParams::default();
        let mut dn = DistinguishedName::new();
        dn.push(DnType::CommonName, "causeway stub CA");
        dn.push(DnType::OrganizationName, "causeway");
        params.distinguished_name = dn;
        params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let now = SystemTime::now();
        params.not_before = (now - Duration::from_secs(3600)).into();
        params.not_after = (now + Duration::from_secs(10 * 365 * 24 * 3600)).into();
        params.serial_number = Some(random_serial());
        let cert = params.self_signed(&key)?;
        Ok(Ca {
            cert_pem: cert.pem(),
            cert_der: cert.der().clone(),
            key,
        })
    }

    /// The CA certificate, PEM.
    pub fn cert_pem(&self) -> String {
        self.cert_pem.clone()
    }

    /// The CA certificate, DER.
    pub fn cert_der(&self) -> &CertificateDer<'static> {
        &self.cert_der
    }

    /// The CA's pin, `sha256:<hex>` of its SubjectPublicKeyInfo (as kubeadm's
    /// `--discovery-token-ca-cert-hash`), printed with join tokens.
    pub fn pin(&self) -> CaPin {
        CaPin::of_spki(self.key.subject_public_key_info().as_slice())
    }

    /// A server certificate for `sans` (DNS names or IP addresses).
    pub fn issue_server(&self, sans: &[String], ttl: Duration) -> Result<IssuedCert, PkiError> {
        let first = sans.first().ok_or_else(|| PkiError::InvalidName {
            name: String::new(),
            reason: "a server certificate needs at least one name".into(),
        })?;
        let mut params = self.leaf_params(SystemTime::now(), ttl)?;
        params
            .distinguished_name
            .push(DnType::CommonName, first.clone());
        for san in sans {
            let entry = match san.parse::<IpAddr>() {
                Ok(ip) => SanType::IpAddress(ip),
                Err(_) => {
                    SanType::DnsName(san.clone().try_into().map_err(|_| PkiError::InvalidName {
                        name: san.clone(),
                        reason: "not an IP address or ASCII DNS name".into(),
                    })?)
                }
            };
            params.subject_alt_names.push(entry);
        }
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        self.sign_new_key(params)
    }

    /// A client certificate for a user: CN=user, O=first group, clientAuth.
    pub fn issue_user(
        &self,
        user: &str,
        groups: &[String],
        ttl: Duration,
    ) -> Result<IssuedCert, PkiError> {
        let now = SystemTime::now();
        self.issue_user_with_validity(user, groups, now, now + ttl)
    }

    /// As [`Ca::issue_user`] with an explicit validity window (tests use it to mint
    /// expired certificates with the real CA).
    pub fn issue_user_with_validity(
        &self,
        user: &str,
        groups: &[String],
        not_before: SystemTime,
        not_after: SystemTime,
    ) -> Result<IssuedCert, PkiError> {
        check_user_name(user)?;
        for g in groups {
            check_field("group", g).map_err(|e| PkiError::InvalidName {
                name: g.clone(),
                reason: e.to_string(),
            })?;
            if g == AGENT_ORG {
                return Err(PkiError::InvalidName {
                    name: g.clone(),
                    reason: format!("group {AGENT_ORG} is reserved for agents"),
                });
            }
        }
        let ttl = not_after
            .duration_since(not_before)
            .unwrap_or(Duration::ZERO);
        let mut params = self.leaf_params(not_before, ttl)?;
        params.distinguished_name.push(DnType::CommonName, user);
        if let Some(g) = groups.first() {
            params
                .distinguished_name
                .push(DnType::OrganizationName, g.clone());
        }
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        self.sign_new_key(params)
    }

    /// An agent certificate with a fresh key, bound to `cluster`.
    pub fn issue_agent(&self, cluster: &ClusterId, ttl: Duration) -> Result<IssuedCert, PkiError> {
        let params = self.agent_params(cluster, ttl)?;
        self.sign_new_key(params)
    }

    /// Signs an agent's CSR (PEM) for `cluster`. Only the public key is taken from the
    /// CSR; names, usages and validity are ours. Returns the certificate PEM and serial.
    pub fn sign_agent_csr(
        &self,
        cluster: &ClusterId,
        csr_pem: &str,
        ttl: Duration,
    ) -> Result<(String, String, SystemTime), PkiError> {
        let csr = CertificateSigningRequestParams::from_pem(csr_pem)
            .map_err(|e| PkiError::Malformed(format!("CSR: {e}")))?;
        let params = self.agent_params(cluster, ttl)?;
        let serial = serial_of(&params);
        let not_after: SystemTime = params.not_after.into();
        let issuer = Issuer::from_ca_cert_der(&self.cert_der, &self.key)?;
        let cert = params.signed_by(&csr.public_key, &issuer)?;
        Ok((cert.pem(), serial, not_after))
    }

    fn agent_params(
        &self,
        cluster: &ClusterId,
        ttl: Duration,
    ) -> Result<CertificateParams, PkiError> {
        let mut params = self.leaf_params(SystemTime::now(), ttl)?;
        params
            .distinguished_name
            .push(DnType::CommonName, format!("{AGENT_CN_PREFIX}{cluster}"));
        params
            .distinguished_name
            .push(DnType::OrganizationName, AGENT_ORG);
        let uri = format!("{AGENT_URI_PREFIX}{cluster}");
        params.subject_alt_names = vec![SanType::URI(uri.try_into()?)];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        Ok(params)
    }

    fn leaf_params(
        &self,
        not_before: SystemTime,
        ttl: Duration,
    ) -> Result<CertificateParams, PkiError> {
        let mut params = CertificateParams::default();
        params.distinguished_name = DistinguishedName::new();
        params.is_ca = IsCa::ExplicitNoCa;
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        // A minute of slack for clocks that run a little behind ours.
        params.not_before = (not_before - Duration::from_secs(60)).into();
        params.not_after = (not_before + ttl).into();
        params.serial_number = Some(random_serial());
        params.use_authority_key_identifier_extension = true;
        Ok(params)
    }

    fn sign_new_key(&self, params: CertificateParams) -> Result<IssuedCert, PkiError> {
        let key = KeyPair::generate()?;
        let issuer = Issuer::from_ca_cert_der(&self.cert_der, &self.key)?;
        let serial = serial_of(&params);
        let not_after: SystemTime = params.not_after.into();
        let cert = params.signed_by(&key, &issuer)?;
        Ok(IssuedCert {
            cert_pem: cert.pem(),
            key_pem: Secret::new(key.serialize_pem()),
            serial,
            not_after,
        })
    }

    fn roots(&self) -> Result<Arc<RootCertStore>, PkiError> {
        let mut roots = RootCertStore::empty();
        roots
            .add(self.cert_der.clone())
            .map_err(|e| PkiError::Tls(e.to_string()))?;
        Ok(Arc::new(roots))
    }

    /// TLS for the users' listener: a client certificate is optional (requests without
    /// one fall back to bearer tokens in [`crate::authn`]), but one that is presented
    /// must chain to this CA and be within its validity, or rustls ends the handshake.
    ///
    /// The server presents `server` followed by the CA certificate. ALPN is left empty
    /// for the caller to set.
    pub fn user_server_config(&self, server: &IssuedCert) -> Result<ServerConfig, PkiError> {
        let verifier = WebPkiClientVerifier::builder_with_provider(self.roots()?, provider())
            .allow_unauthenticated()
            .build()
            .map_err(|e| PkiError::Tls(e.to_string()))?;
        self.server_config(verifier, server)
    }

    /// TLS for the agents' listener. With `require_client_cert`, the handshake fails
    /// without a valid client certificate from this CA. Without it, a connection with no
    /// certificate is let through so the enrolment route can serve it: then every other
    /// route must require [`agent_cluster_from_cert`] to succeed.
    pub fn agent_server_config(
        &self,
        server: &IssuedCert,
        require_client_cert: bool,
    ) -> Result<ServerConfig, PkiError> {
        let builder = WebPkiClientVerifier::builder_with_provider(self.roots()?, provider());
        let builder = if require_client_cert {
            builder
        } else {
            builder.allow_unauthenticated()
        };
        let verifier = builder.build().map_err(|e| PkiError::Tls(e.to_string()))?;
        self.server_config(verifier, server)
    }

    fn server_config(
        &self,
        verifier: Arc<dyn rustls::server::danger::ClientCertVerifier>,
        server: &IssuedCert,
    ) -> Result<ServerConfig, PkiError> {
        let mut chain = parse_cert_pem(&server.cert_pem)?;
        chain.push(self.cert_der.clone());
        let key = parse_key_pem(server.key_pem.expose())?;
        ServerConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .map_err(|e| PkiError::Tls(e.to_string()))?
            .with_client_cert_verifier(verifier)
            .with_single_cert(chain, key)
            .map_err(|e| PkiError::Tls(e.to_string()))
    }
}

// === certificate names ===

/// Refuses user names that cannot go in a certificate or impersonation header, and
/// the reserved `causeway:` prefix.
pub fn check_user_name(user: &str) -> Result<(), PkiError> {
    let invalid = |reason: String| PkiError::InvalidName {
        name: user.to_owned(),
        reason,
    };
    if user.is_empty() {
        return Err(invalid("empty".into()));
    }
    check_field("user", user).map_err(|e| invalid(e.to_string()))?;
    if user.starts_with(RESERVED_PREFIX) {
        return Err(invalid(format!(
            "the prefix {RESERVED_PREFIX:?} is reserved"
        )));
    }
    Ok(())
}

/// The names read from a user certificate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertUser {
    /// The common name.
    pub user: String,
    /// The organisations (Kubernetes reads them as groups).
    pub groups: Vec<String>,
    /// Serial number, lower-case hex without leading zeros.
    pub serial: String,
}

/// Reads user, groups and serial from a (rustls-verified) client certificate, refusing
/// agent certificates and certificates without a usable common name.
pub fn user_from_cert(cert: &CertificateDer<'_>) -> Result<CertUser, PkiError> {
    let (_, x) = X509Certificate::from_der(cert).map_err(|e| PkiError::Malformed(e.to_string()))?;
    if !agent_uris(&x)?.is_empty() {
        return Err(PkiError::NotUser("it carries an agent URI".into()));
    }
    let mut cns = x.subject().iter_common_name();
    let cn = cns
        .next()
        .ok_or_else(|| PkiError::NotUser("no common name".into()))?
        .as_str()
        .map_err(|e| PkiError::NotUser(format!("common name is not a string: {e}")))?
        .to_owned();
    if cns.next().is_some() {
        return Err(PkiError::NotUser("more than one common name".into()));
    }
    let mut groups = Vec::new();
    for o in x.subject().iter_organization() {
        let o = o
            .as_str()
            .map_err(|e| PkiError::NotUser(format!("organisation is not a string: {e}")))?;
        if o == AGENT_ORG {
            return Err(PkiError::NotUser(format!("organisation {AGENT_ORG}")));
        }
        groups.push(o.to_owned());
    }
    check_user_name(&cn).map_err(|e| PkiError::NotUser(e.to_string()))?;
    Ok(CertUser {
        user: cn,
        groups,
        serial: serial_hex(x.raw_serial()),
    })
}

/// The cluster an agent certificate is bound to.
///
/// The certificate must carry exactly one URI SAN `causeway://agent/<id>`, the common
/// name `causeway:agent:<id>` with the same ID, and `O=causeway:agents`. Call it only
/// on certificates rustls has verified against the stub CA.
pub fn agent_cluster_from_cert(cert: &CertificateDer<'_>) -> Result<ClusterId, PkiError> {
    let (_, x) = X509Certificate::from_der(cert).map_err(|e| PkiError::Malformed(e.to_string()))?;
    let uris = agent_uris(&x)?;
    let [uri] = uris.as_slice() else {
        return Err(PkiError::NotAgent(format!(
            "expected exactly one {AGENT_URI_PREFIX}<id> URI, found {}",
            uris.len()
        )));
    };
    let id = uri.strip_prefix(AGENT_URI_PREFIX).unwrap_or_default();
    let cluster = ClusterId::new(id).map_err(|e| PkiError::NotAgent(e.to_string()))?;
    let cns: Vec<_> = x
        .subject()
        .iter_common_name()
        .filter_map(|a| a.as_str().ok())
        .collect();
    if cns != [format!("{AGENT_CN_PREFIX}{cluster}")] {
        return Err(PkiError::NotAgent(format!(
            "common name does not name cluster {cluster}"
        )));
    }
    let orgs: Vec<_> = x
        .subject()
        .iter_organization()
        .filter_map(|a| a.as_str().ok())
        .collect();
    if orgs != [AGENT_ORG] {
        return Err(PkiError::NotAgent(format!(
            "organisation is not {AGENT_ORG}"
        )));
    }
    Ok(cluster)
}

/// The serial number of a certificate, lower-case hex without leading zeros.
pub fn cert_serial(cert: &CertificateDer<'_>) -> Result<String, PkiError> {
    let (_, x) = X509Certificate::from_der(cert).map_err(|e| PkiError::Malformed(e.to_string()))?;
    Ok(serial_hex(x.raw_serial()))
}

fn agent_uris(x: &X509Certificate<'_>) -> Result<Vec<String>, PkiError> {
    let san = x
        .subject_alternative_name()
        .map_err(|e| PkiError::Malformed(e.to_string()))?;
    let mut out = Vec::new();
    if let Some(san) = san {
        for name in &san.value.general_names {
            if let GeneralName::URI(u) = name
                && u.to_ascii_lowercase().starts_with("causeway:")
            {
                out.push((*u).to_owned());
            }
        }
    }
    Ok(out)
}

fn random_serial() -> SerialNumber {
    let mut bytes: [u8; 16] = rand::random();
    // Positive and exactly 16 bytes long: top bit clear, first byte non-zero.
    bytes[0] = (bytes[0] & 0x7f) | 0x01;
    SerialNumber::from_slice(&bytes)
}

fn serial_of(params: &CertificateParams) -> String {
    params
        .serial_number
        .as_ref()
        .map(|s| serial_hex(&s.to_bytes()))
        .unwrap_or_default()
}

/// Lower-case hex of a serial number, leading zero bytes removed.
pub fn serial_hex(bytes: &[u8]) -> String {
    let start = bytes.iter().position(|b| *b != 0).unwrap_or(bytes.len());
    hex::encode(&bytes[start..])
}

// === PEM helpers ===

/// Every certificate in a PEM string.
pub fn parse_cert_pem(pem: &str) -> Result<Vec<CertificateDer<'static>>, PkiError> {
    let certs: Result<Vec<_>, _> =
        rustls_pemfile::certs(&mut BufReader::new(pem.as_bytes())).collect();
    let certs = certs.map_err(|e| PkiError::Malformed(e.to_string()))?;
    if certs.is_empty() {
        return Err(PkiError::Malformed("no CERTIFICATE block in PEM".into()));
    }
    Ok(certs)
}

/// The first private key in a PEM string.
pub fn parse_key_pem(pem: &str) -> Result<PrivateKeyDer<'static>, PkiError> {
    rustls_pemfile::private_key(&mut BufReader::new(pem.as_bytes()))
        .map_err(|e| PkiError::Malformed(e.to_string()))?
        .ok_or_else(|| PkiError::Malformed("no PRIVATE KEY block in PEM".into()))
}

// === client configurations ===

/// TLS for an agent dialling the stub: trusts only the stub CA (`ca_pem`) and presents
/// the agent certificate.
pub fn agent_client_config(
    ca_pem: &str,
    cert_pem: &str,
    key_pem: &Secret,
) -> Result<ClientConfig, PkiError> {
    let mut roots = RootCertStore::empty();
    for c in parse_cert_pem(ca_pem)? {
        roots.add(c).map_err(|e| PkiError::Tls(e.to_string()))?;
    }
    ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| PkiError::Tls(e.to_string()))?
        .with_root_certificates(roots)
        .with_client_auth_cert(parse_cert_pem(cert_pem)?, parse_key_pem(key_pem.expose())?)
        .map_err(|e| PkiError::Tls(e.to_string()))
}

/// TLS for a client that knows only the CA's pin (enrolment): the server must send a CA
/// certificate in its chain whose public key hashes to `pin`, and its certificate must
/// verify against that CA for the name dialled.
pub fn pinned_client_config(pin: &CaPin) -> Result<ClientConfig, PkiError> {
    let verifier = Arc::new(PinnedCaVerifier {
        pin: pin.clone(),
        provider: provider(),
    });
    Ok(ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| PkiError::Tls(e.to_string()))?
        .dangerous()
        .with_custom_certificate_verifier(verifier)
        .with_no_client_auth())
}

/// A CA pin: SHA-256 of the CA's DER SubjectPublicKeyInfo, written `sha256:<hex>`.
#[derive(Clone, PartialEq, Eq)]
pub struct CaPin([u8; 32]);

impl CaPin {
    /// The pin of a DER SubjectPublicKeyInfo.
    pub fn of_spki(spki_der: &[u8]) -> Self {
        Self(Sha256::digest(spki_der).into())
    }

    /// The pin of a DER certificate's public key.
    pub fn of_cert(cert: &CertificateDer<'_>) -> Result<Self, PkiError> {
        let (_, x) =
            X509Certificate::from_der(cert).map_err(|e| PkiError::Malformed(e.to_string()))?;
        Ok(Self::of_spki(x.public_key().raw))
    }
}

impl fmt::Display for CaPin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "sha256:{}", hex::encode(self.0))
    }
}

impl fmt::Debug for CaPin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl std::str::FromStr for CaPin {
    type Err = PkiError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || PkiError::InvalidPin(s.to_owned());
        let digits = s.strip_prefix("sha256:").ok_or_else(bad)?;
        let mut out = [0u8; 32];
        // Exactly 64 hex digits: no sign, no space, no other length.
        hex::decode_to_slice(digits, &mut out).map_err(|_| bad())?;
        Ok(Self(out))
    }
}

#[derive(Debug)]
struct PinnedCaVerifier {
    pin: CaPin,
    provider: Arc<CryptoProvider>,
}

impl ServerCertVerifier for PinnedCaVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let ca = intermediates
            .iter()
            .find(|c| CaPin::of_cert(c).is_ok_and(|p| p == self.pin))
            .ok_or_else(|| {
                rustls::Error::General(format!(
                    "the server sent no CA certificate matching {}",
                    self.pin
                ))
            })?;
        let mut roots = RootCertStore::empty();
        roots
            .add(ca.clone().into_owned())
            .map_err(|e| rustls::Error::General(e.to_string()))?;
        let inner = rustls::client::WebPkiServerVerifier::builder_with_provider(
            Arc::new(roots),
            self.provider.clone(),
        )
        .build()
        .map_err(|e| rustls::Error::General(e.to_string()))?;
        inner.verify_server_cert(end_entity, &[], server_name, ocsp_response, now)
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

#[cfg(test)]
mod tests;
