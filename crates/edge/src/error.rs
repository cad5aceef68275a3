//! The edge's one error type, and its one mapping to the wire: [`EdgeError::reply`] gives the
//! HTTP status, the JSON-RPC error (code, message, `data`) and the headers of every refusal the
//! MCP endpoint answers. `docs/errors.md` documents the same table; a test reads the document
//! and checks it against [`EdgeError::wire`] so the two cannot drift.

use bytes::Bytes;
use http::header::{ALLOW, RETRY_AFTER, WWW_AUTHENTICATE};
use http::{HeaderValue, Response, StatusCode};
use serde_json::{Value, json};

use crate::decision::AuthError;
use crate::gate::{Denial, code};
use crate::mcp::{self, ParseError};
use crate::relay::{Body, full};

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum EdgeError {
    #[error("not found: the MCP endpoint is /t/{{tenant}}/{{server}}/mcp")]
    NoRoute,
    #[error("Origin `{0}` is not allowed")]
    OriginForbidden(String),
    #[error("use POST, GET or DELETE")]
    MethodNotAllowed,
    #[error("unauthorized: {0}")]
    Unauthorized(AuthError),
    #[error("no MCP server `{server}` for tenant `{tenant}`")]
    NoServer { tenant: String, server: String },
    #[error("session not found: {0}; start a new session")]
    SessionNotFound(String),
    #[error("Content-Type must be application/json")]
    UnsupportedMediaType,
    /// What `Accept` must list.
    #[error("Accept must list {0}")]
    NotAcceptable(&'static str),
    #[error("the request body exceeds {0} bytes")]
    TooLarge(usize),
    #[error("reading the body: {0}")]
    BodyRead(String),
    /// A malformed message (the status and code the transport spec prescribes).
    #[error("{}", .0.message)]
    Parse(ParseError),
    #[error("no message")]
    NoMessage,
    #[error("method `{0}` is not one this gateway relays")]
    MethodNotRelayed(String),
    /// A batch refused as a whole (a request in it must be sent alone, or is not relayed).
    #[error("{0}")]
    NotInBatch(String),
    /// A request that needs a session (`GET` streams, `DELETE`).
    #[error("{0} needs an Mcp-Session-Id")]
    NeedsSession(&'static str),
    /// The upstream failed, or its registry entry is unusable.
    #[error("{0}")]
    Upstream(String),
    /// A gateway decision: a JSON-RPC error with HTTP 200, never a bare 403.
    #[error("{}", .0.reason)]
    Denied(Denial),
    /// Refused undecided (overload): the overload denial as HTTP 503.
    #[error("{0}")]
    TurnedAway(String),
    /// A `GET` stream refused by a kill switch or staleness: the denial as HTTP 403.
    #[error("{}", .0.reason)]
    StreamRefused(Denial),
}

/// The overload denial: retry in a second.
pub fn overload(reason: &str) -> Denial {
    Denial {
        retry_after_ms: Some(1000),
        ..Denial::new(code::OVERLOADED, reason)
    }
}

/// A JSON-RPC error message.
pub fn rpc_error_body(id: Option<&Value>, code: i64, message: &str, data: Option<Value>) -> Value {
    let mut error = json!({"code": code, "message": message});
    if let (Some(d), Some(o)) = (data, error.as_object_mut()) {
        o.insert("data".into(), d);
    }
    json!({"jsonrpc": "2.0", "id": id.cloned().unwrap_or(Value::Null), "error": error})
}

/// A denial as a JSON-RPC error message (also sent as an SSE event when a stream is cut).
pub fn denial_body(id: Option<&Value>, d: &Denial) -> Value {
    rpc_error_body(id, d.code, &d.reason, serde_json::to_value(d).ok())
}

impl EdgeError {
    /// The HTTP status and JSON-RPC error code this error answers with.
    pub fn wire(&self) -> (StatusCode, i64) {
        use EdgeError::*;
        let invalid = mcp::code::INVALID_REQUEST;
        match self {
            NoRoute | NoServer { .. } | SessionNotFound(_) => (StatusCode::NOT_FOUND, invalid),
            OriginForbidden(_) => (StatusCode::FORBIDDEN, invalid),
            MethodNotAllowed => (StatusCode::METHOD_NOT_ALLOWED, invalid),
            Unauthorized(_) => (StatusCode::UNAUTHORIZED, invalid),
            UnsupportedMediaType => (StatusCode::UNSUPPORTED_MEDIA_TYPE, invalid),
            NotAcceptable(_) => (StatusCode::NOT_ACCEPTABLE, invalid),
            TooLarge(_) => (StatusCode::PAYLOAD_TOO_LARGE, invalid),
            BodyRead(_) => (StatusCode::BAD_REQUEST, mcp::code::PARSE_ERROR),
            Parse(e) => (
                StatusCode::from_u16(e.http_status).unwrap_or(StatusCode::BAD_REQUEST),
                e.code,
            ),
            NoMessage | NeedsSession(_) => (StatusCode::BAD_REQUEST, invalid),
            MethodNotRelayed(_) => (StatusCode::OK, mcp::code::METHOD_NOT_FOUND),
            NotInBatch(_) => (StatusCode::OK, invalid),
            Upstream(_) => (StatusCode::BAD_GATEWAY, code::UPSTREAM),
            Denied(d) => (StatusCode::OK, d.code),
            TurnedAway(_) => (StatusCode::SERVICE_UNAVAILABLE, code::OVERLOADED),
            StreamRefused(d) => (StatusCode::FORBIDDEN, d.code),
        }
    }

    /// The reply: status, JSON-RPC error body (with the request's `id` when it is known) and
    /// headers (`Allow`, `WWW-Authenticate`, `Retry-After`).
    pub fn reply(&self, id: Option<&Value>) -> Response<Body> {
        let (status, code) = self.wire();
        let (body, retry_after_ms) = match self {
            EdgeError::Denied(d) | EdgeError::StreamRefused(d) => {
                (denial_body(id, d), d.retry_after_ms)
            }
            EdgeError::TurnedAway(reason) => {
                let d = overload(reason);
                (denial_body(id, &d), d.retry_after_ms)
            }
            EdgeError::Unauthorized(e) => (
                rpc_error_body(
                    id,
                    code,
                    &self.to_string(),
                    Some(json!({"reason": e.to_string()})),
                ),
                None,
            ),
            EdgeError::Parse(e) => (
                rpc_error_body(id.or(e.id.as_ref()), code, &e.message, None),
                None,
            ),
            _ => (rpc_error_body(id, code, &self.to_string(), None), None),
        };
        let mut r = full(status, "application/json", Bytes::from(body.to_string()));
        let h = r.headers_mut();
        match self {
            EdgeError::MethodNotAllowed => {
                h.insert(ALLOW, HeaderValue::from_static("GET, POST, DELETE"));
            }
            EdgeError::Unauthorized(_) => {
                h.insert(
                    WWW_AUTHENTICATE,
                    HeaderValue::from_static("Bearer realm=\"agentgate\""),
                );
            }
            _ => {}
        }
        if let Some(ms) = retry_after_ms
            && let Ok(v) = HeaderValue::from_str(&ms.div_ceil(1000).max(1).to_string())
        {
            h.insert(RETRY_AFTER, v);
        }
        r
    }
}

impl From<ParseError> for EdgeError {
    fn from(e: ParseError) -> Self {
        EdgeError::Parse(e)
    }
}

#[cfg(test)]
mod tests;
