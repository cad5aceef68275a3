//! Names of things. Every name an operator or agent supplies is checked here once, so the rest of
//! the system can use names as storage keys and metric labels without escaping.

use crate::error::ApplyError;
use crate::limits::NAME_BYTES_MAX;

/// A tenant's name, e.g. `tenant-a`.
pub type TenantId = String;
/// An agent's name, unique within its tenant.
pub type AgentId = String;
/// A named upstream MCP server, unique within its tenant.
pub type ServerName = String;
/// A policy package version label, e.g. `v2`.
pub type PolicyVersion = String;
/// An edge process incarnation (a new id for every start).
pub type EdgeId = String;

/// Checks a name: 1..=[`NAME_BYTES_MAX`] bytes of `[A-Za-z0-9._:-]`, not starting with `.`.
///
/// The separator `/` and NUL are excluded on purpose: keys are joined with `/`.
pub fn validate_name(what: &'static str, name: &str) -> Result<(), ApplyError> {
    let ok_len = !name.is_empty() && name.len() <= NAME_BYTES_MAX;
    let ok_chars = name
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-' | b':'));
    if ok_len && ok_chars && !name.starts_with('.') {
        Ok(())
    } else {
        Err(ApplyError::InvalidArgument(format!(
            "{what} `{}` must be 1 to {NAME_BYTES_MAX} characters of letters, digits, `.`, `_`, `-`, `:`",
            truncate_for_message(name)
        )))
    }
}

/// Shortens user input quoted in an error message so a huge input cannot make a huge error.
pub fn truncate_for_message(s: &str) -> String {
    const SHOWN: usize = 64;
    if s.len() <= SHOWN {
        return s.to_string();
    }
    let mut end = SHOWN;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", s.get(..end).unwrap_or_default())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_checked() {
        assert!(validate_name("tenant", "tenant-a").is_ok());
        assert!(validate_name("tool", "fs.read_file").is_ok());
        assert!(validate_name("tenant", "").is_err());
        assert!(validate_name("tenant", "a/b").is_err());
        assert!(validate_name("tenant", ".hidden").is_err());
        assert!(validate_name("tenant", &"x".repeat(NAME_BYTES_MAX + 1)).is_err());
        assert!(validate_name("tenant", "ünïcode").is_err());
    }

    #[test]
    fn truncation_respects_char_boundaries() {
        let s = "é".repeat(100);
        let t = truncate_for_message(&s);
        assert!(t.ends_with('…'));
        assert!(t.len() <= 64 + '…'.len_utf8());
    }
}
