//! Processes under test: start one (the built `causeway` binary, or a peer such as NSD
//! or unbound), keep everything it prints, wait for a log line or its "listening on"
//! lines, signal it, and kill it when the guard drops. Children die with the test
//! process too (PDEATHSIG, forked from the testbed's spawner thread).

use std::ffi::OsStr;
use std::io::{BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use super::listening::Listening;

/// How often waits look at the log again.
const POLL: Duration = Duration::from_millis(20);

/// How to start a process; [`Spawn::start`] starts it.
#[derive(Debug)]
pub struct Spawn {
    name: String,
    cmd: Command,
    log_file: Option<PathBuf>,
    echo: bool,
}

impl Spawn {
    /// `cmd`, called `name` in messages.
    pub fn new(name: impl Into<String>, cmd: Command) -> Self {
        Self {
            name: name.into(),
            cmd,
            log_file: None,
            echo: false,
        }
    }

    /// The `causeway` binary at `bin` (a test passes `env!("CARGO_BIN_EXE_causeway")`)
    /// logging at INFO without colours; add the subcommand and its flags with
    /// [`Spawn::arg`] and [`Spawn::args`].
    pub fn causeway(bin: impl AsRef<OsStr>) -> Self {
        let mut cmd = Command::new(bin);
        cmd.env("CAUSEWAY_LOG", "info").env("NO_COLOR", "1");
        Self::new("causeway", cmd)
    }

    /// Adds an argument; the first one also names a `causeway` process
    /// (`causeway stub`).
    pub fn arg(mut self, arg: impl AsRef<OsStr>) -> Self {
        if self.name == "causeway" && self.cmd.get_args().next().is_none() {
            self.name = format!("causeway {}", arg.as_ref().to_string_lossy());
        }
        self.cmd.arg(arg);
        self
    }

    /// Adds arguments.
    pub fn args<I: IntoIterator<Item = S>, S: AsRef<OsStr>>(mut self, args: I) -> Self {
        for a in args {
            self = self.arg(a);
        }
        self
    }

    /// Sets an environment variable of the process.
    pub fn env(mut self, key: impl AsRef<OsStr>, value: impl AsRef<OsStr>) -> Self {
        self.cmd.env(key, value);
        self
    }

    /// Names the process in messages.
    pub fn name(mut self, name: impl Into<String>) -> Self {
        self.name = name.into();
        self
    }

    /// Also appends every line it prints to `path` (to read after a failure).
    pub fn log_file(mut self, path: impl Into<PathBuf>) -> Self {
        self.log_file = Some(path.into());
        self
    }

    /// Also prints every line to the test's stderr as `[name] line`.
    pub fn echo(mut self) -> Self {
        self.echo = true;
        self
    }

    /// Starts the process; panics naming the command if it cannot start.
    pub fn start(mut self) -> Process {
        self.cmd
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let shown = format!("{:?}", self.cmd);
        let mut child = crate::process::spawn_attached(self.cmd)
            .unwrap_or_else(|e| panic!("cannot start {}: {shown}: {e}", self.name));
        let log = Arc::new(Log::default());
        let file = self.log_file.as_ref().and_then(|p| {
            std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(p)
                .ok()
        });
        let file = Arc::new(Mutex::new(file));
        let streams: [Option<Box<dyn Read + Send>>; 2] = [
            child
                .stdout
                .take()
                .map(|s| Box::new(s) as Box<dyn Read + Send>),
            child
                .stderr
                .take()
                .map(|s| Box::new(s) as Box<dyn Read + Send>),
        ];
        for stream in streams.into_iter().flatten() {
            let (log, file) = (log.clone(), file.clone());
            let echo = self.echo.then(|| self.name.clone());
            log.open.fetch_add(1, Ordering::SeqCst);
            std::thread::spawn(move || {
                let mut reader = BufReader::new(stream);
                let mut raw = Vec::new();
                while reader.read_until(b'\n', &mut raw).is_ok_and(|n| n > 0) {
                    let line =
                        strip_ansi(String::from_utf8_lossy(&raw).trim_end_matches(['\n', '\r']));
                    raw.clear();
                    if let Some(name) = &echo {
                        #[allow(
                            clippy::print_stderr,
                            reason = "echo() asks for the output on the test's stderr"
                        )]
                        {
                            eprintln!("[{name}] {line}");
                        }
                    }
                    if let Some(f) = lock(&file).as_mut() {
                        let _ = writeln!(f, "{line}");
                    }
                    let mut text = lock(&log.text);
                    text.push_str(&line);
                    text.push('\n');
                }
                log.open.fetch_sub(1, Ordering::SeqCst);
            });
        }
        Process {
            name: self.name,
            pid: child.id(),
            child: Mutex::new(child),
            log,
            log_file: self.log_file,
        }
    }
}

/// What a process printed (stdout and stderr, interleaved by line).
#[derive(Default)]
struct Log {
    text: Mutex<String>,
    /// Output streams still being read.
    open: AtomicUsize,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Removes ANSI colour sequences.
fn strip_ansi(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        if c == '\x1b' {
            for d in chars.by_ref() {
                if d.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// A running process; killed (SIGKILL) and reaped on drop.
pub struct Process {
    name: String,
    pid: u32,
    child: Mutex<Child>,
    log: Arc<Log>,
    log_file: Option<PathBuf>,
}

impl Process {
    /// Its name in messages.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Process ID.
    pub fn pid(&self) -> u32 {
        self.pid
    }

    /// The file its output is appended to, if one was asked for.
    pub fn log_file(&self) -> Option<&Path> {
        self.log_file.as_deref()
    }

    /// Its exit status, if it has exited (and is reaped now).
    pub fn exited(&self) -> Option<ExitStatus> {
        lock(&self.child).try_wait().ok().flatten()
    }

    /// Whether it still runs.
    pub fn alive(&self) -> bool {
        self.exited().is_none()
    }

    /// Everything it printed so far (ANSI colours removed).
    pub fn logs(&self) -> String {
        lock(&self.log.text).clone()
    }

    /// The last `n` lines it printed, headed by its name, for failure messages.
    pub fn log_tail(&self, n: usize) -> String {
        let text = self.logs();
        let lines: Vec<&str> = text.lines().collect();
        format!(
            "--- last {n} lines of {} (pid {}):\n{}",
            self.name,
            self.pid,
            lines[lines.len().saturating_sub(n)..].join("\n")
        )
    }

    /// Waits until it printed `n` lines containing `needle`; `None` if it exits first
    /// or `within` passes.
    pub fn find_lines(&self, needle: &str, n: usize, within: Duration) -> Option<Vec<String>> {
        self.lines_with(needle, n, within).ok()
    }

    /// Waits until it printed a line containing `needle` and returns it; `None` if it
    /// exits first or `within` passes.
    pub fn find_line(&self, needle: &str, within: Duration) -> Option<String> {
        self.find_lines(needle, 1, within).map(|mut v| v.remove(0))
    }

    /// Waits for a line containing `needle` and returns it; panics with the log tail
    /// if it exits first or `within` passes.
    pub fn wait_line(&self, needle: &str, within: Duration) -> String {
        self.wait_lines(needle, 1, within).remove(0)
    }

    /// Waits for `n` lines containing `needle` and returns them; panics with the log
    /// tail if it exits first or `within` passes.
    pub fn wait_lines(&self, needle: &str, n: usize, within: Duration) -> Vec<String> {
        self.lines_with(needle, n, within)
            .unwrap_or_else(|why| panic!("{} did not log {n}× {needle:?}: {why}", self.name))
    }

    /// The lines containing `needle` once there are `n`; `Err` says why not.
    fn lines_with(&self, needle: &str, n: usize, within: Duration) -> Result<Vec<String>, String> {
        self.poll_log(within, |text| {
            let found: Vec<String> = text
                .lines()
                .filter(|l| l.contains(needle))
                .map(str::to_owned)
                .collect();
            (found.len() >= n).then_some(found)
        })
    }

    /// Waits until it logged a "listening on" line for every role in `roles` and
    /// returns all its listeners; panics with the log tail if it exits first or
    /// `within` passes.
    pub fn wait_listening(&self, roles: &[&str], within: Duration) -> Listening {
        let found = self.poll_log(within, |text| {
            let l = Listening::parse(text);
            roles.iter().all(|r| l.has(r)).then_some(l)
        });
        found
            .unwrap_or_else(|why| panic!("{} did not log listening on {roles:?}: {why}", self.name))
    }

    /// Polls the log with `check` until it returns `Some`; `Err` says why not (exit or
    /// timeout, with the log tail).
    fn poll_log<T>(
        &self,
        within: Duration,
        mut check: impl FnMut(&str) -> Option<T>,
    ) -> Result<T, String> {
        let deadline = Instant::now() + within;
        loop {
            if let Some(v) = check(&lock(&self.log.text)) {
                return Ok(v);
            }
            if let Some(status) = self.exited() {
                self.drain(Duration::from_secs(2));
                if let Some(v) = check(&lock(&self.log.text)) {
                    return Ok(v);
                }
                return Err(format!("it exited ({status})\n{}", self.log_tail(40)));
            }
            if Instant::now() >= deadline {
                return Err(format!("not within {within:?}\n{}", self.log_tail(40)));
            }
            std::thread::sleep(POLL);
        }
    }

    /// Waits up to `within` for the output readers to reach the end of the output.
    fn drain(&self, within: Duration) {
        let deadline = Instant::now() + within;
        while self.log.open.load(Ordering::SeqCst) > 0 && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    /// Waits up to `within` for it to exit by itself; its status, with all its output
    /// read, or `None` if it still runs.
    pub fn wait_exit(&self, within: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + within;
        loop {
            if let Some(status) = self.exited() {
                self.drain(Duration::from_secs(5));
                return Some(status);
            }
            if Instant::now() >= deadline {
                return None;
            }
            std::thread::sleep(POLL);
        }
    }

    /// Sends `signal` (`libc::SIGHUP`, …) if it still runs.
    pub fn signal(&self, signal: i32) {
        let child = lock(&self.child);
        let Ok(pid) = libc::pid_t::try_from(child.id()) else {
            return;
        };
        // Not reaped yet (we hold the lock), so the PID is still ours.
        // SAFETY: kill(2) on our own child.
        unsafe {
            libc::kill(pid, signal);
        }
    }

    /// SIGTERM, then SIGKILL if it has not exited within 10 s.
    pub fn terminate(&self) {
        self.signal(libc::SIGTERM);
        if self.wait_exit(Duration::from_secs(10)).is_none() {
            self.kill();
        }
    }

    /// SIGKILL and reap.
    pub fn kill(&self) {
        let mut child = lock(&self.child);
        let _ = child.kill();
        let _ = child.wait();
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Whether the process `pid` runs (a zombie counts as gone).
pub fn process_alive(pid: u32) -> bool {
    crate::process::proc_start_time(pid).is_some()
}

/// Open file descriptors of process `pid` (0 if it is gone).
pub fn fd_count(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .map(|d| d.count())
        .unwrap_or(0)
}

/// Resident memory of process `pid` in KiB, if it runs.
pub fn rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sh(script: &str) -> Spawn {
        let mut cmd = Command::new("sh");
        cmd.args(["-c", script]);
        Spawn::new("sh", cmd)
    }

    #[test]
    fn waits_for_lines_on_stdout_and_stderr_and_parses_listeners() {
        let dir = tempfile::tempdir().unwrap();
        let p = sh("echo 'x listening on users https://127.0.0.1:7'; \
                    printf '\\033[32mINFO\\033[0m listening on api http://127.0.0.1:8\\n' >&2; \
                    sleep 30")
        .log_file(dir.path().join("log"))
        .start();
        let l = p.wait_listening(&["users", "api"], Duration::from_secs(10));
        assert_eq!(l.addr("users").port(), 7);
        assert_eq!(l.addr("api").port(), 8);
        assert_eq!(
            p.wait_line("INFO listening", Duration::from_secs(1)),
            "INFO listening on api http://127.0.0.1:8"
        );
        assert!(p.alive());
        let pid = p.pid();
        assert!(process_alive(pid));
        assert!(fd_count(pid) >= 3 && rss_kib(pid).is_some());
        drop(p);
        assert!(!process_alive(pid));
        let file = std::fs::read_to_string(dir.path().join("log")).unwrap();
        assert!(file.contains("listening on users"), "{file}");
    }

    #[test]
    fn an_early_exit_fails_the_wait_with_the_log_tail() {
        let p = sh("echo starting; echo oops >&2; exit 3").start();
        let err =
            std::panic::catch_unwind(|| p.wait_line("ready", Duration::from_secs(10))).unwrap_err();
        let msg = err.downcast_ref::<String>().unwrap();
        assert!(msg.contains("exited") && msg.contains("oops"), "{msg}");
        assert_eq!(p.wait_exit(Duration::ZERO).and_then(|s| s.code()), Some(3));
        assert_eq!(
            p.find_line("starting", Duration::ZERO).as_deref(),
            Some("starting")
        );
    }

    #[test]
    fn terminate_and_signals() {
        let p = sh("trap 'echo got hup' HUP; echo up; while :; do sleep 0.05; done").start();
        p.wait_line("up", Duration::from_secs(10));
        p.signal(libc::SIGHUP);
        p.wait_line("got hup", Duration::from_secs(10));
        p.terminate();
        assert!(!p.alive());
        assert!(p.find_line("never", Duration::from_millis(50)).is_none());
    }
}
