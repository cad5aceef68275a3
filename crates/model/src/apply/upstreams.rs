//! A tenant's MCP servers and their pinned tool digests.

use std::collections::BTreeMap;

use super::*;

/// The fields of `Op::AddUpstream`.
pub(super) struct AddUpstream<'a> {
    pub tenant: &'a str,
    pub name: &'a str,
    pub transport: &'a Transport,
    pub pinned_tools: &'a BTreeMap<String, String>,
}

pub(super) fn add(s: &State, cmd: &Command, a: &AddUpstream<'_>) -> Handled {
    let AddUpstream {
        tenant: t,
        name,
        transport,
        pinned_tools,
    } = *a;
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
        tenant: t.to_string(),
        name: name.to_string(),
        transport: transport.clone(),
        pinned_tools: pinned_tools.clone(),
        created_ms: cmd.time_ms,
    }))
}

pub(super) fn remove(s: &State, t: &str, name: &str) -> Handled {
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
