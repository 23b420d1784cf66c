//! Production mode: Causeway's state in a hub cluster's API.
//!
//! In the embedded mode each part reads YAML files. In production mode the same documents
//! are custom resources (`causeway.dev/v1alpha1`, the CRDs of `causeway crds`) in one
//! namespace of a hub cluster, and each part:
//!
//! - watches the kinds it serves ([`Hub::watch`]) and loads every change through the same
//!   loader as the files: each object becomes a [`causeway_config::Document`] whose file is
//!   `hub:<namespace>/<plural>/<name>` ([`HubObject::source`]), so an error names the object
//!   and field, and [`object_of`] maps it back to the object to mark it rejected;
//! - keeps running on its last good configuration when a change does not load, and says so
//!   in the object's `status` ([`Hub::write_status`], [`status::accepted`],
//!   [`status::rejected`]);
//! - shares what several replicas must agree on through the API: the scheduler's
//!   [`Placement`](causeway_model::Placement)s are `Placement` objects that every dns
//!   replica watches ([`Hub::apply_placement`]), and the stub's CA and registries live in
//!   Secrets ([`secret`]).
//!
//! Leaders are elected with Leases by `causeway-election`, as before.

mod hub;
mod kind;
mod load;
pub mod secret;
pub mod status;
mod watch;

pub use hub::{Hub, HubError, MANAGED_BY, placement_name};
pub use kind::{GROUP, Kind, VERSION};
pub use load::{LastGood, Loaded, Verdict};
pub use watch::{HubObject, Snapshot, object_of};
