//! Audit queries: pick the most selective secondary index for the filter, walk it in sequence
//! order from the cursor, and check every record against the whole filter.

use agentgate_model::audit::AuditRecord;
use agentgate_model::limits::{
    AUDIT_QUERY_BYTES_MAX, AUDIT_QUERY_RECORDS_MAX, AUDIT_QUERY_SCAN_MAX,
};
use agentgate_model::query::AuditFilter;
use openraft::StorageIOError;
use rocksdb::{DB, Direction, IteratorMode};

use crate::keys::{
    AuditIndex, CF_AUDIT, CF_AUDIT_INDEX, audit_key, decode_u64, index_key, index_key_seq,
    index_prefix,
};
use crate::{StorageError, cf};

/// One page of matching records and, when more may match, the cursor to continue from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditPage {
    pub records: Vec<AuditRecord>,
    pub next_after_seq: Option<u64>,
}

fn read_err(e: impl std::error::Error + 'static) -> StorageError {
    StorageIOError::read_state_machine(&e).into()
}

/// A stored record and its size.
fn get_record(db: &DB, seq: u64) -> Result<Option<(AuditRecord, usize)>, StorageError> {
    match db
        .get_cf(cf(db, CF_AUDIT)?, audit_key(seq))
        .map_err(read_err)?
    {
        None => Ok(None),
        Some(v) => serde_json::from_slice(&v)
            .map(|r| Some((r, v.len())))
            .map_err(read_err),
    }
}

/// Runs a query. Results are in sequence order.
pub fn query(db: &DB, f: &AuditFilter) -> Result<AuditPage, StorageError> {
    let limit = f
        .limit
        .map_or(AUDIT_QUERY_RECORDS_MAX, |l| {
            (l as usize).min(AUDIT_QUERY_RECORDS_MAX)
        })
        .max(1);
    let after = f.after_seq.unwrap_or(0);
    let index = match (&f.tenant, &f.session, &f.agent, &f.tool, &f.decision) {
        (Some(t), Some(s), _, _, _) => Some((AuditIndex::Session, format!("{t}/{s}").into_bytes())),
        (Some(t), None, Some(a), _, _) => {
            Some((AuditIndex::Agent, format!("{t}/{a}").into_bytes()))
        }
        (_, _, _, Some(tool), _) => Some((AuditIndex::Tool, tool.clone().into_bytes())),
        (Some(t), _, _, _, _) => Some((AuditIndex::Tenant, t.clone().into_bytes())),
        (_, _, _, _, Some(d)) => Some((AuditIndex::Decision, d.as_str().as_bytes().to_vec())),
        _ => None,
    };
    let mut records = Vec::new();
    let mut scanned = 0usize;
    let mut bytes = 0usize;
    let mut last_seq = after;
    match index {
        Some((idx, value)) => {
            let prefix = index_prefix(idx, &value);
            let start = index_key(idx, &value, after.saturating_add(1));
            for item in db.iterator_cf(
                cf(db, CF_AUDIT_INDEX)?,
                IteratorMode::From(&start, Direction::Forward),
            ) {
                let (k, _) = item.map_err(read_err)?;
                if !k.starts_with(&prefix) {
                    return Ok(AuditPage {
                        records,
                        next_after_seq: None,
                    });
                }
                let Some(seq) = index_key_seq(&k) else {
                    continue;
                };
                scanned += 1;
                if let Some((r, size)) = get_record(db, seq)?
                    && f.matches(&r)
                {
                    // A full page ends before this record: it leads the next one.
                    if !records.is_empty() && bytes + size > AUDIT_QUERY_BYTES_MAX {
                        return Ok(AuditPage {
                            records,
                            next_after_seq: Some(last_seq),
                        });
                    }
                    bytes += size;
                    records.push(r);
                }
                last_seq = seq;
                if records.len() >= limit || scanned >= AUDIT_QUERY_SCAN_MAX {
                    return Ok(AuditPage {
                        records,
                        next_after_seq: Some(last_seq),
                    });
                }
            }
        }
        None => {
            let start = audit_key(after.saturating_add(1));
            for item in db.iterator_cf(
                cf(db, CF_AUDIT)?,
                IteratorMode::From(&start, Direction::Forward),
            ) {
                let (k, v) = item.map_err(read_err)?;
                scanned += 1;
                let seq = decode_u64(&k).unwrap_or(last_seq);
                let r: AuditRecord = serde_json::from_slice(&v).map_err(read_err)?;
                if f.matches(&r) {
                    // A full page ends before this record: it leads the next one.
                    if !records.is_empty() && bytes + v.len() > AUDIT_QUERY_BYTES_MAX {
                        return Ok(AuditPage {
                            records,
                            next_after_seq: Some(last_seq),
                        });
                    }
                    bytes += v.len();
                    records.push(r);
                }
                last_seq = seq;
                if records.len() >= limit || scanned >= AUDIT_QUERY_SCAN_MAX {
                    return Ok(AuditPage {
                        records,
                        next_after_seq: Some(last_seq),
                    });
                }
            }
        }
    }
    Ok(AuditPage {
        records,
        next_after_seq: None,
    })
}
