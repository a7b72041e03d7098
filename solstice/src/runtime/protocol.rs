//! The coordinator's protocol with its workers: control messages carried as control frames of
//! the worker's connection to the coordinator (see [`super::transport`]).
//!
//! Whoever starts a worker (the coordinator itself, a user on another host, later Ray) starts
//! the same binary with `--worker --join ADDR`; the worker connects, authenticates on the job
//! secret (a build or config differing from the coordinator's is refused by the handshake), and
//! says [`ToCoordinator::Join`]. From then on the coordinator drives it attempt by attempt:
//! [`ToWorker::Deploy`] starts an attempt, [`ToWorker::Cancel`] ends one early,
//! [`ToWorker::Shutdown`] ends the worker.

use serde::{Deserialize, Serialize};

use super::transport::Connection;
use crate::core::task::Assignment;
use crate::error::{Error, Result};
use crate::state::codec;
use crate::state::manifest::PartInfo;

/// The control tag of every message of this protocol.
const TAG: u32 = 1;

/// What decoding one control message may claim: it arrived in a frame, which the transport
/// caps at `TransportConfig::max_frame_bytes`.
const DECODE_LIMIT: usize = super::transport::MAX_FRAME_LIMIT;

/// What the coordinator tells a worker.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub(crate) enum ToWorker {
    /// Runs attempt `attempt`: this worker is worker `worker` of `workers`; `peers` are the data
    /// addresses of all workers, by index; tasks run as `placement` says (per task of the plan,
    /// its worker), restoring from checkpoint `restore` if any (0: none), under `epoch`.
    Deploy {
        attempt: u32,
        worker: u32,
        peers: Vec<String>,
        placement: Vec<u32>,
        restore: u64,
        epoch: u64,
        /// The job takes checkpoints.
        checkpoints: bool,
    },
    /// The sources are to start checkpoint `id`.
    Trigger(u64),
    /// The final checkpoint's id.
    FinalId(u64),
    /// Checkpoint `id` is complete.
    Completed(u64),
    /// The answer to a [`ToCoordinator::SplitRequest`] of attempt `attempt`: the next split of
    /// subtask `subtask` of source stage `stage` (`None`: every split is handed out).
    Split {
        attempt: u32,
        stage: u32,
        subtask: u32,
        split: Option<Assignment>,
    },
    /// Ends attempt `attempt`: the worker stops its tasks and reports [`ToCoordinator::Stopped`].
    Cancel { attempt: u32, reason: String },
    /// The job is over: the worker exits.
    Shutdown,
}

/// What a worker tells the coordinator.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub(crate) enum ToCoordinator {
    /// The first message of a worker: where it accepts its peers' data connections, on which
    /// host and as which process.
    Join {
        data_addr: String,
        host: String,
        pid: u32,
    },
    /// The worker's data connections are up and its tasks made: they run now.
    Deployed { attempt: u32 },
    /// Records its sources read since the last report.
    RecordsRead(u64),
    /// A task is writing part `name` of stage `stage` of checkpoint `id` (staging the sink
    /// `transactions`); sent before the task's acknowledgement.
    PartStarted {
        id: u64,
        stage: u32,
        name: String,
        transactions: Vec<String>,
    },
    /// That part is written (`Err`: why it is not).
    PartWritten {
        id: u64,
        stage: u32,
        name: String,
        result: std::result::Result<PartInfo, String>,
    },
    /// Task `task` (its index in the plan) took its snapshot of checkpoint `id`.
    Ack { id: u64, task: u32 },
    /// The worker needs the final checkpoint's id.
    FinalIdRequest,
    /// Subtask `subtask` of source stage `stage` wants its next split ([`ToWorker::Split`]).
    SplitRequest {
        attempt: u32,
        stage: u32,
        subtask: u32,
    },
    /// `count` more of the worker's tasks finished.
    TasksDone { count: u32 },
    /// Every task of attempt `attempt` finished: the stateful subtasks' final states (stage,
    /// encoded state), and the most batches buffered at once.
    Finished {
        attempt: u32,
        final_states: Vec<(u32, Vec<u8>)>,
        peak_in_flight: u64,
        counters: Vec<(String, u64)>,
    },
    /// Attempt `attempt` failed on this worker.
    Failed {
        attempt: u32,
        message: String,
        restartable: bool,
    },
    /// Attempt `attempt` stopped after a [`ToWorker::Cancel`].
    Stopped { attempt: u32 },
}

/// Sends `message` on `connection`.
pub(crate) fn send<M: Serialize>(connection: &Connection, message: &M) -> Result<()> {
    connection.send_control(TAG, &codec::encode(message)?)
}

/// Decodes a control message from `peer`; garbage is an error naming it.
pub(crate) fn decode<M: serde::de::DeserializeOwned>(
    peer: &str,
    tag: u32,
    payload: &[u8],
) -> Result<M> {
    if tag != TAG {
        return Err(Error::Transport {
            peer: peer.to_string(),
            message: format!("a control message with the unknown tag {tag}"),
        });
    }
    codec::decode_limited::<M, DECODE_LIMIT>(payload).map_err(|e| Error::Transport {
        peer: peer.to_string(),
        message: format!("an undecodable control message: {e}"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_round_trip_and_garbage_is_an_error() {
        let m = ToCoordinator::PartStarted {
            id: 3,
            stage: 2,
            name: "kg-00001-00004".into(),
            transactions: vec!["t".into()],
        };
        let bytes = codec::encode(&m).unwrap();
        match decode::<ToCoordinator>("w", TAG, &bytes).unwrap() {
            ToCoordinator::PartStarted { id, name, .. } => {
                assert_eq!((id, name.as_str()), (3, "kg-00001-00004"))
            }
            other => panic!("{other:?}"),
        }
        let e = decode::<ToWorker>("worker 1", TAG, b"garbage").unwrap_err();
        assert!(e.to_string().contains("worker 1"), "{e}");
        let e = decode::<ToWorker>("worker 1", 9, &bytes).unwrap_err();
        assert!(e.to_string().contains("unknown tag 9"), "{e}");
    }
}
