//! Reaching a cluster as its admin: in a sandbox, reads over HTTPS with the admin client
//! certificate (cheap enough to poll every 250 ms) and writes with the testbed's kubectl;
//! against a `--target` deployment, reads and writes with kubectl and the target's
//! kubeconfig and context (whatever its authentication is).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use causeway_testbed::ClusterInfo;
use causeway_testbed::testing::{HttpClient, client_tls};

/// How long one read may take (a stopped API server answers nothing).
const READ_TIMEOUT: Duration = Duration::from_secs(1);
/// How long one kubectl command may take.
const KUBECTL_TIMEOUT: Duration = Duration::from_secs(60);

/// One cluster's API server, as admin.
#[derive(Clone)]
pub(crate) enum Api {
    /// A sandbox cluster: HTTPS with the admin certificate.
    Https(HttpClient),
    /// A target cluster: `kubectl get --raw`.
    Kubectl(Kubectl),
}

/// kubectl with a kubeconfig and (optionally) a context.
#[derive(Clone, Debug)]
pub(crate) struct Kubectl {
    pub bin: PathBuf,
    pub kubeconfig: PathBuf,
    pub context: Option<String>,
}

impl Kubectl {
    /// Runs `kubectl ARGS` (after `--kubeconfig`, `--context`); its stdout, or why not.
    pub(crate) async fn run(&self, args: &[&str]) -> Result<String, String> {
        let mut all: Vec<&str> = Vec::new();
        if let Some(c) = &self.context {
            all.extend(["--context", c.as_str()]);
        }
        all.extend(args);
        run_kubectl(&self.bin, &self.kubeconfig, &all, self.context.as_deref()).await
    }
}

impl Api {
    /// The admin client of `c`.
    pub(crate) fn admin(c: &ClusterInfo) -> Result<Self, String> {
        let read = |p: &Path| std::fs::read(p).map_err(|e| format!("{}: {e}", p.display()));
        let ca = read(&c.ca_cert)?;
        let cert = read(&c.admin_cert)?;
        let key = read(&c.admin_key)?;
        let tls = client_tls(&ca, Some((&cert, &key)), &[]).map_err(|e| e.to_string())?;
        let host = c
            .server
            .trim_start_matches("https://")
            .trim_end_matches('/');
        let addr: SocketAddr = host
            .parse()
            .map_err(|e| format!("server {}: {e}", c.server))?;
        Ok(Self::Https(
            HttpClient::https(addr, tls, &addr.ip().to_string()).timeout(READ_TIMEOUT),
        ))
    }

    /// GET `path` as JSON; `None` on 404.
    pub(crate) async fn get(&self, path: &str) -> Result<Option<serde_json::Value>, String> {
        let client = match self {
            Api::Https(c) => c,
            Api::Kubectl(k) => {
                return match k
                    .run(&["get", "--raw", path, "--request-timeout", "2s"])
                    .await
                {
                    Ok(out) => serde_json::from_str(&out)
                        .map(Some)
                        .map_err(|e| format!("GET {path}: {e}")),
                    Err(e) if e.contains("NotFound") || e.contains("(404)") => Ok(None),
                    Err(e) => Err(format!("unreachable ({e})")),
                };
            }
        };
        let r = client
            .send(http::Method::GET, path, "")
            .await
            .map_err(|e| format!("unreachable ({e})"))?;
        match r.status {
            404 => Ok(None),
            200 => serde_json::from_slice(&r.body)
                .map(Some)
                .map_err(|e| format!("GET {path}: {e}")),
            s => Err(format!("GET {path}: HTTP {s}")),
        }
    }
}

/// Runs the testbed's kubectl as admin of `c` with `args`; its stdout, or why not.
pub(crate) async fn kubectl(c: &ClusterInfo, args: &[&str]) -> Result<String, String> {
    kubectl_with(c, &c.kubeconfig, args).await
}

/// Runs the testbed's kubectl with `kubeconfig` and `args`.
pub(crate) async fn kubectl_with(
    c: &ClusterInfo,
    kubeconfig: &Path,
    args: &[&str],
) -> Result<String, String> {
    run_kubectl(&c.kubectl, kubeconfig, args, Some(&c.name)).await
}

/// Runs `bin --kubeconfig KUBECONFIG ARGS`; errors read `kubectl ARGS (WHERE): STDERR`.
pub(crate) async fn run_kubectl(
    bin: &Path,
    kubeconfig: &Path,
    args: &[&str],
    place: Option<&str>,
) -> Result<String, String> {
    let mut cmd = tokio::process::Command::new(bin);
    cmd.arg("--kubeconfig")
        .arg(kubeconfig)
        .args(args)
        .stdin(std::process::Stdio::null())
        .kill_on_drop(true);
    let out = tokio::time::timeout(KUBECTL_TIMEOUT, cmd.output())
        .await
        .map_err(|_| format!("kubectl {} timed out", args.join(" ")))?
        .map_err(|e| format!("kubectl: {e}"))?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(format!(
            "kubectl {} ({}): {}",
            args.join(" "),
            place.unwrap_or("current context"),
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}
