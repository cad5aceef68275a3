//! What the benchmarks share: a fast MCP upstream, policy packages padded to a size, latency
//! summaries and the results directory.

use std::convert::Infallible;
use std::path::PathBuf;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use serde_json::{Value, json};

/// `base` padded with per-tool `permit`s to `total` policies: the shape large tenants grow (a
/// rule per team and tool). The padding names tools no benchmark calls, so a call evaluates what
/// `base` says plus the policies Cedar must still consider for its tool.
pub fn padded_policies(base: &str, total: usize) -> String {
    let mut out = base.to_string();
    let have = base.matches("@id(").count();
    for i in 0..total.saturating_sub(have) {
        out.push_str(&format!(
            "@id(\"tool-{i}\")\npermit (principal in Role::\"team-{}\", action == Action::\"call_tool\", resource == Tool::\"srv-{}/tool-{i}\")\nwhen {{ context.region == \"eu\" }};\n",
            i % 50,
            i % 100
        ));
    }
    out
}

/// The fast upstream's answer to one JSON-RPC request: `tools/list` names one read-only
/// `echo`, `tools/call` echoes `arguments.text`.
pub fn answer(body: &[u8]) -> Value {
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

/// Serves the fast upstream (hyper, HTTP/1.1 keep-alive, answers in microseconds) on its own
/// runtime with `workers` threads; returns its MCP URL. It runs until the process exits.
pub fn fast_upstream(workers: usize) -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(workers)
            .thread_name("fast-upstream")
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

/// Spans an [`otlp_sink`] has received, by export request.
#[derive(Debug, Default)]
pub struct SinkCounts {
    pub spans: std::sync::atomic::AtomicU64,
    pub requests: std::sync::atomic::AtomicU64,
}

struct Sink(std::sync::Arc<SinkCounts>);

#[tonic::async_trait]
impl opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::TraceService for Sink {
    async fn export(
        &self,
        request: tonic::Request<
            opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest,
        >,
    ) -> Result<
        tonic::Response<
            opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceResponse,
        >,
        tonic::Status,
    > {
        use std::sync::atomic::Ordering;
        let n: usize = request
            .get_ref()
            .resource_spans
            .iter()
            .flat_map(|r| &r.scope_spans)
            .map(|s| s.spans.len())
            .sum();
        self.0.spans.fetch_add(n as u64, Ordering::Relaxed);
        self.0.requests.fetch_add(1, Ordering::Relaxed);
        Ok(tonic::Response::new(Default::default()))
    }
}

/// An OTLP/gRPC trace receiver that decodes and counts spans (a collector that keeps up), on
/// its own single-threaded runtime. Returns its endpoint (`http://127.0.0.1:PORT`) and counts.
pub fn otlp_sink() -> (String, std::sync::Arc<SinkCounts>) {
    use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::TraceServiceServer;
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let addr = listener.local_addr().unwrap();
    let counts = std::sync::Arc::new(SinkCounts::default());
    let sink = Sink(counts.clone());
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async move {
            let listener = tokio::net::TcpListener::from_std(listener).unwrap();
            let _ = tonic::transport::Server::builder()
                .add_service(TraceServiceServer::new(sink))
                .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(listener))
                .await;
        });
    });
    (format!("http://{addr}"), counts)
}

/// The `p` quantile (0..=1) of sorted samples.
pub fn pct(sorted: &[Duration], p: f64) -> Duration {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

/// Prints one line (n, p50, p90, p99, p99.9, max) and returns it as JSON (microseconds).
pub fn summary(name: &str, mut v: Vec<Duration>) -> Value {
    assert!(!v.is_empty(), "{name}: no samples");
    v.sort();
    let us = |d: Duration| d.as_secs_f64() * 1e6;
    let max = *v.last().unwrap();
    println!(
        "{name:<40} n={:<7} p50={:>8.0}µs p90={:>8.0}µs p99={:>8.0}µs p99.9={:>8.0}µs max={:>8.0}µs",
        v.len(),
        us(pct(&v, 0.5)),
        us(pct(&v, 0.9)),
        us(pct(&v, 0.99)),
        us(pct(&v, 0.999)),
        us(max)
    );
    json!({
        "n": v.len(), "p50_us": us(pct(&v, 0.5)), "p90_us": us(pct(&v, 0.9)),
        "p99_us": us(pct(&v, 0.99)), "p999_us": us(pct(&v, 0.999)), "max_us": us(max),
    })
}

/// Where benchmarks write their JSON: `$AGENTGATE_BENCH_OUT`, else
/// `$CARGO_TARGET_DIR/bench-results` (else `target/bench-results`).
pub fn results_dir() -> PathBuf {
    let dir = std::env::var_os("AGENTGATE_BENCH_OUT")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(std::env::var("CARGO_TARGET_DIR").unwrap_or_else(|_| "target".into()))
                .join("bench-results")
        });
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Writes `name.json` into [`results_dir`] and says where.
pub fn write_results(name: &str, v: &Value) {
    let path = results_dir().join(format!("{name}.json"));
    std::fs::write(&path, serde_json::to_string_pretty(v).unwrap()).unwrap();
    println!("wrote {}", path.display());
}

/// True when this benchmark should run: `cargo bench` passes `--bench` and maybe a filter; a
/// filter that does not name `name` means skip.
pub fn selected(name: &str) -> bool {
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with("--"))
        .collect();
    args.is_empty() || args.iter().any(|a| name.contains(a.as_str()))
}

/// The core's production timings (heartbeat 100 ms, election timeout 500 ms, the defaults),
/// not the test harness's fast elections.
pub const PRODUCTION_TIMINGS: [&str; 4] = ["--heartbeat-ms", "100", "--election-timeout-ms", "500"];

/// Runs the benchmark `name` on a 2-worker runtime, unless `cargo bench`'s filter leaves it out.
pub fn run(name: &str, bench: impl std::future::Future<Output = ()>) {
    if !selected(name) {
        return;
    }
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
        .block_on(bench);
}

/// Pins process `pid` (all its threads) to `cpus` (a `taskset` list such as `0-1`). Returns
/// false, and pins nothing, when `taskset` is missing or refuses.
pub fn pin(pid: u32, cpus: &str) -> bool {
    std::process::Command::new("taskset")
        .args(["-a", "-p", "-c", cpus, &pid.to_string()])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// Logical CPUs available to this process.
pub fn cpus() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

/// CPU time (user + system) process `pid` has used so far, from `/proc` (Linux; None elsewhere).
pub fn process_cpu(pid: u32) -> Option<Duration> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the command name (which may hold spaces) start after the last ')'.
    let rest = stat.rsplit_once(')')?.1;
    let f: Vec<&str> = rest.split_whitespace().collect();
    // utime and stime are fields 14 and 15 of stat(5): 12 and 13 after the name.
    let ticks: u64 = f.get(11)?.parse::<u64>().ok()? + f.get(12)?.parse::<u64>().ok()?;
    Some(Duration::from_secs_f64(ticks as f64 / clock_ticks() as f64))
}

fn clock_ticks() -> u64 {
    std::process::Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8_lossy(&o.stdout).trim().parse().ok())
        .unwrap_or(100)
}

/// Peak resident set size of process `pid` (`VmHWM`), bytes (Linux; None elsewhere).
pub fn peak_rss(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let kb: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))?
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()?;
    Some(kb * 1024)
}
