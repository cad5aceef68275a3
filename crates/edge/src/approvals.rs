//! Calls that need an operator's approval (DESIGN §2 approvals, §5 `@approval("required")`).
//!
//! The edge first tries to use an approval: `ConsumeApproval` is a Raft command, so of any number
//! of identical retries on any number of edges exactly one consumes it. Failing that it reports
//! the pending request for this exact call (same tenant, agent, tool and argument digest), or
//! opens one. The agent gets the approval id in the error and retries once it is approved.

use agentgate_proto::net::Dialer;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use agentgate_model::entity::{ApprovalState, Entity};
use agentgate_model::limits::GRPC_MESSAGE_BYTES_MAX;
use agentgate_model::{Op, Response, State};
use agentgate_proto::pb::ProposeRequest;
use agentgate_proto::pb::admin_client::AdminClient;
use tonic::Code;
use tonic::transport::Channel;

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
    clients: Arc<Vec<AdminClient<Channel>>>,
    next: Arc<AtomicUsize>,
    actor: String,
    ttl_ms: Option<u64>,
}

impl Approvals {
    pub fn new(
        endpoints: &[String],
        rpc_timeout: Duration,
        dialer: &Dialer,
        actor: String,
        ttl_ms: Option<u64>,
    ) -> Result<Self, String> {
        let clients = endpoints
            .iter()
            .map(|e| {
                agentgate_proto::channel::lazy(e, rpc_timeout, dialer)
                    .map(|c| AdminClient::new(c).max_decoding_message_size(GRPC_MESSAGE_BYTES_MAX))
            })
            .collect::<Result<Vec<_>, _>>()?;
        if clients.is_empty() {
            return Err("no core endpoints given".into());
        }
        Ok(Approvals {
            clients: Arc::new(clients),
            next: Arc::new(AtomicUsize::new(0)),
            actor,
            ttl_ms,
        })
    }

    /// Proposes through any node (followers forward to the leader); an unavailable node is
    /// skipped. A refusal by the state machine comes back as its status.
    async fn propose(&self, op: &Op) -> Result<Response, tonic::Status> {
        let op_json = agentgate_proto::json::encode(op)?;
        let mut last = tonic::Status::unavailable("no core node answered");
        for _ in 0..self.clients.len() * 2 {
            let i = self.next.load(Ordering::Relaxed) % self.clients.len();
            let Some(mut c) = self.clients.get(i).cloned() else {
                break;
            };
            let req = ProposeRequest {
                op_json: op_json.clone(),
                actor: self.actor.clone(),
            };
            match c.propose(req).await {
                Ok(r) => {
                    return agentgate_proto::json::decode(
                        "response_json",
                        &r.get_ref().response_json,
                    );
                }
                Err(s)
                    if matches!(
                        s.code(),
                        Code::Unavailable
                            | Code::DeadlineExceeded
                            | Code::Cancelled
                            | Code::Unknown
                    ) =>
                {
                    self.next.fetch_add(1, Ordering::Relaxed);
                    last = s;
                }
                Err(s) => return Err(s),
            }
        }
        Err(last)
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
            Err(s) if s.code() == Code::FailedPrecondition => {}
            Err(s) => return Err(format!("the core cannot be asked: {}", s.message())),
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
            Err(s) => Err(format!("the approval cannot be requested: {}", s.message())),
        }
    }
}
