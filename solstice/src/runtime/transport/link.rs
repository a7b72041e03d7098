//! The state one connection's threads and its channels' ends share: the queue of frames going
//! out, each logical channel's credits and inbox, and why the connection went down.
//!
//! Every wake-up here follows one rule: a side that finds nothing to do (no credit, an empty
//! inbox) sets `waiting` under the channel's lock, and the side that changes that (a credit, a
//! frame, a failure) checks `waiting` under the same lock and wakes the task, so none is lost.
//! The threads that move bytes live in [`super::mux`]; the typed ends in [`super::remote`].

use std::collections::{HashMap, VecDeque};
use std::net::{Shutdown, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, OnceLock};

use super::TransportConfig;
use crate::error::{Error, Result};
use crate::runtime::executor::RemoteWaker;

/// Barriers, end markers and errors that may wait, per channel, at the writer or in an inbox
/// (they need no credit; the checkpoint protocol keeps them few). At the writer, a sender past
/// it waits for the writer; in an inbox, a peer past it is flooding and breaks the protocol.
pub(crate) const MAX_UNCREDITED: usize = 64;
const MAX_UNCREDITED_INBOX: usize = 1024;

/// Counters of one end of a logical channel, for metrics and tests.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct ChannelStats {
    /// Data frames sent (an output) or received (an input).
    pub data_frames: u64,
    /// Their bytes, headers included (of an output: those written to the socket so far).
    pub data_bytes: u64,
    /// Credits held now (an output), or granted and not used by the peer yet (an input).
    pub credits: u32,
    /// Credits received from the peer (an output), or granted to it (an input), in all.
    pub credits_total: u64,
    /// The most data frames that were queued at once: at the writer (an output), in the inbox
    /// (an input).
    pub max_queued: usize,
    /// The batches the reader has room for (an input; 0 for an output): the most credits the
    /// channel's sender can hold.
    pub capacity: u32,
    /// Times the sending task found no credit for a batch and waited (an output): the
    /// receiver's backpressure.
    pub credit_waits: u64,
}

/// A frame on its way to the socket.
pub(crate) struct OutFrame {
    /// The channel whose buffer this is (returned to it once written), if any.
    pub chan: Option<Arc<OutChan>>,
    /// The whole frame, header included.
    pub buf: Vec<u8>,
    /// A data frame (else a barrier, end, error or control frame).
    pub data: bool,
    /// A control frame (counted against the control queue).
    pub control: bool,
}

/// The writer's queue.
#[derive(Default)]
pub(crate) struct Outgoing {
    /// Frames in the order they were sent (one FIFO keeps each channel's frames in order). Its
    /// length is bounded by the credits held, [`MAX_UNCREDITED`] per channel and the control
    /// queue's size.
    pub frames: VecDeque<OutFrame>,
    /// Inputs with credits to grant (each at most once).
    pub grants: Vec<Arc<InChan>>,
    /// Control frames in `frames`.
    pub control: usize,
    /// Closed by this process: write what is queued, then end.
    pub closing: bool,
    /// The writer waits for work (so that a sender notifies it only then).
    pub writer_idle: bool,
}

impl Link {
    /// The counters of every channel of the connection: its outputs', then its inputs'.
    pub(crate) fn stats(&self) -> (Vec<ChannelStats>, Vec<ChannelStats>) {
        let outputs: Vec<_> = lock(&self.outputs).values().cloned().collect();
        let inputs: Vec<_> = lock(&self.inputs).values().cloned().collect();
        (
            outputs.iter().map(|c| c.stats()).collect(),
            inputs.iter().map(|c| c.stats()).collect(),
        )
    }
}

/// What one connection's threads and ends share.
pub(crate) struct Link {
    /// The peer, as errors name it: its identity and address.
    pub peer: String,
    pub config: TransportConfig,
    /// Why the connection is down (failed, or closed by this process); set once.
    down: OnceLock<String>,
    /// The connection failed (rather than being closed): the writer drops what is queued.
    broken: AtomicBool,
    /// For shutting the socket down when the connection fails, which unblocks both threads.
    stream: TcpStream,
    pub out: Mutex<Outgoing>,
    /// Wakes the writer.
    pub out_cv: Condvar,
    /// Wakes senders of control frames waiting for room.
    pub room_cv: Condvar,
    inputs: Mutex<HashMap<u32, Arc<InChan>>>,
    outputs: Mutex<HashMap<u32, Arc<OutChan>>>,
    /// Heartbeats received, for tests and metrics.
    pub heartbeats: AtomicU64,
}

pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic while holding one of these locks leaves counters and queues that are still
    // consistent (no invariant spans an unlock), so a poisoned lock is used as it is.
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Link {
    pub(crate) fn new(peer: String, config: TransportConfig, stream: TcpStream) -> Self {
        Link {
            peer,
            config,
            down: OnceLock::new(),
            broken: AtomicBool::new(false),
            stream,
            out: Mutex::new(Outgoing::default()),
            out_cv: Condvar::new(),
            room_cv: Condvar::new(),
            inputs: Mutex::new(HashMap::new()),
            outputs: Mutex::new(HashMap::new()),
            heartbeats: AtomicU64::new(0),
        }
    }

    /// Why the connection is down, if it is.
    pub(crate) fn down(&self) -> Option<&str> {
        self.down.get().map(String::as_str)
    }

    pub(crate) fn broken(&self) -> bool {
        self.broken.load(Ordering::Acquire)
    }

    /// An error about this connection.
    pub(crate) fn error(&self, message: impl Into<String>) -> Error {
        Error::Transport {
            peer: self.peer.clone(),
            message: message.into(),
        }
    }

    /// Fails the connection: every channel reports `reason`, both threads end. The first
    /// reason wins; `log` says whether it is worth a warning (a peer's clean close is not).
    pub(crate) fn fail(&self, reason: String, log: bool) {
        self.broken.store(true, Ordering::Release);
        let first = self.down.set(reason.clone()).is_ok();
        if first && log {
            tracing::warn!(peer = %self.peer, "connection failed: {reason}");
        }
        // Unblocks the reader (its read returns) and the writer (its write fails).
        let _ = self.stream.shutdown(Shutdown::Both);
        self.notify_writer();
        if first {
            self.wake_all();
        }
    }

    /// Closes the connection from this side: what is queued is still written, then the writer
    /// ends; the ends report `reason` from now on.
    pub(crate) fn close(&self, reason: String) {
        if self.down.set(reason).is_ok() {
            self.wake_all();
        }
        lock(&self.out).closing = true;
        self.notify_writer();
    }

    fn notify_writer(&self) {
        let _guard = lock(&self.out);
        self.out_cv.notify_all();
        self.room_cv.notify_all();
    }

    /// Wakes every task waiting on a channel, so that it sees the connection is down (the
    /// ends check [`Link::down`] under the channel's lock, after it is set).
    fn wake_all(&self) {
        let inputs: Vec<_> = lock(&self.inputs).values().cloned().collect();
        for chan in inputs {
            let mut st = lock(&chan.state);
            if std::mem::take(&mut st.waiting) {
                if let Some(w) = &st.waker {
                    w.wake();
                }
            }
        }
        let outputs: Vec<_> = lock(&self.outputs).values().cloned().collect();
        for chan in outputs {
            let mut st = lock(&chan.state);
            if std::mem::take(&mut st.waiting) {
                if let Some(w) = &st.waker {
                    w.wake();
                }
            }
        }
    }

    /// Queues a frame for the writer.
    pub(crate) fn enqueue(&self, frame: OutFrame) {
        let mut out = lock(&self.out);
        if frame.control {
            out.control += 1;
        }
        out.frames.push_back(frame);
        if out.writer_idle {
            self.out_cv.notify_one();
        }
    }

    /// Grants `n` more credits on `chan` to the peer (sent by the writer, merged with others
    /// granted before it runs).
    pub(crate) fn grant(&self, chan: &Arc<InChan>, n: u32) {
        if chan.ungranted.fetch_add(n, Ordering::AcqRel) == 0 {
            let mut out = lock(&self.out);
            out.grants.push(chan.clone());
            if out.writer_idle {
                self.out_cv.notify_one();
            }
        }
    }

    /// The input channel `id`, made on first use (the peer may send an end marker before this
    /// side opens the channel). `None`: the connection has as many channels as it may.
    pub(crate) fn input(&self, id: u32) -> Option<Arc<InChan>> {
        let mut inputs = lock(&self.inputs);
        if let Some(chan) = inputs.get(&id) {
            return Some(chan.clone());
        }
        if inputs.len() >= self.config.max_channels {
            return None;
        }
        let chan = Arc::new(InChan {
            id,
            state: Mutex::new(InState::default()),
            ungranted: AtomicU32::new(0),
        });
        inputs.insert(id, chan.clone());
        Some(chan)
    }

    /// The output channel `id`, made on first use (credits may arrive before this side opens
    /// it). `None`: the connection has as many channels as it may.
    pub(crate) fn output(&self, id: u32) -> Option<Arc<OutChan>> {
        let mut outputs = lock(&self.outputs);
        if let Some(chan) = outputs.get(&id) {
            return Some(chan.clone());
        }
        if outputs.len() >= self.config.max_channels {
            return None;
        }
        let chan = Arc::new(OutChan {
            id,
            state: Mutex::new(OutState::default()),
        });
        outputs.insert(id, chan.clone());
        Some(chan)
    }

    /// The input channels that have not received their end marker (opened, or known from a
    /// frame), in order.
    pub(crate) fn unended_inputs(&self) -> Vec<u32> {
        let chans: Vec<_> = lock(&self.inputs).values().cloned().collect();
        let mut open: Vec<u32> = chans
            .iter()
            .filter(|c| {
                let st = lock(&c.state);
                st.opened && !st.end_received
            })
            .map(|c| c.id)
            .collect();
        open.sort_unstable();
        open
    }
}

/// What arrived on an input channel, in order.
pub(crate) enum Inbound {
    /// A data frame's payload, decoded by the reading task.
    Data(Vec<u8>),
    Barrier(u64),
    End,
    /// An error the peer reported on this channel.
    Error(String),
}

/// One logical channel into this process.
pub(crate) struct InChan {
    pub id: u32,
    pub state: Mutex<InState>,
    /// Credits granted by the reading task and not yet sent by the writer.
    pub ungranted: AtomicU32,
}

#[derive(Default)]
pub(crate) struct InState {
    /// Opened by this side (else known only from the peer's frames).
    pub opened: bool,
    /// Data frames the inbox may hold: the credits granted at first.
    pub capacity: u32,
    pub frames: VecDeque<Inbound>,
    pub queued_data: usize,
    pub queued_other: usize,
    pub max_queued: usize,
    /// Credits granted in all, and data frames received in all: the peer may send a data frame
    /// only while `received < granted`.
    pub granted: u64,
    pub received: u64,
    /// Batches taken from the inbox whose room is not granted to the peer yet.
    pub unannounced: u32,
    pub received_bytes: u64,
    pub end_received: bool,
    /// The reading task found the inbox empty and waits for a frame.
    pub waiting: bool,
    pub waker: Option<RemoteWaker>,
    /// Payload buffers handed back by the reading task, reused for the next frames.
    pub free: Vec<Vec<u8>>,
}

impl InChan {
    /// A buffer for the payload of a data frame the peer is sending, if it holds a credit for
    /// it (else the peer broke the protocol).
    pub(crate) fn buffer_for_data(&self) -> Result<Vec<u8>, String> {
        let mut st = lock(&self.state);
        if st.received >= st.granted {
            return Err(format!(
                "protocol violation: a data frame on channel {} without credit ({} granted, {} \
                 received)",
                self.id, st.granted, st.received
            ));
        }
        st.received += 1;
        Ok(st.free.pop().unwrap_or_default())
    }

    /// Puts what arrived in the inbox and wakes the reading task if it waits.
    pub(crate) fn push(&self, frame: Inbound) -> Result<(), String> {
        let mut st = lock(&self.state);
        match &frame {
            Inbound::Data(bytes) => {
                st.received_bytes += (super::frame::HEADER_LEN + bytes.len()) as u64;
                st.queued_data += 1;
                st.max_queued = st.max_queued.max(st.queued_data);
            }
            _ if st.end_received => {
                return Err(format!(
                    "protocol violation: a frame on channel {} after its end of stream",
                    self.id
                ))
            }
            _ if st.queued_other >= MAX_UNCREDITED_INBOX => {
                return Err(format!(
                    "protocol violation: more than {MAX_UNCREDITED_INBOX} barriers, ends and \
                     errors queued on channel {}",
                    self.id
                ))
            }
            other => {
                st.queued_other += 1;
                st.end_received |= matches!(other, Inbound::End);
            }
        }
        st.frames.push_back(frame);
        if std::mem::take(&mut st.waiting) {
            if let Some(w) = &st.waker {
                w.wake();
            }
        }
        Ok(())
    }

    pub(crate) fn stats(&self) -> ChannelStats {
        let st = lock(&self.state);
        ChannelStats {
            data_frames: st.received,
            data_bytes: st.received_bytes,
            credits: u32::try_from(st.granted - st.received).unwrap_or(u32::MAX),
            credits_total: st.granted,
            max_queued: st.max_queued,
            capacity: st.capacity,
            credit_waits: 0,
        }
    }
}

/// One logical channel out of this process.
pub(crate) struct OutChan {
    pub id: u32,
    pub state: Mutex<OutState>,
}

#[derive(Default)]
pub(crate) struct OutState {
    pub opened: bool,
    /// Data frames this side may send now.
    pub credits: u32,
    pub credits_total: u64,
    pub data_sent: u64,
    pub data_bytes: u64,
    /// Frames at the writer, not yet written.
    pub queued_data: usize,
    pub queued_other: usize,
    pub max_queued: usize,
    /// The sending task found no credit (or no room) and waits.
    pub waiting: bool,
    /// Times it found no credit for a batch.
    pub credit_waits: u64,
    pub waker: Option<RemoteWaker>,
    /// Frame buffers the writer is done with, reused for the next frames.
    pub free: Vec<Vec<u8>>,
}

impl OutChan {
    /// Credits from the peer; wakes the sending task if it waits for them.
    pub(crate) fn add_credits(&self, n: u32, max: u32) -> Result<(), String> {
        let mut st = lock(&self.state);
        let held = st.credits.checked_add(n).filter(|&h| h <= max);
        let Some(held) = held else {
            return Err(format!(
                "protocol violation: the peer granted {n} credits on channel {} holding {}, more \
                 than the limit of {max}",
                self.id, st.credits
            ));
        };
        st.credits = held;
        st.credits_total += u64::from(n);
        if n > 0 && std::mem::take(&mut st.waiting) {
            if let Some(w) = &st.waker {
                w.wake();
            }
        }
        Ok(())
    }

    /// The writer wrote one of this channel's frames: keeps its buffer for reuse and wakes the
    /// sending task if it waits for room.
    pub(crate) fn written(&self, mut buf: Vec<u8>, data: bool) {
        let mut st = lock(&self.state);
        if data {
            st.data_bytes += buf.len() as u64;
            st.queued_data = st.queued_data.saturating_sub(1);
        } else {
            st.queued_other = st.queued_other.saturating_sub(1);
        }
        // Enough buffers for every credit the channel may hold at once, and one being filled.
        if buf.capacity() > 0 && st.free.len() <= st.credits as usize + st.queued_data + 1 {
            buf.clear();
            st.free.push(buf);
        }
        if !data && std::mem::take(&mut st.waiting) {
            if let Some(w) = &st.waker {
                w.wake();
            }
        }
    }

    pub(crate) fn stats(&self) -> ChannelStats {
        let st = lock(&self.state);
        ChannelStats {
            data_frames: st.data_sent,
            data_bytes: st.data_bytes,
            credits: st.credits,
            credits_total: st.credits_total,
            max_queued: st.max_queued,
            capacity: 0,
            credit_waits: st.credit_waits,
        }
    }
}
