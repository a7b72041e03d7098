//! syn → model: finds the stage functions and the `dag!` of the module. Only syntax is checked
//! here; the meaning of the graph is checked in `check`.

use proc_macro2::{Span, TokenStream};
use syn::parse::{ParseStream, Parser};
use syn::punctuated::Punctuated;
use syn::spanned::Spanned;
use syn::{bracketed, Expr, Ident, Item, ItemMod, Lit, LitStr, Meta, Path, Token};

use crate::ctxt::Ctxt;
use crate::model::{Edge, Parallelism, Pipeline, Stage, StageKind};

/// The `crate = "..."` argument of `#[pipeline(...)]`.
pub fn parse_args(args: TokenStream, cx: &mut Ctxt) -> Path {
    let mut krate: Path = syn::parse_quote!(::solstice);
    let parser = syn::meta::parser(|meta| {
        if meta.path.is_ident("crate") {
            let lit: LitStr = meta.value()?.parse()?;
            krate = lit.parse()?;
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
    let mut kept = Vec::with_capacity(items.len());
    for mut item in items.drain(..) {
        match &mut item {
            Item::Fn(f) => {
                let mut found: Option<(StageKind, Option<Parallelism>)> = None;
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
                    let parallelism = parse_stage_args(&attr.meta, cx);
                    found = Some((kind, parallelism));
                }
                if let Some((StageKind::Filter | StageKind::KeyBy | StageKind::Stateful, _)) = found
                {
                    // These kinds take `&T` (record or key), even when `T` is `String` or `Vec<_>`.
                    attrs.push(syn::parse_quote!(#[allow(clippy::ptr_arg)]));
                }
                f.attrs = attrs;
                if let Some((kind, parallelism)) = found {
                    stages.push(Stage {
                        name: f.sig.ident.clone(),
                        kind,
                        parallelism,
                        sig: f.sig.clone(),
                    });
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
                    Err(e) => cx.push(e),
                }
                continue;
            }
            _ => {}
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
        module,
    })
}

/// `#[map]`, `#[map(4)]`, `#[map((2, 10))]`, `#[map(parallelism = 4)]`.
fn parse_stage_args(meta: &Meta, cx: &mut Ctxt) -> Option<Parallelism> {
    let list = match meta {
        Meta::Path(_) => return None,
        Meta::List(list) => list,
        Meta::NameValue(nv) => {
            cx.error_spanned(nv, "expected `#[kind]` or `#[kind(parallelism)]`");
            return None;
        }
    };
    let parsed = (|input: ParseStream| {
        if input.peek(Ident) && input.peek2(Token![=]) {
            let key: Ident = input.parse()?;
            if key != "parallelism" {
                return Err(syn::Error::new(
                    key.span(),
                    "unknown stage argument; expected `parallelism`",
                ));
            }
            input.parse::<Token![=]>()?;
        }
        let expr: Expr = input.parse()?;
        Ok(expr)
    })
    .parse2(list.tokens.clone());
    let expr = match parsed {
        Ok(e) => e,
        Err(e) => {
            cx.push(e);
            return None;
        }
    };
    match parallelism_of(&expr) {
        Ok(p) => Some(p),
        Err(e) => {
            cx.push(e);
            None
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
        bracketed!(content in input);
        let names: Punctuated<Ident, Token![,]> =
            content.parse_terminated(<Ident as syn::parse::Parse>::parse, Token![,])?;
        if names.is_empty() {
            return Err(syn::Error::new(Span::call_site(), "empty stage group `[]`"));
        }
        Ok(names.into_iter().collect())
    } else {
        input
            .parse::<Ident>()
            .map(|i| vec![i])
            .map_err(|e| syn::Error::new(e.span(), "expected a stage name or `[a, b]`"))
    }
}
