//! What an edge adds: the same fast MCP upstream called directly and through `agentgate-edge`,
//! in the same run, on 127.0.0.1.
//!
//! Set-up: a real 3-node core (processes), a fast upstream (hyper, answers `tools/call` echo in
//! microseconds), and the edge (its own tokio runtime, 2 workers, metrics recorder installed,
//! policy and audit on). Requests are stateless 2026-07-28 `tools/call`s over pooled HTTP/1.1
//! keep-alive connections.
//!
//! 1. Unloaded latency: one request in flight.
//! 2. Max throughput: 32 in flight, closed loop.
//! 3. Latency at half of the edge's max throughput (paced), direct and through the edge.
//! 4. Audit: every decision taken during the run is acknowledged by the core.
//!
//! Run: `cargo bench --workspace --bench edge_overhead` (release build). Prints a table and
//! writes `$CARGO_TARGET_DIR/bench-results/edge_overhead.json`. On 2 cores the load generator,
//! the upstream, the edge and the core share the CPUs: the ratios are what to compare.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    clippy::disallowed_methods // a benchmark measures wall time
)]

use agentgate_testkit as common;
#[path = "support/stats.rs"]
mod stats;

use std::convert::Infallible;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use agentgate_edge::config::Config;
use agentgate_edge::server::{self, Listeners};
use agentgate_model::clock::SystemClock;
use bytes::Bytes;
use clap::Parser;
use common::Cluster;
use common::mcp::{HttpClient, http_client, stateless_call, tenant};
use http_body_util::{BodyExt, Full};
use serde_json::{Value, json};
use stats::summary;

const POLICY: &str = r#"
@id("list-tools")
permit (principal, action == Action::"list_tools", resource);
@id("read-only-tools")
permit (principal, action == Action::"call_tool", resource)
when { resource.read_only && !resource.destructive };
@id("no-secrets-in-arguments")
forbid (principal, action, resource)
when { context.detections.contains("secret") };
"#;

/// The fast upstream's answer to one JSON-RPC request.
fn answer(body: &[u8]) -> Value {
    let req: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
    let id = req.get("id").cloned().unwrap_or(Value::Null);
    let result = match req.get("method").and_then(Value::as_str) {
        Some("tools/list") => json!({"tools": [{
            "name": "echo", "description": "returns its input",
            "inputSchema": {"type": "object", "properties": {"text": {"type": "string"}}},
            "annotations": {"readOnlyHint": true},
        }]}),
        Some("tools/call") => {
            let text = req["params"]["arguments"]["text"].clone();
            json!({"content": [{"type": "text", "text": text}]})
        }
        _ => json!({}),
    };
    json!({"jsonrpc": "2.0", "id": id, "result": result})
}

/// Serves the fast upstream on its own runtime (1 worker); returns its MCP URL.
fn fast_upstream() -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async move {
            let listener = tokio::net::TcpListener::from_std(listener).unwrap();
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                let _ = stream.set_nodelay(true);
                tokio::spawn(async move {
                    let svc = hyper::service::service_fn(
                        |req: hyper::Request<hyper::body::Incoming>| async move {
                            let body = req.into_body().collect().await.unwrap().to_bytes();
                            let out = answer(&body).to_string();
                            let mut r = hyper::Response::new(Full::new(Bytes::from(out)));
                            r.headers_mut().insert(
                                "content-type",
                                hyper::header::HeaderValue::from_static("application/json"),
                            );
                            Ok::<_, Infallible>(r)
                        },
                    );
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(hyper_util::rt::TokioIo::new(stream), svc)
                        .await;
                });
            }
        });
    });
    format!("http://{addr}/mcp")
}

/// Starts the edge on its own runtime (2 workers); returns (MCP address, gateway handle).
fn start_edge(core: Vec<String>) -> (String, Arc<agentgate_edge::proxy::Gateway>) {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async move {
            let config = Config::try_parse_from([
                "agentgate-edge",
                "--core",
                &core.join(","),
                "--session-key",
                common::mcp::SESSION_KEY,
            ])
            .unwrap();
            let listeners = Listeners {
                mcp: agentgate_proto::net::bind(([127, 0, 0, 1], 0).into())
                    .await
                    .unwrap(),
                http: agentgate_proto::net::bind(([127, 0, 0, 1], 0).into())
                    .await
                    .unwrap(),
            };
            let metrics = server::init_metrics().unwrap();
            server::run(
                config,
                "bench-edge-1".into(),
                listeners,
                server::Env {
                    clock: Arc::new(SystemClock),
                    dialer: agentgate_proto::net::Dialer::tcp(),
                },
                Some(metrics),
                move |r| {
                    tx.send((r.mcp_addr.to_string(), r.gateway.clone()))
                        .unwrap();
                },
                std::future::pending(),
            )
            .await
            .unwrap();
        });
    });
    rx.recv().unwrap()
}

async fn call(client: &HttpClient, url: &str, key: &str, i: u64) -> Duration {
    let t = Instant::now();
    let req = stateless_call(url, key, "echo", json!({"text": "ping"}), i);
    let resp = client.request(req).await.unwrap();
    assert_eq!(resp.status(), 200);
    let body = resp.into_body().collect().await.unwrap().to_bytes();
    let elapsed = t.elapsed();
    assert!(
        body.windows(6).any(|w| w == b"\"ping\""),
        "{}",
        String::from_utf8_lossy(&body)
    );
    elapsed
}

/// `inflight` closed-loop workers for `dur`: (requests/s, latencies).
async fn closed_loop(url: &str, key: &str, inflight: usize, dur: Duration) -> (f64, Vec<Duration>) {
    let client = http_client();
    let start = Instant::now();
    let mut tasks = Vec::new();
    for w in 0..inflight {
        let (client, url, key) = (client.clone(), url.to_string(), key.to_string());
        tasks.push(tokio::spawn(async move {
            let mut lat = Vec::new();
            let mut i = (w as u64) << 32;
            while start.elapsed() < dur {
                lat.push(call(&client, &url, &key, i).await);
                i += 1;
            }
            lat
        }));
    }
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await.unwrap());
    }
    (all.len() as f64 / start.elapsed().as_secs_f64(), all)
}

/// Requests at a fixed `rate` for `dur` (up to 64 in flight): latencies.
async fn paced(url: &str, key: &str, rate: f64, dur: Duration) -> Vec<Duration> {
    let client = http_client();
    let total = (rate * dur.as_secs_f64()) as usize;
    let next = Arc::new(AtomicUsize::new(0));
    let start = tokio::time::Instant::now();
    let interval = Duration::from_secs_f64(1.0 / rate);
    let mut tasks = Vec::new();
    for _ in 0..64 {
        let (client, url, key, next) = (
            client.clone(),
            url.to_string(),
            key.to_string(),
            next.clone(),
        );
        tasks.push(tokio::spawn(async move {
            let mut lat = Vec::new();
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= total {
                    return lat;
                }
                tokio::time::sleep_until(start + interval * i as u32).await;
                lat.push(call(&client, &url, &key, i as u64).await);
            }
        }));
    }
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await.unwrap());
    }
    all
}

fn main() {
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with("--"))
        .collect();
    if !args.is_empty() && !args.iter().any(|a| "edge_overhead".contains(a.as_str())) {
        return;
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let c = Cluster::start_initialized(3, &["--heartbeat-ms", "100", "--election-timeout-ms", "500"]).await;
        let upstream = fast_upstream();
        let (key, _) = tenant(&c, "bench", "fast", &upstream, POLICY).await;
        let (edge_addr, gateway) = start_edge(c.nodes.iter().map(|n| n.grpc.clone()).collect());
        let edge_url = format!("http://{edge_addr}/t/bench/fast/mcp");
        let client = http_client();
        // Ready: the edge holds the tenant and decides to allow.
        common::eventually("the edge allows calls", common::DEADLINE, || async {
            let resp = client
                .request(stateless_call(&edge_url, &key, "echo", json!({"text": "ping"}), 0))
                .await
                .unwrap();
            let body = resp.into_body().collect().await.unwrap().to_bytes();
            body.windows(6).any(|w| w == b"\"ping\"")
        })
        .await;
        println!(
            "edge_overhead: 3 core nodes, 1 edge, 1 fast upstream on 127.0.0.1, {} cores",
            std::thread::available_parallelism().map_or(0, |n| n.get())
        );
        // Warm-up (connections, caches).
        let _ = closed_loop(&upstream, &key, 8, Duration::from_millis(500)).await;
        let _ = closed_loop(&edge_url, &key, 8, Duration::from_millis(500)).await;

        let (_, d1) = closed_loop(&upstream, &key, 1, Duration::from_secs(2)).await;
        let (_, e1) = closed_loop(&edge_url, &key, 1, Duration::from_secs(2)).await;
        let direct_unloaded = summary("direct, 1 in flight", d1);
        let edge_unloaded = summary("edge, 1 in flight", e1);

        let (direct_rps, _) = closed_loop(&upstream, &key, 32, Duration::from_secs(3)).await;
        let (edge_rps, _) = closed_loop(&edge_url, &key, 32, Duration::from_secs(3)).await;
        println!(
            "max throughput (32 in flight): direct {direct_rps:.0} req/s, edge {edge_rps:.0} req/s, ratio {:.2}",
            edge_rps / direct_rps
        );

        let rate = edge_rps / 2.0;
        let d_half = summary(&format!("direct at {rate:.0} req/s"), paced(&upstream, &key, rate, Duration::from_secs(3)).await);
        let e_half = summary(&format!("edge at {rate:.0} req/s"), paced(&edge_url, &key, rate, Duration::from_secs(3)).await);
        let added = |k: &str, e: &Value, d: &Value| e[k].as_f64().unwrap() - d[k].as_f64().unwrap();
        println!(
            "added by the edge: unloaded p50 {:.0}µs p99 {:.0}µs; at half load p50 {:.0}µs p99 {:.0}µs",
            added("p50_us", &edge_unloaded, &direct_unloaded),
            added("p99_us", &edge_unloaded, &direct_unloaded),
            added("p50_us", &e_half, &d_half),
            added("p99_us", &e_half, &d_half),
        );

        // Every decision of the run acknowledged by the core: nothing dropped at max load.
        let flushed = gateway.audit.flush(Duration::from_secs(60)).await;
        println!(
            "audit: all {} decisions acknowledged by the core: {flushed} (backlog {})",
            gateway.audit.acked(),
            gateway.audit.backlog()
        );
        assert!(flushed, "audit records left unacknowledged");

        let out = json!({
            "direct_unloaded": direct_unloaded, "edge_unloaded": edge_unloaded,
            "direct_max_rps": direct_rps, "edge_max_rps": edge_rps, "throughput_ratio": edge_rps / direct_rps,
            "half_load_rps": rate, "direct_half_load": d_half, "edge_half_load": e_half,
            "audit_records_acked": gateway.audit.acked(),
        });
        let dir = std::path::PathBuf::from(
            std::env::var("CARGO_TARGET_DIR").unwrap_or_else(|_| "target".into()),
        )
        .join("bench-results");
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("edge_overhead.json"), serde_json::to_string_pretty(&out).unwrap()).unwrap();
    });
}
