//! Rise/fall hysteresis and the periodic check loop.

use std::future::Future;
use std::time::Duration;

use causeway_model::Health;
use tokio_util::sync::CancellationToken;

/// Consecutive-result counter with separate up (`rise`) and down (`fall`) thresholds.
///
/// Starts in `initial` (usually `Unknown`, which the policies treat as healthy).
/// `rise` consecutive successes make it `Healthy`; `fall` consecutive failures make
/// it `Unhealthy`. A single result against the streak resets the other counter, so a
/// flapping target does not flip on every probe.
#[derive(Debug, Clone)]
pub struct Hysteresis {
    rise: u32,
    fall: u32,
    state: Health,
    ok_streak: u32,
    fail_streak: u32,
}

impl Hysteresis {
    /// A counter in state `initial`.
    pub fn new(rise: u32, fall: u32, initial: Health) -> Self {
        Self {
            rise: rise.max(1),
            fall: fall.max(1),
            state: initial,
            ok_streak: 0,
            fail_streak: 0,
        }
    }

    /// Current state.
    pub fn state(&self) -> Health {
        self.state
    }

    /// Records one result; returns the new state on a transition.
    pub fn observe(&mut self, ok: bool) -> Option<Health> {
        if ok {
            self.fail_streak = 0;
            self.ok_streak = self.ok_streak.saturating_add(1);
            if self.state != Health::Healthy && self.ok_streak >= self.rise {
                self.state = Health::Healthy;
                return Some(Health::Healthy);
            }
        } else {
            self.ok_streak = 0;
            self.fail_streak = self.fail_streak.saturating_add(1);
            if self.state != Health::Unhealthy && self.fail_streak >= self.fall {
                self.state = Health::Unhealthy;
                return Some(Health::Unhealthy);
            }
        }
        None
    }
}

/// Runs `check` every `interval` (each bounded by `timeout`) until `shutdown`, and
/// calls `on_change` on every transition of `hysteresis`.
pub async fn run_checks<C, F, E>(
    interval: Duration,
    timeout: Duration,
    mut hysteresis: Hysteresis,
    mut check: C,
    mut on_change: impl FnMut(Health, Option<E>),
    shutdown: CancellationToken,
) where
    C: FnMut() -> F,
    F: Future<Output = Result<(), E>>,
{
    let mut ticker = tokio::time::interval(interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            () = shutdown.cancelled() => return,
            _ = ticker.tick() => {}
        }
        let result = tokio::select! {
            () = shutdown.cancelled() => return,
            r = tokio::time::timeout(timeout, check()) => r,
        };
        let (ok, err) = match result {
            Ok(Ok(())) => (true, None),
            Ok(Err(e)) => (false, Some(e)),
            Err(_) => (false, None),
        };
        if let Some(new) = hysteresis.observe(ok) {
            on_change(new, err);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};

    use super::*;

    #[test]
    fn separate_rise_and_fall() {
        let mut h = Hysteresis::new(2, 3, Health::Unknown);
        assert_eq!(h.observe(true), None);
        assert_eq!(h.observe(true), Some(Health::Healthy));
        assert_eq!(h.observe(false), None);
        assert_eq!(h.observe(false), None);
        assert_eq!(h.observe(true), None); // streak broken
        assert_eq!(h.observe(false), None);
        assert_eq!(h.observe(false), None);
        assert_eq!(h.observe(false), Some(Health::Unhealthy));
        assert_eq!(h.observe(false), None);
        assert_eq!(h.observe(true), None);
        assert_eq!(h.observe(true), Some(Health::Healthy));
    }

    #[tokio::test(start_paused = true)]
    async fn check_loop_flips_after_fall_intervals() {
        let up = Arc::new(AtomicBool::new(true));
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
        let token = CancellationToken::new();
        let probe_up = up.clone();
        let task = tokio::spawn(run_checks(
            Duration::from_secs(1),
            Duration::from_millis(500),
            Hysteresis::new(2, 3, Health::Unknown),
            move || {
                let up = probe_up.load(Ordering::SeqCst);
                async move { if up { Ok(()) } else { Err("down") } }
            },
            move |h, _e: Option<&str>| {
                let _ = tx.send((tokio::time::Instant::now(), h));
            },
            token.clone(),
        ));
        let start = tokio::time::Instant::now();
        let (t, h) = rx.recv().await.unwrap();
        assert_eq!(h, Health::Healthy);
        assert_eq!(t - start, Duration::from_secs(1)); // ticks at 0 s and 1 s
        up.store(false, Ordering::SeqCst);
        let down_at = tokio::time::Instant::now();
        let (t, h) = rx.recv().await.unwrap();
        assert_eq!(h, Health::Unhealthy);
        assert_eq!(t - down_at, Duration::from_secs(3)); // fall = 3 intervals
        up.store(true, Ordering::SeqCst);
        let up_at = tokio::time::Instant::now();
        let (t, h) = rx.recv().await.unwrap();
        assert_eq!(h, Health::Healthy);
        assert_eq!(t - up_at, Duration::from_secs(2)); // rise = 2 intervals
        token.cancel();
        task.await.unwrap();
    }

    #[tokio::test(start_paused = true)]
    async fn a_hanging_probe_counts_as_failure_after_timeout() {
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
        let token = CancellationToken::new();
        let task = tokio::spawn(run_checks(
            Duration::from_secs(1),
            Duration::from_millis(200),
            Hysteresis::new(1, 2, Health::Healthy),
            std::future::pending::<Result<(), ()>>,
            move |h, _| {
                let _ = tx.send((tokio::time::Instant::now(), h));
            },
            token.clone(),
        ));
        let start = tokio::time::Instant::now();
        let (t, h) = rx.recv().await.unwrap();
        assert_eq!(h, Health::Unhealthy);
        assert_eq!(t - start, Duration::from_millis(1200));
        token.cancel();
        task.await.unwrap();
    }
}
