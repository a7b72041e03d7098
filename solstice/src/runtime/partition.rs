//! The tail of a chain that sends to other tasks: records are batched per destination and routed
//! by a partitioner (whole batches for forward and rebalance edges, by key group for keyed ones),
//! and a fan-out copies batches to several such tails.
//!
//! The tail writes to any [`Output`] (a local channel, later a connection to another process).

use std::collections::VecDeque;

use super::message::{Msg, Output};
use crate::core::keyed::Keyed;
use crate::core::task::{BatchSink, Cx};
use crate::core::Data;
use crate::error::{Error, Result};
use crate::state::keygroups::group_of_hash;

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
    /// The destination of each key group.
    pub(crate) owner: Vec<u32>,
    pub(crate) key_groups: usize,
}

impl<K: Send, V: Send> Router<Keyed<K, V>> for ByKeyGroup {
    const BY_BATCH: bool = false;
    #[inline]
    fn route(&self, item: &Keyed<K, V>) -> usize {
        self.owner[group_of_hash(item.hash, self.key_groups)] as usize
    }
}

/// The tail of a chain: buffers records into batches per destination and sends them.
pub(crate) struct ChannelOut<T, R, O> {
    txs: Vec<O>,
    bufs: Vec<Vec<T>>,
    pending: Vec<VecDeque<Msg<T>>>,
    router: R,
    next: usize,
    batch_size: usize,
}

impl<T: Data, R: Router<T>, O: Output<T>> ChannelOut<T, R, O> {
    /// A tail sending to `txs` (one per destination), routing by `router`. Rebalanced batches
    /// start at destination `first`.
    pub(crate) fn new(txs: Vec<O>, router: R, first: usize, batch_size: usize) -> Self {
        let n = txs.len();
        ChannelOut {
            bufs: (0..n).map(|_| Vec::new()).collect(),
            pending: (0..n).map(|_| VecDeque::new()).collect(),
            txs,
            router,
            next: first % n.max(1),
            batch_size,
        }
    }

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

impl<T: Data, R: Router<T>, O: Output<T>> BatchSink<T> for ChannelOut<T, R, O> {
    fn push(&mut self, batch: &mut Vec<T>, cx: &mut Cx<'_>) -> Result<()> {
        // With a single destination, routing each record would only copy it.
        if R::BY_BATCH || self.txs.len() == 1 {
            let dest = self.next;
            if self.bufs[dest].is_empty() && batch.len() * 2 >= self.batch_size {
                // A batch of useful size travels as is, without copying records.
                let fresh = self.txs[dest].buffer(self.batch_size);
                let full = std::mem::replace(batch, fresh);
                self.next = (self.next + 1) % self.txs.len();
                return self.ship(dest, full, cx);
            }
            self.bufs[dest].append(batch);
            if self.bufs[dest].len() >= self.batch_size {
                let fresh = self.txs[dest].buffer(self.batch_size);
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
    pub(crate) outs: Vec<Box<dyn BatchSink<T>>>,
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
