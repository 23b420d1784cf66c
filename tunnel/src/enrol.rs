//! Enrolment: a one-time join token becomes an agent certificate bound to one cluster.
//!
//! ```text
//! admin:  causeway cluster add idc-bj            → token + CA hash + agent command line
//! agent:  causeway agent --stub URL --cluster idc-bj --token T --ca-hash sha256:…
//!           1. makes its own key and a CSR (the private key never leaves the agent)
//!           2. TLS to the stub trusting nothing but a CA whose public key hashes to
//!              --ca-hash (kubeadm's discovery-token-ca-cert-hash idea)
//!           3. POST /v1/enrol {cluster, token, csr}
//! stub:   token hash known, for that cluster, unexpired, unused → marks it used, signs
//!         the CSR's key into CN=causeway:agent:idc-bj, O=causeway:agents,
//!         URI causeway://agent/idc-bj → {certificate, ca}
//! agent:  checks the certificate names its cluster and its key, stores agent.crt,
//!         agent.key (0600) and ca.crt in its --state-dir, then dials with mTLS.
//! ```
//!
//! Tokens are 32 random bytes; only their SHA-256 is stored (`join-tokens.yaml`, 0600),
//! with the cluster, the expiry and when it was used.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use base64::Engine;
use bytes::Bytes;
use causeway_model::ClusterId;
use http::{Response, StatusCode};
use http_body_util::{BodyExt, Full, Limited};
use rcgen::{CertificateParams, KeyPair, PublicKeyData};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use x509_parser::prelude::{FromDer, X509Certificate};

use crate::identity::Secret;
use crate::pki::{
    Ca, CaPin, PkiError, agent_client_config, agent_cluster_from_cert, parse_cert_pem,
};
use crate::state::{StateDir, StateError, write_atomic};
use crate::status::status_response;
use crate::transport::{HttpsUrl, HttpsUrlError};

/// The enrolment route on the stub's agent listener.
pub const ENROL_PATH: &str = "/v1/enrol";
/// Largest enrolment request body accepted.
pub const MAX_REQUEST_BYTES: usize = 64 * 1024;
/// Largest enrolment response body accepted by the agent.
pub const MAX_RESPONSE_BYTES: usize = 256 * 1024;
pub use crate::state::{CLUSTERS_FILE, JOIN_TOKENS_FILE};
/// Prefix of join tokens, so they are recognisable in secret scanners.
pub const TOKEN_PREFIX: &str = "cwj_";
/// Default lifetime of an agent certificate.
pub const DEFAULT_AGENT_CERT_TTL: Duration = Duration::from_secs(365 * 24 * 3600);

/// Agent certificate file in the agent's state directory.
pub const AGENT_CERT_FILE: &str = "agent.crt";
/// Agent key file in the agent's state directory (0600).
pub const AGENT_KEY_FILE: &str = "agent.key";
/// Stub CA file in the agent's state directory.
pub const AGENT_CA_FILE: &str = "ca.crt";

/// Enrolment failures, stub and agent side. [`EnrolError::status`] gives the HTTP code.
#[derive(Debug, thiserror::Error)]
pub enum EnrolError {
    /// The request is not the JSON we expect.
    #[error("bad enrolment request: {0}")]
    BadRequest(String),
    /// No such token (→ 401).
    #[error("the join token is not valid")]
    InvalidToken,
    /// The token's time is up (→ 401).
    #[error("the join token expired at {0}; create a new one with `causeway cluster add`")]
    TokenExpired(String),
    /// The token was used before (→ 403).
    #[error("the join token was already used at {0}; join tokens work once")]
    TokenUsed(String),
    /// The token was made for another cluster (→ 403).
    #[error("the join token is for another cluster than {0:?}")]
    WrongCluster(String),
    /// The stub refused (agent side), with the stub's message.
    #[error("the stub refused enrolment ({code}): {message}")]
    Refused {
        /// HTTP status.
        code: u16,
        /// The `Status` message.
        message: String,
    },
    /// Reaching the stub failed (agent side).
    #[error("enrolment request to {url}: {reason}")]
    Transport {
        /// The URL.
        url: String,
        /// What went wrong.
        reason: String,
    },
    /// The stub's answer does not hold what it must (agent side).
    #[error("the stub's enrolment answer is unusable: {0}")]
    BadResponse(String),
    /// Certificates.
    #[error(transparent)]
    Pki(#[from] PkiError),
    /// The state directory.
    #[error(transparent)]
    State(#[from] StateError),
    /// The state Secret in the hub (production mode).
    #[error(transparent)]
    Hub(#[from] crate::hub_state::SecretStateError),
}

impl EnrolError {
    /// The HTTP status the stub answers with.
    pub fn status(&self) -> StatusCode {
        match self {
            EnrolError::BadRequest(_) => StatusCode::BAD_REQUEST,
            EnrolError::InvalidToken | EnrolError::TokenExpired(_) => StatusCode::UNAUTHORIZED,
            EnrolError::TokenUsed(_) | EnrolError::WrongCluster(_) => StatusCode::FORBIDDEN,
            _ => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }
}

// === stub side: tokens and clusters ===

/// A stored join token (only its hash).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct JoinTokenRecord {
    /// Hex SHA-256 of the token.
    pub sha256: String,
    /// The cluster it enrols.
    pub cluster: ClusterId,
    /// RFC 3339.
    pub created_at: String,
    /// RFC 3339.
    pub expires_at: String,
    /// RFC 3339, once used.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub used_at: Option<String>,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct JoinTokensFile {
    #[serde(default)]
    tokens: Vec<JoinTokenRecord>,
}

/// A cluster known to the stub.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ClusterRecord {
    /// The cluster.
    pub id: ClusterId,
    /// RFC 3339.
    pub added_at: String,
    /// Serials of agent certificates issued for it.
    #[serde(default)]
    pub agent_serials: Vec<String>,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct ClustersFile {
    #[serde(default)]
    clusters: Vec<ClusterRecord>,
}

/// A new join token, shown once.
#[derive(Clone, Debug)]
pub struct JoinToken {
    /// The token (masked in `Debug`).
    pub token: Secret,
    /// The cluster.
    pub cluster: ClusterId,
    /// When it stops working.
    pub expires: SystemTime,
}

fn now_rfc3339() -> String {
    humantime::format_rfc3339_seconds(SystemTime::now()).to_string()
}

fn token_hash(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

/// Creates a one-time join token for `cluster`, valid for `ttl`, records the cluster,
/// and forgets tokens that expired more than a day ago.
pub fn create_join_token(
    state: &StateDir,
    cluster: &ClusterId,
    ttl: Duration,
) -> Result<JoinToken, EnrolError> {
    if ttl.is_zero() {
        return Err(EnrolError::BadRequest("--ttl must be more than 0".into()));
    }
    let raw: [u8; 32] = rand::random();
    let token = format!(
        "{TOKEN_PREFIX}{}",
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(raw)
    );
    let now = SystemTime::now();
    let expires = now + ttl;
    let lock = state.lock()?;
    let mut file: JoinTokensFile = state.read_yaml(JOIN_TOKENS_FILE)?;
    let day = Duration::from_secs(24 * 3600);
    file.tokens
        .retain(|t| humantime::parse_rfc3339(&t.expires_at).is_ok_and(|e| e + day > now));
    file.tokens.push(JoinTokenRecord {
        sha256: token_hash(&token),
        cluster: cluster.clone(),
        created_at: now_rfc3339(),
        expires_at: humantime::format_rfc3339_seconds(expires).to_string(),
        used_at: None,
    });
    state.write_yaml(JOIN_TOKENS_FILE, &file)?;
    drop(lock);
    add_cluster(state, cluster)?;
    Ok(JoinToken {
        token: Secret::new(token),
        cluster: cluster.clone(),
        expires,
    })
}

/// Records `cluster` in `clusters.yaml` (no-op if present).
pub fn add_cluster(state: &StateDir, cluster: &ClusterId) -> Result<(), EnrolError> {
    let _lock = state.lock()?;
    let mut file: ClustersFile = state.read_yaml(CLUSTERS_FILE)?;
    if !file.clusters.iter().any(|c| &c.id == cluster) {
        file.clusters.push(ClusterRecord {
            id: cluster.clone(),
            added_at: now_rfc3339(),
            agent_serials: Vec::new(),
        });
        state.write_yaml(CLUSTERS_FILE, &file)?;
    }
    Ok(())
}

/// Clusters recorded in the state directory.
pub fn known_clusters(state: &StateDir) -> Result<Vec<ClusterRecord>, EnrolError> {
    let file: ClustersFile = state.read_yaml(CLUSTERS_FILE)?;
    Ok(file.clusters)
}

/// Whether `cluster` was added with `causeway cluster add` (and not removed). Reads
/// `clusters.yaml` each time: the stub calls it per session and per unknown route.
pub fn is_enrolled(state: &StateDir, cluster: &ClusterId) -> bool {
    known_clusters(state).is_ok_and(|cs| cs.iter().any(|c| &c.id == cluster))
}

/// The session-time check of an agent certificate (already verified by rustls and
/// mapped to `cluster` by [`agent_cluster_from_cert`]): the cluster is still recorded
/// and this certificate's serial was issued to it by enrolment. A removed cluster's
/// agents, or a certificate minted outside enrolment, are refused.
pub fn check_agent_cert(
    state: &StateDir,
    cert: &rustls::pki_types::CertificateDer<'_>,
    cluster: &ClusterId,
) -> Result<(), String> {
    let serial = crate::pki::cert_serial(cert).map_err(|e| e.to_string())?;
    let clusters = known_clusters(state).map_err(|e| e.to_string())?;
    let Some(record) = clusters.iter().find(|c| &c.id == cluster) else {
        return Err(format!(
            "cluster {cluster} is not enrolled (or was removed)"
        ));
    };
    if !record.agent_serials.contains(&serial) {
        return Err(format!(
            "agent certificate {serial} was not issued to cluster {cluster} by enrolment"
        ));
    }
    Ok(())
}

/// Forgets `cluster`: its agents are refused at their next session, and its unused join
/// tokens stop working. Returns whether it was known.
pub fn remove_cluster(state: &StateDir, cluster: &ClusterId) -> Result<bool, EnrolError> {
    let _lock = state.lock()?;
    let mut tokens: JoinTokensFile = state.read_yaml(JOIN_TOKENS_FILE)?;
    tokens.tokens.retain(|t| &t.cluster != cluster);
    state.write_yaml(JOIN_TOKENS_FILE, &tokens)?;
    let mut file: ClustersFile = state.read_yaml(CLUSTERS_FILE)?;
    let before = file.clusters.len();
    file.clusters.retain(|c| &c.id != cluster);
    state.write_yaml(CLUSTERS_FILE, &file)?;
    Ok(file.clusters.len() != before)
}

/// The body of `POST /v1/enrol`.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EnrolRequest {
    /// The cluster the agent claims.
    pub cluster: ClusterId,
    /// The join token.
    pub token: String,
    /// PEM CSR for the agent's own key.
    pub csr: String,
}

/// The answer to a successful enrolment.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EnrolResponse {
    /// The cluster the certificate is bound to.
    pub cluster: ClusterId,
    /// The agent certificate (PEM).
    pub certificate: String,
    /// The stub CA (PEM).
    pub ca: String,
}

/// The stub's enrolment handler. Serialises enrolments in this process so a token is
/// consumed once; across processes the state directory's lock does, and in production
/// mode the state Secret's compare-and-swap ([`crate::hub_state::SecretState::update`]).
pub struct Enroller {
    state: StateDir,
    hub: Option<Arc<crate::hub_state::SecretState>>,
    ca: Arc<Ca>,
    cert_ttl: Duration,
    lock: tokio::sync::Mutex<()>,
}

impl Enroller {
    /// An enroller issuing agent certificates valid for `cert_ttl`.
    pub fn new(state: StateDir, ca: Arc<Ca>, cert_ttl: Duration) -> Self {
        Self {
            state,
            hub: None,
            ca,
            cert_ttl,
            lock: tokio::sync::Mutex::new(()),
        }
    }

    /// Consumes tokens in the hub's state Secret rather than the state directory.
    pub fn with_hub(mut self, hub: Arc<crate::hub_state::SecretState>) -> Self {
        self.hub = Some(hub);
        self
    }

    /// Handles a request body: checks and consumes the token, signs the CSR.
    pub async fn enrol(&self, body: &[u8]) -> Result<EnrolResponse, EnrolError> {
        if body.len() > MAX_REQUEST_BYTES {
            return Err(EnrolError::BadRequest(format!(
                "body larger than {MAX_REQUEST_BYTES} bytes"
            )));
        }
        let req: EnrolRequest =
            serde_json::from_slice(body).map_err(|e| EnrolError::BadRequest(e.to_string()))?;
        let _guard = self.lock.lock().await;
        let (serial, certificate) = match &self.hub {
            Some(hub) => hub.update(|state| self.consume(state, &req)).await?,
            None => self.consume(&self.state, &req)?,
        };
        tracing::info!(cluster = %req.cluster, serial = %serial, "agent enrolled");
        Ok(EnrolResponse {
            cluster: req.cluster,
            certificate,
            ca: self.ca.cert_pem(),
        })
    }

    /// Checks and consumes the token in `state`, signs the CSR and records its serial:
    /// (serial, certificate PEM).
    fn consume(
        &self,
        state: &StateDir,
        req: &EnrolRequest,
    ) -> Result<(String, String), EnrolError> {
        // Across processes too: `causeway cluster add` may be writing the same files.
        let _state_lock = state.lock()?;
        let mut file: JoinTokensFile = state.read_yaml(JOIN_TOKENS_FILE)?;
        let hash = token_hash(&req.token);
        let Some(record) = file.tokens.iter_mut().find(|t| t.sha256 == hash) else {
            return Err(EnrolError::InvalidToken);
        };
        if record.cluster != req.cluster {
            return Err(EnrolError::WrongCluster(req.cluster.to_string()));
        }
        if let Some(used) = &record.used_at {
            return Err(EnrolError::TokenUsed(used.clone()));
        }
        let expired = humantime::parse_rfc3339(&record.expires_at)
            .map(|e| e <= SystemTime::now())
            .unwrap_or(true);
        if expired {
            return Err(EnrolError::TokenExpired(record.expires_at.clone()));
        }
        let (certificate, serial, _) = self
            .ca
            .sign_agent_csr(&req.cluster, &req.csr, self.cert_ttl)
            .map_err(|e| EnrolError::BadRequest(e.to_string()))?;
        record.used_at = Some(now_rfc3339());
        // Consume the token before the certificate leaves the stub.
        state.write_yaml(JOIN_TOKENS_FILE, &file)?;
        let mut clusters: ClustersFile = state.read_yaml(CLUSTERS_FILE)?;
        match clusters.clusters.iter_mut().find(|c| c.id == req.cluster) {
            Some(c) => c.agent_serials.push(serial.clone()),
            None => clusters.clusters.push(ClusterRecord {
                id: req.cluster.clone(),
                added_at: now_rfc3339(),
                agent_serials: vec![serial.clone()],
            }),
        }
        state.write_yaml(CLUSTERS_FILE, &clusters)?;
        Ok((serial, certificate))
    }

    /// [`Enroller::enrol`] as an HTTP response: 200 with [`EnrolResponse`] JSON, or a
    /// `metav1.Status` (400/401/403/500).
    pub async fn handle(&self, body: &[u8]) -> Response<Full<Bytes>> {
        match self.enrol(body).await {
            Ok(resp) => {
                let json = serde_json::to_vec(&resp).unwrap_or_default();
                let mut r = Response::new(Full::new(Bytes::from(json)));
                r.headers_mut().insert(
                    http::header::CONTENT_TYPE,
                    http::HeaderValue::from_static("application/json"),
                );
                r
            }
            Err(e) => {
                let code = e.status();
                tracing::warn!(error = %e, code = code.as_u16(), "enrolment refused");
                let message = if code == StatusCode::INTERNAL_SERVER_ERROR {
                    "internal error during enrolment; see the stub's log".to_owned()
                } else {
                    e.to_string()
                };
                status_response(code, crate::status::reason_for(code), &message)
            }
        }
    }
}

// === agent side ===

/// An agent's credentials, as stored in its state directory.
#[derive(Clone, Debug)]
pub struct AgentCredentials {
    /// The cluster the certificate is bound to.
    pub cluster: ClusterId,
    /// Agent certificate (PEM).
    pub cert_pem: String,
    /// Agent key (PEM, masked in `Debug`).
    pub key_pem: Secret,
    /// Stub CA (PEM).
    pub ca_pem: String,
}

impl AgentCredentials {
    /// Loads credentials from `dir`; `Ok(None)` if none were stored yet.
    pub fn load(dir: &Path) -> Result<Option<Self>, EnrolError> {
        let (cert_p, key_p, ca_p) = (
            dir.join(AGENT_CERT_FILE),
            dir.join(AGENT_KEY_FILE),
            dir.join(AGENT_CA_FILE),
        );
        if !cert_p.exists() && !key_p.exists() {
            return Ok(None);
        }
        let read = |p: &PathBuf| {
            std::fs::read_to_string(p).map_err(|source| {
                EnrolError::State(StateError::Io {
                    path: p.clone(),
                    source,
                })
            })
        };
        let cert_pem = read(&cert_p)?;
        let key_pem = Secret::new(read(&key_p)?);
        let ca_pem = read(&ca_p)?;
        let cert = parse_cert_pem(&cert_pem)?
            .into_iter()
            .next()
            .ok_or_else(|| EnrolError::BadResponse(format!("{}: empty", cert_p.display())))?;
        let cluster = agent_cluster_from_cert(&cert)?;
        Ok(Some(Self {
            cluster,
            cert_pem,
            key_pem,
            ca_pem,
        }))
    }

    /// Stores the credentials in `dir` (key 0600).
    pub fn store(&self, dir: &Path) -> Result<(), EnrolError> {
        crate::state::create_private_dir(dir)?;
        write_atomic(
            &dir.join(AGENT_KEY_FILE),
            self.key_pem.expose().as_bytes(),
            0o600,
        )?;
        write_atomic(&dir.join(AGENT_CA_FILE), self.ca_pem.as_bytes(), 0o644)?;
        write_atomic(&dir.join(AGENT_CERT_FILE), self.cert_pem.as_bytes(), 0o644)?;
        Ok(())
    }

    /// TLS for dialling the stub with these credentials (trusts only the stub CA).
    pub fn client_config(&self) -> Result<rustls::ClientConfig, EnrolError> {
        Ok(agent_client_config(
            &self.ca_pem,
            &self.cert_pem,
            &self.key_pem,
        )?)
    }
}

/// Agent side: enrols at `stub_url` (`https://host:port`, the stub's agent listener)
/// for `cluster` with a join token, trusting the stub only if its CA matches `pin`.
/// Stores the result in `state_dir` and returns it.
pub async fn enrol_agent(
    stub_url: &str,
    cluster: &ClusterId,
    token: &Secret,
    pin: &CaPin,
    state_dir: &Path,
) -> Result<AgentCredentials, EnrolError> {
    let transport = |reason: String| EnrolError::Transport {
        url: stub_url.to_owned(),
        reason,
    };
    let HttpsUrl { addr, host, port } = stub_url
        .parse()
        .map_err(|e: HttpsUrlError| transport(e.to_string()))?;

    let key = KeyPair::generate().map_err(PkiError::from)?;
    let csr = CertificateParams::default()
        .serialize_request(&key)
        .map_err(PkiError::from)?
        .pem()
        .map_err(PkiError::from)?;
    let body = serde_json::to_vec(&EnrolRequest {
        cluster: cluster.clone(),
        token: token.expose().to_owned(),
        csr,
    })
    .map_err(|e| transport(e.to_string()))?;

    let tls = Arc::new(crate::pki::pinned_client_config(pin)?);
    let stream =
        crate::transport::connect_tls(&addr, &host, tls, crate::transport::SMALL_READ_BUFFER)
            .await
            .map_err(|e| transport(e.to_string()))?;
    let (mut sender, conn) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
            .await
            .map_err(|e| transport(e.to_string()))?;
    let conn_task = tokio::spawn(conn);
    let req = http::Request::post(ENROL_PATH)
        .header(http::header::HOST, format!("{host}:{port}"))
        .header(http::header::CONTENT_TYPE, "application/json")
        .body(Full::new(Bytes::from(body)))
        .map_err(|e| transport(e.to_string()))?;
    let resp = tokio::time::timeout(Duration::from_secs(30), sender.send_request(req))
        .await
        .map_err(|_| transport("no answer within 30 s".into()))?
        .map_err(|e| transport(e.to_string()))?;
    let status = resp.status();
    let bytes = Limited::new(resp.into_body(), MAX_RESPONSE_BYTES)
        .collect()
        .await
        .map_err(|e| transport(format!("reading the answer: {e}")))?
        .to_bytes();
    conn_task.abort();
    if status != StatusCode::OK {
        let message = serde_json::from_slice::<serde_json::Value>(&bytes)
            .ok()
            .and_then(|v| v["message"].as_str().map(str::to_owned))
            .unwrap_or_else(|| String::from_utf8_lossy(&bytes).chars().take(300).collect());
        return Err(EnrolError::Refused {
            code: status.as_u16(),
            message,
        });
    }
    let answer: EnrolResponse =
        serde_json::from_slice(&bytes).map_err(|e| EnrolError::BadResponse(e.to_string()))?;
    let creds = check_answer(answer, cluster, pin, &key)?;
    creds.store(state_dir)?;
    tracing::info!(cluster = %cluster, dir = %state_dir.display(), "enrolled with the stub");
    Ok(creds)
}

/// Checks the stub's answer: the CA matches the pin, the certificate names our cluster
/// and carries our public key.
fn check_answer(
    answer: EnrolResponse,
    cluster: &ClusterId,
    pin: &CaPin,
    key: &KeyPair,
) -> Result<AgentCredentials, EnrolError> {
    let bad = |s: &str| EnrolError::BadResponse(s.to_owned());
    let ca = parse_cert_pem(&answer.ca)?;
    if !ca
        .iter()
        .any(|c| CaPin::of_cert(c).is_ok_and(|p| &p == pin))
    {
        return Err(bad("the CA in the answer does not match --ca-hash"));
    }
    let cert = parse_cert_pem(&answer.certificate)?
        .into_iter()
        .next()
        .ok_or_else(|| bad("no certificate"))?;
    if &agent_cluster_from_cert(&cert)? != cluster {
        return Err(bad("the certificate is bound to another cluster"));
    }
    let (_, x) =
        X509Certificate::from_der(&cert).map_err(|e| EnrolError::BadResponse(e.to_string()))?;
    if x.public_key().raw != key.subject_public_key_info().as_slice() {
        return Err(bad("the certificate is not for our key"));
    }
    Ok(AgentCredentials {
        cluster: cluster.clone(),
        cert_pem: answer.certificate,
        key_pem: Secret::new(key.serialize_pem()),
        ca_pem: answer.ca,
    })
}

#[cfg(test)]
mod tests;
