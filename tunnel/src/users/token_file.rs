//! Static bearer tokens: a kube-apiserver style `--token-auth-file`.

use std::collections::{BTreeMap, HashSet};
use std::path::{Path, PathBuf};

use crate::identity::{Identity, Secret};

/// A token file that cannot be used; never shows a token.
#[derive(Debug, thiserror::Error)]
pub enum TokenFileError {
    /// The file could not be read.
    #[error("{path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The IO error.
        #[source]
        source: std::io::Error,
    },
    /// A line is malformed.
    #[error("{path}:{line}: {reason}")]
    Line {
        /// The file.
        path: PathBuf,
        /// 1-based line number.
        line: usize,
        /// Why (never the token itself).
        reason: String,
    },
}

/// Reads and parses a token file (see [`parse_token_file`]).
pub fn read_token_file(path: &Path) -> Result<Vec<StaticToken>, TokenFileError> {
    let text = std::fs::read_to_string(path).map_err(|source| TokenFileError::Read {
        path: path.to_owned(),
        source,
    })?;
    parse_token_file(&text, path)
}

/// One line of a token file: `token,user,uid,"group1,group2"`.
#[derive(Clone, Debug)]
pub struct StaticToken {
    /// The token (masked in `Debug`).
    pub token: Secret,
    /// Who it authenticates.
    pub identity: Identity,
}

/// Parses a kube-apiserver style `--token-auth-file`: CSV lines
/// `token,user,uid[,"group1,group2"]`; empty lines and lines starting with `#` are
/// skipped. "The token file is a csv file with a minimum of 3 columns: token, user
/// name, user uid, followed by optional group names."
pub fn parse_token_file(text: &str, path: &Path) -> Result<Vec<StaticToken>, TokenFileError> {
    let mut out = Vec::new();
    let mut seen = HashSet::new();
    for (i, raw) in text.lines().enumerate() {
        let line = raw.trim_end_matches('\r');
        if line.trim().is_empty() || line.trim_start().starts_with('#') {
            continue;
        }
        let bad = |reason: String| TokenFileError::Line {
            path: path.to_owned(),
            line: i + 1,
            reason,
        };
        let fields = split_csv(line).map_err(bad)?;
        if fields.len() < 3 {
            return Err(bad(format!(
                "expected token,user,uid[,groups]; found {} column(s)",
                fields.len()
            )));
        }
        let token = fields[0].clone();
        if token.len() < 16 {
            return Err(bad("token is shorter than 16 characters".into()));
        }
        if token.bytes().any(|b| !b.is_ascii_graphic()) {
            return Err(bad("token holds a space or non-printable character".into()));
        }
        if !seen.insert(token.clone()) {
            return Err(bad("token appears twice".into()));
        }
        let uid = (!fields[2].is_empty()).then(|| fields[2].clone());
        let groups: Vec<String> = fields
            .get(3..)
            .unwrap_or_default()
            .iter()
            .flat_map(|f| f.split(','))
            .map(str::trim)
            .filter(|g| !g.is_empty())
            .map(str::to_owned)
            .collect();
        let identity = Identity::new(fields[1].clone(), uid, groups, BTreeMap::new())
            .map_err(|e| bad(e.to_string()))?;
        out.push(StaticToken {
            token: Secret::new(token),
            identity,
        });
    }
    Ok(out)
}

/// Splits one CSV line (RFC 4180 quoting: `"a,b"`, `""` for a quote).
fn split_csv(line: &str) -> Result<Vec<String>, String> {
    let mut fields = Vec::new();
    let mut cur = String::new();
    let mut chars = line.chars().peekable();
    let mut in_quotes = false;
    let mut was_quoted = false;
    while let Some(c) = chars.next() {
        match (in_quotes, c) {
            (true, '"') if chars.peek() == Some(&'"') => {
                chars.next();
                cur.push('"');
            }
            (true, '"') => in_quotes = false,
            (true, c) => cur.push(c),
            (false, '"') if cur.is_empty() && !was_quoted => {
                in_quotes = true;
                was_quoted = true;
            }
            (false, '"') => return Err("stray '\"' inside an unquoted field".into()),
            (false, ',') => {
                fields.push(std::mem::take(&mut cur));
                was_quoted = false;
            }
            (false, c) => {
                if was_quoted {
                    return Err("text after a closing quote".into());
                }
                cur.push(c)
            }
        }
    }
    if in_quotes {
        return Err("unterminated quoted field".into());
    }
    fields.push(cur);
    Ok(fields)
}
