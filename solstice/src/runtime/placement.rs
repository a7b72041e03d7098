//! Which worker process runs each task of a physical plan.
//!
//! Tasks are numbered as the deployment numbers them: the subtasks of chain 0 first, then chain
//! 1's, and so on. A chain's subtasks are spread evenly and contiguously over the workers (so a
//! keyed chain's subtasks on one worker own one contiguous range of key groups), a chain's
//! operators stay in the task that runs them (chains are never split), and a chain fed by a
//! forward edge runs each subtask where its upstream subtask runs, so that forward edges never
//! cross processes. Each chain starts at the worker after the one the previous chain's subtasks
//! ended at, so that the tasks of all chains spread evenly too (small chains do not all land on
//! the first worker).

use std::fmt::Write as _;

use crate::core::graph::{Graph, Partitioning};
use crate::core::plan::PhysicalPlan;
use crate::state::keygroups::range_of;

/// The worker of every task of a plan.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Placement {
    /// Workers the plan is spread over.
    pub workers: usize,
    /// Per chain: the index of its first task.
    pub base: Vec<usize>,
    /// Per task: its worker.
    pub worker_of: Vec<usize>,
}

impl Placement {
    /// Spreads `plan` over `workers` workers (at least 1).
    pub(crate) fn new(plan: &PhysicalPlan, workers: usize) -> Placement {
        let workers = workers.max(1);
        let mut base = Vec::with_capacity(plan.chains.len());
        let mut worker_of = Vec::with_capacity(plan.task_count());
        // Where the next chain with fewer subtasks than workers starts.
        let mut offset = 0;
        for (c, chain) in plan.chains.iter().enumerate() {
            base.push(worker_of.len());
            let p = chain.parallelism;
            let forward_from = chain.inputs.iter().copied().find(|&u| {
                plan.chains[u]
                    .outputs
                    .iter()
                    .any(|&(d, how)| d == c && how == Partitioning::Forward)
            });
            for i in 0..p {
                let w = match forward_from {
                    Some(u) => worker_of[base[u] + i],
                    None => (offset + i * workers / p.max(workers)) % workers,
                };
                worker_of.push(w);
            }
            if forward_from.is_none() {
                offset = (offset + p) % workers;
            }
        }
        Placement {
            workers,
            base,
            worker_of,
        }
    }

    /// The task index of subtask `subtask` of chain `chain`.
    pub(crate) fn task(&self, chain: usize, subtask: usize) -> usize {
        self.base[chain] + subtask
    }

    /// The worker of subtask `subtask` of chain `chain`.
    pub(crate) fn worker(&self, chain: usize, subtask: usize) -> usize {
        self.worker_of[self.task(chain, subtask)]
    }

    /// The tasks worker `worker` runs, in task order.
    pub(crate) fn tasks_of(&self, worker: usize) -> Vec<usize> {
        (0..self.worker_of.len())
            .filter(|&t| self.worker_of[t] == worker)
            .collect()
    }

    /// The assignment as text, for `--explain`: per worker, the subtasks it runs (with their key
    /// groups for keyed chains).
    pub(crate) fn explain(&self, graph: &Graph, plan: &PhysicalPlan) -> String {
        let mut s = String::new();
        let _ = writeln!(s, "placement on {} worker process(es):", self.workers);
        for w in 0..self.workers {
            let mut parts = Vec::new();
            for (c, chain) in plan.chains.iter().enumerate() {
                let mine: Vec<usize> = (0..chain.parallelism)
                    .filter(|&i| self.worker(c, i) == w)
                    .collect();
                if mine.is_empty() {
                    continue;
                }
                let name = &graph.nodes[chain.nodes[0]].name;
                let subtasks = ranges(&mine);
                let keyed = chain.inputs.iter().any(|&u| {
                    plan.chains[u]
                        .outputs
                        .iter()
                        .any(|&(d, how)| d == c && how == Partitioning::Hash)
                });
                if keyed {
                    let first = range_of(mine[0], plan.key_groups, chain.parallelism).start;
                    let last =
                        range_of(mine[mine.len() - 1], plan.key_groups, chain.parallelism).end;
                    parts.push(format!(
                        "chain {c} ({name}) [{subtasks}] key groups {first}..{last}"
                    ));
                } else {
                    parts.push(format!("chain {c} ({name}) [{subtasks}]"));
                }
            }
            let parts = match parts.is_empty() {
                true => "nothing".to_string(),
                false => parts.join(", "),
            };
            let _ = writeln!(s, "  worker {w}: {parts}");
        }
        s
    }
}

/// `0-2, 5` for the sorted subtasks `[0, 1, 2, 5]`.
fn ranges(sorted: &[usize]) -> String {
    let mut out: Vec<String> = Vec::new();
    let mut i = 0;
    while i < sorted.len() {
        let mut j = i;
        while j + 1 < sorted.len() && sorted[j + 1] == sorted[j] + 1 {
            j += 1;
        }
        out.push(match i == j {
            true => sorted[i].to_string(),
            false => format!("{}-{}", sorted[i], sorted[j]),
        });
        i = j + 1;
    }
    out.join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::plan::Chain;

    fn chain(p: usize, inputs: Vec<usize>, outputs: Vec<(usize, Partitioning)>) -> Chain {
        Chain {
            nodes: vec![0],
            parallelism: p,
            outputs,
            inputs,
        }
    }

    #[test]
    fn subtasks_spread_evenly_and_forward_edges_stay_local() {
        // source x4 -> (hash) stateful x4 -> (forward) sink x4, and a lone x1 chain.
        let plan = PhysicalPlan {
            chains: vec![
                chain(4, vec![], vec![(1, Partitioning::Hash)]),
                chain(4, vec![0], vec![(2, Partitioning::Forward)]),
                chain(4, vec![1], vec![]),
                chain(1, vec![], vec![]),
                chain(1, vec![], vec![]),
            ],
            key_groups: 128,
        };
        let p = Placement::new(&plan, 2);
        assert_eq!(p.worker_of[0..4], [0, 0, 1, 1]);
        assert_eq!(
            p.worker_of[4..8],
            [0, 0, 1, 1],
            "contiguous key-group ranges"
        );
        assert_eq!(
            p.worker_of[8..12],
            p.worker_of[4..8],
            "forward edges stay local"
        );
        assert_eq!(
            p.worker_of[12..14],
            [0, 1],
            "small chains start at different workers"
        );
        assert_eq!(p.tasks_of(1), [2, 3, 6, 7, 10, 11, 13]);
        let one = Placement::new(&plan, 1);
        assert!(one.worker_of.iter().all(|&w| w == 0));
        let three = Placement::new(&plan, 3);
        assert_eq!(three.worker_of[0..4], [0, 0, 1, 2]);
        assert_eq!(
            three.worker_of[4..8],
            [1, 1, 2, 0],
            "the next chain starts further on"
        );
        let per_worker: Vec<usize> = (0..3).map(|w| three.tasks_of(w).len()).collect();
        assert!(
            per_worker.iter().all(|&n| (4..=5).contains(&n)),
            "{per_worker:?}"
        );
    }

    #[test]
    fn ranges_are_compact() {
        assert_eq!(ranges(&[0, 1, 2, 5, 7, 8]), "0-2, 5, 7-8");
        assert_eq!(ranges(&[3]), "3");
    }
}
