//! `all-healthy`: up to `maxAnswers` healthy targets, in config order. Scope 0.

use super::{Choice, why};
use crate::zone::Gslb;

pub(super) fn choose(g: &Gslb, healthy: &[usize], explain: bool) -> Choice {
    let targets: Vec<usize> = healthy.iter().copied().take(g.max_answers).collect();
    Choice {
        reason: why(explain, || {
            format!(
                "{} healthy target(s), answering {}",
                healthy.len(),
                targets.len()
            )
        }),
        targets,
        scope: 0,
        per_client: false,
        fail_open: false,
        latency_prefix: None,
    }
}
