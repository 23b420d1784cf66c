//! Hot reload: on SIGHUP, and when the config file changes (polled every
//! [`POLL`]), read and validate the file again. A good file is handed to the builder;
//! a bad one is logged with file, line, field and reason, counted, and the last good
//! configuration keeps serving.
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
use crate::handler::Shared;

/// How often the file's modification time and size are checked.
pub const POLL: Duration = Duration::from_secs(1);

fn stamp(path: &PathBuf) -> Option<(SystemTime, u64)> {
    let m = std::fs::metadata(path).ok()?;
    Some((m.modified().ok()?, m.len()))
}

/// Watches `config.file` until `shutdown`.
pub async fn watch(
    initial: Config,
    shared: Arc<Shared>,
    events: mpsc::UnboundedSender<Event>,
    shutdown: CancellationToken,
) {
    let path = initial.file.clone();
    let watch_file = initial.server.watch;
    let mut last_good = initial;
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
        let loaded = tokio::task::spawn_blocking(move || Config::load(&p)).await;
        match loaded {
            Ok(Ok(config)) => {
                if config.server.listen != last_good.server.listen
                    || config.server.api != last_good.server.api
                {
                    warn!(file = %path.display(), "listen or api address changed: takes effect after a restart");
                }
                info!(file = %path.display(), reason = why, "configuration valid; applying");
                last_good = config.clone();
                let _ = events.send(Event::Reload(Box::new(config)));
            }
            Ok(Err(e)) => {
                shared.metrics.reload(false);
                error!(
                    file = %e.file.display(),
                    line = e.line.map(|l| l as i64).unwrap_or(-1),
                    field = %e.field,
                    reason = %e.reason,
                    "invalid configuration ({why}): {e}; keeping the last good configuration"
                );
            }
            Err(e) => error!(error = %e, "reload task failed"),
        }
    }
}
