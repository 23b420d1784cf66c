//! `causeway testbed` (being built).

/// Options of `causeway testbed`.
#[derive(clap::Args, Debug)]
pub struct Args {}

/// Runs `causeway testbed`.
pub async fn run(_args: Args) -> anyhow::Result<()> {
    super::not_built("testbed", "work in progress")
}
