//! Load generator of `bench/tunnel/run.sh`: HTTP/2 over TLS with a client certificate
//! or a bearer token, against kube-apiserver directly or through the stub.
//!
//! ```text
//! tunnel_bench latency  --url URL --ca CA [--cert C --key K | --token T | --token-file F]
//!                       [--header 'Name: value']... --concurrency N --duration SECS
//! tunnel_bench throughput ... (same; reports MiB/s of response bodies)
//! tunnel_bench watches  --url URL ... --count N --hold SECS   (opens N idle watches, holds them)
//! ```
//! Prints one JSON object. Every run is bounded in time; watches are bounded in count.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper::client::conn::http2::SendRequest;
use hyper_util::rt::{TokioExecutor, TokioIo};

struct Opts {
    mode: String,
    url: http::Uri,
    ca: String,
    cert: Option<String>,
    key: Option<String>,
    token: Option<String>,
    headers: Vec<(http::HeaderName, http::HeaderValue)>,
    concurrency: usize,
    duration: Duration,
    count: usize,
    hold: Duration,
    conns: usize,
}

fn opts() -> Result<Opts, String> {
    let mut a = std::env::args().skip(1);
    let mode = a.next().ok_or("mode: latency | throughput | watches")?;
    let mut o = Opts {
        mode,
        url: "https://127.0.0.1".parse().map_err(|e| format!("{e}"))?,
        ca: String::new(),
        cert: None,
        key: None,
        token: None,
        headers: Vec::new(),
        concurrency: 1,
        duration: Duration::from_secs(10),
        count: 1000,
        hold: Duration::from_secs(5),
        conns: 4,
    };
    while let Some(flag) = a.next() {
        let v = a.next().ok_or(format!("{flag} needs a value"))?;
        let read = |p: &str| std::fs::read_to_string(p).map_err(|e| format!("{flag} {p}: {e}"));
        match flag.as_str() {
            "--url" => o.url = v.parse().map_err(|e| format!("--url: {e}"))?,
            "--ca" => o.ca = read(&v)?,
            "--cert" => o.cert = Some(read(&v)?),
            "--key" => o.key = Some(read(&v)?),
            "--token" => o.token = Some(v),
            "--token-file" => o.token = Some(read(&v)?.trim().to_owned()),
            "--header" => {
                let (k, val) = v
                    .split_once(':')
                    .ok_or(format!("--header {v}: want 'Name: value'"))?;
                o.headers.push((
                    k.trim().parse().map_err(|e| format!("--header {k}: {e}"))?,
                    val.trim()
                        .parse()
                        .map_err(|e| format!("--header {val}: {e}"))?,
                ));
            }
            "--concurrency" => o.concurrency = v.parse().map_err(|e| format!("{flag}: {e}"))?,
            "--duration" => {
                o.duration = Duration::from_secs_f64(v.parse().map_err(|e| format!("{flag}: {e}"))?)
            }
            "--count" => o.count = v.parse().map_err(|e| format!("{flag}: {e}"))?,
            "--hold" => {
                o.hold = Duration::from_secs_f64(v.parse().map_err(|e| format!("{flag}: {e}"))?)
            }
            "--conns" => o.conns = v.parse().map_err(|e| format!("{flag}: {e}"))?,
            _ => return Err(format!("unknown flag {flag}")),
        }
    }
    Ok(o)
}

fn tls(o: &Opts) -> Result<Arc<rustls::ClientConfig>, String> {
    let mut roots = rustls::RootCertStore::empty();
    for c in causeway_tunnel::pki::parse_cert_pem(&o.ca).map_err(|e| e.to_string())? {
        roots.add(c).map_err(|e| e.to_string())?;
    }
    let b = rustls::ClientConfig::builder_with_provider(causeway_tunnel::pki::provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_root_certificates(roots);
    let mut c = match (&o.cert, &o.key) {
        (Some(c), Some(k)) => b
            .with_client_auth_cert(
                causeway_tunnel::pki::parse_cert_pem(c).map_err(|e| e.to_string())?,
                causeway_tunnel::pki::parse_key_pem(k).map_err(|e| e.to_string())?,
            )
            .map_err(|e| e.to_string())?,
        _ => b.with_no_client_auth(),
    };
    c.alpn_protocols = vec![b"h2".to_vec()];
    Ok(Arc::new(c))
}

async fn connect(
    o: &Opts,
    tls: Arc<rustls::ClientConfig>,
) -> Result<SendRequest<Empty<Bytes>>, String> {
    let host = o.url.host().ok_or("no host")?.to_owned();
    let port = o.url.port_u16().unwrap_or(443);
    let tcp = tokio::net::TcpStream::connect((host.as_str(), port))
        .await
        .map_err(|e| e.to_string())?;
    tcp.set_nodelay(true).map_err(|e| e.to_string())?;
    let name = rustls::pki_types::ServerName::try_from(host).map_err(|e| e.to_string())?;
    let io = tokio_rustls::TlsConnector::from(tls)
        .connect(name, tcp)
        .await
        .map_err(|e| e.to_string())?;
    let (send, conn) = hyper::client::conn::http2::Builder::new(TokioExecutor::new())
        .initial_stream_window_size(4 << 20)
        .initial_connection_window_size(32 << 20)
        .handshake(TokioIo::new(io))
        .await
        .map_err(|e| e.to_string())?;
    tokio::spawn(conn);
    Ok(send)
}

fn request(o: &Opts, uri: &http::Uri) -> http::Request<Empty<Bytes>> {
    let mut b = http::Request::get(uri.clone());
    if let Some(t) = &o.token {
        b = b.header("authorization", format!("Bearer {t}"));
    }
    for (k, v) in &o.headers {
        b = b.header(k, v);
    }
    b.body(Empty::new()).expect("valid request")
}

fn pct(sorted: &[Duration], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i].as_secs_f64() * 1e6
}

#[allow(
    clippy::print_stdout,
    clippy::print_stderr,
    reason = "a load generator: it prints its result as JSON and its errors"
)]
#[tokio::main(flavor = "multi_thread", worker_threads = 1)]
async fn main() {
    let o = match opts() {
        Ok(o) => Arc::new(o),
        Err(e) => {
            eprintln!("tunnel_bench: {e}");
            std::process::exit(2);
        }
    };
    let tls = match tls(&o) {
        Ok(t) => t,
        Err(e) => {
            eprintln!("tunnel_bench: TLS: {e}");
            std::process::exit(2);
        }
    };
    let nconn = if o.mode == "watches" {
        o.conns.max(1)
    } else {
        o.conns.min(o.concurrency.max(1)).max(1)
    };
    let mut conns = Vec::new();
    for _ in 0..nconn {
        match connect(&o, tls.clone()).await {
            Ok(c) => conns.push(c),
            Err(e) => {
                eprintln!("tunnel_bench: connect {}: {e}", o.url);
                std::process::exit(1);
            }
        }
    }
    match o.mode.as_str() {
        "latency" | "throughput" => {
            let deadline = Instant::now() + o.duration;
            let mut tasks = tokio::task::JoinSet::new();
            for i in 0..o.concurrency {
                let mut c = conns[i % conns.len()].clone();
                let o = o.clone();
                tasks.spawn(async move {
                    let mut lat = Vec::new();
                    let (mut bytes, mut errors) = (0u64, 0u64);
                    while Instant::now() < deadline {
                        let t = Instant::now();
                        let r = async {
                            let resp = c
                                .send_request(request(&o, &o.url))
                                .await
                                .map_err(|e| e.to_string())?;
                            let ok = resp.status().is_success();
                            let b = resp
                                .into_body()
                                .collect()
                                .await
                                .map_err(|e| e.to_string())?
                                .to_bytes();
                            if ok {
                                Ok(b.len() as u64)
                            } else {
                                Err("status".to_owned())
                            }
                        }
                        .await;
                        match r {
                            Ok(n) => {
                                lat.push(t.elapsed());
                                bytes += n;
                            }
                            Err(_) => errors += 1,
                        }
                    }
                    (lat, bytes, errors)
                });
            }
            let started = Instant::now();
            let (mut lat, mut bytes, mut errors) = (Vec::new(), 0u64, 0u64);
            while let Some(Ok((l, b, e))) = tasks.join_next().await {
                lat.extend(l);
                bytes += b;
                errors += e;
            }
            let secs = started
                .elapsed()
                .as_secs_f64()
                .max(o.duration.as_secs_f64());
            lat.sort();
            println!(
                "{{\"mode\":\"{}\",\"concurrency\":{},\"requests\":{},\"errors\":{},\"rps\":{:.1},\"p50_us\":{:.0},\"p99_us\":{:.0},\"mib_per_s\":{:.1}}}",
                o.mode,
                o.concurrency,
                lat.len(),
                errors,
                lat.len() as f64 / secs,
                pct(&lat, 0.50),
                pct(&lat, 0.99),
                bytes as f64 / secs / (1024.0 * 1024.0)
            );
        }
        "watches" => {
            let mut held = Vec::new();
            let mut failed = 0;
            for i in 0..o.count {
                let mut c = conns[i % conns.len()].clone();
                match c.send_request(request(&o, &o.url)).await {
                    Ok(r) if r.status().is_success() => held.push(r),
                    _ => failed += 1,
                }
            }
            println!(
                "{{\"mode\":\"watches\",\"open\":{},\"failed\":{failed}}}",
                held.len()
            );
            use std::io::Write;
            let _ = std::io::stdout().flush();
            tokio::time::sleep(o.hold).await;
            drop(held);
        }
        m => {
            eprintln!("tunnel_bench: unknown mode {m}");
            std::process::exit(2);
        }
    }
}
