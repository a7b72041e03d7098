//! The `#[pipeline]` attribute macro of Solstice.
//!
//! Layers, as in serde_derive: [`parse`] turns the annotated module into a [`model::Pipeline`],
//! [`check`] validates stage signatures and the DAG (collecting every error with its span), and
//! [`expand`] generates the builder code, the state struct and the entry points.

mod check;
mod ctxt;
mod expand;
mod model;
mod parse;

use proc_macro::TokenStream;

/// Compiles an annotated module into a typed Solstice pipeline.
///
/// Inside the module, functions marked `#[source]`, `#[map]`, `#[flat_map]`, `#[filter]`,
/// `#[key_by]`, `#[stateful]` and `#[sink]` are stages, and one `dag! { a -> b -> c; ... }`
/// connects them (`[a, b] -> c` is a union, `a -> [b, c]` a fan-out). A stage attribute may set
/// the parallelism: `#[map(4)]`, `#[stateful((2, 10))]`, or `parallelism = ...`. A stateful
/// stage may name an end-of-input hook, a plain function of the module called with each key and
/// its final state when the input ends: `#[stateful(on_end = emit)]`, `#[stateful(4, on_end =
/// emit)]`.
///
/// The module gets `Pipeline`, `State`, `job()`, `run()` and `main()`; a user item of the module
/// with one of those names is an error.
///
/// `#[pipeline(crate = "path::to::solstice")]` names the runtime crate when it is re-exported.
#[proc_macro_attribute]
pub fn pipeline(args: TokenStream, input: TokenStream) -> TokenStream {
    expand::pipeline(args.into(), input.into()).into()
}
