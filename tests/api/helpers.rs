//! `spawn_app()`: the real application on port 0 with a temporary data dir,
//! and a `TestApp` with one helper per thing the tests do over HTTP.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use lakehouse::config::{LoadOptions, Settings};
use lakehouse::startup::Application;
use reqwest::{Response, StatusCode};
use serde_json::{json, Value};
use tempfile::TempDir;

pub struct TestApp {
    pub address: String,
    pub client: reqwest::Client,
    pub data_dir: PathBuf,
    /// Kept alive until the test ends (deleted on drop).
    _data_guard: Option<TempDir>,
    app: Option<Application>,
}

fn init_tracing() {
    static ONCE: OnceLock<()> = OnceLock::new();
    ONCE.get_or_init(|| {
        if std::env::var_os("TEST_LOG").is_some() {
            lakehouse::telemetry::init_tracing(
                "debug",
                lakehouse::config::LogFormat::Human,
                std::io::stdout,
            );
        }
    });
}

/// The application with `config/test.toml`, port 0 and a fresh data dir.
pub async fn spawn_app() -> TestApp {
    spawn_app_with(&[]).await
}

/// As [`spawn_app`], with extra `section.key = value` overrides.
pub async fn spawn_app_with(overrides: &[(&str, &str)]) -> TestApp {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().to_path_buf();
    let mut app = spawn_app_on(path, overrides).await;
    app._data_guard = Some(dir);
    app
}

/// As [`spawn_app_with`], on an existing data dir (process-restart tests).
pub async fn spawn_app_on(data_dir: PathBuf, overrides: &[(&str, &str)]) -> TestApp {
    init_tracing();
    let mut all = vec![
        ("server.port".to_string(), "0".to_string()),
        ("data.dir".to_string(), data_dir.display().to_string()),
    ];
    all.extend(
        overrides
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string())),
    );
    let settings = Settings::load(LoadOptions {
        config_dir: Some(PathBuf::from(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/config"
        ))),
        environment: Some("test".into()),
        file: None,
        // The tests' own environment must not leak into the settings.
        env_vars: Some(HashMap::new()),
        overrides: all,
    })
    .expect("test settings load");
    let app = Application::build(settings)
        .await
        .expect("application starts");
    // Like a load balancer, wait for readiness: every actor has finished
    // its post_start (indexes loaded).
    let started = Instant::now();
    while app
        .context()
        .board
        .flatten()
        .iter()
        .any(|(_, status)| *status != lakehouse::supervision::ChildStatus::Running)
    {
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "the application never became ready"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    TestApp {
        address: format!("http://127.0.0.1:{}", app.port()),
        client: reqwest::Client::builder()
            .timeout(Duration::from_secs(30))
            .build()
            .unwrap(),
        data_dir,
        _data_guard: None,
        app: Some(app),
    }
}

/// One token of each role, configured through `auth.tokens_file`.
#[derive(Debug, Clone)]
pub struct RoleTokens {
    pub read: String,
    pub write: String,
    pub admin: String,
}

impl RoleTokens {
    pub fn of(&self, role: lakehouse::domain::auth::Role) -> &str {
        use lakehouse::domain::auth::Role;
        match role {
            Role::Read => &self.read,
            Role::Write => &self.write,
            Role::Admin => &self.admin,
        }
    }
}

/// As [`spawn_app_with`], with a token of each role configured.
pub async fn spawn_app_with_tokens(overrides: &[(&str, &str)]) -> (TestApp, RoleTokens) {
    use lakehouse::domain::auth::{hash_token, new_token};
    let dir = tempfile::tempdir().expect("temp dir");
    let tokens = RoleTokens {
        read: new_token().unwrap(),
        write: new_token().unwrap(),
        admin: new_token().unwrap(),
    };
    let mut file = String::new();
    for (name, role, token) in [
        ("reader", "read", &tokens.read),
        ("writer", "write", &tokens.write),
        ("operator", "admin", &tokens.admin),
    ] {
        file.push_str(&format!(
            "[[tokens]]\nname = \"{name}\"\nrole = \"{role}\"\nsha256 = \"{}\"\n\n",
            hex::encode(hash_token(token))
        ));
    }
    let tokens_file = dir.path().join("tokens.toml");
    std::fs::write(&tokens_file, file).unwrap();
    let tokens_file = tokens_file.display().to_string();
    let mut all: Vec<(&str, &str)> = vec![("auth.tokens_file", tokens_file.as_str())];
    all.extend_from_slice(overrides);
    let data = dir.path().join("data");
    let mut app = spawn_app_on(data, &all).await;
    app._data_guard = Some(dir);
    (app, tokens)
}

impl TestApp {
    /// Any request, with a bearer token if given.
    pub async fn send(
        &self,
        method: reqwest::Method,
        path: &str,
        token: Option<&str>,
        body: Option<&Value>,
    ) -> Response {
        let mut request = self.client.request(method, self.url(path));
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        if let Some(body) = body {
            request = request.json(body);
        }
        request.send().await.expect("request sent")
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.address, path)
    }

    pub async fn get(&self, path: &str) -> Response {
        self.client
            .get(self.url(path))
            .send()
            .await
            .expect("request sent")
    }

    pub async fn post_json(&self, path: &str, body: &Value) -> Response {
        self.client
            .post(self.url(path))
            .json(body)
            .send()
            .await
            .expect("request sent")
    }

    /// Adds `items` to the index, which must accept them all.
    pub async fn add_items(&self, index: &str, items: &(impl serde::Serialize + ?Sized)) {
        let response = self
            .post_json(
                &format!("/v1/vectors/index/{index}/add"),
                &serde_json::json!({ "items": items }),
            )
            .await;
        let status = response.status();
        assert_eq!(status, StatusCode::OK, "{:?}", response.text().await);
    }

    pub async fn post_raw(
        &self,
        path: &str,
        content_type: &str,
        body: impl Into<reqwest::Body>,
    ) -> Response {
        self.client
            .post(self.url(path))
            .header("content-type", content_type)
            .body(body)
            .send()
            .await
            .expect("request sent")
    }

    pub async fn embed(&self, texts: &[&str]) -> Response {
        self.post_json("/v1/embed", &json!({ "texts": texts }))
            .await
    }

    pub async fn inject_fault(&self, actor: &str, fault: &str) -> Response {
        self.post_json(
            "/v1/admin/faults",
            &json!({ "actor": actor, "fault": fault }),
        )
        .await
    }

    pub async fn supervision(&self) -> Value {
        let response = self.get("/v1/supervision").await;
        assert_eq!(response.status(), StatusCode::OK);
        response.json().await.unwrap()
    }

    /// The supervision node called `name`, anywhere in the tree.
    pub async fn node(&self, name: &str) -> Option<Value> {
        fn find(node: &Value, name: &str) -> Option<Value> {
            if node["name"] == name {
                return Some(node.clone());
            }
            node["children"]
                .as_array()?
                .iter()
                .find_map(|c| find(c, name))
        }
        find(&self.supervision().await, name)
    }

    pub async fn metrics(&self) -> String {
        self.get("/metrics").await.text().await.unwrap()
    }

    /// Stops the tree in order; returns the data dir's guard so a second
    /// `spawn_app_on` can reopen the same data.
    pub async fn shutdown(mut self) -> (PathBuf, Option<TempDir>) {
        if let Some(app) = self.app.take() {
            app.shutdown().await;
        }
        (self.data_dir.clone(), self._data_guard.take())
    }
}

/// Asserts the one error shape and returns the body.
pub async fn assert_error(response: Response, status: StatusCode, code: &str) -> Value {
    assert_eq!(response.status(), status, "status");
    let body: Value = response.json().await.expect("error body is JSON");
    assert_eq!(body["error"]["code"], code, "code in {body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .is_some_and(|m| !m.is_empty()),
        "message in {body}"
    );
    body
}

/// Polls `check` every few milliseconds until it holds or `within` passes;
/// returns how long it took.
pub async fn eventually<F, Fut>(what: &str, within: Duration, mut check: F) -> Duration
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let started = Instant::now();
    loop {
        if check().await {
            return started.elapsed();
        }
        assert!(started.elapsed() < within, "not within {within:?}: {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// The value of one sample line of a Prometheus exposition.
pub fn metric_value(exposition: &str, series: &str) -> Option<f64> {
    exposition
        .lines()
        .find(|line| line.starts_with(series) && line[series.len()..].starts_with(' '))
        .and_then(|line| line.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}

/// Seeds `workers` workers of the corpus (seed 7) through the API, as
/// `lakehouse seed` does, with `token` when the app has tokens.
pub async fn seed_workers(app: &TestApp, workers: usize, token: Option<&str>) {
    lakehouse::seed::run(lakehouse::seed::SeedOptions {
        target: app.address.clone(),
        workers,
        seed: 7,
        batch: 250,
        concurrency: 2,
        token: token.map(str::to_string),
    })
    .await
    .expect("seeding through the API");
}

/// The real binary, serving on its own port and data dir, its log
/// (stderr and stdout) kept in a file: for what only a process shows (its
/// resident memory, that it did not abort, its log lines).
pub struct Process {
    pub child: tokio::process::Child,
    pub address: String,
    pub data_dir: PathBuf,
    pub log: PathBuf,
    _dir: TempDir,
}

impl Process {
    /// Starts `lakehouse serve` with `env` (`LAKEHOUSE__…` settings) and
    /// waits until it is ready.
    pub async fn start(env: &[(&str, &str)]) -> Process {
        let dir = tempfile::tempdir().expect("temp dir");
        let data_dir = dir.path().join("data");
        let log = dir.path().join("server.log");
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let file = std::fs::File::create(&log).unwrap();
        let mut command = tokio::process::Command::new(env!("CARGO_BIN_EXE_lakehouse"));
        command
            .args(["serve", "--host", "127.0.0.1", "--port", &port.to_string()])
            .arg("--data-dir")
            .arg(&data_dir)
            .current_dir(dir.path())
            .env("LAKEHOUSE__LOG__LEVEL", "info")
            .envs(env.iter().map(|(k, v)| (k.to_string(), v.to_string())))
            .stdin(std::process::Stdio::null())
            .stdout(file.try_clone().unwrap())
            .stderr(file)
            .kill_on_drop(true);
        let child = command.spawn().expect("the binary starts");
        let mut process = Process {
            child,
            address: format!("http://127.0.0.1:{port}"),
            data_dir,
            log,
            _dir: dir,
        };
        let client = reqwest::Client::new();
        let started = Instant::now();
        loop {
            assert!(process.alive(), "the server exited while starting");
            let ready = client
                .get(process.url("/ready"))
                .timeout(Duration::from_secs(2))
                .send()
                .await;
            if ready.is_ok_and(|r| r.status().is_success()) {
                return process;
            }
            assert!(
                started.elapsed() < Duration::from_secs(120),
                "the server was not ready within 120 s"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.address, path)
    }

    /// Whether the process is still running (it did not abort).
    pub fn alive(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// Its resident memory, from `/proc/<pid>/status`.
    pub fn rss_bytes(&self) -> u64 {
        let pid = self.child.id().expect("running");
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
            .map(|kb| kb * 1024)
            .expect("VmRSS")
    }

    /// Everything it logged so far.
    pub fn logs(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}
