//! AgentGate's gRPC contracts, generated from `proto/agentgate.proto` by tonic/prost, and the
//! conversions between model types and their wire form. Nothing else: sockets, dialing, health
//! and telemetry live in `agentgate-runtime`.
//!
//! - [`pb`]: the generated messages, clients and servers.
//! - [`json`]: encoding/decoding of the `*_json` payload fields (model types as serde JSON).
#![forbid(unsafe_code)]

#[allow(
    clippy::all,
    clippy::pedantic,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]
pub mod pb {
    tonic::include_proto!("agentgate.v1");
}

pub mod json;
