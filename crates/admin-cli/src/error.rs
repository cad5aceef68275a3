//! The CLI's one error type: what went wrong, the exit code it maps to, and what to do next.
//!
//! Exit codes (documented in the README and `--help`):
//! 0 ok · 1 error (cluster unreachable, server failure) · 2 denied or verification failed ·
//! 3 invalid input or usage (bad flags, unknown names, invalid policy).

use std::fmt;

use serde_json::json;
use tonic::Code;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exit {
    Error = 1,
    Denied = 2,
    Invalid = 3,
}

#[derive(Debug)]
pub struct CliError {
    pub exit: Exit,
    /// A stable machine-readable code (`unreachable`, `not_found`, `invalid_argument`, …).
    pub code: &'static str,
    pub message: String,
    /// What to do next.
    pub hint: Option<String>,
}

pub type Result<T> = std::result::Result<T, CliError>;

impl CliError {
    pub fn new(exit: Exit, code: &'static str, message: impl Into<String>) -> Self {
        CliError {
            exit,
            code,
            message: message.into(),
            hint: None,
        }
    }

    /// Bad input the cluster was never asked about.
    pub fn invalid(message: impl Into<String>) -> Self {
        CliError::new(Exit::Invalid, "invalid_argument", message)
    }

    pub fn io(what: &str, e: &std::io::Error) -> Self {
        CliError::new(Exit::Error, "io", format!("{what}: {e}"))
    }

    pub fn hint(mut self, hint: impl Into<String>) -> Self {
        self.hint = Some(hint.into());
        self
    }

    /// An error answered by a core node, with a hint for the common cases.
    pub fn from_status(s: &tonic::Status) -> Self {
        let msg = s.message().to_string();
        let (exit, code, hint) = match s.code() {
            Code::InvalidArgument => (
                Exit::Invalid,
                "invalid_argument",
                "fix the input shown above and run the command again".to_string(),
            ),
            Code::NotFound => (Exit::Invalid, "not_found", not_found_hint(&msg)),
            Code::AlreadyExists => (
                Exit::Invalid,
                "already_exists",
                "it exists already: use the matching `list` command to see it, or pick another name"
                    .to_string(),
            ),
            Code::FailedPrecondition => (
                Exit::Invalid,
                "failed_precondition",
                "the current state does not allow this; check it with the matching `list` or `status` command"
                    .to_string(),
            ),
            Code::ResourceExhausted => (
                Exit::Invalid,
                "resource_exhausted",
                "a limit was reached; remove entries you no longer need or ask for less".to_string(),
            ),
            Code::PermissionDenied | Code::Unauthenticated => (
                Exit::Denied,
                "denied",
                "this operator may not do this".to_string(),
            ),
            Code::Unavailable | Code::DeadlineExceeded => (
                Exit::Error,
                "unavailable",
                "the cluster may be electing a leader or lost quorum: check `agentgate-admin cluster status` and retry (a retried create may answer `already exists`)"
                    .to_string(),
            ),
            _ => (
                Exit::Error,
                "internal",
                "see the node's log; retry, and report it if it persists".to_string(),
            ),
        };
        CliError::new(exit, code, msg).hint(hint)
    }

    pub fn to_json(&self) -> serde_json::Value {
        json!({"error": {"code": self.code, "message": self.message, "hint": self.hint, "exit": self.exit as u8}})
    }
}

fn not_found_hint(msg: &str) -> String {
    let first = msg.split_whitespace().next().unwrap_or_default();
    let list = match first {
        "tenant" => "agentgate-admin tenant list",
        "agent" => "agentgate-admin agent list",
        "upstream" => "agentgate-admin upstream list",
        "policy" => "agentgate-admin policy list TENANT",
        "approval" => "agentgate-admin approvals list --state all",
        "kill" => "agentgate-admin switches list",
        "rollout" => "agentgate-admin rollout status TENANT",
        "quota" => "agentgate-admin quota list",
        _ => return "check the name; the `list` commands show what exists".to_string(),
    };
    format!("check the name: `{list}` shows what exists")
}

impl fmt::Display for CliError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "error: {}", self.message)?;
        if let Some(h) = &self.hint {
            write!(f, "\n  hint: {h}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_map_to_documented_exit_codes() {
        let cases = [
            (tonic::Status::not_found("tenant `x`"), Exit::Invalid),
            (tonic::Status::invalid_argument("bad"), Exit::Invalid),
            (tonic::Status::unavailable("no leader"), Exit::Error),
            (tonic::Status::permission_denied("no"), Exit::Denied),
            (tonic::Status::internal("boom"), Exit::Error),
        ];
        for (status, exit) in cases {
            assert_eq!(CliError::from_status(&status).exit, exit, "{status:?}");
        }
        let e = CliError::from_status(&tonic::Status::not_found("tenant `x`"));
        assert!(
            e.hint.as_deref().is_some_and(|h| h.contains("tenant list")),
            "{e}"
        );
    }
}
