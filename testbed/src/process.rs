//! Starting, watching and stopping the testbed's child processes.
//!
//! Attached children (tests) get `PR_SET_PDEATHSIG = SIGKILL`, so they die when the test
//! process dies. The kernel sends that signal when the *thread* that forked the child
//! exits, so attached children are forked from one spawner thread that lives as long as
//! the process. Detached children (`causeway testbed up`) start a new session (`setsid`)
//! and are stopped later by PID, checked against their recorded start time.

use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::sync::mpsc;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::TestbedError;
use crate::files::tail;

/// A process the testbed started, as recorded in `state.json`.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct ProcRecord {
    /// Cluster it belongs to.
    pub cluster: String,
    /// Component (`etcd`, `kube-apiserver`, …).
    pub component: String,
    /// Process ID.
    pub pid: u32,
    /// Start time in clock ticks since boot (`/proc/PID/stat` field 22), so a reused PID
    /// is never mistaken for ours.
    pub start_time: u64,
    /// Its log file.
    pub log: PathBuf,
}

impl ProcRecord {
    /// Whether this very process is still running (not a zombie, not a reused PID).
    pub fn alive(&self) -> bool {
        proc_start_time(self.pid).is_some_and(|t| t == self.start_time)
    }
}

/// A running child with its record.
#[derive(Debug)]
pub(crate) struct Proc {
    pub record: ProcRecord,
    pub component: &'static str,
    child: Child,
}

impl Proc {
    /// `Err(Exited)` with the log tail if the process has exited.
    pub fn check_running(&mut self) -> Result<(), TestbedError> {
        match self.child.try_wait() {
            Ok(None) => Ok(()),
            Ok(Some(status)) => Err(TestbedError::Exited {
                cluster: self.record.cluster.clone(),
                component: self.component,
                status: status.to_string(),
                log: self.record.log.clone(),
                tail: tail(&self.record.log, 15),
            }),
            Err(e) => Err(TestbedError::Exited {
                cluster: self.record.cluster.clone(),
                component: self.component,
                status: format!("unknown: {e}"),
                log: self.record.log.clone(),
                tail: tail(&self.record.log, 15),
            }),
        }
    }

    /// SIGKILL and reap, without waiting long: for drop paths.
    pub fn kill_now(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Lets the process run on without us (detached testbeds).
    pub fn forget(self) {}
}

/// How children relate to this process.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Lifetime {
    /// Killed with this process (PDEATHSIG) and on drop.
    Attached,
    /// Own session; outlives this process.
    Detached,
}

/// One process to start.
pub(crate) struct Launch<'a> {
    pub cluster: &'a str,
    pub component: &'static str,
    pub binary: &'a Path,
    pub args: Vec<String>,
    pub env: Vec<(&'static str, String)>,
    pub log: PathBuf,
}

type SpawnJob = (
    Command,
    tokio::sync::oneshot::Sender<std::io::Result<Child>>,
);

/// The long-lived thread that forks attached children (see the module doc).
fn spawner() -> &'static mpsc::Sender<SpawnJob> {
    static SPAWNER: OnceLock<mpsc::Sender<SpawnJob>> = OnceLock::new();
    SPAWNER.get_or_init(|| {
        let (tx, rx) = mpsc::channel::<SpawnJob>();
        let spawned = std::thread::Builder::new()
            .name("causeway-testbed-spawner".into())
            .spawn(move || {
                for (mut cmd, reply) in rx {
                    let _ = reply.send(cmd.spawn());
                }
            });
        if let Err(e) = spawned {
            tracing::error!(error = %e, "cannot start the testbed spawner thread");
        }
        tx
    })
}

/// Makes the child of `cmd` get SIGKILL when this process dies (PDEATHSIG; fork it
/// from [`spawner`], see the module doc).
fn die_with_this_process(cmd: &mut Command) {
    let parent = std::process::id();
    // SAFETY: only async-signal-safe libc calls between fork and exec.
    unsafe {
        cmd.pre_exec(move || {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            // The parent may have died before prctl: then nobody will kill us.
            if libc::getppid() as u32 != parent {
                libc::_exit(1);
            }
            Ok(())
        });
    }
}

/// Spawns `cmd` as an attached child (it dies with this process) from synchronous or
/// async code; for the test kit's processes.
pub(crate) fn spawn_attached(mut cmd: Command) -> std::io::Result<Child> {
    die_with_this_process(&mut cmd);
    let (tx, rx) = tokio::sync::oneshot::channel();
    let gone = || std::io::Error::other("spawner thread is gone");
    spawner().send((cmd, tx)).map_err(|_| gone())?;
    futures::executor::block_on(rx).map_err(|_| gone())?
}

/// Starts one process with its output appended to its log file.
pub(crate) async fn launch(launch: Launch<'_>, lifetime: Lifetime) -> Result<Proc, TestbedError> {
    let spawn_err = |source| TestbedError::Spawn {
        cluster: launch.cluster.to_owned(),
        component: launch.component,
        binary: launch.binary.to_path_buf(),
        source,
    };
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&launch.log)
        .map_err(TestbedError::io("open log", &launch.log))?;
    let log2 = log
        .try_clone()
        .map_err(TestbedError::io("open log", &launch.log))?;
    let mut cmd = Command::new(launch.binary);
    cmd.args(&launch.args)
        .envs(launch.env.iter().map(|(k, v)| (k, v)))
        .stdin(Stdio::null())
        .stdout(log)
        .stderr(log2);
    match lifetime {
        Lifetime::Attached => die_with_this_process(&mut cmd),
        Lifetime::Detached => {
            // SAFETY: setsid is async-signal-safe.
            unsafe {
                cmd.pre_exec(|| {
                    if libc::setsid() < 0 {
                        return Err(std::io::Error::last_os_error());
                    }
                    Ok(())
                });
            }
        }
    }
    let child = match lifetime {
        Lifetime::Attached => {
            let (tx, rx) = tokio::sync::oneshot::channel();
            spawner()
                .send((cmd, tx))
                .map_err(|_| spawn_err(std::io::Error::other("spawner thread is gone")))?;
            rx.await
                .map_err(|_| spawn_err(std::io::Error::other("spawner thread is gone")))?
                .map_err(spawn_err)?
        }
        Lifetime::Detached => cmd.spawn().map_err(spawn_err)?,
    };
    let pid = child.id();
    let start_time = proc_start_time(pid).unwrap_or(0);
    tracing::debug!(
        cluster = launch.cluster,
        component = launch.component,
        pid,
        "started"
    );
    Ok(Proc {
        record: ProcRecord {
            cluster: launch.cluster.to_owned(),
            component: launch.component.to_owned(),
            pid,
            start_time,
            log: launch.log,
        },
        component: launch.component,
        child,
    })
}

/// Start time of a live, non-zombie process from `/proc/PID/stat`.
pub(crate) fn proc_start_time(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) may hold spaces and parens: parse after the last ')'.
    let rest = &stat[stat.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // rest starts at field 3 (state); starttime is field 22.
    if matches!(fields.first(), Some(&"Z") | Some(&"X")) {
        return None;
    }
    fields.get(19)?.parse().ok()
}

/// Stops recorded processes: SIGTERM, then SIGKILL after `grace`. Only processes whose
/// start time still matches are signalled. Clients go first, then kube-apiservers, then
/// etcd: an apiserver whose etcd is gone takes seconds longer to shut down. Returns the
/// records still alive at the end.
pub(crate) async fn stop_records(records: &[ProcRecord], grace: Duration) -> Vec<ProcRecord> {
    let tier = |r: &ProcRecord| match r.component.as_str() {
        "etcd" => 2,
        "kube-apiserver" => 1,
        _ => 0,
    };
    for t in 0..=2 {
        let group: Vec<ProcRecord> = records.iter().filter(|r| tier(r) == t).cloned().collect();
        stop_group(&group, grace).await;
    }
    records.iter().filter(|r| r.alive()).cloned().collect()
}

async fn stop_group(records: &[ProcRecord], grace: Duration) {
    signal_all(records, libc::SIGTERM);
    let deadline = tokio::time::Instant::now() + grace;
    while tokio::time::Instant::now() < deadline && records.iter().any(ProcRecord::alive) {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    if records.iter().any(ProcRecord::alive) {
        tracing::warn!("processes ignored SIGTERM for {grace:?}; sending SIGKILL");
        signal_all(records, libc::SIGKILL);
        let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
        while tokio::time::Instant::now() < deadline && records.iter().any(ProcRecord::alive) {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

fn signal_all(records: &[ProcRecord], signal: libc::c_int) {
    for r in records.iter().filter(|r| r.alive()) {
        let Ok(pid) = libc::pid_t::try_from(r.pid) else {
            continue;
        };
        // SAFETY: plain kill(2) on a PID whose identity we just checked.
        unsafe {
            libc::kill(pid, signal);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_own_start_time() {
        assert!(proc_start_time(std::process::id()).is_some());
        assert!(proc_start_time(u32::MAX).is_none());
    }

    #[tokio::test]
    async fn attached_children_stop_and_report_exit() {
        let dir = tempfile::tempdir().unwrap();
        let sleep = Launch {
            cluster: "a",
            component: "sleep",
            binary: Path::new("/bin/sleep"),
            args: vec!["30".into()],
            env: vec![],
            log: dir.path().join("sleep.log"),
        };
        let mut p = launch(sleep, Lifetime::Attached).await.unwrap();
        assert!(p.record.alive());
        p.check_running().unwrap();
        let left = stop_records(std::slice::from_ref(&p.record), Duration::from_secs(5)).await;
        assert!(left.is_empty());
        let err = p.check_running().unwrap_err().to_string();
        assert!(err.contains("sleep of cluster a exited"), "{err}");

        let fail = Launch {
            cluster: "a",
            component: "sh",
            binary: Path::new("/bin/sh"),
            args: vec!["-c".into(), "echo boom; exit 3".into()],
            env: vec![],
            log: dir.path().join("sh.log"),
        };
        let mut p = launch(fail, Lifetime::Attached).await.unwrap();
        let _ = p.child.wait();
        let err = p.check_running().unwrap_err().to_string();
        assert!(err.contains("boom") && err.contains('3'), "{err}");
    }
}
