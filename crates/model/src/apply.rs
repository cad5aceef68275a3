//! The pure state transition of the core: `apply(state, command) -> Applied`.
//!
//! INVARIANT: a rejected command changes nothing but the revision. Handlers read the state
//! immutably and return the changes they want; the changes are committed to the state only when
//! the handler succeeds, so no error path can leave a half-applied command behind.
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
use crate::state::State;

/// The outcome of applying one command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Applied {
    /// The revision this command produced.
    pub revision: u64,
    pub result: Result<Response, ApplyError>,
    /// Empty when the command was rejected.
    pub changes: Vec<Change>,
}

/// Applies one command to the state.
pub fn apply(state: &mut State, cmd: &Command) -> Applied {
    state.revision += 1;
    let revision = state.revision;
    match handle(state, cmd, revision) {
        Ok((response, changes)) => {
            for c in &changes {
                state.apply_change(c);
            }
            Applied {
                revision,
                result: Ok(response),
                changes,
            }
        }
        Err(e) => Applied {
            revision,
            result: Err(e),
            changes: Vec::new(),
        },
    }
}

type Handled = Result<(Response, Vec<Change>), ApplyError>;

fn put(entity: Entity) -> Change {
    Change::Put { entity }
}

fn put_one(entity: Entity) -> Handled {
    Ok((
        Response::Entity(Box::new(entity.clone())),
        vec![put(entity)],
    ))
}

fn invalid(msg: impl Into<String>) -> ApplyError {
    ApplyError::InvalidArgument(msg.into())
}

fn check_text(what: &str, s: &str) -> Result<(), ApplyError> {
    if s.len() > TEXT_BYTES_MAX {
        return Err(invalid(format!(
            "{what} is {} bytes; the limit is {TEXT_BYTES_MAX} (text_bytes_max)",
            s.len()
        )));
    }
    Ok(())
}

fn check_hex_digest(what: &str, s: &str) -> Result<(), ApplyError> {
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

fn check_room(s: &State, kind: Kind) -> Result<(), ApplyError> {
    if s.count(kind) >= ENTITIES_PER_KIND_MAX {
        return Err(ApplyError::ResourceExhausted(format!(
            "the cluster holds {ENTITIES_PER_KIND_MAX} {} entities already (entities_per_kind_max)",
            kind.as_str()
        )));
    }
    Ok(())
}

fn tenant<'a>(s: &'a State, id: &str) -> Result<&'a Tenant, ApplyError> {
    s.tenants
        .get(id)
        .ok_or_else(|| ApplyError::NotFound(format!("tenant `{}`", truncate_for_message(id))))
}

fn agent<'a>(s: &'a State, tenant: &str, id: &str) -> Result<&'a Agent, ApplyError> {
    s.agents.get(&join_key(&[tenant, id])).ok_or_else(|| {
        ApplyError::NotFound(format!(
            "agent `{}` in tenant `{}`",
            truncate_for_message(id),
            truncate_for_message(tenant)
        ))
    })
}

fn policy<'a>(s: &'a State, tenant: &str, version: &str) -> Result<&'a PolicyPackage, ApplyError> {
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

fn active_rollout<'a>(s: &'a State, tenant: &str) -> Option<&'a Rollout> {
    s.rollouts
        .get(tenant)
        .filter(|r| matches!(r.state, RolloutState::Running | RolloutState::Paused))
}

fn rollout_in<'a>(
    s: &'a State,
    tenant: &str,
    states: &[RolloutState],
) -> Result<&'a Rollout, ApplyError> {
    let r = s.rollouts.get(tenant).ok_or_else(|| {
        ApplyError::NotFound(format!(
            "rollout of tenant `{}`",
            truncate_for_message(tenant)
        ))
    })?;
    if !states.contains(&r.state) {
        return Err(ApplyError::FailedPrecondition(format!(
            "the rollout of tenant `{tenant}` is {:?}; this needs it to be {}",
            r.state,
            states
                .iter()
                .map(|s| format!("{s:?}"))
                .collect::<Vec<_>>()
                .join(" or ")
        )));
    }
    Ok(r)
}

fn with_event(mut r: Rollout, cmd: &Command, action: &str, note: &str) -> Rollout {
    r.history.push(RolloutEvent {
        time_ms: cmd.time_ms,
        actor: cmd.actor.clone(),
        action: action.to_string(),
        canary_percent: r.canary_percent,
        note: note.to_string(),
    });
    if r.history.len() > ROLLOUT_HISTORY_MAX {
        let excess = r.history.len() - ROLLOUT_HISTORY_MAX;
        r.history.drain(..excess);
    }
    r
}

fn check_percent(p: u8) -> Result<(), ApplyError> {
    if p > 100 {
        return Err(invalid(format!(
            "canary percent {p} must be between 0 and 100"
        )));
    }
    Ok(())
}

fn check_scope(scope: &Scope) -> Result<(), ApplyError> {
    for (what, name) in scope.names() {
        validate_name(what, name)?;
    }
    Ok(())
}

fn handle(s: &State, cmd: &Command, revision: u64) -> Handled {
    check_text("actor", &cmd.actor)?;
    match &cmd.op {
        Op::CreateTenant {
            id,
            stale_allow_read_only,
        } => {
            validate_name("tenant", id)?;
            if s.tenants.contains_key(id) {
                return Err(ApplyError::AlreadyExists(format!("tenant `{id}`")));
            }
            check_room(s, Kind::Tenant)?;
            put_one(Entity::Tenant(Tenant {
                id: id.clone(),
                created_ms: cmd.time_ms,
                policy_version: None,
                shadow_version: None,
                stale_allow_read_only: *stale_allow_read_only,
            }))
        }
        Op::SetTenantOptions {
            tenant: t,
            stale_allow_read_only,
        } => {
            let mut t = tenant(s, t)?.clone();
            t.stale_allow_read_only = *stale_allow_read_only;
            put_one(Entity::Tenant(t))
        }
        Op::CreateAgent {
            tenant: t,
            id,
            roles,
            labels,
            key_hash,
        } => {
            tenant(s, t)?;
            validate_name("agent", id)?;
            if roles.len() > AGENT_ROLES_MAX || labels.len() > AGENT_ROLES_MAX {
                return Err(invalid(format!(
                    "an agent has at most {AGENT_ROLES_MAX} roles and {AGENT_ROLES_MAX} labels (agent_roles_max)"
                )));
            }
            for r in roles {
                validate_name("role", r)?;
            }
            for (k, v) in labels {
                validate_name("label", k)?;
                check_text("label value", v)?;
            }
            check_hex_digest("key_hash", key_hash)?;
            if s.agents.contains_key(&join_key(&[t, id])) {
                return Err(ApplyError::AlreadyExists(format!(
                    "agent `{id}` in tenant `{t}`"
                )));
            }
            if s.agents.values().any(|a| &a.key_hash == key_hash) {
                return Err(ApplyError::AlreadyExists(
                    "an agent with this key".to_string(),
                ));
            }
            check_room(s, Kind::Agent)?;
            put_one(Entity::Agent(Agent {
                tenant: t.clone(),
                id: id.clone(),
                roles: roles.clone(),
                labels: labels.clone(),
                key_hash: key_hash.clone(),
                created_ms: cmd.time_ms,
                revoked_ms: None,
            }))
        }
        Op::RevokeAgent { tenant: t, id } => {
            let mut a = agent(s, t, id)?.clone();
            if a.revoked_ms.is_some() {
                return Ok((Response::Entity(Box::new(Entity::Agent(a))), vec![]));
            }
            a.revoked_ms = Some(cmd.time_ms);
            put_one(Entity::Agent(a))
        }
        Op::AddUpstream {
            tenant: t,
            name,
            transport,
            pinned_tools,
        } => {
            tenant(s, t)?;
            validate_name("server", name)?;
            match transport {
                Transport::Http { url } => {
                    check_text("url", url)?;
                    if !(url.starts_with("http://") || url.starts_with("https://")) {
                        return Err(invalid(format!(
                            "upstream url `{}` must start with http:// or https://",
                            truncate_for_message(url)
                        )));
                    }
                }
                Transport::Stdio { command, args } => {
                    if command.is_empty() {
                        return Err(invalid("stdio upstream needs a command"));
                    }
                    check_text("command", command)?;
                    check_text("arguments", &args.join(" "))?;
                }
            }
            if pinned_tools.len() > PINNED_TOOLS_MAX {
                return Err(invalid(format!(
                    "at most {PINNED_TOOLS_MAX} pinned tools per upstream (pinned_tools_max)"
                )));
            }
            for (tool, digest) in pinned_tools {
                validate_name("tool", tool)?;
                check_hex_digest("tool digest", digest)?;
            }
            if s.upstreams.contains_key(&join_key(&[t, name])) {
                return Err(ApplyError::AlreadyExists(format!(
                    "upstream `{name}` in tenant `{t}`"
                )));
            }
            check_room(s, Kind::Upstream)?;
            put_one(Entity::Upstream(Upstream {
                tenant: t.clone(),
                name: name.clone(),
                transport: transport.clone(),
                pinned_tools: pinned_tools.clone(),
                created_ms: cmd.time_ms,
            }))
        }
        Op::RemoveUpstream { tenant: t, name } => {
            let key = EntityKey {
                kind: Kind::Upstream,
                key: join_key(&[t, name]),
            };
            if !s.upstreams.contains_key(&key.key) {
                return Err(ApplyError::NotFound(format!(
                    "upstream `{}` in tenant `{}`",
                    truncate_for_message(name),
                    truncate_for_message(t)
                )));
            }
            Ok((Response::Done, vec![Change::Delete { key }]))
        }
        Op::PushPolicy { package } => push_policy(s, cmd, package),
        Op::ActivatePolicy { tenant: t, version } => {
            let mut tn = tenant(s, t)?.clone();
            policy(s, t, version)?;
            if active_rollout(s, t).is_some() {
                return Err(ApplyError::FailedPrecondition(format!(
                    "tenant `{t}` has a rollout in progress; promote or roll it back first"
                )));
            }
            tn.policy_version = Some(version.clone());
            put_one(Entity::Tenant(tn))
        }
        Op::SetShadowPolicy { tenant: t, version } => {
            let mut tn = tenant(s, t)?.clone();
            if let Some(v) = version {
                policy(s, t, v)?;
            }
            tn.shadow_version = version.clone();
            put_one(Entity::Tenant(tn))
        }
        Op::StartRollout {
            tenant: t,
            to_version,
            canary_percent,
            steps,
            guard,
        } => start_rollout(s, cmd, t, to_version, *canary_percent, steps, guard),
        Op::AdvanceRollout {
            tenant: t,
            canary_percent,
        } => {
            let mut r = rollout_in(s, t, &[RolloutState::Running])?.clone();
            let next = match canary_percent.or_else(|| r.steps.first().copied()) {
                Some(p) => p,
                None => {
                    return Err(ApplyError::FailedPrecondition(format!(
                        "the rollout of tenant `{t}` has no further steps; promote it"
                    )));
                }
            };
            check_percent(next)?;
            if next <= r.canary_percent {
                return Err(invalid(format!(
                    "canary percent {next} must be above the current {}",
                    r.canary_percent
                )));
            }
            r.canary_percent = next;
            r.steps.retain(|p| *p > next);
            put_one(Entity::Rollout(with_event(r, cmd, "advance", "")))
        }
        Op::PromoteRollout { tenant: t } => {
            let mut r = rollout_in(s, t, &[RolloutState::Running, RolloutState::Paused])?.clone();
            let mut tn = tenant(s, t)?.clone();
            r.state = RolloutState::Promoted;
            r.canary_percent = 100;
            r.steps.clear();
            tn.policy_version = Some(r.to_version.clone());
            let r = with_event(r, cmd, "promote", "");
            Ok((
                Response::Entity(Box::new(Entity::Rollout(r.clone()))),
                vec![put(Entity::Rollout(r)), put(Entity::Tenant(tn))],
            ))
        }
        Op::PauseRollout { tenant: t, reason } => {
            check_text("reason", reason)?;
            let mut r = rollout_in(s, t, &[RolloutState::Running])?.clone();
            r.state = RolloutState::Paused;
            put_one(Entity::Rollout(with_event(r, cmd, "pause", reason)))
        }
        Op::ResumeRollout { tenant: t } => {
            let mut r = rollout_in(s, t, &[RolloutState::Paused])?.clone();
            r.state = RolloutState::Running;
            put_one(Entity::Rollout(with_event(r, cmd, "resume", "")))
        }
        Op::RollbackRollout { tenant: t, reason } => {
            check_text("reason", reason)?;
            let mut r = rollout_in(s, t, &[RolloutState::Running, RolloutState::Paused])?.clone();
            r.state = RolloutState::RolledBack;
            r.canary_percent = 0;
            r.steps.clear();
            put_one(Entity::Rollout(with_event(r, cmd, "rollback", reason)))
        }
        Op::EngageSwitch {
            scope,
            reason,
            expires_ms,
        } => {
            check_scope(scope)?;
            check_text("reason", reason)?;
            if let Some(e) = expires_ms
                && *e <= cmd.time_ms
            {
                return Err(invalid("the switch would expire before it is engaged"));
            }
            check_room(s, Kind::Switch)?;
            put_one(Entity::Switch(KillSwitch {
                scope: scope.clone(),
                reason: reason.clone(),
                actor: cmd.actor.clone(),
                engaged_ms: cmd.time_ms,
                engaged_revision: revision,
                expires_ms: *expires_ms,
            }))
        }
        Op::ReleaseSwitch { scope } => {
            check_scope(scope)?;
            let key = EntityKey {
                kind: Kind::Switch,
                key: scope.key(),
            };
            if !s.switches.contains_key(&key.key) {
                return Err(ApplyError::NotFound(format!("kill switch `{}`", key.key)));
            }
            Ok((Response::Done, vec![Change::Delete { key }]))
        }
        Op::ExpireSwitches => {
            let changes: Vec<Change> = s
                .switches
                .iter()
                .filter(|(_, w)| w.expires_ms.is_some_and(|e| e <= cmd.time_ms))
                .map(|(k, _)| Change::Delete {
                    key: EntityKey {
                        kind: Kind::Switch,
                        key: k.clone(),
                    },
                })
                .collect();
            Ok((Response::Swept(changes.len() as u64), changes))
        }
        Op::SetQuota {
            scope,
            calls_per_window,
            window_secs,
            cost_budget,
            period_secs,
        } => set_quota(
            s,
            cmd,
            scope,
            *calls_per_window,
            *window_secs,
            *cost_budget,
            *period_secs,
        ),
        Op::RemoveQuota { scope } => {
            let key = EntityKey {
                kind: Kind::Quota,
                key: scope.key(),
            };
            if !s.quotas.contains_key(&key.key) {
                return Err(ApplyError::NotFound(format!("quota `{}`", key.key)));
            }
            Ok((Response::Done, vec![Change::Delete { key }]))
        }
        Op::RequestApproval {
            tenant: t,
            agent: a,
            tool,
            args_digest,
            reason,
            ttl_ms,
        } => {
            agent(s, t, a)?;
            validate_name("tool", tool)?;
            check_hex_digest("args_digest", args_digest)?;
            check_text("reason", reason)?;
            // An agent that retries a call needing approval gets the same request back.
            let live = s.approvals.values().find(|x| {
                &x.tenant == t
                    && &x.agent == a
                    && &x.tool == tool
                    && &x.args_digest == args_digest
                    && matches!(x.state, ApprovalState::Pending | ApprovalState::Approved)
                    && x.expires_ms > cmd.time_ms
            });
            if let Some(x) = live {
                return Ok((
                    Response::Entity(Box::new(Entity::Approval(x.clone()))),
                    vec![],
                ));
            }
            let held = s.approvals.values().filter(|x| &x.tenant == t).count();
            if held >= APPROVALS_PER_TENANT_MAX {
                return Err(ApplyError::ResourceExhausted(format!(
                    "tenant `{t}` holds {APPROVALS_PER_TENANT_MAX} approvals (approvals_per_tenant_max)"
                )));
            }
            let ttl = ttl_ms.unwrap_or(APPROVAL_TTL_MS_DEFAULT);
            put_one(Entity::Approval(Approval {
                id: format!("apr-{revision}"),
                tenant: t.clone(),
                agent: a.clone(),
                tool: tool.clone(),
                args_digest: args_digest.clone(),
                state: ApprovalState::Pending,
                reason: reason.clone(),
                requested_ms: cmd.time_ms,
                expires_ms: cmd.time_ms.saturating_add(ttl),
                decided_by: None,
                decided_ms: None,
                consumed_ms: None,
            }))
        }
        Op::DecideApproval { id, approve } => {
            let mut x = s.approvals.get(id).cloned().ok_or_else(|| {
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
        Op::ConsumeApproval {
            tenant: t,
            agent: a,
            tool,
            args_digest,
        } => {
            let found = s.approvals.values().find(|x| {
                &x.tenant == t
                    && &x.agent == a
                    && &x.tool == tool
                    && &x.args_digest == args_digest
                    && x.state == ApprovalState::Approved
                    && x.expires_ms > cmd.time_ms
            });
            let mut x = found.cloned().ok_or_else(|| {
                ApplyError::FailedPrecondition(
                    "no approved, unused approval matches this call".to_string(),
                )
            })?;
            x.state = ApprovalState::Consumed;
            x.consumed_ms = Some(cmd.time_ms);
            put_one(Entity::Approval(x))
        }
        Op::ExpireApprovals => {
            let changes: Vec<Change> = s
                .approvals
                .values()
                .filter(|x| {
                    matches!(x.state, ApprovalState::Pending | ApprovalState::Approved)
                        && x.expires_ms <= cmd.time_ms
                })
                .map(|x| {
                    let mut x = x.clone();
                    x.state = ApprovalState::Expired;
                    put(Entity::Approval(x))
                })
                .collect();
            Ok((Response::Swept(changes.len() as u64), changes))
        }
        Op::AppendAudit { edge_id, records } => append_audit(s, cmd, edge_id, records),
    }
}

fn push_policy(s: &State, cmd: &Command, p: &PolicyPackage) -> Handled {
    tenant(s, &p.tenant)?;
    validate_name("policy version", &p.version)?;
    check_text("author", &p.author)?;
    check_text("description", &p.description)?;
    let size = p.policies.len() + p.schema.len() + p.entities.len();
    if size > POLICY_PACKAGE_BYTES_MAX {
        return Err(invalid(format!(
            "policy package is {size} bytes; the limit is {POLICY_PACKAGE_BYTES_MAX} (policy_package_bytes_max)"
        )));
    }
    let digest = package_digest(&p.policies, &p.schema, &p.entities);
    if digest != p.sha256 {
        return Err(invalid(format!(
            "policy package sha256 `{}` does not match its content (`{digest}`)",
            truncate_for_message(&p.sha256)
        )));
    }
    if let Some(existing) = s.policies.get(&join_key(&[&p.tenant, &p.version])) {
        if existing.sha256 == p.sha256 {
            return Ok((
                Response::Entity(Box::new(Entity::Policy(existing.clone()))),
                vec![],
            ));
        }
        return Err(ApplyError::AlreadyExists(format!(
            "policy version `{}` of tenant `{}` exists with other content; versions are immutable, push a new version",
            p.version, p.tenant
        )));
    }
    check_room(s, Kind::Policy)?;
    let mut stored = p.clone();
    stored.created_ms = cmd.time_ms;
    if stored.author.is_empty() {
        stored.author = cmd.actor.clone();
    }
    put_one(Entity::Policy(stored))
}

fn start_rollout(
    s: &State,
    cmd: &Command,
    t: &str,
    to_version: &str,
    canary_percent: u8,
    steps: &[u8],
    guard: &RolloutGuard,
) -> Handled {
    let tn = tenant(s, t)?;
    policy(s, t, to_version)?;
    check_percent(canary_percent)?;
    if steps.len() > ROLLOUT_STEPS_MAX {
        return Err(invalid(format!(
            "at most {ROLLOUT_STEPS_MAX} rollout steps (rollout_steps_max)"
        )));
    }
    let mut prev = canary_percent;
    for p in steps {
        check_percent(*p)?;
        if *p <= prev {
            return Err(invalid(
                "rollout steps must increase and start above the canary percent",
            ));
        }
        prev = *p;
    }
    for g in [guard.max_deny_rate_percent, guard.max_error_rate_percent]
        .into_iter()
        .flatten()
    {
        check_percent(g)?;
    }
    if tn.policy_version.as_deref() == Some(to_version) {
        return Err(ApplyError::FailedPrecondition(format!(
            "tenant `{t}` already enforces `{to_version}`"
        )));
    }
    if active_rollout(s, t).is_some() {
        return Err(ApplyError::FailedPrecondition(format!(
            "tenant `{t}` has a rollout in progress; promote or roll it back first"
        )));
    }
    let r = Rollout {
        tenant: t.to_string(),
        from_version: tn.policy_version.clone(),
        to_version: to_version.to_string(),
        canary_percent,
        steps: steps.to_vec(),
        guard: guard.clone(),
        state: RolloutState::Running,
        history: Vec::new(),
    };
    put_one(Entity::Rollout(with_event(r, cmd, "start", "")))
}

fn set_quota(
    s: &State,
    cmd: &Command,
    scope: &QuotaScope,
    calls_per_window: Option<u64>,
    window_secs: u64,
    cost_budget: Option<u64>,
    period_secs: u64,
) -> Handled {
    tenant(s, &scope.tenant)?;
    if let Some(a) = &scope.agent {
        validate_name("agent", a)?;
    }
    if let Some(t) = &scope.tool {
        validate_name("tool", t)?;
    }
    if calls_per_window.is_none() && cost_budget.is_none() {
        return Err(invalid("a quota needs calls_per_window or cost_budget"));
    }
    if calls_per_window.is_some() && window_secs == 0 {
        return Err(invalid("window_secs must be positive"));
    }
    if cost_budget.is_some() && period_secs == 0 {
        return Err(invalid("period_secs must be positive"));
    }
    check_room(s, Kind::Quota)?;
    put_one(Entity::Quota(Quota {
        scope: scope.clone(),
        calls_per_window,
        window_secs,
        cost_budget,
        period_secs,
        updated_ms: cmd.time_ms,
    }))
}

fn append_audit(
    s: &State,
    cmd: &Command,
    edge_id: &str,
    entries: &[crate::audit::AuditEntry],
) -> Handled {
    validate_name("edge id", edge_id)?;
    if entries.len() > AUDIT_BATCH_RECORDS_MAX {
        return Err(invalid(format!(
            "audit batch has {} records; the limit is {AUDIT_BATCH_RECORDS_MAX} (audit_batch_records_max)",
            entries.len()
        )));
    }
    let acked = s.audit_acks.get(edge_id).copied().unwrap_or(0);
    let mut last = acked;
    let mut head: AuditHead = s.audit_head.clone();
    let mut records = Vec::new();
    let mut duplicates = 0u64;
    for e in entries {
        if e.edge_seq <= acked {
            duplicates += 1;
            continue;
        }
        if e.edge_seq <= last {
            return Err(invalid(format!(
                "audit batch from edge `{edge_id}` is not in edge_seq order at {}",
                e.edge_seq
            )));
        }
        let size = serde_json::to_vec(e).map(|v| v.len()).unwrap_or(usize::MAX);
        if size > AUDIT_RECORD_BYTES_MAX {
            return Err(invalid(format!(
                "audit record {} is {size} bytes; the limit is {AUDIT_RECORD_BYTES_MAX} (audit_record_bytes_max)",
                e.edge_seq
            )));
        }
        let seq = head.next_seq;
        let hash = record_hash(&head.last_hash, seq, edge_id, e, cmd.time_ms);
        records.push(AuditRecord {
            seq,
            edge_id: edge_id.to_string(),
            entry: e.clone(),
            committed_ms: cmd.time_ms,
            prev_hash: std::mem::replace(&mut head.last_hash, hash.clone()),
            hash,
        });
        head.next_seq += 1;
        last = e.edge_seq;
    }
    let result = AuditAppend {
        appended: records.len() as u64,
        duplicates,
        first_seq: records.first().map(|r| r.seq),
        last_seq: records.last().map(|r| r.seq),
        acked_edge_seq: last,
    };
    let changes = if records.is_empty() {
        vec![]
    } else {
        vec![Change::Audit {
            records,
            head,
            edge_id: edge_id.to_string(),
            acked_edge_seq: last,
        }]
    };
    Ok((Response::Audit(result), changes))
}

#[cfg(test)]
mod tests;
