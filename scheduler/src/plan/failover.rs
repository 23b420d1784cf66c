//! `FailoverPolicy` (DR): one primary, backups in order, and never two writers.
//!
//! 1. The primary is the cluster this planner last gave the role to. At the first round
//!    it is the first cluster whose role ConfigMap says `primary` (after a restart the
//!    clusters tell), else the policy's `primary`.
//! 2. A primary *serves* while it is reachable, its ConfigMap says `primary` and it has
//!    a ready replica; it gets [`Action::Hold`] (apply renews its role lease through the
//!    stub). It is *lost* when it is unreachable, has no Deployment, says `fenced` (its
//!    agent fenced it), or has had no ready replica for `unhealthyAfter`. A lost primary
//!    leaves DNS at once.
//! 3. Fence before promote. A lost primary that is reachable is fenced by the scheduler
//!    ([`Action::Fence`]), and the fence is confirmed by reading it back the next round.
//!    One that is not reachable fences itself: its agent demotes it when the role lease
//!    has not been renewed for the lease's duration. The planner waits the duration plus
//!    `margin` after the later of the last renewal it wrote (or saw) and the loss, so the
//!    agent has fenced before anything is promoted.
//! 4. Promote the first reachable backup (then the old primary, if it is a `replica`
//!    again) that has the Deployment and is not fenced: [`Action::Grant`] sets its role,
//!    scales it to `replicas` if it runs fewer, and creates its role lease. The RTO is
//!    the time from the loss to the promoted cluster serving.
//! 5. Any other cluster whose ConfigMap says `primary`, or that holds a role lease, is
//!    fenced at once. A missing ConfigMap is created with `replica`. A fenced old primary
//!    stays fenced: failback is manual (set its role to `replica`), or with
//!    `failbackAfter` a planned switchover once it has been a ready `replica` that long.
//! 6. The first grant of a new policy waits until every other cluster is seen not
//!    `primary`, or for lease + margin, so a scheduler that restarts while a promoted
//!    backup is unreachable cannot crown a second primary.

use std::collections::BTreeMap;
use std::time::Duration;

use causeway_model::ClusterId;

use super::{Action, Decision, Role, Traffic};
use crate::observed::{Observed, WorkloadState};
use crate::policy::{FailoverPolicy, FenceMode};

/// The roles a failover workload's ConfigMap carries.
pub const PRIMARY: &str = "primary";
/// A read-only follower that may be promoted.
pub const REPLICA: &str = "replica";
/// Demoted: must not write.
pub const FENCED: &str = "fenced";

/// What failover policies remember between rounds.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Memory {
    policies: BTreeMap<String, PolicyMemory>,
}

#[derive(Debug, Clone, PartialEq)]
struct PolicyMemory {
    /// Who holds (or is being given) the role.
    primary: ClusterId,
    /// When this memory started: the first grant may wait lease + margin from here.
    created: Duration,
    /// The primary was first seen lost at, and why.
    lost: Option<(Duration, String)>,
    /// The primary has had no ready replica since.
    unready_since: Option<Duration>,
    /// The latest role-lease renewal written or seen, per cluster.
    renewed: BTreeMap<ClusterId, Duration>,
    /// The policy's `primary` has been a ready replica since (failback).
    failback_since: Option<Duration>,
    /// A planned switchover to this cluster is fencing the current primary.
    switchover: Option<(ClusterId, Duration)>,
    /// The last failover.
    last: Option<Failover>,
}

/// One failover (or switchover), as the planner saw it.
#[derive(Debug, Clone, PartialEq)]
pub struct Failover {
    /// The old primary.
    pub from: ClusterId,
    /// The promoted cluster.
    pub to: ClusterId,
    /// Why the old primary was lost.
    pub why: String,
    /// When the loss was first seen (time since the scheduler started).
    pub lost_at: Duration,
    /// When the backup was promoted.
    pub promoted_at: Duration,
    /// When the promoted cluster first served (ready and in DNS).
    pub serving_at: Option<Duration>,
}

impl Failover {
    /// Loss → the promoted cluster serving, once it serves.
    pub fn rto(&self) -> Option<Duration> {
        self.serving_at.map(|t| t.saturating_sub(self.lost_at))
    }
}

/// Where one failover policy stands, for metrics and `/v1/plan`.
#[derive(Debug, Clone, PartialEq)]
pub struct Status {
    /// The cluster holding (or being given) the role.
    pub primary: ClusterId,
    /// The last failover, if any.
    pub last: Option<Failover>,
}

impl Memory {
    /// Forgets policies no longer configured.
    pub fn forget_except(&mut self, policies: &[FailoverPolicy]) {
        self.policies
            .retain(|name, _| policies.iter().any(|p| &p.name == name));
    }
}

/// One cluster as this policy sees it.
struct View<'a> {
    cluster: &'a ClusterId,
    reachable: bool,
    error: Option<&'a str>,
    workload: Option<&'a WorkloadState>,
}

impl View<'_> {
    fn role(&self) -> Option<&str> {
        self.workload
            .and_then(|w| w.role.as_ref())
            .and_then(|r| r.role.as_deref())
    }

    fn has_lease(&self) -> bool {
        self.workload
            .and_then(|w| w.role.as_ref())
            .is_some_and(|r| r.lease.is_some())
    }

    fn ready(&self) -> u32 {
        self.workload.map_or(0, |w| w.ready)
    }

    fn replicas(&self) -> u32 {
        self.workload.map_or(0, |w| w.replicas)
    }

    /// Reachable, with the Deployment, not fenced, not already primary: may be promoted.
    fn promotable(&self) -> bool {
        self.reachable && self.workload.is_some() && matches!(self.role(), None | Some(REPLICA))
    }

    /// Its fence is in place, as read back.
    fn fenced(&self, mode: FenceMode) -> bool {
        self.role() == Some(FENCED) && (mode == FenceMode::Role || self.replicas() == 0)
    }
}

/// Plans one failover policy: the demand line, one decision per cluster, its status.
pub fn plan(
    p: &FailoverPolicy,
    observed: &Observed,
    memory: &mut Memory,
    now: Duration,
) -> (String, Vec<Decision>, Status) {
    let spec = &p.spec;
    let views: Vec<View<'_>> = spec
        .clusters()
        .map(|c| {
            let s = observed.clusters.get(c);
            View {
                cluster: c,
                reachable: s.is_some_and(|s| s.reachable),
                error: s.and_then(|s| s.error.as_deref()),
                workload: s
                    .filter(|s| s.reachable)
                    .and_then(|s| s.workloads.get(&spec.workload)),
            }
        })
        .collect();
    let m = memory
        .policies
        .entry(p.name.clone())
        .or_insert_with(|| PolicyMemory {
            primary: views
                .iter()
                .find(|v| v.reachable && v.role() == Some(PRIMARY))
                .map_or_else(|| spec.primary.clone(), |v| v.cluster.clone()),
            created: now,
            lost: None,
            unready_since: None,
            renewed: BTreeMap::new(),
            failback_since: None,
            switchover: None,
            last: None,
        });
    // The latest renewal of each lease: what apply wrote, or what the lease says.
    for v in &views {
        let written = observed.renewals.get(&(p.name.clone(), v.cluster.clone()));
        let seen = v
            .workload
            .and_then(|w| w.role.as_ref())
            .and_then(|r| r.lease.as_ref())
            .map(|l| now.saturating_sub(l.age));
        for t in written.into_iter().copied().chain(seen) {
            let e = m.renewed.entry(v.cluster.clone()).or_insert(t);
            *e = (*e).max(t);
        }
    }
    let lease = spec.lease.duration.0;
    let wait = lease + spec.lease.margin.0;
    let Some(pi) = views.iter().position(|v| v.cluster == &m.primary) else {
        // The primary left the policy (edited): start again from the file.
        m.primary = spec.primary.clone();
        return (
            "primary no longer in the policy: starting again from spec.primary".into(),
            Vec::new(),
            status(m),
        );
    };
    let pv = &views[pi];
    let mut actions: BTreeMap<&ClusterId, (Action, Traffic, String)> = BTreeMap::new();

    // 1. Is the primary serving, waiting for its role, or lost?
    if pv.reachable && pv.role() == Some(PRIMARY) && pv.ready() > 0 {
        m.unready_since = None;
    } else if pv.reachable && pv.role() == Some(PRIMARY) {
        m.unready_since.get_or_insert(now);
    }
    let lost_why: Option<String> = if !pv.reachable {
        Some(format!(
            "unreachable ({})",
            pv.error.unwrap_or("no answer through the stub")
        ))
    } else if pv.workload.is_none() {
        Some(format!("no Deployment {} there", spec.workload))
    } else if pv.role() == Some(FENCED) && m.switchover.is_none() {
        let by = pv
            .workload
            .and_then(|w| w.role.as_ref())
            .and_then(|r| r.changed_by.clone())
            .unwrap_or_else(|| "someone".into());
        Some(format!("fenced by {by}"))
    } else if let Some(since) = m.unready_since
        && now.saturating_sub(since) >= spec.unhealthy_after.0
    {
        Some(format!(
            "no ready replica for {}s",
            now.saturating_sub(since).as_secs()
        ))
    } else {
        None
    };
    let mut demand;
    if let Some(why) = lost_why.or_else(|| {
        m.switchover
            .as_ref()
            .map(|(to, _)| format!("planned switchover to {to}"))
    }) {
        // 2. Lost (or handing over): out of DNS, fence, then promote.
        let lost_at = m.lost.get_or_insert_with(|| (now, why.clone())).0;
        let (fenced, fence_reason) = if pv.reachable && pv.workload.is_some() {
            if pv.fenced(spec.fence) {
                (true, "fenced (read back)".to_string())
            } else {
                actions.insert(
                    pv.cluster,
                    (Action::Fence, Traffic::Out, format!("{why}: fencing it")),
                );
                (false, "fencing; promotion after it reads back".to_string())
            }
        } else {
            let from = m
                .renewed
                .get(pv.cluster)
                .copied()
                .unwrap_or(lost_at)
                .max(lost_at);
            let at = from + wait;
            if now >= at {
                (
                    true,
                    format!(
                        "its agent fenced it: lease {}s + margin {}s passed",
                        lease.as_secs(),
                        spec.lease.margin.0.as_secs()
                    ),
                )
            } else {
                (
                    false,
                    format!(
                        "waiting for its agent to self-fence: promotion in {:.1}s (lease {}s + margin {}s)",
                        (at - now).as_secs_f64(),
                        lease.as_secs(),
                        spec.lease.margin.0.as_secs()
                    ),
                )
            }
        };
        let target = match &m.switchover {
            Some((to, _)) => views.iter().find(|v| v.cluster == to),
            None => views
                .iter()
                .filter(|v| v.cluster != pv.cluster)
                .find(|v| v.promotable()),
        };
        actions.entry(pv.cluster).or_insert((
            Action::Keep,
            Traffic::Out,
            format!("{why}: {fence_reason}"),
        ));
        match target {
            Some(t) if fenced && t.promotable() => {
                let n = t.replicas().max(spec.replicas);
                actions.insert(
                    t.cluster,
                    (
                        Action::Grant(n),
                        Traffic::Out,
                        format!("promoted: {} {why}, {fence_reason}", pv.cluster),
                    ),
                );
                m.last = Some(Failover {
                    from: pv.cluster.clone(),
                    to: t.cluster.clone(),
                    why: why.clone(),
                    lost_at,
                    promoted_at: now,
                    serving_at: None,
                });
                demand = format!(
                    "failover: {} → {} ({why}); {fence_reason}",
                    pv.cluster, t.cluster
                );
                m.primary = t.cluster.clone();
                m.lost = None;
                m.unready_since = None;
                m.switchover = None;
                m.failback_since = None;
            }
            Some(t) => {
                demand = format!(
                    "primary {} lost for {:.1}s ({why}): {fence_reason}; then {} is promoted",
                    pv.cluster,
                    now.saturating_sub(lost_at).as_secs_f64(),
                    t.cluster
                );
            }
            None => {
                demand = format!(
                    "primary {} lost ({why}): no backup can be promoted (each is unreachable, fenced or without the Deployment)",
                    pv.cluster
                );
            }
        }
    } else if pv.role() != Some(PRIMARY) {
        // 3. The first grant: safe once nobody else can be primary.
        m.lost = None;
        let others_known = views
            .iter()
            .filter(|v| v.cluster != pv.cluster)
            .all(|v| v.reachable && v.role() != Some(PRIMARY));
        let waited = now.saturating_sub(m.created) >= wait;
        if others_known || waited {
            let n = pv.replicas().max(spec.replicas);
            actions.insert(
                pv.cluster,
                (
                    Action::Grant(n),
                    Traffic::Out,
                    "granted the primary role".into(),
                ),
            );
            demand = format!("primary {}: role granted", pv.cluster);
        } else {
            let left = (m.created + wait).saturating_sub(now);
            actions.insert(
                pv.cluster,
                (
                    Action::Keep,
                    Traffic::Out,
                    format!(
                        "role granted in {:.1}s: another cluster is unreachable and may still be primary",
                        left.as_secs_f64()
                    ),
                ),
            );
            demand = format!(
                "primary {}: waiting before the first grant (not every cluster seen)",
                pv.cluster
            );
        }
    } else {
        // 4. Serving (or within unhealthyAfter): hold the role.
        m.lost = None;
        let serving = pv.ready() > 0;
        if serving
            && let Some(f) = m.last.as_mut()
            && &f.to == pv.cluster
            && f.serving_at.is_none()
        {
            f.serving_at = Some(now);
        }
        let reason = if serving {
            format!("primary: {} ready; role lease renewed", pv.ready())
        } else {
            format!(
                "primary with no ready replica for {:.1}s (failover after {}s)",
                now.saturating_sub(m.unready_since.unwrap_or(now))
                    .as_secs_f64(),
                spec.unhealthy_after.0.as_secs()
            )
        };
        let traffic = if serving {
            Traffic::Serve
        } else {
            Traffic::Out
        };
        actions.insert(pv.cluster, (Action::Hold, traffic, reason));
        demand = format!("primary {} ({} ready)", pv.cluster, pv.ready());
        // Failback: a planned switchover to the policy's primary once it is a ready
        // replica for failbackAfter.
        if let Some(after) = spec.failback_after
            && pv.cluster != &spec.primary
            && let Some(home) = views.iter().find(|v| v.cluster == &spec.primary)
        {
            if home.reachable && home.role() == Some(REPLICA) && home.ready() > 0 {
                let since = *m.failback_since.get_or_insert(now);
                if now.saturating_sub(since) >= after.0 {
                    m.switchover = Some((spec.primary.clone(), now));
                    demand.push_str(&format!("; failback to {} starts", spec.primary));
                } else {
                    demand.push_str(&format!(
                        "; failback to {} in {:.1}s",
                        spec.primary,
                        (since + after.0).saturating_sub(now).as_secs_f64()
                    ));
                }
            } else {
                m.failback_since = None;
            }
        }
    }
    if let Some(f) = &m.last
        && let Some(rto) = f.rto()
    {
        demand.push_str(&format!(
            "; last failover {} → {}: RTO {:.1}s (target {}s)",
            f.from,
            f.to,
            rto.as_secs_f64(),
            spec.rto.0.as_secs()
        ));
    }

    // 5. Every other cluster: a second primary or a stray lease is fenced at once.
    let mut decisions = Vec::with_capacity(views.len());
    for v in &views {
        let (action, traffic, reason) = match actions.remove(v.cluster) {
            Some(a) => a,
            None => other(v),
        };
        let role = if v.cluster == &m.primary {
            Role::Primary
        } else {
            Role::Backup
        };
        let planned = match action {
            Action::Grant(n) => n,
            Action::Fence if spec.fence == FenceMode::ScaleToZero => 0,
            _ => v.replicas(),
        };
        decisions.push(Decision {
            policy: p.name.clone(),
            cluster: v.cluster.clone(),
            role,
            current: v.replicas(),
            ready: v.ready(),
            planned,
            traffic,
            action,
            reason,
        });
    }
    (demand, decisions, status(m))
}

/// A cluster that is neither the primary nor being promoted.
fn other(v: &View<'_>) -> (Action, Traffic, String) {
    if !v.reachable {
        return (
            Action::Keep,
            Traffic::Out,
            format!(
                "backup, unreachable ({})",
                v.error.unwrap_or("no answer through the stub")
            ),
        );
    }
    if v.workload.is_none() {
        return (
            Action::Keep,
            Traffic::Out,
            "backup without the Deployment: cannot be promoted".into(),
        );
    }
    match v.role() {
        Some(PRIMARY) => (
            Action::Fence,
            Traffic::Out,
            "says primary while another cluster holds the role: fencing it".into(),
        ),
        _ if v.has_lease() => (
            Action::Fence,
            Traffic::Out,
            "holds a stale role lease: fencing it and deleting the lease".into(),
        ),
        None => (
            Action::Replica,
            Traffic::Out,
            "no role ConfigMap: created as replica".into(),
        ),
        Some(FENCED) => (
            Action::Keep,
            Traffic::Out,
            "fenced old primary: set its role to replica to make it a backup again".into(),
        ),
        Some(REPLICA) => (
            Action::Keep,
            Traffic::Out,
            format!("backup replica, {} ready", v.ready()),
        ),
        Some(other) => (
            Action::Keep,
            Traffic::Out,
            format!("role {other:?} is not primary, replica or fenced: not promoted"),
        ),
    }
}

fn status(m: &PolicyMemory) -> Status {
    Status {
        primary: m.primary.clone(),
        last: m.last.clone(),
    }
}

#[cfg(test)]
mod tests;
