//! Ships decision records to the core's audit index (design.md G3: no lost audit).
//!
//! - Every decision gets a record *before* the edge acts on it: [`AuditLog::record`] assigns the
//!   next `edge_seq` and buffers it, or refuses when the buffer is full, and then the caller must
//!   deny the call instead of dropping the record.
//! - The buffer is bounded. Its last [`AuditConfig::reserve_records`] slots are kept for the
//!   denial records of calls refused because the buffer is filling ([`Admission::DenyOnly`]), so
//!   that those denials are audited too. Only when the reserve is gone as well is a request
//!   turned away undecided ([`Admission::Full`]), and counted.
//! - A shipper task sends batches of up to `batch_records_max` at least every `flush_interval`;
//!   a batch is dropped from the buffer only when the core acknowledges it (`acked_edge_seq`).
//!   Retries resend the same records: the core deduplicates by (edge id, edge_seq), so a lost
//!   acknowledgement never duplicates a record.
//! - [`AuditLog::flush`] waits until everything recorded is acknowledged (graceful shutdown).

use agentgate_runtime::net::Dialer;
use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use agentgate_model::audit::AuditEntry;
use agentgate_model::limits::{
    AUDIT_BATCH_BYTES_MAX, AUDIT_BATCH_RECORDS_MAX, GRPC_MESSAGE_BYTES_MAX,
};
use agentgate_proto::pb::AppendAuditRequest;
use agentgate_proto::pb::edge_sync_client::EdgeSyncClient;
use tokio::sync::{Notify, watch};
use tokio::task::JoinHandle;
use tonic::transport::Channel;

#[derive(Debug, Clone)]
pub struct AuditConfig {
    pub endpoints: Vec<String>,
    /// Unique per process start (e.g. a name plus a random suffix). `edge_seq` restarts at 1
    /// with every start, and the core deduplicates by (edge id, edge_seq): reusing an id would
    /// make it drop a new incarnation's records as duplicates.
    pub edge_id: String,
    /// Records buffered at most (unacknowledged ones included).
    pub buffer_records_max: usize,
    /// Of those, slots kept for denials recorded while the buffer is filling.
    pub reserve_records: usize,
    pub batch_records_max: usize,
    pub flush_interval: Duration,
    pub rpc_timeout: Duration,
    pub dialer: Dialer,
}

/// Whether a new call may be decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admission {
    /// Room for the call's record, whatever the decision.
    Open,
    /// The buffer is filling: the call must be denied; its denial record still fits.
    DenyOnly,
    /// Not even a denial can be recorded: turn the request away undecided.
    Full,
}

#[derive(Debug)]
struct Buffer {
    /// The next `edge_seq` to assign (the first is 1).
    next_seq: u64,
    pending: VecDeque<AuditEntry>,
    /// Slots held by [`Held`] records of calls still in flight.
    reserved: usize,
}

impl Buffer {
    fn used(&self) -> usize {
        self.pending.len() + self.reserved
    }

    fn push(&mut self, mut entry: AuditEntry) -> (u64, usize) {
        let seq = self.next_seq;
        self.next_seq += 1;
        entry.edge_seq = seq;
        // A record the core would refuse could never be shipped and would block the buffer.
        self.pending.push_back(entry.bounded());
        (seq, self.pending.len())
    }
}

/// The edge's audit buffer. Cheap to clone.
#[derive(Clone)]
pub struct AuditLog {
    buffer: Arc<Mutex<Buffer>>,
    wake: Arc<Notify>,
    /// The highest `edge_seq` the core has acknowledged.
    acked: watch::Receiver<u64>,
    config: Arc<AuditConfig>,
}

/// Why a record was not taken.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuditError {
    #[error("the audit buffer is full ({0} records unacknowledged); the call must not proceed")]
    Full(usize),
    #[error("the audit buffer is unusable (a thread panicked while holding it)")]
    Poisoned,
}

impl AuditLog {
    /// What a new call may do, given the buffer's fill.
    pub fn admission(&self) -> Admission {
        let Ok(b) = self.buffer.lock() else {
            return Admission::Full;
        };
        let used = b.used();
        let cap = self.config.buffer_records_max;
        if used + self.config.reserve_records < cap {
            Admission::Open
        } else if used < cap {
            Admission::DenyOnly
        } else {
            Admission::Full
        }
    }

    /// Buffers a record and returns its `edge_seq`. The caller sets everything but `edge_seq`.
    pub fn record(&self, entry: AuditEntry) -> Result<u64, AuditError> {
        let mut b = self.buffer.lock().map_err(|_| AuditError::Poisoned)?;
        if b.used() >= self.config.buffer_records_max {
            metrics::counter!("agentgate_edge_audit_refused_total").increment(1);
            return Err(AuditError::Full(b.used()));
        }
        let (seq, len) = b.push(entry);
        drop(b);
        self.pushed(len);
        Ok(seq)
    }

    fn pushed(&self, len: usize) {
        metrics::gauge!("agentgate_edge_audit_backlog_records").set(len as f64);
        if len >= self.config.batch_records_max {
            self.wake.notify_one();
        }
    }

    /// Holds a slot for the record of a call that is going ahead, to be completed (upstream
    /// status, latency) when the call's outcome is known. The record is buffered when the
    /// [`Held`] is committed or dropped, whichever comes first: a call abandoned half-way (the
    /// agent went away) still leaves its one record.
    pub fn hold(&self, entry: AuditEntry) -> Result<Held, AuditError> {
        let mut b = self.buffer.lock().map_err(|_| AuditError::Poisoned)?;
        if b.used() >= self.config.buffer_records_max {
            metrics::counter!("agentgate_edge_audit_refused_total").increment(1);
            return Err(AuditError::Full(b.used()));
        }
        b.reserved += 1;
        Ok(Held {
            log: self.clone(),
            entry: Some(entry),
        })
    }

    /// Records buffered and not yet acknowledged.
    pub fn backlog(&self) -> usize {
        self.buffer.lock().map_or(0, |b| b.pending.len())
    }

    /// The highest `edge_seq` acknowledged by the core.
    pub fn acked(&self) -> u64 {
        *self.acked.borrow()
    }

    /// Waits until every record taken so far is acknowledged, or `limit` passes; returns
    /// whether everything was shipped.
    pub async fn flush(&self, limit: Duration) -> bool {
        let Some(target) = self.buffer.lock().ok().map(|b| b.next_seq - 1) else {
            return false;
        };
        self.wake.notify_one();
        let mut acked = self.acked.clone();
        matches!(
            tokio::time::timeout(limit, acked.wait_for(|a| *a >= target)).await,
            Ok(Ok(_))
        )
    }
}

/// A record whose slot is reserved; see [`AuditLog::hold`].
pub struct Held {
    log: AuditLog,
    entry: Option<AuditEntry>,
}

impl Held {
    /// The record, to complete before committing.
    pub fn entry_mut(&mut self) -> Option<&mut AuditEntry> {
        self.entry.as_mut()
    }

    /// Buffers the record.
    pub fn commit(mut self) {
        self.release();
    }

    fn release(&mut self) {
        let Some(entry) = self.entry.take() else {
            return;
        };
        // INVARIANT: the slot was reserved, so the record always fits.
        let len = match self.log.buffer.lock() {
            Ok(mut b) => {
                b.reserved = b.reserved.saturating_sub(1);
                b.push(entry).1
            }
            Err(_) => return,
        };
        self.log.pushed(len);
    }
}

impl Drop for Held {
    fn drop(&mut self) {
        self.release();
    }
}

/// The shipper task; dropping this stops it (call [`AuditLog::flush`] first).
pub struct AuditShipper {
    task: JoinHandle<()>,
}

impl Drop for AuditShipper {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// The records of `batch` that fit [`AUDIT_BATCH_BYTES_MAX`] (at least the first: a bounded
/// entry always fits), encoded as the JSON array the core expects, and those records.
fn encode_batch(mut batch: Vec<AuditEntry>) -> (Vec<u8>, Vec<AuditEntry>) {
    let mut out = Vec::with_capacity(64 * batch.len());
    out.push(b'[');
    let mut kept = 0;
    for e in &batch {
        let Ok(one) = serde_json::to_vec(e) else {
            break;
        };
        if kept > 0 && out.len() + one.len() + 2 > AUDIT_BATCH_BYTES_MAX {
            break;
        }
        if kept > 0 {
            out.push(b',');
        }
        out.extend_from_slice(&one);
        kept += 1;
    }
    out.push(b']');
    batch.truncate(kept);
    (out, batch)
}

/// Creates the audit log and starts its shipper.
pub fn start(config: AuditConfig) -> Result<(AuditLog, AuditShipper), String> {
    if config.endpoints.is_empty() {
        return Err("no core endpoints given".into());
    }
    if config.batch_records_max == 0 || config.batch_records_max > AUDIT_BATCH_RECORDS_MAX {
        return Err(format!(
            "audit batch size must be 1 to {AUDIT_BATCH_RECORDS_MAX}"
        ));
    }
    if config.reserve_records >= config.buffer_records_max {
        return Err("the audit reserve must be smaller than the buffer".into());
    }
    let mut clients = Vec::new();
    for addr in &config.endpoints {
        let channel = agentgate_runtime::channel::lazy(addr, config.rpc_timeout, &config.dialer)?;
        clients.push(
            EdgeSyncClient::new(channel)
                .max_encoding_message_size(GRPC_MESSAGE_BYTES_MAX)
                .max_decoding_message_size(GRPC_MESSAGE_BYTES_MAX),
        );
    }
    let buffer = Arc::new(Mutex::new(Buffer {
        next_seq: 1,
        pending: VecDeque::new(),
        reserved: 0,
    }));
    let wake = Arc::new(Notify::new());
    let (acked_tx, acked) = watch::channel(0u64);
    let config = Arc::new(config);
    let log = AuditLog {
        buffer: buffer.clone(),
        wake: wake.clone(),
        acked,
        config: config.clone(),
    };
    let task = tokio::spawn(ship(config, clients, buffer, wake, acked_tx));
    Ok((log, AuditShipper { task }))
}

async fn ship(
    config: Arc<AuditConfig>,
    clients: Vec<EdgeSyncClient<Channel>>,
    buffer: Arc<Mutex<Buffer>>,
    wake: Arc<Notify>,
    acked: watch::Sender<u64>,
) {
    let mut next = 0usize;
    let mut backoff = Duration::from_millis(20);
    loop {
        // Wait for a full batch or the flush interval, whichever comes first.
        let _ = tokio::time::timeout(config.flush_interval, wake.notified()).await;
        loop {
            let batch: Vec<AuditEntry> = match buffer.lock() {
                Ok(b) => b
                    .pending
                    .iter()
                    .take(config.batch_records_max)
                    .cloned()
                    .collect(),
                Err(_) => return,
            };
            if batch.is_empty() {
                break;
            }
            let (records_json, batch) = encode_batch(batch);
            if batch.is_empty() {
                return;
            }
            let Some(mut c) = clients.get(next % clients.len()).cloned() else {
                return;
            };
            let req = AppendAuditRequest {
                edge_id: config.edge_id.clone(),
                records_json,
            };
            match c.append_audit(req).await {
                Ok(reply) => {
                    // INVARIANT: records leave the buffer only once the core holds them.
                    let upto = reply.into_inner().acked_edge_seq;
                    let len = match buffer.lock() {
                        Ok(mut b) => {
                            while b.pending.front().is_some_and(|e| e.edge_seq <= upto) {
                                b.pending.pop_front();
                            }
                            b.pending.len()
                        }
                        Err(_) => return,
                    };
                    acked.send_if_modified(|a| {
                        let grew = upto > *a;
                        *a = (*a).max(upto);
                        grew
                    });
                    metrics::counter!("agentgate_edge_audit_shipped_total")
                        .increment(batch.len() as u64);
                    metrics::gauge!("agentgate_edge_audit_backlog_records").set(len as f64);
                    backoff = Duration::from_millis(20);
                    if len < config.batch_records_max {
                        break;
                    }
                }
                Err(status) => {
                    tracing::warn!(error = %status.message(), "audit batch not acknowledged; retrying on the next core node");
                    metrics::counter!("agentgate_edge_audit_retries_total").increment(1);
                    next += 1;
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_secs(1));
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use agentgate_model::audit::Decision;

    use super::*;

    fn entry(seq: u64, reason_bytes: usize) -> AuditEntry {
        AuditEntry {
            edge_seq: seq,
            time_ms: 1,
            tenant: "t".into(),
            agent: "bot".into(),
            session: None,
            method: "tools/call".into(),
            tool: Some("echo".into()),
            args_digest: None,
            decision: Decision::Allow,
            reason: "r".repeat(reason_bytes),
            policy_version: None,
            policy_ids: vec![],
            shadow_decision: None,
            latency_us: 0,
            upstream_latency_us: None,
            upstream_status: None,
            trace_id: None,
        }
        .bounded()
    }

    #[test]
    fn batches_are_cut_to_the_byte_bound_and_stay_valid_json() {
        let small: Vec<_> = (1..=3).map(|i| entry(i, 10)).collect();
        let (json, kept) = encode_batch(small.clone());
        assert_eq!(kept, small);
        assert_eq!(
            serde_json::from_slice::<Vec<AuditEntry>>(&json).unwrap(),
            small
        );
        // Records of ~1 KiB: a 4,096-record batch would be ~4 MiB, over the bound.
        let big: Vec<_> = (1..=AUDIT_BATCH_RECORDS_MAX as u64)
            .map(|i| entry(i, 1_000))
            .collect();
        let (json, kept) = encode_batch(big);
        assert!(json.len() <= AUDIT_BATCH_BYTES_MAX, "{}", json.len());
        assert!(kept.len() > 1000 && kept.len() < AUDIT_BATCH_RECORDS_MAX);
        let decoded: Vec<AuditEntry> = serde_json::from_slice(&json).unwrap();
        assert_eq!(decoded, kept);
        assert_eq!(decoded.last().map(|e| e.edge_seq), Some(kept.len() as u64));
    }
}
