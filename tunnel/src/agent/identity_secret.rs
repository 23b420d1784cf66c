//! The agent's enrolled identity kept in a Secret of its own cluster
//! (`causeway agent --identity-secret NAME`), so every replica of the agent shares the one
//! identity a one-time join token can buy.
//!
//! At start ([`obtain`]), with the agent's own client of its API server (the
//! [`Upstream`] pool and the ServiceAccount token it forwards with, no impersonation):
//! 1. `GET` the Secret. If it holds `agent.crt`, `agent.key` and `ca.crt` for this cluster,
//!    they are written into the state directory and used; nothing is enrolled.
//! 2. Else, credentials already in the state directory (an agent that enrolled but could
//!    not publish, then restarted) are published.
//! 3. Else the agent enrols with the join token and creates the Secret. Create is
//!    first-wins: on 409 the Secret another replica made is read and used instead.
//! 4. A replica refused with "token already used" (another replica enrolled with it)
//!    polls for the Secret with backoff, for at most [`WAIT_FOR_SECRET`], and uses it.
//!
//! A Secret that exists but is incomplete or for another cluster is replaced by a new
//! enrolment with `PUT` on its `resourceVersion` (compare-and-swap; on 409 it is read
//! again). The agent does not renew its certificate today, so start-up is the only writer.
//! Key material is never logged: only the Secret's name, the cluster and the
//! certificate's serial.

use std::path::Path;
use std::time::Duration;

use base64::Engine;
use bytes::Bytes;
use causeway_model::cluster::ClusterId;
use http::{HeaderValue, Method, Request, StatusCode, header};
use http_body_util::BodyExt;
use serde_json::{Value, json};
use tokio::time::Instant;

use super::forward::{TokenError, TokenSource};
use super::upstream::{Upstream, UpstreamConfig, UpstreamConfigError, UpstreamError};
use crate::body;
use crate::enrol::{
    AGENT_CA_FILE, AGENT_CERT_FILE, AGENT_KEY_FILE, AgentCredentials, EnrolError, enrol_agent,
};
use crate::identity::Secret;
use crate::pki::{CaPin, agent_cluster_from_cert, cert_serial, parse_cert_pem};

/// How long a replica refused with "token already used" waits for the Secret.
pub const WAIT_FOR_SECRET: Duration = Duration::from_secs(300);
/// First and largest pause between two reads of the Secret while waiting.
const POLL_FIRST: Duration = Duration::from_millis(500);
const POLL_MAX: Duration = Duration::from_secs(10);
/// The longest one request to the API server may take.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// Largest Secret read (Secrets are at most 1 MiB).
const MAX_BODY: usize = 2 << 20;
/// Rounds of create / read / compare-and-swap before giving up.
const PUBLISH_ROUNDS: usize = 5;
/// Label on the Secret: the cluster its identity is bound to.
pub const LABEL_CLUSTER: &str = "causeway.dev/cluster";

/// Which Secret holds the identity.
#[derive(Clone, Debug)]
pub struct IdentitySecret {
    /// Namespace (the agent's own).
    pub namespace: String,
    /// Name.
    pub name: String,
}

/// What the agent needs to enrol when the Secret has no identity yet.
#[derive(Clone, Debug)]
pub struct Enrolment {
    /// The stub's agent listener, `https://host:port`.
    pub stub_url: String,
    /// The one-time join token.
    pub token: Secret,
    /// The stub CA's pin.
    pub pin: CaPin,
}

/// Why the identity could not be read, made or shared.
#[derive(Debug, thiserror::Error)]
pub enum IdentitySecretError {
    /// The agent's ServiceAccount token is unreadable.
    #[error(transparent)]
    Token(#[from] TokenError),
    /// The API-server client could not be built or reached.
    #[error(transparent)]
    Upstream(#[from] UpstreamError),
    /// The namespace could not be found out.
    #[error("the agent's namespace")]
    Namespace(#[from] UpstreamConfigError),
    /// No answer in time.
    #[error("{method} {path}: no answer from the API server within {timeout:?}")]
    Timeout {
        /// Method.
        method: Method,
        /// Path.
        path: String,
        /// The limit.
        timeout: Duration,
    },
    /// The API server refused or failed.
    #[error("{method} {path}: {status}: {message}")]
    Api {
        /// Method.
        method: Method,
        /// Path.
        path: String,
        /// The answer's status.
        status: StatusCode,
        /// The `metav1.Status` message.
        message: String,
    },
    /// The answer was not what was expected.
    #[error("{0}")]
    Unexpected(String),
    /// Enrolment failed.
    #[error("enrolment")]
    Enrol(#[from] EnrolError),
    /// No identity in the Secret and no token to enrol with.
    #[error(
        "Secret {namespace}/{name} holds no identity for cluster {cluster} and there is no join token \
         (--token and --ca-hash from `causeway cluster add {cluster}`) to enrol with"
    )]
    NoToken {
        /// Namespace.
        namespace: String,
        /// Name.
        name: String,
        /// The cluster.
        cluster: ClusterId,
    },
    /// Another replica used the token but its Secret did not appear.
    #[error(
        "the join token was already used (by another replica?) and Secret {namespace}/{name} did not \
         appear within {waited:?}; restore the Secret or create a new token with `causeway cluster add`"
    )]
    WaitedInVain {
        /// Namespace.
        namespace: String,
        /// Name.
        name: String,
        /// How long.
        waited: Duration,
    },
    /// Create / compare-and-swap kept losing.
    #[error("Secret {0}: still conflicting after {PUBLISH_ROUNDS} rounds")]
    Conflict(String),
}

/// The agent's default namespace: the kubeconfig context's (`default` if it names none),
/// or in a pod its own (the ServiceAccount's `namespace` file).
pub async fn default_namespace(kubeconfig: Option<&Path>) -> Result<String, IdentitySecretError> {
    let cfg = match kubeconfig {
        Some(path) => {
            let err = |source| UpstreamConfigError::Kubeconfig {
                path: path.to_owned(),
                source,
            };
            let kc = kube::config::Kubeconfig::read_from(path).map_err(err)?;
            kube::Config::from_custom_kubeconfig(kc, &Default::default())
                .await
                .map_err(err)?
        }
        None => kube::Config::incluster().map_err(UpstreamConfigError::from)?,
    };
    Ok(cfg.default_namespace)
}

/// What the Secret holds.
enum Stored {
    /// No such Secret.
    Absent,
    /// It exists (at `resource_version`); `creds` when it holds a usable identity for
    /// this cluster, else why not.
    Present {
        resource_version: String,
        creds: Result<AgentCredentials, String>,
    },
}

/// The agent as itself (its ServiceAccount token, no impersonation) on its API server.
struct Client<'a> {
    upstream: Upstream,
    token: &'a TokenSource,
    secret: &'a IdentitySecret,
    cluster: &'a ClusterId,
}

impl Client<'_> {
    fn collection(&self) -> String {
        format!("/api/v1/namespaces/{}/secrets", self.secret.namespace)
    }

    fn item(&self) -> String {
        format!("{}/{}", self.collection(), self.secret.name)
    }

    fn display(&self) -> String {
        format!("{}/{}", self.secret.namespace, self.secret.name)
    }

    async fn send(
        &self,
        method: Method,
        path: &str,
        json_body: Option<Value>,
    ) -> Result<(StatusCode, Value), IdentitySecretError> {
        let base = self.upstream.base();
        let uri = format!(
            "{}://{}{path}",
            base.scheme_str().unwrap_or("https"),
            base.authority().map(|a| a.as_str()).unwrap_or("")
        );
        let token = self.token.get()?;
        let bearer = HeaderValue::from_str(&format!("Bearer {token}"))
            .map_err(|e| IdentitySecretError::Unexpected(e.to_string()))?;
        let mut req = Request::builder()
            .method(method.clone())
            .uri(&uri)
            .version(http::Version::HTTP_2)
            .header(header::ACCEPT, "application/json")
            .header(header::AUTHORIZATION, bearer);
        let req_body = match json_body {
            Some(v) => {
                req = req.header(header::CONTENT_TYPE, "application/json");
                body::full(v.to_string())
            }
            None => body::empty(),
        };
        let req = req
            .body(req_body)
            .map_err(|e| IdentitySecretError::Unexpected(e.to_string()))?;
        let exchange = async {
            let (resp, _slot) = self.upstream.send(req).await?;
            let status = resp.status();
            let bytes = http_body_util::Limited::new(resp.into_body(), MAX_BODY)
                .collect()
                .await
                .map_err(|e| IdentitySecretError::Unexpected(format!("reading {path}: {e}")))?
                .to_bytes();
            Ok::<(StatusCode, Bytes), IdentitySecretError>((status, bytes))
        };
        let (status, bytes) = tokio::time::timeout(REQUEST_TIMEOUT, exchange)
            .await
            .map_err(|_| IdentitySecretError::Timeout {
                method: method.clone(),
                path: path.to_owned(),
                timeout: REQUEST_TIMEOUT,
            })??;
        let value: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
        Ok((status, value))
    }

    fn refused(method: Method, path: &str, status: StatusCode, v: &Value) -> IdentitySecretError {
        IdentitySecretError::Api {
            method,
            path: path.to_owned(),
            status,
            message: v["message"].as_str().unwrap_or("").to_owned(),
        }
    }

    /// Reads the Secret.
    async fn read(&self) -> Result<Stored, IdentitySecretError> {
        let path = self.item();
        let (status, v) = self.send(Method::GET, &path, None).await?;
        match status {
            StatusCode::NOT_FOUND => Ok(Stored::Absent),
            s if s.is_success() => {
                let resource_version = v["metadata"]["resourceVersion"]
                    .as_str()
                    .ok_or_else(|| {
                        IdentitySecretError::Unexpected(format!("{path}: no resourceVersion"))
                    })?
                    .to_owned();
                Ok(Stored::Present {
                    resource_version,
                    creds: credentials_from(&v, self.cluster),
                })
            }
            s => Err(Self::refused(Method::GET, &path, s, &v)),
        }
    }

    fn object(&self, creds: &AgentCredentials, resource_version: Option<&str>) -> Value {
        let b64 = |s: &str| base64::engine::general_purpose::STANDARD.encode(s.as_bytes());
        let mut metadata = json!({
            "name": self.secret.name,
            "namespace": self.secret.namespace,
            "labels": {
                "app.kubernetes.io/managed-by": "causeway-agent",
                LABEL_CLUSTER: self.cluster.to_string(),
            },
        });
        if let Some(rv) = resource_version {
            metadata["resourceVersion"] = json!(rv);
        }
        json!({
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": metadata,
            "type": "Opaque",
            "data": {
                AGENT_CERT_FILE: b64(&creds.cert_pem),
                AGENT_KEY_FILE: b64(creds.key_pem.expose()),
                AGENT_CA_FILE: b64(&creds.ca_pem),
            },
        })
    }

    /// Puts `creds` in the Secret: create (first wins) or compare-and-swap over an
    /// unusable one at `resource_version`. Returns the identity to use: ours, or the
    /// one another replica stored first.
    async fn publish(
        &self,
        creds: AgentCredentials,
        mut resource_version: Option<String>,
    ) -> Result<AgentCredentials, IdentitySecretError> {
        for _ in 0..PUBLISH_ROUNDS {
            let (method, path) = match &resource_version {
                None => (Method::POST, self.collection()),
                Some(_) => (Method::PUT, self.item()),
            };
            let obj = self.object(&creds, resource_version.as_deref());
            let (status, v) = self.send(method.clone(), &path, Some(obj)).await?;
            if status.is_success() {
                tracing::info!(
                    secret = %self.display(),
                    cluster = %self.cluster,
                    serial = %serial_of(&creds),
                    "agent identity stored in the Secret"
                );
                return Ok(creds);
            }
            // 409: created by another replica first, or changed since we read it.
            // 404: deleted since we read it.
            if status != StatusCode::CONFLICT && status != StatusCode::NOT_FOUND {
                return Err(Self::refused(method, &path, status, &v));
            }
            match self.read().await? {
                Stored::Absent => resource_version = None,
                Stored::Present {
                    creds: Ok(theirs), ..
                } => {
                    tracing::info!(
                        secret = %self.display(),
                        serial = %serial_of(&theirs),
                        "another replica stored the identity first; using it"
                    );
                    return Ok(theirs);
                }
                Stored::Present {
                    resource_version: rv,
                    ..
                } => resource_version = Some(rv),
            }
        }
        Err(IdentitySecretError::Conflict(self.display()))
    }

    /// Polls the Secret until it holds an identity, for at most [`WAIT_FOR_SECRET`].
    async fn wait_for_identity(&self) -> Result<AgentCredentials, IdentitySecretError> {
        let started = Instant::now();
        let mut pause = POLL_FIRST;
        tracing::info!(
            secret = %self.display(),
            at_most = ?WAIT_FOR_SECRET,
            "the join token was already used; waiting for the replica that enrolled to store the identity"
        );
        loop {
            match self.read().await {
                Ok(Stored::Present { creds: Ok(c), .. }) => {
                    tracing::info!(
                        secret = %self.display(),
                        serial = %serial_of(&c),
                        waited = ?started.elapsed(),
                        "identity found in the Secret"
                    );
                    return Ok(c);
                }
                Ok(Stored::Present {
                    creds: Err(why), ..
                }) => {
                    tracing::debug!(secret = %self.display(), reason = %why, "Secret not usable yet")
                }
                Ok(Stored::Absent) => tracing::debug!(secret = %self.display(), "no Secret yet"),
                Err(e) => {
                    tracing::warn!(secret = %self.display(), error = %e, "cannot read the Secret")
                }
            }
            if started.elapsed() + pause > WAIT_FOR_SECRET {
                return Err(IdentitySecretError::WaitedInVain {
                    namespace: self.secret.namespace.clone(),
                    name: self.secret.name.clone(),
                    waited: started.elapsed(),
                });
            }
            tokio::time::sleep(pause).await;
            pause = (pause * 2).min(POLL_MAX);
        }
    }
}

/// The certificate's serial, for logs (`?` if it cannot be read).
fn serial_of(creds: &AgentCredentials) -> String {
    parse_cert_pem(&creds.cert_pem)
        .ok()
        .and_then(|c| c.into_iter().next())
        .and_then(|c| cert_serial(&c).ok())
        .unwrap_or_else(|| "?".into())
}

/// The identity in a Secret object, if it is complete, parses and is bound to `cluster`.
/// The reason never quotes the data.
fn credentials_from(secret: &Value, cluster: &ClusterId) -> Result<AgentCredentials, String> {
    let field = |key: &str| -> Result<String, String> {
        let b64 = secret["data"][key]
            .as_str()
            .ok_or_else(|| format!("no {key}"))?;
        let raw = base64::engine::general_purpose::STANDARD
            .decode(b64)
            .map_err(|_| format!("{key} is not base64"))?;
        String::from_utf8(raw).map_err(|_| format!("{key} is not PEM text"))
    };
    let cert_pem = field(AGENT_CERT_FILE)?;
    let key_pem = Secret::new(field(AGENT_KEY_FILE)?);
    let ca_pem = field(AGENT_CA_FILE)?;
    let cert = parse_cert_pem(&cert_pem)
        .map_err(|e| format!("{AGENT_CERT_FILE}: {e}"))?
        .into_iter()
        .next()
        .ok_or_else(|| format!("{AGENT_CERT_FILE} holds no certificate"))?;
    let bound = agent_cluster_from_cert(&cert).map_err(|e| format!("{AGENT_CERT_FILE}: {e}"))?;
    if &bound != cluster {
        return Err(format!("its certificate is bound to cluster {bound}"));
    }
    let creds = AgentCredentials {
        cluster: bound,
        cert_pem,
        key_pem,
        ca_pem,
    };
    // Builds the TLS client: the key must parse and the CA must be a certificate.
    creds
        .client_config()
        .map_err(|e| format!("unusable certificate, key or CA: {e}"))?;
    Ok(creds)
}

/// Whether the stub refused enrolment because the token was used before.
fn token_already_used(e: &EnrolError) -> bool {
    matches!(e, EnrolError::Refused { code: 403, message } if message.contains("already used"))
}

/// The identity for `cluster`, shared through the Secret (see the module's steps); it is
/// also written into `state_dir`.
pub async fn obtain(
    secret: &IdentitySecret,
    cluster: &ClusterId,
    state_dir: &Path,
    enrolment: Option<&Enrolment>,
    upstream: UpstreamConfig,
    token: &TokenSource,
) -> Result<AgentCredentials, IdentitySecretError> {
    let client = Client {
        upstream: Upstream::new(upstream)?,
        token,
        secret,
        cluster,
    };
    let creds = match client.read().await? {
        Stored::Present { creds: Ok(c), .. } => {
            tracing::info!(
                secret = %client.display(),
                cluster = %cluster,
                serial = %serial_of(&c),
                "agent identity read from the Secret"
            );
            c
        }
        stored => {
            let resource_version = match stored {
                Stored::Present {
                    resource_version,
                    creds: Err(why),
                } => {
                    tracing::warn!(
                        secret = %client.display(),
                        reason = %why,
                        "the Secret holds no usable identity; it will be replaced"
                    );
                    Some(resource_version)
                }
                _ => None,
            };
            let local = AgentCredentials::load(state_dir)?.filter(|c| &c.cluster == cluster);
            let ours = match local {
                Some(c) => {
                    tracing::info!(dir = %state_dir.display(), "publishing the identity of the state directory");
                    Some(c)
                }
                None => {
                    let Some(e) = enrolment else {
                        return Err(IdentitySecretError::NoToken {
                            namespace: secret.namespace.clone(),
                            name: secret.name.clone(),
                            cluster: cluster.clone(),
                        });
                    };
                    match enrol_agent(&e.stub_url, cluster, &e.token, &e.pin, state_dir).await {
                        Ok(c) => Some(c),
                        Err(err) if token_already_used(&err) => None,
                        Err(err) => return Err(err.into()),
                    }
                }
            };
            match ours {
                Some(c) => client.publish(c, resource_version).await?,
                None => client.wait_for_identity().await?,
            }
        }
    };
    creds.store(state_dir)?;
    Ok(creds)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_used_token_means_wait() {
        let used = EnrolError::Refused {
            code: 403,
            message:
                "the join token was already used at 2026-11-27T22:00:00Z; join tokens work once"
                    .into(),
        };
        assert!(token_already_used(&used));
        let other = EnrolError::Refused {
            code: 403,
            message: "the join token is for another cluster than \"a\"".into(),
        };
        assert!(!token_already_used(&other));
        assert!(!token_already_used(&EnrolError::InvalidToken));
    }

    #[test]
    fn an_incomplete_secret_is_not_an_identity_and_says_why_without_data() {
        let cluster: ClusterId = "idc-bj".parse().unwrap();
        let v = json!({"data": {"agent.crt": "bm90IGEgY2VydA==", "agent.key": "c2VjcmV0LWtleQ=="}});
        let why = credentials_from(&v, &cluster).err().unwrap();
        assert_eq!(why, "no ca.crt");
        let v = json!({"data": {"agent.crt": "bm90IGEgY2VydA==", "agent.key": "c2VjcmV0LWtleQ==", "ca.crt": "eA=="}});
        let why = credentials_from(&v, &cluster).err().unwrap();
        assert!(
            !why.contains("secret-key") && !why.contains("c2VjcmV0"),
            "{why}"
        );
    }
}
