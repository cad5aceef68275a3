//! The decision view: the replica and everything derived from it per revision (the agent-key
//! index, each upstream with its parsed URI), swapped as one pointer; and the precompilation
//! that keeps every policy version the replica names compiled, off the request path.
//!
//! INVARIANT: a request reads one view from start to end (it holds the `Arc`), and holds its
//! agent and upstream by reference count, never by copy.

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;

use agentgate_model::State;
use agentgate_model::entity::{Transport, Upstream, join_key};
use http::Uri;

use crate::decision::{AgentKeys, PolicyCache};
use crate::upstream::Upstreams;

/// An upstream as requests use it: its registry entry and where to send them.
#[derive(Debug)]
pub struct Route {
    pub upstream: Upstream,
    /// The upstream's URI, or why it cannot be used (a bad URL, or a stdio upstream, which only
    /// local mode serves).
    pub uri: Result<Uri, String>,
}

/// The replica and what is derived from it per revision.
#[derive(Debug, Default)]
pub struct View {
    pub state: Arc<State>,
    pub keys: AgentKeys,
    /// By `tenant/server`.
    routes: HashMap<String, Arc<Route>>,
}

impl View {
    pub fn build(state: Arc<State>) -> Self {
        let keys = AgentKeys::build(&state);
        let routes = state
            .upstreams
            .iter()
            .map(|(key, u)| {
                let uri = match &u.transport {
                    Transport::Http { url } => Upstreams::uri(url).map_err(|e| e.to_string()),
                    Transport::Stdio { .. } => Err(
                        "stdio upstreams are served only in local mode, not by an edge".to_string(),
                    ),
                };
                let route = Route {
                    upstream: u.clone(),
                    uri,
                };
                (key.clone(), Arc::new(route))
            })
            .collect();
        View {
            state,
            keys,
            routes,
        }
    }

    /// The upstream `server` of `tenant`.
    pub fn route(&self, tenant: &str, server: &str) -> Option<&Arc<Route>> {
        self.routes.get(&join_key(&[tenant, server]))
    }
}

/// Keeps the policy cache warm: compiles every version a tenant enforces, shadows or rolls out
/// to as soon as the replica names it, off the request path.
pub fn precompile(state: &State, policies: &PolicyCache) {
    let mut wanted: BTreeSet<(&str, &str)> = BTreeSet::new();
    for t in state.tenants.values() {
        for v in [&t.policy_version, &t.shadow_version].into_iter().flatten() {
            wanted.insert((t.id.as_str(), v.as_str()));
        }
    }
    for r in state.rollouts.values() {
        wanted.insert((r.tenant.as_str(), r.to_version.as_str()));
    }
    for (tenant, version) in wanted {
        if !policies.contains(tenant, version) {
            let _ = policies.get(state, tenant, version);
        }
    }
}
