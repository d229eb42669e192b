//! The `alarms` actor: every `alarms.check_interval_ms` it takes the
//! readings the alarm rules need (the supervision boards, each index's
//! snapshot lag, the embedder, resident memory, the data disk), applies
//! [`crate::alarms::evaluate`] to the [`AlarmBoard`], and logs and counts
//! what was set or cleared. It holds nothing that matters across a
//! restart: the next check rebuilds the board.

use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::Utc;
use ractor::{Actor, ActorProcessingErr, ActorRef};

use crate::actors::embed::OllamaEmbedder;
use crate::actors::vectors::index::{actor_name, IndexMessage};
use crate::alarms::{evaluate, AlarmBoard, IndexReading, Readings};
use crate::config::{EmbedProvider, Settings};
use crate::supervision::{
    ChildStatus, Directory, EventKind, Fault, StatusBoard, RESTART_REQUESTED,
};
use crate::telemetry::Metrics;

pub const NAME: &str = "alarms";

pub struct AlarmsActor;

pub struct AlarmsArguments {
    pub settings: Arc<Settings>,
    pub board: AlarmBoard,
    /// The root supervisor's board (the embedder) and the `vectors` one.
    pub tree: StatusBoard,
    pub vectors: StatusBoard,
    pub directory: Directory,
    pub metrics: Arc<Metrics>,
}

pub enum AlarmsMessage {
    /// Take the readings and apply the rules.
    Check,
    Fault(Fault),
}

impl From<Fault> for AlarmsMessage {
    fn from(fault: Fault) -> Self {
        Self::Fault(fault)
    }
}

pub struct AlarmsState {
    arguments: AlarmsArguments,
    ollama: Option<OllamaEmbedder>,
    /// The Ollama probe's last answer and when it was taken.
    probe: Option<(Instant, Option<String>)>,
    /// Probes failed in a row (one failure is a hiccup, not an alarm).
    probe_failures: u32,
}

/// How long an Ollama probe may take.
const PROBE_TIMEOUT: Duration = Duration::from_secs(2);
/// Probes that must fail in a row before `embedder_unreachable` is set.
const PROBE_FAILURES: u32 = 2;

impl Actor for AlarmsActor {
    type Msg = AlarmsMessage;
    type State = AlarmsState;
    type Arguments = AlarmsArguments;

    async fn pre_start(
        &self,
        myself: ActorRef<Self::Msg>,
        arguments: AlarmsArguments,
    ) -> Result<Self::State, ActorProcessingErr> {
        let ollama = match arguments.settings.embed.provider {
            EmbedProvider::Ollama => Some(OllamaEmbedder::new(&arguments.settings.embed)?),
            EmbedProvider::Hash => None,
        };
        let _ = myself.send_message(AlarmsMessage::Check);
        Ok(AlarmsState {
            arguments,
            ollama,
            probe: None,
            probe_failures: 0,
        })
    }

    async fn handle(
        &self,
        myself: ActorRef<Self::Msg>,
        message: Self::Msg,
        state: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        match message {
            AlarmsMessage::Check => {
                state.check().await;
                // The next check is due an interval after this one ended,
                // so slow checks never queue up behind each other.
                let every =
                    Duration::from_millis(state.arguments.settings.alarms.check_interval_ms);
                myself.send_after(every, || AlarmsMessage::Check);
            }
            AlarmsMessage::Fault(fault) => fault.apply(NAME).await?,
        }
        Ok(())
    }
}

/// Why the newest snapshot is too old (or missing), when
/// `snapshots.max_age_secs` asks.
fn snapshot_stale(settings: &crate::config::Settings) -> Option<String> {
    let max_age = settings.snapshots.max_age_secs;
    if max_age == 0 {
        return None;
    }
    let target = settings.snapshot_dir();
    match crate::backup::list(&target) {
        Err(err) => Some(format!("the snapshots in {} cannot be read: {err}", target.display())),
        Ok(snapshots) => match snapshots.first() {
            None => Some(format!(
                "no snapshot in {} yet (POST /v1/admin/snapshots); snapshots.max_age_secs is {max_age}",
                target.display()
            )),
            Some(newest) => {
                let age = (Utc::now() - newest.created_at).num_seconds().max(0) as u64;
                (age > max_age).then(|| {
                    format!(
                        "the newest snapshot, {}, is {age} s old (over snapshots.max_age_secs, {max_age})",
                        newest.id
                    )
                })
            }
        },
    }
}

impl AlarmsState {
    async fn check(&mut self) {
        let readings = Readings {
            indexes: self.indexes().await,
            embedder_down: self.embedder().await,
            rss_bytes: resident_bytes(),
            disk: disk_space(&self.arguments.settings.data.dir),
            snapshot_stale: snapshot_stale(&self.arguments.settings),
        };
        let holding = evaluate(&readings, &self.arguments.settings.alarms);
        let changes = self.arguments.board.apply(holding);
        let gauge = &self.arguments.metrics.alarm_active;
        for alarm in &changes.set {
            tracing::warn!(alarm = %alarm.id, severity = ?alarm.severity, message = %alarm.message, "alarm set");
            gauge.with_label_values(&[&alarm.id]).set(1);
        }
        for alarm in &changes.cleared {
            tracing::info!(alarm = %alarm.id, "alarm cleared");
            gauge.with_label_values(&[&alarm.id]).set(0);
        }
    }

    async fn indexes(&self) -> Vec<IndexReading> {
        let window =
            chrono::Duration::seconds(self.arguments.settings.alarms.crash_loop_window_secs as i64);
        let since = Utc::now() - window;
        let vectors = self.arguments.vectors.view("vectors", ChildStatus::Running);
        let mut readings = Vec::new();
        for node in vectors.children {
            let Some(name) = crate::domain::vectors::index_of(&node.name) else {
                continue;
            };
            // Failures since an operator's restart only: the ones before it
            // were the reason for it.
            let fresh = node
                .history
                .iter()
                .rposition(|e| e.reason.as_deref() == Some(RESTART_REQUESTED))
                .map_or(0, |i| i + 1);
            let failures: Vec<_> = node.history[fresh..]
                .iter()
                .filter(|e| matches!(e.kind, EventKind::Failed) && e.at >= since)
                .collect();
            let writes_since_snapshot = match node.status {
                ChildStatus::Running => self
                    .arguments
                    .directory
                    .call(
                        &actor_name(name),
                        |reply| IndexMessage::Info { reply },
                        Duration::from_millis(500),
                    )
                    .await
                    .ok()
                    .map(|info| info.writes_since_snapshot),
                _ => None,
            };
            readings.push(IndexReading {
                name: name.to_string(),
                failed: (node.status == ChildStatus::Failed).then(|| {
                    node.last_failure
                        .as_ref()
                        .map_or_else(|| "unknown".to_string(), |f| f.reason.clone())
                }),
                recent_failures: failures.len(),
                last_reason: failures.last().and_then(|e| e.reason.clone()),
                writes_since_snapshot,
            });
        }
        readings
    }

    /// Why the embedder cannot embed, if it cannot: its actor is not
    /// running, or (Ollama) the last probe failed.
    async fn embedder(&mut self) -> Option<String> {
        match self.arguments.tree.find_node("embed").map(|n| n.status) {
            Some(ChildStatus::Running) | None => {}
            Some(status) => return Some(format!("the embed actor is {status:?}").to_lowercase()),
        }
        let ollama = self.ollama.as_ref()?;
        let every = Duration::from_millis(self.arguments.settings.alarms.embedder_probe_ms);
        let due = self
            .probe
            .as_ref()
            .is_none_or(|(at, _)| at.elapsed() >= every);
        if due {
            let outcome = match tokio::time::timeout(PROBE_TIMEOUT, ollama.ping()).await {
                Ok(Ok(())) => None,
                Ok(Err(err)) => Some(err.to_string()),
                Err(_) => Some(format!(
                    "ollama did not answer within {} s",
                    PROBE_TIMEOUT.as_secs()
                )),
            };
            self.probe_failures = match outcome {
                None => 0,
                Some(_) => self.probe_failures + 1,
            };
            self.probe = Some((Instant::now(), outcome));
        }
        if self.probe_failures < PROBE_FAILURES {
            return None;
        }
        self.probe.as_ref().and_then(|(_, down)| down.clone())
    }
}

/// This process's resident memory, from `/proc/self/statm`.
fn resident_bytes() -> Option<u64> {
    let statm = std::fs::read_to_string("/proc/self/statm").ok()?;
    let pages: u64 = statm.split_whitespace().nth(1)?.parse().ok()?;
    // SAFETY: sysconf only reads a system constant.
    let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    Some(pages * u64::try_from(page).ok()?)
}

/// `(available, total)` bytes of the file system holding `dir`.
pub(crate) fn disk_space(dir: &std::path::Path) -> Option<(u64, u64)> {
    use std::os::unix::ffi::OsStrExt;
    let path = std::ffi::CString::new(dir.as_os_str().as_bytes()).ok()?;
    // SAFETY: statvfs writes into the zeroed struct we own; `path` is a
    // NUL-terminated string that outlives the call.
    let mut stat: libc::statvfs = unsafe { std::mem::zeroed() };
    if unsafe { libc::statvfs(path.as_ptr(), &mut stat) } != 0 {
        return None;
    }
    let block = stat.f_frsize;
    Some((stat.f_bavail * block, stat.f_blocks * block))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::supervision::Strategy;

    /// Waits for `condition`; the bound only fails a test that would hang.
    async fn until(what: &str, mut condition: impl FnMut() -> bool) {
        let poll = async {
            while !condition() {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        };
        tokio::time::timeout(Duration::from_secs(30), poll)
            .await
            .unwrap_or_else(|_| panic!("never happened: {what}"));
    }

    #[tokio::test]
    async fn an_alarm_is_set_while_its_condition_holds_and_cleared_after() {
        let dir = tempfile::tempdir().unwrap();
        let settings = Arc::new(Settings::for_tests(
            dir.path(),
            &[
                ("alarms.check_interval_ms", "100"),
                ("alarms.memory_high_water_bytes", "1"),
            ],
        ));
        let vectors = StatusBoard::new(Strategy::OneForOne);
        vectors.declare("index:bad", None);
        vectors.record_failure("index:bad", "the dataset is unreadable");
        vectors.set_status("index:bad", ChildStatus::Failed);
        let board = AlarmBoard::default();
        let metrics = Arc::new(Metrics::new().unwrap());
        let (actor, _) = Actor::spawn(
            None,
            AlarmsActor,
            AlarmsArguments {
                settings,
                board: board.clone(),
                tree: StatusBoard::new(Strategy::OneForOne),
                vectors: vectors.clone(),
                directory: Directory::new(),
                metrics: metrics.clone(),
            },
        )
        .await
        .unwrap();
        let active = |id: &str| board.list().iter().any(|a| a.id == id);
        let gauge = |id: &str| metrics.alarm_active.with_label_values(&[id]).get();

        until("index_failed:bad set", || active("index_failed:bad")).await;
        assert_eq!(gauge("index_failed:bad"), 1);
        let alarm = board
            .list()
            .into_iter()
            .find(|a| a.id == "index_failed:bad")
            .unwrap();
        assert!(
            alarm.message.contains("the dataset is unreadable"),
            "{}",
            alarm.message
        );
        assert!(active("memory_high"), "any process is over a 1-byte mark");
        assert!(!active("disk_nearly_full") && !active("embedder_unreachable"));

        // The index runs again: the next check clears the alarm.
        vectors.set_status("index:bad", ChildStatus::Running);
        until("index_failed:bad cleared", || !active("index_failed:bad")).await;
        assert_eq!(gauge("index_failed:bad"), 0);
        actor.stop(None);
    }
}
