//! Every policy file in `policies/` against its request → decision cases (`policies/cases/`).
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::path::PathBuf;

use agentgate_model::cases::{self, CaseFile};
use agentgate_model::decide::{CompiledPolicy, Outcome};
use agentgate_model::entity::PolicyPackage;
use agentgate_model::policy::package_digest;

fn dir() -> PathBuf {
    // At run time: a test binary built from another checkout sharing the target dir is
    // reused as fresh, and its compile-time path would point at that checkout.
    std::env::var_os("CARGO_MANIFEST_DIR")
        .map_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")), PathBuf::from)
        .join("../../policies")
}

fn package(policies: &str) -> PolicyPackage {
    let schema = std::fs::read_to_string(dir().join("schema.cedarschema")).unwrap();
    PolicyPackage {
        tenant: "tenant-a".into(),
        version: "v1".into(),
        sha256: package_digest(policies, &schema, ""),
        policies: policies.into(),
        schema,
        entities: String::new(),
        author: "test".into(),
        description: String::new(),
        created_ms: 0,
        signature: None,
    }
}

#[test]
fn every_policy_file_decides_its_cases() {
    let mut files: Vec<_> = std::fs::read_dir(dir().join("cases"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    assert!(files.len() >= 3);
    let mut checked = 0;
    for f in files {
        let cf: CaseFile = serde_json::from_str(&std::fs::read_to_string(&f).unwrap()).unwrap();
        let text = std::fs::read_to_string(dir().join(cf.policies.as_deref().unwrap())).unwrap();
        let compiled = CompiledPolicy::compile(&package(&text)).unwrap_or_else(|e| {
            panic!(
                "{:?} does not validate against the schema: {e}",
                cf.policies
            )
        });
        for r in cases::run(&compiled, &cf) {
            assert!(
                r.expect.is_some() && r.expect_policy_ids.is_some(),
                "{}: case `{}` expects nothing",
                f.display(),
                r.name
            );
            assert!(
                r.passed,
                "{:?}: case `{}`: {:?}, expected {:?} {:?}",
                cf.policies, r.name, r.verdict, r.expect, r.expect_policy_ids
            );
            checked += 1;
        }
    }
    assert!(checked >= 20);
}

#[test]
fn an_erroring_forbid_denies_instead_of_being_skipped() {
    // Strict validation already rejects unguarded tag and attribute access; integer overflow
    // is an evaluation error it cannot rule out. Cedar would skip the erroring forbid and the
    // permit would allow. We deny.
    let text = r#"
        @id("allow-all") permit (principal, action, resource);
        @id("careless") forbid (principal, action, resource)
        when { context.time.hour * 4611686018427387904 > 0 };
    "#;
    let compiled = CompiledPolicy::compile(&package(text)).unwrap();
    let base = serde_json::json!({
        "agent": "bot", "action": "call_tool", "server": "s", "tool": "t", "hour": 10, "weekday": 1,
        "arguments": {}
    });
    let v = compiled.decide(&serde_json::from_value(base).unwrap());
    assert_eq!(v.outcome, Outcome::Deny);
    assert_eq!(v.policy_ids, vec!["careless".to_string()]);
    assert!(v.reason.contains("evaluation failed"), "{}", v.reason);
}

#[test]
fn a_package_that_fails_validation_does_not_compile() {
    let e = CompiledPolicy::compile(&package(
        "permit (principal, action, resource) when { resource.nope };",
    ))
    .err()
    .unwrap();
    assert!(e.contains("nope"), "{e}");
}
