//! `causeway stub` (being built).

/// Options of `causeway stub`.
#[derive(clap::Args, Debug)]
pub struct Args {}

/// Runs `causeway stub`.
pub async fn run(_args: Args) -> anyhow::Result<()> {
    super::not_built("stub", "work in progress")
}
