//! Body types shared by the stub and the agent: one boxed body type for every
//! hop, a body fed by a channel (the byte pipe of an upgraded stream), and a
//! wrapper that counts bytes and releases a guard when the body is dropped.

use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body_util::{BodyExt, Empty, Full, combinators::BoxBody};
use hyper::body::{Body, Frame, SizeHint};
use tokio::sync::mpsc;

/// Error type carried by every body in the tunnel.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// The one body type requests and responses carry on every hop.
pub type TunnelBody = BoxBody<Bytes, BoxError>;

/// An empty body.
pub fn empty() -> TunnelBody {
    Empty::new().map_err(|e| match e {}).boxed()
}

/// A body holding `bytes`.
pub fn full(bytes: impl Into<Bytes>) -> TunnelBody {
    Full::new(bytes.into()).map_err(|e| match e {}).boxed()
}

/// Boxes any body whose error converts into [`BoxError`].
pub fn boxed<B>(body: B) -> TunnelBody
where
    B: Body<Data = Bytes> + Send + Sync + 'static,
    B::Error: Into<BoxError>,
{
    body.map_err(Into::into).boxed()
}

/// A body whose data arrives on a bounded channel: the write half of a byte pipe.
///
/// The channel holds at most a few chunks, so a slow peer pushes back on the
/// producer; dropping the sender ends the body (END_STREAM on HTTP/2).
pub struct ChannelBody {
    rx: mpsc::Receiver<Bytes>,
}

impl ChannelBody {
    /// A body and the sender that feeds it, holding up to `depth` chunks.
    pub fn new(depth: usize) -> (mpsc::Sender<Bytes>, ChannelBody) {
        let (tx, rx) = mpsc::channel(depth);
        (tx, ChannelBody { rx })
    }
}

impl Body for ChannelBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        self.rx.poll_recv(cx).map(|o| o.map(|b| Ok(Frame::data(b))))
    }
}

/// Wraps a body: calls `on_data` with the size of every data frame and holds
/// `guard` until the body ends or is dropped, whichever comes first.
///
/// The guard is how open streams are counted and freed on every path: a stream is
/// open exactly as long as its response body exists. `on_data` is stored inline (no
/// box, no dynamic call per frame); a proxy needs one `Tracked` per body, holding
/// everything that must live as long as the body in `guard` (a tuple of guards is a
/// guard).
pub struct Tracked<B, G, F> {
    inner: B,
    guard: Option<G>,
    on_data: F,
}

impl<B, G, F: Fn(usize)> Tracked<B, G, F> {
    /// Wraps `inner`.
    pub fn new(inner: B, guard: G, on_data: F) -> Self {
        Tracked {
            inner,
            guard: Some(guard),
            on_data,
        }
    }
}

impl<B, G, F> Body for Tracked<B, G, F>
where
    B: Body<Data = Bytes> + Unpin,
    G: Unpin,
    F: Fn(usize) + Unpin,
{
    type Data = Bytes;
    type Error = B::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, B::Error>>> {
        let this = &mut *self;
        let polled = Pin::new(&mut this.inner).poll_frame(cx);
        match &polled {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(data) = frame.data_ref() {
                    (this.on_data)(data.len());
                }
            }
            Poll::Ready(None) | Poll::Ready(Some(Err(_))) => {
                this.guard = None;
            }
            Poll::Pending => {}
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// A body whose first frame (or error) was already read: `first`, then the rest of
/// `inner`. Lets a proxy send response headers together with the first data.
pub struct Prefetched<B: Body> {
    first: Option<Result<Frame<Bytes>, B::Error>>,
    inner: B,
}

impl<B: Body<Data = Bytes> + Unpin> Prefetched<B> {
    /// Reads the first frame of `inner` (none if it has already ended).
    pub async fn read(mut inner: B) -> Self {
        let first = if inner.is_end_stream() {
            None
        } else {
            inner.frame().await
        };
        Prefetched { first, inner }
    }
}

impl<B> Body for Prefetched<B>
where
    B: Body<Data = Bytes> + Unpin,
    B::Error: Unpin,
{
    type Data = Bytes;
    type Error = B::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, B::Error>>> {
        match self.first.take() {
            Some(f) => Poll::Ready(Some(f)),
            None => Pin::new(&mut self.inner).poll_frame(cx),
        }
    }

    fn is_end_stream(&self) -> bool {
        self.first.is_none() && self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        let rest = self.inner.size_hint();
        let held = match &self.first {
            Some(Ok(f)) => f.data_ref().map_or(0, |d| d.len() as u64),
            _ => 0,
        };
        let mut hint = SizeHint::new();
        hint.set_lower(rest.lower() + held);
        if let Some(upper) = rest.upper() {
            hint.set_upper(upper + held);
        }
        hint
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};

    struct Guard(Arc<AtomicUsize>);
    impl Drop for Guard {
        fn drop(&mut self) {
            self.0.fetch_sub(1, Ordering::SeqCst);
        }
    }

    #[tokio::test]
    async fn tracked_counts_bytes_and_releases_guard_at_end() {
        let open = Arc::new(AtomicUsize::new(1));
        let bytes = Arc::new(AtomicUsize::new(0));
        let b2 = bytes.clone();
        let body = Tracked::new(full("hello"), Guard(open.clone()), move |n| {
            b2.fetch_add(n, Ordering::SeqCst);
        });
        let collected = body.collect().await.unwrap().to_bytes();
        assert_eq!(&collected[..], b"hello");
        assert_eq!(bytes.load(Ordering::SeqCst), 5);
        assert_eq!(open.load(Ordering::SeqCst), 0);
    }

    #[tokio::test]
    async fn tracked_releases_guard_when_dropped_early() {
        let open = Arc::new(AtomicUsize::new(1));
        let (_tx, ch) = ChannelBody::new(1);
        let body = Tracked::new(ch, Guard(open.clone()), |_| {});
        drop(body);
        assert_eq!(open.load(Ordering::SeqCst), 0);
    }

    #[tokio::test]
    async fn tracked_holds_every_guard_of_a_tuple_until_the_body_goes() {
        // The agent's one wrapper holds the open-stream count and the connection slot.
        let open = Arc::new(AtomicUsize::new(2));
        let bytes = Arc::new(AtomicUsize::new(0));
        let b2 = bytes.clone();
        let (tx, ch) = ChannelBody::new(2);
        let guards = (Guard(open.clone()), Some(Guard(open.clone())));
        let mut body = Tracked::new(ch, guards, move |n| {
            b2.fetch_add(n, Ordering::SeqCst);
        });
        tx.send(Bytes::from_static(b"abc")).await.unwrap();
        let first = body.frame().await.unwrap().unwrap();
        assert_eq!(first.data_ref().map(|d| d.len()), Some(3));
        assert_eq!(bytes.load(Ordering::SeqCst), 3);
        assert_eq!(
            open.load(Ordering::SeqCst),
            2,
            "held while the body is open"
        );
        // Cancelled mid-body (the stub reset the stream): both are released.
        drop(body);
        assert_eq!(open.load(Ordering::SeqCst), 0);
    }

    #[tokio::test]
    async fn prefetched_replays_the_first_frame_then_the_rest() {
        let (tx, ch) = ChannelBody::new(4);
        tx.send(Bytes::from_static(b"ab")).await.unwrap();
        tx.send(Bytes::from_static(b"cd")).await.unwrap();
        drop(tx);
        let body = Prefetched::read(ch).await;
        assert!(!body.is_end_stream());
        let all = body.collect().await.unwrap().to_bytes();
        assert_eq!(&all[..], b"abcd");
        // An empty body stays empty and reports its end without being polled.
        let body = Prefetched::read(empty()).await;
        assert!(body.is_end_stream());
        let hint = Prefetched::read(full("xyz")).await.size_hint();
        assert_eq!(hint.exact(), Some(3));
    }

    #[tokio::test]
    async fn channel_body_ends_when_sender_drops() {
        let (tx, body) = ChannelBody::new(2);
        tx.send(Bytes::from_static(b"ab")).await.unwrap();
        tx.send(Bytes::from_static(b"cd")).await.unwrap();
        drop(tx);
        let all = body.collect().await.unwrap().to_bytes();
        assert_eq!(&all[..], b"abcd");
    }
}
