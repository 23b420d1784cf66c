//! Benchmark of the scheduler's planner and of the memory an observe round needs.
//!
//! `bench/scheduler/run.sh` runs it and writes the report; `bench/scheduler/README.md`
//! explains every number. Two measurements, one per mode:
//!
//! * `--mode plan` (default): a synthetic but realistic fleet (`--clusters`, default
//!   1,000) and `--policies` BurstPolicies (default 10,000), each with 1 home and 3
//!   burst clusters, capacity / hpa / external demand mixed; times
//!   [`causeway_scheduler::plan::compute`] over `--rounds` rounds on this thread (the
//!   first with empty memory, then with the memory carried and `now` 2 s later each
//!   round). Between rounds, untimed, the plan is applied to the observed state (as
//!   `apply` would) and the demand drifts. Prints every round, the median, the peak RSS
//!   and the heap size of `Observed`, `Memory` and `Plan`.
//! * `--mode lists`: deserializes a `PodList` of `--pods` pods and a `NodeList` of
//!   `--nodes` nodes exactly as kube's `Api::list` does (`serde_json::from_str` of the
//!   whole body into `ObjectList<K>`), from one Pod and one Node captured from the
//!   testbed (kube-apiserver v1.36.3, kwok v0.8.0; `--pod-json` / `--node-json` take
//!   others), and prints the heap and RSS it takes, per object and per cluster, and the
//!   extrapolation to `--target-clusters` clusters observed at once.
//!
//! Every line starting `RESULT ` is `key=value` pairs for the script.
#![allow(clippy::print_stdout, clippy::print_stderr)] // a benchmark's output is its report

use std::alloc::{GlobalAlloc, Layout, System};
use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering::Relaxed};
use std::time::{Duration, Instant};

use causeway_config::HumanDuration;
use causeway_model::ClusterId;
use causeway_scheduler::observed::{ClusterState, HpaState, Observed, WorkloadState};
use causeway_scheduler::plan::{self, Action, Memory, Plan};
use causeway_scheduler::policy::{
    Behavior, BurstPolicy, BurstSpec, BurstTarget, CapacityDemand, Demand, DnsBinding,
    ExternalDemand, HpaDemand, Overrides, WorkloadRef,
};
use causeway_scheduler::quantity::Resources;
use k8s_openapi::api::core::v1::{Node, Pod};
use kube::core::ObjectList;

type BoxError = Box<dyn std::error::Error>;

const MI: u64 = 1 << 20;
const GI: u64 = 1 << 30;
/// Time between two rounds (the scheduler's default `interval`).
const ROUND: Duration = Duration::from_secs(2);

// === heap accounting ===

/// The system allocator, counting net bytes (allocated minus freed) and their peak
/// while [`COUNTING`] is on. Off, it costs one relaxed load per call.
struct Counting;

static COUNTING: AtomicBool = AtomicBool::new(false);
static NET: AtomicI64 = AtomicI64::new(0);
static PEAK: AtomicI64 = AtomicI64::new(0);

fn note(delta: i64) {
    if COUNTING.load(Relaxed) {
        let now = NET.fetch_add(delta, Relaxed) + delta;
        PEAK.fetch_max(now, Relaxed);
    }
}

fn signed(n: usize) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

// SAFETY: every call is forwarded to `System` with the caller's arguments; the counters
// are only bookkeeping.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: same contract as ours.
        let p = unsafe { System.alloc(layout) };
        if !p.is_null() {
            note(signed(layout.size()));
        }
        p
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        // SAFETY: same contract as ours.
        let p = unsafe { System.alloc_zeroed(layout) };
        if !p.is_null() {
            note(signed(layout.size()));
        }
        p
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: same contract as ours.
        unsafe { System.dealloc(ptr, layout) };
        note(-signed(layout.size()));
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: same contract as ours.
        let p = unsafe { System.realloc(ptr, layout, new_size) };
        if !p.is_null() {
            note(signed(new_size) - signed(layout.size()));
        }
        p
    }
}

#[global_allocator]
static ALLOC: Counting = Counting;

/// Heap bytes `f` leaves allocated, and the peak while it ran (both relative to its
/// start). Only meaningful when `f` frees nothing allocated before it.
fn counted<T>(f: impl FnOnce() -> T) -> (T, u64, u64) {
    NET.store(0, Relaxed);
    PEAK.store(0, Relaxed);
    COUNTING.store(true, Relaxed);
    let out = f();
    COUNTING.store(false, Relaxed);
    let net = u64::try_from(NET.load(Relaxed)).unwrap_or(0);
    let peak = u64::try_from(PEAK.load(Relaxed)).unwrap_or(0);
    (out, net, peak)
}

/// A `/proc/self/status` field in bytes (`VmHWM`, `VmRSS`).
fn status_bytes(field: &str) -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|v| v.split_whitespace().next()?.parse::<u64>().ok())
        .map(|kib| kib * 1024)
        .unwrap_or(0)
}

unsafe extern "C" {
    /// glibc: gives free heap memory back to the kernel, so that the next measurement's
    /// RSS rise is not hidden by memory a dropped list left in the allocator.
    fn malloc_trim(pad: usize) -> i32;
}

/// Returns freed heap to the kernel (glibc `malloc_trim(0)`).
fn trim() {
    // SAFETY: malloc_trim takes no pointers and may be called at any time.
    unsafe {
        malloc_trim(0);
    }
}

/// Resets the peak RSS (`VmHWM`) to the current RSS (Linux `clear_refs` value 5).
fn reset_peak_rss() -> bool {
    std::fs::write("/proc/self/clear_refs", "5").is_ok()
}

/// CPU time of this thread (`/proc/thread-self/schedstat`, nanoseconds on CPU).
fn thread_cpu() -> Duration {
    std::fs::read_to_string("/proc/thread-self/schedstat")
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse::<u64>().ok())
        .map(Duration::from_nanos)
        .unwrap_or_default()
}

fn mib(b: u64) -> f64 {
    b as f64 / MI as f64
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

// === deterministic randomness (splitmix64) ===

struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    /// Uniform in `lo..=hi`.
    fn range(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.next() % (hi - lo + 1)
    }
    fn range32(&mut self, lo: u32, hi: u32) -> u32 {
        u32::try_from(self.range(u64::from(lo), u64::from(hi))).unwrap_or(hi)
    }
    /// True with probability `percent`/100.
    fn chance(&mut self, percent: u64) -> bool {
        self.next() % 100 < percent
    }
    /// Uniform in `[0, 1)`.
    fn unit(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }
}

// === arguments ===

struct Args {
    mode: String,
    clusters: usize,
    policies: usize,
    rounds: usize,
    seed: u64,
    pods: usize,
    nodes: usize,
    target_clusters: u64,
    page: usize,
    pod_json: Option<String>,
    node_json: Option<String>,
}

fn parse_args() -> Result<Args, BoxError> {
    let mut a = Args {
        mode: "plan".into(),
        clusters: 1_000,
        policies: 10_000,
        rounds: 10,
        seed: 42,
        pods: 10_000,
        nodes: 1_000,
        target_clusters: 100,
        page: 500,
        pod_json: None,
        node_json: None,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || it.next().ok_or_else(|| format!("{flag} needs a value"));
        match flag.as_str() {
            "--mode" => a.mode = value()?,
            "--clusters" => a.clusters = value()?.parse()?,
            "--policies" => a.policies = value()?.parse()?,
            "--rounds" => a.rounds = value()?.parse()?,
            "--seed" => a.seed = value()?.parse()?,
            "--pods" => a.pods = value()?.parse()?,
            "--nodes" => a.nodes = value()?.parse()?,
            "--target-clusters" => a.target_clusters = value()?.parse()?,
            "--page" => a.page = value()?.parse()?,
            "--pod-json" => a.pod_json = Some(value()?),
            "--node-json" => a.node_json = Some(value()?),
            "-h" | "--help" => {
                println!(
                    "plan_bench [--mode plan|lists] [--clusters N] [--policies M] [--rounds R] [--seed S]\n           [--pods P --nodes K --target-clusters C --page L --pod-json FILE --node-json FILE]"
                );
                std::process::exit(0);
            }
            other => return Err(format!("unknown argument {other:?} (try --help)").into()),
        }
    }
    if a.clusters < 4 {
        return Err("--clusters must be at least 4 (1 home + 3 burst per policy)".into());
    }
    if a.rounds == 0 || a.rounds > 10_000 {
        return Err("--rounds must be 1..=10000".into());
    }
    Ok(a)
}

fn main() -> Result<(), BoxError> {
    let args = parse_args()?;
    match args.mode.as_str() {
        "plan" => plan_mode(&args),
        "lists" => lists_mode(&args),
        other => Err(format!("unknown --mode {other:?}: plan or lists").into()),
    }
}

// === plan mode ===

/// The synthetic fleet: a fifth of the clusters are IDC (homes), the rest public
/// (burst targets); every policy has its workload at home and, for about a third,
/// copies already running in its first burst clusters.
fn build(args: &Args) -> Result<(Vec<BurstPolicy>, Observed), BoxError> {
    let mut rng = Rng(args.seed);
    let idc_n = (args.clusters / 5).max(1);
    let ids: Vec<ClusterId> = (0..args.clusters)
        .map(|i| {
            if i < idc_n {
                ClusterId::new(format!("idc-{i:04}"))
            } else {
                ClusterId::new(format!("cloud-{i:04}"))
            }
        })
        .collect::<Result<_, _>>()?;
    let (idc, cloud) = ids.split_at(idc_n);

    let mut observed = Observed::default();
    for id in &ids {
        let nodes = rng.range(20, 1_000);
        let allocatable = Resources {
            cpu_millis: nodes * 32_000,
            memory_bytes: nodes * 128 * GI,
            pods: nodes * 110,
        };
        let used = 40 + rng.range(0, 55); // percent
        let requested = Resources {
            cpu_millis: allocatable.cpu_millis * used / 100,
            memory_bytes: allocatable.memory_bytes * used / 100,
            pods: allocatable.pods * used / 200,
        };
        let reachable = !rng.chance(1);
        observed.clusters.insert(
            id.clone(),
            ClusterState {
                reachable,
                error: (!reachable)
                    .then(|| format!("503 ServiceUnavailable: no agent session for cluster {id}")),
                allocatable,
                requested,
                workloads: BTreeMap::new(),
            },
        );
    }

    let mut policies = Vec::with_capacity(args.policies);
    for i in 0..args.policies {
        let team = i % 100;
        let name = format!("team-{team:02}-app-{i:05}");
        let workload = WorkloadRef {
            namespace: format!("team-{team:02}"),
            deployment: format!("app-{i:05}"),
        };
        let home = idc[rng.range(0, idc.len() as u64 - 1) as usize].clone();
        let mut burst: Vec<BurstTarget> = Vec::with_capacity(3);
        while burst.len() < 3 {
            let c = &cloud[rng.range(0, cloud.len() as u64 - 1) as usize];
            if burst.iter().any(|b| &b.cluster == c) {
                continue;
            }
            let max_replicas = rng.range32(5, 50);
            burst.push(BurstTarget {
                cluster: c.clone(),
                max_replicas,
                warm_minimum: if rng.chance(10) { 1 } else { 0 },
                overrides: Overrides {
                    image_registry: Some(format!("registry-{}.example", c.as_str())),
                    env: BTreeMap::from([("REGION".to_string(), c.as_str().to_string())]),
                },
            });
        }

        // The source Deployment.
        let replicas = rng.range32(2, 40);
        let pod = Resources {
            cpu_millis: rng.range(2, 40) * 50,
            memory_bytes: rng.range(1, 32) * 128 * MI,
            pods: 1,
        };
        let kind = i % 10; // 0..6 capacity, 6..9 hpa, 9 external
        let unschedulable = if kind < 6 && rng.chance(20) {
            rng.range32(1, replicas.min(10))
        } else {
            0
        };
        let scheduled = replicas - unschedulable;
        let mut source = WorkloadState {
            replicas,
            ready: scheduled,
            scheduled,
            unschedulable,
            pod_requests: pod,
            managed: false,
            applied_hash: None,
            cpu_usage_millis: None,
            pods_with_metrics: 0,
            hpa: None,
            role: None,
        };
        let demand = if kind < 6 {
            Demand {
                capacity: Some(CapacityDemand {}),
                hpa: None,
                external: None,
            }
        } else if kind < 9 {
            let max = if rng.chance(50) {
                replicas
            } else {
                replicas + 10
            };
            let util = 0.3 + 1.2 * rng.unit();
            source.cpu_usage_millis =
                Some((f64::from(replicas) * pod.cpu_millis as f64 * util) as u64);
            source.pods_with_metrics = replicas;
            source.hpa = Some(HpaState {
                min_replicas: 2,
                max_replicas: max,
                current_replicas: replicas,
                desired_replicas: replicas,
                target_cpu_percent: Some(rng.range32(60, 80)),
                scaling_limited: replicas >= max && rng.chance(60),
            });
            Demand {
                capacity: None,
                hpa: Some(HpaDemand {
                    name: format!("app-{i:05}"),
                    tolerance: 0.1,
                }),
                external: None,
            }
        } else {
            observed
                .external
                .insert(name.clone(), rng.range(0, 1_000) as f64);
            Demand {
                capacity: None,
                hpa: None,
                external: Some(ExternalDemand {
                    target_per_replica: 10.0,
                    home_max_replicas: rng.range32(20, 40),
                }),
            }
        };
        if let Some(cs) = observed.clusters.get_mut(&home) {
            cs.workloads.insert(workload.clone(), source);
        }
        // Copies already running in the first burst clusters, for about a third.
        if rng.chance(33) {
            for b in burst.iter().take(rng.range(1, 2) as usize) {
                let n = rng.range32(1, b.max_replicas);
                let copy = WorkloadState {
                    replicas: n,
                    ready: n,
                    scheduled: n,
                    unschedulable: 0,
                    pod_requests: pod,
                    managed: true,
                    applied_hash: Some(format!("{:016x}{:016x}", rng.next(), rng.next())),
                    cpu_usage_millis: (6..9)
                        .contains(&kind)
                        .then(|| (f64::from(n) * pod.cpu_millis as f64 * 0.7) as u64),
                    pods_with_metrics: if (6..9).contains(&kind) { n } else { 0 },
                    hpa: None,
                    role: None,
                };
                if let Some(cs) = observed.clusters.get_mut(&b.cluster) {
                    cs.workloads.insert(workload.clone(), copy);
                }
            }
        }
        policies.push(BurstPolicy {
            name: name.clone(),
            spec: BurstSpec {
                workload,
                home: vec![home],
                burst,
                demand,
                headroom_percent: [0, 10, 20][i % 3],
                behavior: Behavior::default(),
                dns: Some(DnsBinding {
                    name: format!("app-{i:05}.team-{team:02}.svc.example."),
                    ttl: HumanDuration(Duration::from_secs(30)),
                }),
            },
        });
    }
    Ok((policies, observed))
}

/// What `apply` would leave after the round, and the demand drifting: copies get the
/// planned replicas (all ready), deleted copies go, external values and CPU usage
/// random-walk ±10 %.
fn advance(
    policies: &[BurstPolicy],
    by_name: &HashMap<&str, usize>,
    observed: &mut Observed,
    plan: &Plan,
    rng: &mut Rng,
) {
    for d in &plan.decisions {
        let Some(p) = by_name.get(d.policy.as_str()).map(|&i| &policies[i]) else {
            continue;
        };
        let w = &p.spec.workload;
        let pod = observed
            .clusters
            .get(p.spec.source_cluster())
            .and_then(|c| c.workloads.get(w))
            .map(|s| s.pod_requests)
            .unwrap_or_default();
        let Some(cs) = observed.clusters.get_mut(&d.cluster) else {
            continue;
        };
        match d.action {
            Action::Keep => {}
            Action::Apply(n) => {
                let e = cs
                    .workloads
                    .entry(w.clone())
                    .or_insert_with(|| WorkloadState {
                        pod_requests: pod,
                        managed: true,
                        applied_hash: Some(format!("{:016x}{:016x}", rng.next(), rng.next())),
                        ..Default::default()
                    });
                e.replicas = n;
                e.ready = n;
                e.scheduled = n;
            }
            Action::Scale(n) => {
                if let Some(e) = cs.workloads.get_mut(w) {
                    e.replicas = n;
                    e.ready = n;
                    e.scheduled = n;
                }
            }
            Action::Delete => {
                cs.workloads.remove(w);
            }
            // Failover policies are not in this benchmark.
            Action::Hold | Action::Grant(_) | Action::Fence | Action::Replica => {}
        }
    }
    for v in observed.external.values_mut() {
        *v = (*v * (0.9 + 0.2 * rng.unit())).clamp(0.0, 2_000.0);
    }
    for cs in observed.clusters.values_mut() {
        for w in cs.workloads.values_mut() {
            if let Some(u) = w.cpu_usage_millis.as_mut() {
                let drift = 0.9 + 0.2 * rng.unit();
                *u = (*u as f64 * drift) as u64;
            }
        }
    }
}

fn median(xs: &[f64]) -> f64 {
    let mut v = xs.to_vec();
    v.sort_by(f64::total_cmp);
    let n = v.len();
    if n == 0 {
        0.0
    } else if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

fn plan_mode(args: &Args) -> Result<(), BoxError> {
    let t = Instant::now();
    let (policies, mut observed) = build(args)?;
    let workloads: usize = observed.clusters.values().map(|c| c.workloads.len()).sum();
    println!(
        "built {} clusters, {} policies, {} workloads observed in {:.0} ms",
        observed.clusters.len(),
        policies.len(),
        workloads,
        ms(t.elapsed())
    );
    let by_name: HashMap<&str, usize> = policies
        .iter()
        .enumerate()
        .map(|(i, p)| (p.name.as_str(), i))
        .collect();

    // Heap of Observed: allocations made by cloning it (a clone has the same shape).
    let (copy, observed_heap, _) = counted(|| observed.clone());
    drop(copy);
    let empty = Observed {
        clusters: observed
            .clusters
            .iter()
            .map(|(k, v)| {
                (
                    k.clone(),
                    ClusterState {
                        workloads: BTreeMap::new(),
                        ..v.clone()
                    },
                )
            })
            .collect(),
        ..Default::default()
    };
    let (copy, clusters_heap, _) = counted(|| empty.clone());
    drop((copy, empty));
    let (copy, external_heap, _) = counted(|| observed.external.clone());
    drop(copy);
    let per_cluster =
        (clusters_heap as f64 + std::mem::size_of::<Observed>() as f64) / args.clusters as f64;
    let per_workload =
        (observed_heap - clusters_heap - external_heap) as f64 / workloads.max(1) as f64;
    println!(
        "Observed heap {:.2} MiB: {:.0} B per cluster (its state, no workloads), {:.0} B per workload, external values {:.2} MiB",
        mib(observed_heap),
        per_cluster,
        per_workload,
        mib(external_heap)
    );
    println!(
        "size_of: ClusterState {} B, WorkloadState {} B, WorkloadRef {} B, ClusterId {} B, HpaState {} B (a BTreeMap leaf holds 11 entries)",
        std::mem::size_of::<ClusterState>(),
        std::mem::size_of::<WorkloadState>(),
        std::mem::size_of::<WorkloadRef>(),
        std::mem::size_of::<ClusterId>(),
        std::mem::size_of::<HpaState>(),
    );
    println!(
        "RESULT kind=observed clusters={} policies={} workloads={} observed_heap_bytes={} per_cluster_bytes={:.0} per_workload_bytes={:.0}",
        args.clusters,
        policies.len(),
        workloads,
        observed_heap,
        per_cluster,
        per_workload
    );

    let mut memory = Memory::default();
    let mut rng = Rng(args.seed ^ 0x5eed);
    let mut walls = Vec::with_capacity(args.rounds);
    let mut cpus = Vec::with_capacity(args.rounds);
    let mut last_plan = Plan::default();
    for round in 0..args.rounds {
        let now = ROUND * u32::try_from(round)?;
        let (c0, w0) = (thread_cpu(), Instant::now());
        let (plan, next) = plan::compute(&policies, &observed, &memory, now);
        let (wall, cpu) = (w0.elapsed(), thread_cpu().saturating_sub(c0));
        // The previous memory is dropped here in the scheduler too: timed apart.
        let d0 = Instant::now();
        memory = next;
        drop(std::mem::replace(&mut last_plan, plan));
        let dropped = d0.elapsed();
        let changes = last_plan
            .decisions
            .iter()
            .filter(|d| !matches!(d.action, Action::Keep))
            .count();
        println!(
            "round {:>3} now={:>4}s: compute {:>8.1} ms wall {:>8.1} ms cpu; drop of the last round {:>6.1} ms; {} decisions, {} not Keep",
            round + 1,
            now.as_secs(),
            ms(wall),
            ms(cpu),
            ms(dropped),
            last_plan.decisions.len(),
            changes
        );
        println!(
            "RESULT kind=round clusters={} policies={} round={} wall_ms={:.3} cpu_ms={:.3} drop_ms={:.3} decisions={} changes={}",
            args.clusters,
            policies.len(),
            round + 1,
            ms(wall),
            ms(cpu),
            ms(dropped),
            last_plan.decisions.len(),
            changes
        );
        walls.push(ms(wall));
        cpus.push(ms(cpu));
        if round + 1 < args.rounds {
            advance(&policies, &by_name, &mut observed, &last_plan, &mut rng);
        }
    }
    // Read before the measurements below, which would raise it.
    let hwm = status_bytes("VmHWM");
    let (copy, memory_heap, _) = counted(|| memory.clone());
    drop(copy);
    let (copy, plan_heap, _) = counted(|| last_plan.clone());
    drop(copy);
    // One more round, untimed, counting: what compute leaves allocated (the new Memory
    // and Plan as allocated, with the spare capacity of their Vecs and VecDeques; a
    // clone above has none) and its peak. The scheduler holds the previous Memory too.
    let now = ROUND * u32::try_from(args.rounds)?;
    let (out, left, left_peak) = counted(|| plan::compute(&policies, &observed, &memory, now));
    drop(out);
    let (first, rest) = (walls[0], &walls[1..]);
    println!(
        "median compute {:.1} ms wall ({:.1} ms cpu) over {} rounds; first round {:.1} ms; median of the carried rounds {:.1} ms; max {:.1} ms",
        median(&walls),
        median(&cpus),
        walls.len(),
        first,
        median(rest),
        walls.iter().copied().fold(0.0, f64::max)
    );
    println!(
        "heap after the last round: Memory {:.1} MiB, Plan {:.1} MiB, Observed {:.1} MiB (each as a clone: no spare capacity); peak RSS (VmHWM) {:.1} MiB",
        mib(memory_heap),
        mib(plan_heap),
        mib(observed_heap),
        mib(hwm)
    );
    println!(
        "one more compute leaves {:.1} MiB allocated (new Memory + Plan as allocated), peak {:.1} MiB during it",
        mib(left),
        mib(left_peak)
    );
    println!(
        "RESULT kind=plan clusters={} policies={} rounds={} median_wall_ms={:.3} median_cpu_ms={:.3} first_ms={:.3} median_carried_ms={:.3} max_ms={:.3} memory_heap_bytes={} plan_heap_bytes={} observed_heap_bytes={} vmhwm_bytes={} compute_left_bytes={left} compute_peak_bytes={left_peak}",
        args.clusters,
        policies.len(),
        walls.len(),
        median(&walls),
        median(&cpus),
        first,
        median(rest),
        walls.iter().copied().fold(0.0, f64::max),
        memory_heap,
        plan_heap,
        observed_heap,
        hwm
    );
    Ok(())
}

// === lists mode ===

/// A list body as the API server sends it: `{"kind":…,"items":[ITEM,ITEM,…]}`.
fn list_body(kind: &str, item: &str, n: usize) -> String {
    let item = item.trim();
    let mut s = String::with_capacity(n * (item.len() + 1) + 200);
    s.push_str(&format!(
        r#"{{"kind":"{kind}","apiVersion":"v1","metadata":{{"resourceVersion":"123456"}},"items":["#
    ));
    for i in 0..n {
        if i > 0 {
            s.push(',');
        }
        s.push_str(item);
    }
    s.push_str("]}");
    s
}

struct ListCost {
    body: u64,
    heap: u64,
    heap_peak: u64,
    rss_peak: u64,
    items: usize,
    ms: f64,
}

/// Deserializes `n` copies of `item` as kube's `Api::list` does and measures it.
fn measure_list<K>(kind: &str, item: &str, n: usize) -> Result<(ListCost, ObjectList<K>), BoxError>
where
    K: serde::de::DeserializeOwned + Clone,
{
    // One item must parse on its own first, so a bad fixture is named.
    serde_json::from_str::<K>(item).map_err(|e| format!("{kind} fixture: {e}"))?;
    let body = list_body(kind, item, n);
    trim();
    let reset = reset_peak_rss();
    let rss0 = status_bytes("VmRSS");
    let t = Instant::now();
    let (list, heap, heap_peak) = counted(|| serde_json::from_str::<ObjectList<K>>(&body));
    let elapsed = t.elapsed();
    let list = list?;
    let rss_peak = if reset {
        status_bytes("VmHWM").saturating_sub(rss0)
    } else {
        0
    };
    let cost = ListCost {
        body: body.len() as u64,
        heap,
        heap_peak,
        rss_peak,
        items: list.items.len(),
        ms: ms(elapsed),
    };
    Ok((cost, list))
}

// The fields observe.rs reads, and only those: what a slimmer observe could deserialize
// (serde skips every other field without allocating). Measured next to the full types.

#[derive(serde::Deserialize, Clone)]
#[serde(rename_all = "camelCase")]
struct SlimMeta {
    name: Option<String>,
    namespace: Option<String>,
    labels: Option<BTreeMap<String, String>>,
    deletion_timestamp: Option<String>,
}

#[derive(serde::Deserialize, Clone)]
struct SlimPod {
    metadata: SlimMeta,
    spec: Option<SlimPodSpec>,
    status: Option<SlimStatus>,
}

#[derive(serde::Deserialize, Clone)]
#[serde(rename_all = "camelCase")]
struct SlimPodSpec {
    node_name: Option<String>,
    #[serde(default)]
    containers: Vec<SlimContainer>,
    #[serde(default)]
    init_containers: Vec<SlimContainer>,
}

#[derive(serde::Deserialize, Clone)]
struct SlimContainer {
    resources: Option<SlimResources>,
}

#[derive(serde::Deserialize, Clone)]
struct SlimResources {
    requests: Option<BTreeMap<String, String>>,
}

#[derive(serde::Deserialize, Clone)]
struct SlimCondition {
    #[serde(rename = "type")]
    type_: String,
    status: String,
    reason: Option<String>,
}

#[derive(serde::Deserialize, Clone)]
struct SlimStatus {
    conditions: Option<Vec<SlimCondition>>,
}

#[derive(serde::Deserialize, Clone)]
struct SlimNode {
    metadata: SlimMeta,
    spec: Option<SlimNodeSpec>,
    status: Option<SlimNodeStatus>,
}

#[derive(serde::Deserialize, Clone)]
struct SlimNodeSpec {
    unschedulable: Option<bool>,
}

#[derive(serde::Deserialize, Clone)]
struct SlimNodeStatus {
    allocatable: Option<BTreeMap<String, String>>,
    conditions: Option<Vec<SlimCondition>>,
}

/// Observe's aggregates from the slim lists (the sums observe.rs makes), which also
/// shows that the slim types read the fields that matter.
fn fold_slim(nodes: &[SlimNode], pods: &[SlimPod]) -> (Resources, Resources, usize, usize) {
    let q = |m: Option<&BTreeMap<String, String>>, k: &str, scale: u64| {
        m.and_then(|m| m.get(k))
            .and_then(|v| causeway_scheduler::quantity::parse(v, scale).ok())
            .unwrap_or(0)
    };
    let mut allocatable = Resources::default();
    for n in nodes {
        let ready = n
            .status
            .as_ref()
            .and_then(|s| s.conditions.as_ref())
            .is_some_and(|cs| cs.iter().any(|c| c.type_ == "Ready" && c.status == "True"));
        let schedulable = !n
            .spec
            .as_ref()
            .and_then(|s| s.unschedulable)
            .unwrap_or(false);
        if ready && schedulable && n.metadata.name.is_some() {
            let a = n.status.as_ref().and_then(|s| s.allocatable.as_ref());
            allocatable = allocatable.plus(Resources {
                cpu_millis: q(a, "cpu", 1000),
                memory_bytes: q(a, "memory", 1),
                pods: q(a, "pods", 1),
            });
        }
    }
    let (mut requested, mut labelled, mut unschedulable) = (Resources::default(), 0, 0);
    for p in pods {
        let m = &p.metadata;
        if m.namespace.is_some() && m.labels.as_ref().is_some_and(|l| !l.is_empty()) {
            labelled += 1;
        }
        let Some(spec) = &p.spec else { continue };
        if spec.node_name.is_some() && m.deletion_timestamp.is_none() {
            let r = |c: &SlimContainer| {
                let req = c.resources.as_ref().and_then(|r| r.requests.as_ref());
                Resources {
                    cpu_millis: q(req, "cpu", 1000),
                    memory_bytes: q(req, "memory", 1),
                    pods: 0,
                }
            };
            let mut sum = spec
                .containers
                .iter()
                .fold(Resources::default(), |a, c| a.plus(r(c)));
            for ic in &spec.init_containers {
                let x = r(ic);
                sum.cpu_millis = sum.cpu_millis.max(x.cpu_millis);
                sum.memory_bytes = sum.memory_bytes.max(x.memory_bytes);
            }
            sum.pods = 1;
            requested = requested.plus(sum);
        } else if p
            .status
            .as_ref()
            .and_then(|s| s.conditions.as_ref())
            .is_some_and(|cs| {
                cs.iter().any(|c| {
                    c.type_ == "PodScheduled"
                        && c.status == "False"
                        && c.reason.as_deref() == Some("Unschedulable")
                })
            })
        {
            unschedulable += 1;
        }
    }
    (allocatable, requested, labelled, unschedulable)
}

/// `json` without `metadata.managedFields`.
fn without_managed_fields(json: &str) -> Result<String, BoxError> {
    let mut v: serde_json::Value = serde_json::from_str(json)?;
    if let Some(m) = v.get_mut("metadata").and_then(|m| m.as_object_mut()) {
        m.remove("managedFields");
    }
    Ok(serde_json::to_string(&v)?)
}

fn print_list(what: &str, c: &ListCost) {
    let per = |b: u64| b as f64 / c.items.max(1) as f64;
    println!(
        "{what}: {} items, body {:.1} MiB ({:.0} B each), deserialized heap {:.1} MiB ({:.0} B each, {:.2}× the JSON), peak heap while parsing {:.1} MiB, peak RSS rise {:.1} MiB, {:.0} ms",
        c.items,
        mib(c.body),
        per(c.body),
        mib(c.heap),
        per(c.heap),
        c.heap as f64 / c.body.max(1) as f64,
        mib(c.heap_peak),
        mib(c.rss_peak),
        c.ms
    );
    println!(
        "RESULT kind=list what={what} items={} body_bytes={} heap_bytes={} heap_peak_bytes={} rss_peak_bytes={} parse_ms={:.1}",
        c.items, c.body, c.heap, c.heap_peak, c.rss_peak, c.ms
    );
}

/// One cluster's round, as observe_cluster holds it: both lists deserialized (kept
/// until the end of the cluster's round) and, while a list is read, its body twice
/// (kube's `request_text`: the collected bytes and their `String` copy); then `c`
/// clusters at once (observe joins every cluster, no limit).
fn extrapolate(label: &str, args: &Args, nodes: &ListCost, pods: &ListCost) {
    let held = nodes.heap + pods.heap;
    let transient = 2 * (nodes.body + pods.body);
    let c = args.target_clusters;
    println!(
        "{label}: one cluster ({} nodes, {} pods): lists held {:.1} MiB + bodies being read {:.1} MiB; {c} clusters at once: held {:.2} GiB, with every body in flight {:.2} GiB (target ≤ 1 GiB)",
        args.nodes,
        args.pods,
        mib(held),
        mib(transient),
        (c * held) as f64 / GI as f64,
        (c * (held + transient)) as f64 / GI as f64
    );
    println!(
        "RESULT kind=extrapolation types={label} target_clusters={c} nodes_per_cluster={} pods_per_cluster={} held_per_cluster_bytes={held} bodies_per_cluster_bytes={transient} held_total_bytes={} upper_total_bytes={}",
        args.nodes,
        args.pods,
        c * held,
        c * (held + transient)
    );
    // Paged (`limit=PAGE` and `continue`) and folded into the aggregates page by page:
    // a cluster holds one page of pods (objects + its body twice) at a time, nodes alike.
    let per = |total: u64, items: usize| total.div_ceil(items.max(1) as u64);
    let in_flight = |l: &ListCost| {
        let page = args.page.min(l.items.max(1)) as u64;
        page * (per(l.heap, l.items) + 2 * per(l.body, l.items))
    };
    let page = args.page;
    let paged = in_flight(pods) + in_flight(nodes);
    println!(
        "{label}, paged by {page} and folded per page: one cluster {:.1} MiB in flight; {c} clusters at once {:.2} GiB",
        mib(paged),
        (c * paged) as f64 / GI as f64
    );
    println!(
        "RESULT kind=paged types={label} page={page} target_clusters={c} nodes_per_cluster={} pods_per_cluster={} per_cluster_bytes={paged} total_bytes={}",
        args.nodes,
        args.pods,
        c * paged
    );
}

fn lists_mode(args: &Args) -> Result<(), BoxError> {
    let pod_json = match &args.pod_json {
        Some(p) => std::fs::read_to_string(p).map_err(|e| format!("{p}: {e}"))?,
        None => include_str!("../../bench/scheduler/pod.json").to_string(),
    };
    let node_json = match &args.node_json {
        Some(p) => std::fs::read_to_string(p).map_err(|e| format!("{p}: {e}"))?,
        None => include_str!("../../bench/scheduler/node.json").to_string(),
    };
    println!(
        "size_of: Pod {} B, PodSpec {} B, PodStatus {} B, ObjectMeta {} B, Container {} B, Volume {} B, ManagedFieldsEntry {} B, serde_json::Value {} B, Node {} B",
        std::mem::size_of::<Pod>(),
        std::mem::size_of::<k8s_openapi::api::core::v1::PodSpec>(),
        std::mem::size_of::<k8s_openapi::api::core::v1::PodStatus>(),
        std::mem::size_of::<k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta>(),
        std::mem::size_of::<k8s_openapi::api::core::v1::Container>(),
        std::mem::size_of::<k8s_openapi::api::core::v1::Volume>(),
        std::mem::size_of::<k8s_openapi::apimachinery::pkg::apis::meta::v1::ManagedFieldsEntry>(),
        std::mem::size_of::<serde_json::Value>(),
        std::mem::size_of::<Node>(),
    );

    // As observe.rs does today: k8s_openapi types.
    let (nodes, node_list) = measure_list::<Node>("NodeList", &node_json, args.nodes)?;
    print_list("nodes", &nodes);
    drop(node_list);
    let (pods, pod_list) = measure_list::<Pod>("PodList", &pod_json, args.pods)?;
    print_list("pods", &pods);
    drop(pod_list);
    extrapolate("k8s-openapi", args, &nodes, &pods);

    // How much of a Pod is its managedFields.
    let bare = without_managed_fields(&pod_json)?;
    let (bare_pods, bare_list) = measure_list::<Pod>("PodList", &bare, args.pods)?;
    print_list("pods-without-managedFields", &bare_pods);
    drop(bare_list);

    // The same bodies into the slim types.
    let (slim_nodes, slim_node_list) =
        measure_list::<SlimNode>("NodeList", &node_json, args.nodes)?;
    print_list("nodes-slim", &slim_nodes);
    let (slim_pods, slim_pod_list) = measure_list::<SlimPod>("PodList", &pod_json, args.pods)?;
    print_list("pods-slim", &slim_pods);
    let (alloc, req, labelled, unsched) = fold_slim(&slim_node_list.items, &slim_pod_list.items);
    println!(
        "slim fold: allocatable {} m CPU / {} pods, requested {} m CPU / {} B / {} pods, {labelled} labelled, {unsched} unschedulable",
        alloc.cpu_millis, alloc.pods, req.cpu_millis, req.memory_bytes, req.pods
    );
    extrapolate("slim", args, &slim_nodes, &slim_pods);
    Ok(())
}
