//! Agent identities: creation (the key hash comes from the leader), revocation.

use std::collections::BTreeMap;

use super::*;

/// The fields of `Op::CreateAgent`.
pub(super) struct CreateAgent<'a> {
    pub tenant: &'a str,
    pub id: &'a str,
    pub roles: &'a [String],
    pub labels: &'a BTreeMap<String, String>,
    pub key_hash: &'a str,
}

pub(super) fn create(s: &State, cmd: &Command, c: &CreateAgent<'_>) -> Handled {
    let CreateAgent {
        tenant: t,
        id,
        roles,
        labels,
        key_hash,
    } = *c;
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
    if s.agents.values().any(|a| a.key_hash == key_hash) {
        return Err(ApplyError::AlreadyExists(
            "an agent with this key".to_string(),
        ));
    }
    check_room(s, Kind::Agent)?;
    put_one(Entity::Agent(Agent {
        tenant: t.to_string(),
        id: id.to_string(),
        roles: roles.to_vec(),
        labels: labels.clone(),
        key_hash: key_hash.to_string(),
        created_ms: cmd.time_ms,
        revoked_ms: None,
    }))
}

pub(super) fn revoke(s: &State, cmd: &Command, t: &str, id: &str) -> Handled {
    let mut a = agent(s, t, id)?.clone();
    if a.revoked_ms.is_some() {
        return Ok((Response::Entity(Box::new(Entity::Agent(a))), vec![]));
    }
    a.revoked_ms = Some(cmd.time_ms);
    put_one(Entity::Agent(a))
}
