//! The edge's decision path per call, at 20 and 10,000 policies:
//! - `cedar`: the Cedar decision alone (`CompiledPolicy::decide`);
//! - `path`: parse the MCP body → authenticate → `pipeline::decide_request` (pin, kill switches,
//!   freshness, version, detectors, Cedar with the cached compiled policy, audit entry) → audit
//!   record enqueued: the code production runs.
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
use std::sync::Arc;
use std::time::Duration;

use agentgate_edge::audit::{Admission, AuditConfig, start};
use agentgate_edge::catalog::ToolInfo;
use agentgate_edge::decision::PolicyCache;
use agentgate_edge::mcp::{self, Headers, Message, Operation};
use agentgate_edge::pipeline::{Call, Caller, Env, Verdict, decide_request};
use agentgate_edge::view::View;
use agentgate_model::decide::{Action, CallFacts, CompiledPolicy, Outcome};
use agentgate_model::entity::{PolicyPackage, Transport};
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
        Op::AddUpstream {
            tenant: "bench".into(),
            name: "srv-7".into(),
            transport: Transport::Http {
                url: "http://127.0.0.1:9/mcp".into(),
            },
            pinned_tools: BTreeMap::new(),
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

        let view = View::build(Arc::new(s));
        let cache = PolicyCache::new(16);
        let raw = body("read_file");
        let headers = Headers {
            protocol_version: None,
            mcp_method: Some("tools/call"),
            mcp_name: Some("read_file"),
        };
        let auth = format!("Bearer {KEY}");
        let info = ToolInfo {
            read_only: true,
            destructive: false,
            idempotent: false,
            open_world: false,
            digest: String::new(),
        };
        let env = Env {
            now_ms: 1_000,
            fresh: true,
            region: "eu",
            retry_after_ms: 500,
        };
        // What production runs per call: parse, authenticate, the pipeline's decision (pin,
        // switches, freshness, version, detectors, Cedar, audit entry), the record enqueued.
        c.bench_function(&format!("path/allow/{n}_policies"), |b| {
            b.iter(|| {
                let parsed = mcp::parse(black_box(&raw), &headers, None).unwrap();
                let Some(Message::Request {
                    op: Operation::CallTool { name, arguments },
                    ..
                }) = parsed.messages.into_iter().next()
                else {
                    panic!()
                };
                let agent = view.keys.authenticate(Some(&auth)).unwrap();
                let route = view.route("bench", "srv-7").unwrap();
                let caller = Caller {
                    agent,
                    server: "srv-7",
                    upstream: &route.upstream,
                    session: None,
                    trace_id: None,
                };
                let call = Call {
                    method: "tools/call",
                    action: Action::CallTool,
                    name: &name,
                    arguments,
                    info: &info,
                    admission: Admission::Open,
                };
                let decided = decide_request(&view, &cache, &caller, call, &env);
                assert_eq!(decided.verdict, Verdict::Allow);
                audit.record(decided.entry).unwrap()
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
