//! Bounded channels of record batches between tasks, the chain tails that write to them, and the
//! wake-ups that replace blocking: a full channel parks the sender's task until the reader takes a
//! batch; an empty one parks the reader until a sender delivers.

use std::collections::VecDeque;
use std::marker::PhantomData;
use std::sync::atomic::{fence, AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use crossbeam_channel::{TryRecvError, TrySendError};

use crate::core::graph::{InputKit, OutputKit, Partitioning, SubtaskCtx};
use crate::core::task::{BatchSink, Cx, Task, TaskId};
use crate::core::{downcast, AnyBox, Data};
use crate::error::{Error, Result};
use crate::operators::Keyed;
use crate::runtime::tasks::InputTask;
use crate::state::keygroups::{group_of_hash, owner_of};

/// What travels on a channel.
pub(crate) enum Msg<T> {
    /// A batch of records.
    Data(Vec<T>),
    /// Checkpoint barrier: everything before it belongs to checkpoint `n`, everything after to
    /// the next one.
    Barrier(u64),
    /// The sender will send nothing more.
    End,
}

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

impl<T: Send> ChanTx<T> {
    /// An empty buffer for the next batch: a recycled one, or a new one of `capacity`.
    fn buffer(&self, capacity: usize) -> Vec<T> {
        self.free
            .try_recv()
            .unwrap_or_else(|_| Vec::with_capacity(capacity))
    }

    /// Sends `msg`, or hands it back when the channel is full (the task is then registered to be
    /// woken when the reader takes a batch).
    pub(crate) fn try_send(&self, msg: Msg<T>, cx: &mut Cx<'_>) -> Result<Option<Msg<T>>> {
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

impl<T: Send> ChanRx<T> {
    /// Hands an emptied batch buffer back to the senders (dropped when enough are waiting).
    pub(crate) fn recycle(&self, mut buffer: Vec<T>) {
        if buffer.capacity() > 0 {
            buffer.clear();
            let _ = self.free.try_send(buffer);
        }
    }

    /// The next message, or `None` when the channel is empty.
    pub(crate) fn try_recv(&self, cx: &mut Cx<'_>) -> Result<Option<Msg<T>>> {
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

/// Chooses the destination of each record of a hash-partitioned stream.
pub(crate) trait Router<T>: Send {
    /// True when whole batches can be routed without looking at records.
    const BY_BATCH: bool;
    /// Destination of `item` (only called when `BY_BATCH` is false).
    fn route(&self, item: &T) -> usize;
}

/// Routes whole batches (forward and rebalance).
pub(crate) struct ByBatch;

impl<T> Router<T> for ByBatch {
    const BY_BATCH: bool = true;
    fn route(&self, _: &T) -> usize {
        0
    }
}

/// Routes keyed records to the subtask owning their key group.
pub(crate) struct ByKeyGroup {
    owner: Vec<u32>,
    key_groups: usize,
}

impl<K: Send, V: Send> Router<Keyed<K, V>> for ByKeyGroup {
    const BY_BATCH: bool = false;
    #[inline]
    fn route(&self, item: &Keyed<K, V>) -> usize {
        self.owner[group_of_hash(item.hash, self.key_groups)] as usize
    }
}

/// The tail of a chain: buffers records into batches per destination and sends them.
pub(crate) struct ChannelOut<T, R> {
    txs: Vec<ChanTx<T>>,
    bufs: Vec<Vec<T>>,
    pending: Vec<VecDeque<Msg<T>>>,
    router: R,
    next: usize,
    batch_size: usize,
}

impl<T: Data, R: Router<T>> ChannelOut<T, R> {
    fn ship(&mut self, dest: usize, batch: Vec<T>, cx: &mut Cx<'_>) -> Result<()> {
        cx.counters.batch_sent();
        self.send(dest, Msg::Data(batch), cx)
    }

    fn send(&mut self, dest: usize, msg: Msg<T>, cx: &mut Cx<'_>) -> Result<()> {
        if self.pending[dest].is_empty() {
            if let Some(back) = self.txs[dest].try_send(msg, cx)? {
                self.pending[dest].push_back(back);
            }
        } else {
            self.pending[dest].push_back(msg);
        }
        Ok(())
    }
}

impl<T: Data, R: Router<T>> BatchSink<T> for ChannelOut<T, R> {
    fn push(&mut self, batch: &mut Vec<T>, cx: &mut Cx<'_>) -> Result<()> {
        // With a single destination, routing each record would only copy it.
        if R::BY_BATCH || self.txs.len() == 1 {
            let dest = self.next;
            let fresh = |out: &Self| out.txs[dest].buffer(out.batch_size);
            if self.bufs[dest].is_empty() && batch.len() * 2 >= self.batch_size {
                // A batch of useful size travels as is, without copying records.
                let full = std::mem::replace(batch, fresh(self));
                self.next = (self.next + 1) % self.txs.len();
                return self.ship(dest, full, cx);
            }
            self.bufs[dest].append(batch);
            if self.bufs[dest].len() >= self.batch_size {
                let fresh = fresh(self);
                let full = std::mem::replace(&mut self.bufs[dest], fresh);
                self.next = (self.next + 1) % self.txs.len();
                self.ship(dest, full, cx)?;
            }
            return Ok(());
        }
        for item in batch.drain(..) {
            let dest = self.router.route(&item);
            self.bufs[dest].push(item);
            if self.bufs[dest].len() >= self.batch_size {
                let fresh = self.txs[dest].buffer(self.batch_size);
                let full = std::mem::replace(&mut self.bufs[dest], fresh);
                self.ship(dest, full, cx)?;
            }
        }
        Ok(())
    }

    fn flush_partial(&mut self, cx: &mut Cx<'_>) -> Result<()> {
        for dest in 0..self.bufs.len() {
            if !self.bufs[dest].is_empty() {
                let fresh = self.txs[dest].buffer(self.batch_size);
                let part = std::mem::replace(&mut self.bufs[dest], fresh);
                self.ship(dest, part, cx)?;
            }
        }
        Ok(())
    }

    fn try_flush(&mut self, cx: &mut Cx<'_>) -> Result<bool> {
        let mut all = true;
        for dest in 0..self.pending.len() {
            while let Some(msg) = self.pending[dest].pop_front() {
                if let Some(back) = self.txs[dest].try_send(msg, cx)? {
                    self.pending[dest].push_front(back);
                    all = false;
                    break;
                }
            }
        }
        Ok(all)
    }

    fn end(&mut self, cx: &mut Cx<'_>) -> Result<()> {
        self.flush_partial(cx)?;
        for dest in 0..self.txs.len() {
            self.send(dest, Msg::End, cx)?;
        }
        Ok(())
    }

    fn checkpoint(&mut self, id: u64, cx: &mut Cx<'_>) -> Result<()> {
        self.flush_partial(cx)?;
        for dest in 0..self.txs.len() {
            self.send(dest, Msg::Barrier(id), cx)?;
        }
        Ok(())
    }
}

/// Copies every batch to several downstream chains.
pub(crate) struct FanOut<T> {
    outs: Vec<Box<dyn BatchSink<T>>>,
}

impl<T: Data> BatchSink<T> for FanOut<T> {
    fn push(&mut self, batch: &mut Vec<T>, cx: &mut Cx<'_>) -> Result<()> {
        let (last, rest) = self
            .outs
            .split_last_mut()
            .ok_or_else(|| Error::Internal("fan-out without outputs".into()))?;
        for out in rest {
            let mut copy = batch.clone();
            out.push(&mut copy, cx)?;
        }
        last.push(batch, cx)
    }

    fn flush_partial(&mut self, cx: &mut Cx<'_>) -> Result<()> {
        self.outs.iter_mut().try_for_each(|o| o.flush_partial(cx))
    }

    fn try_flush(&mut self, cx: &mut Cx<'_>) -> Result<bool> {
        let mut all = true;
        for o in &mut self.outs {
            all &= o.try_flush(cx)?;
        }
        Ok(all)
    }

    fn end(&mut self, cx: &mut Cx<'_>) -> Result<()> {
        self.outs.iter_mut().try_for_each(|o| o.end(cx))
    }

    fn checkpoint(&mut self, id: u64, cx: &mut Cx<'_>) -> Result<()> {
        self.outs.iter_mut().try_for_each(|o| o.checkpoint(id, cx))
    }
}

/// Input side of a stage whose input type is `T`.
pub(crate) struct Input<T>(pub(crate) PhantomData<fn() -> T>);

impl<T: Data> InputKit for Input<T> {
    fn channel(&self, capacity: usize, reader: TaskId) -> (AnyBox, AnyBox) {
        let (tx, rx) = channel::<T>(capacity, reader);
        (Box::new(tx), Box::new(rx))
    }

    fn task(&self, receivers: Vec<AnyBox>, chain: AnyBox) -> Result<Box<dyn Task>> {
        let inputs = receivers
            .into_iter()
            .map(|r| downcast::<ChanRx<T>>(r, "an input channel"))
            .collect::<Result<Vec<_>>>()?;
        let chain = downcast::<Box<dyn BatchSink<T>>>(chain, "an input chain")?;
        Ok(Box::new(InputTask::new(inputs, chain)))
    }
}

fn senders<T: Data>(senders: Vec<AnyBox>) -> Result<Vec<ChanTx<T>>> {
    senders
        .into_iter()
        .map(|s| downcast::<ChanTx<T>>(s, "an output channel"))
        .collect()
}

fn fan_out<T: Data>(outs: Vec<AnyBox>) -> Result<AnyBox> {
    let outs = outs
        .into_iter()
        .map(|o| downcast::<Box<dyn BatchSink<T>>>(o, "a fan-out"))
        .collect::<Result<Vec<_>>>()?;
    let sink: Box<dyn BatchSink<T>> = Box::new(FanOut { outs });
    Ok(Box::new(sink))
}

fn channel_out<T: Data, R: Router<T> + 'static>(
    txs: Vec<ChanTx<T>>,
    router: R,
    ctx: &SubtaskCtx,
) -> AnyBox {
    let n = txs.len();
    let sink: Box<dyn BatchSink<T>> = Box::new(ChannelOut {
        bufs: (0..n).map(|_| Vec::new()).collect(),
        pending: (0..n).map(|_| VecDeque::new()).collect(),
        txs,
        router,
        // Spread rebalanced batches of different subtasks over different readers.
        next: ctx.subtask % n.max(1),
        batch_size: ctx.batch_size,
    });
    Box::new(sink)
}

/// Output side of a stage emitting plain records of type `T`.
pub(crate) struct Output<T>(pub(crate) PhantomData<fn() -> T>);

impl<T: Data> OutputKit for Output<T> {
    fn channel_out(&self, txs: Vec<AnyBox>, how: Partitioning, ctx: &SubtaskCtx) -> Result<AnyBox> {
        let txs = senders::<T>(txs)?;
        match how {
            Partitioning::Forward | Partitioning::Rebalance => Ok(channel_out(txs, ByBatch, ctx)),
            Partitioning::Hash => Err(Error::Internal(format!(
                "stage `{}` is not keyed",
                ctx.name
            ))),
        }
    }

    fn fan_out(&self, outs: Vec<AnyBox>) -> Result<AnyBox> {
        fan_out::<T>(outs)
    }
}

/// Output side of a key_by stage: records are routed by key group.
pub(crate) struct KeyedOutput<K, V>(pub(crate) PhantomData<fn() -> (K, V)>);

impl<K: Data, V: Data> OutputKit for KeyedOutput<K, V> {
    fn channel_out(&self, txs: Vec<AnyBox>, how: Partitioning, ctx: &SubtaskCtx) -> Result<AnyBox> {
        if how != Partitioning::Hash {
            return Err(Error::Internal(format!(
                "keyed stage `{}` must feed a stateful stage",
                ctx.name
            )));
        }
        let txs = senders::<Keyed<K, V>>(txs)?;
        let p = txs.len();
        let owner = (0..ctx.key_groups)
            .map(|kg| owner_of(kg, ctx.key_groups, p) as u32)
            .collect();
        Ok(channel_out(
            txs,
            ByKeyGroup {
                owner,
                key_groups: ctx.key_groups,
            },
            ctx,
        ))
    }

    fn fan_out(&self, outs: Vec<AnyBox>) -> Result<AnyBox> {
        fan_out::<Keyed<K, V>>(outs)
    }
}
