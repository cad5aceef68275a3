//! openraft's own storage test suite against the RocksDB store.
#![allow(clippy::result_large_err)] // openraft.s StorageError is what the suite returns

use agentgate_raft_store::{LogStore, StateMachineStore, StorageError, TypeConfig, open};
use openraft::testing::{StoreBuilder, Suite};
use tempfile::TempDir;

struct RocksBuilder;

impl StoreBuilder<TypeConfig, LogStore, StateMachineStore, TempDir> for RocksBuilder {
    async fn build(&self) -> Result<(TempDir, LogStore, StateMachineStore), StorageError> {
        let dir = TempDir::new().map_err(|e| openraft::StorageIOError::write(&e))?;
        let (log, sm) = open(dir.path()).map_err(|e| openraft::StorageIOError::write(&e))?;
        Ok((dir, log, sm))
    }
}

#[test]
fn openraft_storage_suite_passes_on_rocksdb() -> Result<(), StorageError> {
    Suite::test_all(RocksBuilder)?;
    Ok(())
}
