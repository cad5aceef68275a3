//! Detectors on call arguments: what they find becomes `context.detections` for Cedar (design.md §3),
//! e.g. the default policy's `forbid … when { context.detections.contains("secret") }`.
//!
//! One `RegexSet` per class scans every string in the arguments (keys included), bounded in the
//! bytes and strings it looks at; what it cannot look at is reported as `unscanned`, so a policy
//! can refuse what was too large to inspect.

use std::sync::LazyLock;

use crate::limits::{SCAN_BYTES_MAX, SCAN_STRINGS_MAX};
use regex::RegexSet;
use serde_json::{Map, Value};

static SECRET: LazyLock<Option<RegexSet>> = LazyLock::new(|| {
    RegexSet::new([
        r"AKIA[0-9A-Z]{16}",                                       // AWS access key id
        r"-----BEGIN (?:RSA |EC |OPENSSH |DSA |PGP )?PRIVATE KEY", // private keys
        r"\bgh[pousr]_[A-Za-z0-9]{36,}",                           // GitHub tokens
        r"\bxox[abposr]-[A-Za-z0-9-]{10,}",                        // Slack tokens
        r"\bsk_live_[0-9a-zA-Z]{24,}",                             // Stripe secret keys
        r"\bsk-[A-Za-z0-9_-]{32,}",                                // OpenAI-style API keys
        r"\bagk_[0-9a-f]{32,}",                                    // AgentGate agent keys
        r"\beyJ[A-Za-z0-9_-]{10,}\.eyJ[A-Za-z0-9_-]{10,}\.[A-Za-z0-9_-]{10,}", // JWTs
        r"(?i)\b(?:password|passwd|secret|api[_-]?key|access[_-]?token)\s*[:=]\s*\S{6,}",
    ])
    .ok()
});

static PII: LazyLock<Option<RegexSet>> = LazyLock::new(|| {
    RegexSet::new([
        r"\b[A-Za-z0-9._%+-]+@[A-Za-z0-9.-]+\.[A-Za-z]{2,}\b", // e-mail
        r"\b\d{3}-\d{2}-\d{4}\b",                              // US SSN
        r"\b(?:\d[ -]?){13,16}\b",                             // card-like numbers
    ])
    .ok()
});

/// The detections in a call's arguments, sorted and deduplicated: `secret`, `pii`, `unscanned`.
pub fn detect(arguments: &Map<String, Value>) -> Vec<String> {
    let mut budget = Budget {
        bytes: SCAN_BYTES_MAX,
        strings: SCAN_STRINGS_MAX,
        exhausted: false,
    };
    let mut found = Found::default();
    for (k, v) in arguments {
        scan_str(k, &mut budget, &mut found);
        scan(v, &mut budget, &mut found);
    }
    let mut out = Vec::new();
    if found.pii {
        out.push("pii".to_string());
    }
    if found.secret {
        out.push("secret".to_string());
    }
    if budget.exhausted {
        out.push("unscanned".to_string());
    }
    out
}

struct Budget {
    bytes: usize,
    strings: usize,
    exhausted: bool,
}

#[derive(Default)]
struct Found {
    secret: bool,
    pii: bool,
}

fn scan(v: &Value, b: &mut Budget, f: &mut Found) {
    match v {
        Value::String(s) => scan_str(s, b, f),
        Value::Array(items) => items.iter().for_each(|i| scan(i, b, f)),
        Value::Object(m) => m.iter().for_each(|(k, v)| {
            scan_str(k, b, f);
            scan(v, b, f);
        }),
        _ => {}
    }
}

fn scan_str(s: &str, b: &mut Budget, f: &mut Found) {
    if b.strings == 0 || s.len() > b.bytes {
        b.exhausted = true;
        return;
    }
    b.strings -= 1;
    b.bytes -= s.len();
    // A detector that failed to build reports everything it would have checked.
    f.secret |= SECRET.as_ref().is_none_or(|r| r.is_match(s));
    f.pii |= PII.as_ref().is_none_or(|r| r.is_match(s));
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use serde_json::json;

    use super::*;

    fn args(v: Value) -> Map<String, Value> {
        v.as_object().unwrap().clone()
    }

    #[test]
    fn finds_secrets_and_pii_anywhere_in_the_arguments() {
        let cases = [
            (json!({"q": "hello"}), vec![]),
            (json!({"k": "AKIAABCDEFGHIJKLMNOP"}), vec!["secret"]),
            (
                json!({"deep": [{"x": "-----BEGIN OPENSSH PRIVATE KEY-----"}]}),
                vec!["secret"],
            ),
            (json!({"cfg": "password = hunter2hunter2"}), vec!["secret"]),
            (json!({"to": "alice@example.com"}), vec!["pii"]),
            (
                json!({"to": "bob@example.com", "token": "ghp_0123456789abcdefghijklmnopqrstuvwxyz"}),
                vec!["pii", "secret"],
            ),
        ];
        for (a, want) in cases {
            assert_eq!(detect(&args(a.clone())), want, "{a}");
        }
    }

    #[test]
    fn what_is_too_large_to_scan_is_reported() {
        let big = "x".repeat(SCAN_BYTES_MAX + 1);
        assert_eq!(detect(&args(json!({ "blob": big }))), vec!["unscanned"]);
    }
}
