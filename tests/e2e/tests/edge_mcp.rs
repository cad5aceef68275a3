//! End to end: real MCP clients (the Python SDK, default and legacy modes) through real
//! `agentgate-edge` processes and a real core cluster to real MCP servers (the Python SDK server,
//! server-everything), all on 127.0.0.1.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    clippy::disallowed_methods
)]

use agentgate_testkit as common;

use std::time::Instant;

use agentgate_model::Op;
use agentgate_model::audit::{AuditRecord, Decision};
use agentgate_model::entity::Scope;
use agentgate_model::query::{AuditFilter, Query, QueryResult};
use common::mcp::{
    Acme, Edge, error_code, everything_upstream, first_message, http_client, ms_since, py_client,
    python_upstream, round_robin, send, stateless_call, tenant,
};
use common::{Cluster, DEADLINE, eventually, http_get};
use serde_json::{Value, json};

/// The default policy plus one forbid, so that every outcome shows.
const POLICY: &str = r#"
@id("list-tools")
permit (principal, action == Action::"list_tools", resource);

@id("read-only-tools")
permit (principal, action == Action::"call_tool", resource)
when { resource.read_only && !resource.destructive };

@id("destructive-needs-approval")
@approval("required")
permit (principal, action == Action::"call_tool", resource)
when { resource.destructive };

@id("no-secrets-in-arguments")
forbid (principal, action, resource)
when { context.detections.contains("secret") };

@id("no-secret-reading")
forbid (principal, action == Action::"call_tool", resource)
when { resource.name == "read_secret" };
"#;

fn tools(v: &Value) -> Vec<String> {
    v["tools"]
        .as_array()
        .unwrap_or_else(|| panic!("no tools in {v}"))
        .iter()
        .map(|t| t.as_str().unwrap().to_string())
        .collect()
}

async fn audit(c: &Cluster, tenant: &str) -> Vec<AuditRecord> {
    let filter = AuditFilter {
        tenant: Some(tenant.into()),
        ..Default::default()
    };
    match c.query(1, &Query::Audit { filter }).await.unwrap().1 {
        QueryResult::Audit { records, .. } => records,
        other => panic!("{other:?}"),
    }
}

/// Approves an approval through the core and waits until `edge` holds the decision (an
/// approval is usable at an edge once its replica has it).
async fn approve(c: &Cluster, edge: &Edge, id: &str) {
    let rev = c
        .propose(
            1,
            &Op::DecideApproval {
                id: id.into(),
                approve: true,
            },
        )
        .await
        .unwrap()
        .revision;
    edge.wait_for_revision(rev).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_sdk_default_and_legacy_through_the_edge() {
    let acme = Acme::start("tools", POLICY).await;
    let (c, key) = (&acme.c, &acme.key);
    let edge = acme.edge(&[]).await;
    let ep = edge.url("acme", "tools");

    for mode in ["auto", "legacy"] {
        let out = py_client(
            &ep,
            key,
            mode,
            &[
                "list",
                r#"call:echo:{"text":"hello"}"#,
                r#"call:read_secret:{"name":"db"}"#,
                r#"call:echo:{"text":"AKIAABCDEFGHIJKLMNOP"}"#,
                r#"call:delete_file:{"path":"/tmp/x"}"#,
            ],
        )
        .await;
        // Filtered: read_secret is forbidden; delete_file needs approval, so it is callable.
        assert_eq!(
            tools(&out[0]),
            ["delete_file", "echo", "slow_count"],
            "{mode}"
        );
        assert_eq!(out[1]["result"], "hello", "{mode}");
        assert_eq!(error_code(&out[2]), Some(-32082), "{mode}: {}", out[2]);
        assert_eq!(
            out[2]["error"]["data"]["policy_ids"],
            json!(["no-secret-reading"])
        );
        assert_eq!(error_code(&out[3]), Some(-32082), "{mode}: {}", out[3]);
        assert_eq!(
            out[3]["error"]["data"]["policy_ids"],
            json!(["no-secrets-in-arguments"])
        );
        assert_eq!(error_code(&out[4]), Some(-32083), "{mode}: {}", out[4]);
        let approval = out[4]["error"]["data"]["approval_id"]
            .as_str()
            .unwrap()
            .to_string();

        // Asking again before approval names the same pending approval.
        let again = py_client(&ep, key, mode, &[r#"call:delete_file:{"path":"/tmp/x"}"#]).await;
        assert_eq!(again[0]["error"]["data"]["approval_id"], json!(approval));

        approve(c, &edge, &approval).await;
        let out = py_client(
            &ep,
            key,
            mode,
            &[
                r#"call:delete_file:{"path":"/tmp/y"}"#,
                r#"call:delete_file:{"path":"/tmp/x"}"#,
                r#"call:delete_file:{"path":"/tmp/x"}"#,
            ],
        )
        .await;
        // Other arguments: not covered by the approval.
        assert_eq!(error_code(&out[0]), Some(-32083), "{mode}: {}", out[0]);
        // Exactly once.
        assert_eq!(out[1]["result"], "deleted /tmp/x", "{mode}: {}", out[1]);
        assert_eq!(error_code(&out[2]), Some(-32083), "{mode}: {}", out[2]);
        assert_ne!(out[2]["error"]["data"]["approval_id"], json!(approval));

        // Paused tenant: denied with the kill-switch code, whatever the tool.
        let r = c
            .propose(
                1,
                &Op::EngageSwitch {
                    scope: Scope::Tenant {
                        tenant: "acme".into(),
                    },
                    reason: "incident 42".into(),
                    ttl_ms: None,
                },
            )
            .await
            .unwrap();
        edge.wait_for_revision(r.revision).await;
        let out = py_client(&ep, key, mode, &[r#"call:echo:{"text":"x"}"#]).await;
        assert_eq!(error_code(&out[0]), Some(-32080), "{mode}: {}", out[0]);
        assert!(
            out[0]["error"]["message"]
                .as_str()
                .unwrap()
                .contains("incident 42")
        );
        let r = c
            .propose(
                1,
                &Op::ReleaseSwitch {
                    scope: Scope::Tenant {
                        tenant: "acme".into(),
                    },
                },
            )
            .await
            .unwrap();
        edge.wait_for_revision(r.revision).await;
    }

    // Every decision is in the core's audit index, with its policy version and ids.
    eventually("the audit records reach the core", DEADLINE, || async {
        let recs = audit(c, "acme").await;
        recs.iter()
            .filter(|r| {
                r.entry.tool.as_deref() == Some("delete_file")
                    && r.entry.decision == Decision::Allow
            })
            .count()
            == 2
    })
    .await;
    let recs = audit(c, "acme").await;
    let secret = recs
        .iter()
        .find(|r| r.entry.tool.as_deref() == Some("read_secret"))
        .unwrap();
    assert_eq!(secret.entry.decision, Decision::Deny);
    assert_eq!(secret.entry.policy_ids, ["no-secret-reading"]);
    let allowed = recs
        .iter()
        .find(|r| r.entry.tool.as_deref() == Some("echo") && r.entry.decision == Decision::Allow)
        .unwrap();
    assert_eq!(allowed.entry.policy_version.as_deref(), Some("v1"));
    assert_eq!(allowed.entry.upstream_status, Some(200));
    assert!(
        recs.iter()
            .any(|r| r.entry.decision == Decision::RequireApproval)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_everything_through_the_edge() {
    let c = Cluster::start_initialized(3, &[]).await;
    let (_up, url) = everything_upstream().await;
    let policy = r#"
@id("list-tools")
permit (principal, action == Action::"list_tools", resource);
@id("safe-tools")
permit (principal, action == Action::"call_tool", resource)
when { resource.name == "echo" || resource.name == "get-sum" };
"#;
    let (key, rev) = tenant(&c, "acme", "everything", &url, policy).await;
    // Batches leave only when full or once a minute: the records below reach the core through
    // the shutdown flush.
    let mut edge = Edge::start(&c, &["--audit-flush-ms", "60000", "--audit-batch", "4096"]);
    edge.wait_for_revision(rev).await;
    let out = py_client(
        &edge.url("acme", "everything"),
        &key,
        "auto",
        &[
            "list",
            r#"call:echo:{"message":"hi"}"#,
            r#"call:get-sum:{"a":2,"b":3}"#,
            r#"call:get-env:{}"#,
        ],
    )
    .await;
    assert_eq!(tools(&out[0]), ["echo", "get-sum"]);
    assert!(
        out[1]["result"].as_str().unwrap().contains("hi"),
        "{}",
        out[1]
    );
    assert!(
        out[2]["result"].as_str().unwrap().contains('5'),
        "{}",
        out[2]
    );
    assert_eq!(error_code(&out[3]), Some(-32082), "{}", out[3]);
    assert!(
        audit(&c, "acme").await.is_empty(),
        "nothing shipped before shutdown"
    );

    // SIGTERM: the edge finishes, flushes its audit buffer, and exits cleanly.
    let pid = edge.proc.0.id().to_string();
    assert!(
        std::process::Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .unwrap()
            .success()
    );
    let status = tokio::task::spawn_blocking(move || edge.proc.0.wait().unwrap())
        .await
        .unwrap();
    assert!(status.success(), "{status}");
    let recs = audit(&c, "acme").await;
    let mut calls: Vec<(String, Decision)> = recs
        .iter()
        .map(|r| {
            (
                r.entry
                    .tool
                    .clone()
                    .unwrap_or_else(|| r.entry.method.clone()),
                r.entry.decision,
            )
        })
        .collect();
    calls.sort_by(|a, b| a.0.cmp(&b.0));
    assert_eq!(
        calls,
        [
            ("echo".to_string(), Decision::Allow),
            ("get-env".to_string(), Decision::Deny),
            ("get-sum".to_string(), Decision::Allow),
            ("tools/list".to_string(), Decision::Allow),
        ]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_legacy_session_alternates_between_two_edges() {
    let acme = Acme::start("tools", POLICY).await;
    let key = &acme.key;
    let edges = [acme.edge(&[]).await, acme.edge(&[]).await];
    let lb = round_robin(edges.iter().map(|e| e.mcp.clone()).collect()).await;
    let steps: Vec<String> = std::iter::once("list".to_string())
        .chain((0..6).map(|i| format!(r#"call:echo:{{"text":"n{i}"}}"#)))
        .collect();
    let steps: Vec<&str> = steps.iter().map(String::as_str).collect();
    let out = py_client(
        &format!("http://{lb}/t/acme/tools/mcp"),
        key,
        "legacy",
        &steps,
    )
    .await;
    for (i, o) in out.iter().skip(1).enumerate() {
        assert_eq!(o["result"], format!("n{i}"), "{o}");
    }
    for e in &edges {
        assert!(
            e.metric("agentgate_edge_calls_total", "decision=\"allow\"") >= 3.0,
            "edge {} served its share",
            e.id
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_global_pause_reaches_every_edge() {
    let acme = Acme::start("tools", POLICY).await;
    let (c, key) = (&acme.c, &acme.key);
    let edges = [acme.edge(&[]).await, acme.edge(&[]).await];
    let http = http_client();
    for e in &edges {
        let (status, body) = send(
            &http,
            stateless_call(
                &e.url("acme", "tools"),
                key,
                "echo",
                json!({"text": "up"}),
                1,
            ),
        )
        .await;
        assert_eq!(status, 200);
        assert_eq!(
            first_message(&body)["result"]["content"][0]["text"],
            "up",
            "{body}"
        );
    }
    let t0 = Instant::now();
    c.propose(
        1,
        &Op::EngageSwitch {
            scope: Scope::Global,
            reason: "stop everything".into(),
            ttl_ms: None,
        },
    )
    .await
    .unwrap();
    let committed_ms = ms_since(t0);
    for e in &edges {
        let url = e.url("acme", "tools");
        let took = eventually("the edge enforces the global pause", DEADLINE, || async {
            let (_, body) = send(
                &http,
                stateless_call(&url, key, "echo", json!({"text": "x"}), 2),
            )
            .await;
            first_message(&body)["error"]["code"] == -32080
        })
        .await;
        println!(
            "edge {}: global pause committed after {committed_ms:.1} ms, enforced {:.1} ms after the commit returned",
            e.id,
            took.as_secs_f64() * 1000.0
        );
        assert!(e.metric("agentgate_edge_kill_switch_apply_lag_seconds_count", "") >= 1.0);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stale_edge_denies_until_the_core_is_back() {
    let mut acme = Acme::start("tools", POLICY).await;
    let edge = acme.edge(&["--max-staleness-ms", "1000"]).await;
    let (c, key) = (&mut acme.c, &acme.key);
    let http = http_client();
    let ep = edge.url("acme", "tools");
    let call = || stateless_call(&ep, key, "echo", json!({"text": "ok"}), 7);
    assert_eq!(
        first_message(&send(&http, call()).await.1)["result"]["content"][0]["text"],
        "ok"
    );

    for id in c.ids() {
        c.kill(id);
    }
    let stopped = Instant::now();
    eventually("calls are denied as stale", DEADLINE, || async {
        let m = first_message(&send(&http, call()).await.1);
        m["error"]["code"] == -32081 && m["error"]["data"]["retry_after_ms"] == 1000
    })
    .await;
    println!(
        "stale after {:.0} ms without the core (max staleness 1000 ms)",
        ms_since(stopped)
    );
    assert_eq!(http_get(&edge.http, "/readyz").0, 503);

    for id in [1, 2, 3] {
        c.restart(id);
    }
    eventually("calls flow again", DEADLINE, || async {
        first_message(&send(&http, call()).await.1)["result"]["content"][0]["text"] == "ok"
    })
    .await;
    assert_eq!(http_get(&edge.http, "/readyz").0, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_kill_switch_ends_a_stream_in_flight() {
    use http_body_util::BodyExt;
    let acme = Acme::start("tools", POLICY).await;
    let (c, key) = (&acme.c, &acme.key);
    let edge = acme.edge(&[]).await;
    let http = http_client();
    // 100 progress events, 100 ms apart: ten seconds unless cut short.
    let req = stateless_call(
        &edge.url("acme", "tools"),
        key,
        "slow_count",
        json!({"n": 100}),
        9,
    );
    let resp = http.request(req).await.unwrap();
    assert_eq!(resp.status(), 200);
    assert!(
        resp.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/event-stream")
    );
    let mut body = resp.into_body();
    let mut seen = String::new();
    while !seen.contains("notifications/progress") {
        let f = tokio::time::timeout(DEADLINE, body.frame())
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        if let Ok(d) = f.into_data() {
            seen.push_str(&String::from_utf8_lossy(&d));
        }
    }
    let t0 = Instant::now();
    c.propose(
        1,
        &Op::EngageSwitch {
            scope: Scope::Tool {
                tool: "slow_count".into(),
            },
            reason: "runaway".into(),
            ttl_ms: None,
        },
    )
    .await
    .unwrap();
    let rest = tokio::time::timeout(DEADLINE, body.collect())
        .await
        .unwrap()
        .unwrap()
        .to_bytes();
    let rest = String::from_utf8_lossy(&rest);
    println!(
        "stream ended {:.1} ms after the switch committed",
        ms_since(t0)
    );
    let last = first_message(&rest);
    assert_eq!(last["id"], 9, "{rest}");
    assert_eq!(last["error"]["code"], -32080, "{rest}");
    assert!(
        !rest.contains("counted to"),
        "the call did not run to completion"
    );
    assert_eq!(edge.metric("agentgate_edge_streams_aborted_total", ""), 1.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_requests_get_the_transport_answers() {
    let c = Cluster::start_initialized(1, &[]).await;
    let (_up, url) = python_upstream().await;
    let (key, rev) = tenant(&c, "acme", "tools", &url, POLICY).await;
    let edge = Edge::start(
        &c,
        &[
            "--body-max-bytes",
            "2048",
            "--allowed-origins",
            "http://ok.example",
        ],
    );
    edge.wait_for_revision(rev).await;
    let http = http_client();
    let ep = edge.url("acme", "tools");
    let good = || stateless_call(&ep, &key, "echo", json!({"text": "x"}), 1);
    type Edit = Box<dyn Fn(&mut hyper::Request<http_body_util::Full<bytes::Bytes>>)>;
    let cases: Vec<(&str, Edit, u16, Option<i64>)> = vec![
        (
            "no key",
            Box::new(|r| {
                r.headers_mut().remove("authorization");
            }),
            401,
            None,
        ),
        (
            "unknown key",
            Box::new(|r| {
                r.headers_mut()
                    .insert("authorization", "Bearer agk_nope".parse().unwrap());
            }),
            401,
            None,
        ),
        (
            "unknown server",
            Box::new(|r| {
                *r.uri_mut() = r
                    .uri()
                    .to_string()
                    .replace("/tools/", "/nope/")
                    .parse()
                    .unwrap();
            }),
            404,
            None,
        ),
        (
            "other tenant",
            Box::new(|r| {
                *r.uri_mut() = r
                    .uri()
                    .to_string()
                    .replace("/acme/", "/other/")
                    .parse()
                    .unwrap();
            }),
            404,
            None,
        ),
        (
            "bad path",
            Box::new(|r| {
                *r.uri_mut() = r.uri().to_string().replace("/mcp", "/sse").parse().unwrap();
            }),
            404,
            None,
        ),
        (
            "PUT",
            Box::new(|r| {
                *r.method_mut() = hyper::Method::PUT;
            }),
            405,
            None,
        ),
        (
            "text body",
            Box::new(|r| {
                r.headers_mut()
                    .insert("content-type", "text/plain".parse().unwrap());
            }),
            415,
            None,
        ),
        (
            "no SSE in Accept",
            Box::new(|r| {
                r.headers_mut()
                    .insert("accept", "application/json".parse().unwrap());
            }),
            406,
            None,
        ),
        (
            "foreign Origin",
            Box::new(|r| {
                r.headers_mut()
                    .insert("origin", "http://evil.example".parse().unwrap());
            }),
            403,
            None,
        ),
        (
            "too large",
            Box::new(|r| {
                *r.body_mut() = http_body_util::Full::new(bytes::Bytes::from(vec![b' '; 4096]));
            }),
            413,
            None,
        ),
        (
            "not JSON",
            Box::new(|r| {
                *r.body_mut() = http_body_util::Full::new(bytes::Bytes::from_static(b"{nope"));
            }),
            400,
            Some(-32700),
        ),
        (
            "Mcp-Name mismatch",
            Box::new(|r| {
                r.headers_mut()
                    .insert("mcp-name", "delete_file".parse().unwrap());
            }),
            400,
            Some(-32020),
        ),
        (
            "bad session",
            Box::new(|r| {
                r.headers_mut()
                    .insert("mcp-session-id", "ag1.forged.sig".parse().unwrap());
            }),
            404,
            None,
        ),
    ];
    for (name, edit, status, code) in cases {
        let mut req = good();
        edit(&mut req);
        let (got, body) = send(&http, req).await;
        assert_eq!(got, status, "{name}: {body}");
        let v: Value =
            serde_json::from_str(&body).unwrap_or_else(|_| panic!("{name}: not JSON: {body}"));
        assert_eq!(v["jsonrpc"], "2.0", "{name}");
        if let Some(code) = code {
            assert_eq!(v["error"]["code"], code, "{name}: {body}");
        }
    }
    // An allowed Origin passes.
    let mut req = good();
    req.headers_mut()
        .insert("origin", "http://ok.example".parse().unwrap());
    assert_eq!(send(&http, req).await.0, 200);
}
