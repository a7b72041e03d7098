//! CSV and Parquet in and out: round trips, the format chosen by YAML or by extension, and
//! Parquet files exchanged with the `parquet` crate's reader and with pyarrow.

use std::fs::File;

use solstice::prelude::*;
use solstice_tests::{config, python_with_pyarrow, temp_dir, write_jsonl};

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Order {
    pub id: u64,
    pub user: String,
    pub amount: f64,
    pub note: Option<String>,
}

#[solstice::pipeline]
pub mod copy {
    use super::*;

    #[source]
    pub fn input(cfg: &SourceConfig) -> Result<FileSource<Order>> {
        FileSource::from_config(cfg)
    }

    #[map]
    pub fn bump(o: Order) -> Order {
        Order {
            amount: o.amount * 2.0,
            ..o
        }
    }

    #[sink]
    pub fn output(cfg: &SinkConfig) -> Result<FileSink<Order>> {
        FileSink::from_config(cfg)
    }

    dag! { input -> bump -> output }
}

fn orders(n: u64) -> Vec<Order> {
    (0..n)
        .map(|i| Order {
            id: i,
            user: format!(
                "user \"{}\", the {}",
                i % 7,
                if i.is_multiple_of(2) { "even" } else { "odd" }
            ),
            amount: i as f64 * 0.5,
            note: (i.is_multiple_of(3)).then(|| format!("line one\nline two {i}")),
        })
        .collect()
}

fn sorted(mut v: Vec<Order>) -> Vec<Order> {
    v.sort_by_key(|o| o.id);
    v
}

fn doubled(v: &[Order]) -> Vec<Order> {
    v.iter()
        .map(|o| Order {
            amount: o.amount * 2.0,
            ..o.clone()
        })
        .collect()
}

/// Runs `copy` from `input` (any format) to `out` in `format` and reads the result back with a
/// JSONL copy of the same pipeline... through Solstice's own reader for that format.
fn run_copy(input: &std::path::Path, out: &std::path::Path, extra: &str, overrides: &[String]) {
    let yaml = format!(
        "runtime: {{ threads: 2 }}\nsources: {{ input: {{ path: '{}' }} }}\nsinks: {{ output: {{ path: '{}' {extra} }} }}\n",
        input.display(),
        out.display()
    );
    copy::run(config(&yaml, overrides)).unwrap();
}

fn read_all(path: &std::path::Path) -> Vec<Order> {
    let src = FileSource::<Order>::new([path]).unwrap();
    let mut all = Vec::new();
    for split in src.splits().unwrap() {
        let mut r = src.open(&split, None).unwrap();
        while r.read_batch(&mut all, 1000).unwrap() {}
    }
    all
}

#[test]
fn csv_round_trip_with_quotes_newlines_and_delimiter() {
    let dir = temp_dir();
    let input = orders(2_000);
    write_jsonl(&dir.path().join("in.jsonl"), &input);
    let csv_out = dir.path().join("csv");
    run_copy(
        &dir.path().join("in.jsonl"),
        &csv_out,
        ", format: csv, csv: { delimiter: ';' }",
        &["stages.output.parallelism=2".into()],
    );
    let text = std::fs::read_to_string(csv_out.join("part-00000.csv")).unwrap();
    assert!(text.starts_with("id;user;amount;note\n"), "{}", &text[..40]);

    // Back through the CSV reader (format from YAML, delimiter from YAML).
    let back = dir.path().join("back");
    let yaml = format!(
        "sources: {{ input: {{ path: '{}/*.csv', csv: {{ delimiter: ';' }} }} }}\nsinks: {{ output: {{ path: '{}' }} }}\n",
        csv_out.display(),
        back.display()
    );
    copy::run(config(&yaml, &[])).unwrap();
    let got = read_all(&back.join("part-00000.jsonl"));
    assert_eq!(sorted(got), doubled(&doubled(&input)));
}

#[test]
fn parquet_round_trip_and_the_parquet_crate_reads_it() {
    let dir = temp_dir();
    let input = orders(10_000);
    write_jsonl(&dir.path().join("in.jsonl"), &input);
    let pq = dir.path().join("pq");
    run_copy(
        &dir.path().join("in.jsonl"),
        &pq,
        ", format: parquet, parquet: { row_group_size: 1000 }",
        &[],
    );
    let part = pq.join("part-00000.parquet");

    // The parquet crate's own reader: 10 row groups, zstd, the same rows.
    let builder = parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(
        File::open(&part).unwrap(),
    )
    .unwrap();
    let meta = builder.metadata().clone();
    assert_eq!(meta.num_row_groups(), 10);
    assert_eq!(
        meta.row_group(0).column(0).compression(),
        parquet::basic::Compression::ZSTD(Default::default())
    );
    let mut ids = Vec::new();
    let mut users = Vec::new();
    for batch in builder.build().unwrap() {
        let batch = batch.unwrap();
        let id = batch.column_by_name("id").unwrap();
        let id = id
            .as_any()
            .downcast_ref::<arrow::array::UInt64Array>()
            .unwrap();
        ids.extend(id.values().iter().copied());
        let user = batch.column_by_name("user").unwrap();
        let user = user
            .as_any()
            .downcast_ref::<arrow::array::StringArray>()
            .unwrap();
        users.extend(user.iter().map(|u| u.unwrap_or_default().to_string()));
    }
    assert_eq!(ids, (0..10_000).collect::<Vec<u64>>());
    assert_eq!(users[3], input[3].user);

    // And back through Solstice: row groups split over 3 subtasks.
    let back = dir.path().join("back");
    run_copy(&pq, &back, "", &["stages.input.parallelism=3".into()]);
    let got: Vec<Order> = solstice_tests::read_parts(&back);
    assert_eq!(sorted(got), doubled(&doubled(&input)));
}

#[test]
fn pyarrow_reads_solstice_parquet_and_solstice_reads_pyarrow_parquet() {
    let dir = temp_dir();
    let input = orders(3_000);
    write_jsonl(&dir.path().join("in.jsonl"), &input);
    let pq = dir.path().join("pq");
    run_copy(&dir.path().join("in.jsonl"), &pq, ", format: parquet", &[]);

    let script = r#"
import json, sys
import pyarrow.parquet as pq
t = pq.read_table(sys.argv[1])
for row in t.to_pylist():
    print(json.dumps(row))
w = {"id": [10, 11, 12], "user": ["a", "b", "c"], "amount": [1.5, 2.5, 3.5], "note": [None, "x", None]}
import pyarrow as pa
table = pa.table({"id": pa.array(w["id"], pa.uint64()), "user": w["user"], "amount": w["amount"], "note": w["note"]})
pq.write_table(table, sys.argv[2])  # pyarrow's defaults: snappy
"#;
    let from_py = dir.path().join("from_py.parquet");
    let out = python_with_pyarrow()
        .args(["-c", script])
        .arg(pq.join("part-00000.parquet"))
        .arg(&from_py)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let rows: Vec<Order> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(rows, doubled(&input));

    let back = dir.path().join("back");
    run_copy(&from_py, &back, "", &[]);
    let got: Vec<Order> = solstice_tests::read_parts(&back);
    assert_eq!(
        got,
        vec![
            Order {
                id: 10,
                user: "a".into(),
                amount: 3.0,
                note: None
            },
            Order {
                id: 11,
                user: "b".into(),
                amount: 5.0,
                note: Some("x".into())
            },
            Order {
                id: 12,
                user: "c".into(),
                amount: 7.0,
                note: None
            },
        ]
    );
}

#[test]
fn mixed_extensions_need_an_explicit_format() {
    let dir = temp_dir();
    std::fs::write(dir.path().join("a.jsonl"), "").unwrap();
    std::fs::write(dir.path().join("b.csv"), "").unwrap();
    let yaml = format!(
        "sources: {{ input: {{ path: '{}' }} }}\nsinks: {{ output: {{ path: x }} }}\n",
        dir.path().display()
    );
    let e = copy::job(config(&yaml, &[])).unwrap_err().to_string();
    assert!(
        e.contains("sources.input.format") && e.contains("different formats"),
        "{e}"
    );
}
