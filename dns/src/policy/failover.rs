//! `failover`: the lowest tier that has a healthy target; all healthy targets of that
//! tier (up to `maxAnswers`). The answer does not depend on the client (scope 0).

use super::{Choice, cluster, why};
use crate::zone::Gslb;

pub(super) fn choose(g: &Gslb, healthy: &[usize], explain: bool) -> Choice {
    let tier = healthy
        .iter()
        .map(|t| g.targets[*t].tier)
        .min()
        .unwrap_or(0);
    let targets: Vec<usize> = healthy
        .iter()
        .copied()
        .filter(|t| g.targets[*t].tier == tier)
        .take(g.max_answers)
        .collect();
    Choice {
        reason: why(explain, || {
            let names: Vec<&str> = targets.iter().map(|t| cluster(g, *t)).collect();
            format!(
                "tier {tier} is the first with a healthy target: {}",
                names.join(", ")
            )
        }),
        targets,
        scope: 0,
        per_client: false,
        fail_open: false,
        latency_prefix: None,
    }
}
