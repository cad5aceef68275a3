//! The audit log: appending decision records to the hash chain, idempotent per edge.

use super::*;

pub(super) fn append_audit(
    s: &State,
    cmd: &Command,
    edge_id: &str,
    entries: &[crate::audit::AuditEntry],
) -> Handled {
    validate_name("edge id", edge_id)?;
    if entries.len() > AUDIT_BATCH_RECORDS_MAX {
        return Err(invalid(format!(
            "audit batch has {} records; the limit is {AUDIT_BATCH_RECORDS_MAX} (audit_batch_records_max)",
            entries.len()
        )));
    }
    let acked = s.audit_acks.get(edge_id).copied().unwrap_or(0);
    let mut last = acked;
    let mut head: AuditHead = s.audit_head.clone();
    let mut records = Vec::new();
    let mut duplicates = 0u64;
    for e in entries {
        if e.edge_seq <= acked {
            duplicates += 1;
            continue;
        }
        if e.edge_seq <= last {
            return Err(invalid(format!(
                "audit batch from edge `{edge_id}` is not in edge_seq order at {}",
                e.edge_seq
            )));
        }
        let size = serde_json::to_vec(e).map(|v| v.len()).unwrap_or(usize::MAX);
        if size > AUDIT_RECORD_BYTES_MAX {
            return Err(invalid(format!(
                "audit record {} is {size} bytes; the limit is {AUDIT_RECORD_BYTES_MAX} (audit_record_bytes_max)",
                e.edge_seq
            )));
        }
        let seq = head.next_seq;
        let hash = record_hash(&head.last_hash, seq, edge_id, e, cmd.time_ms);
        records.push(AuditRecord {
            seq,
            edge_id: edge_id.to_string(),
            entry: e.clone(),
            committed_ms: cmd.time_ms,
            prev_hash: std::mem::replace(&mut head.last_hash, hash.clone()),
            hash,
        });
        head.next_seq += 1;
        last = e.edge_seq;
    }
    let result = AuditAppend {
        appended: records.len() as u64,
        duplicates,
        first_seq: records.first().map(|r| r.seq),
        last_seq: records.last().map(|r| r.seq),
        acked_edge_seq: last,
    };
    let changes = if records.is_empty() {
        vec![]
    } else {
        vec![Change::Audit {
            records,
            head,
            edge_id: edge_id.to_string(),
            acked_edge_seq: last,
        }]
    };
    Ok((Response::Audit(result), changes))
}
