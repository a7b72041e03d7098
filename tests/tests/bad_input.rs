//! Bad input never panics: under `on_error: fail` the job stops with file, line (or row group and
//! row) and reason; under `skip` the record goes to the dead-letter file and is counted.

use std::path::Path;

use solstice::prelude::*;
use solstice_tests::{config, read_parts, temp_dir};

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Order {
    pub id: u64,
    pub user: String,
    pub amount: f64,
}

#[solstice::pipeline]
pub mod load {
    use super::*;

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

fn yaml(input: &Path, out: &Path, extra: &str) -> String {
    format!(
        "runtime: {{ threads: 2 }}\nsources: {{ orders: {{ path: '{}' {extra} }} }}\nsinks: {{ out: {{ path: '{}' }} }}\n",
        input.display(),
        out.display()
    )
}

/// Runs under `fail` (returns the error text) and under `skip` (returns the records, the
/// dead-letter lines and the skip count).
fn both(input: &Path) -> (String, Vec<Order>, Vec<serde_json::Value>, u64) {
    let dir = input.parent().unwrap();
    let out = dir.join("out");
    let err = load::run(config(&yaml(input, &out, ""), &[]))
        .map(|_| ())
        .unwrap_err()
        .to_string();
    let dead = dir.join("dead/letters.jsonl");
    let extra = format!(", on_error: skip, dead_letter: '{}'", dead.display());
    let (result, _) = load::run(config(&yaml(input, &out, &extra), &[])).unwrap();
    let letters = std::fs::read_to_string(&dead)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    (
        err,
        read_parts(&out),
        letters,
        result.counters["orders.skipped"],
    )
}

fn good(id: u64) -> Order {
    Order {
        id,
        user: format!("u{id}"),
        amount: id as f64,
    }
}

fn jsonl(lines: &[&[u8]]) -> Vec<u8> {
    let mut out = Vec::new();
    for l in lines {
        out.extend_from_slice(l);
        out.push(b'\n');
    }
    out
}

#[test]
fn truncated_json_line() {
    let dir = temp_dir();
    let input = dir.path().join("orders.jsonl");
    std::fs::write(
        &input,
        jsonl(&[
            br#"{"id":1,"user":"u1","amount":1.0}"#,
            br#"{"id":2,"user":"u2","amo"#,
            br#"{"id":3,"user":"u3","amount":3.0}"#,
        ]),
    )
    .unwrap();
    let (err, records, letters, skipped) = both(&input);
    assert!(
        err.contains("orders.jsonl:2:") && err.contains("EOF while parsing"),
        "{err}"
    );
    assert!(err.contains("stage `orders`"), "{err}");
    assert_eq!(records, vec![good(1), good(3)]);
    assert_eq!(skipped, 1);
    assert_eq!(letters.len(), 1);
    assert_eq!(letters[0]["line"], 2);
    assert_eq!(letters[0]["raw"], r#"{"id":2,"user":"u2","amo"#);
    assert!(letters[0]["file"]
        .as_str()
        .unwrap()
        .ends_with("orders.jsonl"));
    assert!(letters[0]["reason"].as_str().unwrap().contains("EOF"));
}

#[test]
fn wrong_field_type() {
    let dir = temp_dir();
    let input = dir.path().join("orders.jsonl");
    std::fs::write(
        &input,
        jsonl(&[
            br#"{"id":"seven","user":"u7","amount":7.0}"#,
            br#"{"id":8,"user":"u8","amount":8.0}"#,
        ]),
    )
    .unwrap();
    let (err, records, letters, skipped) = both(&input);
    assert!(
        err.contains("orders.jsonl:1:") && err.contains("invalid type: string \"seven\""),
        "{err}"
    );
    assert_eq!(records, vec![good(8)]);
    assert_eq!((skipped, letters[0]["line"].as_u64()), (1, Some(1)));
}

#[test]
fn non_utf8_bytes() {
    let dir = temp_dir();
    let input = dir.path().join("orders.jsonl");
    std::fs::write(
        &input,
        jsonl(&[
            br#"{"id":1,"user":"u1","amount":1.0}"#,
            b"{\"id\":2,\"user\":\"\xff\xfe\",\"amount\":2.0}",
        ]),
    )
    .unwrap();
    let (err, records, letters, skipped) = both(&input);
    assert!(
        err.contains("orders.jsonl:2:") && err.contains("invalid unicode"),
        "{err}"
    );
    assert_eq!(records, vec![good(1)]);
    assert_eq!(skipped, 1);
    assert!(letters[0]["raw"].as_str().unwrap().contains('\u{fffd}'));
}

#[test]
fn csv_row_with_too_few_columns() {
    let dir = temp_dir();
    let input = dir.path().join("orders.csv");
    std::fs::write(&input, "id,user,amount\n1,u1,1.0\n2,u2\n3,u3,3.0\n").unwrap();
    let (err, records, letters, skipped) = both(&input);
    assert!(
        err.contains("orders.csv:3:") && err.contains("expected 3 fields, found 2"),
        "{err}"
    );
    assert_eq!(records, vec![good(1), good(3)]);
    assert_eq!(skipped, 1);
    assert_eq!(letters[0]["raw"], "2,u2");
    assert_eq!(letters[0]["line"], 3);
}

#[test]
fn parquet_row_that_does_not_fit_the_type_names_row_group_and_row() {
    #[derive(Clone, Debug, Serialize, Deserialize)]
    struct Loose {
        id: u64,
        user: Option<String>,
        amount: f64,
    }
    let dir = temp_dir();
    let rows: Vec<Loose> = (0..10)
        .map(|i| Loose {
            id: i,
            user: (i != 7).then(|| format!("u{i}")),
            amount: i as f64,
        })
        .collect();
    let sink = FileSink::<Loose>::with_format(
        dir.path().join("pq"),
        solstice::connectors::file::Format::Parquet,
    );
    let mut w = sink.open(0, 1).unwrap();
    w.write_batch(&mut rows.clone()).unwrap();
    w.finish().unwrap();
    let input = dir.path().join("pq/part-00000.parquet");
    let (err, records, letters, skipped) = both(&input);
    assert!(
        err.contains("part-00000.parquet: row group 0, row 7:"),
        "{err}"
    );
    assert_eq!(records.len(), 9);
    assert_eq!(skipped, 1);
    assert_eq!(
        (letters[0]["row_group"].as_u64(), letters[0]["row"].as_u64()),
        (Some(0), Some(7))
    );
    assert!(letters[0]["raw"].as_str().unwrap().contains("\"id\":7"));
}

#[test]
fn corrupt_parquet_footer_and_empty_parquet_file() {
    let dir = temp_dir();
    let sink = FileSink::<Order>::with_format(
        dir.path().join("pq"),
        solstice::connectors::file::Format::Parquet,
    );
    let mut w = sink.open(0, 1).unwrap();
    w.write_batch(&mut vec![good(1), good(2)]).unwrap();
    w.finish().unwrap();
    let input = dir.path().join("pq/part-00000.parquet");
    let mut bytes = std::fs::read(&input).unwrap();
    let n = bytes.len();
    bytes[n - 8..n - 4].copy_from_slice(&[0xff, 0xff, 0xff, 0x7f]);
    std::fs::write(&input, &bytes).unwrap();
    let out = dir.path().join("out");
    let err = load::job(config(&yaml(&input, &out, ""), &[]))
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("part-00000.parquet: not a readable Parquet file"),
        "{err}"
    );

    let empty = dir.path().join("empty.parquet");
    std::fs::write(&empty, b"").unwrap();
    let err = load::job(config(&yaml(&empty, &out, ""), &[]))
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("empty.parquet: not a readable Parquet file"),
        "{err}"
    );
}

#[test]
fn empty_text_files_are_empty_inputs() {
    let dir = temp_dir();
    for name in ["empty.jsonl", "empty.csv"] {
        let input = dir.path().join(name);
        std::fs::write(&input, b"").unwrap();
        let out = dir.path().join(format!("out-{name}"));
        load::run(config(&yaml(&input, &out, ""), &[])).unwrap();
        assert!(read_parts::<Order>(&out).is_empty());
    }
}

#[test]
fn missing_file_and_directory_without_matches() {
    let dir = temp_dir();
    let out = dir.path().join("out");
    let err = load::job(config(&yaml(&dir.path().join("nope.jsonl"), &out, ""), &[]))
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("sources.orders.path") && err.contains("nope.jsonl: No such file"),
        "{err}"
    );

    let empty_dir = dir.path().join("in");
    std::fs::create_dir(&empty_dir).unwrap();
    let err = load::job(config(&yaml(&empty_dir, &out, ""), &[]))
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("no input files match") && err.contains("empty directory"),
        "{err}"
    );
    let err = load::job(config(&yaml(&empty_dir.join("*.csv"), &out, ""), &[]))
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("source `orders`: no input files match") && err.contains("*.csv"),
        "{err}"
    );
}

#[test]
fn skip_needs_a_dead_letter_path() {
    let dir = temp_dir();
    let input = dir.path().join("orders.jsonl");
    std::fs::write(&input, b"").unwrap();
    let err = load::job(config(
        &yaml(&input, &dir.path().join("o"), ", on_error: skip"),
        &[],
    ))
    .unwrap_err()
    .to_string();
    assert!(
        err.contains("sources.orders.dead_letter: required with `on_error: skip`"),
        "{err}"
    );
}
