//! The gate: the pure part of the decision path before Cedar, in design.md §3's order:
//! kill switches → freshness → policy version (rollout) — and the gateway's error codes.
//!
//! INVARIANT: fail closed. A kill switch in any scope, a stale snapshot (unless the tenant opted
//! in to read-only tools while stale), or a tenant with no enforceable policy version denies.

use agentgate_model::State;
use agentgate_model::entity::{RolloutState, Scope, Tenant};
use serde::Serialize;
use sha2::{Digest, Sha256};

/// Stable JSON-RPC error codes of gateway decisions (documented in `docs/errors.md`). They sit
/// in the implementation-defined server range, clear of the codes MCP itself uses.
pub mod code {
    pub const KILLED: i64 = -32080;
    pub const STALE: i64 = -32081;
    pub const POLICY_DENIED: i64 = -32082;
    pub const APPROVAL_REQUIRED: i64 = -32083;
    pub const NO_POLICY: i64 = -32084;
    pub const OVERLOADED: i64 = -32085;
    pub const UPSTREAM: i64 = -32086;
    pub const APPROVALS_FULL: i64 = -32087;
}

/// Why a call is refused, as the JSON-RPC error's `data` reports it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Denial {
    #[serde(skip)]
    pub code: i64,
    pub reason: String,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub policy_ids: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub kill_switch: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub approval_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub retry_after_ms: Option<u64>,
}

impl Denial {
    pub fn new(code: i64, reason: impl Into<String>) -> Self {
        Denial {
            code,
            reason: reason.into(),
            policy_ids: vec![],
            kill_switch: None,
            approval_id: None,
            retry_after_ms: None,
        }
    }
}

/// Who calls what, as far as the gate is concerned.
#[derive(Debug, Clone, Copy)]
pub struct Subject<'a> {
    pub tenant: &'a str,
    pub agent: &'a str,
    pub session: Option<&'a str>,
    /// Tool name (or resource URI / prompt name); `None` for calls naming no tool.
    pub tool: Option<&'a str>,
    pub read_only: bool,
    /// The edge's region.
    pub region: &'a str,
}

/// The kill switch that stops this call, if any (expired switches do not count).
pub fn kill_switch(state: &State, s: &Subject<'_>, now_ms: u64) -> Option<Denial> {
    let t = s.tenant.to_string();
    let mut scopes = vec![
        Scope::Global,
        Scope::Region {
            region: s.region.to_string(),
        },
        Scope::Tenant { tenant: t.clone() },
        Scope::Agent {
            tenant: t.clone(),
            agent: s.agent.to_string(),
        },
    ];
    if let Some(tool) = s.tool {
        scopes.push(Scope::Tool {
            tool: tool.to_string(),
        });
        scopes.push(Scope::TenantTool {
            tenant: t.clone(),
            tool: tool.to_string(),
        });
    }
    if let Some(session) = s.session {
        scopes.push(Scope::Session {
            tenant: t,
            session: session.to_string(),
        });
    }
    scopes.iter().find_map(|scope| {
        let key = scope.key();
        let w = state.switches.get(&key)?;
        if w.expires_ms.is_some_and(|e| e <= now_ms) {
            return None;
        }
        let mut d = Denial::new(
            code::KILLED,
            format!(
                "stopped by the kill switch `{key}`{}",
                if w.reason.is_empty() {
                    String::new()
                } else {
                    format!(": {}", w.reason)
                }
            ),
        );
        d.kill_switch = Some(key);
        Some(d)
    })
}

/// The staleness verdict: `None` to go on.
pub fn staleness(
    tenant: &Tenant,
    s: &Subject<'_>,
    fresh: bool,
    retry_after_ms: u64,
) -> Option<Denial> {
    if fresh || (tenant.stale_allow_read_only && s.read_only) {
        return None;
    }
    let mut d = Denial::new(
        code::STALE,
        "this gateway cannot confirm its configuration is current (the core is unreachable); denying until it can",
    );
    d.retry_after_ms = Some(retry_after_ms);
    Some(d)
}

/// Which policy versions apply to a call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Versions {
    /// The version enforced.
    pub enforced: String,
    /// A version evaluated and audited but not enforced.
    pub shadow: Option<String>,
}

/// A stable bucket 0..100 for rollouts: by session when there is one, else by agent, so one
/// conversation sees one policy version throughout.
pub fn rollout_bucket(tenant: &str, agent: &str, session: Option<&str>) -> u8 {
    let mut h = Sha256::new();
    h.update(tenant.as_bytes());
    h.update([0]);
    match session {
        Some(s) => {
            h.update(b"session\0");
            h.update(s.as_bytes());
        }
        None => {
            h.update(b"agent\0");
            h.update(agent.as_bytes());
        }
    }
    let d = h.finalize();
    let n = u16::from_be_bytes([
        d.first().copied().unwrap_or(0),
        d.get(1).copied().unwrap_or(0),
    ]);
    (n % 100) as u8
}

/// Picks the enforced and shadow versions for a call.
pub fn versions(state: &State, tenant: &Tenant, s: &Subject<'_>) -> Result<Versions, Denial> {
    let mut enforced = tenant.policy_version.clone();
    if let Some(r) = state.rollouts.get(&tenant.id)
        && matches!(r.state, RolloutState::Running | RolloutState::Paused)
        && rollout_bucket(s.tenant, s.agent, s.session) < r.canary_percent
    {
        enforced = Some(r.to_version.clone());
    }
    let enforced = enforced.ok_or_else(|| {
        Denial::new(
            code::NO_POLICY,
            format!(
                "tenant `{}` has no active policy version; every call is denied",
                tenant.id
            ),
        )
    })?;
    let shadow = tenant.shadow_version.clone().filter(|v| *v != enforced);
    Ok(Versions { enforced, shadow })
}

#[cfg(test)]
mod tests {
    use agentgate_model::entity::{KillSwitch, Rollout, RolloutGuard};

    use super::*;

    fn tenant() -> Tenant {
        Tenant {
            id: "t".into(),
            created_ms: 0,
            policy_version: Some("v1".into()),
            shadow_version: None,
            stale_allow_read_only: false,
        }
    }

    fn subject<'a>() -> Subject<'a> {
        Subject {
            tenant: "t",
            agent: "bot",
            session: Some("s1"),
            tool: Some("rm"),
            read_only: false,
            region: "eu",
        }
    }

    fn with_switch(scope: Scope, expires_ms: Option<u64>) -> State {
        let mut st = State::default();
        st.switches.insert(
            scope.key(),
            KillSwitch {
                scope,
                reason: "incident 7".into(),
                actor: "ops".into(),
                engaged_ms: 0,
                engaged_revision: 1,
                expires_ms,
            },
        );
        st
    }

    #[test]
    fn every_scope_that_covers_the_call_stops_it() {
        let covering = [
            Scope::Global,
            Scope::Region {
                region: "eu".into(),
            },
            Scope::Tenant { tenant: "t".into() },
            Scope::Agent {
                tenant: "t".into(),
                agent: "bot".into(),
            },
            Scope::Tool { tool: "rm".into() },
            Scope::TenantTool {
                tenant: "t".into(),
                tool: "rm".into(),
            },
            Scope::Session {
                tenant: "t".into(),
                session: "s1".into(),
            },
        ];
        for scope in covering {
            let d = kill_switch(&with_switch(scope.clone(), None), &subject(), 10)
                .unwrap_or_else(|| panic!("{scope:?}"));
            assert_eq!(d.code, code::KILLED);
            assert_eq!(d.kill_switch, Some(scope.key()));
            assert!(d.reason.contains("incident 7"));
        }
        let elsewhere = [
            Scope::Region {
                region: "us".into(),
            },
            Scope::Tenant { tenant: "u".into() },
            Scope::Agent {
                tenant: "u".into(),
                agent: "bot".into(),
            },
            Scope::Agent {
                tenant: "t".into(),
                agent: "other".into(),
            },
            Scope::Tool { tool: "ls".into() },
            Scope::TenantTool {
                tenant: "u".into(),
                tool: "rm".into(),
            },
            Scope::Session {
                tenant: "t".into(),
                session: "s2".into(),
            },
        ];
        for scope in elsewhere {
            assert!(
                kill_switch(&with_switch(scope.clone(), None), &subject(), 10).is_none(),
                "{scope:?}"
            );
        }
    }

    #[test]
    fn expired_switches_no_longer_apply() {
        let st = with_switch(Scope::Global, Some(100));
        assert!(kill_switch(&st, &subject(), 99).is_some());
        assert!(kill_switch(&st, &subject(), 100).is_none());
    }

    #[test]
    fn stale_denies_unless_the_tenant_opted_in_for_read_only_tools() {
        let mut t = tenant();
        let mut s = subject();
        assert!(staleness(&t, &s, true, 500).is_none());
        assert_eq!(
            staleness(&t, &s, false, 500).map(|d| (d.code, d.retry_after_ms)),
            Some((code::STALE, Some(500)))
        );
        t.stale_allow_read_only = true;
        assert!(staleness(&t, &s, false, 500).is_some(), "not read-only");
        s.read_only = true;
        assert!(staleness(&t, &s, false, 500).is_none());
    }

    #[test]
    fn rollouts_split_by_a_stable_hash_of_the_session() {
        let mut st = State::default();
        let mut t = tenant();
        t.shadow_version = Some("v3".into());
        st.rollouts.insert(
            "t".into(),
            Rollout {
                tenant: "t".into(),
                from_version: Some("v1".into()),
                to_version: "v2".into(),
                canary_percent: 30,
                steps: vec![],
                guard: RolloutGuard::default(),
                state: RolloutState::Running,
                history: vec![],
            },
        );
        let sessions: Vec<String> = (0..2_000).map(|i| format!("s{i}")).collect();
        let canary = sessions
            .iter()
            .filter(|sess| {
                let s = Subject {
                    session: Some(sess),
                    ..subject()
                };
                let v = versions(&st, &t, &s).unwrap();
                assert_eq!(v.shadow.as_deref(), Some("v3"));
                // Stable: the same session always gets the same version.
                assert_eq!(v, versions(&st, &t, &s).unwrap());
                v.enforced == "v2"
            })
            .count();
        assert!(
            (500..700).contains(&canary),
            "{canary} of 2000 sessions in a 30% canary"
        );
        // Rolled back: everybody on the old version.
        st.rollouts.get_mut("t").unwrap().state = RolloutState::RolledBack;
        assert_eq!(versions(&st, &t, &subject()).unwrap().enforced, "v1");
        // No version at all: denied.
        t.policy_version = None;
        assert_eq!(
            versions(&st, &t, &subject()).unwrap_err().code,
            code::NO_POLICY
        );
    }
}
