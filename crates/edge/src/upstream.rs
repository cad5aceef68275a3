//! Talking to upstream MCP servers: one pooled HTTP client for all of them, the header allowlist
//! in both directions, and the edge's own `tools/list` fetch for its catalog.
//!
//! INVARIANT: nothing of the agent's reaches an upstream unless listed in [`FORWARD_REQUEST`]: not
//! its `Authorization` (the agent's gateway key), `Cookie`, `Origin` or `Host` (the client sets
//! `Host` to the upstream's authority from the URL).

use std::time::Duration;

use bytes::Bytes;
use http::header::{ACCEPT, CONTENT_TYPE, HeaderName, HeaderValue};
use http::{HeaderMap, Method, Request, Response, Uri};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use serde_json::{Value, json};

use agentgate_runtime::net::Dialer;
use agentgate_runtime::telemetry;

use crate::limits::{CATALOG_PAGES_MAX, WHOLE_REPLY_BYTES_MAX};
use crate::mcp::{META_VERSION, STATELESS};
use crate::sse;

pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

pub const MCP_SESSION_ID: HeaderName = HeaderName::from_static("mcp-session-id");
pub const MCP_PROTOCOL_VERSION: HeaderName = HeaderName::from_static("mcp-protocol-version");
pub const MCP_METHOD: HeaderName = HeaderName::from_static("mcp-method");
pub const MCP_NAME: HeaderName = HeaderName::from_static("mcp-name");
pub const TRACEPARENT: HeaderName = HeaderName::from_static("traceparent");

/// Request headers passed from the agent to the upstream (the session id is rewritten apart).
pub const FORWARD_REQUEST: [&str; 8] = [
    "content-type",
    "accept",
    "mcp-protocol-version",
    "mcp-method",
    "mcp-name",
    "last-event-id",
    "traceparent",
    "tracestate",
];
/// Response headers passed from the upstream to the agent (the session id is rewritten apart).
pub const FORWARD_RESPONSE: [&str; 4] = [
    "content-type",
    "cache-control",
    "mcp-protocol-version",
    "retry-after",
];

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UpstreamError {
    #[error("the upstream URL `{0}` is not usable: {1}")]
    BadUrl(String, String),
    #[error("the upstream did not answer within {0:?}")]
    Timeout(Duration),
    #[error("the upstream cannot be reached: {0}")]
    Unreachable(String),
    #[error("the upstream's reply is not usable: {0}")]
    BadReply(String),
}

/// The pooled client. Cheap to clone.
#[derive(Clone)]
pub struct Upstreams {
    client: Client<Dialer, Full<Bytes>>,
    header_timeout: Duration,
}

impl Upstreams {
    /// `header_timeout` bounds the wait for the response head; bodies (streams) may run longer.
    /// Connections are opened by `dialer` (within its connect timeout).
    pub fn new(header_timeout: Duration, dialer: Dialer) -> Self {
        let client = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(Duration::from_secs(90))
            .pool_max_idle_per_host(1024)
            .build(dialer);
        Upstreams {
            client,
            header_timeout,
        }
    }

    /// Parses a registry URL (plain `http://`: TLS to upstreams is not built yet).
    pub fn uri(url: &str) -> Result<Uri, UpstreamError> {
        let uri: Uri = url
            .parse()
            .map_err(|e: http::uri::InvalidUri| UpstreamError::BadUrl(url.into(), e.to_string()))?;
        match uri.scheme_str() {
            Some("http") if uri.authority().is_some() => Ok(uri),
            Some("https") => Err(UpstreamError::BadUrl(
                url.into(),
                "https upstreams are not supported by this edge yet".into(),
            )),
            _ => Err(UpstreamError::BadUrl(
                url.into(),
                "expected http://host:port/path".into(),
            )),
        }
    }

    /// Sends a request and waits for the response head.
    pub async fn send(
        &self,
        req: Request<Full<Bytes>>,
    ) -> Result<Response<Incoming>, UpstreamError> {
        match tokio::time::timeout(self.header_timeout, self.client.request(req)).await {
            Err(_) => Err(UpstreamError::Timeout(self.header_timeout)),
            Ok(Err(e)) => Err(UpstreamError::Unreachable(error_chain(&e))),
            Ok(Ok(r)) => Ok(r),
        }
    }

    /// Fetches every page of the upstream's tool list, as the edge itself (for its catalog).
    pub async fn fetch_tools(
        &self,
        uri: &Uri,
        upstream_session: Option<&str>,
        revision: &str,
        trace: Option<&opentelemetry::Context>,
    ) -> Result<Vec<Value>, UpstreamError> {
        let mut tools = Vec::new();
        let mut cursor: Option<String> = None;
        for _ in 0..CATALOG_PAGES_MAX {
            let mut params = serde_json::Map::new();
            if let Some(c) = &cursor {
                params.insert("cursor".into(), json!(c));
            }
            if revision == STATELESS {
                params.insert(
                    "_meta".into(),
                    json!({
                        META_VERSION: STATELESS,
                        "io.modelcontextprotocol/clientInfo": {"name": "agentgate-edge", "version": env!("CARGO_PKG_VERSION")},
                        "io.modelcontextprotocol/clientCapabilities": {},
                    }),
                );
            }
            // The upstream continues the trace of the call that needed the catalog.
            if let Some(cx) = trace {
                crate::trace::inject_meta(&mut params, cx);
            }
            let body = json!({"jsonrpc": "2.0", "id": "agentgate-catalog", "method": "tools/list", "params": params});
            let mut req = Request::builder()
                .method(Method::POST)
                .uri(uri.clone())
                .header(CONTENT_TYPE, "application/json")
                .header(ACCEPT, "application/json, text/event-stream")
                .header(MCP_METHOD, "tools/list");
            if let Ok(v) = HeaderValue::from_str(revision) {
                req = req.header(MCP_PROTOCOL_VERSION, v);
            }
            if let Some(s) = upstream_session.and_then(|s| HeaderValue::from_str(s).ok()) {
                req = req.header(MCP_SESSION_ID, s);
            }
            let mut req = req
                .body(Full::new(Bytes::from(body.to_string())))
                .map_err(|e| UpstreamError::BadReply(e.to_string()))?;
            if let Some(cx) = trace {
                telemetry::inject(cx, &mut telemetry::HeaderCarrier(req.headers_mut()));
            }
            let resp = self.send(req).await?;
            if !resp.status().is_success() {
                return Err(UpstreamError::BadReply(format!(
                    "tools/list answered HTTP {}",
                    resp.status()
                )));
            }
            let sse = is_event_stream(resp.headers());
            let bytes = read_whole(resp.into_body(), WHOLE_REPLY_BYTES_MAX).await?;
            let result = reply_messages(&bytes, sse)
                .into_iter()
                .find(|m| m.get("id") == Some(&json!("agentgate-catalog")))
                .and_then(|m| m.get("result").cloned())
                .ok_or_else(|| UpstreamError::BadReply("tools/list returned no result".into()))?;
            if let Some(page) = result.get("tools").and_then(Value::as_array) {
                tools.extend(page.iter().cloned());
            }
            cursor = result
                .get("nextCursor")
                .and_then(Value::as_str)
                .map(str::to_string);
            if cursor.is_none() {
                break;
            }
        }
        Ok(tools)
    }
}

/// An error and its sources on one line (hyper's top-level messages are terse).
pub fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut src = e.source();
    while let Some(x) = src {
        s.push_str(": ");
        s.push_str(&x.to_string());
        src = x.source();
    }
    s
}

pub fn is_event_stream(h: &HeaderMap) -> bool {
    h.get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("text/event-stream"))
}

/// Reads a whole body, refusing more than `max` bytes.
pub async fn read_whole<B>(body: B, max: usize) -> Result<Bytes, UpstreamError>
where
    B: hyper::body::Body<Data = Bytes>,
    B::Error: Into<BoxError>,
{
    Limited::new(body, max)
        .collect()
        .await
        .map(|c| c.to_bytes())
        .map_err(|e| UpstreamError::BadReply(format!("reading the reply: {e}")))
}

/// The JSON-RPC messages of a finished reply, JSON or SSE.
pub fn reply_messages(body: &[u8], sse: bool) -> Vec<Value> {
    let values: Vec<Value> = if sse {
        let text = String::from_utf8_lossy(body);
        sse::parse(&text)
            .into_iter()
            .filter_map(|e| e.data)
            .filter_map(|d| serde_json::from_str(&d).ok())
            .collect()
    } else {
        serde_json::from_slice(body).into_iter().collect()
    };
    values
        .into_iter()
        .flat_map(|v| match v {
            Value::Array(items) => items,
            v => vec![v],
        })
        .collect()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn only_plain_http_urls_with_an_authority() {
        assert!(Upstreams::uri("http://127.0.0.1:8000/mcp").is_ok());
        assert!(Upstreams::uri("https://example.com/mcp").is_err());
        assert!(Upstreams::uri("/mcp").is_err());
        assert!(Upstreams::uri("not a url").is_err());
    }

    #[test]
    fn messages_from_json_and_sse_replies() {
        let json = br#"{"jsonrpc":"2.0","id":1,"result":{}}"#;
        assert_eq!(reply_messages(json, false).len(), 1);
        let sse = b"event: message\ndata: {\"jsonrpc\":\"2.0\",\"method\":\"n\"}\n\nevent: message\ndata: {\"jsonrpc\":\"2.0\",\"id\":1,\"result\":{}}\n\n";
        assert_eq!(reply_messages(sse, true).len(), 2);
        assert!(reply_messages(b"garbage", false).is_empty());
    }
}
