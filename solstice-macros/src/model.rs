//! The pipeline as the macro sees it: stages with their signatures, edges, and the names the
//! user's module defines (to find collisions with the generated items).

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
    /// `#[stateful(on_end = f)]`: the function called per key when the input ends.
    pub on_end: Option<Ident>,
    pub sig: Signature,
}

/// One edge of the DAG, `from -> to`.
pub struct Edge {
    pub from: Ident,
    pub to: Ident,
    /// The arrow between them, for spans covering the edge.
    pub arrow: Span,
}

/// A name the user's module defines (or imports), and in which namespaces.
pub struct UserItem {
    pub ident: Ident,
    /// What the item is, for messages: "stage", "function", "struct", "import", ...
    pub what: &'static str,
    /// Defines a type-namespace name (struct, enum, trait, type alias, module, import).
    pub types: bool,
    /// Defines a value-namespace name (fn, const, static, unit or tuple struct, import).
    pub values: bool,
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
    /// The `dag!` did not parse (its error is reported).
    pub dag_failed: bool,
    /// Every name the module's own items define.
    pub items: Vec<UserItem>,
    /// The signatures of the module's functions that are not stages (on_end hooks among them).
    pub fns: Vec<Signature>,
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
