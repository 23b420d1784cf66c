//! Table tests of the failover planner: fence before promote, never two primaries.

use std::time::Duration;

use causeway_config::HumanDuration;
use causeway_model::ClusterId;

use super::{FENCED, PRIMARY, REPLICA};
use crate::observed::{ClusterState, LeaseState, Observed, RoleState, WorkloadState};
use crate::plan::{Action, Memory, Plan, Role, Traffic, compute};
use crate::policy::{FailoverPolicy, FailoverSpec, FenceMode, LeaseSpec, WorkloadRef};

const S: fn(u64) -> Duration = Duration::from_secs;
/// Lease 6 s + margin 3 s.
const WAIT: Duration = Duration::from_secs(9);

fn id(s: &str) -> ClusterId {
    ClusterId::new(s).unwrap()
}

fn policy(failback_after: Option<u64>) -> FailoverPolicy {
    FailoverPolicy {
        name: "db".into(),
        spec: FailoverSpec {
            workload: WorkloadRef {
                namespace: "shop".into(),
                deployment: "db".into(),
            },
            primary: id("idc"),
            backups: vec![id("ali"), id("aws")],
            replicas: 2,
            role_config_map: None,
            fence: FenceMode::ScaleToZero,
            lease: LeaseSpec {
                duration: HumanDuration(S(6)),
                margin: HumanDuration(S(3)),
            },
            unhealthy_after: HumanDuration(S(10)),
            failback_after: failback_after.map(|s| HumanDuration(S(s))),
            rto: HumanDuration(S(60)),
            dns: None,
        },
    }
}

/// A reachable cluster whose Deployment has `replicas`/`ready` and whose ConfigMap says
/// `role` (None: no ConfigMap), with a role lease renewed `lease_age` ago.
fn up(replicas: u32, ready: u32, role: Option<&str>, lease_age: Option<u64>) -> ClusterState {
    let mut c = ClusterState {
        reachable: true,
        ..Default::default()
    };
    c.workloads.insert(
        policy(None).spec.workload,
        WorkloadState {
            replicas,
            ready,
            role: Some(RoleState {
                role: role.map(str::to_owned),
                changed_by: Some("scheduler".into()),
                lease: lease_age.map(|a| LeaseState {
                    age: S(a),
                    fenced_by: None,
                }),
            }),
            ..Default::default()
        },
    );
    c
}

fn down() -> ClusterState {
    ClusterState {
        reachable: false,
        error: Some("503 ServiceUnavailable: no agent session".into()),
        ..Default::default()
    }
}

fn observed(idc: ClusterState, ali: ClusterState, aws: ClusterState) -> Observed {
    let mut o = Observed::default();
    o.clusters.insert(id("idc"), idc);
    o.clusters.insert(id("ali"), ali);
    o.clusters.insert(id("aws"), aws);
    o
}

/// (action, traffic) of idc, ali, aws.
fn acts(plan: &Plan) -> Vec<(Action, Traffic)> {
    plan.decisions
        .iter()
        .map(|d| (d.action, d.traffic))
        .collect()
}

fn primary(plan: &Plan) -> String {
    plan.failover["db"].primary.to_string()
}

const KEEP_OUT: (Action, Traffic) = (Action::Keep, Traffic::Out);

/// A steady state: idc primary serving with a fresh lease, the others replicas.
fn steady() -> Observed {
    observed(
        up(2, 2, Some(PRIMARY), Some(1)),
        up(1, 1, Some(REPLICA), None),
        up(0, 0, Some(REPLICA), None),
    )
}

#[test]
fn a_serving_primary_holds_its_lease_and_only_it_is_in_dns() {
    let p = [policy(None)];
    let (plan, _) = compute(&p, &steady(), &Memory::default(), S(0));
    assert_eq!(
        acts(&plan),
        vec![(Action::Hold, Traffic::Serve), KEEP_OUT, KEEP_OUT]
    );
    assert_eq!(
        plan.decisions.iter().map(|d| d.role).collect::<Vec<_>>(),
        vec![Role::Primary, Role::Backup, Role::Backup]
    );
    assert_eq!(primary(&plan), "idc");
}

#[test]
fn the_first_grant_waits_until_nobody_else_can_be_primary() {
    let p = [policy(None)];
    // Every cluster seen, none primary: grant at once, missing ConfigMaps become replicas.
    let fresh = observed(
        up(1, 1, None, None),
        up(0, 0, None, None),
        up(0, 0, None, None),
    );
    let (plan, _) = compute(&p, &fresh, &Memory::default(), S(0));
    assert_eq!(
        acts(&plan),
        vec![
            (Action::Grant(2), Traffic::Out),
            (Action::Replica, Traffic::Out),
            (Action::Replica, Traffic::Out),
        ]
    );
    // A backup unreachable (it may be primary after an earlier failover): wait lease +
    // margin from the first round before granting.
    let unsure = observed(up(1, 1, None, None), down(), up(0, 0, None, None));
    let (plan, mem) = compute(&p, &unsure, &Memory::default(), S(0));
    assert_eq!(plan.decisions[0].action, Action::Keep);
    let (plan, mem) = compute(&p, &unsure, &mem, WAIT - S(1));
    assert_eq!(plan.decisions[0].action, Action::Keep);
    let (plan, _) = compute(&p, &unsure, &mem, WAIT);
    assert_eq!(plan.decisions[0].action, Action::Grant(2));
}

#[test]
fn an_unreachable_primary_leaves_dns_at_once_and_is_replaced_only_after_lease_and_margin() {
    let p = [policy(None)];
    let (_, mem) = compute(&p, &steady(), &Memory::default(), S(0));
    // Apply renewed idc's lease at 2 s (its answer came back then).
    let mut o = steady();
    o.renewals.insert(("db".into(), id("idc")), S(2));
    let (_, mem) = compute(&p, &o, &mem, S(2));
    // Lost at 4 s: out of DNS, nobody promoted until max(renewal, loss) + lease + margin.
    let mut lost = observed(
        down(),
        up(1, 1, Some(REPLICA), None),
        up(0, 0, Some(REPLICA), None),
    );
    lost.renewals.insert(("db".into(), id("idc")), S(2));
    let (plan, mem) = compute(&p, &lost, &mem, S(4));
    assert_eq!(acts(&plan), vec![KEEP_OUT, KEEP_OUT, KEEP_OUT]);
    assert!(
        plan.demand["db"].contains("waiting for its agent to self-fence"),
        "{}",
        plan.demand["db"]
    );
    let (plan, mem) = compute(&p, &lost, &mem, S(4) + WAIT - Duration::from_millis(1));
    assert_eq!(acts(&plan), vec![KEEP_OUT, KEEP_OUT, KEEP_OUT]);
    let (plan, mem) = compute(&p, &lost, &mem, S(4) + WAIT);
    assert_eq!(
        acts(&plan),
        vec![KEEP_OUT, (Action::Grant(2), Traffic::Out), KEEP_OUT]
    );
    assert_eq!(primary(&plan), "ali");
    // Promoted ali serves at 15 s: RTO = 15 - 4 = 11 s.
    let promoted = observed(
        down(),
        up(2, 2, Some(PRIMARY), Some(0)),
        up(0, 0, Some(REPLICA), None),
    );
    let (plan, mem) = compute(&p, &promoted, &mem, S(15));
    assert_eq!(
        acts(&plan),
        vec![KEEP_OUT, (Action::Hold, Traffic::Serve), KEEP_OUT]
    );
    let last = plan.failover["db"].last.clone().unwrap();
    assert_eq!((last.from.as_str(), last.to.as_str()), ("idc", "ali"));
    assert_eq!(last.rto(), Some(S(11)));
    // idc comes back still saying primary (its agent could not fence): fenced at once,
    // its stray lease deleted; it never re-enters DNS.
    let back = observed(
        up(2, 2, Some(PRIMARY), Some(30)),
        up(2, 2, Some(PRIMARY), Some(0)),
        up(0, 0, Some(REPLICA), None),
    );
    let (plan, _) = compute(&p, &back, &mem, S(20));
    assert_eq!(
        acts(&plan),
        vec![
            (Action::Fence, Traffic::Out),
            (Action::Hold, Traffic::Serve),
            KEEP_OUT
        ]
    );
    assert_eq!(plan.decisions[0].planned, 0);
}

#[test]
fn a_renewal_that_ended_after_the_loss_pushes_promotion_back() {
    let p = [policy(None)];
    let (_, mem) = compute(&p, &steady(), &Memory::default(), S(0));
    let mut lost = observed(
        down(),
        up(1, 1, Some(REPLICA), None),
        up(0, 0, Some(REPLICA), None),
    );
    // Lost at 1 s; a renewal in flight failed (or landed unseen) at 5 s.
    let (_, mem) = compute(&p, &lost, &mem, S(1));
    lost.renewals.insert(("db".into(), id("idc")), S(5));
    let (plan, mem) = compute(&p, &lost, &mem, S(1) + WAIT);
    assert_eq!(plan.decisions[1].action, Action::Keep);
    let (plan, _) = compute(&p, &lost, &mem, S(5) + WAIT);
    assert_eq!(plan.decisions[1].action, Action::Grant(2));
}

#[test]
fn a_primary_its_agent_fenced_is_replaced_at_once_skipping_unusable_backups() {
    let p = [policy(None)];
    let (_, mem) = compute(&p, &steady(), &Memory::default(), S(0));
    // idc reachable again but fenced by its agent; ali unreachable, so aws (cold, 0
    // replicas) is promoted and scaled to 2.
    let o = observed(
        up(0, 0, Some(FENCED), None),
        down(),
        up(0, 0, Some(REPLICA), None),
    );
    let (plan, _) = compute(&p, &o, &mem, S(3));
    assert_eq!(
        acts(&plan),
        vec![KEEP_OUT, KEEP_OUT, (Action::Grant(2), Traffic::Out)]
    );
    assert_eq!(plan.decisions[2].planned, 2);
    assert!(plan.demand["db"].contains("fenced by scheduler"));
}

#[test]
fn no_backup_can_be_promoted_when_each_is_fenced_down_or_missing() {
    let p = [policy(None)];
    let (_, mem) = compute(&p, &steady(), &Memory::default(), S(0));
    // aws answers but has no Deployment of the workload.
    let aws = ClusterState {
        reachable: true,
        ..Default::default()
    };
    let o = observed(down(), up(1, 1, Some(FENCED), None), aws);
    let (plan, _) = compute(&p, &o, &mem, S(100));
    assert_eq!(acts(&plan), vec![KEEP_OUT, KEEP_OUT, KEEP_OUT]);
    assert!(plan.demand["db"].contains("no backup can be promoted"));
    assert_eq!(primary(&plan), "idc");
}

#[test]
fn an_unready_reachable_primary_is_fenced_and_confirmed_before_promotion() {
    let p = [policy(None)];
    let (_, mem) = compute(&p, &steady(), &Memory::default(), S(0));
    let unready = observed(
        up(2, 0, Some(PRIMARY), Some(1)),
        up(1, 1, Some(REPLICA), None),
        up(0, 0, Some(REPLICA), None),
    );
    // Within unhealthyAfter: still holding, out of DNS.
    let (plan, mem) = compute(&p, &unready, &mem, S(1));
    assert_eq!(plan.decisions[0].action, Action::Hold);
    assert_eq!(plan.decisions[0].traffic, Traffic::Out);
    // After it: the scheduler fences idc; no promotion until the fence reads back.
    let (plan, mem) = compute(&p, &unready, &mem, S(11));
    assert_eq!(
        acts(&plan),
        vec![(Action::Fence, Traffic::Out), KEEP_OUT, KEEP_OUT]
    );
    // Role fenced but still 2 replicas (scale not done yet): not confirmed.
    let half = observed(
        up(2, 0, Some(FENCED), None),
        up(1, 1, Some(REPLICA), None),
        up(0, 0, Some(REPLICA), None),
    );
    let (plan, mem) = compute(&p, &half, &mem, S(12));
    assert_eq!(plan.decisions[0].action, Action::Fence);
    assert_eq!(plan.decisions[1].action, Action::Keep);
    let done = observed(
        up(0, 0, Some(FENCED), None),
        up(1, 1, Some(REPLICA), None),
        up(0, 0, Some(REPLICA), None),
    );
    let (plan, _) = compute(&p, &done, &mem, S(13));
    assert_eq!(plan.decisions[1].action, Action::Grant(2));
    assert_eq!(plan.failover["db"].last.as_ref().unwrap().lost_at, S(11));
}

#[test]
fn after_a_restart_the_clusters_say_who_is_primary() {
    let p = [policy(None)];
    let o = observed(
        up(0, 0, Some(FENCED), None),
        up(2, 2, Some(PRIMARY), Some(1)),
        up(0, 0, Some(REPLICA), None),
    );
    let (plan, _) = compute(&p, &o, &Memory::default(), S(0));
    assert_eq!(primary(&plan), "ali");
    assert_eq!(
        acts(&plan),
        vec![KEEP_OUT, (Action::Hold, Traffic::Serve), KEEP_OUT]
    );
}

#[test]
fn failback_is_a_planned_switchover_once_the_home_primary_is_a_ready_replica() {
    let p = [policy(Some(30))];
    let o = observed(
        up(1, 1, Some(REPLICA), None),
        up(2, 2, Some(PRIMARY), Some(1)),
        up(0, 0, Some(REPLICA), None),
    );
    let (plan, mem) = compute(&p, &o, &Memory::default(), S(0));
    assert!(plan.demand["db"].contains("failback to idc in 30.0s"));
    let (plan, mem) = compute(&p, &o, &mem, S(30));
    assert!(plan.demand["db"].contains("failback to idc starts"));
    // The next round fences ali; idc is promoted only once that reads back.
    let (plan, mem) = compute(&p, &o, &mem, S(31));
    assert_eq!(
        acts(&plan),
        vec![KEEP_OUT, (Action::Fence, Traffic::Out), KEEP_OUT]
    );
    let fenced = observed(
        up(1, 1, Some(REPLICA), None),
        up(0, 0, Some(FENCED), None),
        up(0, 0, Some(REPLICA), None),
    );
    let (plan, _) = compute(&p, &fenced, &mem, S(32));
    assert_eq!(
        acts(&plan),
        vec![(Action::Grant(2), Traffic::Out), KEEP_OUT, KEEP_OUT]
    );
    assert_eq!(primary(&plan), "idc");
}

#[test]
fn the_same_inputs_give_the_same_plan() {
    let p = [policy(None)];
    let o = observed(down(), up(1, 1, Some(REPLICA), None), up(0, 0, None, None));
    let a = compute(&p, &o, &Memory::default(), S(50));
    let b = compute(&p, &o, &Memory::default(), S(50));
    assert_eq!(a, b);
}
