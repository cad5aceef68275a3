//! How fast a committed kill switch reaches the data plane: a local 3-node core (release
//! processes) and 10, then 100, real edges, each with its own watch stream to the core.
//!
//! The edges run in this process on one runtime of their own (2 workers): each is a whole
//! `agentgate_edge::server::run` (follower, audit shipper, MCP and health listeners), so they
//! scale as far as the machine allows without 100 processes' worth of runtimes. Each edge's
//! core list is rotated, so their streams spread over the three nodes as behind a balancer.
//!
//! A round: every edge is fresh and not paused; an operator's `pause --global` (a Raft proposal
//! through the admin API) returns at `t`; each edge's enforcement time is when its decision
//! view holds the switch, from which point every call it decides is refused. The lag is that
//! time minus `t` (0 when the edge had it before the admin call returned). After each round
//! every edge is sent a real `tools/call`, which must be refused by the global switch; then the
//! switch is released.
//!
//! Rounds: 5 with all nodes up; 3 with the leader SIGKILLed right before the pause (the admin
//! call then goes to a survivor and returns once a new leader committed it; the killed node
//! restarts between rounds).
//!
//! Run: `cargo bench --workspace --bench kill_switch` (or `scripts/bench.sh`). Prints a table
//! and writes `kill_switch.json` (see `agentgate_testkit::bench::results_dir`).
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    clippy::disallowed_methods // a benchmark measures wall time
)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use agentgate_edge::config::Config;
use agentgate_edge::proxy::Gateway;
use agentgate_edge::server::{self, Listeners};
use agentgate_edge::view::View;
use agentgate_model::Op;
use agentgate_model::entity::Scope;
use agentgate_runtime::clock::SystemClock;
use agentgate_testkit as common;
use agentgate_testkit::bench::{
    PRODUCTION_TIMINGS, cpus, fast_upstream, run, summary, write_results,
};
use clap::Parser;
use common::Cluster;
use common::mcp::{SESSION_KEY, http_client, send, stateless_call, tenant};
use serde_json::{Value, json};
use tokio::sync::watch;

const ROUNDS: usize = 5;
const LEADER_KILLED_ROUNDS: usize = 3;
const POLICY: &str = r#"
@id("read-only-tools")
permit (principal, action == Action::"call_tool", resource)
when { resource.read_only && !resource.destructive };
"#;

/// `n` edges on their own runtime; dropping the set stops them.
struct EdgeSet {
    edges: Vec<(String, Arc<Gateway>)>,
    stop: watch::Sender<bool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Drop for EdgeSet {
    fn drop(&mut self) {
        let _ = self.stop.send(true);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn start_edges(n: usize, core: &[String]) -> EdgeSet {
    let (stop, stop_rx) = watch::channel(false);
    let (tx, rx) = std::sync::mpsc::channel();
    let core = core.to_vec();
    let thread = std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("edges")
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async move {
            let mut tasks = Vec::new();
            for i in 0..n {
                let mut endpoints = core.clone();
                endpoints.rotate_left(i % core.len());
                let config = Config::try_parse_from([
                    "agentgate-edge",
                    "--core",
                    &endpoints.join(","),
                    "--session-key",
                    SESSION_KEY,
                    "--shutdown-grace-ms",
                    "1000",
                ])
                .unwrap();
                let listeners = Listeners {
                    mcp: agentgate_runtime::net::bind(([127, 0, 0, 1], 0).into())
                        .await
                        .unwrap(),
                    http: agentgate_runtime::net::bind(([127, 0, 0, 1], 0).into())
                        .await
                        .unwrap(),
                };
                let (tx, mut stop_rx) = (tx.clone(), stop_rx.clone());
                tasks.push(tokio::spawn(async move {
                    server::run(
                        config,
                        format!("bench-{n}-{i}-{}", std::process::id()),
                        listeners,
                        server::Env {
                            clock: Arc::new(SystemClock),
                            dialer: agentgate_runtime::net::Dialer::tcp(),
                        },
                        None,
                        move |r| {
                            tx.send((r.mcp_addr.to_string(), r.gateway.clone()))
                                .unwrap();
                        },
                        async move {
                            let _ = stop_rx.wait_for(|s| *s).await;
                        },
                    )
                    .await
                    .unwrap();
                }));
            }
            for t in tasks {
                let _ = t.await;
            }
        });
    });
    let edges = (0..n).map(|_| rx.recv().unwrap()).collect();
    EdgeSet {
        edges,
        stop,
        thread: Some(thread),
    }
}

/// Whether a decision view holds the global pause.
fn paused(view: &View) -> bool {
    view.state.switches.contains_key(&Scope::Global.key())
}

/// Waits until every edge is fresh and its view shows `paused == want`.
async fn settle(set: &EdgeSet, want: bool) {
    common::eventually("every edge settles", common::DEADLINE, || async {
        set.edges
            .iter()
            .all(|(_, gw)| gw.follower.is_fresh() && paused(&gw.view.borrow()) == want)
    })
    .await;
}

/// One watcher per edge: the instant its view first holds the pause.
fn watch_edges(set: &EdgeSet) -> Vec<tokio::task::JoinHandle<Instant>> {
    set.edges
        .iter()
        .map(|(_, gw)| {
            let mut view = gw.view.clone();
            tokio::spawn(async move {
                loop {
                    if paused(&view.borrow_and_update()) {
                        return Instant::now();
                    }
                    view.changed().await.unwrap();
                }
            })
        })
        .collect()
}

fn pause() -> Op {
    Op::EngageSwitch {
        scope: Scope::Global,
        reason: "bench".into(),
        ttl_ms: None,
    }
}

/// What one round saw.
struct Round {
    lags: Vec<Duration>,
    before_reply: usize,
    admin_call: Duration,
}

/// Engages the pause through node `via` and collects each edge's lag; then checks that every
/// edge refuses a real call, and releases the switch.
async fn round(c: &Cluster, set: &EdgeSet, via: u64, key: &str, started: Instant) -> Round {
    let watchers = watch_edges(set);
    c.propose(via, &pause()).await.unwrap();
    let replied = Instant::now();
    let mut lags = Vec::new();
    let mut before_reply = 0;
    for w in watchers {
        let seen = tokio::time::timeout(common::DEADLINE, w)
            .await
            .expect("an edge never enforced the pause")
            .unwrap();
        if seen < replied {
            before_reply += 1;
        }
        lags.push(seen.saturating_duration_since(replied));
    }
    let client = http_client();
    for (i, (addr, _)) in set.edges.iter().enumerate() {
        let url = format!("http://{addr}/t/bench/fast/mcp");
        let (_, body) = send(
            &client,
            stateless_call(&url, key, "echo", json!({"text": "x"}), i as u64),
        )
        .await;
        assert!(
            body.contains("kill switch `global`"),
            "edge {i} did not refuse a call under the pause: {body}"
        );
    }
    c.propose(
        via,
        &Op::ReleaseSwitch {
            scope: Scope::Global,
        },
    )
    .await
    .unwrap();
    settle(set, false).await;
    Round {
        lags,
        before_reply,
        admin_call: replied - started,
    }
}

async fn scenario(c: &mut Cluster, n: usize, key: &str) -> Value {
    let core: Vec<String> = c.nodes.iter().map(|node| node.grpc.clone()).collect();
    let set = start_edges(n, &core);
    settle(&set, false).await;
    // Calls flow: each edge holds the tenant and allows its calls.
    let client = http_client();
    for (i, (addr, _)) in set.edges.iter().enumerate() {
        let url = format!("http://{addr}/t/bench/fast/mcp");
        common::eventually("the edge allows calls", common::DEADLINE, || async {
            send(
                &client,
                stateless_call(&url, key, "echo", json!({"text": "x"}), i as u64),
            )
            .await
            .1
            .contains("\"x\"")
        })
        .await;
    }

    let (mut lags, mut before, mut admin) = (Vec::new(), 0, Vec::new());
    for _ in 0..ROUNDS {
        let leader = c.wait_for_leader(&c.ids()).await;
        let r = round(c, &set, leader, key, Instant::now()).await;
        lags.extend(r.lags);
        before += r.before_reply;
        admin.push(r.admin_call);
    }
    let steady = summary(&format!("{n} edges: commit → enforced"), lags);
    let steady_admin = summary(&format!("{n} edges: admin call"), admin);

    let (mut lags, mut killed_before, mut admin) = (Vec::new(), 0, Vec::new());
    for _ in 0..LEADER_KILLED_ROUNDS {
        let leader = c.wait_for_leader(&c.ids()).await;
        let via = c.ids().into_iter().find(|i| *i != leader).unwrap();
        let killed_at = Instant::now();
        c.kill(leader);
        let r = round(c, &set, via, key, killed_at).await;
        lags.extend(r.lags);
        killed_before += r.before_reply;
        admin.push(r.admin_call);
        c.restart(leader);
        c.wait_for_leader(&[1, 2, 3]).await;
        settle(&set, false).await;
    }
    let killed = summary(
        &format!("{n} edges, leader killed: commit → enforced"),
        lags,
    );
    let killed_admin = summary(
        &format!("{n} edges, leader killed: kill → admin reply"),
        admin,
    );
    drop(set);
    json!({
        "edges": n,
        "rounds": ROUNDS,
        "enforced_after_reply": steady,
        "enforced_before_reply": before,
        "admin_call": steady_admin,
        "leader_killed_rounds": LEADER_KILLED_ROUNDS,
        "leader_killed_enforced_after_reply": killed,
        "leader_killed_enforced_before_reply": killed_before,
        "leader_killed_admin_call": killed_admin,
    })
}

fn main() {
    run("kill_switch", async {
        let mut c = Cluster::start_initialized(3, &PRODUCTION_TIMINGS).await;
        let upstream = fast_upstream(1);
        let (key, _) = tenant(&c, "bench", "fast", &upstream, POLICY).await;
        println!(
            "kill_switch: 3 core nodes (heartbeat 100 ms, election 500 ms), edges in one process, {} CPUs shared",
            cpus()
        );
        let ten = scenario(&mut c, 10, &key).await;
        let hundred = scenario(&mut c, 100, &key).await;
        write_results(
            "kill_switch",
            &json!({"cpus": cpus(), "scenarios": [ten, hundred]}),
        );
    });
}
