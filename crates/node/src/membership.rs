//! Cluster membership: initializing the cluster, adding and removing nodes (learner first, then
//! voter), and each node's view of it (status, readiness).

use std::collections::{BTreeMap, BTreeSet};

use agentgate_proto::pb::{AddNodeRequest, ClusterStatus, NodeAddr, RemoveNodeRequest};
use agentgate_raft_store::{Node, NodeId};
use openraft::error::{InitializeError, RaftError};
use openraft::{ChangeMembers, ServerState};

use crate::app::App;
use crate::error::{NodeError, Result};

impl App {
    pub async fn init_cluster(&self, members: Vec<NodeAddr>) -> Result<ClusterStatus> {
        if members.is_empty() {
            return Err(NodeError::Invalid("give at least one member".into()));
        }
        let mut map = BTreeMap::new();
        for m in members {
            if m.id == 0 || map.insert(m.id, Node::new(m.addr)).is_some() {
                return Err(NodeError::Invalid(format!(
                    "member id {} is zero or repeated",
                    m.id
                )));
            }
        }
        if !map.contains_key(&self.id) {
            return Err(NodeError::Invalid(format!(
                "the members must include this node ({})",
                self.id
            )));
        }
        self.raft.initialize(map).await.map_err(|e| match e {
            RaftError::APIError(InitializeError::NotAllowed(_)) => {
                NodeError::Precondition("the cluster is already initialized".into())
            }
            RaftError::APIError(InitializeError::NotInMembers(n)) => {
                NodeError::Invalid(n.to_string())
            }
            RaftError::Fatal(f) => NodeError::Unavailable(format!("raft stopped: {f}")),
        })?;
        Ok(self.status())
    }

    /// Adds a node as a learner, then (with `as_voter`) as a voter; forwarded to the leader.
    pub async fn add_node(&self, req: AddNodeRequest, forwarded: bool) -> Result<ClusterStatus> {
        if let Some(leader) = self.route(forwarded)? {
            return Ok(self.peers.forward_add_node(&leader, req).await?);
        }
        let AddNodeRequest { node, as_voter } = req;
        let node = node.ok_or_else(|| NodeError::Invalid("`node` is required".into()))?;
        if node.id == 0 || node.addr.is_empty() {
            return Err(NodeError::Invalid(
                "the node needs a non-zero id and an address".into(),
            ));
        }
        // Learner first: it receives the log (or a snapshot) without counting for quorum.
        self.raft
            .add_learner(node.id, Node::new(node.addr), true)
            .await
            .map_err(|e| NodeError::from_write(&e))?;
        if as_voter {
            let r = self
                .raft
                .change_membership(ChangeMembers::AddVoterIds(BTreeSet::from([node.id])), false)
                .await
                .map_err(|e| NodeError::from_write(&e))?;
            return Ok(self.status_after(r.log_id).await);
        }
        Ok(self.status())
    }

    /// The status once this node's metrics show the membership change committed at `log_id`
    /// (they are published a moment after the write returns), or as it is after the deadline.
    async fn status_after(&self, log_id: openraft::LogId<NodeId>) -> ClusterStatus {
        let _ = self
            .raft
            .wait(Some(self.rpc_timeout))
            .metrics(
                |m| m.membership_config.log_id().as_ref() >= Some(&log_id),
                "membership change published",
            )
            .await;
        self.status()
    }

    /// Removes a voter (or a learner); forwarded to the leader.
    pub async fn remove_node(
        &self,
        req: RemoveNodeRequest,
        forwarded: bool,
    ) -> Result<ClusterStatus> {
        if let Some(leader) = self.route(forwarded)? {
            return Ok(self.peers.forward_remove_node(&leader, req).await?);
        }
        let id = req.id;
        let (is_voter, is_node) = {
            let m = self.raft.metrics();
            let m = m.borrow();
            let membership = m.membership_config.membership();
            (
                membership.voter_ids().any(|v| v == id),
                membership.get_node(&id).is_some(),
            )
        };
        let change = match (is_voter, is_node) {
            (true, _) => ChangeMembers::RemoveVoters(BTreeSet::from([id])),
            (false, true) => ChangeMembers::RemoveNodes(BTreeSet::from([id])),
            (false, false) => {
                return Err(NodeError::NotFound(format!("node {id} is not a member")));
            }
        };
        let r = self
            .raft
            .change_membership(change, false)
            .await
            .map_err(|e| NodeError::from_write(&e))?;
        Ok(self.status_after(r.log_id).await)
    }

    pub fn status(&self) -> ClusterStatus {
        let m = self.raft.metrics().borrow().clone();
        let membership = m.membership_config.membership();
        let addr = |id: NodeId| NodeAddr {
            id,
            addr: membership
                .get_node(&id)
                .map(|n| n.addr.clone())
                .unwrap_or_default(),
        };
        let voters: Vec<NodeAddr> = membership.voter_ids().map(addr).collect();
        let learners: Vec<NodeAddr> = membership.learner_ids().map(addr).collect();
        let state = match m.state {
            ServerState::Leader => "Leader",
            ServerState::Follower => "Follower",
            ServerState::Candidate => "Candidate",
            ServerState::Learner => "Learner",
            ServerState::Shutdown => "Shutdown",
        };
        ClusterStatus {
            node_id: self.id,
            state: state.to_string(),
            leader_id: m.current_leader,
            term: m.current_term,
            last_log_index: m.last_log_index,
            committed_index: self.committed.get(),
            applied_index: m.last_applied.map(|l| l.index),
            initialized: !voters.is_empty(),
            voters,
            learners,
            revision: self.reader.revision(),
            region: self.region.clone(),
            snapshot_index: m.snapshot.map(|l| l.index),
            purged_index: m.purged.map(|l| l.index),
        }
    }

    /// Ready: a member of an initialized cluster that currently knows a leader.
    pub fn readiness(&self) -> Result<(), String> {
        let m = self.raft.metrics().borrow().clone();
        let membership = m.membership_config.membership();
        if membership.get_node(&self.id).is_none() {
            return Err("not a member of an initialized cluster".into());
        }
        if m.current_leader.is_none() {
            return Err("no leader known".into());
        }
        Ok(())
    }
}
