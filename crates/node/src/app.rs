//! The node's application core shared by its gRPC services: proposals (stamped by the leader,
//! forwarded from followers), linearizable reads, membership changes and queries.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use agentgate_model::command::CommandResult;
use agentgate_model::entity::{Entity, EntityKey, Kind, Rollout, RolloutState};
use agentgate_model::guard::{CanaryStats, tripped};
use agentgate_model::limits::{GRPC_MESSAGE_BYTES_MAX, RAFT_ENTRY_BYTES_MAX, TEXT_BYTES_MAX};
use agentgate_model::query::AuditFilter;
use agentgate_model::query::{Query, QueryResult};
use agentgate_model::{Command, Op};
use agentgate_proto::json;
use agentgate_proto::net::Dialer;
use agentgate_proto::pb::admin_client::AdminClient;
use agentgate_proto::pb::{
    AddNodeRequest, ClusterStatus, NodeAddr, ProposeReply, ProposeRequest, ReadIndexRequest,
    RemoveNodeRequest,
};
use agentgate_proto::telemetry::{self, TARGET};
use agentgate_raft_store::{CommittedIndex, Node, NodeId, Raft, StateReader};
use openraft::error::{CheckIsLeaderError, InitializeError, RaftError};
use openraft::{ChangeMembers, ServerState};
use rand::RngCore;
use sha2::{Digest, Sha256};
use tonic::transport::Channel;
use tonic::{Request, Status};
use tracing::Instrument;
use tracing::field::Empty;
use tracing_opentelemetry::OpenTelemetrySpanExt;

use crate::clock::{Clock, elapsed_secs};
use crate::network::channel;
use crate::status;

/// Everything nondeterministic the node uses, injected so that tests and simulations control it.
pub struct Env {
    pub clock: Arc<dyn Clock>,
    /// Randomness for API keys.
    pub rng: Box<dyn RngCore + Send>,
    /// How this node dials its peers.
    pub dialer: Dialer,
}

/// Marks a request one node forwarded to another, so it is never forwarded twice.
pub const FORWARDED: &str = "x-agentgate-forwarded";

pub struct App {
    pub id: NodeId,
    pub raft: Raft,
    pub reader: StateReader,
    pub committed: CommittedIndex,
    pub clock: Arc<dyn Clock>,
    pub region: String,
    pub rpc_timeout: Duration,
    pub dialer: Dialer,
    peers: Mutex<HashMap<String, AdminClient<Channel>>>,
    rng: Mutex<Box<dyn RngCore + Send>>,
    /// Per tenant: how far the leader has counted a guarded rollout's canary decisions.
    guards: Mutex<HashMap<String, GuardScan>>,
}

/// A guarded rollout's canary decisions counted so far (leader memory; a new leader recounts).
struct GuardScan {
    to_version: String,
    since_ms: u64,
    after_seq: u64,
    stats: CanaryStats,
}

impl GuardScan {
    fn new(to_version: &str, since_ms: u64) -> Self {
        GuardScan {
            to_version: to_version.to_string(),
            since_ms,
            after_seq: 0,
            stats: CanaryStats::default(),
        }
    }
}

/// Audit pages a guard check reads per tenant per sweep (the rest waits for the next sweep).
const GUARD_PAGES_PER_SWEEP: usize = 10;

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

fn is_forwarded<T>(req: &Request<T>) -> bool {
    req.metadata().contains_key(FORWARDED)
}

fn mark_forwarded<T>(mut req: Request<T>) -> Request<T> {
    req.metadata_mut()
        .insert(FORWARDED, tonic::metadata::MetadataValue::from_static("1"));
    // The leader continues this node's trace of the operation.
    telemetry::inject_current(req.metadata_mut());
    req
}

/// The span of an admin operation arriving over gRPC, parented on the caller's W3C context
/// (`traceparent` metadata) when there is one; disabled unless traces are exported.
pub fn admin_span<T>(req: &Request<T>, rpc: &'static str) -> tracing::Span {
    let span = tracing::info_span!(
        target: TARGET,
        "agentgate.admin",
        otel.kind = "server",
        rpc.method = rpc,
        agentgate.op = Empty,
        agentgate.actor = Empty,
        agentgate.forwarded = req.metadata().contains_key(FORWARDED),
        raft.log_index = Empty,
        agentgate.revision = Empty,
    );
    if !span.is_disabled() {
        let headers = req.metadata().clone().into_headers();
        let cx = telemetry::extract(&telemetry::HeaderReader(&headers));
        if telemetry::has_span(&cx) {
            let _ = span.set_parent(cx);
        }
    }
    span
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
            dialer,
            peers: Mutex::default(),
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

    fn leader(&self) -> Option<NodeId> {
        self.raft.metrics().borrow().current_leader
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

    /// An admin client for the current leader, or why there is none.
    fn leader_client(&self) -> Result<AdminClient<Channel>, Status> {
        let leader = self.leader().ok_or_else(status::no_leader)?;
        let addr = self.node_addr(leader).ok_or_else(|| {
            Status::unavailable(format!("leader {leader} has no known address; retry"))
        })?;
        self.peer_client(addr)
    }

    /// An admin client for the node at `addr` (one channel per address, kept).
    pub fn peer_client(&self, addr: String) -> Result<AdminClient<Channel>, Status> {
        let mut peers = self
            .peers
            .lock()
            .map_err(|_| Status::internal("peer cache poisoned"))?;
        if let Some(c) = peers.get(&addr) {
            return Ok(c.clone());
        }
        let c = AdminClient::new(
            channel(&addr, self.rpc_timeout, &self.dialer).map_err(Status::internal)?,
        )
        .max_decoding_message_size(GRPC_MESSAGE_BYTES_MAX)
        .max_encoding_message_size(GRPC_MESSAGE_BYTES_MAX);
        peers.insert(addr, c.clone());
        Ok(c)
    }

    fn is_leader(&self) -> bool {
        self.leader() == Some(self.id)
    }

    /// Where a request goes: handled here (`None`) or forwarded to the leader.
    fn route<T>(&self, req: &Request<T>) -> Result<Option<AdminClient<Channel>>, Status> {
        if self.is_leader() {
            return Ok(None);
        }
        if is_forwarded(req) {
            return Err(Status::unavailable(
                "this node is no longer the leader; retry",
            ));
        }
        self.leader_client().map(Some)
    }

    /// Proposes an operation: on the leader it is prepared, stamped and committed; a follower
    /// forwards the request to the leader.
    pub async fn propose(&self, req: Request<ProposeRequest>) -> Result<ProposeReply, Status> {
        if let Some(mut leader) = self.route(&req)? {
            let inner = req.into_inner();
            // This node's span of the operation names it too (decoded only when traced).
            let current = tracing::Span::current();
            if !current.is_disabled() && inner.op_json.len() <= RAFT_ENTRY_BYTES_MAX {
                if let Ok(op) = serde_json::from_slice::<Op>(&inner.op_json) {
                    current.record("agentgate.op", op.name());
                }
                current.record("agentgate.actor", inner.actor.as_str());
            }
            return Ok(leader
                .propose(mark_forwarded(Request::new(inner)))
                .await?
                .into_inner());
        }
        let ProposeRequest { op_json, actor } = req.into_inner();
        if op_json.len() > RAFT_ENTRY_BYTES_MAX {
            return Err(Status::invalid_argument(format!(
                "operation is {} bytes; the limit is {RAFT_ENTRY_BYTES_MAX} (raft_entry_bytes_max)",
                op_json.len()
            )));
        }
        let op: Op = json::decode("op_json", &op_json)?;
        if actor.len() > TEXT_BYTES_MAX {
            return Err(Status::invalid_argument(format!(
                "actor is {} bytes; the limit is {TEXT_BYTES_MAX} (text_bytes_max)",
                actor.len()
            )));
        }
        let actor = if actor.is_empty() {
            "anonymous".to_string()
        } else {
            actor
        };
        self.propose_local(op, actor).await
    }

    /// Proposes an already decoded operation (from the EdgeSync service): committed here when
    /// this node leads, forwarded to the leader otherwise. The caller bounds its size.
    pub async fn propose_op(&self, op: Op, actor: String) -> Result<ProposeReply, Status> {
        if self.is_leader() {
            return self.propose_local(op, actor).await;
        }
        let mut leader = self.leader_client()?;
        let req = ProposeRequest {
            op_json: json::encode(&op)?,
            actor,
        };
        Ok(leader
            .propose(mark_forwarded(Request::new(req)))
            .await?
            .into_inner())
    }

    /// Prepares and commits an operation on this node, which must be the leader.
    pub async fn propose_local(&self, mut op: Op, actor: String) -> Result<ProposeReply, Status> {
        let start = self.clock.monotonic();
        let name = op.name();
        let mut api_key = String::new();
        match &mut op {
            Op::CreateAgent { key_hash, .. } => {
                if !key_hash.is_empty() {
                    return Err(Status::invalid_argument(
                        "key_hash is chosen by the cluster; leave it empty and keep the key it returns",
                    ));
                }
                api_key = self.new_api_key()?;
                *key_hash = hex::encode(Sha256::digest(api_key.as_bytes()));
            }
            Op::PushPolicy { package } => {
                let valid = agentgate_model::policy::validate_package(&package.policies, &package.schema, &package.entities)
                    .map_err(|msg| {
                        Status::invalid_argument(format!(
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
        };
        // Commit (replicated to a quorum) and apply on this leader: what `client_write` awaits.
        let commit = tracing::info_span!(
            target: TARGET,
            "agentgate.raft.commit_apply",
            agentgate.op = name,
            raft.log_index = Empty
        );
        // INVARIANT: the entry stays within RAFT_ENTRY_BYTES_MAX plus a small envelope: callers
        // bound the encoded op (`propose`, `append_audit`) and the actor (TEXT_BYTES_MAX), and
        // preparation adds at most a 64-character hash.
        let written = self
            .raft
            .client_write(cmd)
            .instrument(commit.clone())
            .await
            .map_err(|e| status::from_write(&e))?;
        commit.record("raft.log_index", written.log_id.index);
        current.record("raft.log_index", written.log_id.index);
        current.record("agentgate.revision", written.data.revision);
        metrics::histogram!("agentgate_node_proposal_duration_seconds", "op" => name)
            .record(elapsed_secs(self.clock.as_ref(), start));
        let CommandResult { revision, outcome } = written.data;
        match outcome {
            Some(Ok(response)) => Ok(ProposeReply {
                revision,
                log_index: written.log_id.index,
                response_json: json::encode(&response)?,
                api_key,
            }),
            Some(Err(e)) => Err(status::from_apply(e)),
            None => Err(Status::internal("a normal entry produced no outcome")),
        }
    }

    fn new_api_key(&self) -> Result<String, Status> {
        let mut bytes = [0u8; 32];
        self.rng
            .lock()
            .map_err(|_| Status::internal("rng poisoned"))?
            .fill_bytes(&mut bytes);
        Ok(format!("agk_{}", hex::encode(bytes)))
    }

    /// The leader's read index: it confirms with a quorum that it still leads.
    pub async fn leader_read_index(&self) -> Result<u64, Status> {
        let (read, _) = self.raft.get_read_log_id().await.map_err(|e| match e {
            RaftError::APIError(CheckIsLeaderError::ForwardToLeader(_)) => {
                Status::unavailable("this node is not the leader; retry")
            }
            RaftError::APIError(CheckIsLeaderError::QuorumNotEnough(q)) => {
                Status::unavailable(format!("leadership not confirmed by a quorum: {q}"))
            }
            RaftError::Fatal(f) => Status::unavailable(format!("raft stopped: {f}")),
        })?;
        Ok(read.map_or(0, |l| l.index))
    }

    /// Waits until this node has applied everything committed before the call: afterwards a
    /// read of local state is linearizable. Returns the revision reached.
    pub async fn read_barrier(&self) -> Result<u64, Status> {
        let index = if self.is_leader() {
            self.leader_read_index().await?
        } else {
            let mut leader = self.leader_client()?;
            leader
                .read_index(mark_forwarded(Request::new(ReadIndexRequest {})))
                .await?
                .into_inner()
                .read_index
        };
        if index > 0 {
            self.raft
                .wait(Some(self.rpc_timeout))
                .applied_index_at_least(Some(index), "read barrier")
                .await
                .map_err(|e| {
                    Status::unavailable(format!(
                        "this node did not catch up with the leader in time: {e}"
                    ))
                })?;
        }
        Ok(self.reader.revision())
    }

    /// Answers a query from local state (call [`App::read_barrier`] first).
    pub fn query(&self, q: Query) -> Result<QueryResult, Status> {
        let with_state = |f: &dyn Fn(&agentgate_model::State) -> Result<QueryResult, Status>| {
            self.reader.with_state(f).map_err(status::storage)?
        };
        match q {
            Query::Get { kind, key } => with_state(&|s| {
                Ok(QueryResult::Entity(
                    s.get(&EntityKey {
                        kind,
                        key: key.clone(),
                    })
                    .map(Box::new),
                ))
            }),
            Query::List { kind, tenant } => with_state(&|s| {
                if let Some(t) = &tenant
                    && !s.tenants.contains_key(t)
                {
                    return Err(Status::not_found(format!("tenant `{t}`")));
                }
                let all = s.entities_of(kind);
                Ok(QueryResult::Entities(match &tenant {
                    None => all,
                    Some(t) => all
                        .into_iter()
                        .filter(|e| e.tenant() == Some(t.as_str()))
                        .collect(),
                }))
            }),
            Query::Approvals { tenant, state } => with_state(&|s| {
                Ok(QueryResult::Entities(
                    s.approvals
                        .values()
                        .filter(|a| tenant.as_ref().is_none_or(|t| &a.tenant == t))
                        .filter(|a| state.is_none_or(|st| a.state == st))
                        .cloned()
                        .map(Entity::Approval)
                        .collect(),
                ))
            }),
            Query::Audit { filter } => {
                let page = self.reader.audit_query(&filter).map_err(status::storage)?;
                Ok(QueryResult::Audit {
                    records: page.records,
                    next_after_seq: page.next_after_seq,
                })
            }
            Query::AuditHead => with_state(&|s| Ok(QueryResult::AuditHead(s.audit_head.clone()))),
        }
    }

    pub async fn init_cluster(&self, members: Vec<NodeAddr>) -> Result<ClusterStatus, Status> {
        if members.is_empty() {
            return Err(Status::invalid_argument("give at least one member"));
        }
        let mut map = BTreeMap::new();
        for m in members {
            if m.id == 0 || map.insert(m.id, Node::new(m.addr)).is_some() {
                return Err(Status::invalid_argument(format!(
                    "member id {} is zero or repeated",
                    m.id
                )));
            }
        }
        if !map.contains_key(&self.id) {
            return Err(Status::invalid_argument(format!(
                "the members must include this node ({})",
                self.id
            )));
        }
        self.raft.initialize(map).await.map_err(|e| match e {
            RaftError::APIError(InitializeError::NotAllowed(_)) => {
                Status::failed_precondition("the cluster is already initialized")
            }
            RaftError::APIError(InitializeError::NotInMembers(n)) => {
                Status::invalid_argument(n.to_string())
            }
            RaftError::Fatal(f) => Status::unavailable(format!("raft stopped: {f}")),
        })?;
        Ok(self.status())
    }

    pub async fn add_node(&self, req: Request<AddNodeRequest>) -> Result<ClusterStatus, Status> {
        if let Some(mut leader) = self.route(&req)? {
            return Ok(leader
                .add_node(mark_forwarded(Request::new(req.into_inner())))
                .await?
                .into_inner());
        }
        let AddNodeRequest { node, as_voter } = req.into_inner();
        let node = node.ok_or_else(|| Status::invalid_argument("`node` is required"))?;
        if node.id == 0 || node.addr.is_empty() {
            return Err(Status::invalid_argument(
                "the node needs a non-zero id and an address",
            ));
        }
        // Learner first: it receives the log (or a snapshot) without counting for quorum.
        self.raft
            .add_learner(node.id, Node::new(node.addr), true)
            .await
            .map_err(|e| status::from_write(&e))?;
        if as_voter {
            let r = self
                .raft
                .change_membership(ChangeMembers::AddVoterIds(BTreeSet::from([node.id])), false)
                .await
                .map_err(|e| status::from_write(&e))?;
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

    pub async fn remove_node(
        &self,
        req: Request<RemoveNodeRequest>,
    ) -> Result<ClusterStatus, Status> {
        if let Some(mut leader) = self.route(&req)? {
            return Ok(leader
                .remove_node(mark_forwarded(Request::new(req.into_inner())))
                .await?
                .into_inner());
        }
        let id = req.into_inner().id;
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
            (false, false) => return Err(Status::not_found(format!("node {id} is not a member"))),
        };
        let r = self
            .raft
            .change_membership(change, false)
            .await
            .map_err(|e| status::from_write(&e))?;
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

    /// The sweep commands due at `now_ms` (expired kill switches or approvals), for the leader.
    pub fn due_sweeps(&self, now_ms: u64) -> Vec<Op> {
        let due = self.reader.with_state(|s| {
            let switches = s
                .switches
                .values()
                .any(|w| w.expires_ms.is_some_and(|e| e <= now_ms));
            let approvals = s.approvals.values().any(|a| {
                matches!(
                    a.state,
                    agentgate_model::entity::ApprovalState::Pending
                        | agentgate_model::entity::ApprovalState::Approved
                ) && a.expires_ms <= now_ms
            });
            (switches, approvals)
        });
        let mut ops = Vec::new();
        if let Ok((switches, approvals)) = due {
            if switches {
                ops.push(Op::ExpireSwitches);
            }
            if approvals {
                ops.push(Op::ExpireApprovals);
            }
        }
        ops
    }

    /// Rollbacks due because a running rollout's guard tripped (DESIGN G6), for the leader.
    /// Counts each guarded rollout's canary decisions from the audit log incrementally.
    pub fn due_rollbacks(&self) -> Vec<Op> {
        let rollouts: Vec<Rollout> = self
            .reader
            .with_state(|s| {
                s.rollouts
                    .values()
                    .filter(|r| r.state == RolloutState::Running)
                    .filter(|r| {
                        r.guard.max_deny_rate_percent.is_some()
                            || r.guard.max_error_rate_percent.is_some()
                    })
                    .cloned()
                    .collect()
            })
            .unwrap_or_default();
        let Ok(mut scans) = self.guards.lock() else {
            return Vec::new();
        };
        scans.retain(|t, _| rollouts.iter().any(|r| &r.tenant == t));
        let mut ops = Vec::new();
        for r in rollouts {
            let since_ms = r
                .history
                .iter()
                .rev()
                .find(|e| e.action == "start")
                .or(r.history.first())
                .map_or(0, |e| e.time_ms);
            let scan = scans
                .entry(r.tenant.clone())
                .or_insert_with(|| GuardScan::new(&r.to_version, since_ms));
            if scan.to_version != r.to_version || scan.since_ms != since_ms {
                *scan = GuardScan::new(&r.to_version, since_ms);
            }
            for _ in 0..GUARD_PAGES_PER_SWEEP {
                let filter = AuditFilter {
                    tenant: Some(r.tenant.clone()),
                    since_ms: Some(since_ms),
                    after_seq: Some(scan.after_seq),
                    ..AuditFilter::default()
                };
                let Ok(page) = self.reader.audit_query(&filter) else {
                    break;
                };
                for rec in &page.records {
                    scan.stats.count(&rec.entry, &r.to_version);
                    scan.after_seq = scan.after_seq.max(rec.seq);
                }
                match page.next_after_seq {
                    Some(n) => scan.after_seq = scan.after_seq.max(n),
                    None => break,
                }
            }
            if let Some(reason) = tripped(&r.guard, &scan.stats) {
                ops.push(Op::RollbackRollout {
                    tenant: r.tenant.clone(),
                    reason,
                });
            }
        }
        ops
    }

    /// Count of entities of each kind (for metrics).
    pub fn entity_counts(&self) -> Vec<(Kind, usize)> {
        self.reader
            .with_state(|s| Kind::ALL.iter().map(|k| (*k, s.count(*k))).collect())
            .unwrap_or_default()
    }
}
