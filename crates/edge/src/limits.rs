//! Every bound the edge enforces beyond the cluster-wide ones (`agentgate_model::limits`), in
//! one place. Units are last in each name. Settings an operator chooses (body size, requests in
//! flight, the audit buffer) are flags; these are the fixed bounds behind them.

/// Deepest JSON nesting accepted.
pub const JSON_DEPTH_MAX: usize = 64;

/// Most messages in one JSON-RPC batch (batches exist only in 2025-03-26).
pub const BATCH_MESSAGES_MAX: usize = 64;

/// Frames buffered between an upstream stream and a slow agent.
pub const STREAM_FRAMES_BUFFERED: usize = 16;

/// Largest request head (request line and headers) accepted, bytes.
pub const HEAD_BYTES_MAX: usize = 64 * 1024;

/// Concurrent HTTP/2 streams per agent connection.
pub const H2_STREAMS_MAX: u32 = 256;

/// Most tools remembered per upstream.
pub const TOOLS_PER_SERVER_MAX: usize = 4096;

/// Longest reply the edge reads whole (`tools/list` filtering, catalog fetches).
pub const WHOLE_REPLY_BYTES_MAX: usize = 8 * 1024 * 1024;

/// Most `tools/list` pages the catalog fetch follows.
pub const CATALOG_PAGES_MAX: usize = 16;

/// How long a tool list the edge fetched itself answers calls for tools it does not list,
/// milliseconds: at most one fetch per upstream per interval, whatever names agents make up.
pub const CATALOG_REFETCH_MS: u64 = 2_000;

/// Shortest accepted session key.
pub const SESSION_KEY_BYTES_MIN: usize = 32;

/// Longest `Mcp-Session-Id` accepted from an agent or an upstream.
pub const SESSION_ID_BYTES_MAX: usize = 1024;

/// Most argument bytes scanned per call.
pub const SCAN_BYTES_MAX: usize = 256 * 1024;

/// Most strings scanned per call.
pub const SCAN_STRINGS_MAX: usize = 4096;

// The relations between the limits, checked when the crate compiles.
const _: () = {
    // The HTTP/2 header list bound is a u32 (`server.rs`).
    assert!(HEAD_BYTES_MAX <= u32::MAX as usize);
    // A session id fits a request head; a fetched catalog's pages fit what is read whole.
    assert!(SESSION_ID_BYTES_MAX < HEAD_BYTES_MAX);
    assert!(SCAN_BYTES_MAX <= WHOLE_REPLY_BYTES_MAX);
    // A session key shorter than a SHA-256 block weakens the HMAC.
    assert!(SESSION_KEY_BYTES_MIN >= 32);
    assert!(BATCH_MESSAGES_MAX >= 1 && STREAM_FRAMES_BUFFERED >= 1);
};
