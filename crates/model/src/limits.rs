//! Every bound the core enforces, in one place. Units are last in each name.
//!
//! A request that exceeds one of these is rejected with an error naming the limit; nothing is
//! truncated silently.

/// Longest name (tenant, agent, server, tool, version, region, session, edge id).
pub const NAME_BYTES_MAX: usize = 128;
/// Longest free-text field (reasons, descriptions).
pub const TEXT_BYTES_MAX: usize = 4 * 1024;
/// Largest policy package (policies + schema + entities together).
pub const POLICY_PACKAGE_BYTES_MAX: usize = 2 * 1024 * 1024;
/// Largest single Raft log entry (a serialized command).
pub const RAFT_ENTRY_BYTES_MAX: usize = 4 * 1024 * 1024;
/// Bytes of log entries sent in one Raft AppendEntries (at least one entry is always sent;
/// the rest wait for the next round). openraft gives each AppendEntries one heartbeat
/// interval to complete, so this bounds the work a follower must finish in that time.
pub const RAFT_PAYLOAD_BYTES_MAX: usize = 1024 * 1024;
/// Largest gRPC message the node accepts or sends (the entry limit plus envelope room).
pub const GRPC_MESSAGE_BYTES_MAX: usize = 8 * 1024 * 1024;
/// Most audit records in one `AppendAudit` batch.
pub const AUDIT_BATCH_RECORDS_MAX: usize = 4_096;
/// Largest `AppendAudit` batch, its records serialized (edges cut batches to fit).
pub const AUDIT_BATCH_BYTES_MAX: usize = 2 * 1024 * 1024;
/// Largest single audit record, serialized.
pub const AUDIT_RECORD_BYTES_MAX: usize = 16 * 1024;
/// Most audit records one query returns; callers page with `after_seq`.
pub const AUDIT_QUERY_RECORDS_MAX: usize = 10_000;
/// Largest page of one audit query, its records serialized (the rest is the next page).
pub const AUDIT_QUERY_BYTES_MAX: usize = 4 * 1024 * 1024;
/// Most index entries one audit query scans before it returns a page and a cursor.
pub const AUDIT_QUERY_SCAN_MAX: usize = 1_000_000;
/// Deltas a node keeps so that a reconnecting watcher resumes without a full snapshot.
pub const WATCH_RECENT_DELTAS_MAX: usize = 4_096;
/// Events buffered per watcher before a slow watcher is cut off (it reconnects and resumes).
pub const WATCH_BUFFER_EVENTS_MAX: usize = 1_024;
/// Snapshot chunk size for Raft `InstallSnapshot`.
pub const SNAPSHOT_CHUNK_BYTES_MAX: u64 = 1024 * 1024;
/// Most roles or labels on one agent.
pub const AGENT_ROLES_MAX: usize = 64;
/// Most pinned tools on one upstream.
pub const PINNED_TOOLS_MAX: usize = 4_096;
/// Most canary steps in one rollout.
pub const ROLLOUT_STEPS_MAX: usize = 32;
/// Most history events kept per rollout (oldest are dropped first).
pub const ROLLOUT_HISTORY_MAX: usize = 256;
/// Most entities of one kind in the replicated state (tenants, agents, …, each counted apart).
pub const ENTITIES_PER_KIND_MAX: usize = 1_000_000;
/// Most approvals held per tenant, finished ones included until they are forgotten.
pub const APPROVALS_PER_TENANT_MAX: usize = 100_000;
/// Most approvals one agent may have pending at once: beyond it a call that needs a new
/// approval is refused (with a `retry_after_ms`) and causes no write.
pub const APPROVALS_PENDING_PER_AGENT_MAX: usize = 20;
/// Most approvals pending at once in one tenant (all its agents together).
pub const APPROVALS_PENDING_PER_TENANT_MAX: usize = 1_000;
/// Shortest retry advice given when a queue of pending approvals is full.
pub const APPROVAL_RETRY_AFTER_MS_MIN: u64 = 1_000;
/// Longest retry advice given when a queue is full (a slot may free sooner, when an operator
/// decides; a retry that finds the queue still full costs no write).
pub const APPROVAL_RETRY_AFTER_MS_MAX: u64 = 60_000;
/// How long a finished approval (consumed, denied, expired) is kept, leader time, before the
/// sweep forgets it. The audit log keeps the calls it was for.
pub const APPROVALS_FINISHED_RETAIN_MS: u64 = 24 * 60 * 60 * 1000;
/// Default lifetime of a pending approval.
pub const APPROVAL_TTL_MS_DEFAULT: u64 = 15 * 60 * 1000;
/// Longest client request id (the id that makes a retried write apply once).
pub const REQUEST_ID_BYTES_MAX: usize = 128;
/// How long the state machine remembers a request id's answer, leader time: a client retrying
/// the same write later than this may apply it again. Far above any client's retry deadline.
pub const REQUEST_IDS_RETAIN_MS: u64 = 10 * 60 * 1000;
/// Most request ids remembered at once (the oldest are forgotten first beyond it).
pub const REQUEST_IDS_MAX: usize = 50_000;
/// Largest answer kept whole for a request id; a larger one (a policy package) is kept as the
/// key of the immutable entity it returned and read back on replay.
pub const REQUEST_ANSWER_BYTES_MAX: usize = 16 * 1024;

/// Longest value kept in a record's name-like fields (tenant, agent, session, tool, …).
pub const AUDIT_FIELD_BYTES_MAX: usize = 256;

/// Longest `reason` kept in a record.
pub const AUDIT_REASON_BYTES_MAX: usize = 1024;

/// Most policy ids kept in a record.
pub const AUDIT_POLICY_IDS_MAX: usize = 32;

/// Most policy copies slicing may make (general policies × tools with their own policies);
/// above it the full set is used.
pub const SLICE_POLICY_COPIES_MAX: usize = 2_000_000;

/// Room reserved for what wraps a payload (a command's fields, a gRPC reply's other fields, a
/// stored record's sequence number, edge id and hashes).
pub const ENVELOPE_BYTES: usize = 64 * 1024;

// The relations between the limits, checked when the crate compiles.
const _: () = {
    // A single audit record always fits a batch, a batch fits a Raft entry, an entry fits a
    // gRPC message.
    assert!(AUDIT_RECORD_BYTES_MAX <= AUDIT_BATCH_BYTES_MAX);
    assert!(AUDIT_BATCH_BYTES_MAX + ENVELOPE_BYTES <= RAFT_ENTRY_BYTES_MAX);
    assert!(RAFT_ENTRY_BYTES_MAX + ENVELOPE_BYTES <= GRPC_MESSAGE_BYTES_MAX);
    // A policy package, even with every byte escaped twice over in JSON, fits an entry.
    assert!(2 * POLICY_PACKAGE_BYTES_MAX <= RAFT_ENTRY_BYTES_MAX);
    // What one AppendEntries, snapshot chunk or query page carries fits a gRPC message.
    assert!(RAFT_PAYLOAD_BYTES_MAX + ENVELOPE_BYTES <= GRPC_MESSAGE_BYTES_MAX);
    assert!(SNAPSHOT_CHUNK_BYTES_MAX as usize + ENVELOPE_BYTES <= GRPC_MESSAGE_BYTES_MAX);
    assert!(AUDIT_QUERY_BYTES_MAX + ENVELOPE_BYTES <= GRPC_MESSAGE_BYTES_MAX);
    // A stored record (an entry and its envelope) always fits a query page.
    assert!(AUDIT_RECORD_BYTES_MAX + ENVELOPE_BYTES <= AUDIT_QUERY_BYTES_MAX);
    // An audit entry's bounded fields fit the record bound before escaping; escaping is then
    // measured (`AuditEntry::bounded`).
    assert!(
        8 * AUDIT_FIELD_BYTES_MAX
            + AUDIT_REASON_BYTES_MAX
            + AUDIT_POLICY_IDS_MAX * AUDIT_FIELD_BYTES_MAX
            + 1024
            <= AUDIT_RECORD_BYTES_MAX
    );
    // A request id's remembered answer is small beside an entry; names fit free text.
    assert!(REQUEST_ANSWER_BYTES_MAX + ENVELOPE_BYTES <= RAFT_ENTRY_BYTES_MAX);
    assert!(REQUEST_ID_BYTES_MAX <= NAME_BYTES_MAX);
    assert!(NAME_BYTES_MAX <= TEXT_BYTES_MAX);
    assert!(WATCH_BUFFER_EVENTS_MAX <= WATCH_RECENT_DELTAS_MAX);
    // An agent's queue fits its tenant's, which fits what a tenant may hold at all.
    assert!(APPROVALS_PENDING_PER_AGENT_MAX <= APPROVALS_PENDING_PER_TENANT_MAX);
    assert!(APPROVALS_PENDING_PER_TENANT_MAX <= APPROVALS_PER_TENANT_MAX);
    assert!(APPROVAL_RETRY_AFTER_MS_MIN <= APPROVAL_RETRY_AFTER_MS_MAX);
};
