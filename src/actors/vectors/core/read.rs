//! The read path: a query ranked by graph walk, exact scan or keyword
//! fusion, and its hits.

use super::*;

/// A ranked label, before it becomes a [`Hit`].
#[derive(Clone)]
pub(super) struct Ranked {
    pub(super) label: u64,
    pub(super) distance: f32,
    pub(super) explain: Option<HitExplain>,
    pub(super) beyond_k: bool,
}

impl Core {
    /// Runs `f` with the graph under the read lock (snapshots).
    pub fn with_graph<T>(&self, f: impl FnOnce(&Hnsw, &KeywordIndex, u64) -> T) -> T {
        let inner = self.inner.read();
        f(&inner.hnsw, &inner.keywords, inner.max_seq)
    }

    /// The k nearest live items passing the filter and not excluded. Every
    /// kind of search is cached (plain semantic ones, keyword, hybrid,
    /// explained, with included ids) until the index's next write.
    pub fn search(&self, query: &Query) -> Result<Vec<Hit>, HnswError> {
        self.prepare_lookups(&query.filter)?;
        let key = query.cache_key();
        let max_seq = self.inner.read().max_seq;
        let cached = self.results.as_ref().and_then(|results| {
            let mut results = results.lock();
            let entry = results.get(&key)?;
            (entry.max_seq == max_seq && entry.query.same_as(query)).then(|| entry.ranking.clone())
        });
        let ranking = match cached {
            Some(ranking) => ranking,
            None => {
                let (ranking, stamped) = {
                    let inner = self.inner.read();
                    // Computed and stamped under one read lock: a write
                    // that lands after it bumps `max_seq` past the stamp.
                    let ranking = if query.is_plain() {
                        Ranking::Scored(self.score(query, &inner)?)
                    } else {
                        Ranking::Ranked(self.rank(query, &inner)?)
                    };
                    (ranking, inner.max_seq)
                };
                if let Some(results) = &self.results {
                    results.lock().put(
                        key,
                        CachedResult {
                            query: query.clone(),
                            max_seq: stamped,
                            ranking: ranking.clone(),
                        },
                    );
                }
                ranking
            }
        };

        let inner = self.inner.read();
        Ok(match ranking {
            Ranking::Scored(scored) => scored
                .into_iter()
                .filter_map(|(label, distance)| inner.hit(label, distance, None))
                .collect(),
            Ranking::Ranked(ranked) => ranked
                .into_iter()
                .filter_map(|r| {
                    let mut hit = inner.hit(r.label, r.distance, r.explain)?;
                    hit.beyond_k = r.beyond_k;
                    Some(hit)
                })
                .collect(),
        })
    }

    /// The exact `k` nearest live items passing the filter (and, with
    /// `only`, among those ids), with the Lance version they are: the same
    /// hits, in the same order, as a scan of that version
    /// ([`super::store::search_at`]) — every candidate scored at full
    /// precision, ties by id — without reading Lance. What a chat cites.
    pub fn exact(
        &self,
        query: &Query,
        only: Option<&HashSet<String>>,
    ) -> Result<(u64, Vec<Hit>), HnswError> {
        self.prepare_lookups(&query.filter)?;
        if self.inner.read().arena.is_none() {
            self.build(&[], &[])?;
        }
        let inner = self.inner.read();
        let excluded = inner.excluded(query);
        let candidates: Vec<u64> = match only {
            Some(ids) => {
                let mut labels: Vec<u64> = ids
                    .iter()
                    .filter_map(|id| inner.rows.get(id).map(|e| e.seq))
                    .filter(|label| !excluded.contains(label) && inner.passes(*label, query))
                    .collect();
                labels.sort_unstable();
                labels
            }
            None => inner.filtered(query, &excluded),
        };
        let metric = self.definition.metric;
        let exact = |label: u64| -> Result<Option<(f32, &str, u64)>, HnswError> {
            let Some(id) = inner.by_label.get(&label) else {
                return Ok(None);
            };
            let vector = inner.hnsw.reconstruct(label)?;
            Ok(Some((
                metric.exact(&query.vector, &vector),
                id.as_str(),
                label,
            )))
        };
        let order =
            |a: &(f32, &str, u64), b: &(f32, &str, u64)| a.0.total_cmp(&b.0).then(a.1.cmp(b.1));
        let k = query.k.max(1);
        // Every candidate's approximate distance and its error bound, from
        // the arena; the k best by it are scored exactly, which bounds the
        // k-th exact distance by `threshold`; only candidates whose lower
        // bound reaches it can be among the k nearest, and they are scored
        // exactly too. Exact results, at the cost of the few vectors near
        // the threshold instead of every candidate.
        let mut scored: Vec<(f32, &str, u64)> = Vec::new();
        match inner.arena.as_ref() {
            Some(arena) => {
                let mut approximate = Vec::with_capacity(candidates.len());
                arena.distances_bounded(metric, &query.vector, &candidates, &mut approximate);
                let missing = candidates.len() - approximate.len();
                approximate.sort_by(|a, b| a.1.total_cmp(&b.1));
                let mut rescored = HashSet::new();
                for &(label, _, _) in approximate.iter().take(k) {
                    rescored.insert(label);
                    scored.extend(exact(label)?);
                }
                scored.sort_by(order);
                let threshold = match scored.get(k - 1) {
                    Some(kth) => kth.0,
                    None => f32::INFINITY,
                };
                for &(label, approx, error) in &approximate {
                    if approx - error <= threshold && rescored.insert(label) {
                        scored.extend(exact(label)?);
                    }
                }
                // Candidates the arena lacks (published between its build
                // and this read): scored directly.
                if missing > 0 {
                    for &label in &candidates {
                        if !rescored.contains(&label) && !arena.contains(label) {
                            scored.extend(exact(label)?);
                        }
                    }
                }
            }
            None => {
                for &label in &candidates {
                    scored.extend(exact(label)?);
                }
            }
        }
        scored.sort_by(order);
        scored.truncate(query.k);
        let hits = scored
            .into_iter()
            .filter_map(|(distance, _, label)| inner.hit(label, distance, None))
            .collect();
        Ok((inner.version, hits))
    }

    /// `(label, distance)` of the k nearest, best first. Every search
    /// holds only the read lock, whatever its efSearch.
    pub(super) fn score(
        &self,
        query: &Query,
        inner: &CoreInner,
    ) -> Result<Vec<(u64, f32)>, HnswError> {
        let ef_search = query.ef_search.unwrap_or(self.definition.hnsw.ef_search);
        let metric = self.definition.metric;
        if query.filter.is_empty() && query.predicate.is_none() {
            let allowed = inner.allowed_unfiltered(query);
            return inner.graph_search_k(query, query.k, ef_search, allowed.as_deref(), metric);
        }
        let excluded = inner.excluded(query);
        let candidates = inner.filtered(query, &excluded);
        self.score_among(query, inner, &candidates)
    }

    /// [`Core::score`] of a filtered search, over its `candidates` (the
    /// live labels passing the filter, in order).
    pub(super) fn score_among(
        &self,
        query: &Query,
        inner: &CoreInner,
        candidates: &[u64],
    ) -> Result<Vec<(u64, f32)>, HnswError> {
        let ef_search = query.ef_search.unwrap_or(self.definition.hnsw.ef_search);
        let metric = self.definition.metric;
        if candidates.len() <= EXACT_SEARCH_LIMIT {
            return inner.exact_search(query, candidates, metric);
        }
        // A selective filter leaves few allowed nodes among the ones an
        // ef-sized walk visits: widen the walk in proportion (faiss explores
        // max(efSearch, k) nodes).
        let allowed = Bitmap::from_labels(candidates.iter().copied());
        let selectivity = candidates.len() as f64 / inner.rows.len().max(1) as f64;
        let widened = ((query.k as f64 / selectivity).ceil() as usize)
            .clamp(query.k, MAX_WIDENED_K.min(candidates.len()).max(query.k));
        let mut hits = inner.graph_search_k(query, widened, ef_search, Some(&allowed), metric)?;
        hits.truncate(query.k);
        Ok(hits)
    }

    /// A keyword or hybrid search, or any search asked to explain itself
    /// or to include given ids: candidates from each side the mode uses
    /// (the same filter and exclusions), each scored on both, fused by
    /// [`fused_distance`], best first; `k` of them plus the included ids
    /// that ranked lower.
    pub(super) fn rank(&self, query: &Query, inner: &CoreInner) -> Result<Vec<Ranked>, HnswError> {
        let mode = query.mode;
        let weight = mode.weight(query.keyword_weight);
        let pool = if mode == SearchMode::Semantic {
            query.k
        } else {
            (query.k * 4).max(FUSION_POOL).min(MAX_K)
        };
        let excluded = inner.excluded(query);
        // The filter is applied once, for both sides (a predicate parses
        // every remaining item's metadata).
        let candidates = (!query.filter.is_empty() || query.predicate.is_some())
            .then(|| inner.filtered(query, &excluded));
        let semantic: Vec<(u64, f32)> = if mode.uses_vectors() {
            let mut wide = query.clone();
            wide.k = pool;
            match &candidates {
                Some(candidates) => self.score_among(&wide, inner, candidates)?,
                None => self.score(&wide, inner)?,
            }
        } else {
            Vec::new()
        };
        let resolved = inner.keywords.resolve(&query.keywords);
        let keyword = if mode.uses_keywords() {
            let is_excluded = |label: u64| excluded.contains(&label);
            inner
                .keywords
                .top(&resolved, candidates.as_deref(), &is_excluded, pool)
        } else {
            Vec::new()
        };
        let included: HashSet<u64> = query
            .include_ids
            .iter()
            .filter_map(|id| inner.rows.get(id).map(|e| e.seq))
            .filter(|label| !excluded.contains(label) && inner.passes(*label, query))
            .collect();

        // Every candidate once, with what each side knows of it.
        let mut labels: Vec<u64> = Vec::with_capacity(semantic.len() + keyword.len());
        let mut seen = HashSet::new();
        let semantic_ranks: HashMap<u64, (usize, f32)> = semantic
            .iter()
            .enumerate()
            .map(|(i, &(label, distance))| (label, (i + 1, distance)))
            .collect();
        let keyword_ranks: HashMap<u64, (usize, f32)> = keyword
            .iter()
            .enumerate()
            .map(|(i, s)| (s.label, (i + 1, s.score)))
            .collect();
        for label in semantic
            .iter()
            .map(|s| s.0)
            .chain(keyword.iter().map(|s| s.label))
            .chain(
                query
                    .include_ids
                    .iter()
                    .filter_map(|id| inner.rows.get(id).map(|e| e.seq)),
            )
        {
            let wanted = semantic_ranks.contains_key(&label)
                || keyword_ranks.contains_key(&label)
                || included.contains(&label);
            if wanted && seen.insert(label) {
                labels.push(label);
            }
        }
        let metric = self.definition.metric;
        let mut parts = Vec::with_capacity(labels.len());
        for label in labels {
            let semantic_distance = match (mode.uses_vectors(), semantic_ranks.get(&label)) {
                (false, _) => None,
                (true, Some(&(_, distance))) => Some(distance),
                (true, None) => Some(metric.exact(&query.vector, &inner.hnsw.reconstruct(label)?)),
            };
            let keyword_score = match keyword_ranks.get(&label) {
                Some(&(_, score)) => score,
                None if mode.uses_keywords() => {
                    inner.keywords.score(&resolved, label).unwrap_or(0.0)
                }
                None => 0.0,
            };
            // A keyword search returns only what matches, included ids too.
            if mode == SearchMode::Keyword && keyword_score <= 0.0 {
                continue;
            }
            parts.push((label, semantic_distance, keyword_score));
        }
        let reference = resolved.reference();
        let mut ranked: Vec<Ranked> = parts
            .into_iter()
            .map(|(label, semantic_distance, keyword_score)| {
                let distance = fused_distance(
                    semantic_distance,
                    keyword_distance(keyword_score, reference),
                    weight,
                );
                let explain = query.explain.then(|| {
                    let matched = inner.keywords.matched(&query.keywords, &resolved, label);
                    HitExplain {
                        mode,
                        semantic_distance,
                        semantic_rank: semantic_ranks.get(&label).map(|r| r.0),
                        keyword_score,
                        keyword_reference: reference,
                        keyword_distance: keyword_distance(keyword_score, reference),
                        keyword_rank: keyword_ranks.get(&label).map(|r| r.0),
                        matched_terms: matched.terms,
                        phrases: matched.phrases,
                        fuzzy_terms: matched.fuzzy_terms,
                        synonyms: matched.synonyms,
                        keyword_weight: weight,
                        fused_distance: distance,
                        fused_rank: 0,
                    }
                });
                Ranked {
                    label,
                    distance,
                    explain,
                    beyond_k: false,
                }
            })
            .collect();
        ranked.sort_by(|a, b| {
            a.distance
                .total_cmp(&b.distance)
                .then(b.label.cmp(&a.label))
        });
        let mut kept = Vec::with_capacity(query.k + included.len());
        for (i, mut r) in ranked.into_iter().enumerate() {
            if let Some(explain) = r.explain.as_mut() {
                explain.fused_rank = i + 1;
            }
            r.beyond_k = i >= query.k;
            if i < query.k || included.contains(&r.label) {
                kept.push(r);
            }
        }
        Ok(kept)
    }
}

impl CoreInner {
    /// The hit for a ranked label, if it is still live.
    pub(super) fn hit(
        &self,
        label: u64,
        distance: f32,
        explain: Option<HitExplain>,
    ) -> Option<Hit> {
        let id = self.by_label.get(&label)?;
        let entry = self.rows.get(id)?;
        Some(Hit {
            id: id.clone(),
            distance,
            metadata: serde_json::from_str(&entry.metadata).unwrap_or(Value::Object(Map::new())),
            explain,
            beyond_k: false,
        })
    }

    pub(super) fn graph_search_k(
        &self,
        query: &Query,
        k: usize,
        ef_search: u32,
        allowed: Option<&Bitmap>,
        metric: Metric,
    ) -> Result<Vec<(u64, f32)>, HnswError> {
        let allowed = allowed.map(|bitmap| bitmap.0.as_slice());
        let found = self.hnsw.search(&query.vector, k, ef_search, allowed)?;
        Ok(found
            .into_iter()
            .map(|(label, raw)| (label, metric.distance(raw)))
            .collect())
    }

    /// Scores every candidate from the arena, then rescores the best few
    /// from faiss's full-precision vectors, so reported distances are exact.
    pub(super) fn exact_search(
        &self,
        query: &Query,
        candidates: &[u64],
        metric: Metric,
    ) -> Result<Vec<(u64, f32)>, HnswError> {
        // Equal distances: the newest write (largest seq) first, so among
        // identical playbook queries the latest recordings are the ones kept.
        let order = |a: &(u64, f32), b: &(u64, f32)| a.1.total_cmp(&b.1).then(b.0.cmp(&a.0));
        let mut shortlist: Vec<(u64, f32)> = match &self.arena {
            Some(arena) => {
                let mut scored = Vec::with_capacity(candidates.len());
                arena.distances(metric, &query.vector, candidates, &mut scored);
                let keep = (query.k * RESCORE_FACTOR).max(query.k + RESCORE_EXTRA);
                if scored.len() > keep {
                    scored.select_nth_unstable_by(keep - 1, order);
                    scored.truncate(keep);
                }
                scored
            }
            None => candidates.iter().map(|&label| (label, 0.0)).collect(),
        };
        for candidate in shortlist.iter_mut() {
            let vector = self.hnsw.reconstruct(candidate.0)?;
            candidate.1 = metric.exact(&query.vector, &vector);
        }
        shortlist.sort_by(order);
        shortlist.truncate(query.k);
        Ok(shortlist)
    }
}
