//! Rollouts: moving a tenant to a new policy version through canary steps, with history.

use super::*;

pub(super) fn advance(s: &State, cmd: &Command, t: &str, canary_percent: &Option<u8>) -> Handled {
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

pub(super) fn promote(s: &State, cmd: &Command, t: &str) -> Handled {
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

pub(super) fn pause(s: &State, cmd: &Command, t: &str, reason: &str) -> Handled {
    check_text("reason", reason)?;
    let mut r = rollout_in(s, t, &[RolloutState::Running])?.clone();
    r.state = RolloutState::Paused;
    put_one(Entity::Rollout(with_event(r, cmd, "pause", reason)))
}

pub(super) fn resume(s: &State, cmd: &Command, t: &str) -> Handled {
    let mut r = rollout_in(s, t, &[RolloutState::Paused])?.clone();
    r.state = RolloutState::Running;
    put_one(Entity::Rollout(with_event(r, cmd, "resume", "")))
}

pub(super) fn rollback(s: &State, cmd: &Command, t: &str, reason: &str) -> Handled {
    check_text("reason", reason)?;
    let mut r = rollout_in(s, t, &[RolloutState::Running, RolloutState::Paused])?.clone();
    r.state = RolloutState::RolledBack;
    r.canary_percent = 0;
    r.steps.clear();
    put_one(Entity::Rollout(with_event(r, cmd, "rollback", reason)))
}

pub(super) fn start_rollout(
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

pub(super) fn active_rollout<'a>(s: &'a State, tenant: &str) -> Option<&'a Rollout> {
    s.rollouts
        .get(tenant)
        .filter(|r| matches!(r.state, RolloutState::Running | RolloutState::Paused))
}

pub(super) fn rollout_in<'a>(
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

pub(super) fn with_event(mut r: Rollout, cmd: &Command, action: &str, note: &str) -> Rollout {
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

pub(super) fn check_percent(p: u8) -> Result<(), ApplyError> {
    if p > 100 {
        return Err(invalid(format!(
            "canary percent {p} must be between 0 and 100"
        )));
    }
    Ok(())
}
