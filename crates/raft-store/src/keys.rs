//! Every RocksDB column family and key layout, in one place.
//!
//! Integers are big-endian so that byte order is numeric order. Names never contain `/` or NUL
//! (see `agentgate_model::ids::validate_name`), so `/`-joined keys and NUL-separated index keys
//! cannot collide.

use agentgate_model::audit::AuditRecord;
use agentgate_model::entity::Kind;

/// Raft log entries: `index` → entry JSON.
pub const CF_LOGS: &str = "logs";
/// Raft and state-machine metadata: the `META_*` keys below.
pub const CF_META: &str = "meta";
/// Audit records: `seq` → record JSON.
pub const CF_AUDIT: &str = "audit";
/// Audit secondary indexes: `[index tag][value][0][seq]` → empty.
pub const CF_AUDIT_INDEX: &str = "audit_index";
/// The last built or installed snapshot: `META_SNAPSHOT` → snapshot meta + data.
pub const CF_SNAPSHOT: &str = "snapshot";
/// Answers of recent client request ids: `request id` → answer JSON.
pub const CF_REQUESTS: &str = "requests";

pub const META_VOTE: &[u8] = b"vote";
pub const META_COMMITTED: &[u8] = b"committed";
pub const META_LAST_PURGED: &[u8] = b"last_purged";
pub const META_LAST_APPLIED: &[u8] = b"sm_last_applied";
pub const META_MEMBERSHIP: &[u8] = b"sm_membership";
/// Revision, audit head and per-edge audit acks.
pub const META_SM: &[u8] = b"sm_meta";
/// The current snapshot's meta (in `CF_SNAPSHOT`).
pub const META_SNAPSHOT: &[u8] = b"current";
/// The current snapshot's data (in `CF_SNAPSHOT`).
pub const META_SNAPSHOT_DATA: &[u8] = b"current_data";

/// The column family holding one entity kind: `entity_<kind>`, key = entity key.
pub fn entity_cf(kind: Kind) -> String {
    format!("entity_{}", kind.as_str())
}

/// All column families the store opens.
pub fn all_cfs() -> Vec<String> {
    let mut v: Vec<String> = [
        CF_LOGS,
        CF_META,
        CF_AUDIT,
        CF_AUDIT_INDEX,
        CF_SNAPSHOT,
        CF_REQUESTS,
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    v.extend(Kind::ALL.iter().map(|k| entity_cf(*k)));
    v
}

/// The column families that hold state-machine data (cleared on snapshot install).
pub fn state_cfs() -> Vec<String> {
    let mut v = vec![
        CF_AUDIT.to_string(),
        CF_AUDIT_INDEX.to_string(),
        CF_REQUESTS.to_string(),
    ];
    v.extend(Kind::ALL.iter().map(|k| entity_cf(*k)));
    v
}

pub fn log_key(index: u64) -> [u8; 8] {
    index.to_be_bytes()
}

pub fn decode_u64(bytes: &[u8]) -> Option<u64> {
    Some(u64::from_be_bytes(bytes.try_into().ok()?))
}

pub fn audit_key(seq: u64) -> [u8; 8] {
    seq.to_be_bytes()
}

/// Which secondary index an index key belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum AuditIndex {
    Tenant = 1,
    /// `tenant/agent`
    Agent = 2,
    /// `tenant/session`
    Session = 3,
    Tool = 4,
    Decision = 5,
}

/// The prefix of every index key for `(index, value)`; the seq follows it.
pub fn index_prefix(index: AuditIndex, value: &[u8]) -> Vec<u8> {
    let mut k = Vec::with_capacity(value.len() + 10);
    k.push(index as u8);
    k.extend_from_slice(value);
    k.push(0);
    k
}

pub fn index_key(index: AuditIndex, value: &[u8], seq: u64) -> Vec<u8> {
    let mut k = index_prefix(index, value);
    k.extend_from_slice(&seq.to_be_bytes());
    k
}

/// The seq at the end of an index key.
pub fn index_key_seq(key: &[u8]) -> Option<u64> {
    let tail = key
        .len()
        .checked_sub(8)
        .and_then(|start| key.get(start..))?;
    decode_u64(tail)
}

/// Every index key a record is filed under.
pub fn index_keys(r: &AuditRecord) -> Vec<Vec<u8>> {
    let e = &r.entry;
    let mut keys = vec![
        index_key(AuditIndex::Tenant, e.tenant.as_bytes(), r.seq),
        index_key(
            AuditIndex::Agent,
            format!("{}/{}", e.tenant, e.agent).as_bytes(),
            r.seq,
        ),
        index_key(AuditIndex::Decision, e.decision.as_str().as_bytes(), r.seq),
    ];
    if let Some(s) = &e.session {
        keys.push(index_key(
            AuditIndex::Session,
            format!("{}/{}", e.tenant, s).as_bytes(),
            r.seq,
        ));
    }
    if let Some(t) = &e.tool {
        keys.push(index_key(AuditIndex::Tool, t.as_bytes(), r.seq));
    }
    keys
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn big_endian_keys_sort_numerically() {
        assert!(log_key(255) < log_key(256));
        assert!(index_key(AuditIndex::Tenant, b"t", 2) < index_key(AuditIndex::Tenant, b"t", 10));
        assert_eq!(
            index_key_seq(&index_key(AuditIndex::Tool, b"echo", 77)),
            Some(77)
        );
    }

    #[test]
    fn index_values_do_not_run_into_each_other() {
        // "t" + seq must never fall inside the prefix range of tenant "t\x00…" style names.
        let a = index_prefix(AuditIndex::Tenant, b"t");
        let b = index_key(AuditIndex::Tenant, b"tx", 1);
        assert!(!b.starts_with(&a));
    }
}
