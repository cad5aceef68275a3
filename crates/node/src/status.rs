//! The one mapping from internal errors to gRPC statuses.

use agentgate_model::ApplyError;
use openraft::error::{ClientWriteError, RaftError};
use tonic::Status;

use agentgate_raft_store::{Node, NodeId};

pub fn from_apply(e: ApplyError) -> Status {
    match e {
        ApplyError::InvalidArgument(m) => Status::invalid_argument(m),
        ApplyError::NotFound(m) => Status::not_found(m),
        ApplyError::AlreadyExists(m) => Status::already_exists(m),
        ApplyError::FailedPrecondition(m) => Status::failed_precondition(m),
        ApplyError::ResourceExhausted(m) => Status::resource_exhausted(m),
    }
}

pub fn from_write(e: &RaftError<NodeId, ClientWriteError<NodeId, Node>>) -> Status {
    match e {
        RaftError::APIError(ClientWriteError::ForwardToLeader(f)) => Status::unavailable(format!(
            "leadership moved (new leader: {:?}); retry",
            f.leader_id
        )),
        RaftError::APIError(ClientWriteError::ChangeMembershipError(c)) => {
            Status::failed_precondition(format!("membership change refused: {c}"))
        }
        RaftError::Fatal(f) => Status::unavailable(format!("raft stopped: {f}")),
    }
}

pub fn storage(e: impl std::fmt::Display) -> Status {
    Status::internal(format!("storage error: {e}"))
}

pub fn no_leader() -> Status {
    Status::unavailable(
        "no leader is known: the cluster is electing one or has lost quorum; retry shortly",
    )
}
