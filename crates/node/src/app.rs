//! The node's application core shared by its gRPC services: proposals (stamped by the leader,
//! forwarded from followers), linearizable reads and queries. Membership changes are in
//! [`crate::membership`], the rollout guards' audit scans in [`crate::guards`]. No gRPC types:
//! the services decode requests, call here, and map [`NodeError`] to the wire in one place.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use agentgate_client::Peers;
use agentgate_model::command::CommandResult;
use agentgate_model::entity::Kind;
use agentgate_model::limits::{RAFT_ENTRY_BYTES_MAX, TEXT_BYTES_MAX};
use agentgate_model::query::{Query, QueryResult};
use agentgate_model::{Command, Op};
use agentgate_proto::pb::{ProposeReply, ProposeRequest};
use agentgate_raft_store::{CommittedIndex, NodeId, Raft, StateReader};
use agentgate_runtime::clock::{Clock, elapsed_secs};
use agentgate_runtime::net::Dialer;
use agentgate_runtime::telemetry::TARGET;
use openraft::error::{CheckIsLeaderError, RaftError};
use rand::RngCore;
use sha2::{Digest, Sha256};
use tracing::Instrument;
use tracing::field::Empty;

use crate::error::{NodeError, Result, decode, encode};
use crate::guards::GuardScan;

/// Everything nondeterministic the node uses, injected so that tests and simulations control it.
pub struct Env {
    pub clock: Arc<dyn Clock>,
    /// Randomness for API keys.
    pub rng: Box<dyn RngCore + Send>,
    /// How this node dials its peers.
    pub dialer: Dialer,
}

pub struct App {
    pub id: NodeId,
    pub raft: Raft,
    pub reader: StateReader,
    pub committed: CommittedIndex,
    pub clock: Arc<dyn Clock>,
    pub region: String,
    pub rpc_timeout: Duration,
    pub dialer: Dialer,
    /// Stubs for the other nodes (forwarding to the leader, bootstrap).
    pub peers: Peers,
    rng: Mutex<Box<dyn RngCore + Send>>,
    /// Per tenant: how far the leader has counted a guarded rollout's canary decisions.
    pub(crate) guards: Mutex<HashMap<String, GuardScan>>,
}

/// A write as a client sent it.
#[derive(Debug, Clone)]
pub struct Proposal {
    pub request: ProposeRequest,
    /// Another node forwarded it (so it is never forwarded again).
    pub forwarded: bool,
}

/// Records an RPC's latency when dropped.
pub struct RpcTimer<'a> {
    app: &'a App,
    rpc: &'static str,
    start: Instant,
}

impl Drop for RpcTimer<'_> {
    fn drop(&mut self) {
        metrics::histogram!("agentgate_node_rpc_duration_seconds", "rpc" => self.rpc)
            .record(elapsed_secs(self.app.clock.as_ref(), self.start));
    }
}

impl App {
    pub fn new(
        id: NodeId,
        raft: Raft,
        reader: StateReader,
        committed: CommittedIndex,
        env: Env,
        region: String,
        rpc_timeout: Duration,
    ) -> Self {
        let Env { clock, rng, dialer } = env;
        App {
            id,
            raft,
            reader,
            committed,
            clock,
            region,
            rpc_timeout,
            peers: Peers::new(rpc_timeout, dialer.clone()),
            dialer,
            rng: Mutex::new(rng),
            guards: Mutex::default(),
        }
    }

    pub fn time_rpc(&self, rpc: &'static str) -> RpcTimer<'_> {
        RpcTimer {
            app: self,
            rpc,
            start: self.clock.monotonic(),
        }
    }

    pub(crate) fn leader(&self) -> Option<NodeId> {
        self.raft.metrics().borrow().current_leader
    }

    pub(crate) fn is_leader(&self) -> bool {
        self.leader() == Some(self.id)
    }

    fn node_addr(&self, id: NodeId) -> Option<String> {
        self.raft
            .metrics()
            .borrow()
            .membership_config
            .membership()
            .get_node(&id)
            .map(|n| n.addr.clone())
    }

    /// The current leader's address, or why there is none.
    pub(crate) fn leader_addr(&self) -> Result<String> {
        let leader = self.leader().ok_or_else(NodeError::no_leader)?;
        self.node_addr(leader).ok_or_else(|| {
            NodeError::Unavailable(format!("leader {leader} has no known address; retry"))
        })
    }

    /// Where a call goes: handled here (`None`) or forwarded to the leader at the address given.
    pub(crate) fn route(&self, forwarded: bool) -> Result<Option<String>> {
        if self.is_leader() {
            return Ok(None);
        }
        if forwarded {
            return Err(NodeError::Unavailable(
                "this node is no longer the leader; retry".into(),
            ));
        }
        self.leader_addr().map(Some)
    }

    /// Proposes a client's write: on the leader it is prepared, stamped and committed; a
    /// follower forwards it to the leader.
    pub async fn propose(&self, p: Proposal) -> Result<ProposeReply> {
        if let Some(leader) = self.route(p.forwarded)? {
            // This node's span of the operation names it too (decoded only when traced).
            let current = tracing::Span::current();
            if !current.is_disabled() && p.request.op_json.len() <= RAFT_ENTRY_BYTES_MAX {
                if let Ok(op) = serde_json::from_slice::<Op>(&p.request.op_json) {
                    current.record("agentgate.op", op.name());
                }
                current.record("agentgate.actor", p.request.actor.as_str());
            }
            return Ok(self.peers.forward_propose(&leader, p.request).await?);
        }
        let ProposeRequest {
            op_json,
            actor,
            request_id,
        } = p.request;
        if op_json.len() > RAFT_ENTRY_BYTES_MAX {
            return Err(NodeError::Invalid(format!(
                "operation is {} bytes; the limit is {RAFT_ENTRY_BYTES_MAX} (raft_entry_bytes_max)",
                op_json.len()
            )));
        }
        let op: Op = decode("op_json", &op_json)?;
        if actor.len() > TEXT_BYTES_MAX {
            return Err(NodeError::Invalid(format!(
                "actor is {} bytes; the limit is {TEXT_BYTES_MAX} (text_bytes_max)",
                actor.len()
            )));
        }
        if !request_id.is_empty() {
            agentgate_model::request::check_id(&request_id)?;
        }
        let actor = if actor.is_empty() {
            "anonymous".to_string()
        } else {
            actor
        };
        self.propose_local(op, actor, (!request_id.is_empty()).then_some(request_id))
            .await
    }

    /// Proposes an already decoded operation (from the EdgeSync service): committed here when
    /// this node leads, forwarded to the leader otherwise. The caller bounds its size.
    pub async fn propose_op(&self, op: Op, actor: String) -> Result<ProposeReply> {
        if self.is_leader() {
            return self.propose_local(op, actor, None).await;
        }
        let leader = self.leader_addr()?;
        let req = ProposeRequest {
            op_json: encode(&op)?,
            actor,
            request_id: String::new(),
        };
        Ok(self.peers.forward_propose(&leader, req).await?)
    }

    /// Prepares and commits an operation on this node, which must be the leader.
    pub async fn propose_local(
        &self,
        mut op: Op,
        actor: String,
        request_id: Option<String>,
    ) -> Result<ProposeReply> {
        let start = self.clock.monotonic();
        let name = op.name();
        let mut api_key = String::new();
        match &mut op {
            Op::CreateAgent { key_hash, .. } => {
                if !key_hash.is_empty() {
                    return Err(NodeError::Invalid(
                        "key_hash is chosen by the cluster; leave it empty and keep the key it returns".into(),
                    ));
                }
                api_key = self.new_api_key()?;
                *key_hash = hex::encode(Sha256::digest(api_key.as_bytes()));
            }
            Op::PushPolicy { package } => {
                let valid = agentgate_model::policy::validate_package(&package.policies, &package.schema, &package.entities)
                    .map_err(|msg| {
                        NodeError::Invalid(format!(
                            "policy package `{}` of tenant `{}` is invalid; nothing was committed:\n{msg}",
                            package.version, package.tenant
                        ))
                    })?;
                if package.sha256.is_empty() {
                    package.sha256 = valid.sha256;
                }
            }
            _ => {}
        }
        let current = tracing::Span::current();
        current.record("agentgate.op", name);
        current.record("agentgate.actor", actor.as_str());
        let cmd = Command {
            time_ms: self.clock.now_ms(),
            actor,
            op,
            request_id,
        };
        // Commit (replicated to a quorum) and apply on this leader: what `client_write` awaits.
        let commit = tracing::info_span!(
            target: TARGET,
            "agentgate.raft.commit_apply",
            agentgate.op = name,
            raft.log_index = Empty
        );
        // INVARIANT: the entry stays within RAFT_ENTRY_BYTES_MAX plus a small envelope: callers
        // bound the encoded op (`propose`, `append_audit`), the actor (TEXT_BYTES_MAX) and the
        // request id (REQUEST_ID_BYTES_MAX), and preparation adds at most a 64-character hash.
        let written = self
            .raft
            .client_write(cmd)
            .instrument(commit.clone())
            .await
            .map_err(|e| NodeError::from_write(&e))?;
        commit.record("raft.log_index", written.log_id.index);
        current.record("raft.log_index", written.log_id.index);
        current.record("agentgate.revision", written.data.revision);
        metrics::histogram!("agentgate_node_proposal_duration_seconds", "op" => name)
            .record(elapsed_secs(self.clock.as_ref(), start));
        let CommandResult {
            revision,
            outcome,
            replay_of,
        } = written.data;
        // A replayed answer is the first attempt's: its revision, and no key (the key generated
        // for this attempt was never stored, and the first one went out with the lost reply).
        if replay_of.is_some() {
            api_key.clear();
        }
        match outcome {
            Some(Ok(response)) => Ok(ProposeReply {
                revision: replay_of.unwrap_or(revision),
                log_index: written.log_id.index,
                response_json: encode(&response)?,
                api_key,
                replayed: replay_of.is_some(),
            }),
            Some(Err(e)) => Err(e.into()),
            None => Err(NodeError::Internal(
                "a normal entry produced no outcome".into(),
            )),
        }
    }

    fn new_api_key(&self) -> Result<String> {
        let mut bytes = [0u8; 32];
        self.rng
            .lock()
            .map_err(|_| NodeError::Internal("rng poisoned".into()))?
            .fill_bytes(&mut bytes);
        Ok(format!("agk_{}", hex::encode(bytes)))
    }

    /// The leader's read index: it confirms with a quorum that it still leads.
    pub async fn leader_read_index(&self) -> Result<u64> {
        let (read, _) = self.raft.get_read_log_id().await.map_err(|e| match e {
            RaftError::APIError(CheckIsLeaderError::ForwardToLeader(_)) => {
                NodeError::Unavailable("this node is not the leader; retry".into())
            }
            RaftError::APIError(CheckIsLeaderError::QuorumNotEnough(q)) => {
                NodeError::Unavailable(format!("leadership not confirmed by a quorum: {q}"))
            }
            RaftError::Fatal(f) => NodeError::Unavailable(format!("raft stopped: {f}")),
        })?;
        Ok(read.map_or(0, |l| l.index))
    }

    /// Waits until this node has applied everything committed before the call: afterwards a
    /// read of local state is linearizable. Returns the revision reached.
    pub async fn read_barrier(&self) -> Result<u64> {
        let index = if self.is_leader() {
            self.leader_read_index().await?
        } else {
            let leader = self.leader_addr()?;
            self.peers.forward_read_index(&leader).await?.read_index
        };
        if index > 0 {
            self.raft
                .wait(Some(self.rpc_timeout))
                .applied_index_at_least(Some(index), "read barrier")
                .await
                .map_err(|e| {
                    NodeError::Unavailable(format!(
                        "this node did not catch up with the leader in time: {e}"
                    ))
                })?;
        }
        Ok(self.reader.revision())
    }

    /// Answers a query from local state (call [`App::read_barrier`] first): audit records from
    /// the audit index, everything else by `agentgate_model::query::answer`.
    pub fn query(&self, q: &Query) -> Result<QueryResult> {
        if let Query::Audit { filter } = q {
            let page = self
                .reader
                .audit_query(filter)
                .map_err(NodeError::storage)?;
            return Ok(QueryResult::Audit {
                records: page.records,
                next_after_seq: page.next_after_seq,
            });
        }
        Ok(self
            .reader
            .with_state(|s| agentgate_model::query::answer(s, q))
            .map_err(NodeError::storage)??)
    }

    /// The sweep commands due at `now_ms` (expired kill switches or approvals), for the leader.
    pub fn due_sweeps(&self, now_ms: u64) -> Vec<Op> {
        self.reader
            .with_state(|s| agentgate_model::sweep::due(s, now_ms))
            .unwrap_or_default()
    }

    /// Count of entities of each kind (for metrics).
    pub fn entity_counts(&self) -> Vec<(Kind, usize)> {
        self.reader
            .with_state(|s| Kind::ALL.iter().map(|k| (*k, s.count(*k))).collect())
            .unwrap_or_default()
    }
}
