//! `causeway scheduler`: not built yet.

/// Options of `causeway scheduler`.
#[derive(clap::Args, Debug)]
#[command(
    long_about = "Places stateless workloads across clusters: fills the IDC clusters first, bursts \
    the overflow to public clusters through the tunnel, scales back with hysteresis, fails over \
    with fencing, and tells dns which clusters serve which service.\n\nNOT BUILT YET: this \
    command exits with an error."
)]
pub struct Args {}

/// Runs `causeway scheduler`.
pub async fn run(_args: Args) -> anyhow::Result<()> {
    super::not_built("scheduler", "no scheduler issue has been worked yet")
}
