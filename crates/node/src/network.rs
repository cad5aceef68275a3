//! openraft's network over tonic: one lazily connected channel per peer, every RPC with a
//! deadline, HTTP/2 keepalive so a half-open connection is noticed and replaced.

use std::collections::HashMap;
use std::time::Duration;

use agentgate_proto::json;
use agentgate_proto::pb::RaftPayload;
use agentgate_proto::pb::raft_service_client::RaftServiceClient;
use agentgate_raft_store::{Entry, LogId, Node, NodeId, TypeConfig};
use agentgate_runtime::net::Dialer;
use openraft::error::{
    InstallSnapshotError, NetworkError, RPCError, RaftError, RemoteError, Unreachable,
};
use openraft::network::{RPCOption, RaftNetwork, RaftNetworkFactory};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse,
    VoteRequest, VoteResponse,
};
use serde::Serialize;
use serde::de::DeserializeOwned;
use tonic::transport::Channel;

use crate::limits::PACING_BYTES_MIN;
use agentgate_model::limits::{GRPC_MESSAGE_BYTES_MAX, RAFT_PAYLOAD_BYTES_MAX};

pub use agentgate_runtime::channel::lazy as channel;

/// How many leading entries fit `budget` bytes (serialized), but at least one.
fn payload_prefix<T: Serialize>(entries: &[T], budget: usize) -> usize {
    let mut used = 0usize;
    for (i, e) in entries.iter().enumerate() {
        used += serde_json::to_vec(e).map_or(usize::MAX, |v| v.len());
        if used > budget {
            return i.max(1);
        }
    }
    entries.len()
}

/// Builds openraft's per-peer clients. Channels are kept per peer address and shared by every
/// client made for it: openraft asks for a new client for each read-index confirmation, and a
/// fresh connection (TCP and HTTP/2 handshakes) each time would cost two extra round trips —
/// across regions more than the heartbeat interval that bounds the confirmation, so every
/// linearizable read and edge lease would fail (found by `tests/sim`).
pub struct Network {
    pub rpc_timeout: Duration,
    pub dialer: Dialer,
    pub channels: HashMap<String, Channel>,
}

impl Network {
    pub fn new(rpc_timeout: Duration, dialer: Dialer) -> Self {
        Network {
            rpc_timeout,
            dialer,
            channels: HashMap::new(),
        }
    }

    fn channel(&mut self, addr: &str) -> Result<Channel, String> {
        if let Some(c) = self.channels.get(addr) {
            return Ok(c.clone());
        }
        let c = channel(addr, self.rpc_timeout, &self.dialer)?;
        // Bounded by the membership: one entry per address a member ever had.
        self.channels.insert(addr.to_string(), c.clone());
        Ok(c)
    }
}

pub struct Conn {
    target: NodeId,
    client: Result<RaftServiceClient<Channel>, String>,
    pacing: Pacing,
}

/// AppendEntries calls carrying entries that ran out of the heartbeat interval, per follower.
pub const APPEND_TIMEOUTS: &str = "agentgate_raft_append_timeouts_total";

/// Flow control for the AppendEntries sent to one follower.
///
/// openraft bounds every AppendEntries by the heartbeat interval and drops the call when it runs
/// out. The follower usually finishes the append anyway, but the leader does not learn it. If the
/// retry carries newer entries as well (they keep coming: audit batches, retried ones too), the
/// follower must flush its disk again, the retry runs out again, and nothing ever commits while
/// heartbeats keep succeeding: every write stuck, every read still served. CI showed the pattern
/// on a loaded machine (both followers' appends running out of the 50 ms heartbeat call after
/// call). A large payload the follower cannot even decode in time loops the same way.
///
/// So after a call was dropped, the next one carries no entry beyond the dropped call's last (the
/// follower acknowledges what it has persisted without writing) and at most half its bytes.
/// Every acknowledged call doubles the budget again, up to [`RAFT_PAYLOAD_BYTES_MAX`].
#[derive(Debug)]
struct Pacing {
    budget: usize,
    /// The last entry and the size of the call on the wire; cleared when it answers.
    in_flight: Option<(LogId, usize)>,
    /// After a dropped call: send no entry beyond this one.
    resend_upto: Option<LogId>,
}

impl Pacing {
    fn new() -> Self {
        Pacing {
            budget: RAFT_PAYLOAD_BYTES_MAX,
            in_flight: None,
            resend_upto: None,
        }
    }

    /// Before each call: a call still in flight ran out of time (dropped by openraft's timeout,
    /// or ended by its own deadline). Returns whether one did.
    fn begin(&mut self) -> bool {
        let Some((last, bytes)) = self.in_flight.take() else {
            return false;
        };
        self.resend_upto = Some(last);
        self.budget = (bytes / 2).clamp(PACING_BYTES_MIN, RAFT_PAYLOAD_BYTES_MAX);
        true
    }

    /// How many of `entries` to send, given the whole request encodes to `bytes`: at least one,
    /// none past `resend_upto`, and within the budget.
    fn keep(&self, entries: &[Entry], bytes: usize) -> usize {
        let mut keep = entries.len();
        if let Some(upto) = self.resend_upto
            && let Some(i) = entries.iter().position(|e| e.log_id == upto)
        {
            keep = i + 1;
        }
        if bytes > self.budget {
            // Measure only what could go.
            keep = payload_prefix(entries.get(..keep).unwrap_or(entries), self.budget);
        }
        keep
    }

    /// A call carrying entries up to `last`, `bytes` long, goes out.
    fn sent(&mut self, last: Option<LogId>, bytes: usize) {
        self.in_flight = last.map(|l| (l, bytes));
    }

    /// The call ended.
    fn answered(&mut self, answer: Answer) {
        match answer {
            // As if dropped: the next `begin` holds the resend back.
            Answer::TimedOut => {}
            Answer::Acknowledged => {
                self.in_flight = None;
                self.resend_upto = None;
                self.budget = self.budget.saturating_mul(2).min(RAFT_PAYLOAD_BYTES_MAX);
            }
            Answer::Other => self.in_flight = None,
        }
    }
}

/// How an AppendEntries call ended, for [`Pacing`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Answer {
    /// The follower holds every entry the call carried.
    Acknowledged,
    /// The call's deadline passed: the follower may still be working on it.
    TimedOut,
    /// Anything else: a conflict, a higher vote, a broken connection.
    Other,
}

impl RaftNetworkFactory<TypeConfig> for Network {
    type Network = Conn;

    async fn new_client(&mut self, target: NodeId, node: &Node) -> Conn {
        let client = self.channel(&node.addr).map(|c| {
            RaftServiceClient::new(c)
                .max_decoding_message_size(GRPC_MESSAGE_BYTES_MAX)
                .max_encoding_message_size(GRPC_MESSAGE_BYTES_MAX)
        });
        // At zero from the start, so that rate() sees the first one.
        metrics::counter!(APPEND_TIMEOUTS, "follower" => target.to_string()).increment(0);
        Conn {
            target,
            client,
            pacing: Pacing::new(),
        }
    }
}

#[derive(Clone, Copy)]
enum Rpc {
    Append,
    Vote,
    Snapshot,
}

// openraft's `RPCError` is large and is the error type its network trait requires.
#[allow(clippy::result_large_err)]
fn encode<Req: Serialize, E: std::error::Error>(
    req: &Req,
) -> Result<Vec<u8>, RPCError<NodeId, Node, RaftError<NodeId, E>>> {
    serde_json::to_vec(req).map_err(|e| RPCError::Network(NetworkError::new(&e)))
}

impl Conn {
    async fn call<Req, Resp, E>(
        &mut self,
        rpc: Rpc,
        req: &Req,
        option: &RPCOption,
    ) -> Result<Resp, RPCError<NodeId, Node, RaftError<NodeId, E>>>
    where
        Req: Serialize,
        Resp: DeserializeOwned,
        E: std::error::Error + DeserializeOwned,
    {
        let body = encode(req)?;
        self.send(rpc, body, option).await
    }

    /// Sends an already encoded request.
    async fn send<Resp, E>(
        &mut self,
        rpc: Rpc,
        body: Vec<u8>,
        option: &RPCOption,
    ) -> Result<Resp, RPCError<NodeId, Node, RaftError<NodeId, E>>>
    where
        Resp: DeserializeOwned,
        E: std::error::Error + DeserializeOwned,
    {
        let reply = self.exchange(rpc, body, option).await;
        self.decode_reply(reply)
    }

    /// The transport half of a call: the reply's bytes, or the status the call ended with.
    async fn exchange(
        &mut self,
        rpc: Rpc,
        body: Vec<u8>,
        option: &RPCOption,
    ) -> Result<Vec<u8>, Failed> {
        let client = self
            .client
            .as_mut()
            .map_err(|e| Failed::NoClient(e.clone()))?;
        let mut request = tonic::Request::new(RaftPayload { json: body });
        request.set_timeout(option.hard_ttl());
        let reply = match rpc {
            Rpc::Append => client.append_entries(request).await,
            Rpc::Vote => client.vote(request).await,
            Rpc::Snapshot => client.install_snapshot(request).await,
        };
        Ok(reply.map_err(Failed::Status)?.into_inner().json)
    }

    // openraft's `RPCError` is large and is the error type its network trait requires.
    #[allow(clippy::result_large_err)]
    fn decode_reply<Resp, E>(
        &self,
        reply: Result<Vec<u8>, Failed>,
    ) -> Result<Resp, RPCError<NodeId, Node, RaftError<NodeId, E>>>
    where
        Resp: DeserializeOwned,
        E: std::error::Error + DeserializeOwned,
    {
        let bytes = reply.map_err(|f| match f {
            Failed::NoClient(e) => {
                RPCError::Unreachable(Unreachable::new(&std::io::Error::other(e)))
            }
            Failed::Status(s) if s.code() == tonic::Code::Unavailable => {
                RPCError::Unreachable(Unreachable::new(&s))
            }
            Failed::Status(s) => RPCError::Network(NetworkError::new(&s)),
        })?;
        let result: Result<Resp, RaftError<NodeId, E>> =
            json::decode("json", &bytes).map_err(|s| RPCError::Network(NetworkError::new(&s)))?;
        result.map_err(|e| RPCError::RemoteError(RemoteError::new(self.target, e)))
    }
}

/// How a call failed below Raft.
enum Failed {
    /// The peer's address could not be made into a channel.
    NoClient(String),
    Status(tonic::Status),
}

impl Failed {
    /// The call's deadline passed (tonic's client-side timeout, or the server's).
    fn timed_out(&self) -> bool {
        matches!(self, Failed::Status(s) if matches!(s.code(), tonic::Code::Cancelled | tonic::Code::DeadlineExceeded))
    }
}

impl RaftNetwork<TypeConfig> for Conn {
    async fn append_entries(
        &mut self,
        mut rpc: AppendEntriesRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<AppendEntriesResponse<NodeId>, RPCError<NodeId, Node, RaftError<NodeId>>> {
        // Send the longest prefix [`Pacing`] allows (always at least one entry) and report the
        // rest as not yet sent. The whole request is encoded once; entries are measured only
        // when it is over the budget.
        if self.pacing.begin() {
            metrics::counter!(APPEND_TIMEOUTS, "follower" => self.target.to_string()).increment(1);
        }
        let mut body = encode(&rpc)?;
        let mut partial = None;
        let keep = self.pacing.keep(&rpc.entries, body.len());
        if keep < rpc.entries.len() {
            rpc.entries.truncate(keep);
            partial = Some(rpc.entries.last().map(|e| e.log_id));
            body = encode(&rpc)?;
        }
        self.pacing
            .sent(rpc.entries.last().map(|e| e.log_id), body.len());
        let reply = self.exchange(Rpc::Append, body, &option).await;
        let timed_out = reply.as_ref().is_err_and(Failed::timed_out);
        let resp = self.decode_reply(reply);
        self.pacing.answered(if timed_out {
            Answer::TimedOut
        } else if matches!(resp, Ok(AppendEntriesResponse::Success)) {
            Answer::Acknowledged
        } else {
            Answer::Other
        });
        Ok(match (resp?, partial) {
            (AppendEntriesResponse::Success, Some(last)) => {
                AppendEntriesResponse::PartialSuccess(last)
            }
            (other, _) => other,
        })
    }

    async fn install_snapshot(
        &mut self,
        rpc: InstallSnapshotRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<
        InstallSnapshotResponse<NodeId>,
        RPCError<NodeId, Node, RaftError<NodeId, InstallSnapshotError>>,
    > {
        self.call(Rpc::Snapshot, &rpc, &option).await
    }

    async fn vote(
        &mut self,
        rpc: VoteRequest<NodeId>,
        option: RPCOption,
    ) -> Result<VoteResponse<NodeId>, RPCError<NodeId, Node, RaftError<NodeId>>> {
        self.call(Rpc::Vote, &rpc, &option).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payloads_are_bounded_but_never_empty() {
        let entries = vec!["x".repeat(400); 10]; // 402 bytes each as JSON
        assert_eq!(payload_prefix(&entries, 10_000), 10);
        assert_eq!(payload_prefix(&entries, 1_000), 2);
        assert_eq!(
            payload_prefix(&entries, 10),
            1,
            "an entry larger than the budget still goes alone"
        );
        assert_eq!(payload_prefix::<String>(&[], 10), 0);
    }

    fn entry(index: u64, pad: usize) -> Entry {
        Entry {
            log_id: LogId::new(openraft::CommittedLeaderId::new(1, 1), index),
            payload: openraft::EntryPayload::Normal(agentgate_model::Command {
                time_ms: 0,
                actor: "x".repeat(pad),
                op: agentgate_model::Op::ReleaseSwitch {
                    scope: agentgate_model::entity::Scope::Global,
                },
                request_id: None,
            }),
        }
    }

    #[test]
    fn after_a_dropped_call_only_what_it_carried_is_resent_and_the_budget_halves() {
        let log: Vec<Entry> = (1..=10).map(|i| entry(i, 100)).collect();
        let mut p = Pacing::new();
        p.begin();
        assert_eq!(
            p.keep(&log[..4], 1_000),
            4,
            "nothing dropped yet: all of it"
        );
        p.sent(Some(log[3].log_id), 600_000);
        // Dropped (no answer), and four more entries came meanwhile.
        p.begin();
        assert_eq!(p.budget, 300_000);
        assert_eq!(
            p.keep(&log, 2_000),
            4,
            "no entry past the dropped call's last"
        );
        assert_eq!(
            p.keep(&log[4..], 2_000),
            6,
            "a retry from further on is not held back"
        );
        p.sent(Some(log[3].log_id), 1_000);
        p.answered(Answer::Acknowledged);
        assert_eq!(
            p.keep(&log, 2_000),
            10,
            "acknowledged: new entries go again"
        );
        assert_eq!(p.budget, 600_000);
        // A call that answers with an error (not dropped) does not shrink the budget.
        p.sent(Some(log[9].log_id), 2_000);
        p.answered(Answer::Other);
        p.begin();
        assert_eq!(p.budget, 600_000);
        assert_eq!(p.keep(&log, 2_000), 10);
        // A call whose deadline passed counts as dropped.
        p.sent(Some(log[5].log_id), 400_000);
        p.answered(Answer::TimedOut);
        p.begin();
        assert_eq!(p.budget, 200_000);
        assert_eq!(p.keep(&log, 2_000), 6);
    }

    #[test]
    fn the_budget_shrinks_to_a_floor_and_grows_back_to_the_ceiling() {
        let log: Vec<Entry> = (1..=400).map(|i| entry(i, 4_000)).collect();
        let mut p = Pacing::new();
        for _ in 0..20 {
            p.begin();
            let keep = p.keep(&log, 400 * 4_100);
            assert!(keep >= 1);
            p.sent(Some(log[keep - 1].log_id), keep * 4_100);
        }
        p.begin();
        assert_eq!(p.budget, PACING_BYTES_MIN);
        assert_eq!(p.keep(&log, 400 * 4_100), 3, "16 KiB: three 4 KB entries");
        p.resend_upto = None;
        let big = vec![entry(1, 100_000)];
        assert_eq!(p.keep(&big, 100_100), 1, "one entry always goes");
        for _ in 0..20 {
            p.sent(Some(big[0].log_id), 100_100);
            p.answered(Answer::Acknowledged);
        }
        assert_eq!(p.budget, RAFT_PAYLOAD_BYTES_MAX);
    }

    /// A follower that persists what it is sent even after the leader gave up on the call, one
    /// call at a time like openraft's core: reading the payload takes `per_kib` per KiB, and
    /// writing entries it does not hold yet takes `flush`.
    struct SlowFollower {
        persisted: std::sync::Arc<tokio::sync::Mutex<u64>>,
        per_kib: Duration,
        flush: Duration,
    }

    #[tonic::async_trait]
    impl agentgate_proto::pb::raft_service_server::RaftService for SlowFollower {
        async fn append_entries(
            &self,
            req: tonic::Request<RaftPayload>,
        ) -> Result<tonic::Response<RaftPayload>, tonic::Status> {
            let body = req.into_inner().json;
            let rpc: AppendEntriesRequest<TypeConfig> = json::decode("json", &body)?;
            let last = rpc.entries.last().map_or(0, |e| e.log_id.index);
            let (persisted, flush) = (self.persisted.clone(), self.flush);
            let read = self.per_kib * u32::try_from(body.len() / 1024).unwrap();
            // Spawned: the work goes on when the leader's call is dropped.
            tokio::spawn(async move {
                let mut held = persisted.lock().await;
                tokio::time::sleep(read).await;
                if last > *held {
                    tokio::time::sleep(flush).await;
                    *held = last;
                }
            })
            .await
            .unwrap();
            let ok: Result<AppendEntriesResponse<NodeId>, RaftError<NodeId>> =
                Ok(AppendEntriesResponse::Success);
            Ok(tonic::Response::new(RaftPayload {
                json: json::encode(&ok)?,
            }))
        }

        async fn vote(
            &self,
            _: tonic::Request<RaftPayload>,
        ) -> Result<tonic::Response<RaftPayload>, tonic::Status> {
            Err(tonic::Status::unimplemented("vote"))
        }

        async fn install_snapshot(
            &self,
            _: tonic::Request<RaftPayload>,
        ) -> Result<tonic::Response<RaftPayload>, tonic::Status> {
            Err(tonic::Status::unimplemented("install_snapshot"))
        }
    }

    /// A `Conn` to `follower` over in-memory connections (no sockets, no ports).
    async fn conn_to(follower: SlowFollower) -> Conn {
        use agentgate_proto::pb::raft_service_server::RaftServiceServer;
        use agentgate_runtime::net;
        use tokio_stream::StreamExt;
        let (tx, rx) = tokio::sync::mpsc::channel::<net::Conn>(4);
        tokio::spawn(
            tonic::transport::Server::builder()
                .add_service(RaftServiceServer::new(follower))
                .serve_with_incoming(
                    tokio_stream::wrappers::ReceiverStream::new(rx).map(Ok::<_, std::io::Error>),
                ),
        );
        let dialer = Dialer::custom(move |_| {
            let tx = tx.clone();
            Box::pin(async move {
                let (client, server) = tokio::io::duplex(1 << 20);
                tx.send(net::Conn::new(server))
                    .await
                    .map_err(|_| std::io::Error::other("server gone"))?;
                Ok(net::Conn::new(client))
            })
        });
        let mut network = Network::new(Duration::from_secs(5), dialer);
        network.new_client(2, &Node::new("follower:1")).await
    }

    /// Replicates like openraft's replication stream: each call from the follower's matching
    /// entry to the leader's last, bounded by `heartbeat`; a dropped call changes nothing.
    /// `grow` adds entries to the leader's log before each call. Returns how many calls it took
    /// to replicate `want` entries (`None`: not within `rounds`).
    async fn replicate(
        conn: &mut Conn,
        log: &mut Vec<Entry>,
        mut grow: impl FnMut(&mut Vec<Entry>),
        want: u64,
        rounds: usize,
    ) -> Option<usize> {
        let heartbeat = Duration::from_millis(50);
        let mut matching: Option<LogId> = None;
        for round in 1..=rounds {
            grow(log);
            let from = matching.map_or(0, |m| m.index) as usize;
            let rpc: AppendEntriesRequest<TypeConfig> = AppendEntriesRequest {
                vote: openraft::Vote::new_committed(1, 1),
                prev_log_id: matching,
                leader_commit: None,
                entries: log[from..].to_vec(),
            };
            let sent_last = rpc.entries.last().map(|e: &Entry| e.log_id);
            let call = conn.append_entries(rpc, RPCOption::new(heartbeat));
            match tokio::time::timeout(heartbeat, call).await {
                Ok(Ok(AppendEntriesResponse::Success)) => matching = sent_last,
                Ok(Ok(AppendEntriesResponse::PartialSuccess(m))) => matching = m,
                // The call's own deadline, or openraft's: no progress.
                Ok(Err(RPCError::Network(_))) | Err(_) => {}
                Ok(other) => panic!("{other:?}"),
            }
            if matching.is_some_and(|m| m.index >= want) {
                return Some(round);
            }
        }
        None
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn writes_commit_when_the_followers_disk_is_slower_than_the_heartbeat() {
        // Every flush takes 80 ms against a 50 ms bound, and a new entry arrives every call:
        // without pacing each retry carries a new entry, needs a new flush, and runs out again.
        let mut conn = conn_to(SlowFollower {
            persisted: Default::default(),
            per_kib: Duration::ZERO,
            flush: Duration::from_millis(80),
        })
        .await;
        let mut log = Vec::new();
        let grow = |log: &mut Vec<Entry>| {
            let next = log.len() as u64 + 1;
            log.push(entry(next, 200));
        };
        let rounds = replicate(&mut conn, &mut log, grow, 30, 400).await;
        assert!(rounds.is_some(), "30 entries not replicated in 400 calls");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_backlog_too_large_to_read_within_the_heartbeat_still_drains() {
        // 300 entries of 4 KB behind, and the follower reads 10 KiB per millisecond: a full
        // 1 MiB call needs 100 ms, twice the bound, however often it is resent.
        let mut conn = conn_to(SlowFollower {
            persisted: Default::default(),
            per_kib: Duration::from_micros(100),
            flush: Duration::from_millis(2),
        })
        .await;
        let mut log: Vec<Entry> = (1..=300).map(|i| entry(i, 4_000)).collect();
        let rounds = replicate(&mut conn, &mut log, |_| {}, 300, 400).await;
        assert!(rounds.is_some(), "the backlog did not drain in 400 calls");
    }
}
