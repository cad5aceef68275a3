//! A write whose reply is lost after it committed, retried under its request id, is applied once
//! and answers as the first attempt did (design.md G7) — shown with the edge's own approval code:
//! a retried `ConsumeApproval` still allows the call it was for, exactly once. A node that
//! commits each first proposal and then "loses" the reply stands between the client and the
//! cluster (a real `Admin` service forwarding to a real node).
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use agentgate_client::{Client, ClientConfig, RequestIds, Retry};
use agentgate_edge::approvals::{Approvals, Call, Resolution};
use agentgate_model::command::Response;
use agentgate_model::entity::{ApprovalState, Entity};
use agentgate_model::query::{Query, QueryResult};
use agentgate_model::{Op, State};
use agentgate_proto::pb::admin_client::AdminClient;
use agentgate_proto::pb::admin_server::{Admin, AdminServer};
use agentgate_proto::pb::{
    AddNodeRequest, ClusterStatus, InitClusterRequest, ProposeReply, ProposeRequest, QueryReply,
    QueryRequest, ReadIndexReply, ReadIndexRequest, RemoveNodeRequest, StatusRequest,
    ValidatePolicyReply, ValidatePolicyRequest,
};
use agentgate_runtime::net::Dialer;
use agentgate_testkit::{Cluster, admin_client};
use tonic::transport::Channel;
use tonic::{Code, Request, Response as RpcResponse, Status};

const DIGEST: &str = "cccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccc";

/// An `Admin` endpoint in front of a real node that passes every call on, but answers the first
/// `lose` proposals `UNAVAILABLE` after the node committed them: the reply is lost.
struct LossyNode {
    node: AdminClient<Channel>,
    lose: AtomicU32,
    /// Proposals the node committed whose reply was dropped.
    lost: Arc<AtomicU32>,
}

#[tonic::async_trait]
impl Admin for LossyNode {
    async fn propose(
        &self,
        req: Request<ProposeRequest>,
    ) -> Result<RpcResponse<ProposeReply>, Status> {
        let reply = self.node.clone().propose(req.into_inner()).await?;
        let lose = self
            .lose
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
            .is_ok();
        if lose {
            self.lost.fetch_add(1, Ordering::SeqCst);
            return Err(Status::unavailable("the connection broke before the reply"));
        }
        Ok(reply)
    }
    async fn query(&self, r: Request<QueryRequest>) -> Result<RpcResponse<QueryReply>, Status> {
        self.node.clone().query(r.into_inner()).await
    }
    async fn validate_policy(
        &self,
        r: Request<ValidatePolicyRequest>,
    ) -> Result<RpcResponse<ValidatePolicyReply>, Status> {
        self.node.clone().validate_policy(r.into_inner()).await
    }
    async fn init_cluster(
        &self,
        r: Request<InitClusterRequest>,
    ) -> Result<RpcResponse<ClusterStatus>, Status> {
        self.node.clone().init_cluster(r.into_inner()).await
    }
    async fn add_node(
        &self,
        r: Request<AddNodeRequest>,
    ) -> Result<RpcResponse<ClusterStatus>, Status> {
        self.node.clone().add_node(r.into_inner()).await
    }
    async fn remove_node(
        &self,
        r: Request<RemoveNodeRequest>,
    ) -> Result<RpcResponse<ClusterStatus>, Status> {
        self.node.clone().remove_node(r.into_inner()).await
    }
    async fn status(
        &self,
        r: Request<StatusRequest>,
    ) -> Result<RpcResponse<ClusterStatus>, Status> {
        self.node.clone().status(r.into_inner()).await
    }
    async fn read_index(
        &self,
        r: Request<ReadIndexRequest>,
    ) -> Result<RpcResponse<ReadIndexReply>, Status> {
        self.node.clone().read_index(r.into_inner()).await
    }
}

/// Serves a [`LossyNode`] for `node` on 127.0.0.1; returns its address and the lost-reply count.
async fn lossy(node: &str, lose: u32) -> (String, Arc<AtomicU32>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let lost = Arc::new(AtomicU32::new(0));
    let svc = LossyNode {
        node: admin_client(node),
        lose: AtomicU32::new(lose),
        lost: lost.clone(),
    };
    tokio::spawn(async move {
        tonic::transport::Server::builder()
            .add_service(AdminServer::new(svc))
            .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(listener))
            .await
    });
    (addr, lost)
}

async fn approved_call(c: &Cluster) -> String {
    c.propose(
        1,
        &Op::CreateTenant {
            id: "t".into(),
            stale_allow_read_only: false,
        },
    )
    .await
    .unwrap();
    c.propose(
        1,
        &Op::CreateAgent {
            tenant: "t".into(),
            id: "bot".into(),
            roles: vec![],
            labels: Default::default(),
            key_hash: String::new(),
        },
    )
    .await
    .unwrap();
    let requested = c
        .propose(
            1,
            &Op::RequestApproval {
                tenant: "t".into(),
                agent: "bot".into(),
                tool: "delete_file".into(),
                args_digest: DIGEST.into(),
                reason: "test".into(),
                ttl_ms: None,
            },
        )
        .await
        .unwrap();
    let Response::Entity(e) = requested.response else {
        panic!("{:?}", requested.response)
    };
    let Entity::Approval(a) = *e else {
        panic!("{e:?}")
    };
    c.propose(
        1,
        &Op::DecideApproval {
            id: a.id.clone(),
            approve: true,
        },
    )
    .await
    .unwrap();
    a.id
}

/// The approvals the cluster holds, as an edge's replica would.
async fn replica(c: &Cluster) -> State {
    let (_, r) = c
        .query(
            2,
            &Query::Approvals {
                tenant: Some("t".into()),
                state: None,
            },
        )
        .await
        .unwrap();
    let QueryResult::Entities(es) = r else {
        panic!("{r:?}")
    };
    let mut s = State::default();
    for e in es {
        s.put(e);
    }
    s
}

async fn approval_state(c: &Cluster, id: &str) -> ApprovalState {
    replica(c).await.approvals[id].state
}

#[tokio::test]
async fn a_retried_consume_after_a_lost_reply_still_allows_the_call_exactly_once() {
    let c = Cluster::start_initialized(3, &[]).await;
    let id = approved_call(&c).await;
    let (front, lost) = lossy(&c.node(1).grpc, 1).await;

    // The edge's approval code, through the lossy node first and a real node second.
    let approvals = Approvals::new(
        &[front.clone(), c.node(2).grpc.clone()],
        Duration::from_secs(5),
        &Dialer::tcp(),
        "edge-retry-test",
        None,
    )
    .unwrap();
    let call = Call {
        tenant: "t",
        agent: "bot",
        tool: "delete_file",
        args_digest: DIGEST,
        reason: "test",
    };
    // The edge's replica shows the approval approved, so the consumption is its first write.
    let resolved = approvals
        .resolve(&replica(&c).await, &call, 0)
        .await
        .unwrap();
    assert_eq!(lost.load(Ordering::SeqCst), 1, "the first reply was lost");
    assert_eq!(
        resolved,
        Resolution::Consumed(id.clone()),
        "the retry answers as the lost first attempt did: the call goes ahead"
    );
    assert_eq!(approval_state(&c, &id).await, ApprovalState::Consumed);
    // Used once: the next identical call finds no approval and opens a new request.
    let again = approvals
        .resolve(&State::default(), &call, 0)
        .await
        .unwrap();
    assert!(
        matches!(&again, Resolution::Pending(other) if *other != id),
        "{again:?}"
    );
}

#[tokio::test]
async fn without_a_request_id_the_same_retry_would_refuse_the_call() {
    // The deliberately broken variant: the same lost reply, retried as a new write (what a
    // client without request ids does). The approval was used by the first attempt, so the
    // retry is refused and the call it was for would be denied.
    let c = Cluster::start_initialized(3, &[]).await;
    let id = approved_call(&c).await;
    let (front, lost) = lossy(&c.node(1).grpc, 1).await;
    let consume = serde_json::to_vec(&Op::ConsumeApproval {
        tenant: "t".into(),
        agent: "bot".into(),
        tool: "delete_file".into(),
        args_digest: DIGEST.into(),
    })
    .unwrap();
    let req = || ProposeRequest {
        op_json: consume.clone(),
        actor: "edge/broken".into(),
        request_id: String::new(),
    };
    let first = admin_client(&front).propose(req()).await.unwrap_err();
    assert_eq!(first.code(), Code::Unavailable);
    assert_eq!(lost.load(Ordering::SeqCst), 1);
    let retry = admin_client(&c.node(2).grpc)
        .propose(req())
        .await
        .unwrap_err();
    assert_eq!(retry.code(), Code::FailedPrecondition, "{retry:?}");
    assert_eq!(approval_state(&c, &id).await, ApprovalState::Consumed);

    // With the typed client's request id, the same sequence answers the consumption.
    let id2 = {
        let requested = c
            .propose(
                1,
                &Op::RequestApproval {
                    tenant: "t".into(),
                    agent: "bot".into(),
                    tool: "delete_file".into(),
                    args_digest: DIGEST.into(),
                    reason: "again".into(),
                    ttl_ms: None,
                },
            )
            .await
            .unwrap();
        let Response::Entity(e) = requested.response else {
            panic!()
        };
        let Entity::Approval(a) = *e else { panic!() };
        c.propose(
            1,
            &Op::DecideApproval {
                id: a.id.clone(),
                approve: true,
            },
        )
        .await
        .unwrap();
        a.id
    };
    let (front, lost) = lossy(&c.node(1).grpc, 1).await;
    let client = Client::new(
        &[front, c.node(2).grpc.clone()],
        Arc::new(RequestIds::with_prefix("typed")),
        ClientConfig {
            rpc_timeout: Duration::from_secs(5),
            dialer: Dialer::tcp(),
            actor: "edge/typed".into(),
            retry: Retry::within(Duration::from_secs(5)),
        },
    )
    .unwrap();
    let p = client
        .propose(&serde_json::from_slice::<Op>(&consume).unwrap())
        .await
        .unwrap();
    assert_eq!(lost.load(Ordering::SeqCst), 1);
    assert!(p.replayed, "answered from the first attempt's record");
    let Response::Entity(e) = p.response else {
        panic!("{:?}", p.response)
    };
    assert!(
        matches!(&*e, Entity::Approval(a) if a.id == id2 && a.state == ApprovalState::Consumed),
        "{e:?}"
    );
}
