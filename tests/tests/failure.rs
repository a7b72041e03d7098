//! Failures end the job with an error naming the stage (and file and line for bad input); they
//! never hang it.

use std::time::Duration;

use solstice::prelude::*;
use solstice_tests::{config, temp_dir, within};

#[solstice::pipeline]
pub mod fragile {
    use super::*;

    #[source]
    pub fn numbers(_cfg: &SourceConfig) -> Result<RangeSource> {
        Ok(RangeSource::new(0..100_000))
    }

    #[map]
    pub fn fine(x: u64) -> u64 {
        x
    }

    #[map]
    pub fn explode(x: u64) -> u64 {
        if x == 500 {
            panic!("cannot handle record {x}");
        }
        x
    }

    #[sink]
    pub fn out(cfg: &SinkConfig) -> Result<FileSink<u64>> {
        FileSink::from_config(cfg)
    }

    dag! { numbers -> fine -> explode -> out }
}

#[solstice::pipeline]
pub mod parse_orders {
    use super::*;

    #[derive(Clone, Debug, Serialize, Deserialize)]
    pub struct Order {
        pub id: u64,
        pub amount: f64,
    }

    #[source]
    pub fn orders(cfg: &SourceConfig) -> Result<FileSource<Order>> {
        FileSource::from_config(cfg)
    }

    #[sink]
    pub fn out(cfg: &SinkConfig) -> Result<FileSink<Order>> {
        FileSink::from_config(cfg)
    }

    dag! { orders -> out }
}

#[test]
fn panic_on_record_500_names_the_stage() {
    let dir = temp_dir();
    let yaml = format!(
        "sinks: {{ out: {{ path: {} }} }}\n",
        dir.path().join("out").display()
    );
    for overrides in [
        vec!["runtime.threads=1".to_string()],
        vec![
            "runtime.threads=2".to_string(),
            "stages.explode.parallelism=2".to_string(),
        ],
        vec![
            "runtime.threads=4".to_string(),
            "job.parallelism=3".to_string(),
        ],
    ] {
        let cfg = config(&yaml, &overrides);
        let result = within(Duration::from_secs(120), move || {
            fragile::run(cfg).map(|_| ())
        });
        let err = result.expect_err("the job must fail");
        let text = err.to_string();
        assert!(
            matches!(err, Error::StagePanic { ref stage, .. } if stage == "explode"),
            "{text}"
        );
        assert!(
            text.contains("stage `explode`") && text.contains("cannot handle record 500"),
            "{text}"
        );
        // No part file is published for a failed job.
        assert!(!dir.path().join("out/part-00000.jsonl").exists());
    }
}

#[test]
fn bad_input_line_names_file_line_and_stage() {
    let dir = temp_dir();
    let input = dir.path().join("orders.jsonl");
    std::fs::write(
        &input,
        "{\"id\":1,\"amount\":2.0}\n{\"id\":2,\"amount\":\"lots\"}\n",
    )
    .unwrap();
    let yaml = format!(
        "sources: {{ orders: {{ path: {} }} }}\nsinks: {{ out: {{ path: {} }} }}\n",
        input.display(),
        dir.path().join("out").display()
    );
    let cfg = config(&yaml, &[]);
    let err = within(Duration::from_secs(60), move || {
        parse_orders::run(cfg).map(|_| ())
    })
    .unwrap_err();
    let text = err.to_string();
    assert!(text.contains("stage `orders`"), "{text}");
    assert!(text.contains("orders.jsonl:2:"), "{text}");
    assert!(text.contains("invalid type"), "{text}");
}

#[test]
fn missing_input_is_a_clear_error_before_running() {
    let dir = temp_dir();
    let yaml = format!(
        "sources: {{ orders: {{ path: {} }} }}\nsinks: {{ out: {{ path: {} }} }}\n",
        dir.path().join("nope.jsonl").display(),
        dir.path().join("out").display()
    );
    let err = parse_orders::job(config(&yaml, &[]))
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("sources.orders.path")
            && err.contains("nope.jsonl")
            && err.contains("No such file"),
        "{err}"
    );

    let yaml = format!(
        "sources: {{ orders: {{ path: '{}/*.jsonl' }} }}\nsinks: {{ out: {{ path: {} }} }}\n",
        dir.path().display(),
        dir.path().join("out").display()
    );
    let err = parse_orders::job(config(&yaml, &[]))
        .unwrap_err()
        .to_string();
    assert!(err.contains("no input files match"), "{err}");
}
