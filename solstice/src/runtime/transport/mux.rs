//! One TCP connection to one peer, carrying many logical channels: setting it up (dial or
//! accept, then the handshake), its writer and reader threads, and closing it.
//!
//! The writer sends what the channels' ends queue (in one FIFO, so each channel's frames stay in
//! order), the credits their readers grant, and heartbeats when the connection is idle; frames
//! go out together in vectored writes. The reader checks each frame and puts it in its
//! channel's inbox (payloads stay encoded: the reading task decodes them on a pool thread),
//! credits to its channel's sender, control frames to the control queue. A silent peer, a
//! protocol violation or a socket error fails the connection and every channel on it.

use std::io::{BufReader, ErrorKind, IoSlice, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use serde::de::DeserializeOwned;
use serde::Serialize;

use super::frame::{put_frame, FrameError, FrameReader, Header, Kind, CONNECTION, HEADER_LEN};
use super::handshake::{handshake, show, Hello, Side};
use super::link::{lock, ChannelStats, Inbound, Link, OutFrame};
use super::remote::{RemoteInput, RemoteOutput};
use super::{Endpoint, TransportConfig};
use crate::error::{Error, Result};
use crate::runtime::executor::RemoteWaker;

/// At most this many bytes of frames go out in one vectored write...
const GATHER_BYTES: usize = 1 << 20;

/// ...and at most this many frames (well below the system's limit of slices in one call).
const GATHER_FRAMES: usize = 256;

/// Room reserved for the small frames (credits, a heartbeat) written before the others.
const SMALL: usize = 16 << 10;

/// A message of the coordinator protocol: its tag (the channel id of a control frame) and bytes.
pub(crate) type Control = (u32, Vec<u8>);

/// How errors name a peer: its identity (when printable) and its address.
fn peer_name(identity: &[u8], addr: SocketAddr) -> String {
    match std::str::from_utf8(identity) {
        Ok(id) if !id.is_empty() && id.chars().all(|c| !c.is_control()) => {
            format!("{id} at {addr}")
        }
        Ok(_) | Err(_) if identity.is_empty() => addr.to_string(),
        _ => format!("{} at {addr}", show(identity)),
    }
}

/// Connects to the peer listening at `addr` and runs the handshake.
pub(crate) fn connect(addr: SocketAddr, endpoint: &Endpoint) -> Result<Connection> {
    endpoint.config.check()?;
    let stream =
        TcpStream::connect_timeout(&addr, endpoint.config.handshake_timeout).map_err(|e| {
            Error::Transport {
                peer: addr.to_string(),
                message: format!("cannot connect: {e}"),
            }
        })?;
    Connection::start(stream, addr, Side::Dialer, endpoint)
}

/// A listening socket that accepts connections from peers of the job.
pub(crate) struct Listener {
    listener: TcpListener,
    endpoint: Endpoint,
}

impl Listener {
    /// Listens on `addr` (port 0: one the system picks).
    pub(crate) fn bind(addr: SocketAddr, endpoint: Endpoint) -> Result<Listener> {
        endpoint.config.check()?;
        let listener = TcpListener::bind(addr).map_err(|e| Error::Transport {
            peer: addr.to_string(),
            message: format!("cannot listen: {e}"),
        })?;
        Ok(Listener { listener, endpoint })
    }

    /// The address it listens on.
    pub(crate) fn local_addr(&self) -> Result<SocketAddr> {
        self.listener
            .local_addr()
            .map_err(|e| Error::Internal(format!("listening socket has no address: {e}")))
    }

    /// Accepts the next connection and runs the handshake on it (within the handshake timeout).
    /// A peer that fails the handshake is refused and its error returned; the listener stays
    /// usable for the next one.
    pub(crate) fn accept(&self) -> Result<Connection> {
        let (stream, addr) = self.listener.accept().map_err(|e| Error::Transport {
            peer: "an incoming connection".into(),
            message: format!("accept failed: {e}"),
        })?;
        Connection::start(stream, addr, Side::Listener, &self.endpoint)
    }
}

/// An authenticated connection to one peer, and its two threads. Dropping it writes what is
/// queued, closes the connection and joins the threads; the ends of its channels then report
/// that it is closed.
pub(crate) struct Connection {
    link: Arc<Link>,
    hello: Hello,
    local: Option<SocketAddr>,
    control: Option<crossbeam_channel::Receiver<Control>>,
    writer: Option<JoinHandle<()>>,
    reader: Option<JoinHandle<()>>,
}

impl Connection {
    fn start(stream: TcpStream, addr: SocketAddr, side: Side, endpoint: &Endpoint) -> Result<Self> {
        let config = endpoint.config.clone();
        let io = |e: std::io::Error| Error::Transport {
            peer: addr.to_string(),
            message: format!("cannot set up the socket: {e}"),
        };
        // Frames are batched by the writer already; Nagle's delay would only add latency.
        stream.set_nodelay(true).map_err(io)?;
        let hello = handshake(
            &stream,
            side,
            &endpoint.secret,
            &endpoint.hello,
            config.handshake_timeout,
        )?;
        let peer = peer_name(&hello.identity, addr);
        let local = stream.local_addr().ok();
        stream
            .set_read_timeout(Some(config.heartbeat_timeout))
            .map_err(io)?;
        stream
            .set_write_timeout(Some(config.heartbeat_timeout))
            .map_err(io)?;
        let read_half = stream.try_clone().map_err(io)?;
        let write_half = stream.try_clone().map_err(io)?;
        let link = Arc::new(Link::new(peer, config.clone(), stream));
        let (control_tx, control_rx) = crossbeam_channel::bounded(config.control_queue);
        let spawn = |name: String, f: Box<dyn FnOnce() + Send>| {
            std::thread::Builder::new()
                .name(name)
                .spawn(f)
                .map_err(|e| Error::Internal(format!("cannot start a connection thread: {e}")))
        };
        let writer = {
            let link = link.clone();
            spawn(
                format!("solstice-tx-{addr}"),
                Box::new(move || write_loop(&link, write_half)),
            )?
        };
        let reader = {
            let link = link.clone();
            spawn(
                format!("solstice-rx-{addr}"),
                Box::new(move || read_loop(&link, read_half, control_tx)),
            )
        };
        let mut conn = Connection {
            link,
            hello,
            local,
            control: Some(control_rx),
            writer: Some(writer),
            reader: None,
        };
        // On error, dropping `conn` ends the writer.
        conn.reader = Some(reader?);
        Ok(conn)
    }

    /// The peer, as errors name it (identity and address).
    pub(crate) fn peer(&self) -> &str {
        &self.link.peer
    }

    /// This end's address (the interface it reaches the peer through).
    pub(crate) fn local_addr(&self) -> Option<SocketAddr> {
        self.local
    }

    /// What the peer said in its hello.
    pub(crate) fn peer_hello(&self) -> &Hello {
        &self.hello
    }

    /// Heartbeats received from the peer.
    pub(crate) fn heartbeats_received(&self) -> u64 {
        self.link
            .heartbeats
            .load(std::sync::atomic::Ordering::Relaxed)
    }

    /// The counters of its channels: outputs', then inputs'.
    pub(crate) fn stats(&self) -> (Vec<ChannelStats>, Vec<ChannelStats>) {
        self.link.stats()
    }

    /// Why the connection is down, if it is.
    pub(crate) fn error(&self) -> Option<Error> {
        self.link.down().map(|reason| self.link.error(reason))
    }

    /// Opens logical channel `channel` for reading by the task `waker` wakes, with room for
    /// `capacity` data batches (the credits granted to the peer at first; one more is granted
    /// for each batch the task takes).
    pub(crate) fn open_input<T: DeserializeOwned>(
        &self,
        channel: u32,
        capacity: u32,
        waker: RemoteWaker,
    ) -> Result<RemoteInput<T>> {
        self.check_channel(channel)?;
        if capacity == 0 || capacity > self.link.config.max_credits {
            return Err(Error::Internal(format!(
                "channel {channel}: a capacity of {capacity} batches, not within 1..={}",
                self.link.config.max_credits
            )));
        }
        let chan = self.link.input(channel).ok_or_else(|| self.too_many())?;
        {
            let mut st = lock(&chan.state);
            if st.opened {
                return Err(Error::Internal(format!(
                    "channel {channel} opened twice for input"
                )));
            }
            st.opened = true;
            st.capacity = capacity;
            st.granted += u64::from(capacity);
            st.waker = Some(waker);
        }
        self.link.grant(&chan, capacity);
        Ok(RemoteInput::new(self.link.clone(), chan))
    }

    /// Opens logical channel `channel` for sending by the task `waker` wakes (when credits
    /// arrive).
    pub(crate) fn open_output<T: Serialize>(
        &self,
        channel: u32,
        waker: RemoteWaker,
    ) -> Result<RemoteOutput<T>> {
        self.check_channel(channel)?;
        let chan = self.link.output(channel).ok_or_else(|| self.too_many())?;
        {
            let mut st = lock(&chan.state);
            if st.opened {
                return Err(Error::Internal(format!(
                    "channel {channel} opened twice for output"
                )));
            }
            st.opened = true;
            st.waker = Some(waker);
        }
        Ok(RemoteOutput::new(self.link.clone(), chan))
    }

    fn check_channel(&self, channel: u32) -> Result<()> {
        if channel == CONNECTION {
            return Err(Error::Internal(format!(
                "channel id {CONNECTION} is reserved"
            )));
        }
        Ok(())
    }

    fn too_many(&self) -> Error {
        self.link.error(format!(
            "more than {} channels on one connection",
            self.link.config.max_channels
        ))
    }

    /// Sends a control message (blocks while the control queue is full).
    pub(crate) fn send_control(&self, tag: u32, payload: &[u8]) -> Result<()> {
        if payload.len() > self.link.config.max_frame_bytes {
            return Err(self.link.error(format!(
                "a control message of {} bytes is over the frame limit of {}",
                payload.len(),
                self.link.config.max_frame_bytes
            )));
        }
        let mut buf = Vec::with_capacity(HEADER_LEN + payload.len());
        put_frame(&mut buf, Kind::Control, tag, payload);
        let mut out = lock(&self.link.out);
        while out.control >= self.link.config.control_queue && self.link.down().is_none() {
            out = self
                .link
                .room_cv
                .wait(out)
                .unwrap_or_else(|p| p.into_inner());
        }
        if let Some(reason) = self.link.down() {
            return Err(self.link.error(reason));
        }
        drop(out);
        self.link.enqueue(OutFrame {
            chan: None,
            buf,
            data: false,
            control: true,
        });
        Ok(())
    }

    /// The next control message from the peer, waiting at most `timeout`; `None` when none
    /// came in time. Fails once the connection is down and every message that came is read.
    pub(crate) fn recv_control(&self, timeout: Duration) -> Result<Option<Control>> {
        let Some(rx) = &self.control else {
            return Err(self.link.error("closed"));
        };
        match rx.recv_timeout(timeout) {
            Ok(message) => Ok(Some(message)),
            Err(crossbeam_channel::RecvTimeoutError::Timeout) => Ok(None),
            Err(crossbeam_channel::RecvTimeoutError::Disconnected) => Err(self
                .link
                .error(self.link.down().unwrap_or("the connection is closed"))),
        }
    }

    /// Tells the peer the job failed here (`message`), then closes the connection: the peer's
    /// channels report the message.
    pub(crate) fn fail(&self, message: &str) {
        let mut buf = Vec::new();
        let text = message.as_bytes();
        let cut = text
            .len()
            .min(self.link.config.max_frame_bytes)
            .min(64 << 10);
        put_frame(&mut buf, Kind::Error, CONNECTION, &text[..cut]);
        self.link.enqueue(OutFrame {
            chan: None,
            buf,
            data: false,
            control: false,
        });
        self.link
            .close(format!("this process failed the connection: {message}"));
    }
}

impl std::fmt::Debug for Connection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Connection({})", self.link.peer)
    }
}

impl Drop for Connection {
    fn drop(&mut self) {
        self.link
            .close("the connection was closed by this process".into());
        if let Some(writer) = self.writer.take() {
            let _ = writer.join();
        }
        // What is queued is written; a reader still waiting for the peer is stopped now.
        self.link
            .fail("the connection was closed by this process".into(), false);
        // A reader blocked on a full control queue returns once the queue is gone.
        self.control.take();
        if let Some(reader) = self.reader.take() {
            let _ = reader.join();
        }
    }
}

/// The writer thread: frames, credits and heartbeats out, until the connection fails or this
/// process closes it.
fn write_loop(link: &Link, mut stream: TcpStream) {
    let interval = link.config.heartbeat_interval();
    let mut frames = std::collections::VecDeque::new();
    let mut grants = Vec::new();
    let mut small: Vec<u8> = Vec::with_capacity(SMALL);
    let mut last_write = Instant::now();
    loop {
        let closing = {
            let mut out = lock(&link.out);
            loop {
                if link.broken() {
                    return;
                }
                if !out.frames.is_empty() || !out.grants.is_empty() || out.closing {
                    break;
                }
                let now = Instant::now();
                let due = last_write + interval;
                if now >= due {
                    break;
                }
                out.writer_idle = true;
                out = match link.out_cv.wait_timeout(out, due - now) {
                    Ok((guard, _)) => guard,
                    Err(p) => p.into_inner().0,
                };
                out.writer_idle = false;
            }
            std::mem::swap(&mut out.frames, &mut frames);
            std::mem::swap(&mut out.grants, &mut grants);
            if std::mem::take(&mut out.control) > 0 {
                link.room_cv.notify_all();
            }
            out.closing && frames.is_empty() && grants.is_empty()
        };
        for chan in grants.drain(..) {
            let n = chan.ungranted.swap(0, std::sync::atomic::Ordering::AcqRel);
            if n > 0 {
                put_frame(&mut small, Kind::Credit, chan.id, &n.to_le_bytes());
            }
        }
        if frames.is_empty() && small.is_empty() && !closing {
            put_frame(&mut small, Kind::Heartbeat, CONNECTION, &[]);
        }
        let written = write_frames(&mut stream, &mut frames, &mut small);
        if let Err(e) = written {
            let reason = if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) {
                format!(
                    "the peer has read nothing for {:?} (it is stuck or gone)",
                    link.config.heartbeat_timeout
                )
            } else {
                format!("cannot send to the peer: {e}")
            };
            link.fail(reason, link.down().is_none());
            return;
        }
        last_write = Instant::now();
        if closing {
            // The peer reads to the end of what was sent, then sees the end of the stream.
            let _ = stream.flush();
            let _ = stream.shutdown(Shutdown::Write);
            return;
        }
    }
}

/// Writes `small` (credits, a heartbeat), then `frames`, gathering up to [`GATHER_BYTES`] or
/// [`GATHER_FRAMES`] frames into one vectored write: fewer, larger segments through the kernel
/// than a write per frame, and no copy.
fn write_frames(
    stream: &mut TcpStream,
    frames: &mut std::collections::VecDeque<OutFrame>,
    small: &mut Vec<u8>,
) -> std::io::Result<()> {
    let mut group: Vec<OutFrame> = Vec::with_capacity(GATHER_FRAMES);
    let mut first = true;
    while first || !frames.is_empty() {
        let mut bytes = if first { small.len() } else { 0 };
        while let Some(frame) = frames.front() {
            if !group.is_empty()
                && (group.len() >= GATHER_FRAMES || bytes + frame.buf.len() > GATHER_BYTES)
            {
                break;
            }
            bytes += frame.buf.len();
            group.extend(frames.pop_front());
        }
        let mut slices: Vec<IoSlice<'_>> = Vec::with_capacity(group.len() + 1);
        if first && !small.is_empty() {
            slices.push(IoSlice::new(small));
        }
        slices.extend(group.iter().map(|f| IoSlice::new(&f.buf)));
        write_all_vectored(stream, &mut slices)?;
        drop(slices);
        if first {
            small.clear();
            first = false;
        }
        for frame in group.drain(..) {
            if let Some(chan) = frame.chan {
                chan.written(frame.buf, frame.data);
            }
        }
    }
    Ok(())
}

/// Writes every byte of `slices`, in as few system calls as the socket takes.
fn write_all_vectored(
    stream: &mut TcpStream,
    mut slices: &mut [IoSlice<'_>],
) -> std::io::Result<()> {
    IoSlice::advance_slices(&mut slices, 0);
    while !slices.is_empty() {
        match stream.write_vectored(slices) {
            Ok(0) => return Err(ErrorKind::WriteZero.into()),
            Ok(n) => IoSlice::advance_slices(&mut slices, n),
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// The reader thread: frames in, until the peer closes, the connection fails, or this process
/// closes it.
fn read_loop(link: &Link, stream: TcpStream, control: crossbeam_channel::Sender<Control>) {
    let mut reader = FrameReader::new(
        BufReader::with_capacity(256 << 10, stream),
        link.config.max_frame_bytes,
    );
    let mut control = Some(control);
    let mut scratch = Vec::new();
    loop {
        let outcome = match reader.read_header() {
            Ok(Some(header)) => dispatch(link, &mut reader, header, &mut scratch, &mut control),
            Ok(None) => {
                peer_closed(link);
                return;
            }
            Err(FrameError::TimedOut) => Err(format!(
                "no frame from the peer for {:?} (heartbeat timeout)",
                link.config.heartbeat_timeout
            )),
            Err(e) => Err(e.to_string()),
        };
        if let Err(reason) = outcome {
            // After this process closed or failed the connection, a read error is its echo.
            link.fail(reason, link.down().is_none());
            return;
        }
    }
}

/// The peer closed its end: cleanly when every channel into this process had ended.
fn peer_closed(link: &Link) {
    if link.down().is_some() {
        link.fail("the connection is closed".into(), false);
        return;
    }
    let open = link.unended_inputs();
    if open.is_empty() {
        link.fail("the peer closed the connection".into(), false);
    } else {
        let list: Vec<String> = open.iter().map(u32::to_string).collect();
        link.fail(
            format!(
                "the peer closed the connection before the end of stream on channel(s) {}",
                list.join(", ")
            ),
            true,
        );
    }
}

/// Handles one frame whose header was read. `Err`: the peer broke the protocol or the
/// connection failed, with the reason.
fn dispatch<R: std::io::Read>(
    link: &Link,
    reader: &mut FrameReader<R>,
    header: Header,
    scratch: &mut Vec<u8>,
    control: &mut Option<crossbeam_channel::Sender<Control>>,
) -> Result<(), String> {
    let frame_err = |e: FrameError| match e {
        FrameError::TimedOut => format!(
            "no data from the peer for {:?} inside a frame (heartbeat timeout)",
            link.config.heartbeat_timeout
        ),
        e => e.to_string(),
    };
    let too_many = || {
        format!(
            "protocol violation: more than {} channels on one connection",
            link.config.max_channels
        )
    };
    if header.channel == CONNECTION && !matches!(header.kind, Kind::Heartbeat | Kind::Error) {
        return Err(format!(
            "protocol violation: a {:?} frame on the connection's reserved channel",
            header.kind
        ));
    }
    match header.kind {
        Kind::Data => {
            let chan = link.input(header.channel).ok_or_else(too_many)?;
            let mut buf = chan.buffer_for_data()?;
            reader
                .read_payload_into(&header, &mut buf)
                .map_err(frame_err)?;
            chan.push(Inbound::Data(buf))
        }
        Kind::Heartbeat => {
            link.heartbeats
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            Ok(())
        }
        kind => {
            reader
                .read_payload_into(&header, scratch)
                .map_err(frame_err)?;
            match kind {
                Kind::Credit => {
                    let n = u32::from_le_bytes(fixed(scratch)?);
                    let chan = link.output(header.channel).ok_or_else(too_many)?;
                    chan.add_credits(n, link.config.max_credits)
                }
                Kind::Barrier => {
                    let id = u64::from_le_bytes(fixed(scratch)?);
                    let chan = link.input(header.channel).ok_or_else(too_many)?;
                    chan.push(Inbound::Barrier(id))
                }
                Kind::End => {
                    let chan = link.input(header.channel).ok_or_else(too_many)?;
                    chan.push(Inbound::End)
                }
                Kind::Error => {
                    let message = String::from_utf8_lossy(scratch).into_owned();
                    if header.channel == CONNECTION {
                        return Err(format!("the peer reported: {message}"));
                    }
                    let chan = link.input(header.channel).ok_or_else(too_many)?;
                    chan.push(Inbound::Error(message))
                }
                Kind::Control => {
                    if let Some(tx) = control {
                        // Blocks while the queue is full: the peer then waits (backpressure).
                        if tx.send((header.channel, scratch.clone())).is_err() {
                            // Nobody reads control messages any more.
                            *control = None;
                        }
                    }
                    Ok(())
                }
                Kind::Data | Kind::Heartbeat => Ok(()),
            }
        }
    }
}

/// A fixed-size payload (its length was checked with the header).
fn fixed<const N: usize>(payload: &[u8]) -> Result<[u8; N], String> {
    payload
        .try_into()
        .map_err(|_| format!("malformed frame: {} payload bytes, want {N}", payload.len()))
}

impl TransportConfig {
    /// Heartbeats go out after a quarter of the timeout without traffic, so that a few may be
    /// late before the peer gives up.
    pub(crate) fn heartbeat_interval(&self) -> Duration {
        self.heartbeat_timeout / 4
    }
}
