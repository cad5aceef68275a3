//! Tenants and their options.

use super::*;

pub(super) fn create_tenant(
    s: &State,
    cmd: &Command,
    id: &str,
    stale_allow_read_only: &bool,
) -> Handled {
    validate_name("tenant", id)?;
    if s.tenants.contains_key(id) {
        return Err(ApplyError::AlreadyExists(format!("tenant `{id}`")));
    }
    check_room(s, Kind::Tenant)?;
    put_one(Entity::Tenant(Tenant {
        id: id.to_string(),
        created_ms: cmd.time_ms,
        policy_version: None,
        shadow_version: None,
        stale_allow_read_only: *stale_allow_read_only,
    }))
}

pub(super) fn set_options(s: &State, t: &str, stale_allow_read_only: &bool) -> Handled {
    let mut t = tenant(s, t)?.clone();
    t.stale_allow_read_only = *stale_allow_read_only;
    put_one(Entity::Tenant(t))
}
