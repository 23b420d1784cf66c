//! Test harness for the built `causeway dns` binary: start it on port 0, read its
//! addresses from the "listening on" log lines, query it over real UDP and TCP with
//! hickory-proto, and talk to its HTTP API. Also a tiny HTTP health endpoint the
//! tests start and stop.
#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{IpAddr, SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use hickory_proto::op::{Edns, Message, Query};
use hickory_proto::rr::rdata::opt::{ClientSubnet, EdnsOption};
use hickory_proto::rr::{Name, RData, RecordType};

/// A running `causeway dns`.
pub struct Server {
    child: Child,
    /// DNS address (UDP and TCP).
    pub dns: SocketAddr,
    /// HTTP API address.
    pub api: SocketAddr,
    log: Arc<Mutex<String>>,
    /// The config file.
    pub config: PathBuf,
}

fn strip_ansi(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        if c == '\x1b' {
            for d in chars.by_ref() {
                if d.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

fn addr_after(log: &str, marker: &str) -> Option<SocketAddr> {
    log.lines()
        .find_map(|l| {
            l.split_once(marker)
                .map(|(_, rest)| rest.split_whitespace().next().unwrap_or("").to_string())
        })
        .and_then(|a| a.parse().ok())
}

impl Server {
    /// Starts the binary with `config`, on 127.0.0.1 port 0, and waits until ready.
    pub fn start(config: &Path) -> Self {
        Self::start_with(config, &[])
    }

    /// The same with extra arguments.
    pub fn start_with(config: &Path, extra: &[&str]) -> Self {
        let mut child = Command::new(env!("CARGO_BIN_EXE_causeway"))
            .args(["--log", "info", "dns", "--config"])
            .arg(config)
            .args(["--listen", "127.0.0.1:0", "--api-listen", "127.0.0.1:0"])
            .args(extra)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start causeway");
        let log = Arc::new(Mutex::new(String::new()));
        let stderr = child.stderr.take().unwrap();
        let sink = log.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                let mut l = sink.lock().unwrap();
                l.push_str(&strip_ansi(&line));
                l.push('\n');
            }
        });
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let text = log.lock().unwrap().clone();
            if text.contains(" ready") {
                let dns = addr_after(&text, "listening on dns udp://").expect("udp address in log");
                let tcp = addr_after(&text, "listening on dns tcp://").expect("tcp address in log");
                assert_eq!(dns, tcp, "UDP and TCP share the port");
                let api =
                    addr_after(&text, "listening on api http://").expect("http address in log");
                return Self {
                    child,
                    dns,
                    api,
                    log,
                    config: config.to_path_buf(),
                };
            }
            if let Ok(Some(status)) = child.try_wait() {
                panic!("causeway dns exited with {status} before it was ready:\n{text}");
            }
            assert!(
                Instant::now() < deadline,
                "causeway dns not ready within 60 s:\n{text}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Everything logged so far (ANSI colours removed).
    pub fn logs(&self) -> String {
        self.log.lock().unwrap().clone()
    }

    /// Waits until the log contains `needle`.
    pub fn wait_log(&self, needle: &str, within: Duration) -> bool {
        let deadline = Instant::now() + within;
        while Instant::now() < deadline {
            if self.logs().contains(needle) {
                return true;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        false
    }

    /// Sends a signal to the server.
    pub fn signal(&self, sig: &str) {
        let ok = Command::new("kill")
            .args([&format!("-{sig}"), &self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(ok.success());
    }

    /// Process ID.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Whether the process still runs.
    pub fn alive(&mut self) -> bool {
        self.child.try_wait().unwrap().is_none()
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
        http(self.api, method, path, body)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
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

/// A blocking HTTP/1.1 request: (status, body).
pub fn http(addr: SocketAddr, method: &str, path: &str, body: &str) -> (u16, String) {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: t\r\nConnection: close\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    let status = out
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let body = out
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    (status, body)
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

/// Polls `f` until it returns true or `within` passes; returns the time it took.
pub fn wait_until(within: Duration, mut f: impl FnMut() -> bool) -> Option<Duration> {
    let start = Instant::now();
    while start.elapsed() < within {
        if f() {
            return Some(start.elapsed());
        }
        std::thread::sleep(Duration::from_millis(25));
    }
    None
}

/// The value of the first `/metrics` line starting with `prefix` (0 if absent).
pub fn metric(s: &Server, prefix: &str) -> f64 {
    let (_, m) = s.http("GET", "/metrics", "");
    m.lines()
        .find(|l| l.starts_with(prefix))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0.0)
}

/// Waits (query counts are added to /metrics every 250 ms) until `metric` ≥ `at_least`.
pub fn wait_metric(s: &Server, prefix: &str, at_least: f64) -> f64 {
    let mut last = 0.0;
    wait_until(Duration::from_secs(5), || {
        last = metric(s, prefix);
        last >= at_least
    });
    last
}
