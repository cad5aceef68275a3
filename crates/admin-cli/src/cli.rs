//! The command line (clap derive). Every command takes the global flags; `--json` makes every
//! command print one JSON document (or JSON lines for streams) on stdout.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

pub const EXIT_CODES: &str = "\
Exit codes: 0 ok · 1 error (cluster unreachable, server failure) · 2 denied or verification failed (policy test mismatch, audit chain broken) · 3 invalid input or usage (bad flags, unknown names, invalid policy)";

#[derive(Parser, Debug)]
#[command(
    name = "agentgate-admin",
    version,
    about = "Operate an AgentGate cluster: tenants, agents, upstreams, policies, rollouts, kill switches, approvals and the audit log.",
    after_help = EXIT_CODES
)]
pub struct Cli {
    /// Core node gRPC address(es), HOST:PORT; a comma-separated list is tried in turn.
    #[arg(
        long,
        env = "AGENTGATE_ENDPOINT",
        default_value = "127.0.0.1:7411",
        global = true
    )]
    pub endpoint: String,
    /// Print JSON instead of text.
    #[arg(long, global = true)]
    pub json: bool,
    /// Operator name recorded as the actor of changes.
    #[arg(long, env = "AGENTGATE_ACTOR", global = true)]
    pub actor: Option<String>,
    /// Deadline of each call to the cluster, ms.
    #[arg(
        long,
        env = "AGENTGATE_TIMEOUT_MS",
        default_value_t = 10_000,
        global = true
    )]
    pub timeout_ms: u64,
    /// OTLP trace export (off unless configured): each command is one trace, continued by the
    /// core nodes through Raft commit and apply.
    #[command(flatten)]
    pub traces: agentgate_runtime::telemetry::TraceArgs,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Cluster membership and health.
    #[command(subcommand)]
    Cluster(ClusterCmd),
    /// Tenants.
    #[command(subcommand)]
    Tenant(TenantCmd),
    /// Agent identities and their API keys.
    #[command(subcommand)]
    Agent(AgentCmd),
    /// Upstream MCP servers per tenant.
    #[command(subcommand)]
    Upstream(UpstreamCmd),
    /// Policy packages (Cedar): validate offline, push, inspect, test.
    #[command(subcommand)]
    Policy(PolicyCmd),
    /// Gradual policy rollouts (canary by stable hash of session or agent).
    #[command(subcommand)]
    Rollout(RolloutCmd),
    /// Stop tool calls: everywhere, in a region, or for a tenant (a kill switch).
    Pause(PauseArgs),
    /// Release a pause engaged with `pause`.
    Resume(ResumeArgs),
    /// Stop one session, agent or tool (a kill switch).
    #[command(subcommand)]
    Kill(KillCmd),
    /// Engaged kill switches.
    #[command(subcommand)]
    Switches(SwitchesCmd),
    /// Calls held for an operator's approval.
    #[command(subcommand)]
    Approvals(ApprovalsCmd),
    /// The hash-chained audit log of every decision.
    #[command(subcommand)]
    Audit(AuditCmd),
    /// A private CA and certificates for nodes, edges and operators (local and test clusters).
    #[command(subcommand)]
    Certs(CertsCmd),
}

#[derive(Subcommand, Debug)]
pub enum CertsCmd {
    /// Creates a CA and one certificate per node, edge and operator under DIR.
    Init {
        dir: PathBuf,
        /// The SPIFFE trust domain of the identities (`spiffe://<trust-domain>/<kind>/<name>`).
        #[arg(long, default_value = "agentgate.local")]
        trust_domain: String,
        /// Nodes 1..=N.
        #[arg(long, default_value_t = 3)]
        nodes: u64,
        /// Edge names.
        #[arg(long, value_delimiter = ',', default_value = "edge-1")]
        edges: Vec<String>,
        /// Operator names.
        #[arg(long, value_delimiter = ',', default_value = "admin")]
        operators: Vec<String>,
        /// Validity, days.
        #[arg(long, default_value_t = 90)]
        days: u32,
    },
    /// Issues one more certificate from an existing CA (a new identity, or a rotation).
    Issue {
        /// The identity, `node/<id>`, `edge/<name>` or `operator/<name>`.
        identity: String,
        /// The directory holding ca.crt and ca.key.
        #[arg(long)]
        ca_dir: PathBuf,
        #[arg(long, default_value = "agentgate.local")]
        trust_domain: String,
        /// Where to write tls.crt, tls.key, ca.crt (default: beside the CA directory, named for
        /// the identity).
        #[arg(long)]
        out: Option<PathBuf>,
        #[arg(long, default_value_t = 90)]
        days: u32,
    },
}

#[derive(Subcommand, Debug)]
pub enum ClusterCmd {
    /// Initialize a new cluster with these voters (once, on a node without state).
    Init {
        /// Members as ID=HOST:PORT (gRPC addresses).
        #[arg(required = true, value_delimiter = ',')]
        members: Vec<String>,
    },
    /// Leader, term, log indexes and every member's view.
    Status,
    /// Add a node: as a learner, then (unless --learner) promoted to voter once caught up.
    AddNode {
        id: u64,
        /// The node's gRPC address, HOST:PORT.
        addr: String,
        #[arg(long)]
        learner: bool,
    },
    /// Remove a voter or learner.
    RemoveNode { id: u64 },
}

#[derive(Subcommand, Debug)]
pub enum TenantCmd {
    Create {
        tenant: String,
        /// While an edge's snapshot is stale, still allow tools annotated read-only.
        #[arg(long)]
        stale_allow_read_only: bool,
    },
    List,
    Show {
        tenant: String,
    },
}

#[derive(Subcommand, Debug)]
pub enum AgentCmd {
    /// Create an agent; its API key is shown once (or written to --key-file).
    Create {
        tenant: String,
        agent: String,
        /// A role (Cedar `Role` the agent is in); repeatable.
        #[arg(long = "role")]
        roles: Vec<String>,
        /// A label KEY=VALUE; repeatable.
        #[arg(long = "label")]
        labels: Vec<String>,
        /// Write the key to this file (created with mode 0600) instead of printing it.
        #[arg(long)]
        key_file: Option<PathBuf>,
    },
    List {
        #[arg(long)]
        tenant: Option<String>,
    },
    /// Revoke an agent: its key stops working on every edge.
    Revoke { tenant: String, agent: String },
}

#[derive(Subcommand, Debug)]
pub enum UpstreamCmd {
    /// Register an MCP server (Streamable HTTP) for a tenant.
    Add {
        tenant: String,
        name: String,
        #[arg(long)]
        url: String,
        /// Pin a tool's definition: TOOL=SHA256; repeatable. Calls to a changed tool are denied.
        #[arg(long = "pin")]
        pins: Vec<String>,
    },
    List {
        #[arg(long)]
        tenant: Option<String>,
    },
    Remove {
        tenant: String,
        name: String,
    },
}

#[derive(Args, Debug)]
pub struct PackageFiles {
    /// Cedar schema (default: the built-in AgentGate schema, policies/schema.cedarschema).
    #[arg(long)]
    pub schema: Option<PathBuf>,
    /// Cedar entities, JSON.
    #[arg(long)]
    pub entities: Option<PathBuf>,
}

#[derive(Subcommand, Debug)]
pub enum PolicyCmd {
    /// Validate a policy file against the schema, offline.
    Validate {
        file: PathBuf,
        #[command(flatten)]
        package: PackageFiles,
    },
    /// Push an immutable policy version for a tenant (validated by the cluster first).
    Push {
        tenant: String,
        file: PathBuf,
        #[arg(long)]
        version: String,
        #[command(flatten)]
        package: PackageFiles,
        #[arg(long, default_value = "")]
        description: String,
        /// Enforce it right away (no rollout may be running).
        #[arg(long)]
        activate: bool,
    },
    /// Enforce a pushed version directly (no rollout may be running).
    Activate {
        tenant: String,
        version: String,
    },
    List {
        tenant: String,
    },
    Show {
        tenant: String,
        version: String,
        /// Which part to print (text output).
        #[arg(long, value_enum, default_value_t = Part::Policies)]
        part: Part,
    },
    /// Unified diff between two pushed versions.
    Diff {
        tenant: String,
        from: String,
        to: String,
    },
    /// Evaluate request cases (policies/cases format) and print each decision. Exits 2 when a
    /// case's expectation is not met.
    Test {
        cases: PathBuf,
        /// The policy file to test (default: the case file's `policies`, relative to the
        /// case file's parent directory's parent).
        #[arg(long, conflicts_with_all = ["tenant", "version"])]
        policy: Option<PathBuf>,
        /// Test a pushed version instead: tenant…
        #[arg(long, requires = "version")]
        tenant: Option<String>,
        /// …and version.
        #[arg(long, requires = "tenant")]
        version: Option<String>,
        #[command(flatten)]
        package: PackageFiles,
    },
}

#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Part {
    Policies,
    Schema,
    Entities,
}

#[derive(Subcommand, Debug)]
pub enum RolloutCmd {
    /// Start rolling a tenant to a pushed version.
    Start {
        tenant: String,
        #[arg(long)]
        to: String,
        /// Percent of sessions/agents that get the new version first.
        #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u8).range(0..=100))]
        canary: u8,
        /// Later canary steps, e.g. 25,50,100 (`rollout advance` moves to the next).
        #[arg(long, value_delimiter = ',')]
        steps: Vec<u8>,
        /// Roll back automatically once the canary version denies more than this percent of
        /// its calls (checked by the leader from the audit log, after 20 canary calls).
        #[arg(long, value_parser = clap::value_parser!(u8).range(0..=100))]
        max_deny_rate: Option<u8>,
        /// Roll back automatically once more than this percent of the canary's decisions fail
        /// to evaluate.
        #[arg(long, value_parser = clap::value_parser!(u8).range(0..=100))]
        max_error_rate: Option<u8>,
    },
    Status {
        tenant: String,
    },
    /// Move the canary to the next step, or to --to PERCENT.
    Advance {
        tenant: String,
        #[arg(long)]
        to: Option<u8>,
    },
    /// Make the new version the enforced one for everyone.
    Promote {
        tenant: String,
    },
    Pause {
        tenant: String,
        #[arg(long, default_value = "")]
        reason: String,
    },
    Resume {
        tenant: String,
    },
    /// Return everyone to the previous version.
    Rollback {
        tenant: String,
        #[arg(long, default_value = "")]
        reason: String,
    },
}

#[derive(Args, Debug)]
#[group(required = true, multiple = false)]
pub struct Where {
    /// Every call in every region.
    #[arg(long)]
    pub global: bool,
    /// Every call through edges of this region.
    #[arg(long)]
    pub region: Option<String>,
    /// Every call of this tenant.
    #[arg(long)]
    pub tenant: Option<String>,
}

#[derive(Args, Debug)]
pub struct SwitchOpts {
    /// Why (recorded, and shown to agents in the error).
    #[arg(long, default_value = "")]
    pub reason: String,
    /// Release automatically after this long (e.g. 30s, 15m, 2h).
    #[arg(long, value_parser = humantime::parse_duration)]
    pub ttl: Option<std::time::Duration>,
}

#[derive(Args, Debug)]
pub struct PauseArgs {
    #[command(flatten)]
    pub scope: Where,
    #[command(flatten)]
    pub opts: SwitchOpts,
}

#[derive(Args, Debug)]
pub struct ResumeArgs {
    #[command(flatten)]
    pub scope: Where,
}

#[derive(Subcommand, Debug)]
pub enum KillCmd {
    /// Stop one session (the short session name audit records show).
    Session {
        session: String,
        #[arg(long)]
        tenant: String,
        #[command(flatten)]
        opts: SwitchOpts,
    },
    /// Stop every call of one agent.
    Agent {
        agent: String,
        #[arg(long)]
        tenant: String,
        #[command(flatten)]
        opts: SwitchOpts,
    },
    /// Stop one tool, in every tenant or (with --tenant) in one.
    Tool {
        tool: String,
        #[arg(long)]
        tenant: Option<String>,
        #[command(flatten)]
        opts: SwitchOpts,
    },
}

#[derive(Subcommand, Debug)]
pub enum SwitchesCmd {
    List {
        #[arg(long)]
        tenant: Option<String>,
    },
    /// Release a switch by the key `switches list` shows (e.g. agent/tenant-a/bot).
    Release { key: String },
}

#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum StateFilter {
    Pending,
    Approved,
    Denied,
    Expired,
    Consumed,
    All,
}

#[derive(Subcommand, Debug)]
pub enum ApprovalsCmd {
    List {
        #[arg(long)]
        tenant: Option<String>,
        #[arg(long, value_enum, default_value_t = StateFilter::Pending)]
        state: StateFilter,
    },
    /// Approve one call; the agent's identical retry then goes through, once.
    Approve {
        id: String,
    },
    Deny {
        id: String,
    },
}

#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum DecisionArg {
    Allow,
    Deny,
    RequireApproval,
}

#[derive(Args, Debug, Clone)]
pub struct AuditFilters {
    #[arg(long)]
    pub tenant: Option<String>,
    #[arg(long)]
    pub agent: Option<String>,
    #[arg(long)]
    pub session: Option<String>,
    #[arg(long)]
    pub tool: Option<String>,
    #[arg(long, value_enum)]
    pub decision: Option<DecisionArg>,
    /// From this time: RFC 3339 (2026-11-21T10:00:00Z) or a duration ago (15m).
    #[arg(long)]
    pub since: Option<String>,
    /// Before this time: RFC 3339 or a duration ago.
    #[arg(long)]
    pub until: Option<String>,
}

#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum ExportFormat {
    Jsonl,
    Csv,
}

#[derive(Subcommand, Debug)]
pub enum AuditCmd {
    /// Records matching the filters, oldest first.
    Query {
        #[command(flatten)]
        filters: AuditFilters,
        #[arg(long, default_value_t = 100)]
        limit: u64,
        /// Continue after this sequence number (the cursor a previous page printed).
        #[arg(long)]
        after_seq: Option<u64>,
    },
    /// The newest records; with -f, keep printing new ones until interrupted.
    Tail {
        #[command(flatten)]
        filters: AuditFilters,
        /// Look back over the last N records of the log.
        #[arg(short = 'n', long, default_value_t = 10)]
        lines: u64,
        #[arg(short, long)]
        follow: bool,
        /// How often to poll with -f, ms.
        #[arg(long, default_value_t = 500)]
        interval_ms: u64,
    },
    /// Every matching record, as JSON lines (verifiable offline) or CSV.
    Export {
        #[command(flatten)]
        filters: AuditFilters,
        #[arg(long, value_enum, default_value_t = ExportFormat::Jsonl)]
        format: ExportFormat,
        /// Write here instead of stdout.
        #[arg(short, long)]
        output: Option<PathBuf>,
    },
    /// Re-check the hash chain (of the cluster's log, or of a JSON-lines export) and report
    /// the first bad record. Exits 2 when it does not verify.
    Verify {
        /// A `audit export --format jsonl` file to verify offline.
        #[arg(long)]
        file: Option<PathBuf>,
    },
}
