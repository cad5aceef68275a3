//! Read requests the admin API answers (linearizably) and their answers.

use serde::{Deserialize, Serialize};

use crate::audit::{AuditHead, AuditRecord, Decision};
use crate::entity::{ApprovalState, Entity, Kind};

/// Filters over the audit index. Every filter present must match.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct AuditFilter {
    pub tenant: Option<String>,
    pub agent: Option<String>,
    pub session: Option<String>,
    pub tool: Option<String>,
    pub decision: Option<Decision>,
    /// Inclusive lower bound on the edge's decision time, ms.
    pub since_ms: Option<u64>,
    /// Exclusive upper bound on the edge's decision time, ms.
    pub until_ms: Option<u64>,
    /// Only records with `seq > after_seq` (paging cursor).
    pub after_seq: Option<u64>,
    /// At most this many records (capped by `AUDIT_QUERY_RECORDS_MAX`).
    pub limit: Option<u64>,
}

impl AuditFilter {
    pub fn matches(&self, r: &AuditRecord) -> bool {
        let e = &r.entry;
        self.tenant.as_ref().is_none_or(|t| &e.tenant == t)
            && self.agent.as_ref().is_none_or(|a| &e.agent == a)
            && self
                .session
                .as_ref()
                .is_none_or(|s| e.session.as_ref() == Some(s))
            && self
                .tool
                .as_ref()
                .is_none_or(|t| e.tool.as_ref() == Some(t))
            && self.decision.is_none_or(|d| e.decision == d)
            && self.since_ms.is_none_or(|s| e.time_ms >= s)
            && self.until_ms.is_none_or(|u| e.time_ms < u)
            && self.after_seq.is_none_or(|a| r.seq > a)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "query")]
pub enum Query {
    /// One entity by kind and key.
    Get {
        kind: Kind,
        key: String,
    },
    /// Entities of a kind, optionally only those of one tenant.
    List {
        kind: Kind,
        tenant: Option<String>,
    },
    /// Approvals, optionally filtered by tenant and state.
    Approvals {
        tenant: Option<String>,
        state: Option<ApprovalState>,
    },
    Audit {
        filter: AuditFilter,
    },
    AuditHead,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "type", content = "value")]
pub enum QueryResult {
    Entity(Option<Box<Entity>>),
    Entities(Vec<Entity>),
    /// `next_after_seq` is set when more records may match: pass it as `after_seq` to continue.
    Audit {
        records: Vec<AuditRecord>,
        next_after_seq: Option<u64>,
    },
    AuditHead(AuditHead),
}
