//! `tenant`, `agent` and `upstream`.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::Path;

use agentgate_model::Op;
use agentgate_model::entity::{Entity, Kind, Transport};
use serde_json::{Value, json};

use super::{Ctx, entity_json, entity_value, key_value};
use crate::cli::{AgentCmd, TenantCmd, UpstreamCmd};
use crate::error::{CliError, Exit, Result};
use crate::out::{opt, table, time};

pub async fn tenant(ctx: &mut Ctx, cmd: TenantCmd) -> Result<()> {
    match cmd {
        TenantCmd::Create {
            tenant,
            stale_allow_read_only,
        } => {
            let op = Op::CreateTenant {
                id: tenant.clone(),
                stale_allow_read_only,
            };
            ctx.change(op, &format!("created tenant `{tenant}`"))
                .await?;
        }
        TenantCmd::List => {
            let all = ctx.client.list(Kind::Tenant, None).await?;
            let rows = all
                .iter()
                .filter_map(|e| match e {
                    Entity::Tenant(t) => Some([
                        t.id.clone(),
                        opt(t.policy_version.as_deref()),
                        opt(t.shadow_version.as_deref()),
                        t.stale_allow_read_only.to_string(),
                        time(t.created_ms),
                    ]),
                    _ => None,
                })
                .collect();
            emit_list(ctx, &all, || {
                table(
                    ["TENANT", "POLICY", "SHADOW", "STALE-READ-ONLY", "CREATED"],
                    rows,
                )
            });
        }
        TenantCmd::Show { tenant } => {
            let Some(Entity::Tenant(t)) = ctx.client.get(Kind::Tenant, &tenant).await? else {
                return Err(not_found("tenant", &tenant));
            };
            let agents = ctx.client.list(Kind::Agent, Some(&tenant)).await?.len();
            let upstreams = ctx.client.list(Kind::Upstream, Some(&tenant)).await?.len();
            let policies = ctx.client.list(Kind::Policy, Some(&tenant)).await?.len();
            let mut v = entity_value(&Entity::Tenant(t.clone()));
            if let Value::Object(m) = &mut v {
                m.insert(
                    "counts".into(),
                    json!({"agents": agents, "upstreams": upstreams, "policy_versions": policies}),
                );
            }
            ctx.out.emit(&v, || {
                format!(
                    "tenant {}\n  enforced policy: {}\n  shadow policy: {}\n  stale edges allow read-only tools: {}\n  created: {}\n  agents: {agents}  upstreams: {upstreams}  policy versions: {policies}",
                    t.id,
                    opt(t.policy_version.as_deref()),
                    opt(t.shadow_version.as_deref()),
                    t.stale_allow_read_only,
                    time(t.created_ms)
                )
            });
        }
    }
    Ok(())
}

pub async fn agent(ctx: &mut Ctx, cmd: AgentCmd) -> Result<()> {
    match cmd {
        AgentCmd::Create {
            tenant,
            agent,
            roles,
            labels,
            key_file,
        } => {
            let labels = labels
                .iter()
                .map(|l| key_value(l, "label"))
                .collect::<Result<BTreeMap<_, _>>>()?;
            // The file is created before the agent, so a key is never minted with nowhere to go.
            let mut file = key_file.as_deref().map(create_secret_file).transpose()?;
            let op = Op::CreateAgent {
                tenant: tenant.clone(),
                id: agent.clone(),
                roles,
                labels,
                key_hash: String::new(),
            };
            let p = match ctx.client.propose(op).await {
                Ok(p) => p,
                Err(e) => {
                    if let Some(f) = &key_file {
                        let _ = std::fs::remove_file(f);
                    }
                    return Err(e);
                }
            };
            let Some(api_key) = p.api_key.clone() else {
                // The first attempt created the agent and its reply (with the key) was lost; the
                // retry answered from the record, and the key is kept nowhere.
                if let Some(f) = &key_file {
                    let _ = std::fs::remove_file(f);
                }
                return Err(CliError::new(
                    Exit::Error,
                    "key_lost",
                    format!("agent `{agent}` was created, but the reply carrying its key was lost"),
                )
                .hint(format!(
                    "the key is stored nowhere: run `agentgate-admin agent revoke {tenant} {agent}` and create the agent under a new name"
                )));
            };
            let entity = entity_json(&p.response);
            let written = match (&mut file, &key_file) {
                (Some(fh), Some(f)) => {
                    match writeln!(fh, "{api_key}").and_then(|()| fh.sync_all()) {
                        Ok(()) => Some(f.clone()),
                        Err(e) => {
                            eprintln!(
                                "warning: cannot write {}: {e}; the key is printed below instead",
                                f.display()
                            );
                            None
                        }
                    }
                }
                _ => None,
            };
            if let Some(f) = written {
                ctx.out.emit(
                    &json!({"ok": true, "revision": p.revision, "entity": entity, "key_file": f}),
                    || {
                        format!(
                            "created agent `{agent}` in tenant `{tenant}` (revision {})\napi key written to {} (mode 0600); it is not stored anywhere else",
                            p.revision,
                            f.display()
                        )
                    },
                );
            } else {
                ctx.out.emit(
                    &json!({"ok": true, "revision": p.revision, "entity": entity, "api_key": api_key}),
                    || {
                        format!(
                            "created agent `{agent}` in tenant `{tenant}` (revision {})\napi key (shown once, store it now; agents send it as `Authorization: Bearer KEY`):\n{}",
                            p.revision, api_key
                        )
                    },
                );
            }
        }
        AgentCmd::List { tenant } => {
            let all = ctx.client.list(Kind::Agent, tenant.as_deref()).await?;
            let rows = all
                .iter()
                .filter_map(|e| match e {
                    Entity::Agent(a) => Some([
                        a.tenant.clone(),
                        a.id.clone(),
                        a.roles.join(","),
                        a.labels
                            .iter()
                            .map(|(k, v)| format!("{k}={v}"))
                            .collect::<Vec<_>>()
                            .join(","),
                        if a.revoked_ms.is_some() {
                            "revoked".to_string()
                        } else {
                            "active".to_string()
                        },
                        time(a.created_ms),
                    ]),
                    _ => None,
                })
                .collect();
            emit_list(ctx, &all, || {
                table(
                    ["TENANT", "AGENT", "ROLES", "LABELS", "STATE", "CREATED"],
                    rows,
                )
            });
        }
        AgentCmd::Revoke { tenant, agent } => {
            let op = Op::RevokeAgent {
                tenant: tenant.clone(),
                id: agent.clone(),
            };
            ctx.change(
                op,
                &format!("revoked agent `{agent}` of tenant `{tenant}`: its key no longer works"),
            )
            .await?;
        }
    }
    Ok(())
}

pub async fn upstream(ctx: &mut Ctx, cmd: UpstreamCmd) -> Result<()> {
    match cmd {
        UpstreamCmd::Add {
            tenant,
            name,
            url,
            pins,
        } => {
            if !(url.starts_with("http://") || url.starts_with("https://")) {
                return Err(CliError::invalid(format!(
                    "--url `{url}` is not an http:// or https:// URL"
                ))
                .hint(
                    "give the upstream's Streamable HTTP endpoint, e.g. http://127.0.0.1:8000/mcp",
                ));
            }
            let pinned_tools = pins
                .iter()
                .map(|p| key_value(p, "pin"))
                .collect::<Result<BTreeMap<_, _>>>()?;
            let op = Op::AddUpstream {
                tenant: tenant.clone(),
                name: name.clone(),
                transport: Transport::Http { url: url.clone() },
                pinned_tools,
            };
            ctx.change(
                op,
                &format!(
                    "added upstream `{name}` ({url}) to tenant `{tenant}`; agents reach it at /t/{tenant}/{name}/mcp on any edge"
                ),
            )
            .await?;
        }
        UpstreamCmd::List { tenant } => {
            let all = ctx.client.list(Kind::Upstream, tenant.as_deref()).await?;
            let rows = all
                .iter()
                .filter_map(|e| match e {
                    Entity::Upstream(u) => Some([
                        u.tenant.clone(),
                        u.name.clone(),
                        match &u.transport {
                            Transport::Http { url } => url.clone(),
                            Transport::Stdio { command, args } => {
                                format!("stdio: {command} {}", args.join(" "))
                            }
                        },
                        u.pinned_tools.len().to_string(),
                        time(u.created_ms),
                    ]),
                    _ => None,
                })
                .collect();
            emit_list(ctx, &all, || {
                table(["TENANT", "NAME", "TRANSPORT", "PINS", "CREATED"], rows)
            });
        }
        UpstreamCmd::Remove { tenant, name } => {
            let op = Op::RemoveUpstream {
                tenant: tenant.clone(),
                name: name.clone(),
            };
            ctx.change(
                op,
                &format!("removed upstream `{name}` of tenant `{tenant}`"),
            )
            .await?;
        }
    }
    Ok(())
}

/// Prints a list of entities: their fields as a JSON array, or the text table.
pub fn emit_list(ctx: &Ctx, all: &[Entity], text: impl FnOnce() -> String) {
    let v: Vec<Value> = all.iter().map(entity_value).collect();
    ctx.out.emit(&Value::Array(v), || {
        if all.is_empty() {
            "(none)".to_string()
        } else {
            text()
        }
    });
}

pub fn not_found(kind: &str, key: &str) -> CliError {
    CliError::from_status(&tonic::Status::not_found(format!("{kind} `{key}`")))
}

/// Creates a new file readable only by its owner (never overwriting one).
fn create_secret_file(path: &Path) -> Result<std::fs::File> {
    let mut o = std::fs::OpenOptions::new();
    o.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        o.mode(0o600);
    }
    o.open(path).map_err(|e| {
        let err = CliError::io(&format!("cannot create {}", path.display()), &e);
        if e.kind() == std::io::ErrorKind::AlreadyExists {
            CliError::invalid(err.message).hint("the key file is never overwritten: choose a new path, or remove the old file first")
        } else {
            err
        }
    })
}
