//! Deterministic simulation of the whole AgentGate cluster: the real core nodes (openraft over
//! tonic, RocksDB), the real edges, simulated agents and operators, and an MCP upstream, all in
//! one process on turmoil's network and clock, driven by a seed. A chaos phase breaks things
//! (partitions, one-way partitions, delays, message loss, node and edge crashes, leader
//! isolation, three regions apart); a heal phase repairs everything; then the invariants in
//! [`invariants`] judge what was observed. See `tests/sim/README.md`.
// A test harness: indices come from the topology's own sizes, and a panic fails the test that
// ran the seed, as any test assertion does.
#![allow(clippy::indexing_slicing)]

pub mod clock;
pub mod history;
pub mod hosts;
pub mod invariants;
pub mod net;
pub mod schedule;
pub mod topology;
pub mod workload;

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::history::{AppliedFault, History};
use crate::schedule::{Fault, Plan};
use crate::topology::{Topology, UPSTREAM_HOST};
use crate::workload::FinalState;

/// What a run does besides its seed.
#[derive(Debug, Clone)]
pub struct Options {
    pub topology: Topology,
    pub chaos_ms: u64,
    /// After heal, time for edges to reconnect before the cluster counts as healthy.
    pub settle_ms: u64,
    /// Healthy operation at the end, where G1's healthy bound applies.
    pub healthy_ms: u64,
    /// Run edges on a clock whose monotonic time never advances: they never see their lease
    /// run out (a deliberately broken edge, for the test that the invariants can fail).
    pub broken_edges: bool,
    /// Add a fault that cuts one edge from the whole core for half the chaos phase.
    pub isolate_an_edge: bool,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            topology: Topology::default(),
            chaos_ms: 12_000,
            settle_ms: 4_000,
            healthy_ms: 3_000,
            broken_edges: false,
            isolate_an_edge: false,
        }
    }
}

/// A broken invariant.
#[derive(Debug, Clone)]
pub struct Violation {
    pub invariant: &'static str,
    pub detail: String,
}

/// The outcome of one seed.
#[derive(Debug, Clone)]
pub struct Report {
    pub seed: u64,
    pub violations: Vec<Violation>,
    /// Faults applied, by kind.
    pub faults: BTreeMap<&'static str, usize>,
    pub calls: usize,
    pub admitted: usize,
    pub denied: usize,
    /// Denials by JSON-RPC code.
    pub denied_by: BTreeMap<i64, usize>,
    pub failed: usize,
    pub admin_ops: usize,
    /// Calls made inside a legacy MCP session, and session kill switches operators engaged.
    pub session_calls: usize,
    pub session_kills: usize,
    pub audit_records: usize,
    pub terms_led: usize,
    pub sim_ms: u64,
    /// The faults as applied (`from..to ms: fault`) and the run's notes, for diagnosing.
    pub timeline: Vec<String>,
}

impl Report {
    pub fn ok(&self) -> bool {
        self.violations.is_empty()
    }

    /// The command that replays this seed.
    pub fn replay_command(&self, broken: bool) -> String {
        format!(
            "SIM_SEED={} {}cargo test -p agentgate-sim --test sim -- --exact replay --nocapture",
            self.seed,
            if broken { "SIM_BROKEN_EDGES=1 " } else { "" }
        )
    }
}

/// The driver's view of what is broken right now, so overlapping faults compose: a link is cut
/// while any fault cuts it, a host is down while any fault holds it down.
#[derive(Default)]
struct Damage {
    cuts: HashMap<(String, String), u32>,
    down: HashMap<String, u32>,
}

impl Damage {
    fn cut(&mut self, sim: &turmoil::Sim<'_>, from: &str, to: &str) {
        let n = self.cuts.entry((from.into(), to.into())).or_default();
        *n += 1;
        if *n == 1 {
            sim.partition_oneway(from, to);
        }
    }

    fn uncut(&mut self, sim: &turmoil::Sim<'_>, from: &str, to: &str) {
        let n = self.cuts.entry((from.into(), to.into())).or_default();
        *n = n.saturating_sub(1);
        if *n == 0 {
            sim.repair_oneway(from, to);
        }
    }

    /// Re-applies the cuts on a link after random failures (which override explicit ones).
    fn reassert(&self, sim: &turmoil::Sim<'_>, a: &str, b: &str) {
        sim.repair(a, b);
        for (from, to) in [(a, b), (b, a)] {
            if self
                .cuts
                .get(&(from.into(), to.into()))
                .is_some_and(|n| *n > 0)
            {
                sim.partition_oneway(from, to);
            }
        }
    }
}

/// The pairs a fault cuts, both directions listed.
pub(crate) fn cut_pairs(topo: &Topology, fault: &Fault) -> Vec<(String, String)> {
    let both = |a: &str, b: &str| {
        vec![
            (a.to_string(), b.to_string()),
            (b.to_string(), a.to_string()),
        ]
    };
    match fault {
        Fault::Partition { a, b } => both(a, b),
        Fault::PartitionOneway { from, to } => vec![(from.clone(), to.clone())],
        Fault::Isolate { host } => {
            let mut peers = topo.node_hosts();
            if host.starts_with("node") {
                peers.extend(topo.edge_hosts());
            }
            peers
                .iter()
                .filter(|p| *p != host)
                .flat_map(|p| both(host, p))
                .collect()
        }
        _ => vec![],
    }
}

struct Driver<'a> {
    sim: turmoil::Sim<'a>,
    topo: Topology,
    plan: Plan,
    history: History,
    damage: Damage,
    /// Faults started and not yet ended: (index into the plan, resolved fault, started at).
    active: Vec<(usize, Fault, u64)>,
    next: usize,
    /// Set when the chaos phase begins; no fault is applied before.
    chaos_start: Option<u64>,
}

impl Driver<'_> {
    fn now(&self) -> u64 {
        u64::try_from(self.sim.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    fn region_latency(&self, a: &str, b: &str) -> Option<Duration> {
        let regions: HashMap<String, usize> = self.topo.hosts_by_region().into_iter().collect();
        let (ra, rb) = (regions.get(a)?, regions.get(b)?);
        let key = ((*ra).min(*rb), (*ra).max(*rb));
        self.plan
            .region_latency_ms
            .iter()
            .find(|(k, _)| *k == key)
            .map(|(_, ms)| Duration::from_millis(*ms))
    }

    fn leader(&self) -> Option<String> {
        let log = self.history.lock();
        log.leaders
            .iter()
            .max_by_key(|l| (l.term, l.at_ms))
            .map(|l| Topology::node_host(l.node))
    }

    fn start(&mut self, index: usize) {
        let Some(planned) = self.plan.faults.get(index).cloned() else {
            return;
        };
        let fault = match planned.fault {
            Fault::IsolateLeader => match self.leader() {
                Some(host) => Fault::Isolate { host },
                None => return,
            },
            f => f,
        };
        let now = self.now();
        for (from, to) in cut_pairs(&self.topo, &fault) {
            self.damage.cut(&self.sim, &from, &to);
        }
        match &fault {
            Fault::Delay { a, b, ms } => {
                self.sim
                    .set_link_latency(a.as_str(), b.as_str(), Duration::from_millis(*ms))
            }
            Fault::Flaky { a, b, fail_rate } => {
                self.sim
                    .set_link_fail_rate(a.as_str(), b.as_str(), *fail_rate)
            }
            Fault::CrashNode { host } | Fault::CrashEdge { host } => {
                let n = self.damage.down.entry(host.clone()).or_default();
                *n += 1;
                if *n == 1 {
                    self.sim.crash(host.as_str());
                    if let Fault::CrashEdge { .. } = fault {
                        let mut log = self.history.lock();
                        let edge = host.trim_start_matches("edge").parse::<usize>().ok();
                        if let Some(inc) = log.edges.iter_mut().rev().find(|i| Some(i.edge) == edge)
                        {
                            inc.crashed_ms.get_or_insert(now);
                        }
                    }
                }
            }
            _ => {}
        }
        self.active.push((index, fault, now));
    }

    fn end(&mut self, slot: usize) {
        let (_, fault, from_ms) = self.active.remove(slot);
        for (from, to) in cut_pairs(&self.topo, &fault) {
            self.damage.uncut(&self.sim, &from, &to);
        }
        match &fault {
            Fault::Delay { a, b, .. } => {
                let base = self
                    .region_latency(a, b)
                    .unwrap_or(Duration::from_millis(1));
                self.sim.set_link_latency(a.as_str(), b.as_str(), base);
            }
            Fault::Flaky { a, b, .. } => {
                self.sim.set_link_fail_rate(a.as_str(), b.as_str(), 0.0);
                self.damage.reassert(&self.sim, a, b);
            }
            Fault::CrashNode { host } | Fault::CrashEdge { host } => {
                let n = self.damage.down.entry(host.clone()).or_default();
                *n = n.saturating_sub(1);
                if *n == 0 {
                    self.sim.bounce(host.as_str());
                }
            }
            _ => {}
        }
        let to_ms = self.now();
        self.history.lock().faults.push(AppliedFault {
            from_ms,
            to_ms,
            fault,
        });
    }

    /// Starts and ends the faults due now.
    fn tick(&mut self) {
        let Some(chaos_start) = self.chaos_start else {
            return;
        };
        let now = self.now();
        let mut slot = 0;
        while slot < self.active.len() {
            let (index, _, _) = &self.active[slot];
            let due = self
                .plan
                .faults
                .get(*index)
                .map_or(0, |p| chaos_start + p.at_ms + p.duration_ms);
            if due <= now {
                self.end(slot)
            } else {
                slot += 1
            }
        }
        while let Some(p) = self.plan.faults.get(self.next) {
            if chaos_start + p.at_ms > now {
                break;
            }
            self.start(self.next);
            self.next += 1;
        }
    }

    /// Steps until every client finished, applying faults on the way.
    fn run_clients(&mut self, limit_ms: u64) -> Result<(), String> {
        loop {
            self.tick();
            match self.sim.step() {
                Ok(true) => return Ok(()),
                Ok(false) => {}
                Err(e) => return Err(format!("the simulation failed: {e}")),
            }
            if self.now() > limit_ms {
                return Err(format!(
                    "clients still running at {limit_ms} ms of simulated time"
                ));
            }
        }
    }
}

/// Where simulated nodes keep their RocksDB data: memory-backed when the machine has it.
fn data_root() -> std::io::Result<tempfile::TempDir> {
    let shm = std::path::Path::new("/dev/shm");
    if shm.is_dir() {
        tempfile::Builder::new()
            .prefix("agentgate-sim-")
            .tempdir_in(shm)
    } else {
        tempfile::Builder::new().prefix("agentgate-sim-").tempdir()
    }
}

/// Runs one seed and judges it.
pub fn run(seed: u64, opts: &Options) -> Report {
    clock::reset();
    let topo = opts.topology.clone();
    let history = History::default();
    let mut report = Report {
        seed,
        violations: vec![],
        faults: BTreeMap::new(),
        calls: 0,
        admitted: 0,
        denied: 0,
        denied_by: BTreeMap::new(),
        failed: 0,
        admin_ops: 0,
        session_calls: 0,
        session_kills: 0,
        audit_records: 0,
        terms_led: 0,
        sim_ms: 0,
        timeline: vec![],
    };
    let fail = |report: &mut Report, detail: String| {
        report.violations.push(Violation {
            invariant: "run",
            detail,
        });
    };
    let data = match data_root() {
        Ok(d) => d,
        Err(e) => {
            fail(&mut report, format!("no data directory: {e}"));
            return report;
        }
    };
    let sim = turmoil::Builder::new()
        .rng_seed(seed)
        .simulation_duration(Duration::from_secs(600))
        .tick_duration(Duration::from_millis(1))
        .min_message_latency(Duration::from_millis(0))
        .max_message_latency(Duration::from_millis(2))
        .build();
    let mut d = Driver {
        sim,
        topo: topo.clone(),
        plan: schedule::plan(seed, &topo, opts.chaos_ms, opts.isolate_an_edge),
        history: history.clone(),
        damage: Damage::default(),
        active: vec![],
        next: 0,
        chaos_start: None,
    };
    d.sim.host(UPSTREAM_HOST, hosts::upstream);
    for id in topo.node_ids() {
        let (topo, history) = (topo.clone(), history.clone());
        let dir = data.path().join(format!("node{id}"));
        d.sim.host(Topology::node_host(id).as_str(), move || {
            hosts::node(topo.clone(), id, dir.clone(), seed, history.clone())
        });
    }
    for i in 0..topo.edges {
        let (topo, history) = (topo.clone(), history.clone());
        let incarnations = Arc::new(AtomicU64::new(0));
        let broken = opts.broken_edges;
        d.sim.host(Topology::edge_host(i).as_str(), move || {
            hosts::edge(
                topo.clone(),
                i,
                broken,
                incarnations.clone(),
                history.clone(),
            )
        });
    }
    for (a, ra) in topo.hosts_by_region() {
        for (b, rb) in topo.hosts_by_region() {
            if a < b
                && ra != rb
                && let Some(l) = d.region_latency(&a, &b)
            {
                d.sim.set_link_latency(a.as_str(), b.as_str(), l);
            }
        }
    }

    // Setup, on a healthy cluster.
    let key = Arc::new(Mutex::new(None));
    d.sim.client(
        "setup",
        workload::setup(topo.clone(), history.clone(), key.clone()),
    );
    if let Err(e) = d.run_clients(30_000) {
        fail(&mut report, format!("setup: {e}"));
        return report;
    }
    let Some(key) = key.lock().ok().and_then(|k| k.clone()) else {
        fail(&mut report, "setup produced no agent key".into());
        return report;
    };

    // Chaos, heal, healthy operation.
    let chaos_start = d.now();
    d.chaos_start = Some(chaos_start);
    history
        .lock()
        .notes
        .push(format!("setup done, chaos from {chaos_start} ms"));
    let heal_ms = chaos_start + opts.chaos_ms;
    let healthy_from = heal_ms + opts.settle_ms;
    let stop_ms = healthy_from + opts.healthy_ms;
    for i in 0..topo.agents {
        d.sim.client(
            format!("agent{i}").as_str(),
            workload::agent(topo.clone(), i, seed, key.clone(), stop_ms, history.clone()),
        );
    }
    for i in 0..topo.operators {
        d.sim.client(
            format!("operator{i}").as_str(),
            workload::operator(topo.clone(), i, seed, stop_ms, history.clone()),
        );
    }
    if let Err(e) = d.run_clients(stop_ms + 10_000) {
        fail(&mut report, format!("workload: {e}"));
    }
    while !d.active.is_empty() {
        d.end(0);
    }
    history
        .lock()
        .notes
        .push(format!("workload done at {} ms", d.now()));

    // Read the final state once the cluster has converged.
    let final_state = Arc::new(Mutex::new(FinalState::default()));
    d.sim.client(
        "checker",
        workload::check(topo.clone(), final_state.clone()),
    );
    if let Err(e) = d.run_clients(d.now() + 60_000) {
        fail(&mut report, format!("checker: {e}"));
    }
    report.sim_ms = d.now();
    let final_state = final_state.lock().map(|f| f.clone()).unwrap_or_default();
    if let Some(e) = &final_state.error {
        fail(&mut report, e.clone());
    }
    let log = history.lock();
    let ctx = invariants::Ctx {
        topo: &topo,
        log: &log,
        final_state: &final_state,
        max_staleness_ms: hosts::MAX_STALENESS_MS,
        healthy_from_ms: healthy_from,
        chaos_end_ms: heal_ms,
    };
    for inv in invariants::ALL {
        for detail in (inv.check)(&ctx) {
            report.violations.push(Violation {
                invariant: inv.id,
                detail,
            });
        }
    }
    report.timeline = log
        .faults
        .iter()
        .map(|f| format!("{}..{} ms: {:?}", f.from_ms, f.to_ms, f.fault))
        .chain(log.notes.iter().cloned())
        .chain(log.raft.iter().map(|(id, m)| format!("node {id}: {m}")))
        .collect();
    for f in &log.faults {
        *report.faults.entry(f.fault.kind()).or_default() += 1;
    }
    report.calls = log.calls.len();
    report.admitted = log
        .calls
        .iter()
        .filter(|c| c.outcome == history::Outcome::Admitted)
        .count();
    report.denied = log
        .calls
        .iter()
        .filter(|c| matches!(c.outcome, history::Outcome::Denied(_)))
        .count();
    for c in &log.calls {
        if let history::Outcome::Denied(code) = c.outcome {
            *report.denied_by.entry(code).or_default() += 1;
        }
    }
    report.failed = report.calls - report.admitted - report.denied;
    report.admin_ops = log.admin.len();
    report.session_calls = log.calls.iter().filter(|c| c.session.is_some()).count();
    report.session_kills = log
        .admin
        .iter()
        .filter(|a| {
            matches!(
                &a.kind,
                history::AdminKind::Engage(agentgate_model::entity::Scope::Session { .. })
            ) && a.result == history::AdminResult::Ok(None)
        })
        .count();
    report.audit_records = final_state.audit.len();
    report.terms_led = log.leaders.len();
    report
}
