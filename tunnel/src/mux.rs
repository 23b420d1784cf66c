//! Sessions: many streams multiplexed over one agent-dialled TLS connection.
//!
//! The multiplexer is HTTP/2 with the roles reversed (see [`crate::protocol`]): the
//! stub drives a [`Session`] as an HTTP/2 client, the agent [`serve`]s it. HTTP/2
//! gives each stream its own flow-control window ([`crate::protocol::STREAM_WINDOW`]),
//! so a stalled `logs -f` reader fills only its own window and never the others'.
//!
//! Freeing streams: a stream lives as long as its request future or response body.
//! Dropping either side sends `RST_STREAM` to the peer, which drops its half (the
//! agent's hyper server cancels the handler future, which drops the API-server
//! request); a session that dies (`GOAWAY`, TCP reset, missed keep-alive pings)
//! fails every stream on it at once. So each side forgets exactly the streams the
//! peer no longer knows, without a separate garbage collector.

pub mod session;

pub use session::{InFlight, KEEPALIVE_INTERVAL, KEEPALIVE_TIMEOUT, Session, SessionConnection};
