//! The `lakehouse` binary: parse the command line, load settings, run.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// Rust's allocations go to jemalloc: with glibc's malloc (tuned to one
/// arena to keep RSS down) a perf profile of the 100k mix spent ~20% of the
/// server's CPU in malloc, free and fastbin consolidation. faiss and Lance's
/// C++ keep glibc's (tuned in [`tune_malloc`]).
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

/// jemalloc's settings (`MALLOC_CONF` overrides them): two arenas for two
/// cores, freed pages returned to the OS after a second by a background
/// thread, so RSS follows what is in use.
#[allow(non_upper_case_globals)]
#[export_name = "_rjem_malloc_conf"]
pub static malloc_conf: &[u8] =
    b"background_thread:true,narenas:2,dirty_decay_ms:1000,muzzy_decay_ms:0\0";
use lakehouse::config::{LoadOptions, Settings};
use lakehouse::startup::Application;

#[derive(Parser)]
#[command(
    name = "lakehouse",
    version,
    about = "A self-healing knowledge service for staffing analytics"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the service (the main job).
    Serve(ConfigArgs),
    /// Check what the configuration needs and say how to fix each gap.
    Doctor(ConfigArgs),
    /// Load a deterministic synthetic workers corpus into a running service.
    Seed(SeedArgs),
    /// Run each query of a JSON-lines file through `POST /v1/replay` of a
    /// running service (each run is appended to `replay_runs`).
    Replay(ReplayArgs),
    /// Speak MCP on stdin/stdout for an agent (Claude Desktop, Claude
    /// Code), calling a running service's HTTP API.
    Mcp(McpArgs),
    /// Bearer tokens: `token new` makes one.
    #[command(subcommand)]
    Token(TokenCommand),
    /// Restore a snapshot (`POST /v1/admin/snapshots`) into a data dir,
    /// with the service stopped: every file's checksum is verified first.
    Restore(RestoreArgs),
}

#[derive(clap::Args)]
struct RestoreArgs {
    /// The snapshot target (`snapshots.dir` of the service that took it).
    #[arg(long, value_name = "DIR")]
    from: PathBuf,
    /// The snapshot's id (`GET /v1/admin/snapshots` lists them).
    #[arg(long, value_name = "ID")]
    snapshot: String,
    /// The data dir to restore into: must be empty unless --force.
    #[arg(long, value_name = "DIR")]
    data_dir: PathBuf,
    /// Replace what the data dir holds.
    #[arg(long)]
    force: bool,
}

#[derive(Subcommand)]
enum TokenCommand {
    /// Print a fresh random 256-bit token (once) and the line that
    /// configures it (its SHA-256, never the token itself).
    New {
        /// A name for logs and for revoking it: 1-64 of A-Z a-z 0-9 . _ -
        #[arg(long)]
        name: String,
        /// read, write or admin.
        #[arg(long)]
        role: String,
    },
}

#[derive(clap::Args)]
struct SeedArgs {
    /// How many workers.
    #[arg(long, value_name = "N")]
    workers: usize,
    /// Same seed, same corpus.
    #[arg(long, value_name = "S", default_value_t = 42)]
    seed: u64,
    /// The service to load into (default: server.host:server.port from the configuration).
    #[arg(long, value_name = "URL")]
    target: Option<String>,
    /// Workers per request.
    #[arg(long, default_value_t = 500)]
    batch: usize,
    /// Requests in flight.
    #[arg(long, default_value_t = 2)]
    concurrency: usize,
    /// A `write` token, if the service has tokens configured.
    #[arg(long, env = "LAKEHOUSE_TOKEN", hide_env_values = true)]
    token: Option<String>,
    #[command(flatten)]
    config: ConfigArgs,
}

#[derive(clap::Args)]
struct ReplayArgs {
    /// One `{"query", "role"?, "k"?, "model"?, "validate"?}` per line.
    #[arg(long, value_name = "FILE")]
    file: PathBuf,
    /// The service (default: server.host:server.port from the configuration).
    #[arg(long, value_name = "URL")]
    target: Option<String>,
    /// A `write` token, if the service has tokens configured.
    #[arg(long, env = "LAKEHOUSE_TOKEN", hide_env_values = true)]
    token: Option<String>,
    #[command(flatten)]
    config: ConfigArgs,
}

#[derive(clap::Args)]
struct McpArgs {
    /// The running service (default: server.host:server.port from the configuration).
    #[arg(long, value_name = "URL")]
    target: Option<String>,
    /// A token for the service (its role gates the tools).
    #[arg(long, env = "LAKEHOUSE_TOKEN", hide_env_values = true)]
    token: Option<String>,
    #[command(flatten)]
    config: ConfigArgs,
}

#[derive(clap::Args)]
struct ConfigArgs {
    /// An extra TOML file layered over config/default.toml and config/<LAKEHOUSE_ENV>.toml.
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// Overrides server.port.
    #[arg(long, value_name = "N")]
    port: Option<u16>,
    /// Overrides server.host.
    #[arg(long, value_name = "ADDR")]
    host: Option<String>,
    /// Overrides data.dir.
    #[arg(long, value_name = "DIR")]
    data_dir: Option<PathBuf>,
}

impl ConfigArgs {
    fn load(&self) -> Result<Settings, lakehouse::config::ConfigError> {
        let mut overrides = Vec::new();
        if let Some(port) = self.port {
            overrides.push(("server.port".to_string(), port.to_string()));
        }
        if let Some(host) = &self.host {
            overrides.push(("server.host".to_string(), host.clone()));
        }
        if let Some(dir) = &self.data_dir {
            overrides.push(("data.dir".to_string(), dir.display().to_string()));
        }
        Settings::load(LoadOptions {
            file: self.config.clone(),
            overrides,
            ..LoadOptions::default()
        })
    }
}

fn main() -> ExitCode {
    tune_malloc();
    let cli = Cli::parse();
    let args = match &cli.command {
        Command::Serve(args) | Command::Doctor(args) => args,
        Command::Seed(seed) => &seed.config,
        Command::Replay(replay) => &replay.config,
        Command::Mcp(mcp) => &mcp.config,
        Command::Token(TokenCommand::New { name, role }) => return new_token(name, role),
        Command::Restore(args) => return restore(args),
    };
    let settings = match args.load() {
        Ok(settings) => settings,
        Err(err) => {
            eprintln!("lakehouse: {err}");
            return ExitCode::from(2);
        }
    };
    match cli.command {
        Command::Serve(_) => serve(settings),
        Command::Doctor(_) => doctor(&settings),
        Command::Seed(args) => seed(args, &settings),
        Command::Replay(args) => replay(args, &settings),
        Command::Mcp(args) => mcp_stdio(args, &settings),
        Command::Token(_) | Command::Restore(_) => ExitCode::SUCCESS,
    }
}

fn restore(args: &RestoreArgs) -> ExitCode {
    match lakehouse::backup::restore(&args.from, &args.snapshot, &args.data_dir, args.force) {
        Ok(restored) => {
            println!(
                "restored snapshot {} into {}: {} files, {} bytes, in {} ms",
                restored.id,
                args.data_dir.display(),
                restored.files,
                restored.bytes,
                restored.elapsed_ms
            );
            for dataset in &restored.datasets {
                println!("  {} at version {}", dataset.path, dataset.version);
            }
            ExitCode::SUCCESS
        }
        Err(err) => {
            eprintln!("lakehouse restore: {err}");
            ExitCode::FAILURE
        }
    }
}

fn new_token(name: &str, role: &str) -> ExitCode {
    use lakehouse::domain::auth::{hash_token, new_token, validate_entries, Role, TokenEntry};
    let Some(role) = Role::parse(role) else {
        eprintln!("lakehouse token new: --role must be read, write or admin, got '{role}'");
        return ExitCode::from(2);
    };
    let token = match new_token() {
        Ok(token) => token,
        Err(err) => {
            eprintln!("lakehouse token new: no randomness from the operating system: {err}");
            return ExitCode::FAILURE;
        }
    };
    let entry = TokenEntry {
        name: name.to_string(),
        role,
        sha256: hex::encode(hash_token(&token)),
    };
    if let Err(err) = validate_entries(std::slice::from_ref(&entry)) {
        eprintln!("lakehouse token new: {err}");
        return ExitCode::from(2);
    }
    println!("{token}");
    eprintln!(
        "\nThe token above is shown once: give it to its user (Authorization: Bearer <token>).\n\
         Add this to auth.tokens in the configuration (or as a [[tokens]] table in auth.tokens_file):\n\n  \
         {{ name = \"{}\", role = \"{}\", sha256 = \"{}\" }}\n",
        entry.name, entry.role, entry.sha256
    );
    ExitCode::SUCCESS
}

/// The one runtime builder: a multi-threaded tokio runtime, or `None`
/// (with the reason on stderr) when the system refuses one.
fn runtime() -> Option<tokio::runtime::Runtime> {
    match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => Some(runtime),
        Err(err) => {
            eprintln!("lakehouse: cannot start the runtime: {err}");
            None
        }
    }
}

/// The service a client subcommand talks to when no `--target` is given:
/// the one this configuration serves.
fn default_target(settings: &Settings) -> String {
    format!("http://{}:{}", settings.server.host, settings.server.port)
}

fn serve(settings: Settings) -> ExitCode {
    // faiss's OpenMP threads would otherwise spin after every parallel
    // graph insert, stealing the cores that searches need. Set before any
    // thread exists (and so before OpenMP reads it).
    if std::env::var_os("OMP_WAIT_POLICY").is_none() {
        std::env::set_var("OMP_WAIT_POLICY", "PASSIVE");
    }
    lakehouse::telemetry::init_tracing(&settings.log.level, settings.log.format, std::io::stdout);
    // A panic inside an actor is a supervised event: log it as one line in
    // the configured format (no backtrace symbolisation on the restart path).
    std::panic::set_hook(Box::new(|info| tracing::error!(panic = %info, "panic")));
    let Some(runtime) = runtime() else {
        return ExitCode::FAILURE;
    };
    let outcome = runtime.block_on(async move {
        let app = Application::build(settings).await?;
        app.run_until_stopped().await
    });
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            tracing::error!("{err:#}");
            eprintln!("lakehouse: {err:#}");
            ExitCode::FAILURE
        }
    }
}

fn seed(args: SeedArgs, settings: &Settings) -> ExitCode {
    let target = args.target.unwrap_or_else(|| default_target(settings));
    let options = lakehouse::seed::SeedOptions {
        target,
        workers: args.workers,
        seed: args.seed,
        batch: args.batch,
        concurrency: args.concurrency,
        token: args.token,
    };
    let Some(runtime) = runtime() else {
        return ExitCode::FAILURE;
    };
    match runtime.block_on(lakehouse::seed::run(options)) {
        Ok(report) => {
            println!(
                "seeded {} workers in {:.1} s ({:.0} items/s); possible duplicates named: {}",
                report.workers,
                report.seconds,
                report.workers as f64 / report.seconds.max(1e-9),
                report.possible_duplicates
            );
            ExitCode::SUCCESS
        }
        Err(err) => {
            eprintln!("lakehouse seed: {err:#}");
            ExitCode::FAILURE
        }
    }
}

fn replay(args: ReplayArgs, settings: &Settings) -> ExitCode {
    let target = args.target.unwrap_or_else(|| default_target(settings));
    let options = lakehouse::replay_cli::ReplayOptions {
        file: args.file,
        target,
        token: args.token,
    };
    let Some(runtime) = runtime() else {
        return ExitCode::FAILURE;
    };
    match runtime.block_on(lakehouse::replay_cli::run(options)) {
        Ok(report) => {
            println!("{} runs logged, {} failed", report.runs, report.failed);
            if report.failed == 0 {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            }
        }
        Err(err) => {
            eprintln!("lakehouse replay: {err:#}");
            ExitCode::FAILURE
        }
    }
}

/// MCP over stdio. stdout carries the protocol: logs go to stderr.
fn mcp_stdio(args: McpArgs, settings: &Settings) -> ExitCode {
    use rmcp::ServiceExt;
    lakehouse::telemetry::init_tracing(&settings.log.level, settings.log.format, std::io::stderr);
    let target = args.target.unwrap_or_else(|| default_target(settings));
    // A tool call may run a chat: give it the chat's budget.
    let timeout =
        std::time::Duration::from_millis(settings.chat.timeout_ms) + settings.request_timeout();
    let backend = match lakehouse::mcp::backend::Backend::remote(&target, args.token, timeout) {
        Ok(backend) => backend,
        Err(err) => {
            eprintln!("lakehouse mcp: {err}");
            return ExitCode::FAILURE;
        }
    };
    let handler =
        lakehouse::mcp::LakehouseMcp::new(std::sync::Arc::new(backend), settings.mcp.clone());
    let Some(runtime) = runtime() else {
        return ExitCode::FAILURE;
    };
    let outcome = runtime.block_on(async move {
        let service = handler.serve(rmcp::transport::stdio()).await?;
        service.waiting().await?;
        anyhow::Ok(())
    });
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("lakehouse mcp: {err:#}");
            ExitCode::FAILURE
        }
    }
}

fn doctor(settings: &Settings) -> ExitCode {
    let checks = lakehouse::doctor::run(settings);
    for check in &checks {
        let mark = if check.ok { "ok  " } else { "FAIL" };
        println!("{mark} {:<10} {}", check.name, check.detail);
        if let Some(fix) = &check.fix {
            println!("     {:<10} fix: {fix}", "");
        }
    }
    if checks.iter().all(|c| c.ok) {
        println!("everything lakehouse serve needs is in place");
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

/// glibc's defaults hold on to freed memory: each thread that allocates
/// under contention gets its own heap ("arena", up to 8 per core) whose
/// free space other threads do not reuse, and the thresholds for returning
/// memory to the system grow with every large free. Measured on the
/// 100k-worker mix (20 s, 50 clients): RSS mean 960 MB with the defaults,
/// 690 MB with two arenas, 637 MB with one arena, a fixed 128 KiB mmap
/// threshold (large buffers — request bodies, Arrow batches — go back to
/// the system when freed) and a 1 MiB trim threshold; throughput the same
/// within noise. Any `MALLOC_*` variable in the environment leaves the
/// defaults to it. Must run before any thread starts.
fn tune_malloc() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        extern "C" {
            fn mallopt(param: i32, value: i32) -> i32;
        }
        const M_TRIM_THRESHOLD: i32 = -1;
        const M_MMAP_THRESHOLD: i32 = -3;
        const M_ARENA_MAX: i32 = -8;
        let tuned_elsewhere =
            std::env::vars_os().any(|(key, _)| key.to_string_lossy().starts_with("MALLOC_"));
        if !tuned_elsewhere {
            // SAFETY: mallopt only sets allocator parameters; called before
            // any other thread exists.
            unsafe {
                mallopt(M_ARENA_MAX, 1);
                mallopt(M_MMAP_THRESHOLD, 128 << 10);
                mallopt(M_TRIM_THRESHOLD, 1 << 20);
            }
        }
    }
}
