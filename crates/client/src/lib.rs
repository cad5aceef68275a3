//! `agentgate-client`: the one typed client of the core's Admin API, used by the edge (approvals),
//! the CLI, the test harness, the simulation and the node itself (forwarding to the leader).
//!
//! - [`Client::propose`] sends an [`Op`] and decodes what the state machine answered;
//!   [`Client::query`] sends a [`Query`] (linearizable: any node passes a read barrier).
//! - [`RequestIds`] makes the ids that make retried writes safe.
//! - [`Peers`]: the node-to-node path: one stub per peer address, and calls forwarded to the
//!   leader (one attempt each, marked so that they are never forwarded twice).
//!
//! # The retry rule (the only one)
//!
//! Every write carries a request id that this client generates once per [`Client::propose`]
//! call. The state machine remembers the answer of each request id for
//! `REQUEST_IDS_RETAIN_MS` (see `agentgate_model::limits`), so a write that is sent again with the
//! same id is applied at most once and answers as the first attempt did — also when the first
//! attempt committed and only its reply was lost.
//!
//! A call (write or read) is retried, on the next endpoint, when its outcome is unknown or it
//! was not served: the status is `UNAVAILABLE` (no leader, leadership moved, node unreachable),
//! `DEADLINE_EXCEEDED`, `CANCELLED`, `ABORTED` or `UNKNOWN` (the transport broke mid-call).
//! Any other status is the answer and is returned at once. Retries back off from
//! [`Retry::backoff_initial`] doubling to [`Retry::backoff_max`], and stop after
//! [`Retry::attempts_max`] attempts or once [`Retry::deadline`] has passed since the first.
//!
//! INVARIANT: a write is never sent under two request ids, so retrying cannot apply it twice.
#![forbid(unsafe_code)]

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use agentgate_model::limits::{GRPC_MESSAGE_BYTES_MAX, REQUEST_ID_BYTES_MAX};
use agentgate_model::query::{Query, QueryResult};
use agentgate_model::{Op, Response};
use agentgate_proto::pb::admin_client::AdminClient;
use agentgate_proto::pb::{
    AddNodeRequest, ClusterStatus, ProposeReply, ProposeRequest, QueryRequest, ReadIndexReply,
    ReadIndexRequest, RemoveNodeRequest, StatusRequest,
};
use agentgate_runtime::net::Dialer;
use rand::RngCore;
use tonic::transport::Channel;
use tonic::{Code, Status};

/// gRPC metadata key marking a request one node forwarded to another (never forwarded twice).
pub const FORWARDED: &str = "x-agentgate-forwarded";

/// Why a call failed: the node's (or the transport's) status, or a payload this client could
/// not encode or understand.
#[derive(Debug, Clone, thiserror::Error)]
pub enum ClientError {
    #[error("{}", .0.message())]
    Status(Status),
    #[error("cannot encode the request: {0}")]
    Encode(String),
    #[error("the node's answer is not understood: {0}")]
    Decode(String),
    #[error("bad endpoint: {0}")]
    Endpoint(String),
}

impl ClientError {
    /// The gRPC status this error is, or would be on the wire.
    pub fn to_status(&self) -> Status {
        match self {
            ClientError::Status(s) => s.clone(),
            ClientError::Encode(m) => Status::internal(format!("cannot encode the request: {m}")),
            ClientError::Decode(m) => {
                Status::internal(format!("the answer is not understood: {m}"))
            }
            ClientError::Endpoint(m) => Status::invalid_argument(format!("bad endpoint: {m}")),
        }
    }

    pub fn code(&self) -> Code {
        match self {
            ClientError::Status(s) => s.code(),
            ClientError::Encode(_) | ClientError::Decode(_) => Code::Internal,
            ClientError::Endpoint(_) => Code::InvalidArgument,
        }
    }

    /// Whether the retry rule (module docs) retries a call that failed so.
    pub fn is_retryable(&self) -> bool {
        retryable(self.code())
    }
}

/// The codes the retry rule retries: the call's outcome is unknown or it was not served.
pub fn retryable(code: Code) -> bool {
    matches!(
        code,
        Code::Unavailable
            | Code::DeadlineExceeded
            | Code::Cancelled
            | Code::Aborted
            | Code::Unknown
    )
}

impl From<Status> for ClientError {
    fn from(s: Status) -> Self {
        ClientError::Status(s)
    }
}

/// How long and how often a call is retried (the rule is in the module docs).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Retry {
    /// Attempts at most, the first included (at least 1).
    pub attempts_max: u32,
    pub backoff_initial: Duration,
    pub backoff_max: Duration,
    /// No attempt starts later than this after the first.
    pub deadline: Duration,
}

impl Retry {
    /// One attempt, no retry (node-to-node forwarding: the caller that reached the node
    /// retries).
    pub const ONCE: Retry = Retry {
        attempts_max: 1,
        backoff_initial: Duration::ZERO,
        backoff_max: Duration::ZERO,
        deadline: Duration::ZERO,
    };

    /// Retry for up to `deadline`, backing off from 50 ms to 1 s.
    pub const fn within(deadline: Duration) -> Retry {
        Retry {
            attempts_max: 64,
            backoff_initial: Duration::from_millis(50),
            backoff_max: Duration::from_secs(1),
            deadline,
        }
    }

    /// The pause before attempt `n` (1-based; attempt 1 has none).
    pub fn backoff(&self, attempt: u32) -> Duration {
        if attempt <= 1 {
            return Duration::ZERO;
        }
        let doublings = (attempt - 2).min(16);
        self.backoff_initial
            .saturating_mul(1 << doublings)
            .min(self.backoff_max)
    }
}

/// Request ids for writes: a prefix unique to this client (random, or given) and a counter.
#[derive(Debug)]
pub struct RequestIds {
    prefix: String,
    next: AtomicU64,
}

impl RequestIds {
    /// Ids under `prefix` (for example an edge's incarnation id, which is unique already).
    pub fn with_prefix(prefix: impl Into<String>) -> Self {
        let mut prefix: String = prefix.into();
        // Room for `-` and a 20-digit counter within the limit.
        let keep = REQUEST_ID_BYTES_MAX.saturating_sub(21);
        while prefix.len() > keep {
            prefix.pop();
        }
        RequestIds {
            prefix,
            next: AtomicU64::new(1),
        }
    }

    /// Ids under a random 128-bit prefix drawn from `rng`.
    pub fn random(rng: &mut dyn RngCore) -> Self {
        let mut b = [0u8; 16];
        rng.fill_bytes(&mut b);
        let prefix: String = b.iter().map(|x| format!("{x:02x}")).collect();
        RequestIds::with_prefix(prefix)
    }

    /// The next id; never the same twice for one `RequestIds`.
    pub fn next_id(&self) -> String {
        format!(
            "{}-{}",
            self.prefix,
            self.next.fetch_add(1, Ordering::Relaxed)
        )
    }
}

/// What a committed write answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Proposed {
    /// The revision the write produced (for a replayed write, the first attempt's).
    pub revision: u64,
    pub log_index: u64,
    pub response: Response,
    /// The agent key of `CreateAgent`, shown once; `None` when the answer is a replay (the key
    /// went out with the first attempt's reply and is kept nowhere).
    pub api_key: Option<String>,
    /// The state machine had answered this request id before: this is that answer.
    pub replayed: bool,
}

/// How a [`Client`] reaches the core.
#[derive(Clone)]
pub struct ClientConfig {
    /// Deadline of each RPC.
    pub rpc_timeout: Duration,
    pub dialer: Dialer,
    /// Who is asking (recorded on every change).
    pub actor: String,
    pub retry: Retry,
}

struct Node {
    addr: String,
    rpc: AdminClient<Channel>,
}

/// The typed Admin client over a set of core nodes (any node serves; followers forward).
#[derive(Clone)]
pub struct Client {
    nodes: Arc<Vec<Node>>,
    /// The first node's stub (`nodes` is never empty; this avoids indexing).
    first: AdminClient<Channel>,
    /// The node tried first: the last one that answered.
    preferred: Arc<AtomicUsize>,
    ids: Arc<RequestIds>,
    config: ClientConfig,
}

/// An Admin stub for one node address (lazily connected, with deadlines and keepalive).
pub fn dial(
    addr: &str,
    rpc_timeout: Duration,
    dialer: &Dialer,
) -> Result<AdminClient<Channel>, ClientError> {
    agentgate_runtime::channel::lazy(addr, rpc_timeout, dialer)
        .map(|c| {
            AdminClient::new(c)
                .max_decoding_message_size(GRPC_MESSAGE_BYTES_MAX)
                .max_encoding_message_size(GRPC_MESSAGE_BYTES_MAX)
        })
        .map_err(ClientError::Endpoint)
}

/// A request carrying the current trace context (when traces are exported).
fn traced<T>(msg: T) -> tonic::Request<T> {
    let mut req = tonic::Request::new(msg);
    agentgate_runtime::telemetry::inject_current(req.metadata_mut());
    req
}

/// A request marked as forwarded by a node, with the current trace context.
fn forwarded<T>(msg: T) -> tonic::Request<T> {
    let mut req = traced(msg);
    req.metadata_mut()
        .insert(FORWARDED, tonic::metadata::MetadataValue::from_static("1"));
    req
}

/// Whether a request arriving at a node was forwarded by another node.
pub fn is_forwarded<T>(req: &tonic::Request<T>) -> bool {
    req.metadata().contains_key(FORWARDED)
}

/// A node's stubs for its peers, one per address, kept. The `forward_*` calls are one attempt
/// each, marked as forwarded (the receiving node must lead, and never forwards again) and
/// carrying the current trace context: the client that reached the forwarding node retries.
pub struct Peers {
    rpc_timeout: Duration,
    dialer: Dialer,
    stubs: Mutex<HashMap<String, AdminClient<Channel>>>,
}

impl Peers {
    pub fn new(rpc_timeout: Duration, dialer: Dialer) -> Self {
        Peers {
            rpc_timeout,
            dialer,
            stubs: Mutex::default(),
        }
    }

    fn stub(&self, addr: &str) -> Result<AdminClient<Channel>, ClientError> {
        let mut stubs = self
            .stubs
            .lock()
            .map_err(|_| ClientError::Endpoint("peer stubs poisoned".into()))?;
        if let Some(c) = stubs.get(addr) {
            return Ok(c.clone());
        }
        let c = dial(addr, self.rpc_timeout, &self.dialer)?;
        stubs.insert(addr.to_string(), c.clone());
        Ok(c)
    }

    pub async fn forward_propose(
        &self,
        addr: &str,
        req: ProposeRequest,
    ) -> Result<ProposeReply, ClientError> {
        Ok(self.stub(addr)?.propose(forwarded(req)).await?.into_inner())
    }

    pub async fn forward_read_index(&self, addr: &str) -> Result<ReadIndexReply, ClientError> {
        let req = forwarded(ReadIndexRequest {});
        Ok(self.stub(addr)?.read_index(req).await?.into_inner())
    }

    pub async fn forward_add_node(
        &self,
        addr: &str,
        req: AddNodeRequest,
    ) -> Result<ClusterStatus, ClientError> {
        Ok(self
            .stub(addr)?
            .add_node(forwarded(req))
            .await?
            .into_inner())
    }

    pub async fn forward_remove_node(
        &self,
        addr: &str,
        req: RemoveNodeRequest,
    ) -> Result<ClusterStatus, ClientError> {
        Ok(self
            .stub(addr)?
            .remove_node(forwarded(req))
            .await?
            .into_inner())
    }

    /// A peer's own view of the cluster (not forwarded).
    pub async fn status(&self, addr: &str) -> Result<ClusterStatus, ClientError> {
        Ok(self
            .stub(addr)?
            .status(StatusRequest {})
            .await?
            .into_inner())
    }

    /// Asks a peer to add a node (not forwarded: the peer forwards to its leader).
    pub async fn add_node(
        &self,
        addr: &str,
        req: AddNodeRequest,
    ) -> Result<ClusterStatus, ClientError> {
        Ok(self.stub(addr)?.add_node(traced(req)).await?.into_inner())
    }
}

/// Decodes a write's reply.
pub fn proposed(reply: ProposeReply) -> Result<Proposed, ClientError> {
    let response = serde_json::from_slice(&reply.response_json)
        .map_err(|e| ClientError::Decode(e.to_string()))?;
    Ok(Proposed {
        revision: reply.revision,
        log_index: reply.log_index,
        response,
        api_key: (!reply.api_key.is_empty()).then_some(reply.api_key),
        replayed: reply.replayed,
    })
}

impl Client {
    /// A client over `endpoints` (`HOST:PORT` of core nodes' gRPC listeners, tried in order),
    /// making request ids with `ids`.
    pub fn new(
        endpoints: &[String],
        ids: Arc<RequestIds>,
        config: ClientConfig,
    ) -> Result<Self, ClientError> {
        let nodes = endpoints
            .iter()
            .map(|addr| {
                Ok(Node {
                    addr: addr.clone(),
                    rpc: dial(addr, config.rpc_timeout, &config.dialer)?,
                })
            })
            .collect::<Result<Vec<_>, ClientError>>()?;
        let Some(first) = nodes.first().map(|n| n.rpc.clone()) else {
            return Err(ClientError::Endpoint("no core endpoint given".into()));
        };
        Ok(Client {
            first,
            nodes: Arc::new(nodes),
            preferred: Arc::new(AtomicUsize::new(0)),
            ids,
            config,
        })
    }

    /// The endpoint tried first (the last that answered).
    pub fn endpoint(&self) -> &str {
        let i = self.preferred.load(Ordering::Relaxed) % self.nodes.len();
        self.nodes.get(i).map_or("", |n| n.addr.as_str())
    }

    /// The Admin stub of the endpoint tried first, for the RPCs this client does not wrap.
    pub fn rpc(&self) -> AdminClient<Channel> {
        let i = self.preferred.load(Ordering::Relaxed) % self.nodes.len();
        self.nodes
            .get(i)
            .map_or_else(|| self.first.clone(), |n| n.rpc.clone())
    }

    /// Proposes `op` under a new request id, retried by the rule of the module docs.
    pub async fn propose(&self, op: &Op) -> Result<Proposed, ClientError> {
        let op_json = serde_json::to_vec(op).map_err(|e| ClientError::Encode(e.to_string()))?;
        let request = ProposeRequest {
            op_json,
            actor: self.config.actor.clone(),
            request_id: self.ids.next_id(),
        };
        let reply = self
            .call(|mut rpc| {
                let request = request.clone();
                async move { rpc.propose(traced(request)).await }
            })
            .await?;
        proposed(reply)
    }

    /// A linearizable read, retried by the rule of the module docs: (revision, result).
    pub async fn query(&self, q: &Query) -> Result<(u64, QueryResult), ClientError> {
        let query_json = serde_json::to_vec(q).map_err(|e| ClientError::Encode(e.to_string()))?;
        let reply = self
            .call(|mut rpc| {
                let query_json = query_json.clone();
                async move { rpc.query(traced(QueryRequest { query_json })).await }
            })
            .await?;
        let result = serde_json::from_slice(&reply.result_json)
            .map_err(|e| ClientError::Decode(e.to_string()))?;
        Ok((reply.revision, result))
    }

    /// Runs one RPC by the retry rule, moving to the next endpoint after each failed attempt.
    pub async fn call<T, F, Fut>(&self, mut rpc: F) -> Result<T, ClientError>
    where
        F: FnMut(AdminClient<Channel>) -> Fut,
        Fut: Future<Output = Result<tonic::Response<T>, Status>>,
    {
        let retry = self.config.retry;
        let started = tokio::time::Instant::now();
        let mut attempt = 1u32;
        loop {
            let i = self.preferred.load(Ordering::Relaxed) % self.nodes.len();
            let (addr, stub) = self
                .nodes
                .get(i)
                .map_or(("", &self.first), |n| (n.addr.as_str(), &n.rpc));
            match rpc(stub.clone()).await {
                Ok(r) => return Ok(r.into_inner()),
                Err(s) if retryable(s.code()) => {
                    let pause = retry.backoff(attempt + 1);
                    let late = started.elapsed() + pause > retry.deadline;
                    if attempt >= retry.attempts_max.max(1) || late {
                        return Err(ClientError::Status(s));
                    }
                    tracing::debug!(endpoint = %addr, attempt, code = ?s.code(), "core call failed; retrying on the next endpoint");
                    let _ = self.preferred.compare_exchange(
                        i,
                        (i + 1) % self.nodes.len(),
                        Ordering::Relaxed,
                        Ordering::Relaxed,
                    );
                    tokio::time::sleep(pause).await;
                    attempt += 1;
                }
                Err(s) => return Err(ClientError::Status(s)),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_unknown_outcomes_are_retried() {
        for c in [
            Code::Unavailable,
            Code::DeadlineExceeded,
            Code::Cancelled,
            Code::Aborted,
            Code::Unknown,
        ] {
            assert!(retryable(c), "{c:?}");
        }
        for c in [
            Code::InvalidArgument,
            Code::NotFound,
            Code::AlreadyExists,
            Code::FailedPrecondition,
            Code::ResourceExhausted,
            Code::PermissionDenied,
            Code::Unauthenticated,
            Code::Internal,
        ] {
            assert!(!retryable(c), "{c:?}");
        }
    }

    #[test]
    fn backoff_doubles_up_to_its_ceiling() {
        let r = Retry::within(Duration::from_secs(5));
        let got: Vec<u64> = (1..=8).map(|n| r.backoff(n).as_millis() as u64).collect();
        assert_eq!(got, [0, 50, 100, 200, 400, 800, 1000, 1000]);
        assert_eq!(Retry::ONCE.backoff(2), Duration::ZERO);
    }

    #[test]
    fn request_ids_are_unique_and_bounded() {
        let ids = RequestIds::with_prefix("edge-1");
        assert_eq!(ids.next_id(), "edge-1-1");
        assert_eq!(ids.next_id(), "edge-1-2");
        let long = RequestIds::with_prefix("x".repeat(500));
        assert!(long.next_id().len() <= REQUEST_ID_BYTES_MAX);
        use rand::SeedableRng;
        let mut rng = rand::rngs::StdRng::seed_from_u64(7);
        let a = RequestIds::random(&mut rng).next_id();
        let b = RequestIds::random(&mut rng).next_id();
        assert_ne!(a, b);
        assert_eq!(a.len(), 32 + 2);
    }
}
