//! The coordinator's side of a job of several worker processes: membership (workers it spawns
//! on this host, or that join by hand), and the attempts it runs on them.
//!
//! The coordinator listens for workers, which speak [`super::protocol`]. An attempt sends every
//! worker its orders, then relays between the workers and the checkpoint coordinator: triggers
//! and completions out, parts, acknowledgements and records read in. A worker that fails, or
//! whose connection fails (it exited, was killed, or fell silent for `runtime.heartbeat_ms`),
//! fails the attempt: the others are cancelled and waited for, and the supervisor restarts the
//! job from its last complete checkpoint once every worker is there again: spawned ones are
//! spawned anew, ones that joined by hand are waited for (`runtime.rejoin_timeout_secs`).

use std::collections::HashMap;
use std::ffi::OsString;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender};

use super::coordinator::{Coordinator, Notice, Stalled};
use super::placement::Placement;
use super::protocol::{self, ToCoordinator, ToWorker};
use super::splits::SplitPool;
use super::transport::{Connection, Endpoint, Listener};
use crate::error::{Error, Result};
use crate::state::manifest::PartInfo;

/// The environment variable that carries the job secret (hex) to workers.
pub const SECRET_ENV: &str = "SOLSTICE_SECRET";

/// How the coordinator's workers come to be.
#[derive(Clone, Debug)]
pub(crate) enum Membership {
    /// It spawns `processes` workers on this host, running `command`.
    Spawn {
        /// Workers.
        processes: usize,
        /// Their command line, without the `--worker --join ADDR` it adds.
        command: WorkerCommand,
    },
    /// `workers` workers join by hand.
    Join {
        /// Workers.
        workers: usize,
    },
}

/// The command line of a worker of this job: this executable, with the arguments that build
/// the same job.
#[derive(Clone, Debug)]
pub struct WorkerCommand {
    /// The executable.
    pub program: PathBuf,
    /// Its arguments (the config, job id and overrides), before `--worker --join ADDR`.
    pub args: Vec<OsString>,
}

/// How a coordinator with workers runs.
#[derive(Clone, Debug)]
pub(crate) struct ClusterSpec {
    /// Where its workers come from.
    pub membership: Membership,
    /// Where it listens for them.
    pub listen: SocketAddr,
    /// The job secret, build and config its workers must share, and the connections' settings.
    pub endpoint: Endpoint,
    /// How long a worker that joined by hand and was lost is waited for.
    pub rejoin_timeout: Duration,
    /// How long the workers that join by hand are waited for at the start (`None`: without
    /// limit).
    pub join_timeout: Option<Duration>,
    /// The checkpoint backend's URL when it is on this host's file system (`file://`): every
    /// worker must then run on this host.
    pub local_store: Option<String>,
    /// A file to write the listening address to, once it listens (`--address-file`).
    pub address_file: Option<std::path::PathBuf>,
}

/// A worker that joined.
struct Member {
    conn: Arc<Connection>,
    /// How errors name it: index, process and host.
    name: String,
    data_addr: String,
    /// Its process, when this coordinator spawned it.
    child: Option<Child>,
    /// Tells its events apart from those of an earlier worker of the same index.
    generation: u64,
}

/// What a member's reader thread hands over.
struct Event {
    member: usize,
    generation: u64,
    message: Result<ToCoordinator>,
}

/// The workers of a job and the attempts run on them.
pub(crate) struct Cluster {
    spec: ClusterSpec,
    addr: SocketAddr,
    members: Vec<Option<Member>>,
    generation: u64,
    joins: Receiver<Result<Connection>>,
    events_tx: Sender<Event>,
    events: Receiver<Event>,
    /// Spawned children that were lost (kept to be reaped).
    lost: Vec<Child>,
}

/// What one attempt on the workers needs.
pub(crate) struct AttemptSpec<'a, 'c> {
    /// The attempt's number (0 first).
    pub attempt: u32,
    /// The checkpoint it restores (0: none).
    pub restore: u64,
    /// The run's epoch.
    pub epoch: u64,
    /// The plan's placement on the workers.
    pub placement: &'a Placement,
    /// The checkpoint coordinator, when the job takes checkpoints, and its notices.
    pub checkpoints: Option<(&'a Coordinator<'c>, &'a Receiver<Notice>)>,
    /// Tasks of the plan not finished yet.
    pub live: &'a AtomicUsize,
    /// The attempt's split assigner.
    pub splits: &'a SplitPool,
}

/// What an attempt on the workers reports.
#[derive(Default)]
pub(crate) struct AttemptReport {
    /// Per stateful subtask: its stage and final state.
    pub final_states: Vec<(usize, Vec<u8>)>,
    /// The most batches buffered at once in any worker.
    pub peak_in_flight: usize,
    /// The workers' counters, summed.
    pub counters: Vec<(String, u64)>,
}

impl ClusterSpec {
    /// Workers of the job.
    pub(crate) fn workers(&self) -> usize {
        match &self.membership {
            Membership::Spawn { processes, .. } => *processes,
            Membership::Join { workers } => *workers,
        }
    }
}

/// Writes `addr` to `file` whole: to a temporary file beside it, then renamed, so that a reader
/// never sees part of it.
fn write_address(file: &std::path::Path, addr: SocketAddr) -> Result<()> {
    let mut tmp = file.as_os_str().to_owned();
    tmp.push(".tmp");
    let tmp = std::path::PathBuf::from(tmp);
    std::fs::write(&tmp, format!("{addr}\n")).map_err(|e| Error::io(&tmp, e))?;
    std::fs::rename(&tmp, file).map_err(|e| Error::io(file, e))
}

impl Cluster {
    /// Listens for workers, spawns them when it is to, and waits until all have joined.
    pub(crate) fn start(spec: ClusterSpec) -> Result<Cluster> {
        let listener = Listener::bind(spec.listen, spec.endpoint.clone())?;
        let addr = listener.local_addr()?;
        if let Some(file) = &spec.address_file {
            write_address(file, addr)?;
        }
        let (join_tx, joins) = crossbeam_channel::unbounded();
        // Accepts for as long as the process runs; a refused peer is logged by the handshake.
        std::thread::Builder::new()
            .name("solstice-accept".into())
            .spawn(move || loop {
                let accepted = listener.accept();
                if join_tx.send(accepted).is_err() {
                    return;
                }
            })
            .map_err(|e| Error::Internal(format!("cannot start the accepting thread: {e}")))?;
        let workers = spec.workers();
        let (events_tx, events) = crossbeam_channel::unbounded();
        let cluster = Cluster {
            spec,
            addr,
            members: (0..workers).map(|_| None).collect(),
            generation: 0,
            joins,
            events_tx,
            events,
            lost: Vec::new(),
        };
        match cluster.spec.membership {
            Membership::Join { workers } => tracing::info!(
                listen = %addr,
                "coordinator waiting for {workers} worker(s) to join"
            ),
            Membership::Spawn { processes, .. } => tracing::info!(
                listen = %addr,
                "coordinator spawning {processes} worker process(es)"
            ),
        }
        Ok(cluster)
    }

    /// Workers of the job.
    pub(crate) fn workers(&self) -> usize {
        self.members.len()
    }

    /// Makes every worker slot filled again: spawns the missing workers (or waits for them to
    /// join, at most `rejoin_timeout` when `rejoin` says so, at the start at most
    /// `join_timeout`).
    fn fill(&mut self, rejoin: Option<Duration>) -> Result<()> {
        let missing: Vec<usize> = (0..self.members.len())
            .filter(|&i| self.members[i].is_none())
            .collect();
        if missing.is_empty() {
            return Ok(());
        }
        let mut children: Vec<(usize, Child)> = Vec::new();
        if let Membership::Spawn { command, .. } = &self.spec.membership {
            for &i in &missing {
                children.push((i, spawn(command, self.addr, &self.spec.endpoint, i)?));
            }
        }
        let spawned = !children.is_empty();
        let deadline = match (spawned, rejoin) {
            // A spawned worker joins within the handshake timeout of its start, give or take the
            // time to start a process and build the job.
            (true, _) => Some(Instant::now() + self.spec.endpoint.config.handshake_timeout * 6),
            (false, Some(timeout)) => Some(Instant::now() + timeout),
            (false, None) => self.spec.join_timeout.map(|t| Instant::now() + t),
        };
        let filled = self.fill_from(missing, &mut children, deadline);
        if filled.is_err() {
            for (_, mut child) in children {
                let _ = child.kill();
                let _ = child.wait();
            }
        }
        filled
    }

    /// Admits joining workers into the slots `open` until every one is filled: `children` are
    /// the workers spawned for them (each removed once it joined).
    fn fill_from(
        &mut self,
        mut open: Vec<usize>,
        children: &mut Vec<(usize, Child)>,
        deadline: Option<Instant>,
    ) -> Result<()> {
        let spawned = !children.is_empty();
        while !open.is_empty() {
            let wait = match deadline {
                Some(d) => d.saturating_duration_since(Instant::now()),
                None => Duration::from_secs(3600),
            };
            if wait.is_zero() {
                return Err(Error::WorkerLost {
                    worker: format!("worker {}", open[0]),
                    reason: format!(
                        "{} of {} worker(s) did not join the coordinator at {} in time",
                        open.len(),
                        self.members.len(),
                        self.addr
                    ),
                });
            }
            // A spawned child that exits before it joins is an error at once (what it printed
            // says why).
            for (i, child) in children.iter_mut() {
                if let Ok(Some(status)) = child.try_wait() {
                    return Err(Error::WorkerLost {
                        worker: format!("worker {i} (pid {})", child.id()),
                        reason: format!("it exited with {status} before it joined"),
                    });
                }
            }
            let accepted = match self
                .joins
                .recv_timeout(wait.min(Duration::from_millis(200)))
            {
                Ok(accepted) => accepted,
                Err(crossbeam_channel::RecvTimeoutError::Timeout) => continue,
                Err(crossbeam_channel::RecvTimeoutError::Disconnected) => {
                    return Err(Error::Internal("the accepting thread is gone".into()))
                }
            };
            let conn = match accepted {
                Ok(conn) => conn,
                Err(e) => {
                    tracing::warn!("coordinator: refused a worker: {e}");
                    continue;
                }
            };
            let join = match read_join(&conn, self.spec.endpoint.config.handshake_timeout) {
                Ok(join) => join,
                Err(e) => {
                    tracing::warn!("coordinator: refused a worker: {e}");
                    continue;
                }
            };
            let (data_addr, host, pid) = join;
            // A spawned worker takes the slot it was spawned for; one that joined by hand the
            // first open slot.
            let position = children
                .iter()
                .position(|(_, c)| c.id() == pid)
                .filter(|_| host == super::worker::hostname());
            let (index, child) = match position {
                Some(p) => {
                    let (i, c) = children.swap_remove(p);
                    (i, Some(c))
                }
                None if spawned => {
                    tracing::warn!(
                        "coordinator: refused pid {pid} on {host}: it is not a worker this \
                         coordinator spawned"
                    );
                    continue;
                }
                None => (open[0], None),
            };
            open.retain(|&i| i != index);
            self.admit(index, conn, data_addr, host, pid, child)?;
        }
        Ok(())
    }

    fn admit(
        &mut self,
        index: usize,
        conn: Connection,
        data_addr: String,
        host: String,
        pid: u32,
        child: Option<Child>,
    ) -> Result<()> {
        self.generation += 1;
        let generation = self.generation;
        let name = format!("worker {index} (pid {pid} on {host})");
        if let Some(url) = &self.spec.local_store {
            let here = super::worker::hostname();
            if host != here {
                let message = format!(
                    "{name} runs on another host than the coordinator ({here}), and the \
                     checkpoint backend {url} is this host's file system: workers on several \
                     hosts need a backend they all reach (s3://, gs://, az://)"
                );
                conn.fail(&message);
                return Err(Error::config("job.checkpoint.backend", message));
            }
        }
        tracing::info!("{name} joined; data at {data_addr}");
        let conn = Arc::new(conn);
        let (reader, events, peer) = (conn.clone(), self.events_tx.clone(), name.clone());
        std::thread::Builder::new()
            .name(format!("solstice-member-{index}"))
            .spawn(move || loop {
                let message = match reader.recv_control(Duration::from_secs(1)) {
                    Ok(None) => {
                        // Only this thread and the member hold the connection: once the member
                        // is gone, so is the reason to read.
                        if Arc::strong_count(&reader) == 1 {
                            return;
                        }
                        continue;
                    }
                    Ok(Some((tag, payload))) => protocol::decode(&peer, tag, &payload),
                    Err(e) => Err(e),
                };
                let end = message.is_err();
                let event = Event {
                    member: index,
                    generation,
                    message,
                };
                if events.send(event).is_err() || end {
                    return;
                }
            })
            .map_err(|e| Error::Internal(format!("cannot start a member thread: {e}")))?;
        self.members[index] = Some(Member {
            conn,
            name,
            data_addr,
            child,
            generation,
        });
        Ok(())
    }

    /// Removes worker `index`: its connection is closed, its process (if spawned) killed.
    fn drop_member(&mut self, index: usize) {
        if let Some(mut member) = self.members[index].take() {
            member.conn.fail("the coordinator dropped this worker");
            if let Some(mut child) = member.child.take() {
                let _ = child.kill();
                self.lost.push(child);
            }
        }
        self.lost
            .retain_mut(|c| !matches!(c.try_wait(), Ok(Some(_))));
    }

    fn name(&self, index: usize) -> String {
        self.members[index]
            .as_ref()
            .map_or_else(|| format!("worker {index}"), |m| m.name.clone())
    }

    fn send(&self, index: usize, message: &ToWorker) -> Result<()> {
        match &self.members[index] {
            Some(m) => protocol::send(&m.conn, message),
            None => Ok(()),
        }
    }

    fn broadcast(&self, message: &ToWorker) {
        for i in 0..self.members.len() {
            if let Err(e) = self.send(i, message) {
                tracing::debug!("cannot tell {}: {e}", self.name(i));
            }
        }
    }

    /// Before an attempt: every worker is there. At first, they are spawned (or waited for
    /// without limit); after a failure, every worker lost is replaced (one that joined by hand
    /// waited for at most `rejoin_timeout`).
    pub(crate) fn ready(&mut self, first: bool) -> Result<()> {
        let rejoin = (!first).then_some(self.spec.rejoin_timeout);
        self.fill(rejoin)
    }

    /// Runs one attempt on the workers until every one finished it, or one failed (the others
    /// are then cancelled and waited for).
    pub(crate) fn run(&mut self, spec: &AttemptSpec<'_, '_>) -> Result<AttemptReport> {
        // Events of earlier attempts, still queued, are of no use now.
        while self.events.try_recv().is_ok() {}
        let peers: Vec<String> = (0..self.members.len())
            .map(|i| {
                self.members[i]
                    .as_ref()
                    .map(|m| m.data_addr.clone())
                    .unwrap_or_default()
            })
            .collect();
        let placement: Vec<u32> = spec.placement.worker_of.iter().map(|&w| w as u32).collect();
        for i in 0..self.members.len() {
            let deploy = ToWorker::Deploy {
                attempt: spec.attempt,
                worker: i as u32,
                peers: peers.clone(),
                placement: placement.clone(),
                restore: spec.restore,
                epoch: spec.epoch,
                checkpoints: spec.checkpoints.is_some(),
            };
            if let Err(e) = self.send(i, &deploy) {
                let error = Error::WorkerLost {
                    worker: self.name(i),
                    reason: e.to_string(),
                };
                self.drop_member(i);
                return Err(self.cancel(spec.attempt, error));
            }
        }
        let mut finished = vec![false; self.members.len()];
        let mut report = AttemptReport::default();
        let mut counters: HashMap<String, u64> = HashMap::new();
        let mut parts: HashMap<(u64, u32, String), Sender<Result<PartInfo>>> = HashMap::new();
        let never = crossbeam_channel::never();
        let notices = spec.checkpoints.map_or(&never, |(_, n)| n);
        loop {
            if finished.iter().all(|&f| f) {
                break;
            }
            if let Some((c, _)) = spec.checkpoints {
                if let Err(fenced) = crate::core::task::Checkpoints::fenced(c) {
                    return Err(self.cancel(spec.attempt, fenced));
                }
                if let Some(stalled) = c.stalled() {
                    let error = self.stuck(spec.placement, &stalled);
                    return Err(self.cancel(spec.attempt, error));
                }
            }
            crossbeam_channel::select! {
                recv(notices) -> notice => match notice {
                    Ok(Notice::Trigger(id)) => self.broadcast(&ToWorker::Trigger(id)),
                    Ok(Notice::Completed(id)) => self.broadcast(&ToWorker::Completed(id)),
                    Err(_) => {}
                },
                recv(self.events) -> event => {
                    let Ok(event) = event else {
                        return Err(Error::Internal("the member threads are gone".into()));
                    };
                    let current = self.members[event.member]
                        .as_ref()
                        .is_some_and(|m| m.generation == event.generation);
                    if !current {
                        continue;
                    }
                    let w = event.member;
                    let message = match event.message {
                        Ok(m) => m,
                        Err(e) => {
                            let error = Error::WorkerLost { worker: self.name(w), reason: e.to_string() };
                            self.drop_member(w);
                            return Err(self.cancel(spec.attempt, error));
                        }
                    };
                    match message {
                        ToCoordinator::Deployed { .. } | ToCoordinator::Join { .. } => {}
                        ToCoordinator::RecordsRead(n) => {
                            if let Some((c, _)) = spec.checkpoints { c.remote_records(n) }
                        }
                        ToCoordinator::PartStarted { id, stage, name, transactions } => {
                            if let Some((c, _)) = spec.checkpoints {
                                let worker = self.name(w);
                                if let Some(tx) = c.announce_part(id, stage as usize, name.clone(), transactions, &worker) {
                                    parts.insert((id, stage, name), tx);
                                }
                            }
                        }
                        ToCoordinator::PartWritten { id, stage, name, result } => {
                            if let Some(tx) = parts.remove(&(id, stage, name.clone())) {
                                let worker = self.name(w);
                                let _ = tx.send(result.map_err(|reason| Error::Checkpoint {
                                    id: Some(id),
                                    reason: format!("{worker} could not write part {name}: {reason}"),
                                }));
                            }
                        }
                        ToCoordinator::Ack { id, task } => {
                            if let Some((c, _)) = spec.checkpoints {
                                crate::core::task::Checkpoints::ack(c, id, task as usize);
                            }
                        }
                        ToCoordinator::FinalIdRequest => {
                            let id = match spec.checkpoints {
                                Some((c, _)) => c.allocate_final_id(),
                                None => 0,
                            };
                            self.broadcast(&ToWorker::FinalId(id));
                        }
                        ToCoordinator::SplitRequest { attempt, stage, subtask } if attempt == spec.attempt => {
                            let split = match spec.splits.take(stage as usize, subtask as usize) {
                                Ok(split) => split,
                                Err(e) => return Err(self.cancel(spec.attempt, e)),
                            };
                            let answer = ToWorker::Split { attempt, stage, subtask, split };
                            if let Err(e) = self.send(w, &answer) {
                                let error = Error::WorkerLost { worker: self.name(w), reason: e.to_string() };
                                self.drop_member(w);
                                return Err(self.cancel(spec.attempt, error));
                            }
                        }
                        ToCoordinator::SplitRequest { .. } => {}
                        ToCoordinator::TasksDone { count } => {
                            let _ = spec.live.fetch_update(Ordering::AcqRel, Ordering::Acquire, |l| {
                                Some(l.saturating_sub(count as usize))
                            });
                        }
                        ToCoordinator::Finished { attempt, final_states, peak_in_flight, counters: theirs } if attempt == spec.attempt => {
                            finished[w] = true;
                            report.final_states.extend(final_states.into_iter().map(|(s, b)| (s as usize, b)));
                            report.peak_in_flight = report.peak_in_flight.max(peak_in_flight as usize);
                            let transport: Vec<String> = theirs
                                .iter()
                                .filter_map(|(k, v)| k.strip_prefix("transport.").map(|k| format!("{k}={v}")))
                                .collect();
                            if !transport.is_empty() {
                                tracing::info!("{}: transport {}", self.name(w), transport.join(" "));
                            }
                            for (k, v) in theirs {
                                let entry = counters.entry(k.clone()).or_default();
                                *entry = match super::worker::is_maximum(&k) {
                                    true => (*entry).max(v),
                                    false => *entry + v,
                                };
                            }
                        }
                        ToCoordinator::Failed { attempt, message, restartable } if attempt == spec.attempt => {
                            let error = Error::Worker { worker: self.name(w), message, restartable };
                            return Err(self.cancel(spec.attempt, error));
                        }
                        ToCoordinator::Stopped { .. } | ToCoordinator::Finished { .. } | ToCoordinator::Failed { .. } => {}
                    }
                },
                default(Duration::from_millis(100)) => {}
            }
        }
        let mut counters: Vec<(String, u64)> = counters.into_iter().collect();
        counters.sort();
        report.counters = counters;
        Ok(report)
    }

    /// The error of a checkpoint that timed out, naming the workers whose tasks took no
    /// snapshot (a stuck task holds up the barriers of the tasks around it too); the one that
    /// does not stop when the attempt is cancelled is dropped and replaced.
    fn stuck(&self, placement: &Placement, stalled: &Stalled) -> Error {
        let mut by_worker: std::collections::BTreeMap<usize, Vec<usize>> = Default::default();
        for &t in &stalled.tasks {
            if let Some(&w) = placement.worker_of.get(t) {
                by_worker.entry(w).or_default().push(t);
            }
        }
        let named: Vec<String> = by_worker
            .iter()
            .map(|(&w, tasks)| format!("{} (tasks {tasks:?})", self.name(w)))
            .collect();
        Error::WorkerLost {
            worker: match named.is_empty() {
                true => "no worker".to_string(),
                false => named.join(" or "),
            },
            reason: format!(
                "stuck: no snapshot for checkpoint {} within {:?} \
                 (`job.checkpoint.timeout_secs`); the worker that does not stop when cancelled \
                 is replaced",
                stalled.id, stalled.waited,
            ),
        }
    }

    /// Cancels attempt `attempt` on every worker and waits until each has stopped (or is
    /// dropped after a deadline); returns `error`, what failed the attempt.
    fn cancel(&mut self, attempt: u32, error: Error) -> Error {
        tracing::warn!("attempt {attempt} failed: {error}; cancelling it on every worker");
        let reason = error.to_string();
        let mut waiting: Vec<usize> = Vec::new();
        for i in 0..self.members.len() {
            let cancel = ToWorker::Cancel {
                attempt,
                reason: reason.clone(),
            };
            match self.send(i, &cancel) {
                Ok(()) if self.members[i].is_some() => waiting.push(i),
                Ok(()) => {}
                Err(_) => self.drop_member(i),
            }
        }
        let deadline = Instant::now() + self.spec.endpoint.config.heartbeat_timeout * 2;
        while !waiting.is_empty() {
            let left = deadline.saturating_duration_since(Instant::now());
            let event = match self.events.recv_timeout(left) {
                Ok(event) => event,
                Err(_) => {
                    for i in std::mem::take(&mut waiting) {
                        tracing::warn!(
                            "{} did not stop within {:?}: dropped",
                            self.name(i),
                            self.spec.endpoint.config.heartbeat_timeout * 2
                        );
                        self.drop_member(i);
                    }
                    break;
                }
            };
            let current = self.members[event.member]
                .as_ref()
                .is_some_and(|m| m.generation == event.generation);
            if !current {
                continue;
            }
            match event.message {
                Ok(ToCoordinator::Stopped { attempt: a })
                | Ok(ToCoordinator::Finished { attempt: a, .. })
                | Ok(ToCoordinator::Failed { attempt: a, .. })
                    if a == attempt =>
                {
                    waiting.retain(|&i| i != event.member);
                }
                Ok(_) => {}
                Err(_) => {
                    waiting.retain(|&i| i != event.member);
                    self.drop_member(event.member);
                }
            }
        }
        error
    }

    /// Ends the job on every worker: waits until each has closed its connection (it got the
    /// order) and the spawned ones have exited.
    pub(crate) fn shutdown(mut self) {
        self.broadcast(&ToWorker::Shutdown);
        let deadline = Instant::now() + self.spec.endpoint.config.heartbeat_timeout * 2;
        let mut open: Vec<bool> = self.members.iter().map(Option::is_some).collect();
        while open.iter().any(|&o| o) {
            let left = deadline.saturating_duration_since(Instant::now());
            let Ok(event) = self.events.recv_timeout(left) else {
                break;
            };
            let current = self.members[event.member]
                .as_ref()
                .is_some_and(|m| m.generation == event.generation);
            if current && event.message.is_err() {
                open[event.member] = false;
            }
        }
        for i in 0..self.members.len() {
            let Some(mut member) = self.members[i].take() else {
                continue;
            };
            if let Some(mut child) = member.child.take() {
                wait_or_kill(&mut child, deadline);
            }
        }
        for mut child in std::mem::take(&mut self.lost) {
            wait_or_kill(&mut child, deadline);
        }
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        // A coordinator that fails leaves no worker behind.
        for member in self.members.iter_mut().flatten() {
            if let Some(mut child) = member.child.take() {
                let _ = child.kill();
                let _ = child.wait();
            }
        }
        for child in &mut self.lost {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Waits for `child` to exit until `deadline`, then kills it.
fn wait_or_kill(child: &mut Child, deadline: Instant) {
    loop {
        match child.try_wait() {
            Ok(Some(_)) | Err(_) => return,
            Ok(None) if Instant::now() >= deadline => {
                let _ = child.kill();
                let _ = child.wait();
                return;
            }
            // The exit of a process cannot be waited for with a timeout in std.
            Ok(None) => std::thread::sleep(Duration::from_millis(10)),
        }
    }
}

/// The first message of a worker: its [`ToCoordinator::Join`].
fn read_join(conn: &Connection, timeout: Duration) -> Result<(String, String, u32)> {
    let Some((tag, payload)) = conn.recv_control(timeout)? else {
        return Err(Error::Transport {
            peer: conn.peer().to_string(),
            message: format!("no join message within {timeout:?}"),
        });
    };
    match protocol::decode::<ToCoordinator>(conn.peer(), tag, &payload)? {
        ToCoordinator::Join {
            data_addr,
            host,
            pid,
        } => Ok((data_addr, host, pid)),
        other => Err(Error::Transport {
            peer: conn.peer().to_string(),
            message: format!("expected a join message, got {other:?}"),
        }),
    }
}

/// Spawns worker `index`: this job's command with `--worker --join ADDR`, the secret in its
/// environment, killed when this process dies.
fn spawn(
    command: &WorkerCommand,
    addr: SocketAddr,
    endpoint: &Endpoint,
    index: usize,
) -> Result<Child> {
    let mut cmd = Command::new(&command.program);
    cmd.args(&command.args)
        .arg("--worker")
        .arg("--join")
        .arg(addr.to_string())
        .env(SECRET_ENV, endpoint.secret.to_hex());
    #[cfg(target_os = "linux")]
    {
        use std::os::unix::process::CommandExt;
        let parent = std::process::id();
        // SAFETY: between fork and exec only async-signal-safe calls are made (prctl, getppid,
        // _exit), and no memory is allocated.
        unsafe {
            cmd.pre_exec(move || {
                if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                // The parent may have died before the prctl: then nobody would kill this one.
                if libc::getppid() as u32 != parent {
                    libc::_exit(1);
                }
                Ok(())
            });
        }
    }
    let child = cmd.spawn().map_err(|e| Error::io(&command.program, e))?;
    tracing::debug!(pid = child.id(), "spawned worker {index}");
    Ok(child)
}
