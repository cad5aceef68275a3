//! What AgentGate's binaries run on, shared by the node, the edge, the CLI, the test harness and
//! the simulation.
//!
//! - [`clock`]: the one place that reads time; everything else takes a [`clock::Clock`].
//! - [`limits`]: the trace export's bounds.
//! - [`net`]: the transport seam: every socket a binary dials or accepts goes through a
//!   [`net::Dialer`] or [`net::Listener`] (TCP in production, turmoil in `tests/sim`).
//! - [`channel`]: the one way to dial a core node (deadlines, keepalive).
//! - [`ops`]: what every binary serves besides its API: `/livez` `/readyz` `/metrics`, and the
//!   metric descriptions.
//! - [`telemetry`]: JSON logs with trace ids, OTLP trace export (bounded, never blocking), and
//!   W3C context propagation through HTTP headers and gRPC metadata.
//! - [`tls`]: TLS 1.3 with mutual authentication from PEM files reloaded when they change, and
//!   the URI SANs (SPIFFE identities) of a peer's certificate.
//!
//! INVARIANT: only [`clock`] reads the system clock (clippy's `disallowed-methods` points here).
#![forbid(unsafe_code)]

pub mod channel;
pub mod clock;
pub mod limits;
pub mod net;
pub mod ops;
pub mod telemetry;
pub mod tls;
