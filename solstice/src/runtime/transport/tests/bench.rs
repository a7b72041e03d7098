//! The throughput of the data plane: codec-encoded batches of 1024 records between two tasks
//! of a pool, over a loopback connection with credits. A figure, not a check:
//!
//! `cargo test --release -p solstice --lib runtime::transport::tests::bench -- --ignored --nocapture`

use std::sync::atomic::AtomicUsize;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use super::*;
use crate::core::task::{JobCounters, NoCheckpoints, Step, Task};
use crate::runtime::executor::{run_with, TaskSlot};
use crate::runtime::transport::link::lock;

const RECORDS: usize = 1024;
const CREDITS: u32 = 32;

type Record = (u64, u64);

struct Producer {
    out: RemoteOutput<Record>,
    pending: Option<Msg<Record>>,
    next: u64,
    batches: u64,
    ended: bool,
}

impl Task for Producer {
    fn run(&mut self, cx: &mut Cx<'_>) -> crate::Result<Step> {
        for _ in 0..64 {
            let msg = match self.pending.take() {
                Some(msg) => msg,
                None if self.next < self.batches => {
                    let mut batch = self.out.buffer(RECORDS);
                    let base = self.next * RECORDS as u64;
                    batch.extend(
                        (base..base + RECORDS as u64)
                            .map(|i| (i, i.wrapping_mul(0x9E37_79B9_7F4A_7C15))),
                    );
                    self.next += 1;
                    Msg::Data(batch)
                }
                None if !self.ended => {
                    self.ended = true;
                    Msg::End
                }
                None => return Ok(Step::Done),
            };
            self.pending = self.out.try_send(msg, cx)?;
            if self.pending.is_some() {
                return Ok(Step::Wait);
            }
        }
        Ok(Step::Yield)
    }
}

struct Consumer {
    input: RemoteInput<Record>,
    records: u64,
    sum: u64,
    /// The input's counters and the records, at the end of the stream.
    report: Arc<Mutex<Option<(ChannelStats, u64, u64)>>>,
}

impl Task for Consumer {
    fn run(&mut self, cx: &mut Cx<'_>) -> crate::Result<Step> {
        for _ in 0..64 {
            match self.input.try_recv(cx)? {
                None => return Ok(Step::Wait),
                Some(Msg::Data(batch)) => {
                    self.records += batch.len() as u64;
                    self.sum = batch.iter().fold(self.sum, |s, r| s.wrapping_add(r.0));
                    self.input.recycle(batch);
                }
                Some(Msg::End) => {
                    *lock(&self.report) = Some((self.input.stats(), self.records, self.sum));
                    return Ok(Step::Done);
                }
                Some(Msg::Barrier(_)) => {}
            }
        }
        Ok(Step::Yield)
    }
}

#[test]
#[ignore = "a throughput figure; run in --release with --ignored --nocapture"]
fn throughput_of_encoded_batches() {
    let batches: u64 = std::env::var("SOLSTICE_BENCH_BATCHES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(100_000);
    let (a, b) = pair(TransportConfig::default());
    let wakes = ExternalWakes::new(2);
    let out = a.open_output::<Record>(1, wakes.waker(0).unwrap()).unwrap();
    let input = b
        .open_input::<Record>(1, CREDITS, wakes.waker(1).unwrap())
        .unwrap();
    let report = Arc::new(Mutex::new(None));
    let slots = vec![
        TaskSlot::new(
            Box::new(Producer {
                out,
                pending: None,
                next: 0,
                batches,
                ended: false,
            }),
            0,
            0,
        ),
        TaskSlot::new(
            Box::new(Consumer {
                input,
                records: 0,
                sum: 0,
                report: report.clone(),
            }),
            0,
            1,
        ),
    ];
    let names = vec!["bench".to_string()];
    let counters = JobCounters::default();
    let finals = Mutex::new(Vec::new());
    let live = AtomicUsize::new(slots.len());
    let start = Instant::now();
    run_with(
        &slots,
        &names,
        2,
        &counters,
        &finals,
        &NoCheckpoints,
        &live,
        &wakes,
    )
    .unwrap();
    let elapsed = start.elapsed();
    let (stats, records, sum) = lock(&report).take().expect("the consumer reached the end");
    let n = batches * RECORDS as u64;
    assert_eq!((records, sum), (n, n.wrapping_mul(n.wrapping_sub(1)) / 2));
    assert_eq!(stats.data_frames, batches);
    let mb = stats.data_bytes as f64 / 1e6;
    println!(
        "transport throughput: {batches} batches of {RECORDS} (u64, u64) records, {mb:.0} MB \
         encoded, in {elapsed:.2?}: {:.0} MB/s, {:.1} M records/s",
        mb / elapsed.as_secs_f64(),
        (batches * RECORDS as u64) as f64 / 1e6 / elapsed.as_secs_f64()
    );
}

#[test]
#[ignore = "a throughput figure; run in --release with --ignored --nocapture"]
fn codec_alone() {
    let batch: Vec<Record> = (0..RECORDS as u64)
        .map(|i| (i, i.wrapping_mul(0x9E37_79B9_7F4A_7C15)))
        .collect();
    let mut buf = Vec::new();
    let n = 20_000;
    let start = Instant::now();
    for _ in 0..n {
        buf.clear();
        crate::state::codec::encode_into(&batch[..], &mut buf).unwrap();
    }
    let enc = start.elapsed();
    let mut out = Vec::with_capacity(RECORDS);
    let start = Instant::now();
    for _ in 0..n {
        out.clear();
        crate::state::codec::decode_append::<Record, { 1 << 30 }>(&buf, &mut out).unwrap();
    }
    let dec = start.elapsed();
    let mb = (buf.len() * n) as f64 / 1e6;
    println!(
        "codec: {} bytes a batch; encode {:.0} MB/s, decode {:.0} MB/s",
        buf.len(),
        mb / enc.as_secs_f64(),
        mb / dec.as_secs_f64()
    );
}
