//! Compile-time errors of `#[pipeline]`, pinned with their messages and spans. The `.stderr`
//! files depend on the compiler version; regenerate them with `TRYBUILD=overwrite` after a
//! toolchain upgrade and review the diff.

#[test]
fn ui() {
    let t = trybuild::TestCases::new();
    t.compile_fail("ui/*.rs");
}
