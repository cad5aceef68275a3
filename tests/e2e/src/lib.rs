//! AgentGate end to end: the whole system as real processes on 127.0.0.1 (core nodes, edges,
//! the CLI) driven by real MCP clients against real MCP servers, and the system benchmarks.
//! Everything lives in `tests/` and `benches/`; the harness is `agentgate-testkit`. Keeping
//! them here means no production crate dev-depends on a sibling binary crate.
#![forbid(unsafe_code)]
