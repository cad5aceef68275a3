//! The Cedar decision per call, with the default policy padded to 20 and to 10,000 policies.
//! Run: `cargo bench --workspace --bench decide`.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::hint::black_box;

use agentgate_model::decide::{CallFacts, CompiledPolicy, Outcome};
use agentgate_model::entity::PolicyPackage;
use agentgate_model::policy::package_digest;
use criterion::{Criterion, criterion_group, criterion_main};

fn package(n: usize) -> PolicyPackage {
    let root = concat!(env!("CARGO_MANIFEST_DIR"), "/../../policies/");
    let schema = std::fs::read_to_string(format!("{root}schema.cedarschema")).unwrap();
    let mut policies = std::fs::read_to_string(format!("{root}default.cedar")).unwrap();
    // Per-tool rules, the shape large tenants accumulate: one permit per (server, tool).
    for i in 0..n.saturating_sub(4) {
        policies.push_str(&format!(
            "@id(\"tool-{i}\")\npermit (principal in Role::\"team-{}\", action == Action::\"call_tool\", resource == Tool::\"srv-{}/tool-{i}\")\nwhen {{ context.region == \"eu\" }};\n",
            i % 50,
            i % 100
        ));
    }
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

fn call(tool: &str, read_only: bool) -> CallFacts {
    serde_json::from_value(serde_json::json!({
        "agent": "bot", "roles": ["team-7"], "action": "call_tool", "server": "srv-7",
        "tool": tool, "read_only": read_only, "session": "s-1", "hour": 10, "weekday": 2,
        "region": "eu", "arguments": {"path": "/tmp/a", "mode": "r"}
    }))
    .unwrap()
}

fn bench(c: &mut Criterion) {
    for n in [20usize, 10_000] {
        let compiled = CompiledPolicy::compile(&package(n)).unwrap();
        assert_eq!(compiled.policy_count(), n.max(4));
        let allowed = call("read_file", true);
        let denied = call("rm", false);
        assert_eq!(compiled.decide(&allowed).outcome, Outcome::Allow);
        assert_eq!(compiled.decide(&denied).outcome, Outcome::Deny);
        c.bench_function(&format!("decide/allow/{n}_policies"), |b| {
            b.iter(|| compiled.decide(black_box(&allowed)))
        });
        c.bench_function(&format!("decide/deny/{n}_policies"), |b| {
            b.iter(|| compiled.decide(black_box(&denied)))
        });
    }
    c.bench_function("compile/10000_policies", |b| {
        let p = package(10_000);
        b.iter(|| CompiledPolicy::compile(black_box(&p)).unwrap())
    });
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(20).measurement_time(std::time::Duration::from_secs(3));
    targets = bench
}
criterion_main!(benches);
