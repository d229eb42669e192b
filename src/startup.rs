//! Building and running the application: bind the socket, start the
//! supervision tree, wait for it to end.

use std::net::{SocketAddr, TcpListener};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use ractor::{Actor, ActorRef};
use tokio::task::JoinHandle;

use crate::actors::alarms::{self, AlarmsActor, AlarmsArguments};
use crate::actors::catalog::{self as dataset_catalog, CatalogActor, CatalogArguments};
use crate::actors::chat::{self, ChatActor, ChatArguments};
use crate::actors::embed::{self, EmbedActor, EmbedArguments};
use crate::actors::ingest::{self, IngestActor, IngestArguments};
use crate::actors::matrix::{self, MatrixActor, MatrixArguments};
use crate::actors::query::{self, QueryActor, QueryArguments};
use crate::actors::storage::{self, StorageActor, StorageArguments};
use crate::actors::validate::{self, ValidateActor, ValidateArguments};
use crate::actors::vectors::catalog::{self, VectorCatalogActor};
use crate::actors::vectors::VectorsContext;
use crate::config::Settings;
use crate::domain::auth::Tokens;
use crate::http::edge::{self, HttpActor, HttpArguments};
use crate::http::{ApiContext, Contract};
use crate::service::Context;
use crate::supervision::{
    Backoff, ChildSpec, Directory, Intensity, StatusBoard, Strategy, Supervisor,
    SupervisorArguments, SupervisorMessage,
};
use crate::telemetry::Metrics;

/// A running Lakehouse: the supervision tree and the socket it serves.
pub struct Application {
    address: SocketAddr,
    context: Context,
    root: ActorRef<SupervisorMessage>,
    root_task: JoinHandle<()>,
}

impl Application {
    /// Binds `server.host:server.port` (port 0 picks a free one), prepares
    /// the data dir and starts the tree. Returns once every child has started.
    pub async fn build(settings: Settings) -> anyhow::Result<Self> {
        check_front_door(&settings)?;
        std::fs::create_dir_all(&settings.data.dir)
            .with_context(|| format!("cannot create data.dir {}", settings.data.dir.display()))?;
        crate::redact::hide(&settings.data.dir);
        let listener = TcpListener::bind((settings.server.host.as_str(), settings.server.port))
            .with_context(|| {
                format!(
                    "cannot bind {}:{}",
                    settings.server.host, settings.server.port
                )
            })?;
        listener.set_nonblocking(true)?;
        let address = listener.local_addr()?;

        let metrics = Arc::new(Metrics::new()?);
        let tokens = Arc::new(Tokens::new(&settings.auth.tokens));
        if tokens.is_empty() {
            tracing::warn!(
                address = %address,
                "no auth.tokens configured: the API is open to anyone who can reach this loopback address"
            );
        } else {
            tracing::info!(
                tokens = tokens.len(),
                protect_ops = settings.auth.protect_ops,
                "bearer tokens required"
            );
        }
        let event_streams = Arc::new(tokio::sync::Semaphore::new(
            settings.limits.max_event_streams,
        ));
        let contract =
            Contract::build(&settings).map_err(|e| anyhow::anyhow!("refusing to start: {e}"))?;
        let front = Arc::new(crate::http::front_door::FrontDoor::new(&settings));
        let mcp_sessions = crate::mcp::sessions::McpSessions::new(
            settings.mcp.max_sessions,
            settings.mcp.max_sessions_per_token,
        );
        let context = Context {
            directory: Directory::with_depth_gauge(metrics.actor_mailbox_depth.clone()),
            board: StatusBoard::new(Strategy::OneForOne),
            vectors_board: StatusBoard::new(Strategy::OneForOne),
            metrics,
            settings: Arc::new(settings),
            tokens,
            alarms: crate::alarms::AlarmBoard::default(),
            snapshot_turn: Default::default(),
        };
        let api = ApiContext {
            service: context.clone(),
            contract: Arc::new(contract),
            event_streams,
            front,
            mcp_sessions,
        };
        let arguments = root_arguments(&context, api, Arc::new(listener));
        let (root, root_task) = Actor::spawn(
            Some(context.directory.registered_name("root")),
            Supervisor,
            arguments,
        )
        .await
        .map_err(|e| anyhow::anyhow!("the supervision tree failed to start: {e}"))?;
        tracing::info!(%address, "lakehouse is serving");
        Ok(Self {
            address,
            context,
            root,
            root_task,
        })
    }

    pub fn address(&self) -> SocketAddr {
        self.address
    }

    pub fn port(&self) -> u16 {
        self.address.port()
    }

    pub fn context(&self) -> &Context {
        &self.context
    }

    /// Runs until SIGINT/SIGTERM (then shuts down in order) or until the
    /// root supervisor dies (restart intensity exceeded all the way up),
    /// which is an error: the process should exit non-zero and let its own
    /// supervisor (systemd, Kubernetes) take over.
    pub async fn run_until_stopped(self) -> anyhow::Result<()> {
        let Application {
            context,
            root,
            mut root_task,
            ..
        } = self;
        tokio::select! {
            _ = &mut root_task => {
                let tree = serde_json::to_string(&context.board.view("root", crate::supervision::ChildStatus::Failed))
                    .unwrap_or_default();
                anyhow::bail!("the root supervisor stopped: {tree}");
            }
            _ = shutdown_signal() => {
                tracing::info!("shutdown requested; stopping actors in reverse start order");
                let budget = Duration::from_secs(context.settings.server.shutdown_timeout_secs + 30);
                if root.stop_and_wait(Some("shutdown".into()), Some(budget)).await.is_err() {
                    root.kill();
                }
                Ok(())
            }
        }
    }

    /// Stops the tree in reverse start order and waits for it.
    pub async fn shutdown(self) {
        let budget = Duration::from_secs(self.context.settings.server.shutdown_timeout_secs + 30);
        if self
            .root
            .stop_and_wait(Some("shutdown".into()), Some(budget))
            .await
            .is_err()
        {
            self.root.kill();
        }
        let _ = self.root_task.await;
    }
}

/// Refuses to serve an open API on anything but loopback: with no tokens,
/// anyone who can reach the port could create and drop indexes, delete
/// objects and send 1 GiB ingests.
fn check_front_door(settings: &Settings) -> anyhow::Result<()> {
    if settings.auth.tokens.is_empty() && !settings.binds_loopback() {
        anyhow::bail!(
            "refusing to start: server.host = {} is not a loopback address and auth.tokens is \
             empty (no auth.tokens_file either), so anyone who can reach the port could write, \
             drop and delete. Add tokens (`lakehouse token new --name NAME --role ROLE` prints \
             the line for auth.tokens), or bind server.host to 127.0.0.1",
            settings.server.host
        );
    }
    let hosts_named =
        !settings.server.allowed_hosts.is_empty() || !settings.mcp.allowed_hosts.is_empty();
    if !settings.binds_loopback() && !hosts_named {
        anyhow::bail!(
            "refusing to start: server.host = {} is not a loopback address and \
             server.allowed_hosts is empty, so every request would get 421 host_not_allowed. \
             Set server.allowed_hosts to the names clients reach the service by \
             (e.g. [\"lakehouse.example.com\"]), or to [\"*\"] to serve any Host",
            settings.server.host
        );
    }
    Ok(())
}

/// Tree names of the subsystem supervisors under `root`.
pub const DATA: &str = "data";
pub const RETRIEVAL: &str = "retrieval";
pub const EDGE: &str = "edge";

/// The root supervisor: three subsystems, each with its own restart
/// intensity, as an OTP release groups its applications. A component that
/// crash-loops uses up its subsystem's intensity, and root restarts that
/// subsystem alone; only subsystems that keep failing make root give up
/// (the process then exits non-zero). Started in dependency order — data,
/// then retrieval, then the HTTP edge, which accepts requests only once
/// everything behind it is up and is the first to stop.
fn root_arguments(
    context: &Context,
    api: ApiContext,
    listener: Arc<TcpListener>,
) -> SupervisorArguments {
    let settings = &context.settings;
    SupervisorArguments {
        name: "root".to_string(),
        strategy: Strategy::OneForOne,
        intensity: Intensity {
            max_restarts: settings.supervision.root_max_restarts,
            period: Duration::from_secs(settings.supervision.root_period_secs),
        },
        backoff: backoff(settings),
        children: vec![
            subsystem(context, DATA, data_children(context)),
            subsystem(context, RETRIEVAL, retrieval_children(context)),
            subsystem(context, EDGE, edge_children(context, api, listener)),
        ],
        board: context.board.clone(),
        directory: context.directory.clone(),
        metrics: context.metrics.clone(),
    }
}

/// A one_for_one subsystem supervisor over `children` (re-created from the
/// same specs at every restart; a nested supervisor such as `vectors`
/// re-derives its own children).
fn subsystem(context: &Context, name: &'static str, children: Vec<ChildSpec>) -> ChildSpec {
    let board = StatusBoard::new(Strategy::OneForOne);
    let shutdown = Duration::from_millis(context.settings.supervision.shutdown_timeout_ms);
    let (settings, directory, metrics) = (
        context.settings.clone(),
        context.directory.clone(),
        context.metrics.clone(),
    );
    let own_board = board.clone();
    ChildSpec::supervisor(name, board, move || SupervisorArguments {
        name: name.to_string(),
        strategy: Strategy::OneForOne,
        intensity: intensity(&settings),
        backoff: backoff(&settings),
        children: children.clone(),
        board: own_board.clone(),
        directory: directory.clone(),
        metrics: metrics.clone(),
    })
    // Enough for every child's own shutdown budget, in reverse order.
    .shutdown(shutdown * 8)
}

/// Objects, dataset manifests, CSV ingest and SQL.
fn data_children(context: &Context) -> Vec<ChildSpec> {
    let settings = &context.settings;
    let shutdown = Duration::from_millis(settings.supervision.shutdown_timeout_ms);
    let call_timeout = settings.request_timeout();

    let (storage_settings, data_dir) = (settings.storage.clone(), settings.data.dir.clone());
    let durability = settings.data.durability;
    let storage = ChildSpec::worker(storage::NAME, move || {
        (
            StorageActor,
            StorageArguments {
                settings: storage_settings.clone(),
                data_dir: data_dir.clone(),
                durability,
            },
        )
    })
    .shutdown(shutdown);
    let (data_dir, durability) = (settings.data.dir.clone(), settings.data.durability);
    let catalog = ChildSpec::worker(dataset_catalog::NAME, move || {
        (
            CatalogActor,
            CatalogArguments {
                data_dir: data_dir.clone(),
                durability,
            },
        )
    })
    .shutdown(shutdown);
    let (data_dir, ingest_settings, directory, metrics) = (
        settings.data.dir.clone(),
        settings.ingest.clone(),
        context.directory.clone(),
        context.metrics.clone(),
    );
    let ingest = ChildSpec::worker(ingest::NAME, move || {
        (
            IngestActor,
            IngestArguments {
                data_dir: data_dir.clone(),
                settings: ingest_settings.clone(),
                durability,
                directory: directory.clone(),
                metrics: metrics.clone(),
                call_timeout,
            },
        )
    })
    .shutdown(shutdown);
    let (query_settings, directory, data_dir) = (
        settings.query.clone(),
        context.directory.clone(),
        settings.data.dir.clone(),
    );
    let query = ChildSpec::worker(query::NAME, move || {
        (
            QueryActor,
            QueryArguments {
                settings: query_settings.clone(),
                directory: directory.clone(),
                call_timeout,
                data_dir: data_dir.clone(),
            },
        )
    })
    .shutdown(shutdown);
    vec![storage, catalog, ingest, query]
}

/// Embedding, vector indexes, worker search and the playbook, validators.
fn retrieval_children(context: &Context) -> Vec<ChildSpec> {
    let settings = &context.settings;
    let shutdown = Duration::from_millis(settings.supervision.shutdown_timeout_ms);
    let timeout = settings.request_timeout();

    let embed_settings = settings.embed.clone();
    let metrics = context.metrics.clone();
    let embed = ChildSpec::worker(embed::NAME, move || {
        (
            EmbedActor,
            EmbedArguments {
                settings: embed_settings.clone(),
                metrics: metrics.clone(),
            },
        )
    })
    .shutdown(shutdown);

    let vectors = VectorsContext::new(
        context.settings.clone(),
        context.directory.clone(),
        context.metrics.clone(),
        context.vectors_board.clone(),
    );
    let vectors_supervisor = vectors.supervisor_spec().shutdown(shutdown * 4);
    let vector_catalog =
        ChildSpec::worker(catalog::NAME, move || (VectorCatalogActor, vectors.clone()))
            .shutdown(shutdown);

    let (directory, matrix_settings) = (context.directory.clone(), settings.matrix.clone());
    // Outlives the matrix's incarnations: a recording still running on a
    // dead one holds its entry's turn until it is done.
    let turns = Arc::new(matrix::Turns::default());
    let max_entry_bytes = settings.vectors.max_metadata_bytes;
    let matrix = ChildSpec::worker(matrix::NAME, move || {
        (
            MatrixActor,
            MatrixArguments {
                directory: directory.clone(),
                settings: matrix_settings.clone(),
                call_timeout: timeout,
                turns: turns.clone(),
                max_entry_bytes,
            },
        )
    })
    .shutdown(shutdown);
    let arguments = {
        let settings = settings.clone();
        let (directory, metrics) = (context.directory.clone(), context.metrics.clone());
        move || ChatArguments {
            settings: settings.chat.clone(),
            matrix: settings.matrix.clone(),
            directory: directory.clone(),
            metrics: metrics.clone(),
            data_dir: settings.data.dir.clone(),
            durability: settings.data.durability,
            call_timeout: timeout,
        }
    };
    let chat = ChildSpec::worker(chat::NAME, move || (ChatActor, arguments())).shutdown(shutdown);
    let directory = context.directory.clone();
    let validate = ChildSpec::worker(validate::NAME, move || {
        (
            ValidateActor,
            ValidateArguments {
                directory: directory.clone(),
                call_timeout: timeout,
            },
        )
    })
    .shutdown(shutdown);
    vec![
        embed,
        vectors_supervisor,
        vector_catalog,
        matrix,
        validate,
        chat,
    ]
}

/// The actix-web server, and the alarms checker.
fn edge_children(context: &Context, api: ApiContext, listener: Arc<TcpListener>) -> Vec<ChildSpec> {
    let shutdown = Duration::from_millis(context.settings.supervision.shutdown_timeout_ms);
    let http_context = api;
    let http = ChildSpec::worker(edge::NAME, move || {
        (
            HttpActor,
            HttpArguments {
                listener: listener.clone(),
                context: http_context.clone(),
            },
        )
    })
    .shutdown(shutdown);
    let (settings, board, tree, vectors, directory, metrics) = (
        context.settings.clone(),
        context.alarms.clone(),
        context.board.clone(),
        context.vectors_board.clone(),
        context.directory.clone(),
        context.metrics.clone(),
    );
    // Its own intensity: a checker that keeps failing is left failed
    // rather than restarting the edge that serves requests.
    let alarms_intensity = intensity(&context.settings);
    let alarms = ChildSpec::worker(alarms::NAME, move || {
        (
            AlarmsActor,
            AlarmsArguments {
                settings: settings.clone(),
                board: board.clone(),
                tree: tree.clone(),
                vectors: vectors.clone(),
                directory: directory.clone(),
                metrics: metrics.clone(),
            },
        )
    })
    .shutdown(shutdown)
    .own_intensity(alarms_intensity);
    vec![http, alarms]
}

fn intensity(settings: &Settings) -> Intensity {
    Intensity::configured(&settings.supervision)
}

fn backoff(settings: &Settings) -> Backoff {
    Backoff::configured(&settings.supervision)
}

async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(term) => term,
                Err(_) => {
                    let _ = ctrl_c.await;
                    return;
                }
            };
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
}
