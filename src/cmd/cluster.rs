//! `causeway cluster` (being built).

/// Options of `causeway cluster`.
#[derive(clap::Args, Debug)]
pub struct Args {}

/// Runs `causeway cluster`.
pub async fn run(_args: Args) -> anyhow::Result<()> {
    super::not_built("cluster", "work in progress")
}
