//! Loading a configuration file, ready to serve.
//!
//! The data flows one way: the file's documents ([`causeway_config`]) → a validated
//! [`Config`] ([`crate::config`]) → compiled [`Zones`] ([`crate::zone`]) → the
//! [`ProbeTargets`] of their health checks ([`crate::health::probe`], which reads CA
//! files). Each step only reads the one before it. An error at any step becomes a
//! [`ConfigError`] at the `file:line:column` of the field it is about, found in the
//! documents, which live only as long as the load.

use std::path::Path;
use std::sync::Arc;

use causeway_config::{ConfigError, Document};

use crate::config::Config;
use crate::health::{ProbeSetupError, ProbeTargets};
use crate::latency::LatencyTable;
use crate::zone::{CheckProtocol, CompileError, Trust, Zones};

/// A configuration ready to serve: validated, compiled, its probes set up.
#[derive(Debug)]
pub struct LoadedConfig {
    /// The validated configuration.
    pub config: Config,
    /// Its zones, compiled.
    pub zones: Arc<Zones>,
    /// The probes of its health checks.
    pub probes: ProbeTargets,
    /// The static latency map: the `LatencyMap` entries and files, merged (a later
    /// document's RTT for the same prefix and cluster wins).
    pub latency: Arc<LatencyTable>,
}

impl LoadedConfig {
    /// Reads and loads `file`.
    pub fn load(file: &Path) -> Result<Self, ConfigError> {
        Self::from_documents(file, &causeway_config::read_file(file)?)
    }

    /// [`LoadedConfig::load`], reading and validating the file on a short-lived
    /// thread of its own, so that the parser's transient memory (a large file's YAML
    /// values) lives in that thread's malloc arena and can be returned to the OS as a
    /// whole. The zones, which the server keeps, are compiled here on the caller's
    /// thread, so they do not pin that arena's pages.
    pub fn load_isolated(file: &Path) -> Result<Self, ConfigError> {
        let path = file.to_path_buf();
        let (docs, config) = std::thread::Builder::new()
            .name("config-load".into())
            .spawn(move || {
                let docs = causeway_config::read_file(&path)?;
                let config = Config::from_documents(&path, &docs)?;
                Ok((docs, config))
            })
            .map_err(|e| ConfigError::file(file, format!("cannot start the loader thread: {e}")))?
            .join()
            .unwrap_or_else(|_| Err(ConfigError::file(file, "the loader panicked")))?;
        Self::compile(config, &docs)
    }

    /// Loads `text`, naming `file` in errors.
    pub fn parse(file: &Path, text: &str) -> Result<Self, ConfigError> {
        Self::from_documents(file, &causeway_config::parse_str(file, text)?)
    }

    /// Loads documents already read: those of `file`, or, in production mode
    /// ([`crate::hub`]), the file's followed by the hub's objects (each document names
    /// its own source in errors; `file` is named by errors about the whole set).
    pub fn from_documents(file: &Path, docs: &[Document]) -> Result<Self, ConfigError> {
        Self::compile(Config::from_documents(file, docs)?, docs)
    }

    /// [`Self::from_documents`], but a set without any `Zone` is valid too and serves no
    /// zone (every query is refused): in production mode the zones may all live in the
    /// hub, and there may be none yet, or the last one may have been deleted.
    pub fn from_documents_allowing_no_zone(
        file: &Path,
        docs: &[Document],
    ) -> Result<Self, ConfigError> {
        if docs.iter().any(|d| d.kind == "Zone") {
            return Self::from_documents(file, docs);
        }
        // The file loader requires a zone: validate with a placeholder one (after every
        // real document, so their indexes hold), then serve without it.
        let mut with_placeholder = docs.to_vec();
        with_placeholder.extend(causeway_config::parse_str(file, PLACEHOLDER_ZONE)?);
        let mut config = Config::from_documents(file, &with_placeholder)?;
        config.zones.clear();
        Self::compile(config, docs)
    }

    /// Compiles the zones of `config` (read from `docs`) and sets up their probes.
    fn compile(config: Config, docs: &[Document]) -> Result<Self, ConfigError> {
        let zones = Zones::compile(&config.zones).map_err(|e| compile_error(&config, docs, e))?;
        let probes = ProbeTargets::build(&zones)
            .map_err(|e| probe_error(&config, &zones, docs, &config.file, e))?;
        let latency = static_latency(&config, docs)?;
        Ok(Self {
            config,
            zones: Arc::new(zones),
            probes,
            latency,
        })
    }
}

/// The static latency map of `config`: its inline entries, then each map file (read
/// streamed; an error names `spec.file` of its document and the file's line).
fn static_latency(config: &Config, docs: &[Document]) -> Result<Arc<LatencyTable>, ConfigError> {
    let inline = Arc::new(LatencyTable::build(config.latency.iter().flat_map(|e| {
        e.rtt_ms
            .iter()
            .map(move |(c, r)| (e.prefix, c.clone(), *r as f32))
    })));
    let mut layers = vec![inline];
    for f in &config.latency_files {
        let table = crate::latency::read_file(&f.path, &f.shown).map_err(|e| {
            match docs.get(f.document) {
                Some(doc) => doc.error("spec.file", &e),
                None => ConfigError::file(&config.file, e),
            }
        })?;
        layers.push(Arc::new(table));
    }
    let refs: Vec<&Arc<LatencyTable>> = layers.iter().collect();
    Ok(LatencyTable::merge(&refs))
}

/// A zone that validates, standing in for none in [`LoadedConfig::from_documents_allowing_no_zone`].
const PLACEHOLDER_ZONE: &str = "apiVersion: causeway.dev/v1alpha1
kind: Zone
metadata: {name: no-zone}
spec:
  origin: no-zone.invalid.
  soa: {rname: hostmaster.no-zone.invalid.}
  nameservers: [{name: ns, addresses: [127.0.0.1]}]
";

/// The document a zone of `config` came from.
fn zone_document<'a>(config: &Config, docs: &'a [Document], zone: usize) -> Option<&'a Document> {
    docs.get(config.zones.get(zone)?.document)
}

fn compile_error(config: &Config, docs: &[Document], e: CompileError) -> ConfigError {
    match zone_document(config, docs, e.zone) {
        Some(doc) => doc.error(&e.field, &e.reason),
        None => ConfigError::file(&config.file, e),
    }
}

fn probe_error(
    config: &Config,
    zones: &Zones,
    docs: &[Document],
    file: &Path,
    e: ProbeSetupError,
) -> ConfigError {
    let Some(g) = zones.gslb.get(e.gslb) else {
        return ConfigError::file(file, e);
    };
    // GSLB ids count every zone's names in order: the index within its own zone.
    let index = zones.gslb[..e.gslb]
        .iter()
        .filter(|o| o.zone == g.zone)
        .count();
    let mut field = format!("spec.gslb[{index}].targets[{}].healthCheck", e.target);
    let check = g.targets.get(e.target).and_then(|t| t.check.as_ref());
    if let Some(CheckProtocol::Https(Trust::CaFile(_))) = check.map(|c| &c.protocol) {
        field.push_str(".caFile");
    }
    match zone_document(config, docs, g.zone) {
        Some(doc) => doc.error(&field, &e),
        None => ConfigError::file(file, e),
    }
}

#[cfg(test)]
mod tests;
