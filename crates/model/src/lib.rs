//! AgentGate's pure domain model: everything the core replicates and how it changes.
//!
//! - [`ids`]: names of tenants, agents, tools… and their validation.
//! - [`limits`]: every size and count bound the cluster enforces, in one place.
//! - [`entity`]: the replicated entities (tenants, agents, upstreams, policy packages, rollouts,
//!   kill switches, quotas, approvals) and their keys.
//! - [`command`]: what enters the Raft log: an [`command::Op`] stamped by the leader with time.
//! - [`state`]: the replicated state machine's in-memory image.
//! - [`authz`]: identities, roles and bindings, and the one `authorize(identity, call)`.
//! - [`approval`]: where a call needing approval stands (the identical request, room, a full
//!   queue), read the same way by apply and by the edge.
//! - [`apply()`]: the pure transition `apply(state, command) -> (result, changes)`.
//! - [`change`]: what one applied command changed, for persistence and for edge watch deltas.
//! - [`policy`]: Cedar package validation and hashing.
//! - [`decide`]: a package compiled once, and the fail-closed `decide(call) -> Verdict`.
//! - [`cases`]: policy test cases (request → expected decision) and their evaluation.
//! - [`guard`]: rollout guards: canary decisions against thresholds (automatic rollback).
//! - [`digest`]: argument and tool-definition digests (approvals, audit, pins).
//! - [`audit`]: decision records, the hash chain, and its verification.
//! - [`query`]: the read requests the admin API answers, and their pure answers.
//! - [`request`]: request ids: a retried write applies once and answers as the first did.
//! - [`sweep`]: which expiry sweeps the leader should propose at a time.
//!
//! INVARIANT: this crate does no I/O and reads no clock or randomness: time arrives in
//! [`command::Command::time_ms`], stamped by the Raft leader, so every replica applies
//! every command to the same result.
#![forbid(unsafe_code)]

pub mod apply;
pub mod approval;
pub mod audit;
pub mod authz;
pub mod cases;
pub mod change;
pub mod command;
pub mod decide;
pub mod digest;
pub mod entity;
pub mod error;
pub mod guard;
pub mod ids;
pub mod limits;
pub mod policy;
pub mod query;
pub mod request;
pub mod state;
pub mod sweep;

pub use apply::apply;
pub use change::Change;
pub use command::{Command, Op, Response};
pub use error::ApplyError;
pub use state::State;
