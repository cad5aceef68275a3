//! Cedar decisions: a policy package compiled once, and the pure `decide(call) -> Verdict`.
//!
//! INVARIANT: fail closed. Cedar skips a policy whose evaluation errors, so an erroring
//! `forbid` would not forbid; here any evaluation error, and any request the schema rejects,
//! denies, naming the policies involved.
//!
//! Require-approval: a satisfied `permit` annotated `@approval("required")` allows a call only
//! after approval. When every permit that allowed the call carries the annotation, the verdict
//! is [`Outcome::RequireApproval`]; one satisfied permit without it makes the call an `Allow`.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::str::FromStr;

use cedar_policy::{
    AuthorizationError, Authorizer, Context, Decision, Entities, EntityUid, PolicyId, PolicySet,
    Request, Schema,
};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::entity::PolicyPackage;

/// A tenant's policy version, parsed and validated once (edges cache it by tenant and version).
pub struct CompiledPolicy {
    pub tenant: String,
    pub version: String,
    set: PolicySet,
    schema: Schema,
    base_entities: Value,
    /// Cedar's policy id → the id reported (`@id` annotation, else Cedar's own id).
    names: HashMap<PolicyId, String>,
    needs_approval: HashSet<PolicyId>,
}

/// Which MCP operation is being decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Action {
    CallTool,
    ListTools,
    ReadResource,
    GetPrompt,
}

impl Action {
    pub fn as_str(self) -> &'static str {
        match self {
            Action::CallTool => "call_tool",
            Action::ListTools => "list_tools",
            Action::ReadResource => "read_resource",
            Action::GetPrompt => "get_prompt",
        }
    }
}

/// The facts about one call that policies may look at.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CallFacts {
    pub agent: String,
    #[serde(default)]
    pub roles: Vec<String>,
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    pub action: Action,
    pub server: String,
    /// Tool name, resource URI or prompt name.
    pub tool: String,
    #[serde(default)]
    pub read_only: bool,
    #[serde(default)]
    pub destructive: bool,
    #[serde(default)]
    pub idempotent: bool,
    #[serde(default)]
    pub open_world: bool,
    /// Top-level arguments, as JSON.
    #[serde(default)]
    pub arguments: serde_json::Map<String, Value>,
    #[serde(default)]
    pub session: String,
    pub hour: u8,
    pub weekday: u8,
    #[serde(default)]
    pub region: String,
    #[serde(default)]
    pub detections: Vec<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    Allow,
    Deny,
    RequireApproval,
}

/// A decision and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Verdict {
    pub outcome: Outcome,
    /// The policies that decided (permits that allowed, or forbids that denied, or those that
    /// failed to evaluate).
    pub policy_ids: Vec<String>,
    pub reason: String,
}

impl Verdict {
    fn deny(policy_ids: Vec<String>, reason: String) -> Self {
        Verdict {
            outcome: Outcome::Deny,
            policy_ids,
            reason,
        }
    }
}

/// An argument value as a tag: strings unquoted, everything else compact JSON.
fn tag_value(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

impl CompiledPolicy {
    /// Parses and validates a package (strict mode). Edges call this once per version.
    pub fn compile(p: &PolicyPackage) -> Result<Self, String> {
        crate::policy::validate_package(&p.policies, &p.schema, &p.entities)?;
        let (schema, _) =
            Schema::from_cedarschema_str(&p.schema).map_err(|e| format!("schema: {e}"))?;
        let set = PolicySet::from_str(&p.policies).map_err(|e| format!("policies: {e}"))?;
        let base_entities: Value = if p.entities.trim().is_empty() {
            json!([])
        } else {
            serde_json::from_str(&p.entities).map_err(|e| format!("entities: {e}"))?
        };
        let mut names = HashMap::new();
        let mut needs_approval = HashSet::new();
        for policy in set.policies() {
            let name = policy
                .annotation("id")
                .map_or_else(|| policy.id().to_string(), str::to_string);
            names.insert(policy.id().clone(), name);
            if policy.annotation("approval") == Some("required") {
                needs_approval.insert(policy.id().clone());
            }
        }
        Ok(CompiledPolicy {
            tenant: p.tenant.clone(),
            version: p.version.clone(),
            set,
            schema,
            base_entities,
            names,
            needs_approval,
        })
    }

    pub fn policy_count(&self) -> usize {
        self.names.len()
    }

    fn name(&self, id: &PolicyId) -> String {
        self.names
            .get(id)
            .cloned()
            .unwrap_or_else(|| id.to_string())
    }

    /// Decides one call. Pure: the same facts give the same verdict.
    pub fn decide(&self, call: &CallFacts) -> Verdict {
        match self.request(call) {
            Ok((request, entities)) => self.evaluate(&request, &entities),
            Err(why) => Verdict::deny(
                vec![],
                format!("the call does not fit the policy schema: {why}"),
            ),
        }
    }

    fn request(&self, c: &CallFacts) -> Result<(Request, Entities), String> {
        let tool_id = format!("{}/{}", c.server, c.tool);
        let labels: Vec<String> = c.labels.iter().map(|(k, v)| format!("{k}={v}")).collect();
        let tags: serde_json::Map<String, Value> = c
            .arguments
            .iter()
            .map(|(k, v)| (k.clone(), Value::String(tag_value(v))))
            .collect();
        let mut entities = vec![
            json!({
                "uid": {"type": "Agent", "id": c.agent},
                "attrs": {"tenant": self.tenant, "labels": labels},
                "parents": c.roles.iter().map(|r| json!({"type": "Role", "id": r})).collect::<Vec<_>>(),
            }),
            json!({
                "uid": {"type": "Tool", "id": tool_id},
                "attrs": {
                    "name": c.tool, "server": c.server, "read_only": c.read_only,
                    "destructive": c.destructive, "idempotent": c.idempotent, "open_world": c.open_world,
                },
                "parents": [{"type": "Server", "id": c.server}],
            }),
            json!({"uid": {"type": "Server", "id": c.server}, "attrs": {}, "parents": []}),
            json!({"uid": {"type": "Arguments", "id": "call"}, "attrs": {}, "parents": [], "tags": tags}),
        ];
        entities.extend(
            c.roles
                .iter()
                .map(|r| json!({"uid": {"type": "Role", "id": r}, "attrs": {}, "parents": []})),
        );
        if let Value::Array(base) = &self.base_entities {
            entities.extend(base.iter().cloned());
        }
        let entities = Entities::from_json_value(Value::Array(entities), Some(&self.schema))
            .map_err(|e| e.to_string())?;
        let uid = |ty: &str, id: &str| -> Result<EntityUid, String> {
            EntityUid::from_json(json!({"type": ty, "id": id})).map_err(|e| e.to_string())
        };
        let action = uid("Action", c.action.as_str())?;
        let context = Context::from_json_value(
            json!({
                "session": c.session,
                "time": {"hour": c.hour, "weekday": c.weekday},
                "region": c.region,
                "detections": c.detections,
                "arguments": {"__entity": {"type": "Arguments", "id": "call"}},
            }),
            Some((&self.schema, &action)),
        )
        .map_err(|e| e.to_string())?;
        let request = Request::new(
            uid("Agent", &c.agent)?,
            action,
            uid("Tool", &tool_id)?,
            context,
            Some(&self.schema),
        )
        .map_err(|e| e.to_string())?;
        Ok((request, entities))
    }

    fn evaluate(&self, request: &Request, entities: &Entities) -> Verdict {
        let response = Authorizer::new().is_authorized(request, &self.set, entities);
        let diagnostics = response.diagnostics();
        let errors: Vec<String> = diagnostics.errors().map(|e| e.to_string()).collect();
        if !errors.is_empty() {
            let ids = diagnostics
                .errors()
                .map(|e| match e {
                    AuthorizationError::PolicyEvaluationError(p) => self.name(p.policy_id()),
                })
                .collect();
            return Verdict::deny(
                ids,
                format!("policy evaluation failed, denying: {}", errors.join("; ")),
            );
        }
        let reasons: Vec<&PolicyId> = diagnostics.reason().collect();
        let ids: Vec<String> = reasons.iter().map(|id| self.name(id)).collect();
        match response.decision() {
            Decision::Deny if ids.is_empty() => {
                Verdict::deny(ids, "no policy permits this call".into())
            }
            Decision::Deny => Verdict::deny(ids, "forbidden by policy".into()),
            Decision::Allow if reasons.iter().all(|id| self.needs_approval.contains(*id)) => {
                Verdict {
                    outcome: Outcome::RequireApproval,
                    policy_ids: ids,
                    reason: "this call needs an operator's approval".into(),
                }
            }
            Decision::Allow => Verdict {
                outcome: Outcome::Allow,
                policy_ids: ids,
                reason: String::new(),
            },
        }
    }
}
