//! The feed of entity deltas to edge watchers.
//!
//! The state machine publishes while it holds its write lock, and a watcher subscribes while
//! holding the read lock, so a watcher sees every delta after its starting point exactly once.

use std::collections::VecDeque;
use std::sync::Arc;

use agentgate_model::State;
use agentgate_model::change::Delta;
use agentgate_model::limits::{WATCH_BUFFER_EVENTS_MAX, WATCH_RECENT_DELTAS_MAX};
use tokio::sync::{broadcast, watch};

/// What the state machine publishes.
#[derive(Debug, Clone)]
pub enum FeedEvent {
    Delta(Arc<Delta>),
    /// A snapshot was installed: the state jumped; watchers must take a fresh snapshot.
    Reset,
}

/// Where a new watcher starts.
#[derive(Debug)]
pub enum WatchStart {
    /// The watcher is current up to these deltas (possibly none).
    Deltas(Vec<Arc<Delta>>),
    /// The resume window does not reach back far enough: here is the whole state.
    Snapshot(Box<State>),
}

pub(crate) struct Feed {
    pub(crate) tx: broadcast::Sender<FeedEvent>,
    pub(crate) revision: watch::Sender<u64>,
}

impl Feed {
    pub(crate) fn new(revision: u64) -> Self {
        let (tx, _) = broadcast::channel(WATCH_BUFFER_EVENTS_MAX);
        Feed {
            tx,
            revision: watch::Sender::new(revision),
        }
    }
}

/// The recent deltas a node keeps for resuming watchers, bounded.
#[derive(Debug, Default)]
pub(crate) struct Recent {
    deltas: VecDeque<Arc<Delta>>,
}

impl Recent {
    pub(crate) fn push(&mut self, d: Arc<Delta>) {
        if self.deltas.len() >= WATCH_RECENT_DELTAS_MAX {
            self.deltas.pop_front();
        }
        self.deltas.push_back(d);
    }

    pub(crate) fn clear(&mut self) {
        self.deltas.clear();
    }

    /// The deltas after `from`, if the window covers `from` (see [`Delta::prev_revision`]).
    ///
    /// `last_edge_revision` is the revision of the newest delta ever published (also when the
    /// window is empty because none was published since start or since a snapshot install).
    pub(crate) fn since(&self, from: u64, last_edge_revision: u64) -> Option<Vec<Arc<Delta>>> {
        if from >= last_edge_revision {
            return Some(Vec::new());
        }
        let first = self.deltas.iter().find(|d| d.revision > from)?;
        if first.prev_revision > from {
            return None;
        }
        Some(
            self.deltas
                .iter()
                .filter(|d| d.revision > from)
                .cloned()
                .collect(),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(prev: u64, rev: u64) -> Arc<Delta> {
        Arc::new(Delta {
            prev_revision: prev,
            revision: rev,
            time_ms: 0,
            changes: vec![],
        })
    }

    #[test]
    fn resume_window() {
        let mut r = Recent::default();
        r.push(d(3, 5));
        r.push(d(5, 9));
        assert_eq!(r.since(9, 9).map(|v| v.len()), Some(0));
        assert_eq!(r.since(12, 9).map(|v| v.len()), Some(0));
        assert_eq!(r.since(5, 9).map(|v| v.len()), Some(1));
        assert_eq!(r.since(7, 9).map(|v| v.len()), Some(1));
        assert_eq!(r.since(3, 9).map(|v| v.len()), Some(2));
        assert_eq!(r.since(4, 9).map(|v| v.len()), Some(2));
        assert!(r.since(2, 9).is_none());
        assert!(Recent::default().since(2, 9).is_none());
    }
}
