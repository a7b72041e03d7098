//! The pipeline as the macro sees it: stages with their signatures, and edges.

use proc_macro2::Span;
use syn::{Ident, ItemMod, Path, Signature};

/// The kind of a stage, from its attribute.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StageKind {
    Source,
    Map,
    FlatMap,
    Filter,
    KeyBy,
    Stateful,
    Sink,
}

impl StageKind {
    pub fn from_attr(name: &str) -> Option<StageKind> {
        Some(match name {
            "source" => StageKind::Source,
            "map" => StageKind::Map,
            "flat_map" => StageKind::FlatMap,
            "filter" => StageKind::Filter,
            "key_by" => StageKind::KeyBy,
            "stateful" => StageKind::Stateful,
            "sink" => StageKind::Sink,
            _ => return None,
        })
    }

    pub fn attr(self) -> &'static str {
        match self {
            StageKind::Source => "source",
            StageKind::Map => "map",
            StageKind::FlatMap => "flat_map",
            StageKind::Filter => "filter",
            StageKind::KeyBy => "key_by",
            StageKind::Stateful => "stateful",
            StageKind::Sink => "sink",
        }
    }
}

/// Parallelism given in a stage attribute.
#[derive(Clone, Copy, Debug)]
pub enum Parallelism {
    Fixed(u64),
    Elastic(u64, u64),
}

/// One stage: an annotated function.
pub struct Stage {
    pub name: Ident,
    pub kind: StageKind,
    pub parallelism: Option<Parallelism>,
    pub sig: Signature,
}

/// One edge of the DAG, `from -> to`.
pub struct Edge {
    pub from: Ident,
    pub to: Ident,
    /// The arrow between them, for spans covering the edge.
    pub arrow: Span,
}

/// The parsed pipeline.
pub struct Pipeline {
    pub name: Ident,
    pub krate: Path,
    pub stages: Vec<Stage>,
    pub edges: Vec<Edge>,
    /// Span of the `dag!` invocation (or of the module when it has none).
    pub dag_span: Span,
    pub has_dag: bool,
    /// The module with stage attributes and `dag!` removed.
    pub module: ItemMod,
}

impl Pipeline {
    pub fn stage(&self, name: &Ident) -> Option<&Stage> {
        self.stages.iter().find(|s| s.name == *name)
    }

    pub fn upstream<'a>(&'a self, name: &'a Ident) -> impl Iterator<Item = &'a Edge> + 'a {
        self.edges.iter().filter(move |e| e.to == *name)
    }

    pub fn downstream<'a>(&'a self, name: &'a Ident) -> impl Iterator<Item = &'a Edge> + 'a {
        self.edges.iter().filter(move |e| e.from == *name)
    }
}
