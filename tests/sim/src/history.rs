//! What the simulated world observed, recorded from the outside (the agents' and operators'
//! side of every call, the fault schedule as applied, leadership as each node reported it).
//! The invariants read only this and the cluster's final state.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use agentgate_model::entity::Scope;

/// How an agent's call ended, as the agent saw it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// The upstream's result came back: the edge admitted the call.
    Admitted,
    /// A gateway decision: a JSON-RPC error with AgentGate's code.
    Denied(i64),
    /// No decision seen: a transport error, a timeout, an unparsable reply.
    Failed(String),
}

#[derive(Debug, Clone)]
pub struct Call {
    pub agent: usize,
    pub edge: usize,
    pub tool: String,
    /// The short session name (what a session kill switch names) for a legacy client's call.
    pub session: Option<String>,
    /// W3C trace id sent with the call (unique per call); the audit record carries it.
    pub trace_id: String,
    pub sent_ms: u64,
    pub done_ms: u64,
    pub outcome: Outcome,
}

/// An operator's admin call.
#[derive(Debug, Clone)]
pub enum AdminKind {
    Engage(Scope),
    Release(Scope),
    /// Reads whether the global pause is engaged.
    ReadGlobal,
    PushPolicy(String),
    Activate(String),
    StartRollout(String),
    Promote,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AdminResult {
    /// Acknowledged (a read's answer: engaged or not).
    Ok(Option<bool>),
    /// Rejected by the state machine (e.g. releasing a switch that is not engaged): committed
    /// as a no-op.
    Rejected(String),
    /// No answer or an unavailable cluster: it may or may not have committed.
    Unknown(String),
}

#[derive(Debug, Clone)]
pub struct AdminOp {
    /// Logical operator thread (a fresh one after every unknown outcome, so each thread has at
    /// most one operation in flight, as linearizability checking needs).
    pub thread: u64,
    pub kind: AdminKind,
    pub invoked_ms: u64,
    /// Global order of invocation and return events.
    pub invoked_seq: u64,
    pub returned_ms: u64,
    pub returned_seq: u64,
    pub result: AdminResult,
}

/// A node reported itself leader of `term`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Leadership {
    pub node: u64,
    pub term: u64,
    pub at_ms: u64,
}

/// One fault as the driver applied it.
#[derive(Debug, Clone)]
pub struct AppliedFault {
    pub from_ms: u64,
    pub to_ms: u64,
    pub fault: crate::schedule::Fault,
}

/// One edge process lifetime.
#[derive(Debug, Clone)]
pub struct EdgeIncarnation {
    pub edge: usize,
    pub edge_id: String,
    pub started_ms: u64,
    pub crashed_ms: Option<u64>,
}

#[derive(Debug, Default)]
pub struct Log {
    pub calls: Vec<Call>,
    pub admin: Vec<AdminOp>,
    pub leaders: Vec<Leadership>,
    pub faults: Vec<AppliedFault>,
    pub edges: Vec<EdgeIncarnation>,
    /// Short names of the sessions agents opened, in order (operators pick kill targets here).
    pub sessions: Vec<String>,
    /// Notes for the report (setup retries, phase changes).
    pub notes: Vec<String>,
    /// Each node's last reported Raft metrics, for diagnosing a run.
    pub raft: std::collections::BTreeMap<u64, String>,
}

/// Shared by every simulated host of one run.
#[derive(Debug, Clone, Default)]
pub struct History {
    log: Arc<Mutex<Log>>,
    seq: Arc<AtomicU64>,
}

impl History {
    pub fn lock(&self) -> MutexGuard<'_, Log> {
        // A panic while holding it has already failed the run; the log is still readable.
        self.log
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The next global event number.
    pub fn next_seq(&self) -> u64 {
        self.seq.fetch_add(1, Ordering::Relaxed)
    }
}
