//! Who may do what (design.md §10): one pure function, [`authorize`], decides every call a node
//! serves — Admin writes and reads, the edges' sync calls, the nodes' own traffic — from the
//! caller's authenticated [`Identity`] and the role bindings in the replicated state.
//!
//! Identities come from certificates (a URI SAN `spiffe://<trust-domain>/<kind>/<name>`, see
//! [`Identity::from_spiffe`]). Nodes and edges hold their role by what they are: a node is a
//! `peer`, an edge is an `edge`, and neither can be granted anything else. Operators hold what
//! is bound to them ([`RoleBinding`]), globally or in one tenant.
//!
//! Roles: `viewer` reads; `operator` engages and releases kill switches and sets quotas;
//! `approver` decides approvals; `policy-admin` pushes, activates and rolls out policy; `admin`
//! manages tenants, agents, upstreams, role bindings and membership, and holds every operator
//! role in its scope. `operator`, `approver` and `policy-admin` can read what they act on. `edge`
//! watches, confirms, appends decision records and requests or uses approvals — never policy,
//! switches or records of operators. `peer` is Raft and forwarding between nodes.
//!
//! INVARIANT: a binding in tenant `t` never allows anything outside `t`; switches and quotas
//! that span tenants (global, region, tool in every tenant) need a global binding.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::command::Op;
use crate::entity::{Kind, Scope};
use crate::ids::{TenantId, truncate_for_message, validate_name};
use crate::query::Query;
use crate::state::State;

/// An authenticated caller.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "kind", content = "name")]
pub enum Identity {
    /// A core node, by its Raft id.
    Node(u64),
    /// An edge, by its configured name.
    Edge(String),
    /// A person or an automation acting as one.
    Operator(String),
}

/// Why a certificate names no identity this cluster knows.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct IdentityError(pub String);

impl Identity {
    /// Reads `spiffe://<trust_domain>/node/<id>`, `…/edge/<name>` or `…/operator/<name>`.
    pub fn from_spiffe(uri: &str, trust_domain: &str) -> Result<Identity, IdentityError> {
        let shown = truncate_for_message(uri);
        let path = uri
            .strip_prefix("spiffe://")
            .and_then(|rest| rest.strip_prefix(trust_domain))
            .and_then(|rest| rest.strip_prefix('/'))
            .ok_or_else(|| {
                IdentityError(format!(
                    "`{shown}` is not an identity of trust domain `{trust_domain}` (spiffe://{trust_domain}/<node|edge|operator>/<name>)"
                ))
            })?;
        Identity::parse(path).map_err(|e| IdentityError(format!("`{shown}`: {e}")))
    }

    /// Reads the short form `node/1`, `edge/eu-1`, `operator/alice` (what [`fmt::Display`] writes).
    pub fn parse(s: &str) -> Result<Identity, IdentityError> {
        let (kind, name) = s.split_once('/').ok_or_else(|| {
            IdentityError("an identity is `node/<id>`, `edge/<name>` or `operator/<name>`".into())
        })?;
        let name_ok = |what| {
            validate_name(what, name)
                .map(|()| name.to_string())
                .map_err(|e| IdentityError(e.to_string()))
        };
        match kind {
            "node" => name
                .parse::<u64>()
                .ok()
                .filter(|id| *id > 0)
                .map(Identity::Node)
                .ok_or_else(|| {
                    IdentityError(format!(
                        "node id `{}` is not a positive number",
                        truncate_for_message(name)
                    ))
                }),
            "edge" => name_ok("edge name").map(Identity::Edge),
            "operator" => name_ok("operator name").map(Identity::Operator),
            other => Err(IdentityError(format!(
                "unknown identity kind `{}` (node, edge or operator)",
                truncate_for_message(other)
            ))),
        }
    }

    /// The URI SAN a certificate for this identity carries.
    pub fn to_spiffe(&self, trust_domain: &str) -> String {
        format!("spiffe://{trust_domain}/{self}")
    }
}

impl fmt::Display for Identity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Identity::Node(id) => write!(f, "node/{id}"),
            Identity::Edge(n) => write!(f, "edge/{n}"),
            Identity::Operator(n) => write!(f, "operator/{n}"),
        }
    }
}

/// What an identity may be allowed to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Role {
    Viewer,
    Operator,
    Approver,
    PolicyAdmin,
    Admin,
    Edge,
    Peer,
}

impl Role {
    pub const ALL: [Role; 7] = [
        Role::Viewer,
        Role::Operator,
        Role::Approver,
        Role::PolicyAdmin,
        Role::Admin,
        Role::Edge,
        Role::Peer,
    ];
    /// The roles an operator can be granted (`edge` and `peer` come with the certificate).
    pub const GRANTABLE: [Role; 5] = [
        Role::Viewer,
        Role::Operator,
        Role::Approver,
        Role::PolicyAdmin,
        Role::Admin,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Role::Viewer => "viewer",
            Role::Operator => "operator",
            Role::Approver => "approver",
            Role::PolicyAdmin => "policy-admin",
            Role::Admin => "admin",
            Role::Edge => "edge",
            Role::Peer => "peer",
        }
    }

    pub fn parse(s: &str) -> Option<Role> {
        Role::ALL.into_iter().find(|r| r.as_str() == s)
    }

    /// Whether holding `self` grants what `needed` grants.
    pub fn covers(self, needed: Role) -> bool {
        self == needed
            || match self {
                Role::Admin => matches!(
                    needed,
                    Role::Viewer | Role::Operator | Role::Approver | Role::PolicyAdmin
                ),
                Role::Operator | Role::Approver | Role::PolicyAdmin => needed == Role::Viewer,
                Role::Viewer | Role::Edge | Role::Peer => false,
            }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A role granted to an operator, globally (`tenant: None`) or in one tenant.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RoleBinding {
    /// The operator's name (the `<name>` of `operator/<name>`).
    pub operator: String,
    pub role: Role,
    pub tenant: Option<TenantId>,
    /// Who granted it, and when (leader time).
    pub granted_by: String,
    pub granted_ms: u64,
}

impl RoleBinding {
    /// `<operator>/<role>/<tenant or *>`.
    pub fn key_of(operator: &str, role: Role, tenant: Option<&str>) -> String {
        crate::entity::join_key(&[operator, role.as_str(), tenant.unwrap_or("*")])
    }

    pub fn key(&self) -> String {
        RoleBinding::key_of(&self.operator, self.role, self.tenant.as_deref())
    }
}

/// Where a needed role must be held.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Within {
    /// A global binding.
    Global,
    /// A binding in this tenant, or a global one.
    Tenant(String),
    /// A binding anywhere (reads of what is not any one tenant's, e.g. the cluster's status).
    Anywhere,
}

impl fmt::Display for Within {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Within::Global => f.write_str("globally"),
            Within::Tenant(t) => write!(f, "in tenant `{t}` (or globally)"),
            Within::Anywhere => f.write_str("in any tenant or globally"),
        }
    }
}

/// A call a node serves.
#[derive(Debug, Clone, Copy)]
pub enum Call<'a> {
    /// An Admin write.
    Propose(&'a Op),
    /// An Admin read.
    Query(&'a Query),
    /// `Status`, `ReadIndex`, `ValidatePolicy`: reads of no tenant.
    Inspect,
    /// `AddNode`, `RemoveNode`.
    Membership,
    /// `EdgeSync`: watch, confirm, append decision records.
    EdgeSync,
    /// Raft RPCs and requests one node forwards to another.
    Peer,
}

impl Call<'_> {
    fn describe(&self) -> String {
        match self {
            Call::Propose(op) => op.name().replace('_', " "),
            Call::Query(q) => format!("read {}", query_name(q)),
            Call::Inspect => "inspect the cluster".into(),
            Call::Membership => "change the membership".into(),
            Call::EdgeSync => "use the edge sync API".into(),
            Call::Peer => "speak Raft or forward requests".into(),
        }
    }
}

fn query_name(q: &Query) -> &'static str {
    match q {
        Query::Get { .. } | Query::List { .. } => "entities",
        Query::Approvals { .. } => "approvals",
        Query::Audit { .. } => "the audit log",
        Query::AuditHead => "the audit head",
    }
}

/// A refusal naming what would have allowed the call.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{identity} may not {what}: it needs role `{role}` {within}")]
pub struct Denied {
    pub identity: String,
    pub what: String,
    pub role: Role,
    pub within: String,
}

/// The role a call needs, and where.
pub fn needs(call: &Call<'_>, state: &State) -> (Role, Within) {
    use Within::*;
    let tenant = |t: &str| Tenant(t.to_string());
    match call {
        Call::Peer => (Role::Peer, Global),
        Call::EdgeSync => (Role::Edge, Global),
        Call::Membership => (Role::Admin, Global),
        Call::Inspect => (Role::Viewer, Anywhere),
        Call::Query(q) => (Role::Viewer, query_within(q, state)),
        Call::Propose(op) => match op {
            Op::CreateTenant { .. } => (Role::Admin, Global),
            Op::SetTenantOptions { tenant: t, .. }
            | Op::CreateAgent { tenant: t, .. }
            | Op::RevokeAgent { tenant: t, .. }
            | Op::AddUpstream { tenant: t, .. }
            | Op::RemoveUpstream { tenant: t, .. } => (Role::Admin, tenant(t)),
            Op::GrantRole { tenant: t, .. } | Op::RevokeRole { tenant: t, .. } => {
                (Role::Admin, t.as_deref().map_or(Global, tenant))
            }
            Op::PushPolicy { package } => (Role::PolicyAdmin, tenant(&package.tenant)),
            Op::ActivatePolicy { tenant: t, .. }
            | Op::SetShadowPolicy { tenant: t, .. }
            | Op::StartRollout { tenant: t, .. }
            | Op::AdvanceRollout { tenant: t, .. }
            | Op::PromoteRollout { tenant: t }
            | Op::PauseRollout { tenant: t, .. }
            | Op::ResumeRollout { tenant: t }
            | Op::RollbackRollout { tenant: t, .. } => (Role::PolicyAdmin, tenant(t)),
            Op::EngageSwitch { scope, .. } | Op::ReleaseSwitch { scope } => {
                (Role::Operator, scope_within(scope))
            }
            Op::SetQuota { scope, .. } | Op::RemoveQuota { scope } => {
                (Role::Operator, tenant(&scope.tenant))
            }
            Op::DecideApproval { id, .. } => (
                Role::Approver,
                state
                    .approvals
                    .get(id)
                    .map_or(Global, |a| tenant(&a.tenant)),
            ),
            Op::RequestApproval { .. } | Op::ConsumeApproval { .. } | Op::AppendAudit { .. } => {
                (Role::Edge, Global)
            }
            // The leader's own sweeps.
            Op::ExpireSwitches | Op::ExpireApprovals => (Role::Peer, Global),
        },
    }
}

fn scope_within(scope: &Scope) -> Within {
    match scope {
        Scope::Global | Scope::Region { .. } | Scope::Tool { .. } => Within::Global,
        Scope::Tenant { tenant }
        | Scope::Agent { tenant, .. }
        | Scope::TenantTool { tenant, .. }
        | Scope::Session { tenant, .. } => Within::Tenant(tenant.clone()),
    }
}

fn query_within(q: &Query, state: &State) -> Within {
    let of = |t: &Option<String>| {
        t.as_ref()
            .map_or(Within::Global, |t| Within::Tenant(t.clone()))
    };
    match q {
        Query::List { tenant, .. } | Query::Approvals { tenant, .. } => of(tenant),
        Query::Audit { filter } => of(&filter.tenant),
        Query::AuditHead => Within::Anywhere,
        Query::Get { kind, key } => match kind {
            Kind::Switch => Scope::from_key(key).map_or(Within::Global, |s| scope_within(&s)),
            Kind::Approval => state
                .approvals
                .get(key)
                .map_or(Within::Global, |a| Within::Tenant(a.tenant.clone())),
            Kind::RoleBinding => state
                .roles
                .get(key)
                .and_then(|b| b.tenant.clone())
                .map_or(Within::Global, Within::Tenant),
            // Every other key starts with its tenant.
            Kind::Tenant
            | Kind::Agent
            | Kind::Upstream
            | Kind::Policy
            | Kind::Rollout
            | Kind::Quota => Within::Tenant(key.split('/').next().unwrap_or_default().to_string()),
        },
    }
}

/// The roles an identity holds, with where: its kind's own role, or its bindings.
fn holds(id: &Identity, state: &State, role: Role, within: &Within) -> bool {
    match id {
        Identity::Node(_) => role == Role::Peer,
        Identity::Edge(_) => role == Role::Edge,
        Identity::Operator(name) => state
            .roles
            .values()
            .filter(|b| b.operator == *name && b.role.covers(role))
            .any(|b| match (&b.tenant, within) {
                (None, _) => true,
                (Some(_), Within::Anywhere) => true,
                (Some(bt), Within::Tenant(t)) => bt == t,
                (Some(_), Within::Global) => false,
            }),
    }
}

/// Whether `id` may make `call`, given the role bindings in `state`.
pub fn authorize(id: &Identity, call: &Call<'_>, state: &State) -> Result<(), Denied> {
    let (role, within) = needs(call, state);
    if holds(id, state, role, &within) {
        return Ok(());
    }
    Err(Denied {
        identity: id.to_string(),
        what: call.describe(),
        role,
        within: within.to_string(),
    })
}

#[cfg(test)]
mod tests;
