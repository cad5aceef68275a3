//! Kill switches: `pause`, `resume`, `kill session|agent|tool`, `switches list|release`.

use agentgate_model::Op;
use agentgate_model::entity::{Entity, Kind, Scope};
use agentgate_runtime::clock::millis;

use super::Ctx;
use super::entities::emit_list;
use crate::cli::{KillCmd, PauseArgs, ResumeArgs, SwitchOpts, SwitchesCmd, Where};
use crate::error::{CliError, Result};
use crate::out::{opt, table, time};

fn scope_of(w: &Where) -> Result<Scope> {
    match (w.global, &w.region, &w.tenant) {
        (true, None, None) => Ok(Scope::Global),
        (false, Some(r), None) => Ok(Scope::Region { region: r.clone() }),
        (false, None, Some(t)) => Ok(Scope::Tenant { tenant: t.clone() }),
        _ => Err(CliError::invalid(
            "give exactly one of --global, --region R, --tenant T",
        )),
    }
}

fn describe(scope: &Scope) -> String {
    match scope {
        Scope::Global => "every tool call in every region".to_string(),
        Scope::Region { region } => format!("every tool call through edges of region `{region}`"),
        Scope::Tenant { tenant } => format!("every tool call of tenant `{tenant}`"),
        Scope::Agent { tenant, agent } => {
            format!("every call of agent `{agent}` (tenant `{tenant}`)")
        }
        Scope::Tool { tool } => format!("tool `{tool}` in every tenant"),
        Scope::TenantTool { tenant, tool } => format!("tool `{tool}` in tenant `{tenant}`"),
        Scope::Session { tenant, session } => format!("session `{session}` (tenant `{tenant}`)"),
    }
}

async fn engage(ctx: &mut Ctx, scope: Scope, opts: SwitchOpts) -> Result<()> {
    // A duration: the leader resolves it against its own stamped time, so this machine's
    // clock plays no part.
    let ttl_ms = opts.ttl.map(millis);
    let what = format!(
        "stopped {}{} — key `{}`",
        describe(&scope),
        opts.ttl.map_or(String::new(), |d| format!(
            " for {}",
            humantime::format_duration(d)
        )),
        scope.key()
    );
    ctx.change(
        Op::EngageSwitch {
            scope,
            reason: opts.reason,
            ttl_ms,
        },
        &what,
    )
    .await?;
    Ok(())
}

async fn release(ctx: &mut Ctx, scope: Scope) -> Result<()> {
    let what = format!("released the switch on {}", describe(&scope));
    ctx.change(Op::ReleaseSwitch { scope }, &what).await?;
    Ok(())
}

pub async fn pause(ctx: &mut Ctx, a: PauseArgs) -> Result<()> {
    let scope = scope_of(&a.scope)?;
    engage(ctx, scope, a.opts).await
}

pub async fn resume(ctx: &mut Ctx, a: ResumeArgs) -> Result<()> {
    let scope = scope_of(&a.scope)?;
    release(ctx, scope).await
}

pub async fn kill(ctx: &mut Ctx, cmd: KillCmd) -> Result<()> {
    let (scope, opts) = match cmd {
        KillCmd::Session {
            session,
            tenant,
            opts,
        } => (Scope::Session { tenant, session }, opts),
        KillCmd::Agent {
            agent,
            tenant,
            opts,
        } => (Scope::Agent { tenant, agent }, opts),
        KillCmd::Tool { tool, tenant, opts } => (
            match tenant {
                Some(tenant) => Scope::TenantTool { tenant, tool },
                None => Scope::Tool { tool },
            },
            opts,
        ),
    };
    engage(ctx, scope, opts).await
}

pub async fn list_or_release(ctx: &mut Ctx, cmd: SwitchesCmd) -> Result<()> {
    match cmd {
        SwitchesCmd::List { tenant } => {
            let mut all = ctx.client.list(Kind::Switch, None).await?;
            if let Some(t) = &tenant {
                // Switches without a tenant (global, region, tool) apply to it too.
                all.retain(|e| e.tenant().is_none_or(|x| x == t));
            }
            let rows = all
                .iter()
                .filter_map(|e| match e {
                    Entity::Switch(s) => Some([
                        s.scope.key(),
                        describe(&s.scope),
                        s.reason.clone(),
                        s.actor.clone(),
                        time(s.engaged_ms),
                        opt(s.expires_ms.map(time).as_deref()),
                    ]),
                    _ => None,
                })
                .collect();
            emit_list(ctx, &all, || {
                table(
                    ["KEY", "STOPS", "REASON", "ACTOR", "ENGAGED", "EXPIRES"],
                    rows,
                )
            });
            Ok(())
        }
        SwitchesCmd::Release { key } => {
            let scope = Scope::from_key(&key).ok_or_else(|| {
                CliError::invalid(format!("`{key}` is not a switch key"))
                    .hint("use a KEY column value of `agentgate-admin switches list`, e.g. agent/tenant-a/bot")
            })?;
            release(ctx, scope).await
        }
    }
}
