//! AgentGate's gRPC contracts, generated from `proto/agentgate.proto` by tonic/prost, and the
//! conversions between model types and their wire form.
//!
//! - [`pb`]: the generated messages, clients and servers.
//! - [`channel`]: the one way to dial a core node (deadlines, keepalive).
//! - [`net`]: the transport seam (dialers and listeners; TCP or a simulated network).
//! - [`json`]: encoding/decoding of the `*_json` payload fields (model types as serde JSON).
//! - [`ops`]: what every binary serves besides its API: logs, `/livez` `/readyz` `/metrics`.
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

pub mod channel;
pub mod json;
pub mod net;
pub mod ops;
pub mod telemetry;
