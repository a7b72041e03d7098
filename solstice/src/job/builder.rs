//! The typed job builder. `#[pipeline]` generates calls to it; it can also be used by hand.
//!
//! Every method takes the stage name, the parallelism declared in the stage's attribute (if any),
//! the input streams, and the stage function. Types flow through [`Stream`] and [`KeyedStream`]
//! handles, so a stage can only read a stream of the type its function takes.

use std::marker::PhantomData;

use crate::config::{Config, SinkConfig, SourceConfig};
use crate::connectors::collect::Outputs;
use crate::core::connector::{Sink, Source};
use crate::core::graph::{ErasedOp, Graph, InputKit, Node, NodeImpl, OutputKit};
use crate::core::keyed::{KeyValue, Keyed};
use crate::core::parallelism::Parallelism;
use crate::core::{Data, StageKind};
use crate::error::{Error, Result};
use crate::metrics::Metrics;
use crate::operators::{
    FilterNode, FlatMapNode, KeyByOwnedNode, MapNode, NoEnd, SinkNode, StatefulNode,
};
use crate::runtime::kits::{KeyedOutput, TypedInput, TypedOutput};
use crate::runtime::tasks::SourceNode;
use crate::state::keyed::{Key, StateValue};

/// A handle to the output of a stage emitting records of type `T`.
pub struct Stream<T> {
    node: usize,
    _t: PhantomData<fn() -> T>,
}

impl<T> Clone for Stream<T> {
    fn clone(&self) -> Self {
        *self
    }
}
impl<T> Copy for Stream<T> {}

/// A handle to the output of a key_by stage: records of type `V` keyed by `K`.
pub struct KeyedStream<K, V> {
    node: usize,
    _t: PhantomData<fn() -> (K, V)>,
}

impl<K, V> Clone for KeyedStream<K, V> {
    fn clone(&self) -> Self {
        *self
    }
}
impl<K, V> Copy for KeyedStream<K, V> {}

/// Records the stages of a job in a logical graph.
pub struct JobBuilder {
    pub(crate) graph: Graph,
    pub(crate) config: Config,
    pub(crate) metrics: Metrics,
    /// The collecting sinks' records, handed back by the job's result.
    pub(crate) outputs: Outputs,
}

impl JobBuilder {
    /// A builder configured by `config`.
    pub fn new(config: Config) -> Self {
        JobBuilder {
            graph: Graph::default(),
            config,
            metrics: Metrics::default(),
            outputs: Outputs::default(),
        }
    }

    /// The job configuration.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// YAML `stages.<name>.parallelism`, else the attribute's, else `job.parallelism`.
    fn parallelism(&self, name: &str, declared: Option<Parallelism>) -> Result<Parallelism> {
        let p = self
            .config
            .stages
            .get(name)
            .and_then(|s| s.parallelism)
            .or(declared)
            .unwrap_or(self.config.job.parallelism);
        p.validate()
            .map_err(|m| Error::Plan(format!("stage `{name}`: {m}")))?;
        Ok(p)
    }

    #[allow(clippy::too_many_arguments)]
    fn add(
        &mut self,
        name: &str,
        kind: StageKind,
        declared: Option<Parallelism>,
        inputs: Vec<usize>,
        imp: NodeImpl,
        input_kit: Option<Box<dyn InputKit>>,
        output_kit: Option<Box<dyn OutputKit>>,
    ) -> Result<usize> {
        if self.graph.find(name).is_some() {
            return Err(Error::Plan(format!("two stages are named `{name}`")));
        }
        if kind != StageKind::Source && inputs.is_empty() {
            return Err(Error::Plan(format!("stage `{name}` has no input stream")));
        }
        let parallelism = self.parallelism(name, declared)?;
        self.graph.nodes.push(Node {
            name: name.to_string(),
            kind,
            parallelism,
            inputs,
            imp,
            input_kit,
            output_kit,
        });
        Ok(self.graph.nodes.len() - 1)
    }

    fn op<T: Data, U: Data>(
        &mut self,
        name: &str,
        kind: StageKind,
        declared: Option<Parallelism>,
        inputs: Vec<usize>,
        op: Box<dyn ErasedOp>,
    ) -> Result<Stream<U>> {
        let node = self.add(
            name,
            kind,
            declared,
            inputs,
            NodeImpl::Op(op),
            Some(Box::new(TypedInput::<T>(PhantomData))),
            Some(Box::new(TypedOutput::<U>(PhantomData))),
        )?;
        Ok(Stream {
            node,
            _t: PhantomData,
        })
    }

    /// A source stage; `make` builds the connector, reading its options from `sources.<name>`
    /// of the config ([`SourceConfig::options`]).
    pub fn source<S: Source>(
        &mut self,
        name: &str,
        declared: Option<Parallelism>,
        make: impl FnOnce(&SourceConfig) -> Result<S>,
    ) -> Result<Stream<S::Item>> {
        let cfg = self
            .config
            .source_config(name)
            .with_metrics(self.metrics.clone());
        let source = make(&cfg)?;
        let node = self.add(
            name,
            StageKind::Source,
            declared,
            Vec::new(),
            NodeImpl::Source(Box::new(SourceNode(std::sync::Arc::new(source)))),
            None,
            Some(Box::new(TypedOutput::<S::Item>(PhantomData))),
        )?;
        Ok(Stream {
            node,
            _t: PhantomData,
        })
    }

    /// A map stage: `f` turns each record into one record.
    pub fn map<T: Data, U: Data, F>(
        &mut self,
        name: &str,
        declared: Option<Parallelism>,
        inputs: &[Stream<T>],
        f: F,
    ) -> Result<Stream<U>>
    where
        F: Fn(T) -> U + Clone + Send + 'static,
    {
        let op = Box::new(MapNode(f, PhantomData));
        self.op::<T, U>(name, StageKind::Map, declared, nodes(inputs), op)
    }

    /// A flat_map stage: `f` turns each record into any number of records.
    pub fn flat_map<T: Data, I, F>(
        &mut self,
        name: &str,
        declared: Option<Parallelism>,
        inputs: &[Stream<T>],
        f: F,
    ) -> Result<Stream<I::Item>>
    where
        I: IntoIterator + 'static,
        I::Item: Data,
        F: Fn(T) -> I + Clone + Send + 'static,
    {
        let op = Box::new(FlatMapNode(f, PhantomData));
        self.op::<T, I::Item>(name, StageKind::FlatMap, declared, nodes(inputs), op)
    }

    /// A filter stage: keeps the records for which `f` returns true.
    pub fn filter<T: Data, F>(
        &mut self,
        name: &str,
        declared: Option<Parallelism>,
        inputs: &[Stream<T>],
        f: F,
    ) -> Result<Stream<T>>
    where
        F: Fn(&T) -> bool + Clone + Send + 'static,
    {
        let op = Box::new(FilterNode(f, PhantomData));
        self.op::<T, T>(name, StageKind::Filter, declared, nodes(inputs), op)
    }

    /// A key_by stage: `f` computes each record's key. Its output feeds stateful stages only.
    pub fn key_by<K: Key + Data, V: Data, F>(
        &mut self,
        name: &str,
        declared: Option<Parallelism>,
        inputs: &[Stream<V>],
        f: F,
    ) -> Result<KeyedStream<K, V>>
    where
        F: Fn(&V) -> K + Clone + Send + 'static,
    {
        // The same operator as the owned form: the record is sent on after its key.
        self.key_by_owned(name, declared, inputs, move |v: V| (f(&v), v))
    }

    /// A key_by stage that takes its record by value: `f` returns `(key, value)`, so the key can
    /// be moved out of the record instead of cloned.
    pub fn key_by_owned<V: Data, R, F>(
        &mut self,
        name: &str,
        declared: Option<Parallelism>,
        inputs: &[Stream<V>],
        f: F,
    ) -> Result<KeyedStream<R::Key, R::Value>>
    where
        R: KeyValue + 'static,
        R::Key: Key + Data,
        R::Value: Data,
        F: Fn(V) -> R + Clone + Send + 'static,
    {
        let node = self.add(
            name,
            StageKind::KeyBy,
            declared,
            nodes(inputs),
            NodeImpl::Op(Box::new(KeyByOwnedNode(f, PhantomData))),
            Some(Box::new(TypedInput::<V>(PhantomData))),
            Some(Box::new(KeyedOutput::<R::Key, R::Value>(PhantomData))),
        )?;
        Ok(KeyedStream {
            node,
            _t: PhantomData,
        })
    }

    /// A stateful stage: `f` updates the state of the record's key (created with
    /// `S::default()`) and returns the records to emit.
    pub fn stateful<K: Key + Data, S: StateValue, V: Data, I, F>(
        &mut self,
        name: &str,
        declared: Option<Parallelism>,
        inputs: &[KeyedStream<K, V>],
        f: F,
    ) -> Result<Stream<I::Item>>
    where
        I: IntoIterator + 'static,
        I::Item: Data,
        F: Fn(&mut S, V) -> I + Clone + Send + 'static,
    {
        self.stateful_keyed(name, declared, inputs, move |s: &mut S, _: &K, v: V| {
            f(s, v)
        })
    }

    /// A stateful stage whose function also receives the record's key.
    pub fn stateful_keyed<K: Key + Data, S: StateValue, V: Data, I, F>(
        &mut self,
        name: &str,
        declared: Option<Parallelism>,
        inputs: &[KeyedStream<K, V>],
        f: F,
    ) -> Result<Stream<I::Item>>
    where
        I: IntoIterator + 'static,
        I::Item: Data,
        F: Fn(&mut S, &K, V) -> I + Clone + Send + 'static,
    {
        let no_end: Option<NoEnd<K, S, I::Item>> = None;
        self.stateful_node(name, declared, inputs, f, no_end)
    }

    /// A stateful stage with an end-of-input hook: like [`JobBuilder::stateful`], and when the
    /// input of a subtask ends, `on_end` is called with every key the subtask holds and that
    /// key's final state; the records it returns are emitted before the end of the stream.
    ///
    /// With checkpoints on, these records belong to the final checkpoint; a job restored from
    /// its final checkpoint does not call `on_end` again (its output was published already). The
    /// keyed state is left unchanged by the hook.
    pub fn stateful_with_end<K: Key + Data, S: StateValue, V: Data, I, J, F, E>(
        &mut self,
        name: &str,
        declared: Option<Parallelism>,
        inputs: &[KeyedStream<K, V>],
        f: F,
        on_end: E,
    ) -> Result<Stream<I::Item>>
    where
        I: IntoIterator + 'static,
        I::Item: Data,
        J: IntoIterator<Item = I::Item> + 'static,
        F: Fn(&mut S, V) -> I + Clone + Send + 'static,
        E: Fn(&K, &S) -> J + Clone + Send + 'static,
    {
        let f = move |s: &mut S, _: &K, v: V| f(s, v);
        self.stateful_node(name, declared, inputs, f, Some(on_end))
    }

    /// A stateful stage whose function also receives the record's key, with an end-of-input
    /// hook as in [`JobBuilder::stateful_with_end`].
    pub fn stateful_keyed_with_end<K: Key + Data, S: StateValue, V: Data, I, J, F, E>(
        &mut self,
        name: &str,
        declared: Option<Parallelism>,
        inputs: &[KeyedStream<K, V>],
        f: F,
        on_end: E,
    ) -> Result<Stream<I::Item>>
    where
        I: IntoIterator + 'static,
        I::Item: Data,
        J: IntoIterator<Item = I::Item> + 'static,
        F: Fn(&mut S, &K, V) -> I + Clone + Send + 'static,
        E: Fn(&K, &S) -> J + Clone + Send + 'static,
    {
        self.stateful_node(name, declared, inputs, f, Some(on_end))
    }

    fn stateful_node<K: Key + Data, S: StateValue, V: Data, I, J, F, E>(
        &mut self,
        name: &str,
        declared: Option<Parallelism>,
        inputs: &[KeyedStream<K, V>],
        f: F,
        on_end: Option<E>,
    ) -> Result<Stream<I::Item>>
    where
        I: IntoIterator + 'static,
        I::Item: Data,
        J: IntoIterator<Item = I::Item> + 'static,
        F: Fn(&mut S, &K, V) -> I + Clone + Send + 'static,
        E: Fn(&K, &S) -> J + Clone + Send + 'static,
    {
        let inputs = inputs.iter().map(|s| s.node).collect();
        let op = StatefulNode::<F, E, K, S, V, I, J> {
            f,
            on_end,
            _t: PhantomData,
            _end: PhantomData,
        };
        let node = self.add(
            name,
            StageKind::Stateful,
            declared,
            inputs,
            NodeImpl::Op(Box::new(op)),
            Some(Box::new(TypedInput::<Keyed<K, V>>(PhantomData))),
            Some(Box::new(TypedOutput::<I::Item>(PhantomData))),
        )?;
        Ok(Stream {
            node,
            _t: PhantomData,
        })
    }

    /// A sink stage; `make` builds the connector, reading its options from `sinks.<name>` of
    /// the config ([`SinkConfig::options`]).
    pub fn sink<S: Sink>(
        &mut self,
        name: &str,
        declared: Option<Parallelism>,
        inputs: &[Stream<S::Item>],
        make: impl FnOnce(&SinkConfig) -> Result<S>,
    ) -> Result<()> {
        let cfg = self
            .config
            .sink_config(name)
            .with_job(self.metrics.clone(), self.outputs.clone());
        let sink = make(&cfg)?;
        self.add(
            name,
            StageKind::Sink,
            declared,
            nodes(inputs),
            NodeImpl::Sink(Box::new(SinkNode(sink))),
            Some(Box::new(TypedInput::<S::Item>(PhantomData))),
            None,
        )?;
        Ok(())
    }
}

fn nodes<T>(inputs: &[Stream<T>]) -> Vec<usize> {
    inputs.iter().map(|s| s.node).collect()
}
