//! The one error type of the state machine. Each variant maps to one gRPC status in the node
//! (`crates/node/src/status.rs`); messages are lowercase and quote user input in backticks.

use serde::{Deserialize, Serialize};

/// Why a command was rejected. A rejected command changes nothing but the revision counter.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "code", content = "message")]
pub enum ApplyError {
    #[error("invalid argument: {0}")]
    InvalidArgument(String),
    #[error("not found: {0}")]
    NotFound(String),
    #[error("already exists: {0}")]
    AlreadyExists(String),
    #[error("failed precondition: {0}")]
    FailedPrecondition(String),
    #[error("resource exhausted: {0}")]
    ResourceExhausted(String),
}
