//! Follows the core: a local replica of the replicated state, fed by `EdgeSync.Watch`, and a
//! freshness [`Lease`] renewed by `EdgeSync.Confirm`.
//!
//! - The replica is published through a `tokio::sync::watch` channel as an `Arc<State>`: the hot
//!   path reads it with one pointer clone, and each revision is one pointer swap.
//! - Deltas are applied only when contiguous (`prev_revision <= revision < delta.revision`); a
//!   gap, a lagging node or a broken stream makes the follower reconnect, to the next node, from
//!   the revision it holds. A snapshot never moves the replica backwards.
//! - Confirmations note their send time; the lease is extended only once the replica has
//!   reached the confirmed revision. If it does not get there in time, the watch is restarted on
//!   another node.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use agentgate_model::State;
use agentgate_model::change::Change;
use agentgate_model::limits::GRPC_MESSAGE_BYTES_MAX;
use agentgate_proto::pb::edge_sync_client::EdgeSyncClient;
use agentgate_proto::pb::{ConfirmRequest, WatchRequest, watch_event};
use agentgate_runtime::clock::Clock;
use agentgate_runtime::net::Dialer;
use tokio::sync::{Notify, watch};
use tokio::task::JoinHandle;
use tonic::transport::Channel;

use crate::lease::Lease;

#[derive(Debug, Clone)]
pub struct FollowerConfig {
    /// Core nodes' gRPC addresses (`host:port`); any of them will do.
    pub endpoints: Vec<String>,
    /// This edge incarnation's id.
    pub edge_id: String,
    pub region: String,
    /// A snapshot not confirmed for this long is stale (design.md G1/G2 bound).
    pub max_staleness: Duration,
    /// How often to confirm (a third of `max_staleness` tolerates two lost confirmations).
    pub confirm_interval: Duration,
    pub rpc_timeout: Duration,
    pub dialer: Dialer,
}

/// A handle to the replica and the lease. Cheap to clone.
#[derive(Clone)]
pub struct Follower {
    replica: watch::Receiver<Arc<State>>,
    lease: Arc<Mutex<Lease>>,
    clock: Arc<dyn Clock>,
}

impl Follower {
    /// The current replica (one pointer clone).
    pub fn snapshot(&self) -> Arc<State> {
        self.replica.borrow().clone()
    }

    /// A receiver that sees every new replica.
    pub fn subscribe(&self) -> watch::Receiver<Arc<State>> {
        self.replica.clone()
    }

    /// Whether the replica is confirmed fresh now. A poisoned lock reads as stale.
    pub fn is_fresh(&self) -> bool {
        let now = self.clock.monotonic();
        self.lease.lock().is_ok_and(|l| l.is_fresh(now))
    }

    /// How old the newest proof of freshness is (`None`: never confirmed).
    pub fn staleness(&self) -> Option<Duration> {
        let now = self.clock.monotonic();
        self.lease.lock().ok().and_then(|l| l.age(now))
    }

    pub fn lease_remaining(&self) -> Duration {
        let now = self.clock.monotonic();
        self.lease
            .lock()
            .map_or(Duration::ZERO, |l| l.remaining(now))
    }
}

/// The follower's background tasks; dropping this stops them.
pub struct FollowerTasks {
    tasks: Vec<JoinHandle<()>>,
}

impl Drop for FollowerTasks {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

/// Starts following the core.
pub fn start(
    config: FollowerConfig,
    clock: Arc<dyn Clock>,
) -> Result<(Follower, FollowerTasks), String> {
    if config.endpoints.is_empty() {
        return Err("no core endpoints given".into());
    }
    let clients = config
        .endpoints
        .iter()
        .map(|e| client(e, config.rpc_timeout, &config.dialer))
        .collect::<Result<Vec<_>, _>>()?;
    let (tx, rx) = watch::channel(Arc::new(State::default()));
    let lease = Arc::new(Mutex::new(Lease::new(config.max_staleness)));
    let reconnect = Arc::new(Notify::new());
    let config = Arc::new(config);
    let watcher = tokio::spawn(watch_loop(
        config.clone(),
        clients.clone(),
        tx,
        reconnect.clone(),
        clock.clone(),
    ));
    let confirmer = tokio::spawn(confirm_loop(
        config,
        clients,
        rx.clone(),
        lease.clone(),
        reconnect,
        clock.clone(),
    ));
    Ok((
        Follower {
            replica: rx,
            lease,
            clock,
        },
        FollowerTasks {
            tasks: vec![watcher, confirmer],
        },
    ))
}

fn client(
    addr: &str,
    rpc_timeout: Duration,
    dialer: &Dialer,
) -> Result<EdgeSyncClient<Channel>, String> {
    let channel = agentgate_runtime::channel::lazy(addr, rpc_timeout, dialer)?;
    Ok(EdgeSyncClient::new(channel).max_decoding_message_size(GRPC_MESSAGE_BYTES_MAX))
}

const BACKOFF_MIN: Duration = Duration::from_millis(20);
const BACKOFF_MAX: Duration = Duration::from_secs(1);

async fn watch_loop(
    config: Arc<FollowerConfig>,
    clients: Vec<EdgeSyncClient<Channel>>,
    tx: watch::Sender<Arc<State>>,
    reconnect: Arc<Notify>,
    clock: Arc<dyn Clock>,
) {
    let mut next = 0usize;
    let mut backoff = BACKOFF_MIN;
    loop {
        let Some(mut c) = clients.get(next % clients.len()).cloned() else {
            return;
        };
        let endpoint = config
            .endpoints
            .get(next % clients.len())
            .cloned()
            .unwrap_or_default();
        let before = tx.borrow().revision;
        let outcome = tokio::select! {
            r = follow(&mut c, &config, &tx, clock.as_ref()) => r,
            () = reconnect.notified() => Err("the replica fell behind a confirmed revision".into()),
        };
        if let Err(why) = outcome {
            tracing::warn!(%endpoint, %why, "watch interrupted; trying the next core node");
        }
        metrics::counter!("agentgate_edge_watch_reconnects_total").increment(1);
        next += 1;
        backoff = if tx.borrow().revision > before {
            BACKOFF_MIN
        } else {
            (backoff * 2).min(BACKOFF_MAX)
        };
        tokio::time::sleep(backoff).await;
    }
}

/// Follows one node's feed until it ends or misbehaves.
async fn follow(
    c: &mut EdgeSyncClient<Channel>,
    config: &FollowerConfig,
    tx: &watch::Sender<Arc<State>>,
    clock: &dyn Clock,
) -> Result<(), String> {
    let held = tx.borrow().revision;
    let req = WatchRequest {
        edge_id: config.edge_id.clone(),
        from_revision: (held > 0).then_some(held),
        region: config.region.clone(),
    };
    let mut stream = c
        .watch(req)
        .await
        .map_err(|s| s.message().to_string())?
        .into_inner();
    loop {
        let Some(event) = stream
            .message()
            .await
            .map_err(|s| s.message().to_string())?
        else {
            return Err("the node closed the stream".into());
        };
        match event.event {
            Some(watch_event::Event::Snapshot(s)) => {
                let state: State = serde_json::from_slice(&s.state_json)
                    .map_err(|e| format!("bad snapshot: {e}"))?;
                if state.revision >= tx.borrow().revision {
                    metrics::gauge!("agentgate_edge_snapshot_revision").set(state.revision as f64);
                    tx.send_replace(Arc::new(state));
                }
            }
            Some(watch_event::Event::Delta(d)) => {
                let current = tx.borrow().clone();
                if d.revision <= current.revision {
                    continue; // already held
                }
                if d.prev_revision > current.revision {
                    return Err(format!(
                        "gap in the feed: delta {}..{} at revision {}",
                        d.prev_revision, d.revision, current.revision
                    ));
                }
                let changes: Vec<Change> = serde_json::from_slice(&d.changes_json)
                    .map_err(|e| format!("bad delta: {e}"))?;
                let mut next = State::clone(&current);
                for ch in &changes {
                    next.apply_change(ch);
                }
                next.revision = d.revision;
                tx.send_replace(Arc::new(next));
                metrics::gauge!("agentgate_edge_snapshot_revision").set(d.revision as f64);
                if changes.iter().any(is_switch) {
                    let lag_ms = clock.now_ms().saturating_sub(d.time_ms);
                    metrics::histogram!("agentgate_edge_kill_switch_apply_lag_seconds")
                        .record(lag_ms as f64 / 1000.0);
                }
            }
            None => return Err("an empty watch event".into()),
        }
    }
}

fn is_switch(c: &Change) -> bool {
    match c {
        Change::Put { entity } => matches!(entity, agentgate_model::entity::Entity::Switch(_)),
        Change::Delete { key } => key.kind == agentgate_model::entity::Kind::Switch,
        Change::Audit { .. } | Change::Answered { .. } | Change::Forget { .. } => false,
    }
}

async fn confirm_loop(
    config: Arc<FollowerConfig>,
    clients: Vec<EdgeSyncClient<Channel>>,
    replica: watch::Receiver<Arc<State>>,
    lease: Arc<Mutex<Lease>>,
    reconnect: Arc<Notify>,
    clock: Arc<dyn Clock>,
) {
    let mut tick = tokio::time::interval(config.confirm_interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut next = 0usize;
    let mut request_id = 0u64;
    loop {
        tick.tick().await;
        let Some(mut c) = clients.get(next % clients.len()).cloned() else {
            return;
        };
        request_id += 1;
        // INVARIANT: the lease is measured from here, before the request leaves.
        let sent = clock.monotonic();
        let req = ConfirmRequest {
            request_id,
            edge_id: config.edge_id.clone(),
        };
        let reply = tokio::time::timeout(config.rpc_timeout, c.confirm(req)).await;
        let revision = match reply {
            Ok(Ok(r)) if r.get_ref().request_id == request_id => r.into_inner().revision,
            other => {
                if let Ok(Err(s)) = other {
                    tracing::debug!(error = %s.message(), "confirmation failed; trying the next core node");
                }
                next += 1;
                continue;
            }
        };
        // The lease covers the replica only once the replica holds the confirmed revision.
        let remaining = config
            .max_staleness
            .saturating_sub(clock.monotonic().saturating_duration_since(sent));
        let mut rx = replica.clone();
        // Reduced to a bool at once: a held `Ref` would block the watch task's updates.
        let reached = matches!(
            tokio::time::timeout(remaining, rx.wait_for(|s| s.revision >= revision)).await,
            Ok(Ok(_))
        );
        if reached {
            if let Ok(mut l) = lease.lock() {
                l.confirmed(sent);
            }
        } else {
            reconnect.notify_one();
        }
    }
}
