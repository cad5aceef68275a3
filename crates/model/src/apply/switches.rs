//! Kill switches: engage, release, and the sweep that removes expired ones.

use super::*;

pub(super) fn engage(
    s: &State,
    cmd: &Command,
    revision: u64,
    scope: &Scope,
    reason: &str,
    ttl_ms: &Option<u64>,
) -> Handled {
    check_scope(scope)?;
    check_text("reason", reason)?;
    if *ttl_ms == Some(0) {
        return Err(invalid(
            "the switch would expire as it is engaged: give a positive ttl",
        ));
    }
    // A duration, resolved against the leader's stamped time.
    let expires_ms = ttl_ms.map(|t| cmd.time_ms.saturating_add(t));
    check_room(s, Kind::Switch)?;
    put_one(Entity::Switch(KillSwitch {
        scope: scope.clone(),
        reason: reason.to_string(),
        actor: cmd.actor.clone(),
        engaged_ms: cmd.time_ms,
        engaged_revision: revision,
        expires_ms,
    }))
}

pub(super) fn release(s: &State, scope: &Scope) -> Handled {
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

pub(super) fn expire(s: &State, cmd: &Command) -> Handled {
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

pub(super) fn check_scope(scope: &Scope) -> Result<(), ApplyError> {
    for (what, name) in scope.names() {
        validate_name(what, name)?;
    }
    Ok(())
}
