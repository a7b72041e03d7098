//! A config built in code is the YAML config: the same tree, the same validation, the same
//! errors naming the key (and the builder as origin), and a job embedded in a program runs from
//! it.

use solstice::config::{CheckpointSection, Config, RestartSection};
use solstice::connectors::file::{FileSinkOptions, FileSourceOptions, Format};
use solstice::prelude::*;
use solstice_tests::{temp_dir, write_jsonl};

#[solstice::pipeline]
pub mod doubled {
    use super::*;

    #[source]
    pub fn numbers(cfg: &SourceConfig) -> Result<FileSource<u64>> {
        FileSource::from_config(cfg)
    }

    #[map((1, 4))]
    pub fn double(x: u64) -> u64 {
        x * 2
    }

    #[sink]
    pub fn out(cfg: &SinkConfig) -> Result<CollectSink<u64>> {
        CollectSink::from_config(cfg)
    }

    dag! { numbers -> double -> out }
}

fn tree(config: &Config) -> serde_json::Value {
    serde_json::to_value(config).unwrap()
}

#[test]
fn the_builder_makes_the_config_the_yaml_makes() {
    let built = Config::builder()
        .id("orders-job")
        .threads(2)
        .parallelism(Parallelism::Fixed(3))
        .key_groups(64)
        .batch_size(100)
        .channel_capacity(4)
        .stage_parallelism("double", Parallelism::Elastic { min: 2, max: 4 })
        .checkpoint(CheckpointSection {
            backend: Some("memory://".into()),
            interval_records: Some(500),
            ..CheckpointSection::default()
        })
        .restart(RestartSection {
            attempts: 2,
            backoff_ms: 10,
        })
        .source(
            "numbers",
            FileSourceOptions::new("in/numbers.csv").format(Format::Csv),
        )
        .sink("out", FileSinkOptions::new("out"))
        .build()
        .unwrap();
    let parsed = Config::parse(
        "job:\n  id: orders-job\n  parallelism: 3\n  key_groups: 64\n  batch_size: 100\n  channel_capacity: 4\n  \
         checkpoint: { backend: 'memory://', interval_records: 500 }\n  restart: { attempts: 2, backoff_ms: 10 }\n\
         runtime: { threads: 2 }\nstages: { double: { parallelism: [2, 4] } }\n\
         sources: { numbers: { path: in/numbers.csv, format: csv } }\nsinks: { out: { path: out } }\n",
        "same.yaml",
        &[],
    )
    .unwrap();
    // The job-level sections are the same tree.
    let (mut built_tree, mut parsed_tree) = (tree(&built), tree(&parsed));
    for t in [&mut built_tree, &mut parsed_tree] {
        let map = t.as_object_mut().unwrap();
        map.remove("sources");
        map.remove("sinks");
    }
    assert_eq!(built_tree, parsed_tree);
    assert_eq!(built.origin, "Config::builder()");
    // The connector sections read back as the same options (the typed ones spell out their
    // defaults).
    let source =
        |c: &Config| -> FileSourceOptions { c.source_config("numbers").options().unwrap() };
    let sink = |c: &Config| -> FileSinkOptions { c.sink_config("out").options().unwrap() };
    assert_eq!(source(&built), source(&parsed));
    assert_eq!(
        source(&built),
        FileSourceOptions::new("in/numbers.csv").format(Format::Csv)
    );
    assert_eq!(sink(&built), sink(&parsed));
    assert_eq!(sink(&built), FileSinkOptions::new("out"));
}

#[test]
fn the_builder_is_validated_like_a_file() {
    let err = |b: solstice::config::ConfigBuilder| b.build().unwrap_err().to_string();
    let e = err(Config::builder().batch_size(0));
    assert!(
        e.contains("Config::builder()") && e.contains("job.batch_size: must be at least 1"),
        "{e}"
    );
    let e = err(Config::builder().threads(0).origin("embedded.rs"));
    assert!(
        e.contains("embedded.rs") && e.contains("runtime.threads: must be at least 1"),
        "{e}"
    );
    let e = err(Config::builder().restart(RestartSection {
        attempts: 1,
        backoff_ms: 0,
    }));
    assert!(
        e.contains("job.restart: restarting needs `job.checkpoint`"),
        "{e}"
    );
    let e = err(Config::builder().set("job.batch_sise", 3));
    assert!(
        e.contains("at `job.batch_sise`: unknown field `batch_sise`"),
        "{e}"
    );
    let e = err(Config::builder().stage_parallelism("double", Parallelism::Fixed(0)));
    assert!(e.contains("stages.double.parallelism"), "{e}");
    let e = err(Config::builder().set_override("runtime.processes=0"));
    assert!(e.contains("runtime.processes"), "{e}");
    // Connector options are checked when the job is built, with the same errors as in a file.
    let config = Config::builder()
        .source(
            "numbers",
            serde_json::json!({ "path": "in.jsonl", "colour": "red" }),
        )
        .build()
        .unwrap();
    let e = doubled::job(config).unwrap_err().to_string();
    assert!(
        e.contains("Config::builder()") && e.contains("at `sources.numbers.colour`: unknown field"),
        "{e}"
    );
}

#[test]
fn an_embedded_job_runs_from_a_built_config() {
    let dir = temp_dir();
    let input = dir.path().join("numbers.jsonl");
    write_jsonl(&input, &(1..=100u64).collect::<Vec<_>>());
    let config = Config::builder()
        .threads(2)
        .stage_parallelism("double", Parallelism::Fixed(1))
        .source("numbers", FileSourceOptions::new(input.as_path()))
        .build()
        .unwrap();
    let (mut result, _) = doubled::run(config).unwrap();
    let got: Vec<u64> = result.collected("out").unwrap();
    assert_eq!(got, (1..=100u64).map(|x| x * 2).collect::<Vec<_>>());
}
