//! The two kinds of task: one reads a source split, the other reads an input channel. Both push
//! batches into a chain of operators ending in a sink or a channel writer.

use crate::core::connector::{Source, SourceReader};
use crate::core::graph::{ErasedSource, SubtaskCtx};
use crate::core::task::{BatchSink, Cx, Step, Task};
use crate::core::{downcast, AnyBox};
use crate::error::Result;
use crate::runtime::channel::{ChanRx, Msg};

/// Batches a task handles in one run before yielding its thread.
const BUDGET: usize = 32;

/// Reads channel input into a chain.
pub(crate) struct InputTask<T> {
    rx: ChanRx<T>,
    senders: usize,
    ended: usize,
    chain: Box<dyn BatchSink<T>>,
    finishing: bool,
}

impl<T> InputTask<T> {
    pub(crate) fn new(rx: ChanRx<T>, senders: usize, chain: Box<dyn BatchSink<T>>) -> Self {
        InputTask {
            rx,
            senders,
            ended: 0,
            chain,
            finishing: false,
        }
    }
}

impl<T: Send + 'static> Task for InputTask<T> {
    fn run(&mut self, cx: &mut Cx<'_>) -> Result<Step> {
        if !self.chain.try_flush(cx)? {
            return Ok(Step::Wait);
        }
        if self.finishing {
            return Ok(Step::Done);
        }
        for _ in 0..BUDGET {
            match self.rx.try_recv(cx)? {
                Some(Msg::Data(mut batch)) => {
                    self.chain.push(&mut batch, cx)?;
                    self.rx.recycle(batch);
                    if !self.chain.try_flush(cx)? {
                        return Ok(Step::Wait);
                    }
                }
                Some(Msg::End) => {
                    self.ended += 1;
                    if self.ended == self.senders {
                        self.chain.end(cx)?;
                        self.finishing = true;
                        let flushed = self.chain.try_flush(cx)?;
                        return Ok(if flushed { Step::Done } else { Step::Wait });
                    }
                }
                None => {
                    self.chain.flush_partial(cx)?;
                    self.chain.try_flush(cx)?;
                    return Ok(Step::Wait);
                }
            }
        }
        Ok(Step::Yield)
    }
}

/// Reads one subtask's part of a source into a chain.
pub(crate) struct SourceTask<T, R> {
    reader: R,
    stage: usize,
    batch_size: usize,
    buf: Vec<T>,
    chain: Box<dyn BatchSink<T>>,
    finishing: bool,
}

impl<T: Send + 'static, R: SourceReader<T>> Task for SourceTask<T, R> {
    fn run(&mut self, cx: &mut Cx<'_>) -> Result<Step> {
        if !self.chain.try_flush(cx)? {
            return Ok(Step::Wait);
        }
        if self.finishing {
            return Ok(Step::Done);
        }
        for _ in 0..BUDGET {
            cx.stage = self.stage;
            self.buf.clear();
            let more = self.reader.read_batch(&mut self.buf, self.batch_size)?;
            if !self.buf.is_empty() {
                self.chain.push(&mut self.buf, cx)?;
            }
            if !more {
                self.chain.end(cx)?;
                self.finishing = true;
                let flushed = self.chain.try_flush(cx)?;
                return Ok(if flushed { Step::Done } else { Step::Wait });
            }
            if !self.chain.try_flush(cx)? {
                return Ok(Step::Wait);
            }
        }
        Ok(Step::Yield)
    }
}

/// The erased form of a source stage.
pub(crate) struct SourceNode<S>(pub(crate) S);

impl<S: Source> ErasedSource for SourceNode<S> {
    fn start(&self) -> Result<()> {
        self.0.start()
    }

    fn task(&self, ctx: &SubtaskCtx, chain: AnyBox) -> Result<Box<dyn Task>> {
        let chain = downcast::<Box<dyn BatchSink<S::Item>>>(chain, "a source chain")?;
        let reader = self.0.open(ctx.subtask, ctx.parallelism)?;
        Ok(Box::new(SourceTask {
            reader,
            stage: ctx.stage,
            batch_size: ctx.batch_size,
            buf: Vec::with_capacity(ctx.batch_size),
            chain,
            finishing: false,
        }))
    }
}
