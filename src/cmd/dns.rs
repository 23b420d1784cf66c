//! `causeway dns` (being built).

/// Options of `causeway dns`.
#[derive(clap::Args, Debug)]
pub struct Args {}

/// Runs `causeway dns`.
pub async fn run(_args: Args) -> anyhow::Result<()> {
    super::not_built("dns", "work in progress")
}
