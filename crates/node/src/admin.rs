//! The `Admin` gRPC service (what `agentgate-admin` calls): decodes each request, calls the
//! [`App`], and answers through the one mapping of [`crate::error::NodeError`] to a status.

use std::sync::Arc;

use agentgate_client::is_forwarded;
use agentgate_model::query::Query;
use agentgate_proto::pb::admin_server::Admin;
use agentgate_proto::pb::{
    AddNodeRequest, ClusterStatus, InitClusterRequest, ProposeReply, ProposeRequest, QueryReply,
    QueryRequest, ReadIndexReply, ReadIndexRequest, RemoveNodeRequest, StatusRequest,
    ValidatePolicyReply, ValidatePolicyRequest,
};
use agentgate_runtime::telemetry::{self, TARGET};
use tonic::{Request, Response, Status};
use tracing::Instrument;
use tracing::field::Empty;
use tracing_opentelemetry::OpenTelemetrySpanExt;

use crate::app::{App, Proposal};
use crate::error::{decode, encode};

pub struct AdminRpc {
    pub app: Arc<App>,
}

/// The span of an admin operation arriving over gRPC, parented on the caller's W3C context
/// (`traceparent` metadata) when there is one; disabled unless traces are exported.
pub fn admin_span<T>(req: &Request<T>, rpc: &'static str) -> tracing::Span {
    let span = tracing::info_span!(
        target: TARGET,
        "agentgate.admin",
        otel.kind = "server",
        rpc.method = rpc,
        agentgate.op = Empty,
        agentgate.actor = Empty,
        agentgate.forwarded = is_forwarded(req),
        raft.log_index = Empty,
        agentgate.revision = Empty,
    );
    if !span.is_disabled() {
        let headers = req.metadata().clone().into_headers();
        let cx = telemetry::extract(&telemetry::HeaderReader(&headers));
        if telemetry::has_span(&cx) {
            let _ = span.set_parent(cx);
        }
    }
    span
}

#[tonic::async_trait]
impl Admin for AdminRpc {
    async fn propose(
        &self,
        req: Request<ProposeRequest>,
    ) -> Result<Response<ProposeReply>, Status> {
        let _t = self.app.time_rpc("admin_propose");
        let span = admin_span(&req, "Propose");
        let proposal = Proposal {
            forwarded: is_forwarded(&req),
            request: req.into_inner(),
        };
        Ok(Response::new(
            self.app.propose(proposal).instrument(span).await?,
        ))
    }

    async fn query(&self, req: Request<QueryRequest>) -> Result<Response<QueryReply>, Status> {
        let _t = self.app.time_rpc("admin_query");
        let q: Query = decode("query_json", &req.into_inner().query_json)?;
        let revision = self.app.read_barrier().await?;
        let result = self.app.query(&q)?;
        Ok(Response::new(QueryReply {
            revision,
            result_json: encode(&result)?,
        }))
    }

    async fn validate_policy(
        &self,
        req: Request<ValidatePolicyRequest>,
    ) -> Result<Response<ValidatePolicyReply>, Status> {
        let r = req.into_inner();
        let reply =
            match agentgate_model::policy::validate_package(&r.policies, &r.schema, &r.entities) {
                Ok(v) => ValidatePolicyReply {
                    valid: true,
                    errors: String::new(),
                    sha256: v.sha256,
                    policy_count: u32::try_from(v.policy_count).unwrap_or(u32::MAX),
                },
                Err(errors) => ValidatePolicyReply {
                    valid: false,
                    errors,
                    sha256: String::new(),
                    policy_count: 0,
                },
            };
        Ok(Response::new(reply))
    }

    async fn init_cluster(
        &self,
        req: Request<InitClusterRequest>,
    ) -> Result<Response<ClusterStatus>, Status> {
        Ok(Response::new(
            self.app.init_cluster(req.into_inner().members).await?,
        ))
    }

    async fn add_node(
        &self,
        req: Request<AddNodeRequest>,
    ) -> Result<Response<ClusterStatus>, Status> {
        let forwarded = is_forwarded(&req);
        Ok(Response::new(
            self.app.add_node(req.into_inner(), forwarded).await?,
        ))
    }

    async fn remove_node(
        &self,
        req: Request<RemoveNodeRequest>,
    ) -> Result<Response<ClusterStatus>, Status> {
        let forwarded = is_forwarded(&req);
        Ok(Response::new(
            self.app.remove_node(req.into_inner(), forwarded).await?,
        ))
    }

    async fn status(
        &self,
        _req: Request<StatusRequest>,
    ) -> Result<Response<ClusterStatus>, Status> {
        Ok(Response::new(self.app.status()))
    }

    async fn read_index(
        &self,
        _req: Request<ReadIndexRequest>,
    ) -> Result<Response<ReadIndexReply>, Status> {
        let read_index = self.app.leader_read_index().await?;
        let term = self.app.raft.metrics().borrow().current_term;
        Ok(Response::new(ReadIndexReply {
            read_index,
            leader_id: self.app.id,
            term,
        }))
    }
}
