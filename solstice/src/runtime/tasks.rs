//! The two kinds of task: one reads a source split, the other reads its upstream subtasks through
//! [`Input`]s (local channels or, later, connections). Both push batches into a chain of operators
//! ending in a sink or a channel writer.

use std::sync::Arc;
use std::task::Poll;

use super::message::{Input, Msg};
use crate::core::connector::{Positions, Source, SourceReader, FINISHED};
use crate::core::graph::{ErasedSource, SubtaskCtx};
use crate::core::task::{BatchSink, Cx, SplitFeed, Step, Task};
use crate::core::{downcast, AnyBox};
use crate::error::{Error, Result};
use crate::state::codec;
use crate::state::manifest::subtask_part;

/// Batches a task handles in one run before yielding its thread.
const BUDGET: usize = 32;

/// Reads the inputs from every upstream subtask into a chain, aligning checkpoint barriers:
/// once barrier `n` arrived on an input, that input is not read again until barrier `n`
/// arrived on every input still open; then the chain snapshots and passes the barrier on.
///
/// Generic over the input type `I`, so that reading a batch costs no virtual call.
pub(crate) struct InputTask<T, I> {
    inputs: Vec<I>,
    ended: Vec<bool>,
    /// Inputs that delivered the barrier being aligned.
    blocked: Vec<bool>,
    /// The barrier being aligned, if any.
    aligning: Option<u64>,
    /// The input to read first next time (round robin, for fairness between senders).
    next: usize,
    chain: Box<dyn BatchSink<T>>,
    finishing: bool,
}

impl<T, I: Input<T>> InputTask<T, I> {
    pub(crate) fn new(inputs: Vec<I>, chain: Box<dyn BatchSink<T>>) -> Self {
        let n = inputs.len();
        InputTask {
            inputs,
            ended: vec![false; n],
            blocked: vec![false; n],
            aligning: None,
            next: 0,
            chain,
            finishing: false,
        }
    }
}

impl<T: Send + 'static, I: Input<T>> InputTask<T, I> {
    /// The next message from an input that is neither ended nor blocked.
    fn receive(&mut self, cx: &mut Cx<'_>) -> Result<Option<(usize, Msg<T>)>> {
        let n = self.inputs.len();
        for k in 0..n {
            let i = (self.next + k) % n;
            if self.ended[i] || self.blocked[i] {
                continue;
            }
            if let Some(msg) = self.inputs[i].try_recv(cx)? {
                self.next = (i + 1) % n;
                return Ok(Some((i, msg)));
            }
        }
        Ok(None)
    }

    /// Completes the barrier being aligned once every open input delivered it.
    fn try_complete_barrier(&mut self, cx: &mut Cx<'_>) -> Result<()> {
        let Some(id) = self.aligning else {
            return Ok(());
        };
        let aligned = (0..self.inputs.len()).all(|i| self.ended[i] || self.blocked[i]);
        if aligned {
            self.chain.checkpoint(id, cx)?;
            cx.checkpoints.ack(id, cx.task);
            self.aligning = None;
            self.blocked.iter_mut().for_each(|b| *b = false);
        }
        Ok(())
    }
}

impl<T: Send + 'static, I: Input<T>> Task for InputTask<T, I> {
    fn run(&mut self, cx: &mut Cx<'_>) -> Result<Step> {
        if !self.chain.try_flush(cx)? {
            return Ok(Step::Blocked);
        }
        if self.finishing {
            return Ok(Step::Done);
        }
        for _ in 0..BUDGET {
            let Some((i, msg)) = self.receive(cx)? else {
                self.chain.flush_partial(cx)?;
                let flushed = self.chain.try_flush(cx)?;
                return Ok(if flushed { Step::Wait } else { Step::Blocked });
            };
            match msg {
                Msg::Data(mut batch) => {
                    self.chain.push(&mut batch, cx)?;
                    self.inputs[i].recycle(batch);
                }
                Msg::Barrier(id) => {
                    match self.aligning {
                        Some(current) if current != id => {
                            return Err(Error::Internal(format!(
                                "barrier {id} arrived while aligning barrier {current}"
                            )))
                        }
                        _ => self.aligning = Some(id),
                    }
                    self.blocked[i] = true;
                    self.try_complete_barrier(cx)?;
                }
                Msg::End => {
                    self.ended[i] = true;
                    // An input that ended counts as aligned.
                    self.try_complete_barrier(cx)?;
                    if self.ended.iter().all(|&e| e) {
                        self.chain.end(cx)?;
                        if cx.checkpoints.enabled() {
                            cx.checkpoints.ack(cx.checkpoints.final_id()?, cx.task);
                        }
                        self.finishing = true;
                        let flushed = self.chain.try_flush(cx)?;
                        return Ok(if flushed { Step::Done } else { Step::Blocked });
                    }
                }
            }
            if !self.chain.try_flush(cx)? {
                return Ok(Step::Blocked);
            }
        }
        Ok(Step::Yield)
    }
}

/// Reads the splits one source subtask pulls into a chain: asks its [`SplitFeed`] for a split,
/// reads it to the end, asks for the next, and ends when none is left.
pub(crate) struct SourceTask<S: Source> {
    source: Arc<S>,
    feed: Arc<dyn SplitFeed>,
    /// The split being read, by name, and its reader.
    reader: Option<(String, S::Reader)>,
    /// Splits this subtask read to the end, and (subtask 0 only) those the restored checkpoint
    /// says were: every checkpoint lists them, so that a restore never reads them again.
    finished: Vec<String>,
    /// The last checkpoint whose barrier this source emitted.
    last_barrier: u64,
    stage: usize,
    subtask: usize,
    batch_size: usize,
    buf: Vec<S::Item>,
    chain: Box<dyn BatchSink<S::Item>>,
    finishing: bool,
}

impl<S: Source> SourceTask<S> {
    /// This subtask's part of a checkpoint: its finished splits, and where it is in the one it
    /// holds.
    fn position(&self) -> Result<Vec<u8>> {
        let mut at: Positions = self
            .finished
            .iter()
            .map(|s| (s.clone(), FINISHED))
            .collect();
        if let Some((split, reader)) = &self.reader {
            at.insert(split.clone(), reader.position()?.min(FINISHED - 1));
        }
        codec::encode(&at)
    }

    /// End of input: the final checkpoint's part, the end of the chain.
    fn finish(&mut self, cx: &mut Cx<'_>) -> Result<Step> {
        let checkpointed = cx.checkpoints.enabled();
        if checkpointed {
            let id = cx.checkpoints.final_id()?;
            let part = subtask_part(cx.subtask);
            cx.checkpoints.part(id, self.stage, part, self.position()?);
        }
        self.chain.end(cx)?;
        if checkpointed {
            cx.checkpoints.ack(cx.checkpoints.final_id()?, cx.task);
        }
        self.finishing = true;
        let flushed = self.chain.try_flush(cx)?;
        Ok(if flushed { Step::Done } else { Step::Blocked })
    }
}

impl<S: Source> Task for SourceTask<S> {
    fn run(&mut self, cx: &mut Cx<'_>) -> Result<Step> {
        if !self.chain.try_flush(cx)? {
            return Ok(Step::Blocked);
        }
        if self.finishing {
            return Ok(Step::Done);
        }
        cx.checkpoints.fenced()?;
        for _ in 0..BUDGET {
            cx.stage = self.stage;
            let requested = cx.checkpoints.requested();
            if requested > self.last_barrier {
                // The position is this source's part of the checkpoint; the barrier follows
                // every record read before it.
                let position = self.position()?;
                cx.checkpoints
                    .part(requested, self.stage, subtask_part(cx.subtask), position);
                self.chain.checkpoint(requested, cx)?;
                cx.checkpoints.ack(requested, cx.task);
                self.last_barrier = requested;
                if !self.chain.try_flush(cx)? {
                    return Ok(Step::Blocked);
                }
            }
            let (split, reader) = match &mut self.reader {
                Some((split, reader)) => (split, reader),
                None => match self.feed.next(self.stage, self.subtask, cx.task)? {
                    Poll::Ready(Some(a)) => {
                        let reader = self.source.open(&a.split, a.resume)?;
                        let (split, reader) = self.reader.insert((a.split, reader));
                        (split, reader)
                    }
                    Poll::Ready(None) => return self.finish(cx),
                    Poll::Pending => {
                        // Woken with the answer; what is buffered goes downstream meanwhile.
                        self.chain.flush_partial(cx)?;
                        let flushed = self.chain.try_flush(cx)?;
                        return Ok(if flushed { Step::Wait } else { Step::Blocked });
                    }
                },
            };
            self.buf.clear();
            let more = reader.read_batch(&mut self.buf, self.batch_size)?;
            if !more {
                self.finished.push(std::mem::take(split));
                self.reader = None;
            }
            cx.checkpoints.records_read(self.buf.len() as u64);
            if !self.buf.is_empty() {
                self.chain.push(&mut self.buf, cx)?;
            }
            if !self.chain.try_flush(cx)? {
                return Ok(Step::Blocked);
            }
        }
        Ok(Step::Yield)
    }
}

/// The erased form of a source stage.
pub(crate) struct SourceNode<S>(pub(crate) Arc<S>);

impl<S: Source> ErasedSource for SourceNode<S> {
    fn start(&self) -> Result<()> {
        self.0.start()
    }

    fn splits(&self) -> Result<Vec<String>> {
        self.0.splits()
    }

    fn task(&self, ctx: &SubtaskCtx, chain: AnyBox) -> Result<Box<dyn Task>> {
        let chain = downcast::<Box<dyn BatchSink<S::Item>>>(chain, "a source chain")?;
        // What the restored checkpoint finished is reported on by one subtask.
        let finished = match ctx.subtask {
            0 => ctx
                .positions
                .iter()
                .filter(|&(_, &at)| at == FINISHED)
                .map(|(split, _)| split.clone())
                .collect(),
            _ => Vec::new(),
        };
        Ok(Box::new(SourceTask {
            source: self.0.clone(),
            feed: ctx.splits.clone(),
            reader: None,
            finished,
            last_barrier: 0,
            stage: ctx.stage,
            subtask: ctx.subtask,
            batch_size: ctx.batch_size,
            buf: Vec::with_capacity(ctx.batch_size),
            chain,
            finishing: false,
        }))
    }
}

#[cfg(test)]
mod tests {
    use std::collections::VecDeque;
    use std::sync::Mutex;

    use super::*;
    use crate::core::task::{JobCounters, NoCheckpoints, TaskId, Wake};

    /// An input that is not a channel: messages queued up front, as a remote input would hand
    /// them over once received.
    struct Queued(VecDeque<Msg<u64>>);

    impl Input<u64> for Queued {
        fn try_recv(&mut self, _: &mut Cx<'_>) -> Result<Option<Msg<u64>>> {
            Ok(self.0.pop_front())
        }
        fn recycle(&mut self, _: Vec<u64>) {}
    }

    struct NoWake;

    impl Wake for NoWake {
        fn wake(&self, _: TaskId) {}
    }

    /// Collects what reaches the end of the chain.
    struct Collect(&'static Mutex<Vec<String>>);

    impl BatchSink<u64> for Collect {
        fn push(&mut self, batch: &mut Vec<u64>, _: &mut Cx<'_>) -> Result<()> {
            let mut seen = self.0.lock().unwrap();
            seen.extend(batch.drain(..).map(|x| x.to_string()));
            Ok(())
        }
        fn flush_partial(&mut self, _: &mut Cx<'_>) -> Result<()> {
            Ok(())
        }
        fn try_flush(&mut self, _: &mut Cx<'_>) -> Result<bool> {
            Ok(true)
        }
        fn end(&mut self, _: &mut Cx<'_>) -> Result<()> {
            self.0.lock().unwrap().push("end".into());
            Ok(())
        }
        fn checkpoint(&mut self, id: u64, _: &mut Cx<'_>) -> Result<()> {
            self.0.lock().unwrap().push(format!("barrier {id}"));
            Ok(())
        }
    }

    #[test]
    fn an_input_task_reads_any_input_and_aligns_barriers_across_them() {
        static SEEN: Mutex<Vec<String>> = Mutex::new(Vec::new());
        let a = Queued(VecDeque::from([
            Msg::Data(vec![1, 2]),
            Msg::Barrier(1),
            Msg::Data(vec![5]),
            Msg::End,
        ]));
        let b = Queued(VecDeque::from([
            Msg::Data(vec![3]),
            Msg::Data(vec![4]),
            Msg::Barrier(1),
            Msg::End,
        ]));
        let mut task = InputTask::new(vec![a, b], Box::new(Collect(&SEEN)));
        let (counters, finals) = (JobCounters::default(), Mutex::new(Vec::new()));
        let mut cx = Cx {
            waker: &NoWake,
            task: 0,
            stage: 0,
            subtask: 0,
            counters: &counters,
            final_states: &finals,
            checkpoints: &NoCheckpoints,
        };
        let mut steps = 0;
        while task.run(&mut cx).unwrap() != Step::Done {
            steps += 1;
            assert!(steps < 10, "the task does not finish");
        }
        let seen = SEEN.lock().unwrap().clone();
        // Nothing after a barrier on one input is read before the barrier arrived on the other.
        assert_eq!(seen, ["1", "2", "3", "4", "barrier 1", "5", "end"]);
    }
}
