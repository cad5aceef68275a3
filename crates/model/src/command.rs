//! What enters the Raft log. Clients send an [`Op`]; the leader wraps it in a [`Command`] with
//! its wall-clock time and the actor, so that [`crate::apply()`] never reads a clock.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::audit::{AuditAppend, AuditEntry};
use crate::entity::{Entity, PolicyPackage, QuotaScope, RolloutGuard, Scope, Transport};
use crate::error::ApplyError;
use crate::ids::{AgentId, EdgeId, PolicyVersion, ServerName, TenantId};

/// One Raft log entry's application payload.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Command {
    /// Leader wall-clock time in milliseconds since the Unix epoch, stamped at proposal.
    pub time_ms: u64,
    /// Who asked (operator name, `edge:<id>`, or `system`).
    pub actor: String,
    pub op: Op,
    /// The client's id for this write: a command whose id was answered before is not applied
    /// again and answers as the first did (see [`crate::request`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_id: Option<String>,
}

/// A change to the replicated state.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
// Externally tagged: an internally tagged enum makes serde buffer the whole entry (thousands
// of audit records) into an intermediate tree before decoding it, on every node.
#[serde(rename_all = "snake_case")]
pub enum Op {
    CreateTenant {
        id: TenantId,
        #[serde(default)]
        stale_allow_read_only: bool,
    },
    SetTenantOptions {
        tenant: TenantId,
        stale_allow_read_only: bool,
    },
    /// `key_hash` is filled in by the leader, which generates the key and returns it once.
    CreateAgent {
        tenant: TenantId,
        id: AgentId,
        #[serde(default)]
        roles: Vec<String>,
        #[serde(default)]
        labels: BTreeMap<String, String>,
        #[serde(default)]
        key_hash: String,
    },
    RevokeAgent {
        tenant: TenantId,
        id: AgentId,
    },
    AddUpstream {
        tenant: TenantId,
        name: ServerName,
        transport: Transport,
        #[serde(default)]
        pinned_tools: BTreeMap<String, String>,
    },
    RemoveUpstream {
        tenant: TenantId,
        name: ServerName,
    },
    /// Adds an immutable policy version. The leader validates it with Cedar before proposing;
    /// apply checks the digest and immutability.
    PushPolicy {
        package: PolicyPackage,
    },
    /// Enforces a version directly (no rollout may be running).
    ActivatePolicy {
        tenant: TenantId,
        version: PolicyVersion,
    },
    SetShadowPolicy {
        tenant: TenantId,
        version: Option<PolicyVersion>,
    },
    StartRollout {
        tenant: TenantId,
        to_version: PolicyVersion,
        canary_percent: u8,
        #[serde(default)]
        steps: Vec<u8>,
        #[serde(default)]
        guard: RolloutGuard,
    },
    /// Moves the canary to `canary_percent`, or to the next planned step when absent.
    AdvanceRollout {
        tenant: TenantId,
        canary_percent: Option<u8>,
    },
    PromoteRollout {
        tenant: TenantId,
    },
    PauseRollout {
        tenant: TenantId,
        #[serde(default)]
        reason: String,
    },
    ResumeRollout {
        tenant: TenantId,
    },
    RollbackRollout {
        tenant: TenantId,
        #[serde(default)]
        reason: String,
    },
    EngageSwitch {
        scope: Scope,
        #[serde(default)]
        reason: String,
        /// Lifetime, resolved against the command's stamped leader time: the switch expires at
        /// `time_ms + ttl_ms` (so an operator's skewed clock cannot shift it). None: until
        /// released.
        ttl_ms: Option<u64>,
    },
    ReleaseSwitch {
        scope: Scope,
    },
    /// Removes switches whose expiry is at or before the command's time.
    ExpireSwitches,
    SetQuota {
        scope: QuotaScope,
        calls_per_window: Option<u64>,
        window_secs: u64,
        cost_budget: Option<u64>,
        period_secs: u64,
    },
    RemoveQuota {
        scope: QuotaScope,
    },
    RequestApproval {
        tenant: TenantId,
        agent: AgentId,
        tool: String,
        args_digest: String,
        #[serde(default)]
        reason: String,
        ttl_ms: Option<u64>,
    },
    DecideApproval {
        id: String,
        approve: bool,
    },
    /// Uses one approved, unexpired approval bound to exactly this call.
    ConsumeApproval {
        tenant: TenantId,
        agent: AgentId,
        tool: String,
        args_digest: String,
    },
    /// Marks pending and approved approvals whose expiry has passed as expired, and forgets
    /// finished ones past their retention (`APPROVALS_FINISHED_RETAIN_MS`).
    ExpireApprovals,
    /// Grants an operator a role, globally (`tenant: None`) or in one tenant.
    GrantRole {
        operator: String,
        role: crate::authz::Role,
        tenant: Option<TenantId>,
    },
    /// Takes a granted role back (effective at once: every call is authorized against the
    /// current bindings).
    RevokeRole {
        operator: String,
        role: crate::authz::Role,
        tenant: Option<TenantId>,
    },
    /// Appends decision records; records an edge already delivered are skipped.
    AppendAudit {
        edge_id: EdgeId,
        records: Vec<AuditEntry>,
    },
}

impl Op {
    /// A short stable name for metrics and logs.
    pub fn name(&self) -> &'static str {
        match self {
            Op::CreateTenant { .. } => "create_tenant",
            Op::SetTenantOptions { .. } => "set_tenant_options",
            Op::CreateAgent { .. } => "create_agent",
            Op::RevokeAgent { .. } => "revoke_agent",
            Op::AddUpstream { .. } => "add_upstream",
            Op::RemoveUpstream { .. } => "remove_upstream",
            Op::PushPolicy { .. } => "push_policy",
            Op::ActivatePolicy { .. } => "activate_policy",
            Op::SetShadowPolicy { .. } => "set_shadow_policy",
            Op::StartRollout { .. } => "start_rollout",
            Op::AdvanceRollout { .. } => "advance_rollout",
            Op::PromoteRollout { .. } => "promote_rollout",
            Op::PauseRollout { .. } => "pause_rollout",
            Op::ResumeRollout { .. } => "resume_rollout",
            Op::RollbackRollout { .. } => "rollback_rollout",
            Op::EngageSwitch { .. } => "engage_switch",
            Op::ReleaseSwitch { .. } => "release_switch",
            Op::ExpireSwitches => "expire_switches",
            Op::SetQuota { .. } => "set_quota",
            Op::RemoveQuota { .. } => "remove_quota",
            Op::RequestApproval { .. } => "request_approval",
            Op::DecideApproval { .. } => "decide_approval",
            Op::ConsumeApproval { .. } => "consume_approval",
            Op::ExpireApprovals => "expire_approvals",
            Op::GrantRole { .. } => "grant_role",
            Op::RevokeRole { .. } => "revoke_role",
            Op::AppendAudit { .. } => "append_audit",
        }
    }
}

/// What a successfully applied command answers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "type", content = "value")]
pub enum Response {
    /// The command changed nothing that needs reporting.
    Done,
    /// The entity as it is after the command.
    Entity(Box<Entity>),
    /// How many entities a sweep changed.
    Swept(u64),
    Audit(AuditAppend),
}

/// The Raft response: the revision the command produced and its outcome.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct CommandResult {
    /// The global revision after this entry (every applied command bumps it).
    pub revision: u64,
    /// `None` for Raft's own entries (blank, membership).
    pub outcome: Option<Result<Response, ApplyError>>,
    /// Set when the command's request id had been answered: the revision of that first answer,
    /// whose outcome `outcome` repeats (nothing was applied again).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replay_of: Option<u64>,
}
