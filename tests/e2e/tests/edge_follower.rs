//! The edge's follower against real core nodes: replica, failover, staleness (design.md G1, G2).
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    clippy::disallowed_methods // real processes run on real time
)]

use agentgate_testkit as common;

use std::sync::Arc;
use std::time::Duration;

use agentgate_edge::follower::{FollowerConfig, start};
use agentgate_model::Op;
use agentgate_model::entity::{Kind, Scope};
use agentgate_runtime::clock::SystemClock;
use common::{Cluster, DEADLINE, wait_until};

fn config(c: &Cluster, max_staleness: Duration) -> FollowerConfig {
    FollowerConfig {
        endpoints: c.nodes.iter().map(|n| n.grpc.clone()).collect(),
        edge_id: "edge-test-1".into(),
        region: "local".into(),
        max_staleness,
        confirm_interval: max_staleness / 4,
        rpc_timeout: Duration::from_secs(2),
        dialer: agentgate_runtime::net::Dialer::tcp(),
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn follower_tracks_switches_fails_over_and_goes_stale_without_the_core() {
    let mut c = Cluster::start_initialized(3, &[]).await;
    let leader = c.wait_for_leader(&[1, 2, 3]).await;
    c.create_tenant(leader, "t").await;

    let max_staleness = Duration::from_millis(1_500);
    let (follower, tasks) = start(config(&c, max_staleness), Arc::new(SystemClock)).unwrap();
    let mut rx = follower.subscribe();
    tokio::time::timeout(DEADLINE, rx.wait_for(|s| s.tenants.contains_key("t")))
        .await
        .unwrap()
        .unwrap();

    // A committed global pause reaches the replica.
    let committed = c
        .propose(
            leader,
            &Op::EngageSwitch {
                scope: Scope::Global,
                reason: "drill".into(),
                ttl_ms: None,
            },
        )
        .await
        .unwrap();
    let s = tokio::time::timeout(DEADLINE, rx.wait_for(|s| s.switches.contains_key("global")))
        .await
        .unwrap()
        .unwrap()
        .clone();
    assert!(s.revision >= committed.revision);
    // And the lease is confirmed.
    wait_until("the lease is confirmed", DEADLINE, || follower.is_fresh()).await;

    // Kill the leader: the follower carries on through the others with no gap.
    c.kill(leader);
    let rest = c.ids();
    let new_leader = c.wait_for_leader(&rest).await;
    c.engage(
        new_leader,
        (0..10).map(|i| Scope::Session {
            tenant: "t".into(),
            session: format!("s{i}"),
        }),
    )
    .await;
    let s = tokio::time::timeout(DEADLINE, rx.wait_for(|s| s.switches.len() == 11))
        .await
        .unwrap()
        .unwrap()
        .clone();
    let expected = c.list(new_leader, Kind::Switch).await;
    assert_eq!(s.entities_of(Kind::Switch), expected);

    // The whole core goes away. Every confirmation was sent before this point, so the lease
    // runs out at most max_staleness later (plus the 20 ms polling step).
    for id in c.ids() {
        c.kill(id);
    }
    let took = wait_until(
        "the follower is stale",
        max_staleness + Duration::from_secs(1),
        || !follower.is_fresh(),
    )
    .await;
    assert!(
        took <= max_staleness + Duration::from_millis(100),
        "stale only after {took:?}"
    );

    // The core comes back: fresh again.
    for id in [1, 2, 3] {
        c.restart(id);
    }
    c.wait_for_leader(&[1, 2, 3]).await;
    wait_until("fresh again after the core returned", DEADLINE, || {
        follower.is_fresh()
    })
    .await;
    drop(tasks);
}

/// Audit appends move the core's revision without a delta for edges; the lease must still be
/// renewed while they flow (it once was not: every edge went stale under traffic).
#[tokio::test(flavor = "multi_thread")]
async fn the_lease_is_renewed_while_only_audit_records_are_committed() {
    use agentgate_edge::audit::{AuditConfig, start as start_audit};
    use agentgate_model::audit::{AuditEntry, Decision};
    let c = Cluster::start_initialized(3, &[]).await;
    c.create_tenant(1, "t").await;
    let max_staleness = Duration::from_millis(600);
    let (follower, _tasks) = start(config(&c, max_staleness), Arc::new(SystemClock)).unwrap();
    wait_until("the lease is confirmed", DEADLINE, || follower.is_fresh()).await;
    let (audit, _shipper) = start_audit(AuditConfig {
        endpoints: c.nodes.iter().map(|n| n.grpc.clone()).collect(),
        edge_id: "edge-lease-audit".into(),
        buffer_records_max: 10_000,
        reserve_records: 100,
        batch_records_max: 10,
        flush_interval: Duration::from_millis(10),
        rpc_timeout: Duration::from_secs(2),
        dialer: agentgate_runtime::net::Dialer::tcp(),
    })
    .unwrap();
    // Five lease lengths of audit-only commits, each acknowledged before the next.
    let start_rev = follower.snapshot().revision;
    let mut stale_seen = false;
    let t0 = std::time::Instant::now();
    let mut i = 0u64;
    while t0.elapsed() < max_staleness * 5 {
        i += 1;
        audit
            .record(AuditEntry {
                edge_seq: 0,
                time_ms: i,
                tenant: "t".into(),
                agent: "a".into(),
                session: None,
                method: "tools/call".into(),
                tool: Some("x".into()),
                args_digest: None,
                decision: Decision::Allow,
                reason: String::new(),
                policy_version: None,
                policy_ids: vec![],
                shadow_decision: None,
                latency_us: 1,
                upstream_latency_us: None,
                upstream_status: None,
                trace_id: None,
            })
            .unwrap();
        assert!(audit.flush(DEADLINE).await);
        // Past the first lease, the renewal must have happened in spite of the audit commits.
        if t0.elapsed() > max_staleness * 2 {
            stale_seen |= !follower.is_fresh();
        }
    }
    assert!(i > 10, "only {i} audit commits");
    assert_eq!(
        follower.snapshot().revision,
        start_rev,
        "no entity delta was fed"
    );
    assert!(
        !stale_seen,
        "the edge went stale while only audit records were committed"
    );
}
