//! The checks a job passes before it is planned: the graph's shape, and the config's stage names.

use crate::config::Config;
use crate::core::graph::Graph;
use crate::core::StageKind;
use crate::error::{Error, Result};

/// Every stage that emits records has a downstream stage; key_by feeds stateful stages only;
/// stateful stages read key_by stages only.
pub(super) fn check_graph(graph: &Graph) -> Result<()> {
    for (id, node) in graph.nodes.iter().enumerate() {
        let outs = graph.outputs(id);
        if node.kind != StageKind::Sink && outs.is_empty() {
            return Err(Error::Plan(format!(
                "stage `{}` is not connected to any downstream stage",
                node.name
            )));
        }
        if node.kind == StageKind::KeyBy {
            if let Some(&bad) = outs
                .iter()
                .find(|&&o| graph.nodes[o].kind != StageKind::Stateful)
            {
                return Err(Error::Plan(format!(
                    "key_by stage `{}` feeds `{}`, which is not a stateful stage",
                    node.name, graph.nodes[bad].name
                )));
            }
        }
    }
    Ok(())
}

/// Every stage named under `stages:`, `sources:` and `sinks:` exists and has the right kind.
pub(super) fn check_config_names(graph: &Graph, config: &Config, pipeline: &str) -> Result<()> {
    let names = || {
        graph
            .nodes
            .iter()
            .map(|n| n.name.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    };
    let check = |section: &str, name: &str, kind: Option<StageKind>| -> Result<()> {
        match graph.find(name) {
            None => Err(Error::config(
                &config.origin,
                format!(
                    "{section}.{name}: pipeline `{pipeline}` has no stage `{name}` (stages: {})",
                    names()
                ),
            )),
            Some(n) if kind.is_some_and(|k| graph.nodes[n].kind != k) => Err(Error::config(
                &config.origin,
                format!(
                    "{section}.{name}: stage `{name}` is a {} stage",
                    graph.nodes[n].kind
                ),
            )),
            Some(_) => Ok(()),
        }
    };
    for name in config.stages.keys() {
        check("stages", name, None)?;
    }
    for name in config.sources.keys() {
        check("sources", name, Some(StageKind::Source))?;
    }
    for name in config.sinks.keys() {
        check("sinks", name, Some(StageKind::Sink))?;
    }
    Ok(())
}
