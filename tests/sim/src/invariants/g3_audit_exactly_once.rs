//! G3: after heal, every call the gateway decided has exactly one audit record, whatever
//! happened to leaders, nodes and edge–core links in between.
//!
//! Agents send a unique W3C trace id with every call; the edge records it. Decided calls
//! (admitted, or denied with a gateway code other than "overloaded", which is turned away
//! undecided) need exactly one record. An edge crash loses the records it had not shipped yet
//! (design.md promises G3 through node crashes and partitions, not through the loss of an edge's
//! memory): calls on a crashed incarnation need at most one. No trace id may appear twice.

use std::collections::HashMap;

use super::Ctx;
use crate::history::{Call, Outcome};

/// "The audit backlog is full": not decided, not recorded.
const OVERLOADED: i64 = -32085;

/// Whether the edge incarnation that served `call` later crashed.
fn served_by_crashed(ctx: &Ctx<'_>, call: &Call) -> bool {
    ctx.log
        .edges
        .iter()
        .filter(|i| i.edge == call.edge && i.started_ms <= call.sent_ms)
        .max_by_key(|i| i.started_ms)
        .is_none_or(|i| i.crashed_ms.is_some())
}

pub fn check(ctx: &Ctx<'_>) -> Vec<String> {
    let mut counts: HashMap<&str, usize> = HashMap::new();
    for r in &ctx.final_state.audit {
        if let Some(t) = &r.entry.trace_id {
            *counts.entry(t.as_str()).or_default() += 1;
        }
    }
    let mut out = Vec::new();
    for (t, n) in &counts {
        if *n > 1 {
            out.push(format!("trace {t} has {n} audit records"));
        }
    }
    for c in &ctx.log.calls {
        let decided = match c.outcome {
            Outcome::Admitted => true,
            Outcome::Denied(code) => code != OVERLOADED,
            Outcome::Failed(_) => false,
        };
        let n = counts.get(c.trace_id.as_str()).copied().unwrap_or(0);
        if decided && n == 0 && !served_by_crashed(ctx, c) {
            out.push(format!(
                "edge{} decided `{}` ({:?}, trace {}, sent at {} ms) but no audit record exists",
                c.edge, c.tool, c.outcome, c.trace_id, c.sent_ms
            ));
        }
    }
    out
}
