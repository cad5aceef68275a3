use proptest::prelude::*;
use serde_json::json;

use super::*;

const H0: Headers<'static> = Headers {
    protocol_version: None,
    mcp_method: None,
    mcp_name: None,
};

fn stateless_call(name: &str) -> Vec<u8> {
    json!({
        "jsonrpc": "2.0", "id": 1, "method": "tools/call",
        "params": {"name": name, "arguments": {"x": 1}, "_meta": {META_VERSION: STATELESS}}
    })
    .to_string()
    .into_bytes()
}

#[test]
fn good_messages() {
    let p = parse(
        &stateless_call("echo"),
        &Headers {
            mcp_method: Some("tools/call"),
            mcp_name: Some("echo"),
            ..H0
        },
        None,
    )
    .unwrap();
    assert_eq!(p.revision, STATELESS);
    let Message::Request {
        op: Operation::CallTool { name, arguments },
        ..
    } = &p.messages[0]
    else {
        panic!()
    };
    assert_eq!((name.as_str(), arguments.len()), ("echo", 1));

    let init = br#"{"jsonrpc":"2.0","id":"a","method":"initialize","params":{"protocolVersion":"2025-06-18","capabilities":{},"clientInfo":{"name":"c","version":"1"}}}"#;
    assert_eq!(parse(init, &H0, None).unwrap().revision, "2025-06-18");

    let list = br#"{"jsonrpc":"2.0","id":2,"method":"tools/list"}"#;
    let p = parse(
        list,
        &Headers {
            protocol_version: Some("2025-11-25"),
            ..H0
        },
        Some("2025-11-25"),
    )
    .unwrap();
    assert!(matches!(
        p.messages[0],
        Message::Request {
            op: Operation::ListTools,
            ..
        }
    ));
    // A 2025-03-26 client sends no version header after initialize.
    assert_eq!(parse(list, &H0, None).unwrap().revision, "2025-03-26");

    let notif = br#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#;
    assert!(matches!(
        parse(notif, &H0, Some("2025-06-18")).unwrap().messages[0],
        Message::Notification { .. }
    ));
    let resp = br#"{"jsonrpc":"2.0","id":7,"result":{}}"#;
    assert!(matches!(
        parse(resp, &H0, Some("2025-06-18")).unwrap().messages[0],
        Message::Response { .. }
    ));
    let batch = br#"[{"jsonrpc":"2.0","id":1,"method":"ping"},{"jsonrpc":"2.0","method":"notifications/x"}]"#;
    let p = parse(batch, &H0, Some("2025-03-26")).unwrap();
    assert!(p.batch && p.messages.len() == 2);
}

#[test]
fn bad_input_gets_the_prescribed_error() {
    let deep = format!(
        "{}{}",
        "[".repeat(JSON_DEPTH_MAX + 1),
        "]".repeat(JSON_DEPTH_MAX + 1)
    );
    let deep_in_string = format!(
        r#"{{"jsonrpc":"2.0","id":1,"method":"ping","params":{{"s":"{}"}}}}"#,
        "[".repeat(500)
    );
    let big_batch = format!(
        "[{}]",
        vec![r#"{"jsonrpc":"2.0","method":"n"}"#; BATCH_MESSAGES_MAX + 1].join(",")
    );
    let call = |name: &str| stateless_call(name);
    type Case = (
        &'static str,
        Vec<u8>,
        Headers<'static>,
        Option<&'static str>,
        i64,
    );
    let cases: Vec<Case> = vec![
        ("not json", b"{nope".to_vec(), H0, None, code::PARSE_ERROR),
        ("empty body", b"".to_vec(), H0, None, code::PARSE_ERROR),
        ("too deep", deep.into_bytes(), H0, None, code::PARSE_ERROR),
        ("a scalar", b"42".to_vec(), H0, None, code::INVALID_REQUEST),
        ("no jsonrpc", br#"{"id":1,"method":"ping"}"#.to_vec(), H0, None, code::INVALID_REQUEST),
        ("jsonrpc 1.0", br#"{"jsonrpc":"1.0","id":1,"method":"ping"}"#.to_vec(), H0, None, code::INVALID_REQUEST),
        ("id is an object", br#"{"jsonrpc":"2.0","id":{},"method":"ping"}"#.to_vec(), H0, None, code::INVALID_REQUEST),
        ("id is a float", br#"{"jsonrpc":"2.0","id":1.5,"method":"ping"}"#.to_vec(), H0, None, code::INVALID_REQUEST),
        ("method is a number", br#"{"jsonrpc":"2.0","id":1,"method":3}"#.to_vec(), H0, None, code::INVALID_REQUEST),
        ("params is an array", br#"{"jsonrpc":"2.0","id":1,"method":"ping","params":[]}"#.to_vec(), H0, None, code::INVALID_REQUEST),
        ("neither method nor result", br#"{"jsonrpc":"2.0","id":1}"#.to_vec(), H0, None, code::INVALID_REQUEST),
        ("empty batch", b"[]".to_vec(), H0, None, code::INVALID_REQUEST),
        ("batch too big", big_batch.into_bytes(), H0, Some("2025-03-26"), code::INVALID_REQUEST),
        ("batch in 2025-06-18", br#"[{"jsonrpc":"2.0","id":1,"method":"ping"}]"#.to_vec(), H0, Some("2025-06-18"), code::INVALID_REQUEST),
        ("tools/call without a name", br#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{}}"#.to_vec(), H0, Some("2025-06-18"), code::INVALID_PARAMS),
        ("arguments not an object", br#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"a","arguments":[1]}}"#.to_vec(), H0, Some("2025-06-18"), code::INVALID_PARAMS),
        ("unknown version", br#"{"jsonrpc":"2.0","id":1,"method":"ping"}"#.to_vec(), Headers { protocol_version: Some("1999-01-01"), ..H0 }, None, code::INVALID_REQUEST),
        ("stateless without Mcp-Method", call("echo"), H0, None, code::HEADER_MISMATCH),
        ("Mcp-Method differs from the body", call("echo"), Headers { mcp_method: Some("tools/list"), mcp_name: Some("echo"), ..H0 }, None, code::HEADER_MISMATCH),
        ("Mcp-Name differs from the body", call("rm"), Headers { mcp_method: Some("tools/call"), mcp_name: Some("echo"), ..H0 }, None, code::HEADER_MISMATCH),
        ("stateless without Mcp-Name", call("echo"), Headers { mcp_method: Some("tools/call"), ..H0 }, None, code::HEADER_MISMATCH),
        ("version header differs from _meta", call("echo"), Headers { protocol_version: Some("2025-11-25"), mcp_method: Some("tools/call"), mcp_name: Some("echo") }, None, code::HEADER_MISMATCH),
    ];
    for (name, body, headers, session, expected) in cases {
        let e = parse(&body, &headers, session).expect_err(name);
        assert_eq!(
            (e.http_status, e.code),
            (400, expected),
            "{name}: {}",
            e.message
        );
    }
    // Brackets inside strings do not count as nesting.
    assert!(parse(deep_in_string.as_bytes(), &H0, Some("2025-06-18")).is_ok());
}

#[test]
fn errors_echo_the_request_id_when_known() {
    let e = parse(
        br#"{"jsonrpc":"2.0","id":"q","method":"tools/call","params":{}}"#,
        &H0,
        Some("2025-06-18"),
    )
    .unwrap_err();
    assert_eq!(e.id, Some(json!("q")));
}

proptest! {
    #[test]
    fn parse_never_panics_on_bytes(body in prop::collection::vec(any::<u8>(), 0..512)) {
        let _ = parse(&body, &H0, None);
    }

    #[test]
    fn parse_never_panics_on_json_shapes(
        method in prop::sample::select(vec!["tools/call", "tools/list", "initialize", "resources/read", "prompts/get", "x"]),
        params in prop::option::of(prop::sample::select(vec![json!({}), json!([]), json!({"name": 1}), json!({"name": "a", "arguments": "s"}), json!(null), json!({"uri": "u", "protocolVersion": "2026-07-28"})])),
        id in prop::option::of(prop::sample::select(vec![json!(1), json!("a"), json!(null), json!([1]), json!(-5)])),
        version in prop::option::of(prop::sample::select(vec!["2026-07-28", "2025-03-26", "bogus"])),
    ) {
        let mut m = serde_json::Map::new();
        m.insert("jsonrpc".into(), json!("2.0"));
        m.insert("method".into(), json!(method));
        if let Some(p) = params { m.insert("params".into(), p); }
        if let Some(i) = id { m.insert("id".into(), i); }
        let body = serde_json::Value::Object(m).to_string();
        let h = Headers { protocol_version: version, mcp_method: Some(method), mcp_name: Some("a") };
        let _ = parse(body.as_bytes(), &h, None);
    }
}
