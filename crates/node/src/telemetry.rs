//! Logs and metrics set-up, metric descriptions, and the task that mirrors Raft's state into
//! gauges.

use std::sync::Arc;
use std::time::Duration;

use metrics::{Unit, describe_counter, describe_gauge, describe_histogram};
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};

use crate::app::App;

/// The node's log filter unless `RUST_LOG` says otherwise.
pub const LOG_FILTER: &str = "info,openraft=warn";

/// Installs the process-wide Prometheus recorder and describes every metric.
pub fn init_metrics() -> Result<PrometheusHandle, String> {
    let handle = PrometheusBuilder::new()
        .set_buckets(&[
            0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0,
            2.5, 5.0,
        ])
        .map_err(|e| e.to_string())?
        .install_recorder()
        .map_err(|e| e.to_string())?;
    describe_gauge!("agentgate_raft_term", "Current Raft term of this node.");
    describe_gauge!(
        "agentgate_raft_is_leader",
        "1 if this node is the Raft leader, else 0."
    );
    describe_gauge!(
        "agentgate_raft_leader_id",
        "Id of the leader this node knows (0: none)."
    );
    describe_gauge!(
        "agentgate_raft_last_log_index",
        "Index of the last entry in this node's log."
    );
    describe_gauge!(
        "agentgate_raft_committed_index",
        "Highest log index known committed."
    );
    describe_gauge!(
        "agentgate_raft_applied_index",
        "Highest log index applied to the state machine."
    );
    describe_gauge!(
        "agentgate_raft_apply_lag_entries",
        "Committed but not yet applied entries."
    );
    describe_gauge!(
        "agentgate_raft_replication_lag_entries",
        "Per follower (on the leader): entries not yet replicated."
    );
    describe_gauge!(
        "agentgate_raft_snapshot_index",
        "Log index covered by the last snapshot."
    );
    describe_gauge!(
        "agentgate_state_revision",
        "Global revision of the replicated state."
    );
    describe_gauge!("agentgate_state_entities", "Entities held, by kind.");
    describe_gauge!(
        "agentgate_node_watchers",
        "Edge watch streams open on this node."
    );
    describe_gauge!(
        "agentgate_node_audit_backlog_records",
        "Audit records received and not yet committed."
    );
    describe_counter!(
        "agentgate_node_audit_records_total",
        "Audit records appended through this node."
    );
    describe_histogram!(
        "agentgate_node_rpc_duration_seconds",
        Unit::Seconds,
        "gRPC handling time by RPC."
    );
    describe_histogram!(
        "agentgate_node_proposal_duration_seconds",
        Unit::Seconds,
        "Time from proposal to applied on the leader, by operation."
    );
    agentgate_proto::telemetry::describe_metrics();
    Ok(handle)
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
            if let Some(rep) = &m.replication {
                for (id, matched) in rep.iter() {
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
