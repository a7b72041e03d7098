//! Validation, diagnostics only: each stage's signature against its kind, the DAG (unknown
//! names, cycles, keyed stages without key_by, stages left unconnected), the on_end hooks, and
//! collisions between the user's items and the generated ones. Every problem is reported with a
//! span on the user's stage, item or edge. What it returns is plain data (types taken from the
//! signatures); `expand` turns it into tokens. Edge *types* are checked by rustc through spanned
//! assertions that `expand` emits.

use std::collections::{HashMap, HashSet};

use syn::{FnArg, Ident, PathArguments, ReturnType, Type};

use crate::ctxt::Ctxt;
use crate::model::{Pipeline, Stage, StageKind};

/// A record, key or state type, as a stage's signature gives it.
pub enum Ty {
    /// The type itself.
    Exact(Type),
    /// `<C as Source>::Item` of a source connector `C`.
    SourceItem(Type),
    /// `<C as Sink>::Item` of a sink connector `C`.
    SinkItem(Type),
    /// `<R as IntoIterator>::Item` of a returned collection `R`.
    IterItem(Type),
    /// `<R as KeyValue>::Key` of an owned key_by's result `R`.
    KeyOf(Type),
    /// `<R as KeyValue>::Value` of an owned key_by's result `R`.
    ValueOf(Type),
}

/// Types a stage's signature gives it.
pub struct StageTypes {
    /// The record type the stage reads.
    pub input: Option<Ty>,
    /// The record type the stage emits.
    pub output: Option<Ty>,
    /// key_by: the key type.
    pub key: Option<Ty>,
    /// stateful: the state type.
    pub state: Option<Type>,
    /// key_by: takes its record by value and returns `(key, value)`. stateful: takes the key.
    pub owned_key: bool,
}

/// What `check` found: the stage types by stage name and a topological order of the stages.
pub struct Checked {
    pub types: HashMap<String, StageTypes>,
    pub order: Vec<usize>,
}

/// The public items `expand` generates into the module.
pub const GENERATED_TYPES: [&str; 2] = ["Pipeline", "State"];
/// The public functions `expand` generates into the module.
pub const GENERATED_FNS: [&str; 3] = ["job", "run", "main"];

/// Checks everything; returns the stage types and a topological order.
pub fn check(p: &Pipeline, cx: &mut Ctxt) -> Checked {
    let mut types = HashMap::new();
    for stage in &p.stages {
        if let Some(t) = signature(stage, cx) {
            types.insert(stage.name.to_string(), t);
        }
    }
    collisions(p, cx);
    on_end(p, cx);
    graph(p, cx);
    let order = topological(p);
    Checked { types, order }
}

/// Names of generated items that a user item of the module also defines.
pub fn colliding(p: &Pipeline) -> HashSet<&'static str> {
    let mut out = HashSet::new();
    for item in &p.items {
        for name in GENERATED_TYPES {
            if item.types && item.ident == name {
                out.insert(name);
            }
        }
        for name in GENERATED_FNS {
            if item.values && item.ident == name {
                out.insert(name);
            }
        }
    }
    out
}

fn collisions(p: &Pipeline, cx: &mut Ctxt) {
    for item in &p.items {
        let what = item.what;
        let n = &item.ident;
        if item.types && GENERATED_TYPES.iter().any(|g| n == g) {
            cx.error_spanned(
                n,
                format!("{what} `{n}` collides with the generated `{n}` struct; rename the {what}"),
            );
        }
        if item.values && GENERATED_FNS.iter().any(|g| n == g) {
            cx.error_spanned(
                n,
                format!("{what} `{n}` collides with the generated `{n}()`; rename the {what}"),
            );
        }
    }
}

const ON_END_SIGNATURE: &str = "`fn(&Key, &State) -> impl IntoIterator<Item = Out>`";

/// Each `on_end = f` names a plain function of the module taking a key and a state.
fn on_end(p: &Pipeline, cx: &mut Ctxt) {
    for stage in &p.stages {
        let Some(f) = &stage.on_end else { continue };
        let name = &stage.name;
        if p.stage(f).is_some() {
            cx.error_spanned(
                f,
                format!(
                    "`{f}` is a stage; the on_end of `{name}` is a plain function of the module \
                     (not a stage) with the signature {ON_END_SIGNATURE}"
                ),
            );
            continue;
        }
        let Some(sig) = p.fns.iter().find(|s| s.ident == *f) else {
            cx.error_spanned(
                f,
                format!(
                    "no function `{f}` in this module for the on_end of `{name}`; define \
                     `fn {f}(key: &Key, state: &State) -> impl IntoIterator<Item = Out>`"
                ),
            );
            continue;
        };
        let n = sig.inputs.len();
        if n != 2 {
            cx.error_spanned(
                sig,
                format!(
                    "on_end function `{f}` takes {n} parameter{}; it has the signature \
                     {ON_END_SIGNATURE}",
                    if n == 1 { "" } else { "s" }
                ),
            );
        } else if matches!(sig.output, ReturnType::Default) {
            cx.error_spanned(
                sig,
                format!(
                    "on_end function `{f}` returns nothing; it has the signature \
                     {ON_END_SIGNATURE}"
                ),
            );
        }
    }
}

fn typed_args(stage: &Stage, cx: &mut Ctxt) -> Option<Vec<Type>> {
    let mut out = Vec::new();
    for arg in &stage.sig.inputs {
        match arg {
            FnArg::Typed(t) => out.push((*t.ty).clone()),
            FnArg::Receiver(_) => {
                // rustc says it: "`self` parameter is only allowed in associated functions".
                cx.reported_by_rustc();
                return None;
            }
        }
    }
    Some(out)
}

fn expectation(kind: StageKind) -> &'static str {
    match kind {
        StageKind::Source => "`fn(&SourceConfig) -> Result<impl Source>`",
        StageKind::Sink => "`fn(&SinkConfig) -> Result<impl Sink>`",
        StageKind::Map => "`fn(In) -> Out`",
        StageKind::FlatMap => "`fn(In) -> impl IntoIterator<Item = Out>`",
        StageKind::Filter => "`fn(&In) -> bool`",
        StageKind::KeyBy => "`fn(&In) -> Key` or `fn(In) -> (Key, Out)`",
        StageKind::Stateful => {
            "`fn(&mut State, In) -> impl IntoIterator<Item = Out>` (e.g. `Option<Out>`), or `fn(&mut State, &Key, In) -> ...`"
        }
    }
}

fn by_value(ty: &Type) -> bool {
    !matches!(ty, Type::Reference(_))
}

fn shared_ref(ty: &Type) -> Option<&Type> {
    match ty {
        Type::Reference(r) if r.mutability.is_none() => Some(&r.elem),
        _ => None,
    }
}

fn mut_ref(ty: &Type) -> Option<&Type> {
    match ty {
        Type::Reference(r) if r.mutability.is_some() => Some(&r.elem),
        _ => None,
    }
}

/// `Result<X>` or `Result<X, E>` → `X`.
fn result_ok(ty: &Type) -> Option<&Type> {
    let Type::Path(p) = ty else { return None };
    let last = p.path.segments.last()?;
    if last.ident != "Result" {
        return None;
    }
    let PathArguments::AngleBracketed(args) = &last.arguments else {
        return None;
    };
    match args.args.first()? {
        syn::GenericArgument::Type(t) => Some(t),
        _ => None,
    }
}

fn is_bool(ty: &Type) -> bool {
    matches!(ty, Type::Path(p) if p.qself.is_none() && p.path.is_ident("bool"))
}

fn signature(stage: &Stage, cx: &mut Ctxt) -> Option<StageTypes> {
    let sig = &stage.sig;
    let kind = stage.kind;
    let bad = |cx: &mut Ctxt, found: &str| {
        cx.error_spanned(
            sig,
            format!(
                "#[{}] stage `{}` {found}; a {} stage has the signature {}",
                kind.attr(),
                stage.name,
                kind.attr(),
                expectation(kind)
            ),
        );
    };
    if sig.asyncness.is_some() {
        bad(cx, "is async");
        return None;
    }
    if !sig.generics.params.is_empty() {
        bad(cx, "is generic");
        return None;
    }
    let args = typed_args(stage, cx)?;
    let ret = match &sig.output {
        ReturnType::Type(_, t) => Some((**t).clone()),
        ReturnType::Default => None,
    };
    let n = args.len();
    let fits = match kind {
        StageKind::Stateful => n == 2 || n == 3,
        _ => n == 1,
    };
    if !fits {
        bad(
            cx,
            &format!("takes {n} parameter{}", if n == 1 { "" } else { "s" }),
        );
        return None;
    }
    let Some(ret) = ret else {
        bad(cx, "returns nothing");
        return None;
    };
    let types = match kind {
        StageKind::Source | StageKind::Sink => {
            if shared_ref(&args[0]).is_none() {
                bad(cx, "does not take its config by reference");
                return None;
            }
            let Some(conn) = result_ok(&ret) else {
                bad(cx, "does not return a `Result`");
                return None;
            };
            if kind == StageKind::Source {
                StageTypes {
                    input: None,
                    output: Some(Ty::SourceItem(conn.clone())),
                    key: None,
                    state: None,
                    owned_key: false,
                }
            } else {
                StageTypes {
                    input: Some(Ty::SinkItem(conn.clone())),
                    output: None,
                    key: None,
                    state: None,
                    owned_key: false,
                }
            }
        }
        StageKind::Map | StageKind::FlatMap => {
            if !by_value(&args[0]) {
                bad(cx, "takes its record by reference");
                return None;
            }
            let input = &args[0];
            let output = if kind == StageKind::Map {
                Ty::Exact(ret)
            } else {
                Ty::IterItem(ret)
            };
            StageTypes {
                input: Some(Ty::Exact(input.clone())),
                output: Some(output),
                key: None,
                state: None,
                owned_key: false,
            }
        }
        StageKind::KeyBy if by_value(&args[0]) => {
            // The owned form: `fn(In) -> (Key, Out)` moves the key out of the record.
            let input = &args[0];
            StageTypes {
                input: Some(Ty::Exact(input.clone())),
                output: Some(Ty::ValueOf(ret.clone())),
                key: Some(Ty::KeyOf(ret)),
                state: None,
                owned_key: true,
            }
        }
        StageKind::Filter | StageKind::KeyBy => {
            let Some(input) = shared_ref(&args[0]) else {
                bad(cx, "takes its record by value");
                return None;
            };
            if kind == StageKind::Filter && !is_bool(&ret) {
                bad(cx, "does not return `bool`");
                return None;
            }
            let key = (kind == StageKind::KeyBy).then(|| Ty::Exact(ret));
            StageTypes {
                input: Some(Ty::Exact(input.clone())),
                output: Some(Ty::Exact(input.clone())),
                key,
                state: None,
                owned_key: false,
            }
        }
        StageKind::Stateful => {
            let Some(state) = mut_ref(&args[0]) else {
                bad(cx, "does not take its state as `&mut State` first");
                return None;
            };
            // `(&mut State, In)` or `(&mut State, &Key, In)`.
            let with_key = n == 3;
            if with_key && shared_ref(&args[1]).is_none() {
                bad(cx, "does not take the key as `&Key` second");
                return None;
            }
            let input = &args[n - 1];
            if !by_value(input) {
                bad(cx, "takes its record by reference");
                return None;
            }
            StageTypes {
                input: Some(Ty::Exact(input.clone())),
                output: Some(Ty::IterItem(ret)),
                key: None,
                state: Some(state.clone()),
                owned_key: with_key,
            }
        }
    };
    Some(types)
}

fn graph(p: &Pipeline, cx: &mut Ctxt) {
    if !p.has_dag {
        cx.error_spanned(
            &p.module.ident,
            "pipeline has no `dag! { a -> b -> c }` connecting its stages",
        );
        return;
    }
    if p.stages.is_empty() {
        cx.error_at(
            p.dag_span,
            "pipeline has no stages; mark functions with #[source], #[map], ... #[sink]",
        );
        return;
    }
    if p.dag_failed {
        // Its syntax error is reported; the graph it would have is unknown.
        return;
    }
    let known: HashSet<String> = p.stages.iter().map(|s| s.name.to_string()).collect();
    let mut reported = HashSet::new();
    let mut seen_edges = HashSet::new();
    for e in &p.edges {
        for end in [&e.from, &e.to] {
            if !known.contains(&end.to_string()) && reported.insert(end.clone()) {
                let names: Vec<String> = p.stages.iter().map(|s| s.name.to_string()).collect();
                cx.error_spanned(
                    end,
                    format!(
                        "unknown stage `{end}` in dag!; the stages of this pipeline are: {}",
                        names.join(", ")
                    ),
                );
            }
        }
        if !seen_edges.insert((e.from.to_string(), e.to.to_string())) {
            cx.error_spanned(
                &e.to,
                format!("edge `{} -> {}` appears twice", e.from, e.to),
            );
        }
        if e.from == e.to {
            cx.error_spanned(&e.to, format!("cycle: stage `{}` feeds itself", e.to));
        }
    }
    for stage in &p.stages {
        let name = &stage.name;
        let ups: Vec<&Ident> = p.upstream(name).map(|e| &e.from).collect();
        let downs: Vec<&Ident> = p.downstream(name).map(|e| &e.to).collect();
        if ups.is_empty() && downs.is_empty() {
            cx.error_spanned(
                name,
                format!("stage `{name}` is defined but not connected in dag!"),
            );
            continue;
        }
        match stage.kind {
            StageKind::Source => {
                for e in p.upstream(name) {
                    cx.error_spanned(
                        &e.to,
                        format!(
                            "source `{name}` cannot have an upstream stage (`{}`)",
                            e.from
                        ),
                    );
                }
            }
            _ if ups.is_empty() => {
                cx.error_spanned(
                    name,
                    format!(
                        "{} stage `{name}` has no upstream stage in dag!",
                        stage.kind.attr()
                    ),
                );
            }
            _ => {}
        }
        match stage.kind {
            StageKind::Sink => {
                for e in p.downstream(name) {
                    cx.error_spanned(
                        &e.from,
                        format!("sink `{name}` cannot have a downstream stage (`{}`)", e.to),
                    );
                }
            }
            _ if downs.is_empty() => {
                cx.error_spanned(
                    name,
                    format!(
                        "{} stage `{name}` has no downstream stage in dag!",
                        stage.kind.attr()
                    ),
                );
            }
            _ => {}
        }
        if stage.kind == StageKind::Stateful {
            for e in p.upstream(name) {
                if let Some(up) = p.stage(&e.from) {
                    if up.kind != StageKind::KeyBy {
                        cx.error_spanned(
                            &e.to,
                            format!(
                                "stateful stage `{name}` needs a #[key_by] stage right before it, but `{}` is a #[{}] stage; insert a key_by: `{} -> by_key -> {name}`",
                                up.name,
                                up.kind.attr(),
                                up.name
                            ),
                        );
                    }
                }
            }
        }
        if stage.kind == StageKind::KeyBy {
            for e in p.downstream(name) {
                if let Some(down) = p.stage(&e.to) {
                    if down.kind != StageKind::Stateful {
                        cx.error_spanned(
                            &e.to,
                            format!(
                                "key_by stage `{name}` feeds `{}`, a #[{}] stage; a key_by feeds #[stateful] stages only",
                                down.name,
                                down.kind.attr()
                            ),
                        );
                    }
                }
            }
        }
    }
    cycles(p, cx);
}

/// Reports each cycle once, pointing at every edge on it.
fn cycles(p: &Pipeline, cx: &mut Ctxt) {
    let names: Vec<String> = p.stages.iter().map(|s| s.name.to_string()).collect();
    let index: HashMap<&str, usize> = names
        .iter()
        .enumerate()
        .map(|(i, n)| (n.as_str(), i))
        .collect();
    let mut adj: Vec<Vec<usize>> = vec![Vec::new(); names.len()];
    for (ei, e) in p.edges.iter().enumerate() {
        if let (Some(&a), Some(&b)) = (
            index.get(e.from.to_string().as_str()),
            index.get(e.to.to_string().as_str()),
        ) {
            if a != b {
                adj[a].push(ei);
            }
        }
    }
    // 0 = unvisited, 1 = on stack, 2 = done
    let mut color = vec![0u8; names.len()];
    let mut stack_edges: Vec<usize> = Vec::new();
    fn dfs(
        v: usize,
        p: &Pipeline,
        adj: &[Vec<usize>],
        index: &HashMap<&str, usize>,
        color: &mut [u8],
        stack_edges: &mut Vec<usize>,
        cx: &mut Ctxt,
    ) {
        color[v] = 1;
        for &ei in &adj[v] {
            let e = &p.edges[ei];
            let w = index[e.to.to_string().as_str()];
            if color[w] == 1 {
                // The cycle is the stack suffix starting at the edge leaving `w`, plus this edge.
                let start = stack_edges
                    .iter()
                    .position(|&se| p.edges[se].from == e.to)
                    .unwrap_or(stack_edges.len());
                let mut cycle: Vec<usize> = stack_edges[start..].to_vec();
                cycle.push(ei);
                let mut path: Vec<String> =
                    cycle.iter().map(|&c| p.edges[c].from.to_string()).collect();
                path.push(e.to.to_string());
                let text = path.join(" -> ");
                for &c in &cycle {
                    let edge = &p.edges[c];
                    cx.error_spanned(
                        &edge.to,
                        format!("cycle in dag!: {text}; a pipeline is acyclic"),
                    );
                }
            } else if color[w] == 0 {
                stack_edges.push(ei);
                dfs(w, p, adj, index, color, stack_edges, cx);
                stack_edges.pop();
            }
        }
        color[v] = 2;
    }
    for v in 0..names.len() {
        if color[v] == 0 {
            dfs(v, p, &adj, &index, &mut color, &mut stack_edges, cx);
        }
    }
}

/// Stage indices in an order where every stage comes after its upstream stages (Kahn's
/// algorithm, ties broken by declaration order). Stages on a cycle are left out.
fn topological(p: &Pipeline) -> Vec<usize> {
    let n = p.stages.len();
    let index: HashMap<String, usize> = p
        .stages
        .iter()
        .enumerate()
        .map(|(i, s)| (s.name.to_string(), i))
        .collect();
    let mut indegree = vec![0usize; n];
    let mut outs: Vec<Vec<usize>> = vec![Vec::new(); n];
    for e in &p.edges {
        if let (Some(&a), Some(&b)) = (index.get(&e.from.to_string()), index.get(&e.to.to_string()))
        {
            indegree[b] += 1;
            outs[a].push(b);
        }
    }
    let mut order = Vec::with_capacity(n);
    let mut ready: Vec<usize> = (0..n).filter(|&i| indegree[i] == 0).collect();
    ready.reverse();
    while let Some(v) = ready.pop() {
        order.push(v);
        let mut next = Vec::new();
        for &w in &outs[v] {
            indegree[w] -= 1;
            if indegree[w] == 0 {
                next.push(w);
            }
        }
        next.sort_unstable_by(|a, b| b.cmp(a));
        ready.extend(next);
        ready.sort_unstable_by(|a, b| b.cmp(a));
    }
    order
}
