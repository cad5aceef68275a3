//! The edge's follower against real core nodes: replica, failover, staleness (DESIGN G1, G2).
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod common;

use std::sync::Arc;
use std::time::Duration;

use agentgate_edge::follower::{FollowerConfig, start};
use agentgate_model::Op;
use agentgate_model::clock::SystemClock;
use agentgate_model::entity::{Kind, Scope};
use common::{Cluster, DEADLINE, wait_until};

fn config(c: &Cluster, max_staleness: Duration) -> FollowerConfig {
    FollowerConfig {
        endpoints: c.nodes.iter().map(|n| n.grpc.clone()).collect(),
        edge_id: "edge-test-1".into(),
        region: "local".into(),
        max_staleness,
        confirm_interval: max_staleness / 4,
        rpc_timeout: Duration::from_secs(2),
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
                expires_ms: None,
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
