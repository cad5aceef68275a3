//! Tracing and the access log on the request path: W3C context taken from the agent (MCP's
//! `params._meta` carrier first, then HTTP headers) and passed on to the upstream, the per-call
//! spans, and the one log line per decision.
//!
//! INVARIANT: an unsampled request records no span at all ([`child_span!`] makes none under a
//! disabled request span), and neither spans nor the access log carry argument values or session
//! ids.

use agentgate_model::audit::AuditEntry;
use agentgate_runtime::telemetry;
use bytes::Bytes;
use http::HeaderMap;
use opentelemetry::propagation::{Extractor, Injector};
use serde_json::{Map, Value};
use tracing_opentelemetry::OpenTelemetrySpanExt;

/// The `tracing` target of the per-request log line (`debug`, so off unless `RUST_LOG` asks for
/// it, e.g. `info,agentgate::access=debug`; disabled, it costs one relaxed load per call).
pub const ACCESS_LOG: &str = "agentgate::access";

/// A JSON object (`params._meta` of an MCP message) as a propagation carrier.
pub struct MetaCarrier<'a>(pub &'a mut Map<String, Value>);

impl Injector for MetaCarrier<'_> {
    fn set(&mut self, key: &str, value: String) {
        self.0.insert(key.to_string(), Value::String(value));
    }
}

/// A read-only JSON object as a propagation carrier.
pub struct MetaReader<'a>(pub &'a Map<String, Value>);

impl Extractor for MetaReader<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).and_then(Value::as_str)
    }

    fn keys(&self) -> Vec<&str> {
        self.0.keys().map(String::as_str).collect()
    }
}

/// Writes `cx` into the `_meta` object of `params` (created when missing).
pub fn inject_meta(params: &mut Map<String, Value>, cx: &opentelemetry::Context) {
    let meta = params
        .entry("_meta")
        .or_insert_with(|| Value::Object(Map::new()));
    if let Some(meta) = meta.as_object_mut() {
        telemetry::inject(cx, &mut MetaCarrier(meta));
    }
}

/// A JSON-RPC request body with `cx` written into `params._meta` (`traceparent`,
/// `tracestate`); any other body unchanged.
pub fn with_meta_context(body: Bytes, cx: &opentelemetry::Context) -> Bytes {
    let Ok(mut msg) = serde_json::from_slice::<Value>(&body) else {
        return body;
    };
    let Some(params) = msg.get_mut("params").and_then(Value::as_object_mut) else {
        return body;
    };
    inject_meta(params, cx);
    serde_json::to_vec(&msg).map(Bytes::from).unwrap_or(body)
}

/// Parents a request's span on the caller's trace: `params._meta` (MCP's own carrier) first,
/// then the HTTP headers. Nothing when traces are off or the caller sent no valid context.
pub fn continue_trace(
    span: &tracing::Span,
    meta: Option<&Map<String, Value>>,
    headers: &HeaderMap,
) {
    if span.is_disabled() {
        return;
    }
    let from_meta = meta.map(|m| telemetry::extract(&MetaReader(m)));
    let cx = match from_meta {
        Some(cx) if telemetry::has_span(&cx) => cx,
        _ => telemetry::extract(&telemetry::HeaderReader(headers)),
    };
    if telemetry::has_span(&cx) {
        let _ = span.set_parent(cx);
    }
}

/// The trace id of a W3C `traceparent` (`00-<trace id>-<span id>-<flags>`).
pub fn trace_id(traceparent: &str) -> Option<String> {
    let id = traceparent.split('-').nth(1)?;
    (id.len() == 32 && id.bytes().all(|b| b.is_ascii_hexdigit())).then(|| id.to_string())
}

/// A span under the request's span (`$parent`, a `tracing::Span`), or none when the request is
/// not traced: an unsampled request records no span at all, and a child must not start a trace
/// of its own.
macro_rules! child_span {
    ($parent:expr, $($span:tt)+) => {
        if $parent.is_disabled() {
            tracing::Span::none()
        } else {
            tracing::info_span!(target: agentgate_runtime::telemetry::TARGET, $($span)+)
        }
    };
}
pub(crate) use child_span;

/// Logs a decision (at [`ACCESS_LOG`]) and records it on the current request span: names,
/// versions and outcomes only — never argument values or session ids (the digest stays in the
/// audit record).
pub fn trace_decision(e: &AuditEntry) {
    tracing::debug!(
        target: ACCESS_LOG,
        tenant = %e.tenant,
        agent = %e.agent,
        method = %e.method,
        tool = e.tool.as_deref(),
        decision = e.decision.as_str(),
        reason = %e.reason,
        policy_version = e.policy_version.as_deref(),
        "decision"
    );
    let span = tracing::Span::current();
    if span.is_disabled() {
        return;
    }
    span.record("mcp.method.name", e.method.as_str());
    if let Some(t) = &e.tool {
        span.record("gen_ai.tool.name", t.as_str());
    }
    span.record("agentgate.decision", e.decision.as_str());
    if !e.reason.is_empty() {
        span.record("agentgate.reason", e.reason.as_str());
    }
    if let Some(v) = &e.policy_version {
        span.record("agentgate.policy.version", v.as_str());
    }
    if !e.policy_ids.is_empty() {
        span.record("agentgate.policy.ids", e.policy_ids.join(",").as_str());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const PARENT: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

    #[test]
    fn w3c_context_round_trips_through_meta() {
        let mut meta = Map::new();
        meta.insert("traceparent".into(), PARENT.into());
        let cx = telemetry::extract(&MetaReader(&meta));
        assert!(telemetry::has_span(&cx));
        assert_eq!(
            telemetry::trace_id(&cx).as_deref(),
            Some("4bf92f3577b34da6a3ce929d0e0e4736")
        );
        let mut params = Map::new();
        inject_meta(&mut params, &cx);
        assert_eq!(params["_meta"]["traceparent"], PARENT);
        let body = with_meta_context(Bytes::from_static(br#"{"params":{"x":1}}"#), &cx);
        let v: Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(v["params"]["_meta"]["traceparent"], PARENT);
        assert_eq!(v["params"]["x"], 1);
        let other = Bytes::from_static(b"[1,2]");
        assert_eq!(with_meta_context(other.clone(), &cx), other);
    }

    #[test]
    fn malformed_meta_context_is_no_parent() {
        let mut meta = Map::new();
        meta.insert("traceparent".into(), "00-zz-00f067aa0ba902b7-01".into());
        assert!(!telemetry::has_span(&telemetry::extract(&MetaReader(
            &meta
        ))));
    }

    #[test]
    fn trace_ids_come_from_valid_traceparents_only() {
        assert_eq!(
            trace_id(PARENT).as_deref(),
            Some("4bf92f3577b34da6a3ce929d0e0e4736")
        );
        assert_eq!(trace_id("garbage"), None);
        assert_eq!(trace_id("00-xyz-1-01"), None);
    }
}
