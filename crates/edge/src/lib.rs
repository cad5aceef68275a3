//! `agentgate-edge`: the stateless MCP gateway.
//!
//! - [`server`]: wiring, listeners, graceful shutdown; [`config`]: flags.
//! - [`proxy`]: the MCP endpoint `/t/{tenant}/{server}/mcp`, the HTTP layer: route, check
//!   headers, read and parse, orchestrate (catalog, approvals, audit), forward.
//! - [`pipeline`]: the decision for one request without HTTP: facts and view → verdict and
//!   audit entry (pure).
//! - [`view`]: the replica and what is derived from it per revision; policy precompilation.
//! - [`relay`]: relaying replies (sealed session ids, streams cut by kill switches).
//! - [`limits`]: every bound of the edge's own, with their relations checked at compile time.
//! - [`error`]: the edge's one error type and its one mapping to HTTP + JSON-RPC.
//! - [`upstream`]: the pooled upstream client and header allowlists; [`sse`]: SSE framing.
//! - [`session`]: signed session tokens, so legacy sessions work through any edge.
//! - [`trace`]: W3C context in and out (MCP `_meta`, headers), request spans, the access log.
//! - [`catalog`]: upstream tools' annotations and pins; [`detect`]: argument detectors.
//! - [`approvals`]: using or requesting an operator's approval through the core.
//! - [`decision`]: authentication, the policy cache and the policy decision for one call.
//! - [`audit`]: the bounded audit buffer and its shipper to the core (design.md G3).
//! - [`lease`]: the freshness lease (design.md G2), pure.
//! - [`gate`]: kill switches, freshness and rollout version choice before Cedar; error codes.
//! - [`mcp`]: MCP JSON-RPC parsing with limits and the stateless revision's header checks, pure.
//! - [`follower`]: keeps a local replica of the replicated state from the core's watch feed and
//!   renews the lease with read-index confirmations.
//!
//! INVARIANT: the edge never writes to Raft directly and never depends on the node crate (no
//! Raft, no RocksDB here); it talks to the core only through the EdgeSync API.
//! INVARIANT: no fresh lease ⇒ the snapshot is stale ⇒ tool calls are denied.
#![forbid(unsafe_code)]

pub mod approvals;
pub mod audit;
pub mod catalog;
pub mod config;
pub mod decision;
pub mod detect;
pub mod error;
pub mod follower;
pub mod gate;
pub mod lease;
pub mod limits;
pub mod mcp;
pub mod pipeline;
pub mod proxy;
pub mod relay;
pub mod server;
pub mod session;
pub mod sse;
pub mod trace;
pub mod upstream;
pub mod view;
