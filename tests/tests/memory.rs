//! A 10-stage job over 1M records on 2 threads: it finishes, and the batches buffered between
//! tasks never exceed what the channel capacities allow.

use solstice::prelude::*;
use solstice_tests::{config, read_parts, temp_dir, within};

#[solstice::pipeline]
pub mod long {
    use super::*;

    #[source]
    pub fn numbers(_cfg: &SourceConfig) -> Result<RangeSource> {
        Ok(RangeSource::new(0..1_000_000))
    }

    #[map(2)]
    pub fn a(x: u64) -> u64 {
        x + 1
    }

    #[map(1)]
    pub fn b(x: u64) -> u64 {
        x * 3
    }

    #[map(2)]
    pub fn c(x: u64) -> u64 {
        x - 1
    }

    #[filter(1)]
    pub fn d(x: &u64) -> bool {
        x.is_multiple_of(2)
    }

    #[map(2)]
    pub fn e(x: u64) -> u64 {
        x / 2
    }

    #[key_by(1)]
    pub fn k(x: &u64) -> u64 {
        x % 1000
    }

    #[stateful(2)]
    pub fn s(acc: &mut u64, x: u64) -> Option<u64> {
        *acc += 1;
        Some(x)
    }

    #[map(1)]
    pub fn g(x: u64) -> u64 {
        x
    }

    #[sink(2)]
    pub fn out(cfg: &SinkConfig) -> Result<FileSink<u64>> {
        FileSink::from_config(cfg)
    }

    dag! { numbers -> a -> b -> c -> d -> e -> k -> s -> g -> out }
}

#[test]
fn ten_stages_one_million_records_bounded_buffers() {
    let dir = temp_dir();
    let yaml = format!(
        "job: {{ channel_capacity: 4, batch_size: 512 }}\nruntime: {{ threads: 2 }}\nsinks: {{ out: {{ path: {} }} }}\n",
        dir.path().join("out").display()
    );
    let job = long::job(config(&yaml, &[])).unwrap();
    let plan = job.explain();
    assert!(plan.contains("10 stages in 10 chains"), "{plan}");
    let (result, state) = within(std::time::Duration::from_secs(300), move || {
        let mut result = job.run().unwrap();
        let state = long::State::from_result(&mut result).unwrap();
        (result, state)
    });
    // Each channel holds at most `capacity` batches; each sending task may additionally hold
    // the batches produced from one input batch (at most one per destination here).
    let bound = result.buffer_capacity + 2 * result.tasks * 2;
    assert!(result.peak_batches_in_flight > 0);
    assert!(
        result.peak_batches_in_flight <= bound,
        "{} batches in flight, bound {bound}",
        result.peak_batches_in_flight
    );
    let out: Vec<u64> = read_parts(&dir.path().join("out"));
    let reference: Vec<u64> = (0..1_000_000u64)
        .map(|x| (x + 1) * 3 - 1)
        .filter(|x| x.is_multiple_of(2))
        .map(|x| x / 2)
        .collect();
    assert_eq!(out.len(), reference.len());
    assert_eq!(out.iter().sum::<u64>(), reference.iter().sum::<u64>());
    assert_eq!(
        state.s.iter().map(|(_, n)| n).sum::<u64>(),
        reference.len() as u64
    );
}
