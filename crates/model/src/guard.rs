//! Rollout guards (design.md G6): the canary's decisions, counted from the audit log, against the
//! rollout's thresholds. Pure; the leader feeds it records and proposes the rollback.

use crate::audit::{AuditEntry, Decision};
use crate::entity::RolloutGuard;

/// Fewest canary decisions before a guard may trip (a handful of denials is not a trend).
pub const GUARD_MIN_CALLS: u64 = 20;

/// The canary version's decisions on named calls (tool calls, resource reads, prompt gets).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CanaryStats {
    pub calls: u64,
    pub denies: u64,
    /// Denials because the version could not be evaluated or compiled.
    pub errors: u64,
}

impl CanaryStats {
    /// Counts one audit entry if the canary version decided it.
    pub fn count(&mut self, e: &AuditEntry, to_version: &str) {
        if e.tool.is_none() || e.policy_version.as_deref() != Some(to_version) {
            return;
        }
        self.calls += 1;
        if e.decision == Decision::Deny {
            self.denies += 1;
            if e.reason.starts_with("policy evaluation failed")
                || e.reason.contains("cannot be used, denying")
            {
                self.errors += 1;
            }
        }
    }
}

/// Why the guard trips, if it does.
pub fn tripped(guard: &RolloutGuard, s: &CanaryStats) -> Option<String> {
    if s.calls < GUARD_MIN_CALLS {
        return None;
    }
    let over = |n: u64, limit: Option<u8>| {
        limit.filter(|l| n.saturating_mul(100) > s.calls.saturating_mul(u64::from(*l)))
    };
    if let Some(l) = over(s.errors, guard.max_error_rate_percent) {
        return Some(format!(
            "guard: {} of {} canary decisions failed to evaluate (limit {l}%)",
            s.errors, s.calls
        ));
    }
    if let Some(l) = over(s.denies, guard.max_deny_rate_percent) {
        return Some(format!(
            "guard: the canary denied {} of {} calls (limit {l}%)",
            s.denies, s.calls
        ));
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(version: Option<&str>, decision: Decision, reason: &str) -> AuditEntry {
        AuditEntry {
            edge_seq: 1,
            time_ms: 0,
            tenant: "t".into(),
            agent: "a".into(),
            session: None,
            method: "tools/call".into(),
            tool: Some("x".into()),
            args_digest: None,
            decision,
            reason: reason.into(),
            policy_version: version.map(str::to_string),
            policy_ids: vec![],
            shadow_decision: None,
            latency_us: 0,
            upstream_latency_us: None,
            upstream_status: None,
            trace_id: None,
        }
    }

    #[test]
    fn only_the_canary_versions_named_calls_count() {
        let mut s = CanaryStats::default();
        s.count(
            &entry(Some("v2"), Decision::Deny, "forbidden by policy"),
            "v2",
        );
        s.count(
            &entry(Some("v1"), Decision::Deny, "forbidden by policy"),
            "v2",
        );
        s.count(
            &entry(None, Decision::Deny, "stopped by the kill switch"),
            "v2",
        );
        let mut list = entry(Some("v2"), Decision::Allow, "");
        list.tool = None;
        s.count(&list, "v2");
        s.count(
            &entry(
                Some("v2"),
                Decision::Deny,
                "policy evaluation failed, denying: x",
            ),
            "v2",
        );
        s.count(&entry(Some("v2"), Decision::RequireApproval, ""), "v2");
        assert_eq!(
            s,
            CanaryStats {
                calls: 3,
                denies: 2,
                errors: 1
            }
        );
    }

    #[test]
    fn guards_trip_past_their_rate_with_enough_calls() {
        let g = RolloutGuard {
            max_deny_rate_percent: Some(50),
            max_error_rate_percent: Some(5),
        };
        let s = |calls, denies, errors| CanaryStats {
            calls,
            denies,
            errors,
        };
        assert_eq!(tripped(&g, &s(19, 19, 19)), None, "too few calls");
        assert_eq!(
            tripped(&g, &s(20, 10, 1)),
            None,
            "at the limit is not over it"
        );
        assert!(tripped(&g, &s(20, 11, 1)).is_some_and(|r| r.contains("denied 11 of 20")));
        assert!(tripped(&g, &s(20, 2, 2)).is_some_and(|r| r.contains("failed to evaluate")));
        assert_eq!(tripped(&RolloutGuard::default(), &s(100, 100, 100)), None);
    }
}
