//! The leader's sweeps: which expiry commands are due at a time. Pure; the leader proposes what
//! this returns (as `system`), and `apply` does the expiring with the command's stamped time.

use crate::approval::is_forgettable;
use crate::command::Op;
use crate::entity::ApprovalState;
use crate::state::State;

/// The sweep commands due at `now_ms`: expired kill switches, expired approvals, finished
/// approvals past their retention.
pub fn due(s: &State, now_ms: u64) -> Vec<Op> {
    let mut ops = Vec::new();
    if s.switches
        .values()
        .any(|w| w.expires_ms.is_some_and(|e| e <= now_ms))
    {
        ops.push(Op::ExpireSwitches);
    }
    if s.approvals.values().any(|a| {
        (matches!(a.state, ApprovalState::Pending | ApprovalState::Approved)
            && a.expires_ms <= now_ms)
            || is_forgettable(a, now_ms)
    }) {
        ops.push(Op::ExpireApprovals);
    }
    ops
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::entity::{Approval, Entity, KillSwitch, Scope};

    #[test]
    fn sweeps_are_due_once_something_expired() {
        let mut s = State::default();
        assert!(due(&s, 100).is_empty());
        s.put(Entity::Switch(KillSwitch {
            scope: Scope::Global,
            reason: String::new(),
            actor: "ops".into(),
            engaged_ms: 0,
            engaged_revision: 1,
            expires_ms: Some(50),
        }));
        assert!(due(&s, 49).is_empty());
        assert_eq!(due(&s, 50), vec![Op::ExpireSwitches]);
        let approval = |state| Approval {
            id: "apr-1".into(),
            tenant: "t".into(),
            agent: "bot".into(),
            tool: "rm".into(),
            args_digest: String::new(),
            state,
            reason: String::new(),
            requested_ms: 0,
            expires_ms: 60,
            decided_by: None,
            decided_ms: None,
            consumed_ms: None,
        };
        s.put(Entity::Approval(approval(ApprovalState::Consumed)));
        assert_eq!(
            due(&s, 70),
            vec![Op::ExpireSwitches],
            "a used approval does not expire"
        );
        s.put(Entity::Approval(approval(ApprovalState::Approved)));
        assert_eq!(due(&s, 70), vec![Op::ExpireSwitches, Op::ExpireApprovals]);
    }
}
