//! The audit log file: JSON lines, size-rotated, written by a thread of its own.
//!
//! Writing never blocks the request path: [`AuditLog::record`] serializes the event
//! into a queue that a writer thread drains every [`WRITE_INTERVAL`] (sooner once
//! [`WAKE_BYTES`] are pending), so a busy stub pays one `write(2)` per batch, not per
//! request. Past [`MAX_PENDING_BYTES`] events are dropped and counted
//! ([`AuditLog::dropped`]).

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use super::event::AuditEvent;

/// Bytes of events the writer may lag behind before new events are dropped.
pub const MAX_PENDING_BYTES: usize = 16 << 20;
/// Pending bytes that wake the writer before its interval is up.
pub const WAKE_BYTES: usize = 256 << 10;
/// How long an event may wait in memory before it is written.
pub const WRITE_INTERVAL: Duration = Duration::from_millis(20);

/// Errors opening the audit log.
#[derive(Debug, thiserror::Error)]
pub enum AuditError {
    /// The file or its directory could not be opened or created.
    #[error("audit log {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The IO error.
        #[source]
        source: io::Error,
    },
    /// `max_bytes` was zero.
    #[error("audit log {path}: max size must be more than 0 bytes")]
    ZeroSize {
        /// The file.
        path: PathBuf,
    },
}

/// Events serialized but not yet written, shared by the request path and the writer.
#[derive(Debug, Default)]
struct Pending {
    /// JSON lines, newline-terminated.
    buf: Vec<u8>,
    /// Bumped by [`AuditLog::flush`]; the writer acknowledges it in `flushed`.
    flush_wanted: u64,
    /// The last `flush_wanted` the writer has fully written.
    flushed: u64,
    /// Set when every [`AuditLog`] handle is gone: write what is left and stop.
    closing: bool,
}

/// The queue between the request path and the writer thread.
#[derive(Debug)]
struct EventQueue {
    pending: Mutex<Pending>,
    /// Wakes the writer (a large batch, a flush, closing).
    wake: Condvar,
    /// Wakes [`AuditLog::flush`] callers.
    done: Condvar,
    dropped: AtomicU64,
}

impl EventQueue {
    fn lock(&self) -> MutexGuard<'_, Pending> {
        self.pending.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// Tells the writer to finish when the last handle is dropped.
#[derive(Debug)]
struct CloseOnDrop(Arc<EventQueue>);

impl Drop for CloseOnDrop {
    fn drop(&mut self) {
        self.0.lock().closing = true;
        self.0.wake.notify_all();
    }
}

/// The audit log: JSON lines in `path`, rotated to `path.1` … `path.<keep>` when it
/// would grow past `max_bytes`. Cheap to share (`Arc` inside).
#[derive(Clone, Debug)]
pub struct AuditLog {
    queue: Arc<EventQueue>,
    _close: Arc<CloseOnDrop>,
    path: PathBuf,
}

impl AuditLog {
    /// Opens (appends to) `path`, creating it with mode 0600, and starts the writer
    /// thread.
    pub fn open(path: &Path, max_bytes: u64, keep: usize) -> Result<AuditLog, AuditError> {
        let io_err = |source| AuditError::Io {
            path: path.to_owned(),
            source,
        };
        if max_bytes == 0 {
            return Err(AuditError::ZeroSize {
                path: path.to_owned(),
            });
        }
        if let Some(dir) = path.parent()
            && !dir.as_os_str().is_empty()
        {
            fs::create_dir_all(dir).map_err(io_err)?;
        }
        let file = open_append(path).map_err(io_err)?;
        let size = file.metadata().map_err(io_err)?.len();
        let queue = Arc::new(EventQueue {
            pending: Mutex::new(Pending::default()),
            wake: Condvar::new(),
            done: Condvar::new(),
            dropped: AtomicU64::new(0),
        });
        let writer = Writer {
            path: path.to_owned(),
            out: file,
            size,
            max_bytes,
            keep,
        };
        let for_writer = queue.clone();
        std::thread::Builder::new()
            .name("causeway-audit".into())
            .spawn(move || writer.run(&for_writer))
            .map_err(io_err)?;
        Ok(AuditLog {
            _close: Arc::new(CloseOnDrop(queue.clone())),
            queue,
            path: path.to_owned(),
        })
    }

    /// Queues one event; never blocks on IO. Past [`MAX_PENDING_BYTES`] of unwritten
    /// events the event is dropped and counted.
    pub fn record(&self, ev: &AuditEvent) {
        let mut line = ev.to_json().into_bytes();
        line.push(b'\n');
        let mut p = self.queue.lock();
        if p.buf.len() + line.len() > MAX_PENDING_BYTES {
            drop(p);
            let n = self.queue.dropped.fetch_add(1, Ordering::Relaxed) + 1;
            tracing::warn!(dropped_total = n, path = %self.path.display(), "audit event dropped");
            return;
        }
        // Wake the writer for the first event of a batch and when a batch grows large;
        // not for every event.
        let before = p.buf.len();
        p.buf.extend_from_slice(&line);
        let wake = before == 0 || (before < WAKE_BYTES && p.buf.len() >= WAKE_BYTES);
        drop(p);
        if wake {
            self.queue.wake.notify_one();
        }
    }

    /// Events dropped so far because the writer fell behind.
    pub fn dropped(&self) -> u64 {
        self.queue.dropped.load(Ordering::Relaxed)
    }

    /// Waits (blocking, up to `timeout`) until every event queued so far is written.
    /// For shutdown and tests; not for the request path. Returns false on timeout.
    pub fn flush(&self, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        let mut p = self.queue.lock();
        p.flush_wanted += 1;
        let ticket = p.flush_wanted;
        self.queue.wake.notify_one();
        while p.flushed < ticket {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return false;
            }
            p = self
                .queue
                .done
                .wait_timeout(p, left)
                .unwrap_or_else(PoisonError::into_inner)
                .0;
        }
        true
    }
}

fn open_append(path: &Path) -> io::Result<File> {
    let mut opts = OpenOptions::new();
    opts.create(true).append(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    opts.open(path)
}

struct Writer {
    path: PathBuf,
    out: File,
    size: u64,
    max_bytes: u64,
    keep: usize,
}

impl Writer {
    /// Sleeps until an event is pending, gathers for [`WRITE_INTERVAL`] (less when
    /// [`WAKE_BYTES`] pile up, a flush is asked for or the log closes), then swaps the
    /// pending buffer for an empty one and writes the batch outside the lock.
    fn run(mut self, queue: &EventQueue) {
        let mut batch = Vec::new();
        loop {
            let (ticket, closing) = {
                let mut p = queue.lock();
                let urgent = |p: &Pending| {
                    p.buf.len() >= WAKE_BYTES || p.flush_wanted != p.flushed || p.closing
                };
                while p.buf.is_empty() && !urgent(&p) {
                    p = queue.wake.wait(p).unwrap_or_else(PoisonError::into_inner);
                }
                if !urgent(&p) {
                    p = queue
                        .wake
                        .wait_timeout_while(p, WRITE_INTERVAL, |p| !urgent(p))
                        .unwrap_or_else(PoisonError::into_inner)
                        .0;
                }
                std::mem::swap(&mut p.buf, &mut batch);
                (p.flush_wanted, p.closing)
            };
            if !batch.is_empty() {
                if let Err(e) = self.write_batch(&batch) {
                    tracing::error!(path = %self.path.display(), error = %e, "audit log write failed");
                }
                batch.clear();
                // Do not keep a burst's capacity forever.
                batch.shrink_to(WAKE_BYTES);
            }
            let mut p = queue.lock();
            if p.flushed < ticket {
                p.flushed = ticket;
                queue.done.notify_all();
            }
            if closing && p.buf.is_empty() {
                return;
            }
        }
    }

    /// Writes whole lines, rotating between lines when the file would pass `max_bytes`.
    fn write_batch(&mut self, mut batch: &[u8]) -> io::Result<()> {
        while !batch.is_empty() {
            let room =
                usize::try_from(self.max_bytes.saturating_sub(self.size)).unwrap_or(usize::MAX);
            let fit = batch[..room.min(batch.len())]
                .iter()
                .rposition(|&b| b == b'\n')
                .map_or(0, |i| i + 1);
            let take = if fit > 0 {
                fit
            } else if self.size > 0 {
                self.rotate()?;
                continue;
            } else {
                // One line longer than max_bytes: it gets a file of its own.
                batch
                    .iter()
                    .position(|&b| b == b'\n')
                    .map_or(batch.len(), |i| i + 1)
            };
            self.out.write_all(&batch[..take])?;
            self.size += take as u64;
            batch = &batch[take..];
        }
        Ok(())
    }

    /// `path.<keep-1>` → `path.<keep>`, …, `path` → `path.1`, then a new `path`.
    fn rotate(&mut self) -> io::Result<()> {
        let numbered = |i: usize| {
            let mut p = self.path.clone().into_os_string();
            p.push(format!(".{i}"));
            PathBuf::from(p)
        };
        if self.keep == 0 {
            fs::remove_file(&self.path)?;
        } else {
            let _ = fs::remove_file(numbered(self.keep));
            for i in (1..self.keep).rev() {
                let from = numbered(i);
                if from.exists() {
                    fs::rename(&from, numbered(i + 1))?;
                }
            }
            fs::rename(&self.path, numbered(1))?;
        }
        self.out = open_append(&self.path)?;
        self.size = 0;
        Ok(())
    }
}
