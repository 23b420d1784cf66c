//! The custom resource kinds a part can watch.

use std::fmt;

use kube::core::{ApiResource, GroupVersionKind};

/// The API group of every Causeway kind.
pub const GROUP: &str = "causeway.dev";
/// Their version.
pub const VERSION: &str = "v1alpha1";

/// A Causeway custom resource kind.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Kind {
    /// The scheduler's burst policy.
    BurstPolicy,
    /// The scheduler's active-active spread.
    SpreadPolicy,
    /// The scheduler's DR failover.
    FailoverPolicy,
    /// A dns zone.
    Zone,
    /// dns's static latency map.
    LatencyMap,
    /// The stub's access policy.
    AccessPolicy,
    /// Which clusters serve a GSLB name: written by the scheduler's leader, read by every
    /// dns replica.
    Placement,
}

impl Kind {
    /// Every kind.
    pub const ALL: [Kind; 7] = [
        Kind::BurstPolicy,
        Kind::SpreadPolicy,
        Kind::FailoverPolicy,
        Kind::Zone,
        Kind::LatencyMap,
        Kind::AccessPolicy,
        Kind::Placement,
    ];

    /// The kind's name, as in `kind:`.
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::BurstPolicy => "BurstPolicy",
            Kind::SpreadPolicy => "SpreadPolicy",
            Kind::FailoverPolicy => "FailoverPolicy",
            Kind::Zone => "Zone",
            Kind::LatencyMap => "LatencyMap",
            Kind::AccessPolicy => "AccessPolicy",
            Kind::Placement => "Placement",
        }
    }

    /// The resource's plural (`burstpolicies`).
    pub fn plural(self) -> &'static str {
        match self {
            Kind::BurstPolicy => "burstpolicies",
            Kind::SpreadPolicy => "spreadpolicies",
            Kind::FailoverPolicy => "failoverpolicies",
            Kind::Zone => "zones",
            Kind::LatencyMap => "latencymaps",
            Kind::AccessPolicy => "accesspolicies",
            Kind::Placement => "placements",
        }
    }

    /// The kind whose plural is `plural`.
    pub fn from_plural(plural: &str) -> Option<Kind> {
        Kind::ALL.into_iter().find(|k| k.plural() == plural)
    }

    /// For kube's dynamic API.
    pub fn api_resource(self) -> ApiResource {
        ApiResource::from_gvk_with_plural(
            &GroupVersionKind::gvk(GROUP, VERSION, self.as_str()),
            self.plural(),
        )
    }
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plurals_round_trip() {
        for k in Kind::ALL {
            assert_eq!(Kind::from_plural(k.plural()), Some(k));
            assert_eq!(k.api_resource().plural, k.plural());
            assert_eq!(k.api_resource().api_version, "causeway.dev/v1alpha1");
        }
        assert_eq!(Kind::from_plural("pods"), None);
    }
}
