//! The harness of AgentGate's end-to-end tests and benchmarks: real `agentgate-node` processes
//! on 127.0.0.1 (this module) and edges, MCP servers and clients around them ([`mcp`]).
//!
//! Binaries are found beside the running test executable (`target/<profile>/`, one level above
//! `deps/`), where cargo builds a workspace's binaries for its tests and benches;
//! `AGENTGATE_BIN_DIR` points elsewhere.
//!
//! Nodes bind port 0 and print their addresses; a restarted node reuses its gRPC address (its
//! peers know it by that address). Every wait polls a condition under a deadline; nothing sleeps
//! to synchronise. Dropping a `Cluster` kills every process it started.
#![allow(
    clippy::disallowed_methods, // real processes run on real time
    dead_code,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use agentgate_model::Op;
use agentgate_model::entity::{Entity, Kind, Scope};
use agentgate_model::query::{Query, QueryResult};
use agentgate_proto::pb::admin_client::AdminClient;
use agentgate_proto::pb::{ClusterStatus, InitClusterRequest, NodeAddr, StatusRequest};
use tempfile::TempDir;
use tonic::transport::Channel;

pub const DEADLINE: Duration = Duration::from_secs(30);

/// The path of one of the workspace's binaries (`agentgate-node`, `agentgate-edge`,
/// `agentgate-admin`), failing with what to run when it was not built.
pub fn bin(name: &str) -> PathBuf {
    let dir = std::env::var_os("AGENTGATE_BIN_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            let exe = std::env::current_exe().expect("current test executable");
            let deps = exe.parent().expect("executable directory");
            // Tests and benches run from target/<profile>/deps; binaries sit one level up.
            if deps.ends_with("deps") {
                deps.parent().expect("profile directory").to_path_buf()
            } else {
                deps.to_path_buf()
            }
        });
    let path = dir.join(name);
    assert!(
        path.exists(),
        "{} is missing: build the workspace (cargo build --workspace --all-targets)",
        path.display()
    );
    path
}

/// The one line a binary prints on stdout once its listeners are bound, e.g.
/// `agentgate-node id=1 grpc=ADDR http=ADDR`: `key=value` words.
pub struct StartupLine(pub String);

impl StartupLine {
    /// Reads it from a child spawned with a piped stdout.
    pub fn read(child: &mut Child) -> StartupLine {
        let mut line = String::new();
        BufReader::new(child.stdout.take().expect("stdout is piped"))
            .read_line(&mut line)
            .expect("read startup line");
        StartupLine(line)
    }

    /// The value of `key` (given with its `=`, e.g. `"grpc="`).
    pub fn field(&self, key: &str) -> String {
        self.0
            .split_whitespace()
            .find_map(|w| w.strip_prefix(key))
            .unwrap_or_else(|| panic!("no {key} in startup line {:?}", self.0))
            .to_string()
    }
}

/// An admin client for the node at `addr` (connects lazily; 10 s per call).
pub fn admin_client(addr: &str) -> AdminClient<Channel> {
    let ep = tonic::transport::Endpoint::from_shared(format!("http://{addr}"))
        .unwrap()
        .timeout(Duration::from_secs(10))
        .connect_timeout(Duration::from_secs(2));
    AdminClient::new(ep.connect_lazy())
}

/// The status of the node at `addr`, or `None` when it does not answer.
pub async fn node_status(addr: &str) -> Option<ClusterStatus> {
    admin_client(addr)
        .status(StatusRequest {})
        .await
        .ok()
        .map(|r| r.into_inner())
}

/// The log filter of the processes the harness starts: `$AGENTGATE_CHILD_LOG`, else `warn`
/// (the benchmarks' script sets `off` to keep its tables readable).
pub fn child_log() -> String {
    std::env::var("AGENTGATE_CHILD_LOG").unwrap_or_else(|_| "warn".into())
}

pub struct NodeProc {
    pub id: u64,
    pub grpc: String,
    pub http: String,
    pub data_dir: PathBuf,
    child: Option<Child>,
    extra: Vec<String>,
}

impl NodeProc {
    pub fn is_running(&self) -> bool {
        self.child.is_some()
    }

    /// The OS process id while the node runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }
}

pub struct Cluster {
    _dir: TempDir,
    pub nodes: Vec<NodeProc>,
    /// Request ids of the writes this harness proposes (unique per cluster: its data dir).
    ids: std::sync::Arc<agentgate_client::RequestIds>,
}

fn spawn(id: u64, listen: &str, data_dir: &PathBuf, extra: &[String]) -> (Child, String, String) {
    let mut child = Command::new(bin("agentgate-node"))
        .args([
            "--id",
            &id.to_string(),
            "--listen",
            listen,
            "--http-listen",
            "127.0.0.1:0",
        ])
        .arg("--data-dir")
        .arg(data_dir)
        .args(["--log-format", "text"])
        // Fast elections keep failover tests short; callers that pass their own timings win.
        .args(if extra.iter().any(|a| a == "--heartbeat-ms") {
            &[][..]
        } else {
            &["--heartbeat-ms", "50", "--election-timeout-ms", "300"][..]
        })
        .args(extra)
        .env("RUST_LOG", child_log())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("spawn agentgate-node");
    // agentgate-node id=1 grpc=127.0.0.1:X http=127.0.0.1:Y
    let line = StartupLine::read(&mut child);
    (child, line.field("grpc="), line.field("http="))
}

impl Cluster {
    /// Starts `n` nodes (ids 1..=n), not yet initialized.
    pub fn start(n: u64, extra: &[&str]) -> Cluster {
        let dir = TempDir::new().unwrap();
        let extra: Vec<String> = extra.iter().map(|s| s.to_string()).collect();
        let nodes = (1..=n)
            .map(|id| {
                let data_dir = dir.path().join(format!("node{id}"));
                let (child, grpc, http) = spawn(id, "127.0.0.1:0", &data_dir, &extra);
                NodeProc {
                    id,
                    grpc,
                    http,
                    data_dir,
                    child: Some(child),
                    extra: extra.clone(),
                }
            })
            .collect();
        let ids = std::sync::Arc::new(agentgate_client::RequestIds::with_prefix(format!(
            "test-{}",
            dir.path().display()
        )));
        Cluster {
            _dir: dir,
            nodes,
            ids,
        }
    }

    /// Starts `n` nodes and initializes them as one cluster through node 1.
    pub async fn start_initialized(n: u64, extra: &[&str]) -> Cluster {
        let c = Cluster::start(n, extra);
        let members = c.members(&c.ids());
        c.client(1)
            .await
            .init_cluster(InitClusterRequest { members })
            .await
            .unwrap();
        c.wait_for_leader(&c.ids()).await;
        c
    }

    /// The listed nodes as Raft members (id and gRPC address).
    pub fn members(&self, ids: &[u64]) -> Vec<NodeAddr> {
        ids.iter()
            .map(|id| NodeAddr {
                id: *id,
                addr: self.node(*id).grpc.clone(),
            })
            .collect()
    }

    /// Engages one kill switch per scope through node `via`.
    pub async fn engage(&self, via: u64, scopes: impl IntoIterator<Item = Scope>) {
        for scope in scopes {
            let op = Op::EngageSwitch {
                scope,
                reason: String::new(),
                ttl_ms: None,
            };
            self.propose(via, &op).await.unwrap();
        }
    }

    /// Creates a tenant through node `via`.
    pub async fn create_tenant(&self, via: u64, id: &str) {
        let op = Op::CreateTenant {
            id: id.to_string(),
            stale_allow_read_only: false,
        };
        self.propose(via, &op).await.unwrap();
    }

    /// Every entity of a kind, read (linearizably) through node `via`.
    pub async fn list(&self, via: u64, kind: Kind) -> Vec<Entity> {
        match self
            .query(via, &Query::List { kind, tenant: None })
            .await
            .unwrap()
            .1
        {
            QueryResult::Entities(v) => v,
            other => panic!("unexpected {other:?}"),
        }
    }

    pub fn ids(&self) -> Vec<u64> {
        self.nodes
            .iter()
            .filter(|n| n.is_running())
            .map(|n| n.id)
            .collect()
    }

    pub fn node(&self, id: u64) -> &NodeProc {
        self.nodes.iter().find(|n| n.id == id).expect("node id")
    }

    fn node_mut(&mut self, id: u64) -> &mut NodeProc {
        self.nodes.iter_mut().find(|n| n.id == id).expect("node id")
    }

    pub async fn client(&self, id: u64) -> AdminClient<Channel> {
        admin_client(&self.node(id).grpc)
    }

    pub async fn status(&self, id: u64) -> Option<ClusterStatus> {
        node_status(&self.node(id).grpc).await
    }

    /// Waits until every listed node agrees on one leader among them; returns it.
    pub async fn wait_for_leader(&self, among: &[u64]) -> u64 {
        let start = Instant::now();
        loop {
            let mut leaders = Vec::new();
            for id in among {
                leaders.push(self.status(*id).await.and_then(|s| s.leader_id));
            }
            if let Some(Some(l)) = leaders.first()
                && among.contains(l)
                && leaders.iter().all(|x| x == &Some(*l))
            {
                return *l;
            }
            assert!(
                start.elapsed() < DEADLINE,
                "no agreed leader among {among:?}: {leaders:?}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    pub fn kill(&mut self, id: u64) {
        let n = self.node_mut(id);
        if let Some(mut c) = n.child.take() {
            c.kill().unwrap();
            c.wait().unwrap();
        }
    }

    /// Restarts a killed node on its old address and data dir.
    pub fn restart(&mut self, id: u64) {
        let n = self.node_mut(id);
        assert!(n.child.is_none(), "node {id} is running");
        let (child, grpc, http) = spawn(id, &n.grpc.clone(), &n.data_dir, &n.extra);
        assert_eq!(grpc, n.grpc);
        n.child = Some(child);
        n.http = http;
    }

    /// The typed admin client for node `via` alone, retrying (by the client's rule, one
    /// request id per write) while leadership settles.
    pub fn core(&self, via: u64) -> agentgate_client::Client {
        let config = agentgate_client::ClientConfig {
            rpc_timeout: Duration::from_secs(5),
            dialer: agentgate_runtime::net::Dialer::tcp(),
            actor: "test".into(),
            retry: agentgate_client::Retry::within(DEADLINE),
        };
        agentgate_client::Client::new(&[self.node(via).grpc.clone()], self.ids.clone(), config)
            .expect("a client for a running node")
    }

    /// Proposes an op through node `via`, retrying while leadership settles.
    pub async fn propose(
        &self,
        via: u64,
        op: &Op,
    ) -> Result<agentgate_client::Proposed, tonic::Status> {
        self.core(via).propose(op).await.map_err(|e| e.to_status())
    }

    pub async fn query(&self, via: u64, q: &Query) -> Result<(u64, QueryResult), tonic::Status> {
        self.core(via).query(q).await.map_err(|e| e.to_status())
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for n in &mut self.nodes {
            if let Some(mut c) = n.child.take() {
                let _ = c.kill();
                let _ = c.wait();
            }
        }
    }
}

/// A plain HTTP/1.0 GET on loopback: (status code, body).
pub fn http_get(addr: &str, path: &str) -> (u16, String) {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(s, "GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n").unwrap();
    let mut buf = String::new();
    s.read_to_string(&mut buf).unwrap();
    let code = buf.split_whitespace().nth(1).unwrap().parse().unwrap();
    let body = buf
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    (code, body)
}

/// Polls `cond` every 20 ms until it holds, failing after `limit`; returns how long it took.
/// For conditions that change with time alone (a lease running out), where no event exists to
/// wait on.
pub async fn wait_until(what: &str, limit: Duration, mut cond: impl FnMut() -> bool) -> Duration {
    let start = Instant::now();
    while !cond() {
        assert!(
            start.elapsed() < limit,
            "timed out after {limit:?} waiting until {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    start.elapsed()
}

/// Like [`wait_until`], for conditions that need async calls (queries to the cluster).
pub async fn eventually<F, Fut>(what: &str, limit: Duration, mut cond: F) -> Duration
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let start = Instant::now();
    while !cond().await {
        assert!(
            start.elapsed() < limit,
            "timed out after {limit:?} waiting until {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    start.elapsed()
}

/// Calls `f` until it answers anything but UNAVAILABLE (the API's "retry" signal: no leader
/// yet, leadership moved) or [`DEADLINE`] passes.
pub async fn retrying<T, F, Fut>(mut f: F) -> Result<T, tonic::Status>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, tonic::Status>>,
{
    let start = Instant::now();
    loop {
        match f().await {
            Err(s) if s.code() == tonic::Code::Unavailable && start.elapsed() < DEADLINE => {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            r => return r,
        }
    }
}

pub mod bench;
pub mod mcp;
