//! Config errors name the key and the file; overrides apply.

use solstice::config::Config;
use solstice::prelude::*;
use solstice_tests::{config, temp_dir};

#[solstice::pipeline]
pub mod tiny {
    use super::*;

    #[source]
    pub fn numbers(cfg: &SourceConfig) -> Result<FileSource<u64>> {
        FileSource::from_config(cfg)
    }

    #[map((2, 4))]
    pub fn double(x: u64) -> u64 {
        x * 2
    }

    #[sink]
    pub fn out(cfg: &SinkConfig) -> Result<FileSink<u64>> {
        FileSink::from_config(cfg)
    }

    dag! { numbers -> double -> out }
}

fn err(yaml: &str) -> String {
    Config::parse(yaml, "configs/tiny.yaml", &[])
        .unwrap_err()
        .to_string()
}

#[test]
fn unknown_key_is_named_with_the_file() {
    let e = err("job: { id: x }\nruntime: { threds: 2 }\n");
    assert!(
        e.contains("configs/tiny.yaml") && e.contains("runtime") && e.contains("threds"),
        "{e}"
    );
    let e = err("jobs: {}\n");
    assert!(e.contains("unknown field `jobs`"), "{e}");
}

#[test]
fn wrong_type_is_named_with_the_file() {
    let e = err("job: { batch_size: big }\n");
    assert!(
        e.contains("configs/tiny.yaml") && e.contains("job.batch_size"),
        "{e}"
    );
    let e = err("stages: { double: { parallelism: [1, 2, 3] } }\n");
    assert!(e.contains("stages.double.parallelism"), "{e}");
    let e = err("runtime: { processes: 0 }\n");
    assert!(e.contains("runtime.processes"), "{e}");
}

#[test]
fn unknown_stage_and_missing_path_are_named() {
    let dir = temp_dir();
    std::fs::write(dir.path().join("in.jsonl"), "1\n").unwrap();
    let base = format!(
        "sources: {{ numbers: {{ path: {} }} }}\nsinks: {{ out: {{ path: {} }} }}\n",
        dir.path().join("in.jsonl").display(),
        dir.path().join("out").display()
    );
    let e = tiny::job(config(
        &format!("{base}stages: {{ dubble: {{ parallelism: 2 }} }}\n"),
        &[],
    ))
    .unwrap_err()
    .to_string();
    assert!(
        e.contains("stages.dubble") && e.contains("no stage `dubble`") && e.contains("test.yaml"),
        "{e}"
    );
    let e = tiny::job(config("sinks: { out: { path: x } }", &[]))
        .unwrap_err()
        .to_string();
    assert!(e.contains("sources.numbers.path: missing"), "{e}");
    let e = Config::parse(
        &format!("{base}sinks: {{ out: {{ path: a }} }}\n"),
        "t.yaml",
        &[],
    );
    assert!(e
        .unwrap_err()
        .to_string()
        .contains("duplicate entry with key \"sinks\""));
    let e = tiny::job(config(&base, &["sources.double.path=x".into()]))
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("sources.double") && e.contains("is a map stage"),
        "{e}"
    );
}

#[test]
fn elastic_stage_runs_at_its_minimum_and_overrides_apply() {
    let dir = temp_dir();
    std::fs::write(dir.path().join("in.jsonl"), "1\n2\n3\n").unwrap();
    let yaml = format!(
        "runtime: {{ threads: 2 }}\nsources: {{ numbers: {{ path: {} }} }}\nsinks: {{ out: {{ path: {} }} }}\n",
        dir.path().join("in.jsonl").display(),
        dir.path().join("out").display()
    );
    let plan = tiny::job(config(&yaml, &[])).unwrap().explain();
    assert!(plan.contains("chain 1 x2: double (map)"), "{plan}");
    assert!(
        plan.contains("stage `double` is elastic (2, 4); it runs at its minimum"),
        "{plan}"
    );
    let plan = tiny::job(config(&yaml, &["stages.double.parallelism=3".into()]))
        .unwrap()
        .explain();
    assert!(
        plan.contains("chain 1 x3: double (map)") && !plan.contains("elastic"),
        "{plan}"
    );
}

#[test]
fn ray_section_is_checked_before_anything_is_submitted() {
    let e = err("runtime: { ray: { workers: 0 } }\n");
    assert!(e.contains("runtime.ray.workers"), "{e}");
    let e = err("runtime: { ray: { python_env: { working_dir: /x } } }\n");
    assert!(e.contains("`working_dir` is set by Solstice"), "{e}");
    let e = err("runtime: { ray: { binary: s3://bucket/simple_etl } }\n");
    assert!(
        e.contains("runtime.ray.binary") && e.contains("presigned URL"),
        "{e}"
    );
    let e = err("runtime: { ray: { binary: bin/simple_etl } }\n");
    assert!(e.contains("is not an absolute path"), "{e}");
    for binary in [
        "/shared/simple_etl",
        "file:///shared/simple_etl",
        "https://files.example/simple_etl",
    ] {
        let yaml = format!("runtime: {{ ray: {{ binary: \"{binary}\" }} }}\n");
        Config::parse(&yaml, "configs/tiny.yaml", &[]).unwrap_or_else(|e| panic!("{binary}: {e}"));
    }
}
