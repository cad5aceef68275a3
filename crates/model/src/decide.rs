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
    AuthorizationError, Authorizer, Context, Decision, Entities, Entity, EntityId, EntityTypeName,
    EntityUid, PolicyId, PolicySet, Request, RestrictedExpression, Schema,
};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::entity::PolicyPackage;

/// A tenant's policy version, parsed and validated once (edges cache it by tenant and version).
pub struct CompiledPolicy {
    pub tenant: String,
    pub version: String,
    set: PolicySet,
    schema: Schema,
    /// The package's own entities, parsed once.
    base_entities: Vec<Entity>,
    types: Types,
    /// Cedar's policy id → the id reported (`@id` annotation, else Cedar's own id).
    names: HashMap<PolicyId, String>,
    needs_approval: HashSet<PolicyId>,
}

/// Entity type names and action uids, parsed once.
struct Types {
    agent: EntityTypeName,
    role: EntityTypeName,
    server: EntityTypeName,
    tool: EntityTypeName,
    arguments: EntityTypeName,
    call_tool: EntityUid,
    list_tools: EntityUid,
    read_resource: EntityUid,
    get_prompt: EntityUid,
}

impl Types {
    fn new() -> Result<Self, String> {
        let ty = |n: &str| EntityTypeName::from_str(n).map_err(|e| e.to_string());
        let action = ty("Action")?;
        let act = |id: &str| EntityUid::from_type_name_and_id(action.clone(), EntityId::new(id));
        Ok(Types {
            agent: ty("Agent")?,
            role: ty("Role")?,
            server: ty("Server")?,
            tool: ty("Tool")?,
            arguments: ty("Arguments")?,
            call_tool: act("call_tool"),
            list_tools: act("list_tools"),
            read_resource: act("read_resource"),
            get_prompt: act("get_prompt"),
        })
    }
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
        let base_entities: Vec<Entity> = if p.entities.trim().is_empty() {
            Vec::new()
        } else {
            let parsed = Entities::from_json_str(&p.entities, Some(&schema))
                .map_err(|e| format!("entities: {e}"))?;
            parsed.iter().cloned().collect()
        };
        let types = Types::new()?;
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
            types,
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
        // Built with Cedar's typed constructors: parsing per-call JSON against the schema cost
        // most of the decision's time. The shapes match `policies/schema.cedarschema`, and the
        // request (context included) is still validated against the schema below.
        let uid = |ty: &EntityTypeName, id: &str| {
            EntityUid::from_type_name_and_id(ty.clone(), EntityId::new(id))
        };
        let str_ = |v: &str| RestrictedExpression::new_string(v.to_string());
        let t = &self.types;
        let agent_uid = uid(&t.agent, &c.agent);
        let server_uid = uid(&t.server, &c.server);
        let tool_uid = uid(&t.tool, &format!("{}/{}", c.server, c.tool));
        let args_uid = uid(&t.arguments, "call");
        let roles: Vec<EntityUid> = c.roles.iter().map(|r| uid(&t.role, r)).collect();
        let labels = c.labels.iter().map(|(k, v)| str_(&format!("{k}={v}")));
        let agent = Entity::new(
            agent_uid.clone(),
            HashMap::from([
                ("tenant".to_string(), str_(&self.tenant)),
                ("labels".to_string(), RestrictedExpression::new_set(labels)),
            ]),
            roles.iter().cloned().collect(),
        )
        .map_err(|e| e.to_string())?;
        let tool = Entity::new(
            tool_uid.clone(),
            HashMap::from([
                ("name".to_string(), str_(&c.tool)),
                ("server".to_string(), str_(&c.server)),
                (
                    "read_only".to_string(),
                    RestrictedExpression::new_bool(c.read_only),
                ),
                (
                    "destructive".to_string(),
                    RestrictedExpression::new_bool(c.destructive),
                ),
                (
                    "idempotent".to_string(),
                    RestrictedExpression::new_bool(c.idempotent),
                ),
                (
                    "open_world".to_string(),
                    RestrictedExpression::new_bool(c.open_world),
                ),
            ]),
            HashSet::from([server_uid.clone()]),
        )
        .map_err(|e| e.to_string())?;
        let tags = c
            .arguments
            .iter()
            .map(|(k, v)| (k.clone(), str_(&tag_value(v))));
        let args =
            Entity::new_with_tags(args_uid.clone(), [], [], tags).map_err(|e| e.to_string())?;
        let mut all = vec![
            agent,
            tool,
            Entity::new_no_attrs(server_uid, HashSet::new()),
            args,
        ];
        all.extend(
            roles
                .into_iter()
                .map(|r| Entity::new_no_attrs(r, HashSet::new())),
        );
        all.extend(self.base_entities.iter().cloned());
        let entities = Entities::from_entities(all, None).map_err(|e| e.to_string())?;
        let time = RestrictedExpression::new_record([
            (
                "hour".to_string(),
                RestrictedExpression::new_long(i64::from(c.hour)),
            ),
            (
                "weekday".to_string(),
                RestrictedExpression::new_long(i64::from(c.weekday)),
            ),
        ])
        .map_err(|e| e.to_string())?;
        let context = Context::from_pairs([
            ("session".to_string(), str_(&c.session)),
            ("time".to_string(), time),
            ("region".to_string(), str_(&c.region)),
            (
                "detections".to_string(),
                RestrictedExpression::new_set(c.detections.iter().map(|d| str_(d))),
            ),
            (
                "arguments".to_string(),
                RestrictedExpression::new_entity_uid(args_uid),
            ),
        ])
        .map_err(|e| e.to_string())?;
        let action = match c.action {
            Action::CallTool => &t.call_tool,
            Action::ListTools => &t.list_tools,
            Action::ReadResource => &t.read_resource,
            Action::GetPrompt => &t.get_prompt,
        };
        let request = Request::new(
            agent_uid,
            action.clone(),
            tool_uid,
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
