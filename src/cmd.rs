//! One module per subcommand: parse → config → `part::run`. Kept thin.

pub mod agent;
pub mod cluster;
pub mod dns;
pub mod drill;
pub mod hub;
pub mod scheduler;
pub mod shutdown;
pub mod stub;
pub mod stub_state;
pub mod testbed;
pub mod user;

/// Error for a part of Causeway that is not built yet: says so and exits non-zero.
pub fn not_built(what: &str, issue: &str) -> anyhow::Result<()> {
    anyhow::bail!("`causeway {what}` is not built yet ({issue}); nothing was started")
}
