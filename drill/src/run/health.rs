//! The health endpoints dns probes in a drill with a `healthFailing` fault: one small
//! HTTP server per cluster on `127.0.0.1:<free port>` that answers every request `200 ok`,
//! or `503 failing` while its cluster's health is failing. The drill adds a
//! `healthCheck` pointing at it to each GSLB target of that cluster in the zones it
//! gives dns (when the target has none of its own).

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

/// How dns probes these endpoints: every 500 ms, 300 ms timeout, unhealthy after 2
/// failures, healthy after 2 successes.
pub(crate) const PROBE: &str = r#"{"protocol": "http", "path": "/healthz", "interval": "500ms", "timeout": "300ms", "fall": 2, "rise": 2}"#;

/// One cluster's health endpoint; stops when dropped.
pub(crate) struct HealthEndpoint {
    /// Where it listens.
    pub addr: SocketAddr,
    failing: Arc<AtomicBool>,
    task: tokio::task::JoinHandle<()>,
}

impl HealthEndpoint {
    /// Listens on `127.0.0.1:0`, healthy.
    pub(crate) async fn start() -> std::io::Result<Self> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let failing = Arc::new(AtomicBool::new(false));
        let f = failing.clone();
        let task = tokio::spawn(async move {
            loop {
                let Ok((mut conn, _)) = listener.accept().await else {
                    continue;
                };
                let f = f.clone();
                tokio::spawn(async move {
                    // Read the request head (bounded), then answer and close.
                    let mut buf = [0u8; 2048];
                    let mut n = 0;
                    let read = async {
                        while n < buf.len() {
                            match conn.read(&mut buf[n..]).await {
                                Ok(0) | Err(_) => break,
                                Ok(k) => n += k,
                            }
                            if buf[..n].windows(4).any(|w| w == b"\r\n\r\n") {
                                break;
                            }
                        }
                    };
                    let _ = tokio::time::timeout(Duration::from_secs(2), read).await;
                    let answer: &[u8] = if f.load(Ordering::SeqCst) {
                        b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 8\r\nConnection: close\r\n\r\nfailing\n"
                    } else {
                        b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\nConnection: close\r\n\r\nok\n"
                    };
                    let _ = conn.write_all(answer).await;
                    let _ = conn.shutdown().await;
                });
            }
        });
        Ok(Self {
            addr,
            failing,
            task,
        })
    }

    /// Answers 503 from now on (`true`) or 200 again (`false`).
    pub(crate) fn set_failing(&self, failing: bool) {
        self.failing.store(failing, Ordering::SeqCst);
    }
}

impl Drop for HealthEndpoint {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// The zone documents of `text` as JSON documents (YAML's subset) with a `healthCheck`
/// at `endpoints[cluster]` added to each GSLB target of a cluster that has one and no
/// `healthCheck` of its own. Other kinds (but `DnsServer`, left out) are kept as read.
pub(crate) fn zones_with_health_checks(
    docs: &[causeway_config::Document],
    endpoints: &std::collections::BTreeMap<String, SocketAddr>,
) -> Result<Vec<String>, String> {
    let probe: serde_json::Value =
        serde_json::from_str(PROBE).map_err(|e| format!("probe: {e}"))?;
    let mut out = Vec::new();
    for doc in docs {
        if doc.kind == "DnsServer" {
            continue;
        }
        let mut spec: serde_json::Value = doc.spec().map_err(|e| e.to_string())?;
        if doc.kind == "Zone"
            && let Some(gslb) = spec.get_mut("gslb").and_then(|g| g.as_array_mut())
        {
            for name in gslb {
                let Some(targets) = name.get_mut("targets").and_then(|t| t.as_array_mut()) else {
                    continue;
                };
                for t in targets {
                    let cluster = t.get("cluster").and_then(|c| c.as_str()).unwrap_or("");
                    let Some(addr) = endpoints.get(cluster) else {
                        continue;
                    };
                    if let Some(obj) = t.as_object_mut()
                        && !obj.contains_key("healthCheck")
                    {
                        let mut check = probe.clone();
                        check["address"] = serde_json::Value::String(addr.to_string());
                        obj.insert("healthCheck".into(), check);
                    }
                }
            }
        }
        let whole = serde_json::json!({
            "apiVersion": "causeway.dev/v1alpha1",
            "kind": doc.kind,
            "metadata": {"name": doc.name()},
            "spec": spec,
        });
        out.push(whole.to_string());
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn answers_200_then_503_while_failing() {
        let h = HealthEndpoint::start().await.unwrap();
        let get = || async {
            causeway_testbed::testing::HttpClient::new(h.addr)
                .timeout(Duration::from_secs(2))
                .send(http::Method::GET, "/healthz", "")
                .await
                .map(|r| r.status)
                .unwrap_or(0)
        };
        assert_eq!(get().await, 200);
        h.set_failing(true);
        assert_eq!(get().await, 503);
        h.set_failing(false);
        assert_eq!(get().await, 200);
    }

    #[test]
    fn health_checks_are_added_to_the_clusters_targets() {
        let text = "apiVersion: causeway.dev/v1alpha1\nkind: Zone\nmetadata: {name: z}\nspec:\n  origin: svc.example.\n  gslb:\n    - name: api\n      policy: latency\n      targets:\n        - {cluster: a, addresses: [192.0.2.1]}\n        - {cluster: b, addresses: [192.0.2.2], healthCheck: {protocol: tcp, port: 80}}\n        - {cluster: c, addresses: [192.0.2.3]}\n---\napiVersion: causeway.dev/v1alpha1\nkind: DnsServer\nmetadata: {name: d}\nspec: {}\n";
        let docs = causeway_config::parse_str(std::path::Path::new("z.yaml"), text).unwrap();
        let mut eps = std::collections::BTreeMap::new();
        eps.insert("a".to_string(), "127.0.0.1:9".parse().unwrap());
        eps.insert("b".to_string(), "127.0.0.1:10".parse().unwrap());
        let out = zones_with_health_checks(&docs, &eps).unwrap();
        assert_eq!(out.len(), 1, "the DnsServer is left out");
        let v: serde_json::Value = serde_json::from_str(&out[0]).unwrap();
        let t = &v["spec"]["gslb"][0]["targets"];
        assert_eq!(t[0]["healthCheck"]["address"], "127.0.0.1:9");
        assert_eq!(t[0]["healthCheck"]["fall"], 2);
        assert_eq!(
            t[1]["healthCheck"]["protocol"], "tcp",
            "its own check is kept"
        );
        assert!(t[2].get("healthCheck").is_none(), "no endpoint for c");
        assert_eq!(v["kind"], "Zone");
        assert_eq!(v["metadata"]["name"], "z");
    }
}
