//! The edge's audit shipper against real core nodes (design.md G3): exactly one record per
//! decision through leader failover and a core outage; a full buffer refuses, never drops.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use agentgate_testkit as common;

use std::time::Duration;

use agentgate_edge::audit::{Admission, AuditConfig, AuditError, start};
use agentgate_model::audit::{AuditEntry, AuditRecord, Decision, verify_chain};
use agentgate_model::query::{AuditFilter, Query, QueryResult};
use common::{Cluster, DEADLINE};

fn config(c: &Cluster, buffer: usize) -> AuditConfig {
    AuditConfig {
        endpoints: c.nodes.iter().map(|n| n.grpc.clone()).collect(),
        edge_id: "edge-audit-1".into(),
        buffer_records_max: buffer,
        reserve_records: buffer / 10,
        batch_records_max: 500,
        flush_interval: Duration::from_millis(50),
        rpc_timeout: Duration::from_secs(2),
        dialer: agentgate_runtime::net::Dialer::tcp(),
    }
}

fn entry(i: u64) -> AuditEntry {
    AuditEntry {
        edge_seq: 0,
        time_ms: 1_000 + i,
        tenant: "t".into(),
        agent: "bot".into(),
        session: None,
        method: "tools/call".into(),
        tool: Some("echo".into()),
        args_digest: None,
        decision: if i.is_multiple_of(7) {
            Decision::Deny
        } else {
            Decision::Allow
        },
        reason: String::new(),
        policy_version: Some("v1".into()),
        policy_ids: vec![],
        shadow_decision: None,
        latency_us: 3,
        upstream_latency_us: None,
        upstream_status: None,
        trace_id: None,
    }
}

/// Every record of the index, in sequence order.
async fn all_records(c: &Cluster, via: u64) -> Vec<AuditRecord> {
    let mut out = Vec::new();
    let mut after = None;
    loop {
        let filter = AuditFilter {
            after_seq: after,
            ..Default::default()
        };
        let QueryResult::Audit {
            records,
            next_after_seq,
        } = c.query(via, &Query::Audit { filter }).await.unwrap().1
        else {
            panic!()
        };
        out.extend(records);
        match next_after_seq {
            Some(n) => after = Some(n),
            None => return out,
        }
    }
}

fn assert_exactly_once(records: &[AuditRecord], n: u64) {
    let seqs: Vec<u64> = records
        .iter()
        .filter(|r| r.edge_id == "edge-audit-1")
        .map(|r| r.entry.edge_seq)
        .collect();
    assert_eq!(
        seqs,
        (1..=n).collect::<Vec<_>>(),
        "each decision exactly once, in order"
    );
    assert_eq!(verify_chain(records), Ok(records.len() as u64));
}

#[tokio::test(flavor = "multi_thread")]
async fn every_record_lands_exactly_once_through_a_leader_failover() {
    let mut c = Cluster::start_initialized(3, &[]).await;
    let leader = c.wait_for_leader(&[1, 2, 3]).await;
    let (log, shipper) = start(config(&c, 20_000)).unwrap();
    for i in 0..1_500 {
        log.record(entry(i)).unwrap();
    }
    // Kill the leader while batches are in flight.
    c.kill(leader);
    for i in 1_500..3_000 {
        log.record(entry(i)).unwrap();
    }
    assert!(
        log.flush(DEADLINE).await,
        "not everything was acknowledged; backlog {}",
        log.backlog()
    );
    assert_eq!(log.backlog(), 0);
    let rest = c.ids();
    c.wait_for_leader(&rest).await;
    assert_exactly_once(&all_records(&c, rest[0]).await, 3_000);
    drop(shipper);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_full_buffer_refuses_new_records_and_drains_when_the_core_returns() {
    let mut c = Cluster::start_initialized(3, &[]).await;
    c.wait_for_leader(&[1, 2, 3]).await;
    let (log, shipper) = start(config(&c, 1_000)).unwrap();
    for id in c.ids() {
        c.kill(id);
    }
    let mut taken = 0u64;
    while log.admission() == Admission::Open {
        log.record(entry(taken)).unwrap();
        taken += 1;
    }
    assert_eq!(taken, 900, "the last 100 slots are the reserve");
    // Filling: calls are denied, and their denial records still fit.
    while log.admission() == Admission::DenyOnly {
        log.record(entry(taken)).unwrap();
        taken += 1;
    }
    assert_eq!(log.admission(), Admission::Full);
    assert_eq!(log.record(entry(taken)), Err(AuditError::Full(1_000)));
    assert!(!log.flush(Duration::from_millis(300)).await);

    for id in [1, 2, 3] {
        c.restart(id);
    }
    let leader = c.wait_for_leader(&[1, 2, 3]).await;
    assert!(log.flush(DEADLINE).await, "backlog {}", log.backlog());
    assert_eq!(log.admission(), Admission::Open);
    assert_exactly_once(&all_records(&c, leader).await, 1_000);
    drop(shipper);
}
