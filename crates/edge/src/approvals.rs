//! Calls that need an operator's approval (design.md §2 approvals, §5 `@approval("required")`).
//!
//! The edge first tries to use an approval: `ConsumeApproval` is a Raft command, so of any number
//! of identical retries on any number of edges exactly one consumes it, and its request id makes
//! a retry after a lost reply get that consumption back rather than a refusal. Failing that it reports
//! the pending request for this exact call (same tenant, agent, tool and argument digest), or
//! opens one. The agent gets the approval id in the error and retries once it is approved.

use std::sync::Arc;
use std::time::Duration;

use agentgate_client::{Client, ClientConfig, ClientError, RequestIds, Retry};
use agentgate_model::entity::{ApprovalState, Entity};
use agentgate_model::{Op, Response, State};
use agentgate_runtime::net::Dialer;
use tonic::Code;

/// Where a call needing approval stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Resolution {
    /// An approval for exactly this call was used now: the call goes ahead, once.
    Consumed(String),
    /// Waiting for an operator: the approval's id.
    Pending(String),
}

/// One call needing approval.
#[derive(Debug, Clone)]
pub struct Call<'a> {
    pub tenant: &'a str,
    pub agent: &'a str,
    pub tool: &'a str,
    pub args_digest: &'a str,
    pub reason: &'a str,
}

#[derive(Clone)]
pub struct Approvals {
    core: Client,
    ttl_ms: Option<u64>,
}

impl Approvals {
    /// `edge_id` is unique per start: it prefixes this edge's request ids. Each write is retried
    /// by the client's one rule for up to `rpc_timeout`; its request id makes a retry after a
    /// lost reply answer as the first attempt did, so a consumed approval is never lost.
    pub fn new(
        endpoints: &[String],
        rpc_timeout: Duration,
        dialer: &Dialer,
        edge_id: &str,
        ttl_ms: Option<u64>,
    ) -> Result<Self, String> {
        let config = ClientConfig {
            rpc_timeout,
            dialer: dialer.clone(),
            actor: format!("edge/{edge_id}"),
            retry: Retry::within(rpc_timeout),
        };
        let ids = Arc::new(RequestIds::with_prefix(edge_id));
        let core = Client::new(endpoints, ids, config).map_err(|e| e.to_string())?;
        Ok(Approvals { core, ttl_ms })
    }

    async fn propose(&self, op: &Op) -> Result<Response, ClientError> {
        Ok(self.core.propose(op).await?.response)
    }

    /// Uses an approval for this call, or reports (or opens) the pending request.
    pub async fn resolve(
        &self,
        state: &State,
        call: &Call<'_>,
        now_ms: u64,
    ) -> Result<Resolution, String> {
        let consume = Op::ConsumeApproval {
            tenant: call.tenant.into(),
            agent: call.agent.into(),
            tool: call.tool.into(),
            args_digest: call.args_digest.into(),
        };
        match self.propose(&consume).await {
            Ok(Response::Entity(e)) => {
                if let Entity::Approval(a) = *e {
                    return Ok(Resolution::Consumed(a.id));
                }
                return Err("the core answered a consumption with something else".into());
            }
            Ok(_) => return Err("the core answered a consumption with something else".into()),
            Err(e) if e.code() == Code::FailedPrecondition => {}
            Err(e) => return Err(format!("the core cannot be asked: {e}")),
        }
        if let Some(a) = state.approvals.values().find(|a| {
            a.state == ApprovalState::Pending
                && a.tenant == call.tenant
                && a.agent == call.agent
                && a.tool == call.tool
                && a.args_digest == call.args_digest
                && a.expires_ms > now_ms
        }) {
            return Ok(Resolution::Pending(a.id.clone()));
        }
        let request = Op::RequestApproval {
            tenant: call.tenant.into(),
            agent: call.agent.into(),
            tool: call.tool.into(),
            args_digest: call.args_digest.into(),
            reason: call.reason.into(),
            ttl_ms: self.ttl_ms,
        };
        match self.propose(&request).await {
            Ok(Response::Entity(e)) => match *e {
                Entity::Approval(a) => Ok(Resolution::Pending(a.id)),
                _ => Err("the core answered an approval request with something else".into()),
            },
            Ok(_) => Err("the core answered an approval request with something else".into()),
            Err(e) => Err(format!("the approval cannot be requested: {e}")),
        }
    }
}
