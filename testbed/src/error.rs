//! What can go wrong while bringing a testbed up or down.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

/// Every failure of the testbed, each naming what failed and how to fix it.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TestbedError {
    /// A cluster name is not a DNS label.
    #[error("bad cluster name {name:?} in --clusters")]
    ClusterName {
        /// The name as given.
        name: String,
        /// Why it is not a valid cluster ID.
        #[source]
        source: causeway_model::ClusterIdError,
    },
    /// A capacity or count option is malformed.
    #[error("bad {option} {value:?}: {reason}")]
    BadOption {
        /// The option, as the CLI spells it (`--node-memory`).
        option: &'static str,
        /// The value given.
        value: String,
        /// Why it was rejected and what would be accepted.
        reason: String,
    },
    /// A required binary or file is not where the testbed looks for it.
    #[error(
        "{name} not found (looked in {searched}): run `testbed/build-bins.sh` in the repository \
         (or set CAUSEWAY_BIN_DIR to a directory holding it)"
    )]
    MissingBinary {
        /// The binary or file missing.
        name: String,
        /// Where it was looked for.
        searched: String,
    },
    /// A port the testbed needs is taken.
    #[error("{addr} is in use: run `causeway testbed down` or pick --base-address")]
    PortInUse {
        /// The address and port.
        addr: SocketAddr,
    },
    /// A file or directory operation failed.
    #[error("{what} {}", path.display())]
    Io {
        /// What was being done (`write`, `create directory`, …).
        what: &'static str,
        /// The path.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// A process could not be started.
    #[error("cannot start {component} of cluster {cluster} ({})", binary.display())]
    Spawn {
        /// The cluster.
        cluster: String,
        /// The component (`etcd`, `kube-apiserver`, …).
        component: &'static str,
        /// The binary.
        binary: PathBuf,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// A process exited while the testbed was starting.
    #[error("{component} of cluster {cluster} exited ({status}); log {}:\n{tail}", log.display())]
    Exited {
        /// The cluster.
        cluster: String,
        /// The component.
        component: &'static str,
        /// Its exit status.
        status: String,
        /// Its log file.
        log: PathBuf,
        /// The last lines of its log.
        tail: String,
    },
    /// Something did not become ready in time.
    #[error("cluster {cluster}: {what} not ready after {after:?} (last: {last}); logs in {}", logs.display())]
    Timeout {
        /// The cluster.
        cluster: String,
        /// What was awaited.
        what: String,
        /// How long it was awaited.
        after: Duration,
        /// The last error or state seen.
        last: String,
        /// Where the logs are.
        logs: PathBuf,
    },
    /// An API call to a testbed cluster failed.
    #[error("cluster {cluster}: {what}: {reason}")]
    Api {
        /// The cluster.
        cluster: String,
        /// The call.
        what: String,
        /// What went wrong.
        reason: String,
    },
    /// Certificates or keys could not be made or read.
    #[error("certificates for cluster {cluster}: {reason}")]
    Pki {
        /// The cluster.
        cluster: String,
        /// What went wrong.
        reason: String,
    },
    /// The state file of a testbed is unreadable.
    #[error("testbed state {}: {reason}", path.display())]
    State {
        /// The state file.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// No testbed is recorded in the state directory.
    #[error("no testbed is up in {} (no state.json): run `causeway testbed up` first", dir.display())]
    NotUp {
        /// The state directory.
        dir: PathBuf,
    },
    /// The named cluster is not part of the testbed.
    #[error("no cluster {name:?} in the testbed (clusters: {known})")]
    UnknownCluster {
        /// The name asked for.
        name: String,
        /// The clusters there are.
        known: String,
    },
}

impl TestbedError {
    /// The message with every cause, `: `-separated (what `anyhow`'s `{:#}` prints).
    pub fn chain(&self) -> String {
        let mut out = self.to_string();
        let mut cause = std::error::Error::source(self);
        while let Some(c) = cause {
            out.push_str(": ");
            out.push_str(&c.to_string());
            cause = c.source();
        }
        out
    }

    pub(crate) fn io(
        what: &'static str,
        path: impl Into<PathBuf>,
    ) -> impl FnOnce(std::io::Error) -> Self {
        let path = path.into();
        move |source| Self::Io { what, path, source }
    }
}
