//! Policy packages: content digest and Cedar validation (design.md G6: invalid policy never commits).
//!
//! The leader runs [`validate_package`] before proposing a push, so a package that fails is
//! rejected with the validator's messages and nothing reaches the log. `apply` only re-checks the
//! digest, which is cheap and cannot differ between Cedar versions on different nodes.

use std::str::FromStr;

use cedar_policy::{Entities, PolicySet, Schema, ValidationMode, Validator};
use sha2::{Digest, Sha256};

use crate::limits::POLICY_PACKAGE_BYTES_MAX;

/// SHA-256 over a package's content, each part length-prefixed so parts cannot run together.
pub fn package_digest(policies: &str, schema: &str, entities: &str) -> String {
    let mut h = Sha256::new();
    h.update(b"agentgate-policy-v1");
    for part in [policies, schema, entities] {
        h.update((part.len() as u64).to_be_bytes());
        h.update(part.as_bytes());
    }
    hex::encode(h.finalize())
}

/// A package that passed validation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ValidPackage {
    pub policy_count: usize,
    /// [`package_digest`] of the texts as given.
    pub sha256: String,
}

/// Parses the schema, the policies and the entities and validates the policies against the
/// schema in strict mode. The error is the validator's own messages, one per line.
pub fn validate_package(
    policies: &str,
    schema_src: &str,
    entities: &str,
) -> Result<ValidPackage, String> {
    let total = policies.len() + schema_src.len() + entities.len();
    if total > POLICY_PACKAGE_BYTES_MAX {
        return Err(format!(
            "policy package is {total} bytes; the limit is {POLICY_PACKAGE_BYTES_MAX} bytes (policy_package_bytes_max)"
        ));
    }
    let (schema, _warnings) =
        Schema::from_cedarschema_str(schema_src).map_err(|e| format!("schema: {e}"))?;
    let set = PolicySet::from_str(policies).map_err(|e| {
        let lines: Vec<String> = e.iter().map(|x| format!("policies: {x}")).collect();
        lines.join("\n")
    })?;
    let result = Validator::new(schema.clone()).validate(&set, ValidationMode::Strict);
    if !result.validation_passed() {
        let lines: Vec<String> = result
            .validation_errors()
            .map(|e| format!("validation: {e}"))
            .collect();
        return Err(lines.join("\n"));
    }
    let entities_src = if entities.trim().is_empty() {
        "[]"
    } else {
        entities
    };
    Entities::from_json_str(entities_src, Some(&schema)).map_err(|e| format!("entities: {e}"))?;
    Ok(ValidPackage {
        policy_count: set.policies().count(),
        sha256: package_digest(policies, schema_src, entities),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const SCHEMA: &str = r#"
entity Agent { tenant: String };
entity Server;
entity Tool in [Server] { read_only: Bool };
action call_tool appliesTo { principal: [Agent], resource: [Tool] };
"#;

    #[test]
    fn a_valid_package_passes_and_is_digested() {
        let p = "permit(principal, action == Action::\"call_tool\", resource) when { resource.read_only };";
        let v = validate_package(p, SCHEMA, "").unwrap();
        assert_eq!(v.policy_count, 1);
        assert_eq!(v.sha256, package_digest(p, SCHEMA, ""));
    }

    #[test]
    fn a_policy_that_does_not_match_the_schema_is_rejected_with_the_validator_message() {
        let p = "permit(principal, action == Action::\"call_tool\", resource) when { resource.no_such_attr };";
        let e = validate_package(p, SCHEMA, "").unwrap_err();
        assert!(e.starts_with("validation:"), "{e}");
        assert!(e.contains("no_such_attr"), "{e}");
    }

    #[test]
    fn syntax_errors_are_reported() {
        let e = validate_package("permit(principal", SCHEMA, "").unwrap_err();
        assert!(e.starts_with("policies:"), "{e}");
        let e = validate_package("", "entity {", "").unwrap_err();
        assert!(e.starts_with("schema:"), "{e}");
    }

    #[test]
    fn digest_separates_parts() {
        assert_ne!(package_digest("ab", "c", ""), package_digest("a", "bc", ""));
    }
}
