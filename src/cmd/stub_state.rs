//! What `causeway cluster` and `causeway user` share: both edit the stub's state
//! directory, named once by `--state-dir` (before or after the subcommand).

use std::path::PathBuf;

use causeway_tunnel::state;

/// `--state-dir` and one subcommand `C` of a command that edits the stub's state.
#[derive(clap::Args, Debug)]
pub struct StateDirArgs<C: clap::Subcommand> {
    /// The stub's state directory (CA, users, tokens).
    #[arg(long, env = "CAUSEWAY_STATE_DIR", global = true,
          default_value_os_t = state::default_state_dir())]
    pub state_dir: PathBuf,
    /// What to do there.
    #[command(subcommand)]
    pub command: C,
}
