//! The `Admin` gRPC service (what `agentgate-admin` calls).

use std::sync::Arc;

use agentgate_model::query::Query;
use agentgate_proto::json;
use agentgate_proto::pb::admin_server::Admin;
use agentgate_proto::pb::{
    AddNodeRequest, ClusterStatus, InitClusterRequest, ProposeReply, ProposeRequest, QueryReply,
    QueryRequest, ReadIndexReply, ReadIndexRequest, RemoveNodeRequest, StatusRequest,
    ValidatePolicyReply, ValidatePolicyRequest,
};
use tonic::{Request, Response, Status};
use tracing::Instrument;

use crate::app::App;

pub struct AdminRpc {
    pub app: Arc<App>,
}

#[tonic::async_trait]
impl Admin for AdminRpc {
    async fn propose(
        &self,
        req: Request<ProposeRequest>,
    ) -> Result<Response<ProposeReply>, Status> {
        let _t = self.app.time_rpc("admin_propose");
        let span = crate::app::admin_span(&req, "Propose");
        self.app
            .propose(req)
            .instrument(span)
            .await
            .map(Response::new)
    }

    async fn query(&self, req: Request<QueryRequest>) -> Result<Response<QueryReply>, Status> {
        let _t = self.app.time_rpc("admin_query");
        let q: Query = json::decode("query_json", &req.into_inner().query_json)?;
        let revision = self.app.read_barrier().await?;
        let result = self.app.query(q)?;
        Ok(Response::new(QueryReply {
            revision,
            result_json: json::encode(&result)?,
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
        self.app
            .init_cluster(req.into_inner().members)
            .await
            .map(Response::new)
    }

    async fn add_node(
        &self,
        req: Request<AddNodeRequest>,
    ) -> Result<Response<ClusterStatus>, Status> {
        self.app.add_node(req).await.map(Response::new)
    }

    async fn remove_node(
        &self,
        req: Request<RemoveNodeRequest>,
    ) -> Result<Response<ClusterStatus>, Status> {
        self.app.remove_node(req).await.map(Response::new)
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
