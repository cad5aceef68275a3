//! Joining the cluster without an operator: what a node started from an empty data directory
//! does so that a StatefulSet can be deployed, rolled and scaled up by Kubernetes alone.
//!
//! Every node gets the same `--initial-members` (the StatefulSet's first ordinals). A node that
//! holds no Raft state yet, until it is a voter:
//! 1. asks the other initial members for their status; if one belongs to a cluster with a
//!    leader, it asks that cluster to add it (as a learner that catches up, then a voter) —
//!    this is how scaled-up ordinals join, and how a node whose disk was lost rejoins;
//! 2. otherwise, if it is the lowest initial member, it initializes the cluster with the initial
//!    members as voters — once: a node with Raft state never initializes again;
//! 3. otherwise it waits: the initializing node's leader will replicate to it.
//!
//! INVARIANT: only a node without Raft state initializes, and only the lowest initial member,
//! with the configured membership; should it lose its disk and reinitialize while its peers are
//! unreachable, it writes the same first log entry the cluster already has, and cannot win an
//! election against peers with longer logs.
//! Removing a node stays an operator's decision (`agentgate-admin cluster remove-node`): a node
//! cannot tell a scale-down from a restart.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use agentgate_proto::pb::{AddNodeRequest, ClusterStatus, NodeAddr};
use openraft::BasicNode;

use crate::app::App;

/// First and longest pause between attempts.
const RETRY_MIN: Duration = Duration::from_millis(200);
const RETRY_MAX: Duration = Duration::from_secs(5);

/// What the node should do next, from what its peers said (pure).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// Ask the cluster `via` answers for to add this node.
    Join { via: String },
    /// Initialize the cluster with the initial members.
    Initialize,
    /// Wait for the initializing member.
    Wait { initializer: u64 },
}

/// Decides the next step. `peers` holds each reachable peer's address and status.
pub fn next_step(
    id: u64,
    initial: &BTreeMap<u64, String>,
    peers: &[(String, ClusterStatus)],
) -> Step {
    if let Some((addr, _)) = peers
        .iter()
        .find(|(_, s)| s.initialized && s.leader_id.is_some())
    {
        return Step::Join { via: addr.clone() };
    }
    let initializer = initial.keys().next().copied().unwrap_or(id);
    if initializer == id {
        Step::Initialize
    } else {
        Step::Wait { initializer }
    }
}

fn is_voter(app: &App) -> bool {
    app.raft
        .metrics()
        .borrow()
        .membership_config
        .membership()
        .voter_ids()
        .any(|v| v == app.id)
}

/// Runs until this node is a voter (see the module docs). Started only when the node had no
/// Raft state.
pub async fn run(app: Arc<App>, initial: BTreeMap<u64, String>, advertise: String) {
    let mut pause = RETRY_MIN;
    loop {
        if is_voter(&app) {
            tracing::info!("this node is a voter of the cluster");
            return;
        }
        let mut peers = Vec::new();
        for (id, addr) in &initial {
            if *id == app.id {
                continue;
            }
            match app.peers.status(addr).await {
                Ok(s) => peers.push((addr.clone(), s)),
                Err(e) => tracing::debug!(peer = %addr, error = %e, "peer not answering"),
            }
        }
        match next_step(app.id, &initial, &peers) {
            Step::Join { via } => {
                let req = AddNodeRequest {
                    node: Some(NodeAddr {
                        id: app.id,
                        addr: advertise.clone(),
                    }),
                    as_voter: true,
                };
                match app.peers.add_node(&via, req).await {
                    Ok(_) => tracing::info!(via = %via, "joined the cluster as a voter"),
                    Err(e) => tracing::warn!(via = %via, error = %e, "joining failed; retrying"),
                }
            }
            Step::Initialize => {
                let members: BTreeMap<u64, BasicNode> = initial
                    .iter()
                    .map(|(id, addr)| {
                        let addr = if *id == app.id { &advertise } else { addr };
                        (*id, BasicNode::new(addr.clone()))
                    })
                    .collect();
                match app.raft.initialize(members).await {
                    Ok(()) => {
                        tracing::info!(members = ?initial, "initialized the cluster");
                        return;
                    }
                    // Raft state arrived meanwhile (a leader reached this node): keep waiting
                    // until it is a voter.
                    Err(e) => tracing::info!(error = %e, "not initializing"),
                }
            }
            Step::Wait { initializer } => {
                tracing::info!(
                    initializer,
                    "waiting for node {initializer} to initialize the cluster"
                );
            }
        }
        tokio::time::sleep(pause).await;
        pause = (pause * 2).min(RETRY_MAX);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn status(initialized: bool, leader: Option<u64>) -> ClusterStatus {
        ClusterStatus {
            initialized,
            leader_id: leader,
            ..Default::default()
        }
    }

    #[test]
    fn the_lowest_initial_member_initializes_unless_a_cluster_answers() {
        let initial: BTreeMap<u64, String> =
            [(1, "a".into()), (2, "b".into()), (3, "c".into())].into();
        assert_eq!(next_step(1, &initial, &[]), Step::Initialize);
        assert_eq!(next_step(2, &initial, &[]), Step::Wait { initializer: 1 });
        // Peers that are up but not in a cluster, or in one without a leader, change nothing.
        let idle = [
            ("b".to_string(), status(false, None)),
            ("c".to_string(), status(true, None)),
        ];
        assert_eq!(next_step(1, &initial, &idle), Step::Initialize);
        // A cluster with a leader is joined, by initial members (lost disk) and others alike.
        let live = [
            ("b".to_string(), status(false, None)),
            ("c".to_string(), status(true, Some(3))),
        ];
        for id in [1, 2, 4] {
            assert_eq!(
                next_step(id, &initial, &live),
                Step::Join { via: "c".into() }
            );
        }
        assert_eq!(next_step(5, &initial, &[]), Step::Wait { initializer: 1 });
    }
}
