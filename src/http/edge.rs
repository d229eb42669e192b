//! The `http` edge actor: owns the actix-web server.
//!
//! The listening socket is bound once by the application and kept open for
//! its whole life; each incarnation of this actor serves a duplicate of it.
//! So when the edge fails and is restarted, the new server takes over the
//! same socket, and connections that arrive in between wait in the kernel's
//! accept backlog instead of being refused.

use std::net::TcpListener;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use actix_web::dev::ServerHandle;
use ractor::{Actor, ActorProcessingErr, ActorRef};

use super::ApiContext;
use crate::supervision::Fault;

/// The tree name of the HTTP edge.
pub const NAME: &str = "http";

pub struct HttpActor;

pub struct HttpArguments {
    /// The application's listening socket (this incarnation gets a dup).
    pub listener: Arc<TcpListener>,
    pub context: ApiContext,
}

pub enum HttpMessage {
    /// The server future ended on its own: the edge is down, fail so that
    /// the supervisor restarts it.
    ServerExited(String),
    Fault(Fault),
}

impl From<Fault> for HttpMessage {
    fn from(fault: Fault) -> Self {
        Self::Fault(fault)
    }
}

pub struct HttpState {
    handle: ServerHandle,
    /// Set before a deliberate stop, so the watcher does not report it.
    stopping: Arc<AtomicBool>,
    shutdown_timeout: Duration,
    /// Its event streams never end by themselves: told to at a stop.
    events: crate::supervision::EventLog,
}

impl Drop for HttpState {
    /// A failed actor's state is dropped without `post_stop`: stop the server
    /// here too, so a crashed edge never leaves a zombie server behind.
    fn drop(&mut self) {
        if !self.stopping.swap(true, Ordering::SeqCst) {
            let handle = self.handle.clone();
            if let Ok(runtime) = tokio::runtime::Handle::try_current() {
                runtime.spawn(async move { handle.stop(false).await });
            }
        }
    }
}

impl Actor for HttpActor {
    type Msg = HttpMessage;
    type State = HttpState;
    type Arguments = HttpArguments;

    async fn pre_start(
        &self,
        myself: ActorRef<Self::Msg>,
        args: HttpArguments,
    ) -> Result<Self::State, ActorProcessingErr> {
        let listener = args.listener.try_clone()?;
        let shutdown_timeout =
            Duration::from_secs(args.context.settings.server.shutdown_timeout_secs);
        let events = args.context.directory.events().clone();
        let server = super::server(listener, args.context)?;
        let handle = server.handle();
        let stopping = Arc::new(AtomicBool::new(false));

        let watcher_stopping = stopping.clone();
        tokio::spawn(async move {
            let outcome = server.await;
            if !watcher_stopping.load(Ordering::SeqCst) {
                let reason = match outcome {
                    Ok(()) => "server stopped unexpectedly".to_string(),
                    Err(err) => format!("server failed: {err}"),
                };
                let _ = myself.send_message(HttpMessage::ServerExited(reason));
            }
        });
        Ok(HttpState {
            handle,
            stopping,
            shutdown_timeout,
            events,
        })
    }

    async fn post_stop(
        &self,
        _myself: ActorRef<Self::Msg>,
        state: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        state.stopping.store(true, Ordering::SeqCst);
        state.events.end_streams();
        // Graceful: in-flight requests finish within the shutdown budget.
        let stop = state.handle.stop(true);
        if tokio::time::timeout(state.shutdown_timeout, stop)
            .await
            .is_err()
        {
            state.handle.stop(false).await;
        }
        Ok(())
    }

    async fn handle(
        &self,
        _myself: ActorRef<Self::Msg>,
        message: Self::Msg,
        _state: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        match message {
            HttpMessage::ServerExited(reason) => Err(reason.into()),
            HttpMessage::Fault(fault) => fault.apply(NAME).await,
        }
    }
}
