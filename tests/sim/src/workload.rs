//! The simulated users: one operator sets the cluster up; operators then pause, resume, kill
//! tools, push policies and run rollouts; agents call tools through the edges; a checker reads
//! the final state. Each records what it saw in the [`History`].

use std::sync::{Arc, Mutex};
use std::time::Duration;

use agentgate_client::{Client as CoreClient, ClientConfig, RequestIds, Retry};
use agentgate_edge::session::SessionKeys;
use agentgate_model::audit::{AuditHead, AuditRecord};
use agentgate_model::command::Op;
use agentgate_model::entity::{Entity, Kind, PolicyPackage, RolloutGuard, Scope, Transport};
use agentgate_model::query::{AuditFilter, Query, QueryResult};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::{Value, json};

use crate::clock::sim_ms;
use crate::history::{AdminKind, AdminOp, AdminResult, Call, History, Outcome};
use crate::hosts::{SESSION_KEY, SESSION_REVISION};
use crate::net;
use crate::topology::{MCP_PORT, SERVER, TENANT, Topology, UPSTREAM_HOST, UPSTREAM_PORT};

pub const SCHEMA: &str = include_str!("../../../policies/schema.cedarschema");
const PERMIT_ALL: &str = r#"@id("list") permit (principal, action == Action::"list_tools", resource);
@id("call") permit (principal, action == Action::"call_tool", resource);"#;
const NO_UPDATES: &str = r#"@id("no-updates") forbid (principal, action == Action::"call_tool", resource) when { resource.name == "update" };"#;

/// The typed admin client for the node at `addr` alone, over the simulated network: each write
/// under its own request id, retried by the client's rule for up to two seconds (a retry after a
/// lost reply answers as the first attempt did).
pub fn admin(addr: &str, actor: &str) -> Result<CoreClient, String> {
    let config = ClientConfig {
        rpc_timeout: Duration::from_millis(1_500),
        dialer: net::dialer(),
        actor: actor.into(),
        retry: Retry::within(Duration::from_secs(2)),
    };
    let ids = Arc::new(RequestIds::with_prefix(format!("sim-{actor}-{addr}")));
    CoreClient::new(&[addr.to_string()], ids, config).map_err(|e| e.to_string())
}

fn classify(status: &tonic::Status) -> AdminResult {
    use tonic::Code;
    match status.code() {
        Code::NotFound | Code::InvalidArgument | Code::AlreadyExists | Code::FailedPrecondition => {
            AdminResult::Rejected(status.message().to_string())
        }
        _ => AdminResult::Unknown(format!("{:?}: {}", status.code(), status.message())),
    }
}

/// Proposes `op`: (revision, the agent key when it created one).
pub async fn propose(c: &CoreClient, op: &Op) -> Result<(u64, String), tonic::Status> {
    let p = c.propose(op).await.map_err(|e| e.to_status())?;
    Ok((p.revision, p.api_key.unwrap_or_default()))
}

pub async fn query(c: &CoreClient, q: &Query) -> Result<QueryResult, tonic::Status> {
    Ok(c.query(q).await.map_err(|e| e.to_status())?.1)
}

pub fn package(version: &str, strict: bool) -> PolicyPackage {
    let policies = if strict {
        format!("{PERMIT_ALL}\n{NO_UPDATES}")
    } else {
        PERMIT_ALL.to_string()
    };
    PolicyPackage {
        tenant: TENANT.into(),
        version: version.into(),
        policies,
        schema: SCHEMA.into(),
        entities: String::new(),
        sha256: String::new(),
        author: "sim".into(),
        description: String::new(),
        created_ms: 0,
        signature: None,
    }
}

/// Proposes `op` until the cluster answers (setup runs before the chaos phase).
async fn until_done(c: &CoreClient, op: &Op, history: &History) -> Result<String, String> {
    for attempt in 0..60 {
        match propose(c, op).await {
            Ok((_, key)) => return Ok(key),
            Err(s) if s.code() == tonic::Code::AlreadyExists => return Ok(String::new()),
            Err(s) => {
                history.lock().notes.push(format!(
                    "setup {} attempt {attempt}: {}",
                    op.name(),
                    s.message()
                ));
                tokio::time::sleep(Duration::from_millis(250)).await;
            }
        }
    }
    Err(format!("setup step {} never succeeded", op.name()))
}

/// Creates the tenant, its agent (whose key is stored in `key`), the upstream and policy v1.
pub async fn setup(
    topo: Topology,
    history: History,
    key: Arc<Mutex<Option<String>>>,
) -> turmoil::Result {
    let c = &admin(&topo.core_endpoints()[0], "setup")?;
    let h = &history;
    until_done(
        c,
        &Op::CreateTenant {
            id: TENANT.into(),
            stale_allow_read_only: false,
        },
        h,
    )
    .await?;
    // An agent creation whose answer was lost cannot be retried under the same id (the key is
    // shown once): try fresh ids until one answers.
    let mut api_key = String::new();
    for n in 0..20 {
        let op = Op::CreateAgent {
            tenant: TENANT.into(),
            id: format!("bot-{n}").as_str().into(),
            roles: vec![],
            labels: Default::default(),
            key_hash: String::new(),
        };
        if let Ok((_, k)) = propose(c, &op).await {
            api_key = k;
            break;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    if api_key.is_empty() {
        return Err("no agent could be created".into());
    }
    until_done(
        c,
        &Op::AddUpstream {
            tenant: TENANT.into(),
            name: SERVER.into(),
            transport: Transport::Http {
                url: format!("http://{UPSTREAM_HOST}:{UPSTREAM_PORT}/mcp"),
            },
            pinned_tools: Default::default(),
        },
        h,
    )
    .await?;
    until_done(
        c,
        &Op::PushPolicy {
            package: package("v1", false),
        },
        h,
    )
    .await?;
    until_done(
        c,
        &Op::ActivatePolicy {
            tenant: TENANT.into(),
            version: "v1".into(),
        },
        h,
    )
    .await?;
    *key.lock().map_err(|_| "key lock poisoned")? = Some(api_key);
    Ok(())
}

/// The fixed scopes operators flip; every agent call is covered by the first two, `update`
/// calls by the third. Operators also kill the sessions agents opened ([`session_scope`]).
pub fn scopes() -> [Scope; 3] {
    [
        Scope::Global,
        Scope::Tenant {
            tenant: TENANT.into(),
        },
        Scope::Tool {
            tool: "update".into(),
        },
    ]
}

pub fn session_scope(session: &str) -> Scope {
    Scope::Session {
        tenant: TENANT.into(),
        session: session.into(),
    }
}

/// What an admin action proposes; `None` for a read.
fn op(kind: &AdminKind, rng: &mut StdRng) -> Option<Op> {
    Some(match kind {
        AdminKind::ReadGlobal => return None,
        AdminKind::Engage(s) => Op::EngageSwitch {
            scope: s.clone(),
            reason: "sim".into(),
            ttl_ms: None,
        },
        AdminKind::Release(s) => Op::ReleaseSwitch { scope: s.clone() },
        AdminKind::PushPolicy(v) => Op::PushPolicy {
            package: package(v, rng.random_bool(0.5)),
        },
        AdminKind::Activate(v) => Op::ActivatePolicy {
            tenant: TENANT.into(),
            version: v.as_str().into(),
        },
        AdminKind::StartRollout(v) => Op::StartRollout {
            tenant: TENANT.into(),
            to_version: v.as_str().into(),
            canary_percent: 50,
            steps: vec![],
            guard: RolloutGuard::default(),
        },
        AdminKind::Promote => Op::PromoteRollout {
            tenant: TENANT.into(),
        },
    })
}

/// One operator: until `stop_ms`, a random admin action every few hundred milliseconds, each
/// through a random core node.
pub async fn operator(
    topo: Topology,
    index: usize,
    seed: u64,
    stop_ms: u64,
    history: History,
) -> turmoil::Result {
    let mut rng = StdRng::seed_from_u64(seed ^ (0x0be7 + index as u64));
    let endpoints = topo.core_endpoints();
    let mut clients = Vec::new();
    for e in &endpoints {
        clients.push(admin(e, &format!("operator-{index}"))?);
    }
    let mut thread = (index as u64) << 32;
    let mut pushed: Vec<String> = Vec::new();
    let mut n = 0u32;
    while sim_ms() < stop_ms {
        tokio::time::sleep(Duration::from_millis(rng.random_range(100..600))).await;
        // One pick in four is a session an agent opened (the two most recent), when there is one.
        let scope = match rng.random_range(0..4) {
            3 => {
                let sessions = history.lock().sessions.clone();
                match sessions.len() {
                    0 => Scope::Global,
                    n => session_scope(&sessions[n - rng.random_range(1..=n.min(2))]),
                }
            }
            i => scopes()[i].clone(),
        };
        // Switches are released about four times as often as engaged: each scope is engaged
        // about a fifth of the time, so most calls reach a policy decision.
        let kind = match rng.random_range(0..100) {
            0..8 => AdminKind::Engage(scope),
            8..40 => AdminKind::Release(scope),
            40..70 => AdminKind::ReadGlobal,
            70..80 => {
                n += 1;
                AdminKind::PushPolicy(format!("v{index}-{n}"))
            }
            80..88 => match pushed.last() {
                Some(v) => AdminKind::Activate(v.clone()),
                None => AdminKind::ReadGlobal,
            },
            88..95 => match pushed.last() {
                Some(v) => AdminKind::StartRollout(v.clone()),
                None => AdminKind::ReadGlobal,
            },
            _ => AdminKind::Promote,
        };
        let i = rng.random_range(0..clients.len());
        let c = &clients[i];
        let invoked_ms = sim_ms();
        let invoked_seq = history.next_seq();
        let result = match op(&kind, &mut rng) {
            None => {
                let q = Query::Get {
                    kind: Kind::Switch,
                    key: Scope::Global.key(),
                };
                match query(c, &q).await {
                    Ok(QueryResult::Entity(e)) => AdminResult::Ok(Some(e.is_some())),
                    Ok(other) => AdminResult::Unknown(format!("unexpected answer {other:?}")),
                    Err(s) => AdminResult::Unknown(format!("{:?}: {}", s.code(), s.message())),
                }
            }
            Some(op) => match propose(c, &op).await {
                Ok(_) => AdminResult::Ok(None),
                Err(s) => classify(&s),
            },
        };
        if let (AdminKind::PushPolicy(v), AdminResult::Ok(_)) = (&kind, &result) {
            pushed.push(v.clone());
        }
        let unknown = matches!(result, AdminResult::Unknown(_));
        history.lock().admin.push(AdminOp {
            thread,
            kind,
            invoked_ms,
            invoked_seq,
            returned_ms: sim_ms(),
            returned_seq: history.next_seq(),
            result,
        });
        if unknown {
            // The operation may still take effect: it stays open, and this operator goes on
            // as a new thread.
            thread += 1;
        }
    }
    Ok(())
}

/// A W3C traceparent whose trace id names this call.
pub fn trace_id(agent: usize, n: u64) -> String {
    format!("{:016x}{n:016x}", 0xa9e0_0000_u64 + agent as u64)
}

fn outcome(status: u16, body: &[u8]) -> Outcome {
    let text = String::from_utf8_lossy(body);
    let msg = serde_json::from_str::<Value>(&text).ok().or_else(|| {
        text.lines()
            .filter_map(|l| l.strip_prefix("data:"))
            .filter_map(|d| serde_json::from_str::<Value>(d.trim()).ok())
            .find(|m| m.get("id").is_some())
    });
    match msg {
        Some(m) if m.get("result").is_some() => Outcome::Admitted,
        Some(m) => match m.pointer("/error/code").and_then(Value::as_i64) {
            Some(code) if (-32089..=-32080).contains(&code) => Outcome::Denied(code),
            Some(code) => Outcome::Failed(format!("http {status}, JSON-RPC error {code}")),
            None => Outcome::Failed(format!("http {status}, no result or error")),
        },
        None => Outcome::Failed(format!("http {status}, no JSON-RPC message")),
    }
}

type HttpClient = Client<agentgate_runtime::net::Dialer, Full<Bytes>>;

fn mcp_url(edge: usize) -> String {
    format!(
        "http://{}:{MCP_PORT}/t/{TENANT}/{SERVER}/mcp",
        Topology::edge_host(edge)
    )
}

/// POSTs `body` with `headers`; the status and whole body, within 3 s.
async fn post(
    client: &HttpClient,
    edge: usize,
    headers: &[(&str, String)],
    body: &Value,
) -> Result<(u16, http::HeaderMap, Bytes), String> {
    let mut req = hyper::Request::post(mcp_url(edge))
        .header("content-type", "application/json")
        .header("accept", "application/json, text/event-stream");
    for (k, v) in headers {
        req = req.header(*k, v);
    }
    let req = req
        .body(Full::new(Bytes::from(body.to_string())))
        .map_err(|e| e.to_string())?;
    match tokio::time::timeout(Duration::from_secs(3), async {
        let resp = client.request(req).await?;
        let (parts, body) = resp.into_parts();
        let body = body.collect().await?.to_bytes();
        Ok::<_, Box<dyn std::error::Error + Send + Sync>>((
            parts.status.as_u16(),
            parts.headers,
            body,
        ))
    })
    .await
    {
        Ok(Ok(r)) => Ok(r),
        Ok(Err(e)) => Err(e.to_string()),
        Err(_) => Err("timed out".into()),
    }
}

/// A legacy session: the token the edge issued and its short name.
struct OpenSession {
    token: String,
    name: String,
}

/// Opens a legacy (2025-06-18) session through `edge`: `initialize`, then
/// `notifications/initialized`.
async fn open_session(
    client: &HttpClient,
    edge: usize,
    key: &str,
    keys: &SessionKeys,
) -> Option<OpenSession> {
    let auth = ("authorization", format!("Bearer {key}"));
    let init = json!({"jsonrpc": "2.0", "id": 0, "method": "initialize", "params": {
        "protocolVersion": SESSION_REVISION,
        "capabilities": {},
        "clientInfo": {"name": "sim-legacy-agent", "version": "1"},
    }});
    let (status, headers, _) = post(client, edge, std::slice::from_ref(&auth), &init)
        .await
        .ok()?;
    let token = headers.get("mcp-session-id")?.to_str().ok()?.to_string();
    if status != 200 {
        return None;
    }
    // The sim knows the deployment's session key, so it can name the session as edges do.
    let name = keys.open(&token).ok()?.id();
    let note = json!({"jsonrpc": "2.0", "method": "notifications/initialized"});
    let headers = [
        auth,
        ("mcp-session-id", token.clone()),
        ("mcp-protocol-version", SESSION_REVISION.to_string()),
    ];
    // Best effort, as for a real client: a lost notification does not end the session.
    let _ = post(client, edge, &headers, &note).await;
    Some(OpenSession { token, name })
}

/// One agent: until `stop_ms`, a tool call through a random edge every 20–150 ms. Agent 0 is a
/// legacy client: it calls inside an MCP session (opened through any edge, used through any
/// edge) and opens a new one now and then or when told the session is gone.
pub async fn agent(
    topo: Topology,
    index: usize,
    seed: u64,
    key: String,
    stop_ms: u64,
    history: History,
) -> turmoil::Result {
    let mut rng = StdRng::seed_from_u64(seed ^ (0xa9e0 + index as u64));
    let client: HttpClient = Client::builder(TokioExecutor::new()).build(net::dialer());
    let legacy = index == 0;
    let keys = SessionKeys::new(SESSION_KEY.as_bytes())?;
    let mut session: Option<OpenSession> = None;
    let mut n = 0u64;
    while sim_ms() < stop_ms {
        tokio::time::sleep(Duration::from_millis(rng.random_range(20..150))).await;
        n += 1;
        let edge = rng.random_range(0..topo.edges);
        if legacy && (session.is_none() || rng.random_ratio(1, 50)) {
            session = open_session(&client, edge, &key, &keys).await;
            if let Some(s) = &session {
                history.lock().sessions.push(s.name.clone());
            }
            continue;
        }
        let tool = if rng.random_bool(0.5) {
            "lookup"
        } else {
            "update"
        };
        let trace_id = trace_id(index, n);
        let mut headers = vec![
            ("authorization", format!("Bearer {key}")),
            ("traceparent", format!("00-{trace_id}-00f067aa0ba902b7-01")),
        ];
        let body = match &session {
            Some(s) => {
                headers.push(("mcp-session-id", s.token.clone()));
                headers.push(("mcp-protocol-version", SESSION_REVISION.into()));
                json!({"jsonrpc": "2.0", "id": n, "method": "tools/call",
                       "params": {"name": tool, "arguments": {"n": n}}})
            }
            None => {
                headers.push(("mcp-protocol-version", "2026-07-28".into()));
                headers.push(("mcp-method", "tools/call".into()));
                headers.push(("mcp-name", tool.into()));
                json!({
                    "jsonrpc": "2.0", "id": n, "method": "tools/call",
                    "params": {"name": tool, "arguments": {"n": n}, "_meta": {
                        "io.modelcontextprotocol/protocolVersion": "2026-07-28",
                        "io.modelcontextprotocol/clientInfo": {"name": "sim-agent", "version": "1"},
                        "io.modelcontextprotocol/clientCapabilities": {},
                    }},
                })
            }
        };
        let sent_ms = sim_ms();
        let outcome = match post(&client, edge, &headers, &body).await {
            Ok((404, _, _)) if session.is_some() => {
                Outcome::Failed("http 404: session not found".into())
            }
            Ok((status, _, body)) => outcome(status, &body),
            Err(e) => Outcome::Failed(e),
        };
        let name = session.as_ref().map(|s| s.name.clone());
        if matches!(&outcome, Outcome::Failed(e) if e.contains("404")) {
            session = None;
        }
        history.lock().calls.push(Call {
            agent: index,
            edge,
            tool: tool.into(),
            session: name,
            trace_id,
            sent_ms,
            done_ms: sim_ms(),
            outcome,
        });
    }
    Ok(())
}

/// What the checker read from the healed cluster.
#[derive(Debug, Default, Clone)]
pub struct FinalState {
    /// The whole audit log, from node 1 (a linearizable read).
    pub audit: Vec<AuditRecord>,
    /// Each node's audit head, once they agree.
    pub heads: Vec<(u64, AuditHead)>,
    /// Policy versions of the tenant.
    pub policies: Vec<String>,
    pub error: Option<String>,
}

async fn heads(topo: &Topology, clients: &[CoreClient]) -> Vec<(u64, AuditHead)> {
    let mut out = Vec::new();
    for (id, c) in topo.node_ids().zip(clients.iter()) {
        if let Ok(QueryResult::AuditHead(h)) = query(c, &Query::AuditHead).await {
            out.push((id, h));
        }
    }
    out
}

/// Waits until every node holds the same audit head for a second (edges have drained), then
/// reads the audit log and the tenant's policies.
pub async fn check(topo: Topology, out: Arc<Mutex<FinalState>>) -> turmoil::Result {
    let mut clients = Vec::new();
    for e in topo.core_endpoints() {
        clients.push(admin(&e, "checker")?);
    }
    let mut last: Option<Vec<(u64, AuditHead)>> = None;
    let mut settled = false;
    for _ in 0..60 {
        tokio::time::sleep(Duration::from_millis(500)).await;
        let h = heads(&topo, &clients).await;
        let agree = h.len() == topo.nodes && h.windows(2).all(|w| w[0].1 == w[1].1);
        if agree && last.as_ref() == Some(&h) {
            settled = true;
            last = Some(h);
            break;
        }
        last = Some(h);
    }
    let mut state = FinalState {
        heads: last.unwrap_or_default(),
        ..FinalState::default()
    };
    if !settled {
        state.error = Some("the nodes' audit heads did not converge within 30 s after heal".into());
    }
    let c = &clients[0];
    let mut after = None;
    loop {
        let q = Query::Audit {
            filter: AuditFilter {
                after_seq: after,
                limit: Some(1_000),
                ..AuditFilter::default()
            },
        };
        match query(c, &q).await {
            Ok(QueryResult::Audit {
                records,
                next_after_seq,
            }) => {
                state.audit.extend(records);
                match next_after_seq {
                    Some(n) => after = Some(n),
                    None => break,
                }
            }
            other => {
                state.error = Some(format!("reading the audit log failed: {other:?}"));
                break;
            }
        }
    }
    match query(
        c,
        &Query::List {
            kind: Kind::Policy,
            tenant: Some(TENANT.into()),
        },
    )
    .await
    {
        Ok(QueryResult::Entities(es)) => {
            state.policies = es
                .into_iter()
                .filter_map(|e| match e {
                    Entity::Policy(p) => Some(p.version.to_string()),
                    _ => None,
                })
                .collect();
        }
        other => state.error = Some(format!("listing policies failed: {other:?}")),
    }
    *out.lock().map_err(|_| "final state lock poisoned")? = state;
    Ok(())
}
