//! `loadtest retrieval`: what hybrid search buys and costs on the seeded
//! corpus, against a running `lakehouse serve`.
//!
//! Quality: every certification of the `workers` dataset, and a sample of
//! its skills, is asked as the query itself ("HazMat Endorsement",
//! "CDL-A") through `/v1/matrix/search` in each mode, without any filter;
//! the share of the top 10 that holds exactly that certification or skill
//! is the precision@10 of the mode. The terms come from the server (SQL
//! over the `workers` dataset), so the check follows the corpus.
//!
//! Query sets, each query with what answers it exactly, read from the
//! hits' own fields (precision@k: the relevant share of the top k, out of
//! at most the relevant workers there are, or the hits returned where a
//! filter decides):
//! - `inflections`: each role asked in the plural ("welders", "certified
//!   nursing assistants"); relevant: that role;
//! - `phrases`: each certification of two or more words, quoted;
//!   relevant: holding exactly it;
//! - `typos`: each term with one letter of its longest word (5+ letters)
//!   replaced; relevant: holding the term;
//! - `synonyms`: the default synonym groups' other forms ("certified
//!   nursing assistant" for CNA, "lift truck" for forklift);
//! - `radius`: a role near each of the five most populated cities (25
//!   miles), relevant: that role within 25 miles;
//! - `availability`: a role free from 2026-12-10 to 2026-12-20 on nights;
//!   relevant: that role, free every day of it, on nights.
//!
//! Latency: the same queries, in turn, from 1 and from `clients` clients
//! for `duration` seconds per mode; then hybrid searches of the phrase and
//! the typo queries from `clients` clients, beside the plain terms'. Run the server with
//! `LAKEHOUSE__VECTORS__RESULT_CACHE_ENTRIES=0`: semantic searches would
//! otherwise be answered from the result cache and hybrid ones not.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use serde::Serialize;
use serde_json::{json, Value};
use tokio::sync::Mutex;

use crate::{histogram, Latency};

pub const MODES: [&str; 3] = ["semantic", "hybrid", "keyword"];

pub struct RetrievalOptions {
    pub base: String,
    pub clients: usize,
    pub duration: Duration,
    /// Skills asked besides every certification.
    pub skills: usize,
    pub k: usize,
}

/// One term asked as a query, and what each mode found.
#[derive(Debug, Serialize)]
pub struct TermRow {
    pub term: String,
    /// `certification` or `skill`.
    pub field: &'static str,
    /// Workers holding it, in the whole corpus.
    pub holders: u64,
    /// Per mode (in [`MODES`] order): holders in the top k / k.
    pub precision: Vec<f64>,
}

/// One query set: its size and per-mode mean precision@k.
#[derive(Debug, Serialize)]
pub struct SetRow {
    pub set: &'static str,
    pub queries: usize,
    /// Per mode (in [`MODES`] order).
    pub precision: Vec<f64>,
}

#[derive(Debug, Serialize)]
pub struct ModeLatency {
    pub mode: String,
    /// `terms` (the plain terms), `phrases` or `typos`.
    pub queries: &'static str,
    pub clients: usize,
    pub searches_per_second: f64,
    pub latency: Latency,
}

#[derive(Debug, Serialize)]
pub struct RetrievalReport {
    pub k: usize,
    pub terms: Vec<TermRow>,
    /// Mean precision@k per mode, in [`MODES`] order.
    pub mean_precision: Vec<f64>,
    pub sets: Vec<SetRow>,
    pub latency: Vec<ModeLatency>,
}

impl RetrievalReport {
    pub fn summary(&self) -> String {
        let mut out = format!(
            "precision@{} over {} exact terms (mean):",
            self.k,
            self.terms.len()
        );
        for (mode, p) in MODES.iter().zip(&self.mean_precision) {
            out.push_str(&format!(" {mode} {p:.3}"));
        }
        out.push('\n');
        out.push_str(&format!(
            "{:<44} {:>8} {:>9} {:>9} {:>9}\n",
            "term", "holders", MODES[0], MODES[1], MODES[2]
        ));
        for row in &self.terms {
            out.push_str(&format!(
                "{:<44} {:>8} {:>9.2} {:>9.2} {:>9.2}\n",
                format!("{} ({})", row.term, row.field),
                row.holders,
                row.precision[0],
                row.precision[1],
                row.precision[2]
            ));
        }
        out.push_str(&format!(
            "{:<14} {:>8} {:>9} {:>9} {:>9}\n",
            "set", "queries", MODES[0], MODES[1], MODES[2]
        ));
        for row in &self.sets {
            out.push_str(&format!(
                "{:<14} {:>8} {:>9.3} {:>9.3} {:>9.3}\n",
                row.set, row.queries, row.precision[0], row.precision[1], row.precision[2]
            ));
        }
        out.push_str(&format!(
            "{:<10} {:<8} {:>8} {:>12} {:>9} {:>9}\n",
            "mode", "queries", "clients", "searches/s", "p50 ms", "p99 ms"
        ));
        for row in &self.latency {
            out.push_str(&format!(
                "{:<10} {:<8} {:>8} {:>12.0} {:>9.2} {:>9.2}\n",
                row.mode,
                row.queries,
                row.clients,
                row.searches_per_second,
                row.latency.p50_ms,
                row.latency.p99_ms
            ));
        }
        out
    }
}

pub async fn run(http: &reqwest::Client, options: &RetrievalOptions) -> Result<RetrievalReport> {
    let mut terms = distinct(http, &options.base, "certifications", usize::MAX).await?;
    let certifications = terms.len();
    terms.extend(distinct(http, &options.base, "skills", options.skills).await?);
    if terms.is_empty() {
        bail!("the workers dataset has no certifications: run `lakehouse seed --workers N` first");
    }
    let mut rows = Vec::with_capacity(terms.len());
    for (i, (term, holders)) in terms.iter().enumerate() {
        let field = if i < certifications {
            "certifications"
        } else {
            "skills"
        };
        let mut precision = Vec::with_capacity(MODES.len());
        for mode in MODES {
            let hits = search(http, &options.base, term, mode, options.k).await?;
            let holding = hits
                .iter()
                .filter(|h| {
                    h["worker"][field]
                        .as_array()
                        .is_some_and(|a| a.iter().any(|v| v == term.as_str()))
                })
                .count();
            precision.push(holding as f64 / options.k as f64);
        }
        rows.push(TermRow {
            term: term.clone(),
            field: if i < certifications {
                "certification"
            } else {
                "skill"
            },
            holders: *holders,
            precision,
        });
    }
    let mean_precision = (0..MODES.len())
        .map(|m| rows.iter().map(|r| r.precision[m]).sum::<f64>() / rows.len() as f64)
        .collect();

    let sets = query_sets(http, &options.base, &terms[..certifications], &terms).await?;
    let mut set_rows = Vec::with_capacity(sets.len());
    'sets: for set in &sets {
        let mut precision = Vec::with_capacity(MODES.len());
        for mode in MODES {
            let mut sum = 0.0;
            for query in &set.queries {
                let mut request = query.request.clone();
                request["mode"] = json!(mode);
                request["k"] = json!(options.k);
                let hits = match search_with(http, &options.base, request).await {
                    Ok(hits) => hits,
                    // An older server refuses a parameter it does not
                    // have (`near`, `available_between`): the set is left
                    // out of the report rather than the run failing.
                    Err(err) if err.to_string().contains("422") => {
                        eprintln!("set {} left out: {err}", set.name);
                        continue 'sets;
                    }
                    Err(err) => return Err(err),
                };
                let relevant = hits.iter().filter(|h| query.relevant.holds(h)).count();
                let out_of = query.relevant_count.unwrap_or(hits.len() as u64);
                let out_of = out_of.min(options.k as u64).max(1);
                sum += relevant as f64 / out_of as f64;
            }
            precision.push(sum / set.queries.len().max(1) as f64);
        }
        set_rows.push(SetRow {
            set: set.name,
            queries: set.queries.len(),
            precision,
        });
    }

    let texts = |name: &str| -> Arc<Vec<String>> {
        let set = sets.iter().find(|s| s.name == name);
        Arc::new(set.map_or_else(Vec::new, |s| {
            s.queries
                .iter()
                .map(|q| q.request["query"].as_str().unwrap_or("").to_string())
                .collect()
        }))
    };
    let plain: Arc<Vec<String>> = Arc::new(terms.into_iter().map(|(t, _)| t).collect());
    let mut latency = Vec::new();
    for mode in MODES {
        for clients in [1, options.clients] {
            latency.push(load(http, options, mode, clients, ("terms", plain.clone())).await?);
        }
    }
    for kind in ["phrases", "typos"] {
        let queries = texts(kind);
        if !queries.is_empty() {
            latency.push(load(http, options, "hybrid", options.clients, (kind, queries)).await?);
        }
    }
    Ok(RetrievalReport {
        k: options.k,
        terms: rows,
        mean_precision,
        sets: set_rows,
        latency,
    })
}

/// The distinct values of a list column of `workers` with their holder
/// counts, most held first, at most `limit`.
async fn distinct(
    http: &reqwest::Client,
    base: &str,
    column: &str,
    limit: usize,
) -> Result<Vec<(String, u64)>> {
    let sql = format!(
        "SELECT term, count(*) AS holders FROM (SELECT unnest({column}) AS term FROM workers) \
         GROUP BY term ORDER BY holders DESC, term"
    );
    let mut terms = counts(http, base, &sql)
        .await
        .with_context(|| format!("listing {column}"))?;
    terms.retain(|(term, _)| !term.is_empty());
    terms.truncate(limit);
    Ok(terms)
}

async fn search(
    http: &reqwest::Client,
    base: &str,
    query: &str,
    mode: &str,
    k: usize,
) -> Result<Vec<Value>> {
    search_with(http, base, json!({"query": query, "k": k, "mode": mode})).await
}

async fn search_with(http: &reqwest::Client, base: &str, request: Value) -> Result<Vec<Value>> {
    let response = http
        .post(format!("{base}/v1/matrix/search"))
        .json(&request)
        .send()
        .await?;
    let status = response.status();
    let body: Value = response.json().await?;
    if !status.is_success() {
        bail!("search {request} failed ({status}): {body}");
    }
    Ok(body["hits"].as_array().cloned().unwrap_or_default())
}

/// `clients` clients searching in `mode` for the duration.
async fn load(
    http: &reqwest::Client,
    options: &RetrievalOptions,
    mode: &'static str,
    clients: usize,
    (kind, queries): (&'static str, Arc<Vec<String>>),
) -> Result<ModeLatency> {
    let stop = Arc::new(AtomicBool::new(false));
    let all = Arc::new(Mutex::new(histogram()));
    let started = Instant::now();
    let mut tasks = Vec::new();
    for client in 0..clients {
        let (http, base, stop, all, queries) = (
            http.clone(),
            options.base.clone(),
            stop.clone(),
            all.clone(),
            queries.clone(),
        );
        let k = options.k;
        tasks.push(tokio::spawn(async move {
            let mut mine = histogram();
            let mut next = client;
            while !stop.load(Ordering::Relaxed) {
                let query = &queries[next % queries.len()];
                next += clients;
                let sent = Instant::now();
                search(&http, &base, query, mode, k).await?;
                mine.saturating_record(sent.elapsed().as_micros() as u64);
            }
            all.lock().await.add(&mine)?;
            Ok::<(), anyhow::Error>(())
        }));
    }
    tokio::time::sleep(options.duration).await;
    stop.store(true, Ordering::Relaxed);
    for task in tasks {
        task.await??;
    }
    let seconds = started.elapsed().as_secs_f64();
    let all = all.lock().await;
    Ok(ModeLatency {
        mode: mode.to_string(),
        queries: kind,
        clients,
        searches_per_second: all.len() as f64 / seconds,
        latency: Latency::of(&all),
    })
}

/// What makes a hit relevant to a query, read from its worker.
enum Relevant {
    /// Holds exactly this value in a list field.
    Holds(&'static str, String),
    Role(String),
    /// A role, skill or certification containing the word (any case).
    Mentions(String),
    Any(Vec<Relevant>),
    All(Vec<Relevant>),
    /// Explained as at most this many miles away.
    WithinMiles(f64),
    /// Free on every day of the window, both included.
    FreeBetween(&'static str, &'static str),
    Shift(&'static str),
}

impl Relevant {
    fn holds(&self, hit: &Value) -> bool {
        let w = &hit["worker"];
        let list = |field: &str| -> Vec<String> {
            w[field]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|v| {
                    v.as_str()
                        .or_else(|| v["name"].as_str())
                        .map(str::to_string)
                })
                .collect()
        };
        match self {
            Relevant::Holds(field, term) => list(field).iter().any(|v| v == term),
            Relevant::Role(role) => w["role"] == role.as_str(),
            Relevant::Mentions(word) => {
                let word = word.to_lowercase();
                std::iter::once(w["role"].as_str().unwrap_or("").to_string())
                    .chain(list("skills"))
                    .chain(list("certifications"))
                    .any(|v| v.to_lowercase().contains(&word))
            }
            Relevant::Any(any) => any.iter().any(|r| r.holds(hit)),
            Relevant::All(all) => all.iter().all(|r| r.holds(hit)),
            Relevant::WithinMiles(miles) => hit["explain"]["distance_miles"]
                .as_f64()
                .is_some_and(|d| d <= *miles),
            Relevant::FreeBetween(from, to) => {
                let started = w["available_from"]
                    .as_str()
                    .is_some_and(|d| d.get(..10).is_some_and(|day| day <= *from));
                let stays = w["available_to"].as_str().is_none_or(|last| last >= *to);
                let off = w["unavailable"].as_array().into_iter().flatten().any(|r| {
                    r["from"].as_str().is_some_and(|a| a <= *to)
                        && r["to"].as_str().is_some_and(|b| b >= *from)
                });
                started && stays && !off
            }
            Relevant::Shift(shift) => w["shift"] == *shift,
        }
    }
}

struct SetQuery {
    /// The search, without `mode` and `k`.
    request: Value,
    relevant: Relevant,
    /// How many workers are relevant, where known (else: the hits
    /// returned, for a search whose filter decides).
    relevant_count: Option<u64>,
}

struct QuerySet {
    name: &'static str,
    queries: Vec<SetQuery>,
}

/// A word's plural, as English writes it.
fn plural(word: &str) -> String {
    let lower = word.to_lowercase();
    if lower.ends_with(['s', 'x']) || lower.ends_with("ch") || lower.ends_with("sh") {
        format!("{lower}es")
    } else if lower.ends_with('y') && !["ay", "ey", "oy", "uy"].iter().any(|e| lower.ends_with(e)) {
        format!("{}ies", &lower[..lower.len() - 1])
    } else {
        format!("{lower}s")
    }
}

/// The term with one letter of its longest word (of 5+ letters) replaced
/// by another: one edit away. `None` without such a word.
fn typo(term: &str) -> Option<String> {
    let words: Vec<&str> = term.split(' ').collect();
    let (at, longest) = words
        .iter()
        .enumerate()
        .filter(|(_, w)| w.chars().count() >= 5 && w.chars().all(|c| c.is_ascii_alphabetic()))
        .max_by_key(|(_, w)| w.len())?;
    let middle = longest.len() / 2;
    let was = longest.as_bytes()[middle];
    let now = if was.eq_ignore_ascii_case(&b'x') {
        'q'
    } else {
        'x'
    };
    let changed = format!("{}{now}{}", &longest[..middle], &longest[middle + 1..]);
    let mut words: Vec<String> = words.iter().map(|w| w.to_string()).collect();
    words[at] = changed;
    Some(words.join(" "))
}

/// The rows of an SQL query whose last column is a count: the other
/// columns' strings joined by a tab, and the count.
async fn counts(http: &reqwest::Client, base: &str, sql: &str) -> Result<Vec<(String, u64)>> {
    let response = http
        .post(format!("{base}/v1/sql"))
        .json(&json!({ "sql": sql }))
        .send()
        .await
        .with_context(|| format!("cannot reach {base}"))?;
    let status = response.status();
    let body: Value = response.json().await?;
    if !status.is_success() {
        bail!("{sql} failed ({status}): {body}");
    }
    Ok(body["rows"]
        .as_array()
        .context("no rows")?
        .iter()
        .filter_map(|row| {
            let (count, key) = row.as_array()?.split_last()?;
            let key: Vec<&str> = key.iter().filter_map(Value::as_str).collect();
            Some((key.join("\t"), count.as_u64()?))
        })
        .collect())
}

/// The query sets, from the corpus the server holds.
async fn query_sets(
    http: &reqwest::Client,
    base: &str,
    certifications: &[(String, u64)],
    terms: &[(String, u64)],
) -> Result<Vec<QuerySet>> {
    let roles = counts(
        http,
        base,
        "SELECT role, count(*) FROM workers GROUP BY role ORDER BY 2 DESC, role",
    )
    .await?;
    let cities = counts(
        http,
        base,
        "SELECT city, state, count(*) FROM workers GROUP BY city, state ORDER BY 3 DESC, city LIMIT 5",
    )
    .await?;
    let field_of = |term: &str| {
        if certifications.iter().any(|(c, _)| c == term) {
            "certifications"
        } else {
            "skills"
        }
    };
    let inflections = roles
        .iter()
        .map(|(role, holders)| {
            let mut words: Vec<String> = role.split([' ', '/']).map(str::to_lowercase).collect();
            if let Some(last) = words.last_mut() {
                *last = plural(last);
            }
            SetQuery {
                request: json!({"query": words.join(" ")}),
                relevant: Relevant::Role(role.clone()),
                relevant_count: Some(*holders),
            }
        })
        .collect();
    let phrases = certifications
        .iter()
        .filter(|(c, _)| c.contains(' '))
        .map(|(c, holders)| SetQuery {
            request: json!({"query": format!("\"{c}\"")}),
            relevant: Relevant::Holds("certifications", c.clone()),
            relevant_count: Some(*holders),
        })
        .collect();
    let typos = terms
        .iter()
        .filter_map(|(term, holders)| {
            Some(SetQuery {
                request: json!({"query": typo(term)?}),
                relevant: Relevant::Holds(field_of(term), term.clone()),
                relevant_count: Some(*holders),
            })
        })
        .collect();
    let synonyms = [
        (
            "certified nursing assistant",
            Relevant::Holds("certifications", "CNA".into()),
        ),
        (
            "commercial driver license",
            Relevant::Any(vec![
                Relevant::Holds("certifications", "CDL Class A".into()),
                Relevant::Holds("skills", "CDL-A".into()),
            ]),
        ),
        ("lift truck", Relevant::Mentions("forklift".into())),
        (
            "powered industrial truck",
            Relevant::Mentions("forklift".into()),
        ),
    ]
    .into_iter()
    .map(|(query, relevant)| SetQuery {
        request: json!({ "query": query }),
        relevant,
        relevant_count: None,
    })
    .collect();
    let common: Vec<&String> = roles.iter().take(5).map(|(r, _)| r).collect();
    let radius = cities
        .iter()
        .zip(common.iter().cycle())
        .map(|((place, _), role)| {
            let (city, state) = place.split_once('\t').unwrap_or((place, ""));
            SetQuery {
                request: json!({"query": role.to_lowercase(), "explain": true,
                                "near": {"city": city, "state": state, "miles": 25}}),
                relevant: Relevant::All(vec![
                    Relevant::Role(role.to_string()),
                    Relevant::WithinMiles(25.0),
                ]),
                relevant_count: None,
            }
        })
        .collect();
    let (from, to) = ("2026-12-10", "2026-12-20");
    let availability = common
        .iter()
        .map(|role| SetQuery {
            request: json!({"query": format!("{} nights", role.to_lowercase()),
                            "available_between": {"from": from, "to": to}, "shift_any": ["night"]}),
            relevant: Relevant::All(vec![
                Relevant::Role(role.to_string()),
                Relevant::FreeBetween(from, to),
                Relevant::Shift("night"),
            ]),
            relevant_count: None,
        })
        .collect();
    Ok(vec![
        QuerySet {
            name: "inflections",
            queries: inflections,
        },
        QuerySet {
            name: "phrases",
            queries: phrases,
        },
        QuerySet {
            name: "typos",
            queries: typos,
        },
        QuerySet {
            name: "synonyms",
            queries: synonyms,
        },
        QuerySet {
            name: "radius",
            queries: radius,
        },
        QuerySet {
            name: "availability",
            queries: availability,
        },
    ])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plurals_and_typos_are_one_form_away() {
        assert_eq!(plural("welder"), "welders");
        assert_eq!(plural("nurse"), "nurses");
        assert_eq!(plural("bus"), "buses");
        assert_eq!(plural("attorney"), "attorneys");
        assert_eq!(plural("factory"), "factories");
        assert_eq!(
            typo("HazMat Endorsement").as_deref(),
            Some("HazMat Endorxement")
        );
        assert_eq!(typo("OSHA 10"), None);
        assert_eq!(typo("taxes").as_deref(), Some("taqes"));
    }
}
