//! One way for every long-running command to stop: SIGINT (Ctrl-C) or SIGTERM.

use tokio_util::sync::CancellationToken;

/// A token cancelled on the first SIGINT or SIGTERM. Long-running commands hand it to
/// their part's `run(…, shutdown)`, which then stops accepting work and returns.
pub fn shutdown_on_signal() -> CancellationToken {
    let token = CancellationToken::new();
    let cancel = token.clone();
    tokio::spawn(async move {
        wait_for_signal().await;
        tracing::info!("signal received: shutting down");
        cancel.cancel();
    });
    token
}

/// Waits for SIGINT or SIGTERM (SIGINT only, if SIGTERM cannot be watched).
pub async fn wait_for_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    match signal(SignalKind::terminate()) {
        Ok(mut term) => {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = term.recv() => {}
            }
        }
        Err(_) => {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}
