//! The use cases, written once. Both doors call them: the HTTP handlers
//! (`crate::http`) and the MCP tools (`crate::mcp`, in this process), so a
//! request means the same thing through either. The stdio MCP server
//! (`lakehouse mcp --target`) sends the same request types, serialised
//! with serde, to a running service's HTTP API.
//!
//! Each use case is one typed async function that
//! - checks the request's limits ([`limits`]),
//! - picks the published reader or the actor's mailbox in one place,
//! - calls the actor with a timeout,
//! - and answers with a typed result or an [`ApiError`], whose code says
//!   what went wrong on every door.
//!
//! [`Context`] is the application's root context: what every use case,
//! actor spec and door can reach.

pub mod chat;
pub mod data;
pub mod error;
pub mod limits;
pub mod matrix;
pub mod ops;
pub mod vectors;

use std::sync::Arc;
use std::time::Duration;

use crate::config::Settings;
use crate::domain::auth::Tokens;
use crate::supervision::{CallError, Directory, StatusBoard};
use crate::telemetry::Metrics;

pub use error::ApiError;

/// The application's root context: the directory to find actors by name,
/// the root board to draw the tree, the `vectors` supervisor's board
/// (whether an index is loading or failed, without a message), metrics,
/// settings, the configured tokens and the alarm board.
#[derive(Clone, Debug)]
pub struct Context {
    pub directory: Directory,
    pub board: StatusBoard,
    pub vectors_board: StatusBoard,
    pub metrics: Arc<Metrics>,
    pub settings: Arc<Settings>,
    pub tokens: Arc<Tokens>,
    /// Alarms set and cleared by the service (see [`crate::alarms`]).
    pub alarms: crate::alarms::AlarmBoard,
    /// Held by the one snapshot running in this service (see
    /// [`ops::take_snapshot`]).
    pub snapshot_turn: Arc<tokio::sync::Mutex<()>>,
}

impl Context {
    /// One request/reply to the actor called `actor`, bounded by
    /// `server.request_timeout_ms`.
    pub async fn call<M, T, F>(&self, actor: &str, build: F) -> Result<T, CallError>
    where
        M: ractor::Message,
        T: Send + 'static,
        F: FnOnce(ractor::RpcReplyPort<T>) -> M,
    {
        self.directory.call(actor, build, self.timeout()).await
    }

    /// As [`Context::call`], with a timeout of its own (long transfers,
    /// queries with their own time limit).
    pub async fn call_with<M, T, F>(
        &self,
        actor: &str,
        build: F,
        timeout: Duration,
    ) -> Result<T, CallError>
    where
        M: ractor::Message,
        T: Send + 'static,
        F: FnOnce(ractor::RpcReplyPort<T>) -> M,
    {
        self.directory.call(actor, build, timeout).await
    }

    pub fn timeout(&self) -> Duration {
        self.settings.request_timeout()
    }
}
