//! The data plane between processes of a job: one TCP connection per pair of workers, carrying
//! many logical channels, each the remote form of a local channel between two tasks.
//!
//! - [`frame`]: the wire format (length-prefixed frames) and a bounded frame reader.
//! - [`handshake`]: mutual HMAC-SHA256 authentication on the job secret, then a hello
//!   (identity, build fingerprint, config hash).
//! - [`mux`]: a [`Connection`] (dialed with [`connect`] or accepted by a [`Listener`]), its
//!   writer and reader threads, heartbeats, failure.
//! - [`link`]: what those threads and the channels' ends share: credits (receivers grant one
//!   per batch of room, as in Flink), inboxes, counters.
//! - [`remote`]: [`RemoteOutput`] and [`RemoteInput`], the runtime's [`Output`] and [`Input`]
//!   over a connection, waking their tasks from the socket threads through the executor's
//!   [`RemoteWaker`].
//!
//! Not here: which channels exist and which ids they get (deployment), who connects to whom
//! (the coordinator), the coordinator's protocol (carried as opaque control frames).
//!
//! [`Output`]: crate::runtime::message::Output
//! [`Input`]: crate::runtime::message::Input
//! [`RemoteWaker`]: crate::runtime::executor::RemoteWaker

use std::time::Duration;

use crate::error::{Error, Result};

pub(crate) mod frame;
pub(crate) mod handshake;
pub(crate) mod link;
pub(crate) mod mux;
pub(crate) mod remote;

#[cfg(test)]
pub(crate) mod tests;

pub(crate) use handshake::{generate_secret_hex, Hello, JobSecret};
#[cfg(test)]
pub(crate) use link::ChannelStats;
#[cfg(test)]
pub(crate) use mux::Control;
pub(crate) use mux::{connect, Connection, Listener};
pub(crate) use remote::{RemoteInput, RemoteOutput};

/// The largest frame payload the transport can be configured to accept.
pub(crate) const MAX_FRAME_LIMIT: usize = 1 << 30;

/// Settings of every connection of a process.
#[derive(Clone, Debug)]
pub(crate) struct TransportConfig {
    /// The largest frame payload sent or accepted (default 64 MiB, at most
    /// [`MAX_FRAME_LIMIT`]); a batch that encodes larger is an error.
    pub max_frame_bytes: usize,
    /// No frame from a peer for this long fails its connection (`runtime.heartbeat_ms`, default
    /// 3 s); an idle connection sends a heartbeat after a quarter of it.
    pub heartbeat_timeout: Duration,
    /// The deadline of the handshake (default 5 s).
    pub handshake_timeout: Duration,
    /// The most credits one channel may hold: the largest input capacity (default 1024).
    pub max_credits: u32,
    /// The most logical channels one connection carries in each direction (default 65 536).
    pub max_channels: usize,
    /// Control messages that may wait to be sent, and to be read (default 256).
    pub control_queue: usize,
}

impl Default for TransportConfig {
    fn default() -> Self {
        TransportConfig {
            max_frame_bytes: 64 << 20,
            heartbeat_timeout: Duration::from_millis(3000),
            handshake_timeout: Duration::from_secs(5),
            max_credits: 1024,
            max_channels: 1 << 16,
            control_queue: 256,
        }
    }
}

impl TransportConfig {
    /// The defaults, with the heartbeat timeout of `runtime.heartbeat_ms`.
    pub(crate) fn with_heartbeat_ms(ms: u64) -> Self {
        TransportConfig {
            heartbeat_timeout: Duration::from_millis(ms),
            ..TransportConfig::default()
        }
    }

    /// Refuses settings the transport cannot work with.
    pub(crate) fn check(&self) -> Result<()> {
        let bad = |message: String| Err(Error::config("the transport settings", message));
        if !(64..=MAX_FRAME_LIMIT).contains(&self.max_frame_bytes) {
            return bad(format!(
                "a frame limit of {} bytes is not within 64..={MAX_FRAME_LIMIT}",
                self.max_frame_bytes
            ));
        }
        if self.heartbeat_timeout < Duration::from_millis(4) {
            return bad(format!(
                "a heartbeat timeout of {:?} is too short",
                self.heartbeat_timeout
            ));
        }
        if self.handshake_timeout.is_zero() {
            return bad("the handshake timeout is zero".into());
        }
        if self.max_credits == 0 || self.max_channels == 0 || self.control_queue == 0 {
            return bad("max_credits, max_channels and control_queue must be at least 1".into());
        }
        Ok(())
    }
}

/// What every connection of a process needs: the job secret, what this process says in its
/// hello, and the settings.
#[derive(Clone, Debug)]
pub(crate) struct Endpoint {
    /// The secret both ends must know.
    pub secret: JobSecret,
    /// This process's identity, build fingerprint and config hash.
    pub hello: Hello,
    /// The connections' settings.
    pub config: TransportConfig,
}
