//! Metrics end to end: every binary's `/metrics` passes `promtool check metrics`, and a real
//! Prometheus scraping a local cluster (three core nodes and an edge, on 127.0.0.1) sees every
//! target up, loads the alert rules of `deploy/observability` with every rule healthy and none
//! firing, answers every query of the Grafana dashboard, and holds every metric the rules and
//! the dashboard name; the metrics reference (deploy/observability/README.md) lists them all.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    clippy::disallowed_methods
)]

use agentgate_testkit as common;

use std::collections::BTreeSet;
use std::io::Write;
use std::process::{Command, Stdio};

use agentgate_model::entity::Scope;
use common::mcp::{
    Acme, Proc, READ_ONLY_POLICY, free_port, http_client, repo, send, stateless_call,
    wait_listening,
};
use common::{DEADLINE, eventually, http_get};
use serde_json::{Value, json};

const RULES: &str = "deploy/observability/prometheus/agentgate-alerts.yaml";
const DASHBOARD: &str = "deploy/observability/grafana/agentgate-dashboard.json";

/// `promtool check metrics` on one exposition: problems found (empty when clean).
fn promtool_check(exposition: &str) -> String {
    let mut child = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("promtool (scripts/setup-e2e.sh installs it)");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(exposition.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    if out.status.success() && said.trim().is_empty() {
        String::new()
    } else {
        format!("exit {:?}: {said}", out.status.code())
    }
}

/// The metric families of an exposition (`# TYPE` lines).
fn families(exposition: &str) -> BTreeSet<String> {
    exposition
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .filter_map(|l| l.split_whitespace().next())
        .map(str::to_string)
        .collect()
}

/// Every `agentgate_…` metric named in `text`, with histogram suffixes removed.
fn named_metrics(text: &str, histograms: &BTreeSet<String>) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let bytes = text.as_bytes();
    let mut i = 0;
    while let Some(at) = text[i..].find("agentgate_") {
        let start = i + at;
        let mut end = start;
        while end < bytes.len() && (bytes[end].is_ascii_lowercase() || bytes[end] == b'_') {
            end += 1;
        }
        let name = &text[start..end];
        let base = ["_bucket", "_count", "_sum"]
            .iter()
            .find_map(|s| name.strip_suffix(s))
            .filter(|b| histograms.contains(*b))
            .unwrap_or(name);
        // Not metric names: the ServiceMonitor/ConfigMap names in comments.
        if !base.starts_with("agentgate_prometheus") && !base.starts_with("agentgate_grafana") {
            out.insert(base.to_string());
        }
        i = end;
    }
    out
}

fn urlencode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// A Prometheus HTTP API call: the `data` of a successful answer, or the error it gave.
fn api(prom: &str, path: &str) -> Result<Value, String> {
    let (code, body) = http_get(prom, path);
    let v: Value = serde_json::from_str(&body).map_err(|e| format!("{code} {body}: {e}"))?;
    if v["status"] == "success" {
        Ok(v["data"].clone())
    } else {
        Err(format!("{code}: {} {}", v["errorType"], v["error"]))
    }
}

fn query(prom: &str, promql: &str) -> Result<Vec<Value>, String> {
    let data = api(prom, &format!("/api/v1/query?query={}", urlencode(promql)))?;
    Ok(data["result"].as_array().cloned().unwrap_or_default())
}

fn value(sample: &Value) -> f64 {
    sample["value"][1].as_str().unwrap().parse().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prometheus_scrapes_a_local_cluster_with_the_shipped_rules_and_dashboard() {
    let acme = Acme::start("files", READ_ONLY_POLICY).await;
    let (c, key) = (&acme.c, &acme.key);
    let edge = acme.edge(&[]).await;

    // Traffic that brings out the labelled series: an allowed call (forwarded upstream), a
    // denied one, an unauthenticated one, and a kill switch for another tenant.
    let client = http_client();
    let mcp = edge.url("acme", "files");
    let (status, _) = send(
        &client,
        stateless_call(&mcp, key, "echo", json!({"text": "hi"}), 1),
    )
    .await;
    assert_eq!(status, 200);
    send(
        &client,
        stateless_call(&mcp, key, "delete_file", json!({"path": "/x"}), 2),
    )
    .await;
    let (status, _) = send(
        &client,
        stateless_call(&mcp, "not-a-key", "echo", json!({}), 3),
    )
    .await;
    assert_eq!(status, 401);
    c.create_tenant(1, "other").await;
    c.engage(
        1,
        [Scope::Tenant {
            tenant: "other".into(),
        }],
    )
    .await;
    eventually("the edge applies the kill switch", DEADLINE, || async {
        edge.metric("agentgate_edge_kill_switch_apply_lag_seconds_count", "") >= 1.0
    })
    .await;

    // promtool check metrics: every binary's exposition parses and passes the lint.
    let mut targets: Vec<(&str, String)> = c
        .nodes
        .iter()
        .map(|n| ("agentgate-core", n.http.clone()))
        .collect();
    targets.push(("agentgate-edge", edge.http.clone()));
    let mut exposed = BTreeSet::new();
    let mut histograms = BTreeSet::new();
    for (job, addr) in &targets {
        let (code, body) = http_get(addr, "/metrics");
        assert_eq!(code, 200, "{job} {addr}");
        let problems = promtool_check(&body);
        assert!(
            problems.is_empty(),
            "promtool check metrics on {job} {addr}: {problems}\n{body}"
        );
        exposed.extend(families(&body));
        histograms.extend(
            body.lines()
                .filter_map(|l| l.strip_prefix("# TYPE "))
                .filter_map(|l| l.strip_suffix(" histogram"))
                .map(str::to_string),
        );
    }

    // Every metric the rules and the dashboard use is one the binaries expose.
    let rules = std::fs::read_to_string(repo().join(RULES)).unwrap();
    let dashboard: Value =
        serde_json::from_str(&std::fs::read_to_string(repo().join(DASHBOARD)).unwrap()).unwrap();
    let exprs: Vec<String> = dashboard["panels"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|p| p["targets"].as_array().cloned().unwrap_or_default())
        .map(|t| t["expr"].as_str().unwrap().to_string())
        .collect();
    let used = named_metrics(&format!("{rules}\n{}", exprs.join("\n")), &histograms);
    let unknown: Vec<&String> = used.difference(&exposed).collect();
    assert!(
        unknown.is_empty(),
        "the rules or the dashboard use metrics no binary exposes: {unknown:?}\nexposed: {exposed:?}"
    );

    // The operators' reference lists every metric there is.
    let reference = std::fs::read_to_string(repo().join("deploy/observability/README.md")).unwrap();
    let undocumented: Vec<&String> = exposed
        .iter()
        .filter(|m| !reference.contains(&format!("`{m}`")))
        .collect();
    assert!(
        undocumented.is_empty(),
        "deploy/observability/README.md does not list {undocumented:?}"
    );

    // A real Prometheus scraping the four targets every second, with the shipped rules.
    let dir = tempfile::tempdir().unwrap();
    let list = |job: &str| {
        targets
            .iter()
            .filter(|(j, _)| *j == job)
            .map(|(_, a)| format!("'{a}'"))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let config = format!(
        "global: {{scrape_interval: 1s, evaluation_interval: 1s}}\n\
         rule_files: ['{}']\n\
         scrape_configs:\n\
         \x20 - job_name: agentgate-core\n\
         \x20   static_configs: [{{targets: [{}]}}]\n\
         \x20 - job_name: agentgate-edge\n\
         \x20   static_configs: [{{targets: [{}]}}]\n",
        repo().join(RULES).display(),
        list("agentgate-core"),
        list("agentgate-edge"),
    );
    let config_path = dir.path().join("prometheus.yml");
    std::fs::write(&config_path, config).unwrap();
    let prom = format!("127.0.0.1:{}", free_port());
    let _prometheus = Proc(
        Command::new("prometheus")
            .arg(format!("--config.file={}", config_path.display()))
            .arg(format!("--web.listen-address={prom}"))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.path().join("data").display()
            ))
            .arg("--log.level=warn")
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("prometheus (scripts/setup-e2e.sh installs it)"),
    );
    wait_listening(&prom).await;

    // `up` through the HTTP API: every target scraped successfully.
    eventually("Prometheus sees all four targets up", DEADLINE, || async {
        query(&prom, "up")
            .is_ok_and(|r| r.len() == targets.len() && r.iter().all(|s| value(s) == 1.0))
    })
    .await;
    let health = api(&prom, "/api/v1/targets").unwrap();
    for t in health["activeTargets"].as_array().unwrap() {
        assert_eq!(t["health"], "up", "{t}");
    }

    // The rules: all loaded and evaluated without error, and on a healthy cluster none stays
    // pending or firing (one may be pending for an evaluation or two while Prometheus's first
    // scrapes of the nodes come in: AgentGateCoreNoLeader before the leader's).
    let rules = || -> Vec<(String, Value)> {
        let d = api(&prom, "/api/v1/rules").unwrap();
        d["groups"]
            .as_array()
            .into_iter()
            .flatten()
            .flat_map(|g| g["rules"].as_array().cloned().unwrap_or_default())
            .map(|r| (r["name"].as_str().unwrap_or_default().to_string(), r))
            .collect()
    };
    eventually("every rule evaluated and inactive", DEADLINE, || async {
        let all = rules();
        all.len() == 15 && all.iter().all(|(_, r)| r["state"] == "inactive")
    })
    .await;
    for (name, r) in rules() {
        assert_eq!(r["health"], "ok", "rule {name}: {r}");
        assert!(
            r["lastEvaluation"]
                .as_str()
                .is_some_and(|t| !t.starts_with("0001")),
            "rule {name} never evaluated: {r}"
        );
    }

    // The dashboard: every query valid against the real data; the overview answers right.
    for e in &exprs {
        let promql = e.replace("$__rate_interval", "1m").replace("$tenant", ".*");
        if let Err(err) = query(&prom, &promql) {
            panic!("dashboard query {e:?} fails: {err}");
        }
    }
    let tenants = api(
        &prom,
        "/api/v1/label/tenant/values?match%5B%5D=agentgate_edge_calls_total",
    )
    .unwrap();
    assert!(
        tenants.as_array().unwrap().contains(&json!("acme")),
        "the tenant variable lists acme: {tenants}"
    );
    let one = |q: &str| {
        let r = query(&prom, q).unwrap();
        assert_eq!(r.len(), 1, "{q}: {r:?}");
        value(&r[0])
    };
    assert!(one("max(agentgate_raft_leader_id)") >= 1.0);
    assert_eq!(one(r#"sum(up{job="agentgate-core"})"#), 3.0);
    assert_eq!(one(r#"sum(up{job="agentgate-edge"})"#), 1.0);
    assert_eq!(
        one("count(agentgate_edge_snapshot_fresh == 0) or vector(0)"),
        0.0
    );
    assert_eq!(
        one(r#"sum(agentgate_edge_calls_total{decision="deny"})"#),
        1.0
    );
    drop(acme);
}
