//! The README's "A first pipeline, from scratch", as written there: its pipeline, its config file
//! with paths relative to the file, its four orders, and the output the README shows.

use solstice::prelude::*;
use solstice_tests::temp_dir;

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Order {
    pub id: u64,
    pub user: String,
    pub amount: f64,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct Total {
    pub user: String,
    pub sum: f64,
    pub orders: u64,
}

#[solstice::pipeline]
pub mod spend {
    use super::*;

    #[source]
    pub fn orders(cfg: &SourceConfig) -> Result<FileSource<Order>> {
        FileSource::from_config(cfg)
    }

    #[filter]
    pub fn positive(o: &Order) -> bool {
        o.amount > 0.0
    }

    #[key_by]
    pub fn by_user(o: &Order) -> String {
        o.user.clone()
    }

    #[stateful(4)]
    pub fn totals(acc: &mut Total, o: Order) -> Option<Total> {
        acc.user = o.user;
        acc.sum += o.amount;
        acc.orders += 1;
        Some(acc.clone())
    }

    #[sink]
    pub fn out(cfg: &SinkConfig) -> Result<FileSink<Total>> {
        FileSink::from_config(cfg)
    }

    dag! { orders -> positive -> by_user -> totals -> out }
}

#[test]
fn the_readme_pipeline_prints_what_the_readme_shows() {
    let dir = temp_dir();
    std::fs::write(
        dir.path().join("spend.yaml"),
        "sources:\n  orders: { path: orders.jsonl }\nsinks:\n  out: { path: out/spend }\n",
    )
    .unwrap();
    std::fs::write(
        dir.path().join("orders.jsonl"),
        "{\"id\": 1, \"user\": \"alice\", \"amount\": 30.0}\n\
         {\"id\": 2, \"user\": \"bob\", \"amount\": 12.5}\n\
         {\"id\": 3, \"user\": \"alice\", \"amount\": -5.0}\n\
         {\"id\": 4, \"user\": \"alice\", \"amount\": 20.0}\n",
    )
    .unwrap();
    // Loaded from its file: the relative paths resolve against the file's directory, whatever
    // the working directory of the test.
    let config = Config::load(&dir.path().join("spend.yaml"), &[]).unwrap();
    spend::run(config).unwrap();
    let names: Vec<String> = std::fs::read_dir(dir.path().join("out/spend"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| !n.starts_with('.'))
        .collect();
    assert_eq!(names, ["part-00000.jsonl"]);
    let text = std::fs::read_to_string(dir.path().join("out/spend/part-00000.jsonl")).unwrap();
    let mut lines: Vec<&str> = text.lines().collect();
    // Users interleave in any order; alice's totals come in input order.
    let alice: Vec<&str> = lines
        .iter()
        .copied()
        .filter(|l| l.contains("alice"))
        .collect();
    assert_eq!(
        alice,
        [
            r#"{"user":"alice","sum":30.0,"orders":1}"#,
            r#"{"user":"alice","sum":50.0,"orders":2}"#
        ]
    );
    lines.sort();
    assert_eq!(
        lines,
        [
            r#"{"user":"alice","sum":30.0,"orders":1}"#,
            r#"{"user":"alice","sum":50.0,"orders":2}"#,
            r#"{"user":"bob","sum":12.5,"orders":1}"#
        ]
    );
    assert!(spend::positive(&Order {
        id: 9,
        user: "c".into(),
        amount: 1.0
    }));
}
