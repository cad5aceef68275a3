//! The pure state transition of the core: `apply(state, command) -> Applied`, dispatching each
//! operation to the module of its concern (tenants, agents, upstreams, policy, rollouts,
//! switches, quotas, approvals, roles, audit); the lookups and checks they share are here.
//!
//! INVARIANT: a rejected command changes nothing but the revision (and, when it carries a request
//! id, the record of that id's answer). Handlers read the state immutably and return the changes
//! they want; the changes are committed to the state only when the handler succeeds, so no error
//! path can leave a half-applied command behind.
//! INVARIANT: no clock, randomness or I/O: time comes from `Command::time_ms`, and generated ids
//! derive from the revision.

use crate::audit::{AuditAppend, AuditHead, AuditRecord, record_hash};
use crate::change::Change;
use crate::command::{Command, Op, Response};
use crate::entity::{
    Agent, Approval, ApprovalState, Entity, EntityKey, KillSwitch, Kind, PolicyPackage, Quota,
    QuotaScope, Rollout, RolloutEvent, RolloutGuard, RolloutState, Scope, Tenant, Transport,
    Upstream, join_key,
};
use crate::error::ApplyError;
use crate::ids::{truncate_for_message, validate_name};
use crate::limits::*;
use crate::policy::package_digest;
use crate::request;
use crate::state::State;

mod agents;
mod approvals;
mod audit;
mod policy;
mod quotas;
mod roles;
mod rollouts;
mod switches;
mod tenants;
mod upstreams;

/// The outcome of applying one command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Applied {
    /// The revision this command produced.
    pub revision: u64,
    pub result: Result<Response, ApplyError>,
    /// Empty when the command was rejected, but for the record of its request id's answer.
    pub changes: Vec<Change>,
    /// Set when the request id had been answered: the revision of that first answer.
    pub replay_of: Option<u64>,
}

/// Applies one command to the state. A command whose request id was answered before changes
/// nothing but the revision and repeats that answer ([`crate::request`]).
pub fn apply(state: &mut State, cmd: &Command) -> Applied {
    state.revision += 1;
    let revision = state.revision;
    if let Some(id) = &cmd.request_id
        && let Err(e) = request::check_id(id)
    {
        return Applied {
            revision,
            result: Err(e),
            changes: Vec::new(),
            replay_of: None,
        };
    }
    if let Some((first, result)) = request::replay(state, cmd) {
        return Applied {
            revision,
            result,
            changes: Vec::new(),
            replay_of: Some(first),
        };
    }
    let (result, mut changes) = match handle(state, cmd, revision) {
        Ok((response, changes)) => (Ok(response), changes),
        Err(e) => (Err(e), Vec::new()),
    };
    changes.extend(request::remember(state, cmd, revision, &result));
    for c in &changes {
        state.apply_change(c);
    }
    Applied {
        revision,
        result,
        changes,
        replay_of: None,
    }
}

pub(super) type Handled = Result<(Response, Vec<Change>), ApplyError>;

pub(super) fn put(entity: Entity) -> Change {
    Change::Put { entity }
}

pub(super) fn put_one(entity: Entity) -> Handled {
    Ok((
        Response::Entity(Box::new(entity.clone())),
        vec![put(entity)],
    ))
}

pub(super) fn invalid(msg: impl Into<String>) -> ApplyError {
    ApplyError::InvalidArgument(msg.into())
}

pub(super) fn check_text(what: &str, s: &str) -> Result<(), ApplyError> {
    if s.len() > TEXT_BYTES_MAX {
        return Err(invalid(format!(
            "{what} is {} bytes; the limit is {TEXT_BYTES_MAX} (text_bytes_max)",
            s.len()
        )));
    }
    Ok(())
}

pub(super) fn check_hex_digest(what: &str, s: &str) -> Result<(), ApplyError> {
    let ok = s.len() == 64
        && s.bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
    if ok {
        Ok(())
    } else {
        Err(invalid(format!(
            "{what} `{}` must be 64 lowercase hex characters (a SHA-256 digest)",
            truncate_for_message(s)
        )))
    }
}

pub(super) fn check_room(s: &State, kind: Kind) -> Result<(), ApplyError> {
    if s.count(kind) >= ENTITIES_PER_KIND_MAX {
        return Err(ApplyError::ResourceExhausted(format!(
            "the cluster holds {ENTITIES_PER_KIND_MAX} {} entities already (entities_per_kind_max)",
            kind.as_str()
        )));
    }
    Ok(())
}

pub(super) fn tenant<'a>(s: &'a State, id: &str) -> Result<&'a Tenant, ApplyError> {
    s.tenants
        .get(id)
        .ok_or_else(|| ApplyError::NotFound(format!("tenant `{}`", truncate_for_message(id))))
}

pub(super) fn agent<'a>(s: &'a State, tenant: &str, id: &str) -> Result<&'a Agent, ApplyError> {
    s.agents.get(&join_key(&[tenant, id])).ok_or_else(|| {
        ApplyError::NotFound(format!(
            "agent `{}` in tenant `{}`",
            truncate_for_message(id),
            truncate_for_message(tenant)
        ))
    })
}

pub(super) fn policy<'a>(
    s: &'a State,
    tenant: &str,
    version: &str,
) -> Result<&'a PolicyPackage, ApplyError> {
    s.policies
        .get(&join_key(&[tenant, version]))
        .ok_or_else(|| {
            ApplyError::NotFound(format!(
                "policy version `{}` of tenant `{}`",
                truncate_for_message(version),
                truncate_for_message(tenant)
            ))
        })
}

fn handle(s: &State, cmd: &Command, revision: u64) -> Handled {
    check_text("actor", &cmd.actor)?;
    match &cmd.op {
        Op::CreateTenant {
            id,
            stale_allow_read_only,
        } => tenants::create_tenant(s, cmd, id, stale_allow_read_only),
        Op::SetTenantOptions {
            tenant: t,
            stale_allow_read_only,
        } => tenants::set_options(s, t, stale_allow_read_only),
        Op::CreateAgent {
            tenant,
            id,
            roles,
            labels,
            key_hash,
        } => agents::create(
            s,
            cmd,
            &agents::CreateAgent {
                tenant,
                id,
                roles,
                labels,
                key_hash,
            },
        ),
        Op::RevokeAgent { tenant: t, id } => agents::revoke(s, cmd, t, id),
        Op::AddUpstream {
            tenant,
            name,
            transport,
            pinned_tools,
        } => upstreams::add(
            s,
            cmd,
            &upstreams::AddUpstream {
                tenant,
                name,
                transport,
                pinned_tools,
            },
        ),
        Op::RemoveUpstream { tenant: t, name } => upstreams::remove(s, t, name),
        Op::PushPolicy { package } => policy::push_policy(s, cmd, package),
        Op::ActivatePolicy { tenant: t, version } => policy::activate(s, t, version),
        Op::SetShadowPolicy { tenant: t, version } => policy::set_shadow(s, t, version),
        Op::StartRollout {
            tenant: t,
            to_version,
            canary_percent,
            steps,
            guard,
        } => rollouts::start_rollout(s, cmd, t, to_version, *canary_percent, steps, guard),
        Op::AdvanceRollout {
            tenant: t,
            canary_percent,
        } => rollouts::advance(s, cmd, t, canary_percent),
        Op::PromoteRollout { tenant: t } => rollouts::promote(s, cmd, t),
        Op::PauseRollout { tenant: t, reason } => rollouts::pause(s, cmd, t, reason),
        Op::ResumeRollout { tenant: t } => rollouts::resume(s, cmd, t),
        Op::RollbackRollout { tenant: t, reason } => rollouts::rollback(s, cmd, t, reason),
        Op::EngageSwitch {
            scope,
            reason,
            ttl_ms,
        } => switches::engage(s, cmd, revision, scope, reason, ttl_ms),
        Op::ReleaseSwitch { scope } => switches::release(s, scope),
        Op::ExpireSwitches => switches::expire(s, cmd),
        Op::SetQuota {
            scope,
            calls_per_window,
            window_secs,
            cost_budget,
            period_secs,
        } => quotas::set_quota(
            s,
            cmd,
            scope,
            *calls_per_window,
            *window_secs,
            *cost_budget,
            *period_secs,
        ),
        Op::RemoveQuota { scope } => quotas::remove(s, scope),
        Op::RequestApproval {
            tenant,
            agent,
            tool,
            args_digest,
            reason,
            ttl_ms,
        } => approvals::request(
            s,
            cmd,
            revision,
            &approvals::RequestApproval {
                tenant,
                agent,
                tool,
                args_digest,
                reason,
                ttl_ms: *ttl_ms,
            },
        ),
        Op::DecideApproval { id, approve } => approvals::decide(s, cmd, id, approve),
        Op::ConsumeApproval {
            tenant,
            agent,
            tool,
            args_digest,
        } => approvals::consume(
            s,
            cmd,
            &approvals::ConsumeApproval {
                tenant,
                agent,
                tool,
                args_digest,
            },
        ),
        Op::ExpireApprovals => approvals::expire(s, cmd),
        Op::GrantRole {
            operator,
            role,
            tenant,
        } => roles::grant(s, cmd, operator, *role, tenant.as_deref()),
        Op::RevokeRole {
            operator,
            role,
            tenant,
        } => roles::revoke(s, operator, *role, tenant.as_deref()),
        Op::AppendAudit { edge_id, records } => audit::append_audit(s, cmd, edge_id, records),
    }
}

#[cfg(test)]
mod tests;
