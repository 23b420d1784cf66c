//! The line format of big latency maps: a file named by `LatencyMap` `spec.file`, or
//! the body of `PUT /v1/latency/map`.
//!
//! ```text
//! # comment lines and blank lines are skipped
//! prefix idc-bj aws-sg gcp-us
//! 198.51.100.0/24 12.5 40 -
//! 2001:db8:1::/48 - 7 9.25
//! ```
//!
//! The first other line is the header: `prefix` and the cluster names. Each following
//! line is a prefix (or a bare address: the full length) and one RTT in milliseconds
//! (0 to 600000) per cluster, `-` where there is no measurement, separated by spaces or
//! tabs. Host bits are cleared. A prefix listed twice is an error naming both lines.
//! The input is read in chunks ([`MapParser::feed`]); no line is longer than
//! [`MAX_LINE`] and only the current line is kept.

use std::io::Read;
use std::path::Path;

use causeway_model::ClusterId;
use ipnet::IpNet;

use super::table::{Duplicates, LatencyTable, TableBuilder};

/// Longest line accepted, in bytes.
pub const MAX_LINE: usize = 64 * 1024;
/// Largest RTT accepted, in milliseconds (as `POST /v1/latency`).
pub const MAX_RTT_MS: f64 = 600_000.0;

/// Why a map was refused: `line` 0 is about the whole input.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{input}:{line}: {reason}")]
pub struct MapError {
    /// The file, or `body`.
    pub input: String,
    /// 1-based line number.
    pub line: u32,
    /// Why.
    pub reason: String,
}

/// Parses the line format chunk by chunk into a [`LatencyTable`].
#[derive(Debug)]
pub struct MapParser {
    source: String,
    line: u32,
    partial: Vec<u8>,
    builder: Option<TableBuilder>,
    row: Vec<f32>,
}

impl MapParser {
    /// A parser naming `source` in errors.
    pub fn new(source: impl Into<String>) -> Self {
        Self {
            source: source.into(),
            line: 0,
            partial: Vec::new(),
            builder: None,
            row: Vec::new(),
        }
    }

    fn error(&self, reason: impl Into<String>) -> MapError {
        MapError {
            input: self.source.clone(),
            line: self.line,
            reason: reason.into(),
        }
    }

    /// Reads the next bytes of the input.
    pub fn feed(&mut self, mut chunk: &[u8]) -> Result<(), MapError> {
        while let Some(nl) = chunk.iter().position(|b| *b == b'\n') {
            if self.partial.is_empty() {
                self.line(&chunk[..nl])?;
            } else {
                self.partial.extend_from_slice(&chunk[..nl]);
                let line = std::mem::take(&mut self.partial);
                let r = self.line(&line);
                self.partial = line;
                self.partial.clear();
                r?;
            }
            chunk = &chunk[nl + 1..];
        }
        if self.partial.len() + chunk.len() > MAX_LINE {
            self.line += 1;
            return Err(self.error(format!("line longer than {MAX_LINE} bytes")));
        }
        self.partial.extend_from_slice(chunk);
        Ok(())
    }

    /// The table, once the input has ended.
    pub fn finish(mut self) -> Result<LatencyTable, MapError> {
        if !self.partial.is_empty() {
            let line = std::mem::take(&mut self.partial);
            self.line(&line)?;
        }
        let Some(b) = self.builder.take() else {
            self.line = 0;
            return Err(self.error("no header line (`prefix CLUSTER...`)"));
        };
        b.finish().map_err(|d| MapError {
            input: self.source.clone(),
            line: d.second,
            reason: d.to_string(),
        })
    }

    fn line(&mut self, raw: &[u8]) -> Result<(), MapError> {
        self.line = self.line.saturating_add(1);
        let raw = raw.strip_suffix(b"\r").unwrap_or(raw);
        let Ok(text) = std::str::from_utf8(raw) else {
            return Err(self.error("not UTF-8"));
        };
        let text = text.trim();
        if text.is_empty() || text.starts_with('#') {
            return Ok(());
        }
        let mut fields = text.split_ascii_whitespace();
        let Some(builder) = &mut self.builder else {
            return self.header(fields);
        };
        let Some(first) = fields.next() else {
            return Ok(());
        };
        let prefix = match first.parse::<IpNet>() {
            Ok(p) => p,
            Err(_) => match first.parse::<std::net::IpAddr>() {
                Ok(a) => IpNet::from(a),
                Err(_) => {
                    return Err(self.error(format!("{first:?} is not a prefix or an address")));
                }
            },
        };
        let width = builder.width();
        self.row.clear();
        for f in fields.by_ref() {
            if self.row.len() == width {
                self.row.push(0.0);
                break;
            }
            if f == "-" {
                self.row.push(f32::NAN);
                continue;
            }
            match f.parse::<f64>() {
                Ok(v) if v.is_finite() && (0.0..=MAX_RTT_MS).contains(&v) => {
                    self.row.push(v as f32)
                }
                _ => {
                    let column = self.row.len() + 2;
                    return Err(self.error(format!(
                        "{f:?} (column {column}) is not an RTT: give 0 to {MAX_RTT_MS} milliseconds or -"
                    )));
                }
            }
        }
        if self.row.len() != width {
            return Err(self.error(format!(
                "{} RTT(s) where the header names {width} cluster(s)",
                if self.row.len() > width {
                    "more".to_string()
                } else {
                    self.row.len().to_string()
                }
            )));
        }
        let line = self.line;
        let Some(builder) = &mut self.builder else {
            return Ok(());
        };
        builder.push(prefix, &self.row, line).map_err(|e| MapError {
            input: self.source.clone(),
            line,
            reason: e.to_string(),
        })
    }

    fn header<'a>(&mut self, mut fields: impl Iterator<Item = &'a str>) -> Result<(), MapError> {
        if fields.next() != Some("prefix") {
            return Err(self.error(
                "the first line must be the header `prefix CLUSTER...` naming the clusters",
            ));
        }
        let mut clusters: Vec<ClusterId> = Vec::new();
        for f in fields {
            let c = ClusterId::new(f)
                .map_err(|e| self.error(format!("header: {f:?} is not a cluster name: {e}")))?;
            if clusters.contains(&c) {
                return Err(self.error(format!("header: cluster {c} appears twice")));
            }
            clusters.push(c);
        }
        if clusters.is_empty() {
            return Err(self.error("header: name at least one cluster after `prefix`"));
        }
        if clusters.len() > 1024 {
            return Err(self.error("header: at most 1024 clusters"));
        }
        self.builder = Some(TableBuilder::new(clusters, Duplicates::Refuse));
        Ok(())
    }
}

/// Reads the map file at `path` (streamed, 64 KiB at a time), naming it `shown` in errors.
pub fn read_file(path: &Path, shown: &str) -> Result<LatencyTable, MapError> {
    let mut parser = MapParser::new(shown);
    let mut f = std::fs::File::open(path).map_err(|e| MapError {
        input: shown.to_string(),
        line: 0,
        reason: format!("cannot open: {e}"),
    })?;
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = match f.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => {
                return Err(MapError {
                    input: shown.to_string(),
                    line: parser.line,
                    reason: format!("cannot read: {e}"),
                });
            }
        };
        parser.feed(&buf[..n])?;
    }
    parser.finish()
}
