//! The throughput of the data plane: codec-encoded batches of 1024 records between two tasks
//! of a pool, and between two processes, over a loopback connection with credits. Figures, not
//! checks:
//!
//! `cargo test --release -p solstice --lib runtime::transport::tests::bench -- --ignored --nocapture`

use std::net::SocketAddr;
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

/// What the consumer saw: the input's counters, the records and their sum.
type Received = (ChannelStats, u64, u64);

/// Runs a producer of `batches` batches on `out` and/or a consumer on `input` in one pool of
/// `threads` threads (each may be in another process); returns what the consumer received.
fn run_ends(
    out: Option<RemoteOutput<Record>>,
    input: Option<RemoteInput<Record>>,
    batches: u64,
    wakes: &ExternalWakes,
    threads: usize,
) -> Option<Received> {
    let report = Arc::new(Mutex::new(None));
    let mut slots = Vec::new();
    if let Some(out) = out {
        let producer = Producer {
            out,
            pending: None,
            next: 0,
            batches,
            ended: false,
        };
        slots.push(TaskSlot::new(
            Box::new(producer),
            0,
            slots.len(),
            Vec::new(),
        ));
    }
    if let Some(input) = input {
        let consumer = Consumer {
            input,
            records: 0,
            sum: 0,
            report: report.clone(),
        };
        slots.push(TaskSlot::new(
            Box::new(consumer),
            0,
            slots.len(),
            Vec::new(),
        ));
    }
    let names = vec!["bench".to_string()];
    let counters = JobCounters::default();
    let finals = Mutex::new(Vec::new());
    let live = AtomicUsize::new(slots.len());
    run_with(
        &slots,
        &names,
        threads,
        &counters,
        &finals,
        &NoCheckpoints,
        &live,
        wakes,
    )
    .unwrap();
    let received = lock(&report).take();
    received
}

/// Checks what the consumer received and prints the figure.
fn report(what: &str, batches: u64, received: Received, elapsed: std::time::Duration) {
    let (stats, records, sum) = received;
    let n = batches * RECORDS as u64;
    assert_eq!((records, sum), (n, n.wrapping_mul(n.wrapping_sub(1)) / 2));
    assert_eq!(stats.data_frames, batches);
    let mb = stats.data_bytes as f64 / 1e6;
    println!(
        "transport throughput {what}: {batches} batches of {RECORDS} (u64, u64) records, \
         {mb:.0} MB encoded, in {elapsed:.2?}: {:.0} MB/s, {:.1} M records/s",
        mb / elapsed.as_secs_f64(),
        n as f64 / 1e6 / elapsed.as_secs_f64()
    );
}

fn batches() -> u64 {
    std::env::var("SOLSTICE_BENCH_BATCHES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(100_000)
}

#[test]
#[ignore = "a throughput figure; run in --release with --ignored --nocapture"]
fn throughput_of_encoded_batches() {
    let batches = batches();
    let (a, b) = pair(TransportConfig::default());
    let wakes = ExternalWakes::new(2);
    let out = a.open_output::<Record>(1, wakes.waker(0).unwrap()).unwrap();
    let input = b
        .open_input::<Record>(1, CREDITS, wakes.waker(1).unwrap())
        .unwrap();
    let start = Instant::now();
    let received = run_ends(Some(out), Some(input), batches, &wakes, 2);
    let elapsed = start.elapsed();
    report(
        "between two threads",
        batches,
        received.expect("the consumer reached the end"),
        elapsed,
    );
}

/// The environment variable naming the address the receiving process connects to.
const PEER_ENV: &str = "SOLSTICE_BENCH_SEND_FROM";

/// The producer here, the consumer in a child process (this test binary, running
/// [`receiving_process`]), one thread each, over loopback.
#[test]
#[ignore = "a throughput figure; run in --release with --ignored --nocapture"]
fn throughput_between_two_processes() {
    let batches = batches();
    let listener = Listener::bind(
        SocketAddr::from(([127, 0, 0, 1], 0)),
        endpoint("sender", TransportConfig::default()),
    )
    .unwrap();
    let addr = listener.local_addr().unwrap();
    let exe = std::env::current_exe().unwrap();
    let child = std::process::Command::new(exe)
        .args([
            "--exact",
            "runtime::transport::tests::bench::receiving_process",
            "--ignored",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(PEER_ENV, addr.to_string())
        .env("SOLSTICE_BENCH_BATCHES", batches.to_string())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let conn = listener.accept().unwrap();
    let wakes = ExternalWakes::new(1);
    let out = conn
        .open_output::<Record>(1, wakes.waker(0).unwrap())
        .unwrap();
    run_ends(Some(out), None, batches, &wakes, 1);
    let output = child.wait_with_output().unwrap();
    let text = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "the receiving process failed: {text}"
    );
    // After the test harness's own words on the same line.
    let figure = text
        .lines()
        .find_map(|l| l.find("transport throughput").map(|at| &l[at..]))
        .unwrap_or_else(|| panic!("the receiving process printed no figure: {text}"));
    println!("{figure}");
}

/// The receiving side of [`throughput_between_two_processes`]; does nothing unless started
/// by it.
#[test]
#[ignore = "started by throughput_between_two_processes"]
fn receiving_process() {
    let Ok(addr) = std::env::var(PEER_ENV) else {
        return;
    };
    let batches = batches();
    let conn = connect(
        addr.parse().unwrap(),
        &endpoint("receiver", TransportConfig::default()),
    )
    .unwrap();
    let wakes = ExternalWakes::new(1);
    let input = conn
        .open_input::<Record>(1, CREDITS, wakes.waker(0).unwrap())
        .unwrap();
    let start = Instant::now();
    let received = run_ends(None, Some(input), batches, &wakes, 1);
    let elapsed = start.elapsed();
    report(
        "between two processes",
        batches,
        received.expect("the consumer reached the end"),
        elapsed,
    );
}

#[test]
#[ignore = "a throughput figure; run in --release with --ignored --nocapture"]
fn codec_alone() {
    let batch: Vec<Record> = (0..RECORDS as u64)
        .map(|i| (i, i.wrapping_mul(0x9E37_79B9_7F4A_7C15)))
        .collect();
    let n = 20_000;
    type Encode = fn(&[Record], &mut Vec<u8>) -> crate::Result<()>;
    let codecs: [(&str, Encode); 2] = [
        ("varint (state)", |b, out| {
            crate::state::codec::encode_into(b, out)
        }),
        ("fixed-width (batches)", |b, out| {
            crate::state::codec::encode_batch_into(b, out)
        }),
    ];
    for (what, encode) in codecs {
        let mut buf = Vec::new();
        let start = Instant::now();
        for _ in 0..n {
            buf.clear();
            encode(&batch[..], &mut buf).unwrap();
        }
        let enc = start.elapsed();
        let mut out = Vec::with_capacity(RECORDS);
        let start = Instant::now();
        for _ in 0..n {
            out.clear();
            crate::state::codec::decode_append::<Record, { 1 << 30 }>(&buf, &mut out).unwrap();
        }
        let dec = start.elapsed();
        assert_eq!(out, batch);
        let mb = (buf.len() * n) as f64 / 1e6;
        let records = (RECORDS * n) as f64 / 1e6;
        println!(
            "codec {what}: {} bytes a batch; encode {:.0} MB/s ({:.0} M records/s), decode \
             {:.0} MB/s ({:.0} M records/s)",
            buf.len(),
            mb / enc.as_secs_f64(),
            records / enc.as_secs_f64(),
            mb / dec.as_secs_f64(),
            records / dec.as_secs_f64()
        );
    }
}
