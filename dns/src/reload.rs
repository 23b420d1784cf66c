//! Hot reload: on SIGHUP, and when the config file changes (polled every
//! [`POLL`]), load the file again ([`crate::load`]). A good file is handed to the
//! builder; a bad one is logged with file, line, column, object, field and reason,
//! counted, and the last good configuration keeps serving.
//!
//! Listen addresses and the API address are bound once at start; a change to them
//! is logged and needs a restart.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tracing::{error, info, warn};

use crate::builder::Event;
use crate::config::Config;
use crate::load::LoadedConfig;
use crate::state::ServerState;

/// How often the file's modification time and size are checked.
pub const POLL: Duration = Duration::from_secs(1);

fn stamp(path: &PathBuf) -> Option<(SystemTime, u64)> {
    let m = std::fs::metadata(path).ok()?;
    Some((m.modified().ok()?, m.len()))
}

/// What the watcher keeps of the first config (not the whole, possibly large, config).
#[derive(Debug, Clone)]
pub struct WatchSettings {
    /// The file.
    pub file: PathBuf,
    /// Poll it for changes.
    pub watch: bool,
    /// Listen addresses bound at start.
    pub listen: Vec<std::net::SocketAddr>,
    /// API address bound at start.
    pub api: Option<std::net::SocketAddr>,
}

impl WatchSettings {
    /// The settings of `config`.
    pub fn of(config: &Config) -> Self {
        Self {
            file: config.file.clone(),
            watch: config.server.watch,
            listen: config.server.listen.clone(),
            api: config.server.api,
        }
    }
}

/// Watches the config file until `shutdown`.
pub async fn watch(
    initial: WatchSettings,
    shared: Arc<ServerState>,
    events: mpsc::UnboundedSender<Event>,
    shutdown: CancellationToken,
) {
    let path = initial.file;
    let watch_file = initial.watch;
    let mut bound = (initial.listen, initial.api);
    let mut last_stamp = stamp(&path);
    let mut hup = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()) {
        Ok(s) => Some(s),
        Err(e) => {
            warn!(error = %e, "cannot listen for SIGHUP; reload on file change only");
            None
        }
    };
    let mut tick = tokio::time::interval(POLL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let why = tokio::select! {
            () = shutdown.cancelled() => return,
            Some(()) = async { match hup.as_mut() { Some(h) => h.recv().await, None => std::future::pending().await } } => "SIGHUP",
            _ = tick.tick(), if watch_file => {
                let now = stamp(&path);
                if now == last_stamp { continue }
                last_stamp = now;
                "file changed"
            }
        };
        let p = path.clone();
        let loaded = tokio::task::spawn_blocking(move || LoadedConfig::load_isolated(&p)).await;
        match loaded {
            Ok(Ok(loaded)) => {
                let server = &loaded.config.server;
                if (&server.listen, server.api) != (&bound.0, bound.1) {
                    warn!(file = %path.display(), "listen or api address changed: takes effect after a restart");
                }
                info!(file = %path.display(), reason = why, "configuration valid; applying");
                bound = (server.listen.clone(), server.api);
                let _ = events.send(Event::Reload(Box::new(loaded)));
            }
            Ok(Err(e)) => {
                shared.metrics.reload(false);
                let (line, column) = e
                    .position
                    .map_or((-1, -1), |p| (p.line as i64, p.column as i64));
                error!(
                    file = %e.file.display(),
                    line,
                    column,
                    object = e.object.as_deref().unwrap_or(""),
                    field = %e.field,
                    reason = %e.reason,
                    "invalid configuration ({why}): {e}; keeping the last good configuration"
                );
            }
            Err(e) => error!(error = %e, "reload task failed"),
        }
    }
}
