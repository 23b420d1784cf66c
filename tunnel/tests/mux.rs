//! Component tests of the stub⇄agent path on real sockets and real TLS, with a
//! hyper server standing in for the API server (the end-to-end tests in the
//! workspace's `tests/` use real kube-apiservers and kubectl).

use std::collections::HashMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use causeway_model::cluster::ClusterId;
use causeway_testbed::testing::{HttpClient, client_tls, wait_for_async};
use causeway_tunnel::agent::{self, AgentConfig, StubTarget, TokenSource, UpstreamConfig};
use causeway_tunnel::authz::AccessPolicy;
use causeway_tunnel::body::{self, TunnelBody};
use causeway_tunnel::config::OneDocumentFile as _;
use causeway_tunnel::pki::{self, Ca, IssuedCert};
use causeway_tunnel::stub::{self, Listeners, StubHandle, StubParts};
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

// === the stand-in API server ===

/// Serves: `/echo` (request headers as JSON), `/bytes?n=N` (N bytes), `/stream`
/// (a chunk every 20 ms, forever), `/upgrade` (101, then echo), `/refuse-upgrade` (403).
async fn upstream_server() -> (SocketAddr, rustls::RootCertStore) {
    let ca = Ca::generate().expect("a fresh CA generates");
    let server = ca
        .issue_server(
            &["localhost".into(), "127.0.0.1".into()],
            Duration::from_secs(3600),
        )
        .expect("the CA issues a server certificate");
    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(ca.cert_der().clone())
        .expect("the CA's own certificate is a valid root");
    let mut tls = rustls::ServerConfig::builder_with_provider(pki::provider())
        .with_safe_default_protocol_versions()
        .expect("ring supports the default protocol versions")
        .with_no_client_auth()
        .with_single_cert(
            pki::parse_cert_pem(&server.cert_pem).expect("the CA's PEM certificate parses"),
            pki::parse_key_pem(server.key_pem.expose()).expect("the CA's PEM key parses"),
        )
        .expect("the issued certificate matches its key");
    tls.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(tls));
    let listener = TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind 127.0.0.1:0");
    let addr = listener
        .local_addr()
        .expect("a bound listener has an address");
    tokio::spawn(async move {
        loop {
            let (tcp, _) = listener
                .accept()
                .await
                .expect("accept on the stand-in API server");
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let Ok(tls) = acceptor.accept(tcp).await else {
                    return;
                };
                let svc = service_fn(upstream_handle);
                let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                    .serve_connection_with_upgrades(TokioIo::new(tls), svc)
                    .await;
            });
        }
    });
    (addr, roots)
}

async fn upstream_handle(mut req: Request<Incoming>) -> Result<Response<TunnelBody>, Infallible> {
    let path = req.uri().path().to_owned();
    let resp = match path.as_str() {
        "/echo" => {
            let mut h: HashMap<String, Vec<String>> = HashMap::new();
            for (k, v) in req.headers() {
                h.entry(k.to_string())
                    .or_default()
                    .push(v.to_str().unwrap_or("").to_owned());
            }
            let body = req
                .into_body()
                .collect()
                .await
                .expect("read the request body")
                .to_bytes();
            h.insert("x-body-len".into(), vec![body.len().to_string()]);
            Response::new(body::full(
                serde_json::to_vec(&h).expect("a map of strings serializes"),
            ))
        }
        "/bytes" => {
            let n: usize = req
                .uri()
                .query()
                .and_then(|q| q.strip_prefix("n="))
                .and_then(|n| n.parse().ok())
                .unwrap_or(0);
            Response::new(body::full(vec![b'x'; n]))
        }
        "/stream" => {
            let s = futures::stream::unfold(0u64, |i| async move {
                tokio::time::sleep(Duration::from_millis(20)).await;
                Some((
                    Ok::<_, Infallible>(Frame::data(Bytes::from(format!("event {i}\n")))),
                    i + 1,
                ))
            });
            Response::new(body::boxed(StreamBody::new(s)))
        }
        "/upgrade" => {
            let on = hyper::upgrade::on(&mut req);
            tokio::spawn(async move {
                let Ok(up) = on.await else { return };
                let mut io = TokioIo::new(up);
                let mut buf = vec![0u8; 65536];
                loop {
                    match io.read(&mut buf).await {
                        Ok(0) | Err(_) => break,
                        Ok(n) => {
                            if io.write_all(&buf[..n]).await.is_err() {
                                break;
                            }
                        }
                    }
                }
                let _ = io.shutdown().await;
            });
            Response::builder()
                .status(101)
                .header("connection", "Upgrade")
                .header("upgrade", "test-proto")
                .header("x-stream-protocol-version", "v4.channel.k8s.io")
                .body(body::empty())
                .expect("a static 101 response")
        }
        "/refuse-upgrade" => Response::builder()
            .status(403)
            .body(body::full("no upgrade for you"))
            .expect("a static 403 response"),
        _ => Response::builder()
            .status(404)
            .body(body::empty())
            .expect("a static 404 response"),
    };
    Ok(resp)
}

// === stub, agent, user fixtures ===

struct Bed {
    ca: Ca,
    _state: tempfile::TempDir,
    users: HashMap<String, IssuedCert>,
    stub: StubHandle,
    upstream: UpstreamConfig,
    token: tempfile::NamedTempFile,
    shutdown: CancellationToken,
}

const POLICY: &str = r#"
apiVersion: causeway.dev/v1alpha1
kind: AccessPolicy
metadata: {name: test}
spec:
  rules:
  - subjects: {groups: [dev]}
    clusters: ["c-*"]
  - subjects: {users: [reader]}
    clusters: ["c-*"]
    readOnly: true
"#;

async fn bed() -> Bed {
    let state = tempfile::tempdir().expect("create a temp dir");
    let ca = Ca::load_or_create(state.path()).expect("create a CA in the temp dir");
    let state_dir =
        causeway_tunnel::state::StateDir::open(state.path()).expect("open the state dir");
    let mut users = HashMap::new();
    for (name, groups, read_only) in [
        ("alice", vec!["dev".to_owned()], false),
        ("reader", vec![], true),
    ] {
        let new = causeway_tunnel::users::NewUser {
            name: name.into(),
            groups,
            clusters: vec!["c-*".into()],
            read_only,
            ttl: Duration::from_secs(3600),
        };
        let added =
            causeway_tunnel::users::add_user(&state_dir, &ca, &new, &[]).expect("add a test user");
        users.insert(name.to_owned(), added.cert);
    }
    let server = ca
        .issue_server(
            &["localhost".into(), "127.0.0.1".into()],
            Duration::from_secs(3600),
        )
        .expect("the CA issues a server certificate");
    let parts = StubParts {
        policy: AccessPolicy::parse(POLICY, std::path::Path::new("test-policy.yaml"))
            .expect("POLICY parses"),
        users: causeway_tunnel::users::UserStoreHandle::load(state.path(), None)
            .expect("load the users just added"),
        audit: None,
        enroller: None,
        user_tls: ca
            .user_server_config(&server)
            .expect("user TLS config from the issued certificate"),
        agent_tls: ca
            .agent_server_config(&server, false)
            .expect("agent TLS config from the issued certificate"),
        enrolled: Box::new(|c: &ClusterId| c.as_str().starts_with("c-")),
        agent_allowed: Box::new(|_, _| Ok(())),
        standby: false,
    };
    let listeners = Listeners {
        users: TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind 127.0.0.1:0"),
        agents: TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind 127.0.0.1:0"),
        metrics: TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind 127.0.0.1:0"),
    };
    let shutdown = CancellationToken::new();
    let stub = stub::start(parts, listeners, shutdown.clone()).expect("start the stub");
    let (up_addr, roots) = upstream_server().await;
    let upstream = UpstreamConfig {
        addr: up_addr.to_string(),
        server_name: "localhost".into(),
        base: format!("https://{up_addr}")
            .parse()
            .expect("an https URL of a socket address parses"),
        roots: Arc::new(roots),
    };
    let token = tempfile::NamedTempFile::new().expect("create a temp file");
    std::fs::write(token.path(), "sa-token-123\n").expect("write the token file");
    Bed {
        ca,
        _state: state,
        users,
        stub,
        upstream,
        token,
        shutdown,
    }
}

impl Bed {
    /// Starts an agent for `cluster` with the default 2 data connections per session;
    /// returns its shutdown token.
    fn agent(&self, cluster: &str, sessions: usize) -> CancellationToken {
        self.agent_with(cluster, sessions, 2, None)
    }

    /// Starts an agent for `cluster` with `data` data connections per session,
    /// serving its metrics on `metrics` if given.
    fn agent_with(
        &self,
        cluster: &str,
        sessions: usize,
        data: usize,
        metrics: Option<tokio::net::TcpListener>,
    ) -> CancellationToken {
        let cluster = ClusterId::new(cluster).expect("test cluster names are DNS labels");
        let cert: IssuedCert = self
            .ca
            .issue_agent(&cluster, Duration::from_secs(3600))
            .expect("the CA issues an agent certificate");
        let tls = pki::agent_client_config(&self.ca.cert_pem(), &cert.cert_pem, &cert.key_pem)
            .expect("agent TLS config from the issued certificate");
        let config = AgentConfig {
            cluster,
            stubs: vec![StubTarget {
                addr: self.stub.addrs[1].to_string(),
                server_name: "localhost".into(),
            }],
            sessions_per_stub: sessions,
            data_connections: data,
            tls: Arc::new(tls),
            upstream: self.upstream.clone(),
            token: TokenSource::new(self.token.path().to_owned()).expect("read the token file"),
            metrics_listener: metrics,
            fence: None,
            prober: None,
        };
        let stop = self.shutdown.child_token();
        tokio::spawn(agent::run(config, stop.clone()));
        stop
    }

    async fn wait_sessions(&self, cluster: &str, n: usize) {
        let c = ClusterId::new(cluster).expect("test cluster names are DNS labels");
        wait_for(&format!("cluster {cluster}: sessions"), n, || {
            self.stub.shared.registry.count(&c)
        })
        .await;
    }

    async fn wait_idle_data(&self, cluster: &str, n: usize) {
        let c = ClusterId::new(cluster).expect("test cluster names are DNS labels");
        wait_for(
            &format!("cluster {cluster}: idle data connections"),
            n,
            || self.stub.shared.data.idle(&c),
        )
        .await;
    }

    /// The kit's HTTPS client of the stub's users listener, as `user` (a client
    /// certificate) or anonymous, offering HTTP/2 or HTTP/1.1.
    fn user_client(&self, user: Option<&str>, h2: bool) -> HttpClient {
        let identity = user.map(|name| {
            let cert = &self.users[name];
            (cert.cert_pem.as_bytes(), cert.key_pem.expose().as_bytes())
        });
        let alpn: &[u8] = if h2 { b"h2" } else { b"http/1.1" };
        let tls = client_tls(self.ca.cert_pem().as_bytes(), identity, &[alpn])
            .expect("client TLS config from the test CA and certificate");
        HttpClient::https(self.stub.addrs[0], tls, "localhost")
    }

    /// An HTTP/2 client as alice (group dev).
    async fn h2_client(&self) -> hyper::client::conn::http2::SendRequest<TunnelBody> {
        self.user_client(Some("alice"), true)
            .http2()
            .await
            .expect("HTTP/2 handshake with the stub")
    }

    /// An HTTP/1.1 client.
    async fn h1_client(
        &self,
        user: Option<(&str, &[&str])>,
    ) -> hyper::client::conn::http1::SendRequest<TunnelBody> {
        self.user_client(user.map(|(name, _groups)| name), false)
            .http1()
            .await
            .expect("HTTP/1.1 handshake with the stub")
    }
}

/// Polls `count` every 10 ms for up to 5 s until it is `n`; panics naming `what` if not.
async fn wait_for(what: &str, n: usize, count: impl Fn() -> usize) {
    wait_for_async(
        what,
        Duration::from_secs(5),
        Duration::from_millis(10),
        async || {
            let got = count();
            if got == n {
                Ok(())
            } else {
                Err(format!("{got}, wanted {n}"))
            }
        },
    )
    .await;
}

/// Waits until the stub has no stream open.
async fn wait_streams_closed(bed: &Bed) {
    wait_for("open streams", 0, || {
        bed.stub.shared.metrics.open_streams.get() as usize
    })
    .await;
}

fn get(uri: &str) -> Request<TunnelBody> {
    Request::get(format!("https://localhost{uri}"))
        .body(body::empty())
        .expect("a GET of a test path builds")
}

fn get_h1(uri: &str) -> Request<TunnelBody> {
    Request::get(uri)
        .header("host", "localhost")
        .body(body::empty())
        .expect("a GET of a test path builds")
}

async fn json(resp: Response<Incoming>) -> serde_json::Value {
    let b = resp
        .into_body()
        .collect()
        .await
        .expect("read the response body")
        .to_bytes();
    serde_json::from_slice(&b).unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&b)))
}

// === tests ===

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forwards_with_impersonation_and_sa_token() {
    let bed = bed().await;
    bed.agent("c-one", 1);
    bed.wait_sessions("c-one", 1).await;
    let mut c = bed.h2_client().await;
    let req = Request::post("https://localhost/clusters/c-one/echo")
        .header("authorization", "Bearer user-secret")
        .header("x-causeway-identity", "forged")
        .body(body::full("hello"))
        .unwrap();
    let resp = c.send_request(req).await.unwrap();
    assert_eq!(resp.status(), 200);
    assert!(!resp.headers().contains_key("x-causeway-identity"));
    let h = json(resp).await;
    assert_eq!(h["impersonate-user"][0], "alice");
    let groups = h["impersonate-group"].as_array().unwrap();
    assert!(groups.iter().any(|g| g == "dev"), "{groups:?}");
    assert_eq!(
        h["authorization"],
        serde_json::json!(["Bearer sa-token-123"])
    );
    assert!(h.get("x-causeway-identity").is_none());
    assert_eq!(h["x-body-len"][0], "5");
    assert!(h["audit-id"][0].as_str().unwrap().len() >= 32);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refusals_are_status_json() {
    let bed = bed().await;
    bed.agent("c-one", 1);
    bed.wait_sessions("c-one", 1).await;
    let mut c = bed.h2_client().await;
    // enrolled but no agent → 503
    let r = c.send_request(get("/clusters/c-two/api")).await.unwrap();
    assert_eq!(r.status(), StatusCode::SERVICE_UNAVAILABLE);
    let s = json(r).await;
    assert_eq!(s["kind"], "Status");
    assert!(
        s["message"].as_str().unwrap().contains("no live agent"),
        "{s}"
    );
    // not allowed by policy → 403
    let r = c.send_request(get("/clusters/other/api")).await.unwrap();
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    // not routed → 404
    let r = c.send_request(get("/api/v1/pods")).await.unwrap();
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    assert_eq!(json(r).await["reason"], "NotFound");
    // no client certificate → 401
    let mut anon = bed.h1_client(None).await;
    let r = anon
        .send_request(get_h1("/clusters/c-one/echo"))
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    // read-only user may get, not post
    let mut reader = bed.h1_client(Some(("reader", &[]))).await;
    let r = reader
        .send_request(get_h1("/clusters/c-one/echo"))
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let _ = r.into_body().collect().await;
    // An HTTP/1.1 connection takes the next request only once it has finished the last.
    reader.ready().await.unwrap();
    let post = Request::post("/clusters/c-one/api/v1/namespaces/d/pods")
        .header("host", "localhost")
        .body(body::empty())
        .unwrap();
    let r = reader.send_request(post).await.unwrap();
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stalled_readers_never_slow_other_streams() {
    let bed = bed().await;
    bed.agent("c-one", 1);
    bed.wait_sessions("c-one", 1).await;
    let mut c = bed.h2_client().await;
    // Ten 8 MiB downloads and five endless streams that nobody reads.
    let mut stalled = Vec::new();
    for _ in 0..10 {
        stalled.push(
            c.send_request(get("/clusters/c-one/bytes?n=8388608"))
                .await
                .unwrap(),
        );
    }
    for _ in 0..5 {
        stalled.push(c.send_request(get("/clusters/c-one/stream")).await.unwrap());
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    // Meanwhile small requests on another user connection, on the same session, stay
    // fast, and a whole 8 MiB download goes through.
    let mut other = bed.h2_client().await;
    let started = tokio::time::Instant::now();
    let work = async {
        for _ in 0..50 {
            let r = other
                .send_request(get("/clusters/c-one/bytes?n=1024"))
                .await
                .unwrap();
            let b = r.into_body().collect().await.unwrap().to_bytes();
            assert_eq!(b.len(), 1024);
        }
        let r = other
            .send_request(get("/clusters/c-one/bytes?n=8388608"))
            .await
            .unwrap();
        r.into_body().collect().await.unwrap().to_bytes().len()
    };
    let big = tokio::time::timeout(Duration::from_secs(30), work)
        .await
        .expect("requests beside stalled streams hung");
    assert_eq!(big, 8 << 20);
    let took = started.elapsed();
    assert!(took < Duration::from_secs(10), "took {took:?}");
    assert_eq!(
        bed.stub
            .shared
            .registry
            .count(&ClusterId::new("c-one").unwrap()),
        1
    );
    drop(stalled);
    // Dropped streams are freed on the stub.
    wait_streams_closed(&bed).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upgrade_splices_only_after_101() {
    let bed = bed().await;
    bed.agent("c-one", 1);
    bed.wait_sessions("c-one", 1).await;
    let mut c = bed.h1_client(Some(("alice", &["dev"]))).await;
    let req = Request::post("/clusters/c-one/upgrade")
        .header("host", "localhost")
        .header("connection", "Upgrade")
        .header("upgrade", "test-proto")
        .body(body::empty())
        .unwrap();
    let mut resp = c.send_request(req).await.unwrap();
    assert_eq!(resp.status(), StatusCode::SWITCHING_PROTOCOLS);
    assert_eq!(resp.headers()["upgrade"], "test-proto");
    assert_eq!(
        resp.headers()["x-stream-protocol-version"],
        "v4.channel.k8s.io"
    );
    let up = hyper::upgrade::on(&mut resp).await.unwrap();
    let io = TokioIo::new(up);
    let payload: Vec<u8> = (0..200_000u32).map(|i| (i % 251) as u8).collect();
    let p2 = payload.clone();
    let (mut rd, mut wr) = tokio::io::split(io);
    let writer = tokio::spawn(async move {
        wr.write_all(&p2).await.unwrap();
        wr.shutdown().await.unwrap();
    });
    let mut back = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), rd.read_to_end(&mut back))
        .await
        .unwrap()
        .unwrap();
    writer.await.unwrap();
    assert_eq!(back, payload);

    // A refused upgrade is an ordinary response, and the connection stays HTTP.
    let mut c = bed.h1_client(Some(("alice", &["dev"]))).await;
    let req = Request::post("/clusters/c-one/refuse-upgrade")
        .header("host", "localhost")
        .header("connection", "Upgrade")
        .header("upgrade", "test-proto")
        .body(body::empty())
        .unwrap();
    let resp = c.send_request(req).await.unwrap();
    assert_eq!(resp.status(), StatusCode::FORBIDDEN);
    assert!(resp.headers().get("upgrade").is_none());
    let b = resp.into_body().collect().await.unwrap().to_bytes();
    assert_eq!(&b[..], b"no upgrade for you");
    // Nothing was spliced: the stream is closed and counted as done.
    wait_streams_closed(&bed).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn balances_and_removes_dead_agents_at_once() {
    let bed = bed().await;
    let a = bed.agent("c-one", 2);
    let _b = bed.agent("c-one", 2);
    bed.wait_sessions("c-one", 4).await;
    a.cancel();
    bed.wait_sessions("c-one", 2).await;
    let mut c = bed.h2_client().await;
    for _ in 0..100 {
        let r = c
            .send_request(get("/clusters/c-one/bytes?n=10"))
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        let _ = r.into_body().collect().await.unwrap();
    }
    let text = bed.stub.shared.metrics.encode();
    assert!(
        text.contains("causeway_tunnel_agent_sessions{cluster=\"c-one\"} 2"),
        "{text}"
    );
}

/// GET `path` from a plain-HTTP listener: (status code, body).
async fn scrape(addr: SocketAddr, path: &str) -> (u16, String) {
    let r = HttpClient::new(addr)
        .send(http::Method::GET, path, "")
        .await
        .expect("GET from the metrics listener");
    (r.status, r.text())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn agent_metrics_count_sessions_streams_and_codes() {
    let bed = bed().await;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let stop = bed.agent_with("c-metrics", 2, 0, Some(listener));
    bed.wait_sessions("c-metrics", 2).await;
    assert_eq!(scrape(addr, "/readyz").await.0, 200);
    let mut c = bed.h2_client().await;
    for _ in 0..3 {
        let resp = c
            .send_request(get("/clusters/c-metrics/echo"))
            .await
            .unwrap();
        assert_eq!(resp.status(), 200);
        json(resp).await;
    }
    let (code, m) = scrape(addr, "/metrics").await;
    assert_eq!(code, 200);
    assert!(m.contains("causeway_agent_sessions 2"), "{m}");
    assert!(
        m.contains("causeway_agent_requests_total{code=\"200\"} 3"),
        "{m}"
    );
    assert!(
        m.contains("causeway_agent_response_headers_seconds_count 3"),
        "{m}"
    );
    // Each stream counts as open until its response body ended on the agent.
    wait_for_async(
        "causeway_agent_open_streams 0",
        Duration::from_secs(2),
        Duration::from_millis(10),
        async || {
            let open = scrape(addr, "/metrics").await.1;
            if open.contains("causeway_agent_open_streams 0") {
                Ok(())
            } else {
                Err(open)
            }
        },
    )
    .await;
    assert_eq!(scrape(addr, "/nope").await.0, 404);
    stop.cancel();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn short_requests_use_data_connections_which_survive_cancellation() {
    let bed = bed().await;
    let agent = bed.agent("c-one", 1);
    bed.wait_sessions("c-one", 1).await;
    bed.wait_idle_data("c-one", 2).await;
    let data_requests = || bed.stub.shared.metrics.data_requests.get();
    let mut c = bed.h2_client().await;

    // Short requests (with a body too) go over the data connections, identity intact.
    for i in 0..20 {
        let req = Request::post("https://localhost/clusters/c-one/echo")
            .body(body::full(vec![b'x'; i]))
            .unwrap();
        let h = json(c.send_request(req).await.unwrap()).await;
        assert_eq!(h["impersonate-user"][0], "alice");
        assert_eq!(h["x-body-len"][0], i.to_string());
    }
    assert_eq!(data_requests(), 20);
    // A request with more headers than HTTP/1.1's usual limit of 100 passes as well.
    let mut req = get("/clusters/c-one/echo");
    for i in 0..150 {
        req.headers_mut().insert(
            format!("x-many-{i}").parse::<http::HeaderName>().unwrap(),
            "v".parse().unwrap(),
        );
    }
    let h = json(c.send_request(req).await.unwrap()).await;
    assert_eq!(h["x-many-149"][0], "v");
    assert_eq!(data_requests(), 21);
    // From an HTTP/1.1 user connection too (its Host header is kept).
    let mut h1 = bed.h1_client(Some(("alice", &["dev"]))).await;
    let r = h1
        .send_request(get_h1("/clusters/c-one/echo"))
        .await
        .unwrap();
    assert_eq!(json(r).await["impersonate-user"][0], "alice");
    assert_eq!(data_requests(), 22);

    // A watch and an upgrade never take one: they stay on session streams.
    let r = c
        .send_request(get("/clusters/c-one/api/v1/namespaces/d/pods?watch=true"))
        .await
        .unwrap();
    let _ = r.into_body().collect().await;
    assert_eq!(data_requests(), 22, "a watch went over a data connection");

    // A response dropped mid-body closes its data connection; the agent dials another
    // and later requests are unaffected.
    for _ in 0..5 {
        let mut r = c
            .send_request(get("/clusters/c-one/bytes?n=8388608"))
            .await
            .unwrap()
            .into_body();
        let first = r.frame().await.unwrap().unwrap();
        assert!(first.data_ref().is_some_and(|d| !d.is_empty()));
        drop(r);
    }
    bed.wait_idle_data("c-one", 2).await;
    let before = data_requests();
    for _ in 0..10 {
        let r = c
            .send_request(get("/clusters/c-one/bytes?n=100000"))
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        let b = r.into_body().collect().await.unwrap().to_bytes();
        assert_eq!(b.len(), 100_000);
    }
    assert!(
        data_requests() >= before + 9,
        "data connections were not replaced"
    );

    // Busy sessions keep short requests: with 4 endless responses in flight on session
    // streams, a request takes a stream although 2 data connections are idle.
    let one = ClusterId::new("c-one").unwrap();
    let mut endless = Vec::new();
    for _ in 0..6 {
        endless.push(c.send_request(get("/clusters/c-one/stream")).await.unwrap());
    }
    let on_data = data_requests();
    // The first two took the data connections; dropping them closes those, and the
    // agent replaces them.
    drop(endless.drain(..2));
    bed.wait_idle_data("c-one", 2).await;
    assert_eq!(bed.stub.shared.registry.short_in_flight(&one), 4);
    let r = c.send_request(get("/clusters/c-one/echo")).await.unwrap();
    assert_eq!(json(r).await["impersonate-user"][0], "alice");
    assert_eq!(
        data_requests(),
        on_data,
        "a busy cluster's request took a data connection"
    );
    drop(endless);
    wait_for("short streams in flight", 0, || {
        bed.stub.shared.registry.short_in_flight(&one)
    })
    .await;
    let r = c.send_request(get("/clusters/c-one/echo")).await.unwrap();
    assert_eq!(json(r).await["impersonate-user"][0], "alice");
    assert_eq!(data_requests(), on_data + 1);

    // The agent gone: its data connections close with its session, and a request gets
    // a prompt 503, not a hang on a dead connection.
    agent.cancel();
    bed.wait_sessions("c-one", 0).await;
    // Its closed data connections leave the pool.
    bed.wait_idle_data("c-one", 0).await;
    let r = tokio::time::timeout(
        Duration::from_secs(10),
        c.send_request(get("/clusters/c-one/echo")),
    )
    .await
    .expect("a request to a cluster whose agent left hung")
    .unwrap();
    assert_eq!(r.status(), StatusCode::SERVICE_UNAVAILABLE);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn data_connections_can_be_switched_off() {
    let bed = bed().await;
    bed.agent_with("c-one", 1, 0, None);
    bed.wait_sessions("c-one", 1).await;
    let mut c = bed.h2_client().await;
    let h = json(c.send_request(get("/clusters/c-one/echo")).await.unwrap()).await;
    assert_eq!(h["impersonate-user"][0], "alice");
    assert_eq!(bed.stub.shared.metrics.data_requests.get(), 0);
    assert_eq!(
        bed.stub.shared.data.idle(&ClusterId::new("c-one").unwrap()),
        0
    );
}
