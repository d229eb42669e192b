//! Erlang/OTP-style supervision on ractor primitives.
//!
//! A [`Supervisor`] is an ordinary ractor actor that owns an ordered list of
//! [`ChildSpec`]s. It starts them in order, watches them through ractor's
//! supervision links, and when one exits it applies the OTP rules:
//!
//! - **restart type** ([`Restart`]): permanent children are always restarted,
//!   transient ones only after an abnormal exit, temporary ones never;
//! - **strategy** ([`Strategy`]): one_for_one restarts the failed child,
//!   one_for_all stops and restarts every child, rest_for_one the failed child
//!   and every child started after it;
//! - **intensity** ([`Intensity`]): more than `max_restarts` restarts within
//!   `period` makes the supervisor stop its children in reverse order and fail
//!   itself, which escalates to its own parent;
//! - **backoff** ([`Backoff`]): exponential delay before each restart of the
//!   same child, so a crash loop does not spin a core;
//! - start-up failures (a `pre_start` error or panic, which ractor reports to
//!   nobody because it only surfaces as the `Err` of `spawn_linked`) are
//!   counted as restarts like any other failure;
//! - shutdown stops children in reverse start order, each within its
//!   shutdown timeout, then kills it.
//!
//! Actors are addressed by name through the [`Directory`], never by a stored
//! `ActorRef`, because a restarted actor is a new actor with a new id. Every
//! child's status, restart count and last failure live on a [`StatusBoard`]
//! that readers consult without sending the supervisor a message, so the tree
//! can be read at any moment, even while a supervisor is busy restarting.
//!
//! # Why our own code and not `ractor-supervisor`
//!
//! `ractor-supervisor` 0.2 has the OTP strategies, but it has been idle since
//! early 2025, has no ordered reverse shutdown with per-child timeouts,
//! switches ractor to the `async-trait` feature for the whole build, and
//! keeps its child state where we could not read it without a message round
//! trip. The rules above fit in a few hundred lines on ractor's own
//! `spawn_linked` / `SupervisionEvent` primitives, and owning them lets the
//! board, the metrics and fault injection be part of the same design.

mod board;
mod directory;
mod events;
mod fault;
mod spec;
mod supervisor;

#[cfg(test)]
mod tests;

pub use board::{ChildStatus, Failure, NodeView, StatusBoard};
pub use directory::{CallError, Directory};
pub use events::{EventKind, EventLog, SupervisionEventView};
pub use fault::{Fault, FaultKind};
pub use spec::{Backoff, ChildSpec, Intensity, Restart, StartContext, Strategy};
pub use supervisor::{
    Supervisor, SupervisorArguments, SupervisorError, SupervisorMessage, RESTART_REQUESTED,
};
