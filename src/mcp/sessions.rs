//! The `/mcp` sessions and their caps: at most `mcp.max_sessions` at once,
//! and with tokens at most `mcp.max_sessions_per_token` per token, so one
//! agent (or one leaked read token) cannot hold every session.
//!
//! rmcp's [`LocalSessionManager`] keeps the sessions (and ends idle ones
//! after its keep-alive); the front door asks [`McpSessions::admit`] before
//! a request that would open one (a POST without `Mcp-Session-Id`), and
//! records whose session it became from the response's `Mcp-Session-Id`.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use actix_web::dev::ServiceResponse;
use parking_lot::Mutex;
use rmcp::transport::streamable_http_server::session::local::LocalSessionManager;

use crate::service::ApiError;

#[derive(Debug)]
pub struct McpSessions {
    /// rmcp's sessions (shared with the `/mcp` service).
    pub manager: Arc<LocalSessionManager>,
    /// Session id → the token that opened it.
    owners: Mutex<HashMap<String, String>>,
    /// Sessions being opened (admitted, not answered yet).
    pending: Arc<AtomicUsize>,
    /// The same, per token: concurrent opens count against its share.
    pending_by: Mutex<HashMap<String, usize>>,
    max: usize,
    per_token: usize,
}

/// A session admitted and not yet opened: counts against the caps until
/// the response says how it went.
pub struct Pending {
    sessions: Arc<McpSessions>,
    caller: String,
}

impl Drop for Pending {
    fn drop(&mut self) {
        self.sessions.pending.fetch_sub(1, Ordering::SeqCst);
        let mut by = self.sessions.pending_by.lock();
        if let Some(count) = by.get_mut(&self.caller) {
            *count = count.saturating_sub(1);
            if *count == 0 {
                by.remove(&self.caller);
            }
        }
    }
}

impl Pending {
    /// Records the session the response opened (if it did) as `caller`'s.
    pub fn created<B>(self, response: &ServiceResponse<B>, caller: &str) {
        let id = response
            .headers()
            .get("mcp-session-id")
            .and_then(|v| v.to_str().ok());
        if let Some(id) = id {
            self.sessions
                .owners
                .lock()
                .insert(id.to_string(), caller.to_string());
        }
    }
}

impl McpSessions {
    pub fn new(max: usize, per_token: usize) -> Arc<Self> {
        Arc::new(Self {
            manager: Arc::new(LocalSessionManager::default()),
            owners: Mutex::new(HashMap::new()),
            pending: Arc::new(AtomicUsize::new(0)),
            pending_by: Mutex::new(HashMap::new()),
            max,
            per_token,
        })
    }

    /// Whether `caller` may open one more session; per token only when
    /// tokens are configured.
    pub async fn admit(
        self: &Arc<Self>,
        caller: &str,
        per_token: bool,
    ) -> Result<Pending, ApiError> {
        let live: Vec<String> = self
            .manager
            .sessions
            .read()
            .await
            .keys()
            .map(|id| id.to_string())
            .collect();
        let mut owners = self.owners.lock();
        // Sessions rmcp has ended (closed, or idle past its keep-alive).
        owners.retain(|id, _| live.contains(id));
        let pending = self.pending.fetch_add(1, Ordering::SeqCst);
        let refuse = |message: String| {
            self.pending.fetch_sub(1, Ordering::SeqCst);
            Err(ApiError::TooManySessions(message))
        };
        if live.len() + pending >= self.max {
            return refuse(format!(
                "{} MCP sessions are open (mcp.max_sessions)",
                self.max
            ));
        }
        let mut pending_by = self.pending_by.lock();
        let opening = pending_by.get(caller).copied().unwrap_or(0);
        let held = owners.values().filter(|owner| *owner == caller).count() + opening;
        if per_token && held >= self.per_token {
            drop(pending_by);
            return refuse(format!(
                "token '{caller}' holds {held} MCP sessions, open or opening (mcp.max_sessions_per_token)"
            ));
        }
        *pending_by.entry(caller.to_string()).or_insert(0) += 1;
        Ok(Pending {
            sessions: self.clone(),
            caller: caller.to_string(),
        })
    }

    /// Open sessions, and how many `caller` holds.
    pub async fn count(&self, caller: &str) -> (usize, usize) {
        let live = self.manager.sessions.read().await.len();
        let held = self.owners.lock().values().filter(|o| *o == caller).count();
        (live, held)
    }
}
