//! Shared pieces of the Lakehouse load harness: a loopback-only client,
//! latency summaries from HDR histograms, `.npy` reading and `/metrics`
//! scraping.
//!
//! Why a small async client with HDR histograms rather than goose: the
//! scenarios are chains of dependent requests with checks between steps
//! (search, then validate what was found, then record it), the chaos mode
//! injects faults and audits acknowledged writes afterwards, and the whole
//! harness must run beside the server on 2 cores. A few hundred lines of
//! tokio + reqwest keep the client's own CPU cost low and every measurement
//! explicit; hdrhistogram gives exact percentiles without sampling.

pub mod abuse;
pub mod crasher;
pub mod plot;
pub mod retrieval;

use std::path::Path;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use hdrhistogram::Histogram;
use serde::Serialize;

/// Refuses any target that is not on this machine's loopback.
pub fn loopback_base(url: &str) -> Result<String> {
    let rest = url
        .strip_prefix("http://")
        .context("the target must be an http:// URL on loopback")?;
    let host = rest.split('/').next().unwrap_or_default();
    let host_only = if host.starts_with('[') {
        host.split(']')
            .next()
            .unwrap_or_default()
            .trim_start_matches('[')
    } else {
        host.rsplit_once(':').map_or(host, |(h, _)| h)
    };
    let loopback = host_only == "localhost"
        || host_only == "::1"
        || host_only
            .parse::<std::net::Ipv4Addr>()
            .is_ok_and(|ip| ip.is_loopback());
    if !loopback {
        bail!("refusing to send load to {host_only}: only loopback targets are allowed");
    }
    Ok(format!("http://{host}"))
}

/// The harness's HTTP client; with `$LAKEHOUSE_TOKEN` set, every request
/// carries it as a bearer token (a server with tokens configured needs
/// one: `write` for the mix, `admin` for chaos faults).
pub fn client(concurrency: usize) -> Result<reqwest::Client> {
    let mut headers = reqwest::header::HeaderMap::new();
    if let Some(token) = std::env::var("LAKEHOUSE_TOKEN")
        .ok()
        .filter(|t| !t.is_empty())
    {
        let mut value = reqwest::header::HeaderValue::from_str(&format!("Bearer {token}"))?;
        value.set_sensitive(true);
        headers.insert(reqwest::header::AUTHORIZATION, value);
    }
    Ok(reqwest::Client::builder()
        .default_headers(headers)
        .pool_max_idle_per_host(concurrency.max(1) * 2)
        .timeout(Duration::from_secs(30))
        .tcp_nodelay(true)
        .build()?)
}

/// Microsecond histogram, 1 µs to 60 s.
pub fn histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 60_000_000, 3).expect("valid histogram bounds")
}

/// Latency percentiles in milliseconds.
#[derive(Debug, Clone, Serialize)]
pub struct Latency {
    pub count: u64,
    pub p50_ms: f64,
    pub p95_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
}

impl Latency {
    pub fn of(h: &Histogram<u64>) -> Self {
        let ms = |us: u64| us as f64 / 1000.0;
        Self {
            count: h.len(),
            p50_ms: ms(h.value_at_quantile(0.50)),
            p95_ms: ms(h.value_at_quantile(0.95)),
            p99_ms: ms(h.value_at_quantile(0.99)),
            max_ms: ms(h.max()),
        }
    }
}

/// A float32 or int64 array from a `.npy` file (C order, little endian).
pub struct Npy<T> {
    pub shape: Vec<usize>,
    pub data: Vec<T>,
}

fn npy_header(bytes: &[u8]) -> Result<(String, usize)> {
    if bytes.len() < 10 || &bytes[..6] != b"\x93NUMPY" {
        bail!("not a .npy file");
    }
    let (len, start) = match bytes[6] {
        1 => (u16::from_le_bytes([bytes[8], bytes[9]]) as usize, 10),
        _ => (
            u32::from_le_bytes([bytes[8], bytes[9], bytes[10], bytes[11]]) as usize,
            12,
        ),
    };
    let header = String::from_utf8_lossy(&bytes[start..start + len]).to_string();
    Ok((header, start + len))
}

fn npy_shape(header: &str) -> Result<Vec<usize>> {
    let shape = header
        .split("'shape':")
        .nth(1)
        .and_then(|s| s.split('(').nth(1))
        .and_then(|s| s.split(')').next())
        .context("no shape in .npy header")?;
    Ok(shape
        .split(',')
        .filter_map(|d| d.trim().parse().ok())
        .collect())
}

pub fn read_f32(path: &Path) -> Result<Npy<f32>> {
    let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    let (header, offset) = npy_header(&bytes)?;
    if !header.contains("'<f4'") || header.contains("'fortran_order': True") {
        bail!(
            "{}: expected little-endian float32 in C order",
            path.display()
        );
    }
    let data = bytes[offset..]
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect();
    Ok(Npy {
        shape: npy_shape(&header)?,
        data,
    })
}

pub fn read_i64(path: &Path) -> Result<Npy<i64>> {
    let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    let (header, offset) = npy_header(&bytes)?;
    if !header.contains("'<i8'") {
        bail!("{}: expected little-endian int64", path.display());
    }
    let data = bytes[offset..]
        .chunks_exact(8)
        .map(|c| i64::from_le_bytes(c.try_into().expect("8 bytes")))
        .collect();
    Ok(Npy {
        shape: npy_shape(&header)?,
        data,
    })
}

/// One sample from the server's `/metrics`.
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct ServerSample {
    pub rss_bytes: f64,
    pub cpu_seconds: f64,
}

pub async fn sample_server(client: &reqwest::Client, base: &str) -> Result<ServerSample> {
    let text = client
        .get(format!("{base}/metrics"))
        .send()
        .await?
        .text()
        .await?;
    let value = |name: &str| {
        text.lines()
            .find(|l| l.starts_with(name) && l[name.len()..].starts_with(' '))
            .and_then(|l| l.rsplit(' ').next())
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    Ok(ServerSample {
        rss_bytes: value("process_resident_memory_bytes"),
        cpu_seconds: value("process_cpu_seconds_total"),
    })
}

/// A recording the server acknowledged: `POST /v1/matrix/playbooks/record`
/// answered 200 with these ids.
#[derive(Debug, Clone)]
pub struct AckedRecording {
    pub recording_id: String,
    /// The playbook item holding every recording of its query and role.
    pub entry_id: String,
    pub workers: Vec<String>,
}

impl AckedRecording {
    /// From a record request's workers and its 200 answer.
    pub fn from_answer(workers: &[String], answer: &serde_json::Value) -> Option<Self> {
        Some(Self {
            recording_id: answer["recording_id"].as_str()?.to_string(),
            entry_id: answer["entry_id"].as_str()?.to_string(),
            workers: workers.to_vec(),
        })
    }
}

/// Checks that every acknowledged recording still counts: its entry is in
/// `playbook_memory`, names each of its workers, and has folded in at least
/// as many recordings as were acknowledged for it. Returns one line per
/// violation. Entries are read with retries while the index restarts.
pub async fn audit_recordings(
    http: &reqwest::Client,
    base: &str,
    acked: &[AckedRecording],
) -> Result<Vec<String>> {
    let mut by_entry: std::collections::BTreeMap<&str, Vec<&AckedRecording>> = Default::default();
    for recording in acked {
        by_entry
            .entry(recording.entry_id.as_str())
            .or_default()
            .push(recording);
    }
    let mut violations = Vec::new();
    for (entry_id, recordings) in by_entry {
        let url = format!("{base}/v1/vectors/index/playbook_memory/items/{entry_id}");
        let mut found = None;
        for _ in 0..100 {
            let response = http.get(&url).send().await?;
            match response.status().as_u16() {
                200 => {
                    found = Some(response.json::<serde_json::Value>().await?);
                    break;
                }
                404 => break,
                _ => tokio::time::sleep(Duration::from_millis(100)).await,
            }
        }
        let Some(item) = found else {
            violations.push(format!(
                "entry {entry_id} of {} acknowledged recordings is missing",
                recordings.len()
            ));
            continue;
        };
        let entry = &item["metadata"];
        let folded = entry["recordings"].as_u64().unwrap_or(0);
        if folded < recordings.len() as u64 {
            violations.push(format!(
                "entry {entry_id} folded in {folded} recordings, {} were acknowledged",
                recordings.len()
            ));
        }
        for recording in recordings {
            for worker in &recording.workers {
                if entry["workers"].get(worker).is_none() {
                    violations.push(format!(
                        "recording {} of entry {entry_id}: worker {worker} is missing",
                        recording.recording_id
                    ));
                }
            }
        }
    }
    Ok(violations)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_loopback_targets_are_accepted() {
        assert!(loopback_base("http://127.0.0.1:3100").is_ok());
        assert!(loopback_base("http://localhost:3100/").is_ok());
        assert!(loopback_base("http://[::1]:3100").is_ok());
        assert!(loopback_base("http://10.0.0.5:3100").is_err());
        assert!(loopback_base("http://example.com").is_err());
        assert!(loopback_base("https://127.0.0.1").is_err());
    }
}
