//! Observability end to end: one trace from a real MCP client (the Python SDK with the
//! OpenTelemetry SDK) through a real edge to a real MCP server that emits its own spans, collected
//! by an OTLP/gRPC receiver on 127.0.0.1 (`tests/e2e/otel.py`), and the edge's JSON log line for
//! the call carrying the same trace.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    clippy::disallowed_methods
)]

use agentgate_testkit as common;

use std::path::Path;
use std::process::{Command, Stdio};

use common::mcp::{
    Acme, Edge, Proc, READ_ONLY_POLICY, free_port, python, repo, tenant, wait_listening,
};
use common::{Cluster, DEADLINE};
use serde_json::{Value, json};

/// An argument value that must never reach a span.
const SECRET: &str = "argument-value-5f1c9e";

fn otel_py() -> std::path::PathBuf {
    repo().join("tests/e2e/otel.py")
}

/// The OTLP receiver: (process, endpoint).
async fn receiver(spans: &Path) -> (Proc, String) {
    let port = free_port();
    let child = Command::new(python())
        .arg(otel_py())
        .args(["receiver", &port.to_string()])
        .arg(spans)
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let addr = format!("127.0.0.1:{port}");
    wait_listening(&addr).await;
    (Proc(child), format!("http://{addr}"))
}

/// Every span the receiver has written so far.
fn read_spans(path: &Path) -> Vec<Value> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .collect()
}

fn spans_of(path: &Path, trace_id: &str) -> Vec<Value> {
    read_spans(path)
        .into_iter()
        .filter(|s| s["trace_id"] == trace_id)
        .collect()
}

fn find<'a>(spans: &'a [Value], service: &str, name: &str) -> Vec<&'a Value> {
    spans
        .iter()
        .filter(|s| s["service"] == service && s["name"] == name)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_trace_runs_from_the_agent_through_the_edge_to_the_upstream() {
    let dir = tempfile::tempdir().unwrap();
    let spans_file = dir.path().join("spans.jsonl");
    let (_receiver, endpoint) = receiver(&spans_file).await;

    let c = Cluster::start_initialized(3, &["--otlp-endpoint", &endpoint]).await;
    let up_port = free_port();
    let _upstream = Proc(
        Command::new(python())
            .arg(otel_py())
            .args(["server", &up_port.to_string()])
            .env("OTEL_EXPORTER_OTLP_ENDPOINT", &endpoint)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    wait_listening(&format!("127.0.0.1:{up_port}")).await;
    let url = format!("http://127.0.0.1:{up_port}/mcp");
    let (key, rev) = tenant(&c, "acme", "srv", &url, READ_ONLY_POLICY).await;
    let edge_log = dir.path().join("edge.log");
    let edge = Edge::start_json_logs(
        &c,
        &["--otlp-endpoint", &endpoint],
        "warn,agentgate::access=debug",
        &edge_log,
    );
    edge.wait_for_revision(rev).await;

    let out = tokio::process::Command::new(python())
        .arg(otel_py())
        .args(["client", &edge.url("acme", "srv"), &key, "echo"])
        .arg(format!(r#"{{"text": "{SECRET}"}}"#))
        .env("OTEL_EXPORTER_OTLP_ENDPOINT", &endpoint)
        .output()
        .await
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let reply: Value = serde_json::from_str(stdout.trim()).unwrap_or_else(|e| {
        panic!(
            "client said {stdout:?} ({e}); stderr: {}",
            String::from_utf8_lossy(&out.stderr)
        )
    });
    assert_eq!(reply["result"], SECRET, "{reply}");
    let trace_id = reply["trace_id"].as_str().unwrap().to_string();

    // Spans arrive in batches from three processes: wait for every link of the chain.
    let complete = |spans: &[Value]| {
        !find(spans, "e2e-upstream", "tools/call echo").is_empty()
            && spans.iter().any(|s| {
                s["service"] == "e2e-upstream"
                    && s["attributes"]["jsonrpc.request.id"] == "agentgate-catalog"
            })
            && find(spans, "agentgate-edge", "agentgate.request").len() >= 2
            && !find(spans, "e2e-agent", "agent.task").is_empty()
    };
    let waited = tokio::time::timeout(DEADLINE, async {
        while !complete(&spans_of(&spans_file, &trace_id)) {
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
    })
    .await;
    if waited.is_err() {
        let seen: Vec<String> = read_spans(&spans_file)
            .iter()
            .map(|s| {
                format!(
                    "{} {} {} <- {}",
                    s["service"], s["name"], s["trace_id"], s["parent_span_id"]
                )
            })
            .collect();
        panic!(
            "the trace {trace_id} did not arrive whole; spans received:\n{}",
            seen.join("\n")
        );
    }
    let spans = spans_of(&spans_file, &trace_id);
    let dump = || serde_json::to_string_pretty(&spans).unwrap();

    // client span → edge request span (parented on the `_meta` traceparent)
    let client_call = find(&spans, "e2e-agent", "MCP send tools/call echo");
    assert_eq!(client_call.len(), 1, "{}", dump());
    let request = spans
        .iter()
        .find(|s| {
            s["name"] == "agentgate.request" && s["parent_span_id"] == client_call[0]["span_id"]
        })
        .unwrap_or_else(|| panic!("no edge span under the client's call: {}", dump()));
    let attrs = &request["attributes"];
    for (k, v) in [
        ("agentgate.tenant", "acme"),
        ("agentgate.agent", "bot"),
        ("agentgate.server", "srv"),
        ("mcp.method.name", "tools/call"),
        ("gen_ai.tool.name", "echo"),
        ("agentgate.decision", "allow"),
        ("agentgate.policy.version", "v1"),
        ("agentgate.policy.ids", "read-only-tools"),
        ("agentgate.upstream.status", "200"),
        ("http.response.status_code", "200"),
    ] {
        assert_eq!(attrs[k], v, "{k} on the edge's request span: {}", dump());
    }
    assert_eq!(request["kind"], 2, "a server span");

    // edge request span → decision and upstream call
    let children: Vec<&Value> = spans
        .iter()
        .filter(|s| s["parent_span_id"] == request["span_id"])
        .collect();
    let decide = children.iter().find(|s| s["name"] == "agentgate.decide");
    let upstream_call = children
        .iter()
        .find(|s| s["name"] == "agentgate.upstream")
        .unwrap_or_else(|| panic!("no upstream span under the request: {}", dump()));
    assert!(
        decide.is_some(),
        "no decision span under the request: {}",
        dump()
    );
    assert_eq!(
        upstream_call["attributes"]["http.response.status_code"],
        "200"
    );
    assert_eq!(upstream_call["kind"], 3, "a client span");

    // edge upstream span → the upstream server's own span (context passed on in `_meta`)
    let served = find(&spans, "e2e-upstream", "tools/call echo");
    assert_eq!(served.len(), 1, "{}", dump());
    assert_eq!(
        served[0]["parent_span_id"],
        upstream_call["span_id"],
        "the upstream's span must be a child of the edge's upstream call: {}",
        dump()
    );

    // The catalog fetch the call needed (the edge's own tools/list) is in the trace too: an edge
    // span under the request, continued by the upstream.
    let catalog = children
        .iter()
        .find(|s| s["name"] == "agentgate.catalog")
        .unwrap_or_else(|| panic!("no catalog span under the request: {}", dump()));
    let listed = spans
        .iter()
        .find(|s| {
            s["service"] == "e2e-upstream"
                && s["attributes"]["jsonrpc.request.id"] == "agentgate-catalog"
        })
        .unwrap();
    assert_eq!(listed["parent_span_id"], catalog["span_id"], "{}", dump());

    // Never argument values, in any span of any trace.
    let everything = std::fs::read_to_string(&spans_file).unwrap();
    assert!(
        !everything.contains(SECRET),
        "an argument value reached a span"
    );

    // The edge's per-request log line (JSON, asked for with `agentgate::access=debug`) carries
    // the trace and the request span's ids, the decision, and no argument value.
    let logs = std::fs::read_to_string(&edge_log).unwrap();
    assert!(!logs.contains(SECRET), "an argument value reached the logs");
    let access: Vec<Value> = logs
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|l| l["target"] == "agentgate::access" && l["trace_id"] == trace_id.as_str())
        .collect();
    let call = access
        .iter()
        .find(|l| l["fields"]["method"] == "tools/call")
        .unwrap_or_else(|| panic!("no access log line for the traced call in:\n{logs}"));
    assert_eq!(call["span_id"], request["span_id"], "{call}");
    assert_eq!(call["fields"]["tool"], "echo", "{call}");
    assert_eq!(call["fields"]["decision"], "allow", "{call}");
    assert_eq!(call["fields"]["policy_version"], "v1", "{call}");

    // The core traces admin operations through Raft commit and apply: the tenant set-up above
    // (CreateTenant … ActivatePolicy) left one admin span per operation, each with its commit.
    let is_activation = |s: &Value| {
        s["service"] == "agentgate-node"
            && s["name"] == "agentgate.admin"
            && s["attributes"]["agentgate.op"] == "activate_policy"
    };
    let found = tokio::time::timeout(DEADLINE, async {
        while !read_spans(&spans_file).iter().any(is_activation) {
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
    })
    .await;
    let all = read_spans(&spans_file);
    assert!(
        found.is_ok(),
        "no admin span for the policy activation: {all:?}"
    );
    let activate = all.iter().find(|s| is_activation(s)).unwrap();
    assert_eq!(activate["attributes"]["rpc.method"], "Propose");
    assert!(
        activate["attributes"]["raft.log_index"]
            .as_str()
            .is_some_and(|i| !i.is_empty())
    );
    assert!(
        all.iter()
            .any(|s| s["name"] == "agentgate.raft.commit_apply"
                && s["trace_id"] == activate["trace_id"]),
        "no commit span in the activation's trace: {all:?}"
    );

    // An operator's command is a trace too: agentgate-admin's span, continued by the node that
    // takes the proposal (from `traceparent` gRPC metadata).
    let out = Command::new(common::bin("agentgate-admin"))
        .args([
            "--endpoint",
            &c.node(2).grpc,
            "tenant",
            "create",
            "traced-tenant",
        ])
        .env("OTEL_EXPORTER_OTLP_ENDPOINT", &endpoint)
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let cli_span = |s: &Value| {
        s["service"] == "agentgate-admin"
            && s["name"] == "agentgate.admin_cli"
            && s["attributes"]["agentgate.command"] == "tenant create"
    };
    let found = tokio::time::timeout(DEADLINE, async {
        loop {
            let all = read_spans(&spans_file);
            if let Some(cli) = all.iter().find(|s| cli_span(s)) {
                // The node the CLI called (a follower forwards to the leader, in the same trace).
                let served = all.iter().find(|s| {
                    s["name"] == "agentgate.admin"
                        && s["attributes"]["agentgate.op"] == "create_tenant"
                        && s["attributes"]["agentgate.forwarded"] != "True"
                        && s["trace_id"] == cli["trace_id"]
                });
                if let Some(served) = served {
                    return (cli.clone(), served.clone());
                }
            }
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
    })
    .await;
    let (cli, served) = found.unwrap_or_else(|_| {
        panic!(
            "no admin CLI trace reached the node: {:?}",
            read_spans(&spans_file)
        )
    });
    assert_eq!(served["parent_span_id"], cli["span_id"], "{served}");
    assert!(
        !read_spans(&spans_file)
            .iter()
            .any(|s| s["service"] == "agentgate-admin" && s["parent_span_id"] != ""),
        "the CLI's span is the root of its trace"
    );
    drop(c);
}

/// Head sampling at the edge: with a sample ratio of 0, a call without a caller's context records
/// nothing at all (no request span, and no orphaned decision or upstream span), while a call
/// whose caller sampled its trace is recorded whole (parent-based).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unsampled_requests_record_no_spans_and_sampled_callers_are_followed() {
    let dir = tempfile::tempdir().unwrap();
    let spans_file = dir.path().join("spans.jsonl");
    let (_receiver, endpoint) = receiver(&spans_file).await;
    let acme = Acme::start("srv", READ_ONLY_POLICY).await;
    let key = &acme.key;
    let edge = acme
        .edge(&["--otlp-endpoint", &endpoint, "--trace-sample-ratio", "0"])
        .await;
    let client = common::mcp::http_client();
    let mcp = edge.url("acme", "srv");
    let unsampled = common::mcp::stateless_call(&mcp, key, "echo", json!({"text": "a"}), 1);
    assert_eq!(common::mcp::send(&client, unsampled).await.0, 200);

    let trace_id = "0af7651916cd43dd8448eb211c80319c";
    let mut sampled = common::mcp::stateless_call(&mcp, key, "echo", json!({"text": "b"}), 2);
    sampled.headers_mut().insert(
        "traceparent",
        format!("00-{trace_id}-b7ad6b7169203331-01")
            .parse()
            .unwrap(),
    );
    assert_eq!(common::mcp::send(&client, sampled).await.0, 200);

    // The sampled call's spans end after the unsampled call's would have: once they are in,
    // anything the first call recorded would be too.
    let whole = tokio::time::timeout(DEADLINE, async {
        loop {
            let spans = spans_of(&spans_file, trace_id);
            if [
                "agentgate.request",
                "agentgate.decide",
                "agentgate.upstream",
            ]
            .iter()
            .all(|n| find(&spans, "agentgate-edge", n).len() == 1)
            {
                return spans;
            }
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
    })
    .await
    .unwrap_or_else(|_| panic!("the sampled call's trace: {:?}", read_spans(&spans_file)));
    let request = find(&whole, "agentgate-edge", "agentgate.request")[0];
    assert_eq!(request["parent_span_id"], "b7ad6b7169203331");
    let edge_spans: Vec<Value> = read_spans(&spans_file)
        .into_iter()
        .filter(|s| s["service"] == "agentgate-edge")
        .collect();
    assert_eq!(
        edge_spans.len(),
        3,
        "only the sampled call's three spans: {edge_spans:?}"
    );
    assert_eq!(edge.metric("agentgate_trace_spans_dropped_total", ""), 0.0);
    drop(acme);
}
