//! Example Solstice workflows. Each module is one pipeline; `src/bin/` has a binary per workflow
//! and the `solstice` launcher that runs any of them by name.

// Each file is named after the pipeline module it holds.
#[allow(clippy::module_inception)]
pub mod simple_etl;
#[allow(clippy::module_inception)]
pub mod wordcount;

use solstice::cli::Workflow;

/// Every workflow of this package, for the `solstice` launcher.
pub fn registry() -> Vec<Workflow> {
    vec![
        Workflow::of::<simple_etl::Pipeline>(),
        Workflow::of::<wordcount::Pipeline>(),
    ]
}
