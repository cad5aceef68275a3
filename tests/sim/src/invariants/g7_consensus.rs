//! G7: no split brain (at most one leader per term), acknowledged writes survive, and admin
//! operations are linearizable: the global pause, as operators engaged, released and read it
//! through any node, behaves as one register (checked with stateright's linearizability
//! tester; an operation without an answer stays open forever, as it may still take effect).

use std::collections::{BTreeMap, BTreeSet};

use agentgate_model::entity::Scope;
use stateright::semantics::register::{Register, RegisterOp, RegisterRet};
use stateright::semantics::{ConsistencyTester, LinearizabilityTester};

use super::Ctx;
use crate::history::{AdminKind, AdminResult};

/// An invocation (`Ok`) or a return (`Err`) on the register.
type Event = Result<RegisterOp<bool>, RegisterRet<bool>>;

fn linearizable(ctx: &Ctx<'_>) -> Result<(), String> {
    // (sequence number, thread, event); events replayed in the order they happened.
    let mut events: Vec<(u64, u64, Event)> = Vec::new();
    for op in &ctx.log.admin {
        let (inv, ret) = match (&op.kind, &op.result) {
            (AdminKind::Engage(Scope::Global), AdminResult::Ok(_)) => {
                (RegisterOp::Write(true), Some(RegisterRet::WriteOk))
            }
            (AdminKind::Release(Scope::Global), AdminResult::Ok(_) | AdminResult::Rejected(_)) => {
                // Releasing a switch that is not engaged is refused: the same as writing "off".
                (RegisterOp::Write(false), Some(RegisterRet::WriteOk))
            }
            (AdminKind::Engage(Scope::Global), _) => (RegisterOp::Write(true), None),
            (AdminKind::Release(Scope::Global), _) => (RegisterOp::Write(false), None),
            (AdminKind::ReadGlobal, AdminResult::Ok(Some(v))) => {
                (RegisterOp::Read, Some(RegisterRet::ReadOk(*v)))
            }
            // A read without an answer tells nothing.
            _ => continue,
        };
        events.push((op.invoked_seq, op.thread, Ok(inv)));
        if let Some(r) = ret {
            events.push((op.returned_seq, op.thread, Err(r)));
        }
    }
    events.sort_by_key(|e| e.0);
    let mut tester = LinearizabilityTester::new(Register(false));
    for (_, thread, ev) in events {
        match ev {
            Ok(op) => tester.on_invoke(thread, op)?,
            Err(ret) => tester.on_return(thread, ret)?,
        };
    }
    if tester.is_consistent() {
        Ok(())
    } else {
        Err(format!(
            "the global pause history is not linearizable ({} operations)",
            tester.len()
        ))
    }
}

pub fn check(ctx: &Ctx<'_>) -> Vec<String> {
    let mut out = Vec::new();
    let mut by_term: BTreeMap<u64, BTreeSet<u64>> = BTreeMap::new();
    for l in &ctx.log.leaders {
        by_term.entry(l.term).or_default().insert(l.node);
    }
    for (term, nodes) in by_term {
        if nodes.len() > 1 {
            out.push(format!("term {term} had leaders {nodes:?}"));
        }
    }
    let committed: BTreeSet<&str> = ctx
        .final_state
        .policies
        .iter()
        .map(String::as_str)
        .collect();
    for op in &ctx.log.admin {
        if let (AdminKind::PushPolicy(v), AdminResult::Ok(_)) = (&op.kind, &op.result)
            && !committed.contains(v.as_str())
        {
            out.push(format!(
                "policy `{v}` was acknowledged at {} ms and is gone",
                op.returned_ms
            ));
        }
    }
    if let Err(e) = linearizable(ctx) {
        out.push(e);
    }
    out
}
