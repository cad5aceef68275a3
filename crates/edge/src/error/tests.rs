use std::collections::BTreeSet;
use std::path::PathBuf;

use serde_json::json;

use super::*;
use crate::mcp::{Headers, META_VERSION, STATELESS};

const H0: Headers<'static> = Headers {
    protocol_version: None,
    mcp_method: None,
    mcp_name: None,
};

fn parse_error(body: serde_json::Value, headers: &Headers<'_>) -> EdgeError {
    let raw = body.to_string();
    EdgeError::Parse(mcp::parse(raw.as_bytes(), headers, None).unwrap_err())
}

/// One of every error the endpoint answers, the malformed-message ones produced by the real
/// parser, the decisions with every gateway code.
fn every_error() -> Vec<EdgeError> {
    let mut all = vec![
        EdgeError::NoRoute,
        EdgeError::OriginForbidden("https://evil.example".into()),
        EdgeError::MethodNotAllowed,
        EdgeError::Unauthorized(AuthError::Missing),
        EdgeError::NoServer {
            tenant: "t".into(),
            server: "s".into(),
        },
        EdgeError::SessionNotFound("bad signature".into()),
        EdgeError::UnsupportedMediaType,
        EdgeError::NotAcceptable("text/event-stream"),
        EdgeError::TooLarge(4 << 20),
        EdgeError::BodyRead("connection reset".into()),
        EdgeError::NoMessage,
        EdgeError::MethodNotRelayed("x/y".into()),
        EdgeError::NotInBatch("`tools/call` must be sent on its own, not in a batch".into()),
        EdgeError::NeedsSession("DELETE"),
        EdgeError::Upstream("the upstream cannot be reached".into()),
        EdgeError::TurnedAway("too many requests in flight".into()),
        EdgeError::StreamRefused(Denial::new(code::KILLED, "stopped")),
        EdgeError::Parse(mcp::parse(b"{not json", &H0, None).unwrap_err()),
        parse_error(json!({"id": 1, "method": "ping"}), &H0),
        parse_error(
            json!({"jsonrpc": "2.0", "id": 1, "method": "tools/call",
                   "params": {"_meta": {META_VERSION: STATELESS}}}),
            &H0,
        ),
        parse_error(
            json!({"jsonrpc": "2.0", "id": 1, "method": "tools/call",
                   "params": {"name": "echo", "_meta": {META_VERSION: STATELESS}}}),
            &Headers {
                mcp_method: Some("tools/call"),
                mcp_name: Some("other"),
                ..H0
            },
        ),
    ];
    for c in [
        code::KILLED,
        code::STALE,
        code::POLICY_DENIED,
        code::APPROVAL_REQUIRED,
        code::NO_POLICY,
        code::OVERLOADED,
        code::APPROVALS_FULL,
        mcp::code::INVALID_PARAMS,
    ] {
        all.push(EdgeError::Denied(Denial::new(c, "decided")));
    }
    all
}

fn errors_md() -> String {
    let path = std::env::var_os("CARGO_MANIFEST_DIR")
        .map_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")), PathBuf::from)
        .join("../../docs/errors.md");
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// The first cell of every table row of the document that is a number.
fn documented() -> (BTreeSet<i64>, BTreeSet<u16>) {
    let (mut codes, mut statuses) = (BTreeSet::new(), BTreeSet::new());
    for line in errors_md().lines() {
        let Some(cell) = line.strip_prefix('|').and_then(|l| l.split('|').next()) else {
            continue;
        };
        let cell = cell.trim();
        if let Ok(c) = cell.parse::<i64>() {
            if c < 0 {
                codes.insert(c);
            } else if let Ok(s) = u16::try_from(c) {
                statuses.insert(s);
            }
        }
    }
    (codes, statuses)
}

#[test]
fn docs_errors_md_lists_exactly_what_the_edge_answers() {
    let (doc_codes, doc_statuses) = documented();
    let mut codes = BTreeSet::new();
    let mut statuses = BTreeSet::new();
    for e in every_error() {
        let (status, code) = e.wire();
        codes.insert(code);
        if status != StatusCode::OK && status != StatusCode::BAD_REQUEST {
            statuses.insert(status.as_u16());
        }
    }
    // 400 is the malformed-input table's default ("HTTP 400 unless noted"); 502 is noted there.
    let doc_statuses: BTreeSet<u16> = doc_statuses.into_iter().collect();
    let mut expected_statuses = statuses.clone();
    expected_statuses.remove(&502);
    assert_eq!(
        doc_codes, codes,
        "JSON-RPC codes in docs/errors.md vs what the edge answers"
    );
    assert_eq!(
        doc_statuses, expected_statuses,
        "HTTP statuses in docs/errors.md's transport table vs what the edge answers"
    );
}

#[test]
fn replies_carry_the_status_code_data_and_headers() {
    for e in every_error() {
        let (status, code) = e.wire();
        let r = e.reply(Some(&json!(7)));
        assert_eq!(r.status(), status, "{e:?}");
        let _ = code;
    }
    let r = EdgeError::MethodNotAllowed.reply(None);
    assert_eq!(r.headers()[ALLOW], "GET, POST, DELETE");
    let r = EdgeError::Unauthorized(AuthError::Unknown).reply(None);
    assert!(r.headers().contains_key(WWW_AUTHENTICATE));
    let stale = Denial {
        retry_after_ms: Some(2500),
        ..Denial::new(code::STALE, "stale")
    };
    let r = EdgeError::Denied(stale).reply(Some(&json!(7)));
    assert_eq!(r.headers()[RETRY_AFTER], "3");
    let r = EdgeError::TurnedAway("full".into()).reply(None);
    assert_eq!(r.headers()[RETRY_AFTER], "1");
}

#[test]
fn bodies_are_json_rpc_errors_with_the_request_id() {
    use http_body_util::BodyExt;
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let body = |e: EdgeError, id: Option<serde_json::Value>| -> serde_json::Value {
        let r = e.reply(id.as_ref());
        let bytes = rt.block_on(r.into_body().collect()).unwrap().to_bytes();
        serde_json::from_slice(&bytes).unwrap()
    };
    let d = Denial {
        policy_ids: vec!["p1".into()],
        ..Denial::new(code::POLICY_DENIED, "forbidden by policy")
    };
    let v = body(EdgeError::Denied(d), Some(json!(7)));
    assert_eq!(v["id"], 7);
    assert_eq!(v["error"]["code"], code::POLICY_DENIED);
    assert_eq!(v["error"]["data"]["policy_ids"][0], "p1");
    let v = body(EdgeError::Unauthorized(AuthError::Missing), None);
    assert_eq!(v["id"], serde_json::Value::Null);
    assert!(v["error"]["data"]["reason"].is_string());
    // A parse error echoes the id the parser could read.
    let e = parse_error(
        json!({"jsonrpc": "2.0", "id": 9, "method": "tools/call",
               "params": {"_meta": {META_VERSION: STATELESS}}}),
        &H0,
    );
    assert_eq!(body(e, None)["id"], 9);
}
