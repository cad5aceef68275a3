//! `approvals list | approve | deny`.

use agentgate_model::Op;
use agentgate_model::entity::{ApprovalState, Entity};
use agentgate_model::query::{Query, QueryResult};

use super::Ctx;
use super::entities::emit_list;
use crate::cli::{ApprovalsCmd, StateFilter};
use crate::client::unexpected;
use crate::error::Result;
use crate::out::{opt, table, time};

pub async fn run(ctx: &mut Ctx, cmd: ApprovalsCmd) -> Result<()> {
    match cmd {
        ApprovalsCmd::List { tenant, state } => {
            let state = match state {
                StateFilter::Pending => Some(ApprovalState::Pending),
                StateFilter::Approved => Some(ApprovalState::Approved),
                StateFilter::Denied => Some(ApprovalState::Denied),
                StateFilter::Expired => Some(ApprovalState::Expired),
                StateFilter::Consumed => Some(ApprovalState::Consumed),
                StateFilter::All => None,
            };
            let all = match ctx
                .client
                .query(&Query::Approvals { tenant, state })
                .await?
                .1
            {
                QueryResult::Entities(v) => v,
                other => return Err(unexpected(&other)),
            };
            let rows = all
                .iter()
                .filter_map(|e| match e {
                    Entity::Approval(a) => Some([
                        a.id.clone(),
                        a.tenant.clone(),
                        a.agent.clone(),
                        a.tool.clone(),
                        format!("{:?}", a.state).to_lowercase(),
                        time(a.requested_ms),
                        time(a.expires_ms),
                        opt(a.decided_by.as_deref()),
                        a.reason.clone(),
                    ]),
                    _ => None,
                })
                .collect();
            emit_list(ctx, &all, || {
                table(
                    [
                        "ID",
                        "TENANT",
                        "AGENT",
                        "TOOL",
                        "STATE",
                        "REQUESTED",
                        "EXPIRES",
                        "DECIDED-BY",
                        "REASON",
                    ],
                    rows,
                )
            });
        }
        ApprovalsCmd::Approve { id } => {
            let what = format!(
                "approved `{id}`: the agent's identical call goes through once (until the approval expires)"
            );
            ctx.change(Op::DecideApproval { id, approve: true }, &what)
                .await?;
        }
        ApprovalsCmd::Deny { id } => {
            let what = format!("denied `{id}`");
            ctx.change(Op::DecideApproval { id, approve: false }, &what)
                .await?;
        }
    }
    Ok(())
}
