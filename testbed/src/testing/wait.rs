//! Polling until something holds, with a failure message that says what was awaited,
//! for how long, and what was seen last.

use std::fmt::Display;
use std::time::{Duration, Instant};

/// What a polled check returns: `true`/`false`, `Some(value)`/`None`, or
/// `Ok(value)`/`Err(what was seen)`; the last `Err` goes into the failure message.
pub trait Outcome {
    /// What [`wait_for`] returns once the check holds.
    type Value;
    /// `Ok` when the check holds, else a description of what was seen.
    fn into_result(self) -> Result<Self::Value, String>;
}

impl Outcome for bool {
    type Value = ();
    fn into_result(self) -> Result<(), String> {
        if self { Ok(()) } else { Err("false".into()) }
    }
}

impl<T> Outcome for Option<T> {
    type Value = T;
    fn into_result(self) -> Result<T, String> {
        self.ok_or_else(|| "None".into())
    }
}

impl<T, E: Display> Outcome for Result<T, E> {
    type Value = T;
    fn into_result(self) -> Result<T, String> {
        self.map_err(|e| e.to_string())
    }
}

/// The panic message of a wait that ran out of time.
fn timed_out(what: &str, timeout: Duration, checks: u32, last: &str) -> String {
    format!("timed out after {timeout:?} ({checks} checks) waiting for {what}; last seen: {last}")
}

/// Calls `check` every `poll` until it holds and returns its value; panics naming
/// `what`, `timeout` and the last thing seen once `timeout` has passed. The check
/// runs at least once, and once more after a slow check that ends past the deadline.
pub fn wait_for<O: Outcome>(
    what: &str,
    timeout: Duration,
    poll: Duration,
    mut check: impl FnMut() -> O,
) -> O::Value {
    let start = Instant::now();
    let mut checks = 0;
    loop {
        checks += 1;
        match check().into_result() {
            Ok(v) => return v,
            Err(last) if start.elapsed() >= timeout => {
                panic!("{}", timed_out(what, timeout, checks, &last))
            }
            Err(_) => std::thread::sleep(poll),
        }
    }
}

/// [`wait_for`] for async tests, with an async check (`async || { … }`; a check that
/// only reads state is `|| std::future::ready(…)`): sleeps with `tokio::time::sleep`
/// between checks.
pub async fn wait_for_async<O: Outcome>(
    what: &str,
    timeout: Duration,
    poll: Duration,
    mut check: impl AsyncFnMut() -> O,
) -> O::Value {
    let start = tokio::time::Instant::now();
    let mut checks = 0;
    loop {
        checks += 1;
        match check().await.into_result() {
            Ok(v) => return v,
            Err(last) if start.elapsed() >= timeout => {
                panic!("{}", timed_out(what, timeout, checks, &last))
            }
            Err(_) => tokio::time::sleep(poll).await,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    #[test]
    fn returns_the_value_once_the_check_holds() {
        let mut n = 0;
        let got = wait_for("n to reach 3", Duration::from_secs(5), MS, || {
            n += 1;
            (n >= 3).then_some(n * 10)
        });
        assert_eq!(got, 30);
        wait_for("true", Duration::ZERO, MS, || true);
    }

    #[test]
    fn the_failure_names_what_how_long_and_the_last_observation() {
        let err = std::panic::catch_unwind(|| {
            let mut n = 0;
            wait_for("the answer", Duration::from_millis(30), MS, || {
                n += 1;
                Err::<(), _>(format!("got {n}"))
            })
        })
        .unwrap_err();
        let msg = err.downcast_ref::<String>().unwrap();
        assert!(msg.contains("waiting for the answer"), "{msg}");
        assert!(msg.contains("30ms"), "{msg}");
        assert!(msg.contains("last seen: got "), "{msg}");
    }

    #[tokio::test]
    async fn async_variant_polls_without_blocking() {
        let flag = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let f = flag.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(20)).await;
            f.store(true, std::sync::atomic::Ordering::SeqCst);
        });
        wait_for_async("the flag", Duration::from_secs(5), MS, || {
            std::future::ready(flag.load(std::sync::atomic::Ordering::SeqCst))
        })
        .await;
        // An async check that keeps state between calls.
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
        tokio::spawn(async move {
            for i in 0..3 {
                tx.send(i).unwrap();
            }
        });
        let got = wait_for_async(
            "the third message",
            Duration::from_secs(5),
            MS,
            async || rx.recv().await.filter(|i| *i == 2),
        )
        .await;
        assert_eq!(got, 2);
    }
}
