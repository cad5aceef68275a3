//! After heal: the cluster converges and serves. Once every fault is undone and the settle time
//! has passed, every edge is fresh and answers: no call in the healthy phase is denied as stale
//! or left undecided. (That the nodes converge to one audit head is checked by the checker and
//! G4.)

use super::Ctx;
use crate::history::Outcome;

/// "The snapshot is not confirmed fresh by the core".
const STALE: i64 = -32081;

pub fn check(ctx: &Ctx<'_>) -> Vec<String> {
    ctx.log
        .calls
        .iter()
        .filter(|c| c.sent_ms >= ctx.healthy_from_ms)
        .filter_map(|c| match &c.outcome {
            Outcome::Denied(STALE) => Some(format!(
                "edge{} was still stale at {} ms, after heal and settle ({} ms)",
                c.edge, c.sent_ms, ctx.healthy_from_ms
            )),
            Outcome::Failed(why) => Some(format!(
                "a call to edge{} at {} ms, after heal and settle, got no decision: {why}",
                c.edge, c.sent_ms
            )),
            _ => None,
        })
        .collect()
}
