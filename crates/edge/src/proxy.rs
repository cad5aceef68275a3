//! The MCP endpoint agents talk to: `POST|GET|DELETE /t/{tenant}/{server}/mcp`.
//!
//! Per request, in DESIGN §3's order: route → `Origin` → authenticate → session token → bounded
//! body → parse → audit admission → decide (kill switches, freshness, policy version, Cedar,
//! approvals) → forward (pooled, allowlisted headers, `Host` from the upstream URL) → relay the
//! reply as it arrives, one audit record per decision.
//!
//! INVARIANT: a gated request (`tools/call`, `resources/read`, `prompts/get`) reaches an upstream
//! only with an Allow verdict and a reserved audit slot; `tools/list` replies are filtered to the
//! tools the agent may call; every other request passes the kill-switch and freshness gates.
//! INVARIANT: streamed replies are relayed frame by frame, never buffered, and end as soon as a
//! kill switch covering the call arrives (with a JSON-RPC error event when the call had an id).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use agentgate_model::State;
use agentgate_model::audit::{AuditEntry, Decision};
use agentgate_model::decide::{Action, CallFacts, Outcome};
use agentgate_model::digest::args_digest;
use agentgate_model::entity::{Agent, Transport, Upstream, join_key};
use agentgate_runtime::clock::Clock;
use agentgate_runtime::telemetry::{self, TARGET};
use bytes::Bytes;
use http::header::{ACCEPT, ALLOW, CONTENT_LENGTH, CONTENT_TYPE, HeaderValue, ORIGIN, RETRY_AFTER};
use http::{HeaderMap, Method, Request, Response, StatusCode, Uri};
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::{BodyExt, Full, Limited, StreamBody};
use hyper::body::{Frame, Incoming};
use serde_json::{Map, Value, json};
use tokio::sync::{Semaphore, mpsc, watch};
use tokio_stream::wrappers::ReceiverStream;
use tracing::Instrument;
use tracing::field::Empty;
use tracing_opentelemetry::OpenTelemetrySpanExt;

use crate::approvals::{Approvals, Call, Resolution};
use crate::audit::{Admission, AuditLog};
use crate::catalog::{Catalog, ToolInfo};
use crate::decision::{AgentKeys, AuthError, PolicyCache, Verdict, decide_call};
use crate::detect::detect;
use crate::follower::Follower;
use crate::gate::{self, Denial, Subject, code};
use crate::mcp::{self, Message, Operation, Parsed};
use crate::session::{Session, SessionKeys};
use crate::sse;
use crate::trace::{child_span, continue_trace, trace_decision, trace_id, with_meta_context};
use crate::upstream::{
    self, BoxError, FORWARD_REQUEST, FORWARD_RESPONSE, MCP_SESSION_ID, TRACEPARENT, Upstreams,
};

/// The response body type of every edge reply.
pub type Body = UnsyncBoxBody<Bytes, BoxError>;

/// Methods forwarded after the kill-switch and freshness gates, without a per-call policy
/// decision (they name no tool). Anything not listed and not decided is refused.
pub const HOUSEKEEPING_METHODS: [&str; 12] = [
    "completion/complete",
    "logging/setLevel",
    "resources/templates/list",
    "resources/subscribe",
    "resources/unsubscribe",
    "subscriptions/listen",
    "tasks/get",
    "tasks/list",
    "tasks/result",
    "tasks/cancel",
    "roots/list",
    "sampling/createMessage",
];

/// Frames buffered between an upstream stream and a slow agent.
const STREAM_FRAMES_BUFFERED: usize = 16;

/// The edge's settings for the hot path.
#[derive(Debug, Clone)]
pub struct Settings {
    pub edge_id: String,
    pub region: String,
    /// `Origin` values accepted (exact match); requests with any other `Origin` get 403.
    pub allowed_origins: Vec<String>,
    pub body_bytes_max: usize,
    /// Requests and streams in flight at most; more get 503.
    pub inflight_max: usize,
    /// What a stale denial advises as `retry_after_ms`.
    pub retry_after_ms: u64,
}

/// The replica and what is derived from it per revision, swapped as one pointer.
#[derive(Debug, Default)]
pub struct View {
    pub state: Arc<State>,
    pub keys: AgentKeys,
}

impl View {
    pub fn build(state: Arc<State>) -> Self {
        let keys = AgentKeys::build(&state);
        View { state, keys }
    }
}

/// Everything the hot path needs. Shared by all connections.
pub struct Gateway {
    pub settings: Settings,
    pub view: watch::Receiver<Arc<View>>,
    pub follower: Follower,
    pub policies: PolicyCache,
    pub catalog: Catalog,
    pub audit: AuditLog,
    pub sessions: SessionKeys,
    pub upstreams: Upstreams,
    pub approvals: Approvals,
    pub clock: Arc<dyn Clock>,
    pub inflight: Arc<Semaphore>,
}

/// One authenticated request's context.
struct Ctx {
    view: Arc<View>,
    agent: Agent,
    server: String,
    upstream: Upstream,
    uri: Uri,
    session: Option<Session>,
    /// Short session name (audit, kill switches, rollout buckets).
    session_id: Option<String>,
    headers: HeaderMap,
    trace_id: Option<String>,
    /// The request's span (disabled unless traces are exported).
    span: tracing::Span,
    started: Instant,
    revision: String,
    permit: tokio::sync::OwnedSemaphorePermit,
}

/// What a relayed stream watches for: the kill switches that would have stopped its call.
#[derive(Debug, Clone)]
struct Watched {
    tenant: String,
    agent: String,
    session: Option<String>,
    tool: Option<String>,
    read_only: bool,
    region: String,
    request_id: Option<Value>,
}

impl Watched {
    fn subject(&self) -> Subject<'_> {
        Subject {
            tenant: &self.tenant,
            agent: &self.agent,
            session: self.session.as_deref(),
            tool: self.tool.as_deref(),
            read_only: self.read_only,
            region: &self.region,
        }
    }
}

fn full(status: StatusCode, content_type: &'static str, body: impl Into<Bytes>) -> Response<Body> {
    let mut r = Response::new(
        Full::new(body.into())
            .map_err(|e| match e {})
            .boxed_unsync(),
    );
    *r.status_mut() = status;
    r.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    r
}

/// A JSON-RPC error body with an HTTP status.
pub fn rpc_error(
    status: StatusCode,
    id: Option<&Value>,
    code: i64,
    message: &str,
    data: Option<Value>,
) -> Response<Body> {
    let mut error = json!({"code": code, "message": message});
    if let (Some(d), Some(o)) = (data, error.as_object_mut()) {
        o.insert("data".into(), d);
    }
    let body = json!({"jsonrpc": "2.0", "id": id.cloned().unwrap_or(Value::Null), "error": error});
    full(status, "application/json", body.to_string())
}

fn denial_body(id: Option<&Value>, d: &Denial) -> Value {
    json!({"jsonrpc": "2.0", "id": id.cloned().unwrap_or(Value::Null), "error": {
        "code": d.code, "message": d.reason, "data": d,
    }})
}

/// A gateway decision: a JSON-RPC error (HTTP 200), never a bare 403.
fn denied(id: Option<&Value>, d: &Denial) -> Response<Body> {
    let mut r = full(
        StatusCode::OK,
        "application/json",
        denial_body(id, d).to_string(),
    );
    if let Some(ms) = d.retry_after_ms
        && let Ok(v) = HeaderValue::from_str(&ms.div_ceil(1000).max(1).to_string())
    {
        r.headers_mut().insert(RETRY_AFTER, v);
    }
    r
}

/// The upstream failed (-32086, HTTP 502).
fn upstream_failed(id: Option<&Value>, message: &str) -> Response<Body> {
    rpc_error(StatusCode::BAD_GATEWAY, id, code::UPSTREAM, message, None)
}

/// An overload denial (-32085), advising a retry in a second.
fn overload(reason: &str) -> Denial {
    Denial {
        retry_after_ms: Some(1000),
        ..Denial::new(code::OVERLOADED, reason)
    }
}

/// A request turned away undecided: the overload denial as HTTP 503.
fn turned_away(id: Option<&Value>, reason: &str) -> Response<Body> {
    let mut r = denied(id, &overload(reason));
    *r.status_mut() = StatusCode::SERVICE_UNAVAILABLE;
    r
}

/// `/t/{tenant}/{server}/mcp` → (tenant, server).
pub fn route(path: &str) -> Option<(&str, &str)> {
    let mut parts = path.strip_prefix("/t/")?.split('/');
    let (tenant, server, mcp) = (parts.next()?, parts.next()?, parts.next()?);
    (parts.next().is_none() && mcp == "mcp" && !tenant.is_empty() && !server.is_empty())
        .then_some((tenant, server))
}

fn header<'h>(h: &'h HeaderMap, name: &str) -> Option<&'h str> {
    h.get(name).and_then(|v| v.to_str().ok())
}

fn accepts(h: &HeaderMap, mime: &str) -> bool {
    let Some(accept) = header(h, ACCEPT.as_str()) else {
        return false;
    };
    let family = mime.split('/').next().unwrap_or(mime);
    accept.split(',').any(|part| {
        let m = part.split(';').next().unwrap_or("").trim();
        m == mime || m == "*/*" || m.strip_suffix("/*") == Some(family)
    })
}

/// (hour 0-23, weekday 1=Monday..7=Sunday), UTC.
pub fn hour_weekday(now_ms: u64) -> (u8, u8) {
    let secs = now_ms / 1000;
    let days = secs / 86_400;
    let hour = ((secs % 86_400) / 3600) as u8;
    // 1970-01-01 was a Thursday (4).
    let weekday = ((days + 3) % 7 + 1) as u8;
    (hour, weekday)
}

fn micros(d: Duration) -> u64 {
    u64::try_from(d.as_micros()).unwrap_or(u64::MAX)
}

impl Gateway {
    /// Handles one request on the MCP listener.
    pub async fn handle(self: Arc<Self>, req: Request<Incoming>) -> Response<Body> {
        let Some((tenant, server)) = route(req.uri().path()) else {
            return rpc_error(
                StatusCode::NOT_FOUND,
                None,
                mcp::code::INVALID_REQUEST,
                "not found: the MCP endpoint is /t/{tenant}/{server}/mcp",
                None,
            );
        };
        let (tenant, server) = (tenant.to_string(), server.to_string());
        if let Some(origin) = header(req.headers(), ORIGIN.as_str())
            && !self.settings.allowed_origins.iter().any(|o| o == origin)
        {
            return rpc_error(
                StatusCode::FORBIDDEN,
                None,
                mcp::code::INVALID_REQUEST,
                &format!("Origin `{origin}` is not allowed"),
                None,
            );
        }
        let method = req.method().clone();
        if !matches!(method, Method::POST | Method::GET | Method::DELETE) {
            let mut r = rpc_error(
                StatusCode::METHOD_NOT_ALLOWED,
                None,
                mcp::code::INVALID_REQUEST,
                "use POST, GET or DELETE",
                None,
            );
            r.headers_mut()
                .insert(ALLOW, HeaderValue::from_static("GET, POST, DELETE"));
            return r;
        }
        let ctx = match self.context(&req, &tenant, &server) {
            Ok(c) => c,
            Err(r) => return r,
        };
        let span = ctx.span.clone();
        let resp = match method {
            // The parent may come from the body's `_meta`: POST enters its span once parsed.
            Method::POST => self.post(ctx, req).await,
            Method::GET => {
                continue_trace(&span, None, &ctx.headers);
                self.get_stream(ctx).instrument(span.clone()).await
            }
            _ => {
                continue_trace(&span, None, &ctx.headers);
                self.delete(ctx).instrument(span.clone()).await
            }
        };
        span.record("http.response.status_code", resp.status().as_u16());
        resp
    }

    /// Authenticates and resolves tenant, server and session (the error is the reply).
    #[allow(clippy::result_large_err)]
    fn context(
        &self,
        req: &Request<Incoming>,
        tenant: &str,
        server: &str,
    ) -> Result<Ctx, Response<Body>> {
        let started = self.clock.monotonic();
        let permit = self.inflight.clone().try_acquire_owned().map_err(|_| {
            metrics::counter!("agentgate_edge_overload_total").increment(1);
            turned_away(None, "too many requests in flight on this gateway")
        })?;
        let view = self.view.borrow().clone();
        let h = req.headers();
        let agent = view
            .keys
            .authenticate(&view.state, header(h, "authorization"))
            .map_err(|e| {
                metrics::counter!("agentgate_edge_auth_failures_total", "reason" => match e {
                    AuthError::Missing => "missing",
                    AuthError::Unknown => "unknown",
                    AuthError::Revoked(_) => "revoked",
                })
                .increment(1);
                let mut r = rpc_error(
                    StatusCode::UNAUTHORIZED,
                    None,
                    mcp::code::INVALID_REQUEST,
                    &format!("unauthorized: {e}"),
                    Some(json!({"reason": e.to_string()})),
                );
                r.headers_mut().insert(
                    http::header::WWW_AUTHENTICATE,
                    HeaderValue::from_static("Bearer realm=\"agentgate\""),
                );
                r
            })?
            .clone();
        let not_found = || {
            rpc_error(
                StatusCode::NOT_FOUND,
                None,
                mcp::code::INVALID_REQUEST,
                &format!("no MCP server `{server}` for tenant `{tenant}`"),
                None,
            )
        };
        if agent.tenant != tenant {
            return Err(not_found());
        }
        let upstream = view
            .state
            .upstreams
            .get(&join_key(&[tenant, server]))
            .cloned()
            .ok_or_else(not_found)?;
        let uri = match &upstream.transport {
            Transport::Http { url } => Upstreams::uri(url),
            Transport::Stdio { .. } => Err(upstream::UpstreamError::BadUrl(
                "stdio".into(),
                "stdio upstreams are served only in local mode, not by an edge".into(),
            )),
        }
        .map_err(|e| upstream_failed(None, &e.to_string()))?;
        let session = match header(h, MCP_SESSION_ID.as_str()) {
            None => None,
            Some(token) => Some(
                self.sessions
                    .open_for(token, tenant, server, &agent.id)
                    .map_err(|e| {
                        rpc_error(
                            StatusCode::NOT_FOUND,
                            None,
                            mcp::code::INVALID_REQUEST,
                            &format!("session not found: {e}; start a new session"),
                            None,
                        )
                    })?,
            ),
        };
        let trace_id = header(h, TRACEPARENT.as_str()).and_then(trace_id);
        let span = tracing::info_span!(
            target: TARGET,
            "agentgate.request",
            otel.kind = "server",
            agentgate.tenant = %tenant,
            agentgate.agent = %agent.id,
            agentgate.server = %server,
            mcp.method.name = Empty,
            gen_ai.tool.name = Empty,
            agentgate.decision = Empty,
            agentgate.reason = Empty,
            agentgate.policy.version = Empty,
            agentgate.policy.ids = Empty,
            agentgate.upstream.status = Empty,
            http.response.status_code = Empty,
        );
        Ok(Ctx {
            agent,
            server: server.to_string(),
            upstream,
            uri,
            session_id: session.as_ref().map(Session::id),
            revision: session
                .as_ref()
                .map(|s| s.revision.clone())
                .unwrap_or_default(),
            session,
            headers: h.clone(),
            trace_id,
            span,
            started,
            view,
            permit,
        })
    }

    async fn post(&self, mut ctx: Ctx, req: Request<Incoming>) -> Response<Body> {
        let h = req.headers();
        if !header(h, CONTENT_TYPE.as_str()).is_some_and(|c| c.starts_with("application/json")) {
            return rpc_error(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                None,
                mcp::code::INVALID_REQUEST,
                "Content-Type must be application/json",
                None,
            );
        }
        if !(accepts(h, "application/json") && accepts(h, "text/event-stream")) {
            return rpc_error(
                StatusCode::NOT_ACCEPTABLE,
                None,
                mcp::code::INVALID_REQUEST,
                "Accept must list application/json and text/event-stream",
                None,
            );
        }
        let max = self.settings.body_bytes_max;
        let too_large = || {
            rpc_error(
                StatusCode::PAYLOAD_TOO_LARGE,
                None,
                mcp::code::INVALID_REQUEST,
                &format!("the request body exceeds {max} bytes"),
                None,
            )
        };
        if header(h, CONTENT_LENGTH.as_str())
            .and_then(|l| l.parse::<usize>().ok())
            .is_some_and(|l| l > max)
        {
            return too_large();
        }
        let body = match Limited::new(req.into_body(), max).collect().await {
            Ok(b) => b.to_bytes(),
            Err(e) if e.is::<http_body_util::LengthLimitError>() => return too_large(),
            Err(e) => {
                return rpc_error(
                    StatusCode::BAD_REQUEST,
                    None,
                    mcp::code::PARSE_ERROR,
                    &format!("reading the body: {e}"),
                    None,
                );
            }
        };
        let mh = mcp::Headers {
            protocol_version: header(&ctx.headers, "mcp-protocol-version"),
            mcp_method: header(&ctx.headers, "mcp-method"),
            mcp_name: header(&ctx.headers, "mcp-name"),
        };
        let session_revision = ctx.session.as_ref().map(|s| s.revision.as_str());
        let parsed = match mcp::parse(&body, &mh, session_revision) {
            Ok(p) => p,
            Err(e) => {
                return rpc_error(
                    StatusCode::from_u16(e.http_status).unwrap_or(StatusCode::BAD_REQUEST),
                    e.id.as_ref(),
                    e.code,
                    &e.message,
                    None,
                );
            }
        };
        ctx.revision = parsed.revision.clone();
        let meta = parsed.messages.first().and_then(Message::meta);
        if ctx.trace_id.is_none() {
            ctx.trace_id = meta
                .and_then(|m| m.get("traceparent"))
                .and_then(Value::as_str)
                .and_then(trace_id);
        }
        if !ctx.span.is_disabled() {
            continue_trace(&ctx.span, meta, &ctx.headers);
            // The sampler decides here, once the parent is known (the caller's sampled flag, else
            // the ratio). An unsampled request gets no spans at all: recording spans costs about
            // as much as exporting them, so 1 % sampling must not pay for the other 99 %.
            let cx = ctx.span.context();
            if telemetry::is_sampled(&cx) {
                if let Some(m) = parsed.messages.first().and_then(Message::method) {
                    ctx.span.record("mcp.method.name", m);
                }
                // A trace this edge started (no caller context) is the audit record's trace too.
                if ctx.trace_id.is_none() {
                    ctx.trace_id = telemetry::trace_id(&cx);
                }
            } else {
                ctx.span = tracing::Span::none();
            }
        }
        let span = ctx.span.clone();
        self.dispatch(ctx, parsed, body).instrument(span).await
    }

    /// Answers one parsed POST (inside the request's span).
    async fn dispatch(&self, ctx: Ctx, parsed: Parsed, body: Bytes) -> Response<Body> {
        if parsed.batch {
            return self.batch(ctx, parsed, body).await;
        }
        let Some(message) = parsed.messages.into_iter().next() else {
            return rpc_error(
                StatusCode::BAD_REQUEST,
                None,
                mcp::code::INVALID_REQUEST,
                "no message",
                None,
            );
        };
        match message {
            Message::Notification { .. } | Message::Response { .. } => {
                self.forward_and_relay(ctx, Method::POST, body, None, None)
                    .await
            }
            Message::Request {
                id,
                method,
                params,
                op,
            } => self.request(ctx, id, method, params, op, body).await,
        }
    }

    async fn request(
        &self,
        ctx: Ctx,
        id: Value,
        method: String,
        params: Map<String, Value>,
        op: Operation,
        body: Bytes,
    ) -> Response<Body> {
        match op {
            Operation::Initialize { requested_version } => {
                self.forward_and_relay(ctx, Method::POST, body, None, Some(requested_version))
                    .await
            }
            Operation::Discover | Operation::Ping => {
                self.forward_and_relay(ctx, Method::POST, body, None, None)
                    .await
            }
            Operation::ListTools => self.list_tools(ctx, id, body).await,
            Operation::CallTool { name, arguments } => {
                self.call(ctx, id, &method, Action::CallTool, name, arguments, body)
                    .await
            }
            Operation::ReadResource { uri } => {
                self.call(
                    ctx,
                    id,
                    &method,
                    Action::ReadResource,
                    uri,
                    Map::new(),
                    body,
                )
                .await
            }
            Operation::GetPrompt { name } => {
                let arguments = params
                    .get("arguments")
                    .and_then(Value::as_object)
                    .cloned()
                    .unwrap_or_default();
                self.call(ctx, id, &method, Action::GetPrompt, name, arguments, body)
                    .await
            }
            Operation::ListResources | Operation::ListPrompts => {
                self.gated_forward(ctx, id, &method, body).await
            }
            Operation::Other if HOUSEKEEPING_METHODS.contains(&method.as_str()) => {
                self.gated_forward(ctx, id, &method, body).await
            }
            Operation::Other => rpc_error(
                StatusCode::OK,
                Some(&id),
                mcp::code::METHOD_NOT_FOUND,
                &format!("method `{method}` is not one this gateway relays"),
                None,
            ),
        }
    }

    /// The gates that apply to every request of an agent: kill switches (no tool scope) and
    /// freshness.
    fn tenant_gate(&self, ctx: &Ctx) -> Option<Denial> {
        let subject = Subject {
            tenant: &ctx.agent.tenant,
            agent: &ctx.agent.id,
            session: ctx.session_id.as_deref(),
            tool: None,
            read_only: false,
            region: &self.settings.region,
        };
        if let Some(d) = gate::kill_switch(&ctx.view.state, &subject, self.clock.now_ms()) {
            return Some(d);
        }
        let Some(tenant) = ctx.view.state.tenants.get(&ctx.agent.tenant) else {
            return Some(Denial::new(
                code::NO_POLICY,
                format!("tenant `{}` does not exist", ctx.agent.tenant),
            ));
        };
        gate::staleness(
            tenant,
            &subject,
            self.follower.is_fresh(),
            self.settings.retry_after_ms,
        )
    }

    async fn gated_forward(
        &self,
        ctx: Ctx,
        id: Value,
        method: &str,
        body: Bytes,
    ) -> Response<Body> {
        if let Some(d) = self.tenant_gate(&ctx) {
            return self.deny(&ctx, Some(&id), method, None, None, d, None);
        }
        let watched = self.watched(&ctx, None, false, Some(id));
        self.forward_and_relay(ctx, Method::POST, body, Some(watched), None)
            .await
    }

    fn watched(
        &self,
        ctx: &Ctx,
        tool: Option<String>,
        read_only: bool,
        id: Option<Value>,
    ) -> Watched {
        Watched {
            tenant: ctx.agent.tenant.clone(),
            agent: ctx.agent.id.clone(),
            session: ctx.session_id.clone(),
            tool,
            read_only,
            region: self.settings.region.clone(),
            request_id: id,
        }
    }

    fn entry(&self, ctx: &Ctx, method: &str, tool: Option<&str>, decision: Decision) -> AuditEntry {
        AuditEntry {
            edge_seq: 0,
            time_ms: self.clock.now_ms(),
            tenant: ctx.agent.tenant.clone(),
            agent: ctx.agent.id.clone(),
            session: ctx.session_id.clone(),
            method: method.to_string(),
            tool: tool.map(str::to_string),
            args_digest: None,
            decision,
            reason: String::new(),
            policy_version: None,
            policy_ids: vec![],
            shadow_decision: None,
            latency_us: micros(
                self.clock
                    .monotonic()
                    .saturating_duration_since(ctx.started),
            ),
            upstream_latency_us: None,
            upstream_status: None,
            trace_id: ctx.trace_id.clone(),
        }
    }

    fn count(&self, ctx: &Ctx, tool: Option<&str>, decision: Decision) {
        let tool = match tool {
            Some(t)
                if self
                    .catalog
                    .get(&ctx.agent.tenant, &ctx.server, t)
                    .is_some() =>
            {
                t.to_string()
            }
            Some(_) => "other".to_string(),
            None => "none".to_string(),
        };
        metrics::counter!("agentgate_edge_calls_total",
            "tenant" => ctx.agent.tenant.clone(), "tool" => tool, "decision" => decision.as_str())
        .increment(1);
        metrics::histogram!("agentgate_edge_decision_seconds").record(
            self.clock
                .monotonic()
                .saturating_duration_since(ctx.started)
                .as_secs_f64(),
        );
    }

    /// Records and answers a denial. When not even the denial can be recorded, the request is
    /// turned away undecided (503).
    #[allow(clippy::too_many_arguments)]
    fn deny(
        &self,
        ctx: &Ctx,
        id: Option<&Value>,
        method: &str,
        tool: Option<&str>,
        digest: Option<String>,
        d: Denial,
        version: Option<String>,
    ) -> Response<Body> {
        let decision = if d.code == code::APPROVAL_REQUIRED && d.approval_id.is_some() {
            Decision::RequireApproval
        } else {
            Decision::Deny
        };
        let mut e = self.entry(ctx, method, tool, decision);
        e.args_digest = digest;
        e.reason = d.reason.clone();
        e.policy_ids = d.policy_ids.clone();
        e.policy_version = version;
        trace_decision(&e);
        if self.audit.record(e).is_err() {
            return self.overloaded(id);
        }
        self.count(ctx, tool, decision);
        denied(id, &d)
    }

    fn overloaded(&self, id: Option<&Value>) -> Response<Body> {
        turned_away(
            id,
            "the gateway's audit backlog is full; no call can be decided until it drains",
        )
    }

    /// The annotations of a tool: from the catalog, else fetched from the upstream, else the
    /// cautious defaults.
    async fn tool_info(&self, ctx: &Ctx, name: &str) -> ToolInfo {
        let tenant = &ctx.agent.tenant;
        if let Some(i) = self.catalog.get(tenant, &ctx.server, name) {
            return i;
        }
        let upstream_session = ctx.session.as_ref().map(|s| s.upstream.as_str());
        // The upstream continues this span.
        let span = child_span!(
            ctx.span,
            "agentgate.catalog",
            otel.kind = "client",
            mcp.method.name = "tools/list"
        );
        let cx = (!span.is_disabled())
            .then(|| span.context())
            .filter(telemetry::has_span);
        match self
            .upstreams
            .fetch_tools(&ctx.uri, upstream_session, &ctx.revision, cx.as_ref())
            .instrument(span)
            .await
        {
            Ok(tools) => self.catalog.learn(tenant, &ctx.server, &tools),
            Err(e) => {
                tracing::warn!(tenant = %tenant, server = %ctx.server, error = %e, "cannot fetch the upstream's tools; deciding with cautious annotations");
            }
        }
        self.catalog
            .get(tenant, &ctx.server, name)
            .unwrap_or_else(ToolInfo::unknown)
    }

    #[allow(clippy::too_many_arguments)]
    fn facts(
        &self,
        ctx: &Ctx,
        action: Action,
        tool: &str,
        info: &ToolInfo,
        arguments: Map<String, Value>,
        detections: Vec<String>,
        now_ms: u64,
    ) -> CallFacts {
        let (hour, weekday) = hour_weekday(now_ms);
        CallFacts {
            agent: ctx.agent.id.clone(),
            roles: ctx.agent.roles.clone(),
            labels: ctx.agent.labels.clone(),
            action,
            server: ctx.server.clone(),
            tool: tool.to_string(),
            read_only: info.read_only,
            destructive: info.destructive,
            idempotent: info.idempotent,
            open_world: info.open_world,
            arguments,
            session: ctx.session_id.clone().unwrap_or_default(),
            hour,
            weekday,
            region: self.settings.region.clone(),
            detections,
        }
    }

    #[allow(clippy::too_many_arguments)]
    async fn call(
        &self,
        ctx: Ctx,
        id: Value,
        method: &str,
        action: Action,
        name: String,
        arguments: Map<String, Value>,
        body: Bytes,
    ) -> Response<Body> {
        let admission = self.audit.admission();
        if admission == Admission::Full {
            metrics::counter!("agentgate_edge_audit_turned_away_total").increment(1);
            return self.overloaded(Some(&id));
        }
        let info = match action {
            Action::CallTool => self.tool_info(&ctx, &name).await,
            // Reading a resource or a prompt changes nothing.
            _ => ToolInfo {
                read_only: true,
                destructive: false,
                idempotent: true,
                open_world: false,
                digest: String::new(),
            },
        };
        let digest = args_digest(&arguments);
        let detections = detect(&arguments);
        let now_ms = self.clock.now_ms();
        let facts = self.facts(&ctx, action, &name, &info, arguments, detections, now_ms);
        let tool = Some(name.as_str());
        if admission == Admission::DenyOnly {
            let d = overload(
                "the gateway's audit backlog is nearly full; calls are refused until it drains",
            );
            return self.deny(&ctx, Some(&id), method, tool, Some(digest), d, None);
        }
        if action == Action::CallTool && !info.matches_pin(&name, &ctx.upstream.pinned_tools) {
            let d = Denial::new(
                code::POLICY_DENIED,
                format!(
                    "tool `{name}`'s definition does not match the digest pinned for server `{}`",
                    ctx.server
                ),
            );
            return self.deny(&ctx, Some(&id), method, tool, Some(digest), d, None);
        }
        let decided = child_span!(ctx.span, "agentgate.decide").in_scope(|| {
            decide_call(
                &ctx.view.state,
                &self.policies,
                &facts,
                &ctx.agent,
                self.follower.is_fresh(),
                now_ms,
                self.settings.retry_after_ms,
            )
        });
        let shadow = decided.shadow.map(|o| match o {
            Outcome::Allow => Decision::Allow,
            Outcome::Deny => Decision::Deny,
            Outcome::RequireApproval => Decision::RequireApproval,
        });
        let (version, policy_ids, reason) = match decided.verdict {
            Verdict::Deny(d, version) => {
                return self.deny(&ctx, Some(&id), method, tool, Some(digest), d, version);
            }
            Verdict::Allow {
                version,
                policy_ids,
            } => (version, policy_ids, String::new()),
            Verdict::RequireApproval {
                version,
                policy_ids,
            } => {
                let call = Call {
                    tenant: &ctx.agent.tenant,
                    agent: &ctx.agent.id,
                    tool: &name,
                    args_digest: &digest,
                    reason: &format!("{method} `{name}` by agent `{}`", ctx.agent.id),
                };
                match self.approvals.resolve(&ctx.view.state, &call, now_ms).await {
                    Ok(Resolution::Consumed(aid)) => {
                        (version, policy_ids, format!("approval `{aid}` used"))
                    }
                    Ok(Resolution::Pending(aid)) => {
                        let d = Denial {
                            policy_ids,
                            approval_id: Some(aid.clone()),
                            ..Denial::new(
                                code::APPROVAL_REQUIRED,
                                format!(
                                    "this call needs an operator's approval: once approval `{aid}` is approved, retry with identical arguments (it will be allowed once)"
                                ),
                            )
                        };
                        return self.deny(
                            &ctx,
                            Some(&id),
                            method,
                            tool,
                            Some(digest),
                            d,
                            Some(version),
                        );
                    }
                    Err(e) => {
                        let d = Denial {
                            policy_ids,
                            retry_after_ms: Some(self.settings.retry_after_ms),
                            ..Denial::new(
                                code::APPROVAL_REQUIRED,
                                format!(
                                    "this call needs an operator's approval, which cannot be checked now: {e}"
                                ),
                            )
                        };
                        return self.deny(
                            &ctx,
                            Some(&id),
                            method,
                            tool,
                            Some(digest),
                            d,
                            Some(version),
                        );
                    }
                }
            }
        };
        let mut e = self.entry(&ctx, method, tool, Decision::Allow);
        e.args_digest = Some(digest);
        e.reason = reason;
        e.policy_version = Some(version);
        e.policy_ids = policy_ids;
        e.shadow_decision = shadow;
        trace_decision(&e);
        let Ok(held) = self.audit.hold(e) else {
            return self.overloaded(Some(&id));
        };
        self.count(&ctx, tool, Decision::Allow);
        let watched = self.watched(&ctx, Some(name), info.read_only, Some(id.clone()));
        self.forward_held(ctx, body, watched, held, Some(&id)).await
    }

    /// Forwards an allowed call whose audit record is held, completing the record with the
    /// upstream's status and latency.
    async fn forward_held(
        &self,
        ctx: Ctx,
        body: Bytes,
        watched: Watched,
        mut held: crate::audit::Held,
        id: Option<&Value>,
    ) -> Response<Body> {
        let sent = self.clock.monotonic();
        let result = self.send(&ctx, Method::POST, body).await;
        let upstream_us = micros(self.clock.monotonic().saturating_duration_since(sent));
        metrics::histogram!("agentgate_edge_upstream_seconds", "server" => ctx.server.clone())
            .record(upstream_us as f64 / 1e6);
        match result {
            Ok(resp) => {
                ctx.span
                    .record("agentgate.upstream.status", resp.status().as_u16());
                if let Some(e) = held.entry_mut() {
                    e.upstream_status = Some(resp.status().as_u16());
                    e.upstream_latency_us = Some(upstream_us);
                }
                held.commit();
                self.relay(ctx, resp, Some(watched), None)
            }
            Err(err) => {
                ctx.span.record(
                    "agentgate.upstream.status",
                    StatusCode::BAD_GATEWAY.as_u16(),
                );
                if let Some(e) = held.entry_mut() {
                    e.upstream_status = Some(StatusCode::BAD_GATEWAY.as_u16());
                    e.upstream_latency_us = Some(upstream_us);
                    e.reason = err.to_string();
                }
                held.commit();
                upstream_failed(id, &err.to_string())
            }
        }
    }

    async fn list_tools(&self, ctx: Ctx, id: Value, body: Bytes) -> Response<Body> {
        let method = "tools/list";
        if self.audit.admission() != Admission::Open {
            return self.overloaded(Some(&id));
        }
        if let Some(d) = self.tenant_gate(&ctx) {
            return self.deny(&ctx, Some(&id), method, None, None, d, None);
        }
        let resp = match self.send(&ctx, Method::POST, body).await {
            Ok(r) => r,
            Err(e) => {
                return upstream_failed(Some(&id), &e.to_string());
            }
        };
        let status = resp.status();
        if !status.is_success() {
            return self.relay(ctx, resp, None, None);
        }
        let sse_reply = upstream::is_event_stream(resp.headers());
        let mut head = resp.headers().clone();
        let bytes =
            match upstream::read_whole(resp.into_body(), upstream::WHOLE_REPLY_BYTES_MAX).await {
                Ok(b) => b,
                Err(e) => {
                    return upstream_failed(Some(&id), &e.to_string());
                }
            };
        let (filtered, shown, total) = if sse_reply {
            let text = String::from_utf8_lossy(&bytes);
            let mut events = sse::parse(&text);
            let (mut shown, mut total) = (0, 0);
            for ev in &mut events {
                let Some(mut msg) = ev
                    .data
                    .as_deref()
                    .and_then(|d| serde_json::from_str::<Value>(d).ok())
                else {
                    continue;
                };
                if let Some((s, t)) = self.filter_tools(&ctx, &mut msg) {
                    (shown, total) = (s, t);
                    ev.data = Some(msg.to_string());
                }
            }
            (Bytes::from(sse::write(&events)), shown, total)
        } else {
            let Ok(mut msg) = serde_json::from_slice::<Value>(&bytes) else {
                return upstream_failed(Some(&id), "the upstream's tools/list reply is not JSON");
            };
            let (shown, total) = self.filter_tools(&ctx, &mut msg).unwrap_or((0, 0));
            (Bytes::from(msg.to_string()), shown, total)
        };
        let mut e = self.entry(&ctx, method, None, Decision::Allow);
        e.reason = format!("{shown} of {total} tools shown");
        e.upstream_status = Some(status.as_u16());
        trace_decision(&e);
        if self.audit.record(e).is_err() {
            return self.overloaded(Some(&id));
        }
        self.count(&ctx, None, Decision::Allow);
        head.remove(CONTENT_LENGTH);
        let mut r = Response::new(Full::new(filtered).map_err(|e| match e {}).boxed_unsync());
        *r.status_mut() = status;
        copy_response_headers(&head, r.headers_mut());
        r
    }

    /// Keeps in a `tools/list` result only the tools this agent may call (allowed or allowed
    /// after approval), and learns their annotations. `None` if the message is no such result.
    fn filter_tools(&self, ctx: &Ctx, msg: &mut Value) -> Option<(usize, usize)> {
        let tools = msg.get_mut("result")?.get_mut("tools")?.as_array_mut()?;
        self.catalog.learn(&ctx.agent.tenant, &ctx.server, tools);
        let total = tools.len();
        let now_ms = self.clock.now_ms();
        let fresh = self.follower.is_fresh();
        tools.retain(|t| {
            let Some((name, info)) = ToolInfo::from_definition(t) else {
                return false;
            };
            if !info.matches_pin(&name, &ctx.upstream.pinned_tools) {
                return false;
            }
            let facts = self.facts(
                ctx,
                Action::CallTool,
                &name,
                &info,
                Map::new(),
                vec![],
                now_ms,
            );
            let decided = decide_call(
                &ctx.view.state,
                &self.policies,
                &facts,
                &ctx.agent,
                fresh,
                now_ms,
                self.settings.retry_after_ms,
            );
            !matches!(decided.verdict, Verdict::Deny(..))
        });
        Some((tools.len(), total))
    }

    async fn batch(&self, ctx: Ctx, parsed: Parsed, body: Bytes) -> Response<Body> {
        // Batches exist only in 2025-03-26. Requests that name a tool, and tools/list (whose
        // reply would need filtering), must be sent alone; the rest pass the gates as one.
        let refused = parsed.messages.iter().find_map(|m| match m {
            Message::Request { id, op, method, .. } => match op {
                Operation::CallTool { .. }
                | Operation::ReadResource { .. }
                | Operation::GetPrompt { .. }
                | Operation::ListTools => Some((
                    id.clone(),
                    format!("`{method}` must be sent on its own, not in a batch"),
                )),
                Operation::Other if !HOUSEKEEPING_METHODS.contains(&method.as_str()) => Some((
                    id.clone(),
                    format!("method `{method}` is not one this gateway relays"),
                )),
                _ => None,
            },
            _ => None,
        });
        if let Some((id, why)) = refused {
            return rpc_error(
                StatusCode::OK,
                Some(&id),
                mcp::code::INVALID_REQUEST,
                &why,
                None,
            );
        }
        if let Some(d) = self.tenant_gate(&ctx) {
            return self.deny(&ctx, None, "batch", None, None, d, None);
        }
        let watched = self.watched(&ctx, None, false, None);
        self.forward_and_relay(ctx, Method::POST, body, Some(watched), None)
            .await
    }

    async fn get_stream(&self, ctx: Ctx) -> Response<Body> {
        if !accepts(&ctx.headers, "text/event-stream") {
            return rpc_error(
                StatusCode::NOT_ACCEPTABLE,
                None,
                mcp::code::INVALID_REQUEST,
                "Accept must list text/event-stream",
                None,
            );
        }
        if ctx.session.is_none() {
            return rpc_error(
                StatusCode::BAD_REQUEST,
                None,
                mcp::code::INVALID_REQUEST,
                "a GET stream needs an Mcp-Session-Id",
                None,
            );
        }
        if let Some(d) = self.tenant_gate(&ctx) {
            let mut r = self.deny(&ctx, None, "GET", None, None, d, None);
            *r.status_mut() = StatusCode::FORBIDDEN;
            return r;
        }
        let watched = self.watched(&ctx, None, false, None);
        self.forward_and_relay(ctx, Method::GET, Bytes::new(), Some(watched), None)
            .await
    }

    async fn delete(&self, ctx: Ctx) -> Response<Body> {
        if ctx.session.is_none() {
            return rpc_error(
                StatusCode::BAD_REQUEST,
                None,
                mcp::code::INVALID_REQUEST,
                "DELETE needs an Mcp-Session-Id",
                None,
            );
        }
        self.forward_and_relay(ctx, Method::DELETE, Bytes::new(), None, None)
            .await
    }

    /// Builds and sends the upstream request.
    async fn send(
        &self,
        ctx: &Ctx,
        method: Method,
        body: Bytes,
    ) -> Result<Response<Incoming>, upstream::UpstreamError> {
        let span = child_span!(
            ctx.span,
            "agentgate.upstream",
            otel.kind = "client",
            http.request.method = %method,
            server.address = ctx.uri.authority().map_or("", |a| a.as_str()),
            http.response.status_code = Empty,
        );
        // The upstream continues this edge's trace: W3C context in the headers and, for MCP
        // servers that read it there, in `params._meta`.
        let cx = if span.is_disabled() {
            None
        } else {
            Some(span.context()).filter(telemetry::has_span)
        };
        let body = match &cx {
            Some(cx) => with_meta_context(body, cx),
            None => body,
        };
        let mut req = Request::new(Full::new(body));
        *req.method_mut() = method;
        *req.uri_mut() = ctx.uri.clone();
        let h = req.headers_mut();
        for name in FORWARD_REQUEST {
            for v in ctx.headers.get_all(name) {
                h.append(name, v.clone());
            }
        }
        if let Some(cx) = &cx {
            telemetry::inject(cx, &mut telemetry::HeaderCarrier(h));
        }
        if let Some(s) = &ctx.session
            && let Ok(v) = HeaderValue::from_str(&s.upstream)
        {
            h.insert(MCP_SESSION_ID, v);
        }
        let result = self.upstreams.send(req).instrument(span.clone()).await;
        if let Ok(r) = &result {
            span.record("http.response.status_code", r.status().as_u16());
        }
        result
    }

    async fn forward_and_relay(
        &self,
        ctx: Ctx,
        method: Method,
        body: Bytes,
        watched: Option<Watched>,
        initialize: Option<String>,
    ) -> Response<Body> {
        match self.send(&ctx, method, body).await {
            Ok(resp) => self.relay(ctx, resp, watched, initialize),
            Err(e) => upstream_failed(None, &e.to_string()),
        }
    }

    /// Relays an upstream reply: allowlisted headers, the session id sealed into a token, the
    /// body streamed (SSE watched for kill switches).
    fn relay(
        &self,
        ctx: Ctx,
        resp: Response<Incoming>,
        watched: Option<Watched>,
        initialize: Option<String>,
    ) -> Response<Body> {
        let (parts, incoming) = resp.into_parts();
        let mut out_headers = HeaderMap::new();
        copy_response_headers(&parts.headers, &mut out_headers);
        if let Some(upstream_sid) = header(&parts.headers, MCP_SESSION_ID.as_str()) {
            if upstream_sid.len() > crate::session::SESSION_ID_BYTES_MAX {
                return upstream_failed(None, "the upstream's session id is too long");
            }
            let session = Session {
                tenant: ctx.agent.tenant.clone(),
                server: ctx.server.clone(),
                agent: ctx.agent.id.clone(),
                upstream: upstream_sid.to_string(),
                revision: initialize
                    .or_else(|| ctx.session.as_ref().map(|s| s.revision.clone()))
                    .unwrap_or_else(|| ctx.revision.clone()),
            };
            if let Ok(v) = HeaderValue::from_str(&self.sessions.seal(&session)) {
                out_headers.insert(MCP_SESSION_ID, v);
            }
        }
        let stream = upstream::is_event_stream(&parts.headers);
        let permit = ctx.permit;
        let body: Body = match watched {
            Some(w) if stream => self.pump(incoming, w, permit),
            _ => incoming
                .map_frame(move |f| {
                    let _held_until_the_body_ends = &permit;
                    f
                })
                .map_err(BoxError::from)
                .boxed_unsync(),
        };
        let mut r = Response::new(body);
        *r.status_mut() = parts.status;
        *r.headers_mut() = out_headers;
        r
    }

    /// Relays a stream through a bounded channel, ending it when a kill switch covering the
    /// call arrives or the agent goes away (dropping the upstream body cancels upstream).
    fn pump(
        &self,
        mut incoming: Incoming,
        w: Watched,
        permit: tokio::sync::OwnedSemaphorePermit,
    ) -> Body {
        let (tx, rx) = mpsc::channel::<Result<Frame<Bytes>, BoxError>>(STREAM_FRAMES_BUFFERED);
        let mut view = self.view.clone();
        let clock = self.clock.clone();
        tokio::spawn(async move {
            let _permit = permit;
            // A switch committed between the decision and now counts too.
            view.mark_changed();
            loop {
                tokio::select! {
                    biased;
                    changed = view.changed() => {
                        if changed.is_err() {
                            break;
                        }
                        let state = view.borrow_and_update().state.clone();
                        if let Some(d) = gate::kill_switch(&state, &w.subject(), clock.now_ms()) {
                            metrics::counter!("agentgate_edge_streams_aborted_total").increment(1);
                            if let Some(id) = &w.request_id {
                                let event = sse::message_event(&denial_body(Some(id), &d).to_string());
                                let _ = tx.send(Ok(Frame::data(Bytes::from(event)))).await;
                            }
                            break;
                        }
                    }
                    () = tx.closed() => break,
                    frame = incoming.frame() => match frame {
                        None => break,
                        Some(Ok(f)) => {
                            if tx.send(Ok(f)).await.is_err() {
                                break;
                            }
                        }
                        Some(Err(e)) => {
                            let _ = tx.send(Err(e.into())).await;
                            break;
                        }
                    },
                }
            }
        });
        StreamBody::new(ReceiverStream::new(rx)).boxed_unsync()
    }
}

fn copy_response_headers(from: &HeaderMap, to: &mut HeaderMap) {
    for name in FORWARD_RESPONSE {
        for v in from.get_all(name) {
            to.append(name, v.clone());
        }
    }
}

/// Keeps the policy cache warm: compiles every version a tenant enforces, shadows or rolls out
/// to as soon as the replica names it, off the request path.
pub fn precompile(state: &State, policies: &PolicyCache) {
    let mut wanted: BTreeMap<(String, String), ()> = BTreeMap::new();
    for t in state.tenants.values() {
        for v in [&t.policy_version, &t.shadow_version].into_iter().flatten() {
            wanted.insert((t.id.clone(), v.clone()), ());
        }
    }
    for r in state.rollouts.values() {
        wanted.insert((r.tenant.clone(), r.to_version.clone()), ());
    }
    for (tenant, version) in wanted.keys() {
        if !policies.contains(tenant, version) {
            let _ = policies.get(state, tenant, version);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes_keep_mcp_as_the_last_segment() {
        assert_eq!(route("/t/acme/files/mcp"), Some(("acme", "files")));
        for bad in [
            "/t/acme/files",
            "/t/acme/files/mcp/x",
            "/t//files/mcp",
            "/mcp",
            "/t/acme//mcp",
        ] {
            assert_eq!(route(bad), None, "{bad}");
        }
    }

    #[test]
    fn accept_lists_with_wildcards_and_parameters() {
        let mut h = HeaderMap::new();
        assert!(!accepts(&h, "application/json"));
        h.insert(
            ACCEPT,
            HeaderValue::from_static("application/json;q=0.9, text/event-stream"),
        );
        assert!(accepts(&h, "application/json") && accepts(&h, "text/event-stream"));
        h.insert(ACCEPT, HeaderValue::from_static("*/*"));
        assert!(accepts(&h, "text/event-stream"));
        h.insert(ACCEPT, HeaderValue::from_static("application/*"));
        assert!(accepts(&h, "application/json") && !accepts(&h, "text/event-stream"));
    }

    #[test]
    fn time_facts_are_utc_hour_and_iso_weekday() {
        assert_eq!(hour_weekday(0), (0, 4)); // Thursday 1970-01-01 00:00
        assert_eq!(hour_weekday(1_763_719_200_000), (10, 5)); // Friday 2025-11-21 10:00 UTC
        assert_eq!(hour_weekday(1_763_856_000_000), (0, 7)); // Sunday 2025-11-23
    }
}
