//! `lakehouse replay --file queries.jsonl`: posts each line (a
//! `POST /v1/replay` body: `{"query", "role"?, "k"?, "model"?,
//! "validate"?}`) to a running service, one after another, and prints a
//! line per run. The service appends each run to `replay_runs`.

use std::path::PathBuf;

use anyhow::{bail, Context};
use serde_json::Value;

pub struct ReplayOptions {
    pub file: PathBuf,
    pub target: String,
    pub token: Option<String>,
}

/// What a replay of a file did.
pub struct ReplayReport {
    pub runs: usize,
    pub failed: usize,
}

/// The longest line read from the file (a query is at most 2,000
/// characters; this leaves room for the other fields).
const MAX_LINE_BYTES: usize = 64 * 1024;

pub async fn run(options: ReplayOptions) -> anyhow::Result<ReplayReport> {
    let text = std::fs::read_to_string(&options.file)
        .with_context(|| format!("cannot read {}", options.file.display()))?;
    let base = options.target.trim_end_matches('/').to_string();
    let client = reqwest::Client::new();
    let mut report = ReplayReport { runs: 0, failed: 0 };
    for (number, line) in text.lines().enumerate().map(|(i, l)| (i + 1, l.trim())) {
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        if line.len() > MAX_LINE_BYTES {
            bail!("line {number}: longer than {MAX_LINE_BYTES} bytes");
        }
        let body: Value = serde_json::from_str(line)
            .with_context(|| format!("line {number}: not a JSON object"))?;
        let mut request = client.post(format!("{base}/v1/replay")).json(&body);
        if let Some(token) = &options.token {
            request = request.bearer_auth(token);
        }
        let response = request
            .send()
            .await
            .with_context(|| format!("cannot reach {base}"))?;
        let status = response.status();
        let answer: Value = response.json().await.unwrap_or(Value::Null);
        if status.is_success() {
            report.runs += 1;
            let ids: Vec<&str> = answer["citations"]
                .as_array()
                .map(|c| c.iter().filter_map(|c| c["id"].as_str()).collect())
                .unwrap_or_default();
            let verdict = match answer["verdict"]["valid"].as_bool() {
                Some(true) => " verdict=valid",
                Some(false) => " verdict=invalid",
                None => "",
            };
            println!(
                "line {number}: run {} retrieved [{}]{verdict}",
                answer["run_id"].as_str().unwrap_or("?"),
                ids.join(", ")
            );
        } else {
            report.failed += 1;
            println!(
                "line {number}: {status} {}: {}",
                answer["error"]["code"].as_str().unwrap_or("?"),
                answer["error"]["message"].as_str().unwrap_or("")
            );
        }
    }
    Ok(report)
}
