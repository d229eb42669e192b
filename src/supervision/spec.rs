//! Child specifications: what a supervisor needs to know to start, restart
//! and stop one child.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use ractor::{Actor, ActorCell, ActorRef, SpawnErr};
use serde::Serialize;

use super::board::StatusBoard;
use super::fault::Fault;
use super::supervisor::{Supervisor, SupervisorArguments};

/// When a child that exited is started again (OTP restart types).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Restart {
    /// Always restarted.
    Permanent,
    /// Restarted only after an abnormal exit (panic, error, kill).
    Transient,
    /// Never restarted.
    Temporary,
}

/// Which children are restarted when one of them fails.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Strategy {
    OneForOne,
    OneForAll,
    RestForOne,
}

/// Restart intensity: at most `max_restarts` restarts within `period`;
/// one more and the supervisor gives up and escalates to its parent.
#[derive(Debug, Clone, Copy)]
pub struct Intensity {
    pub max_restarts: u32,
    pub period: Duration,
}

/// Exponential backoff before restarting the same child again:
/// `initial · 2^(n-1)` for its n-th restart within the intensity period,
/// never more than `max`.
#[derive(Debug, Clone, Copy)]
pub struct Backoff {
    pub initial: Duration,
    pub max: Duration,
}

impl Intensity {
    /// A subsystem's intensity, as configured (`supervision.max_restarts`
    /// in `supervision.period_secs`).
    pub fn configured(settings: &crate::config::SupervisionSettings) -> Self {
        Self {
            max_restarts: settings.max_restarts,
            period: Duration::from_secs(settings.period_secs),
        }
    }
}

impl Backoff {
    /// The restart backoff, as configured (`supervision.backoff_*_ms`).
    pub fn configured(settings: &crate::config::SupervisionSettings) -> Self {
        Self {
            initial: Duration::from_millis(settings.backoff_initial_ms),
            max: Duration::from_millis(settings.backoff_max_ms),
        }
    }

    pub fn delay(&self, nth_restart: usize) -> Duration {
        if nth_restart == 0 {
            return Duration::ZERO;
        }
        let exponent = (nth_restart - 1).min(20) as u32;
        self.initial.saturating_mul(1u32 << exponent).min(self.max)
    }
}

/// Handed to a child's start function.
pub struct StartContext {
    /// The name to register the actor under (the [`super::Directory`]
    /// namespaces it per application).
    pub registered_name: String,
    /// The supervisor to link to.
    pub supervisor: ActorCell,
}

pub(crate) type StartFuture = Pin<Box<dyn Future<Output = Result<ActorCell, SpawnErr>> + Send>>;
pub(crate) type StartFn = Arc<dyn Fn(StartContext) -> StartFuture + Send + Sync>;
/// Delivers a [`Fault`] to a child's mailbox; knows the child's message type.
pub(crate) type FaultFn = Arc<dyn Fn(&ActorCell, Fault) -> bool + Send + Sync>;

/// How to start one child, and how to treat it when it exits.
#[derive(Clone)]
pub struct ChildSpec {
    pub name: String,
    pub restart: Restart,
    /// How long a graceful stop may take before the child is killed.
    pub shutdown: Duration,
    pub(crate) start: StartFn,
    pub(crate) fault: Option<FaultFn>,
    /// Set when the child is itself a supervisor, so the tree can be drawn.
    pub(crate) board: Option<StatusBoard>,
    /// The child's own restart intensity, if it has one (see
    /// [`ChildSpec::own_intensity`]).
    pub own_intensity: Option<Intensity>,
}

impl std::fmt::Debug for ChildSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ChildSpec")
            .field("name", &self.name)
            .field("restart", &self.restart)
            .field("shutdown", &self.shutdown)
            .field("own_intensity", &self.own_intensity)
            .finish()
    }
}

impl ChildSpec {
    /// A worker actor. `make` is called on every (re)start, so each
    /// incarnation gets fresh arguments and builds its state from them.
    /// Workers accept [`Fault`]s through their message type.
    pub fn worker<A, F>(name: impl Into<String>, make: F) -> Self
    where
        A: Actor,
        A::Msg: From<Fault>,
        F: Fn() -> (A, A::Arguments) + Send + Sync + 'static,
    {
        let start: StartFn = Arc::new(move |ctx: StartContext| {
            let (actor, arguments) = make();
            Box::pin(async move {
                let (actor_ref, _handle) =
                    A::spawn_linked(Some(ctx.registered_name), actor, arguments, ctx.supervisor)
                        .await?;
                Ok(actor_ref.get_cell())
            })
        });
        let fault: FaultFn = Arc::new(|cell: &ActorCell, fault: Fault| {
            ActorRef::<A::Msg>::from(cell.clone())
                .send_message(A::Msg::from(fault))
                .is_ok()
        });
        Self {
            name: name.into(),
            restart: Restart::Permanent,
            shutdown: Duration::from_secs(5),
            start,
            fault: Some(fault),
            board: None,
            own_intensity: None,
        }
    }

    /// A nested supervisor. `make` builds its arguments on every (re)start
    /// (so a restarted supervisor re-derives its children); `board` is the
    /// nested supervisor's own board, shared across its incarnations.
    pub fn supervisor<F>(name: impl Into<String>, board: StatusBoard, make: F) -> Self
    where
        F: Fn() -> SupervisorArguments + Send + Sync + 'static,
    {
        let start: StartFn = Arc::new(move |ctx: StartContext| {
            let arguments = make();
            Box::pin(async move {
                let (actor_ref, _handle) = Supervisor::spawn_linked(
                    Some(ctx.registered_name),
                    Supervisor,
                    arguments,
                    ctx.supervisor,
                )
                .await?;
                Ok(actor_ref.get_cell())
            })
        });
        Self {
            name: name.into(),
            restart: Restart::Permanent,
            shutdown: Duration::from_secs(30),
            start,
            fault: None,
            board: Some(board),
            own_intensity: None,
        }
    }

    pub fn restart(mut self, restart: Restart) -> Self {
        self.restart = restart;
        self
    }

    pub fn shutdown(mut self, timeout: Duration) -> Self {
        self.shutdown = timeout;
        self
    }

    /// Counts this child's restarts against an intensity of its own instead
    /// of the supervisor's: more than `max_restarts` within `period` and
    /// the child is left `failed` (until [`super::SupervisorMessage::RestartChild`]),
    /// while its siblings and the supervisor carry on. This is what OTP
    /// gets by putting a child behind a supervisor of its own that is a
    /// temporary child of this one: one crash-looping vector index must not
    /// use up the intensity that protects every other index.
    pub fn own_intensity(mut self, intensity: Intensity) -> Self {
        self.own_intensity = Some(intensity);
        self
    }
}
