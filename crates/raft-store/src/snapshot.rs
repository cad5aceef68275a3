//! The snapshot format: a header line (`SnapshotHeader` as JSON) followed by one audit record
//! per line, in sequence order. Line-oriented so install can stream records into write batches.

use agentgate_model::State;
use agentgate_model::audit::AuditRecord;
use serde::{Deserialize, Serialize};

use crate::{LogId, Node, NodeId};

/// Bumped when the format changes incompatibly; install refuses unknown formats.
pub const SNAPSHOT_FORMAT: u32 = 1;

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SnapshotHeader {
    pub format: u32,
    pub last_applied: Option<LogId>,
    pub membership: openraft::StoredMembership<NodeId, Node>,
    pub last_edge_revision: u64,
    pub state: State,
    pub audit_records: u64,
}

/// Splits snapshot data into its header and an iterator over its audit records.
pub fn parse(
    data: &[u8],
) -> Result<
    (
        SnapshotHeader,
        impl Iterator<Item = Result<AuditRecord, serde_json::Error>> + '_,
    ),
    String,
> {
    let mut lines = data.split(|b| *b == b'\n').filter(|l| !l.is_empty());
    let first = lines.next().ok_or("snapshot is empty")?;
    let header: SnapshotHeader =
        serde_json::from_slice(first).map_err(|e| format!("snapshot header: {e}"))?;
    if header.format != SNAPSHOT_FORMAT {
        return Err(format!(
            "snapshot format {} is not {SNAPSHOT_FORMAT}",
            header.format
        ));
    }
    Ok((header, lines.map(serde_json::from_slice)))
}
