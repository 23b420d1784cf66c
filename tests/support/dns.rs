//! The `dns_*` tests' harness: the built `causeway dns` on port 0 (started with the
//! kit's [`Spawn`], its addresses from its "listening on" lines), queries over real
//! UDP and TCP with hickory-proto, its HTTP API through the kit's client, and a tiny
//! health endpoint the tests start and stop. Generic helpers (processes, HTTP, waits)
//! live in `causeway_testbed::testing`; this file holds what needs hickory-proto.
#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::{IpAddr, SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use causeway_testbed::testing::{HttpClient, Listening, Process, Spawn, metric_value, wait_for};
use hickory_proto::op::{Edns, Message, Query};
use hickory_proto::rr::rdata::opt::{ClientSubnet, EdnsOption};
use hickory_proto::rr::{Name, RData, RecordType};

/// How often the dns tests poll (answers, metrics).
pub const POLL: Duration = Duration::from_millis(25);

/// A running `causeway dns`.
pub struct Server {
    proc: Process,
    /// DNS address (UDP and TCP).
    pub dns: SocketAddr,
    /// HTTP API address.
    pub api: SocketAddr,
    /// Every listener it logged.
    pub listening: Listening,
    /// The config file.
    pub config: PathBuf,
}

impl Server {
    /// Starts the binary with `config`, on 127.0.0.1 port 0, and waits until ready.
    pub fn start(config: &Path) -> Self {
        Self::start_with(config, &[])
    }

    /// The same with extra arguments.
    pub fn start_with(config: &Path, extra: &[&str]) -> Self {
        let proc = Spawn::causeway(env!("CARGO_BIN_EXE_causeway"))
            .args(["dns", "--config"])
            .arg(config)
            .args(["--listen", "127.0.0.1:0", "--api-listen", "127.0.0.1:0"])
            .args(extra)
            .start();
        proc.wait_line(" ready", Duration::from_secs(60));
        let listening = proc.wait_listening(&["dns", "api"], Duration::from_secs(5));
        let dns = listening.addr_of("dns", "udp");
        assert_eq!(
            dns,
            listening.addr_of("dns", "tcp"),
            "UDP and TCP share the port"
        );
        Self {
            proc,
            dns,
            api: listening.addr("api"),
            listening,
            config: config.to_path_buf(),
        }
    }

    /// Everything logged so far (ANSI colours removed).
    pub fn logs(&self) -> String {
        self.proc.logs()
    }

    /// Waits until the log contains `needle`.
    pub fn wait_log(&self, needle: &str, within: Duration) -> bool {
        self.proc.find_line(needle, within).is_some()
    }

    /// Sends a signal (`libc::SIGHUP`, …) to the server.
    pub fn signal(&self, sig: i32) {
        self.proc.signal(sig);
    }

    /// Process ID.
    pub fn pid(&self) -> u32 {
        self.proc.pid()
    }

    /// Whether the process still runs.
    pub fn alive(&self) -> bool {
        self.proc.alive()
    }

    /// A query over UDP (EDNS when `edns` is true, ECS when given).
    pub fn udp(
        &self,
        name: &str,
        qtype: RecordType,
        edns: bool,
        ecs: Option<(&str, u8)>,
    ) -> Message {
        let q = build_query(name, qtype, edns, ecs);
        self.udp_raw(&q)
            .map(|b| Message::from_vec(&b).expect("decode reply"))
            .expect("UDP reply")
    }

    /// Sends raw bytes over UDP; the reply bytes, if one came within 2 s (3 tries).
    pub fn udp_raw(&self, packet: &[u8]) -> Option<Vec<u8>> {
        let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
        sock.set_read_timeout(Some(Duration::from_millis(700)))
            .unwrap();
        let mut buf = vec![0u8; 65535];
        for _ in 0..3 {
            sock.send_to(packet, self.dns).unwrap();
            if let Ok((n, _)) = sock.recv_from(&mut buf) {
                return Some(buf[..n].to_vec());
            }
        }
        None
    }

    /// A query over TCP.
    pub fn tcp(&self, name: &str, qtype: RecordType, ecs: Option<(&str, u8)>) -> Message {
        let q = build_query(name, qtype, true, ecs);
        let mut s = TcpStream::connect(self.dns).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        write_tcp(&mut s, &q);
        Message::from_vec(&read_tcp(&mut s).expect("TCP reply")).unwrap()
    }

    /// HTTP request to the API: (status, body).
    pub fn http(&self, method: &str, path: &str, body: &str) -> (u16, String) {
        let method = http::Method::from_bytes(method.as_bytes()).expect("an HTTP method");
        let r = HttpClient::new(self.api)
            .send_blocking(method, path, body.to_owned())
            .unwrap_or_else(|e| panic!("{path}: {e}"));
        (r.status, r.text())
    }
}

/// Encodes a query.
pub fn build_query(name: &str, qtype: RecordType, edns: bool, ecs: Option<(&str, u8)>) -> Vec<u8> {
    let mut m = Message::query();
    m.metadata.recursion_desired = false;
    m.add_query(Query::query(Name::from_ascii(name).unwrap(), qtype));
    if edns || ecs.is_some() {
        let mut e = Edns::new();
        e.set_max_payload(1232);
        if let Some((addr, len)) = ecs {
            let addr: IpAddr = addr.parse().unwrap();
            e.options_mut()
                .insert(EdnsOption::Subnet(ClientSubnet::new(addr, len, 0)));
        }
        m.edns = Some(e);
    }
    m.to_vec().unwrap()
}

/// Writes one length-prefixed DNS message.
pub fn write_tcp(s: &mut TcpStream, msg: &[u8]) {
    s.write_all(&(msg.len() as u16).to_be_bytes()).unwrap();
    s.write_all(msg).unwrap();
}

/// Reads one length-prefixed DNS message.
pub fn read_tcp(s: &mut TcpStream) -> Option<Vec<u8>> {
    let mut len = [0u8; 2];
    s.read_exact(&mut len).ok()?;
    let mut buf = vec![0u8; usize::from(u16::from_be_bytes(len))];
    s.read_exact(&mut buf).ok()?;
    Some(buf)
}

/// Addresses in the answer section, as strings, sorted.
pub fn addrs(m: &Message) -> Vec<String> {
    let mut v: Vec<String> = m
        .answers
        .iter()
        .filter_map(|r| match &r.data {
            RData::A(a) => Some(a.0.to_string()),
            RData::AAAA(a) => Some(a.0.to_string()),
            _ => None,
        })
        .collect();
    v.sort();
    v
}

/// ECS (source, scope) of a reply, if present.
pub fn ecs_of(m: &Message) -> Option<(u8, u8)> {
    let e = m.edns.as_ref()?;
    match e.option(hickory_proto::rr::rdata::opt::EdnsCode::Subnet)? {
        EdnsOption::Subnet(s) => Some((s.source_prefix(), s.scope_prefix())),
        _ => None,
    }
}

/// A real HTTP health endpoint on loopback that a test starts and stops.
pub struct HealthEndpoint {
    /// Its address.
    pub addr: SocketAddr,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl HealthEndpoint {
    /// Starts answering `200 OK` on a free port.
    pub fn start() -> Self {
        Self::start_on("127.0.0.1:0".parse().unwrap())
    }

    /// Starts on `addr` (to come back on the same port).
    pub fn start_on(addr: SocketAddr) -> Self {
        let l = TcpListener::bind(addr).expect("bind health endpoint");
        let addr = l.local_addr().unwrap();
        l.set_nonblocking(true).unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let thread = std::thread::spawn(move || {
            while !flag.load(Ordering::SeqCst) {
                match l.accept() {
                    Ok((mut s, _)) => {
                        let _ = s.set_nonblocking(false);
                        let _ = s.set_read_timeout(Some(Duration::from_secs(1)));
                        let mut buf = [0u8; 1024];
                        let _ = s.read(&mut buf);
                        let _ = s.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\nConnection: close\r\n\r\nok\n");
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(5)),
                }
            }
            // Dropping the listener here: connections are refused from now on.
        });
        Self {
            addr,
            stop,
            thread: Some(thread),
        }
    }

    /// Stops it: the port refuses connections afterwards.
    pub fn stop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for HealthEndpoint {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Writes `text` to a fresh file in `dir`.
pub fn write_config(dir: &Path, name: &str, text: &str) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, text).unwrap();
    p
}

/// The example config shipped in examples/dns.
pub fn example_config() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/dns/causeway-dns.yaml")
}

/// The value of the `/metrics` sample `series` (name and labels exactly; 0 if absent).
pub fn metric(s: &Server, series: &str) -> f64 {
    let (_, page) = s.http("GET", "/metrics", "");
    metric_value(&page, series).unwrap_or(0.0)
}

/// Waits (query counts are added to /metrics every 250 ms) until `metric` ≥
/// `at_least`, for up to 5 s; returns its value.
pub fn wait_metric(s: &Server, series: &str, at_least: f64) -> f64 {
    wait_for(
        &format!("{series} >= {at_least}"),
        Duration::from_secs(5),
        POLL,
        || {
            let v = metric(s, series);
            if v >= at_least { Ok(v) } else { Err(v) }
        },
    )
}
