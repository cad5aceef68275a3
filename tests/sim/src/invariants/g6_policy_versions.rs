//! G6: each decision records the policy version it used, and that version was committed for
//! the tenant and put in force by an operator (activated, or the target of a rollout).

use std::collections::BTreeSet;

use agentgate_model::audit::Decision;

use super::Ctx;
use crate::history::AdminKind;

pub fn check(ctx: &Ctx<'_>) -> Vec<String> {
    let committed: BTreeSet<&str> = ctx
        .final_state
        .policies
        .iter()
        .map(String::as_str)
        .collect();
    let mut in_force: BTreeSet<&str> = BTreeSet::from(["v1"]);
    for op in &ctx.log.admin {
        if let AdminKind::Activate(v) | AdminKind::StartRollout(v) = &op.kind {
            in_force.insert(v.as_str());
        }
    }
    let mut out = Vec::new();
    for r in &ctx.final_state.audit {
        let e = &r.entry;
        if e.method != "tools/call" {
            continue;
        }
        let by_policy = e.decision == Decision::Allow || !e.policy_ids.is_empty();
        match &e.policy_version {
            Some(v) if !committed.contains(v.as_str()) => out.push(format!(
                "record {} used policy version `{v}`, never committed for `{}`",
                r.seq, e.tenant
            )),
            Some(v) if !in_force.contains(v.as_str()) => out.push(format!(
                "record {} used policy version `{v}`, never activated or rolled out",
                r.seq
            )),
            None if by_policy && e.decision == Decision::Allow => out.push(format!(
                "record {} allowed `{}` without naming a policy version",
                r.seq,
                e.tool.as_deref().unwrap_or("?")
            )),
            _ => {}
        }
    }
    out
}
