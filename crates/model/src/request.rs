//! Request ids: what makes a retried write apply once.
//!
//! A client gives each write an id and sends the same id again when it retries (see
//! `agentgate-client`). `apply` remembers the answer of every id for
//! [`REQUEST_IDS_RETAIN_MS`] of leader time (at most [`REQUEST_IDS_MAX`] ids, the oldest
//! forgotten first): a command whose id was answered is not applied again and answers as the
//! first did, also when the first attempt committed and only its reply was lost. Rejections are
//! remembered too: a retry of a rejected write is rejected the same way.
//!
//! INVARIANT: remembering and forgetting ids is decided from the commands' stamped times and the
//! remembered set only (oldest by `(time, id)`), so every replica remembers the same ids.
//!
//! Only clients' writes carry ids (operators, edges asking for approvals), not the audit stream
//! or the leader's sweeps, so the scan for ids to forget (linear in the ids remembered, at most
//! [`REQUEST_IDS_MAX`]) runs at an operator's pace.

use serde::{Deserialize, Serialize};

use crate::change::Change;
use crate::command::{Command, Response};
use crate::entity::{Entity, EntityKey};
use crate::error::ApplyError;
use crate::ids::truncate_for_message;
use crate::limits::{
    REQUEST_ANSWER_BYTES_MAX, REQUEST_ID_BYTES_MAX, REQUEST_IDS_MAX, REQUEST_IDS_RETAIN_MS,
};
use crate::state::State;

/// The answer given to one request id.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Answered {
    /// The revision the first attempt produced.
    pub revision: u64,
    /// Leader time of the first attempt.
    pub time_ms: u64,
    pub result: Result<Kept, ApplyError>,
}

/// A successful answer as it is kept.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "kept", content = "value")]
pub enum Kept {
    Response(Response),
    /// An answer larger than [`REQUEST_ANSWER_BYTES_MAX`]: the entity it returned, read back on
    /// replay. Only policy packages are that large, and they are immutable.
    Entity(EntityKey),
}

/// Checks a command's request id.
pub fn check_id(id: &str) -> Result<(), ApplyError> {
    if id.is_empty() || id.len() > REQUEST_ID_BYTES_MAX || id.chars().any(char::is_control) {
        return Err(ApplyError::InvalidArgument(format!(
            "request id `{}` must be 1 to {REQUEST_ID_BYTES_MAX} bytes without control characters (request_id_bytes_max)",
            truncate_for_message(id)
        )));
    }
    Ok(())
}

/// The earlier answer to `cmd`'s request id, if there is one.
pub fn replay(s: &State, cmd: &Command) -> Option<(u64, Result<Response, ApplyError>)> {
    let a = s.requests.get(cmd.request_id.as_deref()?)?;
    let result = match &a.result {
        Ok(Kept::Response(r)) => Ok(r.clone()),
        Ok(Kept::Entity(key)) => s
            .get(key)
            .map(|e| Response::Entity(Box::new(e)))
            .ok_or_else(|| {
                ApplyError::NotFound(format!(
                    "the {} `{}` this request created is gone",
                    key.kind.as_str(),
                    key.key
                ))
            }),
        Err(e) => Err(e.clone()),
    };
    Some((a.revision, result))
}

/// The changes that remember `cmd`'s answer and forget ids past their time (or beyond the
/// count bound, oldest first).
pub fn remember(
    s: &State,
    cmd: &Command,
    revision: u64,
    result: &Result<Response, ApplyError>,
) -> Vec<Change> {
    let Some(id) = &cmd.request_id else {
        return Vec::new();
    };
    let kept = match result {
        Ok(r) => Ok(keep(r)),
        Err(e) => Err(e.clone()),
    };
    let mut changes = vec![Change::Answered {
        id: id.clone(),
        answered: Answered {
            revision,
            time_ms: cmd.time_ms,
            result: kept,
        },
    }];
    let horizon = cmd.time_ms.saturating_sub(REQUEST_IDS_RETAIN_MS);
    let mut forget: Vec<(u64, &String)> = s
        .requests
        .iter()
        .filter(|(k, _)| *k != id)
        .filter(|(_, a)| a.time_ms <= horizon)
        .map(|(k, a)| (a.time_ms, k))
        .collect();
    let remaining = s.requests.len() - forget.len() + usize::from(!s.requests.contains_key(id));
    if remaining > REQUEST_IDS_MAX {
        let mut live: Vec<(u64, &String)> = s
            .requests
            .iter()
            .filter(|(k, a)| *k != id && a.time_ms > horizon)
            .map(|(k, a)| (a.time_ms, k))
            .collect();
        live.sort();
        forget.extend(live.into_iter().take(remaining - REQUEST_IDS_MAX));
    }
    if !forget.is_empty() {
        let mut ids: Vec<String> = forget.into_iter().map(|(_, k)| k.clone()).collect();
        ids.sort();
        changes.push(Change::Forget { ids });
    }
    changes
}

fn keep(r: &Response) -> Kept {
    if let Response::Entity(e) = r
        && serde_json::to_vec(r).map_or(usize::MAX, |v| v.len()) > REQUEST_ANSWER_BYTES_MAX
    {
        return Kept::Entity(Entity::key(e));
    }
    Kept::Response(r.clone())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::apply;
    use crate::command::Op;

    fn cmd(time_ms: u64, id: Option<&str>, tenant: &str) -> Command {
        Command {
            time_ms,
            actor: "ops".into(),
            op: Op::CreateTenant {
                id: tenant.into(),
                stale_allow_read_only: false,
            },
            request_id: id.map(str::to_string),
        }
    }

    #[test]
    fn a_retried_write_applies_once_and_answers_as_the_first_did() {
        let mut s = State::default();
        let first = apply(&mut s, &cmd(10, Some("r-1"), "a"));
        assert!(first.result.is_ok() && first.replay_of.is_none());
        let before = s.clone();
        let retry = apply(&mut s, &cmd(20, Some("r-1"), "a"));
        assert_eq!(
            retry.result, first.result,
            "the same answer, not `already exists`"
        );
        assert_eq!(retry.replay_of, Some(first.revision));
        assert!(retry.changes.is_empty());
        assert_eq!(
            State {
                revision: before.revision + 1,
                ..before
            },
            s,
            "nothing but the revision changed"
        );
        // The same write under a new id is a new write: refused as usual, and remembered.
        let other = apply(&mut s, &cmd(30, Some("r-2"), "a"));
        assert!(matches!(other.result, Err(ApplyError::AlreadyExists(_))));
        let again = apply(&mut s, &cmd(40, Some("r-2"), "a"));
        assert_eq!(again.result, other.result);
        assert_eq!(again.replay_of, Some(other.revision));
        // Without an id nothing is remembered.
        let n = s.requests.len();
        apply(&mut s, &cmd(50, None, "b"));
        assert_eq!(s.requests.len(), n);
    }

    #[test]
    fn ids_are_forgotten_after_their_window_and_beyond_the_count_bound() {
        let mut s = State::default();
        apply(&mut s, &cmd(1_000, Some("old"), "a"));
        apply(&mut s, &cmd(2_000, Some("newer"), "b"));
        let late = 1_000 + REQUEST_IDS_RETAIN_MS;
        let a = apply(&mut s, &cmd(late, Some("now"), "c"));
        assert!(
            a.changes.contains(&Change::Forget {
                ids: vec!["old".into()]
            }),
            "{:?}",
            a.changes
        );
        assert!(!s.requests.contains_key("old") && s.requests.contains_key("newer"));
        // Past its window a retried id is a new write again.
        let replayed = apply(&mut s, &cmd(late + 1, Some("old"), "a"));
        assert_eq!(replayed.replay_of, None);

        // The count bound forgets the oldest first, deterministically.
        let mut s = State::default();
        for i in 0..REQUEST_IDS_MAX {
            s.requests.insert(
                format!("id-{i:06}"),
                Answered {
                    revision: 1,
                    time_ms: 5_000 + i as u64,
                    result: Ok(Kept::Response(Response::Done)),
                },
            );
        }
        let changes = remember(&s, &cmd(6_000, Some("fresh"), "z"), 2, &Ok(Response::Done));
        assert_eq!(
            changes.last(),
            Some(&Change::Forget {
                ids: vec!["id-000000".into()]
            })
        );
    }

    #[test]
    fn bad_ids_are_refused_and_large_answers_kept_by_key() {
        assert!(check_id("").is_err());
        assert!(check_id(&"x".repeat(REQUEST_ID_BYTES_MAX + 1)).is_err());
        assert!(check_id("a\nb").is_err());
        assert!(check_id("edge-1-42").is_ok());
        let mut s = State::default();
        let a = apply(&mut s, &cmd(1, Some(""), "a"));
        assert!(matches!(a.result, Err(ApplyError::InvalidArgument(_))));
        assert!(s.tenants.is_empty() && s.requests.is_empty());
        let big = Response::Entity(Box::new(Entity::Tenant(crate::entity::Tenant {
            id: "x".repeat(REQUEST_ANSWER_BYTES_MAX),
            created_ms: 0,
            policy_version: None,
            shadow_version: None,
            stale_allow_read_only: false,
        })));
        assert!(matches!(keep(&big), Kept::Entity(_)));
        assert!(matches!(keep(&Response::Done), Kept::Response(_)));
    }
}
