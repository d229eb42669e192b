//! What outlives an index actor's incarnations: its fence (only the current
//! incarnation changes its files) and the fields it is filtered on.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;

/// What every incarnation of one index shares, so that only the current
/// one ever changes its files. It outlives actor incarnations (and index
/// drops: a re-created index of the same name gets the same fence).
///
/// - `writer` is held by each commit and by a load. It guards the
///   generation: every load (and every drop) bumps it, and a commit of an
///   earlier incarnation that finds a newer generation writes nothing (its
///   actor died; the new one has already read Lance).
/// - `files` is held shared by the background work of the current
///   generation that touches files beside the commits (writing snapshot
///   files, writing compacted fragments, removing old versions), and taken
///   exclusively by a load or a drop right after it bumped the generation:
///   it so waits out (and its abort hastens) any such work of an earlier
///   incarnation, and later work sees the new generation and does nothing.
#[derive(Debug, Default)]
pub struct IndexFence {
    pub writer: tokio::sync::Mutex<u64>,
    generation: AtomicU64,
    pub files: tokio::sync::RwLock<()>,
    /// Armed by a `slow_load` fault: the next load sleeps this long first.
    slow_load: Mutex<Option<Duration>>,
    /// Armed by a `commit_panic` fault: the index's next commit with rows
    /// panics inside its commit task, after its Lance append — in this
    /// incarnation or, if it ends first, the next.
    pub panic_in_commit: std::sync::atomic::AtomicBool,
}

impl IndexFence {
    /// The current generation (readable without the writer lock).
    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::SeqCst)
    }

    /// Makes the next load of this index take `delay` longer (fault injection).
    pub fn arm_slow_load(&self, delay: Duration) {
        *self.slow_load.lock() = Some(delay);
    }

    /// The delay a `slow_load` fault armed, once.
    pub fn take_slow_load(&self) -> Option<Duration> {
        self.slow_load.lock().take()
    }

    /// Starts a new generation under the writer lock `writer` (a guard of
    /// [`IndexFence::writer`]), then waits until no background work of an
    /// earlier generation touches the files. Returns the new generation.
    pub async fn advance(&self, writer: &mut u64) -> u64 {
        *writer += 1;
        self.generation.store(*writer, Ordering::SeqCst);
        drop(self.files.write().await);
        *writer
    }
}

/// Metadata fields an index has been filtered on, shared by its
/// incarnations: a restarted index builds their lookups (and the vector
/// arena) while it loads, so the first filtered search after a restart
/// is as fast as any other.
pub type HotFields = Arc<HotFieldSet>;

/// The fields with filter lookups, least recently filtered on first, at
/// most `vectors.max_hot_fields` of them: every write updates the lookup
/// of every hot field, so a client filtering on ever new fields must not
/// make every later write slower (nor the memory grow).
#[derive(Debug)]
pub struct HotFieldSet {
    max: usize,
    order: Mutex<Vec<String>>,
}

impl Default for HotFieldSet {
    fn default() -> Self {
        Self::new(16)
    }
}

impl HotFieldSet {
    pub fn new(max: usize) -> Self {
        Self {
            max: max.max(1),
            order: Mutex::new(Vec::new()),
        }
    }

    /// Marks `fields` as used now; returns the fields that fell out of the
    /// set (never one of `fields`: a filter with more fields than the cap
    /// keeps them all until the next one).
    pub fn touch(&self, fields: &[&str]) -> Vec<String> {
        let mut order = self.order.lock();
        for field in fields {
            match order.iter().position(|f| f == field) {
                Some(i) if i + 1 == order.len() => {}
                Some(i) => {
                    let used = order.remove(i);
                    order.push(used);
                }
                None => order.push(field.to_string()),
            }
        }
        let keep = self.max.max(fields.len());
        let excess = order.len().saturating_sub(keep);
        order.drain(..excess).collect()
    }

    /// The fields, least recently used first.
    pub fn list(&self) -> Vec<String> {
        self.order.lock().clone()
    }
}

#[cfg(test)]
mod hot_field_tests {
    use super::HotFieldSet;

    #[test]
    fn hot_fields_keep_the_most_recently_used_up_to_the_cap() {
        let hot = HotFieldSet::new(3);
        assert!(hot.touch(&["role"]).is_empty());
        assert!(hot.touch(&["city", "state"]).is_empty());
        // `role` used again: `city` is now the least recently used.
        assert!(hot.touch(&["role"]).is_empty());
        assert_eq!(hot.touch(&["zip"]), ["city"]);
        assert_eq!(hot.list(), ["state", "role", "zip"]);
        // Ad-hoc fields never grow the set past its cap...
        for i in 0..100 {
            hot.touch(&[&format!("field{i}")]);
            assert!(hot.list().len() <= 3);
        }
        // ...and a filter with more fields than the cap keeps all of its own.
        let evicted = hot.touch(&["a", "b", "c", "d"]);
        assert_eq!(evicted.len(), 3);
        assert_eq!(hot.list(), ["a", "b", "c", "d"]);
    }
}
