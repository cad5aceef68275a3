//! G1: a kill switch committed at T is enforced by every edge by T + `max_staleness`, and within
//! the healthy bound when no fault is in play.
//!
//! The oracle is the operators' side: a switch is certainly engaged from the moment its engage
//! call returned (commit happened before) until the first release of the same scope that could
//! have taken effect was invoked. A call is certainly decided after it was sent. So a call sent
//! more than the bound after an engage returned, and before such a release, must not be
//! admitted.

use agentgate_model::entity::Scope;

use super::Ctx;
use crate::history::{AdminKind, AdminResult, Call, Outcome};

/// Push bound once the cluster is healthy (design.md: tens of milliseconds; inter-region latency
/// here is up to 40 ms each way).
pub const HEALTHY_BOUND_MS: u64 = 250;

fn covers(scope: &Scope, call: &Call) -> bool {
    match scope {
        Scope::Tool { tool } => &call.tool == tool,
        Scope::Session { session, .. } => call.session.as_ref() == Some(session),
        _ => true,
    }
}

/// Every scope an operator engaged, in first-engaged order.
fn engaged_scopes(ctx: &Ctx<'_>) -> Vec<Scope> {
    let mut out: Vec<Scope> = Vec::new();
    for e in &ctx.log.admin {
        if let AdminKind::Engage(s) = &e.kind
            && !out.contains(s)
        {
            out.push(s.clone());
        }
    }
    out
}

/// `[from, to)` windows in which `scope` is certainly engaged.
pub fn engaged_windows(ctx: &Ctx<'_>, scope: &Scope) -> Vec<(u64, u64)> {
    let ops = &ctx.log.admin;
    ops.iter()
        .filter(|e| matches!(&e.kind, AdminKind::Engage(s) if s == scope))
        .filter(|e| e.result == AdminResult::Ok(None))
        .map(|e| {
            let end = ops
                .iter()
                .filter(|r| matches!(&r.kind, AdminKind::Release(s) if s == scope))
                // A release that returned before this engage began cannot undo it.
                .filter(|r| {
                    matches!(r.result, AdminResult::Unknown(_)) || r.returned_seq > e.invoked_seq
                })
                .map(|r| r.invoked_ms)
                .min()
                .unwrap_or(u64::MAX);
            (e.returned_ms, end)
        })
        .filter(|(from, to)| from < to)
        .collect()
}

pub fn check(ctx: &Ctx<'_>) -> Vec<String> {
    let mut out = Vec::new();
    for scope in engaged_scopes(ctx) {
        for (from, to) in engaged_windows(ctx, &scope) {
            let bound = if from >= ctx.healthy_from_ms {
                HEALTHY_BOUND_MS
            } else {
                ctx.max_staleness_ms
            };
            for c in &ctx.log.calls {
                if c.outcome == Outcome::Admitted
                    && covers(&scope, c)
                    && c.sent_ms > from + bound
                    && c.sent_ms < to
                {
                    out.push(format!(
                        "edge{} admitted `{}` (trace {}) sent at {} ms, {} ms after `{}` was \
                         acknowledged at {from} ms (bound {bound} ms)",
                        c.edge,
                        c.tool,
                        c.trace_id,
                        c.sent_ms,
                        c.sent_ms - from,
                        scope.key()
                    ));
                }
            }
        }
    }
    out
}
