//! The supervisor actor: starts its children in order, restarts them by the
//! OTP rules, and escalates when restarts come too fast.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, Instant};

use ractor::{
    Actor, ActorCell, ActorId, ActorProcessingErr, ActorRef, RpcReplyPort, SupervisionEvent,
};

use super::board::{ChildStatus, StatusBoard};
use super::directory::Directory;
use super::events::EventKind;
use super::spec::{Backoff, ChildSpec, Intensity, Restart, StartContext, Strategy};
use crate::telemetry::Metrics;

/// The reason of the `stopped` event a requested restart starts with.
pub const RESTART_REQUESTED: &str = "restart requested";

/// The supervisor actor (its behaviour lives in [`SupervisorState`]).
pub struct Supervisor;

pub struct SupervisorArguments {
    /// This supervisor's name in the tree (its parent's child name).
    pub name: String,
    pub strategy: Strategy,
    pub intensity: Intensity,
    pub backoff: Backoff,
    /// Started in this order, stopped in the reverse order.
    pub children: Vec<ChildSpec>,
    /// Where this supervisor publishes its children's status.
    pub board: StatusBoard,
    pub directory: Directory,
    pub metrics: Arc<Metrics>,
}

pub enum SupervisorMessage {
    /// Appends a child to the start order and starts it (dynamic children,
    /// such as one actor per vector index).
    StartChild(ChildSpec, RpcReplyPort<Result<(), SupervisorError>>),
    /// Stops a child within its shutdown timeout and forgets its spec.
    TerminateChild(String, RpcReplyPort<Result<(), SupervisorError>>),
    /// Stops the named child if it runs and starts it once more with a
    /// clean restart history: how an operator brings back a child that used
    /// up its own intensity and was left `failed`.
    RestartChild(String, RpcReplyPort<Result<(), SupervisorError>>),
}

#[derive(Debug, Clone, thiserror::Error)]
pub enum SupervisorError {
    #[error(
        "supervisor '{supervisor}' gave up: more than {max_restarts} restarts within {period_secs} s \
         (last: '{child}': {reason})"
    )]
    IntensityExceeded {
        supervisor: String,
        child: String,
        max_restarts: u32,
        period_secs: u64,
        reason: String,
    },
    #[error("a child named '{0}' already exists")]
    DuplicateChild(String),
    #[error("no child named '{0}'")]
    NoSuchChild(String),
    #[error("child '{child}' failed to start: {reason}")]
    StartFailed { child: String, reason: String },
}

struct Child {
    spec: ChildSpec,
    /// The live incarnation; `None` while stopped or restarting.
    cell: Option<ActorCell>,
    /// Restart times of this child within the intensity period (backoff).
    recent_restarts: VecDeque<Instant>,
    /// Restart times within the child's own intensity period, for a child
    /// that has one ([`ChildSpec::own_intensity`]).
    own_restarts: VecDeque<Instant>,
    /// Whether this supervisor incarnation has started it before: every
    /// later start is a restart.
    started_once: bool,
}

pub struct SupervisorState {
    name: String,
    strategy: Strategy,
    intensity: Intensity,
    backoff: Backoff,
    board: StatusBoard,
    directory: Directory,
    metrics: Arc<Metrics>,
    children: Vec<Child>,
    /// Restart times of all children within the intensity period.
    restarts: VecDeque<Instant>,
}

/// How a child left.
enum Exit {
    Normal,
    Abnormal(String),
}

impl Actor for Supervisor {
    type Msg = SupervisorMessage;
    type State = SupervisorState;
    type Arguments = SupervisorArguments;

    /// Starts every child in order before the supervisor counts as started,
    /// like OTP's `init/1`: a supervisor whose children cannot start fails
    /// to start, and its parent counts that as a restart.
    async fn pre_start(
        &self,
        myself: ActorRef<Self::Msg>,
        args: SupervisorArguments,
    ) -> Result<Self::State, ActorProcessingErr> {
        let mut state = SupervisorState {
            name: args.name,
            strategy: args.strategy,
            intensity: args.intensity,
            backoff: args.backoff,
            board: args.board,
            directory: args.directory,
            metrics: args.metrics,
            children: Vec::new(),
            restarts: VecDeque::new(),
        };
        for spec in args.children {
            state.adopt(spec);
        }
        for index in 0..state.children.len() {
            if let Err(err) = state.start_with_retries(&myself, index, false).await {
                state.shutdown_all("start-up failed").await;
                return Err(err.into());
            }
        }
        tracing::debug!(supervisor = %state.name, children = state.children.len(), "supervisor started");
        Ok(state)
    }

    async fn post_stop(
        &self,
        _myself: ActorRef<Self::Msg>,
        state: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        state.shutdown_all("shutdown").await;
        Ok(())
    }

    async fn handle(
        &self,
        myself: ActorRef<Self::Msg>,
        message: Self::Msg,
        state: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        match message {
            SupervisorMessage::StartChild(spec, reply) => {
                if state.children.iter().any(|c| c.spec.name == spec.name) {
                    let _ = reply.send(Err(SupervisorError::DuplicateChild(spec.name)));
                    return Ok(());
                }
                state.adopt(spec);
                let index = state.children.len() - 1;
                // Like OTP's start_child: one attempt, and a child that will
                // not start is refused to the caller rather than retried
                // into an escalation that would take its siblings down.
                if let Err(reason) = state.try_start(&myself, index, false).await {
                    let name = state.children.remove(index).spec.name;
                    state.directory.forget(&name);
                    state.board.remove(&name);
                    let _ = reply.send(Err(SupervisorError::StartFailed {
                        child: name,
                        reason,
                    }));
                    return Ok(());
                }
                let _ = reply.send(Ok(()));
            }
            SupervisorMessage::TerminateChild(name, reply) => {
                let result = state.terminate_child(&name).await;
                let _ = reply.send(result);
            }
            SupervisorMessage::RestartChild(name, reply) => {
                let result = state.restart_child(&myself, &name).await;
                let _ = reply.send(result);
            }
        }
        Ok(())
    }

    async fn handle_supervisor_evt(
        &self,
        myself: ActorRef<Self::Msg>,
        event: SupervisionEvent,
        state: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        // ractor's default would stop this supervisor on any child exit.
        let (id, exit) = match event {
            // Sent after the child's post_start: its state is loaded.
            SupervisionEvent::ActorStarted(cell) => {
                if let Some(index) = state.position(cell.get_id()) {
                    let name = state.children[index].spec.name.clone();
                    state.board.set_status(&name, ChildStatus::Running);
                    // A start after any failure (a refused first start
                    // too) is a restart.
                    let kind = match state.board.restarts(&name).unwrap_or(0) {
                        0 => EventKind::Started,
                        _ => EventKind::Restarted,
                    };
                    state.report(&name, kind, None);
                }
                return Ok(());
            }
            SupervisionEvent::ActorFailed(cell, err) => {
                (cell.get_id(), Exit::Abnormal(err.to_string()))
            }
            SupervisionEvent::ActorTerminated(cell, _, reason) => {
                let exit = match reason.as_deref() {
                    Some(r @ ("killed" | "actor_task_cancelled")) => Exit::Abnormal(r.to_string()),
                    _ => Exit::Normal,
                };
                (cell.get_id(), exit)
            }
            _ => return Ok(()),
        };
        state
            .on_child_exit(&myself, id, exit)
            .await
            .map_err(Into::into)
    }
}

impl SupervisorState {
    /// Publishes a supervision event about `actor` and adds it to the
    /// actor's history on this board.
    fn report(&self, actor: &str, kind: EventKind, reason: Option<&str>) {
        let incarnation = self.board.incarnation(actor);
        self.report_about(actor, kind, incarnation, reason);
    }

    fn report_about(&self, actor: &str, kind: EventKind, incarnation: u64, reason: Option<&str>) {
        let board = &self.board;
        self.directory
            .events()
            .publish(&self.name, actor, kind, incarnation, reason, |event| {
                board.remember(actor, event.clone())
            });
    }

    fn adopt(&mut self, spec: ChildSpec) {
        self.board.declare(&spec.name, spec.board.clone());
        self.directory
            .register_faults(&spec.name, spec.fault.clone());
        self.metrics.declare_actor(&spec.name);
        self.children.push(Child {
            spec,
            cell: None,
            recent_restarts: VecDeque::new(),
            own_restarts: VecDeque::new(),
            started_once: false,
        });
    }

    fn position(&self, id: ActorId) -> Option<usize> {
        self.children
            .iter()
            .position(|c| c.cell.as_ref().map(ActorCell::get_id) == Some(id))
    }

    async fn on_child_exit(
        &mut self,
        myself: &ActorRef<SupervisorMessage>,
        id: ActorId,
        exit: Exit,
    ) -> Result<(), SupervisorError> {
        // Events from incarnations we stopped ourselves (or already replaced)
        // no longer match a live child and are ignored.
        let Some(index) = self.position(id) else {
            return Ok(());
        };
        let name = self.children[index].spec.name.clone();
        self.children[index].cell = None;
        self.metrics.actor_up.with_label_values(&[&name]).set(0);

        let abnormal = match &exit {
            Exit::Abnormal(reason) => {
                tracing::warn!(supervisor = %self.name, actor = %name, %reason, "actor failed");
                self.metrics.supervision_event(&name, "failure");
                self.board.record_failure(&name, reason);
                self.report(&name, EventKind::Failed, Some(reason));
                true
            }
            Exit::Normal => {
                tracing::info!(supervisor = %self.name, actor = %name, "actor exited normally");
                self.metrics.supervision_event(&name, "exit");
                self.report(&name, EventKind::Stopped, None);
                false
            }
        };
        let restart = match self.children[index].spec.restart {
            Restart::Permanent => true,
            Restart::Transient => abnormal,
            Restart::Temporary => false,
        };
        if !restart {
            let status = if abnormal {
                ChildStatus::Failed
            } else {
                ChildStatus::Stopped
            };
            self.board.set_status(&name, status);
            return Ok(());
        }
        let reason = match exit {
            Exit::Abnormal(reason) => reason,
            Exit::Normal => "exited".to_string(),
        };
        if self.count_restart(index, &reason).await? == Verdict::GiveUp {
            return Ok(());
        }

        let group: Vec<usize> = match self.strategy {
            Strategy::OneForOne => vec![index],
            Strategy::OneForAll => (0..self.children.len()).collect(),
            Strategy::RestForOne => (index..self.children.len()).collect(),
        };
        for &i in &group {
            self.board
                .set_status(&self.children[i].spec.name, ChildStatus::Restarting);
        }
        // Siblings in the group are stopped in reverse start order...
        for &i in group.iter().rev() {
            if let Some(cell) = self.children[i].cell.take() {
                let sibling = self.children[i].spec.name.clone();
                self.metrics.actor_up.with_label_values(&[&sibling]).set(0);
                stop_child(&cell, &sibling, self.children[i].spec.shutdown).await;
                let why = format!("restarting with '{name}' ({:?})", self.strategy);
                self.report(&sibling, EventKind::Stopped, Some(&why));
            }
        }
        // ...and everything is started again in start order. Temporary
        // siblings that we stopped are not restarted (OTP drops them).
        for &i in &group {
            if i != index && self.children[i].spec.restart == Restart::Temporary {
                self.board
                    .set_status(&self.children[i].spec.name, ChildStatus::Stopped);
                continue;
            }
            let restart_counted = i == index;
            self.start_with_retries(myself, i, !restart_counted).await?;
        }
        Ok(())
    }

    /// Counts one restart of child `index`: against its own intensity if it
    /// has one (exceeded: the child is left failed), else against this
    /// supervisor's (exceeded: escalation, the `Err`).
    async fn count_restart(
        &mut self,
        index: usize,
        reason: &str,
    ) -> Result<Verdict, SupervisorError> {
        let name = self.children[index].spec.name.clone();
        let Some(intensity) = self.children[index].spec.own_intensity else {
            self.note_restart(&name, reason).await?;
            return Ok(Verdict::Restart);
        };
        let now = Instant::now();
        let recent = &mut self.children[index].own_restarts;
        forget_older(recent, now, intensity.period);
        recent.push_back(now);
        if recent.len() as u32 <= intensity.max_restarts {
            return Ok(Verdict::Restart);
        }
        let reason = format!(
            "gave up after more than {} restarts within {} s; last: {reason}",
            intensity.max_restarts,
            intensity.period.as_secs()
        );
        tracing::error!(supervisor = %self.name, actor = %name, %reason, "actor left failed");
        self.metrics.supervision_event(&name, "give_up");
        self.board.record_failure(&name, &reason);
        self.board.set_status(&name, ChildStatus::Failed);
        self.report(&name, EventKind::GaveUp, Some(&reason));
        self.directory.set_failed(&name, Some(&reason));
        Ok(Verdict::GiveUp)
    }

    /// Records one restart against the intensity; escalates when exceeded.
    async fn note_restart(&mut self, child: &str, reason: &str) -> Result<(), SupervisorError> {
        let now = Instant::now();
        let period = self.intensity.period;
        forget_older(&mut self.restarts, now, period);
        self.restarts.push_back(now);
        if self.restarts.len() as u32 > self.intensity.max_restarts {
            let err = SupervisorError::IntensityExceeded {
                supervisor: self.name.clone(),
                child: child.to_string(),
                max_restarts: self.intensity.max_restarts,
                period_secs: period.as_secs(),
                reason: reason.to_string(),
            };
            tracing::error!(supervisor = %self.name, error = %err, "restart intensity exceeded; escalating");
            self.metrics.supervision_event(&self.name, "escalation");
            self.board.set_status(child, ChildStatus::Failed);
            // About this supervisor itself (incarnation 0: it does not know
            // its own); its parent reports its failure next.
            let why = err.to_string();
            self.directory.events().publish(
                &self.name,
                &self.name,
                EventKind::Escalated,
                0,
                Some(&why),
                |_| {},
            );
            self.shutdown_all("escalation").await;
            return Err(err);
        }
        Ok(())
    }

    /// Starts child `index`, retrying with backoff until it starts or the
    /// intensity is exceeded. A failing `pre_start` never reaches us as a
    /// supervision event, so each failed attempt is counted here.
    ///
    /// `fresh` is true for a sibling restarted only because of another
    /// child's failure: its restart is counted on the board but not against
    /// the intensity (that failure was already counted once).
    async fn start_with_retries(
        &mut self,
        myself: &ActorRef<SupervisorMessage>,
        index: usize,
        fresh: bool,
    ) -> Result<(), SupervisorError> {
        let name = self.children[index].spec.name.clone();
        // The very first start of a child is not a restart.
        let mut is_restart = self.children[index].started_once;
        if is_restart && !fresh {
            let delay = self.child_backoff(index);
            if !delay.is_zero() {
                tokio::time::sleep(delay).await;
            }
        }
        loop {
            match self.try_start(myself, index, is_restart).await {
                Ok(()) => return Ok(()),
                Err(reason) => {
                    self.board.set_status(&name, ChildStatus::Restarting);
                    if self.count_restart(index, &reason).await? == Verdict::GiveUp {
                        return Ok(());
                    }
                    // A failed first start counts too: the next attempt is a restart.
                    is_restart = true;
                    let delay = self.child_backoff(index);
                    tokio::time::sleep(delay).await;
                }
            }
        }
    }

    /// One start attempt of child `index`; the failure reason otherwise.
    async fn try_start(
        &mut self,
        myself: &ActorRef<SupervisorMessage>,
        index: usize,
        is_restart: bool,
    ) -> Result<(), String> {
        let name = self.children[index].spec.name.clone();
        if is_restart {
            self.board.count_restart(&name);
            self.metrics
                .actor_restarts
                .with_label_values(&[&name])
                .inc();
            self.metrics.supervision_event(&name, "restart");
        }
        let context = StartContext {
            registered_name: self.directory.registered_name(&name),
            supervisor: myself.get_cell(),
        };
        match (self.children[index].spec.start)(context).await {
            Ok(cell) => {
                self.children[index].cell = Some(cell);
                self.children[index].started_once = true;
                self.board.count_start(&name);
                // `Running` once ractor reports the child's post_start done
                // (heavy loading happens there), see handle_supervisor_evt.
                self.board.set_status(&name, ChildStatus::Starting);
                self.metrics.actor_up.with_label_values(&[&name]).set(1);
                self.metrics.supervision_event(&name, "start");
                tracing::info!(supervisor = %self.name, actor = %name, restart = is_restart, "actor started");
                Ok(())
            }
            Err(err) => {
                let reason = format!("start failed: {err}");
                tracing::warn!(supervisor = %self.name, actor = %name, %reason, "actor failed to start");
                self.metrics.supervision_event(&name, "failure");
                self.board.record_failure(&name, &reason);
                // The start that failed would have been the next incarnation.
                let attempt = self.board.incarnation(&name) + 1;
                self.report_about(&name, EventKind::Failed, attempt, Some(&reason));
                Err(reason)
            }
        }
    }

    /// Backoff for the child's next restart, counting its recent restarts.
    fn child_backoff(&mut self, index: usize) -> Duration {
        let now = Instant::now();
        let period = self.children[index]
            .spec
            .own_intensity
            .map_or(self.intensity.period, |own| own.period);
        let recent = &mut self.children[index].recent_restarts;
        forget_older(recent, now, period);
        recent.push_back(now);
        self.backoff.delay(recent.len())
    }

    /// Stops the child if it runs and gives it one fresh start.
    async fn restart_child(
        &mut self,
        myself: &ActorRef<SupervisorMessage>,
        name: &str,
    ) -> Result<(), SupervisorError> {
        let index = self
            .children
            .iter()
            .position(|c| c.spec.name == name)
            .ok_or_else(|| SupervisorError::NoSuchChild(name.to_string()))?;
        self.board.set_status(name, ChildStatus::Restarting);
        if let Some(cell) = self.children[index].cell.take() {
            self.metrics.actor_up.with_label_values(&[name]).set(0);
            stop_child(&cell, name, self.children[index].spec.shutdown).await;
        }
        // Also the mark from which the alarms count failures again.
        self.report(name, EventKind::Stopped, Some(RESTART_REQUESTED));
        self.children[index].own_restarts.clear();
        self.children[index].recent_restarts.clear();
        self.directory.set_failed(name, None);
        tracing::info!(supervisor = %self.name, actor = %name, "restart requested");
        // One attempt, like `StartChild`: a child that still will not start
        // is reported to the caller and left failed.
        self.try_start(myself, index, true).await.map_err(|reason| {
            self.board.set_status(name, ChildStatus::Failed);
            SupervisorError::StartFailed {
                child: name.to_string(),
                reason,
            }
        })
    }

    async fn terminate_child(&mut self, name: &str) -> Result<(), SupervisorError> {
        let index = self
            .children
            .iter()
            .position(|c| c.spec.name == name)
            .ok_or_else(|| SupervisorError::NoSuchChild(name.to_string()))?;
        let child = self.children.remove(index);
        if let Some(cell) = child.cell {
            stop_child(&cell, name, child.spec.shutdown).await;
            self.report(name, EventKind::Stopped, Some("terminated"));
        }
        self.metrics.actor_up.with_label_values(&[name]).set(0);
        self.directory.forget(name);
        self.board.remove(name);
        Ok(())
    }

    /// Stops every live child in reverse start order.
    async fn shutdown_all(&mut self, why: &str) {
        for index in (0..self.children.len()).rev() {
            let name = self.children[index].spec.name.clone();
            if let Some(cell) = self.children[index].cell.take() {
                stop_child(&cell, &name, self.children[index].spec.shutdown).await;
                self.report(&name, EventKind::Stopped, Some(why));
            }
            self.metrics.actor_up.with_label_values(&[&name]).set(0);
            if self.board.status(&name) != Some(ChildStatus::Failed) {
                self.board.set_status(&name, ChildStatus::Stopped);
            }
        }
        tracing::debug!(supervisor = %self.name, why, "children stopped");
    }
}

/// Whether a child is restarted or left failed after counting a restart.
#[derive(Debug, PartialEq, Eq)]
enum Verdict {
    Restart,
    GiveUp,
}

/// Drops the times older than `period` from the front of `times`.
fn forget_older(times: &mut VecDeque<Instant>, now: Instant, period: Duration) {
    while times
        .front()
        .is_some_and(|t| now.duration_since(*t) > period)
    {
        times.pop_front();
    }
}

/// Graceful stop within `timeout`, then a kill.
async fn stop_child(cell: &ActorCell, name: &str, timeout: Duration) {
    if cell
        .stop_and_wait(Some("shutdown".to_string()), Some(timeout))
        .await
        .is_err()
    {
        tracing::warn!(actor = %name, timeout_ms = timeout.as_millis() as u64, "actor did not stop in time; killing it");
        cell.kill();
        let _ = cell.wait(Some(timeout)).await;
    }
}
