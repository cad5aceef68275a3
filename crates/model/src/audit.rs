//! Decision records and the tamper-evident hash chain over them (design.md G3, G4).
//!
//! Each stored [`AuditRecord`] carries a global sequence number and
//! `hash = SHA-256("agentgate-audit-v1" ‖ prev_hash ‖ seq ‖ canonical JSON of (edge_id, entry))`.
//! [`verify_chain`] re-derives every hash from an export, so any altered, removed, inserted or
//! reordered record is found, with the first bad sequence number.

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::ids::EdgeId;
use crate::limits::{
    AUDIT_FIELD_BYTES_MAX, AUDIT_POLICY_IDS_MAX, AUDIT_REASON_BYTES_MAX, AUDIT_RECORD_BYTES_MAX,
};

/// The `prev_hash` of the first record.
pub const GENESIS_HASH: &str = "0000000000000000000000000000000000000000000000000000000000000000";

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Decision {
    Allow,
    Deny,
    RequireApproval,
}

impl Decision {
    pub fn as_str(self) -> &'static str {
        match self {
            Decision::Allow => "allow",
            Decision::Deny => "deny",
            Decision::RequireApproval => "require_approval",
        }
    }
}

/// One decision as an edge reports it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditEntry {
    /// Per-edge sequence number, strictly increasing; `(edge_id, edge_seq)` makes delivery
    /// idempotent.
    pub edge_seq: u64,
    /// Edge wall-clock time of the decision, ms since the Unix epoch.
    pub time_ms: u64,
    pub tenant: String,
    pub agent: String,
    #[serde(default)]
    pub session: Option<String>,
    pub method: String,
    #[serde(default)]
    pub tool: Option<String>,
    #[serde(default)]
    pub args_digest: Option<String>,
    pub decision: Decision,
    #[serde(default)]
    pub reason: String,
    #[serde(default)]
    pub policy_version: Option<String>,
    #[serde(default)]
    pub policy_ids: Vec<String>,
    #[serde(default)]
    pub shadow_decision: Option<Decision>,
    /// The gateway's own time to decide.
    #[serde(default)]
    pub latency_us: u64,
    /// Time from forwarding to the upstream's response head (absent when not forwarded).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub upstream_latency_us: Option<u64>,
    #[serde(default)]
    pub upstream_status: Option<u16>,
    #[serde(default)]
    pub trace_id: Option<String>,
}

fn cap(s: &mut String, max: usize) {
    if s.len() > max {
        let mut end = max;
        while !s.is_char_boundary(end) {
            end -= 1;
        }
        s.truncate(end);
    }
}

impl AuditEntry {
    /// The entry with every field cut to its bound, so that the serialized record always fits
    /// `AUDIT_RECORD_BYTES_MAX` (request-supplied strings can be arbitrarily long).
    pub fn bounded(mut self) -> Self {
        for f in [&mut self.tenant, &mut self.agent, &mut self.method] {
            cap(f, AUDIT_FIELD_BYTES_MAX);
        }
        for f in [
            &mut self.session,
            &mut self.tool,
            &mut self.args_digest,
            &mut self.policy_version,
            &mut self.trace_id,
        ]
        .into_iter()
        .flatten()
        {
            cap(f, AUDIT_FIELD_BYTES_MAX);
        }
        cap(&mut self.reason, AUDIT_REASON_BYTES_MAX);
        self.policy_ids.truncate(AUDIT_POLICY_IDS_MAX);
        for id in &mut self.policy_ids {
            cap(id, AUDIT_FIELD_BYTES_MAX);
        }
        // JSON writes a control character as six bytes: an entry that could exceed the bound
        // once escaped is measured, and shrunk (policy ids first, then the reason) until it fits.
        // Most entries are far below the bound and are not serialized here.
        if 6 * self.text_bytes() + 1024 > AUDIT_RECORD_BYTES_MAX {
            while serde_json::to_vec(&self).map_or(usize::MAX, |v| v.len()) > AUDIT_RECORD_BYTES_MAX
            {
                if self.policy_ids.pop().is_none() {
                    let half = self.reason.len() / 2;
                    if half == 0 {
                        for f in [&mut self.tenant, &mut self.agent, &mut self.method] {
                            cap(f, f.len() / 2);
                        }
                        for f in [&mut self.session, &mut self.tool, &mut self.args_digest]
                            .into_iter()
                            .flatten()
                        {
                            cap(f, f.len() / 2);
                        }
                    }
                    cap(&mut self.reason, half);
                }
            }
        }
        self
    }

    /// The bytes of the entry's text fields, unescaped.
    fn text_bytes(&self) -> usize {
        let opt = |s: &Option<String>| s.as_ref().map_or(0, String::len);
        self.tenant.len()
            + self.agent.len()
            + self.method.len()
            + self.reason.len()
            + opt(&self.session)
            + opt(&self.tool)
            + opt(&self.args_digest)
            + opt(&self.policy_version)
            + opt(&self.trace_id)
            + self.policy_ids.iter().map(String::len).sum::<usize>()
    }
}

/// A record as the audit index stores it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditRecord {
    pub seq: u64,
    pub edge_id: EdgeId,
    pub entry: AuditEntry,
    /// Leader time of the commit that appended it.
    pub committed_ms: u64,
    pub prev_hash: String,
    pub hash: String,
}

/// The chain's tip, part of the replicated state.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditHead {
    /// Sequence number the next record gets (the first record is 1).
    pub next_seq: u64,
    pub last_hash: String,
}

impl Default for AuditHead {
    fn default() -> Self {
        AuditHead {
            next_seq: 1,
            last_hash: GENESIS_HASH.to_string(),
        }
    }
}

/// What one `AppendAudit` did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditAppend {
    /// Records newly appended.
    pub appended: u64,
    /// Records skipped because the edge had already delivered them.
    pub duplicates: u64,
    /// Global sequence numbers of the appended records, if any.
    pub first_seq: Option<u64>,
    pub last_seq: Option<u64>,
    /// The highest `edge_seq` the index now holds for this edge: the edge may drop its copy of
    /// every record up to it.
    pub acked_edge_seq: u64,
}

#[derive(Serialize)]
struct Hashed<'a> {
    edge_id: &'a str,
    entry: &'a AuditEntry,
    committed_ms: u64,
}

/// Computes a record's hash from its predecessor's.
pub fn record_hash(
    prev_hash: &str,
    seq: u64,
    edge_id: &str,
    entry: &AuditEntry,
    committed_ms: u64,
) -> String {
    let mut h = Sha256::new();
    h.update(b"agentgate-audit-v1");
    h.update(prev_hash.as_bytes());
    h.update(seq.to_be_bytes());
    // Serializing a struct of strings and numbers cannot fail; an empty body would still chain.
    let body = serde_json::to_vec(&Hashed {
        edge_id,
        entry,
        committed_ms,
    })
    .unwrap_or_default();
    h.update(&body);
    hex::encode(h.finalize())
}

/// Why an export does not verify.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ChainError {
    #[error(
        "record {seq}: expected sequence number {expected} (a record is missing or out of order)"
    )]
    Sequence { seq: u64, expected: u64 },
    #[error("record {seq}: prev_hash does not match the previous record's hash")]
    Link { seq: u64 },
    #[error("record {seq}: hash does not match its content (the record was altered)")]
    Content { seq: u64 },
}

impl ChainError {
    pub fn seq(&self) -> u64 {
        match self {
            ChainError::Sequence { seq, .. }
            | ChainError::Link { seq }
            | ChainError::Content { seq } => *seq,
        }
    }
}

/// Incremental verifier: feed records in sequence order.
#[derive(Debug, Clone)]
pub struct ChainVerifier {
    expected_seq: Option<u64>,
    prev_hash: Option<String>,
    pub verified: u64,
}

impl ChainVerifier {
    /// Starts at the genesis (`from_genesis`) or trusts the first record's `prev_hash` (for
    /// verifying a slice of the chain).
    pub fn new(from_genesis: bool) -> Self {
        ChainVerifier {
            expected_seq: from_genesis.then_some(1),
            prev_hash: from_genesis.then(|| GENESIS_HASH.to_string()),
            verified: 0,
        }
    }

    pub fn push(&mut self, r: &AuditRecord) -> Result<(), ChainError> {
        if let Some(expected) = self.expected_seq
            && r.seq != expected
        {
            return Err(ChainError::Sequence {
                seq: r.seq,
                expected,
            });
        }
        if let Some(prev) = &self.prev_hash
            && &r.prev_hash != prev
        {
            return Err(ChainError::Link { seq: r.seq });
        }
        if record_hash(&r.prev_hash, r.seq, &r.edge_id, &r.entry, r.committed_ms) != r.hash {
            return Err(ChainError::Content { seq: r.seq });
        }
        self.expected_seq = Some(r.seq + 1);
        self.prev_hash = Some(r.hash.clone());
        self.verified += 1;
        Ok(())
    }
}

/// Verifies a whole export from the genesis record.
pub fn verify_chain<'a>(
    records: impl IntoIterator<Item = &'a AuditRecord>,
) -> Result<u64, ChainError> {
    let mut v = ChainVerifier::new(true);
    for r in records {
        v.push(r)?;
    }
    Ok(v.verified)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::limits::AUDIT_RECORD_BYTES_MAX;

    #[test]
    fn a_bounded_entry_always_fits_a_record() {
        let huge = "é".repeat(100_000);
        let e = AuditEntry {
            edge_seq: u64::MAX,
            time_ms: u64::MAX,
            tenant: huge.clone(),
            agent: huge.clone(),
            session: Some(huge.clone()),
            method: huge.clone(),
            tool: Some(huge.clone()),
            args_digest: Some(huge.clone()),
            decision: Decision::RequireApproval,
            reason: huge.clone(),
            policy_version: Some(huge.clone()),
            policy_ids: vec![huge.clone(); 1_000],
            shadow_decision: Some(Decision::RequireApproval),
            latency_us: u64::MAX,
            upstream_latency_us: None,
            upstream_status: Some(u16::MAX),
            trace_id: Some(huge),
        }
        .bounded();
        let size = serde_json::to_vec(&e).unwrap().len();
        assert!(size <= AUDIT_RECORD_BYTES_MAX, "{size}");
        assert!(e.tenant.len() <= AUDIT_FIELD_BYTES_MAX && e.tenant.starts_with('é'));
        // Control characters, six bytes each once escaped, are measured and shrunk to fit too.
        let ctrl = "\u{1}".repeat(100_000);
        let e = AuditEntry {
            tenant: ctrl.clone(),
            agent: ctrl.clone(),
            session: Some(ctrl.clone()),
            method: ctrl.clone(),
            tool: Some(ctrl.clone()),
            reason: ctrl.clone(),
            policy_ids: vec![ctrl.clone(); 1_000],
            trace_id: Some(ctrl.clone()),
            ..e
        }
        .bounded();
        let size = serde_json::to_vec(&e).unwrap().len();
        assert!(size <= AUDIT_RECORD_BYTES_MAX, "{size}");
    }
}
