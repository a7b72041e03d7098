//! The split assigner: every source's splits in one pool per source stage, handed out one at a
//! time to the subtask that asks (pulled, not dealt out up front: a faster or less loaded
//! subtask reads more of the input).
//!
//! The pool of an attempt is made from the checkpoint it restores: splits the checkpoint lists
//! as finished are left out, splits it lists part read come first (resuming where they were),
//! then those it does not list, in the source's order. So the assigner itself keeps no state a
//! checkpoint must hold: a split handed out after a subtask's barrier is absent from that
//! subtask's part, and a restore hands it out again.
//!
//! In a job of one process the tasks ask the pool directly; in a job of worker processes the
//! pool is the coordinator's and workers ask it over their connection ([`RemoteSplits`]).

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::task::Poll;

use super::executor::ExternalWakes;
use super::protocol::{self, ToCoordinator};
use super::transport::Connection;
use crate::core::connector::{Positions, FINISHED};
use crate::core::graph::{Graph, NodeImpl};
use crate::core::task::{Assignment, SplitFeed, TaskId};
use crate::error::{Error, Result};

/// The splits of every source stage of an attempt not handed out yet.
pub(crate) struct SplitPool {
    stages: Mutex<HashMap<usize, Stage>>,
}

struct Stage {
    name: String,
    queue: VecDeque<Assignment>,
    /// Splits handed out, per subtask.
    handed: BTreeMap<usize, u64>,
}

impl SplitPool {
    /// The pool of an attempt of `graph` starting at `positions` (per source stage, merged
    /// from the restored checkpoint; none: from the start).
    pub(crate) fn new(graph: &Graph, positions: &HashMap<usize, Arc<Positions>>) -> Result<Self> {
        let mut stages = HashMap::new();
        for (id, node) in graph.nodes.iter().enumerate() {
            let NodeImpl::Source(source) = &node.imp else {
                continue;
            };
            let at = positions.get(&id).map(|p| &**p);
            let mut resumed = VecDeque::new();
            let mut fresh = VecDeque::new();
            for split in source.splits()? {
                match at.and_then(|p| p.get(&split)) {
                    Some(&FINISHED) => {}
                    Some(&at) => resumed.push_back(Assignment {
                        split,
                        resume: Some(at),
                    }),
                    None => fresh.push_back(Assignment {
                        split,
                        resume: None,
                    }),
                }
            }
            resumed.append(&mut fresh);
            stages.insert(
                id,
                Stage {
                    name: node.name.clone(),
                    queue: resumed,
                    handed: BTreeMap::new(),
                },
            );
        }
        Ok(SplitPool {
            stages: Mutex::new(stages),
        })
    }

    /// Hands the next split of source stage `stage` to its subtask `subtask` (`None`: all
    /// handed out).
    pub(crate) fn take(&self, stage: usize, subtask: usize) -> Result<Option<Assignment>> {
        let mut stages = self.stages.lock().unwrap_or_else(|p| p.into_inner());
        let stage = stages
            .get_mut(&stage)
            .ok_or_else(|| Error::Internal(format!("stage {stage} has no splits: not a source")))?;
        let next = stage.queue.pop_front();
        if next.is_some() {
            *stage.handed.entry(subtask).or_default() += 1;
        }
        Ok(next)
    }

    /// `<source>.splits.<subtask>`: the splits each source subtask was handed.
    pub(crate) fn counters(&self) -> Vec<(String, u64)> {
        let stages = self.stages.lock().unwrap_or_else(|p| p.into_inner());
        let mut out: Vec<(String, u64)> = stages
            .values()
            .flat_map(|s| {
                s.handed
                    .iter()
                    .map(|(subtask, n)| (format!("{}.splits.{subtask}", s.name), *n))
            })
            .collect();
        out.sort();
        out
    }
}

impl SplitFeed for SplitPool {
    fn next(&self, stage: usize, subtask: usize, _: TaskId) -> Result<Poll<Option<Assignment>>> {
        self.take(stage, subtask).map(Poll::Ready)
    }
}

/// The coordinator's pool as a worker's source tasks see it: a request on the connection to
/// the coordinator, whose answer the worker's control loop hands to [`RemoteSplits::answer`],
/// which wakes the task.
pub(crate) struct RemoteSplits {
    coordinator: Arc<Connection>,
    wakes: ExternalWakes,
    /// Per (stage, subtask): asked, by task; or answered.
    slots: Mutex<HashMap<(usize, usize), Slot>>,
    /// The attempt, for the requests.
    attempt: u32,
}

enum Slot {
    Asked(TaskId),
    Answered(Option<Assignment>),
}

impl RemoteSplits {
    /// Asks `coordinator` for the splits of attempt `attempt`, waking tasks through `wakes`.
    pub(crate) fn new(coordinator: Arc<Connection>, wakes: ExternalWakes, attempt: u32) -> Self {
        RemoteSplits {
            coordinator,
            wakes,
            slots: Mutex::new(HashMap::new()),
            attempt,
        }
    }

    /// The coordinator's answer to the request of subtask `subtask` of stage `stage`.
    pub(crate) fn answer(
        &self,
        stage: usize,
        subtask: usize,
        split: Option<Assignment>,
    ) -> Result<()> {
        let mut slots = self.slots.lock().unwrap_or_else(|p| p.into_inner());
        let Some(Slot::Asked(task)) = slots.remove(&(stage, subtask)) else {
            return Err(Error::Transport {
                peer: self.coordinator.peer().to_string(),
                message: format!(
                    "the coordinator sent a split for subtask {subtask} of stage {stage}, which \
                     did not ask for one"
                ),
            });
        };
        slots.insert((stage, subtask), Slot::Answered(split));
        drop(slots);
        self.wakes.waker(task)?.wake();
        Ok(())
    }
}

impl SplitFeed for RemoteSplits {
    fn next(&self, stage: usize, subtask: usize, task: TaskId) -> Result<Poll<Option<Assignment>>> {
        let mut slots = self.slots.lock().unwrap_or_else(|p| p.into_inner());
        match slots.remove(&(stage, subtask)) {
            Some(Slot::Answered(split)) => return Ok(Poll::Ready(split)),
            Some(asked @ Slot::Asked(_)) => {
                // Woken for another reason before the answer came.
                slots.insert((stage, subtask), asked);
                return Ok(Poll::Pending);
            }
            None => {}
        }
        slots.insert((stage, subtask), Slot::Asked(task));
        drop(slots);
        // A lost connection is the control loop's to report (it cancels the attempt).
        if let Err(e) = protocol::send(
            &self.coordinator,
            &ToCoordinator::SplitRequest {
                attempt: self.attempt,
                stage: stage as u32,
                subtask: subtask as u32,
            },
        ) {
            tracing::debug!("cannot ask the coordinator for a split: {e}");
        }
        Ok(Poll::Pending)
    }
}
