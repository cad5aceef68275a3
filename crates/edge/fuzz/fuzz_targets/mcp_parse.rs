//! Fuzzes the MCP JSON-RPC parser with arbitrary bodies and header combinations.
//! The parser must never panic, hang or accept nesting beyond its limit.
#![no_main]

use agentgate_edge::mcp::{Headers, parse};
use libfuzzer_sys::fuzz_target;

const VERSIONS: [Option<&str>; 4] = [None, Some("2026-07-28"), Some("2025-03-26"), Some("2025-06-18")];
const METHODS: [Option<&str>; 4] = [None, Some("tools/call"), Some("tools/list"), Some("initialize")];
const NAMES: [Option<&str>; 3] = [None, Some("echo"), Some("")];

fuzz_target!(|data: &[u8]| {
    // The first byte picks the headers and session revision; the rest is the body.
    let Some((&sel, body)) = data.split_first() else { return };
    let pick = |n: u8, m: usize| usize::from(n) % m;
    let headers = Headers {
        protocol_version: VERSIONS[pick(sel, 4)],
        mcp_method: METHODS[pick(sel >> 2, 4)],
        mcp_name: NAMES[pick(sel >> 4, 3)],
    };
    let session = VERSIONS[pick(sel >> 6, 4)];
    if let Ok(parsed) = parse(body, &headers, session) {
        assert!(!parsed.messages.is_empty());
    }
});
