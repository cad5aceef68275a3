//! The replicated state machine: applies committed entries with `agentgate_model::apply`, writes
//! what changed to RocksDB in one batch per `apply` call, keeps the in-memory [`State`] for reads,
//! and publishes entity deltas to edge watchers.

use std::io::Cursor;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock, RwLockReadGuard, RwLockWriteGuard};

use agentgate_model::audit::{AuditHead, AuditRecord};
use agentgate_model::change::{Change, Delta};
use agentgate_model::command::CommandResult;
use agentgate_model::entity::{Entity, Kind};
use agentgate_model::query::AuditFilter;
use agentgate_model::{State, apply};
use openraft::storage::RaftStateMachine;
use openraft::{
    EntryPayload, RaftSnapshotBuilder, Snapshot, SnapshotMeta, StorageIOError, StoredMembership,
};
use rocksdb::{DB, IteratorMode, WriteBatch, WriteOptions};
use serde::{Deserialize, Serialize};
use tokio::sync::broadcast;

use crate::audit_index::{self, AuditPage};
use crate::keys::*;
use crate::snapshot::{self, SNAPSHOT_FORMAT, SnapshotHeader};
use crate::watch::{Feed, FeedEvent, Recent, WatchStart};
use crate::{Entry, LogId, Node, NodeId, StorageError, TypeConfig, cf};

/// Revision, audit head and acks: the non-entity part of [`State`], persisted under `META_SM`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct SmMeta {
    revision: u64,
    last_edge_revision: u64,
    audit_head: AuditHead,
    audit_acks: std::collections::BTreeMap<String, u64>,
}

pub(crate) struct Inner {
    last_applied: Option<LogId>,
    membership: StoredMembership<NodeId, Node>,
    state: State,
    /// Revision of the newest delta published to watchers.
    last_edge_revision: u64,
    recent: Recent,
}

pub(crate) struct Shared {
    inner: RwLock<Inner>,
    feed: Feed,
    snapshot_seq: AtomicU64,
    /// Size of the last snapshot built or installed (0: none yet).
    snapshot_bytes: AtomicU64,
}

/// The state machine handed to openraft. Cheap to clone; clones share everything.
#[derive(Clone)]
pub struct StateMachineStore {
    db: Arc<DB>,
    shared: Arc<Shared>,
}

/// Read access for the node's admin and edge-sync services.
#[derive(Clone)]
pub struct StateReader {
    db: Arc<DB>,
    shared: Arc<Shared>,
}

fn poisoned() -> StorageError {
    StorageIOError::read_state_machine(&std::io::Error::other("state machine lock poisoned")).into()
}

fn werr(e: impl std::error::Error + 'static) -> StorageError {
    StorageIOError::write_state_machine(&e).into()
}

fn rerr(e: impl std::error::Error + 'static) -> StorageError {
    StorageIOError::read_state_machine(&e).into()
}

fn write_change(db: &DB, batch: &mut WriteBatch, change: &Change) -> Result<(), StorageError> {
    match change {
        Change::Put { entity } => {
            let key = entity.key();
            let bytes = serde_json::to_vec(entity).map_err(werr)?;
            batch.put_cf(cf(db, &entity_cf(key.kind))?, key.key.as_bytes(), bytes);
        }
        Change::Delete { key } => {
            batch.delete_cf(cf(db, &entity_cf(key.kind))?, key.key.as_bytes())
        }
        Change::Audit { records, .. } => {
            for r in records {
                write_audit_record(db, batch, r)?;
            }
        }
        Change::Answered { id, answered } => {
            let bytes = serde_json::to_vec(answered).map_err(werr)?;
            batch.put_cf(cf(db, CF_REQUESTS)?, id.as_bytes(), bytes);
        }
        Change::Forget { ids } => {
            let c = cf(db, CF_REQUESTS)?;
            for id in ids {
                batch.delete_cf(c, id.as_bytes());
            }
        }
    }
    Ok(())
}

fn write_audit_record(
    db: &DB,
    batch: &mut WriteBatch,
    r: &AuditRecord,
) -> Result<(), StorageError> {
    batch.put_cf(
        cf(db, CF_AUDIT)?,
        audit_key(r.seq),
        serde_json::to_vec(r).map_err(werr)?,
    );
    let idx = cf(db, CF_AUDIT_INDEX)?;
    for k in index_keys(r) {
        batch.put_cf(idx, k, []);
    }
    Ok(())
}

impl Inner {
    fn meta(&self) -> SmMeta {
        SmMeta {
            revision: self.state.revision,
            last_edge_revision: self.last_edge_revision,
            audit_head: self.state.audit_head.clone(),
            audit_acks: self.state.audit_acks.clone(),
        }
    }

    fn write_meta(&self, db: &DB, batch: &mut WriteBatch) -> Result<(), StorageError> {
        let meta = cf(db, CF_META)?;
        batch.put_cf(
            meta,
            META_LAST_APPLIED,
            serde_json::to_vec(&self.last_applied).map_err(werr)?,
        );
        batch.put_cf(
            meta,
            META_MEMBERSHIP,
            serde_json::to_vec(&self.membership).map_err(werr)?,
        );
        batch.put_cf(
            meta,
            META_SM,
            serde_json::to_vec(&self.meta()).map_err(werr)?,
        );
        Ok(())
    }
}

impl StateMachineStore {
    /// Loads the state machine from the column families.
    pub(crate) fn load(db: Arc<DB>) -> Result<Self, StorageError> {
        let get = |key: &[u8]| -> Result<Option<Vec<u8>>, StorageError> {
            db.get_cf(cf(&db, CF_META)?, key).map_err(rerr)
        };
        let last_applied: Option<LogId> = match get(META_LAST_APPLIED)? {
            Some(v) => serde_json::from_slice(&v).map_err(rerr)?,
            None => None,
        };
        let membership = match get(META_MEMBERSHIP)? {
            Some(v) => serde_json::from_slice(&v).map_err(rerr)?,
            None => StoredMembership::default(),
        };
        let meta: SmMeta = match get(META_SM)? {
            Some(v) => serde_json::from_slice(&v).map_err(rerr)?,
            None => SmMeta::default(),
        };
        let mut state = State {
            revision: meta.revision,
            audit_head: meta.audit_head,
            audit_acks: meta.audit_acks,
            ..State::default()
        };
        for kind in Kind::ALL {
            for item in db.iterator_cf(cf(&db, &entity_cf(kind))?, IteratorMode::Start) {
                let (_, v) = item.map_err(rerr)?;
                let entity: Entity = serde_json::from_slice(&v).map_err(rerr)?;
                state.put(entity);
            }
        }
        for item in db.iterator_cf(cf(&db, CF_REQUESTS)?, IteratorMode::Start) {
            let (k, v) = item.map_err(rerr)?;
            let id = String::from_utf8(k.to_vec()).map_err(rerr)?;
            state
                .requests
                .insert(id, serde_json::from_slice(&v).map_err(rerr)?);
        }
        let revision = state.revision;
        let snapshot_bytes = db
            .get_pinned_cf(cf(&db, CF_SNAPSHOT)?, META_SNAPSHOT_DATA)
            .map_err(rerr)?
            .map_or(0, |d| d.len() as u64);
        let inner = Inner {
            last_applied,
            membership,
            state,
            last_edge_revision: meta.last_edge_revision,
            recent: Recent::default(),
        };
        let shared = Shared {
            inner: RwLock::new(inner),
            feed: Feed::new(revision),
            snapshot_seq: AtomicU64::new(0),
            snapshot_bytes: AtomicU64::new(snapshot_bytes),
        };
        Ok(StateMachineStore {
            db,
            shared: Arc::new(shared),
        })
    }

    pub fn reader(&self) -> StateReader {
        StateReader {
            db: self.db.clone(),
            shared: self.shared.clone(),
        }
    }

    fn write(&self) -> Result<RwLockWriteGuard<'_, Inner>, StorageError> {
        self.shared.inner.write().map_err(|_| poisoned())
    }

    fn build(&self) -> Result<Snapshot<TypeConfig>, StorageError> {
        let (header, snap) = {
            let inner = self.shared.inner.read().map_err(|_| poisoned())?;
            let header = SnapshotHeader {
                format: SNAPSHOT_FORMAT,
                last_applied: inner.last_applied,
                membership: inner.membership.clone(),
                last_edge_revision: inner.last_edge_revision,
                state: inner.state.clone(),
                audit_records: inner.state.audit_head.next_seq.saturating_sub(1),
            };
            // INVARIANT: state-machine writes happen under the write lock, so this RocksDB
            // snapshot holds exactly the audit records of `header`.
            (header, self.db.snapshot())
        };
        let mut data = serde_json::to_vec(&header).map_err(werr)?;
        data.push(b'\n');
        for item in snap.iterator_cf(cf(&self.db, CF_AUDIT)?, IteratorMode::Start) {
            let (_, v) = item.map_err(rerr)?;
            data.extend_from_slice(&v);
            data.push(b'\n');
        }
        let seq = self.shared.snapshot_seq.fetch_add(1, Ordering::Relaxed);
        let snapshot_id = match header.last_applied {
            Some(l) => format!("{}-{}-{seq}", l.leader_id, l.index),
            None => format!("none-{seq}"),
        };
        let meta = SnapshotMeta {
            last_log_id: header.last_applied,
            last_membership: header.membership,
            snapshot_id,
        };
        self.persist_snapshot(&meta, &data)?;
        Ok(Snapshot {
            meta,
            snapshot: Box::new(Cursor::new(data)),
        })
    }

    fn persist_snapshot(
        &self,
        meta: &SnapshotMeta<NodeId, Node>,
        data: &[u8],
    ) -> Result<(), StorageError> {
        let c = cf(&self.db, CF_SNAPSHOT)?;
        let mut batch = WriteBatch::default();
        batch.put_cf(c, META_SNAPSHOT, serde_json::to_vec(meta).map_err(werr)?);
        batch.put_cf(c, META_SNAPSHOT_DATA, data);
        let mut w = WriteOptions::default();
        w.set_sync(true);
        self.db.write_opt(batch, &w).map_err(werr)?;
        self.shared
            .snapshot_bytes
            .store(data.len() as u64, Ordering::Relaxed);
        Ok(())
    }
}

impl StateReader {
    fn read(&self) -> Result<RwLockReadGuard<'_, Inner>, StorageError> {
        self.shared.inner.read().map_err(|_| poisoned())
    }

    /// Runs `f` on the current state.
    pub fn with_state<R>(&self, f: impl FnOnce(&State) -> R) -> Result<R, StorageError> {
        Ok(f(&self.read()?.state))
    }

    pub fn revision(&self) -> u64 {
        *self.shared.feed.revision.borrow()
    }

    /// Size in bytes of the last snapshot this node built or installed (0: none yet).
    pub fn snapshot_bytes(&self) -> u64 {
        self.shared.snapshot_bytes.load(Ordering::Relaxed)
    }

    /// The revision of the newest change edges see (audit appends are not sent to edges): an
    /// edge holding this revision holds everything applied so far.
    pub fn edge_revision(&self) -> Result<u64, StorageError> {
        Ok(self.read()?.last_edge_revision)
    }

    /// A receiver that sees the applied revision rise.
    pub fn revision_watch(&self) -> tokio::sync::watch::Receiver<u64> {
        self.shared.feed.revision.subscribe()
    }

    pub fn last_applied(&self) -> Result<Option<LogId>, StorageError> {
        Ok(self.read()?.last_applied)
    }

    /// Subscribes a watcher that has seen everything up to `from_revision` (`None`: nothing).
    ///
    /// The start and the receiver are taken under one lock: the receiver yields exactly the
    /// deltas after the start.
    pub fn subscribe(
        &self,
        from_revision: Option<u64>,
    ) -> Result<(WatchStart, broadcast::Receiver<FeedEvent>), StorageError> {
        let inner = self.read()?;
        let rx = self.shared.feed.tx.subscribe();
        let start = from_revision
            .and_then(|from| inner.recent.since(from, inner.last_edge_revision))
            .map(WatchStart::Deltas)
            .unwrap_or_else(|| WatchStart::Snapshot(Box::new(inner.state.edge_view())));
        Ok((start, rx))
    }

    pub fn audit_query(&self, filter: &AuditFilter) -> Result<AuditPage, StorageError> {
        audit_index::query(&self.db, filter)
    }
}

impl RaftSnapshotBuilder<TypeConfig> for StateMachineStore {
    async fn build_snapshot(&mut self) -> Result<Snapshot<TypeConfig>, StorageError> {
        self.build()
    }
}

impl RaftStateMachine<TypeConfig> for StateMachineStore {
    type SnapshotBuilder = Self;

    async fn applied_state(
        &mut self,
    ) -> Result<(Option<LogId>, StoredMembership<NodeId, Node>), StorageError> {
        let inner = self.shared.inner.read().map_err(|_| poisoned())?;
        Ok((inner.last_applied, inner.membership.clone()))
    }

    async fn apply<I>(&mut self, entries: I) -> Result<Vec<CommandResult>, StorageError>
    where
        I: IntoIterator<Item = Entry> + Send,
        I::IntoIter: Send,
    {
        let db = self.db.clone();
        let mut inner = self.write()?;
        let mut batch = WriteBatch::default();
        let mut results = Vec::new();
        let mut deltas = Vec::new();
        for entry in entries {
            inner.last_applied = Some(entry.log_id);
            match entry.payload {
                EntryPayload::Blank => {
                    results.push(CommandResult {
                        revision: inner.state.revision,
                        outcome: None,
                        replay_of: None,
                    });
                }
                EntryPayload::Membership(m) => {
                    inner.membership = StoredMembership::new(Some(entry.log_id), m);
                    results.push(CommandResult {
                        revision: inner.state.revision,
                        outcome: None,
                        replay_of: None,
                    });
                }
                EntryPayload::Normal(cmd) => {
                    let applied = apply(&mut inner.state, &cmd);
                    for c in &applied.changes {
                        write_change(&db, &mut batch, c)?;
                    }
                    let for_edges: Vec<Change> = applied
                        .changes
                        .into_iter()
                        .filter(Change::is_for_edges)
                        .collect();
                    if !for_edges.is_empty() {
                        let delta = Arc::new(Delta {
                            prev_revision: inner.last_edge_revision,
                            revision: applied.revision,
                            time_ms: cmd.time_ms,
                            changes: for_edges,
                        });
                        inner.last_edge_revision = applied.revision;
                        deltas.push(delta);
                    }
                    results.push(CommandResult {
                        revision: applied.revision,
                        outcome: Some(applied.result),
                        replay_of: applied.replay_of,
                    });
                }
            }
        }
        inner.write_meta(&db, &mut batch)?;
        db.write(batch).map_err(werr)?;
        for d in deltas {
            inner.recent.push(d.clone());
            // No receivers is fine: nobody is watching.
            let _ = self.shared.feed.tx.send(FeedEvent::Delta(d));
        }
        self.shared.feed.revision.send_replace(inner.state.revision);
        Ok(results)
    }

    async fn get_snapshot_builder(&mut self) -> Self::SnapshotBuilder {
        self.clone()
    }

    async fn begin_receiving_snapshot(&mut self) -> Result<Box<Cursor<Vec<u8>>>, StorageError> {
        Ok(Box::new(Cursor::new(Vec::new())))
    }

    async fn install_snapshot(
        &mut self,
        meta: &SnapshotMeta<NodeId, Node>,
        snapshot: Box<Cursor<Vec<u8>>>,
    ) -> Result<(), StorageError> {
        let data = snapshot.into_inner();
        let sig = Some(meta.signature());
        let (header, records) = snapshot::parse(&data)
            .map_err(|e| StorageIOError::read_snapshot(sig.clone(), &std::io::Error::other(e)))?;
        let db = self.db.clone();
        let mut inner = self.write()?;
        // Clear every state column family, then load the snapshot's content, in one batch.
        let mut batch = WriteBatch::default();
        for name in state_cfs() {
            let c = cf(&db, &name)?;
            for item in db.iterator_cf(c, IteratorMode::Start) {
                let (k, _) = item.map_err(rerr)?;
                batch.delete_cf(c, k);
            }
        }
        for entity in header.state.entities() {
            write_change(&db, &mut batch, &Change::Put { entity })?;
        }
        for (id, answered) in &header.state.requests {
            let change = Change::Answered {
                id: id.clone(),
                answered: answered.clone(),
            };
            write_change(&db, &mut batch, &change)?;
        }
        for r in records {
            let r = r.map_err(|e| StorageIOError::read_snapshot(sig.clone(), &e))?;
            write_audit_record(&db, &mut batch, &r)?;
        }
        inner.last_applied = meta.last_log_id;
        inner.membership = meta.last_membership.clone();
        inner.state = header.state;
        inner.last_edge_revision = header.last_edge_revision;
        inner.recent.clear();
        inner.write_meta(&db, &mut batch)?;
        db.write(batch).map_err(werr)?;
        self.persist_snapshot(meta, &data)?;
        let _ = self.shared.feed.tx.send(FeedEvent::Reset);
        self.shared.feed.revision.send_replace(inner.state.revision);
        Ok(())
    }

    async fn get_current_snapshot(&mut self) -> Result<Option<Snapshot<TypeConfig>>, StorageError> {
        let c = cf(&self.db, CF_SNAPSHOT)?;
        let Some(meta) = self.db.get_cf(c, META_SNAPSHOT).map_err(rerr)? else {
            return Ok(None);
        };
        let meta: SnapshotMeta<NodeId, Node> = serde_json::from_slice(&meta).map_err(rerr)?;
        let data = self
            .db
            .get_cf(c, META_SNAPSHOT_DATA)
            .map_err(rerr)?
            .unwrap_or_default();
        Ok(Some(Snapshot {
            meta,
            snapshot: Box::new(Cursor::new(data)),
        }))
    }
}
