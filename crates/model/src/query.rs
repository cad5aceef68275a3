//! Read requests the admin API answers (linearizably), their answers, and [`answer`]: the pure
//! answer from the replicated state.

use serde::{Deserialize, Serialize};

use crate::audit::{AuditHead, AuditRecord, Decision};
use crate::entity::{ApprovalState, Entity, EntityKey, Kind};
use crate::error::ApplyError;
use crate::ids::truncate_for_message;
use crate::state::State;

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

/// Answers a query from the replicated state. Audit record queries read the audit index, which
/// storage keeps beside the state, and are answered there; asked here, they are refused.
pub fn answer(s: &State, q: &Query) -> Result<QueryResult, ApplyError> {
    match q {
        Query::Get { kind, key } => Ok(QueryResult::Entity(
            s.get(&EntityKey {
                kind: *kind,
                key: key.clone(),
            })
            .map(Box::new),
        )),
        Query::List { kind, tenant } => {
            if let Some(t) = tenant
                && !s.tenants.contains_key(t)
            {
                return Err(ApplyError::NotFound(format!(
                    "tenant `{}`",
                    truncate_for_message(t)
                )));
            }
            let all = s.entities_of(*kind);
            Ok(QueryResult::Entities(match tenant {
                None => all,
                Some(t) => all
                    .into_iter()
                    .filter(|e| e.tenant() == Some(t.as_str()))
                    .collect(),
            }))
        }
        Query::Approvals { tenant, state } => Ok(QueryResult::Entities(
            s.approvals
                .values()
                .filter(|a| tenant.as_ref().is_none_or(|t| &a.tenant == t))
                .filter(|a| state.is_none_or(|st| a.state == st))
                .cloned()
                .map(Entity::Approval)
                .collect(),
        )),
        Query::AuditHead => Ok(QueryResult::AuditHead(s.audit_head.clone())),
        Query::Audit { .. } => Err(ApplyError::FailedPrecondition(
            "audit records are read from the audit index, not the state".into(),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::entity::{Approval, Tenant};

    fn state() -> State {
        let mut s = State::default();
        for t in ["a", "b"] {
            s.put(Entity::Tenant(Tenant {
                id: t.into(),
                created_ms: 0,
                policy_version: None,
                shadow_version: None,
                stale_allow_read_only: false,
            }));
        }
        for (id, tenant, st) in [
            ("apr-1", "a", ApprovalState::Pending),
            ("apr-2", "a", ApprovalState::Approved),
            ("apr-3", "b", ApprovalState::Pending),
        ] {
            s.put(Entity::Approval(Approval {
                id: id.into(),
                tenant: tenant.into(),
                agent: "bot".into(),
                tool: "rm".into(),
                args_digest: String::new(),
                state: st,
                reason: String::new(),
                requested_ms: 0,
                expires_ms: 10,
                decided_by: None,
                decided_ms: None,
                consumed_ms: None,
            }));
        }
        s
    }

    #[test]
    fn lists_filter_by_tenant_and_state_and_unknown_tenants_are_not_found() {
        let s = state();
        let ids = |r: QueryResult| match r {
            QueryResult::Entities(es) => es.iter().map(|e| e.key().key).collect::<Vec<_>>(),
            other => panic!("{other:?}"),
        };
        let q = Query::List {
            kind: Kind::Approval,
            tenant: Some("a".into()),
        };
        assert_eq!(ids(answer(&s, &q).unwrap()), ["apr-1", "apr-2"]);
        let q = Query::Approvals {
            tenant: None,
            state: Some(ApprovalState::Pending),
        };
        assert_eq!(ids(answer(&s, &q).unwrap()), ["apr-1", "apr-3"]);
        let q = Query::List {
            kind: Kind::Tenant,
            tenant: Some("zz".into()),
        };
        assert!(matches!(answer(&s, &q), Err(ApplyError::NotFound(_))));
        let q = Query::Get {
            kind: Kind::Tenant,
            key: "b".into(),
        };
        assert!(matches!(answer(&s, &q), Ok(QueryResult::Entity(Some(_)))));
        let q = Query::Audit {
            filter: AuditFilter::default(),
        };
        assert!(answer(&s, &q).is_err());
    }
}
