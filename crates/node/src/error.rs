//! The node's one error type, and its one mapping to the wire: `From<NodeError> for Status`.
//! Every service answers through it; nothing else in the node builds a `tonic::Status`.

use agentgate_client::ClientError;
use agentgate_model::ApplyError;
use agentgate_raft_store::{Node, NodeId};
use openraft::error::{ClientWriteError, RaftError};
use tonic::Status;

#[derive(Debug, thiserror::Error)]
pub enum NodeError {
    /// The state machine refused the command (each kind maps to its own status).
    #[error(transparent)]
    Apply(#[from] ApplyError),
    /// Input refused before anything was proposed.
    #[error("{0}")]
    Invalid(String),
    #[error("{0}")]
    NotFound(String),
    /// The cluster's state does not allow this (already initialized, membership refused).
    #[error("{0}")]
    Precondition(String),
    /// Not served here now (no leader, leadership moved, this node behind): retry.
    #[error("{0}")]
    Unavailable(String),
    /// A stream the caller must restart (a watcher that fell behind).
    #[error("{0}")]
    Aborted(String),
    #[error("storage error: {0}")]
    Storage(String),
    /// What the leader answered a forwarded call, passed on as it came.
    #[error(transparent)]
    Forwarded(#[from] ClientError),
    #[error("{0}")]
    Internal(String),
}

pub type Result<T, E = NodeError> = std::result::Result<T, E>;

impl From<NodeError> for Status {
    fn from(e: NodeError) -> Status {
        match e {
            NodeError::Apply(ApplyError::InvalidArgument(m)) | NodeError::Invalid(m) => {
                Status::invalid_argument(m)
            }
            NodeError::Apply(ApplyError::NotFound(m)) | NodeError::NotFound(m) => {
                Status::not_found(m)
            }
            NodeError::Apply(ApplyError::AlreadyExists(m)) => Status::already_exists(m),
            NodeError::Apply(ApplyError::FailedPrecondition(m)) | NodeError::Precondition(m) => {
                Status::failed_precondition(m)
            }
            NodeError::Apply(ApplyError::ResourceExhausted(m)) => Status::resource_exhausted(m),
            NodeError::Unavailable(m) => Status::unavailable(m),
            NodeError::Aborted(m) => Status::aborted(m),
            e @ NodeError::Storage(_) => Status::internal(e.to_string()),
            NodeError::Forwarded(c) => c.to_status(),
            NodeError::Internal(m) => Status::internal(m),
        }
    }
}

impl NodeError {
    pub fn storage(e: impl std::fmt::Display) -> Self {
        NodeError::Storage(e.to_string())
    }

    pub fn no_leader() -> Self {
        NodeError::Unavailable(
            "no leader is known: the cluster is electing one or has lost quorum; retry shortly"
                .into(),
        )
    }

    /// A failed Raft write (proposal or membership change).
    pub fn from_write(e: &RaftError<NodeId, ClientWriteError<NodeId, Node>>) -> Self {
        match e {
            RaftError::APIError(ClientWriteError::ForwardToLeader(f)) => NodeError::Unavailable(
                format!("leadership moved (new leader: {:?}); retry", f.leader_id),
            ),
            RaftError::APIError(ClientWriteError::ChangeMembershipError(c)) => {
                NodeError::Precondition(format!("membership change refused: {c}"))
            }
            RaftError::Fatal(f) => NodeError::Unavailable(format!("raft stopped: {f}")),
        }
    }

    /// A payload field that does not decode.
    pub fn bad_field(field: &str, e: impl std::fmt::Display) -> Self {
        NodeError::Invalid(format!("`{field}` is not valid: {e}"))
    }
}

/// Encodes a model value for a `*_json` reply field.
pub fn encode<T: serde::Serialize>(value: &T) -> Result<Vec<u8>> {
    serde_json::to_vec(value)
        .map_err(|e| NodeError::Internal(format!("cannot encode payload: {e}")))
}

/// Decodes a `*_json` request field, naming it in the error.
pub fn decode<T: serde::de::DeserializeOwned>(field: &str, bytes: &[u8]) -> Result<T> {
    serde_json::from_slice(bytes).map_err(|e| NodeError::bad_field(field, e))
}

#[cfg(test)]
mod tests {
    use super::*;
    use tonic::Code;

    #[test]
    fn every_error_has_its_status_and_keeps_its_message() {
        let cases = [
            (
                NodeError::Apply(ApplyError::InvalidArgument("a".into())),
                Code::InvalidArgument,
            ),
            (
                NodeError::Apply(ApplyError::NotFound("a".into())),
                Code::NotFound,
            ),
            (
                NodeError::Apply(ApplyError::AlreadyExists("a".into())),
                Code::AlreadyExists,
            ),
            (
                NodeError::Apply(ApplyError::FailedPrecondition("a".into())),
                Code::FailedPrecondition,
            ),
            (
                NodeError::Apply(ApplyError::ResourceExhausted("a".into())),
                Code::ResourceExhausted,
            ),
            (NodeError::Invalid("a".into()), Code::InvalidArgument),
            (NodeError::NotFound("a".into()), Code::NotFound),
            (
                NodeError::Precondition("a".into()),
                Code::FailedPrecondition,
            ),
            (NodeError::Unavailable("a".into()), Code::Unavailable),
            (NodeError::Aborted("a".into()), Code::Aborted),
            (NodeError::Internal("a".into()), Code::Internal),
            (
                NodeError::Forwarded(ClientError::Status(Status::already_exists("a"))),
                Code::AlreadyExists,
            ),
        ];
        for (e, code) in cases {
            let s = Status::from(e);
            assert_eq!(s.code(), code);
            assert_eq!(s.message(), "a");
        }
        let s = Status::from(NodeError::storage("disk full"));
        assert_eq!(
            (s.code(), s.message()),
            (Code::Internal, "storage error: disk full")
        );
    }
}
