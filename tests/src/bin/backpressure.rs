//! A pipeline whose sink is deliberately slow, for the test of backpressure between processes
//! (`tests/backpressure.rs`): a fast source of integers feeds a two-subtask sink that sleeps
//! a little every 1024 records.

use solstice::prelude::*;

#[solstice::pipeline]
pub mod backpressure {
    use super::*;

    #[source]
    pub fn numbers(cfg: &SourceConfig) -> Result<RangeSource> {
        RangeSource::from_config(cfg)
    }

    /// Chained into the sink's task: the sink consumes a batch of 1024 records in about 2 ms.
    #[map(2)]
    pub fn slowly(x: u64) -> u64 {
        if x.is_multiple_of(1024) {
            // The workload of a slow consumer, not a wait for anything.
            std::thread::sleep(std::time::Duration::from_millis(2));
        }
        x
    }

    #[sink(2)]
    pub fn out(cfg: &SinkConfig) -> Result<FileSink<u64>> {
        FileSink::from_config(cfg)
    }

    dag! { numbers -> slowly -> out }
}

fn main() -> solstice::Result<()> {
    backpressure::main()
}
