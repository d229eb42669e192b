//! Fault injection: how an operator (or the chaos harness) makes a named
//! actor panic, fail or stall *inside its own message handler*, so that the
//! supervision path exercised is exactly the one a real bug would take.

use std::time::Duration;

use ractor::ActorProcessingErr;
use serde::{Deserialize, Serialize};

/// What the actor should do when it handles the fault message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum FaultKind {
    /// `panic!` in the handler: ractor catches it and reports `ActorFailed`.
    Panic,
    /// Return `Err` from the handler: also `ActorFailed`, without unwinding.
    Error,
    /// Sleep in the handler, stalling the mailbox (callers see timeouts).
    Delay,
    /// Vector indexes only: the next commit that writes rows panics inside
    /// its commit task, after the Lance append and before the reply — the
    /// worst moment for a commit path to fail.
    CommitPanic,
    /// Vector indexes only: the index fails, and its next load takes
    /// `delay_ms` longer (a slow disk), so clients can be seen handling
    /// `503 index_loading`.
    SlowLoad,
}

/// A fault delivered to an actor as an ordinary message.
#[derive(Debug, Clone)]
pub struct Fault {
    pub kind: FaultKind,
    /// Only used by [`FaultKind::Delay`] and [`FaultKind::SlowLoad`].
    pub delay: Duration,
}

impl Fault {
    pub fn panic() -> Self {
        Self {
            kind: FaultKind::Panic,
            delay: Duration::ZERO,
        }
    }

    pub fn error() -> Self {
        Self {
            kind: FaultKind::Error,
            delay: Duration::ZERO,
        }
    }

    pub fn commit_panic() -> Self {
        Self {
            kind: FaultKind::CommitPanic,
            delay: Duration::ZERO,
        }
    }

    pub fn slow_load(delay: Duration) -> Self {
        Self {
            kind: FaultKind::SlowLoad,
            delay,
        }
    }

    pub fn delay(delay: Duration) -> Self {
        Self {
            kind: FaultKind::Delay,
            delay,
        }
    }

    /// Carry out the fault in the calling handler. Every actor's handler
    /// calls this for its `Fault` message variant and propagates the `Err`.
    pub async fn apply(self, actor: &str) -> Result<(), ActorProcessingErr> {
        match self.kind {
            FaultKind::Panic => panic!("injected fault: panic in '{actor}'"),
            FaultKind::Error => Err(format!("injected fault: error in '{actor}'").into()),
            FaultKind::Delay => {
                tokio::time::sleep(self.delay).await;
                Ok(())
            }
            // Only actors with a commit task accept it (the admin endpoint
            // refuses it for the others); one that gets it anyway ignores it.
            FaultKind::CommitPanic | FaultKind::SlowLoad => {
                tracing::warn!(actor, kind = ?self.kind, "fault ignored: only vector indexes take it");
                Ok(())
            }
        }
    }
}
