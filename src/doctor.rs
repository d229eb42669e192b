//! `lakehouse doctor`: checks what the configuration needs before `serve`,
//! and says how to fix each gap.

use std::net::TcpListener;
use std::path::Path;

use crate::actors::embed::{EmbedError, OllamaEmbedder};
use crate::config::{EmbedProvider, Settings};

/// One check's outcome.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Check {
    pub name: &'static str,
    pub ok: bool,
    pub detail: String,
    /// How to fix it, when it failed.
    pub fix: Option<String>,
}

impl Check {
    fn pass(name: &'static str, detail: String) -> Self {
        Self {
            name,
            ok: true,
            detail,
            fix: None,
        }
    }

    fn fail(name: &'static str, detail: String, fix: String) -> Self {
        Self {
            name,
            ok: false,
            detail,
            fix: Some(fix),
        }
    }
}

/// Runs every check; none of them changes anything but a probe file.
pub fn run(settings: &Settings) -> Vec<Check> {
    vec![
        data_dir(&settings.data.dir),
        port(&settings.server.host, settings.server.port),
        embedder(settings),
        chat(settings),
    ]
}

/// With `chat.provider = "ollama"`: Ollama answers and has the model.
fn chat(settings: &Settings) -> Check {
    use crate::actors::chat::provider::OllamaChat;
    use crate::actors::chat::ChatError;
    use crate::config::ChatProvider;
    if settings.chat.provider == ChatProvider::Extractive {
        return Check::pass(
            "chat",
            "built-in extractive provider (answers from the records, no model)".into(),
        );
    }
    let ollama = &settings.chat.ollama;
    let outcome = OllamaChat::new(&settings.chat).and_then(|chat| {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| ChatError::Internal(e.to_string()))?;
        runtime.block_on(chat.check())
    });
    match outcome {
        Ok(()) => Check::pass(
            "chat",
            format!("ollama at {} has model '{}'", ollama.url, ollama.model),
        ),
        Err(ChatError::ModelNotFound { model, url }) => Check::fail(
            "chat",
            format!("ollama at {url} does not have model '{model}'"),
            format!("`ollama pull {model}`, or set chat.ollama.model to a pulled one"),
        ),
        Err(err) => Check::fail(
            "chat",
            format!("ollama at {}: {err}", ollama.url),
            "start Ollama (`ollama serve`), fix chat.ollama.url, or use chat.provider = \"extractive\""
                .into(),
        ),
    }
}

fn data_dir(dir: &Path) -> Check {
    if let Err(err) = std::fs::create_dir_all(dir) {
        return Check::fail(
            "data dir",
            format!("{} cannot be created: {err}", dir.display()),
            "point data.dir (or --data-dir, LAKEHOUSE__DATA__DIR) at a writable folder".into(),
        );
    }
    let probe = dir.join(".lakehouse-doctor-probe");
    match std::fs::write(&probe, b"ok").and_then(|_| std::fs::remove_file(&probe)) {
        Ok(()) => Check::pass("data dir", format!("{} is writable", dir.display())),
        Err(err) => Check::fail(
            "data dir",
            format!("{} is not writable: {err}", dir.display()),
            format!(
                "fix its permissions (chown/chmod {}) or choose another data.dir",
                dir.display()
            ),
        ),
    }
}

fn port(host: &str, port: u16) -> Check {
    match TcpListener::bind((host, port)) {
        Ok(_) => Check::pass("port", format!("{host}:{port} is free")),
        Err(err) => Check::fail(
            "port",
            format!("{host}:{port} cannot be bound: {err}"),
            "stop whatever holds it, or choose another with --port N (LAKEHOUSE__SERVER__PORT)"
                .into(),
        ),
    }
}

fn embedder(settings: &Settings) -> Check {
    match settings.embed.provider {
        EmbedProvider::Hash => Check::pass(
            "embedder",
            format!(
                "built-in hash embedder, dimension {}",
                settings.embed.dimension
            ),
        ),
        EmbedProvider::Ollama => {
            let ollama = &settings.embed.ollama;
            let outcome = OllamaEmbedder::new(&settings.embed).and_then(|embedder| {
                let runtime = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .map_err(|e| EmbedError::Internal(e.to_string()))?;
                runtime.block_on(embedder.ping())
            });
            match outcome {
                Ok(()) => Check::pass(
                    "embedder",
                    format!(
                        "ollama at {} answers with model '{}'",
                        ollama.url, ollama.model
                    ),
                ),
                Err(EmbedError::Unavailable { url, reason }) => Check::fail(
                    "embedder",
                    format!("ollama at {url} is unreachable: {reason}"),
                    format!(
                        "start Ollama (`ollama serve`) and `ollama pull {}`, fix embed.ollama.url, \
                         or use embed.provider = \"hash\"",
                        ollama.model
                    ),
                ),
                Err(err) => Check::fail(
                    "embedder",
                    format!("ollama at {} answered but: {err}", ollama.url),
                    format!(
                        "`ollama pull {}` and set embed.dimension to the model's dimension",
                        ollama.model
                    ),
                ),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_taken_port_fails_with_a_fix() {
        let holder = TcpListener::bind("127.0.0.1:0").unwrap();
        let taken = holder.local_addr().unwrap().port();
        let check = port("127.0.0.1", taken);
        assert!(!check.ok);
        assert!(check.fix.unwrap().contains("--port"));
    }

    #[test]
    fn an_unreachable_ollama_fails_with_a_fix_naming_the_url() {
        let closed = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://127.0.0.1:{}", closed.local_addr().unwrap().port());
        drop(closed);
        let settings = crate::config::Settings::load(crate::config::LoadOptions {
            config_dir: Some(concat!(env!("CARGO_MANIFEST_DIR"), "/config").into()),
            environment: Some(String::new()),
            env_vars: Some(Default::default()),
            overrides: vec![
                ("embed.provider".into(), "ollama".into()),
                ("embed.ollama.url".into(), url.clone()),
            ],
            ..Default::default()
        })
        .unwrap();
        let check = embedder(&settings);
        assert!(!check.ok);
        assert!(check.detail.contains(&url), "{}", check.detail);
        assert!(check.fix.unwrap().contains("ollama"));
    }

    #[test]
    fn a_writable_dir_passes_and_a_file_in_the_way_fails() {
        let dir = tempfile::tempdir().unwrap();
        assert!(data_dir(dir.path()).ok);
        let file = dir.path().join("file");
        std::fs::write(&file, b"x").unwrap();
        let check = data_dir(&file.join("sub"));
        assert!(!check.ok, "{check:?}");
    }
}
