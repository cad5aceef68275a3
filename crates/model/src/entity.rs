//! The replicated entities. Each has a stable [`EntityKey`]: its kind and a `/`-joined key.
//!
//! These serde forms are the persisted and wire format (RocksDB values, snapshots, watch deltas);
//! `tests/golden/` pins them so a change that would break running nodes fails a test.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

pub use crate::authz::RoleBinding;
use crate::ids::{AgentId, PolicyVersion, ServerName, TenantId};

/// The kinds of replicated entity; each is stored in its own RocksDB column family.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    Tenant,
    Agent,
    Upstream,
    Policy,
    Rollout,
    Switch,
    Quota,
    Approval,
    RoleBinding,
}

impl Kind {
    pub const ALL: [Kind; 9] = [
        Kind::Tenant,
        Kind::Agent,
        Kind::Upstream,
        Kind::Policy,
        Kind::Rollout,
        Kind::Switch,
        Kind::Quota,
        Kind::Approval,
        Kind::RoleBinding,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Tenant => "tenant",
            Kind::Agent => "agent",
            Kind::Upstream => "upstream",
            Kind::Policy => "policy",
            Kind::Rollout => "rollout",
            Kind::Switch => "switch",
            Kind::Quota => "quota",
            Kind::Approval => "approval",
            Kind::RoleBinding => "role_binding",
        }
    }
}

/// Identifies one entity: its kind and its key within the kind.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct EntityKey {
    pub kind: Kind,
    pub key: String,
}

/// Joins key parts with `/`. Names never contain `/` (see [`crate::ids::validate_name`]).
pub fn join_key(parts: &[&str]) -> String {
    parts.join("/")
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Tenant {
    pub id: TenantId,
    pub created_ms: u64,
    /// The enforced policy version (absent until the first package is activated: deny all).
    pub policy_version: Option<PolicyVersion>,
    /// A version evaluated and audited on every call but never enforced.
    pub shadow_version: Option<PolicyVersion>,
    /// Opt-in: while an edge's snapshot is stale, still allow tools annotated read-only.
    pub stale_allow_read_only: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Agent {
    pub tenant: TenantId,
    pub id: AgentId,
    pub roles: Vec<String>,
    pub labels: BTreeMap<String, String>,
    /// Lowercase hex SHA-256 of the API key. The key itself is never stored.
    pub key_hash: String,
    pub created_ms: u64,
    pub revoked_ms: Option<u64>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "type")]
pub enum Transport {
    /// Streamable HTTP at this URL.
    Http { url: String },
    /// A local process speaking MCP over stdio (local mode).
    Stdio { command: String, args: Vec<String> },
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Upstream {
    pub tenant: TenantId,
    pub name: ServerName,
    pub transport: Transport,
    /// Tool name → lowercase hex SHA-256 of its definition (name, description, schemas).
    pub pinned_tools: BTreeMap<String, String>,
    pub created_ms: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PolicyPackage {
    pub tenant: TenantId,
    pub version: PolicyVersion,
    /// Cedar policies, human syntax.
    pub policies: String,
    /// Cedar schema, human syntax.
    pub schema: String,
    /// Cedar entities, JSON.
    pub entities: String,
    /// Lowercase hex SHA-256 over the content (see [`crate::policy::package_digest`]).
    pub sha256: String,
    pub author: String,
    pub description: String,
    pub created_ms: u64,
    /// Optional detached Ed25519 signature over `sha256`, hex.
    pub signature: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RolloutState {
    Running,
    Paused,
    Promoted,
    RolledBack,
}

/// Trip wires checked by edges and the core; crossing one rolls the rollout back.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct RolloutGuard {
    /// Roll back when the canary's deny rate exceeds this many percent (of calls).
    pub max_deny_rate_percent: Option<u8>,
    /// Roll back when the canary's policy-error rate exceeds this many percent.
    pub max_error_rate_percent: Option<u8>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RolloutEvent {
    pub time_ms: u64,
    pub actor: String,
    pub action: String,
    pub canary_percent: u8,
    pub note: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Rollout {
    pub tenant: TenantId,
    pub from_version: Option<PolicyVersion>,
    pub to_version: PolicyVersion,
    /// Share of sessions/agents (by stable hash) that get `to_version`.
    pub canary_percent: u8,
    /// Remaining planned canary steps, e.g. `[25, 50, 100]`.
    pub steps: Vec<u8>,
    pub guard: RolloutGuard,
    pub state: RolloutState,
    pub history: Vec<RolloutEvent>,
}

/// Where a kill switch applies.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "scope")]
pub enum Scope {
    Global,
    Region {
        region: String,
    },
    Tenant {
        tenant: TenantId,
    },
    Agent {
        tenant: TenantId,
        agent: AgentId,
    },
    /// A tool by name in every tenant.
    Tool {
        tool: String,
    },
    /// A tool by name in one tenant.
    TenantTool {
        tenant: TenantId,
        tool: String,
    },
    Session {
        tenant: TenantId,
        session: String,
    },
}

impl Scope {
    /// The scope's storage key, also the O(1) lookup key edges use.
    pub fn key(&self) -> String {
        match self {
            Scope::Global => "global".to_string(),
            Scope::Region { region } => join_key(&["region", region]),
            Scope::Tenant { tenant } => join_key(&["tenant", tenant]),
            Scope::Agent { tenant, agent } => join_key(&["agent", tenant, agent]),
            Scope::Tool { tool } => join_key(&["tool", tool]),
            Scope::TenantTool { tenant, tool } => join_key(&["tenant-tool", tenant, tool]),
            Scope::Session { tenant, session } => join_key(&["session", tenant, session]),
        }
    }

    /// Parses a key made by [`Scope::key`] (what `agentgate-admin switches list` shows).
    pub fn from_key(key: &str) -> Option<Scope> {
        let parts: Vec<&str> = key.split('/').collect();
        let s = |x: &str| x.to_string();
        Some(match parts.as_slice() {
            ["global"] => Scope::Global,
            ["region", region] => Scope::Region { region: s(region) },
            ["tenant", tenant] => Scope::Tenant { tenant: s(tenant) },
            ["agent", tenant, agent] => Scope::Agent {
                tenant: s(tenant),
                agent: s(agent),
            },
            ["tool", tool] => Scope::Tool { tool: s(tool) },
            ["tenant-tool", tenant, tool] => Scope::TenantTool {
                tenant: s(tenant),
                tool: s(tool),
            },
            ["session", tenant, session] => Scope::Session {
                tenant: s(tenant),
                session: s(session),
            },
            _ => return None,
        })
    }

    /// Every name inside the scope, for validation.
    pub fn names(&self) -> Vec<(&'static str, &str)> {
        match self {
            Scope::Global => vec![],
            Scope::Region { region } => vec![("region", region)],
            Scope::Tenant { tenant } => vec![("tenant", tenant)],
            Scope::Agent { tenant, agent } => vec![("tenant", tenant), ("agent", agent)],
            Scope::Tool { tool } => vec![("tool", tool)],
            Scope::TenantTool { tenant, tool } => vec![("tenant", tenant), ("tool", tool)],
            Scope::Session { tenant, session } => vec![("tenant", tenant), ("session", session)],
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KillSwitch {
    pub scope: Scope,
    pub reason: String,
    pub actor: String,
    /// Leader time of the commit that engaged it.
    pub engaged_ms: u64,
    /// Revision at which it was engaged (edges measure enforcement lag from commit).
    pub engaged_revision: u64,
    /// The switch stops applying at this time (edges compare with their own clock; the core
    /// sweeps expired switches with a leader-stamped command).
    pub expires_ms: Option<u64>,
}

/// What a quota limits.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct QuotaScope {
    pub tenant: TenantId,
    pub agent: Option<AgentId>,
    pub tool: Option<String>,
}

impl QuotaScope {
    pub fn key(&self) -> String {
        join_key(&[
            &self.tenant,
            self.agent.as_deref().unwrap_or("*"),
            self.tool.as_deref().unwrap_or("*"),
        ])
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Quota {
    pub scope: QuotaScope,
    /// Calls admitted per window.
    pub calls_per_window: Option<u64>,
    pub window_secs: u64,
    /// Cost units admitted per period.
    pub cost_budget: Option<u64>,
    pub period_secs: u64,
    pub updated_ms: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ApprovalState {
    Pending,
    Approved,
    Denied,
    Expired,
    /// Approved and then used by exactly one call.
    Consumed,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Approval {
    pub id: String,
    pub tenant: TenantId,
    pub agent: AgentId,
    pub tool: String,
    /// Lowercase hex SHA-256 of the call's canonical arguments.
    pub args_digest: String,
    pub state: ApprovalState,
    pub reason: String,
    pub requested_ms: u64,
    pub expires_ms: u64,
    pub decided_by: Option<String>,
    pub decided_ms: Option<u64>,
    pub consumed_ms: Option<u64>,
}

/// One replicated entity of any kind.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "kind", content = "value")]
pub enum Entity {
    Tenant(Tenant),
    Agent(Agent),
    Upstream(Upstream),
    Policy(PolicyPackage),
    Rollout(Rollout),
    Switch(KillSwitch),
    Quota(Quota),
    Approval(Approval),
    RoleBinding(RoleBinding),
}

impl Entity {
    pub fn kind(&self) -> Kind {
        match self {
            Entity::Tenant(_) => Kind::Tenant,
            Entity::Agent(_) => Kind::Agent,
            Entity::Upstream(_) => Kind::Upstream,
            Entity::Policy(_) => Kind::Policy,
            Entity::Rollout(_) => Kind::Rollout,
            Entity::Switch(_) => Kind::Switch,
            Entity::Quota(_) => Kind::Quota,
            Entity::Approval(_) => Kind::Approval,
            Entity::RoleBinding(_) => Kind::RoleBinding,
        }
    }

    pub fn key(&self) -> EntityKey {
        let (kind, key) = match self {
            Entity::Tenant(t) => (Kind::Tenant, t.id.clone()),
            Entity::Agent(a) => (Kind::Agent, join_key(&[&a.tenant, &a.id])),
            Entity::Upstream(u) => (Kind::Upstream, join_key(&[&u.tenant, &u.name])),
            Entity::Policy(p) => (Kind::Policy, join_key(&[&p.tenant, &p.version])),
            Entity::Rollout(r) => (Kind::Rollout, r.tenant.clone()),
            Entity::Switch(s) => (Kind::Switch, s.scope.key()),
            Entity::Quota(q) => (Kind::Quota, q.scope.key()),
            Entity::Approval(a) => (Kind::Approval, a.id.clone()),
            Entity::RoleBinding(b) => (Kind::RoleBinding, b.key()),
        };
        EntityKey { kind, key }
    }
}

impl Entity {
    /// The tenant an entity belongs to (`None` for global kill switches and region or
    /// tool-wide ones).
    pub fn tenant(&self) -> Option<&str> {
        match self {
            Entity::Tenant(t) => Some(&t.id),
            Entity::Agent(a) => Some(&a.tenant),
            Entity::Upstream(u) => Some(&u.tenant),
            Entity::Policy(p) => Some(&p.tenant),
            Entity::Rollout(r) => Some(&r.tenant),
            Entity::Switch(s) => match &s.scope {
                Scope::Tenant { tenant }
                | Scope::Agent { tenant, .. }
                | Scope::TenantTool { tenant, .. }
                | Scope::Session { tenant, .. } => Some(tenant),
                Scope::Global | Scope::Region { .. } | Scope::Tool { .. } => None,
            },
            Entity::Quota(q) => Some(&q.scope.tenant),
            Entity::Approval(a) => Some(&a.tenant),
            Entity::RoleBinding(b) => b.tenant.as_deref(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scope_keys_parse_back() {
        let scopes = [
            Scope::Global,
            Scope::Region {
                region: "eu".into(),
            },
            Scope::Tenant { tenant: "t".into() },
            Scope::Agent {
                tenant: "t".into(),
                agent: "a".into(),
            },
            Scope::Tool { tool: "x".into() },
            Scope::TenantTool {
                tenant: "t".into(),
                tool: "x".into(),
            },
            Scope::Session {
                tenant: "t".into(),
                session: "s".into(),
            },
        ];
        for scope in scopes {
            assert_eq!(Scope::from_key(&scope.key()), Some(scope));
        }
        for bad in ["", "nope", "tenant", "tenant/a/b", "agent/t", "global/x"] {
            assert_eq!(Scope::from_key(bad), None, "{bad}");
        }
    }
}
