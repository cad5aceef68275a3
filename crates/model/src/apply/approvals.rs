//! Approvals bound to one call: request (folded when identical), decide, consume once, expire.

use super::*;
use crate::approval::{CallKey, Standing, is_forgettable, standing};

/// The fields of `Op::RequestApproval`.
pub(super) struct RequestApproval<'a> {
    pub tenant: &'a str,
    pub agent: &'a str,
    pub tool: &'a str,
    pub args_digest: &'a str,
    pub reason: &'a str,
    pub ttl_ms: Option<u64>,
}

/// The fields of `Op::ConsumeApproval`.
pub(super) struct ConsumeApproval<'a> {
    pub tenant: &'a str,
    pub agent: &'a str,
    pub tool: &'a str,
    pub args_digest: &'a str,
}

pub(super) fn request(s: &State, cmd: &Command, revision: u64, r: &RequestApproval<'_>) -> Handled {
    let RequestApproval {
        tenant: t,
        agent: a,
        tool,
        args_digest,
        reason,
        ttl_ms,
    } = *r;
    agent(s, t, a)?;
    validate_name("tool", tool)?;
    check_hex_digest("args_digest", args_digest)?;
    check_text("reason", reason)?;
    // An agent that retries a call needing approval gets the same request back; a full queue
    // takes no new one.
    let key = CallKey {
        tenant: t,
        agent: a,
        tool,
        args_digest,
    };
    match standing(s, &key, cmd.time_ms) {
        Standing::Approved(x) | Standing::Pending(x) => {
            return Ok((
                Response::Entity(Box::new(Entity::Approval(x.clone()))),
                vec![],
            ));
        }
        Standing::Full(full) => return Err(ApplyError::ResourceExhausted(full.to_string())),
        Standing::Open => {}
    }
    let held = s.approvals.values().filter(|x| x.tenant == t).count();
    if held >= APPROVALS_PER_TENANT_MAX {
        return Err(ApplyError::ResourceExhausted(format!(
            "tenant `{t}` holds {APPROVALS_PER_TENANT_MAX} approvals (approvals_per_tenant_max)"
        )));
    }
    let ttl = ttl_ms.unwrap_or(APPROVAL_TTL_MS_DEFAULT);
    put_one(Entity::Approval(Approval {
        id: format!("apr-{revision}"),
        tenant: t.to_string(),
        agent: a.to_string(),
        tool: tool.to_string(),
        args_digest: args_digest.to_string(),
        state: ApprovalState::Pending,
        reason: reason.to_string(),
        requested_ms: cmd.time_ms,
        expires_ms: cmd.time_ms.saturating_add(ttl),
        decided_by: None,
        decided_ms: None,
        consumed_ms: None,
    }))
}

pub(super) fn decide(s: &State, cmd: &Command, id: &str, approve: &bool) -> Handled {
    let mut x =
        s.approvals.get(id).cloned().ok_or_else(|| {
            ApplyError::NotFound(format!("approval `{}`", truncate_for_message(id)))
        })?;
    if x.state != ApprovalState::Pending {
        return Err(ApplyError::FailedPrecondition(format!(
            "approval `{id}` is {:?}, not pending",
            x.state
        )));
    }
    if x.expires_ms <= cmd.time_ms {
        return Err(ApplyError::FailedPrecondition(format!(
            "approval `{id}` has expired"
        )));
    }
    x.state = if *approve {
        ApprovalState::Approved
    } else {
        ApprovalState::Denied
    };
    x.decided_by = Some(cmd.actor.clone());
    x.decided_ms = Some(cmd.time_ms);
    put_one(Entity::Approval(x))
}

pub(super) fn consume(s: &State, cmd: &Command, c: &ConsumeApproval<'_>) -> Handled {
    let ConsumeApproval {
        tenant: t,
        agent: a,
        tool,
        args_digest,
    } = *c;
    let found = s.approvals.values().find(|x| {
        x.tenant == t
            && x.agent == a
            && x.tool == tool
            && x.args_digest == args_digest
            && x.state == ApprovalState::Approved
            && x.expires_ms > cmd.time_ms
    });
    let mut x = found.cloned().ok_or_else(|| {
        ApplyError::FailedPrecondition("no approved, unused approval matches this call".to_string())
    })?;
    x.state = ApprovalState::Consumed;
    x.consumed_ms = Some(cmd.time_ms);
    put_one(Entity::Approval(x))
}

/// Expires live approvals past their time and forgets finished ones past their retention.
pub(super) fn expire(s: &State, cmd: &Command) -> Handled {
    let now = cmd.time_ms;
    let changes: Vec<Change> = s
        .approvals
        .values()
        .filter_map(|x| {
            if matches!(x.state, ApprovalState::Pending | ApprovalState::Approved)
                && x.expires_ms <= now
            {
                let mut x = x.clone();
                x.state = ApprovalState::Expired;
                Some(put(Entity::Approval(x)))
            } else if is_forgettable(x, now) {
                Some(Change::Delete {
                    key: EntityKey {
                        kind: Kind::Approval,
                        key: x.id.clone(),
                    },
                })
            } else {
                None
            }
        })
        .collect();
    Ok((Response::Swept(changes.len() as u64), changes))
}
