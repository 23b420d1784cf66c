//! Live progress of a drill: on a terminal, one status line redrawn in place (current
//! step, elapsed time, what is awaited and what is seen now) above permanent lines for
//! what finished; elsewhere, plain lines only.

use std::io::Write;
use std::time::{Duration, Instant};

/// Widest status line drawn on a terminal (longer ones are cut).
const STATUS_WIDTH: usize = 160;

/// Where progress goes (the command passes stderr) and how.
pub struct Progress {
    out: Box<dyn Write + Send>,
    tty: bool,
    status_shown: bool,
    last_draw: Option<Instant>,
}

impl Progress {
    /// Progress written to `out`; `tty` redraws a status line in place.
    pub fn new(out: Box<dyn Write + Send>, tty: bool) -> Self {
        Self {
            out,
            tty,
            status_shown: false,
            last_draw: None,
        }
    }

    /// No progress at all.
    pub fn silent() -> Self {
        Self::new(Box::new(std::io::sink()), false)
    }

    /// A permanent line (the status line, if any, is cleared first and redrawn by the
    /// next [`Progress::status`]).
    pub(crate) fn line(&mut self, text: &str) {
        self.clear();
        let _ = writeln!(self.out, "{text}");
        let _ = self.out.flush();
    }

    /// The status line: drawn in place on a terminal (at most every 100 ms), nothing
    /// otherwise.
    pub(crate) fn status(&mut self, text: &str) {
        if !self.tty {
            return;
        }
        if self
            .last_draw
            .is_some_and(|t| t.elapsed() < Duration::from_millis(100))
        {
            return;
        }
        self.last_draw = Some(Instant::now());
        let shown: String = text.chars().take(STATUS_WIDTH).collect();
        let _ = write!(self.out, "\r\x1b[K{shown}");
        let _ = self.out.flush();
        self.status_shown = true;
    }

    /// Removes the status line.
    pub(crate) fn clear(&mut self) {
        if self.status_shown {
            let _ = write!(self.out, "\r\x1b[K");
            let _ = self.out.flush();
            self.status_shown = false;
            self.last_draw = None;
        }
    }
}

/// `12.3s`.
pub(crate) fn secs(d: Duration) -> String {
    format!("{:.1}s", d.as_secs_f64())
}
