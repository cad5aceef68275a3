//! openraft type configuration and AgentGate's RocksDB storage: the Raft log and the replicated
//! state machine in one RocksDB instance, one column family per concern.
//!
//! - [`keys`]: column families and key encoding (the only place that knows byte layouts).
//! - [`log_store`]: `RaftLogStorage`: entries, vote, committed index, purge.
//! - [`state_machine`]: `RaftStateMachine`: applies entries through `agentgate_model::apply`,
//!   persists what changed, serves reads and the edge watch feed.
//! - [`snapshot`]: the snapshot format (build, install, persistence of the current one).
//! - [`audit_index`]: audit queries over the record and secondary-index column families.
//! - [`watch`]: the feed of deltas to edge watchers, with a bounded resume window.
//!
//! INVARIANT: only this crate (and the node's network module) sees openraft's storage types,
//! and only this crate knows RocksDB.
//! INVARIANT: a state-machine write (changes + last applied + metadata) is one atomic
//! RocksDB write batch, so a crash never leaves a half-applied entry on disk.
#![forbid(unsafe_code)]
// openraft's `StorageError` is large and is the error type its storage traits require.
#![allow(clippy::result_large_err)]

use std::io::Cursor;
use std::path::Path;
use std::sync::Arc;

use rocksdb::{ColumnFamilyDescriptor, DB, Options};

pub mod audit_index;
pub mod keys;
pub mod log_store;
pub mod snapshot;
pub mod state_machine;
pub mod watch;

pub use log_store::{CommittedIndex, LogStore};
pub use state_machine::{StateMachineStore, StateReader};

use agentgate_model::command::{Command, CommandResult};

openraft::declare_raft_types!(
    /// The Raft type configuration of AgentGate's core.
    pub TypeConfig:
        D = Command,
        R = CommandResult,
        NodeId = u64,
        Node = openraft::BasicNode,
        SnapshotData = Cursor<Vec<u8>>,
);

pub type NodeId = u64;
pub type Node = openraft::BasicNode;
pub type Raft = openraft::Raft<TypeConfig>;
pub type StorageError = openraft::StorageError<NodeId>;
pub type LogId = openraft::LogId<NodeId>;
pub type Entry = openraft::Entry<TypeConfig>;

/// Opening the store failed.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    #[error("cannot open RocksDB at `{path}`: {source}")]
    Db {
        path: String,
        source: rocksdb::Error,
    },
    #[error("stored data at `{path}` is unreadable: {message}")]
    Corrupt { path: String, message: String },
}

/// Opens (creating if needed) the store under `dir` and returns its log store and state machine.
pub fn open(dir: &Path) -> Result<(LogStore, StateMachineStore), OpenError> {
    let path = dir.display().to_string();
    let mut opts = Options::default();
    opts.create_if_missing(true);
    opts.create_missing_column_families(true);
    let cfs = keys::all_cfs()
        .into_iter()
        .map(|name| ColumnFamilyDescriptor::new(name, Options::default()));
    let db = DB::open_cf_descriptors(&opts, dir, cfs).map_err(|source| OpenError::Db {
        path: path.clone(),
        source,
    })?;
    let db = Arc::new(db);
    let sm = StateMachineStore::load(db.clone()).map_err(|e| OpenError::Corrupt {
        path,
        message: e.to_string(),
    })?;
    Ok((LogStore::new(db), sm))
}

/// A column family handle; the store opens every family it uses, so absence is corruption.
pub(crate) fn cf<'a>(db: &'a DB, name: &str) -> Result<&'a rocksdb::ColumnFamily, StorageError> {
    db.cf_handle(name).ok_or_else(|| {
        openraft::StorageIOError::read(&std::io::Error::other(format!(
            "column family `{name}` is missing"
        )))
        .into()
    })
}
