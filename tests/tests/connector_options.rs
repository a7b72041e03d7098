//! Each connector reads its own section of the config: a user's source takes typed options, and
//! unknown keys, wrong types and missing keys are errors naming the key and the file, for the
//! built-in connectors as for a user's.

use solstice::config::Config;
use solstice::prelude::*;
use solstice_tests::{config, temp_dir};

/// A user's source: `count` records `start, start + 1, ...`, in splits of 100.
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SeqOptions {
    pub count: u64,
    #[serde(default)]
    pub start: u64,
}

#[derive(Debug)]
pub struct Seq(SeqOptions);

impl Source for Seq {
    type Item = u64;
    type Reader = SeqReader;

    fn splits(&self) -> Result<Vec<String>> {
        Ok((0..self.0.count.div_ceil(100))
            .map(|i| format!("seq@{}", self.0.start + i * 100))
            .collect())
    }

    fn open(&self, split: &str, resume: Option<u64>) -> Result<SeqReader> {
        let first: u64 = split
            .strip_prefix("seq@")
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| solstice::Error::Plan(format!("not a split: {split}")))?;
        Ok(SeqReader {
            next: resume.unwrap_or(first),
            end: (first + 100).min(self.0.start + self.0.count),
        })
    }
}

#[derive(Debug)]
pub struct SeqReader {
    next: u64,
    end: u64,
}

impl SourceReader<u64> for SeqReader {
    fn read_batch(&mut self, out: &mut Vec<u64>, max: usize) -> Result<bool> {
        let stop = self.end.min(self.next + max as u64);
        out.extend(self.next..stop);
        self.next = stop;
        Ok(self.next < self.end)
    }

    fn position(&self) -> Result<u64> {
        Ok(self.next)
    }
}

#[solstice::pipeline]
pub mod user {
    use super::*;

    #[source(2)]
    pub fn numbers(cfg: &SourceConfig) -> Result<Seq> {
        Ok(Seq(cfg.options()?))
    }

    #[sink]
    pub fn out(cfg: &SinkConfig) -> Result<CollectSink<u64>> {
        CollectSink::from_config(cfg)
    }

    dag! { numbers -> out }
}

#[solstice::pipeline]
pub mod files {
    use super::*;

    #[source]
    pub fn orders(cfg: &SourceConfig) -> Result<FileSource<u64>> {
        FileSource::from_config(cfg)
    }

    #[sink]
    pub fn out(cfg: &SinkConfig) -> Result<FileSink<u64>> {
        FileSink::from_config(cfg)
    }

    dag! { orders -> out }
}

#[solstice::pipeline]
pub mod printed {
    use super::*;

    #[source]
    pub fn numbers(cfg: &SourceConfig) -> Result<RangeSource> {
        RangeSource::from_config(cfg)
    }

    #[sink]
    pub fn out(cfg: &SinkConfig) -> Result<PrintSink<u64>> {
        PrintSink::from_config(cfg)
    }

    dag! { numbers -> out }
}

fn job_error(result: Result<Job>) -> String {
    result.map(|_| ()).unwrap_err().to_string()
}

#[test]
fn a_user_source_reads_its_own_typed_options() {
    let (mut result, _) = user::run(config(
        "runtime: { threads: 2 }\nsources: { numbers: { count: 1000, start: 5 } }\n",
        &[],
    ))
    .unwrap();
    let mut got: Vec<u64> = result.collected("out").unwrap();
    got.sort_unstable();
    assert_eq!(got, (5..1005).collect::<Vec<_>>());
}

#[test]
fn a_user_source_s_option_errors_name_key_and_file() {
    let e = job_error(user::job(config(
        "sources: { numbers: { count: 3, stat: 1 } }",
        &[],
    )));
    assert!(
        e.contains("test.yaml")
            && e.contains(
                "at `sources.numbers.stat`: unknown field `stat`, expected `count` or `start`"
            ),
        "{e}"
    );
    let e = job_error(user::job(config(
        "sources: { numbers: { count: many } }",
        &[],
    )));
    assert!(
        e.contains("test.yaml") && e.contains("at `sources.numbers.count`: invalid type"),
        "{e}"
    );
    // No section at all reads as an empty one: the required key is missing.
    let e = job_error(user::job(config("", &[])));
    assert!(
        e.contains("test.yaml") && e.contains("sources.numbers.count: missing (required)"),
        "{e}"
    );
    let e = job_error(user::job(config("sources: { numbers: 7 }", &[])));
    assert!(
        e.contains("at `sources.numbers`: invalid type: integer `7`"),
        "{e}"
    );
    let e = job_error(user::job(config(
        "sources: { numbers: { count: 1 } }\nsinks: { out: { path: x } }",
        &[],
    )));
    assert!(
        e.contains("at `sinks.out.path`: unknown field `path`"),
        "{e}"
    );
}

#[test]
fn file_connector_option_errors_name_key_and_file() {
    let dir = temp_dir();
    let input = dir.path().join("in.jsonl");
    std::fs::write(&input, "1\n").unwrap();
    let out = dir.path().join("out");
    let with = |source: &str, sink: &str| {
        job_error(files::job(config(
            &format!(
                "sources: {{ orders: {{ path: '{}' {source} }} }}\nsinks: {{ out: {{ path: '{}' {sink} }} }}\n",
                input.display(),
                out.display()
            ),
            &[],
        )))
    };
    let e = with(", colour: red", "");
    assert!(
        e.contains("config error in test.yaml: at `sources.orders.colour`: unknown field `colour`, expected one of `path`, `format`, `on_error`, `dead_letter`, `csv`"),
        "{e}"
    );
    let e = with(", format: xml", "");
    assert!(
        e.contains("at `sources.orders.format`: unknown variant `xml`, expected one of `jsonl`, `csv`, `parquet`"),
        "{e}"
    );
    let e = with(", csv: { delimiter: 7 }", "");
    assert!(
        e.contains(
            "at `sources.orders.csv.delimiter`: invalid type: integer `7`, expected a character"
        ),
        "{e}"
    );
    let e = with("", ", on_error: skip");
    assert!(
        e.contains("at `sinks.out.on_error`: unknown field `on_error`, expected one of `path`, `format`, `csv`, `parquet`, `mode`"),
        "{e}"
    );
    let e = with("", ", parquet: { compression: lz4 }");
    assert!(
        e.contains("at `sinks.out.parquet.compression`: unknown variant `lz4`"),
        "{e}"
    );
    let e = job_error(files::job(config(
        &format!("sources: {{ orders: {{ path: '{}' }} }}", input.display()),
        &[],
    )));
    assert!(e.contains("sinks.out.path: missing (required)"), "{e}");
}

#[test]
fn range_and_print_take_their_own_options() {
    let e = job_error(printed::job(config(
        "sources: { numbers: { end: 10 } }\nsinks: { out: { path: x } }",
        &[],
    )));
    assert!(
        e.contains("at `sinks.out.path`: unknown field `path`"),
        "{e}"
    );
    let e = job_error(printed::job(config(
        "sources: { numbers: { start: 5, end: 1 } }",
        &[],
    )));
    assert!(
        e.contains("sources.numbers.start: 5 is after `end` (1)"),
        "{e}"
    );
    let e = job_error(printed::job(config(
        "sources: { numbers: { start: 1 } }",
        &[],
    )));
    assert!(e.contains("sources.numbers.end: missing (required)"), "{e}");
    let plan = printed::job(config(
        "sources: { numbers: { end: 10 } }\nsinks: { out: }",
        &[],
    ))
    .unwrap()
    .explain();
    assert!(plan.contains("numbers"), "{plan}");
}

#[test]
fn a_connector_can_be_unit_tested_from_a_config() {
    let config = Config::builder()
        .source("numbers", SeqOptions { count: 4, start: 1 })
        .build()
        .unwrap();
    let cfg = config.source_config("numbers");
    assert_eq!(cfg.stage(), "numbers");
    let seq = Seq(cfg.options().unwrap());
    let splits = seq.splits().unwrap();
    assert_eq!(splits, ["seq@1"]);
    let mut reader = seq.open(&splits[0], None).unwrap();
    let mut out = Vec::new();
    while reader.read_batch(&mut out, 3).unwrap() {}
    assert_eq!(out, [1, 2, 3, 4]);
}
