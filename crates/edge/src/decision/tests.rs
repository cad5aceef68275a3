use std::collections::BTreeMap;

use agentgate_model::decide::{Action, CallFacts, Outcome};
use agentgate_model::entity::{PolicyPackage, Scope};
use agentgate_model::policy::package_digest;
use agentgate_model::{Command, Op, State, apply};
use sha2::{Digest, Sha256};

use super::*;

const KEY: &str = "agk_test_key";

fn run(state: &mut State, op: Op) {
    let a = apply(
        state,
        &Command {
            time_ms: 1,
            actor: "test".into(),
            op,
            request_id: None,
        },
    );
    a.result.unwrap();
}

// Embedded, not read through `CARGO_MANIFEST_DIR`: a test binary built from another checkout
// sharing the target dir is reused as fresh, and its compile-time path may no longer exist.
const SCHEMA: &str = include_str!("../../../../policies/schema.cedarschema");
const DEFAULT_POLICY: &str = include_str!("../../../../policies/default.cedar");

fn package(version: &str, policies: &str) -> PolicyPackage {
    let schema = SCHEMA.to_string();
    PolicyPackage {
        tenant: "t".into(),
        version: version.into(),
        sha256: package_digest(policies, &schema, ""),
        policies: policies.into(),
        schema,
        entities: String::new(),
        author: String::new(),
        description: String::new(),
        created_ms: 0,
        signature: None,
    }
}

fn state() -> State {
    let default = DEFAULT_POLICY;
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
            key_hash: hex::encode(Sha256::digest(KEY.as_bytes())),
        },
    );
    run(
        &mut s,
        Op::PushPolicy {
            package: package("v1", default),
        },
    );
    run(
        &mut s,
        Op::ActivatePolicy {
            tenant: "t".into(),
            version: "v1".into(),
        },
    );
    s
}

fn facts(tool: &str, read_only: bool, destructive: bool) -> CallFacts {
    CallFacts {
        agent: "bot".into(),
        roles: vec![],
        labels: BTreeMap::new(),
        action: Action::CallTool,
        server: "files".into(),
        tool: tool.into(),
        read_only,
        destructive,
        idempotent: false,
        open_world: false,
        arguments: serde_json::Map::new(),
        session: "s1".into(),
        hour: 10,
        weekday: 2,
        region: "eu".into(),
        detections: vec![],
    }
}

fn decide(s: &State, f: &CallFacts, fresh: bool) -> Decided {
    let keys = AgentKeys::build(s);
    let agent = keys.authenticate(Some(&format!("Bearer {KEY}"))).unwrap();
    decide_call(s, &PolicyCache::new(16), f, agent, fresh, 100, 250)
}

fn denial(d: &Decided) -> &Denial {
    match &d.verdict {
        Verdict::Deny(d, _) => d,
        other => panic!("expected a denial, got {other:?}"),
    }
}

#[test]
fn authentication() {
    let mut s = state();
    let keys = AgentKeys::build(&s);
    assert_eq!(keys.authenticate(None), Err(AuthError::Missing));
    assert_eq!(
        keys.authenticate(Some("Basic abc")),
        Err(AuthError::Missing)
    );
    assert_eq!(
        keys.authenticate(Some("Bearer nope")),
        Err(AuthError::Unknown)
    );
    assert_eq!(
        keys.authenticate(Some(&format!("Bearer {KEY}")))
            .map(|a| a.id.as_str()),
        Ok("bot")
    );
    run(
        &mut s,
        Op::RevokeAgent {
            tenant: "t".into(),
            id: "bot".into(),
        },
    );
    let keys = AgentKeys::build(&s);
    assert_eq!(
        keys.authenticate(Some(&format!("Bearer {KEY}"))),
        Err(AuthError::Revoked("bot".into()))
    );
}

#[test]
fn allow_approval_and_policy_denial() {
    let s = state();
    let d = decide(&s, &facts("read_file", true, false), true);
    assert_eq!(
        d.verdict,
        Verdict::Allow {
            version: "v1".into(),
            policy_ids: vec!["read-only-tools".into()]
        }
    );
    let d = decide(&s, &facts("delete_file", false, true), true);
    assert!(matches!(d.verdict, Verdict::RequireApproval { .. }));
    let d = decide(&s, &facts("run", false, false), true);
    assert_eq!(denial(&d).code, code::POLICY_DENIED);
}

#[test]
fn switches_come_before_everything() {
    let mut s = state();
    run(
        &mut s,
        Op::EngageSwitch {
            scope: Scope::Global,
            reason: "drill".into(),
            ttl_ms: None,
        },
    );
    let d = decide(&s, &facts("read_file", true, false), false);
    assert_eq!(
        denial(&d).code,
        code::KILLED,
        "a kill switch is reported even when also stale"
    );
}

#[test]
fn stale_denies_unless_opted_in_for_read_only() {
    let mut s = state();
    assert_eq!(
        denial(&decide(&s, &facts("read_file", true, false), false)).code,
        code::STALE
    );
    run(
        &mut s,
        Op::SetTenantOptions {
            tenant: "t".into(),
            stale_allow_read_only: true,
        },
    );
    assert!(matches!(
        decide(&s, &facts("read_file", true, false), false).verdict,
        Verdict::Allow { .. }
    ));
    assert_eq!(
        denial(&decide(&s, &facts("write", false, false), false)).code,
        code::STALE
    );
}

#[test]
fn shadow_versions_are_evaluated_not_enforced() {
    let mut s = state();
    run(
        &mut s,
        Op::PushPolicy {
            package: package("v2", "forbid (principal, action, resource);"),
        },
    );
    run(
        &mut s,
        Op::SetShadowPolicy {
            tenant: "t".into(),
            version: Some("v2".into()),
        },
    );
    let d = decide(&s, &facts("read_file", true, false), true);
    assert!(matches!(d.verdict, Verdict::Allow { .. }));
    assert_eq!(d.shadow, Some(Outcome::Deny));
}

#[test]
fn a_policy_the_edge_cannot_compile_denies() {
    let mut s = state();
    // A package that slipped past validation (say, written by a newer Cedar): the edge denies.
    let mut bad = package(
        "v9",
        "permit (principal, action, resource) when { resource.no_such };",
    );
    bad.sha256 = package_digest(&bad.policies, &bad.schema, "");
    s.policies.insert("t/v9".into(), bad);
    s.tenants.get_mut("t").unwrap().policy_version = Some("v9".into());
    let d = decide(&s, &facts("read_file", true, false), true);
    let denial = denial(&d);
    assert_eq!(denial.code, code::NO_POLICY);
    assert!(denial.reason.contains("no_such"), "{}", denial.reason);
}
