//! Network namespaces for the measured-latency tests (`dns_measured_latency`,
//! `dns_agent_prober`): namespaces linked to the root namespace by veth pairs, commands
//! run inside them, and unbound in a client namespace asked with dig.
//!
//! Needs root (`ip netns add`), `unbound` and `dig`.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

/// Network namespaces and their links; deleted on drop (also when the test fails).
pub struct Netns {
    /// The namespaces made so far.
    pub names: Vec<String>,
}

impl Netns {
    /// None yet.
    pub fn new() -> Self {
        Netns { names: Vec::new() }
    }

    /// Runs `ip ARGS`.
    pub fn ip(args: &[&str]) -> Result<(), String> {
        let out = Command::new("ip")
            .args(args)
            .output()
            .map_err(|e| format!("ip: {e}"))?;
        if out.status.success() {
            Ok(())
        } else {
            Err(format!(
                "ip {}: {}",
                args.join(" "),
                String::from_utf8_lossy(&out.stderr).trim()
            ))
        }
    }

    /// Whether `ip netns add` is permitted here (tries it with a name ending in the pid).
    pub fn permitted(prefix: &str) -> Result<(), String> {
        let probe = format!("{prefix}-perm-{}", std::process::id());
        Self::ip(&["netns", "add", &probe])?;
        let _ = Self::ip(&["netns", "del", &probe]);
        Ok(())
    }

    /// Adds namespace `name` linked to the root namespace by a veth pair:
    /// `host`/24 on the root side, `inner`/24 inside, default route via `host`.
    pub fn add(&mut self, name: &str, host: &str, inner: &str) -> Result<(), String> {
        let _ = Self::ip(&["netns", "del", name]); // left over from a killed run
        Self::ip(&["netns", "add", name])?;
        self.names.push(name.to_string());
        let outside = format!("{name}-h");
        let _ = Self::ip(&["link", "del", &outside]);
        Self::ip(&[
            "link", "add", &outside, "type", "veth", "peer", "name", "eth0", "netns", name,
        ])?;
        Self::ip(&["addr", "add", &format!("{host}/24"), "dev", &outside])?;
        Self::ip(&["link", "set", &outside, "up"])?;
        for args in [
            vec!["addr", "add", &format!("{inner}/24"), "dev", "eth0"],
            vec!["link", "set", "eth0", "up"],
            vec!["link", "set", "lo", "up"],
            vec!["route", "add", "default", "via", host],
        ] {
            let mut full = vec!["-n", name];
            full.extend(args.iter().map(|s| &**s));
            Self::ip(&full)?;
        }
        Ok(())
    }
}

impl Default for Netns {
    fn default() -> Self {
        Self::new()
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        // Deleting a namespace deletes its veth end, and with it the root's end.
        for n in &self.names {
            let _ = Self::ip(&["netns", "del", n]);
        }
    }
}

/// A command run inside namespace `ns`.
pub fn in_ns(ns: &str, program: impl AsRef<std::ffi::OsStr>) -> Command {
    let mut c = Command::new("ip");
    c.args(["netns", "exec", ns]).arg(program);
    c
}

/// `c` with `args` appended.
pub fn with_args(mut c: Command, args: &[&str]) -> Command {
    c.args(args);
    c
}

/// The one A record of `name` that unbound on 127.0.0.1:`port` returns, asked from
/// inside `ns`.
pub fn dig_a(ns: &str, port: u16, name: &str) -> Result<String, String> {
    let out = in_ns(ns, "dig")
        .args(["@127.0.0.1", "-p", &port.to_string(), "+time=1", "+tries=1"])
        .arg(name)
        .arg("A")
        .output()
        .map_err(|e| format!("dig: {e}"))?;
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    if !text.contains("status: NOERROR") {
        return Err(text);
    }
    let a: Vec<&str> = text
        .lines()
        .filter(|l| !l.starts_with(';'))
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            (f.len() == 5 && f[0] == name && f[3] == "A").then(|| f[4])
        })
        .collect();
    match a.as_slice() {
        [one] => Ok(one.to_string()),
        _ => Err(text),
    }
}

/// Polls [`dig_a`] until it answers `want`; returns how long it took, or fails with the
/// last answer after `within`.
pub fn follow_a(
    ns: &str,
    port: u16,
    name: &str,
    want: &str,
    within: Duration,
    what: &str,
) -> Duration {
    let t = Instant::now();
    let mut last = String::new();
    while t.elapsed() < within {
        match dig_a(ns, port, name) {
            Ok(a) if a == want => return t.elapsed(),
            Ok(a) => last = a,
            Err(e) => last = e,
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!("{what}: unbound did not answer {want} within {within:?}; last: {last}");
}

/// unbound's config: listening on 127.0.0.1:`port`, asking from `outgoing`, caching at
/// most `ttl` seconds, with stub zone `zone` served by `dns`.
pub fn unbound_config(
    d: &Path,
    port: u16,
    outgoing: &str,
    ttl: u64,
    zone: &str,
    dns: SocketAddr,
) -> String {
    let d = d.display();
    format!(
        "server:
  interface: 127.0.0.1@{port}
  port: {port}
  outgoing-interface: {outgoing}
  do-ip4: yes
  do-ip6: no
  access-control: 127.0.0.0/8 allow
  username: \"\"
  chroot: \"\"
  directory: \"{d}\"
  pidfile: \"\"
  use-syslog: no
  logfile: \"\"
  verbosity: 1
  num-threads: 1
  module-config: \"iterator\"
  cache-max-ttl: {ttl}
  cache-max-negative-ttl: {ttl}
  prefetch: no
  serve-expired: no
  qname-minimisation: no
  domain-insecure: \"{zone}\"
  auto-trust-anchor-file: \"\"
remote-control:
  control-enable: no
stub-zone:
  name: \"{zone}\"
  stub-addr: {}@{}
",
        dns.ip(),
        dns.port()
    )
}

/// The dns config both measured-latency tests serve: one zone whose GSLB name `app`
/// (TTL `ttl_secs`) is a latency policy over clusters `a` and `b` (`(id, address)`), with
/// `defaultOrder` putting `b` first so that only measurements can make `a` win; measured
/// entries age out after `max_age`; the zone's name server is `ns_addr`.
pub fn latency_dns_config(
    ns_addr: &str,
    max_age: std::time::Duration,
    ttl_secs: u64,
    a: (&str, &str),
    b: (&str, &str),
) -> String {
    format!(
        "apiVersion: causeway.dev/v1alpha1
kind: DnsServer
metadata: {{name: dns}}
spec:
  latency: {{maxAge: {}ms}}
  watch: false
---
apiVersion: causeway.dev/v1alpha1
kind: Zone
metadata: {{name: svc}}
spec:
  origin: svc.example.
  soa: {{rname: hostmaster.svc.example.}}
  nameservers:
    - {{name: ns1.svc.example., addresses: [\"{ns_addr}\"]}}
  gslb:
    - name: app
      ttl: {ttl_secs}
      policy: latency
      defaultOrder: [{b0}, {a0}]
      targets:
        - {{cluster: {a0}, addresses: [\"{a1}\"]}}
        - {{cluster: {b0}, addresses: [\"{b1}\"]}}
",
        max_age.as_millis(),
        a0 = a.0,
        a1 = a.1,
        b0 = b.0,
        b1 = b.1,
    )
}

/// A tcp-echo prober named `name` timing `beacon` for `client_net` every `interval_ms`
/// (EWMA `alpha`, `min_samples`), reporting to `dns` when given (else its stub reports).
pub fn prober_config(
    name: &str,
    dns: Option<std::net::SocketAddr>,
    client_net: &str,
    beacon: std::net::SocketAddr,
    (interval_ms, alpha, min_samples): (u64, f64, u32),
) -> String {
    let dns = dns.map_or(String::new(), |d| format!("  dns: [\"{d}\"]\n"));
    format!(
        "apiVersion: causeway.dev/v1alpha1
kind: Prober
metadata: {{name: {name}}}
spec:
{dns}  interval: {interval_ms}ms
  timeout: 1s
  method: tcp-echo
  alpha: {alpha}
  minSamples: {min_samples}
  beacons:
    - prefix: {client_net}
      addresses: [\"{beacon}\"]
"
    )
}

/// `ip:port` as a socket address.
pub fn sa(ip: &str, port: u16) -> std::net::SocketAddr {
    std::net::SocketAddr::new(ip.parse().expect("ip"), port)
}

/// Writes `text` to `path`, naming the path if that fails.
pub fn write(path: &std::path::Path, text: &str) {
    std::fs::write(path, text).unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
}
