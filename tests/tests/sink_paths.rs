//! A file sink's path is checked when the job is built, with an error naming `sinks.<stage>.path`
//! and the config file; building creates nothing; a failed run leaves no in-progress file.

use std::path::Path;
use std::time::Duration;

use solstice::prelude::*;
use solstice_tests::{config, temp_dir, within, SINK_MARKER};

#[solstice::pipeline]
pub mod fragile {
    use super::*;

    #[source]
    pub fn numbers(_cfg: &SourceConfig) -> Result<RangeSource> {
        Ok(RangeSource::new(0..100_000))
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

    dag! { numbers -> explode -> out }
}

fn sink_yaml(path: &Path) -> String {
    format!("sinks: {{ out: {{ path: '{}' }} }}\n", path.display())
}

/// The error of building the job with `sinks.out.path: path`.
fn build_error(path: &Path) -> String {
    fragile::job(config(&sink_yaml(path), &[]))
        .expect_err("the sink path must be refused")
        .to_string()
}

/// The names in `dir`, sorted, but for the sink's marker.
fn entries(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .expect("read dir")
        .map(|e| {
            e.expect("dir entry")
                .file_name()
                .to_string_lossy()
                .into_owned()
        })
        .filter(|n| n != SINK_MARKER)
        .collect();
    names.sort();
    names
}

#[test]
fn an_existing_file_is_refused_when_the_job_is_built() {
    let dir = temp_dir();
    let file = dir.path().join("taken.txt");
    std::fs::write(&file, "x").unwrap();
    let err = build_error(&file);
    assert_eq!(
        err,
        format!(
            "config error in test.yaml: sinks.out.path: {} is not a directory",
            file.display()
        )
    );
    assert_eq!(std::fs::read_to_string(&file).unwrap(), "x");
}

#[test]
fn dev_null_is_refused_when_the_job_is_built() {
    let err = build_error(Path::new("/dev/null"));
    assert_eq!(
        err,
        "config error in test.yaml: sinks.out.path: /dev/null is not a directory"
    );
}

#[test]
fn a_path_under_a_file_is_refused_when_the_job_is_built() {
    let dir = temp_dir();
    let file = dir.path().join("taken.txt");
    std::fs::write(&file, "x").unwrap();
    let err = build_error(&file.join("out/deeper"));
    assert!(
        err.starts_with("config error in test.yaml: sinks.out.path: ")
            && err.ends_with(&format!(
                "cannot be created: {} is not a directory",
                file.display()
            )),
        "{err}"
    );
}

#[test]
fn building_and_explaining_creates_nothing() {
    let dir = temp_dir();
    let out = dir.path().join("out/totals");
    let job = fragile::job(config(&sink_yaml(&out), &[])).expect("a creatable sink path");
    assert!(job.explain().contains("out (sink)"), "{}", job.explain());
    drop(job);
    assert!(entries(dir.path()).is_empty(), "{:?}", entries(dir.path()));

    // An existing directory: checked writable, and left as it was.
    std::fs::create_dir(dir.path().join("ready")).unwrap();
    fragile::job(config(&sink_yaml(&dir.path().join("ready")), &[])).expect("a writable dir");
    assert!(entries(&dir.path().join("ready")).is_empty());
}

#[test]
fn a_failed_run_leaves_no_in_progress_file() {
    let dir = temp_dir();
    let out = dir.path().join("out");
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
        let cfg = config(&sink_yaml(&out), &overrides);
        let err = within(Duration::from_secs(120), move || {
            fragile::run(cfg).map(|_| ())
        })
        .expect_err("the job must fail");
        let text = err.to_string();
        assert!(
            text.contains("stage `explode`") && text.contains("cannot handle record 500"),
            "{text}"
        );
        // The run got as far as opening its writers; nothing they opened is left.
        assert!(out.is_dir(), "{overrides:?}");
        assert_eq!(entries(&out), Vec::<String>::new(), "{overrides:?}");
    }
}
