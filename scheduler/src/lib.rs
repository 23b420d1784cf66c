//! Causeway's multi-cluster scheduler. Not built yet: see the open issues.
//!
//! It will read placement policies, observe clusters through the tunnel, compute a
//! [`causeway_model::Placement`] per service and publish it to dns.
#![warn(missing_docs)]
