//! Quota definitions.

use super::*;

pub(super) fn remove(s: &State, scope: &QuotaScope) -> Handled {
    let key = EntityKey {
        kind: Kind::Quota,
        key: scope.key(),
    };
    if !s.quotas.contains_key(&key.key) {
        return Err(ApplyError::NotFound(format!("quota `{}`", key.key)));
    }
    Ok((Response::Done, vec![Change::Delete { key }]))
}

pub(super) fn set_quota(
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
