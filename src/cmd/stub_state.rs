//! What `causeway cluster` and `causeway user` share: both edit the stub's state, named
//! once (before or after the subcommand) by `--state-dir` (the embedded mode), or by
//! `--hub-kubeconfig`/`--hub-in-cluster` (production mode: the Secret
//! `causeway-stub-state` in the hub namespace, edited by compare-and-swap, which the
//! running stubs watch).

use std::path::PathBuf;

use causeway_tunnel::hub_state::SecretState;
use causeway_tunnel::state::{self, StateDir};

/// `--state-dir` or the hub, and one subcommand `C` of a command that edits the stub's state.
#[derive(clap::Args, Debug)]
pub struct StateDirArgs<C: clap::Subcommand> {
    /// The stub's state directory (CA, users, tokens).
    #[arg(long, env = "CAUSEWAY_STATE_DIR", global = true,
          default_value_os_t = state::default_state_dir())]
    pub state_dir: PathBuf,
    /// Production mode: edit the stub's state in the Secret causeway-stub-state of the hub
    /// cluster this kubeconfig names (instead of --state-dir).
    #[arg(
        long,
        value_name = "FILE",
        env = "CAUSEWAY_HUB_KUBECONFIG",
        global = true
    )]
    pub hub_kubeconfig: Option<PathBuf>,
    /// Production mode inside a pod of the hub cluster, with the pod's ServiceAccount.
    #[arg(long, global = true, conflicts_with = "hub_kubeconfig")]
    pub hub_in_cluster: bool,
    /// The hub namespace [default: the kubeconfig context's namespace; in a pod, its own].
    #[arg(long, value_name = "NS", env = "CAUSEWAY_HUB_NAMESPACE", global = true)]
    pub hub_namespace: Option<String>,
    /// What to do there.
    #[command(subcommand)]
    pub command: C,
}

impl<C: clap::Subcommand> StateDirArgs<C> {
    /// Opens the state these options name.
    pub async fn open(&self) -> anyhow::Result<Store> {
        let hub = super::hub_args::HubArgs {
            hub_kubeconfig: self.hub_kubeconfig.clone(),
            hub_in_cluster: self.hub_in_cluster,
            hub_namespace: self.hub_namespace.clone(),
        };
        Ok(match hub.connect().await? {
            Some(hub) => Store::Hub(
                SecretState::open(hub, causeway_tunnel::hub_state::SECRET_NAME, None).await?,
            ),
            None => Store::Dir(StateDir::open(&self.state_dir)?),
        })
    }
}

/// The stub's state: a directory, or the hub's Secret.
pub enum Store {
    /// `--state-dir`.
    Dir(StateDir),
    /// The Secret in the hub namespace.
    Hub(SecretState),
}

impl Store {
    /// Runs a read-modify-write on the state. With the hub, `f` runs on a copy of the
    /// Secret's state and may run again when another writer came first.
    pub async fn update<T>(
        &self,
        f: impl FnMut(&StateDir) -> anyhow::Result<T>,
    ) -> anyhow::Result<T> {
        match self {
            Store::Dir(d) => {
                let mut f = f;
                f(d)
            }
            Store::Hub(h) => h.update(f).await,
        }
    }

    /// Reads the state.
    pub async fn read<T>(
        &self,
        f: impl FnOnce(&StateDir) -> anyhow::Result<T>,
    ) -> anyhow::Result<T> {
        match self {
            Store::Dir(d) => f(d),
            Store::Hub(h) => h.read(f).await,
        }
    }

    /// Where the state is, for messages.
    pub fn shown(&self) -> String {
        match self {
            Store::Dir(d) => d.path().display().to_string(),
            Store::Hub(h) => format!("Secret {}", h.shown()),
        }
    }
}
