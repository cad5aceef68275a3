//! `agentgate-node`: one member of AgentGate's core cluster.
//!
//! - [`config`]: static configuration (flags / `AGENTGATE_*`).
//! - [`app`]: proposals, linearizable reads, queries; [`membership`]: cluster membership;
//!   [`guards`]: the rollout guards' audit scans.
//! - [`limits`]: bounds of the node's own work (pacing, guard scans).
//! - [`error`]: the node's one error type and its one mapping to gRPC statuses.
//! - [`bootstrap`]: initializing or joining the cluster from an empty data directory.
//! - [`network`] / [`raft_service`]: openraft's transport over tonic, client and server.
//! - [`admin`] / [`edge_sync`]: the operator and edge gRPC services.
//! - [`http`]: health and Prometheus metrics.
//! - [`telemetry`]: logs, metric descriptions, Raft gauges.
//!
//! INVARIANT: every write goes through Raft on the leader, stamped with the leader's time;
//! followers forward, never apply on their own.
//! INVARIANT: admin reads and edge freshness confirmations pass a read barrier (the leader's
//! read index, applied locally) before they answer.
#![forbid(unsafe_code)]

pub mod admin;
pub mod app;
pub mod bootstrap;
pub mod config;
pub mod edge_sync;
pub mod error;
pub mod guards;
pub mod http;
pub mod limits;
pub mod membership;
pub mod network;
pub mod raft_service;
pub mod telemetry;

use std::sync::Arc;
use std::time::Duration;

use agentgate_model::limits::GRPC_MESSAGE_BYTES_MAX;
use agentgate_proto::pb::admin_server::AdminServer;
use agentgate_proto::pb::edge_sync_server::EdgeSyncServer;
use agentgate_proto::pb::raft_service_server::RaftServiceServer;
use agentgate_runtime::net::BoxListener;
use anyhow::Context;
use metrics_exporter_prometheus::PrometheusHandle;

use crate::app::{App, Env};
use crate::config::Config;

/// The sockets a node serves on, bound by the caller (so tests and simulations pass their own).
pub struct Listeners {
    /// Admin and EdgeSync gRPC, and Raft too unless `peer` is given.
    pub grpc: BoxListener,
    /// Node-to-node gRPC only (Raft, and Admin for forwarding to the leader), so a network
    /// policy can keep everything but core nodes away from Raft.
    pub peer: Option<BoxListener>,
    /// Health and metrics.
    pub http: BoxListener,
}

/// What a running node exposes to its caller.
pub struct Running {
    pub app: Arc<App>,
    pub grpc_addr: std::net::SocketAddr,
    /// The node-to-node listener, when separate.
    pub peer_addr: Option<std::net::SocketAddr>,
    pub http_addr: std::net::SocketAddr,
}

/// Starts a node on the given listeners and runs it until `shutdown` resolves.
pub async fn run(
    config: Config,
    listeners: Listeners,
    env: Env,
    metrics: PrometheusHandle,
    on_ready: impl FnOnce(&Running),
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let Listeners {
        grpc,
        peer,
        http: http_listener,
    } = listeners;
    let grpc_addr = grpc.local_addr()?;
    let peer_addr = match &peer {
        Some(p) => Some(p.local_addr()?),
        None => None,
    };
    let http_addr = http_listener.local_addr()?;
    let raft_config = Arc::new(config.raft_config().map_err(anyhow::Error::msg)?);
    std::fs::create_dir_all(&config.data_dir)
        .with_context(|| format!("cannot create data dir `{}`", config.data_dir.display()))?;
    let (log, sm) = agentgate_raft_store::open(&config.data_dir)?;
    let reader = sm.reader();
    let committed = log.committed_index();
    let rpc_timeout = Duration::from_millis(config.rpc_timeout_ms);
    let raft = agentgate_raft_store::Raft::new(
        config.id,
        raft_config,
        network::Network::new(rpc_timeout, env.dialer.clone()),
        log,
        sm,
    )
    .await
    .context("cannot start raft")?;
    let app = Arc::new(App::new(
        config.id,
        raft.clone(),
        reader,
        committed,
        env,
        config.region.clone(),
        rpc_timeout,
    ));

    let bootstrap_task = match &config.initial_members {
        Some(members) if !raft.is_initialized().await? => {
            let advertise = config
                .advertise
                .clone()
                .unwrap_or_else(|| peer_addr.unwrap_or(grpc_addr).to_string());
            Some(tokio::spawn(bootstrap::run(
                app.clone(),
                members.clone(),
                advertise,
            )))
        }
        _ => None,
    };

    let http_task = tokio::spawn(agentgate_runtime::ops::serve_health(
        http_listener,
        app.clone(),
        Some(metrics),
    ));
    let metrics_task = tokio::spawn(telemetry::export_raft_metrics(app.clone()));
    let sweep_task = tokio::spawn(sweep(app.clone()));

    let raft_svc = || {
        RaftServiceServer::new(raft_service::RaftRpc { app: app.clone() })
            .max_decoding_message_size(GRPC_MESSAGE_BYTES_MAX)
            .max_encoding_message_size(GRPC_MESSAGE_BYTES_MAX)
    };
    let admin_svc = || {
        AdminServer::new(admin::AdminRpc { app: app.clone() })
            .max_decoding_message_size(GRPC_MESSAGE_BYTES_MAX)
            .max_encoding_message_size(GRPC_MESSAGE_BYTES_MAX)
    };
    let edge_svc = EdgeSyncServer::new(edge_sync::EdgeSyncRpc { app: app.clone() })
        .max_decoding_message_size(GRPC_MESSAGE_BYTES_MAX)
        .max_encoding_message_size(GRPC_MESSAGE_BYTES_MAX);
    let builder = || {
        tonic::transport::Server::builder()
            // Unary RPCs end within the client deadline plus slack; watch streams only need
            // their first response within it.
            .timeout(rpc_timeout + Duration::from_secs(1))
            .http2_keepalive_interval(Some(Duration::from_secs(5)))
            .http2_keepalive_timeout(Some(Duration::from_secs(10)))
    };
    let client_router = builder().add_service(admin_svc()).add_service(edge_svc);
    // Both servers stop on the same signal.
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let stopped = move || {
        let mut rx = stop_rx.clone();
        async move {
            let _ = rx.wait_for(|s| *s).await;
        }
    };
    let (client_router, peer_task) = match peer {
        Some(peer) => {
            let router = builder().add_service(raft_svc()).add_service(admin_svc());
            let task =
                tokio::spawn(router.serve_with_incoming_shutdown(
                    agentgate_runtime::net::incoming(peer),
                    stopped(),
                ));
            (client_router, Some(task))
        }
        None => (client_router.add_service(raft_svc()), None),
    };
    let running = Running {
        app: app.clone(),
        grpc_addr,
        peer_addr,
        http_addr,
    };
    on_ready(&running);
    tracing::info!(id = config.id, %grpc_addr, %http_addr, region = %config.region, "node started");
    let incoming = agentgate_runtime::net::incoming(grpc);
    let served = client_router
        .serve_with_incoming_shutdown(incoming, async move {
            shutdown.await;
            let _ = stop_tx.send(true);
        })
        .await;
    let peer_served = match peer_task {
        Some(t) => t
            .await
            .map_err(anyhow::Error::from)
            .and_then(|r| r.map_err(Into::into)),
        None => Ok(()),
    };
    tracing::info!("shutting down");
    sweep_task.abort();
    if let Some(t) = bootstrap_task {
        t.abort();
    }
    metrics_task.abort();
    http_task.abort();
    let _ = raft.shutdown().await;
    served.context("grpc server failed")?;
    peer_served.context("peer grpc server failed")
}

/// On the leader, proposes sweeps of expired kill switches and approvals when any are due, and
/// the rollback of any rollout whose guard tripped.
async fn sweep(app: Arc<App>) {
    let mut tick = tokio::time::interval(Duration::from_millis(500));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        if app.raft.metrics().borrow().current_leader != Some(app.id) {
            continue;
        }
        let mut due = app.due_sweeps(app.clock.now_ms());
        // Counting reads the audit index from RocksDB: off the async workers.
        let guarded = app.clone();
        if let Ok(rollbacks) = tokio::task::spawn_blocking(move || guarded.due_rollbacks()).await {
            due.extend(rollbacks);
        }
        for op in due {
            if let Err(e) = app.propose_local(op, "system".into(), None).await {
                tracing::warn!(error = %e, "sweep failed");
            }
        }
    }
}
