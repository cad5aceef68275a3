//! Where a call that needs an operator's approval stands, read from the approvals one state
//! holds. Decided the same way by apply (authoritatively, at the leader's stamped time) and by
//! the edge (from its replica, before it asks the core anything), so that an agent repeating a
//! call, or calling again while its queue is full, causes no Raft write.
//!
//! An approval is *live* while it is pending or approved and not yet expired. Pending approvals
//! are bounded per agent ([`APPROVALS_PENDING_PER_AGENT_MAX`]) and per tenant
//! ([`APPROVALS_PENDING_PER_TENANT_MAX`]); a slot frees when an operator decides one or it
//! expires. Finished approvals (consumed, denied, expired) are forgotten
//! [`APPROVALS_FINISHED_RETAIN_MS`] after they finished.

use std::fmt;

use crate::entity::{Approval, ApprovalState};
use crate::limits::{
    APPROVAL_RETRY_AFTER_MS_MAX, APPROVAL_RETRY_AFTER_MS_MIN, APPROVALS_FINISHED_RETAIN_MS,
    APPROVALS_PENDING_PER_AGENT_MAX, APPROVALS_PENDING_PER_TENANT_MAX,
};
use crate::state::State;

/// The call an approval is bound to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CallKey<'a> {
    pub tenant: &'a str,
    pub agent: &'a str,
    pub tool: &'a str,
    pub args_digest: &'a str,
}

impl CallKey<'_> {
    fn matches(&self, a: &Approval) -> bool {
        a.tenant == self.tenant
            && a.agent == self.agent
            && a.tool == self.tool
            && a.args_digest == self.args_digest
    }
}

/// Whose queue of pending approvals is full.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum QueueScope {
    Agent,
    Tenant,
}

impl fmt::Display for QueueScope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            QueueScope::Agent => "agent",
            QueueScope::Tenant => "tenant",
        })
    }
}

/// A full queue: no new approval request until an operator decides one or one expires.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Full {
    pub scope: QueueScope,
    /// The bound that was reached.
    pub max: usize,
    /// When to try again: until the queue's first pending approval expires, within
    /// [`APPROVAL_RETRY_AFTER_MS_MIN`]..=[`APPROVAL_RETRY_AFTER_MS_MAX`] (an operator's decision
    /// may free a slot sooner).
    pub retry_after_ms: u64,
}

impl fmt::Display for Full {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let limit = match self.scope {
            QueueScope::Agent => "approvals_pending_per_agent_max",
            QueueScope::Tenant => "approvals_pending_per_tenant_max",
        };
        write!(
            f,
            "the {} already holds {} pending approvals ({limit}); retry after {} ms, or once an operator decides one",
            self.scope, self.max, self.retry_after_ms
        )
    }
}

/// Where one call stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Standing<'a> {
    /// An approved, unused, unexpired approval for exactly this call: using it goes ahead.
    Approved(&'a Approval),
    /// This call's pending request.
    Pending(&'a Approval),
    /// No live approval for this call, and room to request one.
    Open,
    /// No live approval for this call, and no room.
    Full(Full),
}

/// Whether an approval is pending or approved and unexpired at `now_ms`.
pub fn is_live(a: &Approval, now_ms: u64) -> bool {
    matches!(a.state, ApprovalState::Pending | ApprovalState::Approved) && a.expires_ms > now_ms
}

/// Where `call` stands at `now_ms`, in one pass over the approvals.
pub fn standing<'a>(s: &'a State, call: &CallKey<'_>, now_ms: u64) -> Standing<'a> {
    let mut agent = Queue::default();
    let mut tenant = Queue::default();
    for a in s.approvals.values() {
        if a.tenant != call.tenant || !is_live(a, now_ms) {
            continue;
        }
        if call.matches(a) {
            return match a.state {
                ApprovalState::Approved => Standing::Approved(a),
                _ => Standing::Pending(a),
            };
        }
        if a.state == ApprovalState::Pending {
            tenant.add(a.expires_ms);
            if a.agent == call.agent {
                agent.add(a.expires_ms);
            }
        }
    }
    if let Some(full) = agent.full(QueueScope::Agent, APPROVALS_PENDING_PER_AGENT_MAX, now_ms) {
        return Standing::Full(full);
    }
    if let Some(full) = tenant.full(QueueScope::Tenant, APPROVALS_PENDING_PER_TENANT_MAX, now_ms) {
        return Standing::Full(full);
    }
    Standing::Open
}

/// Pending approvals counted in one scope.
#[derive(Default)]
struct Queue {
    held: usize,
    first_expiry_ms: Option<u64>,
}

impl Queue {
    fn add(&mut self, expires_ms: u64) {
        self.held += 1;
        self.first_expiry_ms = Some(
            self.first_expiry_ms
                .map_or(expires_ms, |e| e.min(expires_ms)),
        );
    }

    fn full(&self, scope: QueueScope, max: usize, now_ms: u64) -> Option<Full> {
        (self.held >= max).then(|| Full {
            scope,
            max,
            retry_after_ms: self
                .first_expiry_ms
                .map_or(APPROVAL_RETRY_AFTER_MS_MAX, |e| e.saturating_sub(now_ms))
                .clamp(APPROVAL_RETRY_AFTER_MS_MIN, APPROVAL_RETRY_AFTER_MS_MAX),
        })
    }
}

/// When a finished approval finished (`None` while it is pending or approved).
pub fn finished_ms(a: &Approval) -> Option<u64> {
    match a.state {
        ApprovalState::Pending | ApprovalState::Approved => None,
        ApprovalState::Consumed => Some(a.consumed_ms.unwrap_or(a.expires_ms)),
        ApprovalState::Denied => Some(a.decided_ms.unwrap_or(a.expires_ms)),
        ApprovalState::Expired => Some(a.expires_ms),
    }
}

/// Whether a finished approval is old enough to forget at `now_ms`.
pub fn is_forgettable(a: &Approval, now_ms: u64) -> bool {
    finished_ms(a).is_some_and(|f| f.saturating_add(APPROVALS_FINISHED_RETAIN_MS) <= now_ms)
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;
    use crate::entity::Entity;

    fn approval(
        n: usize,
        agent: &str,
        tool: &str,
        state: ApprovalState,
        expires_ms: u64,
    ) -> Approval {
        Approval {
            id: format!("apr-{n}"),
            tenant: "t".into(),
            agent: agent.into(),
            tool: tool.into(),
            args_digest: "d".into(),
            state,
            reason: String::new(),
            requested_ms: 0,
            expires_ms,
            decided_by: None,
            decided_ms: None,
            consumed_ms: None,
        }
    }

    fn key<'a>(agent: &'a str, tool: &'a str) -> CallKey<'a> {
        CallKey {
            tenant: "t",
            agent,
            tool,
            args_digest: "d",
        }
    }

    #[test]
    fn the_identical_live_request_is_found_whatever_the_queue() {
        let mut s = State::default();
        for n in 0..APPROVALS_PENDING_PER_AGENT_MAX {
            s.put(Entity::Approval(approval(
                n,
                "bot",
                &format!("t{n}"),
                ApprovalState::Pending,
                100,
            )));
        }
        assert!(
            matches!(standing(&s, &key("bot", "t3"), 10), Standing::Pending(a) if a.id == "apr-3")
        );
        assert!(
            matches!(standing(&s, &key("bot", "new"), 10), Standing::Full(f) if f.scope == QueueScope::Agent)
        );
        // Another agent of the tenant still has room; an expired request is not live.
        assert_eq!(standing(&s, &key("other", "new"), 10), Standing::Open);
        assert_eq!(standing(&s, &key("bot", "new"), 100), Standing::Open);
        let mut ok = approval(999, "bot", "go", ApprovalState::Approved, 100);
        s.put(Entity::Approval(ok.clone()));
        assert!(matches!(
            standing(&s, &key("bot", "go"), 10),
            Standing::Approved(_)
        ));
        ok.state = ApprovalState::Consumed;
        s.put(Entity::Approval(ok));
        assert!(matches!(
            standing(&s, &key("bot", "go"), 10),
            Standing::Full(_)
        ));
    }

    #[test]
    fn the_tenant_queue_is_bounded_too() {
        let mut s = State::default();
        for n in 0..APPROVALS_PENDING_PER_TENANT_MAX {
            let agent = format!(
                "a{}",
                n % (APPROVALS_PENDING_PER_TENANT_MAX / APPROVALS_PENDING_PER_AGENT_MAX + 1)
            );
            s.put(Entity::Approval(approval(
                n,
                &agent,
                &format!("t{n}"),
                ApprovalState::Pending,
                5_000,
            )));
        }
        let Standing::Full(f) = standing(&s, &key("fresh", "x"), 1_000) else {
            panic!("the tenant queue is full")
        };
        assert_eq!((f.scope, f.retry_after_ms), (QueueScope::Tenant, 4_000));
        assert!(
            f.to_string().contains("approvals_pending_per_tenant_max"),
            "{f}"
        );
    }

    #[test]
    fn finished_approvals_are_forgotten_after_the_retention() {
        let mut a = approval(1, "bot", "x", ApprovalState::Pending, 100);
        assert!(!is_forgettable(&a, u64::MAX));
        a.state = ApprovalState::Expired;
        assert!(!is_forgettable(&a, 100 + APPROVALS_FINISHED_RETAIN_MS - 1));
        assert!(is_forgettable(&a, 100 + APPROVALS_FINISHED_RETAIN_MS));
        a.state = ApprovalState::Consumed;
        a.consumed_ms = Some(50);
        assert!(is_forgettable(&a, 50 + APPROVALS_FINISHED_RETAIN_MS));
    }

    proptest! {
        /// Retry advice always lies within its bounds, and never says "now".
        #[test]
        fn retry_after_is_bounded(expiries in prop::collection::vec(0u64..10_000_000, 1..40), now in 0u64..10_000_000) {
            let mut q = Queue::default();
            for e in &expiries {
                q.add(*e);
            }
            let f = q.full(QueueScope::Agent, 1, now).unwrap();
            prop_assert!((APPROVAL_RETRY_AFTER_MS_MIN..=APPROVAL_RETRY_AFTER_MS_MAX).contains(&f.retry_after_ms));
        }
    }
}
