//! G2: an edge whose snapshot the core has not confirmed for `max_staleness` admits nothing.
//!
//! The oracle is the fault schedule as applied: an edge is certainly cut off at time t when,
//! for every core node, the link is cut in some direction or the node is down. (A link given
//! random message loss may be up at any moment, so it never counts as cut.) A call admitted by
//! an edge that was cut off for the whole `max_staleness` before the call was sent breaks G2.

use super::Ctx;
use crate::history::Outcome;
use crate::schedule::Fault;
use crate::topology::Topology;

/// Whether `edge` can certainly not reach `node` at `t`.
fn cut(ctx: &Ctx<'_>, edge: &str, node: &str, t: u64) -> bool {
    let mut cut = false;
    for f in &ctx.log.faults {
        if let Fault::Flaky { a, b, .. } = &f.fault
            && ((a == edge && b == node) || (a == node && b == edge))
            && t >= f.from_ms
            && t < ctx.chaos_end_ms
        {
            return false;
        }
        if t < f.from_ms || t >= f.to_ms {
            continue;
        }
        if let Fault::CrashNode { host } = &f.fault
            && host == node
        {
            cut = true;
        }
        if crate::cut_pairs(ctx.topo, &f.fault)
            .iter()
            .any(|(x, y)| (x == edge && y == node) || (x == node && y == edge))
        {
            cut = true;
        }
    }
    cut
}

fn isolated(ctx: &Ctx<'_>, edge: &str, t: u64) -> bool {
    ctx.topo.node_hosts().iter().all(|n| cut(ctx, edge, n, t))
}

pub fn check(ctx: &Ctx<'_>) -> Vec<String> {
    let mut boundaries: Vec<u64> = ctx
        .log
        .faults
        .iter()
        .flat_map(|f| [f.from_ms, f.to_ms])
        .collect();
    boundaries.sort_unstable();
    let mut out = Vec::new();
    for c in ctx
        .log
        .calls
        .iter()
        .filter(|c| c.outcome == Outcome::Admitted)
    {
        let edge = Topology::edge_host(c.edge);
        let Some(since) = c.sent_ms.checked_sub(ctx.max_staleness_ms) else {
            continue;
        };
        let points = std::iter::once(since)
            .chain(
                boundaries
                    .iter()
                    .copied()
                    .filter(|b| *b > since && *b <= c.sent_ms),
            )
            .chain(std::iter::once(c.sent_ms));
        let mut all = true;
        for t in points {
            if !isolated(ctx, &edge, t) {
                all = false;
                break;
            }
        }
        if all {
            out.push(format!(
                "{edge} admitted `{}` (trace {}) at {} ms although cut from every core node since \
                 at least {since} ms (max staleness {} ms)",
                c.tool, c.trace_id, c.sent_ms, ctx.max_staleness_ms
            ));
        }
    }
    out
}
