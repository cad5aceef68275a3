//! MCP over JSON-RPC 2.0: parsing an agent's POST body into what the gateway decides on.
//!
//! Pure and bounded: the caller enforces the body size; [`parse`] enforces nesting depth and
//! batch size before it deserializes, checks the JSON-RPC shape, finds the protocol revision,
//! and, for the stateless 2026-07-28 revision, checks the `Mcp-Method` / `Mcp-Name` headers
//! against the body: decisions are taken from the body, never from headers alone.

use crate::limits::{BATCH_MESSAGES_MAX, JSON_DEPTH_MAX};
use serde_json::{Map, Value};

/// Revisions the gateway speaks.
pub const REVISIONS: [&str; 5] = [
    "2024-11-05",
    "2025-03-26",
    "2025-06-18",
    "2025-11-25",
    "2026-07-28",
];
/// The stateless revision (no handshake, no session, version in `params._meta`).
pub const STATELESS: &str = "2026-07-28";
/// `params._meta` key carrying the revision in the stateless revision.
pub const META_VERSION: &str = "io.modelcontextprotocol/protocolVersion";

/// JSON-RPC and MCP error codes the gateway answers with.
pub mod code {
    pub const PARSE_ERROR: i64 = -32700;
    pub const INVALID_REQUEST: i64 = -32600;
    pub const METHOD_NOT_FOUND: i64 = -32601;
    pub const INVALID_PARAMS: i64 = -32602;
    /// A `Mcp-Method` / `Mcp-Name` header that does not match the body.
    pub const HEADER_MISMATCH: i64 = -32020;
}

/// A malformed message, with the HTTP status and JSON-RPC error the transport spec prescribes.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct ParseError {
    pub http_status: u16,
    pub code: i64,
    pub message: String,
    /// The request id, when it could be read (errors echo it).
    pub id: Option<Value>,
}

fn err(code: i64, message: impl Into<String>, id: Option<Value>) -> ParseError {
    ParseError {
        http_status: 400,
        code,
        message: message.into(),
        id,
    }
}

/// What an MCP request asks for, as far as decisions go.
#[derive(Debug, Clone, PartialEq)]
pub enum Operation {
    Initialize {
        requested_version: String,
    },
    Discover,
    ListTools,
    CallTool {
        name: String,
        arguments: Map<String, Value>,
    },
    ListResources,
    ReadResource {
        uri: String,
    },
    ListPrompts,
    GetPrompt {
        name: String,
    },
    Ping,
    /// Any other method: forwarded only if policy allows it by method name.
    Other,
}

/// One JSON-RPC message.
#[derive(Debug, Clone, PartialEq)]
pub enum Message {
    Request {
        id: Value,
        method: String,
        params: Map<String, Value>,
        op: Operation,
    },
    Notification {
        method: String,
        params: Map<String, Value>,
    },
    /// A response from the client (to a server-initiated request).
    Response { id: Value },
}

impl Message {
    pub fn method(&self) -> Option<&str> {
        match self {
            Message::Request { method, .. } | Message::Notification { method, .. } => Some(method),
            Message::Response { .. } => None,
        }
    }

    /// `params._meta`, if present.
    pub fn meta(&self) -> Option<&Map<String, Value>> {
        match self {
            Message::Request { params, .. } | Message::Notification { params, .. } => {
                params.get("_meta").and_then(Value::as_object)
            }
            Message::Response { .. } => None,
        }
    }
}

/// The headers [`parse`] looks at (already extracted by the HTTP layer).
#[derive(Debug, Clone, Default)]
pub struct Headers<'a> {
    pub protocol_version: Option<&'a str>,
    pub mcp_method: Option<&'a str>,
    pub mcp_name: Option<&'a str>,
}

/// A parsed POST body.
#[derive(Debug, Clone, PartialEq)]
pub struct Parsed {
    pub messages: Vec<Message>,
    pub batch: bool,
    /// The protocol revision in force for this request.
    pub revision: String,
}

/// Rejects nesting deeper than `max` with a linear scan, before any recursive parsing.
fn check_depth(body: &[u8], max: usize) -> Result<(), ParseError> {
    let (mut depth, mut in_string, mut escaped) = (0usize, false, false);
    for &b in body {
        if in_string {
            match (escaped, b) {
                (true, _) => escaped = false,
                (false, b'\\') => escaped = true,
                (false, b'"') => in_string = false,
                _ => {}
            }
            continue;
        }
        match b {
            b'"' => in_string = true,
            b'{' | b'[' => {
                depth += 1;
                if depth > max {
                    return Err(err(
                        code::PARSE_ERROR,
                        format!("JSON nested deeper than {max} levels"),
                        None,
                    ));
                }
            }
            b'}' | b']' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    Ok(())
}

fn string_param(params: &Map<String, Value>, key: &str, id: &Value) -> Result<String, ParseError> {
    params
        .get(key)
        .and_then(Value::as_str)
        .map(str::to_string)
        .ok_or_else(|| {
            err(
                code::INVALID_PARAMS,
                format!("params.{key} must be a string"),
                Some(id.clone()),
            )
        })
}

fn operation(
    method: &str,
    params: &Map<String, Value>,
    id: &Value,
) -> Result<Operation, ParseError> {
    Ok(match method {
        "initialize" => Operation::Initialize {
            requested_version: string_param(params, "protocolVersion", id)?,
        },
        "server/discover" => Operation::Discover,
        "tools/list" => Operation::ListTools,
        "tools/call" => {
            let name = string_param(params, "name", id)?;
            let arguments = match params.get("arguments") {
                None | Some(Value::Null) => Map::new(),
                Some(Value::Object(m)) => m.clone(),
                Some(_) => {
                    return Err(err(
                        code::INVALID_PARAMS,
                        "params.arguments must be an object",
                        Some(id.clone()),
                    ));
                }
            };
            Operation::CallTool { name, arguments }
        }
        "resources/list" => Operation::ListResources,
        "resources/read" => Operation::ReadResource {
            uri: string_param(params, "uri", id)?,
        },
        "prompts/list" => Operation::ListPrompts,
        "prompts/get" => Operation::GetPrompt {
            name: string_param(params, "name", id)?,
        },
        "ping" => Operation::Ping,
        _ => Operation::Other,
    })
}

fn message(v: Value) -> Result<Message, ParseError> {
    let Value::Object(mut o) = v else {
        return Err(err(
            code::INVALID_REQUEST,
            "a JSON-RPC message must be an object",
            None,
        ));
    };
    let id = o.remove("id");
    if let Some(i) = &id
        && !(i.is_string() || i.is_i64() || i.is_u64())
    {
        return Err(err(
            code::INVALID_REQUEST,
            "id must be a string or an integer",
            None,
        ));
    }
    if o.get("jsonrpc").and_then(Value::as_str) != Some("2.0") {
        return Err(err(code::INVALID_REQUEST, "jsonrpc must be \"2.0\"", id));
    }
    let params = match o.remove("params") {
        None | Some(Value::Null) => Map::new(),
        Some(Value::Object(m)) => m,
        Some(_) => return Err(err(code::INVALID_REQUEST, "params must be an object", id)),
    };
    match (o.remove("method"), id) {
        (Some(Value::String(method)), Some(id)) => {
            let op = operation(&method, &params, &id)?;
            Ok(Message::Request {
                id,
                method,
                params,
                op,
            })
        }
        (Some(Value::String(method)), None) => Ok(Message::Notification { method, params }),
        (Some(_), id) => Err(err(code::INVALID_REQUEST, "method must be a string", id)),
        (None, Some(id)) if o.contains_key("result") || o.contains_key("error") => {
            Ok(Message::Response { id })
        }
        (None, id) => Err(err(
            code::INVALID_REQUEST,
            "a message needs a method, or a result or error",
            id,
        )),
    }
}

/// Parses a POST body. `session_revision` is the revision negotiated for the session, if any.
pub fn parse(
    body: &[u8],
    headers: &Headers<'_>,
    session_revision: Option<&str>,
) -> Result<Parsed, ParseError> {
    check_depth(body, JSON_DEPTH_MAX)?;
    let value: Value = serde_json::from_slice(body)
        .map_err(|e| err(code::PARSE_ERROR, format!("invalid JSON: {e}"), None))?;
    let (messages, batch) = match value {
        Value::Array(items) => {
            if items.is_empty() {
                return Err(err(code::INVALID_REQUEST, "an empty batch", None));
            }
            if items.len() > BATCH_MESSAGES_MAX {
                return Err(err(
                    code::INVALID_REQUEST,
                    format!("a batch holds at most {BATCH_MESSAGES_MAX} messages"),
                    None,
                ));
            }
            (
                items
                    .into_iter()
                    .map(message)
                    .collect::<Result<Vec<_>, _>>()?,
                true,
            )
        }
        v => (vec![message(v)?], false),
    };
    let first = messages
        .first()
        .ok_or_else(|| err(code::INVALID_REQUEST, "no message", None))?;
    let meta_version = first
        .meta()
        .and_then(|m| m.get(META_VERSION))
        .and_then(Value::as_str);
    let revision = match (
        meta_version,
        headers.protocol_version,
        session_revision,
        &first,
    ) {
        (Some(v), _, _, _) => v.to_string(),
        (None, Some(h), _, _) => h.to_string(),
        (None, None, Some(s), _) => s.to_string(),
        (
            None,
            None,
            None,
            Message::Request {
                op: Operation::Initialize { requested_version },
                ..
            },
        ) => requested_version.clone(),
        // A 2025-03-26 client never sends the header after initialize.
        (None, None, None, _) => "2025-03-26".to_string(),
    };
    if !REVISIONS.contains(&revision.as_str()) {
        return Err(ParseError {
            http_status: 400,
            code: code::INVALID_REQUEST,
            message: format!(
                "unsupported protocol version `{revision}`; supported: {}",
                REVISIONS.join(", ")
            ),
            id: None,
        });
    }
    if let (Some(h), Some(m)) = (headers.protocol_version, meta_version)
        && h != m
    {
        return Err(err(
            code::HEADER_MISMATCH,
            format!("MCP-Protocol-Version `{h}` does not match params._meta `{m}`"),
            None,
        ));
    }
    if batch && revision != "2025-03-26" {
        return Err(err(
            code::INVALID_REQUEST,
            format!("batches are not part of protocol version {revision}"),
            None,
        ));
    }
    if revision == STATELESS {
        check_routing_headers(first, headers)?;
    }
    Ok(Parsed {
        messages,
        batch,
        revision,
    })
}

/// In the stateless revision `Mcp-Method` (and for named operations `Mcp-Name`) must be sent and
/// must equal what the body says.
fn check_routing_headers(m: &Message, h: &Headers<'_>) -> Result<(), ParseError> {
    let id = match m {
        Message::Request { id, .. } => Some(id.clone()),
        _ => None,
    };
    let Some(method) = m.method() else {
        return Ok(());
    };
    match h.mcp_method {
        None => {
            return Err(err(
                code::HEADER_MISMATCH,
                "the Mcp-Method header is required",
                id,
            ));
        }
        Some(hm) if hm != method => {
            return Err(err(
                code::HEADER_MISMATCH,
                format!("Mcp-Method `{hm}` does not match the body's method `{method}`"),
                id,
            ));
        }
        Some(_) => {}
    }
    let name = match m {
        Message::Request {
            op: Operation::CallTool { name, .. } | Operation::GetPrompt { name },
            ..
        } => Some(name),
        Message::Request {
            op: Operation::ReadResource { uri },
            ..
        } => Some(uri),
        _ => None,
    };
    if let Some(name) = name {
        match h.mcp_name {
            Some(hn) if hn == name => {}
            Some(hn) => {
                return Err(err(
                    code::HEADER_MISMATCH,
                    format!("Mcp-Name `{hn}` does not match the body's `{name}`"),
                    id,
                ));
            }
            None => {
                return Err(err(
                    code::HEADER_MISMATCH,
                    "the Mcp-Name header is required",
                    id,
                ));
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests;
