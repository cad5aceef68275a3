//! End to end: three real `agentgate-node` processes on 127.0.0.1.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use agentgate_testkit as common;

use std::collections::BTreeMap;

use agentgate_model::Op;
use agentgate_model::State;
use agentgate_model::audit::{AuditEntry, Decision, verify_chain};
use agentgate_model::change::Change;
use agentgate_model::entity::{Entity, Kind, PolicyPackage, Scope};
use agentgate_model::query::{AuditFilter, Query, QueryResult};
use agentgate_proto::pb::edge_sync_client::EdgeSyncClient;
use agentgate_proto::pb::{AppendAuditRequest, ConfirmRequest, WatchRequest, watch_event};
use common::{Cluster, DEADLINE};
use tonic::Code;

#[tokio::test(flavor = "multi_thread")]
async fn writes_replicate_survive_leader_kill_and_restart_catches_up() {
    let mut c = Cluster::start_initialized(3, &[]).await;
    let leader = c.wait_for_leader(&[1, 2, 3]).await;
    let follower = c.ids().into_iter().find(|i| *i != leader).unwrap();

    // A write through a follower is forwarded to the leader.
    let op = Op::CreateTenant {
        id: "through-follower".into(),
        stale_allow_read_only: false,
    };
    let r = c.propose(follower, &op).await.unwrap();
    assert!(r.revision >= 1);
    c.create_tenant(leader, "through-leader").await;
    let created = c
        .propose(
            follower,
            &Op::CreateAgent {
                tenant: "through-leader".into(),
                id: "bot".into(),
                roles: vec![],
                labels: BTreeMap::new(),
                key_hash: String::new(),
            },
        )
        .await
        .unwrap();
    let api_key = created.api_key.clone().expect("the key, shown once");
    assert!(
        api_key.starts_with("agk_"),
        "the key is returned once, at creation"
    );

    // Readable, identical, from every node (reads pass a read barrier).
    let mut views = Vec::new();
    for id in c.ids() {
        views.push(c.list(id, Kind::Tenant).await);
    }
    assert_eq!(views[0].len(), 2);
    assert!(views.iter().all(|v| v == &views[0]));
    // The stored agent holds a hash, never the key.
    let agents = c.list(follower, Kind::Agent).await;
    let Entity::Agent(a) = &agents[0] else {
        panic!()
    };
    assert_ne!(a.key_hash, api_key);
    assert!(!serde_json::to_string(&agents).unwrap().contains(&api_key));

    // SIGKILL the leader: a new one is elected, every acknowledged write is still there.
    c.kill(leader);
    let rest = c.ids();
    let new_leader = c.wait_for_leader(&rest).await;
    assert_ne!(new_leader, leader);
    for id in &rest {
        assert_eq!(c.list(*id, Kind::Tenant).await.len(), 2);
    }
    c.create_tenant(rest[0], "after-failover").await;

    // The killed node comes back on its data dir and catches up.
    c.restart(leader);
    c.wait_for_leader(&[1, 2, 3]).await;
    let caught_up = c.list(leader, Kind::Tenant).await;
    assert_eq!(caught_up.len(), 3);
    assert_eq!(caught_up, c.list(new_leader, Kind::Tenant).await);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_node_down_during_log_compaction_catches_up_by_snapshot() {
    let mut c =
        Cluster::start_initialized(3, &["--snapshot-logs", "40", "--logs-to-keep", "5"]).await;
    let leader = c.wait_for_leader(&[1, 2, 3]).await;
    let down = c.ids().into_iter().find(|i| *i != leader).unwrap();
    c.create_tenant(leader, "t").await;
    c.kill(down);
    let down_applied = 0;
    c.engage(
        leader,
        (0..150).map(|i| Scope::Session {
            tenant: "t".into(),
            session: format!("s{i}"),
        }),
    )
    .await;
    // The leader's log is compacted past everything the down node has.
    let st = c.status(leader).await.unwrap();
    assert!(
        st.purged_index.unwrap_or(0) > down_applied + 10,
        "leader did not purge: {st:?}"
    );

    c.restart(down);
    c.wait_for_leader(&[1, 2, 3]).await;
    let switches = c.list(down, Kind::Switch).await;
    assert_eq!(switches.len(), 150);
    let st = c.status(down).await.unwrap();
    assert!(
        st.snapshot_index.is_some(),
        "the restarted node should hold an installed snapshot: {st:?}"
    );
}

/// Applies a watch event to an edge-side replica, asserting there is no gap or duplicate.
fn apply_event(state: &mut Option<State>, ev: watch_event::Event) {
    match ev {
        watch_event::Event::Snapshot(s) => {
            let st: State = serde_json::from_slice(&s.state_json).unwrap();
            assert_eq!(st.revision, s.revision);
            if let Some(old) = state {
                assert!(
                    st.revision >= old.revision,
                    "a snapshot must not move the watcher back"
                );
            }
            *state = Some(st);
        }
        watch_event::Event::Delta(d) => {
            let st = state.as_mut().expect("a delta before any snapshot");
            assert!(
                d.prev_revision <= st.revision,
                "gap: delta {}..{} at {}",
                d.prev_revision,
                d.revision,
                st.revision
            );
            assert!(
                d.revision > st.revision,
                "duplicate delta {} at {}",
                d.revision,
                st.revision
            );
            let changes: Vec<Change> = serde_json::from_slice(&d.changes_json).unwrap();
            for ch in &changes {
                st.apply_change(ch);
            }
            st.revision = d.revision;
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn watch_streams_snapshot_then_deltas_across_a_leader_change() {
    let mut c = Cluster::start_initialized(3, &[]).await;
    let leader = c.wait_for_leader(&[1, 2, 3]).await;
    c.create_tenant(leader, "t").await;

    let connect = |addr: String| async move {
        EdgeSyncClient::connect(format!("http://{addr}"))
            .await
            .unwrap()
    };
    // Watch the leader itself, so that killing it forces a reconnect elsewhere.
    let mut edge = connect(c.node(leader).grpc.clone()).await;
    let mut stream = edge
        .watch(WatchRequest {
            edge_id: "edge-1".into(),
            from_revision: None,
            region: "local".into(),
        })
        .await
        .unwrap()
        .into_inner();
    let mut replica: Option<State> = None;
    apply_event(
        &mut replica,
        stream.message().await.unwrap().unwrap().event.unwrap(),
    );

    c.engage(
        leader,
        (0..20).map(|i| Scope::Agent {
            tenant: "t".into(),
            agent: format!("a{i}"),
        }),
    )
    .await;
    // Audit appends bump the revision but are not sent to edges.
    let mut audit = connect(c.node(leader).grpc.clone()).await;
    audit
        .append_audit(AppendAuditRequest {
            edge_id: "edge-1".into(),
            records_json: b"[]".to_vec(),
        })
        .await
        .unwrap();
    let target = c.query(leader, &Query::AuditHead).await.unwrap().0;
    while replica.as_ref().unwrap().switches.len() < 20 {
        let ev = tokio::time::timeout(DEADLINE, stream.message())
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        apply_event(&mut replica, ev.event.unwrap());
    }
    assert!(target >= replica.as_ref().unwrap().revision);

    // Kill the node being watched; the edge resumes from its revision on another node.
    c.kill(leader);
    let rest = c.ids();
    let new_leader = c.wait_for_leader(&rest).await;
    c.engage(
        new_leader,
        (20..30).map(|i| Scope::Agent {
            tenant: "t".into(),
            agent: format!("a{i}"),
        }),
    )
    .await;
    let from = replica.as_ref().unwrap().revision;
    let mut edge = connect(c.node(rest[1]).grpc.clone()).await;
    let mut stream = edge
        .watch(WatchRequest {
            edge_id: "edge-1".into(),
            from_revision: Some(from),
            region: "local".into(),
        })
        .await
        .unwrap()
        .into_inner();
    while replica.as_ref().unwrap().switches.len() < 30 {
        let ev = tokio::time::timeout(DEADLINE, stream.message())
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        apply_event(&mut replica, ev.event.unwrap());
    }
    // The replica equals the cluster's state (edge view).
    let switches = c.list(rest[1], Kind::Switch).await;
    let mine: Vec<Entity> = replica.as_ref().unwrap().entities_of(Kind::Switch);
    assert_eq!(mine, switches);

    // A freshness confirmation answers with the request id and a revision covering every commit.
    let reply = common::retrying(|| {
        let mut edge = edge.clone();
        async move {
            edge.confirm(ConfirmRequest {
                request_id: 42,
                edge_id: "edge-1".into(),
            })
            .await
        }
    })
    .await
    .unwrap()
    .into_inner();
    assert_eq!(reply.request_id, 42);
    assert!(reply.revision >= replica.as_ref().unwrap().revision);
}

fn audit_entry(edge_seq: u64, decision: Decision) -> AuditEntry {
    AuditEntry {
        edge_seq,
        time_ms: 1_000 + edge_seq,
        tenant: "t".into(),
        agent: "bot".into(),
        session: Some("s".into()),
        method: "tools/call".into(),
        tool: Some("echo".into()),
        args_digest: None,
        decision,
        reason: String::new(),
        policy_version: Some("v1".into()),
        policy_ids: vec![],
        shadow_decision: None,
        latency_us: 5,
        upstream_latency_us: None,
        upstream_status: Some(200),
        trace_id: None,
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn audit_append_is_idempotent_queryable_and_chained() {
    let c = Cluster::start_initialized(3, &[]).await;
    let leader = c.wait_for_leader(&[1, 2, 3]).await;
    let follower = c.ids().into_iter().find(|i| *i != leader).unwrap();
    let mut edge = EdgeSyncClient::connect(format!("http://{}", c.node(follower).grpc))
        .await
        .unwrap();
    let batch: Vec<AuditEntry> = (1..=10)
        .map(|i| {
            audit_entry(
                i,
                if i % 3 == 0 {
                    Decision::Deny
                } else {
                    Decision::Allow
                },
            )
        })
        .collect();
    let req = AppendAuditRequest {
        edge_id: "edge-a".into(),
        records_json: serde_json::to_vec(&batch).unwrap(),
    };
    let first = edge.append_audit(req.clone()).await.unwrap().into_inner();
    assert_eq!(
        (
            first.appended,
            first.acked_edge_seq,
            first.first_seq,
            first.last_seq
        ),
        (10, 10, Some(1), Some(10))
    );
    // The same batch again (a retry after a lost ack) appends nothing.
    let again = edge.append_audit(req).await.unwrap().into_inner();
    assert_eq!((again.appended, again.duplicates), (0, 10));

    let denied = AuditFilter {
        tenant: Some("t".into()),
        decision: Some(Decision::Deny),
        ..Default::default()
    };
    let QueryResult::Audit {
        records,
        next_after_seq,
    } = c
        .query(leader, &Query::Audit { filter: denied })
        .await
        .unwrap()
        .1
    else {
        panic!()
    };
    assert_eq!(
        records.iter().map(|r| r.entry.edge_seq).collect::<Vec<_>>(),
        vec![3, 6, 9]
    );
    assert_eq!(next_after_seq, None);

    let all = AuditFilter {
        limit: Some(4),
        ..Default::default()
    };
    let QueryResult::Audit {
        records: page,
        next_after_seq,
    } = c
        .query(follower, &Query::Audit { filter: all })
        .await
        .unwrap()
        .1
    else {
        panic!()
    };
    assert_eq!(page.len(), 4);
    let rest = AuditFilter {
        after_seq: next_after_seq,
        ..Default::default()
    };
    let QueryResult::Audit { records: tail, .. } = c
        .query(follower, &Query::Audit { filter: rest })
        .await
        .unwrap()
        .1
    else {
        panic!()
    };
    let chain: Vec<_> = page.into_iter().chain(tail).collect();
    assert_eq!(verify_chain(&chain), Ok(10));
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_input_is_rejected_with_clear_errors_and_changes_nothing() {
    let c = Cluster::start_initialized(3, &[]).await;
    let leader = c.wait_for_leader(&[1, 2, 3]).await;
    let follower = c.ids().into_iter().find(|i| *i != leader).unwrap();
    c.create_tenant(follower, "t").await;
    let before = c
        .query(
            follower,
            &Query::List {
                kind: Kind::Policy,
                tenant: None,
            },
        )
        .await
        .unwrap();

    // An invalid Cedar policy: the validator's message, nothing committed.
    let schema = "entity Agent; entity Tool; action call_tool appliesTo { principal: [Agent], resource: [Tool] };";
    let policies =
        "permit(principal, action == Action::\"call_tool\", resource) when { resource.nope };";
    let bad = Op::PushPolicy {
        package: PolicyPackage {
            tenant: "t".into(),
            version: "v1".into(),
            policies: policies.into(),
            schema: schema.into(),
            entities: String::new(),
            sha256: String::new(),
            author: "ops".into(),
            description: String::new(),
            created_ms: 0,
            signature: None,
        },
    };
    let e = c.propose(follower, &bad).await.unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument);
    assert!(
        e.message().contains("nothing was committed") && e.message().contains("nope"),
        "{}",
        e.message()
    );
    let after = c
        .query(
            follower,
            &Query::List {
                kind: Kind::Policy,
                tenant: None,
            },
        )
        .await
        .unwrap();
    assert_eq!(before.1, after.1);
    assert_eq!(
        before.0, after.0,
        "a rejected policy must not even reach the log"
    );

    // A valid one commits.
    let Op::PushPolicy { mut package } = bad else {
        unreachable!()
    };
    package.policies = "permit(principal, action == Action::\"call_tool\", resource);".into();
    c.propose(follower, &Op::PushPolicy { package })
        .await
        .unwrap();

    // Unknown ids: NotFound.
    let e = c
        .propose(
            leader,
            &Op::RevokeAgent {
                tenant: "t".into(),
                id: "ghost".into(),
            },
        )
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::NotFound);
    let e = c
        .query(
            leader,
            &Query::List {
                kind: Kind::Agent,
                tenant: Some("nope".into()),
            },
        )
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::NotFound);

    // Malformed and oversize requests.
    let mut client = c.client(follower).await;
    let e = client
        .propose(agentgate_proto::pb::ProposeRequest {
            op_json: b"{not json".to_vec(),
            actor: String::new(),
            request_id: String::new(),
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument);
    let huge = vec![b' '; agentgate_model::limits::GRPC_MESSAGE_BYTES_MAX + 1];
    let e = client
        .propose(agentgate_proto::pb::ProposeRequest {
            op_json: huge,
            actor: String::new(),
            request_id: String::new(),
        })
        .await
        .unwrap_err();
    assert!(
        matches!(
            e.code(),
            Code::ResourceExhausted | Code::OutOfRange | Code::InvalidArgument
        ),
        "{e:?}"
    );
    let big_reason = "x".repeat(agentgate_model::limits::RAFT_ENTRY_BYTES_MAX + 10);
    let e = c
        .propose(
            leader,
            &Op::EngageSwitch {
                scope: Scope::Global,
                reason: big_reason,
                ttl_ms: None,
            },
        )
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument);
    // A key hash may not be chosen by the client.
    let e = c
        .propose(
            leader,
            &Op::CreateAgent {
                tenant: "t".into(),
                id: "x".into(),
                roles: vec![],
                labels: BTreeMap::new(),
                key_hash: "a".repeat(64),
            },
        )
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument);

    // Every node is still alive and agrees.
    for id in c.ids() {
        assert!(c.status(id).await.is_some());
    }
}
