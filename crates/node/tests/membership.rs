//! Membership changes, health endpoints and static configuration on real processes.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use agentgate_testkit as common;

use std::process::Command;

use agentgate_model::Op;
use agentgate_model::entity::Kind;
use agentgate_proto::pb::{AddNodeRequest, InitClusterRequest, NodeAddr, RemoveNodeRequest};
use common::{Cluster, http_get};
use tonic::Code;

#[tokio::test(flavor = "multi_thread")]
async fn add_a_node_as_learner_then_voter_and_remove_it() {
    let c = Cluster::start(4, &[]);
    let members = c.members(&[1, 2, 3]);
    c.client(1)
        .await
        .init_cluster(InitClusterRequest {
            members: members.clone(),
        })
        .await
        .unwrap();
    let leader = c.wait_for_leader(&[1, 2, 3]).await;
    let follower = [1, 2, 3].into_iter().find(|i| *i != leader).unwrap();

    // Initializing twice is refused, not silently repeated.
    let e = c
        .client(leader)
        .await
        .init_cluster(InitClusterRequest { members })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::FailedPrecondition);

    // Node 4 is up but no member: not ready.
    let (code, body) = http_get(&c.node(4).http, "/readyz");
    assert_eq!(code, 503, "{body}");

    c.create_tenant(leader, "before").await;
    // Added through a follower: forwarded to the leader, learner first, then voter.
    let st = c
        .client(follower)
        .await
        .add_node(AddNodeRequest {
            node: Some(NodeAddr {
                id: 4,
                addr: c.node(4).grpc.clone(),
            }),
            as_voter: true,
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        st.voters.iter().map(|v| v.id).collect::<Vec<_>>(),
        vec![1, 2, 3, 4]
    );
    c.wait_for_leader(&[1, 2, 3, 4]).await;
    let (code, _) = http_get(&c.node(4).http, "/readyz");
    assert_eq!(code, 200);
    // The new voter holds what was written before it joined.
    let t = c.list(4, Kind::Tenant).await;
    assert_eq!(t.len(), 1);

    let st = c
        .client(4)
        .await
        .remove_node(RemoveNodeRequest { id: 4 })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        st.voters.iter().map(|v| v.id).collect::<Vec<_>>(),
        vec![1, 2, 3]
    );
    assert!(st.learners.is_empty());
    let e = c
        .client(leader)
        .await
        .remove_node(RemoveNodeRequest { id: 9 })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::NotFound);
    // The cluster still commits.
    c.create_tenant(leader, "after").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn health_and_metrics_endpoints() {
    let c = Cluster::start_initialized(3, &[]).await;
    let leader = c.wait_for_leader(&[1, 2, 3]).await;
    c.create_tenant(leader, "t").await;
    for id in c.ids() {
        let http = &c.node(id).http;
        assert_eq!(http_get(http, "/livez").0, 200);
        assert_eq!(http_get(http, "/readyz").0, 200);
        assert_eq!(http_get(http, "/nope").0, 404);
    }
    let (code, body) = http_get(&c.node(leader).http, "/metrics");
    assert_eq!(code, 200);
    for name in [
        "agentgate_raft_term",
        "agentgate_raft_is_leader 1",
        "agentgate_raft_committed_index",
        "agentgate_raft_apply_lag_entries",
        "agentgate_raft_replication_lag_entries",
        "agentgate_node_proposal_duration_seconds_bucket",
        "agentgate_node_rpc_duration_seconds_bucket",
        "# HELP agentgate_raft_term",
    ] {
        assert!(body.contains(name), "/metrics lacks {name}:\n{body}");
    }
}

#[test]
fn validate_only_checks_static_configuration() {
    let bin = env!("CARGO_BIN_EXE_agentgate-node");
    let ok = Command::new(bin)
        .args(["--id", "1", "--data-dir", "/tmp/x", "--validate-only"])
        .output()
        .unwrap();
    assert!(ok.status.success(), "{ok:?}");
    assert!(String::from_utf8_lossy(&ok.stdout).contains("data_dir"));
    let bad = Command::new(bin)
        .args([
            "--pod-name",
            "core",
            "--data-dir",
            "/tmp/x",
            "--validate-only",
        ])
        .output()
        .unwrap();
    assert_eq!(bad.status.code(), Some(3));
    assert!(String::from_utf8_lossy(&bad.stderr).contains("does not end in `-ORDINAL`"));
    let none = Command::new(bin)
        .args(["--data-dir", "/tmp/x", "--validate-only"])
        .env_remove("AGENTGATE_ID")
        .output()
        .unwrap();
    assert_eq!(none.status.code(), Some(3));
    // A StatefulSet pod: the id is the ordinal + 1; a node outside the initial members joins.
    let pod = Command::new(bin)
        .args(["--data-dir", "/tmp/x", "--validate-only"])
        .args(["--initial-members", "1=core-0:7400,2=core-1:7400"])
        .env("AGENTGATE_POD_NAME", "agentgate-core-3")
        .output()
        .unwrap();
    assert!(pod.status.success(), "{pod:?}");
    assert!(String::from_utf8_lossy(&pod.stdout).contains("id: 4,"));
    let env = Command::new(bin)
        .args(["--validate-only"])
        .env("AGENTGATE_ID", "7")
        .env("AGENTGATE_DATA_DIR", "/tmp/y")
        .env("AGENTGATE_REGION", "eu-west")
        .output()
        .unwrap();
    assert!(env.status.success(), "{env:?}");
    assert!(String::from_utf8_lossy(&env.stdout).contains("eu-west"));
}

#[tokio::test(flavor = "multi_thread")]
async fn the_leader_sweeps_expired_switches_and_approvals() {
    use agentgate_model::entity::{ApprovalState, Entity, Scope};
    use std::collections::BTreeMap;

    let c = Cluster::start_initialized(3, &[]).await;
    let leader = c.wait_for_leader(&[1, 2, 3]).await;
    c.create_tenant(leader, "t").await;
    c.propose(
        leader,
        &Op::CreateAgent {
            tenant: "t".into(),
            id: "bot".into(),
            roles: vec![],
            labels: BTreeMap::new(),
            key_hash: String::new(),
        },
    )
    .await
    .unwrap();
    c.propose(
        leader,
        &Op::EngageSwitch {
            scope: Scope::Global,
            reason: "short".into(),
            ttl_ms: Some(300),
        },
    )
    .await
    .unwrap();
    c.propose(
        leader,
        &Op::EngageSwitch {
            scope: Scope::Region {
                region: "eu".into(),
            },
            reason: "long".into(),
            ttl_ms: None,
        },
    )
    .await
    .unwrap();
    c.propose(
        leader,
        &Op::RequestApproval {
            tenant: "t".into(),
            agent: "bot".into(),
            tool: "rm".into(),
            args_digest: "a".repeat(64),
            reason: String::new(),
            ttl_ms: Some(300),
        },
    )
    .await
    .unwrap();
    let c = &c;
    common::eventually(
        "the expired switch and approval are swept",
        common::DEADLINE,
        || async move {
            let sw = c.list(leader, Kind::Switch).await;
            let ap = c.list(leader, Kind::Approval).await;
            let approval_expired =
                matches!(&ap[..], [Entity::Approval(a)] if a.state == ApprovalState::Expired);
            // Only the switch without expiry is left.
            sw.len() == 1 && approval_expired
        },
    )
    .await;
}
