//! The edge's decision path per call, at 20 and 10,000 policies:
//! - `cedar`: the Cedar decision alone (`CompiledPolicy::decide`);
//! - `path`: parse the MCP body → authenticate → kill switches → freshness → version → Cedar
//!   (cached compiled policy) → audit record enqueued.
//!
//! Run: `cargo bench --workspace --bench decision_path`.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::collections::BTreeMap;
use std::hint::black_box;
use std::time::Duration;

use agentgate_edge::audit::{AuditConfig, start};
use agentgate_edge::decision::{AgentKeys, PolicyCache, Verdict, decide_call};
use agentgate_edge::mcp::{self, Headers, Message, Operation};
use agentgate_model::audit::{AuditEntry, Decision};
use agentgate_model::decide::{Action, CallFacts, CompiledPolicy, Outcome};
use agentgate_model::entity::PolicyPackage;
use agentgate_model::policy::package_digest;
use agentgate_model::{Command, Op, State, apply};
use agentgate_testkit::bench::padded_policies;
use criterion::{Criterion, criterion_group, criterion_main};
use sha2::{Digest, Sha256};

const KEY: &str = "agk_bench_key";

/// The default policy padded with per-tool rules to `n` policies: the shape large tenants grow.
fn package(n: usize) -> PolicyPackage {
    // Embedded: a binary built from another checkout sharing the target dir is reused as fresh.
    let schema = include_str!("../../../policies/schema.cedarschema").to_string();
    let default = include_str!("../../../policies/default.cedar");
    let policies = padded_policies(default, n);
    PolicyPackage {
        tenant: "bench".into(),
        version: "v1".into(),
        sha256: package_digest(&policies, &schema, ""),
        policies,
        schema,
        entities: String::new(),
        author: "bench".into(),
        description: String::new(),
        created_ms: 0,
        signature: None,
    }
}

fn state(n: usize) -> State {
    let mut s = State::default();
    let ops = [
        Op::CreateTenant {
            id: "bench".into(),
            stale_allow_read_only: false,
        },
        Op::CreateAgent {
            tenant: "bench".into(),
            id: "bot".into(),
            roles: vec!["team-7".into()],
            labels: BTreeMap::new(),
            key_hash: hex::encode(Sha256::digest(KEY.as_bytes())),
        },
        Op::PushPolicy {
            package: package(n),
        },
        Op::ActivatePolicy {
            tenant: "bench".into(),
            version: "v1".into(),
        },
    ];
    for op in ops {
        apply(
            &mut s,
            &Command {
                time_ms: 1,
                actor: "bench".into(),
                op,
                request_id: None,
            },
        )
        .result
        .unwrap();
    }
    s
}

fn facts(tool: &str, read_only: bool) -> CallFacts {
    serde_json::from_value(serde_json::json!({
        "agent": "bot", "roles": ["team-7"], "action": "call_tool", "server": "srv-7",
        "tool": tool, "read_only": read_only, "session": "s-1", "hour": 10, "weekday": 2,
        "region": "eu", "arguments": {"path": "/tmp/a", "mode": "r"}
    }))
    .unwrap()
}

fn body(tool: &str) -> Vec<u8> {
    serde_json::json!({
        "jsonrpc": "2.0", "id": 7, "method": "tools/call",
        "params": {"name": tool, "arguments": {"path": "/tmp/a", "mode": "r"},
                   "_meta": {"io.modelcontextprotocol/protocolVersion": "2026-07-28"}}
    })
    .to_string()
    .into_bytes()
}

fn bench(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    // The shipper points at a closed loopback port: records stay buffered, which is the enqueue
    // cost we want; the buffer is large enough for every iteration.
    let (audit, _shipper) = rt.block_on(async {
        start(AuditConfig {
            endpoints: vec!["127.0.0.1:9".into()],
            edge_id: "bench-edge".into(),
            buffer_records_max: 2_000_000,
            reserve_records: 1,
            batch_records_max: 1_000,
            flush_interval: Duration::from_secs(3600),
            rpc_timeout: Duration::from_millis(100),
            dialer: agentgate_runtime::net::Dialer::tcp(),
        })
        .unwrap()
    });
    for n in [20usize, 10_000] {
        let s = state(n);
        let compiled = CompiledPolicy::compile(&package(n)).unwrap();
        let allowed = facts("read_file", true);
        assert_eq!(compiled.decide(&allowed).outcome, Outcome::Allow);
        c.bench_function(&format!("cedar/allow/{n}_policies"), |b| {
            b.iter(|| compiled.decide(black_box(&allowed)))
        });
        c.bench_function(&format!("cedar/deny/{n}_policies"), |b| {
            let denied = facts("rm", false);
            b.iter(|| compiled.decide(black_box(&denied)))
        });

        let keys = AgentKeys::build(&s);
        let cache = PolicyCache::new(16);
        let raw = body("read_file");
        let headers = Headers {
            protocol_version: None,
            mcp_method: Some("tools/call"),
            mcp_name: Some("read_file"),
        };
        let auth = format!("Bearer {KEY}");
        c.bench_function(&format!("path/allow/{n}_policies"), |b| {
            b.iter(|| {
                let parsed = mcp::parse(black_box(&raw), &headers, None).unwrap();
                let Message::Request {
                    op: Operation::CallTool { name, arguments },
                    ..
                } = &parsed.messages[0]
                else {
                    panic!()
                };
                let agent = keys.authenticate(&s, Some(&auth)).unwrap();
                let call = CallFacts {
                    agent: agent.id.clone(),
                    roles: agent.roles.clone(),
                    labels: agent.labels.clone(),
                    action: Action::CallTool,
                    server: "srv-7".into(),
                    tool: name.clone(),
                    read_only: true,
                    destructive: false,
                    idempotent: false,
                    open_world: false,
                    arguments: arguments.clone(),
                    session: String::new(),
                    hour: 10,
                    weekday: 2,
                    region: "eu".into(),
                    detections: vec![],
                };
                let decided = decide_call(&s, &cache, &call, agent, true, 1_000, 500);
                let Verdict::Allow {
                    version,
                    policy_ids,
                } = decided.verdict
                else {
                    panic!()
                };
                audit
                    .record(AuditEntry {
                        edge_seq: 0,
                        time_ms: 1_000,
                        tenant: agent.tenant.clone(),
                        agent: agent.id.clone(),
                        session: None,
                        method: "tools/call".into(),
                        tool: Some(name.clone()),
                        args_digest: None,
                        decision: Decision::Allow,
                        reason: String::new(),
                        policy_version: Some(version),
                        policy_ids,
                        shadow_decision: None,
                        latency_us: 0,
                        upstream_latency_us: None,
                        upstream_status: None,
                        trace_id: None,
                    })
                    .unwrap()
            })
        });
    }
    c.bench_function("compile/10000_policies", |b| {
        let p = package(10_000);
        b.iter(|| CompiledPolicy::compile(black_box(&p)).unwrap())
    });
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(20).measurement_time(Duration::from_secs(3));
    targets = bench
}
criterion_main!(benches);
