//! The typed factories the deployment uses to wire a stage without knowing its record types:
//! the input side of a stage makes its channels and the task that reads them; the output side
//! makes the tail of a chain that writes to them (see [`crate::core::graph`]).

use std::marker::PhantomData;

use super::channel::{channel, ChanRx, ChanTx};
use super::executor::RemoteWaker;
use super::message::{Input, Msg, Output};
use super::partition::{ByBatch, ByKeyGroup, ChannelOut, FanOut, Router};
use super::tasks::InputTask;
use super::transport::{Connection, RemoteInput, RemoteOutput};
use crate::core::graph::{InputKit, Meter, OutputKit, Partitioning, SubtaskCtx};
use crate::core::keyed::Keyed;
use crate::core::task::{BatchSink, Cx, Task, TaskId};
use crate::core::{downcast, AnyBox, Data};
use crate::error::{Error, Result};
use crate::state::keygroups::owner_of;

/// A task's input from one upstream subtask: a local channel, or a logical channel of a
/// connection to the process that runs the upstream subtask.
pub(crate) enum AnyInput<T> {
    /// The upstream subtask runs in this process.
    Local(ChanRx<T>),
    /// It runs in another process.
    Remote(RemoteInput<T>),
}

impl<T: Data> Input<T> for AnyInput<T> {
    #[inline]
    fn try_recv(&mut self, cx: &mut Cx<'_>) -> Result<Option<Msg<T>>> {
        match self {
            AnyInput::Local(rx) => rx.try_recv(cx),
            AnyInput::Remote(rx) => rx.try_recv(cx),
        }
    }

    #[inline]
    fn recycle(&mut self, buffer: Vec<T>) {
        match self {
            AnyInput::Local(rx) => rx.recycle(buffer),
            AnyInput::Remote(rx) => rx.recycle(buffer),
        }
    }
}

/// A chain's output to one downstream subtask, here or in another process.
pub(crate) enum AnyOutput<T> {
    /// The downstream subtask runs in this process.
    Local(ChanTx<T>),
    /// It runs in another process.
    Remote(RemoteOutput<T>),
}

impl<T: Data> Output<T> for AnyOutput<T> {
    #[inline]
    fn buffer(&mut self, capacity: usize) -> Vec<T> {
        match self {
            AnyOutput::Local(tx) => tx.buffer(capacity),
            AnyOutput::Remote(tx) => tx.buffer(capacity),
        }
    }

    #[inline]
    fn try_send(&mut self, msg: Msg<T>, cx: &mut Cx<'_>) -> Result<Option<Msg<T>>> {
        match self {
            AnyOutput::Local(tx) => tx.try_send(msg, cx),
            AnyOutput::Remote(tx) => tx.try_send(msg, cx),
        }
    }
}

/// Input side of a stage whose input type is `T`.
pub(crate) struct TypedInput<T>(pub(crate) PhantomData<fn() -> T>);

impl<T: Data> InputKit for TypedInput<T> {
    fn channel(&self, capacity: usize, reader: TaskId) -> (AnyBox, AnyBox) {
        let (tx, rx) = channel::<T>(capacity, reader);
        (
            Box::new(AnyOutput::Local(tx)),
            Box::new(AnyInput::Local(rx)),
        )
    }

    fn remote_input(
        &self,
        connection: &Connection,
        channel: u32,
        capacity: u32,
        waker: RemoteWaker,
    ) -> Result<AnyBox> {
        let rx = connection.open_input::<T>(channel, capacity, waker)?;
        Ok(Box::new(AnyInput::Remote(rx)))
    }

    fn remote_output(
        &self,
        connection: &Connection,
        channel: u32,
        waker: RemoteWaker,
    ) -> Result<AnyBox> {
        let tx = connection.open_output::<T>(channel, waker)?;
        Ok(Box::new(AnyOutput::Remote(tx)))
    }

    fn task(&self, receivers: Vec<AnyBox>, chain: AnyBox) -> Result<Box<dyn Task>> {
        let inputs = receivers
            .into_iter()
            .map(|r| downcast::<AnyInput<T>>(r, "an input channel"))
            .collect::<Result<Vec<_>>>()?;
        let chain = downcast::<Box<dyn BatchSink<T>>>(chain, "an input chain")?;
        Ok(Box::new(InputTask::new(inputs, chain)))
    }

    fn meter(&self, sink: AnyBox, into: Option<Meter>, from: Option<Meter>) -> Result<AnyBox> {
        metered::<T>(sink, into, from)
    }
}

/// A chain's `BatchSink` counting the batches that enter it: into the stage it belongs to, and
/// out of the stage before it. One more virtual call per batch, no work per record.
struct Metered<T> {
    inner: Box<dyn BatchSink<T>>,
    into: Option<Meter>,
    from: Option<Meter>,
}

fn metered<T: Data>(sink: AnyBox, into: Option<Meter>, from: Option<Meter>) -> Result<AnyBox> {
    let inner = downcast::<Box<dyn BatchSink<T>>>(sink, "a metered chain")?;
    let sink: Box<dyn BatchSink<T>> = Box::new(Metered { inner, into, from });
    Ok(Box::new(sink))
}

impl<T: Data> BatchSink<T> for Metered<T> {
    #[inline]
    fn push(&mut self, batch: &mut Vec<T>, cx: &mut Cx<'_>) -> Result<()> {
        let n = batch.len();
        if let Some(m) = &self.into {
            m.batch_in(n);
        }
        if let Some(m) = &self.from {
            m.batch_out(n);
        }
        self.inner.push(batch, cx)
    }

    fn flush_partial(&mut self, cx: &mut Cx<'_>) -> Result<()> {
        self.inner.flush_partial(cx)
    }

    fn try_flush(&mut self, cx: &mut Cx<'_>) -> Result<bool> {
        self.inner.try_flush(cx)
    }

    fn end(&mut self, cx: &mut Cx<'_>) -> Result<()> {
        self.inner.end(cx)
    }

    fn checkpoint(&mut self, id: u64, cx: &mut Cx<'_>) -> Result<()> {
        self.inner.checkpoint(id, cx)
    }
}

fn senders<T: Data>(senders: Vec<AnyBox>) -> Result<Vec<AnyOutput<T>>> {
    senders
        .into_iter()
        .map(|s| downcast::<AnyOutput<T>>(s, "an output channel"))
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
    txs: Vec<AnyOutput<T>>,
    router: R,
    ctx: &SubtaskCtx,
) -> AnyBox {
    // Spread rebalanced batches of different subtasks over different readers.
    let sink: Box<dyn BatchSink<T>> =
        Box::new(ChannelOut::new(txs, router, ctx.subtask, ctx.batch_size));
    Box::new(sink)
}

/// Output side of a stage emitting plain records of type `T`.
pub(crate) struct TypedOutput<T>(pub(crate) PhantomData<fn() -> T>);

impl<T: Data> OutputKit for TypedOutput<T> {
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

    fn meter(&self, tail: AnyBox, from: Meter) -> Result<AnyBox> {
        metered::<T>(tail, None, Some(from))
    }
}

/// Output side of a key_by stage: records are routed by key group.
pub(crate) struct KeyedOutput<K, V>(pub(crate) PhantomData<fn() -> (K, V)>);

impl<K: Data + std::hash::Hash, V: Data> OutputKit for KeyedOutput<K, V> {
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

    fn meter(&self, tail: AnyBox, from: Meter) -> Result<AnyBox> {
        metered::<Keyed<K, V>>(tail, None, Some(from))
    }
}
