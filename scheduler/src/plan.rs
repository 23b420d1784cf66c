//! The planner: a pure function from policies, what was observed, what was decided
//! before and the time, to a [`Plan`] with a reason for every number.
//!
//! No I/O and no clock: the caller passes `now` (time since the scheduler started),
//! so the same inputs always give the same plan. `scheduler plan --what-if` runs this
//! same function on an observed state changed by the what-if.
//!
//! * [`burst`]: fill the home clusters, overflow to burst clusters in order.
//! * [`spread`]: active-active, replicas split by weight or free capacity, rebalanced
//!   when a cluster is lost and when it returns.
//! * [`stabilize`]: the HPA's stabilization windows and the DNS drain before removal.
//! * [`failover`]: DR, one primary at a time: fence before promote.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::time::Duration;

use causeway_model::ClusterId;

use crate::observed::Observed;
use crate::policy::Policies;

pub mod burst;
pub mod failover;
pub mod spread;
pub mod stabilize;

/// What the planner remembers between rounds, per policy and cluster: recommendations
/// for the stabilization windows, drains, and (spread) when a cluster was lost and
/// came back. Start from `Memory::default()`, then pass what [`compute`] returned.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Memory {
    /// Burst policies' windows and drains.
    burst: stabilize::Memory,
    /// Spread policies' windows, drains and returns.
    spread: spread::Memory,
    /// Failover policies' primaries, losses and renewals.
    failover: failover::Memory,
}

/// What a cluster does for a policy.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Role {
    /// The home cluster holding the source Deployment (its replicas are the user's or
    /// its HPA's; the scheduler does not write them unless the demand is external).
    Source,
    /// Another home cluster, filled before any burst cluster.
    Home,
    /// A burst cluster.
    Burst,
    /// A cluster of a spread policy other than the source, holding a copy.
    Spread,
    /// A failover policy's primary (holding the role, or being given it).
    Primary,
    /// A failover policy's other clusters.
    Backup,
}

/// Whether dns should send new clients to a cluster for the policy's name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Traffic {
    /// In the answers: reachable with ready replicas.
    Serve,
    /// Out of the answers while its replicas wait one TTL before removal.
    Drain,
    /// Out of the answers: unreachable or no ready replicas.
    Out,
}

/// What to do to a cluster's copy of the workload.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Nothing.
    Keep,
    /// Create or update the copy with this many replicas.
    Apply(u32),
    /// Set the source Deployment's replicas (external demand only).
    Scale(u32),
    /// Delete the managed copy.
    Delete,
    /// Failover: keep the primary's role lease renewed.
    Hold,
    /// Failover: give this cluster the primary role (role ConfigMap, role lease) and
    /// scale it to this many replicas if it runs fewer.
    Grant(u32),
    /// Failover: set the role `fenced`, scale to 0 (`fence: scaleToZero`) and delete the
    /// role lease.
    Fence,
    /// Failover: create the missing role ConfigMap with role `replica`.
    Replica,
}

/// One policy × cluster line of the plan.
#[derive(Debug, Clone, PartialEq)]
pub struct Decision {
    /// The policy.
    pub policy: String,
    /// The cluster.
    pub cluster: ClusterId,
    /// Its role for the policy.
    pub role: Role,
    /// Replicas there now (`spec.replicas`; 0 when there is no copy).
    pub current: u32,
    /// Ready replicas there now.
    pub ready: u32,
    /// Replicas planned.
    pub planned: u32,
    /// DNS for this cluster.
    pub traffic: Traffic,
    /// What apply does.
    pub action: Action,
    /// Why, in one line with the numbers.
    pub reason: String,
}

impl Decision {
    /// The share of new traffic dns should give this cluster for the policy's name:
    /// its ready replicas while it serves, else 0 (DNS weights follow the replicas).
    pub fn dns_weight(&self) -> u32 {
        if self.traffic == Traffic::Serve {
            self.ready
        } else {
            0
        }
    }
}

/// The planner's output for one round.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Plan {
    /// One line per policy and cluster, in policy order then fill order.
    pub decisions: Vec<Decision>,
    /// Per policy: total demand and how it was found.
    pub demand: BTreeMap<String, String>,
    /// Per failover policy: its primary and last failover.
    pub failover: BTreeMap<String, failover::Status>,
}

/// Plans every policy (burst, then spread, then failover policies, each in file order).
/// `policies` is `&SchedulerConfig` or a slice of one kind; `previous` is the memory
/// the last round returned.
pub fn compute<'a>(
    policies: impl Into<Policies<'a>>,
    observed: &Observed,
    previous: &Memory,
    now: Duration,
) -> (Plan, Memory) {
    let policies = policies.into();
    let mut plan = Plan::default();
    let mut memory = previous.clone();
    for p in policies.burst {
        let (demand, decisions) = burst::plan(p, observed, &mut memory.burst, now);
        plan.demand.insert(p.name.clone(), demand);
        plan.decisions.extend(decisions);
    }
    for p in policies.spread {
        let (demand, decisions) = spread::plan(p, observed, &mut memory.spread, now);
        plan.demand.insert(p.name.clone(), demand);
        plan.decisions.extend(decisions);
    }
    for p in policies.failover {
        let (demand, decisions, status) = failover::plan(p, observed, &mut memory.failover, now);
        plan.demand.insert(p.name.clone(), demand);
        plan.decisions.extend(decisions);
        plan.failover.insert(p.name.clone(), status);
    }
    memory.burst.forget_except(policies.burst, now);
    memory.spread.forget_except(policies.spread);
    memory.failover.forget_except(policies.failover);
    (plan, memory)
}

impl std::fmt::Display for Action {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Action::Keep => f.write_str("keep"),
            Action::Apply(n) => write!(f, "apply {n}"),
            Action::Scale(n) => write!(f, "scale {n}"),
            Action::Delete => f.write_str("delete"),
            Action::Hold => f.write_str("hold"),
            Action::Grant(n) => write!(f, "grant {n}"),
            Action::Fence => f.write_str("fence"),
            Action::Replica => f.write_str("replica"),
        }
    }
}

impl Plan {
    /// The decision table: `POLICY CLUSTER ROLE NOW → PLANNED DNS ACTION REASON`.
    pub fn table(&self) -> String {
        let pw = self
            .decisions
            .iter()
            .map(|d| d.policy.len())
            .max()
            .unwrap_or(0)
            .max(6);
        let cw = self
            .decisions
            .iter()
            .map(|d| d.cluster.as_str().len())
            .max()
            .unwrap_or(0)
            .max(7);
        let mut out = String::new();
        let _ = writeln!(
            out,
            "{:<pw$}  {:<cw$}  {:<7}  {:>4}   {:<7}  {:<5}  {:<9}  REASON",
            "POLICY", "CLUSTER", "ROLE", "NOW", "PLANNED", "DNS", "ACTION"
        );
        for d in &self.decisions {
            let role = match d.role {
                Role::Source => "source",
                Role::Home => "home",
                Role::Burst => "burst",
                Role::Spread => "spread",
                Role::Primary => "primary",
                Role::Backup => "backup",
            };
            let dns = match d.traffic {
                Traffic::Serve => "serve",
                Traffic::Drain => "drain",
                Traffic::Out => "out",
            };
            let action = match d.action {
                Action::Keep => "-".to_string(),
                other => other.to_string(),
            };
            let _ = writeln!(
                out,
                "{:<pw$}  {:<cw$}  {:<7}  {:>4} → {:<7}  {:<5}  {:<9}  {}",
                d.policy,
                d.cluster.as_str(),
                role,
                d.current,
                d.planned,
                dns,
                action,
                d.reason
            );
        }
        for (p, why) in &self.demand {
            let _ = writeln!(out, "demand {p}: {why}");
        }
        out
    }
}

#[cfg(test)]
mod tests;
