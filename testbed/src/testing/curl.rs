//! `curl` as an independent HTTP client: the security tests check the stub with a
//! client that shares none of our TLS and HTTP code, and send paths (`/a/../b`,
//! `%2F`) exactly as written.

use std::path::{Path, PathBuf};
use std::process::Command;

use super::command::run;

/// One curl request; [`Curl::send`] runs it.
#[derive(Clone, Debug)]
pub struct Curl {
    method: String,
    url: String,
    cacert: Option<PathBuf>,
    identity: Option<(PathBuf, PathBuf)>,
    headers: Vec<String>,
    body: Option<String>,
}

/// What came back.
#[derive(Clone, Debug)]
pub struct CurlResponse {
    /// HTTP status; 0 when there was no HTTP answer (e.g. the TLS handshake failed).
    pub code: u16,
    /// The response head, lower-cased (`audit-id: …`).
    pub headers: String,
    /// The response body.
    pub body: String,
    /// curl's own messages.
    pub stderr: String,
}

impl Curl {
    /// `method url`, sent with `--path-as-is` and a 30 s limit.
    pub fn new(method: &str, url: &str) -> Self {
        Self {
            method: method.to_owned(),
            url: url.to_owned(),
            cacert: None,
            identity: None,
            headers: Vec::new(),
            body: None,
        }
    }

    /// `GET url`.
    pub fn get(url: &str) -> Self {
        Self::new("GET", url)
    }

    /// Trusts the CA certificate in `path`.
    pub fn cacert(mut self, path: &Path) -> Self {
        self.cacert = Some(path.to_owned());
        self
    }

    /// Presents the client certificate `cert` with key `key` (PEM files).
    pub fn identity(mut self, cert: &Path, key: &Path) -> Self {
        self.identity = Some((cert.to_owned(), key.to_owned()));
        self
    }

    /// Adds a header line `Name: value`.
    pub fn header(mut self, name: &str, value: &str) -> Self {
        self.headers.push(format!("{name}: {value}"));
        self
    }

    /// Sends `body` as `application/json`.
    pub fn json(mut self, body: &str) -> Self {
        self.body = Some(body.to_owned());
        self
    }

    /// Runs curl; panics only if curl cannot start.
    pub fn send(&self) -> CurlResponse {
        let mut cmd = Command::new("curl");
        cmd.args(["-sS", "--path-as-is", "--max-time", "30", "-D", "-"])
            .args(["-o", "-", "-w", "\n%{http_code}", "-X", &self.method]);
        if let Some(ca) = &self.cacert {
            cmd.arg("--cacert").arg(ca);
        }
        if let Some((cert, key)) = &self.identity {
            cmd.arg("--cert").arg(cert).arg("--key").arg(key);
        }
        for h in &self.headers {
            cmd.arg("-H").arg(h);
        }
        if let Some(b) = &self.body {
            cmd.args(["-H", "Content-Type: application/json", "--data-binary", b]);
        }
        let out = run(cmd.arg(&self.url));
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        let (rest, code) = text.rsplit_once('\n').unwrap_or(("", &text));
        let (headers, body) = rest.split_once("\r\n\r\n").unwrap_or_default();
        CurlResponse {
            code: code.trim().parse().unwrap_or(0),
            headers: headers.to_ascii_lowercase(),
            body: body.to_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};

    #[test]
    fn status_head_and_body_of_a_real_server_and_no_answer() {
        super::super::command::require_tools(&[("curl", "curl")]);
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap();
        let server = std::thread::spawn(move || {
            let (mut s, _) = l.accept().unwrap();
            let mut req = Vec::new();
            let mut buf = [0u8; 4096];
            while !String::from_utf8_lossy(&req).contains("{\"a\":1}") {
                let n = s.read(&mut buf).unwrap();
                assert!(n > 0, "request ended early");
                req.extend_from_slice(&buf[..n]);
            }
            s.write_all(b"HTTP/1.1 403 Forbidden\r\nAudit-ID: x1\r\nContent-Length: 4\r\n\r\nnope")
                .unwrap();
            String::from_utf8(req).unwrap()
        });
        let r = Curl::new("POST", &format!("http://{addr}/a/../b"))
            .header("Authorization", "Bearer t")
            .json("{\"a\":1}")
            .send();
        let req = server.join().unwrap();
        assert!(req.starts_with("POST /a/../b HTTP/1.1"), "{req}");
        assert!(req.contains("Authorization: Bearer t"), "{req}");
        assert_eq!((r.code, r.body.as_str()), (403, "nope"));
        assert!(r.headers.contains("audit-id: x1"), "{}", r.headers);

        let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = closed.local_addr().unwrap();
        drop(closed);
        let r = Curl::get(&format!("http://{addr}/")).send();
        assert_eq!(r.code, 0);
        assert!(!r.stderr.is_empty());
    }
}
