//! A user-defined source with options of its own, embedded in a program: the config is built in
//! code, and the results come back through a collecting sink.
//!
//! Run with `cargo run -p solstice --example custom_source`.

use solstice::config::Config;
use solstice::prelude::*;

/// `sources.<name>` of a [`Countdown`]: counts down from `from` to 1 in steps of `step`.
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CountdownOptions {
    /// Where to start (required).
    pub from: u64,
    /// The step (default 1).
    #[serde(default = "one")]
    pub step: u64,
}

fn one() -> u64 {
    1
}

/// Emits `from, from - step, ...` down to 1, as one split.
#[derive(Debug)]
pub struct Countdown {
    from: u64,
    step: u64,
}

impl Countdown {
    /// The source of `sources.<stage>`: its own options, checked like the rest of the config.
    pub fn from_config(cfg: &SourceConfig) -> Result<Countdown> {
        let options: CountdownOptions = cfg.options()?;
        if options.step == 0 {
            return Err(cfg.error("step", "must be at least 1"));
        }
        Ok(Countdown {
            from: options.from,
            step: options.step,
        })
    }
}

impl Source for Countdown {
    type Item = u64;
    type Reader = CountdownReader;

    fn splits(&self) -> Result<Vec<String>> {
        // One split: one subtask reads it, the others find nothing left to read.
        Ok(vec!["countdown".to_string()])
    }

    fn open(&self, _split: &str, resume: Option<u64>) -> Result<CountdownReader> {
        // Resumed at the next value it was to emit.
        Ok(CountdownReader {
            next: resume.unwrap_or(self.from),
            step: self.step,
        })
    }
}

/// The reader of a [`Countdown`].
#[derive(Debug)]
pub struct CountdownReader {
    next: u64,
    step: u64,
}

impl SourceReader<u64> for CountdownReader {
    fn read_batch(&mut self, out: &mut Vec<u64>, max: usize) -> Result<bool> {
        for _ in 0..max {
            if self.next == 0 {
                break;
            }
            out.push(self.next);
            self.next = self.next.saturating_sub(self.step);
        }
        Ok(self.next > 0)
    }

    fn position(&self) -> Result<u64> {
        Ok(self.next)
    }
}

#[solstice::pipeline]
pub mod launch {
    use super::*;

    #[source]
    pub fn seconds(cfg: &SourceConfig) -> Result<Countdown> {
        Countdown::from_config(cfg)
    }

    #[map]
    pub fn announce(s: u64) -> String {
        format!("T-{s}")
    }

    #[sink]
    pub fn out(cfg: &SinkConfig) -> Result<CollectSink<String>> {
        CollectSink::from_config(cfg)
    }

    dag! { seconds -> announce -> out }
}

fn main() -> Result<()> {
    let config = Config::builder()
        .threads(2)
        .source("seconds", CountdownOptions { from: 10, step: 3 })
        .build()?;
    let (mut result, _) = launch::run(config)?;
    let lines: Vec<String> = result.collected("out")?;
    assert_eq!(lines, ["T-10", "T-7", "T-4", "T-1"]);
    println!("{}", lines.join(" "));
    Ok(())
}
