use proptest::prelude::*;

use super::*;
use crate::entity::{Approval, ApprovalState, Entity, PolicyPackage, QuotaScope, Transport};
use crate::query::AuditFilter;

const TD: &str = "agentgate.test";

fn op_samples() -> Vec<Op> {
    let t = || "a".to_string();
    let scope = |s: Scope| Op::EngageSwitch {
        scope: s,
        reason: String::new(),
        ttl_ms: None,
    };
    vec![
        Op::CreateTenant {
            id: t(),
            stale_allow_read_only: false,
        },
        Op::SetTenantOptions {
            tenant: t(),
            stale_allow_read_only: true,
        },
        Op::CreateAgent {
            tenant: t(),
            id: "bot".into(),
            roles: vec![],
            labels: Default::default(),
            key_hash: String::new(),
        },
        Op::RevokeAgent {
            tenant: t(),
            id: "bot".into(),
        },
        Op::AddUpstream {
            tenant: t(),
            name: "s".into(),
            transport: Transport::Http {
                url: "http://127.0.0.1:1/mcp".into(),
            },
            pinned_tools: Default::default(),
        },
        Op::RemoveUpstream {
            tenant: t(),
            name: "s".into(),
        },
        Op::PushPolicy {
            package: PolicyPackage {
                tenant: t(),
                version: "v1".into(),
                policies: String::new(),
                schema: String::new(),
                entities: String::new(),
                sha256: String::new(),
                author: String::new(),
                description: String::new(),
                created_ms: 0,
                signature: None,
            },
        },
        Op::ActivatePolicy {
            tenant: t(),
            version: "v1".into(),
        },
        Op::SetShadowPolicy {
            tenant: t(),
            version: None,
        },
        Op::StartRollout {
            tenant: t(),
            to_version: "v2".into(),
            canary_percent: 5,
            steps: vec![],
            guard: Default::default(),
        },
        Op::AdvanceRollout {
            tenant: t(),
            canary_percent: None,
        },
        Op::PromoteRollout { tenant: t() },
        Op::PauseRollout {
            tenant: t(),
            reason: String::new(),
        },
        Op::ResumeRollout { tenant: t() },
        Op::RollbackRollout {
            tenant: t(),
            reason: String::new(),
        },
        scope(Scope::Global),
        scope(Scope::Region {
            region: "eu".into(),
        }),
        scope(Scope::Tenant { tenant: t() }),
        scope(Scope::Agent {
            tenant: t(),
            agent: "bot".into(),
        }),
        scope(Scope::Tool { tool: "rm".into() }),
        scope(Scope::TenantTool {
            tenant: t(),
            tool: "rm".into(),
        }),
        scope(Scope::Session {
            tenant: t(),
            session: "s".into(),
        }),
        Op::ReleaseSwitch {
            scope: Scope::Tenant { tenant: t() },
        },
        Op::ExpireSwitches,
        Op::SetQuota {
            scope: QuotaScope {
                tenant: t(),
                agent: None,
                tool: None,
            },
            calls_per_window: Some(1),
            window_secs: 1,
            cost_budget: None,
            period_secs: 1,
        },
        Op::RemoveQuota {
            scope: QuotaScope {
                tenant: t(),
                agent: None,
                tool: None,
            },
        },
        Op::RequestApproval {
            tenant: t(),
            agent: "bot".into(),
            tool: "rm".into(),
            args_digest: String::new(),
            reason: String::new(),
            ttl_ms: None,
        },
        Op::DecideApproval {
            id: "apr-1".into(),
            approve: true,
        },
        Op::ConsumeApproval {
            tenant: t(),
            agent: "bot".into(),
            tool: "rm".into(),
            args_digest: String::new(),
        },
        Op::ExpireApprovals,
        Op::GrantRole {
            operator: "x".into(),
            role: Role::Viewer,
            tenant: Some(t()),
        },
        Op::RevokeRole {
            operator: "x".into(),
            role: Role::Viewer,
            tenant: None,
        },
        Op::AppendAudit {
            edge_id: "e".into(),
            records: vec![],
        },
    ]
}

fn query_samples() -> Vec<Query> {
    vec![
        Query::Get {
            kind: Kind::Agent,
            key: "a/bot".into(),
        },
        Query::List {
            kind: Kind::Policy,
            tenant: Some("a".into()),
        },
        Query::List {
            kind: Kind::Switch,
            tenant: None,
        },
        Query::Approvals {
            tenant: Some("a".into()),
            state: None,
        },
        Query::Audit {
            filter: AuditFilter {
                tenant: Some("a".into()),
                ..Default::default()
            },
        },
        Query::Audit {
            filter: AuditFilter::default(),
        },
        Query::AuditHead,
    ]
}

fn state_with(bindings: &[(&str, Role, Option<&str>)]) -> State {
    let mut s = State::default();
    s.put(Entity::Approval(Approval {
        id: "apr-1".into(),
        tenant: "a".into(),
        agent: "bot".into(),
        tool: "rm".into(),
        args_digest: String::new(),
        state: ApprovalState::Pending,
        reason: String::new(),
        requested_ms: 0,
        expires_ms: 1,
        decided_by: None,
        decided_ms: None,
        consumed_ms: None,
    }));
    for (who, role, tenant) in bindings {
        s.put(Entity::RoleBinding(RoleBinding {
            operator: who.to_string(),
            role: *role,
            tenant: tenant.map(str::to_string),
            granted_by: "test".into(),
            granted_ms: 0,
        }));
    }
    s
}

fn op(o: &Op) -> Call<'_> {
    Call::Propose(o)
}

fn alice() -> Identity {
    Identity::Operator("alice".into())
}

#[test]
fn identities_come_from_spiffe_uris_of_the_trust_domain() {
    assert_eq!(
        Identity::from_spiffe("spiffe://agentgate.test/edge/eu-1", TD),
        Ok(Identity::Edge("eu-1".into()))
    );
    assert_eq!(
        Identity::from_spiffe("spiffe://agentgate.test/node/3", TD),
        Ok(Identity::Node(3))
    );
    let op = Identity::Operator("alice".into());
    assert_eq!(Identity::from_spiffe(&op.to_spiffe(TD), TD), Ok(op.clone()));
    assert_eq!(Identity::parse("operator/alice"), Ok(op));
    for bad in [
        "spiffe://other.test/edge/eu-1",
        "spiffe://agentgate.test.evil/edge/x",
        "spiffe://agentgate.testedge/x",
        "https://agentgate.test/edge/x",
        "spiffe://agentgate.test/node/0",
        "spiffe://agentgate.test/node/x",
        "spiffe://agentgate.test/edge/a/b",
        "spiffe://agentgate.test/admin/root",
        "spiffe://agentgate.test/operator/",
    ] {
        assert!(Identity::from_spiffe(bad, TD).is_err(), "{bad}");
    }
}

#[test]
fn an_edge_only_syncs_appends_and_requests_or_uses_approvals() {
    let s = state_with(&[]);
    let edge = Identity::Edge("e1".into());
    for o in op_samples() {
        let allowed = matches!(
            o,
            Op::RequestApproval { .. } | Op::ConsumeApproval { .. } | Op::AppendAudit { .. }
        );
        assert_eq!(authorize(&edge, &op(&o), &s).is_ok(), allowed, "{o:?}");
    }
    assert!(authorize(&edge, &Call::EdgeSync, &s).is_ok());
    for q in query_samples() {
        assert!(authorize(&edge, &Call::Query(&q), &s).is_err(), "{q:?}");
    }
    for c in [Call::Peer, Call::Membership, Call::Inspect] {
        assert!(authorize(&edge, &c, &s).is_err());
    }
}

#[test]
fn operators_cannot_forge_audit_records_or_approval_use() {
    let s = state_with(&[("alice", Role::Admin, None)]);
    for o in op_samples() {
        if matches!(
            o,
            Op::RequestApproval { .. }
                | Op::ConsumeApproval { .. }
                | Op::AppendAudit { .. }
                | Op::ExpireApprovals
                | Op::ExpireSwitches
        ) {
            let d = authorize(&alice(), &op(&o), &s).unwrap_err();
            assert!(matches!(d.role, Role::Edge | Role::Peer), "{d}");
        } else {
            assert!(authorize(&alice(), &op(&o), &s).is_ok(), "{o:?}");
        }
    }
    assert!(authorize(&alice(), &Call::EdgeSync, &s).is_err());
    assert!(authorize(&alice(), &Call::Peer, &s).is_err());
}

#[test]
fn a_viewer_cannot_pause_and_a_tenant_operator_stays_in_its_tenant() {
    let s = state_with(&[
        ("vic", Role::Viewer, None),
        ("olga", Role::Operator, Some("a")),
    ]);
    let vic = Identity::Operator("vic".into());
    let olga = Identity::Operator("olga".into());
    let pause = |t: &str| Op::EngageSwitch {
        scope: Scope::Tenant { tenant: t.into() },
        reason: String::new(),
        ttl_ms: None,
    };
    let d = authorize(&vic, &op(&pause("a")), &s).unwrap_err();
    assert_eq!(
        d.to_string(),
        "operator/vic may not engage switch: it needs role `operator` in tenant `a` (or globally)"
    );
    assert!(authorize(&olga, &op(&pause("a")), &s).is_ok());
    let d = authorize(&olga, &op(&pause("b")), &s).unwrap_err();
    assert_eq!(
        (d.role, d.within.as_str()),
        (Role::Operator, "in tenant `b` (or globally)")
    );
    let global = Op::EngageSwitch {
        scope: Scope::Global,
        reason: String::new(),
        ttl_ms: None,
    };
    assert!(
        authorize(&olga, &op(&global), &s).is_err(),
        "only a global operator pauses --global"
    );
    // Reading: her tenant's audit, not everyone's.
    let audit = |t: Option<&str>| Query::Audit {
        filter: AuditFilter {
            tenant: t.map(str::to_string),
            ..Default::default()
        },
    };
    assert!(authorize(&olga, &Call::Query(&audit(Some("a"))), &s).is_ok());
    assert!(authorize(&olga, &Call::Query(&audit(Some("b"))), &s).is_err());
    assert!(authorize(&olga, &Call::Query(&audit(None)), &s).is_err());
    assert!(authorize(&vic, &Call::Query(&audit(None)), &s).is_ok());
    // An approval is decided by an approver of its tenant.
    let decide = Op::DecideApproval {
        id: "apr-1".into(),
        approve: true,
    };
    assert_eq!(
        authorize(&olga, &op(&decide), &s).unwrap_err().role,
        Role::Approver
    );
}

#[test]
fn a_revoked_role_is_refused_at_once() {
    let mut s = state_with(&[("alice", Role::Operator, None)]);
    let pause = Op::EngageSwitch {
        scope: Scope::Global,
        reason: String::new(),
        ttl_ms: None,
    };
    assert!(authorize(&alice(), &op(&pause), &s).is_ok());
    s.roles.clear();
    assert!(authorize(&alice(), &op(&pause), &s).is_err());
}

#[test]
fn nodes_are_peers_and_nothing_else() {
    let s = state_with(&[]);
    let node = Identity::Node(1);
    assert!(authorize(&node, &Call::Peer, &s).is_ok());
    assert!(authorize(&node, &op(&Op::ExpireApprovals), &s).is_ok());
    for o in op_samples() {
        if !matches!(o, Op::ExpireApprovals | Op::ExpireSwitches) {
            assert!(authorize(&node, &op(&o), &s).is_err(), "{o:?}");
        }
    }
}

fn role() -> impl Strategy<Value = Role> {
    prop::sample::select(Role::GRANTABLE.to_vec())
}

fn binding() -> impl Strategy<Value = (String, Role, Option<String>)> {
    (
        prop::sample::select(vec!["alice", "bob"]),
        role(),
        prop::option::of(prop::sample::select(vec!["a", "b"])),
    )
        .prop_map(|(w, r, t)| (w.to_string(), r, t.map(str::to_string)))
}

fn state_of(bindings: &[(String, Role, Option<String>)]) -> State {
    let b: Vec<(&str, Role, Option<&str>)> = bindings
        .iter()
        .map(|(w, r, t)| (w.as_str(), *r, t.as_deref()))
        .collect();
    state_with(&b)
}

proptest! {
    /// Granting more never takes anything away.
    #[test]
    fn more_bindings_never_deny_what_fewer_allowed(
        base in prop::collection::vec(binding(), 0..6),
        extra in prop::collection::vec(binding(), 0..4),
    ) {
        let small = state_of(&base);
        let mut all = base.clone();
        all.extend(extra);
        let big = state_of(&all);
        for who in [alice(), Identity::Operator("bob".into())] {
            for o in op_samples() {
                if authorize(&who, &op(&o), &small).is_ok() {
                    prop_assert!(authorize(&who, &op(&o), &big).is_ok(), "{o:?}");
                }
            }
        }
    }

    /// Bindings only in tenant `b` never allow anything of tenant `a` or of every tenant.
    #[test]
    fn tenant_bindings_stay_in_their_tenant(roles in prop::collection::vec(role(), 1..5)) {
        let bindings: Vec<(String, Role, Option<String>)> = roles
            .into_iter()
            .map(|r| ("alice".to_string(), r, Some("b".to_string())))
            .collect();
        let s = state_of(&bindings);
        for o in op_samples() {
            // Every sample acts on tenant `a`, on every tenant, or on the cluster.
            prop_assert!(authorize(&alice(), &op(&o), &s).is_err(), "{o:?}");
        }
        for q in query_samples() {
            let ok = authorize(&alice(), &Call::Query(&q), &s).is_ok();
            prop_assert_eq!(ok, q == Query::AuditHead, "{:?}", q);
        }
    }

    /// A viewer writes nothing, whatever the scope.
    #[test]
    fn viewers_write_nothing(tenant in prop::option::of(prop::sample::select(vec!["a", "b"]))) {
        let s = state_with(&[("alice", Role::Viewer, tenant)]);
        for o in op_samples() {
            prop_assert!(authorize(&alice(), &op(&o), &s).is_err(), "{o:?}");
        }
    }
}
