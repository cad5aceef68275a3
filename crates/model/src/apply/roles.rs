//! Operators' role bindings. Who may grant or revoke is `authz::authorize`'s to decide before a
//! command is proposed; apply checks the binding itself.

use super::*;
use crate::authz::{Role, RoleBinding};

fn check(operator: &str, role: Role, tenant: Option<&str>) -> Result<(), ApplyError> {
    validate_name("operator", operator)?;
    if !Role::GRANTABLE.contains(&role) {
        return Err(invalid(format!(
            "role `{role}` is not granted: it comes with an edge's or a node's certificate"
        )));
    }
    if let Some(t) = tenant {
        validate_name("tenant", t)?;
    }
    Ok(())
}

pub(super) fn grant(
    s: &State,
    cmd: &Command,
    operator: &str,
    role: Role,
    tenant_id: Option<&str>,
) -> Handled {
    check(operator, role, tenant_id)?;
    if let Some(t) = tenant_id {
        tenant(s, t)?;
    }
    let key = RoleBinding::key_of(operator, role, tenant_id);
    if let Some(b) = s.roles.get(&key) {
        // Granting what is held changes nothing (and keeps who granted it first).
        return Ok((
            Response::Entity(Box::new(Entity::RoleBinding(b.clone()))),
            vec![],
        ));
    }
    if s.roles.len() >= ENTITIES_PER_KIND_MAX {
        return Err(ApplyError::ResourceExhausted(format!(
            "{ENTITIES_PER_KIND_MAX} role bindings exist (entities_per_kind_max)"
        )));
    }
    put_one(Entity::RoleBinding(RoleBinding {
        operator: operator.to_string(),
        role,
        tenant: tenant_id.map(str::to_string),
        granted_by: cmd.actor.clone(),
        granted_ms: cmd.time_ms,
    }))
}

pub(super) fn revoke(s: &State, operator: &str, role: Role, tenant_id: Option<&str>) -> Handled {
    check(operator, role, tenant_id)?;
    let key = RoleBinding::key_of(operator, role, tenant_id);
    if !s.roles.contains_key(&key) {
        return Err(ApplyError::NotFound(format!("role binding `{key}`")));
    }
    // The last global admin stays: without one, no one could grant anything again.
    let last_admin = role == Role::Admin
        && tenant_id.is_none()
        && !s
            .roles
            .values()
            .any(|b| b.role == Role::Admin && b.tenant.is_none() && b.operator != operator);
    if last_admin {
        return Err(ApplyError::FailedPrecondition(format!(
            "`{operator}` is the last global admin; grant another first"
        )));
    }
    Ok((
        Response::Done,
        vec![Change::Delete {
            key: EntityKey {
                kind: Kind::RoleBinding,
                key,
            },
        }],
    ))
}
