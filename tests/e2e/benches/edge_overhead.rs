//! What an edge adds: the same fast MCP upstream called directly and through `agentgate-edge`,
//! in the same run, on 127.0.0.1.
//!
//! Set-up: a real 3-node core and a real edge (release processes), and in this process a fast
//! upstream (hyper, answers `tools/call` echo in microseconds) and the load generator. Two
//! tenants behind the edge use the same upstream: one with 20 Cedar policies, one with 10,000.
//! Requests are stateless 2026-07-28 `tools/call`s over pooled HTTP/1.1 keep-alive connections;
//! audit is on (every decision is shipped to the core and acknowledged).
//!
//! Tracing: two more edges export OTLP traces to a sink in this process (decodes and counts
//! spans: a collector that keeps up), one sampling 1 % of traces and one sampling all of them;
//! the 20-policy tenant is measured through each, so the cost of tracing is the difference to
//! the untraced edge in the same run.
//!
//! Per target (direct; edge with 20 policies; edge with 10,000 policies; edge with 20 policies
//! traced at 1 % and at 100 %):
//! 1. unloaded latency: one request in flight;
//! 2. max throughput: 32 in flight, closed loop;
//! 3. open-loop latency at a fixed rate of half the 20-policy edge's max: request i is due at
//!    `start + i / rate` whatever happened to the others, and its latency runs from when it was
//!    due (no coordinated omission).
//!
//! Finally every decision taken is acknowledged by the core (the edge's audit counters).
//!
//! With 4 or more CPUs the edge, the load generator (with the upstream) and the core get
//! disjoint CPUs (`taskset`); with fewer everything shares them, and the output says so.
//!
//! Run: `cargo bench --workspace --bench edge_overhead` (or `scripts/bench.sh`). Prints a table
//! and writes `edge_overhead.json` (see `agentgate_testkit::bench::results_dir`).
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    clippy::disallowed_methods // a benchmark measures wall time
)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use agentgate_testkit as common;
use agentgate_testkit::bench::{
    PRODUCTION_TIMINGS, cpus, fast_upstream, otlp_sink, padded_policies, peak_rss, pin,
    process_cpu, run, summary, write_results,
};
use common::Cluster;
use common::mcp::{Edge, HttpClient, http_client, stateless_call, tenant};
use http_body_util::BodyExt;
use serde_json::{Value, json};
use tokio::sync::Semaphore;

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

/// Requests in flight at most in the open loop; beyond it the dispatcher waits (and the wait
/// shows in the latencies, which run from each request's due time).
const OPEN_LOOP_INFLIGHT_MAX: usize = 2_048;
const CLOSED_LOOP_INFLIGHT: usize = 32;

/// One call: its latency, or None when the reply was not the echo.
async fn call(client: &HttpClient, url: &str, key: &str, i: u64) -> Option<Duration> {
    let t = Instant::now();
    let req = stateless_call(url, key, "echo", json!({"text": "ping"}), i);
    let resp = client.request(req).await.ok()?;
    if resp.status() != 200 {
        return None;
    }
    let body = resp.into_body().collect().await.ok()?.to_bytes();
    let elapsed = t.elapsed();
    body.windows(6).any(|w| w == b"\"ping\"").then_some(elapsed)
}

/// A measured target: a URL and the key to call it with, and which edge serves it.
#[derive(Clone)]
struct Target {
    name: &'static str,
    url: String,
    key: String,
    edge: Option<usize>,
}

/// What one phase saw: latencies of good replies and the count of bad ones.
struct Outcome {
    latencies: Vec<Duration>,
    errors: usize,
    elapsed: Duration,
}

impl Outcome {
    fn rate(&self) -> f64 {
        self.latencies.len() as f64 / self.elapsed.as_secs_f64()
    }
}

/// `inflight` closed-loop workers for `dur`.
async fn closed_loop(t: &Target, inflight: usize, dur: Duration) -> Outcome {
    let client = http_client();
    let start = Instant::now();
    let mut tasks = Vec::new();
    for w in 0..inflight {
        let (client, t) = (client.clone(), t.clone());
        tasks.push(tokio::spawn(async move {
            let (mut lat, mut errors) = (Vec::new(), 0);
            let mut i = (w as u64) << 32;
            while start.elapsed() < dur {
                match call(&client, &t.url, &t.key, i).await {
                    Some(d) => lat.push(d),
                    None => errors += 1,
                }
                i += 1;
            }
            (lat, errors)
        }));
    }
    let mut out = Outcome {
        latencies: Vec::new(),
        errors: 0,
        elapsed: Duration::ZERO,
    };
    for task in tasks {
        let (lat, errors) = task.await.unwrap();
        out.latencies.extend(lat);
        out.errors += errors;
    }
    out.elapsed = start.elapsed();
    out
}

/// Open loop at `rate` requests/s for `dur`. A dispatcher thread (std sleep: tens of µs of
/// precision, where tokio's timer has 1 ms) starts each request when due; each latency runs
/// from the due time to the last byte of the reply.
async fn open_loop(t: &Target, rate: f64, dur: Duration) -> Outcome {
    let client = http_client();
    let total = (rate * dur.as_secs_f64()) as u64;
    let interval = Duration::from_secs_f64(1.0 / rate);
    let handle = tokio::runtime::Handle::current();
    let limit = Arc::new(Semaphore::new(OPEN_LOOP_INFLIGHT_MAX));
    let target = t.clone();
    let start = Instant::now();
    let tasks = tokio::task::spawn_blocking(move || {
        let mut tasks = Vec::with_capacity(total as usize);
        for i in 0..total {
            let due = start + interval.mul_f64(i as f64);
            let now = Instant::now();
            if due > now {
                std::thread::sleep(due - now);
            }
            let permit = handle.block_on(limit.clone().acquire_owned()).unwrap();
            let (client, t) = (client.clone(), target.clone());
            tasks.push(handle.spawn(async move {
                let ok = call(&client, &t.url, &t.key, i).await;
                drop(permit);
                ok.map(|_| due.elapsed())
            }));
        }
        tasks
    })
    .await
    .unwrap();
    let mut out = Outcome {
        latencies: Vec::with_capacity(tasks.len()),
        errors: 0,
        elapsed: Duration::ZERO,
    };
    for task in tasks {
        match task.await.unwrap() {
            Some(d) => out.latencies.push(d),
            None => out.errors += 1,
        }
    }
    out.elapsed = start.elapsed();
    out
}

/// Pins the processes when the machine has CPUs to spare; says what it did.
fn pin_processes(c: &Cluster, edges: &[Edge]) -> String {
    let n = cpus();
    if n < 4 {
        return format!(
            "not pinned: {n} CPUs (needs 4: 2 for the edge, 2 for the load generator and upstream); the edge, the load generator, the upstream and the 3 core nodes share them"
        );
    }
    let core_cpus = if n >= 6 {
        format!("4-{}", n - 1)
    } else {
        "2-3".into()
    };
    let ok = edges.iter().all(|e| pin(e.proc.0.id(), "0-1"))
        && pin(std::process::id(), "2-3")
        && c.nodes
            .iter()
            .filter_map(|node| node.pid())
            .all(|pid| pin(pid, &core_cpus));
    if ok {
        format!(
            "pinned: edges on CPUs 0-1, load generator, upstream and span sink on 2-3, core nodes on {core_cpus}"
        )
    } else {
        format!("not pinned: taskset failed ({n} CPUs); everything shares them")
    }
}

fn main() {
    run("edge_overhead", async {
        let c = Cluster::start_initialized(3, &PRODUCTION_TIMINGS).await;
        let upstream = fast_upstream(1);
        let (key20, _) = tenant(
            &c,
            "bench20",
            "fast",
            &upstream,
            &padded_policies(POLICY, 20),
        )
        .await;
        let (key10k, rev) = tenant(
            &c,
            "bench10k",
            "fast",
            &upstream,
            &padded_policies(POLICY, 10_000),
        )
        .await;
        let (sink, spans) = otlp_sink();
        let edges = [
            Edge::start(&c, &[]),
            Edge::start(
                &c,
                &["--otlp-endpoint", &sink, "--trace-sample-ratio", "0.01"],
            ),
            Edge::start(&c, &["--otlp-endpoint", &sink, "--trace-sample-ratio", "1"]),
        ];
        for e in &edges {
            e.wait_for_revision(rev).await;
        }
        let placement = pin_processes(&c, &edges);
        let target = |name, edge: usize, tenant, key: &str| Target {
            name,
            url: edges[edge].url(tenant, "fast"),
            key: key.to_string(),
            edge: Some(edge),
        };
        let targets = [
            Target {
                name: "direct",
                url: upstream.clone(),
                key: key20.clone(),
                edge: None,
            },
            target("edge, 20 policies", 0, "bench20", &key20),
            target("edge, 10,000 policies", 0, "bench10k", &key10k),
            target("edge, 20 policies, traced 1%", 1, "bench20", &key20),
            target("edge, 20 policies, traced 100%", 2, "bench20", &key20),
        ];
        // Ready: the edge allows both tenants' calls (the 10k package compiles once, ~1 s).
        let client = http_client();
        for t in &targets {
            common::eventually(
                &format!("{} allows calls", t.name),
                common::DEADLINE,
                || async { call(&client, &t.url, &t.key, 0).await.is_some() },
            )
            .await;
        }
        println!(
            "edge_overhead: 3 core nodes, 3 edges (untraced, traced 1%, traced 100%), 1 fast upstream on 127.0.0.1; {placement}"
        );
        let mut edge_calls = [0usize; 3];
        let mut count = |t: &Target, o: &Outcome| {
            if let Some(e) = t.edge {
                edge_calls[e] += o.latencies.len() + o.errors;
            }
        };
        for t in &targets {
            let o = closed_loop(t, 8, Duration::from_millis(500)).await; // warm-up
            count(t, &o);
        }

        let mut unloaded = Vec::new();
        for t in &targets {
            let o = closed_loop(t, 1, Duration::from_secs(2)).await;
            count(t, &o);
            unloaded.push(summary(&format!("{}: 1 in flight", t.name), o.latencies));
        }
        let mut max_rps = Vec::new();
        let mut max_errors = Vec::new();
        let mut cpu_per_call = Vec::new();
        for t in &targets {
            let edge_pid = t.edge.map(|e| edges[e].proc.0.id());
            let cpu_before = edge_pid.and_then(process_cpu);
            let o = closed_loop(t, CLOSED_LOOP_INFLIGHT, Duration::from_secs(3)).await;
            count(t, &o);
            // The edge's CPU per call at max load (user + system, all its threads).
            let per_call = match (cpu_before, edge_pid.and_then(process_cpu)) {
                (Some(a), Some(b)) => {
                    Some((b - a).as_secs_f64() * 1e6 / (o.latencies.len() + o.errors) as f64)
                }
                _ => None,
            };
            println!(
                "{:<40} max {:.0} req/s ({CLOSED_LOOP_INFLIGHT} in flight, {} errors){}",
                t.name,
                o.rate(),
                o.errors,
                per_call.map_or(String::new(), |us| format!(", edge CPU {us:.1} µs/call"))
            );
            max_rps.push(o.rate());
            max_errors.push(o.errors);
            cpu_per_call.push(per_call);
        }
        let rate = max_rps[1] / 2.0;
        let mut half = Vec::new();
        let mut half_errors = Vec::new();
        for t in &targets {
            let o = open_loop(t, rate, Duration::from_secs(5)).await;
            count(t, &o);
            half_errors.push(o.errors);
            half.push(summary(
                &format!("{}: open loop {rate:.0}/s", t.name),
                o.latencies,
            ));
        }

        // Every decision of the run acknowledged by the core: none lost at max load.
        let shipped = common::eventually(
            "the core acknowledges every decision",
            Duration::from_secs(60),
            || async {
                edges.iter().zip(edge_calls).all(|(e, calls)| {
                    e.metric("agentgate_edge_audit_backlog_records", "") == 0.0
                        && e.metric("agentgate_edge_audit_shipped_total", "") >= calls as f64
                })
            },
        )
        .await;
        let acked: f64 = edges
            .iter()
            .map(|e| e.metric("agentgate_edge_audit_shipped_total", ""))
            .sum();
        let per_edge_calls = edge_calls;
        let edge_calls: usize = per_edge_calls.iter().sum();
        let rss = peak_rss(edges[0].proc.0.id());
        println!(
            "edge peak RSS: {:.1} MiB",
            rss.unwrap_or(0) as f64 / 1048576.0
        );
        println!(
            "audit: {acked} decisions acknowledged by the core ({edge_calls} calls measured), backlog 0 after {shipped:?}"
        );

        // What the traced edges exported (the sink has everything once their counters settle:
        // a batch leaves at least every 500 ms).
        let exported = |e: &Edge| e.metric("agentgate_trace_spans_exported_total", "");
        common::eventually(
            "the span sink has every exported span",
            Duration::from_secs(30),
            || async {
                let total = exported(&edges[1]) + exported(&edges[2]);
                total > 0.0
                    && spans.spans.load(std::sync::atomic::Ordering::Relaxed) as f64 >= total
            },
        )
        .await;
        let mut tracing = Vec::new();
        for (i, ratio) in [(1, 0.01), (2, 1.0)] {
            let e = &edges[i];
            let row = json!({
                "sample_ratio": ratio,
                "calls": per_edge_calls[i],
                "spans_exported": exported(e),
                "spans_dropped": e.metric("agentgate_trace_spans_dropped_total", ""),
                "spans_failed": e.metric("agentgate_trace_spans_failed_total", ""),
                "peak_rss_bytes": peak_rss(e.proc.0.id()),
            });
            println!("tracing at {:.0}%: {row}", ratio * 100.0);
            tracing.push(row);
        }
        println!(
            "span sink: {} spans in {} export requests",
            spans.spans.load(std::sync::atomic::Ordering::Relaxed),
            spans.requests.load(std::sync::atomic::Ordering::Relaxed)
        );

        let us = |v: &Value, k: &str| v[k].as_f64().unwrap();
        let mut rows = Vec::new();
        for (i, t) in targets.iter().enumerate() {
            rows.push(json!({
                "target": t.name,
                "unloaded": unloaded[i],
                "max_rps": max_rps[i],
                "max_errors": max_errors[i],
                "edge_cpu_us_per_call": cpu_per_call[i],
                "half_load": half[i],
                "half_load_errors": half_errors[i],
                "ratio_max_rps": max_rps[i] / max_rps[0],
                // Against the untraced 20-policy edge (traced targets only).
                "ratio_max_rps_vs_untraced": t.name.contains("traced").then(|| max_rps[i] / max_rps[1]),
                "added_cpu_us_per_call_vs_untraced": match (t.name.contains("traced"), cpu_per_call[i], cpu_per_call[1]) {
                    (true, Some(a), Some(b)) => Some(a - b),
                    _ => None,
                },
                "ratio_half_load_p50": us(&half[i], "p50_us") / us(&half[0], "p50_us"),
                "ratio_half_load_p99": us(&half[i], "p99_us") / us(&half[0], "p99_us"),
                "added_half_load_p50_us": us(&half[i], "p50_us") - us(&half[0], "p50_us"),
                "added_half_load_p99_us": us(&half[i], "p99_us") - us(&half[0], "p99_us"),
            }));
        }
        write_results(
            "edge_overhead",
            &json!({
                "placement": placement,
                "cpus": cpus(),
                "half_load_rps": rate,
                "targets": rows,
                "audit_records_acked": acked,
                "edge_peak_rss_bytes": rss,
                "edge_calls": edge_calls,
                "tracing": tracing,
            }),
        );
    });
}
