//! Finding actors by name, and calling them with a timeout.
//!
//! ractor's name registry is process-wide, and one process may hold several
//! applications (the integration tests spawn many), so every registered
//! name is prefixed with the application's namespace. Callers never keep an
//! `ActorRef`: after a restart the old one is dead, and resolving the name
//! again is what finds the new incarnation.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use parking_lot::RwLock;
use ractor::rpc::CallResult;
use ractor::{ActorRef, Message, RpcReplyPort};

use super::fault::Fault;
use super::spec::FaultFn;
use crate::codes::{ErrorCode, HasCode};

static NEXT_NAMESPACE: AtomicU64 = AtomicU64::new(1);

/// How often a caller waiting for a restarting actor looks for it again.
const RESTART_POLL: Duration = Duration::from_millis(5);

/// Why a call to a named actor did not produce a reply.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum CallError {
    /// No actor of that name is registered: it is restarting, or gone.
    #[error("actor '{actor}' is not available (restarting or stopped)")]
    Unavailable { actor: String },
    /// The actor did not answer in time.
    #[error("actor '{actor}' did not answer within {timeout_ms} ms")]
    Timeout { actor: String, timeout_ms: u64 },
    /// The name is not part of the tree at all.
    #[error("no actor named '{actor}'")]
    Unknown { actor: String },
    /// The actor exists but does not take injected faults (supervisors).
    #[error("actor '{actor}' does not accept injected faults")]
    FaultsUnsupported { actor: String },
    /// Its supervisor gave up on it (it used up its own restart intensity);
    /// it stays down until an operator restarts it.
    #[error("actor '{actor}' has failed and is not being restarted: {reason}")]
    Failed { actor: String, reason: String },
}

impl HasCode for CallError {
    fn code(&self) -> ErrorCode {
        match self {
            CallError::Unavailable { .. } => ErrorCode::ActorUnavailable,
            CallError::Timeout { .. } => ErrorCode::ActorTimeout,
            CallError::Unknown { .. } => ErrorCode::UnknownActor,
            CallError::FaultsUnsupported { .. } => ErrorCode::FaultNotSupported,
            CallError::Failed { .. } => ErrorCode::ActorFailed,
        }
    }
}

#[derive(Debug)]
struct DirectoryInner {
    namespace: String,
    /// `lakehouse_actor_mailbox_depth{actor}`: requests sent through this
    /// directory and not yet answered (queued or being handled). ractor
    /// does not expose its mailbox length, so this counts at the caller.
    in_flight: Option<prometheus::IntGaugeVec>,
    /// Fault delivery per child name; registered by the supervisor that
    /// owns the child. Lives as long as the child spec does.
    faults: RwLock<HashMap<String, FaultFnDebug>>,
    /// Children their supervisor gave up on, with the reason: callers are
    /// told at once instead of waiting for a restart that will not come.
    failed: RwLock<HashMap<String, String>>,
    /// Every supervision event of the tree.
    events: super::events::EventLog,
    /// State actors publish for direct reads (see [`Directory::publish`]).
    tables: RwLock<HashMap<String, Table>>,
}

/// A published table: shared state readable without the owner's mailbox.
type Table = Arc<dyn std::any::Any + Send + Sync>;

#[derive(Clone)]
struct FaultFnDebug(FaultFn);

impl std::fmt::Debug for FaultFnDebug {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("FaultFn")
    }
}

/// Name resolution for one application's actors.
#[derive(Debug, Clone)]
pub struct Directory {
    inner: Arc<DirectoryInner>,
}

impl Default for Directory {
    fn default() -> Self {
        Self::new()
    }
}

impl Directory {
    /// A directory with a fresh namespace, unique in this process.
    pub fn new() -> Self {
        Self::build(None)
    }

    /// A directory that keeps the per-actor in-flight gauge up to date.
    pub fn with_depth_gauge(gauge: prometheus::IntGaugeVec) -> Self {
        Self::build(Some(gauge))
    }

    fn build(in_flight: Option<prometheus::IntGaugeVec>) -> Self {
        let n = NEXT_NAMESPACE.fetch_add(1, Ordering::Relaxed);
        Self {
            inner: Arc::new(DirectoryInner {
                namespace: format!("lakehouse-{n}"),
                in_flight,
                faults: RwLock::new(HashMap::new()),
                failed: RwLock::new(HashMap::new()),
                events: super::events::EventLog::default(),
                tables: RwLock::new(HashMap::new()),
            }),
        }
    }

    /// The tree's supervision events.
    pub fn events(&self) -> &super::events::EventLog {
        &self.inner.events
    }

    /// Publishes `table`, state the actor `owner` shares for direct reads —
    /// an ETS table with read concurrency, in OTP terms: readers use it
    /// without a trip through the owner's mailbox, while writes and the
    /// lifecycle stay with the owner. The owner withdraws it with
    /// [`Directory::withdraw`] when its incarnation ends, so a reader never
    /// sees a dead incarnation's table for long.
    pub fn publish<T: std::any::Any + Send + Sync>(&self, owner: &str, table: Arc<T>) {
        self.inner.tables.write().insert(owner.to_string(), table);
    }

    /// Withdraws `owner`'s table if it is still `table` (a later
    /// incarnation's is left alone).
    pub fn withdraw<T: std::any::Any + Send + Sync>(&self, owner: &str, table: &Arc<T>) {
        let mut tables = self.inner.tables.write();
        let same = tables.get(owner).is_some_and(|published| {
            std::ptr::eq(
                Arc::as_ptr(published) as *const (),
                Arc::as_ptr(table) as *const (),
            )
        });
        if same {
            tables.remove(owner);
        }
    }

    /// The table `owner` published, if any and of type `T`.
    pub fn table<T: std::any::Any + Send + Sync>(&self, owner: &str) -> Option<Arc<T>> {
        let table = self.inner.tables.read().get(owner)?.clone();
        table.downcast::<T>().ok()
    }

    /// The name registered with ractor for the tree name `name`.
    pub fn registered_name(&self, name: &str) -> String {
        format!("{}/{}", self.inner.namespace, name)
    }

    /// The current incarnation of `name`, if one is registered.
    pub fn lookup<M: Message>(&self, name: &str) -> Option<ActorRef<M>> {
        ActorRef::<M>::where_is(self.registered_name(name))
    }

    /// Sends one request to the actor called `name` and waits at most
    /// `timeout` for its reply. A dead or restarting actor is an
    /// [`CallError::Unavailable`] at once: calls in flight to an actor that
    /// dies fail immediately because its reply port is dropped.
    pub async fn call<M, T, F>(
        &self,
        name: &str,
        build: F,
        timeout: Duration,
    ) -> Result<T, CallError>
    where
        M: Message,
        T: Send + 'static,
        F: FnOnce(RpcReplyPort<T>) -> M,
    {
        let unavailable = || match self.failure(name) {
            Some(reason) => CallError::Failed {
                actor: name.to_string(),
                reason,
            },
            None => CallError::Unavailable {
                actor: name.to_string(),
            },
        };
        let actor = self.lookup::<M>(name).ok_or_else(unavailable)?;
        let gauge = self
            .inner
            .in_flight
            .as_ref()
            .map(|g| g.with_label_values(&[name]));
        if let Some(gauge) = &gauge {
            gauge.inc();
        }
        let outcome = actor.call(build, Some(timeout)).await;
        if let Some(gauge) = &gauge {
            gauge.dec();
        }
        match outcome {
            Ok(CallResult::Success(reply)) => Ok(reply),
            Ok(CallResult::Timeout) => Err(CallError::Timeout {
                actor: name.to_string(),
                timeout_ms: timeout.as_millis() as u64,
            }),
            Ok(CallResult::SenderError) | Err(_) => Err(unavailable()),
        }
    }

    /// Like [`Directory::call`], for requests that are safe to send again
    /// (reads, and writes that are idempotent by id): while the actor is
    /// restarting — not registered yet, or it died with the request in its
    /// mailbox — the request waits for the next incarnation and is sent
    /// again, all within `timeout`. A supervised restart then costs the
    /// caller latency, not an error. A name that is not part of the tree
    /// (or an actor that stays down past the deadline) is still an error.
    pub async fn call_idempotent<M, T, F>(
        &self,
        name: &str,
        build: F,
        timeout: Duration,
    ) -> Result<T, CallError>
    where
        M: Message,
        T: Send + 'static,
        F: Fn(RpcReplyPort<T>) -> M,
    {
        // A timeout reports the caller's whole budget, not the last attempt's.
        let timed_out = || CallError::Timeout {
            actor: name.to_string(),
            timeout_ms: timeout.as_millis() as u64,
        };
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let remaining = deadline.saturating_duration_since(tokio::time::Instant::now());
            if remaining.is_zero() {
                return Err(timed_out());
            }
            match self.call(name, &build, remaining).await {
                Err(CallError::Unavailable { .. }) if self.known(name) => {
                    tokio::time::sleep(RESTART_POLL.min(remaining)).await;
                }
                Err(CallError::Timeout { .. }) => return Err(timed_out()),
                outcome => return outcome,
            }
        }
    }

    /// Sends a message without waiting for anything.
    pub fn cast<M: Message>(&self, name: &str, message: M) -> Result<(), CallError> {
        let actor = self
            .lookup::<M>(name)
            .ok_or_else(|| CallError::Unavailable {
                actor: name.to_string(),
            })?;
        actor
            .send_message(message)
            .map_err(|_| CallError::Unavailable {
                actor: name.to_string(),
            })
    }

    pub(crate) fn register_faults(&self, name: &str, fault: Option<FaultFn>) {
        let mut faults = self.inner.faults.write();
        match fault {
            Some(fault) => faults.insert(name.to_string(), FaultFnDebug(fault)),
            None => faults.remove(name),
        };
    }

    /// Whether a worker of that name is part of the tree (running or not).
    pub fn known(&self, name: &str) -> bool {
        self.inner.faults.read().contains_key(name)
    }

    pub(crate) fn forget(&self, name: &str) {
        self.inner.faults.write().remove(name);
        self.inner.failed.write().remove(name);
    }

    /// Marks `name` as given up on (`Some(reason)`) or as back in the
    /// supervisor's care (`None`).
    pub(crate) fn set_failed(&self, name: &str, reason: Option<&str>) {
        let mut failed = self.inner.failed.write();
        match reason {
            Some(reason) => failed.insert(name.to_string(), reason.to_string()),
            None => failed.remove(name),
        };
    }

    /// Why `name`'s supervisor gave up on it, if it did.
    pub fn failure(&self, name: &str) -> Option<String> {
        self.inner.failed.read().get(name).cloned()
    }

    /// Delivers `fault` to the mailbox of the actor called `name`.
    /// `known` says whether the tree has a node of that name at all.
    pub fn inject(&self, name: &str, fault: Fault, known: bool) -> Result<(), CallError> {
        let hook = self.inner.faults.read().get(name).cloned();
        let Some(FaultFnDebug(hook)) = hook else {
            return Err(if known {
                CallError::FaultsUnsupported {
                    actor: name.to_string(),
                }
            } else {
                CallError::Unknown {
                    actor: name.to_string(),
                }
            });
        };
        let cell = ractor::registry::where_is(self.registered_name(name)).ok_or_else(|| {
            CallError::Unavailable {
                actor: name.to_string(),
            }
        })?;
        if hook(&cell, fault) {
            Ok(())
        } else {
            Err(CallError::Unavailable {
                actor: name.to_string(),
            })
        }
    }
}
