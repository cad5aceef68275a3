//! Core cluster benchmark on real processes: a local 3-node cluster on 127.0.0.1.
//!
//! 1. Commit latency of a single kill-switch write (sequential, one in flight), through the
//!    leader and through a follower (forwarded).
//! 2. Audit append throughput in batches of 1,000 records from concurrent edges, with the
//!    acknowledgement latency of each batch.
//!
//! Run: `cargo bench --workspace --bench core_cluster` (or `scripts/bench.sh`). Prints a table and
//! writes `core_cluster.json` (see `agentgate_testkit::bench::results_dir`).
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]
#![allow(clippy::disallowed_methods)] // a benchmark measures wall time

use agentgate_testkit as common;

use std::time::{Duration, Instant};

use agentgate_model::Op;
use agentgate_model::audit::{AuditEntry, Decision};
use agentgate_model::entity::Scope;
use agentgate_proto::pb::edge_sync_client::EdgeSyncClient;
use agentgate_proto::pb::{AppendAuditRequest, ProposeRequest};
use agentgate_testkit::bench::{PRODUCTION_TIMINGS, selected, summary, write_results};
use common::Cluster;

const SWITCH_WRITES: usize = 2_000;
const AUDIT_EDGES: usize = 8;
const AUDIT_BATCHES_PER_EDGE: usize = 40;
const AUDIT_BATCH: usize = 1_000;

async fn switch_latency(c: &Cluster, via: u64) -> Vec<Duration> {
    let mut client = c.client(via).await;
    let mut out = Vec::with_capacity(SWITCH_WRITES);
    for i in 0..SWITCH_WRITES {
        let op = Op::EngageSwitch {
            scope: Scope::Session {
                tenant: "bench".into(),
                session: format!("s{}", i % 64),
            },
            reason: "bench".into(),
            ttl_ms: None,
        };
        let req = ProposeRequest {
            op_json: serde_json::to_vec(&op).unwrap(),
            actor: "bench".into(),
            request_id: String::new(),
        };
        let t = Instant::now();
        client.propose(req).await.unwrap();
        out.push(t.elapsed());
    }
    out
}

fn entry(edge_seq: u64) -> AuditEntry {
    AuditEntry {
        edge_seq,
        time_ms: 1_700_000_000_000 + edge_seq,
        tenant: "bench".into(),
        agent: format!("agent-{}", edge_seq % 16),
        session: Some(format!("s-{}", edge_seq % 256)),
        method: "tools/call".into(),
        tool: Some(format!("tool-{}", edge_seq % 8)),
        args_digest: Some("ab".repeat(32)),
        decision: if edge_seq.is_multiple_of(10) {
            Decision::Deny
        } else {
            Decision::Allow
        },
        reason: String::new(),
        policy_version: Some("v1".into()),
        policy_ids: vec!["policy0".into()],
        shadow_decision: None,
        latency_us: 25,
        upstream_latency_us: None,
        upstream_status: Some(200),
        trace_id: Some("4bf92f3577b34da6a3ce929d0e0e4736".into()),
    }
}

async fn audit_throughput(c: &Cluster) -> (f64, Vec<Duration>) {
    let ids = c.ids();
    let start = Instant::now();
    let mut tasks = Vec::new();
    for e in 0..AUDIT_EDGES {
        let addr = c.node(ids[e % ids.len()]).grpc.clone();
        tasks.push(tokio::spawn(async move {
            let mut client = EdgeSyncClient::connect(format!("http://{addr}"))
                .await
                .unwrap()
                .max_decoding_message_size(64 << 20)
                .max_encoding_message_size(64 << 20);
            let mut lat = Vec::new();
            for b in 0..AUDIT_BATCHES_PER_EDGE {
                let first = (b * AUDIT_BATCH) as u64 + 1;
                let records: Vec<AuditEntry> =
                    (first..first + AUDIT_BATCH as u64).map(entry).collect();
                let req = AppendAuditRequest {
                    edge_id: format!("bench-edge-{e}"),
                    records_json: serde_json::to_vec(&records).unwrap(),
                };
                let t = Instant::now();
                let r = client.append_audit(req).await.unwrap().into_inner();
                lat.push(t.elapsed());
                assert_eq!(r.appended, AUDIT_BATCH as u64);
            }
            lat
        }));
    }
    let mut lat = Vec::new();
    for t in tasks {
        lat.extend(t.await.unwrap());
    }
    let secs = start.elapsed().as_secs_f64();
    (
        (AUDIT_EDGES * AUDIT_BATCHES_PER_EDGE * AUDIT_BATCH) as f64 / secs,
        lat,
    )
}

fn main() {
    if !selected("core_cluster") {
        return;
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let c = Cluster::start_initialized(
            3,
            &[&["--snapshot-logs", "100000"][..], &PRODUCTION_TIMINGS].concat(),
        )
        .await;
        let leader = c.wait_for_leader(&[1, 2, 3]).await;
        let follower = c.ids().into_iter().find(|i| *i != leader).unwrap();
        c.propose(
            leader,
            &Op::CreateTenant {
                id: "bench".into(),
                stale_allow_read_only: false,
            },
        )
        .await
        .unwrap();
        println!(
            "core_cluster: 3 nodes on 127.0.0.1, {} cores",
            std::thread::available_parallelism().map_or(0, |n| n.get())
        );
        // Warm up connections and RocksDB.
        let _ = switch_latency(&c, leader).await;
        let via_leader = summary(
            "kill-switch commit via leader",
            switch_latency(&c, leader).await,
        );
        let via_follower = summary(
            "kill-switch commit via follower",
            switch_latency(&c, follower).await,
        );
        let (rate, lat) = audit_throughput(&c).await;
        println!(
            "audit append: {rate:.0} records/s ({AUDIT_EDGES} edges, batches of {AUDIT_BATCH})"
        );
        let ack = summary("audit batch ack (1,000 records)", lat);
        let out = serde_json::json!({
            "kill_switch_commit_via_leader": via_leader,
            "kill_switch_commit_via_follower": via_follower,
            "audit_records_per_sec": rate,
            "audit_batch_ack": ack,
        });
        write_results("core_cluster", &out);
    });
}
