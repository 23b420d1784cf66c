//! `causeway user` (being built).

/// Options of `causeway user`.
#[derive(clap::Args, Debug)]
pub struct Args {}

/// Runs `causeway user`.
pub async fn run(_args: Args) -> anyhow::Result<()> {
    super::not_built("user", "work in progress")
}
