//! Running commands from tests: with input on stdin, expecting success or failure,
//! and failing clearly when a tool the test needs is not installed.

use std::io::Write;
use std::process::{Command, Output, Stdio};

/// Runs `cmd` (e.g. `kubectl apply -f -`) with `input` on its standard input and
/// returns its output; spawning or writing failures are errors, the exit code is
/// the caller's to check.
pub fn run_with_stdin(mut cmd: Command, input: &[u8]) -> std::io::Result<Output> {
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()?;
    if let Some(mut stdin) = child.stdin.take() {
        stdin.write_all(input)?;
    }
    child.wait_with_output()
}

/// Runs `cmd`; panics if it cannot start.
pub fn run(cmd: &mut Command) -> Output {
    cmd.output()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"))
}

/// Runs `cmd`, which must succeed; returns its stdout. Panics with both outputs if
/// it fails.
pub fn run_ok(cmd: &mut Command) -> String {
    let out = run(cmd);
    assert!(
        out.status.success(),
        "{cmd:?} failed ({}):\nstdout: {}\nstderr: {}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Runs `cmd`, which must fail; returns its stderr.
pub fn run_fails(cmd: &mut Command) -> String {
    let out = run(cmd);
    assert!(
        !out.status.success(),
        "{cmd:?} should have failed:\nstdout: {}",
        String::from_utf8_lossy(&out.stdout)
    );
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// Whether `bin` is on `PATH` (or in /usr/sbin, /sbin, where Debian puts daemons).
pub fn on_path(bin: &str) -> bool {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/sbin".into(), "/sbin".into()])
        .any(|d| d.join(bin).is_file())
}

/// Fails the test, naming the Debian packages to install, unless every `(binary,
/// package)` is on `PATH`. Tests never skip for a missing tool.
pub fn require_tools(tools: &[(&str, &str)]) {
    let missing: Vec<&str> = tools
        .iter()
        .filter(|(bin, _)| !on_path(bin))
        .map(|(_, pkg)| *pkg)
        .collect();
    assert!(
        missing.is_empty(),
        "missing tools for this test; install them: apt-get install -y {}",
        missing.join(" ")
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stdin_reaches_the_command() {
        let out = run_with_stdin(Command::new("cat"), b"manifest").unwrap();
        assert!(out.status.success());
        assert_eq!(out.stdout, b"manifest");
    }

    #[test]
    fn success_and_failure_are_checked() {
        assert_eq!(run_ok(Command::new("echo").arg("hi")), "hi\n");
        let err = run_fails(Command::new("sh").args(["-c", "echo bad >&2; exit 1"]));
        assert_eq!(err, "bad\n");
        assert!(std::panic::catch_unwind(|| run_ok(&mut Command::new("false"))).is_err());
        assert!(std::panic::catch_unwind(|| run_fails(&mut Command::new("true"))).is_err());
    }

    #[test]
    fn tools_are_found_or_named() {
        assert!(on_path("sh"));
        require_tools(&[("sh", "dash")]);
        let err =
            std::panic::catch_unwind(|| require_tools(&[("no-such-tool-x", "pkg-x")])).unwrap_err();
        let msg = err.downcast_ref::<String>().unwrap();
        assert!(msg.contains("apt-get install -y pkg-x"), "{msg}");
    }
}
