//! The status board: what every supervisor knows about its children, kept
//! where readers (`/v1/supervision`, `/ready`, tests) can see it at any moment
//! without a message round trip to a supervisor that may be busy restarting.

use std::collections::VecDeque;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use parking_lot::RwLock;
use serde::Serialize;

use super::events::SupervisionEventView;
use super::spec::Strategy;

/// Events kept per child on the board (its restart history).
pub const HISTORY: usize = 20;

/// A child's lifecycle as the supervisor sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ChildStatus {
    /// Not started yet (only before the supervisor's first start).
    Starting,
    Running,
    /// Exited or failed and waiting for (or in) its restart.
    Restarting,
    /// Exited normally and not restarted, or stopped by shutdown.
    Stopped,
    /// Failed and will not be restarted (temporary child, or escalation).
    Failed,
}

#[derive(Debug, Clone, Serialize, PartialEq, utoipa::ToSchema)]
pub struct Failure {
    pub at: DateTime<Utc>,
    pub reason: String,
}

#[derive(Debug, Clone)]
struct ChildEntry {
    name: String,
    status: ChildStatus,
    restarts: u64,
    last_failure: Option<Failure>,
    /// Starts so far (the live incarnation's number).
    incarnation: u64,
    /// The last [`HISTORY`] supervision events of this child, oldest first.
    history: VecDeque<SupervisionEventView>,
    /// The child's own board when it is a supervisor.
    board: Option<StatusBoard>,
}

#[derive(Debug)]
struct BoardInner {
    strategy: Strategy,
    children: Vec<ChildEntry>,
}

/// Shared, cheaply cloneable view of one supervisor's children.
///
/// A std-style lock (parking_lot) rather than a tokio one: every critical
/// section is a few field updates, never held across an `.await`. Every
/// change wakes whoever waits in [`StatusBoard::wait_for`].
#[derive(Debug, Clone)]
pub struct StatusBoard {
    inner: Arc<RwLock<BoardInner>>,
    changed: Arc<tokio::sync::Notify>,
}

/// One node of the drawn tree (the wire format of `/v1/supervision`).
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct NodeView {
    pub name: String,
    pub status: ChildStatus,
    pub restarts: u64,
    pub last_failure: Option<Failure>,
    /// The live incarnation (1 = the first start).
    pub incarnation: u64,
    /// The last supervision events of this node (at most 20), oldest first.
    pub history: Vec<SupervisionEventView>,
    /// `null` for workers.
    pub strategy: Option<Strategy>,
    #[schema(no_recursion)]
    pub children: Vec<NodeView>,
}

impl StatusBoard {
    pub fn new(strategy: Strategy) -> Self {
        Self {
            inner: Arc::new(RwLock::new(BoardInner {
                strategy,
                children: Vec::new(),
            })),
            changed: Arc::new(tokio::sync::Notify::new()),
        }
    }

    /// Waits until the status of child `name` satisfies `done` (`None`:
    /// not on the board), for at most `timeout`. Returns the status it
    /// settled on, or `Err` with the last one seen when time ran out.
    pub async fn wait_for(
        &self,
        name: &str,
        timeout: std::time::Duration,
        done: impl Fn(Option<ChildStatus>) -> bool,
    ) -> Result<Option<ChildStatus>, Option<ChildStatus>> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            // Registered before the check, so a change between the check
            // and the wait is not missed.
            let changed = self.changed.notified();
            let status = self.status(name);
            if done(status) {
                return Ok(status);
            }
            if tokio::time::timeout_at(deadline, changed).await.is_err() {
                return Err(self.status(name));
            }
        }
    }

    /// Adds a child entry, or keeps the existing one (and its history) when
    /// a restarted supervisor declares the same child again.
    pub(crate) fn declare(&self, name: &str, board: Option<StatusBoard>) {
        let mut inner = self.inner.write();
        if let Some(entry) = inner.children.iter_mut().find(|c| c.name == name) {
            entry.board = board;
            return;
        }
        inner.children.push(ChildEntry {
            name: name.to_string(),
            status: ChildStatus::Starting,
            restarts: 0,
            last_failure: None,
            incarnation: 0,
            history: VecDeque::new(),
            board,
        });
    }

    pub(crate) fn remove(&self, name: &str) {
        self.inner.write().children.retain(|c| c.name != name);
        self.changed.notify_waiters();
    }

    pub(crate) fn set_status(&self, name: &str, status: ChildStatus) {
        self.update(name, |entry| entry.status = status);
    }

    pub(crate) fn record_failure(&self, name: &str, reason: &str) {
        let failure = Failure {
            at: Utc::now(),
            reason: reason.to_string(),
        };
        self.update(name, |entry| entry.last_failure = Some(failure));
    }

    pub(crate) fn count_restart(&self, name: &str) {
        self.update(name, |entry| entry.restarts += 1);
    }

    /// Counts a start of `name`; returns its incarnation number.
    pub(crate) fn count_start(&self, name: &str) -> u64 {
        let mut incarnation = 0;
        self.update(name, |entry| {
            entry.incarnation += 1;
            incarnation = entry.incarnation;
        });
        incarnation
    }

    /// The live incarnation of `name` (0 before its first start).
    pub fn incarnation(&self, name: &str) -> u64 {
        self.find(name).map_or(0, |entry| entry.incarnation)
    }

    /// Adds an event to the child's bounded history.
    pub(crate) fn remember(&self, name: &str, event: SupervisionEventView) {
        self.update(name, |entry| {
            if entry.history.len() == HISTORY {
                entry.history.pop_front();
            }
            entry.history.push_back(event);
        });
    }

    /// The child's history, oldest first.
    pub fn history(&self, name: &str) -> Vec<SupervisionEventView> {
        self.find(name)
            .map(|entry| entry.history.into_iter().collect())
            .unwrap_or_default()
    }

    fn update(&self, name: &str, f: impl FnOnce(&mut ChildEntry)) {
        if let Some(entry) = self
            .inner
            .write()
            .children
            .iter_mut()
            .find(|c| c.name == name)
        {
            f(entry);
        }
        self.changed.notify_waiters();
    }

    /// The status of a direct child, if this board has it.
    pub fn status(&self, name: &str) -> Option<ChildStatus> {
        self.find(name).map(|entry| entry.status)
    }

    /// The restart count of a direct child.
    pub fn restarts(&self, name: &str) -> Option<u64> {
        self.find(name).map(|entry| entry.restarts)
    }

    pub fn last_failure(&self, name: &str) -> Option<Failure> {
        self.find(name).and_then(|entry| entry.last_failure)
    }

    fn find(&self, name: &str) -> Option<ChildEntry> {
        self.inner
            .read()
            .children
            .iter()
            .find(|c| c.name == name)
            .cloned()
    }

    /// Draws this board as the tree under a node called `name`.
    pub fn view(&self, name: &str, status: ChildStatus) -> NodeView {
        NodeView {
            name: name.to_string(),
            status,
            restarts: 0,
            last_failure: None,
            incarnation: 1,
            history: Vec::new(),
            strategy: None,
            children: Vec::new(),
        }
        .with_children_of(self)
    }

    /// Every node below this board, depth first, with its status — what
    /// `/ready` and the `actor_up` checks walk.
    pub fn flatten(&self) -> Vec<(String, ChildStatus)> {
        let mut out = Vec::new();
        fn walk(node: &NodeView, out: &mut Vec<(String, ChildStatus)>) {
            for child in &node.children {
                out.push((child.name.clone(), child.status));
                walk(child, out);
            }
        }
        walk(&self.view("", ChildStatus::Running), &mut out);
        out
    }

    /// Finds a node anywhere in the tree below this board.
    pub fn find_node(&self, name: &str) -> Option<NodeView> {
        fn walk(node: NodeView, name: &str) -> Option<NodeView> {
            if node.name == name {
                return Some(node);
            }
            node.children
                .into_iter()
                .find_map(|child| walk(child, name))
        }
        self.view("", ChildStatus::Running)
            .children
            .into_iter()
            .find_map(|child| walk(child, name))
    }
}

impl NodeView {
    /// This node as a supervisor: `board`'s strategy and children.
    fn with_children_of(mut self, board: &StatusBoard) -> Self {
        let (strategy, children) = {
            let inner = board.inner.read();
            (inner.strategy, inner.children.clone())
        };
        self.strategy = Some(strategy);
        self.children = children.into_iter().map(ChildEntry::into_view).collect();
        self
    }
}

impl ChildEntry {
    fn into_view(self) -> NodeView {
        let node = NodeView {
            name: self.name,
            status: self.status,
            restarts: self.restarts,
            last_failure: self.last_failure,
            incarnation: self.incarnation,
            history: self.history.into_iter().collect(),
            strategy: None,
            children: Vec::new(),
        };
        match self.board {
            Some(board) => node.with_children_of(&board),
            None => node,
        }
    }
}
