//! A worker process: it joins a coordinator, and runs its part of each attempt of the job.
//!
//! The worker builds the same job as the coordinator (the same binary and config, which the
//! handshake checks), connects to it, and then waits for orders ([`ToWorker`]). An attempt:
//! connect to the other workers (a worker dials those with a lower index and accepts the
//! others), deploy the tasks the placement gives it, run them on `runtime.threads` threads,
//! and report. Checkpoint work goes through [`RemoteCheckpoints`]: barriers start when the
//! coordinator says, parts are written by the worker straight to the store, and only their
//! names, sizes and checksums go to the coordinator, which writes the manifest.

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use super::deploy::{deploy, Begin, Site};
use super::executor::{self, ExternalWakes};
use super::placement::Placement;
use super::protocol::{self, ToCoordinator, ToWorker};
use super::splits::RemoteSplits;
use super::supervisor::{checkpoint_store, restartable, source_positions};
use super::transport::{connect, Connection, Endpoint, Hello, Listener};
use crate::config::Config;
use crate::core::graph::{Graph, NodeImpl};
use crate::core::plan::PhysicalPlan;
use crate::core::task::{Checkpoints, JobCounters, TaskId};
use crate::error::{Error, Result};
use crate::metrics::Metrics;
use crate::state::checkpoint::CheckpointStore;
use crate::state::codec;
use crate::state::manifest::CheckpointId;

/// How long a worker waits for its peers' data connections, and for answers of the
/// coordinator (the final checkpoint's id).
const PEER_DEADLINE: Duration = Duration::from_secs(30);

/// What a worker process runs.
pub(crate) struct WorkerJob<'a> {
    /// The job id.
    pub id: &'a str,
    /// The job's graph and plan.
    pub graph: &'a Graph,
    pub plan: &'a PhysicalPlan,
    /// Its configuration.
    pub config: &'a Config,
    /// Its counters (reported when an attempt finishes).
    pub metrics: &'a Metrics,
}

/// Joins the coordinator at `join` and serves it until it says the job is over (or goes
/// away: that is an error).
pub(crate) fn serve(job: &WorkerJob<'_>, join: SocketAddr, endpoint: Endpoint) -> Result<()> {
    let host = hostname();
    let pid = std::process::id();
    let mut endpoint = endpoint;
    endpoint.hello.identity = format!("worker pid {pid} on {host}").into_bytes();
    let coordinator = Arc::new(connect(join, &endpoint)?);
    // Peers reach this worker on the interface it reaches the coordinator through.
    let ip = coordinator
        .local_addr()
        .map(|a| a.ip())
        .ok_or_else(|| Error::Internal("the coordinator's connection has no address".into()))?;
    let data = Listener::bind(SocketAddr::new(ip, 0), endpoint.clone())?;
    let data_addr = data.local_addr()?;
    protocol::send(
        &coordinator,
        &ToCoordinator::Join {
            data_addr: data_addr.to_string(),
            host: host.clone(),
            pid,
        },
    )?;
    tracing::info!(coordinator = %coordinator.peer(), data = %data_addr, "worker joined");
    let me = format!("worker pid {pid} on {host}");
    loop {
        let Some((tag, payload)) = coordinator.recv_control(Duration::from_secs(1))? else {
            continue;
        };
        match protocol::decode::<ToWorker>(coordinator.peer(), tag, &payload)? {
            ToWorker::Deploy {
                attempt,
                worker,
                peers,
                placement,
                restore,
                epoch,
                checkpoints,
            } => {
                let order = Attempt {
                    attempt,
                    worker: worker as usize,
                    peers,
                    placement: placement.into_iter().map(|w| w as usize).collect(),
                    restore,
                    epoch,
                    checkpoints,
                };
                let name = format!("worker {worker} (pid {pid} on {host})");
                let shutdown = run_attempt(job, &order, &name, &coordinator, &data, &endpoint)?;
                if shutdown {
                    return Ok(());
                }
            }
            ToWorker::Shutdown => {
                tracing::debug!("{me}: the job is over");
                return Ok(());
            }
            // Orders of an attempt that ended already.
            ToWorker::Cancel { .. }
            | ToWorker::Trigger(_)
            | ToWorker::FinalId(_)
            | ToWorker::Split { .. }
            | ToWorker::Completed(_) => {}
        }
    }
}

/// The host name, for naming a worker in errors.
pub(crate) fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .ok()
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "an unknown host".into())
}

/// The orders of one attempt.
struct Attempt {
    attempt: u32,
    worker: usize,
    peers: Vec<String>,
    placement: Vec<usize>,
    restore: u64,
    epoch: u64,
    checkpoints: bool,
}

/// Runs one attempt and reports its outcome to the coordinator. Returns true when the
/// coordinator said to shut down meanwhile. Fails only when the coordinator cannot be told.
fn run_attempt(
    job: &WorkerJob<'_>,
    order: &Attempt,
    name: &str,
    coordinator: &Arc<Connection>,
    data: &Listener,
    endpoint: &Endpoint,
) -> Result<bool> {
    let shutdown = AtomicBool::new(false);
    let outcome = attempt(job, order, name, coordinator, data, endpoint, &shutdown);
    let report = match outcome {
        Ok(finished) => finished,
        Err(Error::Cancelled { .. }) => ToCoordinator::Stopped {
            attempt: order.attempt,
        },
        Err(e) => {
            tracing::warn!("{name}: attempt {} failed: {e}", order.attempt);
            ToCoordinator::Failed {
                attempt: order.attempt,
                message: e.to_string(),
                restartable: restartable(&e),
            }
        }
    };
    protocol::send(coordinator, &report)?;
    Ok(shutdown.load(Ordering::Acquire))
}

fn attempt(
    job: &WorkerJob<'_>,
    order: &Attempt,
    name: &str,
    coordinator: &Arc<Connection>,
    data: &Listener,
    endpoint: &Endpoint,
    shutdown: &AtomicBool,
) -> Result<ToCoordinator> {
    let workers = order.peers.len();
    let placement = Placement::new(job.plan, workers);
    if placement.worker_of != order.placement {
        return Err(Error::Internal(format!(
            "{name}: the coordinator's placement differs from this worker's for the same plan"
        )));
    }
    let peers = connect_peers(order, name, data, endpoint)?;
    let store = checkpoint_store(job.config)?.map(|store| store.with_epoch(order.epoch));
    let restored = match (order.restore, &store) {
        (0, _) => None,
        (n, Some(store)) => Some(Arc::new(store.open(job.id, CheckpointId(n))?)),
        (n, None) => {
            return Err(Error::Internal(format!(
                "{name}: told to restore checkpoint {n} without `job.checkpoint`"
            )))
        }
    };
    let positions = match &restored {
        Some(c) => source_positions(job.graph, c)?,
        None => HashMap::new(),
    };
    let local_tasks = placement.tasks_of(order.worker).len();
    let wakes = ExternalWakes::new(local_tasks);
    let splits = Arc::new(RemoteSplits::new(
        coordinator.clone(),
        wakes.clone(),
        order.attempt,
    ));
    let deployment = deploy(
        job.graph,
        job.plan,
        job.config,
        Begin {
            restore: restored,
            positions: &positions,
            splits: splits.clone(),
        },
        Some(&Site {
            placement: &placement,
            me: order.worker,
            peers: &peers,
            wakes: &wakes,
        }),
        job.config.metered().then_some(job.metrics),
    )?;
    let sinks: HashSet<usize> = job
        .graph
        .nodes
        .iter()
        .enumerate()
        .filter(|(_, n)| matches!(n.imp, NodeImpl::Sink(_)))
        .map(|(i, _)| i)
        .collect();
    let checkpoints = RemoteCheckpoints {
        enabled: order.checkpoints,
        coordinator: coordinator.clone(),
        store,
        job: job.id.to_string(),
        stage_names: job.graph.nodes.iter().map(|n| n.name.clone()).collect(),
        sinks,
        global: deployment.global.clone(),
        requested: AtomicU64::new(0),
        completed: AtomicU64::new(order.restore),
        final_id: Mutex::new(None),
        final_known: Condvar::new(),
        records: AtomicU64::new(0),
        records_step: job
            .config
            .job
            .checkpoint
            .as_ref()
            .and_then(|c| c.interval_records)
            .map_or(1 << 20, |n| (n / 16).max(1)),
        writing: Arc::default(),
        worker: name.to_string(),
    };
    let names: Vec<String> = job.graph.nodes.iter().map(|n| n.name.clone()).collect();
    let counters = JobCounters::default();
    let finals: Mutex<Vec<(usize, Vec<u8>)>> = Mutex::new(Vec::new());
    let live = AtomicUsize::new(deployment.slots.len());
    let over = AtomicBool::new(false);
    protocol::send(
        coordinator,
        &ToCoordinator::Deployed {
            attempt: order.attempt,
        },
    )?;
    let outcome = std::thread::scope(|scope| {
        let control = scope.spawn(|| {
            control_loop(Control {
                attempt: order.attempt,
                coordinator,
                checkpoints: &checkpoints,
                splits: &splits,
                wakes: &wakes,
                live: &live,
                over: &over,
                shutdown,
            })
        });
        let outcome = executor::run_with(
            &deployment.slots,
            &names,
            job.config.threads(),
            &counters,
            &finals,
            &checkpoints,
            &live,
            &wakes,
        );
        // Every part this attempt started is written (and announced) before the outcome.
        let written = checkpoints.wait_written();
        over.store(true, Ordering::Release);
        let control = control
            .join()
            .unwrap_or_else(|_| Err(Error::Internal("the control thread panicked".into())));
        outcome.and(written).and(control)
    });
    drop(deployment);
    let transport = transport_counters(&peers);
    drop(peers);
    outcome?;
    let final_states = finals
        .into_inner()
        .map_err(|_| Error::Internal("state lock poisoned".into()))?
        .into_iter()
        .map(|(stage, bytes)| (stage as u32, bytes))
        .collect();
    Ok(ToCoordinator::Finished {
        attempt: order.attempt,
        final_states,
        peak_in_flight: counters.peak_in_flight.load(Ordering::Relaxed) as u64,
        counters: job
            .metrics
            .snapshot()
            .into_iter()
            .chain(transport)
            .collect(),
    })
}

/// The counters of this worker's data connections (those [`is_maximum`] names are maxima, not
/// sums).
fn transport_counters(peers: &[Option<Arc<Connection>>]) -> Vec<(String, u64)> {
    let (mut sent, mut bytes, mut credits, mut waits, mut writer, mut inbox, mut capacity) =
        (0, 0, 0, 0, 0, 0, 0);
    let mut any = false;
    for conn in peers.iter().flatten() {
        let (outputs, inputs) = conn.stats();
        for o in outputs {
            any = true;
            sent += o.data_frames;
            bytes += o.data_bytes;
            credits += o.credits_total;
            waits += o.credit_waits;
            writer = writer.max(o.max_queued as u64);
        }
        for i in inputs {
            any = true;
            inbox = inbox.max(i.max_queued as u64);
            capacity = capacity.max(u64::from(i.capacity));
        }
    }
    if !any {
        return Vec::new();
    }
    [
        ("transport.batches_sent", sent),
        ("transport.bytes_sent", bytes),
        ("transport.credits_received", credits),
        ("transport.credit_waits", waits),
        ("transport.max_writer_queue", writer),
        ("transport.max_inbox", inbox),
        ("transport.max_inbox_capacity", capacity),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect()
}

/// Counters a job reports as the largest value of any worker rather than their sum.
pub(crate) fn is_maximum(counter: &str) -> bool {
    counter.starts_with("transport.max_")
}

/// The identity a worker gives its data connections: which worker, in which attempt.
fn data_identity(worker: usize, attempt: u32) -> String {
    format!("worker {worker} attempt {attempt}")
}

/// Connects to every other worker of the attempt: dials those with a lower index, accepts the
/// others (connections of other attempts are dropped). By worker index; `None` for this one.
fn connect_peers(
    order: &Attempt,
    name: &str,
    data: &Listener,
    endpoint: &Endpoint,
) -> Result<Vec<Option<Arc<Connection>>>> {
    let me = order.worker;
    let workers = order.peers.len();
    let mut peers: Vec<Option<Arc<Connection>>> = (0..workers).map(|_| None).collect();
    let mut endpoint = endpoint.clone();
    endpoint.hello = Hello {
        identity: data_identity(me, order.attempt).into_bytes(),
        ..endpoint.hello
    };
    let expected: HashMap<String, usize> = (me + 1..workers)
        .map(|w| (data_identity(w, order.attempt), w))
        .collect();
    let deadline = Instant::now() + PEER_DEADLINE;
    std::thread::scope(|scope| -> Result<()> {
        let accepting = scope.spawn(|| -> Result<Vec<(usize, Connection)>> {
            let mut got = Vec::new();
            while got.len() < expected.len() {
                if Instant::now() > deadline {
                    return Err(Error::Transport {
                        peer: format!("workers {}..{workers}", me + 1),
                        message: format!(
                            "{name}: not every peer connected within {PEER_DEADLINE:?}"
                        ),
                    });
                }
                match data.accept() {
                    Ok(conn) => {
                        let identity = String::from_utf8_lossy(&conn.peer_hello().identity);
                        match expected.get(identity.as_ref()) {
                            Some(&w) if !got.iter().any(|(g, _)| *g == w) => got.push((w, conn)),
                            // A connection of an earlier attempt, or the wake-up below.
                            _ => drop(conn),
                        }
                    }
                    Err(e) => tracing::warn!("{name}: refused a data connection: {e}"),
                }
            }
            Ok(got)
        });
        let mut dialed = Ok(());
        for (w, addr) in order.peers.iter().enumerate().take(me) {
            let conn = addr
                .parse::<SocketAddr>()
                .map_err(|e| Error::Internal(format!("worker {w}'s address `{addr}`: {e}")))
                .and_then(|addr| connect(addr, &endpoint));
            match conn {
                Ok(conn) => peers[w] = Some(Arc::new(conn)),
                Err(e) => {
                    dialed = Err(e);
                    break;
                }
            }
        }
        if dialed.is_err() && !accepting.is_finished() {
            // Ends the accepting thread's wait: a connection that fails the handshake or is not
            // expected is dropped, and the deadline check follows.
            if let Ok(addr) = data.local_addr() {
                let _ = std::net::TcpStream::connect(addr);
            }
        }
        let accepted = accepting
            .join()
            .unwrap_or_else(|_| Err(Error::Internal("the accepting thread panicked".into())));
        dialed?;
        for (w, conn) in accepted? {
            peers[w] = Some(Arc::new(conn));
        }
        Ok(())
    })?;
    Ok(peers)
}

/// What the control loop of an attempt works with.
struct Control<'a> {
    attempt: u32,
    coordinator: &'a Connection,
    checkpoints: &'a RemoteCheckpoints,
    splits: &'a RemoteSplits,
    wakes: &'a ExternalWakes,
    /// Tasks of this worker not finished yet.
    live: &'a AtomicUsize,
    /// The attempt is over (the loop ends).
    over: &'a AtomicBool,
    /// Set when the coordinator shuts the job down.
    shutdown: &'a AtomicBool,
}

/// Reads the coordinator's orders while an attempt runs, and reports finished tasks and
/// records read. Ends when the attempt is over; a cancel, a shutdown or a lost coordinator
/// cancels the run.
fn control_loop(control: Control<'_>) -> Result<()> {
    let Control {
        attempt,
        coordinator,
        checkpoints,
        splits,
        wakes,
        live,
        over,
        shutdown,
    } = control;
    let tasks = live.load(Ordering::Acquire);
    let mut done_reported = 0;
    // Reports the tasks finished since the last report, and the records read.
    let report = |done_reported: &mut usize| -> Result<()> {
        let done = tasks - live.load(Ordering::Acquire);
        if done > *done_reported {
            let count = (done - *done_reported) as u32;
            protocol::send(coordinator, &ToCoordinator::TasksDone { count })?;
            *done_reported = done;
        }
        checkpoints.flush_records()
    };
    while !over.load(Ordering::Acquire) {
        let message = coordinator.recv_control(Duration::from_millis(20));
        report(&mut done_reported)?;
        let (tag, payload) = match message {
            Ok(Some(m)) => m,
            Ok(None) => continue,
            Err(e) => {
                wakes.cancel(Error::Cancelled {
                    reason: format!("the coordinator is gone: {e}"),
                });
                return Err(e);
            }
        };
        match protocol::decode::<ToWorker>(coordinator.peer(), tag, &payload) {
            Ok(ToWorker::Trigger(id)) => checkpoints.requested.store(id, Ordering::Release),
            Ok(ToWorker::FinalId(id)) => checkpoints.set_final_id(id),
            Ok(ToWorker::Completed(id)) => {
                checkpoints.completed.fetch_max(id, Ordering::AcqRel);
            }
            Ok(ToWorker::Split {
                attempt: a,
                stage,
                subtask,
                split,
            }) if a == attempt => {
                if let Err(e) = splits.answer(stage as usize, subtask as usize, split) {
                    wakes.cancel(Error::Cancelled {
                        reason: format!("the coordinator broke the protocol: {e}"),
                    });
                    return Err(e);
                }
            }
            Ok(ToWorker::Cancel { attempt: a, reason }) if a == attempt => {
                wakes.cancel(Error::Cancelled { reason });
            }
            Ok(ToWorker::Shutdown) => {
                shutdown.store(true, Ordering::Release);
                wakes.cancel(Error::Cancelled {
                    reason: "the coordinator shut the job down".into(),
                });
            }
            Ok(ToWorker::Cancel { .. })
            | Ok(ToWorker::Split { .. })
            | Ok(ToWorker::Deploy { .. }) => {}
            Err(e) => {
                wakes.cancel(Error::Cancelled {
                    reason: format!("the coordinator broke the protocol: {e}"),
                });
                return Err(e);
            }
        }
    }
    report(&mut done_reported)
}

/// The checkpoint coordinator as a worker's tasks see it: a proxy of the coordinator process.
struct RemoteCheckpoints {
    enabled: bool,
    coordinator: Arc<Connection>,
    store: Option<CheckpointStore>,
    job: String,
    stage_names: Vec<String>,
    sinks: HashSet<usize>,
    /// Per local task: its index in the plan.
    global: Vec<usize>,
    requested: AtomicU64,
    completed: AtomicU64,
    final_id: Mutex<Option<u64>>,
    final_known: Condvar,
    /// Records read and not reported yet.
    records: AtomicU64,
    /// Reported once this many are unreported (the control loop reports the rest).
    records_step: u64,
    /// Parts being written.
    writing: Arc<Writing>,
    worker: String,
}

/// A count of parts being written, and its changes.
#[derive(Default)]
struct Writing {
    count: Mutex<usize>,
    changed: Condvar,
}

impl Writing {
    fn start(&self) {
        *self.count.lock().unwrap_or_else(|p| p.into_inner()) += 1;
    }

    fn finish(&self) {
        let mut count = self.count.lock().unwrap_or_else(|p| p.into_inner());
        *count = count.saturating_sub(1);
        self.changed.notify_all();
    }
}

impl RemoteCheckpoints {
    fn send(&self, message: &ToCoordinator) {
        if let Err(e) = protocol::send(&self.coordinator, message) {
            // The control loop sees the connection down and cancels the attempt.
            tracing::debug!("{}: cannot tell the coordinator: {e}", self.worker);
        }
    }

    fn set_final_id(&self, id: u64) {
        let mut slot = self.final_id.lock().unwrap_or_else(|p| p.into_inner());
        *slot = Some(id);
        self.final_known.notify_all();
    }

    fn flush_records(&self) -> Result<()> {
        let n = self.records.swap(0, Ordering::AcqRel);
        if n > 0 {
            protocol::send(&self.coordinator, &ToCoordinator::RecordsRead(n))?;
        }
        Ok(())
    }

    /// Waits until every part started is written and announced.
    fn wait_written(&self) -> Result<()> {
        let deadline = Instant::now() + super::coordinator::REMOTE_PART_DEADLINE;
        let mut writing = self.writing.count.lock().unwrap_or_else(|p| p.into_inner());
        while *writing > 0 {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(Error::Checkpoint {
                    id: None,
                    reason: format!("{}: {} part(s) not written in time", self.worker, *writing),
                });
            }
            writing = self
                .writing
                .changed
                .wait_timeout(writing, left)
                .map(|(g, _)| g)
                .unwrap_or_else(|p| p.into_inner().0);
        }
        Ok(())
    }
}

impl Checkpoints for RemoteCheckpoints {
    fn enabled(&self) -> bool {
        self.enabled
    }

    fn fenced(&self) -> Result<()> {
        Ok(())
    }

    fn final_id(&self) -> Result<u64> {
        let mut slot = self.final_id.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(id) = *slot {
            return Ok(id);
        }
        self.send(&ToCoordinator::FinalIdRequest);
        let deadline = Instant::now() + PEER_DEADLINE;
        loop {
            if let Some(id) = *slot {
                return Ok(id);
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(Error::Transport {
                    peer: self.coordinator.peer().to_string(),
                    message: format!(
                        "{}: no final checkpoint id from the coordinator within {PEER_DEADLINE:?}",
                        self.worker
                    ),
                });
            }
            slot = self
                .final_known
                .wait_timeout(slot, left)
                .map(|(g, _)| g)
                .unwrap_or_else(|p| p.into_inner().0);
        }
    }

    fn completed(&self) -> u64 {
        self.completed.load(Ordering::Acquire)
    }

    fn requested(&self) -> u64 {
        self.requested.load(Ordering::Acquire)
    }

    fn records_read(&self, n: u64) {
        let before = self.records.fetch_add(n, Ordering::AcqRel);
        if before + n >= self.records_step {
            let n = self.records.swap(0, Ordering::AcqRel);
            if n > 0 {
                self.send(&ToCoordinator::RecordsRead(n));
            }
        }
    }

    fn part(&self, id: u64, stage: usize, part: String, bytes: Vec<u8>) {
        let transactions = match self.sinks.contains(&stage) {
            true => codec::decode::<Vec<String>>(&bytes).unwrap_or_default(),
            false => Vec::new(),
        };
        self.send(&ToCoordinator::PartStarted {
            id,
            stage: stage as u32,
            name: part.clone(),
            transactions,
        });
        let fail = |reason: String| ToCoordinator::PartWritten {
            id,
            stage: stage as u32,
            name: part.clone(),
            result: Err(reason),
        };
        let Some(store) = &self.store else {
            self.send(&fail("the worker has no checkpoint store".into()));
            return;
        };
        self.writing.start();
        let (coordinator, writing) = (self.coordinator.clone(), self.writing.clone());
        let (name, worker) = (part.clone(), self.worker.clone());
        let started = store.write_part_then(
            &self.job,
            CheckpointId(id),
            &self.stage_names[stage],
            &part,
            bytes,
            move |result| {
                let written = ToCoordinator::PartWritten {
                    id,
                    stage: stage as u32,
                    name,
                    result: result.map_err(|e| e.to_string()),
                };
                if let Err(e) = protocol::send(&coordinator, &written) {
                    tracing::debug!("{worker}: cannot tell the coordinator: {e}");
                }
                writing.finish();
            },
        );
        if let Err(e) = started {
            self.writing.finish();
            self.send(&fail(e.to_string()));
        }
    }

    fn ack(&self, id: u64, task: TaskId) {
        if let Some(&global) = self.global.get(task) {
            self.send(&ToCoordinator::Ack {
                id,
                task: global as u32,
            });
        }
    }
}
