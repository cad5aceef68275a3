//! Wiring: follow the core, serve the MCP listener and the health/metrics listener, and shut
//! down gracefully (stop accepting, let requests in flight finish, flush the audit buffer).

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use agentgate_runtime::clock::Clock;
use agentgate_runtime::net::{BoxListener, Dialer};
use agentgate_runtime::ops::MetricDoc;
use hyper::Request;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use metrics::Unit;
use metrics_exporter_prometheus::PrometheusHandle;
use tokio::sync::{Semaphore, watch};

use crate::approvals::Approvals;
use crate::audit::{self, AuditConfig};
use crate::catalog::Catalog;
use crate::config::Config;
use crate::decision::PolicyCache;
use crate::follower::{self, Follower, FollowerConfig};
use crate::limits::{H2_STREAMS_MAX, HEAD_BYTES_MAX};
use crate::proxy::{Gateway, Settings};
use crate::session::SessionKeys;
use crate::upstream::Upstreams;
use crate::view::{View, precompile};

pub struct Listeners {
    pub mcp: BoxListener,
    pub http: BoxListener,
}

/// What the edge takes from its surroundings, so simulations can pass their own.
#[derive(Clone)]
pub struct Env {
    pub clock: Arc<dyn Clock>,
    /// Dials the core and the upstreams.
    pub dialer: Dialer,
}

/// What a started edge reports.
pub struct Running {
    pub edge_id: String,
    pub mcp_addr: SocketAddr,
    pub http_addr: SocketAddr,
    pub gateway: Arc<Gateway>,
}

/// Runs an edge until `shutdown` completes. `edge_id` must be unique per start.
pub async fn run(
    config: Config,
    edge_id: String,
    listeners: Listeners,
    env: Env,
    metrics: Option<PrometheusHandle>,
    on_ready: impl FnOnce(&Running),
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> Result<(), String> {
    config.validate()?;
    let Env { clock, dialer } = env;
    let Listeners {
        mcp: mut mcp_listener,
        http: http_listener,
    } = listeners;
    let rpc_timeout = Duration::from_millis(config.rpc_timeout_ms);
    let core: Vec<String> = config
        .core
        .iter()
        .map(|c| c.trim().to_string())
        .filter(|c| !c.is_empty())
        .collect();
    let max_staleness = config.max_staleness();
    let (follower, follower_tasks) = follower::start(
        FollowerConfig {
            endpoints: core.clone(),
            edge_id: edge_id.clone(),
            region: config.region.clone(),
            max_staleness,
            confirm_interval: max_staleness / 3,
            rpc_timeout: rpc_timeout.min(max_staleness / 3),
            dialer: dialer.clone(),
        },
        clock.clone(),
    )?;
    let (audit, shipper) = audit::start(AuditConfig {
        endpoints: core.clone(),
        edge_id: edge_id.clone(),
        buffer_records_max: config.audit_buffer,
        reserve_records: config.audit_buffer / 10,
        batch_records_max: config.audit_batch,
        flush_interval: Duration::from_millis(config.audit_flush_ms),
        rpc_timeout,
        dialer: dialer.clone(),
    })?;
    metrics::gauge!("agentgate_edge_audit_buffer_capacity_records").set(config.audit_buffer as f64);
    let policies = PolicyCache::new(1024);
    let view = start_view(&follower, policies.clone());
    let gateway = Arc::new(Gateway {
        settings: Settings {
            edge_id: edge_id.clone(),
            region: config.region.clone(),
            allowed_origins: config.allowed_origins.clone(),
            body_bytes_max: config.body_max_bytes,
            inflight_max: config.inflight_max,
            retry_after_ms: max_staleness.as_millis().try_into().unwrap_or(u64::MAX),
        },
        view,
        follower: follower.clone(),
        policies,
        catalog: Catalog::new(10_000, Duration::from_secs(300)),
        audit: audit.clone(),
        sessions: SessionKeys::new(config.session_key.as_bytes())?,
        upstreams: Upstreams::new(
            Duration::from_millis(config.upstream_timeout_ms),
            dialer.clone(),
        ),
        approvals: Approvals::new(
            &core,
            rpc_timeout,
            &dialer,
            &edge_id,
            config.approval_ttl_ms,
        )?,
        clock: clock.clone(),
        inflight: Arc::new(Semaphore::new(config.inflight_max)),
    });
    let running = Running {
        edge_id: edge_id.clone(),
        mcp_addr: mcp_listener.local_addr().map_err(|e| e.to_string())?,
        http_addr: http_listener.local_addr().map_err(|e| e.to_string())?,
        gateway: gateway.clone(),
    };
    let probe = Arc::new(EdgeProbe {
        follower: follower.clone(),
        gateway: gateway.clone(),
    });
    let health = tokio::spawn(agentgate_runtime::ops::serve_health(
        http_listener,
        probe,
        metrics,
    ));
    on_ready(&running);
    tracing::info!(edge_id = %edge_id, mcp = %running.mcp_addr, http = %running.http_addr, "edge serving");

    let graceful = GracefulShutdown::new();
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .max_buf_size(HEAD_BYTES_MAX)
        .timer(hyper_util::rt::TokioTimer::new())
        .header_read_timeout(Duration::from_secs(10));
    builder
        .http2()
        .timer(hyper_util::rt::TokioTimer::new())
        .max_concurrent_streams(H2_STREAMS_MAX)
        .max_header_list_size(HEAD_BYTES_MAX as u32);
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            () = &mut shutdown => break,
            accepted = mcp_listener.accept() => {
                let Ok((stream, _)) = accepted else { continue };
                let gw = gateway.clone();
                let svc = service_fn(move |req: Request<Incoming>| {
                    let gw = gw.clone();
                    async move { Ok::<_, Infallible>(gw.handle(req).await) }
                });
                let conn = builder.serve_connection_with_upgrades(TokioIo::new(stream), svc).into_owned();
                let conn = graceful.watch(conn);
                tokio::spawn(async move {
                    let _ = conn.await;
                });
            }
        }
    }
    tracing::info!("shutting down: finishing requests in flight, then flushing the audit log");
    let grace = Duration::from_millis(config.shutdown_grace_ms);
    let _ = tokio::time::timeout(grace, graceful.shutdown()).await;
    if !audit.flush(grace).await {
        tracing::error!(
            backlog = audit.backlog(),
            "audit records could not be shipped before shutdown"
        );
    }
    health.abort();
    drop(shipper);
    drop(follower_tasks);
    Ok(())
}

/// Derives a [`View`] for every replica revision (one pointer swap) and precompiles the policy
/// versions it names.
fn start_view(follower: &Follower, policies: PolicyCache) -> watch::Receiver<Arc<View>> {
    let mut replica = follower.subscribe();
    let (tx, rx) = watch::channel(Arc::new(View::build(replica.borrow_and_update().clone())));
    tokio::spawn(async move {
        while replica.changed().await.is_ok() {
            let state = replica.borrow_and_update().clone();
            tx.send_replace(Arc::new(View::build(state.clone())));
            let policies = policies.clone();
            // Compiling can take long (a 10k-policy package ~1 s): off the async workers.
            let _ = tokio::task::spawn_blocking(move || precompile(&state, &policies)).await;
        }
    });
    rx
}

/// The edge's answers to `/readyz` and `/metrics`.
struct EdgeProbe {
    follower: Follower,
    gateway: Arc<Gateway>,
}

impl agentgate_runtime::ops::Probe for EdgeProbe {
    fn readiness(&self) -> Result<(), String> {
        if self.follower.is_fresh() {
            Ok(())
        } else {
            Err("the snapshot is not confirmed fresh by the core".into())
        }
    }

    fn before_scrape(&self) {
        let (follower, gateway) = (&self.follower, &self.gateway);
        metrics::gauge!("agentgate_edge_lease_remaining_seconds")
            .set(follower.lease_remaining().as_secs_f64());
        // Never proven fresh: infinitely stale.
        metrics::gauge!("agentgate_edge_snapshot_staleness_seconds").set(
            follower
                .staleness()
                .map_or(f64::INFINITY, |age| age.as_secs_f64()),
        );
        metrics::gauge!("agentgate_edge_snapshot_fresh").set(if follower.is_fresh() {
            1.0
        } else {
            0.0
        });
        metrics::gauge!("agentgate_edge_audit_backlog_records").set(gateway.audit.backlog() as f64);
        metrics::gauge!("agentgate_edge_inflight").set(
            gateway
                .settings
                .inflight_max
                .saturating_sub(gateway.inflight.available_permits()) as f64,
        );
    }
}

/// Every metric the edge exposes.
pub const METRICS: &[MetricDoc] = &[
    MetricDoc::counter(
        "agentgate_edge_calls_total",
        "Decisions by tenant, tool (catalog tools only, else `other`; `none` for other methods) and decision (allow, deny, require_approval).",
    )
    .labels(&["tenant", "tool", "decision"]),
    MetricDoc::seconds(
        "agentgate_edge_decision_seconds",
        "Time from request arrival to decision.",
    ),
    MetricDoc::seconds(
        "agentgate_edge_upstream_seconds",
        "Time from forwarding to the upstream's response head, by server.",
    )
    .labels(&["server"]),
    MetricDoc::gauge(
        "agentgate_edge_snapshot_revision",
        "Revision of the replicated state this edge holds.",
    ),
    MetricDoc::gauge(
        "agentgate_edge_snapshot_fresh",
        "1 while the core confirms this edge's snapshot is fresh (0: every call is denied).",
    ),
    MetricDoc::gauge(
        "agentgate_edge_snapshot_staleness_seconds",
        "Age of the newest proof that the snapshot is fresh (calls are denied beyond the maximum staleness; +Inf before the first proof).",
    )
    .unit(Unit::Seconds),
    MetricDoc::gauge(
        "agentgate_edge_lease_remaining_seconds",
        "Time left on the freshness lease (0: stale, calls denied).",
    )
    .unit(Unit::Seconds),
    MetricDoc::counter(
        "agentgate_edge_watch_reconnects_total",
        "Watch streams to the core that broke and were re-established on another core node.",
    ),
    MetricDoc::seconds(
        "agentgate_edge_kill_switch_apply_lag_seconds",
        "From a kill switch's commit (leader time) to this edge applying it.",
    ),
    MetricDoc::gauge(
        "agentgate_edge_audit_backlog_records",
        "Audit records not yet acknowledged by the core.",
    ),
    MetricDoc::gauge(
        "agentgate_edge_audit_buffer_capacity_records",
        "Audit records the edge buffers at most; beyond, calls are turned away.",
    ),
    MetricDoc::counter(
        "agentgate_edge_audit_shipped_total",
        "Audit records acknowledged by the core.",
    ),
    MetricDoc::counter(
        "agentgate_edge_audit_retries_total",
        "Audit batches the core did not acknowledge, retried on the next core node.",
    ),
    MetricDoc::counter(
        "agentgate_edge_audit_refused_total",
        "Records refused because the audit buffer was full (their calls were refused, never run unrecorded).",
    ),
    MetricDoc::counter(
        "agentgate_edge_audit_turned_away_total",
        "Calls answered 'overloaded' because the audit buffer had room for denials only.",
    ),
    MetricDoc::counter(
        "agentgate_edge_overload_total",
        "Requests answered 'overloaded' because too many were in flight on this edge.",
    ),
    MetricDoc::counter(
        "agentgate_edge_streams_aborted_total",
        "Streams ended because a kill switch covering them arrived.",
    ),
    MetricDoc::counter(
        "agentgate_edge_auth_failures_total",
        "Requests refused with 401, by reason (missing, unknown, revoked).",
    )
    .labels(&["reason"]),
    MetricDoc::gauge("agentgate_edge_inflight", "Requests and streams in flight."),
];

/// Installs the process-wide Prometheus recorder and describes the edge's metrics.
pub fn init_metrics() -> Result<PrometheusHandle, String> {
    agentgate_runtime::ops::install_metrics(
        &[
            0.00001, 0.000025, 0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025,
            0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
        ],
        &[METRICS, agentgate_runtime::telemetry::METRICS],
    )
}

/// The edge's log filter unless `RUST_LOG` says otherwise.
pub const LOG_FILTER: &str = "info";
