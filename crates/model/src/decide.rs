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
    EntityUid, PolicyId, PolicySet, Request, ResourceConstraint, RestrictedExpression, Schema,
};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::entity::PolicyPackage;
use crate::limits::SLICE_POLICY_COPIES_MAX;

/// A tenant's policy version, parsed and validated once (edges cache it by tenant and version).
pub struct CompiledPolicy {
    pub tenant: String,
    pub version: String,
    set: PolicySet,
    /// The set split by tool (see [`Slices`]); `None` when slicing does not apply.
    slices: Option<Slices>,
    schema: Schema,
    /// The package's own entities, parsed once.
    base_entities: Vec<Entity>,
    types: Types,
    /// Cedar's policy id → the id reported (`@id` annotation, else Cedar's own id).
    names: HashMap<PolicyId, String>,
    needs_approval: HashSet<PolicyId>,
}

/// The policy set split by tool: a policy scoped `resource == Tool::"s/t"` can be satisfied (or
/// fail) only for calls to that tool (Cedar checks the scope before the condition), so a call
/// needs only the general policies plus its tool's. Large tenants grow mostly per-tool rules, and
/// Cedar evaluates every policy it is given.
struct Slices {
    /// For each tool with policies of its own: the general policies plus those.
    by_tool: HashMap<EntityUid, PolicySet>,
    general: PolicySet,
}

impl Slices {
    fn build(set: &PolicySet) -> Option<Slices> {
        if set.templates().next().is_some() {
            return None;
        }
        let mut general = PolicySet::new();
        let mut own: HashMap<EntityUid, Vec<cedar_policy::Policy>> = HashMap::new();
        for p in set.policies() {
            match p.resource_constraint() {
                ResourceConstraint::Eq(uid) => own.entry(uid).or_default().push(p.clone()),
                _ => general.add(p.clone()).ok()?,
            }
        }
        let general_len = general.policies().count();
        if own.is_empty() || general_len.saturating_mul(own.len()) > SLICE_POLICY_COPIES_MAX {
            return None;
        }
        let mut by_tool = HashMap::with_capacity(own.len());
        for (uid, policies) in own {
            let mut slice = general.clone();
            for p in policies {
                slice.add(p).ok()?;
            }
            by_tool.insert(uid, slice);
        }
        Some(Slices { by_tool, general })
    }

    fn for_tool(&self, tool: &EntityUid) -> &PolicySet {
        self.by_tool.get(tool).unwrap_or(&self.general)
    }
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
        let slices = Slices::build(&set);
        Ok(CompiledPolicy {
            tenant: p.tenant.clone(),
            version: p.version.clone(),
            set,
            slices,
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
            Ok((request, entities, tool)) => {
                let set = self
                    .slices
                    .as_ref()
                    .map_or(&self.set, |s| s.for_tool(&tool));
                self.evaluate(set, &request, &entities)
            }
            Err(why) => Verdict::deny(
                vec![],
                format!("the call does not fit the policy schema: {why}"),
            ),
        }
    }

    fn request(&self, c: &CallFacts) -> Result<(Request, Entities, EntityUid), String> {
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
            tool_uid.clone(),
            context,
            Some(&self.schema),
        )
        .map_err(|e| e.to_string())?;
        Ok((request, entities, tool_uid))
    }

    fn evaluate(&self, set: &PolicySet, request: &Request, entities: &Entities) -> Verdict {
        let response = Authorizer::new().is_authorized(request, set, entities);
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

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;
    use crate::policy::package_digest;

    fn package(policies: &str) -> PolicyPackage {
        let schema = include_str!("../../../policies/schema.cedarschema");
        PolicyPackage {
            tenant: "t".into(),
            version: "v1".into(),
            sha256: package_digest(policies, schema, ""),
            policies: policies.into(),
            schema: schema.into(),
            entities: String::new(),
            author: String::new(),
            description: String::new(),
            created_ms: 0,
            signature: None,
        }
    }

    /// General rules (permits, forbids, approvals, one that errors) and per-tool ones.
    fn mixed() -> CompiledPolicy {
        let mut p = String::from(include_str!("../../../policies/default.cedar"));
        p.push_str("@id(\"overflow\") forbid (principal, action, resource) when { context.time.hour * 4611686018427387904 > 0 && resource.name == \"t3\" };\n");
        for i in 0..12 {
            let (effect, cond) = match i % 3 {
                0 => ("permit", "context.region == \"eu\""),
                1 => ("forbid", "context.time.hour > 20"),
                _ => ("permit", "principal in Role::\"ops\""),
            };
            p.push_str(&format!("@id(\"own-{i}\") {effect} (principal, action, resource == Tool::\"s/t{}\") when {{ {cond} }};\n", i % 5));
        }
        CompiledPolicy::compile(&package(&p)).unwrap()
    }

    #[test]
    fn slicing_applies_to_per_tool_rules() {
        let c = mixed();
        let slices = c.slices.as_ref().unwrap();
        assert_eq!(slices.by_tool.len(), 5);
        assert_eq!(slices.general.policies().count(), 5);
    }

    proptest! {
        /// A sliced decision equals the decision over the whole set, reasons and errors included.
        #[test]
        fn sliced_decisions_equal_full_decisions(
            tool in 0u8..7, hour in 0u8..24, read_only: bool, destructive: bool, ops: bool,
            region in prop::sample::select(vec!["eu", "us"]), secret: bool,
        ) {
            let c = mixed();
            let facts = CallFacts {
                agent: "bot".into(),
                roles: if ops { vec!["ops".into()] } else { vec![] },
                labels: BTreeMap::new(),
                action: Action::CallTool,
                server: "s".into(),
                tool: format!("t{tool}"),
                read_only,
                destructive,
                idempotent: false,
                open_world: false,
                arguments: serde_json::Map::new(),
                session: String::new(),
                hour,
                weekday: 1,
                region: region.into(),
                detections: if secret { vec!["secret".into()] } else { vec![] },
            };
            let (request, entities, _) = c.request(&facts).unwrap();
            let mut full = c.evaluate(&c.set, &request, &entities);
            let mut sliced = c.decide(&facts);
            full.policy_ids.sort();
            sliced.policy_ids.sort();
            prop_assert_eq!(sliced, full);
        }
    }
}
