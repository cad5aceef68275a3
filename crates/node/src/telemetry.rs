//! Logs and metrics set-up, metric descriptions, and the task that mirrors Raft's state into
//! gauges.

use std::sync::Arc;
use std::time::Duration;

use agentgate_runtime::ops::MetricDoc;
use metrics::Unit;
use metrics_exporter_prometheus::PrometheusHandle;

use crate::app::App;

/// The node's log filter unless `RUST_LOG` says otherwise.
pub const LOG_FILTER: &str = "info,openraft=warn";

/// Every metric the node exposes.
pub const METRICS: &[MetricDoc] = &[
    MetricDoc::gauge("agentgate_raft_term", "Current Raft term of this node."),
    MetricDoc::gauge(
        "agentgate_raft_is_leader",
        "1 if this node is the Raft leader, else 0.",
    ),
    MetricDoc::gauge(
        "agentgate_raft_leader_id",
        "Raft id of the leader this node knows (0: none).",
    ),
    MetricDoc::gauge(
        "agentgate_raft_last_log_index",
        "Index of the last entry in this node's log.",
    ),
    MetricDoc::gauge(
        "agentgate_raft_committed_index",
        "Highest log index known committed.",
    ),
    MetricDoc::gauge(
        "agentgate_raft_applied_index",
        "Highest log index applied to the state machine.",
    ),
    MetricDoc::gauge(
        "agentgate_raft_apply_lag_entries",
        "Committed but not yet applied entries.",
    ),
    MetricDoc::gauge(
        "agentgate_raft_replication_lag_entries",
        "On the leader, per follower (Raft id): log entries not yet replicated to it.",
    )
    .labels(&["follower"]),
    MetricDoc::counter(
        crate::network::APPEND_TIMEOUTS,
        "On the leader, per follower (Raft id): AppendEntries calls carrying entries that ran out \
         of the heartbeat interval (the next call resends only what that one carried, in fewer \
         bytes).",
    )
    .labels(&["follower"]),
    MetricDoc::gauge(
        "agentgate_raft_snapshot_index",
        "Log index covered by the last snapshot.",
    ),
    MetricDoc::gauge(
        "agentgate_raft_snapshot_bytes",
        "Size of the last snapshot this node built or installed.",
    )
    .unit(Unit::Bytes),
    MetricDoc::gauge(
        "agentgate_state_revision",
        "Global revision of the replicated state.",
    ),
    MetricDoc::gauge("agentgate_state_entities", "Entities held, by kind.").labels(&["kind"]),
    MetricDoc::gauge(
        "agentgate_node_watchers",
        "Edge watch streams open on this node.",
    ),
    MetricDoc::gauge(
        "agentgate_node_audit_backlog_records",
        "Audit records received and not yet committed.",
    ),
    MetricDoc::counter(
        "agentgate_node_audit_records_total",
        "Audit records appended through this node (its rate is the audit ingest rate).",
    ),
    MetricDoc::seconds(
        "agentgate_node_rpc_duration_seconds",
        "gRPC handling time, by RPC.",
    )
    .labels(&["rpc"]),
    MetricDoc::seconds(
        "agentgate_node_proposal_duration_seconds",
        "Time from proposal to applied on the leader, by operation.",
    )
    .labels(&["op"]),
];

/// Installs the process-wide Prometheus recorder and describes every metric.
pub fn init_metrics() -> Result<PrometheusHandle, String> {
    agentgate_runtime::ops::install_metrics(
        &[
            0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0,
            2.5, 5.0,
        ],
        &[METRICS, agentgate_runtime::telemetry::METRICS],
    )
}

/// Mirrors Raft metrics into gauges whenever they change (and at least every second).
pub async fn export_raft_metrics(app: Arc<App>) {
    let mut rx = app.raft.metrics();
    loop {
        {
            let m = rx.borrow_and_update().clone();
            metrics::gauge!("agentgate_raft_term").set(m.current_term as f64);
            metrics::gauge!("agentgate_raft_is_leader").set(if m.current_leader == Some(app.id) {
                1.0
            } else {
                0.0
            });
            metrics::gauge!("agentgate_raft_leader_id").set(m.current_leader.unwrap_or(0) as f64);
            let last = m.last_log_index.unwrap_or(0);
            let applied = m.last_applied.map_or(0, |l| l.index);
            let committed = app.committed.get().unwrap_or(0);
            metrics::gauge!("agentgate_raft_last_log_index").set(last as f64);
            metrics::gauge!("agentgate_raft_committed_index").set(committed as f64);
            metrics::gauge!("agentgate_raft_applied_index").set(applied as f64);
            metrics::gauge!("agentgate_raft_apply_lag_entries")
                .set(committed.saturating_sub(applied) as f64);
            metrics::gauge!("agentgate_raft_snapshot_index")
                .set(m.snapshot.map_or(0, |l| l.index) as f64);
            metrics::gauge!("agentgate_raft_snapshot_bytes")
                .set(app.reader.snapshot_bytes() as f64);
            if let Some(rep) = &m.replication {
                for (id, matched) in rep.iter().filter(|(id, _)| **id != app.id) {
                    let lag = last.saturating_sub(matched.map_or(0, |l| l.index));
                    metrics::gauge!("agentgate_raft_replication_lag_entries", "follower" => id.to_string())
                        .set(lag as f64);
                }
            }
            metrics::gauge!("agentgate_state_revision").set(app.reader.revision() as f64);
            for (kind, n) in app.entity_counts() {
                metrics::gauge!("agentgate_state_entities", "kind" => kind.as_str()).set(n as f64);
            }
        }
        let changed = tokio::time::timeout(Duration::from_secs(1), rx.changed()).await;
        if matches!(changed, Ok(Err(_))) {
            return;
        }
    }
}
