//! Rollout guards on the leader (design.md G6): each guarded rollout's canary decisions are
//! counted from the audit index incrementally (a bounded number of pages per sweep), and the
//! rollback is proposed once the pure `agentgate_model::guard::tripped` says so. The counts are
//! leader memory: a new leader recounts from the rollout's start.

use agentgate_model::Op;
use agentgate_model::entity::{Rollout, RolloutState};
use agentgate_model::guard::{CanaryStats, tripped};
use agentgate_model::query::AuditFilter;

use crate::app::App;
use crate::limits::GUARD_PAGES_PER_SWEEP;

/// A guarded rollout's canary decisions counted so far (leader memory; a new leader recounts).
pub(crate) struct GuardScan {
    to_version: String,
    since_ms: u64,
    after_seq: u64,
    stats: CanaryStats,
}

impl GuardScan {
    fn new(to_version: &str, since_ms: u64) -> Self {
        GuardScan {
            to_version: to_version.to_string(),
            since_ms,
            after_seq: 0,
            stats: CanaryStats::default(),
        }
    }
}

impl App {
    /// Rollbacks due because a running rollout's guard tripped (design.md G6), for the leader.
    /// Counts each guarded rollout's canary decisions from the audit log incrementally.
    pub fn due_rollbacks(&self) -> Vec<Op> {
        let rollouts: Vec<Rollout> = self
            .reader
            .with_state(|s| {
                s.rollouts
                    .values()
                    .filter(|r| r.state == RolloutState::Running)
                    .filter(|r| {
                        r.guard.max_deny_rate_percent.is_some()
                            || r.guard.max_error_rate_percent.is_some()
                    })
                    .cloned()
                    .collect()
            })
            .unwrap_or_default();
        let Ok(mut scans) = self.guards.lock() else {
            return Vec::new();
        };
        scans.retain(|t, _| rollouts.iter().any(|r| &r.tenant == t));
        let mut ops = Vec::new();
        for r in rollouts {
            let since_ms = r
                .history
                .iter()
                .rev()
                .find(|e| e.action == "start")
                .or(r.history.first())
                .map_or(0, |e| e.time_ms);
            let scan = scans
                .entry(r.tenant.clone())
                .or_insert_with(|| GuardScan::new(&r.to_version, since_ms));
            if scan.to_version != r.to_version || scan.since_ms != since_ms {
                *scan = GuardScan::new(&r.to_version, since_ms);
            }
            for _ in 0..GUARD_PAGES_PER_SWEEP {
                let filter = AuditFilter {
                    tenant: Some(r.tenant.clone()),
                    since_ms: Some(since_ms),
                    after_seq: Some(scan.after_seq),
                    ..AuditFilter::default()
                };
                let Ok(page) = self.reader.audit_query(&filter) else {
                    break;
                };
                for rec in &page.records {
                    scan.stats.count(&rec.entry, &r.to_version);
                    scan.after_seq = scan.after_seq.max(rec.seq);
                }
                match page.next_after_seq {
                    Some(n) => scan.after_seq = scan.after_seq.max(n),
                    None => break,
                }
            }
            if let Some(reason) = tripped(&r.guard, &scan.stats) {
                ops.push(Op::RollbackRollout {
                    tenant: r.tenant.clone(),
                    reason,
                });
            }
        }
        ops
    }
}
