//! openraft's network over tonic: one lazily connected channel per peer, every RPC with a
//! deadline, HTTP/2 keepalive so a half-open connection is noticed and replaced.

use std::collections::HashMap;
use std::time::Duration;

use agentgate_proto::json;
use agentgate_proto::net::Dialer;
use agentgate_proto::pb::RaftPayload;
use agentgate_proto::pb::raft_service_client::RaftServiceClient;
use agentgate_raft_store::{Node, NodeId, TypeConfig};
use openraft::error::{
    InstallSnapshotError, NetworkError, RPCError, RaftError, RemoteError, Unreachable,
};
use openraft::network::{RPCOption, RaftNetwork, RaftNetworkFactory};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse,
    VoteRequest, VoteResponse,
};
use serde::Serialize;
use serde::de::DeserializeOwned;
use tonic::transport::Channel;

use agentgate_model::limits::{GRPC_MESSAGE_BYTES_MAX, RAFT_PAYLOAD_BYTES_MAX};

pub use agentgate_proto::channel::lazy as channel;

/// How many leading entries fit `budget` bytes (serialized), but at least one.
fn payload_prefix<T: Serialize>(entries: &[T], budget: usize) -> usize {
    let mut used = 0usize;
    for (i, e) in entries.iter().enumerate() {
        used += serde_json::to_vec(e).map_or(usize::MAX, |v| v.len());
        if used > budget {
            return i.max(1);
        }
    }
    entries.len()
}

/// Builds openraft's per-peer clients. Channels are kept per peer address and shared by every
/// client made for it: openraft asks for a new client for each read-index confirmation, and a
/// fresh connection (TCP and HTTP/2 handshakes) each time would cost two extra round trips —
/// across regions more than the heartbeat interval that bounds the confirmation, so every
/// linearizable read and edge lease would fail (found by `tests/sim`).
pub struct Network {
    pub rpc_timeout: Duration,
    pub dialer: Dialer,
    pub channels: HashMap<String, Channel>,
}

impl Network {
    pub fn new(rpc_timeout: Duration, dialer: Dialer) -> Self {
        Network {
            rpc_timeout,
            dialer,
            channels: HashMap::new(),
        }
    }

    fn channel(&mut self, addr: &str) -> Result<Channel, String> {
        if let Some(c) = self.channels.get(addr) {
            return Ok(c.clone());
        }
        let c = channel(addr, self.rpc_timeout, &self.dialer)?;
        // Bounded by the membership: one entry per address a member ever had.
        self.channels.insert(addr.to_string(), c.clone());
        Ok(c)
    }
}

pub struct Conn {
    target: NodeId,
    client: Result<RaftServiceClient<Channel>, String>,
}

impl RaftNetworkFactory<TypeConfig> for Network {
    type Network = Conn;

    async fn new_client(&mut self, target: NodeId, node: &Node) -> Conn {
        let client = self.channel(&node.addr).map(|c| {
            RaftServiceClient::new(c)
                .max_decoding_message_size(GRPC_MESSAGE_BYTES_MAX)
                .max_encoding_message_size(GRPC_MESSAGE_BYTES_MAX)
        });
        Conn { target, client }
    }
}

#[derive(Clone, Copy)]
enum Rpc {
    Append,
    Vote,
    Snapshot,
}

// openraft's `RPCError` is large and is the error type its network trait requires.
#[allow(clippy::result_large_err)]
fn encode<Req: Serialize, E: std::error::Error>(
    req: &Req,
) -> Result<Vec<u8>, RPCError<NodeId, Node, RaftError<NodeId, E>>> {
    serde_json::to_vec(req).map_err(|e| RPCError::Network(NetworkError::new(&e)))
}

impl Conn {
    async fn call<Req, Resp, E>(
        &mut self,
        rpc: Rpc,
        req: &Req,
        option: &RPCOption,
    ) -> Result<Resp, RPCError<NodeId, Node, RaftError<NodeId, E>>>
    where
        Req: Serialize,
        Resp: DeserializeOwned,
        E: std::error::Error + DeserializeOwned,
    {
        let body = encode(req)?;
        self.send(rpc, body, option).await
    }

    /// Sends an already encoded request.
    async fn send<Resp, E>(
        &mut self,
        rpc: Rpc,
        body: Vec<u8>,
        option: &RPCOption,
    ) -> Result<Resp, RPCError<NodeId, Node, RaftError<NodeId, E>>>
    where
        Resp: DeserializeOwned,
        E: std::error::Error + DeserializeOwned,
    {
        let client = match &mut self.client {
            Ok(c) => c,
            Err(e) => {
                return Err(RPCError::Unreachable(Unreachable::new(
                    &std::io::Error::other(e.clone()),
                )));
            }
        };
        let mut request = tonic::Request::new(RaftPayload { json: body });
        request.set_timeout(option.hard_ttl());
        let reply = match rpc {
            Rpc::Append => client.append_entries(request).await,
            Rpc::Vote => client.vote(request).await,
            Rpc::Snapshot => client.install_snapshot(request).await,
        };
        let reply = reply.map_err(|s| match s.code() {
            tonic::Code::Unavailable => RPCError::Unreachable(Unreachable::new(&s)),
            _ => RPCError::Network(NetworkError::new(&s)),
        })?;
        let result: Result<Resp, RaftError<NodeId, E>> =
            json::decode("json", &reply.into_inner().json)
                .map_err(|s| RPCError::Network(NetworkError::new(&s)))?;
        result.map_err(|e| RPCError::RemoteError(RemoteError::new(self.target, e)))
    }
}

impl RaftNetwork<TypeConfig> for Conn {
    async fn append_entries(
        &mut self,
        mut rpc: AppendEntriesRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<AppendEntriesResponse<NodeId>, RPCError<NodeId, Node, RaftError<NodeId>>> {
        // Bound the payload in bytes: send the longest prefix within RAFT_PAYLOAD_BYTES_MAX
        // (always at least one entry) and report the rest as not yet sent. The whole request is
        // encoded once; entries are measured only when it is over the budget.
        let mut body = encode(&rpc)?;
        let mut partial = None;
        if body.len() > RAFT_PAYLOAD_BYTES_MAX {
            let keep = payload_prefix(&rpc.entries, RAFT_PAYLOAD_BYTES_MAX);
            if keep < rpc.entries.len() {
                rpc.entries.truncate(keep);
                partial = Some(rpc.entries.last().map(|e| e.log_id));
                body = encode(&rpc)?;
            }
        }
        let resp = self.send(Rpc::Append, body, &option).await?;
        Ok(match (resp, partial) {
            (AppendEntriesResponse::Success, Some(last)) => {
                AppendEntriesResponse::PartialSuccess(last)
            }
            (other, _) => other,
        })
    }

    async fn install_snapshot(
        &mut self,
        rpc: InstallSnapshotRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<
        InstallSnapshotResponse<NodeId>,
        RPCError<NodeId, Node, RaftError<NodeId, InstallSnapshotError>>,
    > {
        self.call(Rpc::Snapshot, &rpc, &option).await
    }

    async fn vote(
        &mut self,
        rpc: VoteRequest<NodeId>,
        option: RPCOption,
    ) -> Result<VoteResponse<NodeId>, RPCError<NodeId, Node, RaftError<NodeId>>> {
        self.call(Rpc::Vote, &rpc, &option).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payloads_are_bounded_but_never_empty() {
        let entries = vec!["x".repeat(400); 10]; // 402 bytes each as JSON
        assert_eq!(payload_prefix(&entries, 10_000), 10);
        assert_eq!(payload_prefix(&entries, 1_000), 2);
        assert_eq!(
            payload_prefix(&entries, 10),
            1,
            "an entry larger than the budget still goes alone"
        );
        assert_eq!(payload_prefix::<String>(&[], 10), 0);
    }
}
