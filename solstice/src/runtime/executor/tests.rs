//! Stress tests of the wake-up protocol: the task state machine (a wake-up while a task runs makes
//! it run again, one while it is idle schedules it), the channel's register-then-recheck step (a
//! sender that finds its channel full registers, rechecks, and is woken by the reader's next
//! receive), and the notification of parked threads.
//!
//! Threads park until notified (there is no timeout to rescue a lost wake-up), so a lost wake-up
//! leaves tasks idle forever: a watchdog fails the test when no message moved for [`STALL`]
//! instead of letting it hang. Channels hold one batch, tasks yield and dawdle at random, and jobs
//! run on 2 to 4 threads (more threads than a small machine has cores, so that threads are also
//! preempted mid-step), so that the protocol's steps interleave in many ways.
//!
//! The same tasks also talk through real loopback connections of the transport, with one credit
//! per channel: then every wake-up comes from a socket thread, outside the pool, through
//! [`ExternalWakes`].

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::time::{Duration, Instant};

use super::{run_with, ExternalWakes, TaskSlot};
use crate::core::task::{Cx, JobCounters, NoCheckpoints, Step, Task};
use crate::error::{Error, Result};
use crate::runtime::channel::{channel, ChanRx, ChanTx};
use crate::runtime::message::{Input, Msg, Output};
use crate::runtime::transport::{tests::pair, TransportConfig};

/// No message delivered for this long: a wake-up was lost.
const STALL: Duration = Duration::from_secs(10);

/// A small deterministic random source (splitmix64), one per task.
struct Rng(u64);

impl Rng {
    fn new(seed: u64) -> Self {
        Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ 0xD1B5_4A32_D192_ED03)
    }

    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// True once in `n` calls on average.
    fn one_in(&mut self, n: u64) -> bool {
        self.next().is_multiple_of(n)
    }

    /// Spins a random short while, so that the other threads move on meanwhile.
    fn dawdle(&mut self) {
        if self.one_in(4) {
            for _ in 0..self.next() % 256 {
                std::hint::spin_loop();
            }
        }
    }
}

/// Runs `tasks` on `threads` threads. Fails the test when no message was delivered (`progress`
/// did not move) for [`STALL`] while the job is still running: a lost wake-up.
fn run_watched(
    name: &str,
    threads: usize,
    tasks: Vec<Box<dyn Task>>,
    progress: &Arc<AtomicU64>,
) -> Result<()> {
    let external = ExternalWakes::new(tasks.len());
    run_watched_with(name, threads, tasks, progress, external)
}

/// [`run_watched`], with tasks that are also woken from outside the pool through `external`.
fn run_watched_with(
    name: &str,
    threads: usize,
    tasks: Vec<Box<dyn Task>>,
    progress: &Arc<AtomicU64>,
    external: ExternalWakes,
) -> Result<()> {
    let (done_tx, done_rx) = mpsc::channel();
    let job = std::thread::Builder::new()
        .name(format!("job-{name}"))
        .spawn(move || {
            let slots: Vec<TaskSlot> = tasks
                .into_iter()
                .enumerate()
                .map(|(i, t)| TaskSlot::new(t, 0, i, Vec::new()))
                .collect();
            let names = vec!["test".to_string()];
            let counters = JobCounters::default();
            let finals = Mutex::new(Vec::new());
            let live = AtomicUsize::new(slots.len());
            let result = run_with(
                &slots,
                &names,
                threads,
                &counters,
                &finals,
                &NoCheckpoints,
                &live,
                &external,
            );
            let _ = done_tx.send(result);
        })
        .expect("cannot start the job thread");
    let mut seen = progress.load(Ordering::Relaxed);
    let mut last_move = Instant::now();
    loop {
        match done_rx.recv_timeout(Duration::from_millis(100)) {
            Ok(outcome) => {
                job.join().expect("job thread panicked");
                return outcome;
            }
            Err(mpsc::RecvTimeoutError::Disconnected) => panic!("job `{name}` thread panicked"),
            Err(mpsc::RecvTimeoutError::Timeout) => {
                let now = progress.load(Ordering::Relaxed);
                if now != seen {
                    seen = now;
                    last_move = Instant::now();
                } else if last_move.elapsed() > STALL {
                    // The job's threads stay parked; the test process ends them when it exits.
                    panic!(
                        "lost wake-up: job `{name}` on {threads} threads delivered no message \
                         for {STALL:?} (after {now} messages)"
                    );
                }
            }
        }
    }
}

fn assert_clean(name: &str, outcome: Result<()>) {
    if let Err(e) = outcome {
        panic!("job `{name}` failed: {e}");
    }
}

fn failed(what: String) -> Error {
    Error::Internal(what)
}

/// A message a task could not send yet (its channel was full; the task is registered to be woken
/// when the reader takes a batch).
struct Outbox<O = ChanTx<u64>> {
    tx: O,
    pending: Option<Msg<u64>>,
}

impl<O: Output<u64>> Outbox<O> {
    fn new(tx: O) -> Self {
        Outbox { tx, pending: None }
    }

    /// Sends the pending message. `false`: the channel is still full.
    fn flush(&mut self, cx: &mut Cx<'_>) -> Result<bool> {
        match self.pending.take() {
            None => Ok(true),
            Some(msg) => {
                self.pending = self.tx.try_send(msg, cx)?;
                Ok(self.pending.is_none())
            }
        }
    }

    /// Queues `msg` behind nothing (the caller flushed first) and tries to send it.
    fn send(&mut self, msg: Msg<u64>, cx: &mut Cx<'_>) -> Result<bool> {
        debug_assert!(self.pending.is_none());
        self.pending = Some(msg);
        self.flush(cx)
    }
}

/// Sends `0..n` as batches of one record to `outs` in turn, then an end marker to each.
struct Producer {
    id: u64,
    outs: Vec<Outbox>,
    next: u64,
    n: u64,
    ended: usize,
    rng: Rng,
}

impl Task for Producer {
    fn run(&mut self, cx: &mut Cx<'_>) -> Result<Step> {
        loop {
            for out in &mut self.outs {
                if !out.flush(cx)? {
                    return Ok(Step::Wait);
                }
            }
            if self.next < self.n {
                let dest = (self.next as usize) % self.outs.len();
                let record = (self.id << 32) | self.next;
                self.next += 1;
                if !self.outs[dest].send(Msg::Data(vec![record]), cx)? {
                    return Ok(Step::Wait);
                }
            } else if self.ended < self.outs.len() {
                let dest = self.ended;
                self.ended += 1;
                if !self.outs[dest].send(Msg::End, cx)? {
                    return Ok(Step::Wait);
                }
            } else {
                return Ok(Step::Done);
            }
            self.rng.dawdle();
            if self.rng.one_in(8) {
                return Ok(Step::Yield);
            }
        }
    }
}

/// Reads its inputs in turn and passes every record on (it is a blocked sender and a waiting
/// reader in turn).
struct Relay {
    inputs: Vec<ChanRx<u64>>,
    ended: Vec<bool>,
    out: Outbox,
    next: usize,
    rng: Rng,
}

impl Task for Relay {
    fn run(&mut self, cx: &mut Cx<'_>) -> Result<Step> {
        loop {
            if !self.out.flush(cx)? {
                return Ok(Step::Wait);
            }
            if self.ended.iter().all(|&e| e) {
                return Ok(Step::Done);
            }
            let n = self.inputs.len();
            let mut got = None;
            for k in 0..n {
                let i = (self.next + k) % n;
                if self.ended[i] {
                    continue;
                }
                if let Some(msg) = self.inputs[i].try_recv(cx)? {
                    self.next = (i + 1) % n;
                    got = Some((i, msg));
                    break;
                }
            }
            let Some((i, msg)) = got else {
                return Ok(Step::Wait);
            };
            match msg {
                Msg::Data(batch) => {
                    if !self.out.send(Msg::Data(batch), cx)? {
                        return Ok(Step::Wait);
                    }
                }
                Msg::End => {
                    self.ended[i] = true;
                    if self.ended.iter().all(|&e| e) && !self.out.send(Msg::End, cx)? {
                        return Ok(Step::Wait);
                    }
                }
                Msg::Barrier(_) => return Err(failed("unexpected barrier".into())),
            }
            self.rng.dawdle();
            if self.rng.one_in(8) {
                return Ok(Step::Yield);
            }
        }
    }
}

/// Reads its inputs in turn and checks that each producer's records arrive complete (and in
/// order, when they all took the same way); `progress` counts the batches.
struct Consumer {
    inputs: Vec<ChanRx<u64>>,
    /// Each producer's records come in order (they all took the same way).
    ordered: bool,
    /// End markers each input must deliver before it is done.
    ends_per_input: usize,
    ends: Vec<usize>,
    /// Records received from each producer (in order: the next one expected).
    expected: Vec<u64>,
    /// The sum of the sequence numbers received from each producer (duplicates and losses show).
    sums: Vec<u64>,
    /// Records each producer sends.
    n: u64,
    next: usize,
    progress: Arc<AtomicU64>,
    rng: Rng,
}

impl Consumer {
    fn new(
        inputs: Vec<ChanRx<u64>>,
        ordered: bool,
        ends_per_input: usize,
        producers: usize,
        n: u64,
    ) -> Self {
        let k = inputs.len();
        Consumer {
            inputs,
            ordered,
            ends_per_input,
            ends: vec![0; k],
            expected: vec![0; producers],
            sums: vec![0; producers],
            n,
            next: 0,
            progress: Arc::new(AtomicU64::new(0)),
            rng: Rng::new(k as u64),
        }
    }
}

impl Task for Consumer {
    fn run(&mut self, cx: &mut Cx<'_>) -> Result<Step> {
        loop {
            let n = self.inputs.len();
            let mut got = None;
            for k in 0..n {
                let i = (self.next + k) % n;
                if self.ends[i] == self.ends_per_input {
                    continue;
                }
                if let Some(msg) = self.inputs[i].try_recv(cx)? {
                    self.next = (i + 1) % n;
                    got = Some((i, msg));
                    break;
                }
            }
            let Some((i, msg)) = got else {
                if self.ends.iter().all(|&e| e == self.ends_per_input) {
                    let sum = self.n * self.n.saturating_sub(1) / 2;
                    let wrong = (0..self.expected.len())
                        .find(|&p| self.expected[p] != self.n || self.sums[p] != sum);
                    if let Some(p) = wrong {
                        return Err(failed(format!(
                            "producer {p}: {} of {} records arrived (sum {}, want {sum})",
                            self.expected[p], self.n, self.sums[p]
                        )));
                    }
                    return Ok(Step::Done);
                }
                return Ok(Step::Wait);
            };
            match msg {
                Msg::Data(batch) => {
                    for record in batch {
                        let (p, seq) = ((record >> 32) as usize, record & 0xFFFF_FFFF);
                        let Some(next) = self.expected.get_mut(p) else {
                            return Err(failed(format!("record from unknown producer {p}")));
                        };
                        if self.ordered && *next != seq {
                            return Err(failed(format!(
                                "producer {p}: record {seq} arrived, expected {next}"
                            )));
                        }
                        *next += 1;
                        self.sums[p] += seq;
                    }
                    self.progress.fetch_add(1, Ordering::Relaxed);
                }
                Msg::End => self.ends[i] += 1,
                Msg::Barrier(_) => return Err(failed("unexpected barrier".into())),
            }
            self.rng.dawdle();
            if self.rng.one_in(8) {
                return Ok(Step::Yield);
            }
        }
    }
}

/// Sends `0..n` to an echo task, at most `window` records in flight, and checks that they come
/// back in order.
struct Pinger<I = ChanRx<u64>, O = ChanTx<u64>> {
    out: Outbox<O>,
    back: I,
    sent: u64,
    received: u64,
    n: u64,
    window: u64,
    ended: bool,
    progress: Arc<AtomicU64>,
    rng: Rng,
}

impl<I: Input<u64>, O: Output<u64>> Task for Pinger<I, O> {
    fn run(&mut self, cx: &mut Cx<'_>) -> Result<Step> {
        loop {
            // Read first: the echo may be blocked on the way back.
            while let Some(msg) = self.back.try_recv(cx)? {
                match msg {
                    Msg::Data(batch) => {
                        for v in batch {
                            if v != self.received {
                                return Err(failed(format!(
                                    "echo {v} arrived, expected {}",
                                    self.received
                                )));
                            }
                            self.received += 1;
                        }
                        self.progress.fetch_add(1, Ordering::Relaxed);
                    }
                    Msg::End if self.received == self.n => return Ok(Step::Done),
                    Msg::End | Msg::Barrier(_) => {
                        return Err(failed(format!(
                            "echo ended after {} of {} records",
                            self.received, self.n
                        )))
                    }
                }
            }
            if !self.out.flush(cx)? {
                return Ok(Step::Wait);
            }
            if self.sent < self.n && self.sent - self.received < self.window {
                self.sent += 1;
                if !self.out.send(Msg::Data(vec![self.sent - 1]), cx)? {
                    return Ok(Step::Wait);
                }
            } else if self.sent == self.n && !self.ended {
                self.ended = true;
                if !self.out.send(Msg::End, cx)? {
                    return Ok(Step::Wait);
                }
            } else {
                return Ok(Step::Wait);
            }
            self.rng.dawdle();
            if self.rng.one_in(8) {
                return Ok(Step::Yield);
            }
        }
    }
}

/// Sends back everything it receives, end marker included.
struct Echo<I = ChanRx<u64>, O = ChanTx<u64>> {
    input: I,
    out: Outbox<O>,
    done: bool,
    rng: Rng,
}

impl<I: Input<u64>, O: Output<u64>> Task for Echo<I, O> {
    fn run(&mut self, cx: &mut Cx<'_>) -> Result<Step> {
        loop {
            if !self.out.flush(cx)? {
                return Ok(Step::Wait);
            }
            if self.done {
                return Ok(Step::Done);
            }
            let Some(msg) = self.input.try_recv(cx)? else {
                return Ok(Step::Wait);
            };
            self.done = matches!(msg, Msg::End);
            if !self.out.send(msg, cx)? {
                return Ok(Step::Wait);
            }
            self.rng.dawdle();
            if self.rng.one_in(8) {
                return Ok(Step::Yield);
            }
        }
    }
}

/// The four ends of one ping-pong pair, whatever carries them.
struct PairEnds<O1, I1, O2, I2> {
    to_echo: O1,
    from_ping: I1,
    to_ping: O2,
    from_echo: I2,
}

/// The pinger (task `ids.0`) and the echo (task `ids.1`) of one ping-pong pair over `ends`.
fn ping_pong_pair<O1, I1, O2, I2>(
    ends: PairEnds<O1, I1, O2, I2>,
    (ping, echo): (usize, usize),
    n: u64,
    window: u64,
    seed: u64,
    progress: &Arc<AtomicU64>,
) -> [Box<dyn Task>; 2]
where
    O1: Output<u64> + 'static,
    I1: Input<u64> + 'static,
    O2: Output<u64> + 'static,
    I2: Input<u64> + 'static,
{
    [
        Box::new(Pinger {
            out: Outbox::new(ends.to_echo),
            back: ends.from_echo,
            sent: 0,
            received: 0,
            n,
            window,
            ended: false,
            progress: progress.clone(),
            rng: Rng::new(seed + ping as u64),
        }),
        Box::new(Echo {
            input: ends.from_ping,
            out: Outbox::new(ends.to_ping),
            done: false,
            rng: Rng::new(seed + echo as u64),
        }),
    ]
}

/// `pairs` ping-pong pairs over channels of one batch, two records in flight: both directions
/// fill, so each side is in turn a blocked sender woken by the other's receive and a waiting
/// reader woken by the other's send, often while it is still running.
fn ping_pong(threads: usize, pairs: usize, n: u64, window: u64, seed: u64) {
    let progress = Arc::new(AtomicU64::new(0));
    let mut tasks: Vec<Box<dyn Task>> = Vec::new();
    for p in 0..pairs {
        let (ping, echo) = (2 * p, 2 * p + 1);
        let (to_echo, from_ping) = channel::<u64>(1, echo);
        let (to_ping, from_echo) = channel::<u64>(1, ping);
        let ends = PairEnds {
            to_echo,
            from_ping,
            to_ping,
            from_echo,
        };
        tasks.extend(ping_pong_pair(
            ends,
            (ping, echo),
            n,
            window,
            seed,
            &progress,
        ));
    }
    let name = format!("ping-pong x{pairs}");
    let outcome = run_watched(&name, threads, tasks, &progress);
    assert_clean(&name, outcome);
}

/// `producers` producers into one consumer: through a channel each (`shared: false`, as the
/// runtime connects subtasks) or all through one channel (`shared: true`: many senders
/// registered as blocked on the same channel, all woken by one receive).
fn fan_in(threads: usize, producers: usize, n: u64, shared: bool, seed: u64) {
    let consumer = producers;
    let mut outs = Vec::new();
    let mut inputs = Vec::new();
    if shared {
        let (tx, rx) = channel::<u64>(1, consumer);
        outs.extend((0..producers).map(|_| tx.clone()));
        inputs.push(rx);
    } else {
        for _ in 0..producers {
            let (tx, rx) = channel::<u64>(1, consumer);
            outs.push(tx);
            inputs.push(rx);
        }
    }
    let ends = if shared { producers } else { 1 };
    let sink = Consumer::new(inputs, true, ends, producers, n);
    let progress = sink.progress.clone();
    let mut tasks: Vec<Box<dyn Task>> = outs
        .into_iter()
        .enumerate()
        .map(|(p, tx)| {
            Box::new(Producer {
                id: p as u64,
                outs: vec![Outbox::new(tx)],
                next: 0,
                n,
                ended: 0,
                rng: Rng::new(seed + p as u64),
            }) as Box<dyn Task>
        })
        .collect();
    tasks.push(Box::new(sink));
    let name = format!("fan-in x{producers} shared={shared}");
    let outcome = run_watched(&name, threads, tasks, &progress);
    assert_clean(&name, outcome);
}

/// `producers` producers, each spreading its records over `relays` relays, which all feed one
/// consumer: every relay is a reader of many senders and a sender blocked on a shared reader.
fn shuffle(threads: usize, producers: usize, relays: usize, n: u64, seed: u64) {
    let consumer = producers + relays;
    let mut relay_inputs: Vec<Vec<ChanRx<u64>>> = (0..relays).map(|_| Vec::new()).collect();
    let mut tasks: Vec<Box<dyn Task>> = Vec::new();
    for p in 0..producers {
        let mut outs = Vec::new();
        for (r, inputs) in relay_inputs.iter_mut().enumerate() {
            let (tx, rx) = channel::<u64>(1, producers + r);
            outs.push(Outbox::new(tx));
            inputs.push(rx);
        }
        tasks.push(Box::new(Producer {
            id: p as u64,
            outs,
            next: 0,
            n,
            ended: 0,
            rng: Rng::new(seed + p as u64),
        }));
    }
    let mut sink_inputs = Vec::new();
    for (r, inputs) in relay_inputs.into_iter().enumerate() {
        let (tx, rx) = channel::<u64>(1, consumer);
        sink_inputs.push(rx);
        let k = inputs.len();
        tasks.push(Box::new(Relay {
            inputs,
            ended: vec![false; k],
            out: Outbox::new(tx),
            next: 0,
            rng: Rng::new(seed + (producers + r) as u64),
        }));
    }
    let sink = Consumer::new(sink_inputs, false, 1, producers, n);
    let progress = sink.progress.clone();
    tasks.push(Box::new(sink));
    let name = format!("shuffle {producers}x{relays}");
    let outcome = run_watched(&name, threads, tasks, &progress);
    assert_clean(&name, outcome);
}

#[test]
fn ping_pong_wakes_both_sides() {
    for (round, threads) in [2, 3, 4, 2, 3, 4].into_iter().enumerate() {
        ping_pong(threads, 1, 20_000, 2, round as u64 * 1_000);
        ping_pong(threads, 6, 4_000, 2, round as u64 * 1_000 + 1);
        ping_pong(threads, 4, 4_000, 1, round as u64 * 1_000 + 2);
    }
}

#[test]
fn fan_in_wakes_every_blocked_sender() {
    for (round, threads) in [2, 3, 4, 2, 3, 4].into_iter().enumerate() {
        fan_in(threads, 8, 3_000, false, round as u64 * 1_000);
        fan_in(threads, 8, 3_000, true, round as u64 * 1_000 + 1);
    }
}

#[test]
fn shuffle_through_relays() {
    for (round, threads) in [2, 3, 4, 2].into_iter().enumerate() {
        shuffle(threads, 4, 3, 5_000, round as u64 * 1_000);
    }
}

/// A task that sends to another and then keeps its thread until the other has run: the other
/// task can only run on another thread, which is often parked by then and must be notified.
struct Holder {
    out: Outbox,
    back: ChanRx<u64>,
    /// How many records the other task has received.
    seen: Arc<AtomicU64>,
    sent: u64,
    n: u64,
    waiting: bool,
    rng: Rng,
}

/// How long a holder keeps its thread waiting for the other task before it reports a lost
/// notification.
const HOLD: Duration = Duration::from_secs(10);

impl Task for Holder {
    fn run(&mut self, cx: &mut Cx<'_>) -> Result<Step> {
        loop {
            if self.waiting {
                match self.back.try_recv(cx)? {
                    None => return Ok(Step::Wait),
                    Some(Msg::Data(_)) => self.waiting = false,
                    Some(_) => return Err(failed("unexpected message".into())),
                }
            }
            if self.sent == self.n {
                let _ = self.out.send(Msg::End, cx)?;
                return Ok(Step::Done);
            }
            // Let the other thread go idle and park, some of the time.
            let pause = Duration::from_micros(self.rng.next() % 300);
            let start = Instant::now();
            while start.elapsed() < pause {
                std::hint::spin_loop();
            }
            self.sent += 1;
            self.waiting = true;
            if !self.out.send(Msg::Data(vec![self.sent]), cx)? {
                return Err(failed("the channel of a strict ping-pong is full".into()));
            }
            let start = Instant::now();
            while self.seen.load(Ordering::Acquire) < self.sent {
                if start.elapsed() > HOLD {
                    return Err(failed(format!(
                        "lost notification: record {} was not taken for {HOLD:?} while this \
                         thread was busy",
                        self.sent
                    )));
                }
                std::hint::spin_loop();
            }
        }
    }
}

/// Receives, records that it did, and answers.
struct Answerer {
    input: ChanRx<u64>,
    out: Outbox,
    seen: Arc<AtomicU64>,
    progress: Arc<AtomicU64>,
}

impl Task for Answerer {
    fn run(&mut self, cx: &mut Cx<'_>) -> Result<Step> {
        loop {
            if !self.out.flush(cx)? {
                return Ok(Step::Wait);
            }
            match self.input.try_recv(cx)? {
                None => return Ok(Step::Wait),
                Some(Msg::End) => return Ok(Step::Done),
                Some(Msg::Data(batch)) => {
                    self.seen.fetch_add(batch.len() as u64, Ordering::Release);
                    self.progress.fetch_add(1, Ordering::Relaxed);
                    if !self.out.send(Msg::Data(batch), cx)? {
                        return Ok(Step::Wait);
                    }
                }
                Some(Msg::Barrier(_)) => return Err(failed("unexpected barrier".into())),
            }
        }
    }
}

#[test]
fn parked_thread_is_notified_of_new_work() {
    let progress = Arc::new(AtomicU64::new(0));
    let seen = Arc::new(AtomicU64::new(0));
    let (to_answerer, input) = channel::<u64>(1, 1);
    let (to_holder, back) = channel::<u64>(1, 0);
    let tasks: Vec<Box<dyn Task>> = vec![
        Box::new(Holder {
            out: Outbox::new(to_answerer),
            back,
            seen: seen.clone(),
            sent: 0,
            n: 2_000,
            waiting: false,
            rng: Rng::new(7),
        }),
        Box::new(Answerer {
            input,
            out: Outbox::new(to_holder),
            seen,
            progress: progress.clone(),
        }),
    ];
    let outcome = run_watched("hold", 2, tasks, &progress);
    assert_clean("hold", outcome);
}

/// `pairs` ping-pong pairs whose pingers and echoes sit at the two ends of a loopback
/// connection, over channels of one credit each way: every wake-up of a task comes from a socket
/// thread (a frame or a credit arrived), often while the task is running or its thread parks.
fn tcp_ping_pong(threads: usize, pairs: usize, n: u64, window: u64, seed: u64) {
    let (a, b) = pair(TransportConfig::default());
    let external = ExternalWakes::new(2 * pairs);
    let waker = |task: usize| external.waker(task).expect("a waker");
    let progress = Arc::new(AtomicU64::new(0));
    let mut tasks: Vec<Box<dyn Task>> = Vec::new();
    for p in 0..pairs {
        let (ping, echo) = (2 * p, 2 * p + 1);
        let id = p as u32;
        // The same id each way: the two directions are separate channels.
        let to_echo = a.open_output::<u64>(id, waker(ping)).expect("open");
        let from_ping = b.open_input::<u64>(id, 1, waker(echo)).expect("open");
        let to_ping = b.open_output::<u64>(id, waker(echo)).expect("open");
        let from_echo = a.open_input::<u64>(id, 1, waker(ping)).expect("open");
        let ends = PairEnds {
            to_echo,
            from_ping,
            to_ping,
            from_echo,
        };
        tasks.extend(ping_pong_pair(
            ends,
            (ping, echo),
            n,
            window,
            seed,
            &progress,
        ));
    }
    let name = format!("tcp ping-pong x{pairs}");
    let outcome = run_watched_with(&name, threads, tasks, &progress, external.clone());
    assert_clean(&name, outcome);
    assert!(a.error().is_none() && b.error().is_none());
}

#[test]
fn tcp_ping_pong_wakes_from_socket_threads() {
    for (round, threads) in [2, 3, 4, 2].into_iter().enumerate() {
        tcp_ping_pong(threads, 1, 3_000, 2, round as u64 * 1_000);
        tcp_ping_pong(threads, 4, 800, 2, round as u64 * 1_000 + 1);
        tcp_ping_pong(threads, 3, 800, 1, round as u64 * 1_000 + 2);
    }
}

/// Tasks woken only by threads outside the pool, at random moments: a feeder thread per task
/// puts numbers in the task's mailbox and wakes it (the transport's protocol: `waiting` is set
/// and checked under the mailbox's lock), while the tasks yield, dawdle and park at random.
#[test]
fn outside_threads_wake_running_and_parked_tasks() {
    struct Mailbox {
        items: std::collections::VecDeque<u64>,
        waiting: bool,
    }
    struct Reader {
        mailbox: Arc<Mutex<Mailbox>>,
        next: u64,
        n: u64,
        progress: Arc<AtomicU64>,
        rng: Rng,
    }
    impl Task for Reader {
        fn run(&mut self, _: &mut Cx<'_>) -> Result<Step> {
            loop {
                let item = {
                    let mut m = self.mailbox.lock().map_err(|_| failed("poisoned".into()))?;
                    match m.items.pop_front() {
                        Some(item) => item,
                        None => {
                            m.waiting = true;
                            return Ok(Step::Wait);
                        }
                    }
                };
                if item != self.next {
                    return Err(failed(format!(
                        "item {item} arrived, expected {}",
                        self.next
                    )));
                }
                self.next += 1;
                self.progress.fetch_add(1, Ordering::Relaxed);
                if self.next == self.n {
                    return Ok(Step::Done);
                }
                self.rng.dawdle();
                if self.rng.one_in(8) {
                    return Ok(Step::Yield);
                }
            }
        }
    }
    for (round, threads) in [2, 3, 4].into_iter().enumerate() {
        let tasks_n = 6;
        let n = 4_000u64;
        let external = ExternalWakes::new(tasks_n);
        let progress = Arc::new(AtomicU64::new(0));
        let mut tasks: Vec<Box<dyn Task>> = Vec::new();
        let mut feeders = Vec::new();
        for t in 0..tasks_n {
            let mailbox = Arc::new(Mutex::new(Mailbox {
                items: Default::default(),
                waiting: false,
            }));
            tasks.push(Box::new(Reader {
                mailbox: mailbox.clone(),
                next: 0,
                n,
                progress: progress.clone(),
                rng: Rng::new((round * 100 + t) as u64),
            }));
            let waker = external.waker(t).expect("a waker");
            let mut rng = Rng::new((round * 100 + t) as u64 + 7);
            feeders.push(std::thread::spawn(move || {
                for i in 0..n {
                    let wake = {
                        let mut m = mailbox.lock().expect("mailbox");
                        m.items.push_back(i);
                        std::mem::take(&mut m.waiting)
                    };
                    if wake {
                        waker.wake();
                    }
                    // Sometimes a burst, sometimes one at a time with the task parked between.
                    if rng.one_in(3) {
                        std::thread::yield_now();
                    }
                    rng.dawdle();
                }
            }));
        }
        let name = format!("outside wakes on {threads} threads");
        let outcome = run_watched_with(&name, threads, tasks, &progress, external);
        for feeder in feeders {
            feeder.join().expect("feeder");
        }
        assert_clean(&name, outcome);
    }
}
