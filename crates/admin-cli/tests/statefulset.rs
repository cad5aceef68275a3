//! The Kubernetes StatefulSet lifecycle of the core (deploy/k8s), played with real
//! `agentgate-node` processes on 127.0.0.1: pods named `agentgate-core-N` derive their Raft id
//! from the ordinal and all get the same bootstrap configuration; the set is rolled one pod at a
//! time (SIGTERM, restart on the same disk, wait for /readyz as the StatefulSet controller does),
//! scaled up to five (new pods join by themselves) and back down to three through the documented
//! procedure (`agentgate-admin cluster remove-node`, then the pod goes and its volume with it).
//! A writer proposes all along; every acknowledged write must survive, and writes must succeed
//! while any one pod is down.
#![allow(
    clippy::disallowed_methods, // real processes run on real time
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use agentgate_model::command::Op;
use agentgate_model::entity::{Entity, Kind};
use agentgate_model::query::{Query, QueryResult};
use agentgate_proto::pb::raft_service_client::RaftServiceClient;
use agentgate_proto::pb::{ProposeRequest, QueryRequest, RaftPayload};
use agentgate_testkit::{
    DEADLINE, StartupLine, admin_client, bin, eventually, http_get, node_status, retrying,
};

const PODS_MAX: usize = 5;

struct Pod {
    grpc: String,
    http: String,
    child: Child,
}

/// A StatefulSet `agentgate-core` of up to five pods with fixed peer addresses (the headless
/// Service's stable DNS names, here loopback ports); clients (the writer, `agentgate-admin`)
/// use the client port, as through the `agentgate-core` Service.
struct StatefulSet {
    dir: tempfile::TempDir,
    addrs: Vec<String>,
    initial_members: String,
    pods: BTreeMap<usize, Pod>,
}

async fn create_tenant(addr: &str, id: &str) -> Result<u64, tonic::Status> {
    let op = Op::CreateTenant {
        id: id.into(),
        stale_allow_read_only: false,
    };
    let r = admin_client(addr)
        .propose(ProposeRequest {
            op_json: serde_json::to_vec(&op).unwrap(),
            actor: "statefulset-test".into(),
            request_id: String::new(),
        })
        .await?;
    Ok(r.into_inner().log_index)
}

async fn tenants(addr: &str) -> BTreeSet<String> {
    let q = serde_json::to_vec(&Query::List {
        kind: Kind::Tenant,
        tenant: None,
    })
    .unwrap();
    let r = retrying(|| {
        let q = q.clone();
        async move {
            admin_client(addr)
                .query(QueryRequest { query_json: q })
                .await
        }
    })
    .await
    .unwrap()
    .into_inner();
    match serde_json::from_slice::<QueryResult>(&r.result_json).unwrap() {
        QueryResult::Entities(es) => es
            .into_iter()
            .filter_map(|e| match e {
                Entity::Tenant(t) => Some(t.id.to_string()),
                _ => None,
            })
            .collect(),
        other => panic!("unexpected {other:?}"),
    }
}

impl StatefulSet {
    fn new(initial: usize) -> StatefulSet {
        // Stable addresses for every ordinal the test may create.
        let addrs: Vec<String> = (0..PODS_MAX)
            .map(|_| {
                let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
                l.local_addr().unwrap().to_string()
            })
            .collect();
        let initial_members = (0..initial)
            .map(|o| format!("{}={}", o + 1, addrs[o]))
            .collect::<Vec<_>>()
            .join(",");
        StatefulSet {
            dir: tempfile::tempdir().unwrap(),
            addrs,
            initial_members,
            pods: BTreeMap::new(),
        }
    }

    fn volume(&self, ordinal: usize) -> PathBuf {
        self.dir
            .path()
            .join(format!("data-agentgate-core-{ordinal}"))
    }

    /// Starts pod `ordinal` the way the manifest does: the pod name, the shared bootstrap list,
    /// its stable address, its volume.
    fn start(&mut self, ordinal: usize) {
        let mut child = Command::new(bin("agentgate-node"))
            .env_remove("AGENTGATE_ID")
            .env("AGENTGATE_POD_NAME", format!("agentgate-core-{ordinal}"))
            .env("AGENTGATE_INITIAL_MEMBERS", &self.initial_members)
            .env("AGENTGATE_LISTEN", "127.0.0.1:0")
            .env("AGENTGATE_PEER_LISTEN", &self.addrs[ordinal])
            .env("AGENTGATE_ADVERTISE", &self.addrs[ordinal])
            .env("AGENTGATE_HTTP_LISTEN", "127.0.0.1:0")
            .env("AGENTGATE_DATA_DIR", self.volume(ordinal))
            .env("AGENTGATE_HEARTBEAT_MS", "50")
            .env("AGENTGATE_ELECTION_TIMEOUT_MS", "300")
            .env("AGENTGATE_LOG_FORMAT", "text")
            .env("RUST_LOG", "warn")
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        let line = StartupLine::read(&mut child);
        assert_eq!(line.field("id="), (ordinal + 1).to_string(), "{}", line.0);
        assert_eq!(line.field("peer="), self.addrs[ordinal]);
        self.pods.insert(
            ordinal,
            Pod {
                grpc: line.field("grpc="),
                http: line.field("http="),
                child,
            },
        );
    }

    /// SIGTERM, as the kubelet sends it; the node must exit cleanly by itself.
    fn terminate(&mut self, ordinal: usize) {
        let mut pod = self.pods.remove(&ordinal).unwrap();
        let pid = pod.child.id().to_string();
        assert!(
            Command::new("kill")
                .args(["-TERM", &pid])
                .status()
                .unwrap()
                .success()
        );
        let start = Instant::now();
        loop {
            if let Some(code) = pod.child.try_wait().unwrap() {
                assert!(code.success(), "pod {ordinal} exited with {code}");
                return;
            }
            if start.elapsed() > Duration::from_secs(15) {
                let _ = pod.child.kill();
                panic!("pod {ordinal} did not exit within 15 s of SIGTERM");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn endpoints(&self) -> Vec<String> {
        self.pods.values().map(|p| p.grpc.clone()).collect()
    }

    /// What the StatefulSet controller waits for before it touches the next pod.
    async fn wait_ready(&self, ordinal: usize) {
        let http = self.pods[&ordinal].http.clone();
        eventually(&format!("pod {ordinal} is ready"), DEADLINE, || {
            let http = http.clone();
            async move { http_get(&http, "/readyz").0 == 200 }
        })
        .await;
    }

    /// Waits until every running pod reports exactly `voters` as voters and no learner.
    async fn wait_voters(&self, voters: &[u64]) {
        let want: BTreeSet<u64> = voters.iter().copied().collect();
        let eps = self.endpoints();
        eventually(
            &format!("voters are {want:?} on every pod"),
            DEADLINE,
            || {
                let (eps, want) = (eps.clone(), want.clone());
                async move {
                    for ep in &eps {
                        let Some(s) = node_status(ep).await else {
                            return false;
                        };
                        let got: BTreeSet<u64> = s.voters.iter().map(|v| v.id).collect();
                        if got != want || !s.learners.is_empty() || s.leader_id.is_none() {
                            return false;
                        }
                    }
                    true
                }
            },
        )
        .await;
    }

    /// A write through some running pod must be acknowledged: a quorum is up.
    async fn write_succeeds(&self, id: &str) {
        let eps = self.endpoints();
        let ep = eps.first().unwrap().clone();
        retrying(|| {
            let ep = ep.clone();
            async move { create_tenant(&ep, id).await }
        })
        .await
        .unwrap_or_else(|e| {
            panic!(
                "write {id} failed with pods {:?} up: {e:?}",
                self.pods.keys().collect::<Vec<_>>()
            )
        });
    }

    fn admin(&self, args: &[&str]) -> String {
        let out = Command::new(bin("agentgate-admin"))
            .args([
                "--endpoint",
                &self.endpoints().join(","),
                "--timeout-ms",
                "5000",
            ])
            .args(args)
            .env("AGENTGATE_ACTOR", "operator")
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "agentgate-admin {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }
}

/// Proposes `w0`, `w1`, … through the running pods in turn until stopped; returns what was
/// acknowledged.
fn writer(
    endpoints: Arc<Mutex<Vec<String>>>,
    stop: Arc<AtomicBool>,
) -> tokio::task::JoinHandle<Vec<String>> {
    tokio::spawn(async move {
        let mut acked = Vec::new();
        let mut n = 0usize;
        while !stop.load(Ordering::Relaxed) {
            let eps = endpoints.lock().unwrap().clone();
            if eps.is_empty() {
                tokio::task::yield_now().await;
                continue;
            }
            let id = format!("w{n}");
            let ep = &eps[n % eps.len()];
            n += 1;
            if tokio::time::timeout(Duration::from_secs(3), create_tenant(ep, &id))
                .await
                .is_ok_and(|r| r.is_ok())
            {
                acked.push(id);
            }
        }
        acked
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn statefulset_rolls_and_scales_without_losing_quorum_or_writes() {
    let mut set = StatefulSet::new(3);
    // Deploy: three pods with the same configuration (podManagementPolicy: Parallel).
    for o in 0..3 {
        set.start(o);
    }
    for o in 0..3 {
        set.wait_ready(o).await;
    }
    set.wait_voters(&[1, 2, 3]).await;
    // Raft is served on the peer port only (the NetworkPolicy admits only core pods there).
    let raft_on_client_port = RaftServiceClient::connect(format!("http://{}", set.pods[&0].grpc))
        .await
        .unwrap()
        .vote(RaftPayload {
            json: b"{}".to_vec(),
        })
        .await
        .unwrap_err();
    assert_eq!(raft_on_client_port.code(), tonic::Code::Unimplemented);

    let live = Arc::new(Mutex::new(set.endpoints()));
    let stop = Arc::new(AtomicBool::new(false));
    let writes = writer(live.clone(), stop.clone());
    set.write_succeeds("deployed").await;

    // Rolling restart, highest ordinal first, one pod at a time, each waited ready.
    for o in (0..3).rev() {
        set.terminate(o);
        *live.lock().unwrap() = set.endpoints();
        set.write_succeeds(&format!("while-{o}-restarts")).await;
        set.start(o);
        *live.lock().unwrap() = set.endpoints();
        set.wait_ready(o).await;
    }
    set.wait_voters(&[1, 2, 3]).await;

    // Scale up to five: the new pods join as learners, then voters, by themselves.
    for o in 3..5 {
        set.start(o);
        *live.lock().unwrap() = set.endpoints();
        set.wait_ready(o).await;
    }
    set.wait_voters(&[1, 2, 3, 4, 5]).await;
    set.write_succeeds("scaled-up").await;

    // Scale down to three, the documented way: remove the highest member, then let its pod and
    // volume go; one at a time.
    for o in (3..5).rev() {
        let id = (o + 1).to_string();
        set.admin(&["cluster", "remove-node", &id]);
        set.terminate(o);
        std::fs::remove_dir_all(set.volume(o)).unwrap();
        *live.lock().unwrap() = set.endpoints();
    }
    set.wait_voters(&[1, 2, 3]).await;
    // The quorum is two of three again: with one more pod down, writes still commit (with five
    // voters, two of five up could not).
    set.terminate(0);
    *live.lock().unwrap() = set.endpoints();
    set.write_succeeds("three-voters-one-down").await;
    set.start(0);
    *live.lock().unwrap() = set.endpoints();
    set.wait_ready(0).await;

    stop.store(true, Ordering::Relaxed);
    let acked = writes.await.unwrap();
    eprintln!("{} writes acknowledged through the lifecycle", acked.len());
    assert!(
        acked.len() > 10,
        "the writer got only {} writes through",
        acked.len()
    );
    // Every acknowledged write is on every pod (linearizable reads through each).
    for ep in set.endpoints() {
        let have = tenants(&ep).await;
        let lost: Vec<&String> = acked.iter().filter(|w| !have.contains(*w)).collect();
        assert!(
            lost.is_empty(),
            "pod {ep} lacks acknowledged writes {lost:?}"
        );
        for w in [
            "deployed",
            "while-0-restarts",
            "scaled-up",
            "three-voters-one-down",
        ] {
            assert!(have.contains(w), "pod {ep} lacks {w}");
        }
    }
    for o in set.pods.keys().copied().collect::<Vec<_>>() {
        set.terminate(o);
    }
}
