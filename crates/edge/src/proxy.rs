//! The MCP endpoint agents talk to, `POST|GET|DELETE /t/{tenant}/{server}/mcp`: the HTTP layer.
//!
//! Per request, in design.md §3's order: route → `Origin` → authenticate → session token →
//! bounded body → parse → decide ([`crate::pipeline`], pure) → ask the core about approvals →
//! forward (pooled, allowlisted headers, `Host` from the upstream URL) → relay the reply as it
//! arrives ([`crate::relay`]) → one audit record per decision. Every refusal is an
//! [`EdgeError`], answered by its one mapping to the wire.
//!
//! INVARIANT: a gated request (`tools/call`, `resources/read`, `prompts/get`) reaches an upstream
//! only with an Allow verdict and a reserved audit slot; `tools/list` replies are filtered to the
//! tools the agent may call; every other request passes the kill-switch and freshness gates.

use std::sync::Arc;
use std::time::{Duration, Instant};

use agentgate_model::audit::{AuditEntry, Decision};
use agentgate_model::decide::Action;
use agentgate_model::entity::Agent;
use agentgate_runtime::clock::Clock;
use agentgate_runtime::telemetry::{self, TARGET};
use bytes::Bytes;
use http::header::{ACCEPT, CONTENT_LENGTH, CONTENT_TYPE, HeaderValue, ORIGIN};
use http::{HeaderMap, Method, Request, Response, StatusCode, Uri};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use serde_json::{Map, Value};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, watch};
use tracing::Instrument;
use tracing::field::Empty;
use tracing_opentelemetry::OpenTelemetrySpanExt;

use crate::approvals::{self, Approvals};
use crate::audit::{Admission, AuditLog, Held};
use crate::catalog::{Catalog, ToolInfo};
use crate::decision::PolicyCache;
use crate::error::EdgeError;
use crate::follower::Follower;
use crate::gate::Denial;
use crate::mcp::{self, Message, Operation, Parsed};
use crate::pipeline::{self, Caller, Env, Verdict};
use crate::relay::{Body, Watched, copy_response_headers};
use crate::session::{Session, SessionKeys};
use crate::sse;
use crate::trace::{child_span, continue_trace, trace_decision, trace_id, with_meta_context};
use crate::upstream::{self, MCP_SESSION_ID, TRACEPARENT, Upstreams};
use crate::view::{Route, View};

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

/// One authenticated request's context. The agent and the upstream are the view's, shared.
pub(crate) struct Ctx {
    pub view: Arc<View>,
    pub agent: Arc<Agent>,
    pub server: String,
    pub route: Arc<Route>,
    pub uri: Uri,
    pub session: Option<Session>,
    /// Short session name (audit, kill switches, rollout buckets).
    pub session_id: Option<String>,
    /// The request's headers (moved out of the request, not copied).
    pub headers: HeaderMap,
    pub trace_id: Option<String>,
    /// The request's span (disabled unless traces are exported).
    pub span: tracing::Span,
    pub started: Instant,
    pub revision: String,
    pub permit: OwnedSemaphorePermit,
}

impl Ctx {
    fn caller(&self) -> Caller<'_> {
        Caller {
            agent: &self.agent,
            server: &self.server,
            upstream: &self.route.upstream,
            session: self.session_id.as_deref(),
            trace_id: self.trace_id.as_deref(),
        }
    }
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

fn micros(d: Duration) -> u64 {
    u64::try_from(d.as_micros()).unwrap_or(u64::MAX)
}

/// The answer when not even a denial can be recorded: turned away undecided.
fn audit_full() -> EdgeError {
    EdgeError::TurnedAway(
        "the gateway's audit backlog is full; no call can be decided until it drains".into(),
    )
}

impl Gateway {
    /// Handles one request on the MCP listener.
    pub async fn handle(self: Arc<Self>, req: Request<Incoming>) -> Response<Body> {
        let (parts, body) = req.into_parts();
        let ctx = match self.context(&parts.uri, &parts.method, parts.headers) {
            Ok(c) => c,
            Err(e) => return e.reply(None),
        };
        let span = ctx.span.clone();
        let resp = match parts.method {
            // The parent may come from the body's `_meta`: POST enters its span once parsed.
            Method::POST => self.post(ctx, body).await,
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

    /// Routes, checks `Origin` and the method, authenticates and resolves tenant, server and
    /// session.
    fn context(&self, uri: &Uri, method: &Method, headers: HeaderMap) -> Result<Ctx, EdgeError> {
        let (tenant, server) = route(uri.path()).ok_or(EdgeError::NoRoute)?;
        if let Some(origin) = header(&headers, ORIGIN.as_str())
            && !self.settings.allowed_origins.iter().any(|o| o == origin)
        {
            return Err(EdgeError::OriginForbidden(origin.to_string()));
        }
        if !matches!(*method, Method::POST | Method::GET | Method::DELETE) {
            return Err(EdgeError::MethodNotAllowed);
        }
        let started = self.clock.monotonic();
        let permit = self.inflight.clone().try_acquire_owned().map_err(|_| {
            metrics::counter!("agentgate_edge_overload_total").increment(1);
            EdgeError::TurnedAway("too many requests in flight on this gateway".into())
        })?;
        let view = self.view.borrow().clone();
        let agent = view
            .keys
            .authenticate(header(&headers, "authorization"))
            .map_err(|e| {
                metrics::counter!("agentgate_edge_auth_failures_total", "reason" => e.label())
                    .increment(1);
                EdgeError::Unauthorized(e)
            })?
            .clone();
        let not_found = || EdgeError::NoServer {
            tenant: tenant.to_string(),
            server: server.to_string(),
        };
        if agent.tenant != tenant {
            return Err(not_found());
        }
        let route = view.route(tenant, server).cloned().ok_or_else(not_found)?;
        let uri = route.uri.clone().map_err(EdgeError::Upstream)?;
        let session = match header(&headers, MCP_SESSION_ID.as_str()) {
            None => None,
            Some(token) => Some(
                self.sessions
                    .open_for(token, tenant, server, &agent.id)
                    .map_err(|e| EdgeError::SessionNotFound(e.to_string()))?,
            ),
        };
        let trace_id = header(&headers, TRACEPARENT.as_str()).and_then(trace_id);
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
            server: server.to_string(),
            session_id: session.as_ref().map(Session::id),
            revision: session
                .as_ref()
                .map(|s| s.revision.clone())
                .unwrap_or_default(),
            session,
            agent,
            route,
            uri,
            headers,
            trace_id,
            span,
            started,
            view,
            permit,
        })
    }

    fn env(&self, now_ms: u64) -> Env<'_> {
        Env {
            now_ms,
            fresh: self.follower.is_fresh(),
            region: &self.settings.region,
            retry_after_ms: self.settings.retry_after_ms,
        }
    }

    async fn post(&self, mut ctx: Ctx, body: Incoming) -> Response<Body> {
        let parsed = match self.read_and_parse(&ctx, body).await {
            Ok(p) => p,
            Err(e) => return e.reply(None),
        };
        let (parsed, body) = parsed;
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

    /// Checks the POST's headers, reads the body within its bound and parses it.
    async fn read_and_parse(
        &self,
        ctx: &Ctx,
        body: Incoming,
    ) -> Result<(Parsed, Bytes), EdgeError> {
        let h = &ctx.headers;
        if !header(h, CONTENT_TYPE.as_str()).is_some_and(|c| c.starts_with("application/json")) {
            return Err(EdgeError::UnsupportedMediaType);
        }
        if !(accepts(h, "application/json") && accepts(h, "text/event-stream")) {
            return Err(EdgeError::NotAcceptable(
                "application/json and text/event-stream",
            ));
        }
        let max = self.settings.body_bytes_max;
        if header(h, CONTENT_LENGTH.as_str())
            .and_then(|l| l.parse::<usize>().ok())
            .is_some_and(|l| l > max)
        {
            return Err(EdgeError::TooLarge(max));
        }
        let body = match Limited::new(body, max).collect().await {
            Ok(b) => b.to_bytes(),
            Err(e) if e.is::<http_body_util::LengthLimitError>() => {
                return Err(EdgeError::TooLarge(max));
            }
            Err(e) => return Err(EdgeError::BodyRead(e.to_string())),
        };
        let mh = mcp::Headers {
            protocol_version: header(h, "mcp-protocol-version"),
            mcp_method: header(h, "mcp-method"),
            mcp_name: header(h, "mcp-name"),
        };
        let session_revision = ctx.session.as_ref().map(|s| s.revision.as_str());
        let parsed = mcp::parse(&body, &mh, session_revision)?;
        Ok((parsed, body))
    }

    /// Answers one parsed POST (inside the request's span).
    async fn dispatch(&self, ctx: Ctx, parsed: Parsed, body: Bytes) -> Response<Body> {
        if parsed.batch {
            return self.batch(ctx, parsed, body).await;
        }
        let Some(message) = parsed.messages.into_iter().next() else {
            return EdgeError::NoMessage.reply(None);
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
        let named = |action, name, arguments| Named {
            id: id.clone(),
            method: &method,
            action,
            name,
            arguments,
        };
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
                self.call(ctx, named(Action::CallTool, name, arguments), body)
                    .await
            }
            Operation::ReadResource { uri } => {
                self.call(ctx, named(Action::ReadResource, uri, Map::new()), body)
                    .await
            }
            Operation::GetPrompt { name } => {
                let arguments = params
                    .get("arguments")
                    .and_then(Value::as_object)
                    .cloned()
                    .unwrap_or_default();
                self.call(ctx, named(Action::GetPrompt, name, arguments), body)
                    .await
            }
            Operation::ListResources | Operation::ListPrompts => {
                self.gated_forward(ctx, id, &method, body).await
            }
            Operation::Other if HOUSEKEEPING_METHODS.contains(&method.as_str()) => {
                self.gated_forward(ctx, id, &method, body).await
            }
            Operation::Other => EdgeError::MethodNotRelayed(method).reply(Some(&id)),
        }
    }

    /// Forwards a request that names no tool once it passes the gates.
    async fn gated_forward(
        &self,
        ctx: Ctx,
        id: Value,
        method: &str,
        body: Bytes,
    ) -> Response<Body> {
        let now_ms = self.clock.now_ms();
        if let Some(d) = pipeline::gate(&ctx.view, &ctx.caller(), &self.env(now_ms)) {
            return self.refuse(&ctx, method, d, now_ms).reply(Some(&id));
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

    /// Completes an entry (decision latency), traces it and counts it.
    fn finish(&self, ctx: &Ctx, e: &mut AuditEntry) {
        let elapsed = self
            .clock
            .monotonic()
            .saturating_duration_since(ctx.started);
        e.latency_us = micros(elapsed);
        trace_decision(e);
        let tool = match &e.tool {
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
            "tenant" => ctx.agent.tenant.clone(), "tool" => tool, "decision" => e.decision.as_str())
        .increment(1);
        metrics::histogram!("agentgate_edge_decision_seconds").record(elapsed.as_secs_f64());
    }

    /// Records a denial decided by the gates; the error to answer with (the denial, or turned
    /// away when not even the denial can be recorded).
    fn refuse(&self, ctx: &Ctx, method: &str, d: Denial, now_ms: u64) -> EdgeError {
        let mut e = pipeline::entry(&ctx.caller(), method, None, now_ms);
        pipeline::deny(&mut e, &d);
        self.record_denial(ctx, e, d)
    }

    fn record_denial(&self, ctx: &Ctx, e: AuditEntry, d: Denial) -> EdgeError {
        self.record_refusal(ctx, e, EdgeError::Denied(d))
    }

    /// Records a refusal's entry; the error to answer with (`refused`, or turned away when not
    /// even the refusal can be recorded).
    fn record_refusal(&self, ctx: &Ctx, mut e: AuditEntry, refused: EdgeError) -> EdgeError {
        self.finish(ctx, &mut e);
        if self.audit.record(e).is_err() {
            return audit_full();
        }
        refused
    }

    /// The facts of a tool the upstream lists: from the catalog, else from the upstream's list.
    /// A tool it does not list is refused with MCP's unknown-tool error before any policy
    /// runs, and a list that cannot be read fails the call closed; both are audited. Before a
    /// miss costs an upstream fetch, the call passes the gates (a stopped agent gets nothing).
    async fn listed_tool(
        &self,
        ctx: &Ctx,
        method: &str,
        name: &str,
    ) -> Result<ToolInfo, EdgeError> {
        let tenant = &ctx.agent.tenant;
        if let Some(i) = self.catalog.get(tenant, &ctx.server, name) {
            return Ok(i);
        }
        let now_ms = self.clock.now_ms();
        if let Some(d) = pipeline::gate(&ctx.view, &ctx.caller(), &self.env(now_ms)) {
            return Err(self.refuse(ctx, method, d, now_ms));
        }
        let upstream_session = ctx.session.as_ref().map(|s| s.upstream.as_str());
        let fetch = || async {
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
            self.upstreams
                .fetch_tools(&ctx.uri, upstream_session, &ctx.revision, cx.as_ref())
                .instrument(span)
                .await
                .map_err(|e| e.to_string())
        };
        let found = self.catalog.find(tenant, &ctx.server, name, fetch).await;
        let now_ms = self.clock.now_ms();
        match found {
            Ok(Some(info)) => Ok(info),
            Ok(None) => {
                let (e, d) = pipeline::unknown_tool(&ctx.caller(), method, name, now_ms);
                Err(self.record_denial(ctx, e, d))
            }
            Err(why) => {
                tracing::warn!(tenant = %tenant, server = %ctx.server, error = %why, "cannot read the upstream's tool list; refusing the call");
                let why = format!("the upstream's tool list cannot be read: {why}");
                let mut e = pipeline::entry(&ctx.caller(), method, Some(name), now_ms);
                pipeline::deny(
                    &mut e,
                    &Denial::new(crate::gate::code::UPSTREAM, why.clone()),
                );
                e.upstream_status = Some(StatusCode::BAD_GATEWAY.as_u16());
                Err(self.record_refusal(ctx, e, EdgeError::Upstream(why)))
            }
        }
    }

    /// A named call: decided by the pipeline, an approval asked for when the policy wants one,
    /// forwarded with its audit record held until the upstream answers.
    async fn call(&self, ctx: Ctx, call: Named<'_>, body: Bytes) -> Response<Body> {
        let id = call.id.clone();
        let admission = self.audit.admission();
        if admission == Admission::Full {
            metrics::counter!("agentgate_edge_audit_turned_away_total").increment(1);
            return audit_full().reply(Some(&id));
        }
        let info = match call.action {
            Action::CallTool => match self.listed_tool(&ctx, call.method, &call.name).await {
                Ok(info) => info,
                Err(refused) => return refused.reply(Some(&id)),
            },
            // Reading a resource or a prompt changes nothing.
            _ => ToolInfo {
                read_only: true,
                destructive: false,
                idempotent: true,
                open_world: false,
                digest: String::new(),
            },
        };
        let now_ms = self.clock.now_ms();
        let env = self.env(now_ms);
        let request = pipeline::Call {
            method: call.method,
            action: call.action,
            name: &call.name,
            arguments: call.arguments,
            info: &info,
            admission,
        };
        let mut decided = child_span!(ctx.span, "agentgate.decide").in_scope(|| {
            pipeline::decide_request(&ctx.view, &self.policies, &ctx.caller(), request, &env)
        });
        if decided.verdict == Verdict::NeedsApproval {
            let e = &decided.entry;
            let reason = pipeline::approval_reason(e);
            let ask = approvals::Call {
                tenant: &e.tenant,
                agent: &e.agent,
                tool: e.tool.as_deref().unwrap_or_default(),
                args_digest: e.args_digest.as_deref().unwrap_or_default(),
                reason: &reason,
            };
            let resolution = self.approvals.resolve(&ctx.view.state, &ask, now_ms).await;
            decided = pipeline::settle(decided, resolution, self.settings.retry_after_ms);
        }
        let mut e = decided.entry;
        match decided.verdict {
            Verdict::Allow => {}
            Verdict::Deny(d) => return self.record_denial(&ctx, e, d).reply(Some(&id)),
            Verdict::NeedsApproval => {
                // `settle` always decides; refuse rather than forward undecided.
                let d = Denial::new(crate::gate::code::APPROVAL_REQUIRED, "approval unresolved");
                pipeline::deny(&mut e, &d);
                return self.record_denial(&ctx, e, d).reply(Some(&id));
            }
        }
        self.finish(&ctx, &mut e);
        let Ok(held) = self.audit.hold(e) else {
            return audit_full().reply(Some(&id));
        };
        let watched = self.watched(&ctx, Some(call.name), info.read_only, Some(id.clone()));
        self.forward_held(ctx, body, watched, held, &id).await
    }

    /// Forwards an allowed call whose audit record is held, completing the record with the
    /// upstream's status and latency.
    async fn forward_held(
        &self,
        ctx: Ctx,
        body: Bytes,
        watched: Watched,
        mut held: Held,
        id: &Value,
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
                EdgeError::Upstream(err.to_string()).reply(Some(id))
            }
        }
    }

    async fn list_tools(&self, ctx: Ctx, id: Value, body: Bytes) -> Response<Body> {
        let method = "tools/list";
        if self.audit.admission() != Admission::Open {
            return audit_full().reply(Some(&id));
        }
        let now_ms = self.clock.now_ms();
        if let Some(d) = pipeline::gate(&ctx.view, &ctx.caller(), &self.env(now_ms)) {
            return self.refuse(&ctx, method, d, now_ms).reply(Some(&id));
        }
        let resp = match self.send(&ctx, Method::POST, body).await {
            Ok(r) => r,
            Err(e) => return EdgeError::Upstream(e.to_string()).reply(Some(&id)),
        };
        let status = resp.status();
        if !status.is_success() {
            return self.relay(ctx, resp, None, None);
        }
        let sse_reply = upstream::is_event_stream(resp.headers());
        let mut head = resp.headers().clone();
        let bytes = match upstream::read_whole(
            resp.into_body(),
            crate::limits::WHOLE_REPLY_BYTES_MAX,
        )
        .await
        {
            Ok(b) => b,
            Err(e) => return EdgeError::Upstream(e.to_string()).reply(Some(&id)),
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
                return EdgeError::Upstream("the upstream's tools/list reply is not JSON".into())
                    .reply(Some(&id));
            };
            let (shown, total) = self.filter_tools(&ctx, &mut msg).unwrap_or((0, 0));
            (Bytes::from(msg.to_string()), shown, total)
        };
        let mut e = pipeline::entry(&ctx.caller(), method, None, self.clock.now_ms());
        e.decision = Decision::Allow;
        e.reason = format!("{shown} of {total} tools shown");
        e.upstream_status = Some(status.as_u16());
        self.finish(&ctx, &mut e);
        if self.audit.record(e).is_err() {
            return audit_full().reply(Some(&id));
        }
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
        let env = self.env(self.clock.now_ms());
        let caller = ctx.caller();
        tools.retain(|t| {
            let Some((name, info)) = ToolInfo::from_definition(t) else {
                return false;
            };
            pipeline::shows_tool(&ctx.view, &self.policies, &caller, &env, &name, &info)
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
            return EdgeError::NotInBatch(why).reply(Some(&id));
        }
        let now_ms = self.clock.now_ms();
        if let Some(d) = pipeline::gate(&ctx.view, &ctx.caller(), &self.env(now_ms)) {
            return self.refuse(&ctx, "batch", d, now_ms).reply(None);
        }
        let watched = self.watched(&ctx, None, false, None);
        self.forward_and_relay(ctx, Method::POST, body, Some(watched), None)
            .await
    }

    async fn get_stream(&self, ctx: Ctx) -> Response<Body> {
        if !accepts(&ctx.headers, "text/event-stream") {
            return EdgeError::NotAcceptable("text/event-stream").reply(None);
        }
        if ctx.session.is_none() {
            return EdgeError::NeedsSession("a GET stream").reply(None);
        }
        let now_ms = self.clock.now_ms();
        if let Some(d) = pipeline::gate(&ctx.view, &ctx.caller(), &self.env(now_ms)) {
            return match self.refuse(&ctx, "GET", d, now_ms) {
                EdgeError::Denied(d) => EdgeError::StreamRefused(d).reply(None),
                other => other.reply(None),
            };
        }
        let watched = self.watched(&ctx, None, false, None);
        self.forward_and_relay(ctx, Method::GET, Bytes::new(), Some(watched), None)
            .await
    }

    async fn delete(&self, ctx: Ctx) -> Response<Body> {
        if ctx.session.is_none() {
            return EdgeError::NeedsSession("DELETE").reply(None);
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
        for name in upstream::FORWARD_REQUEST {
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
            Err(e) => EdgeError::Upstream(e.to_string()).reply(None),
        }
    }
}

/// A named call as parsed: the request id, the method, the tool (or resource, or prompt) and
/// the arguments.
struct Named<'a> {
    id: Value,
    method: &'a str,
    action: Action,
    name: String,
    arguments: Map<String, Value>,
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
}
