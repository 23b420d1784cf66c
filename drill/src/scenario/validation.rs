//! The document as written (`Raw*`) and every check made from it alone
//! (`file:line:col` errors through the config envelope).

use std::collections::BTreeSet;
use std::time::Duration;

use causeway_config::{ConfigError, Document, HumanDuration};
use causeway_model::ClusterId;
use serde::Deserialize;

use super::*;

// ----- The document as written -----

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct ScenarioSpec {
    description: String,
    #[serde(default)]
    hypothesis: String,
    topology: Topology,
    #[serde(default)]
    install: Install,
    steps: Vec<RawStep>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct RawStep {
    name: String,
    #[serde(default)]
    wait: Option<HumanDuration>,
    #[serde(default)]
    fault: Option<RawFault>,
    #[serde(default)]
    expect: Option<RawExpect>,
    #[serde(default)]
    measure: Option<Measure>,
    #[serde(default)]
    restore: Option<String>,
}

/// `fault`: exactly one of these (serde_yaml_ng reads externally tagged enums only
/// from YAML tags, so the one-key mapping is read as a struct of options).
#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct RawFault {
    #[serde(default)]
    agent_killed: Option<ClusterFault>,
    #[serde(default)]
    agents_stopped: Option<ClusterFault>,
    #[serde(default)]
    api_server_stopped: Option<ClusterFault>,
    #[serde(default)]
    network_cut: Option<ClusterFault>,
    #[serde(default)]
    stub_killed: Option<NoFields>,
    #[serde(default)]
    health_failing: Option<ClusterFault>,
    #[serde(default)]
    load_surge: Option<RawLoadSurge>,
    #[serde(default)]
    latency_change: Option<LatencyChange>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct RawLoadSurge {
    #[serde(default)]
    scale: Option<ScaleSurge>,
    #[serde(default)]
    pod_cpu: Option<PodCpuSurge>,
    #[serde(default)]
    external: Option<ExternalSurge>,
}

impl RawFault {
    fn into_fault(self) -> Result<Fault, (&'static str, &'static str)> {
        const ONE: &str = "exactly one of agentKilled, agentsStopped, apiServerStopped, networkCut, stubKilled, healthFailing, loadSurge or latencyChange";
        let mut found = Vec::new();
        if let Some(c) = self.agent_killed {
            found.push(Fault::AgentKilled(c));
        }
        if let Some(c) = self.agents_stopped {
            found.push(Fault::AgentsStopped(c));
        }
        if let Some(c) = self.api_server_stopped {
            found.push(Fault::ApiServerStopped(c));
        }
        if let Some(c) = self.network_cut {
            found.push(Fault::NetworkCut(c));
        }
        if let Some(n) = self.stub_killed {
            found.push(Fault::StubKilled(n));
        }
        if let Some(c) = self.health_failing {
            found.push(Fault::HealthFailing(c));
        }
        if let Some(l) = self.latency_change {
            found.push(Fault::LatencyChange(l));
        }
        if let Some(l) = self.load_surge {
            let mut surges = Vec::new();
            if let Some(x) = l.scale {
                surges.push(LoadSurge::Scale(x));
            }
            if let Some(x) = l.pod_cpu {
                surges.push(LoadSurge::PodCpu(x));
            }
            if let Some(x) = l.external {
                surges.push(LoadSurge::External(x));
            }
            if surges.len() != 1 {
                return Err((
                    "fault.loadSurge",
                    "exactly one of scale, podCpu or external",
                ));
            }
            found.extend(surges.pop().map(Fault::LoadSurge));
        }
        if found.len() != 1 {
            return Err(("fault", ONE));
        }
        found.pop().ok_or(("fault", ONE))
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct RawExpect {
    #[serde(default)]
    dns: Option<RawDns>,
    #[serde(default)]
    replicas_ready: Option<ReplicasExpect>,
    #[serde(default)]
    primary: Option<PrimaryExpect>,
    #[serde(default)]
    metric: Option<MetricExpect>,
    #[serde(default)]
    kubectl: Option<KubectlExpect>,
    within: HumanDuration,
    #[serde(default, rename = "for")]
    hold: Option<HumanDuration>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct RawDns {
    name: String,
    #[serde(default)]
    client: Option<String>,
    #[serde(default)]
    equals: Option<Vec<ClusterId>>,
    #[serde(default)]
    contains: Option<Vec<ClusterId>>,
    #[serde(default)]
    excludes: Option<Vec<ClusterId>>,
}

/// Everything that can be checked from the document alone.
pub(super) fn check(doc: &Document) -> Result<Scenario, ConfigError> {
    let spec: ScenarioSpec = doc.spec()?;
    if spec.description.trim().is_empty() {
        return Err(doc.error("spec.description", "must not be empty"));
    }
    check_topology(doc, &spec.topology)?;
    for (list, paths) in [
        ("policies", &spec.install.policies),
        ("zones", &spec.install.zones),
    ] {
        for (i, p) in paths.iter().enumerate() {
            if p.as_os_str().is_empty() {
                return Err(doc.error(&format!("spec.install.{list}[{i}]"), "must not be empty"));
            }
        }
    }
    let clusters: BTreeSet<&ClusterId> = spec.topology.clusters.iter().map(|c| &c.name).collect();
    let has_home = spec.topology.clusters.iter().any(|c| c.role == Role::Idc);
    for (i, w) in spec.install.workloads.iter().enumerate() {
        if w.file.as_os_str().is_empty() {
            return Err(doc.error(
                &format!("spec.install.workloads[{i}].file"),
                "must not be empty",
            ));
        }
        if w.clusters.is_empty() && !has_home {
            return Err(doc.error(
                &format!("spec.install.workloads[{i}]"),
                "no home cluster (role: idc) to apply it to; list its clusters",
            ));
        }
        for (j, c) in w.clusters.iter().enumerate() {
            if !clusters.contains(c) {
                return Err(doc.error(
                    &format!("spec.install.workloads[{i}].clusters[{j}]"),
                    format_args!(
                        "unknown cluster \"{c}\"; topology.clusters has {}",
                        names(&clusters)
                    ),
                ));
            }
        }
    }
    if spec.steps.is_empty() {
        return Err(doc.error("spec.steps", "a scenario needs at least one step"));
    }
    let clients: BTreeSet<&str> = spec
        .topology
        .clients
        .iter()
        .map(|c| c.name.as_str())
        .collect();
    let users: BTreeSet<&str> = spec
        .topology
        .users
        .iter()
        .map(|u| u.name.as_str())
        .collect();
    let mut steps: Vec<Step> = Vec::with_capacity(spec.steps.len());
    for (i, raw) in spec.steps.into_iter().enumerate() {
        let at = |field: &str| {
            if field.is_empty() {
                format!("spec.steps[{i}]")
            } else {
                format!("spec.steps[{i}].{field}")
            }
        };
        check_step_name(&raw.name).map_err(|r| doc.error(&at("name"), r))?;
        if steps.iter().any(|s| s.name == raw.name) {
            return Err(doc.error(
                &at("name"),
                format_args!(
                    "another step is named {:?}; step names are unique",
                    raw.name
                ),
            ));
        }
        let known = |c: &ClusterId, field: &str| -> Result<(), ConfigError> {
            if clusters.contains(c) {
                Ok(())
            } else {
                Err(doc.error(
                    &at(field),
                    format_args!(
                        "unknown cluster \"{c}\"; topology.clusters has {}",
                        names(&clusters)
                    ),
                ))
            }
        };
        let given = [
            raw.wait.is_some(),
            raw.fault.is_some(),
            raw.expect.is_some(),
            raw.measure.is_some(),
            raw.restore.is_some(),
        ];
        if given.iter().filter(|g| **g).count() != 1 {
            return Err(doc.error(
                &at(""),
                "a step has a name and exactly one of wait, fault, restore, expect or measure",
            ));
        }
        let action = if let Some(w) = raw.wait {
            check_duration(w.0).map_err(|r| doc.error(&at("wait"), r))?;
            StepAction::Wait(w.0)
        } else if let Some(fault) = raw.fault {
            let fault = fault
                .into_fault()
                .map_err(|(field, reason)| doc.error(&at(field), reason))?;
            check_fault(doc, &fault, &spec.topology, &at, &known)?;
            if matches!(fault, Fault::HealthFailing(_)) && spec.install.zones.is_empty() {
                return Err(doc.error(
                    &at("fault.healthFailing"),
                    "needs install.zones (dns health-checks their GSLB targets)",
                ));
            }
            StepAction::Fault(fault)
        } else if let Some(e) = raw.expect {
            StepAction::Expect(check_expect(doc, e, &clients, &users, &at, &known)?)
        } else if let Some(m) = raw.measure {
            check_measure(doc, &m, &steps, &at)?;
            StepAction::Measure(m)
        } else if let Some(r) = raw.restore {
            check_restore(&r, &steps).map_err(|reason| doc.error(&at("restore"), reason))?;
            StepAction::Restore(r)
        } else {
            // Counted above: exactly one is set.
            return Err(doc.error(&at(""), "empty step"));
        };
        steps.push(Step {
            name: raw.name,
            action,
        });
    }
    Ok(Scenario {
        file: doc.file().to_path_buf(),
        name: doc.name().to_string(),
        description: spec.description.trim().to_string(),
        hypothesis: spec.hypothesis.trim().to_string(),
        topology: spec.topology,
        install: spec.install,
        steps,
    })
}

fn names(clusters: &BTreeSet<&ClusterId>) -> String {
    let v: Vec<&str> = clusters.iter().map(|c| c.as_str()).collect();
    v.join(", ")
}

fn check_topology(doc: &Document, t: &Topology) -> Result<(), ConfigError> {
    if t.clusters.is_empty() {
        return Err(doc.error("spec.topology.clusters", "at least one cluster"));
    }
    let mut seen = BTreeSet::new();
    for (i, c) in t.clusters.iter().enumerate() {
        let at = |f: &str| format!("spec.topology.clusters[{i}].{f}");
        if !seen.insert(&c.name) {
            return Err(doc.error(
                &at("name"),
                format_args!("cluster {} is listed twice", c.name),
            ));
        }
        // Longer names do not fit the testbed's certificate and node names.
        if c.name.as_str().len() > 40 {
            return Err(doc.error(
                &at("name"),
                "sandbox cluster names are at most 40 characters",
            ));
        }
        if !(1..=100).contains(&c.nodes) {
            return Err(doc.error(&at("nodes"), "must be between 1 and 100"));
        }
        check_quantity(&c.cpu).map_err(|r| doc.error(&at("cpu"), r))?;
        if !(1..=4).contains(&c.agents) {
            return Err(doc.error(&at("agents"), "must be between 1 and 4"));
        }
    }
    let mut client_names = BTreeSet::new();
    for (i, n) in t.clients.iter().enumerate() {
        let at = |f: &str| format!("spec.topology.clients[{i}].{f}");
        if n.name.trim().is_empty() {
            return Err(doc.error(&at("name"), "must not be empty"));
        }
        if !client_names.insert(n.name.as_str()) {
            return Err(doc.error(
                &at("name"),
                format_args!("client network {:?} is listed twice", n.name),
            ));
        }
        for c in n.rtt_ms.keys() {
            if !seen.contains(c) {
                return Err(doc.error(
                    &format!("spec.topology.clients[{i}].rttMs.{c}"),
                    format_args!(
                        "unknown cluster \"{c}\"; topology.clusters has {}",
                        names(&seen)
                    ),
                ));
            }
        }
    }
    let mut user_names = BTreeSet::new();
    for (i, u) in t.users.iter().enumerate() {
        let at = |f: &str| format!("spec.topology.users[{i}].{f}");
        let plain = u
            .name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.');
        if u.name.is_empty() || u.name.len() > 63 || !plain || u.name.starts_with('.') {
            return Err(doc.error(
                &at("name"),
                "1 to 63 letters, digits, '-', '_' or '.' (it names <work>/<name>.kubeconfig)",
            ));
        }
        if !user_names.insert(u.name.as_str()) {
            return Err(doc.error(
                &at("name"),
                format_args!("user {:?} is listed twice", u.name),
            ));
        }
        if u.group.trim().is_empty() {
            return Err(doc.error(&at("group"), "must not be empty"));
        }
        if u.clusters.trim().is_empty() {
            return Err(doc.error(&at("clusters"), "a glob (\"*\", \"idc-*\")"));
        }
    }
    if !(1..=2).contains(&t.stub.replicas) {
        return Err(doc.error(
            "spec.topology.stub.replicas",
            "1, or 2 for an active stub and a standby",
        ));
    }
    Ok(())
}

fn check_step_name(name: &str) -> Result<(), String> {
    if name.is_empty() || name.len() > 63 {
        return Err("a step name is 1 to 63 characters".into());
    }
    if !name
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.')
    {
        return Err(format!(
            "step name {name:?}: letters, digits, '-', '_' and '.' only (measures refer to it)"
        ));
    }
    Ok(())
}

fn check_duration(d: Duration) -> Result<(), String> {
    if d.is_zero() {
        return Err("must be more than 0s".into());
    }
    if d > MAX_STEP_DURATION {
        return Err("must be at most 1h".into());
    }
    Ok(())
}

/// A Kubernetes CPU quantity as the sandbox takes it: a positive decimal, optionally
/// with `m` (milli-CPU).
pub(super) fn check_quantity(q: &str) -> Result<(), String> {
    let digits = q.strip_suffix('m').unwrap_or(q);
    let mut parts = digits.splitn(2, '.');
    let whole = parts.next().unwrap_or_default();
    let frac = parts.next();
    let all_digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    let ok =
        all_digits(whole) && frac.is_none_or(all_digits) && !(frac.is_some() && q.ends_with('m'));
    if !ok || digits.bytes().all(|b| b == b'0' || b == b'.') {
        return Err(format!(
            "invalid CPU quantity {q:?}; write e.g. \"2\", \"0.5\" or \"500m\" (more than 0)"
        ));
    }
    Ok(())
}

fn check_fault(
    doc: &Document,
    fault: &Fault,
    topology: &Topology,
    at: &dyn Fn(&str) -> String,
    known: &dyn Fn(&ClusterId, &str) -> Result<(), ConfigError>,
) -> Result<(), ConfigError> {
    match fault {
        Fault::AgentKilled(c) => known(&c.cluster, "fault.agentKilled.cluster"),
        Fault::AgentsStopped(c) => known(&c.cluster, "fault.agentsStopped.cluster"),
        Fault::ApiServerStopped(c) => known(&c.cluster, "fault.apiServerStopped.cluster"),
        Fault::NetworkCut(c) => known(&c.cluster, "fault.networkCut.cluster"),
        Fault::HealthFailing(c) => known(&c.cluster, "fault.healthFailing.cluster"),
        Fault::StubKilled(_) => {
            if topology.stub.replicas < 2 {
                return Err(doc.error(
                    &at("fault.stubKilled"),
                    "needs a standby to take over: set topology.stub.replicas: 2",
                ));
            }
            Ok(())
        }
        Fault::LoadSurge(LoadSurge::Scale(s)) => {
            known(&s.cluster, "fault.loadSurge.scale.cluster")?;
            if s.replicas == 0 {
                return Err(doc.error(&at("fault.loadSurge.scale.replicas"), "must be at least 1"));
            }
            Ok(())
        }
        Fault::LoadSurge(LoadSurge::PodCpu(s)) => {
            known(&s.cluster, "fault.loadSurge.podCpu.cluster")?;
            check_quantity(&s.cpu).map_err(|r| doc.error(&at("fault.loadSurge.podCpu.cpu"), r))
        }
        Fault::LatencyChange(l) => check_latency_change(doc, l, topology, at, known),
        Fault::LoadSurge(LoadSurge::External(e)) => {
            if !e.value.is_finite() || e.value < 0.0 {
                return Err(doc.error(
                    &at("fault.loadSurge.external.value"),
                    "must be a finite number ≥ 0",
                ));
            }
            if e.policy.trim().is_empty() {
                return Err(doc.error(&at("fault.loadSurge.external.policy"), "must not be empty"));
            }
            Ok(())
        }
    }
}

fn check_latency_change(
    doc: &Document,
    l: &LatencyChange,
    topology: &Topology,
    at: &dyn Fn(&str) -> String,
    known: &dyn Fn(&ClusterId, &str) -> Result<(), ConfigError>,
) -> Result<(), ConfigError> {
    let Some(client) = topology.clients.iter().find(|c| c.name == l.client) else {
        let list: Vec<&str> = topology.clients.iter().map(|c| c.name.as_str()).collect();
        return Err(doc.error(
            &at("fault.latencyChange.client"),
            format_args!(
                "unknown client network {:?}; topology.clients has {}",
                l.client,
                if list.is_empty() {
                    "none".to_string()
                } else {
                    list.join(", ")
                }
            ),
        ));
    };
    if l.rtt_ms.is_empty() {
        return Err(doc.error(
            &at("fault.latencyChange.rttMs"),
            "name at least one cluster and its new RTT",
        ));
    }
    for c in l.rtt_ms.keys() {
        let field = format!("fault.latencyChange.rttMs.{c}");
        known(c, &field)?;
        if !client.rtt_ms.contains_key(c) {
            return Err(doc.error(
                &at(&field),
                format_args!(
                    "client network {:?} has no RTT to {c} in topology.clients (the fault is \
                     reverted to it)",
                    l.client
                ),
            ));
        }
    }
    Ok(())
}

/// `restore: STEP`: an earlier fault step, not restored already.
fn check_restore(name: &str, earlier: &[Step]) -> Result<(), String> {
    match earlier.iter().find(|s| s.name == name) {
        Some(s) if matches!(s.action, StepAction::Fault(_)) => {}
        Some(s) => {
            return Err(format!(
                "step {name:?} is a {}; restore names an earlier fault step",
                s.action.kind()
            ));
        }
        None => {
            let faults: Vec<&str> = earlier
                .iter()
                .filter(|s| matches!(s.action, StepAction::Fault(_)))
                .map(|s| s.name.as_str())
                .collect();
            return Err(format!(
                "no earlier fault step named {name:?} ({})",
                if faults.is_empty() {
                    "none".to_string()
                } else {
                    faults.join(", ")
                }
            ));
        }
    }
    if earlier
        .iter()
        .any(|s| matches!(&s.action, StepAction::Restore(r) if r == name))
    {
        return Err(format!(
            "fault {name:?} is restored by an earlier step already"
        ));
    }
    Ok(())
}

fn check_expect(
    doc: &Document,
    e: RawExpect,
    clients: &BTreeSet<&str>,
    users: &BTreeSet<&str>,
    at: &dyn Fn(&str) -> String,
    known: &dyn Fn(&ClusterId, &str) -> Result<(), ConfigError>,
) -> Result<Expect, ConfigError> {
    check_duration(e.within.0).map_err(|r| doc.error(&at("expect.within"), r))?;
    if let Some(h) = e.hold {
        check_duration(h.0).map_err(|r| doc.error(&at("expect.for"), r))?;
    }
    let given = [
        e.dns.is_some(),
        e.replicas_ready.is_some(),
        e.primary.is_some(),
        e.metric.is_some(),
        e.kubectl.is_some(),
    ];
    if given.iter().filter(|g| **g).count() != 1 {
        return Err(doc.error(
            &at("expect"),
            "exactly one of dns, replicasReady, primary, metric or kubectl (with within and optional for)",
        ));
    }
    let condition = if let Some(d) = e.dns {
        if d.name.trim().is_empty() {
            return Err(doc.error(&at("expect.dns.name"), "must not be empty"));
        }
        if let Some(c) = &d.client
            && !clients.contains(c.as_str())
        {
            let list: Vec<&str> = clients.iter().copied().collect();
            return Err(doc.error(
                &at("expect.dns.client"),
                format_args!(
                    "unknown client network {c:?}; topology.clients has {}",
                    if list.is_empty() {
                        "none".to_string()
                    } else {
                        list.join(", ")
                    }
                ),
            ));
        }
        let (word, answer) = match (d.equals, d.contains, d.excludes) {
            (Some(l), None, None) => ("equals", DnsMatch::Equals(l)),
            (None, Some(l), None) => ("contains", DnsMatch::Contains(l)),
            (None, None, Some(l)) => ("excludes", DnsMatch::Excludes(l)),
            _ => {
                return Err(doc.error(
                    &at("expect.dns"),
                    "exactly one of equals, contains or excludes (a list of clusters)",
                ));
            }
        };
        let (DnsMatch::Equals(list) | DnsMatch::Contains(list) | DnsMatch::Excludes(list)) =
            &answer;
        if list.is_empty() && word != "equals" {
            return Err(doc.error(
                &at(&format!("expect.dns.{word}")),
                "list at least one cluster (equals: [] means no answer)",
            ));
        }
        for (j, c) in list.iter().enumerate() {
            known(c, &format!("expect.dns.{word}[{j}]"))?;
        }
        Condition::Dns(DnsExpect {
            name: d.name,
            client: d.client,
            answer,
        })
    } else if let Some(r) = e.replicas_ready {
        known(&r.cluster, "expect.replicasReady.cluster")?;
        Condition::ReplicasReady(r)
    } else if let Some(p) = e.primary {
        known(&p.cluster, "expect.primary.cluster")?;
        if p.policy.trim().is_empty() {
            return Err(doc.error(&at("expect.primary.policy"), "must not be empty"));
        }
        Condition::Primary(p)
    } else if let Some(m) = e.metric {
        if !m.name.starts_with("causeway_") {
            return Err(doc.error(
                &at("expect.metric.name"),
                format_args!("{:?} is not a Causeway metric (causeway_…)", m.name),
            ));
        }
        if !m.value.is_finite() {
            return Err(doc.error(&at("expect.metric.value"), "must be a finite number"));
        }
        Condition::Metric(m)
    } else if let Some(k) = e.kubectl {
        if !users.contains(k.user.as_str()) {
            let list: Vec<&str> = users.iter().copied().collect();
            return Err(doc.error(
                &at("expect.kubectl.user"),
                format_args!(
                    "unknown user {:?}; topology.users has {}",
                    k.user,
                    if list.is_empty() {
                        "none".to_string()
                    } else {
                        list.join(", ")
                    }
                ),
            ));
        }
        known(&k.cluster, "expect.kubectl.cluster")?;
        if k.succeeds.is_some() && k.outcome.is_some() {
            return Err(doc.error(
                &at("expect.kubectl.outcome"),
                "either succeeds or outcome, not both",
            ));
        }
        if k.args.is_empty() || k.args.iter().any(|a| a.is_empty()) {
            return Err(doc.error(
                &at("expect.kubectl.args"),
                "kubectl's arguments, none empty (e.g. [get, pods, -n, shop])",
            ));
        }
        Condition::Kubectl(k)
    } else {
        return Err(doc.error(&at("expect"), "no condition"));
    };
    Ok(Expect {
        condition,
        within: e.within.0,
        hold: e.hold.map(|h| h.0),
    })
}

fn check_measure(
    doc: &Document,
    m: &Measure,
    earlier: &[Step],
    at: &dyn Fn(&str) -> String,
) -> Result<(), ConfigError> {
    let find = |name: &str, field: &str| -> Result<usize, ConfigError> {
        match earlier.iter().position(|s| s.name == name) {
            Some(i) if matches!(earlier[i].action, StepAction::Measure(_)) => Err(doc.error(
                &at(field),
                format_args!("step {name:?} is a measure; name a wait, fault or expect step"),
            )),
            Some(i) => Ok(i),
            None => {
                let list: Vec<&str> = earlier
                    .iter()
                    .filter(|s| !matches!(s.action, StepAction::Measure(_)))
                    .map(|s| s.name.as_str())
                    .collect();
                Err(doc.error(
                    &at(field),
                    format_args!(
                        "no earlier step named {name:?}; a measure names steps before it ({})",
                        if list.is_empty() {
                            "none".to_string()
                        } else {
                            list.join(", ")
                        }
                    ),
                ))
            }
        }
    };
    let from = find(&m.from, "measure.from")?;
    let to = find(&m.to, "measure.to")?;
    if from >= to {
        return Err(doc.error(
            &at("measure.to"),
            format_args!("step {:?} must come after {:?}", m.to, m.from),
        ));
    }
    if let Some(max) = m.at_most {
        check_duration(max.0).map_err(|r| doc.error(&at("measure.atMost"), r))?;
    }
    Ok(())
}
