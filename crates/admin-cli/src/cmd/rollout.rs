//! `rollout start | status | advance | promote | pause | resume | rollback`.

use agentgate_model::Op;
use agentgate_model::entity::{Entity, Kind, Rollout, RolloutGuard};
use serde_json::json;

use super::Ctx;
use super::entities::not_found;
use crate::cli::RolloutCmd;
use crate::error::Result;
use crate::out::{opt, table, time};

pub async fn run(ctx: &mut Ctx, cmd: RolloutCmd) -> Result<()> {
    let (op, what) = match cmd {
        RolloutCmd::Start {
            tenant,
            to,
            canary,
            steps,
            max_deny_rate,
            max_error_rate,
        } => (
            Op::StartRollout {
                tenant: tenant.clone(),
                to_version: to.clone(),
                canary_percent: canary,
                steps,
                guard: RolloutGuard {
                    max_deny_rate_percent: max_deny_rate,
                    max_error_rate_percent: max_error_rate,
                },
            },
            format!("rollout of tenant `{tenant}` to `{to}` started at {canary}%"),
        ),
        RolloutCmd::Status { tenant } => return status(ctx, &tenant).await,
        RolloutCmd::Advance { tenant, to } => (
            Op::AdvanceRollout {
                tenant: tenant.clone(),
                canary_percent: to,
            },
            format!("rollout of tenant `{tenant}` advanced"),
        ),
        RolloutCmd::Promote { tenant } => (
            Op::PromoteRollout {
                tenant: tenant.clone(),
            },
            format!("rollout of tenant `{tenant}` promoted: the new version is enforced for all"),
        ),
        RolloutCmd::Pause { tenant, reason } => (
            Op::PauseRollout {
                tenant: tenant.clone(),
                reason,
            },
            format!("rollout of tenant `{tenant}` paused (the canary keeps its share)"),
        ),
        RolloutCmd::Resume { tenant } => (
            Op::ResumeRollout {
                tenant: tenant.clone(),
            },
            format!("rollout of tenant `{tenant}` resumed"),
        ),
        RolloutCmd::Rollback { tenant, reason } => (
            Op::RollbackRollout {
                tenant: tenant.clone(),
                reason,
            },
            format!(
                "rollout of tenant `{tenant}` rolled back: everyone is on the previous version"
            ),
        ),
    };
    let p = ctx.client.propose(op).await?;
    let rollout = match &p.response {
        agentgate_model::Response::Entity(e) => match e.as_ref() {
            Entity::Rollout(r) => Some(r.clone()),
            _ => None,
        },
        _ => None,
    };
    ctx.out.emit(
        &json!({"ok": true, "revision": p.revision, "rollout": rollout}),
        || {
            let detail = rollout.as_ref().map(describe).unwrap_or_default();
            format!("{what} (revision {})\n{detail}", p.revision)
        },
    );
    Ok(())
}

async fn status(ctx: &mut Ctx, tenant: &str) -> Result<()> {
    let enforced = match ctx.client.get(Kind::Tenant, tenant).await? {
        Some(Entity::Tenant(t)) => t.policy_version,
        _ => return Err(not_found("tenant", tenant)),
    };
    let rollout = match ctx.client.get(Kind::Rollout, tenant).await? {
        Some(Entity::Rollout(r)) => Some(r),
        _ => None,
    };
    ctx.out.emit(
        &json!({"tenant": tenant, "enforced_version": enforced, "rollout": rollout}),
        || match &rollout {
            None => format!(
                "tenant `{tenant}` enforces {} and has no rollout\n  start one: agentgate-admin rollout start {tenant} --to VERSION --canary 10",
                opt(enforced.as_deref())
            ),
            Some(r) => {
                let history = r
                    .history
                    .iter()
                    .map(|e| {
                        [
                            time(e.time_ms),
                            e.action.clone(),
                            format!("{}%", e.canary_percent),
                            e.actor.clone(),
                            e.note.clone(),
                        ]
                    })
                    .collect();
                format!(
                    "tenant `{tenant}` enforces {}\n{}\n\n{}",
                    opt(enforced.as_deref()),
                    describe(r),
                    table(["TIME", "ACTION", "CANARY", "ACTOR", "NOTE"], history)
                )
            }
        },
    );
    Ok(())
}

fn describe(r: &Rollout) -> String {
    let steps = if r.steps.is_empty() {
        "none".to_string()
    } else {
        r.steps
            .iter()
            .map(|s| format!("{s}%"))
            .collect::<Vec<_>>()
            .join(" → ")
    };
    let guard = |g: Option<u8>| g.map_or("off".to_string(), |p| format!("{p}%"));
    format!(
        "rollout {} → {}: {:?}, canary {}%, next steps: {steps}; automatic rollback above deny rate {}, error rate {}",
        opt(r.from_version.as_deref()),
        r.to_version,
        r.state,
        r.canary_percent,
        guard(r.guard.max_deny_rate_percent),
        guard(r.guard.max_error_rate_percent)
    )
}
