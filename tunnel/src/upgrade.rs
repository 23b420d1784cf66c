//! Upgraded streams (exec, attach, port-forward over SPDY/3.1 or WebSocket).
//!
//! Only the agent talks HTTP/1.1 `Upgrade` to the API server, and it splices only
//! after a real `101 Switching Protocols` (see [`crate::protocol`]); redirects are
//! never followed. Between stub and agent an upgraded stream is one HTTP/2 stream:
//! the request body carries client→server bytes, the response body server→client
//! bytes, each under HTTP/2 flow control. [`pump`] moves bytes between such a pair of
//! bodies and a real upgraded connection, on both sides.

use bytes::{Bytes, BytesMut};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::mpsc;

/// Depth of the channel feeding an upgraded stream's outgoing body, in chunks.
pub const PIPE_DEPTH: usize = 4;

/// Size of one read from an upgraded connection.
const READ_CHUNK: usize = 32 * 1024;

/// Bytes moved by [`pump`].
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Pumped {
    /// From the tunnel stream into the connection.
    pub into_io: u64,
    /// From the connection into the tunnel stream.
    pub from_io: u64,
}

/// Why an upgraded stream ended abnormally.
#[derive(Debug, thiserror::Error)]
pub enum PumpError {
    /// Reading or writing the upgraded connection failed.
    #[error("upgraded connection: {0}")]
    Io(#[from] std::io::Error),
    /// The tunnel stream failed (reset, session lost).
    #[error("tunnel stream: {0}")]
    Stream(#[from] hyper::Error),
}

/// Why [`splice`] ended abnormally.
#[derive(Debug, thiserror::Error)]
pub enum SpliceError {
    /// The connection could not be taken over after the `101`.
    #[error("upgrade failed: {0}")]
    Upgrade(hyper::Error),
    /// The bytes stopped flowing abnormally.
    #[error(transparent)]
    Pump(#[from] PumpError),
}

/// Waits for the connection behind `on_upgrade` (resolved once a real `101` went out
/// or came in), then [`pump`]s it against the tunnel stream.
pub async fn splice(
    on_upgrade: hyper::upgrade::OnUpgrade,
    from_peer: Incoming,
    to_peer: mpsc::Sender<Bytes>,
) -> Result<Pumped, SpliceError> {
    let upgraded = on_upgrade.await.map_err(SpliceError::Upgrade)?;
    Ok(pump(hyper_util::rt::TokioIo::new(upgraded), from_peer, to_peer).await?)
}

/// Moves bytes both ways until both directions end, or either fails.
///
/// `from_peer` is written to `io`; what `io` yields is sent to `to_peer`. A clean end
/// of one direction half-closes (end of `from_peer` shuts down `io`'s write side;
/// EOF on `io` drops `to_peer`, ending that body) and the other goes on. An error in
/// either direction ends both: everything is dropped, which resets the stream.
pub async fn pump<IO>(
    io: IO,
    mut from_peer: Incoming,
    to_peer: mpsc::Sender<Bytes>,
) -> Result<Pumped, PumpError>
where
    IO: AsyncRead + AsyncWrite + Send,
{
    let (mut rd, mut wr) = tokio::io::split(io);
    let down = async {
        let mut n = 0u64;
        while let Some(frame) = from_peer.frame().await {
            if let Ok(data) = frame?.into_data() {
                n += data.len() as u64;
                wr.write_all(&data).await?;
                wr.flush().await?;
            }
        }
        wr.shutdown().await?;
        Ok::<u64, PumpError>(n)
    };
    let up = async move {
        let mut n = 0u64;
        let mut buf = BytesMut::with_capacity(READ_CHUNK);
        loop {
            buf.reserve(READ_CHUNK);
            let got = rd.read_buf(&mut buf).await?;
            if got == 0 {
                break;
            }
            n += got as u64;
            if to_peer.send(buf.split().freeze()).await.is_err() {
                // The tunnel side went away; nothing more to deliver.
                break;
            }
        }
        Ok::<u64, PumpError>(n)
    };
    tokio::pin!(down, up);
    let mut into_io = None;
    let mut from_io = None;
    while into_io.is_none() || from_io.is_none() {
        tokio::select! {
            r = &mut down, if into_io.is_none() => into_io = Some(r?),
            r = &mut up, if from_io.is_none() => from_io = Some(r?),
        }
    }
    Ok(Pumped {
        into_io: into_io.unwrap_or_default(),
        from_io: from_io.unwrap_or_default(),
    })
}
