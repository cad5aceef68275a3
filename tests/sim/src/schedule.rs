//! Fault schedules derived from a seed: what breaks, when, and for how long.

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use crate::topology::Topology;

#[derive(Debug, Clone, PartialEq)]
pub enum Fault {
    /// Both directions between two hosts cut.
    Partition { a: String, b: String },
    /// Messages from `from` to `to` dropped; the other direction flows.
    PartitionOneway { from: String, to: String },
    /// The current Raft leader cut from every other node and every edge (resolved when applied
    /// into [`Fault::Isolate`]).
    IsolateLeader,
    /// A host cut from every core node (a node: also from every edge).
    Isolate { host: String },
    /// Extra latency on a link.
    Delay { a: String, b: String, ms: u64 },
    /// A link that fails and repairs at random (message loss, as turmoil models it).
    Flaky {
        a: String,
        b: String,
        fail_rate: f64,
    },
    /// A core node crashed, restarted from its disk when the fault ends.
    CrashNode { host: String },
    /// An edge crashed (its memory lost), restarted when the fault ends.
    CrashEdge { host: String },
}

impl Fault {
    pub fn kind(&self) -> &'static str {
        match self {
            Fault::Partition { .. } => "partition",
            Fault::PartitionOneway { .. } => "one-way partition",
            Fault::IsolateLeader | Fault::Isolate { .. } => "isolation",
            Fault::Delay { .. } => "delay",
            Fault::Flaky { .. } => "message loss",
            Fault::CrashNode { .. } => "node crash",
            Fault::CrashEdge { .. } => "edge crash",
        }
    }
}

/// A fault planned relative to the start of the chaos phase.
#[derive(Debug, Clone)]
pub struct Planned {
    pub at_ms: u64,
    pub duration_ms: u64,
    pub fault: Fault,
}

#[derive(Debug, Clone)]
pub struct Plan {
    pub faults: Vec<Planned>,
    /// One-way latency between regions `i < j`, milliseconds.
    pub region_latency_ms: Vec<((usize, usize), u64)>,
}

/// Derives the fault schedule of a chaos phase lasting `chaos_ms` from `seed`. With
/// `isolate_an_edge`, the schedule also cuts one edge from the whole core for longer than its
/// staleness bound (the deliberately broken edge's test needs it).
pub fn plan(seed: u64, topo: &Topology, chaos_ms: u64, isolate_an_edge: bool) -> Plan {
    let mut rng = StdRng::seed_from_u64(seed ^ 0x5eed_fa17);
    let regions = topo.regions.len();
    let mut region_latency_ms = Vec::new();
    for i in 0..regions {
        for j in i + 1..regions {
            region_latency_ms.push(((i, j), rng.random_range(5..=40)));
        }
    }
    let nodes = topo.node_hosts();
    let edges = topo.edge_hosts();
    let pick = |rng: &mut StdRng, v: &[String]| v[rng.random_range(0..v.len())].clone();
    let mut faults = Vec::new();
    let mut t = rng.random_range(200..1_000);
    while t < chaos_ms {
        let duration_ms = rng.random_range(400..4_000).min(chaos_ms - t);
        let fault = match rng.random_range(0..100) {
            0..15 => {
                let (a, b) = two_nodes(&mut rng, &nodes);
                Fault::Partition { a, b }
            }
            15..25 => Fault::Partition {
                a: pick(&mut rng, &edges),
                b: pick(&mut rng, &nodes),
            },
            25..37 => {
                let (from, to) = if rng.random_bool(0.5) {
                    two_nodes(&mut rng, &nodes)
                } else if rng.random_bool(0.5) {
                    (pick(&mut rng, &edges), pick(&mut rng, &nodes))
                } else {
                    (pick(&mut rng, &nodes), pick(&mut rng, &edges))
                };
                Fault::PartitionOneway { from, to }
            }
            37..47 => Fault::IsolateLeader,
            47..57 => Fault::Isolate {
                host: pick(&mut rng, &edges),
            },
            57..67 => {
                let (a, b) = two_nodes(&mut rng, &nodes);
                Fault::Delay {
                    a,
                    b,
                    ms: rng.random_range(100..800),
                }
            }
            67..75 => Fault::Flaky {
                a: pick(&mut rng, &nodes),
                b: pick(&mut rng, &edges),
                fail_rate: rng.random_range(0.05..0.5),
            },
            75..90 => Fault::CrashNode {
                host: pick(&mut rng, &nodes),
            },
            _ => Fault::CrashEdge {
                host: pick(&mut rng, &edges),
            },
        };
        faults.push(Planned {
            at_ms: t,
            duration_ms,
            fault,
        });
        t += rng.random_range(300..1_500);
    }
    if isolate_an_edge {
        faults.push(Planned {
            at_ms: chaos_ms / 4,
            duration_ms: chaos_ms / 2,
            fault: Fault::Isolate {
                host: pick(&mut rng, &edges),
            },
        });
        faults.sort_by_key(|p| p.at_ms);
    }
    Plan {
        faults,
        region_latency_ms,
    }
}

fn two_nodes(rng: &mut StdRng, nodes: &[String]) -> (String, String) {
    let i = rng.random_range(0..nodes.len());
    let j = (i + rng.random_range(1..nodes.len())) % nodes.len();
    (nodes[i].clone(), nodes[j].clone())
}
