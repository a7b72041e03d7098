//! The start of every connection, before any frame is decoded: mutual authentication on the
//! job secret, then a hello that tells each side who the other is.
//!
//! 1. Each side sends a challenge: protocol magic `SLTP`, version (u16 LE), its side (dialer or
//!    listener), a reserved byte, a 32-byte random nonce. Magic and version come first so that a
//!    foreign client or another version is told apart from a wrong secret.
//! 2. Each side sends a proof: HMAC-SHA256 over the job secret of a label naming its side and
//!    both nonces (the dialer's first). A proof reflected back to its sender carries the wrong
//!    side's label, and an echoed challenge is refused (same side, same nonce), so neither
//!    passes. Proofs are checked in constant time ([`Mac::verify_slice`]).
//! 3. Each side sends its hello: identity, build fingerprint, config hash (opaque byte strings
//!    of at most [`MAX_HELLO_FIELD`] bytes, each behind a u16 LE length). A build or config
//!    that differs from this process's refuses the connection, saying which.
//!
//! Every read is under one deadline for the whole handshake. This authenticates the two ends;
//! it does not encrypt or sign what follows (the network between workers is trusted not to be
//! tampered with).

use std::io::{ErrorKind, Read, Write};
use std::net::TcpStream;
use std::sync::Arc;
use std::time::{Duration, Instant};

use hmac::{KeyInit, Mac};

use crate::error::{Error, Result};

type HmacSha256 = hmac::Hmac<sha2::Sha256>;

/// Protocol magic, the first bytes on every connection.
const MAGIC: [u8; 4] = *b"SLTP";
/// The version of the transport protocol (handshake and frames) this build speaks.
pub(crate) const PROTOCOL_VERSION: u16 = 1;
const NONCE_LEN: usize = 32;
/// Magic, version, side, reserved byte, nonce.
const CHALLENGE_LEN: usize = 4 + 2 + 1 + 1 + NONCE_LEN;
const PROOF_LEN: usize = 32;
/// The longest identity, build fingerprint or config hash a hello carries.
pub(crate) const MAX_HELLO_FIELD: usize = 1024;

/// Which end of the connection a process is: the one that connected, or the one that accepted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Side {
    /// Connected to the peer.
    Dialer,
    /// Accepted the peer's connection.
    Listener,
}

impl Side {
    fn byte(self) -> u8 {
        match self {
            Side::Dialer => 1,
            Side::Listener => 2,
        }
    }

    /// What a proof of this side is computed over besides the nonces.
    fn label(self) -> &'static [u8] {
        match self {
            Side::Dialer => b"solstice transport v1: dialer proof",
            Side::Listener => b"solstice transport v1: listener proof",
        }
    }

    fn other(self) -> Side {
        match self {
            Side::Dialer => Side::Listener,
            Side::Listener => Side::Dialer,
        }
    }
}

/// The job secret both ends of every connection must know. Its bytes are never printed.
#[derive(Clone)]
pub(crate) struct JobSecret(Arc<[u8]>);

impl JobSecret {
    /// A secret of the caller's bytes (at least 16 of them: a short secret is guessed offline
    /// from one recorded handshake).
    pub(crate) fn new(bytes: impl Into<Vec<u8>>) -> Result<Self> {
        let bytes = bytes.into();
        if bytes.len() < 16 {
            return Err(Error::config(
                "the job secret",
                format!(
                    "a job secret needs at least 16 bytes, this one has {}",
                    bytes.len()
                ),
            ));
        }
        Ok(JobSecret(bytes.into()))
    }

    /// A secret given as hex digits (as [`generate_secret_hex`] makes).
    pub(crate) fn from_hex(hex: &str) -> Result<Self> {
        let hex = hex.trim();
        let digit = |c: u8| (c as char).to_digit(16);
        if !hex.len().is_multiple_of(2) {
            return Err(Error::config(
                "the job secret",
                "a hex job secret has an even number of digits",
            ));
        }
        let mut bytes = Vec::with_capacity(hex.len() / 2);
        for pair in hex.as_bytes().chunks(2) {
            match (digit(pair[0]), digit(pair[1])) {
                (Some(hi), Some(lo)) => bytes.push((hi * 16 + lo) as u8),
                _ => {
                    return Err(Error::config(
                        "the job secret",
                        "a hex job secret has a non-hex digit",
                    ))
                }
            }
        }
        JobSecret::new(bytes)
    }

    /// The secret as hex digits, for handing it to a spawned worker in its environment.
    pub(crate) fn to_hex(&self) -> String {
        self.0.iter().map(|b| format!("{b:02x}")).collect()
    }

    fn mac(&self) -> HmacSha256 {
        // HMAC takes keys of any length; the error case cannot happen for it.
        <HmacSha256 as KeyInit>::new_from_slice(&self.0)
            .unwrap_or_else(|_| <HmacSha256 as KeyInit>::new(&Default::default()))
    }
}

impl std::fmt::Debug for JobSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "JobSecret({} bytes)", self.0.len())
    }
}

/// A fresh random job secret (32 bytes) as 64 hex digits, for a coordinator to hand to its
/// workers.
pub(crate) fn generate_secret_hex() -> Result<String> {
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes)
        .map_err(|e| Error::Internal(format!("cannot draw a random job secret: {e}")))?;
    Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
}

/// What each side tells the other once authenticated: opaque byte strings chosen by the caller,
/// each at most [`MAX_HELLO_FIELD`] bytes.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct Hello {
    /// The process's role and identity (e.g. `worker-3`), for naming it in errors.
    pub identity: Vec<u8>,
    /// A fingerprint of the build; the peer's must be the same.
    pub build: Vec<u8>,
    /// A hash of the job's configuration; the peer's must be the same.
    pub config: Vec<u8>,
}

/// Runs the handshake on `stream` as `side`, within `timeout`: authenticates the peer on
/// `secret`, exchanges hellos, and returns the peer's. A refusal is logged with the peer's
/// address and returned as [`Error::Handshake`].
pub(crate) fn handshake(
    stream: &TcpStream,
    side: Side,
    secret: &JobSecret,
    hello: &Hello,
    timeout: Duration,
) -> Result<Hello> {
    let addr = stream
        .peer_addr()
        .map(|a| a.to_string())
        .unwrap_or_else(|_| "an unknown address".into());
    let mut io = Deadline {
        stream,
        until: Instant::now() + timeout,
        timeout,
    };
    let outcome = run(&mut io, side, secret, hello).and_then(|peer| {
        check_hello(hello, &peer)?;
        Ok(peer)
    });
    // Restore blocking reads for the frames that follow (the connection sets its own timeouts).
    let _ = stream.set_read_timeout(None);
    let _ = stream.set_write_timeout(None);
    outcome.map_err(|message| {
        let peer = match &message.1 {
            Some(identity) => format!("{} at {addr}", show(identity)),
            None => addr.clone(),
        };
        tracing::warn!(peer = %peer, "refused a connection: {}", message.0);
        Error::Handshake {
            peer,
            message: message.0,
        }
    })
}

/// A refusal: what is wrong, and the peer's identity once its hello told it.
type Refusal = (String, Option<Vec<u8>>);

fn refuse(message: impl Into<String>) -> Refusal {
    (message.into(), None)
}

fn run(
    io: &mut Deadline<'_>,
    side: Side,
    secret: &JobSecret,
    hello: &Hello,
) -> Result<Hello, Refusal> {
    let mut nonce = [0u8; NONCE_LEN];
    getrandom::fill(&mut nonce).map_err(|e| refuse(format!("cannot draw a random nonce: {e}")))?;
    let mut challenge = [0u8; CHALLENGE_LEN];
    challenge[..4].copy_from_slice(&MAGIC);
    challenge[4..6].copy_from_slice(&PROTOCOL_VERSION.to_le_bytes());
    challenge[6] = side.byte();
    challenge[8..].copy_from_slice(&nonce);
    io.write(&challenge, "challenge")?;

    // Magic and version first, on their own: a foreign client may send fewer bytes than a
    // whole challenge and then wait.
    let mut theirs = [0u8; CHALLENGE_LEN];
    io.read(&mut theirs[..6], "challenge")?;
    if theirs[..4] != MAGIC {
        return Err(refuse(format!(
            "not a Solstice transport peer: it opened with {}",
            show(&theirs[..6])
        )));
    }
    let version = u16::from_le_bytes([theirs[4], theirs[5]]);
    if version != PROTOCOL_VERSION {
        return Err(refuse(format!(
            "the peer speaks transport protocol version {version}, this build speaks \
             {PROTOCOL_VERSION}"
        )));
    }
    io.read(&mut theirs[6..], "challenge")?;
    if theirs[6] == side.byte() {
        return Err(refuse(format!(
            "the peer claims to be the {side:?} too (a reflected challenge?)"
        )));
    }
    if theirs[6] != side.other().byte() {
        return Err(refuse(format!(
            "the peer claims an unknown side {}",
            theirs[6]
        )));
    }
    let their_nonce: [u8; NONCE_LEN] = theirs[8..].try_into().map_err(|_| refuse("bad nonce"))?;
    if their_nonce == nonce {
        return Err(refuse(
            "the peer echoed this end's nonce (a reflected challenge)",
        ));
    }
    let (dialer, listener) = match side {
        Side::Dialer => (&nonce, &their_nonce),
        Side::Listener => (&their_nonce, &nonce),
    };

    io.write(&proof(secret, side, dialer, listener), "proof")?;
    let mut their_proof = [0u8; PROOF_LEN];
    io.read(&mut their_proof, "proof")?;
    prover(secret, side.other(), dialer, listener)
        .verify_slice(&their_proof)
        .map_err(|_| {
            refuse(
                "authentication failed: the peer's proof does not match this job's secret \
                 (it runs with another secret, or for another job)",
            )
        })?;

    let mut out =
        Vec::with_capacity(6 + hello.identity.len() + hello.build.len() + hello.config.len());
    for field in [&hello.identity, &hello.build, &hello.config] {
        let len = u16::try_from(field.len())
            .ok()
            .filter(|&n| n as usize <= MAX_HELLO_FIELD)
            .ok_or_else(|| {
                refuse(format!(
                    "a hello field of {} bytes is too long",
                    field.len()
                ))
            })?;
        out.extend_from_slice(&len.to_le_bytes());
        out.extend_from_slice(field);
    }
    io.write(&out, "hello")?;
    let mut fields: [Vec<u8>; 3] = Default::default();
    for (field, name) in fields
        .iter_mut()
        .zip(["identity", "build fingerprint", "config hash"])
    {
        let mut len = [0u8; 2];
        io.read(&mut len, "hello")?;
        let len = u16::from_le_bytes(len) as usize;
        if len > MAX_HELLO_FIELD {
            return Err(refuse(format!(
                "the peer's {name} is {len} bytes, more than the limit of {MAX_HELLO_FIELD}"
            )));
        }
        field.resize(len, 0);
        io.read(field, "hello")?;
    }
    let [identity, build, config] = fields;
    Ok(Hello {
        identity,
        build,
        config,
    })
}

/// Refuses a peer whose build or config differs from this process's.
fn check_hello(ours: &Hello, theirs: &Hello) -> Result<(), Refusal> {
    let differs = |what: &str, a: &[u8], b: &[u8]| {
        (
            format!(
                "the {what} differs: this process has {}, the peer {}",
                show(a),
                show(b)
            ),
            Some(theirs.identity.clone()),
        )
    };
    if ours.build != theirs.build {
        return Err(differs("build fingerprint", &ours.build, &theirs.build));
    }
    if ours.config != theirs.config {
        return Err(differs("config hash", &ours.config, &theirs.config));
    }
    Ok(())
}

fn prover(
    secret: &JobSecret,
    side: Side,
    dialer: &[u8; NONCE_LEN],
    listener: &[u8; NONCE_LEN],
) -> HmacSha256 {
    let mut mac = secret.mac();
    mac.update(side.label());
    mac.update(dialer);
    mac.update(listener);
    mac
}

fn proof(
    secret: &JobSecret,
    side: Side,
    dialer: &[u8; NONCE_LEN],
    listener: &[u8; NONCE_LEN],
) -> [u8; PROOF_LEN] {
    prover(secret, side, dialer, listener)
        .finalize()
        .into_bytes()
        .into()
}

/// Bytes for a message: as text when they are printable, else as hex (at most 64 bytes).
pub(crate) fn show(bytes: &[u8]) -> String {
    match std::str::from_utf8(bytes) {
        Ok(s) if !s.is_empty() && s.chars().all(|c| !c.is_control()) => format!("`{s}`"),
        _ if bytes.is_empty() => "nothing".into(),
        _ => {
            let hex: String = bytes.iter().take(64).map(|b| format!("{b:02x}")).collect();
            let more = if bytes.len() > 64 { "…" } else { "" };
            format!("bytes 0x{hex}{more}")
        }
    }
}

/// Reads and writes under one deadline.
struct Deadline<'a> {
    stream: &'a TcpStream,
    until: Instant,
    timeout: Duration,
}

impl Deadline<'_> {
    fn remaining(&self, what: &str) -> Result<Duration, Refusal> {
        let left = self.until.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(refuse(format!(
                "timed out after {:?} waiting for the peer's {what}",
                self.timeout
            )));
        }
        Ok(left)
    }

    fn read(&mut self, buf: &mut [u8], what: &str) -> Result<(), Refusal> {
        let mut got = 0;
        while got < buf.len() {
            let left = self.remaining(what)?;
            let _ = self.stream.set_read_timeout(Some(left));
            match self.stream.read(&mut buf[got..]) {
                Ok(0) => {
                    return Err(refuse(format!(
                        "the peer closed the connection during the handshake (waiting for its \
                         {what})"
                    )))
                }
                Ok(n) => got += n,
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
                Err(e) => return Err(refuse(format!("reading the peer's {what}: {e}"))),
            }
        }
        Ok(())
    }

    fn write(&mut self, bytes: &[u8], what: &str) -> Result<(), Refusal> {
        let left = self.remaining(what)?;
        let _ = self.stream.set_write_timeout(Some(left));
        let mut stream = self.stream;
        stream
            .write_all(bytes)
            .map_err(|e| refuse(format!("sending this end's {what}: {e}")))
    }
}

#[cfg(test)]
mod tests;
