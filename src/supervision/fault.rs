//! Fault injection: how an operator (or the chaos harness) makes a named
//! actor panic, fail or stall *inside its own message handler*, so that the
//! supervision path exercised is exactly the one a real bug would take.

use std::time::Duration;

use ractor::ActorProcessingErr;
use serde::{Deserialize, Serialize};

/// What the actor should do when it handles the fault message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FaultKind {
    /// `panic!` in the handler: ractor catches it and reports `ActorFailed`.
    Panic,
    /// Return `Err` from the handler: also `ActorFailed`, without unwinding.
    Error,
    /// Sleep in the handler, stalling the mailbox (callers see timeouts).
    Delay,
}

/// A fault delivered to an actor as an ordinary message.
#[derive(Debug, Clone)]
pub struct Fault {
    pub kind: FaultKind,
    /// Only used by [`FaultKind::Delay`].
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
        }
    }
}
