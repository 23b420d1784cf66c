//! The one parser of the "listening on" log line every Causeway listener writes once
//! it is bound: `listening on <role> <scheme>://<addr>`, e.g. `listening on users
//! https://127.0.0.1:1234`, `listening on dns udp://127.0.0.1:5353`, `listening on api
//! http://127.0.0.1:8080`. Tests start the binary on port 0 and read the addresses here.

use std::fmt;
use std::net::SocketAddr;

/// One bound listener, from one log line.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Listener {
    /// What it serves (`users`, `agents`, `metrics`, `dns`, `api`, …).
    pub role: String,
    /// `http`, `https`, `udp`, `tcp`, …
    pub scheme: String,
    /// The bound address.
    pub addr: SocketAddr,
}

impl fmt::Display for Listener {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}://{}", self.role, self.scheme, self.addr)
    }
}

/// Reads a listener from a log line (text or JSON format), or `None` when the line is
/// not a "listening on" line.
pub fn parse_listening(line: &str) -> Option<Listener> {
    let rest = line.split_once("listening on ")?.1;
    let mut words = rest.split_whitespace();
    let role = words.next()?;
    // A JSON log line ends the message with `"` and more fields.
    let word = words.next()?;
    let target = word
        .split(['"', ',', '}'])
        .next()
        .unwrap_or(word)
        .trim_end_matches('/');
    let (scheme, addr) = target.split_once("://")?;
    Some(Listener {
        role: role.to_owned(),
        scheme: scheme.to_owned(),
        addr: addr.parse().ok()?,
    })
}

/// Every listener a process logged, in log order.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Listening(pub Vec<Listener>);

impl Listening {
    /// The listeners in `log` (one line each; other lines are skipped).
    pub fn parse(log: &str) -> Self {
        Self(log.lines().filter_map(parse_listening).collect())
    }

    /// Whether a listener with this role was logged.
    pub fn has(&self, role: &str) -> bool {
        self.0.iter().any(|l| l.role == role)
    }

    /// Every address logged for `role` and `scheme`, in log order.
    pub fn all(&self, role: &str, scheme: &str) -> Vec<SocketAddr> {
        self.0
            .iter()
            .filter(|l| l.role == role && l.scheme == scheme)
            .map(|l| l.addr)
            .collect()
    }

    /// The first address of `role`; panics naming what was logged if there is none.
    pub fn addr(&self, role: &str) -> SocketAddr {
        match self.0.iter().find(|l| l.role == role) {
            Some(l) => l.addr,
            None => panic!("no listener {role:?} was logged; logged: {self}"),
        }
    }

    /// The first address of `role` over `scheme` (dns logs `udp` and `tcp`); panics
    /// naming what was logged if there is none.
    pub fn addr_of(&self, role: &str, scheme: &str) -> SocketAddr {
        match self.all(role, scheme).first() {
            Some(a) => *a,
            None => panic!("no listener {role:?} over {scheme} was logged; logged: {self}"),
        }
    }
}

impl fmt::Display for Listening {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let all: Vec<String> = self.0.iter().map(Listener::to_string).collect();
        write!(f, "[{}]", all.join(", "))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn l(role: &str, scheme: &str, addr: &str) -> Option<Listener> {
        Some(Listener {
            role: role.into(),
            scheme: scheme.into(),
            addr: addr.parse().unwrap(),
        })
    }

    #[test]
    fn every_shape_a_listener_logs() {
        for (line, want) in [
            (
                "2026-01-01T00:00:00Z  INFO causeway_tunnel::stub: listening on users https://127.0.0.1:1234",
                l("users", "https", "127.0.0.1:1234"),
            ),
            (
                "INFO causeway_dns::server: listening on dns udp://[::1]:5353",
                l("dns", "udp", "[::1]:5353"),
            ),
            (
                "listening on metrics http://127.0.0.1:9/",
                l("metrics", "http", "127.0.0.1:9"),
            ),
            (
                r#"{"level":"INFO","message":"listening on api http://127.0.0.1:80","target":"x"}"#,
                l("api", "http", "127.0.0.1:80"),
            ),
            // The shape dns logged before it took this one: not a listener line.
            ("INFO listening on udp 127.0.0.1:53", None),
            ("INFO ready", None),
            ("listening on users", None),
            ("listening on users https://not-an-address", None),
        ] {
            assert_eq!(parse_listening(line), want, "{line}");
        }
    }

    #[test]
    fn roles_and_schemes_of_a_whole_log() {
        let log = "a\nlistening on dns udp://127.0.0.1:5\nlistening on dns tcp://127.0.0.1:5\n\
                   listening on dns udp://[::1]:6\nlistening on api http://127.0.0.1:7\n";
        let l = Listening::parse(log);
        assert_eq!(l.addr("api"), "127.0.0.1:7".parse().unwrap());
        assert_eq!(l.addr_of("dns", "tcp"), "127.0.0.1:5".parse().unwrap());
        assert_eq!(l.all("dns", "udp").len(), 2);
        assert!(l.has("dns") && !l.has("users"));
        let err = std::panic::catch_unwind(|| l.addr("users")).unwrap_err();
        let msg = err.downcast_ref::<String>().unwrap();
        assert!(msg.contains("api http://127.0.0.1:7"), "{msg}");
    }
}
