//! The recent results of an index, dropped by its next write.

use super::read::Ranked;
use super::*;

pub(super) struct CachedResult {
    pub(super) query: Query,
    pub(super) max_seq: u64,
    pub(super) ranking: Ranking,
}

/// What a search found, before it becomes hits.
#[derive(Clone)]
pub(super) enum Ranking {
    /// A plain semantic search: labels and distances.
    Scored(Vec<(u64, f32)>),
    /// Anything else (keyword, hybrid, explain, included ids).
    Ranked(Vec<Ranked>),
}

impl Ranking {
    fn bytes(&self) -> usize {
        match self {
            Ranking::Scored(scored) => scored.len() * 16,
            Ranking::Ranked(ranked) => ranked
                .iter()
                .map(|r| {
                    32 + r.explain.as_ref().map_or(0, |e| {
                        160 + e.matched_terms.iter().map(|t| t.len() + 24).sum::<usize>()
                            + (e.phrases.len() + e.fuzzy_terms.len() + e.synonyms.len()) * 64
                    })
                })
                .sum(),
        }
    }
}

impl CachedResult {
    /// What the entry holds, roughly: the query (vector, filter, excluded
    /// ids) and the scored labels, plus the map's own overhead.
    pub(super) fn bytes(&self) -> usize {
        let query = &self.query;
        64 + query.vector.len() * 4
            + query
                .filter
                .iter()
                .map(|(f, v)| f.len() + v.len() + 48)
                .sum::<usize>()
            + query
                .exclude_ids
                .iter()
                .chain(&query.include_ids)
                .map(|id| id.len() + 24)
                .sum::<usize>()
            + query.keywords.bytes()
            + self.ranking.bytes()
    }
}

/// The result LRU, bounded by entries and by bytes: a client sending long
/// `exclude_ids` lists must not make it hold gigabytes.
pub(super) struct ResultCache {
    pub(super) entries: LruCache<u64, CachedResult>,
    pub(super) bytes: usize,
    pub(super) max_bytes: usize,
}

impl ResultCache {
    pub(super) fn get(&mut self, key: &u64) -> Option<&CachedResult> {
        self.entries.get(key)
    }

    pub(super) fn put(&mut self, key: u64, entry: CachedResult) {
        let size = entry.bytes();
        // One entry that would take more than an eighth of the budget is
        // not worth evicting others for.
        if size > self.max_bytes / 8 {
            return;
        }
        if let Some(old) = self.entries.pop(&key) {
            self.bytes -= old.bytes();
        }
        while self.bytes + size > self.max_bytes || self.entries.len() == self.entries.cap().get() {
            match self.entries.pop_lru() {
                Some((_, old)) => self.bytes -= old.bytes(),
                None => break,
            }
        }
        self.bytes += size;
        self.entries.put(key, entry);
    }
}

impl Query {
    pub(super) fn cache_key(&self) -> u64 {
        let mut hasher = std::collections::hash_map::DefaultHasher::new();
        for x in &self.vector {
            x.to_bits().hash(&mut hasher);
        }
        self.k.hash(&mut hasher);
        self.filter.hash(&mut hasher);
        self.predicate
            .as_ref()
            .map(|p| p.canonical())
            .hash(&mut hasher);
        self.exclude_ids.hash(&mut hasher);
        self.ef_search.hash(&mut hasher);
        self.mode.hash(&mut hasher);
        self.keywords.hash(&mut hasher);
        self.keyword_weight.to_bits().hash(&mut hasher);
        self.explain.hash(&mut hasher);
        self.include_ids.hash(&mut hasher);
        hasher.finish()
    }

    pub(super) fn same_as(&self, other: &Query) -> bool {
        self.k == other.k
            && self.ef_search == other.ef_search
            && self.mode == other.mode
            && self.keywords == other.keywords
            && self.keyword_weight.to_bits() == other.keyword_weight.to_bits()
            && self.explain == other.explain
            && self.include_ids == other.include_ids
            && self.filter == other.filter
            && self.predicate == other.predicate
            && self.exclude_ids == other.exclude_ids
            && self.vector.len() == other.vector.len()
            && self
                .vector
                .iter()
                .zip(&other.vector)
                .all(|(a, b)| a.to_bits() == b.to_bits())
    }
}

#[cfg(test)]
mod cache_tests {
    use super::*;

    fn entry(exclude: usize, hits: usize) -> CachedResult {
        CachedResult {
            query: Query {
                filter: vec![("role".into(), "s:Welder".into())],
                exclude_ids: (0..exclude).map(|i| format!("W{i:07}")).collect(),
                ..Query::nearest(vec![0.0; 64], 10)
            },
            max_seq: 1,
            ranking: Ranking::Scored((0..hits as u64).map(|l| (l, 0.5)).collect()),
        }
    }

    #[test]
    fn the_result_cache_stays_within_its_bytes() {
        let mut cache = ResultCache {
            entries: LruCache::new(NonZeroUsize::new(1000).unwrap()),
            bytes: 0,
            max_bytes: 64 << 10,
        };
        for key in 0..500u64 {
            cache.put(key, entry(50, 10));
            assert!(cache.bytes <= cache.max_bytes, "{} bytes", cache.bytes);
            let held: usize = cache.entries.iter().map(|(_, e)| e.bytes()).sum();
            assert_eq!(held, cache.bytes, "the count follows the entries");
        }
        assert!(cache.entries.len() < 500, "old entries were evicted");
        assert!(cache.get(&499).is_some(), "the newest is kept");
        // An entry worth more than an eighth of the budget is not cached.
        cache.put(10_000, entry(2_000, 10));
        assert!(cache.get(&10_000).is_none());
        // Replacing an entry does not count it twice.
        let before = cache.bytes;
        cache.put(499, entry(50, 10));
        assert_eq!(cache.bytes, before);
    }
}
