//! One module per subcommand: parse → config → `part::run`. Kept thin.

pub mod agent;
pub mod cluster;
pub mod crds;
pub mod dns;
pub mod drill;
pub mod hub;
pub mod hub_args;
pub mod probe;
pub mod scheduler;
pub mod shutdown;
pub mod stub;
pub mod stub_state;
pub mod testbed;
pub mod user;
