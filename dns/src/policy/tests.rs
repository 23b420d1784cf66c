//! Table-driven policy tests over snapshots built from YAML.

use std::path::Path;
use std::sync::Arc;

use causeway_model::Health;

use super::*;
use crate::latency::LatencyTable;
use crate::load::LoadedConfig;
use crate::state::{State, TargetHealth, health_view};

const ZONE: &str = r#"
apiVersion: causeway.dev/v1alpha1
kind: Zone
metadata: {name: z}
spec:
  origin: svc.example.
  soa: {rname: hostmaster.svc.example.}
  nameservers: [{name: ns1, addresses: [127.0.0.53]}]
  gslb:
    - name: lat
      policy: latency
      defaultOrder: [c]
      targets:
        - {cluster: a, addresses: [192.0.2.1, "2001:db8::1"]}
        - {cluster: b, addresses: [192.0.2.2]}
        - {cluster: c, addresses: [192.0.2.3]}
    - name: fo
      policy: failover
      targets:
        - {cluster: a, addresses: [192.0.2.1], tier: 1}
        - {cluster: b, addresses: [192.0.2.2], tier: 0}
        - {cluster: c, addresses: [192.0.2.3], tier: 0}
    - name: w
      policy: weighted
      targets:
        - {cluster: a, addresses: [192.0.2.1], weight: 100}
        - {cluster: b, addresses: [192.0.2.2], weight: 100}
        - {cluster: c, addresses: [192.0.2.3], weight: 0}
    - name: all
      policy: all-healthy
      maxAnswers: 2
      targets:
        - {cluster: a, addresses: [192.0.2.1]}
        - {cluster: b, addresses: [192.0.2.2]}
        - {cluster: c, addresses: [192.0.2.3]}
"#;

fn snapshot(down: &[(&str, &str)]) -> Arc<crate::state::Snapshot> {
    snapshot_of(ZONE, down)
}

fn snapshot_of(yaml: &str, down: &[(&str, &str)]) -> Arc<crate::state::Snapshot> {
    let zones = LoadedConfig::parse(Path::new("t.yaml"), yaml)
        .unwrap()
        .zones;
    let c = |s: &str| ClusterId::new(s).unwrap();
    let latency = LatencyTable::build([
        ("198.51.100.0/24".parse().unwrap(), c("a"), 30.0),
        ("198.51.100.0/24".parse().unwrap(), c("b"), 10.0),
        ("203.0.113.0/24".parse().unwrap(), c("a"), 5.0),
        ("203.0.0.0/16".parse().unwrap(), c("b"), 5.0),
    ]);
    let health = health_view(&zones, |_, _, g, t| {
        let is_down = down
            .iter()
            .any(|(n, cl)| g.fqdn.starts_with(n) && t.cluster.as_str() == *cl);
        let probe = if is_down {
            Health::Unhealthy
        } else {
            Health::Healthy
        };
        TargetHealth::combine(probe, None)
    });
    let state = State::new(zones, Arc::new(health), Arc::new(latency));
    state.load_full()
}

fn pick(
    snap: &crate::state::Snapshot,
    name: &str,
    client: &str,
    family: Family,
) -> (Vec<String>, u8, bool) {
    let id = snap
        .zones
        .gslb_by_name(&format!("{name}.svc.example."))
        .unwrap();
    let net: IpNet = client.parse().unwrap();
    let ch = choose(snap, id, &Client::new(net.addr(), net.prefix_len()), family);
    let g = &snap.zones.gslb[id];
    (
        ch.targets
            .iter()
            .map(|t| g.targets[*t].cluster.to_string())
            .collect(),
        ch.scope,
        ch.fail_open,
    )
}

#[test]
fn latency_policy_cases() {
    let s = snapshot(&[]);
    let v4 = Family::V4;
    // (client, down, expected cluster, expected scope)
    type Case<'a> = (&'a str, &'a [(&'a str, &'a str)], &'a str, u8);
    let cases: &[Case] = &[
        ("198.51.100.0/24", &[], "b", 24),
        ("198.51.100.77/32", &[], "b", 24),
        ("198.51.100.0/24", &[("lat", "b")], "a", 24),
        // No data for the client: default order (c first), scope = source length.
        ("192.0.2.0/24", &[], "c", 24),
        ("192.0.2.0/24", &[("lat", "c")], "a", 24),
        // A /16 with a /24 inside it: scope narrows to the client's source length.
        ("203.0.7.0/24", &[], "b", 24),
        ("203.0.113.0/24", &[], "a", 24),
        // ECS /0: no client information, scope 0.
        ("0.0.0.0/0", &[], "c", 0),
    ];
    for (client, down, want, scope) in cases {
        let s2 = if down.is_empty() {
            s.clone()
        } else {
            snapshot(down)
        };
        let (got, got_scope, fail_open) = pick(&s2, "lat", client, v4);
        assert_eq!(got, vec![want.to_string()], "{client} down={down:?}");
        assert_eq!(got_scope, *scope, "{client} down={down:?}");
        assert!(!fail_open);
    }
    // AAAA: only target a has IPv6; no IPv6 latency data → default order, scope 0.
    let (got, scope, _) = pick(&s, "lat", "2001:db8:1::/48", Family::V6);
    assert_eq!((got, scope), (vec!["a".to_string()], 0));
}

#[test]
fn failover_policy_cases() {
    let (got, scope, _) = pick(&snapshot(&[]), "fo", "198.51.100.0/24", Family::V4);
    assert_eq!((got, scope), (vec!["b".to_string(), "c".to_string()], 0));
    let (got, _, _) = pick(
        &snapshot(&[("fo", "b")]),
        "fo",
        "198.51.100.0/24",
        Family::V4,
    );
    assert_eq!(got, vec!["c".to_string()]);
    let (got, _, fo) = pick(
        &snapshot(&[("fo", "b"), ("fo", "c")]),
        "fo",
        "198.51.100.0/24",
        Family::V4,
    );
    assert_eq!((got, fo), (vec!["a".to_string()], false));
}

#[test]
fn all_healthy_and_fail_open() {
    let (got, scope, _) = pick(&snapshot(&[]), "all", "198.51.100.0/24", Family::V4);
    assert_eq!((got.len(), scope), (2, 0));
    let (got, _, _) = pick(
        &snapshot(&[("all", "a")]),
        "all",
        "198.51.100.0/24",
        Family::V4,
    );
    assert_eq!(got, vec!["b".to_string(), "c".to_string()]);
    let down = [("all", "a"), ("all", "b"), ("all", "c")];
    let (got, scope, fail_open) = pick(&snapshot(&down), "all", "198.51.100.0/24", Family::V4);
    assert_eq!((got.len(), scope, fail_open), (3, 0, true));
    // failOpen: false answers nobody rather than every unhealthy target.
    let closed = ZONE.replace(
        "      maxAnswers: 2\n",
        "      maxAnswers: 2\n      failOpen: false\n",
    );
    assert_ne!(closed, ZONE);
    let (got, _, fail_open) = pick(
        &snapshot_of(&closed, &down),
        "all",
        "198.51.100.0/24",
        Family::V4,
    );
    assert_eq!((got, fail_open), (Vec::<String>::new(), false));
    let (got, _, _) = pick(
        &snapshot_of(&closed, &down[..2]),
        "all",
        "198.51.100.0/24",
        Family::V4,
    );
    assert_eq!(got, vec!["c".to_string()]);
}

#[test]
fn weighted_is_consistent_and_follows_weights() {
    let s = snapshot(&[]);
    let mut counts = std::collections::HashMap::new();
    let mut first = Vec::new();
    for i in 0..2000u32 {
        let client = format!("10.{}.{}.0/24", i / 256, i % 256);
        let (got, scope, _) = pick(&s, "w", &client, Family::V4);
        assert_eq!(got.len(), 1);
        assert_eq!(scope, 24);
        // Same network, different host: same answer.
        let host = format!("10.{}.{}.77/32", i / 256, i % 256);
        assert_eq!(pick(&s, "w", &host, Family::V4).0, got);
        *counts.entry(got[0].clone()).or_insert(0) += 1;
        first.push(got[0].clone());
    }
    assert!(
        !counts.contains_key("c"),
        "weight 0 gets nothing: {counts:?}"
    );
    let a = counts.get("a").copied().unwrap_or(0);
    assert!((800..1200).contains(&a), "a got {a} of 2000: {counts:?}");
    // b down: only b's clients move.
    let s2 = snapshot(&[("w", "b")]);
    for (i, before) in first.iter().enumerate() {
        let client = format!("10.{}.{}.0/24", i / 256, i % 256);
        let after = pick(&s2, "w", &client, Family::V4).0;
        if before == "a" {
            assert_eq!(
                after,
                vec!["a".to_string()],
                "{client} moved off a healthy target"
            );
        }
    }
}

#[test]
fn weighted_weight_change_moves_few_clients() {
    let before = snapshot(&[]);
    // b: 100 → 125. Only clients moving from a to b may change (about 11% of a's).
    let after = snapshot_of(
        &ZONE.replace(
            "addresses: [192.0.2.2], weight: 100",
            "addresses: [192.0.2.2], weight: 125",
        ),
        &[],
    );
    let (mut moved, mut wrong_way) = (0, 0);
    let n = 3000u32;
    for i in 0..n {
        let client = format!("172.{}.{}.0/24", 16 + i / 256, i % 256);
        let b0 = pick(&before, "w", &client, Family::V4).0;
        let b1 = pick(&after, "w", &client, Family::V4).0;
        if b0 != b1 {
            moved += 1;
            if !(b0 == vec!["a".to_string()] && b1 == vec!["b".to_string()]) {
                wrong_way += 1;
            }
        }
    }
    assert_eq!(
        wrong_way, 0,
        "a weight increase only moves clients to that target"
    );
    let share = f64::from(moved) / f64::from(n);
    assert!(
        share > 0.03 && share < 0.12,
        "moved {moved} of {n} ({share:.3}); ideal 0.5 - 100/225 = 0.056"
    );
}

/// A placement's view of one target: `(name prefix, cluster, weight, role, health, addresses)`.
type Placed<'a> = (&'a str, &'a str, u32, Role, Health, &'a [&'a str]);

/// [`snapshot`] with every target healthy by probe and `placed` over the zone.
fn placed_snapshot(placed: &[Placed]) -> Arc<crate::state::Snapshot> {
    let zones = LoadedConfig::parse(Path::new("t.yaml"), ZONE)
        .unwrap()
        .zones;
    let health = health_view(&zones, |_, _, g, t| {
        let p = placed
            .iter()
            .find(|(n, c, ..)| g.fqdn.starts_with(n) && t.cluster.as_str() == *c)
            .map(|(_, _, weight, role, health, addrs)| {
                let (mut v4, mut v6) = (Vec::new(), Vec::new());
                for a in *addrs {
                    match a.parse::<std::net::IpAddr>().unwrap() {
                        std::net::IpAddr::V4(a) => v4.push(a),
                        std::net::IpAddr::V6(a) => v6.push(a),
                    }
                }
                Arc::new(crate::state::TargetPlacement {
                    weight: *weight,
                    role: *role,
                    health: *health,
                    v4,
                    v6,
                })
            });
        TargetHealth::combine(Health::Healthy, None).with_placement(p)
    });
    State::new(zones, Arc::new(health), Arc::new(LatencyTable::default())).load_full()
}

/// Answer counts of `name` over 4000 client /24s.
fn shares(s: &crate::state::Snapshot, name: &str) -> std::collections::BTreeMap<String, u32> {
    let mut counts = std::collections::BTreeMap::new();
    for i in 0..4000u32 {
        let client = format!("10.{}.{}.0/24", i / 256, i % 256);
        for c in pick(s, name, &client, Family::V4).0 {
            *counts.entry(c).or_insert(0) += 1;
        }
    }
    counts
}

const A: Role = Role::Active;
const H: Health = Health::Healthy;

#[test]
fn placement_weights_replace_the_zone_weights() {
    // Zone: a 100, b 100, c 0. Placement: a 3, b 1, c 0 (c never answered).
    let s = placed_snapshot(&[
        ("w", "a", 3, A, H, &[]),
        ("w", "b", 1, A, H, &[]),
        ("w", "c", 0, A, H, &[]),
    ]);
    let counts = shares(&s, "w");
    let a = counts.get("a").copied().unwrap_or(0);
    assert!(
        (2800..3200).contains(&a),
        "3:1 → a ~3000 of 4000: {counts:?}"
    );
    assert!(!counts.contains_key("c"), "weight 0: {counts:?}");
    // The placement lifts c from the zone's 0 and drops a to 0.
    let s = placed_snapshot(&[("w", "a", 0, A, H, &[]), ("w", "c", 100, A, H, &[])]);
    let counts = shares(&s, "w");
    assert!(!counts.contains_key("a"), "{counts:?}");
    let c = counts.get("c").copied().unwrap_or(0);
    assert!((1800..2200).contains(&c), "b 100 (zone), c 100: {counts:?}");
    // explain says where each weight comes from.
    let id = s.zones.gslb_by_name("w.svc.example.").unwrap();
    let ch = choose(
        &s,
        id,
        &Client::new("10.0.0.0".parse().unwrap(), 24),
        Family::V4,
    );
    let cands = candidates(&s, id, &ch);
    let from: Vec<(&str, u32, &str)> = cands
        .iter()
        .map(|c| (c.cluster.as_str(), c.weight, c.weight_from.as_str()))
        .collect();
    assert_eq!(
        from,
        [
            ("a", 0, "placement"),
            ("b", 100, "zone"),
            ("c", 100, "placement")
        ]
    );
}

#[test]
fn weight_zero_and_draining_take_no_new_clients_in_every_policy() {
    for name in ["lat", "fo", "all", "w"] {
        let s = placed_snapshot(&[
            (name, "b", 0, A, H, &[]),
            (name, "c", 5, Role::Draining, H, &[]),
        ]);
        let counts = shares(&s, name);
        assert_eq!(
            counts.keys().collect::<Vec<_>>(),
            ["a"],
            "{name}: {counts:?}"
        );
    }
    // Every healthy target draining: the healthy ones are answered, flagged fail open.
    let s = placed_snapshot(&[
        ("all", "a", 1, Role::Draining, H, &[]),
        ("all", "b", 1, Role::Draining, H, &[]),
        ("all", "c", 1, A, Health::Unhealthy, &[]),
    ]);
    let (got, _, fail_open) = pick(&s, "all", "198.51.100.0/24", Family::V4);
    assert_eq!((got, fail_open), (vec!["a".into(), "b".into()], true));
}

#[test]
fn standby_only_when_no_active_target_is_healthy() {
    let standby = |a_health| {
        placed_snapshot(&[
            ("all", "a", 1, A, a_health, &[]),
            ("all", "b", 1, Role::Standby, H, &[]),
            ("all", "c", 1, Role::Standby, H, &[]),
        ])
    };
    let (got, _, _) = pick(&standby(H), "all", "198.51.100.0/24", Family::V4);
    assert_eq!(got, vec!["a".to_string()]);
    let (got, _, fail_open) = pick(
        &standby(Health::Unhealthy),
        "all",
        "198.51.100.0/24",
        Family::V4,
    );
    assert_eq!((got, fail_open), (vec!["b".into(), "c".into()], false));
    // Unknown health from the placement changes nothing; unhealthy acts like a report.
    let s = placed_snapshot(&[("fo", "b", 1, A, Health::Unknown, &[])]);
    assert_eq!(pick(&s, "fo", "198.51.100.0/24", Family::V4).0, ["b", "c"]);
    let s = placed_snapshot(&[("fo", "b", 1, A, Health::Unhealthy, &[])]);
    assert_eq!(pick(&s, "fo", "198.51.100.0/24", Family::V4).0, ["c"]);
}

#[test]
fn placement_addresses_replace_the_zones() {
    let s = placed_snapshot(&[
        ("all", "a", 1, A, H, &["198.51.100.9", "2001:db8::9"]),
        ("all", "b", 1, A, H, &[]),
    ]);
    let id = s.zones.gslb_by_name("all.svc.example.").unwrap();
    let v4: Vec<String> = s.v4(id, 0).iter().map(ToString::to_string).collect();
    assert_eq!(v4, ["198.51.100.9"]);
    assert_eq!(s.v6(id, 0).len(), 1);
    // b keeps the zone's address (empty placement addresses).
    assert_eq!(s.v4(id, 1)[0].to_string(), "192.0.2.2");
    // AAAA: only a has IPv6 now.
    let (got, _, _) = pick(&s, "all", "2001:db8::/48", Family::V6);
    assert_eq!(got, ["a"]);
}
