//! Who runs where: core nodes, edges and the upstream spread over three regions.

pub const GRPC_PORT: u16 = 7411;
pub const NODE_HTTP_PORT: u16 = 7412;
pub const MCP_PORT: u16 = 8080;
pub const EDGE_HTTP_PORT: u16 = 8081;
pub const UPSTREAM_PORT: u16 = 9000;
pub const UPSTREAM_HOST: &str = "upstream";
pub const TENANT: &str = "acme";
pub const SERVER: &str = "tools";

#[derive(Debug, Clone)]
pub struct Topology {
    pub regions: Vec<String>,
    pub nodes: usize,
    pub edges: usize,
    pub agents: usize,
    pub operators: usize,
}

impl Default for Topology {
    fn default() -> Self {
        Topology {
            regions: vec!["eu".into(), "us".into(), "ap".into()],
            nodes: 3,
            edges: 3,
            agents: 3,
            operators: 2,
        }
    }
}

impl Topology {
    pub fn node_host(i: u64) -> String {
        format!("node{i}")
    }

    pub fn edge_host(i: usize) -> String {
        format!("edge{i}")
    }

    /// Node ids run from 1.
    pub fn node_ids(&self) -> impl Iterator<Item = u64> + use<> {
        1..=self.nodes as u64
    }

    pub fn node_hosts(&self) -> Vec<String> {
        self.node_ids().map(Self::node_host).collect()
    }

    pub fn edge_hosts(&self) -> Vec<String> {
        (0..self.edges).map(Self::edge_host).collect()
    }

    pub fn node_region(&self, id: u64) -> usize {
        (id as usize).saturating_sub(1) % self.regions.len()
    }

    pub fn edge_region(&self, i: usize) -> usize {
        i % self.regions.len()
    }

    /// Every core node's gRPC address, as edges and operators are configured with.
    pub fn core_endpoints(&self) -> Vec<String> {
        self.node_ids()
            .map(|i| format!("{}:{GRPC_PORT}", Self::node_host(i)))
            .collect()
    }

    /// The region of every host, for inter-region latency.
    pub fn hosts_by_region(&self) -> Vec<(String, usize)> {
        let mut out: Vec<(String, usize)> = self
            .node_ids()
            .map(|i| (Self::node_host(i), self.node_region(i)))
            .collect();
        out.extend((0..self.edges).map(|i| (Self::edge_host(i), self.edge_region(i))));
        out.push((UPSTREAM_HOST.into(), 0));
        out
    }
}
