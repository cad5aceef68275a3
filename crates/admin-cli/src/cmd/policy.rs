//! `policy validate | push | activate | list | show | diff | test`.

use std::path::{Path, PathBuf};

use agentgate_model::Op;
use agentgate_model::cases::{self, CaseFile};
use agentgate_model::decide::CompiledPolicy;
use agentgate_model::entity::{Entity, Kind, PolicyPackage, join_key};
use agentgate_model::policy::{package_digest, validate_package};
use serde_json::json;
use similar::TextDiff;

use super::entities::{emit_list, not_found};
use super::{Ctx, entity_json, entity_value};
use crate::cli::{PackageFiles, Part, PolicyCmd};
use crate::error::{CliError, Exit, Result};
use crate::out::{opt, table, time};

/// The schema every tenant's package is validated against unless `--schema` says otherwise.
pub const DEFAULT_SCHEMA: &str = include_str!("../../../../policies/schema.cedarschema");

fn read(path: &Path, what: &str) -> Result<String> {
    std::fs::read_to_string(path).map_err(|e| {
        CliError::new(
            Exit::Invalid,
            "invalid_argument",
            format!("cannot read {what} {}: {e}", path.display()),
        )
        .hint("check the path")
    })
}

/// Policies, schema and entities texts from the command line.
fn texts(file: &Path, p: &PackageFiles) -> Result<(String, String, String)> {
    let policies = read(file, "policy file")?;
    let schema = match &p.schema {
        Some(s) => read(s, "schema")?,
        None => DEFAULT_SCHEMA.to_string(),
    };
    let entities = match &p.entities {
        Some(e) => read(e, "entities file")?,
        None => String::new(),
    };
    Ok((policies, schema, entities))
}

fn invalid_policy(file: &Path, errors: &str) -> CliError {
    CliError::new(
        Exit::Invalid,
        "invalid_policy",
        format!("{} does not validate:\n{errors}", file.display()),
    )
    .hint("fix the policies (the validator's messages above name each problem); nothing was pushed")
}

pub async fn run(ctx: &mut Ctx, cmd: PolicyCmd) -> Result<()> {
    match cmd {
        PolicyCmd::Validate { file, package } => {
            let (policies, schema, entities) = texts(&file, &package)?;
            let v = validate_package(&policies, &schema, &entities)
                .map_err(|e| invalid_policy(&file, &e))?;
            ctx.out.emit(
                &json!({"valid": true, "policy_count": v.policy_count, "sha256": v.sha256}),
                || {
                    format!(
                        "{} is valid: {} policies, sha256 {}",
                        file.display(),
                        v.policy_count,
                        v.sha256
                    )
                },
            );
        }
        PolicyCmd::Push {
            tenant,
            file,
            version,
            package,
            description,
            activate,
        } => {
            let (policies, schema, entities) = texts(&file, &package)?;
            // Checked here first for a precise message; the leader validates again.
            validate_package(&policies, &schema, &entities)
                .map_err(|e| invalid_policy(&file, &e))?;
            let pkg = PolicyPackage {
                tenant: tenant.clone(),
                version: version.clone(),
                sha256: package_digest(&policies, &schema, &entities),
                policies,
                schema,
                entities,
                author: ctx.actor.clone(),
                description,
                created_ms: 0,
                signature: None,
            };
            let pushed = ctx.client.propose(Op::PushPolicy { package: pkg }).await?;
            let mut revision = pushed.revision;
            if activate {
                let op = Op::ActivatePolicy {
                    tenant: tenant.clone(),
                    version: version.clone(),
                };
                revision = ctx.client.propose(op).await?.revision;
            }
            let entity = entity_json(&pushed.response);
            ctx.out.emit(
                &json!({"ok": true, "revision": revision, "entity": entity, "activated": activate}),
                || {
                    let mut s = format!(
                        "pushed policy `{version}` for tenant `{tenant}` (revision {})",
                        pushed.revision
                    );
                    if activate {
                        s.push_str(&format!(
                            "\ntenant `{tenant}` now enforces policy `{version}` (revision {revision})"
                        ));
                    } else {
                        s.push_str(&format!("\n  next: agentgate-admin rollout start {tenant} --to {version} --canary 10   (or policy activate {tenant} {version})"));
                    }
                    s
                },
            );
        }
        PolicyCmd::Activate { tenant, version } => {
            ctx.change(
                Op::ActivatePolicy {
                    tenant: tenant.clone(),
                    version: version.clone(),
                },
                &format!("tenant `{tenant}` now enforces policy `{version}`"),
            )
            .await?;
        }
        PolicyCmd::List { tenant } => {
            let t = match ctx.client.get(Kind::Tenant, &tenant).await? {
                Some(Entity::Tenant(t)) => t,
                _ => return Err(not_found("tenant", &tenant)),
            };
            let rollout = match ctx.client.get(Kind::Rollout, &tenant).await? {
                Some(Entity::Rollout(r)) => Some(r),
                _ => None,
            };
            let all = ctx.client.list(Kind::Policy, Some(&tenant)).await?;
            let rows = all
                .iter()
                .filter_map(|e| match e {
                    Entity::Policy(p) => {
                        let mut marks = Vec::new();
                        if t.policy_version.as_ref() == Some(&p.version) {
                            marks.push("enforced".to_string());
                        }
                        if t.shadow_version.as_ref() == Some(&p.version) {
                            marks.push("shadow".to_string());
                        }
                        if let Some(r) = &rollout
                            && r.to_version == p.version
                        {
                            marks.push(format!("rollout {:?}", r.state).to_lowercase());
                        }
                        Some([
                            p.version.clone(),
                            p.sha256.get(..12).unwrap_or_default().to_string(),
                            p.author.clone(),
                            time(p.created_ms),
                            marks.join(", "),
                            p.description.clone(),
                        ])
                    }
                    _ => None,
                })
                .collect();
            emit_list(ctx, &all, || {
                table(
                    [
                        "VERSION",
                        "SHA256",
                        "AUTHOR",
                        "CREATED",
                        "STATE",
                        "DESCRIPTION",
                    ],
                    rows,
                )
            });
        }
        PolicyCmd::Show {
            tenant,
            version,
            part,
        } => {
            let p = package(ctx, &tenant, &version).await?;
            ctx.out.emit(&entity_value(&Entity::Policy(p.clone())), || {
                let body = match part {
                    Part::Policies => &p.policies,
                    Part::Schema => &p.schema,
                    Part::Entities => &p.entities,
                };
                format!(
                    "// tenant {}  version {}  sha256 {}\n// author {}  created {}  {}\n{}",
                    p.tenant,
                    p.version,
                    p.sha256,
                    p.author,
                    time(p.created_ms),
                    p.description,
                    body
                )
            });
        }
        PolicyCmd::Diff { tenant, from, to } => {
            let a = package(ctx, &tenant, &from).await?;
            let b = package(ctx, &tenant, &to).await?;
            let mut parts = Vec::new();
            for (name, x, y) in [
                ("policies", &a.policies, &b.policies),
                ("schema", &a.schema, &b.schema),
                ("entities", &a.entities, &b.entities),
            ] {
                if x != y {
                    let d = TextDiff::from_lines(x.as_str(), y.as_str())
                        .unified_diff()
                        .header(&format!("{from}/{name}"), &format!("{to}/{name}"))
                        .to_string();
                    parts.push((name, d));
                }
            }
            let v = json!({
                "tenant": tenant, "from": from, "to": to, "identical": parts.is_empty(),
                "diffs": parts.iter().map(|(n, d)| json!({"part": n, "unified": d})).collect::<Vec<_>>(),
            });
            ctx.out.emit(&v, || {
                if parts.is_empty() {
                    format!("`{from}` and `{to}` are identical")
                } else {
                    parts
                        .iter()
                        .map(|(_, d)| d.as_str())
                        .collect::<Vec<_>>()
                        .join("\n")
                }
            });
        }
        PolicyCmd::Test {
            cases: case_path,
            policy,
            tenant,
            version,
            package: files,
        } => test(ctx, &case_path, policy, tenant, version, &files).await?,
    }
    Ok(())
}

async fn package(ctx: &mut Ctx, tenant: &str, version: &str) -> Result<PolicyPackage> {
    match ctx
        .client
        .get(Kind::Policy, &join_key(&[tenant, version]))
        .await?
    {
        Some(Entity::Policy(p)) => Ok(p),
        _ => Err(not_found("policy", &format!("{tenant}/{version}"))),
    }
}

async fn test(
    ctx: &mut Ctx,
    case_path: &Path,
    policy: Option<PathBuf>,
    tenant: Option<String>,
    version: Option<String>,
    files: &PackageFiles,
) -> Result<()> {
    let file: CaseFile = serde_json::from_str(&read(case_path, "case file")?).map_err(|e| {
        CliError::invalid(format!("{} is not a case file: {e}", case_path.display())).hint(
            "see policies/cases/*.json: {\"policies\": FILE, \"base\": {CALL}, \"cases\": [{\"name\", \"call\", \"expect\", \"policy_ids\"}]}",
        )
    })?;
    let (pkg, source) = match (tenant, version, policy) {
        (Some(t), Some(v), _) => (package(ctx, &t, &v).await?, format!("{t}/{v}")),
        (_, _, explicit) => {
            let path = match explicit {
                Some(p) => p,
                None => {
                    let named = file.policies.as_deref().ok_or_else(|| {
                        CliError::invalid("the case file names no `policies` file")
                            .hint("pass --policy FILE, or --tenant T --version V")
                    })?;
                    case_path
                        .parent()
                        .and_then(Path::parent)
                        .unwrap_or(Path::new("."))
                        .join(named)
                }
            };
            let (policies, schema, entities) = texts(&path, files)?;
            let pkg = PolicyPackage {
                tenant: "test".into(),
                version: "local".into(),
                sha256: package_digest(&policies, &schema, &entities),
                policies,
                schema,
                entities,
                author: String::new(),
                description: String::new(),
                created_ms: 0,
                signature: None,
            };
            (pkg, path.display().to_string())
        }
    };
    let compiled =
        CompiledPolicy::compile(&pkg).map_err(|e| invalid_policy(Path::new(&source), &e))?;
    let results = cases::run(&compiled, &file);
    let failed = results.iter().filter(|r| !r.passed).count();
    let rows = results
        .iter()
        .map(|r| {
            let (got, ids, reason) = match &r.verdict {
                Ok(v) => (
                    json!(v.outcome).as_str().unwrap_or_default().to_string(),
                    v.policy_ids.join(","),
                    v.reason.clone(),
                ),
                Err(e) => ("error".to_string(), String::new(), e.clone()),
            };
            let expect = r
                .expect
                .map(|e| json!(e).as_str().unwrap_or_default().to_string());
            [
                if r.passed { "ok" } else { "FAIL" }.to_string(),
                r.name.clone(),
                got,
                ids,
                opt(expect.as_deref()),
                reason,
            ]
        })
        .collect();
    ctx.out.emit(
        &json!({"policy": source, "cases": results, "passed": results.len() - failed, "failed": failed}),
        || {
            format!(
                "{}\n\n{} of {} cases as expected ({source})",
                table(
                    ["", "CASE", "DECISION", "POLICIES", "EXPECTED", "REASON"],
                    rows
                ),
                results.len() - failed,
                results.len()
            )
        },
    );
    if failed > 0 {
        return Err(CliError::new(
            Exit::Denied,
            "cases_failed",
            format!(
                "{failed} of {} cases did not decide as expected",
                results.len()
            ),
        )
        .hint("the FAIL rows show what each decided; fix the policy or the case"));
    }
    Ok(())
}
