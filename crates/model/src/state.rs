//! The replicated state machine's in-memory image. The core keeps it next to RocksDB (the
//! durable copy); edges keep the same type, fed by the watch stream.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::audit::AuditHead;
use crate::change::Change;
use crate::entity::{
    Agent, Approval, Entity, EntityKey, KillSwitch, Kind, PolicyPackage, Quota, RoleBinding,
    Rollout, Tenant, Upstream,
};
use crate::ids::EdgeId;
use crate::request::Answered;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct State {
    /// Bumped by every applied command.
    pub revision: u64,
    pub tenants: BTreeMap<String, Tenant>,
    /// Keyed `tenant/agent`.
    pub agents: BTreeMap<String, Agent>,
    /// Keyed `tenant/server`.
    pub upstreams: BTreeMap<String, Upstream>,
    /// Keyed `tenant/version`.
    pub policies: BTreeMap<String, PolicyPackage>,
    /// Keyed by tenant.
    pub rollouts: BTreeMap<String, Rollout>,
    /// Keyed by [`crate::entity::Scope::key`].
    pub switches: BTreeMap<String, KillSwitch>,
    /// Keyed by [`crate::entity::QuotaScope::key`].
    pub quotas: BTreeMap<String, Quota>,
    /// Keyed by approval id.
    pub approvals: BTreeMap<String, Approval>,
    /// Operators' role bindings, keyed by [`RoleBinding::key`].
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub roles: BTreeMap<String, RoleBinding>,
    pub audit_head: AuditHead,
    /// Highest `edge_seq` appended per edge incarnation (audit idempotency).
    pub audit_acks: BTreeMap<EdgeId, u64>,
    /// Answers of recent client request ids (retried writes apply once; [`crate::request`]).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub requests: BTreeMap<String, Answered>,
}

impl State {
    pub fn get(&self, key: &EntityKey) -> Option<Entity> {
        let k = &key.key;
        match key.kind {
            Kind::Tenant => self.tenants.get(k).cloned().map(Entity::Tenant),
            Kind::Agent => self.agents.get(k).cloned().map(Entity::Agent),
            Kind::Upstream => self.upstreams.get(k).cloned().map(Entity::Upstream),
            Kind::Policy => self.policies.get(k).cloned().map(Entity::Policy),
            Kind::Rollout => self.rollouts.get(k).cloned().map(Entity::Rollout),
            Kind::Switch => self.switches.get(k).cloned().map(Entity::Switch),
            Kind::Quota => self.quotas.get(k).cloned().map(Entity::Quota),
            Kind::Approval => self.approvals.get(k).cloned().map(Entity::Approval),
            Kind::RoleBinding => self.roles.get(k).cloned().map(Entity::RoleBinding),
        }
    }

    pub fn put(&mut self, entity: Entity) {
        let key = entity.key().key;
        match entity {
            Entity::Tenant(v) => drop(self.tenants.insert(key, v)),
            Entity::Agent(v) => drop(self.agents.insert(key, v)),
            Entity::Upstream(v) => drop(self.upstreams.insert(key, v)),
            Entity::Policy(v) => drop(self.policies.insert(key, v)),
            Entity::Rollout(v) => drop(self.rollouts.insert(key, v)),
            Entity::Switch(v) => drop(self.switches.insert(key, v)),
            Entity::Quota(v) => drop(self.quotas.insert(key, v)),
            Entity::Approval(v) => drop(self.approvals.insert(key, v)),
            Entity::RoleBinding(v) => drop(self.roles.insert(key, v)),
        }
    }

    pub fn delete(&mut self, key: &EntityKey) -> bool {
        let k = &key.key;
        match key.kind {
            Kind::Tenant => self.tenants.remove(k).is_some(),
            Kind::Agent => self.agents.remove(k).is_some(),
            Kind::Upstream => self.upstreams.remove(k).is_some(),
            Kind::Policy => self.policies.remove(k).is_some(),
            Kind::Rollout => self.rollouts.remove(k).is_some(),
            Kind::Switch => self.switches.remove(k).is_some(),
            Kind::Quota => self.quotas.remove(k).is_some(),
            Kind::Approval => self.approvals.remove(k).is_some(),
            Kind::RoleBinding => self.roles.remove(k).is_some(),
        }
    }

    /// How many entities of a kind exist.
    pub fn count(&self, kind: Kind) -> usize {
        match kind {
            Kind::Tenant => self.tenants.len(),
            Kind::Agent => self.agents.len(),
            Kind::Upstream => self.upstreams.len(),
            Kind::Policy => self.policies.len(),
            Kind::Rollout => self.rollouts.len(),
            Kind::Switch => self.switches.len(),
            Kind::Quota => self.quotas.len(),
            Kind::Approval => self.approvals.len(),
            Kind::RoleBinding => self.roles.len(),
        }
    }

    /// The entities of one kind, in key order.
    pub fn entities_of(&self, kind: Kind) -> Vec<Entity> {
        match kind {
            Kind::Tenant => self.tenants.values().cloned().map(Entity::Tenant).collect(),
            Kind::Agent => self.agents.values().cloned().map(Entity::Agent).collect(),
            Kind::Upstream => self
                .upstreams
                .values()
                .cloned()
                .map(Entity::Upstream)
                .collect(),
            Kind::Policy => self
                .policies
                .values()
                .cloned()
                .map(Entity::Policy)
                .collect(),
            Kind::Rollout => self
                .rollouts
                .values()
                .cloned()
                .map(Entity::Rollout)
                .collect(),
            Kind::Switch => self
                .switches
                .values()
                .cloned()
                .map(Entity::Switch)
                .collect(),
            Kind::Quota => self.quotas.values().cloned().map(Entity::Quota).collect(),
            Kind::Approval => self
                .approvals
                .values()
                .cloned()
                .map(Entity::Approval)
                .collect(),
            Kind::RoleBinding => self
                .roles
                .values()
                .cloned()
                .map(Entity::RoleBinding)
                .collect(),
        }
    }

    /// Every entity, in kind then key order.
    pub fn entities(&self) -> impl Iterator<Item = Entity> + '_ {
        let t = self.tenants.values().cloned().map(Entity::Tenant);
        let a = self.agents.values().cloned().map(Entity::Agent);
        let u = self.upstreams.values().cloned().map(Entity::Upstream);
        let p = self.policies.values().cloned().map(Entity::Policy);
        let r = self.rollouts.values().cloned().map(Entity::Rollout);
        let s = self.switches.values().cloned().map(Entity::Switch);
        let q = self.quotas.values().cloned().map(Entity::Quota);
        let ap = self.approvals.values().cloned().map(Entity::Approval);
        let rb = self.roles.values().cloned().map(Entity::RoleBinding);
        t.chain(a)
            .chain(u)
            .chain(p)
            .chain(r)
            .chain(s)
            .chain(q)
            .chain(ap)
            .chain(rb)
    }

    /// What an edge holds of this state: everything but the request ids' answers and the
    /// operators' role bindings (the same split as [`Change::is_for_edges`]).
    pub fn for_edges(&self) -> State {
        State {
            roles: BTreeMap::new(),
            requests: BTreeMap::new(),
            ..self.clone()
        }
    }

    /// Applies a change as a replica (an edge, or a node restoring): the same effect apply had.
    pub fn apply_change(&mut self, change: &Change) {
        match change {
            Change::Put { entity } => self.put(entity.clone()),
            Change::Delete { key } => {
                self.delete(key);
            }
            Change::Audit {
                head,
                edge_id,
                acked_edge_seq,
                ..
            } => {
                self.audit_head = head.clone();
                self.audit_acks.insert(edge_id.clone(), *acked_edge_seq);
            }
            Change::Answered { id, answered } => {
                self.requests.insert(id.clone(), answered.clone());
            }
            Change::Forget { ids } => {
                for id in ids {
                    self.requests.remove(id);
                }
            }
        }
    }

    /// The state edges need: everything but the audit bookkeeping and the request ids.
    pub fn edge_view(&self) -> State {
        State {
            audit_head: AuditHead::default(),
            audit_acks: BTreeMap::new(),
            requests: BTreeMap::new(),
            ..self.clone()
        }
    }
}
