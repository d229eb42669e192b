//! Supervision events, after OTP's supervisor reports: every start,
//! failure, restart, give-up, escalation and stop in the tree, in order,
//! for whoever listens (`GET /v1/supervision/events`, the console) and
//! for each child's bounded restart history on its [`super::StatusBoard`].
//!
//! One [`EventLog`] per application, reached through its
//! [`super::Directory`] (every supervisor of the tree has it). Publishing
//! never blocks: a broadcast channel drops the oldest events for a
//! listener that falls behind, which is told how many it missed.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use chrono::{DateTime, Utc};
use parking_lot::Mutex;
use serde::Serialize;
use tokio::sync::broadcast;

/// Events kept for listeners that connect later (`?since=`).
const RECENT: usize = 256;
/// Events a slow listener may lag behind before it loses some.
const CHANNEL: usize = 1024;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum EventKind {
    /// A first start (its state is loaded: the child runs).
    Started,
    /// The child failed (a panic, an error, a failed start), with the reason.
    Failed,
    /// A new incarnation runs after a failure.
    Restarted,
    /// The child used up its own restart intensity and is left failed.
    GaveUp,
    /// The supervisor's intensity was exceeded: it stops its children and
    /// fails itself, and its parent decides.
    Escalated,
    /// Stopped on purpose (shutdown, a drop) or exited normally.
    Stopped,
}

/// One event of the tree.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct SupervisionEventView {
    /// Increasing per application: a listener resumes with `?since=`.
    pub seq: u64,
    pub at: DateTime<Utc>,
    pub actor: String,
    /// The supervisor that reported it.
    pub supervisor: String,
    pub kind: EventKind,
    /// Which start of the actor this is about (1 = the first).
    pub incarnation: u64,
    pub reason: Option<String>,
}

#[derive(Debug)]
struct Inner {
    next: AtomicU64,
    sender: broadcast::Sender<SupervisionEventView>,
    recent: Mutex<VecDeque<SupervisionEventView>>,
    /// Bumped when the HTTP edge stops: open streams end, new ones go on.
    closing: tokio::sync::watch::Sender<u64>,
}

#[derive(Debug, Clone)]
pub struct EventLog {
    inner: Arc<Inner>,
}

impl Default for EventLog {
    fn default() -> Self {
        let (sender, _) = broadcast::channel(CHANNEL);
        Self {
            inner: Arc::new(Inner {
                next: AtomicU64::new(1),
                sender,
                recent: Mutex::new(VecDeque::with_capacity(RECENT)),
                closing: tokio::sync::watch::Sender::new(0),
            }),
        }
    }
}

impl EventLog {
    /// Gives the event its number and time, hands it to `keep` (the
    /// board's history), keeps it and sends it to every listener — in that
    /// order, so a listener that sees it finds it on the board too.
    pub fn publish(
        &self,
        supervisor: &str,
        actor: &str,
        kind: EventKind,
        incarnation: u64,
        reason: Option<&str>,
        keep: impl FnOnce(&SupervisionEventView),
    ) -> SupervisionEventView {
        let mut recent = self.inner.recent.lock();
        // Numbered under the lock: `recent` and the channel stay in order.
        let event = SupervisionEventView {
            seq: self.inner.next.fetch_add(1, Ordering::Relaxed),
            at: Utc::now(),
            actor: actor.to_string(),
            supervisor: supervisor.to_string(),
            kind,
            incarnation,
            reason: reason.map(str::to_string),
        };
        keep(&event);
        if recent.len() == RECENT {
            recent.pop_front();
        }
        recent.push_back(event.clone());
        let _ = self.inner.sender.send(event.clone());
        event
    }

    /// The kept events after `since`, and a receiver for every later one
    /// (taken together, so nothing falls between them).
    pub fn subscribe(
        &self,
        since: u64,
    ) -> (
        Vec<SupervisionEventView>,
        broadcast::Receiver<SupervisionEventView>,
    ) {
        let recent = self.inner.recent.lock();
        let receiver = self.inner.sender.subscribe();
        let backlog = recent.iter().filter(|e| e.seq > since).cloned().collect();
        (backlog, receiver)
    }

    /// The number the next event will get.
    pub fn next_seq(&self) -> u64 {
        self.inner.next.load(Ordering::Relaxed)
    }

    /// Ends the streams open now (the HTTP edge is stopping); later
    /// subscribers are not affected.
    pub fn end_streams(&self) {
        self.inner
            .closing
            .send_modify(|generation| *generation += 1);
    }

    /// Resolves when [`EventLog::end_streams`] is called after this.
    pub fn ended(&self) -> impl std::future::Future<Output = ()> + Send + 'static {
        let mut closing = self.inner.closing.subscribe();
        closing.mark_unchanged();
        async move {
            let _ = closing.changed().await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn listeners_get_the_backlog_then_every_later_event_in_order() {
        let log = EventLog::default();
        log.publish("root", "embed", EventKind::Started, 1, None, |_| {});
        log.publish("root", "embed", EventKind::Failed, 1, Some("boom"), |_| {});
        let (backlog, mut receiver) = log.subscribe(1);
        assert_eq!(backlog.len(), 1);
        assert_eq!(backlog[0].kind, EventKind::Failed);
        assert_eq!(backlog[0].reason.as_deref(), Some("boom"));
        log.publish("root", "embed", EventKind::Restarted, 2, None, |_| {});
        let next = receiver.recv().await.unwrap();
        assert_eq!(
            (next.seq, next.kind, next.incarnation),
            (3, EventKind::Restarted, 2)
        );
        for i in 0..(RECENT as u64 + 10) {
            log.publish("root", "x", EventKind::Started, i, None, |_| {});
        }
        let (backlog, _) = log.subscribe(0);
        assert_eq!(backlog.len(), RECENT, "the kept events are bounded");
        assert_eq!(log.next_seq(), 4 + RECENT as u64 + 10);
    }
}
