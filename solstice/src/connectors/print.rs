//! A sink printing records to stdout as JSON lines, prefixed with the subtask (`2> {...}`) when
//! the sink runs more than one subtask. At-least-once: what is printed cannot be taken back.

use std::io::Write;
use std::marker::PhantomData;

use serde::{Deserialize, Serialize};

use crate::config::SinkConfig;
use crate::core::connector::{Sink, SinkWriter};
use crate::core::Data;
use crate::error::{Error, Result};

/// `sinks.<name>:` of a [`PrintSink`]: it takes no settings (an entry, if any, must be empty).
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct PrintOptions {}

/// Prints records to stdout.
pub struct PrintSink<T> {
    _t: PhantomData<fn(T)>,
}

impl<T> std::fmt::Debug for PrintSink<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("PrintSink")
    }
}

impl<T> Default for PrintSink<T> {
    fn default() -> Self {
        PrintSink { _t: PhantomData }
    }
}

impl<T: Serialize + Data> PrintSink<T> {
    /// A print sink; it takes no settings ([`PrintOptions`]): a `sinks.<stage>` entry must be
    /// empty.
    pub fn from_config(cfg: &SinkConfig) -> Result<Self> {
        let PrintOptions {} = cfg.options()?;
        Ok(Self::default())
    }
}

impl<T: Serialize + Data> Sink for PrintSink<T> {
    type Item = T;
    type Writer = PrintWriter<T>;

    fn open(&self, subtask: usize, parallelism: usize) -> Result<PrintWriter<T>> {
        let prefix = if parallelism > 1 {
            format!("{}> ", subtask + 1)
        } else {
            String::new()
        };
        Ok(PrintWriter {
            prefix,
            buf: Vec::new(),
            _t: PhantomData,
        })
    }
}

/// Writes one subtask's records to stdout, a batch at a time.
pub struct PrintWriter<T> {
    prefix: String,
    buf: Vec<u8>,
    _t: PhantomData<fn(T)>,
}

impl<T: Serialize + Data> SinkWriter<T> for PrintWriter<T> {
    fn write_batch(&mut self, batch: &mut Vec<T>) -> Result<()> {
        self.buf.clear();
        for record in batch.drain(..) {
            self.buf.extend_from_slice(self.prefix.as_bytes());
            serde_json::to_writer(&mut self.buf, &record).map_err(|e| Error::Encode {
                stage: "print".into(),
                reason: e.to_string(),
            })?;
            self.buf.push(b'\n');
        }
        std::io::stdout()
            .lock()
            .write_all(&self.buf)
            .map_err(|e| Error::io("<stdout>", e))
    }

    fn finish(&mut self) -> Result<()> {
        std::io::stdout()
            .flush()
            .map_err(|e| Error::io("<stdout>", e))
    }
}
