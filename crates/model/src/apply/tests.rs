use std::collections::BTreeMap;

use proptest::prelude::*;

use super::*;
use crate::audit::{AuditEntry, Decision, verify_chain};

fn cmd(time_ms: u64, op: Op) -> Command {
    Command {
        time_ms,
        actor: "ops".into(),
        op,
        request_id: None,
    }
}

fn ok(s: &mut State, time_ms: u64, op: Op) -> Response {
    let a = apply(s, &cmd(time_ms, op.clone()));
    a.result.unwrap_or_else(|e| panic!("{op:?} failed: {e}"))
}

fn err(s: &mut State, op: Op) -> ApplyError {
    let before = s.clone();
    let a = apply(s, &cmd(1, op));
    assert!(a.changes.is_empty());
    // INVARIANT under test: a rejected command changes nothing but the revision.
    assert_eq!(
        State {
            revision: before.revision + 1,
            ..before
        },
        *s
    );
    a.result.unwrap_err()
}

const H: &str = "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
const H2: &str = "bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb";

fn tenant_with_agent() -> State {
    let mut s = State::default();
    ok(
        &mut s,
        1,
        Op::CreateTenant {
            id: "t".into(),
            stale_allow_read_only: false,
        },
    );
    ok(
        &mut s,
        1,
        Op::CreateAgent {
            tenant: "t".into(),
            id: "bot".into(),
            roles: vec!["reader".into()],
            labels: BTreeMap::new(),
            key_hash: H.into(),
        },
    );
    s
}

fn package(version: &str, policies: &str) -> PolicyPackage {
    PolicyPackage {
        tenant: "t".into(),
        version: version.into(),
        policies: policies.into(),
        schema: "entity A;".into(),
        entities: String::new(),
        sha256: package_digest(policies, "entity A;", ""),
        author: String::new(),
        description: String::new(),
        created_ms: 0,
        signature: None,
    }
}

fn entry(edge_seq: u64) -> AuditEntry {
    AuditEntry {
        edge_seq,
        time_ms: 10 + edge_seq,
        tenant: "t".into(),
        agent: "bot".into(),
        session: Some("s1".into()),
        method: "tools/call".into(),
        tool: Some("echo".into()),
        args_digest: None,
        decision: Decision::Allow,
        reason: String::new(),
        policy_version: Some("v1".into()),
        policy_ids: vec!["p0".into()],
        shadow_decision: None,
        latency_us: 12,
        upstream_latency_us: None,
        upstream_status: Some(200),
        trace_id: None,
    }
}

#[test]
fn every_command_bumps_the_revision() {
    let mut s = State::default();
    apply(
        &mut s,
        &cmd(
            1,
            Op::CreateTenant {
                id: "t".into(),
                stale_allow_read_only: false,
            },
        ),
    );
    apply(
        &mut s,
        &cmd(
            1,
            Op::CreateTenant {
                id: "t".into(),
                stale_allow_read_only: false,
            },
        ),
    );
    assert_eq!(s.revision, 2);
}

#[test]
fn tenants_and_agents() {
    let mut s = tenant_with_agent();
    assert!(matches!(
        err(
            &mut s,
            Op::CreateTenant {
                id: "t".into(),
                stale_allow_read_only: false
            }
        ),
        ApplyError::AlreadyExists(_)
    ));
    assert!(matches!(
        err(
            &mut s,
            Op::CreateTenant {
                id: "a/b".into(),
                stale_allow_read_only: false
            }
        ),
        ApplyError::InvalidArgument(_)
    ));
    let no_tenant = Op::CreateAgent {
        tenant: "nope".into(),
        id: "x".into(),
        roles: vec![],
        labels: BTreeMap::new(),
        key_hash: H2.into(),
    };
    assert!(matches!(err(&mut s, no_tenant), ApplyError::NotFound(_)));
    let bad_hash = Op::CreateAgent {
        tenant: "t".into(),
        id: "x".into(),
        roles: vec![],
        labels: BTreeMap::new(),
        key_hash: "plaintext-key".into(),
    };
    assert!(matches!(
        err(&mut s, bad_hash),
        ApplyError::InvalidArgument(_)
    ));
    let same_key = Op::CreateAgent {
        tenant: "t".into(),
        id: "x".into(),
        roles: vec![],
        labels: BTreeMap::new(),
        key_hash: H.into(),
    };
    assert!(matches!(
        err(&mut s, same_key),
        ApplyError::AlreadyExists(_)
    ));
    ok(
        &mut s,
        5,
        Op::RevokeAgent {
            tenant: "t".into(),
            id: "bot".into(),
        },
    );
    assert_eq!(s.agents["t/bot"].revoked_ms, Some(5));
}

#[test]
fn policy_versions_are_immutable_and_digest_checked() {
    let mut s = tenant_with_agent();
    let p = package("v1", "permit(principal, action, resource);");
    ok(&mut s, 3, Op::PushPolicy { package: p.clone() });
    assert_eq!(s.policies["t/v1"].created_ms, 3);
    assert_eq!(s.policies["t/v1"].author, "ops");
    // Same content again: idempotent, no change.
    let a = apply(&mut s, &cmd(4, Op::PushPolicy { package: p.clone() }));
    assert!(a.result.is_ok() && a.changes.is_empty());
    let other = package("v1", "forbid(principal, action, resource);");
    assert!(matches!(
        err(&mut s, Op::PushPolicy { package: other }),
        ApplyError::AlreadyExists(_)
    ));
    let mut tampered = package("v2", "permit(principal, action, resource);");
    tampered.policies.push(' ');
    assert!(matches!(
        err(&mut s, Op::PushPolicy { package: tampered }),
        ApplyError::InvalidArgument(_)
    ));
    ok(
        &mut s,
        5,
        Op::ActivatePolicy {
            tenant: "t".into(),
            version: "v1".into(),
        },
    );
    assert_eq!(s.tenants["t"].policy_version.as_deref(), Some("v1"));
}

#[test]
fn rollout_lifecycle() {
    let mut s = tenant_with_agent();
    ok(
        &mut s,
        1,
        Op::PushPolicy {
            package: package("v1", "permit(principal, action, resource);"),
        },
    );
    ok(
        &mut s,
        1,
        Op::PushPolicy {
            package: package("v2", "forbid(principal, action, resource);"),
        },
    );
    ok(
        &mut s,
        1,
        Op::ActivatePolicy {
            tenant: "t".into(),
            version: "v1".into(),
        },
    );
    let start = Op::StartRollout {
        tenant: "t".into(),
        to_version: "v2".into(),
        canary_percent: 10,
        steps: vec![50, 100],
        guard: RolloutGuard::default(),
    };
    ok(&mut s, 2, start.clone());
    assert!(matches!(
        err(&mut s, start),
        ApplyError::FailedPrecondition(_)
    ));
    assert!(matches!(
        err(
            &mut s,
            Op::ActivatePolicy {
                tenant: "t".into(),
                version: "v2".into()
            }
        ),
        ApplyError::FailedPrecondition(_)
    ));
    ok(
        &mut s,
        3,
        Op::AdvanceRollout {
            tenant: "t".into(),
            canary_percent: None,
        },
    );
    assert_eq!(s.rollouts["t"].canary_percent, 50);
    assert_eq!(s.rollouts["t"].steps, vec![100]);
    ok(
        &mut s,
        4,
        Op::PauseRollout {
            tenant: "t".into(),
            reason: "looking".into(),
        },
    );
    assert!(matches!(
        err(
            &mut s,
            Op::AdvanceRollout {
                tenant: "t".into(),
                canary_percent: None
            }
        ),
        ApplyError::FailedPrecondition(_)
    ));
    ok(&mut s, 5, Op::ResumeRollout { tenant: "t".into() });
    ok(
        &mut s,
        6,
        Op::RollbackRollout {
            tenant: "t".into(),
            reason: "guard".into(),
        },
    );
    assert_eq!(s.rollouts["t"].state, RolloutState::RolledBack);
    assert_eq!(s.tenants["t"].policy_version.as_deref(), Some("v1"));
    let actions: Vec<_> = s.rollouts["t"]
        .history
        .iter()
        .map(|e| e.action.as_str())
        .collect();
    assert_eq!(actions, ["start", "advance", "pause", "resume", "rollback"]);
    // A new rollout after rollback, then promote.
    ok(
        &mut s,
        7,
        Op::StartRollout {
            tenant: "t".into(),
            to_version: "v2".into(),
            canary_percent: 0,
            steps: vec![],
            guard: RolloutGuard::default(),
        },
    );
    ok(&mut s, 8, Op::PromoteRollout { tenant: "t".into() });
    assert_eq!(s.tenants["t"].policy_version.as_deref(), Some("v2"));
}

#[test]
fn switches_engage_release_and_expire_by_command_time() {
    let mut s = State::default();
    let scope = Scope::Tenant { tenant: "t".into() };
    ok(
        &mut s,
        100,
        Op::EngageSwitch {
            scope: scope.clone(),
            reason: "r".into(),
            ttl_ms: Some(100),
        },
    );
    ok(
        &mut s,
        100,
        Op::EngageSwitch {
            scope: Scope::Global,
            reason: "g".into(),
            ttl_ms: None,
        },
    );
    assert_eq!(s.switches["tenant/t"].engaged_revision, 1);
    assert_eq!(ok(&mut s, 150, Op::ExpireSwitches), Response::Swept(0));
    assert_eq!(ok(&mut s, 200, Op::ExpireSwitches), Response::Swept(1));
    assert!(!s.switches.contains_key("tenant/t"));
    ok(
        &mut s,
        300,
        Op::ReleaseSwitch {
            scope: Scope::Global,
        },
    );
    assert!(matches!(
        err(
            &mut s,
            Op::ReleaseSwitch {
                scope: Scope::Global
            }
        ),
        ApplyError::NotFound(_)
    ));
    assert!(matches!(
        err(
            &mut s,
            Op::EngageSwitch {
                scope: Scope::Global,
                reason: String::new(),
                ttl_ms: Some(0)
            }
        ),
        ApplyError::InvalidArgument(_)
    ));
}

#[test]
fn approvals_are_single_use_and_bound_to_the_call() {
    let mut s = tenant_with_agent();
    let req = Op::RequestApproval {
        tenant: "t".into(),
        agent: "bot".into(),
        tool: "rm".into(),
        args_digest: H.into(),
        reason: "destructive".into(),
        ttl_ms: Some(1_000),
    };
    let Response::Entity(e) = ok(&mut s, 10, req.clone()) else {
        panic!()
    };
    let Entity::Approval(first) = *e else {
        panic!()
    };
    // Retrying the same call returns the same pending request.
    let Response::Entity(e) = ok(&mut s, 11, req) else {
        panic!()
    };
    assert_eq!(e.key().key, first.id);
    let consume = |digest: &str| Op::ConsumeApproval {
        tenant: "t".into(),
        agent: "bot".into(),
        tool: "rm".into(),
        args_digest: digest.into(),
    };
    assert!(matches!(
        err(&mut s, consume(H)),
        ApplyError::FailedPrecondition(_)
    ));
    ok(
        &mut s,
        12,
        Op::DecideApproval {
            id: first.id.clone(),
            approve: true,
        },
    );
    assert!(matches!(
        err(&mut s, consume(H2)),
        ApplyError::FailedPrecondition(_)
    ));
    ok(&mut s, 13, consume(H));
    assert_eq!(s.approvals[&first.id].state, ApprovalState::Consumed);
    assert!(matches!(
        err(&mut s, consume(H)),
        ApplyError::FailedPrecondition(_)
    ));
}

#[test]
fn approvals_expire() {
    let mut s = tenant_with_agent();
    ok(
        &mut s,
        10,
        Op::RequestApproval {
            tenant: "t".into(),
            agent: "bot".into(),
            tool: "rm".into(),
            args_digest: H.into(),
            reason: String::new(),
            ttl_ms: Some(5),
        },
    );
    let id = s.approvals.keys().next().unwrap().clone();
    let late = apply(
        &mut s,
        &cmd(
            15,
            Op::DecideApproval {
                id: id.clone(),
                approve: true,
            },
        ),
    );
    assert!(matches!(
        late.result,
        Err(ApplyError::FailedPrecondition(_))
    ));
    assert_eq!(ok(&mut s, 15, Op::ExpireApprovals), Response::Swept(1));
    assert_eq!(s.approvals[&id].state, ApprovalState::Expired);
    // Finished: forgotten once the retention has passed since it expired (at 15).
    let kept = 15 + APPROVALS_FINISHED_RETAIN_MS - 1;
    assert_eq!(ok(&mut s, kept, Op::ExpireApprovals), Response::Swept(0));
    assert!(s.approvals.contains_key(&id));
    assert!(crate::sweep::due(&s, kept + 1).contains(&Op::ExpireApprovals));
    assert_eq!(
        ok(&mut s, kept + 1, Op::ExpireApprovals),
        Response::Swept(1)
    );
    assert!(s.approvals.is_empty());
}

#[test]
fn an_agents_pending_approvals_are_bounded_and_a_full_queue_writes_nothing() {
    let mut s = tenant_with_agent();
    let request = |tool: String| Op::RequestApproval {
        tenant: "t".into(),
        agent: "bot".into(),
        tool,
        args_digest: H.into(),
        reason: String::new(),
        ttl_ms: Some(60_000),
    };
    for n in 0..APPROVALS_PENDING_PER_AGENT_MAX {
        ok(&mut s, 10 + n as u64, request(format!("t{n}")));
    }
    // The identical request is folded, even with the queue full.
    let again = apply(&mut s, &cmd(100, request("t0".into())));
    assert!(again.result.is_ok() && again.changes.is_empty());
    let full = apply(&mut s, &cmd(100, request("one-more".into())));
    let Err(ApplyError::ResourceExhausted(why)) = &full.result else {
        panic!("{:?}", full.result)
    };
    assert!(
        why.contains("approvals_pending_per_agent_max") && why.contains("retry after"),
        "{why}"
    );
    assert!(full.changes.is_empty());
    assert_eq!(s.approvals.len(), APPROVALS_PENDING_PER_AGENT_MAX);
    // A decision frees a slot.
    let first = s.approvals.keys().next().unwrap().clone();
    ok(
        &mut s,
        101,
        Op::DecideApproval {
            id: first,
            approve: false,
        },
    );
    ok(&mut s, 102, request("one-more".into()));
}

#[test]
fn audit_appends_chain_and_deduplicate() {
    let mut s = State::default();
    let a = apply(
        &mut s,
        &cmd(
            1,
            Op::AppendAudit {
                edge_id: "e1".into(),
                records: vec![entry(1), entry(2)],
            },
        ),
    );
    let Ok(Response::Audit(r)) = a.result.clone() else {
        panic!()
    };
    assert_eq!(
        (r.appended, r.first_seq, r.last_seq, r.acked_edge_seq),
        (2, Some(1), Some(2), 2)
    );
    // A retried batch overlapping the first is deduplicated by (edge, edge_seq).
    let b = apply(
        &mut s,
        &cmd(
            2,
            Op::AppendAudit {
                edge_id: "e1".into(),
                records: vec![entry(2), entry(3)],
            },
        ),
    );
    let Ok(Response::Audit(r)) = b.result.clone() else {
        panic!()
    };
    assert_eq!((r.appended, r.duplicates, r.first_seq), (1, 1, Some(3)));
    let c = apply(
        &mut s,
        &cmd(
            3,
            Op::AppendAudit {
                edge_id: "e2".into(),
                records: vec![entry(1)],
            },
        ),
    );
    let mut all = Vec::new();
    for x in [a, b, c] {
        for ch in x.changes {
            if let Change::Audit { records, .. } = ch {
                all.extend(records);
            }
        }
    }
    assert_eq!(verify_chain(&all), Ok(4));
    assert_eq!(s.audit_head.next_seq, 5);
    assert_eq!(s.audit_head.last_hash, all[3].hash);

    let mut altered = all.clone();
    altered[1].entry.decision = Decision::Deny;
    assert_eq!(verify_chain(&altered).unwrap_err().seq(), 2);
    let mut removed = all.clone();
    removed.remove(1);
    assert_eq!(verify_chain(&removed).unwrap_err().seq(), 3);
    let mut reordered = all;
    reordered.swap(1, 2);
    assert_eq!(verify_chain(&reordered).unwrap_err().seq(), 3);
}

#[test]
fn audit_batches_out_of_order_are_rejected() {
    let mut s = State::default();
    let e = err(
        &mut s,
        Op::AppendAudit {
            edge_id: "e1".into(),
            records: vec![entry(3), entry(2)],
        },
    );
    assert!(matches!(e, ApplyError::InvalidArgument(_)));
}

fn arb_op() -> impl Strategy<Value = Op> {
    let tenant = prop::sample::select(vec!["t", "u", "bad/name"]).prop_map(String::from);
    let agent = prop::sample::select(vec!["a", "b"]).prop_map(String::from);
    let digest = prop::sample::select(vec![H, H2, "zz"]).prop_map(String::from);
    let version = prop::sample::select(vec!["v1", "v2"]);
    prop_oneof![
        tenant.clone().prop_map(|id| Op::CreateTenant {
            id,
            stale_allow_read_only: false
        }),
        (tenant.clone(), agent.clone(), digest.clone()).prop_map(|(tenant, id, key_hash)| {
            Op::CreateAgent {
                tenant,
                id,
                roles: vec![],
                labels: BTreeMap::new(),
                key_hash,
            }
        }),
        (tenant.clone(), agent.clone()).prop_map(|(tenant, id)| Op::RevokeAgent { tenant, id }),
        version.clone().prop_map(|v| Op::PushPolicy {
            package: package(v, "permit(principal, action, resource);")
        }),
        (tenant.clone(), version.clone()).prop_map(|(tenant, v)| Op::ActivatePolicy {
            tenant,
            version: v.into()
        }),
        (tenant.clone(), version, 0u8..120).prop_map(|(tenant, v, p)| Op::StartRollout {
            tenant,
            to_version: v.into(),
            canary_percent: p,
            steps: vec![],
            guard: RolloutGuard::default()
        }),
        tenant
            .clone()
            .prop_map(|tenant| Op::PromoteRollout { tenant }),
        tenant.clone().prop_map(|tenant| Op::RollbackRollout {
            tenant,
            reason: String::new()
        }),
        (tenant.clone(), prop::option::of(0u64..50)).prop_map(|(tenant, ttl_ms)| {
            Op::EngageSwitch {
                scope: Scope::Tenant { tenant },
                reason: String::new(),
                ttl_ms,
            }
        }),
        tenant.clone().prop_map(|tenant| Op::ReleaseSwitch {
            scope: Scope::Tenant { tenant }
        }),
        Just(Op::ExpireSwitches),
        (tenant.clone(), agent.clone(), digest.clone()).prop_map(|(tenant, agent, args_digest)| {
            Op::RequestApproval {
                tenant,
                agent,
                tool: "rm".into(),
                args_digest,
                reason: String::new(),
                ttl_ms: Some(20),
            }
        }),
        (0u64..40, any::<bool>()).prop_map(|(r, approve)| Op::DecideApproval {
            id: format!("apr-{r}"),
            approve
        }),
        (tenant.clone(), agent.clone(), digest).prop_map(|(tenant, agent, args_digest)| {
            Op::ConsumeApproval {
                tenant,
                agent,
                tool: "rm".into(),
                args_digest,
            }
        }),
        Just(Op::ExpireApprovals),
        (prop::sample::select(vec!["e1", "e2"]), 0u64..10, 1usize..4).prop_map(
            |(edge, from, n)| {
                Op::AppendAudit {
                    edge_id: edge.into(),
                    records: (from..from + n as u64).map(entry).collect(),
                }
            }
        ),
    ]
}

proptest! {
    /// Replaying the emitted changes onto a replica reproduces the state exactly: this is what
    /// edges (watch deltas) and restarted nodes (RocksDB) rely on. Rejections change nothing,
    /// and the audit chain always verifies.
    #[test]
    fn changes_replay_to_the_same_state(ops in prop::collection::vec((arb_op(), 0u64..60), 1..60)) {
        let mut s = State::default();
        let mut replica = State::default();
        let mut audit = Vec::new();
        for (op, t) in ops {
            let before = s.clone();
            let a = apply(&mut s, &cmd(t, op));
            if a.result.is_err() {
                prop_assert_eq!(&State { revision: before.revision + 1, ..before }, &s);
            }
            replica.revision = a.revision;
            for c in &a.changes {
                replica.apply_change(c);
                if let Change::Audit { records, .. } = c {
                    audit.extend(records.iter().cloned());
                }
            }
            prop_assert_eq!(&replica, &s);
        }
        prop_assert_eq!(verify_chain(&audit), Ok(audit.len() as u64));
    }
}
