//! The typed ends of a logical channel: [`RemoteOutput`] and [`RemoteInput`] implement the
//! runtime's [`Output`] and [`Input`], so that a task sends to, or reads from, a task of
//! another process exactly as it does a local one.
//!
//! Batches are encoded by the sending task and decoded by the reading task (both on pool
//! threads), through the one codec module; the socket threads only move bytes. Buffers are
//! reused on both sides: a batch costs no allocation once the first few went through.

use std::marker::PhantomData;
use std::sync::Arc;

use serde::de::DeserializeOwned;
use serde::Serialize;

use super::frame::{begin_frame, finish_frame, Kind};
use super::link::{lock, ChannelStats, InChan, Inbound, Link, OutChan, OutFrame, MAX_UNCREDITED};
use crate::core::task::Cx;
use crate::error::{Error, Result};
use crate::runtime::message::{Input, Msg, Output};
use crate::state::codec;

/// What decoding one batch may claim (string and byte lengths): a frame's payload is at most
/// 1 GiB ([`super::MAX_FRAME_LIMIT`]), and a length that claims more than the frame holds fails
/// before any allocation for it.
const DECODE_LIMIT: usize = super::MAX_FRAME_LIMIT;

/// The sending end of a logical channel to a task of another process.
///
/// A data batch needs a credit (room the reader granted); without one, [`Output::try_send`]
/// hands the batch back and the sending task is woken when credit arrives. Barriers and end
/// markers need none.
pub(crate) struct RemoteOutput<T> {
    link: Arc<Link>,
    chan: Arc<OutChan>,
    /// The last batch sent, emptied, for [`Output::buffer`].
    spare: Option<Vec<T>>,
    _records: PhantomData<fn(T)>,
}

impl<T> RemoteOutput<T> {
    pub(super) fn new(link: Arc<Link>, chan: Arc<OutChan>) -> Self {
        RemoteOutput {
            link,
            chan,
            spare: None,
            _records: PhantomData,
        }
    }

    /// The channel's counters.
    pub(crate) fn stats(&self) -> ChannelStats {
        self.chan.stats()
    }

    fn error(&self, reason: &str) -> Error {
        self.link
            .error(format!("channel {}: {reason}", self.chan.id))
    }

    /// Tells the reader of this channel that its stream failed here (`message`); its
    /// [`Input::try_recv`] returns an error naming this process. Needs no credit.
    pub(crate) fn fail(&mut self, message: &str) -> Result<()> {
        let mut buf = lock(&self.chan.state).free.pop().unwrap_or_default();
        buf.clear();
        let start = begin_frame(&mut buf);
        let text = message.as_bytes();
        buf.extend_from_slice(&text[..text.len().min(64 << 10)]);
        finish_frame(
            &mut buf,
            start,
            Kind::Error,
            self.chan.id,
            self.link.config.max_frame_bytes,
        )
        .map_err(|e| self.error(&e.to_string()))?;
        {
            let mut st = lock(&self.chan.state);
            if let Some(reason) = self.link.down() {
                return Err(self.error(reason));
            }
            st.queued_other += 1;
        }
        self.link.enqueue(OutFrame {
            chan: Some(self.chan.clone()),
            buf,
            data: false,
            control: false,
        });
        Ok(())
    }
}

impl<T: Serialize + Send> Output<T> for RemoteOutput<T> {
    fn buffer(&mut self, capacity: usize) -> Vec<T> {
        self.spare
            .take()
            .unwrap_or_else(|| Vec::with_capacity(capacity))
    }

    /// Encodes and queues `msg` for the writer, or hands it back: a batch when the channel holds
    /// no credit, a barrier or end marker when [`MAX_UNCREDITED`] of them wait at the writer.
    /// The task is then woken when that changes.
    fn try_send(&mut self, msg: Msg<T>, cx: &mut Cx<'_>) -> Result<Option<Msg<T>>> {
        let data = matches!(msg, Msg::Data(_));
        let mut buf = {
            let mut st = lock(&self.chan.state);
            if let Some(reason) = self.link.down() {
                return Err(self.error(reason));
            }
            let room = if data {
                st.credits > 0
            } else {
                st.queued_other < MAX_UNCREDITED
            };
            if !room {
                st.waiting = true;
                if data {
                    st.credit_waits += 1;
                }
                return Ok(Some(msg));
            }
            if data {
                st.credits -= 1;
                st.data_sent += 1;
                st.queued_data += 1;
                st.max_queued = st.max_queued.max(st.queued_data);
            } else {
                st.queued_other += 1;
            }
            st.free.pop().unwrap_or_default()
        };
        buf.clear();
        let start = begin_frame(&mut buf);
        let (kind, encoded) = match msg {
            Msg::Data(mut batch) => {
                let encoded = codec::encode_batch_into(&batch[..], &mut buf);
                batch.clear();
                self.spare = Some(batch);
                (Kind::Data, encoded)
            }
            Msg::Barrier(id) => {
                buf.extend_from_slice(&id.to_le_bytes());
                (Kind::Barrier, Ok(()))
            }
            Msg::End => (Kind::End, Ok(())),
        };
        let framed = encoded
            .map_err(|e| self.error(&format!("cannot encode a batch: {e}")))
            .and_then(|()| {
                finish_frame(
                    &mut buf,
                    start,
                    kind,
                    self.chan.id,
                    self.link.config.max_frame_bytes,
                )
                .map_err(|e| self.error(&format!("cannot send: {e}")))
            });
        if let Err(e) = framed {
            // The frame never reaches the writer: give back what was taken for it.
            let mut st = lock(&self.chan.state);
            if data {
                st.credits += 1;
                st.data_sent -= 1;
                st.queued_data -= 1;
            } else {
                st.queued_other -= 1;
            }
            return Err(e);
        }
        self.link.enqueue(OutFrame {
            chan: Some(self.chan.clone()),
            buf,
            data,
            control: false,
        });
        if data {
            // The batch left this process's channels (its sender counted it as in flight); the
            // connection's credits bound it from here.
            cx.counters.batch_received();
        }
        Ok(None)
    }
}

/// The reading end of a logical channel from a task of another process.
///
/// Its inbox holds at most as many batches as the credits it granted; taking batches grants
/// as many more (announced a quarter of the capacity at a time). When the inbox is empty, [`Input::try_recv`] returns `None` and the reading task is
/// woken when a frame arrives (or the connection fails).
pub(crate) struct RemoteInput<T> {
    link: Arc<Link>,
    chan: Arc<InChan>,
    /// The payload buffer of the last batch decoded, handed back to the inbox on the next call.
    held: Option<Vec<u8>>,
    /// An emptied batch from [`Input::recycle`], decoded into next.
    spare: Option<Vec<T>>,
}

impl<T> RemoteInput<T> {
    pub(super) fn new(link: Arc<Link>, chan: Arc<InChan>) -> Self {
        RemoteInput {
            link,
            chan,
            held: None,
            spare: None,
        }
    }

    /// The channel's counters.
    pub(crate) fn stats(&self) -> ChannelStats {
        self.chan.stats()
    }

    fn error(&self, reason: &str) -> Error {
        self.link
            .error(format!("channel {}: {reason}", self.chan.id))
    }
}

impl<T: DeserializeOwned + Send> Input<T> for RemoteInput<T> {
    fn try_recv(&mut self, _cx: &mut Cx<'_>) -> Result<Option<Msg<T>>> {
        let mut grant = 0;
        let frame = {
            let mut st = lock(&self.chan.state);
            if let Some(buf) = self.held.take() {
                if st.free.len() <= st.capacity as usize {
                    st.free.push(buf);
                }
            }
            match st.frames.pop_front() {
                Some(frame) => {
                    if matches!(frame, Inbound::Data(_)) {
                        st.queued_data -= 1;
                        // The inbox has room for one more batch: announced together with others
                        // once a quarter of the capacity is free, which spares the peer a wake-up
                        // per batch. It cannot stall the sender: when the sender has no credit
                        // left, the inbox and the unannounced room add up to the capacity, so
                        // reading the inbox announces them.
                        st.unannounced += 1;
                        if st.unannounced >= (st.capacity / 4).max(1) {
                            grant = std::mem::take(&mut st.unannounced);
                            st.granted += u64::from(grant);
                        }
                    } else {
                        st.queued_other -= 1;
                    }
                    frame
                }
                None => {
                    if let Some(reason) = self.link.down() {
                        return Err(self.error(reason));
                    }
                    st.waiting = true;
                    return Ok(None);
                }
            }
        };
        match frame {
            Inbound::Data(bytes) => {
                if grant > 0 {
                    self.link.grant(&self.chan, grant);
                }
                let mut batch = self.spare.take().unwrap_or_default();
                batch.clear();
                let decoded = codec::decode_append::<T, DECODE_LIMIT>(&bytes, &mut batch);
                self.held = Some(bytes);
                decoded.map_err(|e| self.error(&format!("cannot decode a batch: {e}")))?;
                Ok(Some(Msg::Data(batch)))
            }
            Inbound::Barrier(id) => Ok(Some(Msg::Barrier(id))),
            Inbound::End => Ok(Some(Msg::End)),
            Inbound::Error(message) => Err(self.error(&format!("the peer reported: {message}"))),
        }
    }

    fn recycle(&mut self, mut buffer: Vec<T>) {
        if buffer.capacity() > 0 {
            buffer.clear();
            self.spare = Some(buffer);
        }
    }
}
