//! The server side of the Raft transport: decode, hand to openraft, encode its result.

use std::sync::Arc;

use agentgate_proto::json;
use agentgate_proto::pb::RaftPayload;
use agentgate_proto::pb::raft_service_server::RaftService;
use tonic::{Request, Response, Status};

use crate::app::App;

pub struct RaftRpc {
    pub app: Arc<App>,
}

#[tonic::async_trait]
impl RaftService for RaftRpc {
    async fn append_entries(
        &self,
        req: Request<RaftPayload>,
    ) -> Result<Response<RaftPayload>, Status> {
        let _t = self.app.time_rpc("raft_append_entries");
        let rpc = json::decode("json", &req.into_inner().json)?;
        let res = self.app.raft.append_entries(rpc).await;
        Ok(Response::new(RaftPayload {
            json: json::encode(&res)?,
        }))
    }

    async fn vote(&self, req: Request<RaftPayload>) -> Result<Response<RaftPayload>, Status> {
        let _t = self.app.time_rpc("raft_vote");
        let rpc = json::decode("json", &req.into_inner().json)?;
        let res = self.app.raft.vote(rpc).await;
        Ok(Response::new(RaftPayload {
            json: json::encode(&res)?,
        }))
    }

    async fn install_snapshot(
        &self,
        req: Request<RaftPayload>,
    ) -> Result<Response<RaftPayload>, Status> {
        let _t = self.app.time_rpc("raft_install_snapshot");
        let rpc = json::decode("json", &req.into_inner().json)?;
        let res = self.app.raft.install_snapshot(rpc).await;
        Ok(Response::new(RaftPayload {
            json: json::encode(&res)?,
        }))
    }
}
