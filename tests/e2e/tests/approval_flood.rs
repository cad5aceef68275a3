//! An agent cannot flood the core (issue 25), shown on real processes: a 3-node core, one edge,
//! the Python SDK upstream, the repository's default policy (a tool that does not say it is
//! read-only needs an operator's approval). Calls for tools the upstream does not list are
//! refused with MCP's unknown-tool error and open no approval; identical calls needing approval
//! fold into one pending approval and, once it is pending, cost no Raft write; distinct ones stop
//! at the agent's bound with `retry_after_ms`; a kill switch engaged during a flood is enforced.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    clippy::disallowed_methods
)]

use std::collections::BTreeSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Instant;

use agentgate_model::Op;
use agentgate_model::entity::{ApprovalState, Entity, Scope};
use agentgate_model::limits::{
    APPROVAL_RETRY_AFTER_MS_MAX, APPROVAL_RETRY_AFTER_MS_MIN, APPROVALS_PENDING_PER_AGENT_MAX,
};
use agentgate_model::query::{Query, QueryResult};
use agentgate_testkit::mcp::{
    Acme, HttpClient, first_message, http_client, ms_since, repo, send, stateless_call,
};
use agentgate_testkit::{Cluster, eventually, http_get};
use serde_json::{Value, json};

/// Concurrent callers in a flood.
const CALLERS: usize = 16;

fn default_policy() -> String {
    std::fs::read_to_string(repo().join("policies/default.cedar")).unwrap()
}

async fn approvals(c: &Cluster) -> Vec<(String, ApprovalState)> {
    let q = Query::Approvals {
        tenant: Some("acme".into()),
        state: None,
    };
    let QueryResult::Entities(es) = c.query(2, &q).await.unwrap().1 else {
        panic!("not entities")
    };
    es.into_iter()
        .filter_map(|e| match e {
            Entity::Approval(a) => Some((a.id, a.state)),
            _ => None,
        })
        .collect()
}

/// Proposals of one op committed so far, summed over the nodes (each leader counts its own).
fn committed(c: &Cluster, op: &str) -> f64 {
    let labels = format!("op=\"{op}\"");
    c.ids()
        .iter()
        .map(|id| {
            let (code, body) = http_get(&c.node(*id).http, "/metrics");
            assert_eq!(code, 200);
            body.lines()
                .filter(|l| {
                    l.starts_with("agentgate_node_proposal_duration_seconds_count")
                        && l.contains(&labels)
                })
                .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
                .sum::<f64>()
        })
        .sum()
}

async fn call(http: &HttpClient, url: &str, key: &str, tool: &str, args: Value, id: u64) -> Value {
    let (status, body) = send(http, stateless_call(url, key, tool, args, id)).await;
    assert_eq!(status, 200, "{body}");
    first_message(&body)
}

/// `n` calls from [`CALLERS`] concurrent callers; `args(i)` gives call i's arguments. The
/// answers, in call order.
async fn flood(
    http: &HttpClient,
    url: &str,
    key: &str,
    n: usize,
    args: impl Fn(usize) -> Value + Send + Sync + 'static,
) -> Vec<Value> {
    let args = Arc::new(args);
    let next = Arc::new(AtomicUsize::new(0));
    let mut tasks = Vec::new();
    for _ in 0..CALLERS {
        let (http, url, key) = (http.clone(), url.to_string(), key.to_string());
        let (args, next) = (args.clone(), next.clone());
        tasks.push(tokio::spawn(async move {
            let mut got = Vec::new();
            loop {
                let i = next.fetch_add(1, Ordering::SeqCst);
                if i >= n {
                    return got;
                }
                got.push((
                    i,
                    call(&http, &url, &key, "delete_file", args(i), i as u64).await,
                ));
            }
        }));
    }
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await.unwrap());
    }
    all.sort_by_key(|(i, _)| *i);
    all.into_iter().map(|(_, v)| v).collect()
}

fn code(v: &Value) -> i64 {
    v["error"]["code"].as_i64().unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_agent_in_a_loop_cannot_flood_the_core() {
    let acme = Acme::start("tools", &default_policy()).await;
    let (c, key) = (&acme.c, &acme.key);
    let edge = acme.edge(&[]).await;
    let url = edge.url("acme", "tools");
    let http = http_client();

    // Tools the upstream does not have: MCP's unknown-tool error, audited, no approval.
    let long = "x".repeat(10_000);
    for (i, tool) in ["no_such_tool_1", "no_such_tool_2", "no_such_tool_3", &long]
        .into_iter()
        .enumerate()
    {
        let m = call(&http, &url, key, tool, json!({}), i as u64).await;
        assert_eq!(code(&m), -32602, "{m}");
        let message = m["error"]["message"].as_str().unwrap();
        assert!(message.starts_with("Unknown tool: "), "{message}");
        assert!(message.len() < 1_000, "the name is cut in the message");
    }
    assert_eq!(
        approvals(c).await,
        vec![],
        "no approval for a tool that does not exist"
    );
    assert_eq!(committed(c, "request_approval"), 0.0);
    assert_eq!(committed(c, "consume_approval"), 0.0);

    // 1,000 identical destructive calls: one approval, asked for once.
    let same = flood(&http, &url, key, 1_000, |_| json!({"path": "/tmp/same"})).await;
    let ids: BTreeSet<String> = same
        .iter()
        .map(|m| {
            assert_eq!(code(m), -32083, "{m}");
            m["error"]["data"]["approval_id"]
                .as_str()
                .unwrap()
                .to_string()
        })
        .collect();
    assert_eq!(ids.len(), 1, "{ids:?}");
    let pending = approvals(c).await;
    assert_eq!(pending.len(), 1, "{pending:?}");
    let requests = committed(c, "request_approval");
    // Concurrent first calls before the edge's replica holds the request may each ask (the core
    // folds them); once it holds it, asking again is no write.
    assert!(
        (1.0..=CALLERS as f64).contains(&requests),
        "{requests} approval requests for 1,000 identical calls"
    );
    assert_eq!(
        committed(c, "consume_approval"),
        0.0,
        "nothing approved to use"
    );

    // 1,000 distinct ones: the agent's queue fills, then each call is refused with retry advice.
    let distinct = flood(
        &http,
        &url,
        key,
        1_000,
        |i| json!({"path": format!("/tmp/{i}")}),
    )
    .await;
    let held = distinct.iter().filter(|m| code(m) == -32083).count();
    assert_eq!(
        held,
        APPROVALS_PENDING_PER_AGENT_MAX - 1,
        "one slot was taken above"
    );
    for m in distinct.iter().filter(|m| code(m) != -32083) {
        assert_eq!(code(m), -32087, "{m}");
        let retry = m["error"]["data"]["retry_after_ms"].as_u64().unwrap();
        assert!((APPROVAL_RETRY_AFTER_MS_MIN..=APPROVAL_RETRY_AFTER_MS_MAX).contains(&retry));
        assert!(m["error"]["data"].get("approval_id").is_none(), "{m}");
    }
    let pending = approvals(c).await;
    assert_eq!(
        pending.len(),
        APPROVALS_PENDING_PER_AGENT_MAX,
        "{pending:?}"
    );
    let requests_after = committed(c, "request_approval");
    assert!(
        requests_after - requests <= (APPROVALS_PENDING_PER_AGENT_MAX - 1 + CALLERS) as f64,
        "{} approval requests for 1,000 distinct calls",
        requests_after - requests
    );

    println!(
        "approval requests committed: {requests} for 1,000 identical calls, {} for 1,000 distinct ones; consumptions: {}",
        requests_after - requests,
        committed(c, "consume_approval") as u64
    );

    // Responsive throughout: a kill switch engaged during a flood stops the agent.
    let stop = Arc::new(AtomicBool::new(false));
    let sent = Arc::new(AtomicUsize::new(0));
    let mut callers = Vec::new();
    for t in 0..CALLERS {
        let (http, url, key) = (http.clone(), url.clone(), key.clone());
        let (stop, sent) = (stop.clone(), sent.clone());
        callers.push(tokio::spawn(async move {
            let mut n = 0u64;
            while !stop.load(Ordering::SeqCst) {
                let args = json!({"path": format!("/tmp/{t}-{n}")});
                call(&http, &url, &key, "delete_file", args, n).await;
                sent.fetch_add(1, Ordering::SeqCst);
                n += 1;
            }
        }));
    }
    eventually(
        "the flood is under way",
        agentgate_testkit::DEADLINE,
        || async { sent.load(Ordering::SeqCst) >= 200 },
    )
    .await;
    let t0 = Instant::now();
    let switch = c
        .propose(
            1,
            &Op::EngageSwitch {
                scope: Scope::Tenant {
                    tenant: "acme".into(),
                },
                reason: "flood".into(),
                ttl_ms: None,
            },
        )
        .await
        .unwrap();
    let committed_ms = ms_since(t0);
    let took = eventually(
        "the edge enforces the tenant switch during the flood",
        agentgate_testkit::DEADLINE,
        || async {
            // Killed, or (had the push not arrived) stale: refused either way.
            let c = code(&call(&http, &url, key, "echo", json!({"text": "x"}), 0).await);
            c == -32080 || c == -32081
        },
    )
    .await;
    stop.store(true, Ordering::SeqCst);
    for t in callers {
        t.await.unwrap();
    }
    println!(
        "{} calls in the flood; switch committed in {committed_ms:.1} ms (revision {}), enforced {:.1} ms after",
        sent.load(Ordering::SeqCst),
        switch.revision,
        took.as_secs_f64() * 1000.0
    );
    // A committed switch is enforced within the edge's freshness bound (3 s by default), flood
    // or not; the second is the probe's own time under the flood.
    assert!(
        took.as_millis() <= 3_000 + 1_000,
        "took {took:?}, beyond the edge's max staleness"
    );
    assert_eq!(
        approvals(c).await.len(),
        APPROVALS_PENDING_PER_AGENT_MAX,
        "still the bound"
    );
}
