//! The decision path after parsing: authenticate → kill switches → freshness → policy version →
//! Cedar (cached compiled policies) → verdict, plus the shadow verdict when a tenant runs one.
//!
//! Pure given its inputs: the replica, the freshness bit, the edge's clock readings and the
//! policy cache (which compiles each (tenant, version) once). The HTTP layer supplies the tool's
//! annotations and detections and acts on the verdict.

use std::collections::HashMap;
use std::sync::Arc;

use agentgate_model::State;
use agentgate_model::decide::{Action, CallFacts, CompiledPolicy, Outcome};
use agentgate_model::entity::{Agent, join_key};
use moka::sync::Cache;
use sha2::{Digest, Sha256};

use crate::gate::{self, Denial, Subject, code};

/// Agents by the SHA-256 of their API key, for one replica revision. Each agent is shared
/// (`Arc`), so a request holds its caller without copying it.
#[derive(Debug, Default)]
pub struct AgentKeys {
    revision: u64,
    by_hash: HashMap<String, Arc<Agent>>,
}

/// Why authentication failed (HTTP 401 with a JSON body).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    #[error("missing bearer token: send `Authorization: Bearer <agent key>`")]
    Missing,
    #[error("unknown agent key")]
    Unknown,
    #[error("agent `{0}` has been revoked")]
    Revoked(String),
}

impl AuthError {
    /// A short label for metrics.
    pub fn label(&self) -> &'static str {
        match self {
            AuthError::Missing => "missing",
            AuthError::Unknown => "unknown",
            AuthError::Revoked(_) => "revoked",
        }
    }
}

impl AgentKeys {
    pub fn build(state: &State) -> Self {
        let by_hash = state
            .agents
            .values()
            .map(|a| (a.key_hash.clone(), Arc::new(a.clone())))
            .collect();
        AgentKeys {
            revision: state.revision,
            by_hash,
        }
    }

    pub fn revision(&self) -> u64 {
        self.revision
    }

    /// The agent an `Authorization` header value names.
    pub fn authenticate(&self, authorization: Option<&str>) -> Result<&Arc<Agent>, AuthError> {
        let token = authorization
            .and_then(|h| {
                h.strip_prefix("Bearer ")
                    .or_else(|| h.strip_prefix("bearer "))
            })
            .map(str::trim)
            .filter(|t| !t.is_empty())
            .ok_or(AuthError::Missing)?;
        let hash = hex::encode(Sha256::digest(token.as_bytes()));
        let agent = self.by_hash.get(&hash).ok_or(AuthError::Unknown)?;
        if agent.revoked_ms.is_some() {
            return Err(AuthError::Revoked(agent.id.clone()));
        }
        Ok(agent)
    }
}

/// Compiled policy versions by (tenant, version). Versions are immutable, so an entry never goes
/// stale; a package that fails to compile is cached as the failure (and denies).
#[derive(Clone)]
pub struct PolicyCache {
    cache: Cache<(String, String), Arc<Result<CompiledPolicy, String>>>,
}

impl PolicyCache {
    pub fn new(max_versions: u64) -> Self {
        PolicyCache {
            cache: Cache::builder().max_capacity(max_versions).build(),
        }
    }

    /// Whether the version is compiled (or known not to compile) already.
    pub fn contains(&self, tenant: &str, version: &str) -> bool {
        self.cache
            .contains_key(&(tenant.to_string(), version.to_string()))
    }

    /// The compiled version, compiling it on first use.
    pub fn get(
        &self,
        state: &State,
        tenant: &str,
        version: &str,
    ) -> Arc<Result<CompiledPolicy, String>> {
        self.cache.get_with((tenant.to_string(), version.to_string()), || {
            let compiled = match state.policies.get(&join_key(&[tenant, version])) {
                Some(p) => CompiledPolicy::compile(p),
                None => Err(format!("policy version `{version}` is not in this edge's snapshot")),
            };
            if let Err(e) = &compiled {
                tracing::warn!(tenant, version, error = %e, "policy version cannot be compiled; its calls are denied");
            }
            Arc::new(compiled)
        })
    }
}

/// What the gateway decided, and on which version.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    Allow {
        version: String,
        policy_ids: Vec<String>,
    },
    RequireApproval {
        version: String,
        policy_ids: Vec<String>,
    },
    /// Denied, with the policy version that denied when a policy did.
    Deny(Denial, Option<String>),
}

/// The verdict plus what a shadow version would have said (audited, never enforced).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decided {
    pub verdict: Verdict,
    pub shadow: Option<Outcome>,
}

/// Decides one call for an authenticated agent.
///
/// `fresh` is the lease; `retry_after_ms` is what a stale denial advises.
pub fn decide_call(
    state: &State,
    cache: &PolicyCache,
    facts: &CallFacts,
    agent: &Agent,
    fresh: bool,
    now_ms: u64,
    retry_after_ms: u64,
) -> Decided {
    let deny = |d: Denial| Decided {
        verdict: Verdict::Deny(d, None),
        shadow: None,
    };
    let named = matches!(
        facts.action,
        Action::CallTool | Action::ReadResource | Action::GetPrompt
    );
    let subject = Subject {
        tenant: &agent.tenant,
        agent: &agent.id,
        session: (!facts.session.is_empty()).then_some(facts.session.as_str()),
        tool: named.then_some(facts.tool.as_str()),
        read_only: facts.read_only,
        region: &facts.region,
    };
    if let Some(d) = gate::kill_switch(state, &subject, now_ms) {
        return deny(d);
    }
    let Some(tenant) = state.tenants.get(&agent.tenant) else {
        return deny(Denial::new(
            code::NO_POLICY,
            format!("tenant `{}` does not exist", agent.tenant),
        ));
    };
    if let Some(d) = gate::staleness(tenant, &subject, fresh, retry_after_ms) {
        return deny(d);
    }
    let versions = match gate::versions(state, tenant, &subject) {
        Ok(v) => v,
        Err(d) => return deny(d),
    };
    let verdict = match cache.get(state, &agent.tenant, &versions.enforced).as_ref() {
        Err(e) => {
            let d = Denial::new(
                code::NO_POLICY,
                format!(
                    "policy version `{}` cannot be used, denying: {e}",
                    versions.enforced
                ),
            );
            Verdict::Deny(d, Some(versions.enforced.clone()))
        }
        Ok(policy) => {
            let v = policy.decide(facts);
            match v.outcome {
                Outcome::Allow => Verdict::Allow {
                    version: versions.enforced.clone(),
                    policy_ids: v.policy_ids,
                },
                Outcome::RequireApproval => Verdict::RequireApproval {
                    version: versions.enforced.clone(),
                    policy_ids: v.policy_ids,
                },
                Outcome::Deny => {
                    let mut d = Denial::new(code::POLICY_DENIED, v.reason);
                    d.policy_ids = v.policy_ids;
                    Verdict::Deny(d, Some(versions.enforced.clone()))
                }
            }
        }
    };
    let shadow = versions
        .shadow
        .map(|sv| match cache.get(state, &agent.tenant, &sv).as_ref() {
            Ok(p) => p.decide(facts).outcome,
            Err(_) => Outcome::Deny,
        });
    Decided { verdict, shadow }
}

#[cfg(test)]
mod tests;
