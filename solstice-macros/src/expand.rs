//! model → tokens: the builder calls of the pipeline, one spanned type assertion per edge, the
//! state struct, and the entry points. Generated items refer to the runtime only through
//! `<crate>::__private`.

use std::collections::HashMap;

use proc_macro2::{Group, Span, TokenStream, TokenTree};
use quote::{format_ident, quote, quote_spanned};
use syn::{Ident, Item, LitStr};

use crate::check::{self, StageTypes};
use crate::ctxt::Ctxt;
use crate::model::{Edge, Parallelism, Pipeline, StageKind};
use crate::parse;

pub fn pipeline(args: TokenStream, input: TokenStream) -> TokenStream {
    let mut cx = Ctxt::default();
    let Some(mut p) = parse::parse(args, input, &mut cx) else {
        return cx
            .into_error()
            .map(|e| e.to_compile_error())
            .unwrap_or_default();
    };
    let (types, order) = check::check(&p, &mut cx);
    if let Some(err) = cx.into_error() {
        // Keep the user's items so that completion and their own unit tests still resolve.
        let module = &p.module;
        let err = err.to_compile_error();
        return quote!(#module #err);
    }
    let generated = generate(&p, &types, &order);
    if let Some((_, items)) = p.module.content.as_mut() {
        items.push(Item::Verbatim(generated));
    }
    let module = &p.module;
    quote!(#module)
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

fn generate(p: &Pipeline, types: &HashMap<String, StageTypes>, order: &[usize]) -> TokenStream {
    let krate = &p.krate;
    let private = quote!(#krate::__private);
    let builder = Ident::new("__builder", Span::mixed_site());
    let var = |name: &syn::Ident| format_ident!("__stage_{}", name, span = Span::mixed_site());
    let mut edge_traits = Vec::new();
    let mut calls = Vec::new();
    let mut edge_index = 0usize;
    for &i in order {
        let stage = &p.stages[i];
        let name = &stage.name;
        let name_str = name.to_string();
        let v = var(name);
        let par = parallelism(stage.parallelism, &private);
        let Some(t) = types.get(&name_str) else {
            continue;
        };
        let ups: Vec<&Edge> = p.upstream(name).collect();
        let mut inputs = Vec::new();
        for e in &ups {
            let up_types = &types[&e.from.to_string()];
            let (Some(out), Some(inp)) = (&up_types.output, &t.input) else {
                continue;
            };
            let span = e.arrow;
            let tr = format_ident!("__Edge{}", edge_index, span = Span::mixed_site());
            edge_index += 1;
            let message = format!(
                "edge `{} -> {}`: `{}` emits `{{Self}}`, but `{}` takes `{{In}}`",
                e.from, e.to, e.from, e.to
            );
            let message = LitStr::new(&message, span);
            edge_traits.push(quote! {
                #[diagnostic::on_unimplemented(message = #message, label = "type mismatch on this edge")]
                trait #tr<In>: ::core::marker::Sized {
                    fn cast(s: #private::Stream<Self>) -> #private::Stream<In>;
                    fn cast_keyed<K>(s: #private::KeyedStream<K, Self>) -> #private::KeyedStream<K, In>;
                }
                impl<T> #tr<T> for T {
                    fn cast(s: #private::Stream<T>) -> #private::Stream<T> { s }
                    fn cast_keyed<K>(s: #private::KeyedStream<K, T>) -> #private::KeyedStream<K, T> { s }
                }
            });
            let out = respan(out, span);
            let inp = respan(inp, span);
            let up_var = var(&e.from);
            let method = if stage.kind == StageKind::Stateful {
                quote_spanned!(span=> cast_keyed)
            } else {
                quote_spanned!(span=> cast)
            };
            inputs.push(quote_spanned!(span=> <#out as #tr<#inp>>::#method(#up_var)));
        }
        let call = match stage.kind {
            StageKind::Source => quote!(let #v = #builder.source(#name_str, #par, #name)?;),
            StageKind::Map => {
                quote!(let #v = #builder.map(#name_str, #par, &[#(#inputs),*], #name)?;)
            }
            StageKind::FlatMap => {
                quote!(let #v = #builder.flat_map(#name_str, #par, &[#(#inputs),*], #name)?;)
            }
            StageKind::Filter => {
                quote!(let #v = #builder.filter(#name_str, #par, &[#(#inputs),*], #name)?;)
            }
            StageKind::KeyBy if t.owned_key => {
                quote!(let #v = #builder.key_by_owned(#name_str, #par, &[#(#inputs),*], #name)?;)
            }
            StageKind::KeyBy => {
                quote!(let #v = #builder.key_by(#name_str, #par, &[#(#inputs),*], #name)?;)
            }
            StageKind::Stateful if t.owned_key => {
                quote!(let #v = #builder.stateful_keyed(#name_str, #par, &[#(#inputs),*], #name)?;)
            }
            StageKind::Stateful => {
                quote!(let #v = #builder.stateful(#name_str, #par, &[#(#inputs),*], #name)?;)
            }
            StageKind::Sink => quote!(#builder.sink(#name_str, #par, &[#(#inputs),*], #name)?;),
        };
        calls.push(call);
    }

    // The state struct: one keyed state per stateful stage, keyed by its key_by's key type.
    let mut fields = Vec::new();
    let mut takes = Vec::new();
    for stage in p.stages.iter().filter(|s| s.kind == StageKind::Stateful) {
        let name = &stage.name;
        let name_str = name.to_string();
        let Some(state) = types.get(&name_str).and_then(|t| t.state.as_ref()) else {
            continue;
        };
        let Some(key) = p
            .upstream(name)
            .find_map(|e| types.get(&e.from.to_string()).and_then(|t| t.key.as_ref()))
        else {
            continue;
        };
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
    quote! {
        #[doc = #pipeline_doc]
        #[derive(Clone, Copy, Debug, Default)]
        pub struct Pipeline;

        #[automatically_derived]
        impl #private::Pipeline for Pipeline {
            const NAME: &'static str = #pipeline_name;

            fn build(#builder: &mut #private::JobBuilder) -> #private::Result<()> {
                #(#edge_traits)*
                #(#calls)*
                #private::StdResult::Ok(())
            }
        }

        #[doc = #state_doc]
        #[derive(Debug, Default, #private::serde::Serialize, #private::serde::Deserialize)]
        #[serde(crate = #serde_path)]
        pub struct State {
            #(#fields)*
        }

        #[automatically_derived]
        impl State {
            /// Takes the final state of every stateful stage from a finished job.
            pub fn from_result(result: &mut #private::JobResult) -> #private::Result<State> {
                #private::StdResult::Ok(State { #(#takes)* })
            }

            /// Encodes the state with the checkpoint codec (format header + bincode).
            pub fn encode(&self) -> #private::Result<::std::vec::Vec<u8>> {
                #private::codec::encode(self)
            }

            /// Decodes state written by [`State::encode`].
            pub fn decode(bytes: &[u8]) -> #private::Result<State> {
                #private::codec::decode(bytes)
            }
        }

        /// Builds this pipeline's job under `config`.
        pub fn job(config: #private::Config) -> #private::Result<#private::Job> {
            <Pipeline as #private::Pipeline>::job(config)
        }

        /// Builds and runs this pipeline's job; returns the job result and the final state.
        pub fn run(config: #private::Config) -> #private::Result<(#private::JobResult, State)> {
            let mut result = job(config)?.run()?;
            let state = State::from_result(&mut result)?;
            #private::StdResult::Ok((result, state))
        }

        /// The command-line entry point: `--config FILE [--job-id ID] [--set K=V]... [--explain]`.
        pub fn main() -> #private::Result<()> {
            #private::cli::main::<Pipeline>()
        }
    }
}
