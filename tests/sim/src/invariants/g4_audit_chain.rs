//! G4: the audit log verifies as a hash chain from genesis, and every node holds the same head,
//! which is the log's tip.

use agentgate_model::audit::verify_chain;

use super::Ctx;

pub fn check(ctx: &Ctx<'_>) -> Vec<String> {
    let f = ctx.final_state;
    let mut out = Vec::new();
    match verify_chain(&f.audit) {
        Ok(n) if n as usize == f.audit.len() => {}
        Ok(n) => out.push(format!("verified {n} of {} records", f.audit.len())),
        Err(e) => out.push(format!("the audit chain does not verify: {e}")),
    }
    if f.audit.is_empty() {
        out.push("the audit log is empty after a run with traffic".into());
    }
    let Some(last) = f.audit.last() else {
        return out;
    };
    if f.heads.len() != ctx.topo.nodes {
        out.push(format!(
            "only {} of {} nodes reported an audit head",
            f.heads.len(),
            ctx.topo.nodes
        ));
    }
    for (id, h) in &f.heads {
        if h.next_seq != last.seq + 1 || h.last_hash != last.hash {
            out.push(format!(
                "node {id}'s audit head (next {}, hash {}) is not the log's tip (seq {}, hash {})",
                h.next_seq, h.last_hash, last.seq, last.hash
            ));
        }
    }
    out
}
