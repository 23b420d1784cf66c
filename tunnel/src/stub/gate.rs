//! The steps before routing, as typed hand-offs: a request becomes
//! [`Authenticated`], then [`Authorized`], then [`Impersonated`]; routing takes only
//! the last, so skipping a step is a type error.

use std::net::SocketAddr;

use bytes::Bytes;
use http::{HeaderValue, Request, StatusCode, Uri, Version, header};
use hyper::body::Incoming;
use hyper::upgrade::OnUpgrade;
use prometheus::IntCounter;
use rustls::pki_types::CertificateDer;
use tokio::sync::mpsc;

use super::state::StubState;
use super::target::Target;
use crate::authz::Verb;
use crate::body::{self, ChannelBody, Tracked, TunnelBody};
use crate::identity::Identity;
use crate::protocol::{self, HDR_IDENTITY, HDR_UPGRADE};

/// One user connection: where it came from and its client certificate.
pub struct ConnInfo {
    /// Peer address.
    pub peer: SocketAddr,
    /// The verified client certificate, if one was sent.
    pub cert: Option<CertificateDer<'static>>,
}

/// A request refused by the stub; becomes a `metav1.Status` answer.
#[derive(Debug)]
pub struct Refusal {
    /// HTTP status.
    pub code: StatusCode,
    /// What kubectl prints.
    pub message: String,
}

impl Refusal {
    /// A refusal with `code` and `message`.
    pub fn new(code: StatusCode, message: impl Into<String>) -> Self {
        Refusal {
            code,
            message: message.into(),
        }
    }
}

/// A request whose client is known.
pub struct Authenticated {
    /// The request.
    pub req: Request<Incoming>,
    /// Who sent it.
    pub identity: Identity,
}

/// A request allowed on its cluster.
pub struct Authorized {
    /// The request.
    pub req: Request<Incoming>,
    /// Who sent it.
    pub identity: Identity,
    /// Where it goes.
    pub target: Target,
    /// Its Kubernetes verb (exec/attach/port-forward are `create`).
    pub verb: Verb,
}

/// A request ready for its cluster: the user's credentials and every internal or
/// hop-by-hop header gone, the authenticated identity in [`HDR_IDENTITY`] for the agent
/// to impersonate (the agent sets the `Impersonate-*` headers, see
/// [`crate::impersonate`]), addressed to `https://<cluster><path>`.
pub struct Impersonated {
    /// The request as the agent gets it.
    pub req: Request<TunnelBody>,
    /// Where it goes.
    pub target: Target,
    /// The client's side of an upgrade (exec, attach, port-forward), if it asked for one.
    pub upgrade: Option<ClientUpgrade>,
}

/// The client's side of an upgrade request: spliced to the stream only after the agent
/// reports a real `101`.
pub struct ClientUpgrade {
    /// Resolves to the client's connection once the `101` went out.
    pub on_upgrade: OnUpgrade,
    /// Feeds the stream's request body (the upgraded byte pipe toward the cluster).
    pub pipe: mpsc::Sender<Bytes>,
}

/// Establishes who sent `req`: a client certificate from the stub CA or a bearer
/// token. Client impersonation headers are refused here (`kubectl --as`).
pub fn authenticate(
    shared: &StubState,
    conn: &ConnInfo,
    req: Request<Incoming>,
) -> Result<Authenticated, Refusal> {
    let _span = tracing::debug_span!("tunnel.authn").entered();
    let identity =
        crate::authn::authenticate(conn.cert.as_ref(), req.headers(), &shared.users.current())
            .map_err(|e| Refusal::new(StatusCode::UNAUTHORIZED, e.to_string()))?;
    crate::impersonate::reject_client_impersonation(req.headers())
        .map_err(|e| Refusal::new(StatusCode::FORBIDDEN, e.to_string()))?;
    Ok(Authenticated { req, identity })
}

/// Checks the access policy (the policy file merged with the rules recorded by
/// `causeway user add`) for the request's cluster and verb.
pub fn authorize(
    shared: &StubState,
    a: Authenticated,
    target: Target,
    verb: Verb,
) -> Result<Authorized, Refusal> {
    let _span = tracing::debug_span!("tunnel.authz", user = %a.identity.user, cluster = %target.cluster, verb = verb.as_str()).entered();
    let users = shared.users.current();
    crate::authz::authorize(
        &shared.policy(),
        users.recorded_policy(),
        &a.identity,
        &target.cluster,
        verb,
    )
    .map_err(|e| Refusal::new(StatusCode::FORBIDDEN, e.to_string()))?;
    Ok(Authorized {
        req: a.req,
        identity: a.identity,
        target,
        verb,
    })
}

/// Hands the agent who to impersonate: strips the user's credentials, internal and
/// hop-by-hop headers, sets [`HDR_IDENTITY`] and the `Audit-ID`, and addresses the
/// request to its cluster. An upgrade request's body becomes the byte pipe
/// ([`ClientUpgrade`]); any other body is counted into `bytes_up`.
pub fn impersonate(
    a: Authorized,
    audit_id: &str,
    bytes_up: IntCounter,
) -> Result<Impersonated, Refusal> {
    let Authorized {
        mut req,
        identity,
        target,
        verb: _,
    } = a;
    let upgrade_to = protocol::requested_upgrade(req.headers());
    let on_upgrade = upgrade_to.as_ref().map(|_| hyper::upgrade::on(&mut req));
    let (mut parts, client_body) = req.into_parts();
    protocol::strip_internal(&mut parts.headers);
    protocol::strip_hop_by_hop(&mut parts.headers);
    // The user's credentials are for the stub only; the agent sets its own.
    parts.headers.remove(header::AUTHORIZATION);
    parts
        .headers
        .insert(HDR_IDENTITY, protocol::encode_identity(&identity));
    if let Ok(v) = HeaderValue::from_str(audit_id) {
        parts.headers.insert("audit-id", v);
    }
    parts.uri = format!("https://{}{}", target.cluster, target.path_and_query)
        .parse::<Uri>()
        .map_err(|e| Refusal::new(StatusCode::BAD_REQUEST, format!("bad request URI: {e}")))?;
    parts.version = Version::HTTP_2;
    let (body, upgrade) = match (upgrade_to, on_upgrade) {
        (Some(proto), Some(on_upgrade)) => {
            parts.headers.insert(HDR_UPGRADE, proto);
            // The stream's body is the upgraded byte pipe, not the (empty) HTTP body:
            // a `Content-Length: 0` from the client would end it after zero bytes.
            parts.headers.remove(header::CONTENT_LENGTH);
            let (pipe, ch) = ChannelBody::new(crate::upgrade::PIPE_DEPTH);
            (body::boxed(ch), Some(ClientUpgrade { on_upgrade, pipe }))
        }
        _ => (
            body::boxed(Tracked::new(client_body, (), move |n| {
                bytes_up.inc_by(n as u64)
            })),
            None,
        ),
    };
    Ok(Impersonated {
        req: Request::from_parts(parts, body),
        target,
        upgrade,
    })
}
