//! A pipeline with a stage that gets stuck once, for the test of stuck workers
//! (`tests/stuck.rs`): the first time record `STUCK_AT` reaches it, and the file named by
//! `STUCK_MARKER` does not exist yet, it creates that file and never returns (its thread parks
//! for good), while the process's other threads (heartbeats, connections) go on.

use solstice::prelude::*;

/// Where the stage gets stuck.
const STUCK_AT: u64 = 1000;

#[solstice::pipeline]
pub mod stuck {
    use super::*;

    #[source]
    pub fn numbers(cfg: &SourceConfig) -> Result<RangeSource> {
        RangeSource::from_config(cfg)
    }

    #[map(2)]
    pub fn once_stuck(x: u64) -> u64 {
        if x == STUCK_AT {
            if let Some(marker) = std::env::var_os("STUCK_MARKER") {
                let first = std::fs::OpenOptions::new()
                    .write(true)
                    .create_new(true)
                    .open(&marker)
                    .is_ok();
                if first {
                    // The workload of a stage that never returns, not a wait for anything.
                    loop {
                        std::thread::park();
                    }
                }
            }
        }
        x
    }

    #[sink(2)]
    pub fn out(cfg: &SinkConfig) -> Result<FileSink<u64>> {
        FileSink::from_config(cfg)
    }

    dag! { numbers -> once_stuck -> out }
}

fn main() -> solstice::Result<()> {
    stuck::main()
}
