//! model → tokens: the builder calls of the pipeline, one spanned type assertion per edge, the
//! state struct, and the entry points. Each builder call names its type arguments as the stage's
//! signature writes them, so that a bound the runtime puts on them (a record type is `Data`:
//! `Serialize + DeserializeOwned`, ...) is reported on the user's signature. Generated items
//! refer to the runtime only through `<crate>::__private`; helpers live inside the generated
//! `build` function, so no helper name reaches the user's module.
//!
//! When `check` reported errors, the module keeps the user's items and gets the generated
//! items' signatures with bodies that never run, next to the errors: code that uses the pipeline
//! (`fn main() -> Result<()> { shop::main() }`) still resolves, so the user reads their mistake
//! and nothing else.

use std::collections::HashSet;

use proc_macro2::{Group, Span, TokenStream, TokenTree};
use quote::{format_ident, quote, quote_spanned, ToTokens};
use syn::{Ident, Item, LitStr, Type};

use crate::check::{self, Checked, Ty};
use crate::ctxt::Ctxt;
use crate::model::{Edge, Parallelism, Pipeline, StageKind};
use crate::parse;

pub fn pipeline(args: TokenStream, input: TokenStream) -> TokenStream {
    let mut cx = Ctxt::new();
    let Some(mut p) = parse::parse(args, input, &mut cx) else {
        return match cx.check() {
            Err(Some(e)) => e.to_compile_error(),
            Err(None) | Ok(()) => TokenStream::new(),
        };
    };
    let checked = check::check(&p, &mut cx);
    let (generated, errors) = match cx.check() {
        Ok(()) => (generate(&p, &checked), TokenStream::new()),
        Err(e) => (
            stubs(&p, &checked),
            e.map(|e| e.to_compile_error()).unwrap_or_default(),
        ),
    };
    if let Some((_, items)) = p.module.content.as_mut() {
        items.push(Item::Verbatim(generated));
    }
    let module = &p.module;
    quote!(#module #errors)
}

/// Gives every token of `tokens` the span `span`, so rustc reports errors about them there.
fn respan(tokens: &TokenStream, span: Span) -> TokenStream {
    tokens
        .clone()
        .into_iter()
        .map(|mut tt| {
            if let TokenTree::Group(g) = &tt {
                let mut ng = Group::new(g.delimiter(), respan(&g.stream(), span));
                ng.set_span(span);
                tt = TokenTree::Group(ng);
            } else {
                tt.set_span(span);
            }
            tt
        })
        .collect()
}

fn parallelism(p: Option<Parallelism>, private: &TokenStream) -> TokenStream {
    match p {
        None => quote!(#private::Option::None),
        Some(Parallelism::Fixed(n)) => {
            let n = n as usize;
            quote!(#private::Option::Some(#private::Parallelism::Fixed(#n)))
        }
        Some(Parallelism::Elastic(min, max)) => {
            let (min, max) = (min as usize, max as usize);
            quote!(#private::Option::Some(#private::Parallelism::Elastic { min: #min, max: #max }))
        }
    }
}

/// The tokens of a type `check` found.
fn ty(t: &Ty, private: &TokenStream) -> TokenStream {
    match t {
        Ty::Exact(t) => quote!(#t),
        Ty::SourceItem(c) => quote!(<#c as #private::Source>::Item),
        Ty::SinkItem(c) => quote!(<#c as #private::Sink>::Item),
        Ty::IterItem(r) => quote!(<#r as #private::IntoIterator>::Item),
        Ty::KeyOf(r) => quote!(<#r as #private::KeyValue>::Key),
        Ty::ValueOf(r) => quote!(<#r as #private::KeyValue>::Value),
    }
}

/// The type a stage's signature writes for `t`: the record type itself, or the connector,
/// collection or `(Key, Value)` pair whose item `t` is.
fn written(t: &Ty) -> &Type {
    match t {
        Ty::Exact(t)
        | Ty::SourceItem(t)
        | Ty::SinkItem(t)
        | Ty::IterItem(t)
        | Ty::KeyOf(t)
        | Ty::ValueOf(t) => t,
    }
}

/// The tokens of `t` spanning the type the user wrote: a projection's generated tokens take
/// the spans of the first and the last token of its written type, so rustc reports an unmet
/// bound of the projection exactly where it reports one of the written type.
fn spanned_ty(t: &Ty, private: &TokenStream) -> TokenStream {
    let (tr, assoc) = match t {
        Ty::Exact(t) => return quote!(#t),
        Ty::SourceItem(_) => (quote!(Source), quote!(Item)),
        Ty::SinkItem(_) => (quote!(Sink), quote!(Item)),
        Ty::IterItem(_) => (quote!(IntoIterator), quote!(Item)),
        Ty::KeyOf(_) => (quote!(KeyValue), quote!(Key)),
        Ty::ValueOf(_) => (quote!(KeyValue), quote!(Value)),
    };
    let w = written(t);
    let tokens: Vec<TokenTree> = w.to_token_stream().into_iter().collect();
    let first = tokens.first().map_or_else(Span::call_site, TokenTree::span);
    let last = tokens.last().map_or(first, TokenTree::span);
    let open = respan(&quote!(<), first);
    let middle = respan(&quote!(as #private::#tr>::), last);
    let assoc = respan(&assoc, last);
    quote!(#open #w #middle #assoc)
}

/// One input stream of a stage, cast to the type the stage takes. The cast goes through a trait
/// implemented only for equal types, named after the receiving stage and local to a block, whose
/// message names the edge: a mismatch reads "edge `a -> b`: `a` emits `X`, but `b` takes `Y`".
fn edge_input(
    e: &Edge,
    out: &Ty,
    inp: &Ty,
    keyed: bool,
    up_var: &Ident,
    private: &TokenStream,
) -> TokenStream {
    let span = e.arrow;
    // Named after the stage it feeds, so that rustc's note reads "the trait `b<Y>` is not
    // implemented for `X`", in the user's names only.
    let tr = Ident::new(&e.to.to_string(), span);
    let message = format!(
        "edge `{} -> {}`: `{}` emits `{{Self}}`, but `{}` takes `{{In}}`",
        e.from, e.to, e.from, e.to
    );
    let message = LitStr::new(&message, span);
    let out = respan(&ty(out, private), span);
    let inp = respan(&ty(inp, private), span);
    let (decl, imp, call) = if keyed {
        (
            quote!(fn cast<K>(s: #private::KeyedStream<K, Self>) -> #private::KeyedStream<K, In>;),
            quote!(fn cast<K>(s: #private::KeyedStream<K, T>) -> #private::KeyedStream<K, T> { s }),
            quote_spanned!(span=> <#out as #tr<#inp>>::cast(#up_var)),
        )
    } else {
        (
            quote!(fn cast(s: #private::Stream<Self>) -> #private::Stream<In>;),
            quote!(fn cast(s: #private::Stream<T>) -> #private::Stream<T> { s }),
            quote_spanned!(span=> <#out as #tr<#inp>>::cast(#up_var)),
        )
    };
    quote! {
        {
            #[allow(non_camel_case_types)]
            #[diagnostic::on_unimplemented(message = #message, label = "type mismatch on this edge")]
            trait #tr<In>: ::core::marker::Sized {
                #decl
            }
            impl<T> #tr<T> for T {
                #imp
            }
            #call
        }
    }
}

/// A trait named after a key_by stage through which a stateful stage and its on_end read the
/// key: as `&Key`, or as `&str` for a `String` key (the form clippy asks for). A key read as
/// another type is reported with both types.
fn key_trait(keyer: &Ident, private: &TokenStream) -> TokenStream {
    let message = format!(
        "`{keyer}` keys by `{{Self}}`, read as `&{{Self}}` (or `&str` for a `String` key), not \
         as `&{{Q}}`"
    );
    let label = format!("reads the key of `{keyer}`");
    quote! {
        #[allow(non_camel_case_types)]
        #[diagnostic::on_unimplemented(message = #message, label = #label)]
        trait #keyer<Q: ?::core::marker::Sized> {
            fn key(&self) -> &Q;
        }
        impl<T> #keyer<T> for T {
            fn key(&self) -> &T {
                self
            }
        }
        impl #keyer<str> for #private::String {
            fn key(&self) -> &str {
                self
            }
        }
    }
}

/// The hook of a stateful stage, as the closure the builder takes. Spanned on the attribute's
/// `on_end = f`, so that a hook whose types do not fit the stage is reported there; its records
/// go through a cast trait named after the hook whose message names both output types.
fn on_end(
    stage: &Ident,
    end: &Ident,
    out: Option<&Ty>,
    key: &TokenStream,
    private: &TokenStream,
) -> TokenStream {
    let span = end.span();
    let tr = Ident::new(&end.to_string(), span);
    let message = format!(
        "on_end `{end}` of stage `{stage}` emits `{{Self}}`, but `{stage}` emits `{{Out}}`"
    );
    let message = LitStr::new(&message, span);
    let out = out.map_or_else(|| quote!(_), |t| respan(&ty(t, private), span));
    quote_spanned! {span=>
        {
            #[allow(non_camel_case_types)]
            #[diagnostic::on_unimplemented(message = #message, label = "the records of this on_end")]
            trait #tr<Out> {
                fn cast(self) -> Out;
            }
            impl<T> #tr<T> for T {
                fn cast(self) -> T {
                    self
                }
            }
            |k: &_, s: &_| {
                #private::Iterator::map(
                    #private::IntoIterator::into_iter(#end(#key, s)),
                    |x| <_ as #tr<#out>>::cast(x),
                )
            }
        }
    }
}

fn generate(p: &Pipeline, checked: &Checked) -> TokenStream {
    let types = &checked.types;
    let krate = &p.krate;
    let private = quote!(#krate::__private);
    let var = |name: &syn::Ident| format_ident!("__stage_{}", name, span = Span::mixed_site());
    let mut calls = Vec::new();
    for &i in &checked.order {
        let stage = &p.stages[i];
        let name = &stage.name;
        let name_str = name.to_string();
        let v = var(name);
        let par = parallelism(stage.parallelism, &private);
        let Some(t) = types.get(&name_str) else {
            continue;
        };
        let mut inputs = Vec::new();
        for e in p.upstream(name) {
            let up_types = &types[&e.from.to_string()];
            let (Some(out), Some(inp)) = (&up_types.output, &t.input) else {
                continue;
            };
            let keyed = stage.kind == StageKind::Stateful;
            inputs.push(edge_input(e, out, inp, keyed, &var(&e.from), &private));
        }
        let inputs = quote!(&[#(#inputs),*]);
        // Every generic argument of the builder call is given, as the user's signature writes
        // it: rustc reports an unmet bound of a type argument (a record type that is not `Data`,
        // a state type that is not `Default`) on that argument, in the stage's signature. The
        // call itself, and with it what rustc blames on no argument, is spanned on the stage's
        // name.
        let span = name.span();
        let b = Ident::new("__builder", Span::mixed_site().located_at(span));
        let f_ty = quote_spanned!(span=> _);
        let written_input = t.input.as_ref().map(written);
        let written_output = t.output.as_ref().map(written);
        let call = match (stage.kind, written_input, written_output) {
            (StageKind::Source, _, Some(conn)) => {
                quote_spanned!(span=> #b.source::<#conn>(#name_str, #par, #name))
            }
            (StageKind::Map, Some(input), Some(out)) => quote_spanned! {span=>
                #b.map::<#input, #out, #f_ty>(#name_str, #par, #inputs, #name)
            },
            (StageKind::FlatMap, Some(input), Some(ret)) => quote_spanned! {span=>
                #b.flat_map::<#input, #ret, #f_ty>(#name_str, #par, #inputs, #name)
            },
            (StageKind::Filter, Some(input), _) => quote_spanned! {span=>
                #b.filter::<#input, #f_ty>(#name_str, #par, #inputs, #name)
            },
            // `ret` is the returned `(Key, Value)`.
            (StageKind::KeyBy, Some(input), Some(ret)) if t.owned_key => quote_spanned! {span=>
                #b.key_by_owned::<#input, #ret, #f_ty>(#name_str, #par, #inputs, #name)
            },
            (StageKind::KeyBy, Some(input), _) => {
                let Some(key) = t.key.as_ref().map(written) else {
                    continue;
                };
                quote_spanned! {span=>
                    #b.key_by::<#key, #input, #f_ty>(#name_str, #par, #inputs, #name)
                }
            }
            (StageKind::Stateful, Some(input), Some(ret)) => {
                let Some(state) = &t.state else { continue };
                // The key_by before it (checked); its name names the key-reading trait.
                let keyer = p.upstream(name).next().map_or(name, |e| &e.from);
                // The key type as the key_by writes it: a key type missing a bound is reported
                // on the key_by, and not again here.
                let key_ty = types
                    .get(&keyer.to_string())
                    .and_then(|k| k.key.as_ref())
                    .map_or_else(|| quote_spanned!(span=> _), |k| spanned_ty(k, &private));
                let read_key = |span: Span| quote_spanned!(span=> <_ as #keyer<_>>::key(k));
                let f = if t.owned_key {
                    let key = read_key(span);
                    quote_spanned!(span=> |s: &mut _, k: &_, v| #name(s, #key, v))
                } else {
                    quote!(#name)
                };
                let key_trait = if t.owned_key || stage.on_end.is_some() {
                    key_trait(keyer, &private)
                } else {
                    TokenStream::new()
                };
                let params = quote!(#key_ty, #state, #input, #ret);
                let call = match (&stage.on_end, t.owned_key) {
                    (None, false) => quote_spanned! {span=>
                        #b.stateful::<#params, #f_ty>(#name_str, #par, #inputs, #f)
                    },
                    (None, true) => quote_spanned! {span=>
                        #b.stateful_keyed::<#params, #f_ty>(#name_str, #par, #inputs, #f)
                    },
                    (Some(end), keyed) => {
                        let end_ty = quote_spanned!(end.span()=> _);
                        let key = read_key(end.span());
                        let end = on_end(name, end, t.output.as_ref(), &key, &private);
                        let method = if keyed {
                            quote_spanned!(span=> stateful_keyed_with_end)
                        } else {
                            quote_spanned!(span=> stateful_with_end)
                        };
                        quote_spanned! {span=>
                            #b.#method::<#params, #end_ty, #f_ty, #end_ty>(
                                #name_str, #par, #inputs, #f, #end,
                            )
                        }
                    }
                };
                quote!({ #key_trait #call })
            }
            (StageKind::Sink, Some(conn), _) => {
                quote_spanned!(span=> #b.sink::<#conn>(#name_str, #par, #inputs, #name))
            }
            _ => continue,
        };
        let call = if stage.kind == StageKind::Sink {
            quote_spanned!(span=> #call?;)
        } else {
            quote_spanned!(span=> let #v = #call?;)
        };
        calls.push(call);
    }
    let build = quote! {
        #(#calls)*
        #private::StdResult::Ok(())
    };
    items(p, checked, build, &private, &HashSet::new(), false)
}

/// The generated items for a pipeline with errors: the same signatures, bodies that never run
/// (the module does not compile), and none of the items a user item collides with.
fn stubs(p: &Pipeline, checked: &Checked) -> TokenStream {
    let krate = &p.krate;
    let private = quote!(#krate::__private);
    let skip = check::colliding(p);
    let message = format!("the pipeline `{}` did not compile", p.name);
    let body = quote!(::core::panic!(#message));
    items(p, checked, body, &private, &skip, true)
}

/// The public items: `Pipeline`, `State`, `job`, `run`, `main`. With `stub`, every body is
/// `body` (the build's body otherwise), and the names in `skip` are left out.
fn items(
    p: &Pipeline,
    checked: &Checked,
    body: TokenStream,
    private: &TokenStream,
    skip: &HashSet<&'static str>,
    stub: bool,
) -> TokenStream {
    let types = &checked.types;
    let builder = Ident::new("__builder", Span::mixed_site());
    // The state struct: one keyed state per stateful stage, keyed by its key_by's key type.
    let mut fields = Vec::new();
    let mut takes = Vec::new();
    for stage in p.stages.iter().filter(|s| s.kind == StageKind::Stateful) {
        let name = &stage.name;
        let name_str = name.to_string();
        let Some(state) = types.get(&name_str).and_then(|t| t.state.as_ref()) else {
            continue;
        };
        let Some(key) = p.upstream(name).find_map(|e| {
            p.stage(&e.from)
                .filter(|s| s.kind == StageKind::KeyBy)
                .and_then(|_| types.get(&e.from.to_string()))
                .and_then(|t| t.key.as_ref())
        }) else {
            continue;
        };
        let key = ty(key, private);
        let doc = format!("Keyed state of stage `{name_str}`.");
        fields.push(quote!(#[doc = #doc] pub #name: #private::KeyedState<#key, #state>,));
        takes.push(quote!(#name: result.take_state(#name_str)?,));
    }
    let pipeline_name = p.name.to_string();
    let serde_path = LitStr::new(&quote!(#private::serde).to_string(), Span::call_site());
    let pipeline_doc = format!("The `{pipeline_name}` pipeline, generated by `#[pipeline]`.");
    let state_doc = format!(
        "The keyed state of every stateful stage of `{pipeline_name}`, per key group; it is what \
         a checkpoint of this pipeline holds."
    );
    let (build_arg, result_arg, config_arg, bytes_arg) = if stub {
        let u = quote!(_);
        (u.clone(), u.clone(), u.clone(), u)
    } else {
        (
            quote!(#builder),
            quote!(result),
            quote!(config),
            quote!(bytes),
        )
    };
    let bodies = |real: TokenStream| if stub { body.clone() } else { real };
    let mut out = TokenStream::new();
    if !skip.contains("Pipeline") {
        out.extend(quote! {
            #[doc = #pipeline_doc]
            #[derive(Clone, Copy, Debug, Default)]
            pub struct Pipeline;

            #[automatically_derived]
            impl #private::Pipeline for Pipeline {
                const NAME: &'static str = #pipeline_name;

                // The on_end casts are closures on purpose (a function path would be reported
                // twice on a type mismatch).
                #[allow(clippy::redundant_closure)]
                fn build(#build_arg: &mut #private::JobBuilder) -> #private::Result<()> {
                    #body
                }
            }
        });
    }
    let has_state = !skip.contains("State");
    if has_state {
        let from_result = bodies(quote!(#private::StdResult::Ok(State { #(#takes)* })));
        let encode = bodies(quote!(#private::codec::encode(self)));
        let decode = bodies(quote!(#private::codec::decode(bytes)));
        out.extend(quote! {
            #[doc = #state_doc]
            #[derive(Debug, Default, #private::serde::Serialize, #private::serde::Deserialize)]
            #[serde(crate = #serde_path)]
            pub struct State {
                #(#fields)*
            }

            #[automatically_derived]
            impl State {
                /// Takes the final state of every stateful stage from a finished job.
                pub fn from_result(#result_arg: &mut #private::JobResult) -> #private::Result<State> {
                    #from_result
                }

                /// Encodes the state with the checkpoint codec (format header + bincode).
                pub fn encode(&self) -> #private::Result<::std::vec::Vec<u8>> {
                    #encode
                }

                /// Decodes state written by [`State::encode`].
                pub fn decode(#bytes_arg: &[u8]) -> #private::Result<State> {
                    #decode
                }
            }
        });
    }
    if !skip.contains("job") {
        let job = bodies(quote!(<Pipeline as #private::Pipeline>::job(config)));
        out.extend(quote! {
            /// Builds this pipeline's job under `config`.
            pub fn job(#config_arg: #private::Config) -> #private::Result<#private::Job> {
                #job
            }
        });
    }
    if !skip.contains("run") && has_state {
        let run = bodies(quote! {
            let mut result = job(config)?.run()?;
            let state = State::from_result(&mut result)?;
            #private::StdResult::Ok((result, state))
        });
        out.extend(quote! {
            /// Builds and runs this pipeline's job; returns the job result and the final state.
            pub fn run(#config_arg: #private::Config) -> #private::Result<(#private::JobResult, State)> {
                #run
            }
        });
    }
    if !skip.contains("main") {
        let main = bodies(quote!(#private::cli::main::<Pipeline>()));
        out.extend(quote! {
            /// The command-line entry point: `--config FILE [--job-id ID] [--set K=V]... [--explain]`.
            pub fn main() -> #private::Result<()> {
                #main
            }
        });
    }
    out
}
