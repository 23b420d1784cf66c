//! `causeway drill`: not built yet.

/// Options of `causeway drill`.
#[derive(clap::Args, Debug)]
#[command(
    long_about = "Runs a failover drill described in a scenario file (faults, waits, expectations \
    with deadlines) against a testbed and writes a report.\n\nNOT BUILT YET: this command exits \
    with an error."
)]
pub struct Args {}

/// Runs `causeway drill`.
pub async fn run(_args: Args) -> anyhow::Result<()> {
    super::not_built("drill", "no drill issue has been worked yet")
}
