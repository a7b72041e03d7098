//! Logical graph → physical plan: chaining and partitioning decisions, and `--explain` output.

use std::fmt::Write as _;

use crate::core::graph::{Graph, Partitioning};
use crate::core::parallelism::Parallelism;
use crate::core::StageKind;
use crate::error::{Error, Result};
use crate::state::keygroups::range_of;

/// A run of stages fused into one task per subtask.
#[derive(Clone, Debug)]
pub(crate) struct Chain {
    /// Graph nodes, upstream first.
    pub nodes: Vec<usize>,
    pub parallelism: usize,
    /// Downstream chains and how records are partitioned to each.
    pub outputs: Vec<(usize, Partitioning)>,
    /// Upstream chains.
    pub inputs: Vec<usize>,
}

/// The physical plan: chains in topological order.
#[derive(Clone, Debug)]
pub(crate) struct PhysicalPlan {
    pub chains: Vec<Chain>,
    pub key_groups: usize,
}

impl PhysicalPlan {
    /// Plans `graph`: each node gets its resolved parallelism; consecutive stateless 1:1 stages
    /// with equal parallelism and a single edge between them are chained.
    pub fn new(graph: &Graph, key_groups: usize) -> Result<PhysicalPlan> {
        let mut chain_of = vec![usize::MAX; graph.nodes.len()];
        let mut chains: Vec<Chain> = Vec::new();
        for (id, node) in graph.nodes.iter().enumerate() {
            let p = node.parallelism.initial();
            if node.kind == StageKind::Stateful && p > key_groups {
                return Err(Error::Plan(format!(
                    "stage `{}` has parallelism {p}, more than the {key_groups} key groups \
                     (raise job.key_groups)",
                    node.name
                )));
            }
            let chained_to = match node.inputs.as_slice() {
                [up] if graph.outputs(*up).len() == 1
                    && graph.nodes[*up].parallelism.initial() == p
                    && node.kind != StageKind::Stateful
                    && graph.nodes[*up].kind != StageKind::KeyBy =>
                {
                    Some(chain_of[*up])
                }
                _ => None,
            };
            match chained_to {
                Some(c) => {
                    chains[c].nodes.push(id);
                    chain_of[id] = c;
                }
                None => {
                    chain_of[id] = chains.len();
                    chains.push(Chain {
                        nodes: vec![id],
                        parallelism: p,
                        outputs: Vec::new(),
                        inputs: Vec::new(),
                    });
                }
            }
        }
        for c in 0..chains.len() {
            let head = chains[c].nodes[0];
            for &up in &graph.nodes[head].inputs {
                let uc = chain_of[up];
                let how = if graph.nodes[head].kind == StageKind::Stateful {
                    Partitioning::Hash
                } else if chains[uc].parallelism == chains[c].parallelism {
                    Partitioning::Forward
                } else {
                    Partitioning::Rebalance
                };
                chains[uc].outputs.push((c, how));
                chains[c].inputs.push(uc);
            }
        }
        Ok(PhysicalPlan { chains, key_groups })
    }

    /// The parallelism of graph node `node` (that of its chain; 0 if no chain holds it).
    pub fn parallelism_of(&self, node: usize) -> usize {
        self.chains
            .iter()
            .find(|c| c.nodes.contains(&node))
            .map_or(0, |c| c.parallelism)
    }

    /// Total number of tasks (subtasks of all chains).
    pub fn task_count(&self) -> usize {
        self.chains.iter().map(|c| c.parallelism).sum()
    }

    /// Human-readable plan for `--explain`.
    pub fn explain(&self, graph: &Graph, job: &str, threads: usize) -> String {
        let mut s = String::new();
        let _ = writeln!(
            s,
            "job `{job}`: {} stages in {} chains, {} tasks on {threads} threads, {} key groups",
            graph.nodes.len(),
            self.chains.len(),
            self.task_count(),
            self.key_groups
        );
        for (i, c) in self.chains.iter().enumerate() {
            let stages: Vec<String> = c
                .nodes
                .iter()
                .map(|&n| format!("{} ({})", graph.nodes[n].name, graph.nodes[n].kind))
                .collect();
            let _ = writeln!(s, "chain {i} x{}: {}", c.parallelism, stages.join(" -> "));
            for &up in &c.inputs {
                let (_, how) = self.chains[up]
                    .outputs
                    .iter()
                    .find(|(d, _)| *d == i)
                    .copied()
                    .unwrap_or((i, Partitioning::Forward));
                let how = match how {
                    Partitioning::Forward => "forward".to_string(),
                    Partitioning::Rebalance => "rebalance".to_string(),
                    Partitioning::Hash => {
                        let ranges: Vec<String> = (0..c.parallelism)
                            .map(|t| {
                                let r = range_of(t, self.key_groups, c.parallelism);
                                format!("{}..{}", r.start, r.end)
                            })
                            .collect();
                        format!(
                            "hash by key, key groups per subtask [{}]",
                            ranges.join(", ")
                        )
                    }
                };
                let _ = writeln!(s, "  <- chain {up}: {how}");
            }
        }
        for node in &graph.nodes {
            if let Parallelism::Elastic { min, max } = node.parallelism {
                let _ = writeln!(
                    s,
                    "note: stage `{}` is elastic ({min}, {max}); it runs at its minimum, {min} \
                     subtask(s), until elastic scaling is available",
                    node.name
                );
            }
        }
        s
    }
}
