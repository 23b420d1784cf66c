//! A TCP echo beacon (`causeway probe beacon`): what a client network runs so probers
//! can time an application-level round trip to it.

use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::ProbeError;

/// Most bytes echoed per connection (a probe sends one).
const MAX_ECHO: usize = 64 << 10;
/// A connection idle this long is closed.
const IDLE: Duration = Duration::from_secs(10);

/// Echoes what each connection sends (up to 64 KiB, 10 s idle) until `shutdown`.
pub async fn serve(listen: SocketAddr, shutdown: CancellationToken) -> Result<(), ProbeError> {
    let l = TcpListener::bind(listen)
        .await
        .map_err(|e| ProbeError::Bind(listen, e))?;
    let addr = l.local_addr().map_err(|e| ProbeError::Bind(listen, e))?;
    info!("listening on beacon tcp://{addr}");
    loop {
        let (mut c, _) = tokio::select! {
            () = shutdown.cancelled() => return Ok(()),
            r = l.accept() => match r {
                Ok(c) => c,
                Err(e) => {
                    warn!(error = %e, "beacon accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        tokio::spawn(async move {
            let _ = c.set_nodelay(true);
            let mut buf = [0u8; 1024];
            let mut total = 0;
            while total < MAX_ECHO {
                let n = match tokio::time::timeout(IDLE, c.read(&mut buf)).await {
                    Ok(Ok(n)) if n > 0 => n,
                    _ => break,
                };
                total += n;
                if c.write_all(&buf[..n]).await.is_err() {
                    break;
                }
            }
        });
    }
}
