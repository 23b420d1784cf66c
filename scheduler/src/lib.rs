//! Causeway's multi-cluster scheduler.
//!
//! One round, level-triggered like a kube-rs controller:
//! **observe → plan → apply → publish**.
//!
//! * [`policy`]: the `Scheduler` and `BurstPolicy` documents (through [`causeway_config`]).
//! * [`observed`]: what one round saw of every cluster (plain data).
//! * [`observe`]: fills [`observed::Observed`] through the tunnel's stub, as the
//!   scheduler's own stub identity; no member kubeconfig is ever given to it.
//! * [`plan`]: start here. A pure function `(policies, observed, memory, now) → Plan`,
//!   with a reason for every number; [`whatif`] changes an observed state for
//!   `scheduler plan --what-if`.
//! * [`apply`]: server-side apply of copies of the home workload into other clusters
//!   (field manager `causeway-scheduler`), rate-limited, with back-off on refusals.
//! * [`publish`]: tells dns which clusters serve each policy's name.
//! * [`run`]: the loop, its metrics and its HTTP endpoints.
//! * [`quantity`]: Kubernetes quantities as integers.
#![warn(missing_docs)]

pub mod apply;
pub mod metrics;
pub mod observe;
pub mod observed;
pub mod plan;
pub mod policy;
pub mod publish;
pub mod quantity;
pub mod run;
pub mod whatif;
