//! End-to-end pieces around the core: `agentgate-edge` processes, real MCP servers and clients
//! (the Python SDK, server-everything), a round-robin HTTP forwarder, and raw MCP requests.
//!
//! The Python and npm tools come from `scripts/setup-e2e.sh` (`.e2e/` at the repository root);
//! `AGENTGATE_E2E_DIR` points elsewhere. A missing tool fails the test with what to run.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use agentgate_model::Op;
use agentgate_model::entity::PolicyPackage;
use agentgate_model::entity::Transport;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use serde_json::{Value, json};

use super::{Cluster, DEADLINE, eventually, http_get};

pub const SESSION_KEY: &str = "e2e-session-key-0123456789abcdef0123456789";

pub fn repo() -> PathBuf {
    // At run time: a test binary built from another checkout sharing the target dir is
    // reused as fresh, and its compile-time path would point at that checkout.
    std::env::var_os("CARGO_MANIFEST_DIR")
        .map_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")), PathBuf::from)
        .join("../..")
}

fn tools_dir() -> PathBuf {
    std::env::var_os("AGENTGATE_E2E_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo().join(".e2e"))
}

pub fn python() -> PathBuf {
    let p = tools_dir().join("venv/bin/python");
    assert!(
        p.exists(),
        "{} is missing: run scripts/setup-e2e.sh (installs the Python MCP SDK and server-everything)",
        p.display()
    );
    p
}

/// A child process killed on drop.
pub struct Proc(pub Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A port free on 127.0.0.1 now, for a child process to bind. It is drawn at random below the
/// kernel's ephemeral range: a port from `bind(…:0)` would be handed out again to the next
/// process that binds port 0 or connects anywhere (the nodes and edges of tests running in
/// parallel), which could take it before the child binds it — and the test would then talk to
/// the wrong server.
pub fn free_port() -> u16 {
    use std::hash::{BuildHasher, Hasher};
    let ephemeral_from = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|r| r.split_whitespace().next()?.parse::<u16>().ok())
        .unwrap_or(32_768);
    let (lo, hi) = (10_000u16, ephemeral_from.max(10_001));
    for _ in 0..1_000 {
        let random = std::collections::hash_map::RandomState::new()
            .build_hasher()
            .finish();
        let port = lo + (random % u64::from(hi - lo)) as u16;
        if std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
    panic!("no free port on 127.0.0.1 in {lo}..{hi}");
}

pub async fn wait_listening(addr: &str) {
    let a = addr.to_string();
    eventually(&format!("{a} accepts connections"), DEADLINE, || {
        let a = a.clone();
        async move { tokio::net::TcpStream::connect(&a).await.is_ok() }
    })
    .await;
}

/// The Python SDK server of `tests/e2e/upstream_server.py`: (process, MCP URL).
pub async fn python_upstream() -> (Proc, String) {
    let port = free_port();
    let child = Command::new(python())
        .arg(repo().join("tests/e2e/upstream_server.py"))
        .arg(port.to_string())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let addr = format!("127.0.0.1:{port}");
    wait_listening(&addr).await;
    (Proc(child), format!("http://{addr}/mcp"))
}

/// `@modelcontextprotocol/server-everything` over Streamable HTTP: (process, MCP URL).
pub async fn everything_upstream() -> (Proc, String) {
    let bin = tools_dir().join("node/node_modules/.bin/mcp-server-everything");
    assert!(
        bin.exists(),
        "{} is missing: run scripts/setup-e2e.sh",
        bin.display()
    );
    let port = free_port();
    let child = Command::new(bin)
        .arg("streamableHttp")
        .env("PORT", port.to_string())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let addr = format!("127.0.0.1:{port}");
    wait_listening(&addr).await;
    (Proc(child), format!("http://{addr}/mcp"))
}

/// An `agentgate-edge` process.
pub struct Edge {
    pub proc: Proc,
    pub id: String,
    pub mcp: String,
    pub http: String,
}

impl Edge {
    pub fn start(c: &Cluster, extra: &[&str]) -> Edge {
        Edge::spawn(c, extra, "text", &crate::child_log(), Stdio::inherit())
    }

    /// An edge writing JSON logs at `filter` (a `RUST_LOG` value) into the file `log`.
    pub fn start_json_logs(c: &Cluster, extra: &[&str], filter: &str, log: &Path) -> Edge {
        let file = std::fs::File::create(log).unwrap();
        Edge::spawn(c, extra, "json", filter, Stdio::from(file))
    }

    fn spawn(c: &Cluster, extra: &[&str], log_format: &str, filter: &str, logs: Stdio) -> Edge {
        let bin = super::bin("agentgate-edge");
        let core: Vec<String> = c.nodes.iter().map(|n| n.grpc.clone()).collect();
        let mut child = Command::new(bin)
            .args(["--listen", "127.0.0.1:0", "--http-listen", "127.0.0.1:0"])
            .args(["--core", &core.join(",")])
            .args(["--session-key", SESSION_KEY, "--log-format", log_format])
            .args(extra)
            .env("RUST_LOG", filter)
            .stdout(Stdio::piped())
            .stderr(logs)
            .spawn()
            .unwrap();
        // agentgate-edge id=ID mcp=ADDR http=ADDR
        let line = crate::StartupLine::read(&mut child);
        Edge {
            id: line.field("id="),
            mcp: line.field("mcp="),
            http: line.field("http="),
            proc: Proc(child),
        }
    }

    pub fn url(&self, tenant: &str, server: &str) -> String {
        format!("http://{}/t/{tenant}/{server}/mcp", self.mcp)
    }

    /// A gauge or counter from `/metrics` (summed over label sets that contain `labels`).
    pub fn metric(&self, name: &str, labels: &str) -> f64 {
        let (code, body) = http_get(&self.http, "/metrics");
        assert_eq!(code, 200);
        body.lines()
            .filter(|l| !l.starts_with('#'))
            .filter(|l| {
                l.strip_prefix(name)
                    .is_some_and(|rest| rest.starts_with(' ') || rest.starts_with('{'))
                    && l.contains(labels)
            })
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum()
    }

    /// Waits until this edge holds revision `rev` and is fresh.
    pub async fn wait_for_revision(&self, rev: u64) {
        eventually(
            &format!("edge {} reaches revision {rev}", self.id),
            DEADLINE,
            || async {
                self.metric("agentgate_edge_snapshot_revision", "") >= rev as f64
                    && http_get(&self.http, "/readyz").0 == 200
            },
        )
        .await;
    }
}

/// Runs `tests/e2e/client.py` (one client session, several steps): one JSON value per step.
pub async fn py_client(url: &str, key: &str, mode: &str, steps: &[&str]) -> Vec<Value> {
    let mut cmd = tokio::process::Command::new(python());
    cmd.arg(repo().join("tests/e2e/client.py"))
        .args([url, key, mode])
        .args(steps)
        .kill_on_drop(true)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let out = tokio::time::timeout(Duration::from_secs(60), cmd.output())
        .await
        .expect("the Python client finished within 60 s")
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let values: Vec<Value> = stdout
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect();
    assert!(
        out.status.success() && values.len() == steps.len(),
        "client {mode} {steps:?} failed ({}):\n{stdout}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    values
}

/// The JSON-RPC error code of a client step's output, if it failed.
pub fn error_code(v: &Value) -> Option<i64> {
    v.get("error")?.get("code")?.as_i64()
}

/// A tenant with one agent (its key returned), one HTTP upstream and an active policy.
pub async fn tenant(
    c: &Cluster,
    tenant: &str,
    server: &str,
    url: &str,
    policies: &str,
) -> (String, u64) {
    c.create_tenant(1, tenant).await;
    let reply = c
        .propose(
            1,
            &Op::CreateAgent {
                tenant: tenant.into(),
                id: "bot".into(),
                roles: vec![],
                labels: Default::default(),
                key_hash: String::new(),
            },
        )
        .await
        .unwrap();
    let key = reply.api_key.expect("a new agent's key");
    c.propose(
        1,
        &Op::AddUpstream {
            tenant: tenant.into(),
            name: server.into(),
            transport: Transport::Http { url: url.into() },
            pinned_tools: Default::default(),
        },
    )
    .await
    .unwrap();
    let schema = std::fs::read_to_string(repo().join("policies/schema.cedarschema")).unwrap();
    c.propose(
        1,
        &Op::PushPolicy {
            package: PolicyPackage {
                tenant: tenant.into(),
                version: "v1".into(),
                policies: policies.into(),
                schema,
                entities: String::new(),
                sha256: String::new(),
                author: "e2e".into(),
                description: String::new(),
                created_ms: 0,
                signature: None,
            },
        },
    )
    .await
    .unwrap();
    let rev = c
        .propose(
            1,
            &Op::ActivatePolicy {
                tenant: tenant.into(),
                version: "v1".into(),
            },
        )
        .await
        .unwrap()
        .revision;
    (key, rev)
}

/// Lists tools and calls read-only, non-destructive ones (the default policy's allow rules).
pub const READ_ONLY_POLICY: &str = r#"
@id("list-tools")
permit (principal, action == Action::"list_tools", resource);
@id("read-only-tools")
permit (principal, action == Action::"call_tool", resource)
when { resource.read_only && !resource.destructive };
"#;

/// The usual end-to-end set-up: a 3-node cluster and tenant `acme` (agent `bot`) whose server
/// is the Python SDK upstream (`tests/e2e/upstream_server.py`) under a policy.
pub struct Acme {
    pub c: Cluster,
    /// Agent `bot`'s API key.
    pub key: String,
    /// The revision that holds the whole set-up.
    pub rev: u64,
    _upstream: Proc,
}

impl Acme {
    pub async fn start(server: &str, policy: &str) -> Acme {
        let c = Cluster::start_initialized(3, &[]).await;
        let (upstream, url) = python_upstream().await;
        let (key, rev) = tenant(&c, "acme", server, &url, policy).await;
        Acme {
            c,
            key,
            rev,
            _upstream: upstream,
        }
    }

    /// An edge (with `extra` flags) that holds the set-up.
    pub async fn edge(&self, extra: &[&str]) -> Edge {
        let edge = Edge::start(&self.c, extra);
        edge.wait_for_revision(self.rev).await;
        edge
    }
}

pub type HttpClient = Client<HttpConnector, Full<Bytes>>;

pub fn http_client() -> HttpClient {
    Client::builder(TokioExecutor::new()).build(HttpConnector::new())
}

/// A stateless (2026-07-28) `tools/call` as raw HTTP: the request a modern client sends.
pub fn stateless_call(
    url: &str,
    key: &str,
    tool: &str,
    args: Value,
    id: u64,
) -> hyper::Request<Full<Bytes>> {
    let body = json!({
        "jsonrpc": "2.0", "id": id, "method": "tools/call",
        "params": {"name": tool, "arguments": args, "_meta": {
            "io.modelcontextprotocol/protocolVersion": "2026-07-28",
            "io.modelcontextprotocol/clientInfo": {"name": "e2e-raw", "version": "1"},
            "io.modelcontextprotocol/clientCapabilities": {},
            "progressToken": id,
        }},
    });
    hyper::Request::post(url)
        .header("content-type", "application/json")
        .header("accept", "application/json, text/event-stream")
        .header("authorization", format!("Bearer {key}"))
        .header("mcp-protocol-version", "2026-07-28")
        .header("mcp-method", "tools/call")
        .header("mcp-name", tool)
        .body(Full::new(Bytes::from(body.to_string())))
        .unwrap()
}

/// Sends a request and reads the whole reply: (status, body).
pub async fn send(client: &HttpClient, req: hyper::Request<Full<Bytes>>) -> (u16, String) {
    let resp = tokio::time::timeout(DEADLINE, client.request(req))
        .await
        .unwrap()
        .unwrap();
    let status = resp.status().as_u16();
    let body = tokio::time::timeout(DEADLINE, resp.into_body().collect())
        .await
        .unwrap()
        .unwrap()
        .to_bytes();
    (status, String::from_utf8_lossy(&body).into_owned())
}

/// The first JSON-RPC message in a reply body (JSON or SSE).
pub fn first_message(body: &str) -> Value {
    if let Ok(v) = serde_json::from_str::<Value>(body) {
        return v;
    }
    body.lines()
        .filter_map(|l| l.strip_prefix("data:"))
        .filter_map(|d| serde_json::from_str::<Value>(d.trim()).ok())
        .find(|m| m.get("id").is_some())
        .unwrap_or(Value::Null)
}

/// A plain HTTP round-robin forwarder (what a load balancer without sticky sessions does):
/// each request goes to the next backend. Returns its address; it stops with the test runtime.
pub async fn round_robin(backends: Vec<String>) -> String {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let next = Arc::new(AtomicUsize::new(0));
    let client: Client<HttpConnector, Incoming> =
        Client::builder(TokioExecutor::new()).build(HttpConnector::new());
    let backends = Arc::new(backends);
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            let (next, client, backends) = (next.clone(), client.clone(), backends.clone());
            tokio::spawn(async move {
                let svc = hyper::service::service_fn(move |mut req: hyper::Request<Incoming>| {
                    let i = next.fetch_add(1, Ordering::Relaxed) % backends.len();
                    let backend = backends[i].clone();
                    let client = client.clone();
                    async move {
                        let pq = req
                            .uri()
                            .path_and_query()
                            .map(|p| p.to_string())
                            .unwrap_or_default();
                        *req.uri_mut() = format!("http://{backend}{pq}").parse().unwrap();
                        req.headers_mut().remove("host");
                        client.request(req).await
                    }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(hyper_util::rt::TokioIo::new(stream), svc)
                    .await;
            });
        }
    });
    addr
}

/// Seconds since `t`, for printed measurements.
pub fn ms_since(t: Instant) -> f64 {
    t.elapsed().as_secs_f64() * 1000.0
}
