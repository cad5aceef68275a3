//! The edge's static configuration: flags, or `AGENTGATE_*` environment variables. Everything
//! else (agents, upstreams, policies, switches) comes from the core's replicated state.

use std::net::SocketAddr;
use std::time::Duration;

use clap::Parser;

/// AgentGate edge: the MCP gateway agents talk to.
#[derive(Debug, Clone, Parser)]
#[command(name = "agentgate-edge", version)]
pub struct Config {
    /// MCP listen address (agents call `/t/{tenant}/{server}/mcp`). Port 0 picks a free port.
    #[arg(long, env = "AGENTGATE_LISTEN", default_value = "127.0.0.1:7480")]
    pub listen: SocketAddr,

    /// HTTP listen address for /livez, /readyz and /metrics. Port 0 picks a free port.
    #[arg(long, env = "AGENTGATE_HTTP_LISTEN", default_value = "127.0.0.1:7481")]
    pub http_listen: SocketAddr,

    /// Core nodes' gRPC addresses, comma-separated (any subset; the edge fails over).
    #[arg(long, env = "AGENTGATE_CORE", value_delimiter = ',', required = true)]
    pub core: Vec<String>,

    /// This edge's name; its audit identity is the name plus a random suffix per start.
    #[arg(long, env = "AGENTGATE_EDGE_NAME", default_value = "edge")]
    pub name: String,

    /// Region label of this edge (region kill switches, `context.region`).
    #[arg(long, env = "AGENTGATE_REGION", default_value = "local")]
    pub region: String,

    /// Key that signs legacy session ids (at least 32 bytes); every edge of a deployment must
    /// share it so that a session works through any of them.
    /// Give this or `--session-key-file`.
    #[arg(
        long,
        env = "AGENTGATE_SESSION_KEY",
        hide_env_values = true,
        default_value = "",
        hide_default_value = true
    )]
    pub session_key: String,

    /// A file holding the session key (e.g. a mounted Kubernetes Secret); one trailing newline
    /// is ignored. Used when `--session-key` is not given.
    #[arg(long, env = "AGENTGATE_SESSION_KEY_FILE")]
    pub session_key_file: Option<std::path::PathBuf>,

    /// A snapshot the core has not confirmed for this long is stale: calls are denied.
    #[arg(long, env = "AGENTGATE_MAX_STALENESS_MS", default_value_t = 3_000)]
    pub max_staleness_ms: u64,

    /// `Origin` values accepted (comma-separated); requests with any other `Origin` get 403.
    #[arg(long, env = "AGENTGATE_ALLOWED_ORIGINS", value_delimiter = ',')]
    pub allowed_origins: Vec<String>,

    /// Largest request body accepted, bytes.
    #[arg(long, env = "AGENTGATE_BODY_MAX_BYTES", default_value_t = 4 * 1024 * 1024)]
    pub body_max_bytes: usize,

    /// Requests and streams in flight at most.
    #[arg(long, env = "AGENTGATE_INFLIGHT_MAX", default_value_t = 4096)]
    pub inflight_max: usize,

    /// Wait for an upstream's response head at most this long, milliseconds.
    #[arg(long, env = "AGENTGATE_UPSTREAM_TIMEOUT_MS", default_value_t = 30_000)]
    pub upstream_timeout_ms: u64,

    /// Audit records buffered at most before calls are denied.
    #[arg(long, env = "AGENTGATE_AUDIT_BUFFER", default_value_t = 100_000)]
    pub audit_buffer: usize,

    /// Audit records per batch sent to the core.
    #[arg(long, env = "AGENTGATE_AUDIT_BATCH", default_value_t = 1_000)]
    pub audit_batch: usize,

    /// Audit batches leave at least this often, milliseconds.
    #[arg(long, env = "AGENTGATE_AUDIT_FLUSH_MS", default_value_t = 50)]
    pub audit_flush_ms: u64,

    /// Approvals requested by this edge expire after this long, milliseconds (default: the
    /// core's).
    #[arg(long, env = "AGENTGATE_APPROVAL_TTL_MS")]
    pub approval_ttl_ms: Option<u64>,

    /// Deadline for calls to the core, milliseconds.
    #[arg(long, env = "AGENTGATE_RPC_TIMEOUT_MS", default_value_t = 2_000)]
    pub rpc_timeout_ms: u64,

    /// On shutdown, wait this long for requests in flight and the audit flush, milliseconds.
    #[arg(long, env = "AGENTGATE_SHUTDOWN_GRACE_MS", default_value_t = 10_000)]
    pub shutdown_grace_ms: u64,

    /// Check the configuration, print it, and exit.
    #[arg(long)]
    pub validate_only: bool,

    /// Log format: `json` (structured) or `text` (for terminals).
    #[arg(long, env = "AGENTGATE_LOG_FORMAT", default_value = "json")]
    pub log_format: String,

    #[command(flatten)]
    pub traces: agentgate_runtime::telemetry::TraceArgs,
}

impl Config {
    /// Reads what the configuration points at (the session key file), then validates.
    pub fn resolve(mut self) -> Result<Config, String> {
        if self.session_key.is_empty()
            && let Some(path) = &self.session_key_file
        {
            let key = std::fs::read_to_string(path)
                .map_err(|e| format!("cannot read --session-key-file `{}`: {e}", path.display()))?;
            let key = key.strip_suffix('\n').unwrap_or(&key);
            self.session_key = key.strip_suffix('\r').unwrap_or(key).to_string();
        }
        self.validate()?;
        Ok(self)
    }

    pub fn validate(&self) -> Result<(), String> {
        if self.session_key.is_empty() {
            return Err("give --session-key or --session-key-file".into());
        }
        crate::session::SessionKeys::new(self.session_key.as_bytes())?;
        if self.core.iter().all(|c| c.trim().is_empty()) {
            return Err("--core needs at least one core node address".into());
        }
        if self.max_staleness_ms < 100 {
            return Err("--max-staleness-ms must be at least 100".into());
        }
        if self.audit_buffer < 100 {
            return Err("--audit-buffer must be at least 100".into());
        }
        if self.audit_batch == 0
            || self.audit_batch > agentgate_model::limits::AUDIT_BATCH_RECORDS_MAX
        {
            return Err(format!(
                "--audit-batch must be 1 to {}",
                agentgate_model::limits::AUDIT_BATCH_RECORDS_MAX
            ));
        }
        if self.inflight_max == 0 || self.body_max_bytes < 1024 {
            return Err(
                "--inflight-max must be positive and --body-max-bytes at least 1024".into(),
            );
        }
        Ok(())
    }

    pub fn max_staleness(&self) -> Duration {
        Duration::from_millis(self.max_staleness_ms)
    }
}
