//! The simulated hosts: the real `agentgate_node::run` and `agentgate_edge::server::run` on
//! turmoil's network and clock, and a small MCP upstream.

use std::convert::Infallible;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use agentgate_edge::server;
use agentgate_node::app::Env;
use bytes::Bytes;
use clap::Parser;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use rand::SeedableRng;
use serde_json::{Value, json};

use crate::clock::{SimClock, sim_ms};
use crate::history::{EdgeIncarnation, History, Leadership};
use crate::net;
use crate::topology::{
    EDGE_HTTP_PORT, GRPC_PORT, MCP_PORT, NODE_HTTP_PORT, Topology, UPSTREAM_PORT,
};

/// Edge staleness bound in the simulation (design.md G1/G2's `max_staleness`).
pub const MAX_STALENESS_MS: u64 = 2_000;
pub const SESSION_KEY: &str = "sim-session-key-0123456789abcdef0123456789";

pub fn node_args(topo: &Topology, id: u64, data_dir: &std::path::Path) -> Vec<String> {
    let mut args: Vec<String> = [
        "agentgate-node",
        "--id",
        &id.to_string(),
        "--data-dir",
        &data_dir.display().to_string(),
        "--region",
        &topo.regions[topo.node_region(id)],
        "--advertise",
        &format!("{}:{GRPC_PORT}", Topology::node_host(id)),
        "--heartbeat-ms",
        "100",
        "--election-timeout-ms",
        "400",
        "--rpc-timeout-ms",
        "1000",
        // Small enough that crashes and restarts exercise snapshots too.
        "--snapshot-logs",
        "500",
        "--logs-to-keep",
        "100",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    if id == 1 {
        // Node 1 bootstraps the cluster once (a restart finds it initialized).
        let members = topo
            .node_ids()
            .map(|i| format!("{i}={}:{GRPC_PORT}", Topology::node_host(i)))
            .collect::<Vec<_>>()
            .join(",");
        args.extend(["--initial-members".into(), members]);
    }
    args
}

/// One core node, from its data directory (kept across crashes).
pub async fn node(
    topo: Topology,
    id: u64,
    data_dir: PathBuf,
    seed: u64,
    history: History,
) -> turmoil::Result {
    let config = agentgate_node::config::Config::try_parse_from(node_args(&topo, id, &data_dir))?;
    let listeners = agentgate_node::Listeners {
        peer: None,
        grpc: net::bind(GRPC_PORT).await?,
        http: net::bind(NODE_HTTP_PORT).await?,
    };
    let env = Env {
        clock: Arc::new(SimClock::default()),
        rng: Box::new(rand::rngs::StdRng::seed_from_u64(seed ^ id)),
        dialer: net::dialer(),
    };
    let metrics = metrics_exporter_prometheus::PrometheusBuilder::new()
        .build_recorder()
        .handle();
    agentgate_node::run(
        config,
        listeners,
        env,
        metrics,
        move |running| {
            // Every term this node leads, as it reports it (G7: one leader per term).
            let mut m = running.app.raft.metrics();
            tokio::spawn(async move {
                loop {
                    let (leader, term, summary) = {
                        let m = m.borrow_and_update();
                        let summary = format!(
                            "at {} ms: {:?} term {} leader {:?} last log {:?} applied {:?} \
                             replication {:?}",
                            sim_ms(),
                            m.state,
                            m.current_term,
                            m.current_leader,
                            m.last_log_index,
                            m.last_applied.map(|l| l.index),
                            m.replication.as_ref().map(|r| r
                                .iter()
                                .map(|(k, v)| (*k, v.map(|l| l.index)))
                                .collect::<Vec<_>>()),
                        );
                        (m.current_leader == Some(id), m.current_term, summary)
                    };
                    history.lock().raft.insert(id, summary);
                    if leader {
                        let mut log = history.lock();
                        let seen = log.leaders.iter().any(|l| l.node == id && l.term == term);
                        if !seen {
                            log.leaders.push(Leadership {
                                node: id,
                                term,
                                at_ms: sim_ms(),
                            });
                        }
                    }
                    if m.changed().await.is_err() {
                        return;
                    }
                }
            });
        },
        std::future::pending(),
    )
    .await?;
    Ok(())
}

/// One edge. Each start is a new incarnation with a new edge id (its audit sequence restarts).
pub async fn edge(
    topo: Topology,
    index: usize,
    broken: bool,
    incarnations: Arc<AtomicU64>,
    history: History,
) -> turmoil::Result {
    let n = incarnations.fetch_add(1, Ordering::Relaxed);
    let edge_id = format!("{}-{n}", Topology::edge_host(index));
    let core = topo.core_endpoints().join(",");
    let args = [
        "agentgate-edge",
        "--core",
        &core,
        "--session-key",
        SESSION_KEY,
        "--region",
        &topo.regions[topo.edge_region(index)],
        "--max-staleness-ms",
        &MAX_STALENESS_MS.to_string(),
        "--rpc-timeout-ms",
        "1000",
        "--upstream-timeout-ms",
        "2000",
        "--audit-flush-ms",
        "50",
        "--shutdown-grace-ms",
        "1000",
    ];
    let config = agentgate_edge::config::Config::try_parse_from(args)?;
    let listeners = server::Listeners {
        mcp: net::bind(MCP_PORT).await?,
        http: net::bind(EDGE_HTTP_PORT).await?,
    };
    history.lock().edges.push(EdgeIncarnation {
        edge: index,
        edge_id: edge_id.clone(),
        started_ms: sim_ms(),
        crashed_ms: None,
    });
    let env = server::Env {
        clock: Arc::new(SimClock {
            frozen_monotonic: broken,
        }),
        dialer: net::dialer(),
    };
    server::run(
        config,
        edge_id,
        listeners,
        env,
        None,
        |_| {},
        std::future::pending(),
    )
    .await?;
    Ok(())
}

/// The tools the upstream serves: one read-only, one that writes.
pub fn tools() -> Value {
    json!([
        {"name": "lookup", "description": "reads a record",
         "inputSchema": {"type": "object"},
         "annotations": {"readOnlyHint": true, "destructiveHint": false}},
        {"name": "update", "description": "changes a record",
         "inputSchema": {"type": "object"},
         "annotations": {"readOnlyHint": false, "destructiveHint": false}},
    ])
}

fn reply(body: &Value) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(Bytes::from(body.to_string())));
    r.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/json"),
    );
    r
}

/// The revision a legacy (session-based) client initializes with.
pub const SESSION_REVISION: &str = "2025-06-18";

async fn answer(req: Request<Incoming>, sessions: Arc<AtomicU64>) -> Response<Full<Bytes>> {
    let Ok(body) = Limited::new(req.into_body(), 1 << 20).collect().await else {
        return reply(&json!({"jsonrpc": "2.0", "id": null,
            "error": {"code": -32700, "message": "unreadable body"}}));
    };
    let Ok(msg) = serde_json::from_slice::<Value>(&body.to_bytes()) else {
        return reply(&json!({"jsonrpc": "2.0", "id": null,
            "error": {"code": -32700, "message": "not JSON"}}));
    };
    let Some(id) = msg.get("id").cloned() else {
        // A notification (`notifications/initialized`): accepted, nothing to answer.
        let mut r = Response::new(Full::new(Bytes::new()));
        *r.status_mut() = http::StatusCode::ACCEPTED;
        return r;
    };
    let result = match msg.get("method").and_then(Value::as_str) {
        Some("initialize") => {
            // A legacy client: a new upstream session, named in the reply's header.
            let n = sessions.fetch_add(1, Ordering::Relaxed);
            let mut r = reply(&json!({"jsonrpc": "2.0", "id": id, "result": {
                "protocolVersion": SESSION_REVISION,
                "capabilities": {"tools": {}},
                "serverInfo": {"name": "sim-upstream", "version": "1"},
            }}));
            if let Ok(v) = http::HeaderValue::from_str(&format!("up-{n}")) {
                r.headers_mut().insert("mcp-session-id", v);
            }
            return r;
        }
        Some("tools/list") => json!({"tools": tools()}),
        Some("tools/call") => json!({"content": [{"type": "text", "text": "done"}]}),
        Some("server/discover") => json!({
            "supportedVersions": ["2026-07-28"],
            "capabilities": {"tools": {}},
            "serverInfo": {"name": "sim-upstream", "version": "1"},
        }),
        _ => {
            return reply(&json!({"jsonrpc": "2.0", "id": id,
                "error": {"code": -32601, "message": "method not found"}}));
        }
    };
    reply(&json!({"jsonrpc": "2.0", "id": id, "result": result}))
}

/// A minimal MCP server over HTTP: stateless (2026-07-28) requests, and legacy sessions opened
/// by `initialize` (any session id it issued is accepted afterwards).
pub async fn upstream() -> turmoil::Result {
    let mut listener = net::bind(UPSTREAM_PORT).await?;
    let sessions = Arc::new(AtomicU64::new(1));
    loop {
        let (conn, _) = listener.accept().await?;
        let sessions = sessions.clone();
        tokio::spawn(async move {
            let svc = service_fn(move |req| {
                let sessions = sessions.clone();
                async move { Ok::<_, Infallible>(answer(req, sessions).await) }
            });
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(conn), svc)
                .await;
        });
    }
}
