//! `causeway hub`: not built yet.

/// Options of `causeway hub`.
#[derive(clap::Args, Debug)]
#[command(
    long_about = "Runs everything on the hub side in one process: the tunnel's stub, the GSLB \
    DNS server and the scheduler, with state in memory and YAML files (the embedded mode).\n\n\
    NOT BUILT YET: run `causeway dns` and `causeway stub` on their own for now."
)]
pub struct Args {}

/// Runs `causeway hub`.
pub async fn run(_args: Args) -> anyhow::Result<()> {
    super::not_built(
        "hub",
        "run `causeway dns` and `causeway stub` separately for now",
    )
}
