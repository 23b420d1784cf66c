//! kubectl from tests: as a cluster's admin or through a kubeconfig, with the testbed's
//! kubectl or the SPDY-only kubectl v1.29; apply from stdin, get, wait for Running pods,
//! a port-forward round trip, and the credentials inside a kubeconfig.

use std::ffi::{OsStr, OsString};
use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::OnceLock;
use std::time::Duration;

use base64::Engine as _;

use super::command::{run, run_ok, run_with_stdin};
use super::net::echo_round_trip;
use super::wait::wait_for;
use crate::ClusterInfo;

/// Which kubectl binary runs.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum KubectlVersion {
    /// The testbed's kubectl (the pinned Kubernetes release; WebSocket for exec,
    /// attach and port-forward unless told otherwise).
    #[default]
    Testbed,
    /// `kubectl-1.29` beside it (built by `testbed/build-bins.sh`): the last client
    /// that speaks only SPDY for exec, attach and port-forward.
    V1_29,
}

/// `kubectl-1.29` beside the testbed's kubectl `testbed_kubectl`, checked once to be a
/// v1.29 client. Panics with the fix when it is missing or another version.
pub fn kubectl_1_29(testbed_kubectl: &Path) -> &'static Path {
    static PATH: OnceLock<PathBuf> = OnceLock::new();
    PATH.get_or_init(|| {
        let path = testbed_kubectl.with_file_name("kubectl-1.29");
        assert!(
            path.is_file(),
            "{} not found: run testbed/build-bins.sh (it builds kubectl-1.29 from \
             testbed/go/kubectl-1.29)",
            path.display()
        );
        let out = run(Command::new(&path).args(["version", "--client", "-o", "json"]));
        let version: serde_json::Value = serde_json::from_slice(&out.stdout)
            .unwrap_or_else(|err| panic!("{} version: {err}", path.display()));
        let git_version = version["clientVersion"]["gitVersion"]
            .as_str()
            .unwrap_or("");
        assert!(
            git_version.starts_with("v1.29."),
            "{} is {git_version:?}, not v1.29: rerun testbed/build-bins.sh",
            path.display()
        );
        path
    })
}

/// A kubectl invocation prefix: binary, global flags and environment, cloned into a
/// fresh [`Command`] for every call.
#[derive(Clone, Debug)]
pub struct Kubectl {
    bin: PathBuf,
    args: Vec<OsString>,
    env: Vec<(OsString, Option<OsString>)>,
}

impl Kubectl {
    /// The kubectl at `bin` with no flags.
    pub fn new(bin: impl Into<PathBuf>) -> Self {
        Self {
            bin: bin.into(),
            args: Vec::new(),
            env: Vec::new(),
        }
    }

    /// The testbed's kubectl as the cluster's admin (like [`ClusterInfo::kubectl`]).
    pub fn admin(cluster: &ClusterInfo) -> Self {
        Self::new(&cluster.kubectl).kubeconfig(&cluster.kubeconfig)
    }

    /// The testbed's kubectl of `cluster` with another kubeconfig (a user's).
    pub fn with_kubeconfig(cluster: &ClusterInfo, kubeconfig: &Path) -> Self {
        Self::new(&cluster.kubectl).kubeconfig(kubeconfig)
    }

    /// Picks the binary: the testbed's (the default), or v1.29 beside it.
    pub fn version(mut self, version: KubectlVersion) -> Self {
        if version == KubectlVersion::V1_29 {
            self.bin = kubectl_1_29(&self.bin).to_owned();
        }
        self
    }

    /// Adds `--kubeconfig PATH`.
    pub fn kubeconfig(self, path: &Path) -> Self {
        self.arg("--kubeconfig").arg(path)
    }

    /// Adds `--context NAME`.
    pub fn context(self, name: &str) -> Self {
        self.arg("--context").arg(name)
    }

    /// Adds a global flag or argument to every command.
    pub fn arg(mut self, arg: impl AsRef<OsStr>) -> Self {
        self.args.push(arg.as_ref().to_owned());
        self
    }

    /// Sets an environment variable of every command.
    pub fn env(mut self, key: impl AsRef<OsStr>, value: impl AsRef<OsStr>) -> Self {
        self.env
            .push((key.as_ref().to_owned(), Some(value.as_ref().to_owned())));
        self
    }

    /// Removes an environment variable from every command (e.g. to get a client's own
    /// default whatever the test's environment says).
    pub fn env_remove(mut self, key: impl AsRef<OsStr>) -> Self {
        self.env.push((key.as_ref().to_owned(), None));
        self
    }

    /// A fresh command with the binary, flags and environment, ready for more arguments.
    pub fn cmd(&self) -> Command {
        let mut cmd = Command::new(&self.bin);
        cmd.args(&self.args);
        for (k, v) in &self.env {
            match v {
                Some(v) => cmd.env(k, v),
                None => cmd.env_remove(k),
            };
        }
        cmd
    }

    /// Runs `kubectl ARGS`; its output whatever the exit code.
    pub fn output<S: AsRef<OsStr>>(&self, args: &[S]) -> Output {
        run(self.cmd().args(args))
    }

    /// Runs `kubectl ARGS`, which must succeed; returns stdout.
    pub fn run<S: AsRef<OsStr>>(&self, args: &[S]) -> String {
        run_ok(self.cmd().args(args))
    }

    /// Runs `kubectl ARGS`: stdout, or `Err` naming the command and its stderr (for
    /// checks polled with [`wait_for`]).
    pub fn try_run(&self, args: &[&str]) -> Result<String, String> {
        let out = self.output(args);
        if out.status.success() {
            Ok(String::from_utf8_lossy(&out.stdout).into_owned())
        } else {
            Err(format!(
                "kubectl {}: {}",
                args.join(" "),
                String::from_utf8_lossy(&out.stderr).trim()
            ))
        }
    }

    /// `kubectl ARGS -o json`, parsed; `Err` as [`Kubectl::try_run`], or for output
    /// that is not JSON.
    pub fn json(&self, args: &[&str]) -> Result<serde_json::Value, String> {
        let out = self.try_run(&[args, &["-o", "json"]].concat())?;
        serde_json::from_str(&out).map_err(|e| format!("kubectl {}: output: {e}", args.join(" ")))
    }

    /// `kubectl get ARGS`, which must succeed; returns stdout.
    pub fn get(&self, args: &[&str]) -> String {
        run_ok(self.cmd().arg("get").args(args))
    }

    /// `kubectl apply -f -` with `manifest` (YAML or JSON) on stdin, which must
    /// succeed; returns stdout.
    pub fn apply(&self, manifest: &str) -> String {
        let mut cmd = self.cmd();
        cmd.args(["apply", "-f", "-"]);
        let shown = format!("{cmd:?}");
        let out = run_with_stdin(cmd, manifest.as_bytes())
            .unwrap_or_else(|e| panic!("cannot run {shown}: {e}"));
        assert!(
            out.status.success(),
            "kubectl apply failed: {}\nmanifest:\n{manifest}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// `kubectl wait --timeout=… ARGS` (e.g. `--for=jsonpath={.status.phase}=Running
    /// pod/web -n team-a`), which must succeed within `timeout`; returns stdout.
    pub fn wait(&self, args: &[&str], timeout: Duration) -> String {
        run_ok(
            self.cmd()
                .arg("wait")
                .arg(format!("--timeout={}s", timeout.as_secs().max(1)))
                .args(args),
        )
    }

    /// Names of the pods in `namespace` matching `selector` that are Running and not
    /// being deleted.
    pub fn running_pods(&self, namespace: &str, selector: &str) -> Vec<String> {
        let out = self.get(&["pods", "-n", namespace, "-l", selector, "-o", "json"]);
        let v: serde_json::Value = serde_json::from_str(&out)
            .unwrap_or_else(|e| panic!("kubectl get pods -o json: {e}: {out}"));
        v["items"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|p| {
                p["status"]["phase"] == "Running" && p["metadata"]["deletionTimestamp"].is_null()
            })
            .filter_map(|p| p["metadata"]["name"].as_str().map(str::to_owned))
            .collect()
    }

    /// Waits until exactly `want` pods in `namespace` matching `selector` are Running
    /// (see [`Kubectl::running_pods`]) and returns their names; panics after `timeout`.
    pub fn wait_running_pods(
        &self,
        namespace: &str,
        selector: &str,
        want: usize,
        timeout: Duration,
    ) -> Vec<String> {
        wait_for(
            &format!("{want} Running pods {selector} in {namespace}"),
            timeout,
            Duration::from_millis(300),
            || {
                let running = self.running_pods(namespace, selector);
                if running.len() == want {
                    Ok(running)
                } else {
                    Err(format!("Running: {running:?}"))
                }
            },
        )
    }
}

/// Runs `port_forward` (a `kubectl … port-forward … :PORT` command), reads its
/// "Forwarding from 127.0.0.1:N -> PORT" line, sends `len` bytes through and checks they
/// come back (an echo server behind the pod's port), then stops kubectl. Returns
/// kubectl's stderr (its `-v=6` log, if asked for) on success.
pub fn port_forward_round_trip(
    mut port_forward: Command,
    len: usize,
    timeout: Duration,
) -> Result<String, String> {
    let mut child = port_forward
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("cannot start {port_forward:?}: {e}"))?;
    let stdout = child.stdout.take().ok_or("no stdout")?;
    let mut stderr = child.stderr.take().ok_or("no stderr")?;
    let log = std::thread::spawn(move || {
        let mut log = String::new();
        let _ = stderr.read_to_string(&mut log);
        log
    });
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut stdout = BufReader::new(stdout);
        let mut line = String::new();
        let _ = stdout.read_line(&mut line);
        let _ = tx.send(line);
        // Keep reading, or kubectl dies of EPIPE on its next "Handling connection" line.
        let _ = std::io::copy(&mut stdout, &mut std::io::sink());
    });
    let result = rx
        .recv_timeout(Duration::from_secs(15))
        .map_err(|_| "no 'Forwarding from' line within 15 s".to_owned())
        .and_then(|line| {
            let local = line
                .split_whitespace()
                .nth(2)
                .ok_or(format!("unexpected port-forward output {line:?}"))?
                .to_owned();
            echo_round_trip(&local, len, timeout)
        });
    let _ = child.kill();
    let _ = child.wait();
    let log = log.join().unwrap_or_default();
    match result {
        Ok(()) => Ok(log),
        Err(e) => Err(format!("{e}; kubectl said: {log}")),
    }
}

/// The credentials in a kubeconfig written by `causeway user add` or the testbed: the
/// first user's client certificate and key and the first cluster's CA, as PEM.
#[derive(Clone, Debug)]
pub struct KubeconfigCredentials {
    /// `client-certificate-data`, decoded.
    pub cert_pem: String,
    /// `client-key-data`, decoded.
    pub key_pem: String,
    /// `certificate-authority-data`, decoded.
    pub ca_pem: String,
}

impl KubeconfigCredentials {
    /// Reads them from `path`; panics naming a missing or undecodable field.
    pub fn read(path: &Path) -> Self {
        let text = std::fs::read_to_string(path)
            .unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
        let doc: serde_yaml_ng::Value = serde_yaml_ng::from_str(&text)
            .unwrap_or_else(|e| panic!("{} is not YAML: {e}", path.display()));
        let field = |list: &str, inner: &str, name: &str| {
            let b64 = doc[list][0][inner][name]
                .as_str()
                .unwrap_or_else(|| panic!("no {list}[0].{inner}.{name} in {}", path.display()));
            let der = base64::engine::general_purpose::STANDARD
                .decode(b64.trim())
                .unwrap_or_else(|e| panic!("{name} in {}: {e}", path.display()));
            String::from_utf8(der).unwrap_or_else(|e| panic!("{name} in {}: {e}", path.display()))
        };
        Self {
            cert_pem: field("users", "user", "client-certificate-data"),
            key_pem: field("users", "user", "client-key-data"),
            ca_pem: field("clusters", "cluster", "certificate-authority-data"),
        }
    }

    /// Writes the client certificate and key to `dir/NAME.crt` and `dir/NAME.key` (for
    /// curl) and returns the two paths.
    pub fn write_identity(&self, dir: &Path, name: &str) -> (PathBuf, PathBuf) {
        write_identity(dir, name, &self.cert_pem, &self.key_pem)
    }
}

/// Writes a client certificate and key to `dir/NAME.crt` and `dir/NAME.key` and
/// returns the two paths.
pub fn write_identity(dir: &Path, name: &str, cert_pem: &str, key_pem: &str) -> (PathBuf, PathBuf) {
    let cert = dir.join(format!("{name}.crt"));
    let key = dir.join(format!("{name}.key"));
    for (path, pem) in [(&cert, cert_pem), (&key, key_pem)] {
        std::fs::write(path, pem).unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
    }
    (cert, key)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commands_carry_flags_and_environment() {
        let k = Kubectl::new("/bin/kubectl")
            .kubeconfig(Path::new("/k"))
            .context("c")
            .env("A", "1")
            .env_remove("B");
        let cmd = k.cmd();
        let args: Vec<_> = cmd.get_args().collect();
        assert_eq!(args, ["--kubeconfig", "/k", "--context", "c"]);
        let envs: Vec<_> = cmd.get_envs().collect();
        assert_eq!(
            envs,
            [
                (OsStr::new("A"), Some(OsStr::new("1"))),
                (OsStr::new("B"), None)
            ]
        );
        // Stubbing the binary with `echo` shows what runs.
        let echo = Kubectl::new("echo").arg("--flag");
        assert_eq!(echo.get(&["pods", "-n", "x"]), "--flag get pods -n x\n");
        assert_eq!(
            echo.wait(&["pod/a"], Duration::from_millis(10)),
            "--flag wait --timeout=1s pod/a\n"
        );
        // `echo` prints `[1] -o json`: not JSON.
        let err = Kubectl::new("echo").json(&["[1]"]).unwrap_err();
        assert!(err.starts_with("kubectl [1]: output: "), "{err}");
        let printf = Kubectl::new("sh").arg("-c").arg("printf '{\"a\": 1}'");
        assert_eq!(printf.json(&["get"]).unwrap()["a"], 1);
        let fails = Kubectl::new("sh").arg("-c").arg("echo no >&2; exit 1");
        assert_eq!(
            fails.try_run(&["get", "x"]),
            Err("kubectl get x: no".into())
        );
        // `sh -c cat apply -f -` prints its stdin.
        assert_eq!(
            Kubectl::new("sh").arg("-c").arg("cat").apply("kind: X"),
            "kind: X"
        );
    }

    #[test]
    fn credentials_come_out_of_a_kubeconfig() {
        let b64 = |s: &str| base64::engine::general_purpose::STANDARD.encode(s);
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("k");
        std::fs::write(
            &path,
            format!(
                "apiVersion: v1\nkind: Config\nclusters:\n- name: a\n  cluster:\n    server: https://x\n    certificate-authority-data: {}\nusers:\n- name: u\n  user:\n    client-certificate-data: {}\n    client-key-data: {}\n",
                b64("CA"),
                b64("CERT"),
                b64("KEY")
            ),
        )
        .unwrap();
        let c = KubeconfigCredentials::read(&path);
        assert_eq!(
            (c.ca_pem.as_str(), c.cert_pem.as_str(), c.key_pem.as_str()),
            ("CA", "CERT", "KEY")
        );
        let (crt, key) = c.write_identity(dir.path(), "u");
        assert_eq!(std::fs::read_to_string(crt).unwrap(), "CERT");
        assert_eq!(std::fs::read_to_string(key).unwrap(), "KEY");
    }
}
