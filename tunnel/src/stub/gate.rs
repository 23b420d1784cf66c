//! The checks before routing, as typed hand-offs: a request becomes
//! [`Authenticated`], then [`Authorized`]; forwarding takes only the latter, so
//! skipping a step is a type error.

use std::net::SocketAddr;

use http::{Request, StatusCode};
use hyper::body::Incoming;
use rustls::pki_types::CertificateDer;

use super::route::Target;
use super::state::StubState;
use crate::authz::Verb;
use crate::identity::Identity;

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
        &shared.policy,
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
