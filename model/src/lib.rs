//! Types shared by Causeway's parts.
//!
//! The contract between the scheduler and dns lives here, in one place both depend on:
//! which clusters serve a service ([`placement`]), and whether each one is healthy
//! ([`health`]). Every cluster has a stable [`ClusterId`] ([`cluster`]).
//!
//! Start here: [`placement::Placement`]. This crate is serde only: no IO, no tokio.
#![warn(missing_docs)]

pub mod cluster;
pub mod health;
pub mod placement;

pub use cluster::{ClusterId, ClusterIdError};
pub use health::{Health, HealthReport};
pub use placement::{Placement, PlacementTarget, Role};
