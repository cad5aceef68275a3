//! The guarantees of design.md §4, each checked over one run's history and the healed cluster's
//! final state. One file per invariant.
//!
//! | id | guarantee | what is checked |
//! |----|-----------|-----------------|
//! | G1 | kill-switch bound | no call covered by an acknowledged switch is admitted later than `max_staleness` after the acknowledgement (250 ms once the cluster is healthy), until a release of it was invoked |
//! | G2 | stale edges admit nothing | no call is admitted by an edge that had been cut from every core node for `max_staleness` |
//! | G3 | no lost audit | every decided call has exactly one audit record (at most one for calls on an edge that crashed, whose memory is lost); no record twice |
//! | G4 | tamper evidence | the audit chain verifies from genesis, and every node holds the same head, which matches the log's tip |
//! | G6 | safe policy changes | every decision names a policy version committed for the tenant and activated or rolled out by an operator |
//! | G7 | consensus safety | at most one leader per term; every acknowledged policy push survives; the global pause, as operators wrote and read it, is linearizable (stateright) |
//! | heal | converge and serve | after heal and settle, no call is denied as stale or left undecided, and every node holds the same audit head |
//!
//! G5 (exact quotas) waits for quotas to be enforced by edges.

use crate::history::Log;
use crate::topology::Topology;
use crate::workload::FinalState;

pub mod g1_kill_switch;
pub mod g2_stale_edge;
pub mod g3_audit_exactly_once;
pub mod g4_audit_chain;
pub mod g6_policy_versions;
pub mod g7_consensus;
pub mod heal;

/// Everything an invariant may look at.
pub struct Ctx<'a> {
    pub topo: &'a Topology,
    pub log: &'a Log,
    pub final_state: &'a FinalState,
    pub max_staleness_ms: u64,
    /// From here on, no fault has touched the cluster for a while.
    pub healthy_from_ms: u64,
    pub chaos_end_ms: u64,
}

pub struct Invariant {
    pub id: &'static str,
    pub name: &'static str,
    pub check: fn(&Ctx<'_>) -> Vec<String>,
}

pub const ALL: &[Invariant] = &[
    Invariant {
        id: "G1",
        name: "kill-switch bound",
        check: g1_kill_switch::check,
    },
    Invariant {
        id: "G2",
        name: "a stale edge admits nothing",
        check: g2_stale_edge::check,
    },
    Invariant {
        id: "G3",
        name: "exactly one audit record per decision",
        check: g3_audit_exactly_once::check,
    },
    Invariant {
        id: "G4",
        name: "the audit chain verifies",
        check: g4_audit_chain::check,
    },
    Invariant {
        id: "G6",
        name: "decisions use committed policy versions",
        check: g6_policy_versions::check,
    },
    Invariant {
        id: "G7",
        name: "consensus safety and linearizable admin",
        check: g7_consensus::check,
    },
];
