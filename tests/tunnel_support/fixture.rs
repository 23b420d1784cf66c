//! End-to-end fixture of the `tunnel_*` tests: the built `causeway` binary as stub and
//! agents in front of the shared testbed's real kube-apiservers, with a user added by
//! `causeway user add` and kubectl as the client.

#![allow(dead_code)]

use std::io::{BufRead, Write};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use causeway_testbed::ClusterInfo;

/// The causeway binary under test.
pub const BIN: &str = env!("CARGO_BIN_EXE_causeway");

/// The agent's RBAC on a member cluster (impersonation only) and full access for
/// group `dev` (the member cluster's own decision).
pub const MEMBER_SETUP: &str = include_str!("../../examples/tunnel/agent-rbac.yaml");

// === processes that die with the test process ===

type Spawn = (Command, mpsc::Sender<std::io::Result<Child>>);

/// Children are spawned from one thread that lives as long as the process, with
/// PR_SET_PDEATHSIG, so they die with the test process and not with a test's thread.
fn launcher() -> &'static Mutex<mpsc::Sender<Spawn>> {
    static L: OnceLock<Mutex<mpsc::Sender<Spawn>>> = OnceLock::new();
    L.get_or_init(|| {
        let (tx, rx) = mpsc::channel::<Spawn>();
        std::thread::spawn(move || {
            for (mut cmd, reply) in rx {
                use std::os::unix::process::CommandExt;
                // SAFETY: prctl is async-signal-safe; no allocation between fork and exec.
                unsafe {
                    cmd.pre_exec(|| {
                        libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
                        Ok(())
                    });
                }
                let _ = reply.send(cmd.spawn());
            }
        });
        Mutex::new(tx)
    })
}

/// Spawns `cmd` so it dies with this process.
pub fn spawn(cmd: Command) -> Child {
    let (tx, rx) = mpsc::channel();
    launcher().lock().unwrap().send((cmd, tx)).unwrap();
    rx.recv().unwrap().expect("spawn")
}

/// A `causeway` process logging to a file.
pub struct Proc {
    pub child: Child,
    pub log: PathBuf,
}

impl Proc {
    /// Starts `causeway args…`, stderr to `log`.
    pub fn start(args: &[&str], log: &Path) -> Proc {
        let file = std::fs::File::create(log).unwrap();
        let mut cmd = Command::new(BIN);
        cmd.args(args)
            .env("NO_COLOR", "1")
            .env("CAUSEWAY_LOG", "info")
            .stdout(Stdio::null())
            .stderr(file);
        Proc {
            child: spawn(cmd),
            log: log.to_owned(),
        }
    }

    /// Waits until the log holds `n` lines containing `needle`; returns those lines.
    pub fn wait_log(&mut self, needle: &str, n: usize, within: Duration) -> Vec<String> {
        let deadline = Instant::now() + within;
        loop {
            let text = std::fs::read_to_string(&self.log).unwrap_or_default();
            let lines: Vec<String> = text
                .lines()
                .filter(|l| l.contains(needle))
                .map(str::to_owned)
                .collect();
            if lines.len() >= n {
                return lines;
            }
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!("causeway exited ({status}) before logging {needle:?}:\n{text}");
            }
            assert!(
                Instant::now() < deadline,
                "no {n}× {needle:?} in {} after {within:?}:\n{text}",
                self.log.display()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// SIGKILL and reap.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// SIGTERM and wait up to 10 s.
    pub fn terminate(&mut self) {
        // SAFETY: sending a signal to our own child.
        unsafe {
            libc::kill(self.child.id() as i32, libc::SIGTERM);
        }
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        self.kill();
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.kill();
    }
}

/// The address in a `listening on <name> <scheme>://ADDR` log line.
pub fn listening(p: &mut Proc, name: &str) -> SocketAddr {
    let line = p
        .wait_log(&format!("listening on {name} "), 1, Duration::from_secs(20))
        .remove(0);
    let url = line
        .split_whitespace()
        .find(|w| w.starts_with("https://") || w.starts_with("http://"))
        .unwrap_or_else(|| panic!("no URL in {line:?}"));
    url.split("://")
        .nth(1)
        .unwrap()
        .trim_end_matches('/')
        .parse()
        .unwrap()
}

/// Runs a command, panicking with its output if it fails.
pub fn run_ok(mut cmd: Command) -> String {
    let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed ({}):\nstdout: {}\nstderr: {}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// `kubectl apply -f -` with `yaml` as the cluster admin.
pub fn admin_apply(c: &ClusterInfo, yaml: &str) {
    let mut child = c
        .kubectl()
        .args(["apply", "-f", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(yaml.as_bytes())
        .unwrap();
    assert!(child.wait().unwrap().success(), "kubectl apply failed");
}

/// Prepares a member cluster: agent RBAC, a token for the agent, `dev` → cluster-admin.
pub fn member_token(c: &ClusterInfo, dir: &Path) -> PathBuf {
    admin_apply(c, MEMBER_SETUP);
    admin_apply(
        c,
        "apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata: {name: causeway-e2e-dev}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: cluster-admin}
subjects:
- {kind: Group, apiGroup: rbac.authorization.k8s.io, name: dev}
",
    );
    let token = run_ok({
        let mut k = c.kubectl();
        k.args([
            "-n",
            "causeway-system",
            "create",
            "token",
            "causeway-agent",
            "--duration",
            "2h",
        ]);
        k
    });
    let path = dir.join(format!("{}.token", c.name));
    std::fs::write(&path, token.trim()).unwrap();
    path
}

/// A running stub with its state directory.
pub struct Stub {
    pub proc: Proc,
    pub users: SocketAddr,
    pub agents: SocketAddr,
    pub metrics: SocketAddr,
    pub state: PathBuf,
}

/// Writes a stub config in `dir` and starts the stub. `lease` is an optional
/// `lease:` YAML block (already indented by 2).
pub fn start_stub(dir: &Path, name: &str, state: &Path, lease: Option<&str>) -> Stub {
    let config = dir.join(format!("{name}.yaml"));
    let mut yaml = format!(
        "apiVersion: causeway.dev/v1alpha1
kind: StubConfig
metadata: {{name: {name}}}
spec:
  stateDir: {}
  listen: {{users: \"127.0.0.1:0\", agents: \"127.0.0.1:0\", metrics: \"127.0.0.1:0\"}}
  audit: {{path: {}}}
",
        state.display(),
        dir.join(format!("{name}-audit.log")).display()
    );
    if let Some(l) = lease {
        yaml.push_str(l);
    }
    std::fs::write(&config, yaml).unwrap();
    let mut proc = Proc::start(
        &["stub", "--config", config.to_str().unwrap()],
        &dir.join(format!("{name}.log")),
    );
    let users = listening(&mut proc, "users");
    let agents = listening(&mut proc, "agents");
    let metrics = listening(&mut proc, "metrics");
    Stub {
        proc,
        users,
        agents,
        metrics,
        state: state.to_owned(),
    }
}

/// `causeway cluster add`: returns (token, ca-hash).
pub fn cluster_add(state: &Path, cluster: &str, stub_url: &str) -> (String, String) {
    let out = run_ok({
        let mut c = Command::new(BIN);
        c.args([
            "cluster",
            "add",
            cluster,
            "--state-dir",
            state.to_str().unwrap(),
            "--stub-url",
            stub_url,
        ]);
        c
    });
    let field = |name: &str| {
        out.lines()
            .find_map(|l| l.strip_prefix(name))
            .map(|v| v.trim().to_owned())
            .unwrap_or_else(|| panic!("no {name} in {out}"))
    };
    (field("token:"), field("ca-hash:"))
}

/// Starts an agent; enrols with `join` if its state dir holds no certificate yet.
pub fn start_agent(
    dir: &Path,
    name: &str,
    stub_urls: &str,
    cluster: &ClusterInfo,
    token_file: &Path,
    state: &Path,
    join: Option<&(String, String)>,
) -> Proc {
    let mut args = vec![
        "agent".to_owned(),
        "--stub".into(),
        stub_urls.into(),
        "--cluster".into(),
        cluster.name.clone(),
        "--state-dir".into(),
        state.display().to_string(),
        "--kubeconfig".into(),
        cluster.kubeconfig.display().to_string(),
        "--token-file".into(),
        token_file.display().to_string(),
    ];
    if let Some((t, h)) = join {
        args.extend(["--token".into(), t.clone(), "--ca-hash".into(), h.clone()]);
    }
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    Proc::start(&args, &dir.join(format!("{name}.log")))
}

/// Adds user `alice` (group `dev`, clusters `tb-*`) and waits until the stub at
/// `users` authenticates her for `tb-a` of `member`; returns her kubeconfig.
pub fn add_alice(state: &Path, dir: &Path, users: SocketAddr, member: &ClusterInfo) -> PathBuf {
    let alice = user_add(
        state,
        dir,
        "alice",
        "dev",
        "tb-*",
        &format!("https://{users}"),
    );
    // The stub reloads users.yaml within 2 s of `causeway user add`.
    wait_authenticated(member, &alice, "tb-a");
    alice
}

/// `causeway user add`: writes a kubeconfig, returns its path.
pub fn user_add(
    state: &Path,
    dir: &Path,
    user: &str,
    group: &str,
    clusters: &str,
    stub_url: &str,
) -> PathBuf {
    let out = dir.join(format!("{user}.kubeconfig"));
    run_ok({
        let mut c = Command::new(BIN);
        c.args([
            "user",
            "add",
            user,
            "--group",
            group,
            "--clusters",
            clusters,
            "--state-dir",
            state.to_str().unwrap(),
            "--stub-url",
            stub_url,
            "--out",
            out.to_str().unwrap(),
        ]);
        c
    });
    out
}

/// A kubectl of the testbed with a kubeconfig and context.
pub fn kubectl(tb_cluster: &ClusterInfo, kubeconfig: &Path, context: &str) -> Command {
    let mut k = Command::new(&tb_cluster.kubectl);
    k.args([
        "--kubeconfig",
        kubeconfig.to_str().unwrap(),
        "--context",
        context,
        "--request-timeout",
        "30s",
    ]);
    k
}

/// Reads a kubeconfig's first user's client certificate and key and first cluster's CA (PEM).
pub fn kubeconfig_creds(path: &Path) -> (String, String, String) {
    use base64::Engine;
    let text = std::fs::read_to_string(path).unwrap();
    let field = |name: &str| {
        let b64 = text
            .lines()
            .find_map(|l| l.trim().strip_prefix(name))
            .unwrap_or_else(|| panic!("no {name} in {}", path.display()))
            .trim();
        String::from_utf8(
            base64::engine::general_purpose::STANDARD
                .decode(b64)
                .unwrap(),
        )
        .unwrap()
    };
    (
        field("client-certificate-data:"),
        field("client-key-data:"),
        field("certificate-authority-data:"),
    )
}

/// Lines of a child's stdout, read on a thread, delivered on a channel.
pub fn lines_of(stdout: std::process::ChildStdout) -> mpsc::Receiver<String> {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    rx
}

/// Waits for a line containing `needle`.
pub fn expect_line(rx: &mpsc::Receiver<String>, needle: &str, within: Duration) -> String {
    let deadline = Instant::now() + within;
    let mut seen = Vec::new();
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match rx.recv_timeout(left) {
            Ok(l) if l.contains(needle) => return l,
            Ok(l) => seen.push(l),
            Err(_) => panic!("no line with {needle:?} within {within:?}; saw {seen:?}"),
        }
    }
}

/// Open file descriptors of a process.
pub fn fd_count(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .map(|d| d.count())
        .unwrap_or(0)
}

/// Resident memory of a process, KiB.
pub fn rss_kib(pid: u32) -> u64 {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    s.lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

/// Scrapes one metric sample (`name{labels} value`, exact name+labels) from the stub.
pub fn metric(metrics: SocketAddr, series: &str) -> Option<f64> {
    let body = http_get(metrics, "/metrics").1;
    body.lines()
        .find_map(|l| l.strip_prefix(series).and_then(|r| r.trim().parse().ok()))
}

/// A plain-HTTP GET (the metrics listener): (status, body).
pub fn http_get(addr: SocketAddr, path: &str) -> (u16, String) {
    use std::io::Read;
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut out = String::new();
    let _ = s.read_to_string(&mut out);
    let status = out
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let body = out
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_owned())
        .unwrap_or_default();
    (status, body)
}

/// Polls `kubectl auth whoami` until the stub knows the user (it reloads users.yaml
/// every 2 s).
pub fn wait_authenticated(c: &ClusterInfo, kubeconfig: &Path, context: &str) {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let out = kubectl(c, kubeconfig, context)
            .args(["auth", "whoami"])
            .output()
            .unwrap();
        if out.status.success() {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "user never authenticated: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}
