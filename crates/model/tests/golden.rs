//! Golden files for every persisted and wire format the model defines: Raft log commands,
//! their results, watch deltas and audit records. A change that alters these bytes would break
//! running nodes (their logs, snapshots and peers): it must be deliberate, with a migration.
//! Regenerate with `UPDATE_GOLDEN=1 cargo test --workspace --test golden` and review the diff.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::collections::BTreeMap;
use std::path::PathBuf;

use agentgate_model::audit::{AuditEntry, Decision};
use agentgate_model::authz::Role;
use agentgate_model::command::CommandResult;
use agentgate_model::entity::{PolicyPackage, QuotaScope, RolloutGuard, Scope, Transport};
use agentgate_model::policy::package_digest;
use agentgate_model::{Command, Op, State, apply};

fn commands() -> Vec<Command> {
    let h = "ab".repeat(32);
    let policies = "permit(principal, action, resource);";
    let c = |time_ms, op| Command {
        time_ms,
        actor: "ops".into(),
        op,
        request_id: None,
    };
    // Client writes with request ids: the third repeats the first's id (a retry after a lost
    // reply: answered from the record, applied once), the second is a rejection remembered too.
    let with_id = |time_ms, id: &str, op| Command {
        time_ms,
        actor: "ops".into(),
        op,
        request_id: Some(id.into()),
    };
    let tenant_b = || Op::CreateTenant {
        id: "tenant-b".into(),
        stale_allow_read_only: false,
    };
    let mut v = vec![
        c(
            1_700_000_000_000,
            Op::CreateTenant {
                id: "tenant-a".into(),
                stale_allow_read_only: true,
            },
        ),
        c(
            1_700_000_000_001,
            Op::CreateAgent {
                tenant: "tenant-a".into(),
                id: "bot".into(),
                roles: vec!["reader".into()],
                labels: BTreeMap::from([("team".into(), "x".into())]),
                key_hash: h.clone(),
            },
        ),
        c(
            1_700_000_000_002,
            Op::AddUpstream {
                tenant: "tenant-a".into(),
                name: "files".into(),
                transport: Transport::Http {
                    url: "http://127.0.0.1:8000/mcp".into(),
                },
                pinned_tools: BTreeMap::from([("read".into(), h.clone())]),
            },
        ),
        c(
            1_700_000_000_003,
            Op::PushPolicy {
                package: PolicyPackage {
                    tenant: "tenant-a".into(),
                    version: "v1".into(),
                    policies: policies.into(),
                    schema: "entity A;".into(),
                    entities: String::new(),
                    sha256: package_digest(policies, "entity A;", ""),
                    author: "ops".into(),
                    description: "first".into(),
                    created_ms: 0,
                    signature: None,
                },
            },
        ),
        c(
            1_700_000_000_004,
            Op::ActivatePolicy {
                tenant: "tenant-a".into(),
                version: "v1".into(),
            },
        ),
        c(
            1_700_000_000_005,
            Op::StartRollout {
                tenant: "tenant-a".into(),
                to_version: "v1".into(),
                canary_percent: 10,
                steps: vec![50],
                guard: RolloutGuard {
                    max_deny_rate_percent: Some(20),
                    max_error_rate_percent: None,
                },
            },
        ),
        c(
            1_700_000_000_006,
            Op::EngageSwitch {
                scope: Scope::Global,
                reason: "incident".into(),
                ttl_ms: Some(3_600_000),
            },
        ),
        c(
            1_700_000_000_007,
            Op::EngageSwitch {
                scope: Scope::TenantTool {
                    tenant: "tenant-a".into(),
                    tool: "rm".into(),
                },
                reason: String::new(),
                ttl_ms: None,
            },
        ),
        c(
            1_700_000_000_008,
            Op::SetQuota {
                scope: QuotaScope {
                    tenant: "tenant-a".into(),
                    agent: Some("bot".into()),
                    tool: None,
                },
                calls_per_window: Some(100),
                window_secs: 60,
                cost_budget: None,
                period_secs: 0,
            },
        ),
        c(
            1_700_000_000_009,
            Op::RequestApproval {
                tenant: "tenant-a".into(),
                agent: "bot".into(),
                tool: "rm".into(),
                args_digest: h,
                reason: "destructive".into(),
                ttl_ms: Some(60_000),
            },
        ),
        c(
            1_700_000_000_010,
            Op::DecideApproval {
                id: "apr-10".into(),
                approve: true,
            },
        ),
        c(
            1_700_000_000_011,
            Op::AppendAudit {
                edge_id: "edge-1".into(),
                records: vec![AuditEntry {
                    edge_seq: 1,
                    time_ms: 1_700_000_000_010,
                    tenant: "tenant-a".into(),
                    agent: "bot".into(),
                    session: Some("s-1".into()),
                    method: "tools/call".into(),
                    tool: Some("read".into()),
                    args_digest: None,
                    decision: Decision::Allow,
                    reason: String::new(),
                    policy_version: Some("v1".into()),
                    policy_ids: vec!["policy0".into()],
                    shadow_decision: Some(Decision::Deny),
                    latency_us: 42,
                    upstream_latency_us: None,
                    upstream_status: Some(200),
                    trace_id: Some("4bf92f3577b34da6a3ce929d0e0e4736".into()),
                }],
            },
        ),
    ];
    v.push(with_id(1_700_000_000_020, "cli-7f3a-1", tenant_b()));
    v.push(with_id(1_700_000_000_021, "cli-7f3a-2", tenant_b()));
    v.push(with_id(1_700_000_000_022, "cli-7f3a-1", tenant_b()));
    // Role bindings: a global admin, a tenant operator, the last admin not revocable, a revoke.
    let grant = |operator: &str, role, tenant: Option<&str>| Op::GrantRole {
        operator: operator.into(),
        role,
        tenant: tenant.map(str::to_string),
    };
    v.push(c(1_700_000_000_030, grant("root", Role::Admin, None)));
    v.push(c(
        1_700_000_000_031,
        grant("olga", Role::Operator, Some("tenant-a")),
    ));
    v.push(c(
        1_700_000_000_032,
        Op::RevokeRole {
            operator: "root".into(),
            role: Role::Admin,
            tenant: None,
        },
    ));
    v.push(c(
        1_700_000_000_033,
        Op::RevokeRole {
            operator: "olga".into(),
            role: Role::Operator,
            tenant: Some("tenant-a".into()),
        },
    ));
    v
}

fn check(name: &str, actual: &str) {
    let path = std::env::var_os("CARGO_MANIFEST_DIR")
        .map_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")), PathBuf::from)
        .join("tests/golden")
        .join(name);
    if std::env::var_os("UPDATE_GOLDEN").is_some() {
        std::fs::write(&path, actual).unwrap();
        return;
    }
    let expected = std::fs::read_to_string(&path).unwrap_or_else(|_| {
        panic!(
            "missing golden file {}; run with UPDATE_GOLDEN=1",
            path.display()
        )
    });
    assert_eq!(
        expected, actual,
        "{name} changed: persisted/wire format break (see the module doc)"
    );
}

#[test]
fn log_commands_results_and_deltas_are_stable() {
    let mut state = State::default();
    let mut log = String::new();
    let mut results = String::new();
    let mut changes = String::new();
    for cmd in commands() {
        log.push_str(&serde_json::to_string(&cmd).unwrap());
        log.push('\n');
        let a = apply(&mut state, &cmd);
        let r = CommandResult {
            revision: a.revision,
            outcome: Some(a.result),
            replay_of: a.replay_of,
        };
        results.push_str(&serde_json::to_string(&r).unwrap());
        results.push('\n');
        changes.push_str(&serde_json::to_string(&a.changes).unwrap());
        changes.push('\n');
    }
    check("commands.jsonl", &log);
    check("results.jsonl", &results);
    check("changes.jsonl", &changes);
    check("state.json", &serde_json::to_string_pretty(&state).unwrap());
    // Every golden command decodes back to itself.
    for line in log.lines() {
        let c: Command = serde_json::from_str(line).unwrap();
        assert_eq!(serde_json::to_string(&c).unwrap(), line);
    }
}
