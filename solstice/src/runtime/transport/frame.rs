//! The wire format of a connection after its handshake: a stream of length-prefixed frames.
//!
//! A frame is a fixed 9-byte header — payload length (u32 LE), kind (one byte), logical
//! channel id (u32 LE) — and then the payload. What a payload means is up to its kind: a
//! codec-encoded batch, a checkpoint id, a credit count, a message, opaque control bytes. This
//! module reads and writes frames and checks them against the format (a known kind, a length
//! under the cap, the length a fixed-size kind needs); what a frame does to a channel (credits,
//! inboxes) is the multiplexer's business ([`super::mux`]).

use std::io::{ErrorKind, Read};

/// Length of a frame's header: payload length (4), kind (1), channel (4).
pub(crate) const HEADER_LEN: usize = 9;

/// The channel id of frames about the whole connection (heartbeats, a peer's fatal error).
pub(crate) const CONNECTION: u32 = u32::MAX;

/// What a frame carries.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) enum Kind {
    /// A batch of records, codec-encoded; sent only against a credit.
    Data,
    /// A checkpoint barrier: the checkpoint id, u64 LE.
    Barrier,
    /// End of stream on the channel; empty.
    End,
    /// Credits granted for the channel by its receiver: a count, u32 LE.
    Credit,
    /// Liveness, sent on an idle connection; empty, on [`CONNECTION`].
    Heartbeat,
    /// An error from the peer, UTF-8 text: about one channel, or about the connection (on
    /// [`CONNECTION`]), which then closes.
    Error,
    /// Opaque bytes for the protocol between coordinator and workers, built on top.
    Control,
}

impl Kind {
    /// Every kind, in wire order.
    pub(crate) const ALL: [Kind; 7] = [
        Kind::Data,
        Kind::Barrier,
        Kind::End,
        Kind::Credit,
        Kind::Heartbeat,
        Kind::Error,
        Kind::Control,
    ];

    /// The kind's byte on the wire.
    pub(crate) fn byte(self) -> u8 {
        match self {
            Kind::Data => 1,
            Kind::Barrier => 2,
            Kind::End => 3,
            Kind::Credit => 4,
            Kind::Heartbeat => 5,
            Kind::Error => 6,
            Kind::Control => 7,
        }
    }

    /// The kind of a byte read from the wire.
    pub(crate) fn from_byte(byte: u8) -> Option<Kind> {
        Kind::ALL.into_iter().find(|k| k.byte() == byte)
    }

    /// The payload length the kind requires, for kinds of a fixed size.
    pub(crate) fn fixed_len(self) -> Option<usize> {
        match self {
            Kind::Barrier => Some(8),
            Kind::Credit => Some(4),
            Kind::End | Kind::Heartbeat => Some(0),
            Kind::Data | Kind::Error | Kind::Control => None,
        }
    }
}

/// A frame's header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Header {
    /// What the frame carries.
    pub kind: Kind,
    /// The logical channel it belongs to ([`CONNECTION`] for the whole connection).
    pub channel: u32,
    /// Payload length in bytes.
    pub len: u32,
}

impl Header {
    /// The header's bytes on the wire.
    pub(crate) fn encode(&self) -> [u8; HEADER_LEN] {
        let mut out = [0u8; HEADER_LEN];
        out[..4].copy_from_slice(&self.len.to_le_bytes());
        out[4] = self.kind.byte();
        out[5..].copy_from_slice(&self.channel.to_le_bytes());
        out
    }

    /// Parses and checks a header read from the wire: a known kind, a payload of at most
    /// `max` bytes, the length a fixed-size kind requires.
    pub(crate) fn parse(bytes: &[u8; HEADER_LEN], max: usize) -> Result<Header, FrameError> {
        let len = u32::from_le_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]);
        let kind = Kind::from_byte(bytes[4]).ok_or(FrameError::UnknownKind(bytes[4]))?;
        let channel = u32::from_le_bytes([bytes[5], bytes[6], bytes[7], bytes[8]]);
        if len as usize > max {
            return Err(FrameError::TooLarge { kind, len, max });
        }
        if let Some(want) = kind.fixed_len() {
            if len as usize != want {
                return Err(FrameError::BadLength { kind, len, want });
            }
        }
        Ok(Header { kind, channel, len })
    }
}

/// Appends a whole frame to `out`. `payload` must be at most `u32::MAX` bytes (callers send
/// fixed-size payloads or check [`finish_frame`]'s limit).
pub(crate) fn put_frame(out: &mut Vec<u8>, kind: Kind, channel: u32, payload: &[u8]) {
    let len = u32::try_from(payload.len()).unwrap_or(u32::MAX);
    out.extend_from_slice(&Header { kind, channel, len }.encode());
    out.extend_from_slice(&payload[..len as usize]);
}

/// Starts a frame in `out` whose payload the caller appends next (e.g. an encoded batch, written
/// straight into the buffer that goes to the socket): reserves the header and returns where the
/// frame starts, for [`finish_frame`].
pub(crate) fn begin_frame(out: &mut Vec<u8>) -> usize {
    let start = out.len();
    out.extend_from_slice(&[0u8; HEADER_LEN]);
    start
}

/// Writes the header of the frame begun at `start` (see [`begin_frame`]), now that its payload
/// follows it. Fails when the payload is longer than `max`: the peer would refuse the frame.
pub(crate) fn finish_frame(
    out: &mut [u8],
    start: usize,
    kind: Kind,
    channel: u32,
    max: usize,
) -> Result<(), FrameError> {
    let payload = out.len().saturating_sub(start + HEADER_LEN);
    let len = match u32::try_from(payload) {
        Ok(len) if payload <= max => len,
        _ => {
            return Err(FrameError::TooLarge {
                kind,
                len: u32::try_from(payload).unwrap_or(u32::MAX),
                max,
            })
        }
    };
    out[start..start + HEADER_LEN].copy_from_slice(&Header { kind, channel, len }.encode());
    Ok(())
}

/// Why a frame could not be read.
#[derive(Debug)]
pub(crate) enum FrameError {
    /// The stream ended inside a frame.
    Truncated {
        /// Bytes of the header or payload that arrived.
        got: usize,
        /// Bytes that were due.
        want: usize,
    },
    /// A payload longer than the cap.
    TooLarge {
        /// The frame's kind.
        kind: Kind,
        /// Its announced length.
        len: u32,
        /// The cap.
        max: usize,
    },
    /// A kind byte this build does not know.
    UnknownKind(u8),
    /// A fixed-size kind with another length.
    BadLength {
        /// The frame's kind.
        kind: Kind,
        /// Its announced length.
        len: u32,
        /// The length the kind requires.
        want: usize,
    },
    /// Nothing arrived within the read timeout.
    TimedOut,
    /// The socket failed.
    Io(std::io::Error),
}

impl std::fmt::Display for FrameError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            FrameError::Truncated { got, want } => {
                write!(
                    f,
                    "truncated frame: the stream ended after {got} of {want} bytes"
                )
            }
            FrameError::TooLarge { kind, len, max } => write!(
                f,
                "oversized {kind:?} frame: {len} bytes, more than the limit of {max} bytes"
            ),
            FrameError::UnknownKind(byte) => write!(f, "unknown frame kind {byte}"),
            FrameError::BadLength { kind, len, want } => write!(
                f,
                "malformed {kind:?} frame: {len} payload bytes, the kind has {want}"
            ),
            FrameError::TimedOut => f.write_str("no data within the read timeout"),
            FrameError::Io(e) => write!(f, "read failed: {e}"),
        }
    }
}

fn io_error(e: std::io::Error) -> FrameError {
    match e.kind() {
        ErrorKind::WouldBlock | ErrorKind::TimedOut => FrameError::TimedOut,
        _ => FrameError::Io(e),
    }
}

/// Reads frames from a byte stream (give it a buffered one: headers are read 9 bytes at a time),
/// never allocating more than the cap for a payload, whatever a length on the wire says.
pub(crate) struct FrameReader<R> {
    inner: R,
    max: usize,
    /// The payload of the last frame read by [`FrameReader::read_frame`], reused.
    buf: Vec<u8>,
}

impl<R: Read> FrameReader<R> {
    /// A reader of frames with payloads of at most `max` bytes.
    pub(crate) fn new(inner: R, max: usize) -> Self {
        FrameReader {
            inner,
            max,
            buf: Vec::new(),
        }
    }

    /// The next frame's header; `None` when the stream ends cleanly between two frames.
    pub(crate) fn read_header(&mut self) -> Result<Option<Header>, FrameError> {
        let mut bytes = [0u8; HEADER_LEN];
        let mut got = 0;
        while got < HEADER_LEN {
            match self.inner.read(&mut bytes[got..]) {
                Ok(0) if got == 0 => return Ok(None),
                Ok(0) => {
                    return Err(FrameError::Truncated {
                        got,
                        want: HEADER_LEN,
                    })
                }
                Ok(n) => got += n,
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) => return Err(io_error(e)),
            }
        }
        Header::parse(&bytes, self.max).map(Some)
    }

    /// Reads the payload of the frame whose header was just read into `out` (replacing what it
    /// held, reusing its allocation).
    pub(crate) fn read_payload_into(
        &mut self,
        header: &Header,
        out: &mut Vec<u8>,
    ) -> Result<(), FrameError> {
        let want = header.len as usize;
        out.clear();
        // `want` was checked against the cap in `Header::parse`.
        out.reserve(want);
        (&mut self.inner)
            .take(want as u64)
            .read_to_end(out)
            .map_err(io_error)?;
        if out.len() < want {
            return Err(FrameError::Truncated {
                got: HEADER_LEN + out.len(),
                want: HEADER_LEN + want,
            });
        }
        Ok(())
    }

    /// The next frame, its payload in a buffer of the reader's (valid until the next call);
    /// `None` when the stream ends cleanly between two frames.
    pub(crate) fn read_frame(&mut self) -> Result<Option<(Header, &[u8])>, FrameError> {
        let Some(header) = self.read_header()? else {
            return Ok(None);
        };
        let mut buf = std::mem::take(&mut self.buf);
        let read = self.read_payload_into(&header, &mut buf);
        self.buf = buf;
        read?;
        Ok(Some((header, &self.buf)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn kind() -> impl Strategy<Value = Kind> {
        proptest::sample::select(Kind::ALL.to_vec())
    }

    /// A frame of `kind` with a payload the kind allows.
    fn frame() -> impl Strategy<Value = (Kind, u32, Vec<u8>)> {
        (
            kind(),
            any::<u32>(),
            proptest::collection::vec(any::<u8>(), 0..300),
        )
            .prop_map(|(kind, channel, mut payload)| {
                if let Some(n) = kind.fixed_len() {
                    payload.resize(n, 7);
                }
                (kind, channel, payload)
            })
    }

    #[test]
    fn each_malformation_is_named() {
        let mut good = Vec::new();
        put_frame(&mut good, Kind::Barrier, 3, &9u64.to_le_bytes());
        let mut r = FrameReader::new(&good[..], 64);
        let (h, p) = r.read_frame().unwrap().unwrap();
        assert_eq!(
            (h.kind, h.channel, p),
            (Kind::Barrier, 3, &9u64.to_le_bytes()[..])
        );
        assert!(r.read_frame().unwrap().is_none());

        let err = |bytes: &[u8]| {
            FrameReader::new(bytes, 64)
                .read_frame()
                .err()
                .map(|e| e.to_string())
                .unwrap_or_default()
        };
        let mut unknown = good.clone();
        unknown[4] = 99;
        assert_eq!(err(&unknown), "unknown frame kind 99");
        let mut big = Vec::new();
        big.extend_from_slice(
            &Header {
                kind: Kind::Data,
                channel: 0,
                len: 65,
            }
            .encode(),
        );
        assert!(err(&big).contains("oversized Data frame: 65 bytes"));
        let mut bad = good.clone();
        bad[0] = 7;
        assert!(err(&bad).contains("malformed Barrier frame: 7 payload bytes"));
        assert!(err(&good[..5]).contains("truncated frame: the stream ended after 5 of 9"));
        assert!(err(&good[..12]).contains("after 12 of 17 bytes"));

        let mut out = Vec::new();
        let start = begin_frame(&mut out);
        out.extend_from_slice(&[1; 65]);
        assert!(finish_frame(&mut out, start, Kind::Data, 1, 64).is_err());
        out.pop();
        finish_frame(&mut out, start, Kind::Data, 1, 64).unwrap();
        let mut r = FrameReader::new(&out[..], 64);
        let (h, p) = r.read_frame().unwrap().unwrap();
        assert_eq!((h.kind, h.channel, p.len()), (Kind::Data, 1, 64));
    }

    proptest! {
        #[test]
        fn frames_round_trip(frames in proptest::collection::vec(frame(), 0..20)) {
            let mut wire = Vec::new();
            for (kind, channel, payload) in &frames {
                put_frame(&mut wire, *kind, *channel, payload);
            }
            let mut reader = FrameReader::new(&wire[..], 300);
            for (kind, channel, payload) in &frames {
                let (h, p) = reader.read_frame().unwrap().unwrap();
                prop_assert_eq!((h.kind, h.channel, p), (*kind, *channel, &payload[..]));
            }
            prop_assert!(reader.read_frame().unwrap().is_none());
        }

        #[test]
        fn random_bytes_never_panic_nor_allocate_past_the_cap(
            bytes in proptest::collection::vec(any::<u8>(), 0..2000),
            prefix in proptest::collection::vec(frame(), 0..3),
        ) {
            // Valid frames, then garbage: the reader takes the frames and then fails or ends.
            let mut wire = Vec::new();
            for (kind, channel, payload) in &prefix {
                put_frame(&mut wire, *kind, *channel, payload);
            }
            wire.extend_from_slice(&bytes);
            let mut reader = FrameReader::new(&wire[..], 300);
            for _ in 0..wire.len() + 1 {
                match reader.read_frame() {
                    Ok(Some((h, p))) => prop_assert!(h.len as usize == p.len() && p.len() <= 300),
                    Ok(None) | Err(_) => break,
                }
            }
            prop_assert!(reader.buf.capacity() <= 300 * 2);
        }
    }
}
