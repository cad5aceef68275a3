//! What one applied command changed. The RocksDB state machine persists these; the edge watch
//! stream ships the entity changes as deltas.

use serde::{Deserialize, Serialize};

use crate::audit::{AuditHead, AuditRecord};
use crate::entity::{Entity, EntityKey, Kind};
use crate::ids::EdgeId;
use crate::request::Answered;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "change")]
pub enum Change {
    Put {
        entity: Entity,
    },
    Delete {
        key: EntityKey,
    },
    /// Records appended to the audit index, the chain tip after them and the edge's ack.
    Audit {
        records: Vec<AuditRecord>,
        head: AuditHead,
        edge_id: EdgeId,
        acked_edge_seq: u64,
    },
    /// A request id's answer remembered (see [`crate::request`]).
    Answered {
        id: String,
        answered: Answered,
    },
    /// Request ids forgotten.
    Forget {
        ids: Vec<String>,
    },
}

impl Change {
    /// Whether edges need this change: they hold entities, not the audit index, request ids or
    /// operators' role bindings (edges authorize no operator).
    pub fn is_for_edges(&self) -> bool {
        match self {
            Change::Put { entity } => entity.kind() != Kind::RoleBinding,
            Change::Delete { key } => key.kind != Kind::RoleBinding,
            Change::Audit { .. } | Change::Answered { .. } | Change::Forget { .. } => false,
        }
    }
}

/// The entity changes of one revision, as the watch stream carries them.
///
/// `prev_revision` is the revision of the previous delta sent to the same watcher (revisions that
/// changed nothing edges hold are skipped), so a watcher detects any gap: a delta is applicable
/// only when `prev_revision` equals the watcher's current revision.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Delta {
    pub prev_revision: u64,
    pub revision: u64,
    /// Leader time of the command that produced this revision.
    pub time_ms: u64,
    pub changes: Vec<Change>,
}
