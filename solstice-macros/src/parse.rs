//! syn → model: finds the stage functions and the `dag!` of the module. Only syntax is checked
//! here; the meaning of the graph is checked in `check`.

use proc_macro2::TokenStream;
use syn::parse::{ParseStream, Parser};
use syn::punctuated::Punctuated;
use syn::spanned::Spanned;
use syn::{bracketed, Expr, Ident, Item, ItemMod, Lit, LitStr, Meta, Path, Token, UseTree};

use crate::ctxt::Ctxt;
use crate::model::{Edge, Parallelism, Pipeline, Stage, StageKind, UserItem};

/// The `crate = "..."` argument of `#[pipeline(...)]`.
pub fn parse_args(args: TokenStream, cx: &mut Ctxt) -> Path {
    let mut krate: Path = syn::parse_quote!(::solstice);
    let parser = syn::meta::parser(|meta| {
        if meta.path.is_ident("crate") {
            let lit: LitStr = meta.value()?.parse()?;
            krate = lit.parse().map_err(|_| {
                syn::Error::new(
                    lit.span(),
                    "`crate` takes the path of the solstice crate, e.g. `crate = \"my_lib::solstice\"`",
                )
            })?;
            Ok(())
        } else {
            Err(meta.error("unknown #[pipeline] argument; expected `crate = \"path\"`"))
        }
    });
    if let Err(e) = parser.parse2(args) {
        cx.push(e);
    }
    krate
}

pub fn parse(args: TokenStream, input: TokenStream, cx: &mut Ctxt) -> Option<Pipeline> {
    let krate = parse_args(args, cx);
    let mut module: ItemMod = match syn::parse2(input) {
        Ok(m) => m,
        Err(e) => {
            cx.push(syn::Error::new(
                e.span(),
                "#[pipeline] goes on a module: `pub mod name { ... }`",
            ));
            return None;
        }
    };
    let Some((_, items)) = module.content.as_mut() else {
        cx.error_spanned(
            &module,
            "#[pipeline] needs an inline module body `mod name { ... }`",
        );
        return None;
    };
    let mut stages = Vec::new();
    let mut edges = Vec::new();
    let mut dag_span = module.ident.span();
    let mut has_dag = false;
    let mut dag_failed = false;
    let mut names = Vec::new();
    let mut fns = Vec::new();
    let mut kept = Vec::with_capacity(items.len());
    for mut item in items.drain(..) {
        match &mut item {
            Item::Fn(f) => {
                let mut found: Option<(StageKind, StageArgs)> = None;
                let mut attrs = Vec::with_capacity(f.attrs.len());
                for attr in f.attrs.drain(..) {
                    let kind = attr
                        .path()
                        .get_ident()
                        .and_then(|i| StageKind::from_attr(&i.to_string()));
                    let Some(kind) = kind else {
                        attrs.push(attr);
                        continue;
                    };
                    if found.is_some() {
                        cx.error_spanned(&attr, "a stage has exactly one kind attribute");
                        continue;
                    }
                    let args = parse_stage_args(&attr.meta, kind, cx);
                    found = Some((kind, args));
                }
                f.attrs = attrs;
                names.push(UserItem {
                    ident: f.sig.ident.clone(),
                    what: if found.is_some() { "stage" } else { "function" },
                    types: false,
                    values: true,
                });
                match found {
                    Some((kind, args)) => stages.push(Stage {
                        name: f.sig.ident.clone(),
                        kind,
                        parallelism: args.parallelism,
                        on_end: args.on_end,
                        sig: f.sig.clone(),
                    }),
                    None => fns.push(f.sig.clone()),
                }
            }
            Item::Macro(m) if m.mac.path.is_ident("dag") => {
                if has_dag {
                    cx.error_spanned(&m.mac, "a pipeline has one `dag!`");
                    continue;
                }
                has_dag = true;
                dag_span = m.mac.path.span();
                match parse_dag.parse2(m.mac.tokens.clone()) {
                    Ok(e) => edges = e,
                    Err(e) => {
                        dag_failed = true;
                        cx.push(e);
                    }
                }
                continue;
            }
            other => names_of(other, &mut names),
        }
        kept.push(item);
    }
    *items = kept;
    Some(Pipeline {
        name: module.ident.clone(),
        krate,
        stages,
        edges,
        dag_span,
        has_dag,
        dag_failed,
        items: names,
        fns,
        module,
    })
}

/// The names an item other than a function defines, for the collision check.
fn names_of(item: &Item, out: &mut Vec<UserItem>) {
    let mut add = |ident: &Ident, what: &'static str, types: bool, values: bool| {
        out.push(UserItem {
            ident: ident.clone(),
            what,
            types,
            values,
        });
    };
    match item {
        Item::Struct(s) => {
            let values = !matches!(s.fields, syn::Fields::Named(_));
            add(&s.ident, "struct", true, values);
        }
        Item::Enum(e) => add(&e.ident, "enum", true, false),
        Item::Union(u) => add(&u.ident, "union", true, false),
        Item::Type(t) => add(&t.ident, "type alias", true, false),
        Item::Trait(t) => add(&t.ident, "trait", true, false),
        Item::TraitAlias(t) => add(&t.ident, "trait alias", true, false),
        Item::Mod(m) => add(&m.ident, "module", true, false),
        Item::Const(c) => add(&c.ident, "constant", false, true),
        Item::Static(s) => add(&s.ident, "static", false, true),
        Item::ExternCrate(c) => {
            let ident = c.rename.as_ref().map_or(&c.ident, |(_, i)| i);
            add(ident, "extern crate", true, false);
        }
        Item::Use(u) => use_names(&u.tree, out),
        _ => {}
    }
}

/// The names a `use` brings in (globs bring in none that can clash: local items shadow them).
fn use_names(tree: &UseTree, out: &mut Vec<UserItem>) {
    let ident = match tree {
        UseTree::Path(p) => return use_names(&p.tree, out),
        UseTree::Group(g) => {
            for t in &g.items {
                use_names(t, out);
            }
            return;
        }
        UseTree::Glob(_) => return,
        UseTree::Name(n) => &n.ident,
        UseTree::Rename(r) => &r.rename,
    };
    if ident != "self" {
        out.push(UserItem {
            ident: ident.clone(),
            what: "import",
            types: true,
            values: true,
        });
    }
}

/// The arguments of a stage attribute.
#[derive(Default)]
struct StageArgs {
    parallelism: Option<Parallelism>,
    on_end: Option<Ident>,
}

/// `#[map]`, `#[map(4)]`, `#[map((2, 10))]`, `#[map(parallelism = 4)]`, and for a stateful
/// stage `#[stateful(4, on_end = f)]` / `#[stateful(parallelism = 4, on_end = f)]`.
fn parse_stage_args(meta: &Meta, kind: StageKind, cx: &mut Ctxt) -> StageArgs {
    let list = match meta {
        Meta::Path(_) => return StageArgs::default(),
        Meta::List(list) => list,
        Meta::NameValue(nv) => {
            cx.error_spanned(nv, "expected `#[kind]` or `#[kind(parallelism)]`");
            return StageArgs::default();
        }
    };
    let parser = |input: ParseStream| {
        let mut args = StageArgs::default();
        let mut parallelism_given = false;
        while !input.is_empty() {
            let named = input.peek(Ident) && input.peek2(Token![=]);
            let key: Option<Ident> = if named {
                let key: Ident = input.parse()?;
                input.parse::<Token![=]>()?;
                Some(key)
            } else {
                None
            };
            match key {
                Some(key) if key == "on_end" => {
                    if kind != StageKind::Stateful {
                        return Err(syn::Error::new(
                            key.span(),
                            "`on_end` applies to #[stateful] stages only",
                        ));
                    }
                    let f: Ident = input.parse().map_err(|e| {
                        syn::Error::new(e.span(), "expected `on_end = function_name`")
                    })?;
                    if args.on_end.is_some() {
                        return Err(syn::Error::new(key.span(), "`on_end` is given twice"));
                    }
                    args.on_end = Some(f);
                }
                Some(key) if key != "parallelism" => {
                    return Err(syn::Error::new(
                        key.span(),
                        format!(
                            "unknown stage argument `{key}`; expected `parallelism` (or, on a \
                             #[stateful] stage, `on_end`)"
                        ),
                    ));
                }
                _ => {
                    let expr: Expr = input.parse()?;
                    if parallelism_given {
                        return Err(syn::Error::new_spanned(
                            &expr,
                            "the parallelism is given twice",
                        ));
                    }
                    parallelism_given = true;
                    args.parallelism = Some(parallelism_of(&expr)?);
                }
            }
            if input.is_empty() {
                break;
            }
            input
                .parse::<Token![,]>()
                .map_err(|e| syn::Error::new(e.span(), "expected `,` between stage arguments"))?;
        }
        Ok(args)
    };
    match parser.parse2(list.tokens.clone()) {
        Ok(args) => args,
        Err(e) => {
            cx.push(e);
            StageArgs::default()
        }
    }
}

fn int_of(expr: &Expr) -> syn::Result<u64> {
    if let Expr::Lit(lit) = expr {
        if let Lit::Int(i) = &lit.lit {
            let v: u64 = i.base10_parse()?;
            if v == 0 {
                return Err(syn::Error::new_spanned(
                    expr,
                    "parallelism must be at least 1",
                ));
            }
            return Ok(v);
        }
    }
    Err(syn::Error::new_spanned(
        expr,
        "expected a parallelism: `4` or elastic bounds `(2, 10)`",
    ))
}

fn parallelism_of(expr: &Expr) -> syn::Result<Parallelism> {
    match expr {
        Expr::Tuple(t) if t.elems.len() == 2 => {
            let min = int_of(&t.elems[0])?;
            let max = int_of(&t.elems[1])?;
            if min > max {
                return Err(syn::Error::new_spanned(
                    t,
                    format!("elastic parallelism ({min}, {max}) needs min <= max"),
                ));
            }
            Ok(Parallelism::Elastic(min, max))
        }
        Expr::Paren(p) => parallelism_of(&p.expr),
        _ => Ok(Parallelism::Fixed(int_of(expr)?)),
    }
}

/// `a -> b -> [c, d]; [c, d] -> e;`
fn parse_dag(input: ParseStream) -> syn::Result<Vec<Edge>> {
    let mut edges = Vec::new();
    while !input.is_empty() {
        let mut left = parse_group(input)?;
        while input.peek(Token![->]) {
            let arrow: Token![->] = input.parse()?;
            let right = parse_group(input)?;
            for from in &left {
                for to in &right {
                    edges.push(Edge {
                        from: from.clone(),
                        to: to.clone(),
                        arrow: arrow.span(),
                    });
                }
            }
            left = right;
        }
        if input.is_empty() {
            break;
        }
        input
            .parse::<Token![;]>()
            .map_err(|e| syn::Error::new(e.span(), "expected `->` or `;`"))?;
    }
    Ok(edges)
}

fn parse_group(input: ParseStream) -> syn::Result<Vec<Ident>> {
    if input.peek(syn::token::Bracket) {
        let content;
        let bracket = bracketed!(content in input);
        let names: Punctuated<Ident, Token![,]> =
            content.parse_terminated(<Ident as syn::parse::Parse>::parse, Token![,])?;
        if names.is_empty() {
            return Err(syn::Error::new(
                bracket.span.join(),
                "empty stage group `[]`",
            ));
        }
        Ok(names.into_iter().collect())
    } else {
        input
            .parse::<Ident>()
            .map(|i| vec![i])
            .map_err(|e| syn::Error::new(e.span(), "expected a stage name or `[a, b]`"))
    }
}
