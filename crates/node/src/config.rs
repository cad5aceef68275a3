//! Static configuration: flags, or `AGENTGATE_*` environment variables. Replicated
//! configuration (policies, switches, quotas…) travels through Raft instead.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;

use clap::Parser;

/// AgentGate core node: replicates gateway state with Raft and serves operators and edges.
#[derive(Debug, Clone, Parser)]
#[command(name = "agentgate-node", version)]
pub struct Config {
    /// This node's Raft id (unique, non-zero). Give this or `--pod-name`.
    #[arg(
        long,
        env = "AGENTGATE_ID",
        default_value_t = 0,
        hide_default_value = true
    )]
    pub id: u64,

    /// A StatefulSet pod name (`NAME-ORDINAL`): the Raft id is the ordinal + 1, so a pod keeps
    /// its id across restarts and reschedules. Used when `--id` is not given.
    #[arg(long, env = "AGENTGATE_POD_NAME")]
    pub pod_name: Option<String>,

    /// gRPC listen address (Raft, admin and edge-sync APIs). Port 0 picks a free port.
    #[arg(long, env = "AGENTGATE_LISTEN", default_value = "127.0.0.1:7400")]
    pub listen: SocketAddr,

    /// A separate node-to-node listener: Raft (and Admin, for forwarding to the leader) is then
    /// served here only, so a network policy can admit only core nodes to it. Unset: Raft shares
    /// `--listen`.
    #[arg(long, env = "AGENTGATE_PEER_LISTEN")]
    pub peer_listen: Option<SocketAddr>,

    /// The address other nodes use to reach this node (its address in the Raft membership):
    /// the peer listener's when there is one, else the gRPC listener's. Defaults to the bound
    /// address.
    #[arg(long, env = "AGENTGATE_ADVERTISE")]
    pub advertise: Option<String>,

    /// HTTP listen address for /livez, /readyz and /metrics. Port 0 picks a free port.
    #[arg(long, env = "AGENTGATE_HTTP_LISTEN", default_value = "127.0.0.1:7401")]
    pub http_listen: SocketAddr,

    /// Directory for the RocksDB store (created if missing).
    #[arg(long, env = "AGENTGATE_DATA_DIR")]
    pub data_dir: PathBuf,

    /// Region label of this node.
    #[arg(long, env = "AGENTGATE_REGION", default_value = "local")]
    pub region: String,

    /// Initial members `ID=HOST:PORT,…`, the same list on every node. A node that holds no Raft
    /// state yet joins the cluster one of these belongs to; if none does, the lowest listed id
    /// initializes it with exactly these voters and the others wait for it. Nodes not in the
    /// list (scale-up) join as learners, then voters. See `bootstrap`.
    #[arg(long, env = "AGENTGATE_INITIAL_MEMBERS", value_parser = parse_members)]
    pub initial_members: Option<BTreeMap<u64, String>>,

    /// Raft heartbeat interval, milliseconds.
    #[arg(long, env = "AGENTGATE_HEARTBEAT_MS", default_value_t = 100)]
    pub heartbeat_ms: u64,

    /// Raft election timeout lower bound, milliseconds (the upper bound is twice this).
    #[arg(long, env = "AGENTGATE_ELECTION_TIMEOUT_MS", default_value_t = 500)]
    pub election_timeout_ms: u64,

    /// Take a snapshot after this many log entries since the last one.
    #[arg(long, env = "AGENTGATE_SNAPSHOT_LOGS", default_value_t = 20_000)]
    pub snapshot_logs: u64,

    /// Log entries kept after a snapshot (for followers that are slightly behind).
    #[arg(long, env = "AGENTGATE_LOGS_TO_KEEP", default_value_t = 5_000)]
    pub logs_to_keep: u64,

    /// Deadline for node-to-node and client RPCs, milliseconds.
    #[arg(long, env = "AGENTGATE_RPC_TIMEOUT_MS", default_value_t = 5_000)]
    pub rpc_timeout_ms: u64,

    /// Check the configuration, print it, and exit.
    #[arg(long)]
    pub validate_only: bool,

    /// Log format: `json` (structured) or `text` (for terminals).
    #[arg(long, env = "AGENTGATE_LOG_FORMAT", default_value = "json")]
    pub log_format: String,

    #[command(flatten)]
    pub traces: agentgate_runtime::telemetry::TraceArgs,
}

fn parse_members(s: &str) -> Result<BTreeMap<u64, String>, String> {
    let mut out = BTreeMap::new();
    for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let (id, addr) = part
            .split_once('=')
            .ok_or_else(|| format!("`{part}` is not ID=HOST:PORT"))?;
        let id: u64 = id
            .trim()
            .parse()
            .map_err(|_| format!("`{id}` is not a node id"))?;
        if id == 0 {
            return Err("node id 0 is reserved".to_string());
        }
        if out.insert(id, addr.trim().to_string()).is_some() {
            return Err(format!("node id {id} is listed twice"));
        }
    }
    if out.is_empty() {
        return Err("no members given".to_string());
    }
    Ok(out)
}

/// The Raft id of a StatefulSet pod: its ordinal (the name's last `-` part) plus one.
pub fn id_from_pod_name(name: &str) -> Result<u64, String> {
    name.rsplit_once('-')
        .and_then(|(_, ordinal)| ordinal.parse::<u64>().ok())
        .and_then(|o| o.checked_add(1))
        .ok_or_else(|| format!("pod name `{name}` does not end in `-ORDINAL`"))
}

impl Config {
    /// Fills in what is derived (the id from `--pod-name`), then checks what clap cannot.
    pub fn resolve(mut self) -> Result<Config, String> {
        if self.id == 0
            && let Some(pod) = &self.pod_name
        {
            self.id = id_from_pod_name(pod)?;
        }
        self.validate()?;
        Ok(self)
    }

    /// Checks what clap cannot.
    pub fn validate(&self) -> Result<(), String> {
        if self.id == 0 {
            return Err("give a non-zero --id, or --pod-name".into());
        }
        if self.heartbeat_ms == 0 || self.election_timeout_ms <= self.heartbeat_ms * 2 {
            return Err("--election-timeout-ms must exceed twice --heartbeat-ms".into());
        }
        if self.logs_to_keep == 0 || self.snapshot_logs == 0 {
            return Err("--snapshot-logs and --logs-to-keep must be positive".into());
        }
        agentgate_model::ids::validate_name("region", &self.region).map_err(|e| e.to_string())?;
        Ok(())
    }

    pub fn raft_config(&self) -> Result<openraft::Config, String> {
        let c = openraft::Config {
            cluster_name: "agentgate".into(),
            heartbeat_interval: self.heartbeat_ms,
            election_timeout_min: self.election_timeout_ms,
            election_timeout_max: self.election_timeout_ms * 2,
            install_snapshot_timeout: self.rpc_timeout_ms,
            snapshot_policy: openraft::SnapshotPolicy::LogsSinceLast(self.snapshot_logs),
            max_in_snapshot_log_to_keep: self.logs_to_keep,
            snapshot_max_chunk_size: agentgate_model::limits::SNAPSHOT_CHUNK_BYTES_MAX,
            ..Default::default()
        };
        c.validate().map_err(|e| e.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn members_parse() {
        let m = parse_members("1=127.0.0.1:1, 2=127.0.0.1:2").unwrap();
        assert_eq!(m.len(), 2);
        assert!(parse_members("1=a,1=b").is_err());
        assert!(parse_members("0=a").is_err());
        assert!(parse_members("x").is_err());
    }

    #[test]
    fn pod_ordinals_become_ids() {
        assert_eq!(id_from_pod_name("agentgate-core-0"), Ok(1));
        assert_eq!(id_from_pod_name("agentgate-core-4"), Ok(5));
        assert!(id_from_pod_name("agentgate-core").is_err());
        assert!(id_from_pod_name("core-x").is_err());
        assert!(id_from_pod_name("0").is_err());
        assert!(id_from_pod_name(&format!("core-{}", u64::MAX)).is_err());
    }
}
