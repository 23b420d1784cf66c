//! Faults: applying one, and reverting every applied fault (newest first) at the end of
//! the drill, on failure and on Ctrl-C.

use std::time::Duration;

use causeway_testbed::testing::HttpClient;

use super::kube::{Kubectl, kubectl};
use super::sandbox::{Sandbox, signal_pid, stub_ready};
use crate::scenario::{Fault, LatencyChange, LoadSurge, Scenario, WorkloadRef};

/// A fault as applied, with what its revert needs.
pub(crate) enum Applied {
    /// These agents of the cluster were stopped; started again on revert.
    AgentsDown { cluster: String, agents: Vec<usize> },
    /// The kube-apiserver got SIGSTOP; SIGCONT on revert.
    ApiServerStopped { pid: u32 },
    /// The active stub (index in `Sandbox::stubs`) was SIGKILLed; started again (on its
    /// ports, as a standby now) on revert.
    StubKilled { index: usize },
    /// The cluster's health endpoint answers 503; 200 again on revert.
    HealthFailing { cluster: String },
    /// The cluster's relay is cut; healed on revert.
    NetworkCut { cluster: String },
    /// The Deployment was scaled from `before`.
    Scaled {
        cluster: String,
        workload: WorkloadRef,
        before: u32,
    },
    /// Simulated CPU set on the pods matching `selector`.
    PodCpu {
        cluster: String,
        namespace: String,
        selector: String,
    },
    /// A value was posted to the scheduler (nothing to revert).
    External,
    /// RTTs from `subnet` were posted to dns; `before` (from `topology.clients`) is
    /// posted on revert.
    Latency {
        subnet: String,
        before: Vec<(String, u32)>,
    },
}

/// Applies `fault` to the sandbox.
pub(crate) async fn apply(
    sb: &mut Sandbox,
    scenario: &Scenario,
    fault: &Fault,
) -> Result<Applied, String> {
    match fault {
        Fault::LatencyChange(l) => latency_change(sb, scenario, l).await,
        Fault::AgentKilled(c) | Fault::AgentsStopped(c) if sb.target.is_some() => {
            // A target's agents run as a Deployment: scale it (one fewer, or to 0).
            let agents = sb
                .target
                .as_ref()
                .and_then(|t| t.cluster(c.cluster.as_str()))
                .and_then(|t| t.agents.clone())
                .ok_or_else(|| {
                    format!("the target does not say where {}'s agents run", c.cluster)
                })?;
            let k = sb.member_kubectl(c.cluster.as_str())?;
            let before = replicas(&k, &agents).await?;
            let to = if matches!(fault, Fault::AgentKilled(_)) {
                before.saturating_sub(1)
            } else {
                0
            };
            scale(&k, &agents, to).await?;
            Ok(Applied::Scaled {
                cluster: c.cluster.to_string(),
                workload: agents,
                before,
            })
        }
        Fault::AgentKilled(c) => {
            let cluster = c.cluster.to_string();
            let agents = sb
                .agents
                .get_mut(&cluster)
                .ok_or_else(|| format!("no agents of {cluster}"))?;
            let Some(index) = agents.iter().position(Option::is_some) else {
                return Err(format!("every agent of {cluster} is stopped already"));
            };
            if let Some(p) = agents[index].take() {
                p.kill();
            }
            Ok(Applied::AgentsDown {
                cluster,
                agents: vec![index],
            })
        }
        Fault::AgentsStopped(c) => {
            let cluster = c.cluster.to_string();
            let agents = sb
                .agents
                .get_mut(&cluster)
                .ok_or_else(|| format!("no agents of {cluster}"))?;
            let mut stopped = Vec::new();
            let mut procs = Vec::new();
            for (i, slot) in agents.iter_mut().enumerate() {
                if let Some(p) = slot.take() {
                    p.signal(libc::SIGTERM);
                    procs.push(p);
                    stopped.push(i);
                }
            }
            for _ in 0..100 {
                if procs.iter().all(|p| !p.alive()) {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            for p in &procs {
                p.kill();
            }
            Ok(Applied::AgentsDown {
                cluster,
                agents: stopped,
            })
        }
        Fault::ApiServerStopped(c) => {
            let tb = sb.testbed.as_ref().ok_or("no testbed")?;
            let p = tb
                .processes()
                .into_iter()
                .find(|p| p.cluster == c.cluster.as_str() && p.component == "kube-apiserver")
                .ok_or_else(|| format!("no kube-apiserver process of {}", c.cluster))?;
            if !signal_pid(p.pid, libc::SIGSTOP) {
                return Err(format!("cannot stop kube-apiserver pid {}", p.pid));
            }
            Ok(Applied::ApiServerStopped { pid: p.pid })
        }
        Fault::NetworkCut(c) => {
            let relay = sb
                .relays
                .get(c.cluster.as_str())
                .ok_or_else(|| format!("{}'s agents do not dial through a relay", c.cluster))?;
            relay.cut();
            Ok(Applied::NetworkCut {
                cluster: c.cluster.to_string(),
            })
        }
        Fault::HealthFailing(c) => {
            let h = sb.health.get(c.cluster.as_str()).ok_or_else(|| {
                format!("no health endpoint of {} (no zones installed?)", c.cluster)
            })?;
            h.set_failing(true);
            Ok(Applied::HealthFailing {
                cluster: c.cluster.to_string(),
            })
        }
        Fault::StubKilled(_) => {
            if sb.stubs.len() < 2 {
                return Err("stubKilled needs two stubs (topology.stub.replicas: 2)".into());
            }
            let mut active = None;
            for (i, s) in sb.stubs.iter().enumerate() {
                if s.proc.is_some() && stub_ready(s.addrs.metrics).await {
                    active = Some(i);
                    break;
                }
            }
            let index = active.ok_or("no stub is active (ready) to kill")?;
            if let Some(p) = sb.stubs[index].proc.take() {
                p.kill();
            }
            Ok(Applied::StubKilled { index })
        }
        Fault::LoadSurge(LoadSurge::Scale(s)) => {
            let k = sb.member_kubectl(s.cluster.as_str())?;
            let before = replicas(&k, &s.workload)
                .await
                .map_err(|e| format!("{e} in {}", s.cluster))?;
            scale(&k, &s.workload, s.replicas).await?;
            Ok(Applied::Scaled {
                cluster: s.cluster.to_string(),
                workload: s.workload.clone(),
                before,
            })
        }
        Fault::LoadSurge(LoadSurge::PodCpu(s)) => {
            let c = sb.cluster(s.cluster.as_str())?.clone();
            let selector = kubectl(
                &c,
                &[
                    "get",
                    "deployment",
                    &s.workload.deployment,
                    "-n",
                    &s.workload.namespace,
                    "-o",
                    "go-template={{range $k, $v := .spec.selector.matchLabels}}{{$k}}={{$v}},{{end}}",
                ],
            )
            .await?
            .trim()
            .trim_end_matches(',')
            .to_string();
            let milli = millicores(&s.cpu)?;
            causeway_testbed::set_simulated_cpu(&c, &s.workload.namespace, &selector, milli)
                .await
                .map_err(|e| format!("simulated CPU: {e}"))?;
            Ok(Applied::PodCpu {
                cluster: s.cluster.to_string(),
                namespace: s.workload.namespace.clone(),
                selector,
            })
        }
        Fault::LoadSurge(LoadSurge::External(e)) => {
            let addr = sb.scheduler_addr.ok_or("no scheduler")?;
            let body = serde_json::json!({"policy": e.policy, "value": e.value}).to_string();
            let r = HttpClient::new(addr)
                .timeout(Duration::from_secs(5))
                .send(http::Method::POST, "/v1/external", body)
                .await
                .map_err(|e| format!("POST /v1/external: {e}"))?;
            if !(200..300).contains(&r.status) {
                return Err(format!(
                    "POST /v1/external: HTTP {}: {}",
                    r.status,
                    r.text().trim()
                ));
            }
            Ok(Applied::External)
        }
    }
}

/// Reverts one applied fault.
pub(crate) async fn revert(sb: &mut Sandbox, applied: &Applied) -> Result<(), String> {
    match applied {
        Applied::AgentsDown { cluster, agents } => {
            for &i in agents {
                let p = sb.spawn_agent(cluster, i, None)?;
                if let Some(slot) = sb.agents.get_mut(cluster).and_then(|a| a.get_mut(i)) {
                    *slot = Some(p);
                }
            }
            Ok(())
        }
        Applied::ApiServerStopped { pid } => {
            signal_pid(*pid, libc::SIGCONT);
            Ok(())
        }
        Applied::StubKilled { index } => sb.restart_stub(*index).await,
        Applied::HealthFailing { cluster } => {
            if let Some(h) = sb.health.get(cluster) {
                h.set_failing(false);
            }
            Ok(())
        }
        Applied::NetworkCut { cluster } => {
            if let Some(r) = sb.relays.get(cluster) {
                r.heal();
            }
            Ok(())
        }
        Applied::Scaled {
            cluster,
            workload,
            before,
        } => {
            let k = sb.member_kubectl(cluster)?;
            scale(&k, workload, *before).await
        }
        Applied::PodCpu {
            cluster,
            namespace,
            selector,
        } => {
            let c = sb.cluster(cluster)?.clone();
            let remove = format!("{}-", causeway_testbed::SIMULATED_CPU_ANNOTATION);
            let mut args = vec![
                "annotate",
                "pods",
                "-n",
                namespace.as_str(),
                remove.as_str(),
            ];
            if selector.is_empty() {
                args.push("--all");
            } else {
                args.extend(["-l", selector.as_str()]);
            }
            kubectl(&c, &args).await.map(|_| ())
        }
        Applied::External => Ok(()),
        Applied::Latency { subnet, before } => post_latency(sb, subnet, before).await,
    }
}

async fn latency_change(
    sb: &Sandbox,
    scenario: &Scenario,
    l: &LatencyChange,
) -> Result<Applied, String> {
    let client = scenario
        .topology
        .clients
        .iter()
        .find(|c| c.name == l.client)
        .ok_or_else(|| format!("no client network {}", l.client))?;
    let subnet = client.subnet.trunc().to_string();
    let mut before = Vec::new();
    let mut after = Vec::new();
    for (cluster, ms) in &l.rtt_ms {
        let was = client
            .rtt_ms
            .get(cluster)
            .ok_or_else(|| format!("{} has no RTT to {cluster}", l.client))?;
        before.push((cluster.to_string(), *was));
        after.push((cluster.to_string(), *ms));
    }
    post_latency(sb, &subnet, &after).await?;
    Ok(Applied::Latency { subnet, before })
}

/// `POST /v1/latency` to the drill's dns: these RTTs from `subnet`.
async fn post_latency(sb: &Sandbox, subnet: &str, rtts: &[(String, u32)]) -> Result<(), String> {
    let addr = sb
        .dns_api
        .ok_or("no dns (the scenario installs no zones)")?;
    let body = latency_body(subnet, rtts);
    let r = HttpClient::new(addr)
        .timeout(Duration::from_secs(5))
        .send(http::Method::POST, "/v1/latency", body)
        .await
        .map_err(|e| format!("POST /v1/latency: {e}"))?;
    if !(200..300).contains(&r.status) {
        return Err(format!(
            "POST /v1/latency: HTTP {}: {}",
            r.status,
            r.text().trim()
        ));
    }
    Ok(())
}

fn latency_body(subnet: &str, rtts: &[(String, u32)]) -> String {
    let measurements: Vec<serde_json::Value> = rtts
        .iter()
        .map(|(cluster, ms)| serde_json::json!({"prefix": subnet, "cluster": cluster, "rttMs": ms}))
        .collect();
    serde_json::json!({ "measurements": measurements }).to_string()
}

/// `spec.replicas` of the Deployment `w`.
async fn replicas(k: &Kubectl, w: &WorkloadRef) -> Result<u32, String> {
    k.run(&[
        "get",
        "deployment",
        &w.deployment,
        "-n",
        &w.namespace,
        "-o",
        "jsonpath={.spec.replicas}",
    ])
    .await?
    .trim()
    .parse::<u32>()
    .map_err(|e| format!("replicas of {w}: {e}"))
}

async fn scale(k: &Kubectl, w: &WorkloadRef, replicas: u32) -> Result<(), String> {
    k.run(&[
        "scale",
        "deployment",
        &w.deployment,
        "-n",
        &w.namespace,
        &format!("--replicas={replicas}"),
    ])
    .await
    .map(|_| ())
}

/// `"900m"` → 900, `"1.5"` → 1500.
fn millicores(q: &str) -> Result<u32, String> {
    let bad = || format!("CPU quantity {q:?}");
    if let Some(m) = q.strip_suffix('m') {
        return m.parse().map_err(|_| bad());
    }
    let v: f64 = q.parse().map_err(|_| bad())?;
    let m = (v * 1000.0).round();
    if !(1.0..=f64::from(u32::MAX)).contains(&m) {
        return Err(bad());
    }
    Ok(m as u32)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_quantities_in_millicores() {
        assert_eq!(millicores("900m").ok(), Some(900));
        assert_eq!(millicores("1.5").ok(), Some(1500));
        assert_eq!(millicores("2").ok(), Some(2000));
        assert!(millicores("x").is_err());
    }

    #[test]
    fn latency_is_posted_as_dns_measurements() {
        let body = latency_body("203.0.113.0/24", &[("aws-sg".into(), 120)]);
        let v: serde_json::Value = serde_json::from_str(&body).unwrap();
        assert_eq!(
            v,
            serde_json::json!({"measurements": [
                {"prefix": "203.0.113.0/24", "cluster": "aws-sg", "rttMs": 120}
            ]})
        );
    }
}
