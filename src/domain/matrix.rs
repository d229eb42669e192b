//! Matrix search and the playbook learning loop: request types and the
//! boost arithmetic, free of I/O.
//!
//! A recording says "for this query and role, these workers filled the
//! order, this well (score in [0, 1])". A later search with the same role
//! and a query within the configured distance boosts each recorded worker:
//! `distance × (1 − 0.5·score)` — score 1.0 halves it exactly. A worker in
//! several matching recordings gets the strongest boost once, not a product.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use chrono::{DateTime, Utc};

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::filter::{
    full_date, named_fields, Filter, FilterError, PreparedFilter, MAX_FILTER_CONDITIONS,
};
use super::keyword::{HitExplain, SearchMode};
use super::workers::{DateRange, Shift, WorkerStatus};

pub const MAX_QUERY_CHARS: usize = 2000;
pub const MAX_K: usize = 200;
pub const MAX_RECORDED_WORKERS: usize = 100;

#[derive(Debug, Clone, Default, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct MatrixSearch {
    /// What the coordinator is looking for, in words.
    pub query: String,
    #[serde(deserialize_with = "crate::domain::de::integer")]
    #[schema(minimum = 1, maximum = 200)]
    pub k: usize,
    pub role: Option<String>,
    pub city: Option<String>,
    pub state: Option<String>,
    pub exclude_ids: Option<Vec<String>>,
    #[serde(default)]
    pub use_playbook: bool,
    /// More conditions on the workers' fields, in the filter language
    /// (`{"years_experience": {"gte": 3}}`); all must hold with role,
    /// city and state.
    #[schema(value_type = Option<Object>)]
    pub filter: Option<serde_json::Map<String, Value>>,
    /// At least this many years of experience.
    #[serde(default, deserialize_with = "crate::domain::de::optional_integer")]
    #[schema(maximum = 4294967295_u64)]
    pub min_years: Option<u32>,
    /// At most this hourly rate.
    #[serde(default)]
    #[schema(minimum = 0.0)]
    pub max_rate: Option<f64>,
    /// Every one of these skills.
    #[serde(default)]
    pub skills_all: Option<Vec<String>>,
    /// At least one of these certifications.
    #[serde(default)]
    pub certifications_any: Option<Vec<String>>,
    /// Available on or before this date (`2026-12-07` or RFC 3339).
    #[serde(default)]
    pub available_by: Option<String>,
    /// Free for the whole window, both days included: started by `from`,
    /// not gone before `to` (`available_to`), and no `unavailable` range
    /// sharing a day with it.
    #[serde(default)]
    pub available_between: Option<DateRange>,
    /// Works one of these shifts.
    #[serde(default)]
    #[schema(min_items = 1, max_items = 50)]
    pub shift_any: Option<Vec<Shift>>,
    /// With `certifications_any`: the certification held is not expired
    /// on this day (`2026-12-07`); a certification without an `expires`
    /// never expires.
    #[serde(default)]
    #[schema(format = Date)]
    pub certifications_valid_on: Option<String>,
    /// Only workers of these statuses (a worker without one is `active`).
    /// Default: every status but `on_assignment` and `do_not_use` — unless
    /// `filter` names `status` itself. The answer's `excluded_statuses`
    /// says what was left out.
    #[serde(default)]
    #[schema(min_items = 1, max_items = 4)]
    pub status_any: Option<Vec<crate::domain::workers::WorkerStatus>>,
    /// Living within a distance of a point or of a city in the table that
    /// ships with the service: `{"city": "Joliet", "state": "IL",
    /// "miles": 25}` or `{"lat": 41.52, "lon": -88.08, "km": 40}`.
    #[serde(default)]
    pub near: Option<Near>,
    /// `hybrid` (default: `matrix.default_mode`), `semantic` or `keyword`.
    #[serde(default)]
    pub mode: Option<SearchMode>,
    /// The keyword side's weight in hybrid mode, 0 to 1 (default:
    /// `vectors.keyword_weight`).
    #[serde(default)]
    #[schema(minimum = 0.0, maximum = 1.0)]
    pub keyword_weight: Option<f32>,
    /// Give each hit an `explain`: the parts of its distance, and the
    /// recordings behind its playbook boost.
    #[serde(default)]
    pub explain: bool,
    /// The search checked and its filter parsed, once, by the use case
    /// (see [`MatrixSearch::prepare`]); the matrix prepares it itself when
    /// this is `None`. Never from a client.
    #[serde(skip)]
    pub prepared: Option<PreparedSearch>,
}

/// A matrix search, checked once: one filter over the workers that role,
/// city, state, the typed parameters and the request's own filter must all
/// satisfy, parsed; and the fields the request's own filter names.
#[derive(Debug, Clone, Default)]
pub struct PreparedSearch {
    pub filter: PreparedFilter,
    /// The request's filter's fields: its top-level ones and the
    /// equalities in its `and`s (each gets a lookup in the index).
    pub filter_fields: BTreeSet<String>,
    /// The worker statuses the search leaves out.
    pub excluded_statuses: Vec<crate::domain::workers::WorkerStatus>,
    /// Of those, the ones left out by excluding their workers' ids rather
    /// than by `filter` (the default ones): the caller looks them up.
    pub hidden_statuses: Vec<crate::domain::workers::WorkerStatus>,
}

/// `POST /v1/matrix/workers/count` body: how many workers match, and
/// optionally how they spread over some fields.
#[derive(Debug, Clone, Default, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct WorkerCount {
    pub role: Option<String>,
    pub city: Option<String>,
    pub state: Option<String>,
    /// As in a search: by default every status but `on_assignment` and
    /// `do_not_use`.
    #[serde(default)]
    #[schema(min_items = 1, max_items = 4)]
    pub status_any: Option<Vec<WorkerStatus>>,
    /// As in a search.
    #[serde(default)]
    pub near: Option<Near>,
    /// More conditions in the filter language.
    #[schema(value_type = Option<Object>)]
    #[serde(default, deserialize_with = "super::de::optional_object")]
    pub filter: Option<serde_json::Map<String, Value>>,
    /// Fields whose values are counted over the matching workers (e.g.
    /// `["role", "city", "shift"]`): at most 8.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub facets: Option<Vec<String>>,
}

impl WorkerCount {
    /// The search whose filter selects the same workers.
    pub fn as_search(&self) -> MatrixSearch {
        MatrixSearch {
            query: "count".into(),
            k: 1,
            role: self.role.clone(),
            city: self.city.clone(),
            state: self.state.clone(),
            status_any: self.status_any.clone(),
            near: self.near.clone(),
            filter: self.filter.clone(),
            ..MatrixSearch::default()
        }
    }
}

/// `POST /v1/matrix/workers/count` reply.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct WorkerCountAnswer {
    pub count: usize,
    /// The `workers` index's Lance version counted.
    pub lance_version: u64,
    /// The statuses left out (see `status_any`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub excluded_statuses: Vec<WorkerStatus>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub facets: Option<BTreeMap<String, Vec<super::items::FacetCount>>>,
}

/// `PATCH /v1/matrix/workers/{id}` body: a worker's fields that change day
/// to day (its `status`, availability, shift, certifications, contact);
/// `null` removes a field. The profile text and vector stay.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct WorkerPatch {
    #[schema(value_type = Object)]
    #[serde(deserialize_with = "super::de::object")]
    pub metadata: serde_json::Map<String, Value>,
}

/// Whether a filter names `field` anywhere: at its top level or inside an
/// `and`, `or` or `not`.
fn names_field(filter: &serde_json::Map<String, Value>, field: &str) -> bool {
    filter.iter().any(|(key, value)| match key.as_str() {
        "and" | "or" => value.as_array().is_some_and(|parts| {
            parts
                .iter()
                .filter_map(Value::as_object)
                .any(|p| names_field(p, field))
        }),
        "not" => value.as_object().is_some_and(|p| names_field(p, field)),
        name => name == field,
    })
}

/// Why [`MatrixSearch::prepare`] refused a search.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum SearchRefused {
    #[error(transparent)]
    Invalid(#[from] MatrixInvalid),
    /// The request's filter (the path names where in it).
    #[error(transparent)]
    Filter(#[from] FilterError),
}

/// A matrix search's `near`: a centre (a point, or a city and its state)
/// and a radius (in miles or km).
#[derive(
    Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema, schemars::JsonSchema,
)]
#[serde(deny_unknown_fields)]
pub struct Near {
    #[schema(minimum = -90.0, maximum = 90.0)]
    pub lat: Option<f64>,
    #[schema(minimum = -180.0, maximum = 180.0)]
    pub lon: Option<f64>,
    /// A city of the shipped table, e.g. "Joliet" (with `state`).
    #[schema(max_length = 64)]
    pub city: Option<String>,
    /// Its two-letter state code, e.g. "IL".
    #[schema(max_length = 2)]
    pub state: Option<String>,
    #[schema(minimum = 0.0)]
    pub miles: Option<f64>,
    #[schema(minimum = 0.0)]
    pub km: Option<f64>,
}

impl Near {
    /// Its centre and radius in km.
    pub fn resolve(&self) -> Result<(crate::domain::geo::Point, f64), MatrixInvalid> {
        use crate::domain::geo::{city, radius_km, Point};
        let invalid = |reason: String| MatrixInvalid::InvalidParameter {
            name: "near",
            reason,
        };
        let centre = match (self.lat, self.lon, &self.city, &self.state) {
            (Some(lat), Some(lon), None, None) => Point::new(lat, lon).map_err(invalid)?,
            (None, None, Some(name), Some(state)) => city(name, state).ok_or_else(|| {
                MatrixInvalid::UnknownCity(format!(
                    "'{}' is not in the city table; give lat and lon instead",
                    super::shown(&format!("{name}, {state}"), 80)
                ))
            })?,
            _ => return Err(invalid("give lat and lon, or city and state".into())),
        };
        Ok((centre, radius_km(self.miles, self.km).map_err(invalid)?))
    }
}

/// Typed list parameters hold at most this many values.
pub const MAX_TYPED_VALUES: usize = 50;

#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PlaybookRecord {
    pub query: String,
    pub role: String,
    pub worker_ids: Vec<String>,
    /// How well the placement went: 1.0 halves a boosted worker's distance
    /// (with a negative outcome: how strongly it counts against them).
    #[schema(minimum = 0.0, maximum = 1.0)]
    pub score: f64,
    /// What came of it: `good` (the default) and `placed` boost the
    /// workers in later searches of a near query; `declined` and `no_show`
    /// demote them, by `matrix.playbook_declined_weight` and
    /// `matrix.playbook_no_show_weight`.
    #[serde(default)]
    pub outcome: Option<Outcome>,
    /// Who recorded it: the token's name (`anonymous` without tokens), set
    /// by the door, never by the client.
    #[serde(skip)]
    pub recorded_by: Option<String>,
}

/// What came of a recorded placement.
#[derive(
    Debug,
    Clone,
    Copy,
    Default,
    PartialEq,
    Eq,
    Serialize,
    Deserialize,
    utoipa::ToSchema,
    schemars::JsonSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// A good match (what a recording without an outcome is).
    #[default]
    Good,
    /// The worker was placed.
    Placed,
    /// The worker declined the offer.
    Declined,
    /// The worker did not show up.
    NoShow,
}

impl Outcome {
    pub fn is_negative(self) -> bool {
        matches!(self, Outcome::Declined | Outcome::NoShow)
    }
}

/// How recordings weigh in a search: their age and their outcome.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PlaybookWeights {
    /// A recording this many days old counts half (0: no decay).
    pub half_life_days: f64,
    /// A `declined` recording of score s counts −s × this.
    pub declined: f64,
    /// A `no_show` recording of score s counts −s × this.
    pub no_show: f64,
    /// The most a demotion multiplies a distance by is 1 + this.
    pub max_demotion: f64,
}

impl Default for PlaybookWeights {
    fn default() -> Self {
        Self {
            half_life_days: 90.0,
            declined: 0.5,
            no_show: 1.0,
            max_demotion: 0.5,
        }
    }
}

impl PlaybookWeights {
    /// What a recording made at `at` counts for at `now`: in [−1, 1],
    /// positive boosts, negative demotes; its age counted in whole days.
    pub fn weight(
        &self,
        outcome: Outcome,
        score: f64,
        at: DateTime<Utc>,
        now: DateTime<Utc>,
    ) -> f64 {
        let score = score.clamp(0.0, 1.0);
        let signed = match outcome {
            Outcome::Good | Outcome::Placed => score,
            Outcome::Declined => -score * self.declined,
            Outcome::NoShow => -score * self.no_show,
        };
        // Whole days: a recording counts fully on its day, and a search
        // gives the same weights all day (its cached results stay true).
        let age_days = (now - at).num_days().max(0) as f64;
        let decay = if self.half_life_days > 0.0 {
            0.5_f64.powf(age_days / self.half_life_days)
        } else {
            1.0
        };
        (signed * decay).clamp(-1.0, 1.0)
    }

    /// The lowest and highest factor a playbook applies to a distance.
    pub fn bounds(&self) -> [f32; 2] {
        [boost_factor(1.0), factor(-1.0, self.max_demotion)]
    }
}

/// The multiplier a worker's net playbook score (in [−1, 1]) gives its
/// distance: a boost down to ×0.5 at +1, a demotion up to
/// ×(1 + `max_demotion`) at −1.
pub fn factor(net: f64, max_demotion: f64) -> f32 {
    if net >= 0.0 {
        boost_factor(net)
    } else {
        (1.0 + max_demotion.max(0.0) * (-net).min(1.0)) as f32
    }
}

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct MatrixHit {
    pub worker_id: String,
    /// `explain.fused_distance × explain.boost_factor`.
    pub distance: f32,
    pub boosted: bool,
    /// Ranked lower by the playbook: recordings of a declined offer or a
    /// no-show outweigh its good ones.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub demoted: bool,
    /// Brought in by the playbook from below the top `k`.
    pub injected: bool,
    #[schema(value_type = Object)]
    pub worker: Value,
    /// With `explain: true`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub explain: Option<MatrixExplain>,
}

/// How a worker's distance was reached: the index's ranking (semantic
/// distance, keyword score, fusion), then the playbook's factor:
/// `distance = fused_distance × boost_factor`.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct MatrixExplain {
    #[serde(flatten)]
    pub ranking: HitExplain,
    /// `1 − 0.5 × playbook.score`, or 1 without a boost.
    pub boost_factor: f32,
    pub playbook: Option<PlaybookExplain>,
    /// Set when the search answered from the keyword side alone (the
    /// ranking's `mode` is then `keyword`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub degraded: Option<Degraded>,
    /// With `near`: the worker's distance from its centre, in miles.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub distance_miles: Option<f64>,
}

/// Why a matrix search answered with less than it was asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Degraded {
    /// The query could not be embedded (the embedder is unreachable,
    /// restarting or too slow): a semantic or hybrid search answered from
    /// BM25 over the workers' texts, without the playbook, whose
    /// recordings are matched by the query's vector.
    EmbedderUnavailable,
}

impl Degraded {
    /// As serialised (and as the metric's `reason` label).
    pub fn as_str(self) -> &'static str {
        match self {
            Degraded::EmbedderUnavailable => "embedder_unavailable",
        }
    }
}

/// The boost of one worker and the recordings behind it.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct PlaybookExplain {
    /// The net score: the strongest boost plus the strongest demotion
    /// among the recordings, in [−1, 1].
    pub score: f64,
    /// Every matching recording naming this worker, strongest first.
    pub recordings: Vec<RecordingRef>,
    /// The lowest and highest factor the playbook applies (`boost_factor`
    /// is clamped to them).
    pub factor_bounds: [f32; 2],
}

#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct RecordingRef {
    pub recording_id: String,
    /// What it counts for now, in [−1, 1] (negative: a demotion).
    pub score: f64,
    /// Distance between this search's query and the recorded one.
    pub query_distance: f32,
    pub outcome: Outcome,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub recorded_at: Option<DateTime<Utc>>,
    /// The token that recorded it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub recorded_by: Option<String>,
}

/// A recording that matched a search: same role, query near enough.
#[derive(Debug, Clone)]
pub struct Recording {
    pub recording_id: String,
    pub worker_ids: Vec<String>,
    /// What it counts for now, in [−1, 1]: positive boosts, negative
    /// demotes (its score weighed by its outcome and age).
    pub score: f64,
    pub query_distance: f32,
    pub outcome: Outcome,
    /// When it was recorded (unknown for items before entries).
    pub recorded_at: Option<DateTime<Utc>>,
    /// Who recorded it (unknown before recordings kept it).
    pub recorded_by: Option<String>,
}

/// Every recording of one query for one role, folded into one playbook
/// item: the playbook holds one vector per distinct (query, role), so its
/// memory grows with the distinct queries coordinators ask, not with how
/// often they record, and a search finds all of a query's recordings in one
/// neighbour (many identical vectors would crowd each other out of the
/// lookup's `playbook_candidates`). Per worker it keeps the count, when it
/// was last recorded and the strongest recording.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PlaybookEntry {
    pub query: String,
    pub role: String,
    /// Recordings folded into this entry.
    pub recordings: u64,
    #[serde(serialize_with = "to_the_second")]
    pub first_recorded_at: DateTime<Utc>,
    #[serde(serialize_with = "to_the_second")]
    pub recorded_at: DateTime<Utc>,
    pub workers: BTreeMap<String, RecordedWorker>,
    /// Who recorded each recording the entry still holds (the token's
    /// name), by recording id.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub recorded_by: BTreeMap<String, String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RecordedWorker {
    /// Recordings that named this worker.
    pub recordings: u64,
    #[serde(serialize_with = "to_the_second")]
    pub last_recorded_at: DateTime<Utc>,
    /// The strongest of them (the one whose score counts; the newest of
    /// equal ones). Kept for the binaries before outcomes; `history` is
    /// what counts.
    pub best: ScoredRecording,
    /// Besides `best`, the newest recordings naming this worker (at most
    /// [`MAX_WORKER_HISTORY`]), each with its outcome and time: with
    /// `best`, what a search weighs and a withdrawal removes from.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub history: Vec<WorkerRecording>,
}

/// Recordings remembered per worker and entry; older ones go (they count
/// least, having decayed most).
pub const MAX_WORKER_HISTORY: usize = 4;

/// One recording as a worker's entry remembers it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WorkerRecording {
    #[serde(rename = "id")]
    pub recording_id: String,
    #[serde(rename = "s")]
    pub score: f64,
    #[serde(rename = "o", default, skip_serializing_if = "is_good")]
    pub outcome: Outcome,
    #[serde(rename = "t", with = "chrono::serde::ts_seconds")]
    pub at: DateTime<Utc>,
}

fn is_good(outcome: &Outcome) -> bool {
    *outcome == Outcome::Good
}

impl RecordedWorker {
    /// The recordings that count: the newest ones, and the strongest good
    /// one however old (for an entry written before outcomes, that alone).
    fn counted(&self) -> Vec<WorkerRecording> {
        let mut counted = self.history.clone();
        let best_is_good = !self
            .history
            .iter()
            .any(|r| r.recording_id == self.best.recording_id && r.outcome.is_negative());
        if best_is_good
            && !counted
                .iter()
                .any(|r| r.recording_id == self.best.recording_id)
        {
            counted.push(WorkerRecording {
                recording_id: self.best.recording_id.clone(),
                score: self.best.score,
                outcome: Outcome::Good,
                at: self.best.at.unwrap_or(self.last_recorded_at),
            });
        }
        counted
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ScoredRecording {
    pub recording_id: String,
    pub score: f64,
    /// When, to the second (absent in entries before outcomes: the
    /// worker's last recording's time stands in). Seconds keep an entry of
    /// the most workers a recording may name within its byte limit.
    #[serde(
        rename = "t",
        default,
        skip_serializing_if = "Option::is_none",
        with = "chrono::serde::ts_seconds_option"
    )]
    pub at: Option<DateTime<Utc>>,
}

/// An entry's times in RFC 3339 to the second (any RFC 3339 reads back):
/// an entry of 100 workers has a hundred of them, within its byte limit.
fn to_the_second<S: serde::Serializer>(
    at: &DateTime<Utc>,
    serializer: S,
) -> Result<S::Ok, S::Error> {
    serializer.serialize_str(&at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true))
}

/// Workers one entry remembers; past it the least recently recorded one
/// goes (never one of the recording being folded in). An entry is read
/// whole by every search it is near and written whole by every recording
/// of its query: ≈ 130 bytes a worker, and [`PlaybookEntry::fit`] keeps it
/// within the index's metadata limit.
pub const MAX_ENTRY_WORKERS: usize = 128;
const _: () = assert!(MAX_ENTRY_WORKERS >= MAX_RECORDED_WORKERS);

impl PlaybookEntry {
    /// The playbook item id of `(role, query)`: the same on every node and
    /// after every restart.
    pub fn id(role: &str, query: &str) -> String {
        use sha2::Digest;
        let mut hash = sha2::Sha256::new();
        hash.update(role.as_bytes());
        hash.update([0u8]);
        hash.update(query.as_bytes());
        let digest = hash.finalize();
        let hex: String = digest[..16].iter().map(|b| format!("{b:02x}")).collect();
        format!("pb-{hex}")
    }

    pub fn new(query: &str, role: &str, now: DateTime<Utc>) -> Self {
        Self {
            query: query.to_string(),
            role: role.to_string(),
            recordings: 0,
            first_recorded_at: now,
            recorded_at: now,
            workers: BTreeMap::new(),
            recorded_by: BTreeMap::new(),
        }
    }

    /// Folds one recording in.
    pub fn add(
        &mut self,
        recording_id: &str,
        workers: &[String],
        score: f64,
        outcome: Outcome,
        now: DateTime<Utc>,
    ) {
        self.add_by(recording_id, workers, score, outcome, now, None);
    }

    /// [`PlaybookEntry::add`], remembering who recorded it.
    pub fn add_by(
        &mut self,
        recording_id: &str,
        workers: &[String],
        score: f64,
        outcome: Outcome,
        now: DateTime<Utc>,
        by: Option<&str>,
    ) {
        if let Some(by) = by {
            self.recorded_by
                .insert(recording_id.to_string(), by.to_string());
        }
        self.recordings += 1;
        self.recorded_at = now;
        let recording = ScoredRecording {
            recording_id: recording_id.to_string(),
            score,
            at: Some(now),
        };
        for worker in workers {
            let entry = self
                .workers
                .entry(worker.clone())
                .or_insert_with(|| RecordedWorker {
                    recordings: 0,
                    last_recorded_at: now,
                    best: recording.clone(),
                    history: Vec::new(),
                });
            let first = entry.recordings == 0;
            entry.recordings += 1;
            let previous_at = entry.best.at.unwrap_or(entry.last_recorded_at);
            entry.last_recorded_at = now;
            let this = WorkerRecording {
                recording_id: recording_id.to_string(),
                score,
                outcome,
                at: now,
            };
            // The best's time is written only once it differs from the
            // worker's last recording's.
            let newest = ScoredRecording {
                at: None,
                ..recording.clone()
            };
            if first && outcome.is_negative() {
                // No good recording yet: a best that boosts nothing (what
                // a binary before outcomes reads).
                entry.best = ScoredRecording {
                    score: 0.0,
                    ..newest
                };
                entry.history.push(this);
            } else if first {
                entry.best = newest;
            } else if !outcome.is_negative() && score >= entry.best.score {
                // The new best; the one it replaces joins the history.
                let replaced = std::mem::replace(&mut entry.best, newest);
                let was_counted = !entry
                    .history
                    .iter()
                    .any(|r| r.recording_id == replaced.recording_id);
                if was_counted && replaced.score > 0.0 {
                    entry.history.push(WorkerRecording {
                        recording_id: replaced.recording_id,
                        score: replaced.score,
                        outcome: Outcome::Good,
                        at: previous_at,
                    });
                }
            } else {
                entry.best.at.get_or_insert(previous_at);
                entry.history.push(this);
            }
            entry.history.sort_by_key(|r| r.at);
            while entry.history.len() > MAX_WORKER_HISTORY {
                entry.history.remove(0);
            }
        }
        while self.workers.len() > MAX_ENTRY_WORKERS && self.evict_one(workers) {}
        self.prune_recorders();
    }

    /// Forgets who recorded what no worker's recordings name any more.
    fn prune_recorders(&mut self) {
        if self.recorded_by.is_empty() {
            return;
        }
        let held: std::collections::HashSet<String> = self
            .workers
            .values()
            .flat_map(|w| w.counted().into_iter().map(|r| r.recording_id))
            .collect();
        self.recorded_by.retain(|id, _| held.contains(id));
    }

    /// Whether recording `recording_id` is one of the entry's.
    pub fn holds(&self, recording_id: &str) -> bool {
        self.workers.values().any(|worker| {
            worker.best.recording_id == recording_id
                || worker
                    .history
                    .iter()
                    .any(|r| r.recording_id == recording_id)
        })
    }

    /// Takes recording `recording_id` out of the entry: from every
    /// worker's history (a worker it was the only one of goes), and from
    /// the count. Whether it was there.
    pub fn withdraw(&mut self, recording_id: &str) -> bool {
        let mut found = false;
        self.workers.retain(|_, worker| {
            let mut history = worker.counted();
            let before = history.len();
            history.retain(|r| r.recording_id != recording_id);
            if history.len() == before {
                return true;
            }
            found = true;
            worker.recordings = worker.recordings.saturating_sub(1);
            if history.is_empty() {
                return false;
            }
            history.sort_by_key(|r| r.at);
            worker.last_recorded_at = history
                .iter()
                .map(|r| r.at)
                .max()
                .unwrap_or(worker.last_recorded_at);
            let best = history
                .iter()
                .filter(|r| !r.outcome.is_negative())
                .max_by(|a, b| a.score.total_cmp(&b.score).then(a.at.cmp(&b.at)));
            worker.best = match best {
                Some(best) => ScoredRecording {
                    recording_id: best.recording_id.clone(),
                    score: best.score,
                    at: Some(best.at),
                },
                // Only demotions left: a best that boosts nothing, named
                // after one of them (it is in the history as negative).
                None => ScoredRecording {
                    recording_id: history
                        .last()
                        .map(|r| r.recording_id.clone())
                        .unwrap_or_default(),
                    score: 0.0,
                    at: None,
                },
            };
            // The best is kept once, as the best.
            let best_id = worker.best.recording_id.clone();
            let best_is_good = best.is_some();
            history.retain(|r| !(best_is_good && r.recording_id == best_id));
            worker.history = history;
            true
        });
        if found {
            self.recordings = self.recordings.saturating_sub(1);
            self.recorded_by.remove(recording_id);
            self.prune_recorders();
        }
        found
    }

    /// Evicts the least recently recorded workers (the weakest first among
    /// equals), never those of `current`, until the entry's JSON is at most
    /// `max_bytes`. What cannot be evicted stays: the index then refuses
    /// the oversized metadata with its own error.
    pub fn fit(&mut self, max_bytes: usize, current: &[String]) {
        let size = |entry: &Self| serde_json::to_vec(entry).map_or(usize::MAX, |v| v.len());
        // The oldest remembered recordings go first (they count least),
        // then whole workers.
        while size(self) > max_bytes && self.drop_oldest_history() {}
        while size(self) > max_bytes && self.evict_one(current) {}
        self.prune_recorders();
    }

    /// Drops the oldest recording any worker's history holds; false if
    /// none holds one.
    fn drop_oldest_history(&mut self) -> bool {
        let oldest = self
            .workers
            .iter()
            .filter_map(|(id, w)| w.history.first().map(|r| (r.at, id.clone())))
            .min();
        match oldest {
            Some((_, id)) => {
                if let Some(worker) = self.workers.get_mut(&id) {
                    worker.history.remove(0);
                }
                true
            }
            None => false,
        }
    }

    /// Evicts one worker not in `keep`; false if there is none.
    fn evict_one(&mut self, keep: &[String]) -> bool {
        let oldest = self
            .workers
            .iter()
            .filter(|(id, _)| !keep.contains(id))
            .min_by(|a, b| {
                a.1.last_recorded_at
                    .cmp(&b.1.last_recorded_at)
                    .then(a.1.best.score.total_cmp(&b.1.best.score))
            })
            .map(|(id, _)| id.clone());
        match oldest {
            Some(id) => self.workers.remove(&id).is_some(),
            None => false,
        }
    }

    /// The entry's recordings as they apply, at `now`, to a search whose
    /// query is `query_distance` away: each weighed by its outcome and age
    /// (see [`PlaybookWeights::weight`]); a search counts per worker the
    /// strongest boost and the strongest demotion.
    pub fn recordings(
        &self,
        query_distance: f32,
        weights: &PlaybookWeights,
        now: DateTime<Utc>,
    ) -> Vec<Recording> {
        self.workers
            .iter()
            .flat_map(|(worker, recorded)| {
                recorded.counted().into_iter().map(move |r| Recording {
                    score: weights.weight(r.outcome, r.score, r.at, now),
                    recorded_by: self.recorded_by.get(&r.recording_id).cloned(),
                    recording_id: r.recording_id,
                    worker_ids: vec![worker.clone()],
                    query_distance,
                    outcome: r.outcome,
                    recorded_at: Some(r.at),
                })
            })
            .collect()
    }
}

/// The recordings that apply to one search, and each worker's best score.
#[derive(Debug, Clone, Default)]
pub struct Playbook {
    /// Per worker its net score in [−1, 1] (negative: demoted).
    pub scores: HashMap<String, f64>,
    recordings: Vec<Recording>,
    weights: PlaybookWeights,
}

impl Playbook {
    pub fn new(recordings: Vec<Recording>) -> Self {
        Self::weighed(recordings, PlaybookWeights::default())
    }

    /// The playbook of these recordings, their bounds from `weights`.
    pub fn weighed(recordings: Vec<Recording>, weights: PlaybookWeights) -> Self {
        let scores = net_scores(
            recordings
                .iter()
                .map(|r| (r.worker_ids.as_slice(), r.score)),
        );
        Self {
            scores,
            recordings,
            weights,
        }
    }

    /// The workers it boosts (those a search scores even below its top k).
    pub fn boosted(&self) -> impl Iterator<Item = &String> {
        self.scores
            .iter()
            .filter(|(_, s)| **s > 0.0)
            .map(|(id, _)| id)
    }

    /// The recordings naming `worker`, strongest first (then nearest).
    fn recordings_of(&self, worker: &str) -> Vec<RecordingRef> {
        let mut found: Vec<RecordingRef> = self
            .recordings
            .iter()
            .filter(|r| r.worker_ids.iter().any(|w| w == worker))
            .map(|r| RecordingRef {
                recording_id: r.recording_id.clone(),
                score: r.score,
                query_distance: r.query_distance,
                outcome: r.outcome,
                recorded_at: r.recorded_at,
                recorded_by: r.recorded_by.clone(),
            })
            .collect();
        found.sort_by(|a, b| {
            b.score
                .total_cmp(&a.score)
                .then(a.query_distance.total_cmp(&b.query_distance))
        });
        found
    }
}

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct MatrixResults {
    pub hits: Vec<MatrixHit>,
    /// How many hits were boosted / injected by the playbook.
    pub boosted: usize,
    pub injected: usize,
    /// Present only when the answer is degraded: see [`Degraded`].
    #[serde(skip_serializing_if = "Option::is_none")]
    pub degraded: Option<Degraded>,
    /// The worker statuses this search left out (by default
    /// `on_assignment` and `do_not_use`; see `status_any`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub excluded_statuses: Vec<crate::domain::workers::WorkerStatus>,
}

/// `DELETE /v1/matrix/playbooks/recordings/{id}` reply.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Withdrawn {
    pub recording_id: String,
    /// The entry it was folded into.
    pub entry_id: String,
    /// Recordings the entry holds now (0: the entry is gone).
    pub recordings: u64,
}

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Recorded {
    pub recording_id: String,
    /// The playbook item holding every recording of this query and role
    /// (`GET /v1/vectors/index/playbook_memory/items/{entry_id}`).
    pub entry_id: String,
    /// Recordings of this query and role so far, this one included.
    pub recordings: u64,
    pub workers: usize,
}

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum MatrixInvalid {
    #[error("query must not be empty")]
    EmptyQuery,
    #[error("query has {got} characters, at most {max} are allowed")]
    QueryTooLong { max: usize, got: usize },
    #[error("k must be between 1 and {MAX_K}, got {0}")]
    InvalidK(usize),
    #[error("role must not be empty")]
    EmptyRole,
    #[error("score must be between 0 and 1, got {0}")]
    InvalidScore(f64),
    #[error("worker_ids must hold 1 to {MAX_RECORDED_WORKERS} distinct ids")]
    InvalidWorkerIds,
    #[error("unknown worker ids: {0:?}")]
    UnknownWorkers(Vec<String>),
    #[error("{name}: {reason}")]
    InvalidParameter { name: &'static str, reason: String },
    /// `available_between` is not a window of days.
    #[error("available_between: {0}")]
    InvalidWindow(String),
    /// `near` names a city the shipped table does not hold.
    #[error("near: {0}")]
    UnknownCity(String),
}

pub fn check_query(query: &str) -> Result<(), MatrixInvalid> {
    if query.trim().is_empty() {
        return Err(MatrixInvalid::EmptyQuery);
    }
    let chars = query.chars().count();
    if chars > MAX_QUERY_CHARS {
        return Err(MatrixInvalid::QueryTooLong {
            max: MAX_QUERY_CHARS,
            got: chars,
        });
    }
    Ok(())
}

impl MatrixSearch {
    pub fn check(&self) -> Result<(), MatrixInvalid> {
        self.check_shape()?;
        self.typed_conditions().map(|_| ())
    }

    /// Checks the search and parses its filter, once: the typed
    /// parameters, role, city and state become conditions beside the
    /// request's own filter (which is parsed on its own, so an error names
    /// the path its caller wrote).
    pub fn prepare(&self) -> Result<PreparedSearch, SearchRefused> {
        self.check_shape()?;
        let mut typed = self.typed_conditions()?;
        let mut own = typed.remove(0);
        for (field, value) in [
            ("role", &self.role),
            ("city", &self.city),
            ("state", &self.state),
        ] {
            if let Some(value) = value {
                own.insert(field.to_string(), Value::String(value.clone()));
            }
        }
        let mut parts = Vec::new();
        let mut filter_fields = BTreeSet::new();
        if let Some(filter) = &self.filter {
            let parsed = Filter::parse(filter, MAX_FILTER_CONDITIONS)?;
            filter_fields = named_fields(filter, &parsed);
            parts.push(parsed);
        }
        for conditions in std::iter::once(own).chain(typed) {
            if !conditions.is_empty() {
                parts.push(Filter::parse(&conditions, MAX_FILTER_CONDITIONS)?);
            }
        }
        let (statuses, excluded_statuses) = self.statuses()?;
        // The default leaves out what few workers hold: by their ids (from
        // the index's lookups), not by a condition every candidate's
        // metadata would be parsed for (12x the cost of a role search at
        // 100k workers).
        let hidden_statuses = if self.status_any.is_none() {
            excluded_statuses.clone()
        } else {
            Vec::new()
        };
        if let Some(statuses) = statuses.filter(|_| hidden_statuses.is_empty()) {
            parts.push(Filter::parse(&statuses, MAX_FILTER_CONDITIONS)?);
        }
        let filter = match parts.len() {
            0 => PreparedFilter::default(),
            1 => PreparedFilter::of(parts.remove(0)),
            _ => PreparedFilter::of(Filter::And(parts)),
        };
        Ok(PreparedSearch {
            filter,
            filter_fields,
            excluded_statuses,
            hidden_statuses,
        })
    }

    /// The condition on `status` and the statuses it leaves out: those not
    /// in `status_any`, or by default `on_assignment` and `do_not_use` —
    /// none when the client's own filter names `status`. A worker without
    /// a status is `active`.
    #[allow(clippy::type_complexity)]
    fn statuses(
        &self,
    ) -> Result<(Option<serde_json::Map<String, Value>>, Vec<WorkerStatus>), MatrixInvalid> {
        let asked: BTreeSet<WorkerStatus> = match &self.status_any {
            Some(statuses) => {
                if statuses.is_empty() || statuses.len() > WorkerStatus::ALL.len() {
                    return Err(MatrixInvalid::InvalidParameter {
                        name: "status_any",
                        reason: format!("takes 1 to 4 statuses, got {}", statuses.len()),
                    });
                }
                statuses.iter().copied().collect()
            }
            None if self
                .filter
                .as_ref()
                .is_some_and(|f| names_field(f, "status")) =>
            {
                return Ok((None, Vec::new()))
            }
            None => WorkerStatus::ALL
                .into_iter()
                .filter(|s| !WorkerStatus::HIDDEN_BY_DEFAULT.contains(s))
                .collect(),
        };
        let excluded: Vec<WorkerStatus> = WorkerStatus::ALL
            .into_iter()
            .filter(|s| !asked.contains(s))
            .collect();
        if excluded.is_empty() {
            return Ok((None, excluded));
        }
        let names = |set: &mut dyn Iterator<Item = &WorkerStatus>| -> Vec<&'static str> {
            set.map(|s| s.as_str()).collect()
        };
        // `nin` keeps workers without a status (active); `in` does not.
        let condition = if asked.contains(&WorkerStatus::Active) {
            serde_json::json!({ "nin": names(&mut excluded.iter()) })
        } else {
            serde_json::json!({ "in": names(&mut asked.iter()) })
        };
        let mut map = serde_json::Map::new();
        map.insert("status".into(), condition);
        Ok((Some(map), excluded))
    }

    /// What can be checked without the typed parameters.
    fn check_shape(&self) -> Result<(), MatrixInvalid> {
        check_query(&self.query)?;
        if !(1..=MAX_K).contains(&self.k) {
            return Err(MatrixInvalid::InvalidK(self.k));
        }
        if let Some(weight) = self.keyword_weight {
            if !(0.0..=1.0).contains(&weight) {
                return Err(MatrixInvalid::InvalidParameter {
                    name: "keyword_weight",
                    reason: format!("must be between 0 and 1, got {weight}"),
                });
            }
        }
        Ok(())
    }

    /// The typed parameters as conditions of the filter language, over the
    /// workers' fields (`years_experience`, `hourly_rate`, `skills`,
    /// `certifications`, `available_from`, `available_to`, `unavailable`,
    /// `shift`, `location`): first one object of field conditions, then
    /// the filters that stand alone (a `not`), all of which must hold.
    pub fn typed_conditions(&self) -> Result<Vec<serde_json::Map<String, Value>>, MatrixInvalid> {
        let invalid =
            |name: &'static str, reason: String| MatrixInvalid::InvalidParameter { name, reason };
        let mut conditions = serde_json::Map::new();
        let mut standalone = Vec::new();
        if let Some(years) = self.min_years {
            conditions.insert("years_experience".into(), serde_json::json!({"gte": years}));
        }
        if let Some(rate) = self.max_rate {
            if !rate.is_finite() || rate < 0.0 {
                return Err(invalid(
                    "max_rate",
                    format!("must be a non-negative number, got {rate}"),
                ));
            }
            conditions.insert("hourly_rate".into(), serde_json::json!({"lte": rate}));
        }
        for (name, field, operator, values) in [
            ("skills_all", "skills", "contains_all", &self.skills_all),
            (
                "certifications_any",
                "certifications",
                "contains_any",
                &self.certifications_any,
            ),
        ] {
            if let Some(values) = values {
                if values.is_empty() || values.len() > MAX_TYPED_VALUES {
                    return Err(invalid(
                        name,
                        format!("takes 1 to {MAX_TYPED_VALUES} values, got {}", values.len()),
                    ));
                }
                conditions.insert(field.into(), serde_json::json!({ operator: values }));
            }
        }
        if let Some(on) = &self.certifications_valid_on {
            let day = full_date(on).ok_or_else(|| {
                invalid(
                    "certifications_valid_on",
                    format!("'{}' is not a date (2026-12-07)", super::shown(on, 40)),
                )
            })?;
            let Some(names) = &self.certifications_any else {
                return Err(invalid(
                    "certifications_valid_on",
                    "says when certifications_any must be valid: give certifications_any too"
                        .into(),
                ));
            };
            conditions.insert(
                "certifications".into(),
                serde_json::json!({"valid_any": {"names": names, "on": day.to_string()}}),
            );
        }
        if let Some(shifts) = &self.shift_any {
            if shifts.is_empty() || shifts.len() > MAX_TYPED_VALUES {
                return Err(invalid(
                    "shift_any",
                    format!("takes 1 to {MAX_TYPED_VALUES} shifts, got {}", shifts.len()),
                ));
            }
            let names: BTreeSet<&str> = shifts.iter().map(|s| s.as_str()).collect();
            conditions.insert("shift".into(), serde_json::json!({ "in": names }));
        }
        if let Some(window) = &self.available_between {
            let (from, to) = window.days().map_err(MatrixInvalid::InvalidWindow)?;
            // Started by the first day (before the next midnight), not
            // gone before the last (`available_to`, when there is one) and
            // no day off inside the window.
            let next = next_day(from).ok_or_else(|| {
                MatrixInvalid::InvalidWindow(format!(
                    "{from} is past the last date this service can compare"
                ))
            })?;
            // A worker with no `available_from` is free from any day, as
            // one with no `available_to` is free to any day.
            standalone.push(object(serde_json::json!({
                "not": {"available_from": {"gte": format!("{next}T00:00:00Z")}}
            })));
            standalone.push(object(serde_json::json!({
                "not": {"available_to": {"lt": format!("{to}T00:00:00Z")}}
            })));
            standalone.push(object(serde_json::json!({
                "not": {"unavailable": {"overlaps": {"from": from.to_string(), "to": to.to_string()}}}
            })));
        }
        if let Some(date) = &self.available_by {
            // A day (UTC) includes all of it: before the next midnight.
            let condition = if let Ok(instant) = chrono::DateTime::parse_from_rfc3339(date) {
                serde_json::json!({"lte": instant.to_rfc3339()})
            } else if let Some(day) = full_date(date) {
                // 9999-12-31 has no next day RFC 3339 can write: refused
                // here, not left to fail as a filter.
                let next = next_day(day).ok_or_else(|| {
                    invalid(
                        "available_by",
                        format!("'{date}' is past the last date this service can compare"),
                    )
                })?;
                serde_json::json!({"lt": format!("{next}T00:00:00Z")})
            } else {
                return Err(invalid(
                    "available_by",
                    format!("'{date}' is neither a date (2026-12-07) nor RFC 3339"),
                ));
            };
            conditions.insert("available_from".into(), condition);
        }
        if let Some(near) = &self.near {
            let (centre, km) = near.resolve()?;
            conditions.insert(
                "location".into(),
                serde_json::json!({"geo_radius": {"lat": centre.lat, "lon": centre.lon, "km": km}}),
            );
        }
        Ok(std::iter::once(conditions).chain(standalone).collect())
    }
}

/// The day after, while it still has the four-digit year RFC 3339 writes.
fn next_day(day: chrono::NaiveDate) -> Option<chrono::NaiveDate> {
    use chrono::Datelike;
    day.checked_add_days(chrono::Days::new(1))
        .filter(|next| next.year() <= 9999)
}

/// A JSON object's map (an empty one for anything else).
fn object(value: Value) -> serde_json::Map<String, Value> {
    match value {
        Value::Object(map) => map,
        _ => serde_json::Map::new(),
    }
}

impl PlaybookRecord {
    pub fn check(&self) -> Result<(), MatrixInvalid> {
        check_query(&self.query)?;
        if self.role.trim().is_empty() {
            return Err(MatrixInvalid::EmptyRole);
        }
        if !(0.0..=1.0).contains(&self.score) || self.score.is_nan() {
            return Err(MatrixInvalid::InvalidScore(self.score));
        }
        let mut ids: Vec<&String> = self.worker_ids.iter().collect();
        ids.sort();
        ids.dedup();
        if ids.is_empty() || ids.len() != self.worker_ids.len() || ids.len() > MAX_RECORDED_WORKERS
        {
            return Err(MatrixInvalid::InvalidWorkerIds);
        }
        Ok(())
    }
}

/// The multiplier a score gives a distance.
pub fn boost_factor(score: f64) -> f32 {
    (1.0 - 0.5 * score.clamp(0.0, 1.0)) as f32
}

/// The strongest score per worker over the matching recordings (all of
/// them boosts).
pub fn best_scores<'a>(
    recordings: impl IntoIterator<Item = (&'a [String], f64)>,
) -> HashMap<String, f64> {
    net_scores(recordings)
}

/// Per worker, the strongest boost plus the strongest demotion over the
/// matching recordings, in [−1, 1]: a no-show after a good placement
/// cancels it out, and ten good recordings count as much as the best of
/// them.
pub fn net_scores<'a>(
    recordings: impl IntoIterator<Item = (&'a [String], f64)>,
) -> HashMap<String, f64> {
    let mut strongest: HashMap<String, (f64, f64)> = HashMap::new();
    for (workers, score) in recordings {
        for worker in workers {
            let (boost, demotion) = strongest.entry(worker.clone()).or_insert((0.0, 0.0));
            if score > *boost {
                *boost = score;
            }
            if score < *demotion {
                *demotion = score;
            }
        }
    }
    strongest
        .into_iter()
        .map(|(worker, (boost, demotion))| (worker, (boost + demotion).clamp(-1.0, 1.0)))
        .collect()
}

/// Applies the boosts to the hits (the top `k` and the injected workers
/// after them), re-sorts and keeps `k`.
pub fn apply_playbook(mut hits: Vec<MatrixHit>, playbook: &Playbook, k: usize) -> MatrixResults {
    for hit in hits.iter_mut() {
        let score = playbook.scores.get(&hit.worker_id).copied();
        let max_demotion = playbook.weights.max_demotion;
        if let Some(score) = score {
            hit.distance *= factor(score, max_demotion);
            hit.boosted = score > 0.0;
            hit.demoted = score < 0.0;
        }
        if let Some(explain) = hit.explain.as_mut() {
            explain.boost_factor = score.map_or(1.0, |s| factor(s, max_demotion));
            explain.playbook = score.map(|score| PlaybookExplain {
                score,
                recordings: playbook.recordings_of(&hit.worker_id),
                factor_bounds: playbook.weights.bounds(),
            });
        }
    }
    hits.sort_by(|a, b| {
        a.distance
            .total_cmp(&b.distance)
            .then_with(|| a.worker_id.cmp(&b.worker_id))
    });
    hits.truncate(k);
    let boosted = hits.iter().filter(|h| h.boosted).count();
    let injected = hits.iter().filter(|h| h.injected).count();
    MatrixResults {
        hits,
        boosted,
        injected,
        degraded: None,
        excluded_statuses: Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recordings_weigh_by_outcome_and_age_within_their_bounds() {
        let weights = PlaybookWeights::default();
        let now = Utc::now();
        let days = |n: i64| now - chrono::Duration::days(n);
        assert_eq!(weights.weight(Outcome::Good, 1.0, now, now), 1.0);
        assert_eq!(weights.weight(Outcome::Placed, 0.8, now, now), 0.8);
        assert!(
            (weights.weight(Outcome::Good, 1.0, days(90), now) - 0.5).abs() < 1e-9,
            "one half-life"
        );
        assert!((weights.weight(Outcome::Good, 1.0, days(180), now) - 0.25).abs() < 1e-9);
        assert_eq!(weights.weight(Outcome::NoShow, 1.0, now, now), -1.0);
        assert_eq!(weights.weight(Outcome::Declined, 1.0, now, now), -0.5);
        // A recording from the future (a skewed clock) counts as new.
        assert_eq!(weights.weight(Outcome::Good, 1.0, days(-3), now), 1.0);
        let no_decay = PlaybookWeights {
            half_life_days: 0.0,
            ..weights
        };
        assert_eq!(no_decay.weight(Outcome::Good, 1.0, days(3650), now), 1.0);
        assert_eq!(weights.bounds(), [0.5, 1.5]);
        assert_eq!(factor(1.0, 0.5), 0.5);
        assert_eq!(factor(0.0, 0.5), 1.0);
        assert_eq!(factor(-1.0, 0.5), 1.5);
        assert_eq!(factor(-7.0, 0.5), 1.5, "clamped");
        // The strongest boost plus the strongest demotion.
        let a = vec!["a".to_string()];
        let scores = net_scores([
            (a.as_slice(), 0.9),
            (a.as_slice(), 0.4),
            (a.as_slice(), -1.0),
            (a.as_slice(), -0.2),
        ]);
        assert!((scores["a"] - (-0.1)).abs() < 1e-9, "{scores:?}");
    }

    #[test]
    fn an_entry_of_the_most_workers_a_recording_names_fits_its_limit() {
        let now = Utc::now();
        let mut entry = PlaybookEntry::new(
            "forklift operator for the night shift",
            "Forklift Operator",
            now,
        );
        let crew: Vec<String> = (0..MAX_RECORDED_WORKERS)
            .map(|i| format!("W{:07}", 1_000_000 + i))
            .collect();
        for n in 0..3 {
            let id = uuid::Uuid::new_v4().simple().to_string();
            let by = format!("coordinator-{n}");
            entry.add_by(&id, &crew, 0.9, Outcome::Placed, now, Some(&by));
            entry.fit(16 * 1024, &crew);
            let size = serde_json::to_vec(&entry).unwrap().len();
            assert!(size <= 16 * 1024, "recording {n}: {size} bytes");
            assert!(
                crew.iter().all(|w| entry.workers.contains_key(w)),
                "recording {n}"
            );
        }
    }

    #[test]
    fn withdrawing_the_good_recording_leaves_a_no_show_a_demotion() {
        let now = Utc::now();
        let mut entry = PlaybookEntry::new("q", "r", now);
        let w = vec!["w".to_string()];
        entry.add("good", &w, 0.8, Outcome::Good, now);
        entry.add("bad", &w, 1.0, Outcome::NoShow, now);
        assert!(entry.withdraw("good"));
        for n in 0..MAX_WORKER_HISTORY + 1 {
            entry.add(&format!("meh{n}"), &w, 0.1, Outcome::Declined, now);
        }
        let weights = PlaybookWeights::default();
        let net = Playbook::new(entry.recordings(0.0, &weights, now)).scores["w"];
        assert!(net <= 0.0, "never a boost from demotions alone: {net}");
    }

    #[test]
    fn an_entry_keeps_each_workers_newest_recordings_and_withdraws_one() {
        let now = Utc::now();
        let mut entry = PlaybookEntry::new("forklift", "Forklift Operator", now);
        let both = vec!["w1".to_string(), "w2".to_string()];
        entry.add("r1", &both, 1.0, Outcome::Good, now);
        entry.add("r2", &both[..1], 1.0, Outcome::NoShow, now);
        assert!(entry.holds("r2"));
        let weights = PlaybookWeights::default();
        let playbook = Playbook::weighed(entry.recordings(0.1, &weights, now), weights);
        assert_eq!(
            playbook.scores["w1"], 0.0,
            "a no-show cancels a good placement"
        );
        assert_eq!(playbook.scores["w2"], 1.0);
        assert_eq!(playbook.boosted().collect::<Vec<_>>(), ["w2"]);
        assert!(entry.withdraw("r2"));
        assert!(!entry.withdraw("r2"), "once");
        assert_eq!(entry.recordings, 1);
        let playbook = Playbook::new(entry.recordings(0.1, &weights, now));
        assert_eq!(playbook.scores["w1"], 1.0);
        assert!(entry.withdraw("r1"));
        assert!(
            entry.workers.is_empty(),
            "a worker with no recording left goes"
        );
        for n in 0..10 {
            entry.add(&format!("n{n}"), &both[..1], 0.5, Outcome::Good, now);
        }
        assert_eq!(entry.workers["w1"].history.len(), MAX_WORKER_HISTORY);
        assert_eq!(entry.workers["w1"].recordings, 10);
        // An entry written before outcomes counts its best, as good.
        let old: PlaybookEntry = serde_json::from_value(serde_json::json!({
            "query": "q", "role": "r", "recordings": 1, "first_recorded_at": now, "recorded_at": now,
            "workers": {"w9": {"recordings": 1, "last_recorded_at": now, "best": {"recording_id": "old", "score": 0.8}}}
        }))
        .unwrap();
        assert!(old.holds("old"));
        assert_eq!(
            Playbook::new(old.recordings(0.1, &weights, now)).scores["w9"],
            0.8
        );
    }

    /// What a search's statuses leave out, and whom they keep: a worker
    /// without a status is active.
    #[test]
    fn statuses_leave_out_what_they_say_and_a_filter_naming_status_replaces_them() {
        let search = |extra: serde_json::Value| -> MatrixSearch {
            let mut body = serde_json::json!({"query": "welder", "k": 5});
            body.as_object_mut()
                .unwrap()
                .extend(extra.as_object().unwrap().clone());
            serde_json::from_value(body).unwrap()
        };
        let keeps =
            |prepared: &PreparedSearch, worker: serde_json::Value| match &prepared.filter.predicate
            {
                Some(predicate) => predicate.matches(&worker),
                None => prepared.filter.equalities.iter().all(|(field, key)| {
                    worker
                        .get(field)
                        .and_then(crate::domain::vectors::filter_key)
                        .as_ref()
                        == Some(key)
                }),
            };
        let default = search(serde_json::json!({})).prepare().unwrap();
        assert_eq!(default.excluded_statuses, WorkerStatus::HIDDEN_BY_DEFAULT);
        // Left out by their ids, not by a condition in the filter.
        assert_eq!(default.hidden_statuses, WorkerStatus::HIDDEN_BY_DEFAULT);
        assert!(default.filter.is_empty());
        let placed = search(serde_json::json!({"status_any": ["placed"]}))
            .prepare()
            .unwrap();
        assert_eq!(placed.excluded_statuses.len(), 3);
        assert!(
            !keeps(&placed, serde_json::json!({})),
            "no status is active"
        );
        assert!(keeps(&placed, serde_json::json!({"status": "placed"})));
        for filter in [
            serde_json::json!({"status": "do_not_use"}),
            serde_json::json!({"and": [{"role": "Welder"}, {"status": "do_not_use"}]}),
            serde_json::json!({"not": {"status": "active"}}),
        ] {
            let named = search(serde_json::json!({ "filter": filter }))
                .prepare()
                .unwrap();
            assert!(named.excluded_statuses.is_empty(), "{filter}");
        }
        let every = search(
            serde_json::json!({"status_any": ["active", "on_assignment", "placed", "do_not_use"]}),
        )
        .prepare()
        .unwrap();
        assert!(every.excluded_statuses.is_empty() && every.filter.is_empty());
        assert!(search(serde_json::json!({"status_any": []}))
            .prepare()
            .is_err());
    }

    fn hit(id: &str, distance: f32) -> MatrixHit {
        MatrixHit {
            worker_id: id.into(),
            distance,
            boosted: false,
            demoted: false,
            injected: false,
            worker: Value::Null,
            explain: None,
        }
    }

    fn playbook(scores: &[(&str, f64)]) -> Playbook {
        Playbook::new(
            scores
                .iter()
                .enumerate()
                .map(|(i, (id, score))| Recording {
                    recording_id: format!("r{i}"),
                    worker_ids: vec![id.to_string()],
                    score: *score,
                    query_distance: 0.1,
                    outcome: Outcome::Good,
                    recorded_at: None,
                    recorded_by: None,
                })
                .collect(),
        )
    }

    #[test]
    fn score_one_halves_the_distance_exactly() {
        assert_eq!(boost_factor(1.0), 0.5);
        assert_eq!(boost_factor(0.0), 1.0);
        assert!((boost_factor(0.3) - 0.85).abs() < 1e-6);
        let results = apply_playbook(
            vec![hit("a", 0.30), hit("b", 0.4322)],
            &playbook(&[("b", 1.0)]),
            10,
        );
        assert_eq!(results.hits[0].worker_id, "b");
        assert_eq!(format!("{:.4}", results.hits[0].distance), "0.2161");
        assert!(results.hits[0].boosted && !results.hits[1].boosted);
        assert_eq!((results.boosted, results.injected), (1, 0));
    }

    #[test]
    fn an_explained_boost_multiplies_the_fused_distance_and_names_its_recordings() {
        let mut explained = hit("w", 0.4);
        explained.explain = Some(MatrixExplain {
            ranking: HitExplain {
                mode: SearchMode::Hybrid,
                semantic_distance: Some(0.5),
                semantic_rank: Some(1),
                keyword_score: 1.0,
                keyword_reference: 1.0,
                keyword_distance: 0.5,
                keyword_rank: Some(2),
                matched_terms: vec!["osha".into()],
                phrases: vec![],
                fuzzy_terms: vec![],
                synonyms: vec![],
                keyword_weight: 0.2,
                fused_distance: 0.4,
                fused_rank: 1,
            },
            boost_factor: 1.0,
            playbook: None,
            degraded: None,
            distance_miles: None,
        });
        let recordings = vec![
            Recording {
                recording_id: "weak".into(),
                worker_ids: vec!["w".into()],
                score: 0.2,
                query_distance: 0.05,
                outcome: Outcome::Good,
                recorded_at: None,
                recorded_by: None,
            },
            Recording {
                recording_id: "strong".into(),
                worker_ids: vec!["w".into(), "x".into()],
                score: 0.6,
                query_distance: 0.2,
                outcome: Outcome::Good,
                recorded_at: None,
                recorded_by: None,
            },
        ];
        let results = apply_playbook(vec![explained], &Playbook::new(recordings), 5);
        let hit = &results.hits[0];
        let explain = hit.explain.as_ref().unwrap();
        assert!((explain.boost_factor - 0.7).abs() < 1e-6);
        assert_eq!(
            hit.distance,
            explain.ranking.fused_distance * explain.boost_factor
        );
        let playbook = explain.playbook.as_ref().unwrap();
        assert_eq!(playbook.score, 0.6);
        let ids: Vec<&str> = playbook
            .recordings
            .iter()
            .map(|r| r.recording_id.as_str())
            .collect();
        assert_eq!(ids, ["strong", "weak"]);
    }

    #[test]
    fn the_strongest_recording_wins_without_compounding() {
        let a = vec!["w1".to_string(), "w2".to_string()];
        let b = vec!["w1".to_string()];
        let best = best_scores([(&a[..], 0.4), (&b[..], 0.8)]);
        assert_eq!(best["w1"], 0.8);
        assert_eq!(best["w2"], 0.4);
    }

    #[test]
    fn injected_workers_are_sorted_in_and_k_is_kept() {
        let mut injected = hit("z", 0.5);
        injected.injected = true;
        let results = apply_playbook(
            vec![hit("a", 0.2), hit("b", 0.3), injected],
            &playbook(&[("z", 1.0)]),
            2,
        );
        let ids: Vec<&str> = results.hits.iter().map(|h| h.worker_id.as_str()).collect();
        assert_eq!(ids, ["a", "z"]);
        assert_eq!(results.hits[1].distance, 0.25);
        assert_eq!((results.boosted, results.injected), (1, 1));
    }

    #[test]
    fn an_entry_folds_recordings_per_worker_and_stays_bounded() {
        let at = |s: i64| DateTime::<Utc>::from_timestamp(1_800_000_000 + s, 0).unwrap();
        let mut entry = PlaybookEntry::new("forklift", "Forklift Operator", at(0));
        let w = |id: &str| vec![id.to_string()];
        entry.add("r1", &w("a"), 0.9, Outcome::Good, at(1));
        for i in 2..=7 {
            entry.add(&format!("r{i}"), &w("a"), 0.3, Outcome::Good, at(i));
        }
        entry.add(
            "r8",
            &["a".to_string(), "b".to_string()],
            0.5,
            Outcome::Good,
            at(8),
        );
        assert_eq!(entry.recordings, 8);
        let a = &entry.workers["a"];
        assert_eq!(a.recordings, 8);
        assert_eq!(a.best.recording_id, "r1", "the strongest is kept");
        assert_eq!(a.last_recorded_at, at(8));
        // As recordings: the newest, and the strongest however old, each
        // for its worker (no decay here).
        let weights = PlaybookWeights {
            half_life_days: 0.0,
            ..PlaybookWeights::default()
        };
        let found = entry.recordings(0.1, &weights, at(8));
        let mut of_a: Vec<&str> = found
            .iter()
            .filter(|r| r.worker_ids == ["a"])
            .map(|r| r.recording_id.as_str())
            .collect();
        of_a.sort_unstable();
        assert_eq!(of_a, ["r1", "r5", "r6", "r7", "r8"]);
        assert_eq!(Playbook::new(found).scores["a"], 0.9);

        for i in 0..MAX_ENTRY_WORKERS {
            entry.add(
                &format!("x{i}"),
                &w(&format!("w{i:03}")),
                0.7,
                Outcome::Good,
                at(100 + i as i64),
            );
        }
        assert_eq!(entry.workers.len(), MAX_ENTRY_WORKERS);
        assert!(
            !entry.workers.contains_key("a") && !entry.workers.contains_key("b"),
            "the least recently recorded go first"
        );

        // A recording of the most workers allowed keeps all of them.
        let many: Vec<String> = (0..MAX_RECORDED_WORKERS)
            .map(|i| format!("n{i:03}"))
            .collect();
        entry.add("big", &many, 0.1, Outcome::Good, at(1000));
        assert!(many.iter().all(|id| entry.workers.contains_key(id)));
        assert_eq!(entry.workers.len(), MAX_ENTRY_WORKERS);

        // Fitting a byte limit evicts the oldest, never the current ones.
        entry.fit(16 * 1024, &many);
        let size = serde_json::to_vec(&entry).unwrap().len();
        assert!(size <= 16 * 1024, "{size} bytes");
        assert!(many.iter().all(|id| entry.workers.contains_key(id)));
        entry.fit(10, &many);
        assert_eq!(entry.workers.len(), many.len(), "the current ones stay");
    }

    #[test]
    fn entry_ids_are_stable_and_tell_roles_apart() {
        let id = PlaybookEntry::id("Forklift Operator", "night shift");
        assert_eq!(id, PlaybookEntry::id("Forklift Operator", "night shift"));
        assert_ne!(id, PlaybookEntry::id("CNC Operator", "night shift"));
        assert_ne!(
            PlaybookEntry::id("a", "b c"),
            PlaybookEntry::id("a b", "c"),
            "the separator keeps role and query apart"
        );
        assert!(id.starts_with("pb-") && id.len() == 35);
        assert!(crate::domain::vectors::validate_id(&id, "id").is_ok());
    }

    #[test]
    fn a_search_is_prepared_once_into_one_filter() {
        let search: MatrixSearch = serde_json::from_value(serde_json::json!({
            "query": "welder", "k": 5, "role": "Welder", "min_years": 3,
            "filter": {"and": [{"state": "IL"}, {"shift": {"ne": "night"}}]},
        }))
        .unwrap();
        let prepared = search.prepare().unwrap();
        // The request's own fields: its top level (none but `and`) and the
        // equalities inside its `and`.
        assert_eq!(
            prepared.filter_fields,
            BTreeSet::from(["state".to_string()])
        );
        let equalities: BTreeSet<String> = prepared
            .filter
            .equalities
            .iter()
            .map(|(field, _)| field.clone())
            .collect();
        assert_eq!(equalities, BTreeSet::from(["role".into(), "state".into()]));
        let predicate = prepared.filter.predicate.expect("ne and gte need a check");
        let worker = |years: u32, shift: &str, state: &str| serde_json::json!({"role": "Welder", "years_experience": years, "shift": shift, "state": state});
        assert!(predicate.matches(&worker(4, "day", "IL")));
        assert!(
            !predicate.matches(&worker(2, "day", "IL")),
            "min_years holds"
        );
        assert!(
            !predicate.matches(&worker(4, "night", "IL")),
            "the filter holds"
        );
        assert!(!predicate.matches(&worker(4, "day", "TX")));
        // A bad filter is refused naming the caller's path; a bad typed
        // parameter as the parameter.
        let bad: MatrixSearch = serde_json::from_value(serde_json::json!({
            "query": "welder", "k": 5, "filter": {"years_experience": {"gte": "x"}}}))
        .unwrap();
        match bad.prepare() {
            Err(SearchRefused::Filter(err)) => {
                assert!(err.path.contains("years_experience"), "{err}")
            }
            other => panic!("{other:?}"),
        }
        let bad: MatrixSearch = serde_json::from_value(serde_json::json!({
            "query": "welder", "k": 5, "max_rate": -1.0}))
        .unwrap();
        assert!(matches!(
            bad.prepare(),
            Err(SearchRefused::Invalid(MatrixInvalid::InvalidParameter {
                name: "max_rate",
                ..
            }))
        ));
    }

    #[test]
    fn records_are_checked() {
        let ok = PlaybookRecord {
            query: "forklift".into(),
            role: "Forklift Operator".into(),
            worker_ids: vec!["W1".into()],
            score: 1.0,
            outcome: None,
            recorded_by: None,
        };
        assert!(ok.check().is_ok());
        for bad in [
            PlaybookRecord {
                score: 1.5,
                ..ok.clone()
            },
            PlaybookRecord {
                score: -0.1,
                ..ok.clone()
            },
            PlaybookRecord {
                worker_ids: vec![],
                ..ok.clone()
            },
            PlaybookRecord {
                worker_ids: vec!["W1".into(), "W1".into()],
                ..ok.clone()
            },
            PlaybookRecord {
                role: " ".into(),
                ..ok.clone()
            },
            PlaybookRecord {
                query: "".into(),
                ..ok.clone()
            },
        ] {
            assert!(bad.check().is_err(), "{bad:?}");
        }
    }
}
