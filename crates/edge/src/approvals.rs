//! Calls that need an operator's approval (design.md §2 approvals, §5 `@approval("required")`).
//!
//! The edge first reads where the call stands in its replica ([`standing`]): a pending request
//! for this exact call (same tenant, agent, tool and argument digest) is reported, and a full
//! queue refused, without asking the core, so an agent repeating a call or looping over new ones
//! causes no Raft write. Only an approval the replica shows approved is consumed:
//! `ConsumeApproval` is a Raft command, so of any number of identical retries on any number of
//! edges exactly one consumes it, and its request id makes a retry after a lost reply get that
//! consumption back rather than a refusal. Otherwise the edge requests an approval; apply folds
//! the request into a live identical one and enforces the queue bounds itself. An approval is
//! usable at an edge once its replica holds the decision (within the freshness bound); until
//! then the call is answered as pending, with the same id.

use std::sync::Arc;
use std::time::Duration;

use agentgate_client::{Client, ClientConfig, ClientError, RequestIds, Retry};
use agentgate_model::approval::{CallKey, Standing, standing};
use agentgate_model::entity::{Approval, ApprovalState, Entity};
use agentgate_model::limits::APPROVAL_RETRY_AFTER_MS_MIN;
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
    /// The agent's or the tenant's queue of pending approvals is full: nothing was requested.
    Full { reason: String, retry_after_ms: u64 },
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

    /// Where the call stands; asks the core only to use an approval the replica shows approved,
    /// or to open a request the replica shows room for.
    pub async fn resolve(
        &self,
        state: &State,
        call: &Call<'_>,
        now_ms: u64,
    ) -> Result<Resolution, String> {
        let key = CallKey {
            tenant: call.tenant,
            agent: call.agent,
            tool: call.tool,
            args_digest: call.args_digest,
        };
        match standing(state, &key, now_ms) {
            Standing::Pending(a) => return Ok(Resolution::Pending(a.id.clone())),
            Standing::Full(full) => {
                return Ok(Resolution::Full {
                    reason: full.to_string(),
                    retry_after_ms: full.retry_after_ms,
                });
            }
            Standing::Approved(_) => {
                if let Some(id) = self.consume(call).await? {
                    return Ok(Resolution::Consumed(id));
                }
                // Used meanwhile (through another edge): this call needs a new approval.
            }
            Standing::Open => {}
        }
        let a = match self.request(call).await? {
            // The replica had not seen the decision yet: use it now.
            Ok(a) if a.state == ApprovalState::Approved => match self.consume(call).await? {
                Some(id) => return Ok(Resolution::Consumed(id)),
                None => self.request(call).await?,
            },
            other => other,
        };
        Ok(match a {
            Ok(a) => Resolution::Pending(a.id),
            Err(reason) => Resolution::Full {
                reason,
                retry_after_ms: match standing(state, &key, now_ms) {
                    Standing::Full(full) => full.retry_after_ms,
                    _ => APPROVAL_RETRY_AFTER_MS_MIN,
                },
            },
        })
    }

    /// Uses the approved approval for this call: its id, or `None` when there is none (any more).
    async fn consume(&self, call: &Call<'_>) -> Result<Option<String>, String> {
        let consume = Op::ConsumeApproval {
            tenant: call.tenant.into(),
            agent: call.agent.into(),
            tool: call.tool.into(),
            args_digest: call.args_digest.into(),
        };
        match self.propose(&consume).await {
            Ok(Response::Entity(e)) => match *e {
                Entity::Approval(a) => Ok(Some(a.id)),
                _ => Err("the core answered a consumption with something else".into()),
            },
            Ok(_) => Err("the core answered a consumption with something else".into()),
            Err(e) if e.code() == Code::FailedPrecondition => Ok(None),
            Err(e) => Err(format!("the core cannot be asked: {e}")),
        }
    }

    /// Requests an approval for this call: the live one for it (new or folded into an identical
    /// one), or the core's refusal when a queue is full.
    async fn request(&self, call: &Call<'_>) -> Result<Result<Approval, String>, String> {
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
                Entity::Approval(a) => Ok(Ok(a)),
                _ => Err("the core answered an approval request with something else".into()),
            },
            Ok(_) => Err("the core answered an approval request with something else".into()),
            Err(e) if e.code() == Code::ResourceExhausted => Ok(Err(e.to_string())),
            Err(e) => Err(format!("the approval cannot be requested: {e}")),
        }
    }
}
