//! Operators: the per-batch loops of map, flat_map, filter, key_by, stateful and sinks.
//!
//! Each operator drains its input batch in a monomorphized loop over the user's function and
//! pushes its output batch to the next operator of the chain: one virtual call per batch, none per
//! record.

use std::marker::PhantomData;

use crate::core::connector::{RunStart, Sink, SinkWriter};
use crate::core::graph::{ErasedOp, ErasedSink, SubtaskCtx};
use crate::core::keyed::{KeyValue, Keyed};
use crate::core::task::{BatchSink, Cx};
use crate::core::{downcast, AnyBox, Data};
use crate::error::{Error, Result};
use crate::state::codec;
use crate::state::keyed::{Key, KeyedState, StateValue};
use crate::state::keygroups::{group_of_hash, hash_key, range_of};
use crate::state::manifest::{key_groups_of_part, subtask_part};

fn boxed<T: 'static>(sink: impl BatchSink<T> + 'static) -> AnyBox {
    let sink: Box<dyn BatchSink<T>> = Box::new(sink);
    Box::new(sink)
}

/// Forwards the chain-control calls of an operator to the next one.
macro_rules! forward_control {
    () => {
        fn flush_partial(&mut self, cx: &mut Cx<'_>) -> Result<()> {
            self.next.flush_partial(cx)
        }
        fn try_flush(&mut self, cx: &mut Cx<'_>) -> Result<bool> {
            self.next.try_flush(cx)
        }
        fn end(&mut self, cx: &mut Cx<'_>) -> Result<()> {
            self.next.end(cx)
        }
        fn checkpoint(&mut self, id: u64, cx: &mut Cx<'_>) -> Result<()> {
            self.next.checkpoint(id, cx)
        }
    };
}

struct MapOp<F, U> {
    f: F,
    stage: usize,
    out: Vec<U>,
    next: Box<dyn BatchSink<U>>,
}

impl<T, U: Send, F: Fn(T) -> U + Send> BatchSink<T> for MapOp<F, U> {
    fn push(&mut self, batch: &mut Vec<T>, cx: &mut Cx<'_>) -> Result<()> {
        cx.stage = self.stage;
        self.out.extend(batch.drain(..).map(&self.f));
        self.next.push(&mut self.out, cx)
    }
    forward_control!();
}

/// The erased form of a map stage.
pub(crate) struct MapNode<F, T, U>(pub(crate) F, pub(crate) PhantomData<fn(T) -> U>);

impl<T: Data, U: Data, F: Fn(T) -> U + Clone + Send + 'static> ErasedOp for MapNode<F, T, U> {
    fn wrap(&self, ctx: &SubtaskCtx, next: AnyBox) -> Result<AnyBox> {
        let next = downcast::<Box<dyn BatchSink<U>>>(next, &ctx.name)?;
        Ok(boxed::<T>(MapOp {
            f: self.0.clone(),
            stage: ctx.stage,
            out: Vec::new(),
            next,
        }))
    }
}

struct FlatMapOp<F, U> {
    f: F,
    stage: usize,
    batch_size: usize,
    out: Vec<U>,
    next: Box<dyn BatchSink<U>>,
}

impl<T, U: Send, I: IntoIterator<Item = U>, F: Fn(T) -> I + Send> BatchSink<T> for FlatMapOp<F, U> {
    fn push(&mut self, batch: &mut Vec<T>, cx: &mut Cx<'_>) -> Result<()> {
        for x in batch.drain(..) {
            cx.stage = self.stage;
            self.out.extend((self.f)(x));
            // Keep batches near the batch size however much a record expands.
            if self.out.len() >= self.batch_size {
                self.next.push(&mut self.out, cx)?;
            }
        }
        self.next.push(&mut self.out, cx)
    }
    forward_control!();
}

/// The erased form of a flat_map stage.
pub(crate) struct FlatMapNode<F, T, I>(pub(crate) F, pub(crate) PhantomData<fn(T) -> I>);

impl<T, I, F> ErasedOp for FlatMapNode<F, T, I>
where
    T: Data,
    I: IntoIterator + 'static,
    I::Item: Data,
    F: Fn(T) -> I + Clone + Send + 'static,
{
    fn wrap(&self, ctx: &SubtaskCtx, next: AnyBox) -> Result<AnyBox> {
        let next = downcast::<Box<dyn BatchSink<I::Item>>>(next, &ctx.name)?;
        Ok(boxed::<T>(FlatMapOp {
            f: self.0.clone(),
            stage: ctx.stage,
            batch_size: ctx.batch_size.max(1),
            out: Vec::new(),
            next,
        }))
    }
}

struct FilterOp<F, T> {
    f: F,
    stage: usize,
    next: Box<dyn BatchSink<T>>,
}

impl<T, F: Fn(&T) -> bool + Send> BatchSink<T> for FilterOp<F, T> {
    fn push(&mut self, batch: &mut Vec<T>, cx: &mut Cx<'_>) -> Result<()> {
        cx.stage = self.stage;
        batch.retain(|x| (self.f)(x));
        self.next.push(batch, cx)
    }
    forward_control!();
}

/// The erased form of a filter stage.
pub(crate) struct FilterNode<F, T>(pub(crate) F, pub(crate) PhantomData<fn(T)>);

impl<T: Data, F: Fn(&T) -> bool + Clone + Send + 'static> ErasedOp for FilterNode<F, T> {
    fn wrap(&self, ctx: &SubtaskCtx, next: AnyBox) -> Result<AnyBox> {
        let next = downcast::<Box<dyn BatchSink<T>>>(next, &ctx.name)?;
        Ok(boxed::<T>(FilterOp {
            f: self.0.clone(),
            stage: ctx.stage,
            next,
        }))
    }
}

struct KeyByOwnedOp<F, K, U> {
    f: F,
    stage: usize,
    out: Vec<Keyed<K, U>>,
    next: Box<dyn BatchSink<Keyed<K, U>>>,
}

impl<V, R, F> BatchSink<V> for KeyByOwnedOp<F, R::Key, R::Value>
where
    R: KeyValue,
    R::Key: Key,
    R::Value: Send,
    F: Fn(V) -> R + Send,
{
    fn push(&mut self, batch: &mut Vec<V>, cx: &mut Cx<'_>) -> Result<()> {
        cx.stage = self.stage;
        for record in batch.drain(..) {
            let (key, value) = (self.f)(record).split();
            let hash = hash_key(&key);
            self.out.push(Keyed { hash, key, value });
        }
        self.next.push(&mut self.out, cx)
    }
    forward_control!();
}

/// The erased form of a key_by stage that takes its record by value.
pub(crate) struct KeyByOwnedNode<F, V, R>(pub(crate) F, pub(crate) PhantomData<fn(V) -> R>);

impl<V, R, F> ErasedOp for KeyByOwnedNode<F, V, R>
where
    V: Data,
    R: KeyValue + 'static,
    R::Key: Key,
    R::Value: Data,
    F: Fn(V) -> R + Clone + Send + 'static,
{
    fn wrap(&self, ctx: &SubtaskCtx, next: AnyBox) -> Result<AnyBox> {
        let next = downcast::<Box<dyn BatchSink<Keyed<R::Key, R::Value>>>>(next, &ctx.name)?;
        Ok(boxed::<V>(KeyByOwnedOp {
            f: self.0.clone(),
            stage: ctx.stage,
            out: Vec::new(),
            next,
        }))
    }
}

/// About how many bytes of keyed state go into one checkpoint part: small state is one part
/// (one file) per subtask; larger state is cut into parts written in parallel.
const STATE_PART_BYTES: usize = 8 << 20;

struct StatefulOp<F, E, K, S, U> {
    f: F,
    /// The end-of-input hook: called for every key held when the input ends.
    on_end: Option<E>,
    /// False when restored from a checkpoint taken after the hook already ran.
    run_on_end: bool,
    stage: usize,
    batch_size: usize,
    key_groups: usize,
    first_group: usize,
    state: KeyedState<K, S>,
    out: Vec<U>,
    next: Box<dyn BatchSink<U>>,
}

impl<F, E, K: Key, S: StateValue, U> StatefulOp<F, E, K, S, U> {
    /// Hands the state to checkpoint `id` in parts of contiguous key-group ranges, each group
    /// encoded on its own, so that a restore with another parallelism can give each group to
    /// its new owner.
    fn snapshot(&self, id: u64, cx: &mut Cx<'_>) -> Result<()> {
        for (name, bytes) in self.state.encode_parts(STATE_PART_BYTES)? {
            cx.checkpoints.part(id, self.stage, name, bytes);
        }
        Ok(())
    }
}

impl<K, S, V, U, I, J, F, E> BatchSink<Keyed<K, V>> for StatefulOp<F, E, K, S, U>
where
    K: Key,
    S: StateValue,
    U: Send + 'static,
    I: IntoIterator<Item = U>,
    J: IntoIterator<Item = U>,
    F: Fn(&mut S, &K, V) -> I + Send + 'static,
    E: Fn(&K, &S) -> J + Send + 'static,
{
    fn push(&mut self, batch: &mut Vec<Keyed<K, V>>, cx: &mut Cx<'_>) -> Result<()> {
        cx.stage = self.stage;
        for record in batch.drain(..) {
            let kg = group_of_hash(record.hash, self.key_groups);
            let slot = kg.wrapping_sub(self.first_group);
            if slot >= self.state.group_count() {
                return Err(Error::Internal(format!(
                    "key group {kg} routed to a subtask that does not own it"
                )));
            }
            let (key, state) = self.state.slot_entry(slot, record.hash, record.key);
            self.out.extend((self.f)(state, key, record.value));
            if self.out.len() >= self.batch_size {
                self.next.push(&mut self.out, cx)?;
                cx.stage = self.stage;
            }
        }
        self.next.push(&mut self.out, cx)
    }

    fn flush_partial(&mut self, cx: &mut Cx<'_>) -> Result<()> {
        self.next.flush_partial(cx)
    }

    fn try_flush(&mut self, cx: &mut Cx<'_>) -> Result<bool> {
        self.next.try_flush(cx)
    }

    fn checkpoint(&mut self, id: u64, cx: &mut Cx<'_>) -> Result<()> {
        self.snapshot(id, cx)?;
        self.next.checkpoint(id, cx)
    }

    fn end(&mut self, cx: &mut Cx<'_>) -> Result<()> {
        cx.stage = self.stage;
        if let (Some(on_end), true) = (&self.on_end, self.run_on_end) {
            // Before the end of the stream goes on: these records belong to the final epoch,
            // so a sink stages them with its final pre-commit. The state is left as it is.
            for (key, state) in self.state.iter() {
                self.out.extend(on_end(key, state));
                if self.out.len() >= self.batch_size {
                    self.next.push(&mut self.out, cx)?;
                    cx.stage = self.stage;
                }
            }
            if !self.out.is_empty() {
                self.next.push(&mut self.out, cx)?;
            }
        }
        if cx.checkpoints.enabled() {
            self.snapshot(cx.checkpoints.final_id()?, cx)?;
        }
        let state = codec::encode(&std::mem::take(&mut self.state))?;
        cx.final_states
            .lock()
            .map_err(|_| Error::Internal("final state lock poisoned".into()))?
            .push((self.stage, state));
        self.next.end(cx)
    }
}

/// The erased form of a stateful stage: its function, and its end-of-input hook if it has one.
pub(crate) struct StatefulNode<F, E, K, S, V, I, J> {
    pub(crate) f: F,
    pub(crate) on_end: Option<E>,
    pub(crate) _t: PhantomData<fn(K, S, V) -> I>,
    pub(crate) _end: PhantomData<fn() -> J>,
}

/// The hook type of a stateful stage without one.
pub(crate) type NoEnd<K, S, U> = fn(&K, &S) -> std::iter::Empty<U>;

impl<K, S, V, I, J, F, E> ErasedOp for StatefulNode<F, E, K, S, V, I, J>
where
    K: Key + Clone,
    S: StateValue,
    V: Data,
    I: IntoIterator + 'static,
    I::Item: Data,
    J: IntoIterator<Item = I::Item> + 'static,
    F: Fn(&mut S, &K, V) -> I + Clone + Send + 'static,
    E: Fn(&K, &S) -> J + Clone + Send + 'static,
{
    fn wrap(&self, ctx: &SubtaskCtx, next: AnyBox) -> Result<AnyBox> {
        let next = downcast::<Box<dyn BatchSink<I::Item>>>(next, &ctx.name)?;
        let groups = range_of(ctx.subtask, ctx.key_groups, ctx.parallelism);
        let mut state = KeyedState::for_range(groups.clone());
        if let Some(checkpoint) = &ctx.restore {
            // The parts whose key groups overlap this subtask's, whichever subtask wrote them.
            for part in checkpoint.parts(&ctx.name) {
                let overlaps = key_groups_of_part(&part.name)
                    .is_some_and(|r| *r.start() < groups.end && *r.end() >= groups.start);
                if overlaps {
                    let bytes = checkpoint.read_part(&ctx.name, &part.name)?;
                    state.restore_part(&part.name, &bytes).map_err(|e| {
                        checkpoint.corrupt_part(&ctx.name, &part.name, e.to_string())
                    })?;
                }
            }
        }
        // A final checkpoint was taken after the hook ran and its output was published with
        // it: restoring from it must not emit that output again.
        let run_on_end = !ctx
            .restore
            .as_ref()
            .is_some_and(|c| c.manifest().end_of_input);
        Ok(boxed::<Keyed<K, V>>(StatefulOp {
            f: self.f.clone(),
            on_end: self.on_end.clone(),
            run_on_end,
            stage: ctx.stage,
            batch_size: ctx.batch_size.max(1),
            key_groups: ctx.key_groups,
            first_group: groups.start,
            state,
            out: Vec::new(),
            next,
        }))
    }
}

struct SinkOp<W> {
    writer: W,
    stage: usize,
    /// Transactions staged at checkpoints not known to be complete, with their checkpoint: a
    /// checkpoint can be abandoned after this sink staged its output, so each checkpoint's part
    /// lists them all and its commit publishes whatever is still unpublished.
    staged: Vec<(u64, String)>,
}

impl<T, W: SinkWriter<T>> BatchSink<T> for SinkOp<W> {
    fn push(&mut self, batch: &mut Vec<T>, cx: &mut Cx<'_>) -> Result<()> {
        cx.stage = self.stage;
        self.writer.write_batch(batch)
    }

    fn flush_partial(&mut self, _: &mut Cx<'_>) -> Result<()> {
        Ok(())
    }

    fn try_flush(&mut self, _: &mut Cx<'_>) -> Result<bool> {
        Ok(true)
    }

    /// The end of the writer's lifecycle (see [`SinkWriter`]), the same with and without
    /// checkpoints but for the final `pre_commit`: `finish` is called once either way.
    fn end(&mut self, cx: &mut Cx<'_>) -> Result<()> {
        cx.stage = self.stage;
        if cx.checkpoints.enabled() {
            // The end of the stream is the final checkpoint: stage the tail like any epoch.
            self.checkpoint(cx.checkpoints.final_id()?, cx)?;
        }
        self.writer.finish()
    }

    fn checkpoint(&mut self, id: u64, cx: &mut Cx<'_>) -> Result<()> {
        cx.stage = self.stage;
        if let Some(transaction) = self.writer.pre_commit(id)? {
            self.staged.push((id, transaction));
        }
        let completed = cx.checkpoints.completed();
        self.staged.retain(|(n, _)| *n > completed);
        let transactions: Vec<&String> = self.staged.iter().map(|(_, t)| t).collect();
        let part = subtask_part(cx.subtask);
        cx.checkpoints
            .part(id, self.stage, part, codec::encode(&transactions)?);
        Ok(())
    }
}

/// The erased form of a sink stage.
pub(crate) struct SinkNode<S>(pub(crate) S);

impl<S: Sink + Sync> ErasedSink for SinkNode<S> {
    fn commit(&self, transaction: &str) -> Result<()> {
        self.0.commit(transaction)
    }

    fn persist(&self, transaction: &str) -> Result<()> {
        self.0.persist(transaction)
    }

    fn check_start(&self, start: &RunStart<'_>) -> Result<()> {
        self.0.check_start(start)
    }

    fn begin(&self, start: &RunStart<'_>) -> Result<()> {
        self.0.begin(start)
    }

    fn open(&self, ctx: &SubtaskCtx) -> Result<AnyBox> {
        let writer = self.0.open(ctx.subtask, ctx.parallelism)?;
        Ok(boxed::<S::Item>(SinkOp {
            staged: Vec::new(),
            writer,
            stage: ctx.stage,
        }))
    }
}
