use std::collections::BTreeMap;
use std::sync::Arc;

use agentgate_model::entity::{PolicyPackage, Scope, Transport};
use agentgate_model::policy::package_digest;
use agentgate_model::{Command, Op, State, apply};
use serde_json::json;

use super::*;

const SCHEMA: &str = include_str!("../../../../policies/schema.cedarschema");
const DEFAULT_POLICY: &str = include_str!("../../../../policies/default.cedar");
const H: &str = "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";

fn run(s: &mut State, op: Op) {
    let cmd = Command {
        time_ms: 1,
        actor: "test".into(),
        op,
        request_id: None,
    };
    apply(s, &cmd).result.unwrap();
}

fn view(pins: BTreeMap<String, String>, switch: Option<Scope>) -> View {
    let mut s = State::default();
    run(
        &mut s,
        Op::CreateTenant {
            id: "t".into(),
            stale_allow_read_only: false,
        },
    );
    run(
        &mut s,
        Op::CreateAgent {
            tenant: "t".into(),
            id: "bot".into(),
            roles: vec![],
            labels: BTreeMap::new(),
            key_hash: H.into(),
        },
    );
    run(
        &mut s,
        Op::AddUpstream {
            tenant: "t".into(),
            name: "files".into(),
            transport: Transport::Http {
                url: "http://127.0.0.1:9/mcp".into(),
            },
            pinned_tools: pins,
        },
    );
    let schema = SCHEMA.to_string();
    run(
        &mut s,
        Op::PushPolicy {
            package: PolicyPackage {
                tenant: "t".into(),
                version: "v1".into(),
                sha256: package_digest(DEFAULT_POLICY, &schema, ""),
                policies: DEFAULT_POLICY.into(),
                schema,
                entities: String::new(),
                author: String::new(),
                description: String::new(),
                created_ms: 0,
                signature: None,
            },
        },
    );
    run(
        &mut s,
        Op::ActivatePolicy {
            tenant: "t".into(),
            version: "v1".into(),
        },
    );
    if let Some(scope) = switch {
        run(
            &mut s,
            Op::EngageSwitch {
                scope,
                reason: "drill".into(),
                ttl_ms: None,
            },
        );
    }
    View::build(Arc::new(s))
}

const ENV: Env<'static> = Env {
    now_ms: 1_763_719_200_000,
    fresh: true,
    region: "eu",
    retry_after_ms: 250,
};

fn info(read_only: bool, destructive: bool) -> ToolInfo {
    ToolInfo {
        read_only,
        destructive,
        idempotent: false,
        open_world: false,
        digest: H.into(),
    }
}

fn decide(
    v: &View,
    name: &str,
    info: &ToolInfo,
    arguments: serde_json::Value,
    admission: Admission,
) -> Decided {
    let route = v.route("t", "files").unwrap();
    let agent = v.state.agents.values().next().unwrap();
    let caller = Caller {
        agent,
        server: "files",
        upstream: &route.upstream,
        session: Some("s-1"),
        trace_id: Some("4bf92f3577b34da6a3ce929d0e0e4736"),
    };
    let call = Call {
        method: "tools/call",
        action: Action::CallTool,
        name,
        arguments: arguments.as_object().cloned().unwrap_or_default(),
        info,
        admission,
    };
    decide_request(v, &PolicyCache::new(8), &caller, call, &ENV)
}

#[test]
fn an_allowed_call_is_recorded_with_its_version_policies_and_digest() {
    let v = view(BTreeMap::new(), None);
    let d = decide(
        &v,
        "read_file",
        &info(true, false),
        json!({"path": "/tmp/a"}),
        Admission::Open,
    );
    assert_eq!(d.verdict, Verdict::Allow);
    let e = &d.entry;
    assert_eq!(e.decision, Decision::Allow);
    assert_eq!(e.policy_version.as_deref(), Some("v1"));
    assert!(!e.policy_ids.is_empty());
    assert_eq!(
        e.args_digest.as_deref(),
        Some(args_digest(json!({"path": "/tmp/a"}).as_object().unwrap()).as_str())
    );
    assert_eq!(
        (e.tenant.as_str(), e.agent.as_str(), e.session.as_deref()),
        ("t", "bot", Some("s-1"))
    );
    assert_eq!(e.tool.as_deref(), Some("read_file"));
    assert_eq!(e.time_ms, ENV.now_ms);
    assert_eq!(
        e.trace_id.as_deref(),
        Some("4bf92f3577b34da6a3ce929d0e0e4736")
    );
}

#[test]
fn denials_are_recorded_as_denials_with_their_reason() {
    let v = view(BTreeMap::new(), None);
    // A secret in the arguments: the default policy forbids it.
    let d = decide(
        &v,
        "read_file",
        &info(true, false),
        json!({"q": "AKIAABCDEFGHIJKLMNOP"}),
        Admission::Open,
    );
    let Verdict::Deny(denial) = &d.verdict else {
        panic!("{:?}", d.verdict)
    };
    assert_eq!(denial.code, code::POLICY_DENIED);
    assert_eq!(d.entry.decision, Decision::Deny);
    assert_eq!(d.entry.reason, denial.reason);
    assert_eq!(d.entry.policy_ids, denial.policy_ids);
    // A kill switch on the tool stops it before policy.
    let v = view(
        BTreeMap::new(),
        Some(Scope::Tool {
            tool: "read_file".into(),
        }),
    );
    let d = decide(
        &v,
        "read_file",
        &info(true, false),
        json!({}),
        Admission::Open,
    );
    assert!(matches!(&d.verdict, Verdict::Deny(x) if x.code == code::KILLED));
    assert_eq!(d.entry.policy_version, None);
}

#[test]
fn a_nearly_full_audit_buffer_and_a_relabelled_tool_are_refused() {
    let v = view(BTreeMap::new(), None);
    let d = decide(
        &v,
        "read_file",
        &info(true, false),
        json!({}),
        Admission::DenyOnly,
    );
    assert!(matches!(&d.verdict, Verdict::Deny(x) if x.code == code::OVERLOADED));
    assert_eq!(d.entry.decision, Decision::Deny);
    let pins = BTreeMap::from([("read_file".to_string(), "b".repeat(64))]);
    let v = view(pins, None);
    let d = decide(
        &v,
        "read_file",
        &info(true, false),
        json!({}),
        Admission::Open,
    );
    assert!(
        matches!(&d.verdict, Verdict::Deny(x) if x.reason.contains("pinned")),
        "{:?}",
        d.verdict
    );
}

#[test]
fn approvals_settle_into_allow_held_or_denied() {
    let v = view(BTreeMap::new(), None);
    let held = decide(
        &v,
        "delete_file",
        &info(false, true),
        json!({"path": "/x"}),
        Admission::Open,
    );
    assert_eq!(held.verdict, Verdict::NeedsApproval);
    assert_eq!(
        approval_reason(&held.entry),
        "tools/call `delete_file` by agent `bot`"
    );

    let used = settle(held.clone(), Ok(Resolution::Consumed("apr-3".into())), 250);
    assert_eq!(used.verdict, Verdict::Allow);
    assert_eq!(used.entry.decision, Decision::Allow);
    assert_eq!(used.entry.reason, "approval `apr-3` used");

    let pending = settle(held.clone(), Ok(Resolution::Pending("apr-4".into())), 250);
    let Verdict::Deny(d) = &pending.verdict else {
        panic!()
    };
    assert_eq!(
        (d.code, d.approval_id.as_deref()),
        (code::APPROVAL_REQUIRED, Some("apr-4"))
    );
    assert_eq!(pending.entry.decision, Decision::RequireApproval);
    assert_eq!(pending.entry.policy_ids, held.entry.policy_ids);

    let full = settle(
        held.clone(),
        Ok(Resolution::Full {
            reason: "the agent already holds 20 pending approvals".into(),
            retry_after_ms: 7_000,
        }),
        250,
    );
    let Verdict::Deny(d) = &full.verdict else {
        panic!()
    };
    assert_eq!(
        (d.code, d.retry_after_ms, d.approval_id.as_deref()),
        (code::APPROVALS_FULL, Some(7_000), None)
    );
    assert!(d.reason.contains("20 pending"), "{}", d.reason);
    assert_eq!(full.entry.decision, Decision::Deny, "nothing is held");

    let unknown = settle(held, Err("no core node answered".into()), 250);
    let Verdict::Deny(d) = &unknown.verdict else {
        panic!()
    };
    assert_eq!(d.retry_after_ms, Some(250));
    assert_eq!(
        unknown.entry.decision,
        Decision::Deny,
        "no approval id: not held"
    );
}

#[test]
fn tools_list_shows_only_what_the_agent_may_call() {
    let v = view(BTreeMap::new(), Some(Scope::Tool { tool: "rm".into() }));
    let route = v.route("t", "files").unwrap();
    let caller = Caller {
        agent: v.state.agents.values().next().unwrap(),
        server: "files",
        upstream: &route.upstream,
        session: None,
        trace_id: None,
    };
    let p = PolicyCache::new(8);
    assert!(shows_tool(
        &v,
        &p,
        &caller,
        &ENV,
        "read_file",
        &info(true, false)
    ));
    assert!(
        shows_tool(&v, &p, &caller, &ENV, "delete_file", &info(false, true)),
        "after approval"
    );
    assert!(
        !shows_tool(&v, &p, &caller, &ENV, "rm", &info(true, false)),
        "switched off"
    );
    let stale = Env {
        fresh: false,
        ..ENV
    };
    assert!(!shows_tool(
        &v,
        &p,
        &caller,
        &stale,
        "read_file",
        &info(true, false)
    ));
}

#[test]
fn time_facts_are_utc_hour_and_iso_weekday() {
    assert_eq!(hour_weekday(0), (0, 4)); // Thursday 1970-01-01 00:00
    assert_eq!(hour_weekday(1_763_719_200_000), (10, 5)); // Friday 2025-11-21 10:00 UTC
    assert_eq!(hour_weekday(1_763_856_000_000), (0, 7)); // Sunday 2025-11-23
}
