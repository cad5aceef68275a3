//! Policy packages (immutable versions) and which version a tenant enforces or shadows.

use super::rollouts::active_rollout;
use super::*;

pub(super) fn activate(s: &State, t: &str, version: &str) -> Handled {
    let mut tn = tenant(s, t)?.clone();
    policy(s, t, version)?;
    if active_rollout(s, t).is_some() {
        return Err(ApplyError::FailedPrecondition(format!(
            "tenant `{t}` has a rollout in progress; promote or roll it back first"
        )));
    }
    tn.policy_version = Some(version.to_string());
    put_one(Entity::Tenant(tn))
}

pub(super) fn set_shadow(s: &State, t: &str, version: &Option<String>) -> Handled {
    let mut tn = tenant(s, t)?.clone();
    if let Some(v) = version {
        policy(s, t, v)?;
    }
    tn.shadow_version = version.clone();
    put_one(Entity::Tenant(tn))
}

pub(super) fn push_policy(s: &State, cmd: &Command, p: &PolicyPackage) -> Handled {
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
