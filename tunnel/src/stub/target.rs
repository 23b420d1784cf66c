//! What a request addresses: `/clusters/<id>/<Kubernetes API path>` → the cluster ID
//! and the path the cluster's API server sees.
//!
//! Read once, as the request arrives: its audit event needs the verb and object even
//! when the request is refused (kube-apiserver likewise reads its request info before
//! authentication). Nothing is decided on it before the gate has authenticated the
//! request; an unroutable path is refused (404) after authentication.

use causeway_model::cluster::ClusterId;

/// Prefix of every path the stub forwards.
pub const PREFIX: &str = "/clusters/";

/// Where a request goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    /// The cluster.
    pub cluster: ClusterId,
    /// The Kubernetes path (starting with `/`), query included when there was one.
    pub path_and_query: String,
    /// The Kubernetes path alone.
    pub path: String,
}

/// Why a path addresses no cluster.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TargetError {
    /// Not under `/clusters/`.
    #[error("the path must be /clusters/<cluster-id>/<Kubernetes API path>")]
    NotRouted,
    /// The path is unsafe (dot segments, encoded separators…).
    #[error("refused path: {0}")]
    Unsafe(#[from] crate::authz::PathError),
    /// The cluster segment is not a valid cluster ID.
    #[error("{0}")]
    BadCluster(#[from] causeway_model::cluster::ClusterIdError),
}

/// Splits a raw request path (not decoded) and query into a [`Target`]. The whole raw
/// path is checked first, so `/clusters/a/../b/…` and `%2F` tricks never reach a cluster.
pub fn parse(raw_path: &str, query: Option<&str>) -> Result<Target, TargetError> {
    crate::authz::check_request_path(raw_path)?;
    let rest = raw_path
        .strip_prefix(PREFIX)
        .ok_or(TargetError::NotRouted)?;
    let (id, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    let cluster = ClusterId::new(id)?;
    let path_and_query = match query {
        Some(q) => format!("{path}?{q}"),
        None => path.to_owned(),
    };
    Ok(Target {
        cluster,
        path_and_query,
        path: path.to_owned(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes_cluster_paths() {
        let t = parse("/clusters/idc-bj/api/v1/pods", Some("watch=1")).unwrap();
        assert_eq!(t.cluster.as_str(), "idc-bj");
        assert_eq!(t.path_and_query, "/api/v1/pods?watch=1");
        let t = parse("/clusters/idc-bj", None).unwrap();
        assert_eq!(t.path, "/");
        let t = parse("/clusters/idc-bj/", None).unwrap();
        assert_eq!(t.path, "/");
    }

    #[test]
    fn refuses_tricks() {
        for bad in [
            "/api/v1/pods",
            "/clusters/a/../b/api",
            "/clusters/a%2Fb/api",
            "/clusters/a/api%2f..%2fx",
            "/clusters/A/api",
            "/clusters//api",
            "/clusters/a/%2e%2e/b",
            "/clusters/a\\b/api",
        ] {
            assert!(parse(bad, None).is_err(), "{bad}");
        }
    }
}
