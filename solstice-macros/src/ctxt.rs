//! Collects every error of a pipeline so that all are reported at once, each with its span.
//!
//! As serde_derive's `Ctxt`: a collector must be consumed with [`Ctxt::check`]; dropping one
//! unchecked is a bug in the macro (errors would be lost), and panics.

use std::fmt::Display;

use quote::ToTokens;

pub struct Ctxt {
    /// `None` once checked.
    errors: Option<Vec<syn::Error>>,
    /// A problem rustc reports itself on the user's code: fail, without a second message.
    failed: bool,
}

impl Ctxt {
    pub fn new() -> Self {
        Ctxt {
            errors: Some(Vec::new()),
            failed: false,
        }
    }

    fn errors(&mut self) -> &mut Vec<syn::Error> {
        match &mut self.errors {
            Some(errors) => errors,
            None => panic!("error collector used after check()"),
        }
    }

    pub fn error_spanned(&mut self, tokens: impl ToTokens, message: impl Display) {
        self.errors().push(syn::Error::new_spanned(tokens, message));
    }

    pub fn error_at(&mut self, span: proc_macro2::Span, message: impl Display) {
        self.errors().push(syn::Error::new(span, message));
    }

    pub fn push(&mut self, error: syn::Error) {
        self.errors().push(error);
    }

    /// Records a problem that rustc reports on the user's own code (so the macro adds no
    /// message of its own), which still stops code generation.
    pub fn reported_by_rustc(&mut self) {
        self.failed = true;
    }

    /// Consumes the collector: `Ok` when nothing went wrong, else all errors as one
    /// `syn::Error` (`None` when rustc reports the only problems).
    pub fn check(mut self) -> Result<(), Option<syn::Error>> {
        let mut iter = self.errors.take().unwrap_or_default().into_iter();
        let Some(mut first) = iter.next() else {
            return if self.failed { Err(None) } else { Ok(()) };
        };
        for e in iter {
            first.combine(e);
        }
        Err(Some(first))
    }
}

impl Drop for Ctxt {
    fn drop(&mut self) {
        if self.errors.is_some() && !std::thread::panicking() {
            panic!("an error collector was dropped without check()");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    #[should_panic(expected = "dropped without check()")]
    fn an_unchecked_collector_panics() {
        let mut cx = Ctxt::new();
        cx.error_at(proc_macro2::Span::call_site(), "lost");
    }

    #[test]
    fn check_reports_every_error_or_a_silent_failure() {
        let mut cx = Ctxt::new();
        cx.error_at(proc_macro2::Span::call_site(), "one");
        cx.error_at(proc_macro2::Span::call_site(), "two");
        let err = cx.check().unwrap_err().unwrap();
        assert_eq!(err.into_iter().count(), 2);

        let mut cx = Ctxt::new();
        cx.reported_by_rustc();
        assert!(cx.check().unwrap_err().is_none());
        assert!(Ctxt::new().check().is_ok());
    }
}
