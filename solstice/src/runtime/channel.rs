//! The local channel: a bounded channel of record batches between two tasks of one process, and
//! the wake-ups that replace blocking: a full channel parks the sender's task until the reader
//! takes a batch; an empty one parks the reader until a sender delivers.
//!
//! It is one implementation of the [`Input`] and [`Output`] ends of [`super::message`].

use std::sync::atomic::{fence, AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use crossbeam_channel::{TryRecvError, TrySendError};

use super::message::{Input, Msg, Output};
use crate::core::task::{Cx, TaskId};
use crate::error::{Error, Result};

/// Wake-up bookkeeping shared by both ends of a channel.
struct Shared {
    reader: TaskId,
    blocked: Mutex<Vec<TaskId>>,
    has_blocked: AtomicBool,
}

/// The sending end, one clone per upstream subtask.
pub(crate) struct ChanTx<T> {
    tx: crossbeam_channel::Sender<Msg<T>>,
    /// Emptied batch buffers handed back by the reader, reused instead of allocating.
    free: crossbeam_channel::Receiver<Vec<T>>,
    shared: Arc<Shared>,
}

impl<T> Clone for ChanTx<T> {
    fn clone(&self) -> Self {
        ChanTx {
            tx: self.tx.clone(),
            free: self.free.clone(),
            shared: self.shared.clone(),
        }
    }
}

/// The receiving end, owned by the reading task.
pub(crate) struct ChanRx<T> {
    rx: crossbeam_channel::Receiver<Msg<T>>,
    free: crossbeam_channel::Sender<Vec<T>>,
    shared: Arc<Shared>,
}

/// A channel of `capacity` batches read by task `reader`.
pub(crate) fn channel<T>(capacity: usize, reader: TaskId) -> (ChanTx<T>, ChanRx<T>) {
    let (tx, rx) = crossbeam_channel::bounded(capacity);
    let (free_tx, free_rx) = crossbeam_channel::bounded(capacity + 2);
    let shared = Arc::new(Shared {
        reader,
        blocked: Mutex::new(Vec::new()),
        has_blocked: AtomicBool::new(false),
    });
    (
        ChanTx {
            tx,
            free: free_rx,
            shared: shared.clone(),
        },
        ChanRx {
            rx,
            free: free_tx,
            shared,
        },
    )
}

impl<T: Send> Output<T> for ChanTx<T> {
    fn buffer(&mut self, capacity: usize) -> Vec<T> {
        self.free
            .try_recv()
            .unwrap_or_else(|_| Vec::with_capacity(capacity))
    }

    /// Sends `msg`, or hands it back when the channel is full (the task is then registered to be
    /// woken when the reader takes a batch).
    fn try_send(&mut self, msg: Msg<T>, cx: &mut Cx<'_>) -> Result<Option<Msg<T>>> {
        let msg = match self.tx.try_send(msg) {
            Ok(()) => {
                cx.waker.wake(self.shared.reader);
                return Ok(None);
            }
            Err(TrySendError::Full(m)) => m,
            Err(TrySendError::Disconnected(_)) => {
                return Err(Error::Internal("downstream task went away".into()))
            }
        };
        {
            let mut blocked = self.shared.blocked.lock().map_err(|_| poisoned())?;
            if !blocked.contains(&cx.task) {
                blocked.push(cx.task);
            }
            self.shared.has_blocked.store(true, Ordering::SeqCst);
        }
        fence(Ordering::SeqCst);
        // The reader may have taken a batch between the failed send and the registration above.
        match self.tx.try_send(msg) {
            Ok(()) => {
                cx.waker.wake(self.shared.reader);
                Ok(None)
            }
            Err(TrySendError::Full(m)) => Ok(Some(m)),
            Err(TrySendError::Disconnected(_)) => {
                Err(Error::Internal("downstream task went away".into()))
            }
        }
    }
}

fn poisoned() -> Error {
    Error::Internal("channel lock poisoned".into())
}

impl<T: Send> Input<T> for ChanRx<T> {
    /// Hands an emptied batch buffer back to the senders (dropped when enough are waiting).
    fn recycle(&mut self, mut buffer: Vec<T>) {
        if buffer.capacity() > 0 {
            buffer.clear();
            let _ = self.free.try_send(buffer);
        }
    }

    /// The next message, or `None` when the channel is empty.
    fn try_recv(&mut self, cx: &mut Cx<'_>) -> Result<Option<Msg<T>>> {
        match self.rx.try_recv() {
            Ok(msg) => {
                if matches!(msg, Msg::Data(_)) {
                    cx.counters.batch_received();
                }
                fence(Ordering::SeqCst);
                if self.shared.has_blocked.swap(false, Ordering::SeqCst) {
                    let woken =
                        std::mem::take(&mut *self.shared.blocked.lock().map_err(|_| poisoned())?);
                    for t in woken {
                        cx.waker.wake(t);
                    }
                }
                Ok(Some(msg))
            }
            Err(TryRecvError::Empty) => Ok(None),
            Err(TryRecvError::Disconnected) => Err(Error::Internal(
                "all upstream tasks went away before end of stream".into(),
            )),
        }
    }
}
