//! The `EdgeSync` gRPC service: the watch feed, freshness confirmations and audit intake.

use std::pin::Pin;
use std::sync::Arc;

use agentgate_model::Op;
use agentgate_model::audit::AuditEntry;
use agentgate_model::change::Delta;
use agentgate_model::command::Response as OpResponse;
use agentgate_model::limits::{
    AUDIT_BATCH_BYTES_MAX, AUDIT_BATCH_RECORDS_MAX, WATCH_BUFFER_EVENTS_MAX,
};
use agentgate_model::{State, ids::validate_name};
use agentgate_proto::pb::edge_sync_server::EdgeSync;
use agentgate_proto::pb::{
    AppendAuditReply, AppendAuditRequest, ConfirmReply, ConfirmRequest, StateDelta, StateSnapshot,
    WatchEvent, WatchRequest, watch_event,
};
use agentgate_raft_store::watch::{FeedEvent, WatchStart};
use futures::Stream;
use tokio::sync::{broadcast, mpsc};
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status};

use crate::app::App;
use crate::error::{NodeError, decode, encode};

pub struct EdgeSyncRpc {
    pub app: Arc<App>,
}

fn snapshot_event(state: &State) -> Result<WatchEvent, NodeError> {
    Ok(WatchEvent {
        event: Some(watch_event::Event::Snapshot(StateSnapshot {
            revision: state.revision,
            state_json: encode(&state.for_edges())?,
        })),
    })
}

fn delta_event(d: &Delta) -> Result<WatchEvent, NodeError> {
    Ok(WatchEvent {
        event: Some(watch_event::Event::Delta(StateDelta {
            prev_revision: d.prev_revision,
            revision: d.revision,
            time_ms: d.time_ms,
            changes_json: encode(&d.changes)?,
        })),
    })
}

type Out = mpsc::Sender<Result<WatchEvent, Status>>;

/// Streams one watcher's feed until it goes away or falls behind. `from` is the revision the
/// watcher said it holds.
async fn pump(
    app: Arc<App>,
    from: Option<u64>,
    start: WatchStart,
    mut rx: broadcast::Receiver<FeedEvent>,
    tx: Out,
) {
    let mut sent = match start {
        WatchStart::Snapshot(state) => {
            let rev = state.revision;
            if tx
                .send(snapshot_event(&state).map_err(Status::from))
                .await
                .is_err()
            {
                return;
            }
            rev
        }
        WatchStart::Deltas(deltas) => {
            // Resuming: the watcher already holds `from`, even when no delta follows it yet.
            let mut rev = from.unwrap_or(0);
            for d in deltas {
                rev = d.revision;
                if tx
                    .send(delta_event(&d).map_err(Status::from))
                    .await
                    .is_err()
                {
                    return;
                }
            }
            rev
        }
    };
    loop {
        let event = tokio::select! {
            e = rx.recv() => e,
            () = tx.closed() => return,
        };
        let out = match event {
            Ok(FeedEvent::Delta(d)) if d.revision > sent => {
                sent = d.revision;
                delta_event(&d)
            }
            Ok(FeedEvent::Delta(_)) => continue,
            Ok(FeedEvent::Reset) => match app.reader.with_state(State::edge_view) {
                Ok(state) => {
                    sent = state.revision;
                    snapshot_event(&state)
                }
                Err(e) => Err(NodeError::storage(e)),
            },
            Err(broadcast::error::RecvError::Lagged(n)) => Err(NodeError::Aborted(format!(
                "watcher fell {n} events behind; reconnect with from_revision {sent}"
            ))),
            Err(broadcast::error::RecvError::Closed) => {
                Err(NodeError::Unavailable("node shutting down".into()))
            }
        };
        let stop = out.is_err();
        if tx.send(out.map_err(Status::from)).await.is_err() || stop {
            return;
        }
    }
}

#[tonic::async_trait]
impl EdgeSync for EdgeSyncRpc {
    type WatchStream = Pin<Box<dyn Stream<Item = Result<WatchEvent, Status>> + Send + 'static>>;

    async fn watch(
        &self,
        req: Request<WatchRequest>,
    ) -> Result<Response<Self::WatchStream>, Status> {
        let r = req.into_inner();
        validate_name("edge id", &r.edge_id).map_err(NodeError::from)?;
        if let Some(from) = r.from_revision {
            // A watcher ahead of this node (it was fed by another) waits for it to catch up,
            // so it never moves backwards.
            let mut rev = self.app.reader.revision_watch();
            let caught_up =
                tokio::time::timeout(self.app.rpc_timeout, rev.wait_for(|r| *r >= from)).await;
            if !matches!(caught_up, Ok(Ok(_))) {
                return Err(NodeError::Unavailable(format!(
                    "this node is behind revision {from}; try another node"
                ))
                .into());
            }
        }
        let (start, rx) = self
            .app
            .reader
            .subscribe(r.from_revision)
            .map_err(NodeError::storage)?;
        let (tx, out) = mpsc::channel(WATCH_BUFFER_EVENTS_MAX);
        metrics::gauge!("agentgate_node_watchers").increment(1.0);
        let app = self.app.clone();
        tokio::spawn(async move {
            pump(app, r.from_revision, start, rx, tx).await;
            metrics::gauge!("agentgate_node_watchers").decrement(1.0);
        });
        Ok(Response::new(Box::pin(ReceiverStream::new(out))))
    }

    async fn confirm(
        &self,
        req: Request<ConfirmRequest>,
    ) -> Result<Response<ConfirmReply>, Status> {
        let _t = self.app.time_rpc("edge_confirm");
        let request_id = req.into_inner().request_id;
        self.app.read_barrier().await?;
        // Audit appends bump the revision but are not fed to edges: what the edge must hold is
        // the newest change it is fed.
        let revision = self
            .app
            .reader
            .edge_revision()
            .map_err(NodeError::storage)?;
        let m = self.app.raft.metrics().borrow().clone();
        Ok(Response::new(ConfirmReply {
            request_id,
            revision,
            leader_id: m.current_leader.unwrap_or_default(),
            term: m.current_term,
        }))
    }

    async fn append_audit(
        &self,
        req: Request<AppendAuditRequest>,
    ) -> Result<Response<AppendAuditReply>, Status> {
        let _t = self.app.time_rpc("edge_append_audit");
        let r = req.into_inner();
        validate_name("edge id", &r.edge_id).map_err(NodeError::from)?;
        if r.records_json.len() > AUDIT_BATCH_BYTES_MAX {
            return Err(NodeError::Invalid(format!(
                "audit batch is {} bytes; the limit is {AUDIT_BATCH_BYTES_MAX} (audit_batch_bytes_max)",
                r.records_json.len()
            ))
            .into());
        }
        let records: Vec<AuditEntry> = decode("records_json", &r.records_json)?;
        if records.len() > AUDIT_BATCH_RECORDS_MAX {
            return Err(NodeError::Invalid(format!(
                "audit batch has {} records; the limit is {AUDIT_BATCH_RECORDS_MAX} (audit_batch_records_max)",
                records.len()
            ))
            .into());
        }
        let n = records.len() as f64;
        let backlog = metrics::gauge!("agentgate_node_audit_backlog_records");
        backlog.increment(n);
        let op = Op::AppendAudit {
            edge_id: r.edge_id.clone(),
            records,
        };
        let reply = self.app.propose_op(op, format!("edge:{}", r.edge_id)).await;
        backlog.decrement(n);
        let reply = reply?;
        let resp: OpResponse = decode("response_json", &reply.response_json)?;
        let OpResponse::Audit(a) = resp else {
            return Err(
                NodeError::Internal("audit append answered with another response".into()).into(),
            );
        };
        metrics::counter!("agentgate_node_audit_records_total").increment(a.appended);
        Ok(Response::new(AppendAuditReply {
            appended: a.appended,
            duplicates: a.duplicates,
            acked_edge_seq: a.acked_edge_seq,
            first_seq: a.first_seq,
            last_seq: a.last_seq,
            revision: reply.revision,
        }))
    }
}
