//! `causeway agent` (being built).

/// Options of `causeway agent`.
#[derive(clap::Args, Debug)]
pub struct Args {}

/// Runs `causeway agent`.
pub async fn run(_args: Args) -> anyhow::Result<()> {
    super::not_built("agent", "work in progress")
}
