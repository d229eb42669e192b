//! Alarms, after OTP's `alarm_handler`: conditions the service sets when
//! they begin and clears when they end, for operators and their pagers
//! (`GET /v1/alarms`, `lakehouse_alarm_active{alarm}`, the console), the
//! critical ones also in `/ready`.
//!
//! This module is the board and the rules, without I/O: [`evaluate`] turns
//! one set of [`Readings`] into the alarms that hold now, and
//! [`AlarmBoard::apply`] sets the new ones and clears the ones that ended.
//! The `alarms` actor takes the readings every `alarms.check_interval_ms`.

use std::collections::BTreeMap;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use parking_lot::RwLock;
use serde::Serialize;

use crate::config::AlarmSettings;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Severity {
    /// Worth a look; nothing fails yet.
    Warning,
    /// Part of the service fails (one index); the rest serves.
    Major,
    /// The node cannot do its job: `/ready` answers 503.
    Critical,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum AlarmKind {
    /// An index used up its restart intensity and is left failed.
    IndexFailed,
    /// An index failed several times within the window (it may still run).
    IndexCrashLooping,
    /// The embedder cannot embed: its actor is down, or Ollama does not answer.
    EmbedderUnreachable,
    /// The process's resident memory is over the high-water mark.
    MemoryHigh,
    /// An index's faiss snapshot is far behind its Lance dataset: a restart
    /// would replay that many writes.
    IndexLagging,
    /// The data directory's disk is nearly full.
    DiskNearlyFull,
    /// The newest snapshot is older than `snapshots.max_age_secs` (or
    /// there is none).
    SnapshotStale,
}

impl AlarmKind {
    pub fn name(self) -> &'static str {
        match self {
            AlarmKind::IndexFailed => "index_failed",
            AlarmKind::IndexCrashLooping => "index_crash_looping",
            AlarmKind::EmbedderUnreachable => "embedder_unreachable",
            AlarmKind::MemoryHigh => "memory_high",
            AlarmKind::IndexLagging => "index_lagging",
            AlarmKind::DiskNearlyFull => "disk_nearly_full",
            AlarmKind::SnapshotStale => "snapshot_stale",
        }
    }

    /// Critical alarms take the node out of rotation (`/ready`), so only
    /// what stops it from doing its job is: a disk about to refuse
    /// writes. Without the embedder, SQL, keyword search and every read by
    /// vector still work: major.
    pub fn severity(self) -> Severity {
        match self {
            AlarmKind::DiskNearlyFull => Severity::Critical,
            AlarmKind::EmbedderUnreachable | AlarmKind::IndexFailed | AlarmKind::MemoryHigh => {
                Severity::Major
            }
            AlarmKind::IndexCrashLooping | AlarmKind::IndexLagging | AlarmKind::SnapshotStale => {
                Severity::Warning
            }
        }
    }
}

/// One active alarm.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct Alarm {
    /// `kind`, or `kind:subject` (`index_failed:workers`).
    pub id: String,
    pub kind: AlarmKind,
    pub severity: Severity,
    /// What it is about (an index), if anything in particular.
    pub subject: Option<String>,
    pub message: String,
    /// When it was set (kept while it holds).
    pub since: DateTime<Utc>,
}

impl Alarm {
    pub fn new(kind: AlarmKind, subject: Option<&str>, message: String) -> Self {
        let id = match subject {
            Some(subject) => format!("{}:{subject}", kind.name()),
            None => kind.name().to_string(),
        };
        Self {
            id,
            kind,
            severity: kind.severity(),
            subject: subject.map(str::to_string),
            message,
            since: Utc::now(),
        }
    }
}

/// The active alarms, shared by the checker and the readers.
#[derive(Debug, Clone, Default)]
pub struct AlarmBoard {
    active: Arc<RwLock<BTreeMap<String, Alarm>>>,
}

/// What one [`AlarmBoard::apply`] changed.
#[derive(Debug, Default, PartialEq)]
pub struct Changes {
    pub set: Vec<Alarm>,
    pub cleared: Vec<Alarm>,
}

impl AlarmBoard {
    /// Makes `holding` the active set: alarms not active before are set
    /// (with their time), active ones keep their `since` and take the new
    /// message, the others are cleared.
    pub fn apply(&self, holding: Vec<Alarm>) -> Changes {
        let mut active = self.active.write();
        let mut changes = Changes::default();
        let mut next = BTreeMap::new();
        for mut alarm in holding {
            match active.remove(&alarm.id) {
                Some(before) => alarm.since = before.since,
                None => changes.set.push(alarm.clone()),
            }
            next.insert(alarm.id.clone(), alarm);
        }
        changes.cleared = std::mem::take(&mut *active).into_values().collect();
        *active = next;
        changes
    }

    /// Active alarms, most severe first.
    pub fn list(&self) -> Vec<Alarm> {
        let mut all: Vec<Alarm> = self.active.read().values().cloned().collect();
        all.sort_by(|a, b| b.severity.cmp(&a.severity).then(a.id.cmp(&b.id)));
        all
    }

    pub fn critical(&self) -> Vec<Alarm> {
        self.list()
            .into_iter()
            .filter(|a| a.severity == Severity::Critical)
            .collect()
    }
}

/// One index, as the checker saw it.
#[derive(Debug, Clone, Default)]
pub struct IndexReading {
    pub name: String,
    /// Left failed by its supervisor, with the reason.
    pub failed: Option<String>,
    /// Failures within the crash-loop window, and the last reason.
    pub recent_failures: usize,
    pub last_reason: Option<String>,
    /// Writes its faiss snapshot does not cover (when it answered).
    pub writes_since_snapshot: Option<u64>,
}

/// Everything one check looks at.
#[derive(Debug, Clone, Default)]
pub struct Readings {
    pub indexes: Vec<IndexReading>,
    /// `Some(reason)` when the embedder cannot embed.
    pub embedder_down: Option<String>,
    pub rss_bytes: Option<u64>,
    /// `(available, total)` bytes of the data directory's file system.
    pub disk: Option<(u64, u64)>,
    /// Why the snapshots are stale, when they are (checked only with
    /// `snapshots.max_age_secs` set).
    pub snapshot_stale: Option<String>,
}

/// The alarms that hold for `readings`.
pub fn evaluate(readings: &Readings, settings: &AlarmSettings) -> Vec<Alarm> {
    let mut holding = Vec::new();
    for index in &readings.indexes {
        if let Some(reason) = &index.failed {
            holding.push(Alarm::new(
                AlarmKind::IndexFailed,
                Some(&index.name),
                format!(
                    "index '{}' is failed and not restarted: {reason} \
                     (POST /v1/admin/indexes/{}/restart once fixed)",
                    index.name, index.name
                ),
            ));
        } else if index.recent_failures >= settings.crash_loop_failures {
            holding.push(Alarm::new(
                AlarmKind::IndexCrashLooping,
                Some(&index.name),
                format!(
                    "index '{}' failed {} times within {} s; last: {}",
                    index.name,
                    index.recent_failures,
                    settings.crash_loop_window_secs,
                    index.last_reason.as_deref().unwrap_or("unknown")
                ),
            ));
        }
        if let Some(behind) = index.writes_since_snapshot {
            if behind > settings.index_lag_writes {
                holding.push(Alarm::new(
                    AlarmKind::IndexLagging,
                    Some(&index.name),
                    format!(
                        "index '{}': {behind} writes are not in its faiss snapshot \
                         (over {}); a restart would replay them from Lance",
                        index.name, settings.index_lag_writes
                    ),
                ));
            }
        }
    }
    if let Some(reason) = &readings.snapshot_stale {
        holding.push(Alarm::new(AlarmKind::SnapshotStale, None, reason.clone()));
    }
    if let Some(reason) = &readings.embedder_down {
        holding.push(Alarm::new(
            AlarmKind::EmbedderUnreachable,
            None,
            format!("the embedder cannot embed: {reason}"),
        ));
    }
    if let Some(rss) = readings.rss_bytes {
        if rss > settings.memory_high_water_bytes {
            holding.push(Alarm::new(
                AlarmKind::MemoryHigh,
                None,
                format!(
                    "resident memory {} MB is over alarms.memory_high_water_bytes ({} MB)",
                    rss >> 20,
                    settings.memory_high_water_bytes >> 20
                ),
            ));
        }
    }
    if let Some((available, total)) = readings.disk.filter(|(_, total)| *total > 0) {
        let ratio = available as f64 / total as f64;
        let below_bytes = available < settings.disk_free_min_bytes;
        if below_bytes || ratio < settings.disk_free_min_ratio {
            let mut alarm = Alarm::new(
                AlarmKind::DiskNearlyFull,
                None,
                format!(
                    "the data directory's disk has {} MB free ({:.1}%); the alarm is set below \
                     {} MB (critical) or {:.1}% (major)",
                    available >> 20,
                    ratio * 100.0,
                    settings.disk_free_min_bytes >> 20,
                    settings.disk_free_min_ratio * 100.0
                ),
            );
            // A large disk below the share still has room: not critical.
            if !below_bytes {
                alarm.severity = Severity::Major;
            }
            holding.push(alarm);
        }
    }
    holding
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings() -> AlarmSettings {
        AlarmSettings {
            check_interval_ms: 1000,
            embedder_probe_ms: 5000,
            memory_high_water_bytes: 1 << 30,
            disk_free_min_bytes: 1 << 30,
            disk_free_min_ratio: 0.05,
            index_lag_writes: 1000,
            crash_loop_failures: 3,
            crash_loop_window_secs: 60,
        }
    }

    fn ids(alarms: &[Alarm]) -> Vec<&str> {
        alarms.iter().map(|a| a.id.as_str()).collect()
    }

    #[test]
    fn a_stale_snapshot_sets_a_warning() {
        let readings = Readings {
            snapshot_stale: Some("the newest snapshot is 90000 s old".into()),
            ..Readings::default()
        };
        let alarms = evaluate(&readings, &settings());
        assert_eq!(ids(&alarms), ["snapshot_stale"]);
        assert_eq!(alarms[0].severity, Severity::Warning);
        assert!(evaluate(&Readings::default(), &settings()).is_empty());
    }

    #[test]
    fn each_condition_sets_its_alarm_and_only_then() {
        let calm = Readings {
            indexes: vec![IndexReading {
                name: "workers".into(),
                recent_failures: 2,
                writes_since_snapshot: Some(1000),
                ..Default::default()
            }],
            embedder_down: None,
            rss_bytes: Some(1 << 29),
            disk: Some((10 << 30, 100 << 30)),
            snapshot_stale: None,
        };
        assert!(evaluate(&calm, &settings()).is_empty());

        let stormy = Readings {
            indexes: vec![
                IndexReading {
                    name: "workers".into(),
                    recent_failures: 3,
                    last_reason: Some("panic".into()),
                    writes_since_snapshot: Some(1001),
                    ..Default::default()
                },
                IndexReading {
                    name: "bad".into(),
                    failed: Some("gave up".into()),
                    recent_failures: 11,
                    ..Default::default()
                },
            ],
            embedder_down: Some("ollama at http://127.0.0.1:9 is unreachable".into()),
            rss_bytes: Some((1 << 30) + 1),
            disk: Some((2 << 30, 100 << 30)),
            snapshot_stale: None,
        };
        let alarms = evaluate(&stormy, &settings());
        assert_eq!(
            ids(&alarms),
            [
                "index_crash_looping:workers",
                "index_lagging:workers",
                "index_failed:bad",
                "embedder_unreachable",
                "memory_high",
                "disk_nearly_full",
            ]
        );
        assert!(alarms[2].message.contains("/v1/admin/indexes/bad/restart"));
        assert_eq!(
            alarms[5].severity,
            Severity::Major,
            "2 GiB free: only below the share"
        );
        let nearly_full = Readings {
            disk: Some((100 << 20, 100 << 30)),
            ..Default::default()
        };
        assert_eq!(
            evaluate(&nearly_full, &settings())[0].severity,
            Severity::Critical
        );
        let unknown = Readings {
            disk: Some((0, 0)),
            ..Default::default()
        };
        assert!(
            evaluate(&unknown, &settings()).is_empty(),
            "a disk of size 0 is unknown"
        );
    }

    #[test]
    fn apply_sets_keeps_and_clears() {
        let board = AlarmBoard::default();
        let disk = Alarm::new(AlarmKind::DiskNearlyFull, None, "1 MB free".into());
        let failed = Alarm::new(AlarmKind::IndexFailed, Some("bad"), "failed".into());
        let changes = board.apply(vec![disk.clone(), failed.clone()]);
        assert_eq!(ids(&changes.set), ["disk_nearly_full", "index_failed:bad"]);
        assert!(changes.cleared.is_empty());
        assert_eq!(
            ids(&board.list()),
            ["disk_nearly_full", "index_failed:bad"],
            "critical first"
        );
        assert_eq!(ids(&board.critical()), ["disk_nearly_full"]);

        // Still holding: not set again, and it keeps its time.
        let mut later = disk.clone();
        later.since = Utc::now() + chrono::Duration::seconds(5);
        later.message = "0 MB free".into();
        let changes = board.apply(vec![later]);
        assert!(changes.set.is_empty());
        assert_eq!(ids(&changes.cleared), ["index_failed:bad"]);
        let kept = &board.list()[0];
        assert_eq!(
            (kept.since, kept.message.as_str()),
            (disk.since, "0 MB free")
        );

        let changes = board.apply(Vec::new());
        assert_eq!(ids(&changes.cleared), ["disk_nearly_full"]);
        assert!(board.list().is_empty());
    }
}
