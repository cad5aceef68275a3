//! The decision for one request, without HTTP: from the request's facts and the view to the
//! verdict and the audit entry that records it. Pure given its inputs (the view, the policy
//! cache, the edge's clock reading and freshness bit, the audit buffer's admission): the HTTP
//! layer (`proxy.rs`) parses, looks up, asks the core about approvals, forwards and records;
//! this module decides. The unit tests and the decision-path benchmark call it as production
//! does.
//!
//! In design.md §3's order for a named call (`tools/call`, `resources/read`, `prompts/get`):
//! audit admission → a tool the upstream lists ([`unknown_tool`] otherwise; the HTTP layer looks
//! it up, passing [`gate`] first when that costs an upstream fetch) → pinned definition → kill switches → freshness → policy version → Cedar →
//! allow, deny, or hold for an operator's approval ([`settle`] turns the core's answer about the
//! approval into the final verdict). Requests that name no tool pass [`gate`] (kill switches and
//! freshness).
//!
//! INVARIANT: every verdict comes with the entry that records it; a denial is recorded as a
//! denial (or as held for approval when an approval id was issued), never as an allow.

use agentgate_model::audit::{AuditEntry, Decision};
use agentgate_model::decide::{Action, CallFacts, Outcome};
use agentgate_model::digest::args_digest;
use agentgate_model::entity::{Agent, Upstream};
use serde_json::{Map, Value};

use crate::approvals::Resolution;
use crate::audit::Admission;
use crate::catalog::ToolInfo;
use crate::decision::{PolicyCache, Verdict as PolicyVerdict, decide_call};
use crate::detect::detect;
use crate::error::overload;
use crate::gate::{self, Denial, Subject, code};
use crate::view::View;

/// Who is calling, through which upstream, in which session.
#[derive(Debug, Clone, Copy)]
pub struct Caller<'a> {
    pub agent: &'a Agent,
    pub server: &'a str,
    pub upstream: &'a Upstream,
    /// The session's short name (audit, kill switches, rollout buckets).
    pub session: Option<&'a str>,
    pub trace_id: Option<&'a str>,
}

/// What the edge knows at decision time besides the view.
#[derive(Debug, Clone, Copy)]
pub struct Env<'a> {
    /// Edge wall-clock time.
    pub now_ms: u64,
    /// The freshness lease (design.md G2).
    pub fresh: bool,
    pub region: &'a str,
    /// What a stale denial advises.
    pub retry_after_ms: u64,
}

/// One named call.
#[derive(Debug, Clone)]
pub struct Call<'a> {
    /// The JSON-RPC method (`tools/call`, …), as audited.
    pub method: &'a str,
    pub action: Action,
    /// The tool, resource URI or prompt name.
    pub name: &'a str,
    pub arguments: Map<String, Value>,
    /// The tool's annotations and definition digest (from the catalog).
    pub info: &'a ToolInfo,
    pub admission: Admission,
}

/// What to do with the call.
#[derive(Debug, Clone, PartialEq)]
pub enum Verdict {
    Allow,
    /// A permit that needs an operator's approval: ask the core, then [`settle`].
    NeedsApproval,
    Deny(Denial),
}

/// A verdict and the audit entry that records it (its latency and upstream fields are filled
/// in by the HTTP layer).
#[derive(Debug, Clone, PartialEq)]
pub struct Decided {
    pub verdict: Verdict,
    pub entry: AuditEntry,
}

/// The audit entry of a request, before its decision is known.
pub fn entry(caller: &Caller<'_>, method: &str, tool: Option<&str>, now_ms: u64) -> AuditEntry {
    AuditEntry {
        edge_seq: 0,
        time_ms: now_ms,
        tenant: caller.agent.tenant.clone(),
        agent: caller.agent.id.clone(),
        session: caller.session.map(str::to_string),
        method: method.to_string(),
        tool: tool.map(str::to_string),
        args_digest: None,
        decision: Decision::Allow,
        reason: String::new(),
        policy_version: None,
        policy_ids: vec![],
        shadow_decision: None,
        latency_us: 0,
        upstream_latency_us: None,
        upstream_status: None,
        trace_id: caller.trace_id.map(str::to_string),
    }
}

/// Records a denial in `entry`: held for approval when an approval id was issued, else denied.
pub fn deny(entry: &mut AuditEntry, d: &Denial) {
    entry.decision = if d.code == code::APPROVAL_REQUIRED && d.approval_id.is_some() {
        Decision::RequireApproval
    } else {
        Decision::Deny
    };
    entry.reason = d.reason.clone();
    entry.policy_ids = d.policy_ids.clone();
}

/// A call for a tool the upstream does not list: refused with MCP's unknown-tool error
/// (`-32602`, "Unknown tool: NAME"), before any policy runs, and recorded as a denial.
pub fn unknown_tool(
    caller: &Caller<'_>,
    method: &str,
    name: &str,
    now_ms: u64,
) -> (AuditEntry, Denial) {
    let shown = agentgate_model::ids::truncate_for_message(name);
    let d = Denial::new(
        crate::mcp::code::INVALID_PARAMS,
        format!("Unknown tool: {shown}"),
    );
    let mut e = entry(caller, method, Some(name), now_ms);
    deny(&mut e, &d);
    e.reason = format!(
        "tool `{shown}` is not in the tool list of server `{}`",
        caller.server
    );
    (e, d)
}

/// The gates every request of an agent passes, tool or not: kill switches (without a tool
/// scope) and freshness.
pub fn gate(view: &View, caller: &Caller<'_>, env: &Env<'_>) -> Option<Denial> {
    let tenant_id = caller.agent.tenant.as_str();
    let subject = Subject {
        tenant: tenant_id,
        agent: &caller.agent.id,
        session: caller.session,
        tool: None,
        read_only: false,
        region: env.region,
    };
    if let Some(d) = gate::kill_switch(&view.state, &subject, env.now_ms) {
        return Some(d);
    }
    let Some(tenant) = view.state.tenants.get(tenant_id) else {
        return Some(Denial::new(
            code::NO_POLICY,
            format!("tenant `{tenant_id}` does not exist"),
        ));
    };
    gate::staleness(tenant, &subject, env.fresh, env.retry_after_ms)
}

/// The Cedar request of a call.
pub fn facts(
    caller: &Caller<'_>,
    env: &Env<'_>,
    action: Action,
    tool: &str,
    info: &ToolInfo,
    arguments: Map<String, Value>,
    detections: Vec<String>,
) -> CallFacts {
    let (hour, weekday) = hour_weekday(env.now_ms);
    CallFacts {
        agent: caller.agent.id.clone(),
        roles: caller.agent.roles.clone(),
        labels: caller.agent.labels.clone(),
        action,
        server: caller.server.to_string(),
        tool: tool.to_string(),
        read_only: info.read_only,
        destructive: info.destructive,
        idempotent: info.idempotent,
        open_world: info.open_world,
        arguments,
        session: caller.session.unwrap_or_default().to_string(),
        hour,
        weekday,
        region: env.region.to_string(),
        detections,
    }
}

/// Decides one named call.
pub fn decide_request(
    view: &View,
    policies: &PolicyCache,
    caller: &Caller<'_>,
    call: Call<'_>,
    env: &Env<'_>,
) -> Decided {
    let mut e = entry(caller, call.method, Some(call.name), env.now_ms);
    e.args_digest = Some(args_digest(&call.arguments));
    let refuse = |mut e: AuditEntry, d: Denial| {
        deny(&mut e, &d);
        Decided {
            verdict: Verdict::Deny(d),
            entry: e,
        }
    };
    if call.admission == Admission::DenyOnly {
        let d = overload(
            "the gateway's audit backlog is nearly full; calls are refused until it drains",
        );
        return refuse(e, d);
    }
    if call.action == Action::CallTool
        && !call
            .info
            .matches_pin(call.name, &caller.upstream.pinned_tools)
    {
        let d = Denial::new(
            code::POLICY_DENIED,
            format!(
                "tool `{}`'s definition does not match the digest pinned for server `{}`",
                call.name, caller.server
            ),
        );
        return refuse(e, d);
    }
    let detections = detect(&call.arguments);
    let f = facts(
        caller,
        env,
        call.action,
        call.name,
        call.info,
        call.arguments,
        detections,
    );
    let decided = decide_call(
        &view.state,
        policies,
        &f,
        caller.agent,
        env.fresh,
        env.now_ms,
        env.retry_after_ms,
    );
    e.shadow_decision = decided.shadow.map(|o| match o {
        Outcome::Allow => Decision::Allow,
        Outcome::Deny => Decision::Deny,
        Outcome::RequireApproval => Decision::RequireApproval,
    });
    match decided.verdict {
        PolicyVerdict::Deny(d, version) => {
            e.policy_version = version;
            refuse(e, d)
        }
        PolicyVerdict::Allow {
            version,
            policy_ids,
        } => permitted(e, Verdict::Allow, version, policy_ids),
        PolicyVerdict::RequireApproval {
            version,
            policy_ids,
        } => permitted(e, Verdict::NeedsApproval, version, policy_ids),
    }
}

/// A permit (at once, or once approved), recorded with the version and policies that gave it.
fn permitted(
    mut entry: AuditEntry,
    verdict: Verdict,
    version: String,
    policy_ids: Vec<String>,
) -> Decided {
    entry.policy_version = Some(version);
    entry.policy_ids = policy_ids;
    Decided { verdict, entry }
}

/// The reason the core records on an approval request for this call.
pub fn approval_reason(entry: &AuditEntry) -> String {
    format!(
        "{} `{}` by agent `{}`",
        entry.method,
        entry.tool.as_deref().unwrap_or_default(),
        entry.agent
    )
}

/// Turns the core's answer about an approval into the final verdict of a call that needed one.
pub fn settle(
    mut decided: Decided,
    resolution: Result<Resolution, String>,
    retry_after_ms: u64,
) -> Decided {
    let policy_ids = decided.entry.policy_ids.clone();
    let d = match resolution {
        Ok(Resolution::Consumed(aid)) => {
            decided.entry.reason = format!("approval `{aid}` used");
            decided.verdict = Verdict::Allow;
            return decided;
        }
        Ok(Resolution::Pending(aid)) => Denial {
            policy_ids,
            approval_id: Some(aid.clone()),
            ..Denial::new(
                code::APPROVAL_REQUIRED,
                format!(
                    "this call needs an operator's approval: once approval `{aid}` is approved, retry with identical arguments (it will be allowed once)"
                ),
            )
        },
        Ok(Resolution::Full {
            reason,
            retry_after_ms,
        }) => Denial {
            policy_ids,
            retry_after_ms: Some(retry_after_ms),
            ..Denial::new(
                code::APPROVALS_FULL,
                format!(
                    "this call needs an operator's approval, and no new one can be requested now: {reason}"
                ),
            )
        },
        Err(e) => Denial {
            policy_ids,
            retry_after_ms: Some(retry_after_ms),
            ..Denial::new(
                code::APPROVAL_REQUIRED,
                format!("this call needs an operator's approval, which cannot be checked now: {e}"),
            )
        },
    };
    deny(&mut decided.entry, &d);
    decided.verdict = Verdict::Deny(d);
    decided
}

/// Whether `tools/list` shows this tool to the caller: its definition matches any pin and the
/// policy would allow a call to it (at once or after approval).
pub fn shows_tool(
    view: &View,
    policies: &PolicyCache,
    caller: &Caller<'_>,
    env: &Env<'_>,
    name: &str,
    info: &ToolInfo,
) -> bool {
    if !info.matches_pin(name, &caller.upstream.pinned_tools) {
        return false;
    }
    let f = facts(
        caller,
        env,
        Action::CallTool,
        name,
        info,
        Map::new(),
        vec![],
    );
    let decided = decide_call(
        &view.state,
        policies,
        &f,
        caller.agent,
        env.fresh,
        env.now_ms,
        env.retry_after_ms,
    );
    !matches!(decided.verdict, PolicyVerdict::Deny(..))
}

/// (hour 0-23, weekday 1=Monday..7=Sunday), UTC.
pub fn hour_weekday(now_ms: u64) -> (u8, u8) {
    let secs = now_ms / 1000;
    let days = secs / 86_400;
    let hour = ((secs % 86_400) / 3600) as u8;
    // 1970-01-01 was a Thursday (4).
    let weekday = ((days + 3) % 7 + 1) as u8;
    (hour, weekday)
}

#[cfg(test)]
mod tests;
