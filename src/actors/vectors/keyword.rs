//! The keyword side of one index: an in-memory inverted index (BM25) over
//! the texts items were added with. Like the faiss graph it is derived:
//! Lance stores each item's text, and a load rebuilds this from it.
//!
//! Documents get slots in insertion order and a slot is never reused, so
//! every posting list stays sorted by slot and a removed document's
//! postings can stay behind, skipped by a liveness check, until a
//! compaction (once dead slots outnumber live ones) renumbers the rest.
//! That makes an update O(its terms) instead of a scan of every list that
//! names it — a re-seed of 100k workers updates every document.
//!
//! Each document also keeps its own distinct terms with their frequencies,
//! sorted by term id, so one document is scored exactly from its own few
//! dozen terms (the included ids and fused candidates of a hybrid search)
//! rather than by a binary search in each query term's postings. A
//! filter's many candidates (the role a hybrid matrix search is always
//! filtered by) are scored by walking each term's postings beside the
//! candidates' slots instead: both are sorted, so that is a sequential
//! read, and needs no corpus-sized buffer. Measured in the 100k hybrid mix,
//! scoring each of ~5,000 candidates from its own terms cost 43% of the
//! server's CPU (a random read each); see docs/benchmarks.md.

use std::collections::HashMap;

use crate::domain::analysis::Analysis;
use crate::domain::keyword::{idf, term_score, terms};

/// A filter leaving at most this many candidates has each scored from its
/// own terms; more are scored by walking the postings (see `merged`).
const FEW_CANDIDATES: usize = 64;

/// How many of `sorted`'s leading items pass `before` (which holds for a
/// prefix): an exponential then binary search, so stepping through a long
/// sorted list by nearby targets reads only a few items each time.
fn gallop<T>(sorted: &[T], before: impl Fn(&T) -> bool) -> usize {
    let mut step = 1;
    let mut low = 0;
    while low + step <= sorted.len() && before(&sorted[low + step - 1]) {
        low += step;
        step *= 2;
    }
    let high = (low + step).min(sorted.len());
    low + sorted[low..high].partition_point(before)
}

/// Below this many documents every query term draws candidates.
const DRAW_ALL_BELOW: usize = 4096;
/// A term more than this share of the documents hold does not draw.
const COMMON_SHARE: f32 = 0.2;
/// Candidates drawn by the rarer terms and then scored in full: this many
/// times the number asked for, and at least that many more.
const DRAW_FACTOR: usize = 4;
const DRAW_EXTRA: usize = 64;

/// One term's postings: `(slot, term frequency)`, sorted by slot.
#[derive(Debug, Default)]
struct Term {
    /// Live documents holding the term.
    live: u32,
    postings: Vec<(u32, u16)>,
}

#[derive(Debug)]
struct Doc {
    label: u64,
    /// Terms in the text (its length for BM25).
    length: u32,
    /// Its distinct term ids, ascending (to score it, and to update
    /// `live` when it goes)...
    terms: Box<[u32]>,
    /// ...and each one's frequency in the text.
    frequencies: Box<[u16]>,
}

impl Doc {
    /// How often the term `id` occurs in this text (`None`: never).
    fn frequency(&self, id: u32) -> Option<u32> {
        let at = self.terms.binary_search(&id).ok()?;
        Some(u32::from(self.frequencies[at]))
    }

    /// The BM25 score of the resolved query's terms in this text.
    fn score(&self, query: &Resolved) -> f32 {
        query
            .known
            .iter()
            .filter_map(|&(id, idf)| {
                let tf = self.frequency(id)?;
                Some(term_score(idf, tf, self.length, query.average_length))
            })
            .sum()
    }
}

/// A text as the index needs it: its length in terms and each distinct
/// term's frequency. The costly part of an insert, done without the index.
pub struct Analysed {
    length: u32,
    counts: Vec<(Box<str>, u16)>,
}

impl Analysed {
    pub fn of(text: &str, analysis: Analysis) -> Self {
        let mut counts: HashMap<String, u16> = HashMap::new();
        let mut length = 0u32;
        for term in terms(text, analysis) {
            length = length.saturating_add(1);
            let tf = counts.entry(term).or_insert(0);
            *tf = tf.saturating_add(1);
        }
        Self {
            length,
            counts: counts
                .into_iter()
                .map(|(term, tf)| (term.into_boxed_str(), tf))
                .collect(),
        }
    }
}

/// A keyword hit: its label and BM25 score.
#[derive(Debug, Clone, PartialEq)]
pub struct Scored {
    pub label: u64,
    pub score: f32,
}

/// The slot of each label. Labels are an index's seqs, dense and growing,
/// so a vector indexed by label (as the arena keeps its slots) answers in
/// one read where a hash map spent most of a filtered keyword search.
#[derive(Debug, Default)]
struct Slots {
    by_label: Vec<u32>,
    len: usize,
}

const NO_SLOT: u32 = u32::MAX;

impl Slots {
    fn get(&self, label: u64) -> Option<u32> {
        let slot = *self.by_label.get(usize::try_from(label).ok()?)?;
        (slot != NO_SLOT).then_some(slot)
    }

    fn insert(&mut self, label: u64, slot: u32) {
        let at = label as usize;
        if at >= self.by_label.len() {
            self.by_label.resize(at + 1, NO_SLOT);
        }
        if std::mem::replace(&mut self.by_label[at], slot) == NO_SLOT {
            self.len += 1;
        }
    }

    fn remove(&mut self, label: u64) -> Option<u32> {
        let slot = self.get(label)?;
        self.by_label[label as usize] = NO_SLOT;
        self.len -= 1;
        Some(slot)
    }
}

#[derive(Debug, Default)]
pub struct KeywordIndex {
    vocabulary: HashMap<Box<str>, u32>,
    terms: Vec<Term>,
    /// By slot; `None` once removed.
    docs: Vec<Option<Doc>>,
    slots: Slots,
    total_length: u64,
    /// How its texts (and the queries asked of it) become terms.
    analysis: Analysis,
}

/// A query resolved against the vocabulary: `(term id, idf)` of the terms
/// some live document holds.
pub struct Resolved {
    known: Vec<(u32, f32)>,
    average_length: f32,
}

impl Resolved {
    /// The sum of the known terms' idf: what a text holding each of them
    /// once, at average length, scores.
    pub fn reference(&self) -> f32 {
        self.known.iter().map(|(_, idf)| idf).sum()
    }
}

impl KeywordIndex {
    pub fn len(&self) -> usize {
        self.slots.len
    }

    pub fn is_empty(&self) -> bool {
        self.slots.len == 0
    }

    /// An empty index whose texts are analysed by `analysis`.
    pub fn new(analysis: Analysis) -> Self {
        Self {
            analysis,
            ..Self::default()
        }
    }

    pub fn analysis(&self) -> Analysis {
        self.analysis
    }

    /// An index of `texts`, one document per label.
    pub fn of_texts(texts: &[(u64, std::sync::Arc<str>)], analysis: Analysis) -> Self {
        let mut index = Self::new(analysis);
        for (label, text) in texts {
            index.insert(*label, text);
        }
        index
    }

    /// Indexes `text` under `label` (replacing what the label had).
    pub fn insert(&mut self, label: u64, text: &str) {
        self.insert_analysed(label, Analysed::of(text, self.analysis));
    }

    /// Indexes a text analysed beforehand (outside any lock).
    pub fn insert_analysed(&mut self, label: u64, analysed: Analysed) {
        self.remove(label);
        let length = analysed.length;
        if length == 0 {
            return;
        }
        let mut counts: HashMap<u32, u16> = HashMap::with_capacity(analysed.counts.len());
        // (Distinct terms: `Analysed` counted them.)
        for (term, tf) in analysed.counts {
            let next = self.terms.len() as u32;
            let id = *self.vocabulary.entry(term).or_insert(next);
            if id == next {
                self.terms.push(Term::default());
            }
            counts.insert(id, tf);
        }
        let slot = self.docs.len() as u32;
        let mut ids: Vec<(u32, u16)> = counts.into_iter().collect();
        ids.sort_unstable();
        for &(id, tf) in &ids {
            let term = &mut self.terms[id as usize];
            term.live += 1;
            term.postings.push((slot, tf));
        }
        self.docs.push(Some(Doc {
            label,
            length,
            terms: ids.iter().map(|&(id, _)| id).collect(),
            frequencies: ids.iter().map(|&(_, tf)| tf).collect(),
        }));
        self.slots.insert(label, slot);
        self.total_length += u64::from(length);
    }

    /// Forgets the document under `label`, if any.
    pub fn remove(&mut self, label: u64) {
        let Some(slot) = self.slots.remove(label) else {
            return;
        };
        if let Some(doc) = self.docs[slot as usize].take() {
            for &id in doc.terms.iter() {
                self.terms[id as usize].live -= 1;
            }
            self.total_length -= u64::from(doc.length);
        }
        if self.docs.len() > 1024 && self.docs.len() > 2 * self.slots.len {
            self.compact();
        }
    }

    /// Renumbers the live documents densely and drops dead postings.
    fn compact(&mut self) {
        let mut renumbered = vec![u32::MAX; self.docs.len()];
        let mut docs = Vec::with_capacity(self.slots.len);
        for (old, doc) in std::mem::take(&mut self.docs).into_iter().enumerate() {
            if let Some(doc) = doc {
                renumbered[old] = docs.len() as u32;
                self.slots.insert(doc.label, docs.len() as u32);
                docs.push(Some(doc));
            }
        }
        for term in &mut self.terms {
            term.postings.retain_mut(|(slot, _)| {
                *slot = renumbered[*slot as usize];
                *slot != u32::MAX
            });
            term.postings.shrink_to_fit();
        }
        self.docs = docs;
        self.drop_dead_terms();
    }

    /// Forgets the terms no live document holds any more, renumbering the
    /// rest: without this the vocabulary of an index whose texts keep
    /// changing (or a client writing random words) only ever grows.
    fn drop_dead_terms(&mut self) {
        if self.terms.iter().all(|t| t.live > 0) {
            return;
        }
        let mut renumbered = vec![u32::MAX; self.terms.len()];
        let mut terms = Vec::with_capacity(self.terms.len());
        for (old, term) in std::mem::take(&mut self.terms).into_iter().enumerate() {
            if term.live > 0 {
                renumbered[old] = terms.len() as u32;
                terms.push(term);
            }
        }
        self.terms = terms;
        self.vocabulary.retain(|_, id| {
            *id = renumbered[*id as usize];
            *id != u32::MAX
        });
        self.vocabulary.shrink_to_fit();
        // The renumbering keeps the ids' order, so each document's terms
        // stay sorted.
        for doc in self.docs.iter_mut().flatten() {
            for id in doc.terms.iter_mut() {
                *id = renumbered[*id as usize];
            }
        }
    }

    /// Terms in the vocabulary (dead ones included until a compaction).
    pub fn vocabulary_len(&self) -> usize {
        self.vocabulary.len()
    }

    /// The query's terms this index knows, with their idf.
    pub fn resolve(&self, query: &[String]) -> Resolved {
        let documents = self.slots.len;
        let known = query
            .iter()
            .filter_map(|term| {
                let id = *self.vocabulary.get(term.as_str())?;
                let live = self.terms[id as usize].live as usize;
                (live > 0).then(|| (id, idf(documents, live)))
            })
            .collect();
        Resolved {
            known,
            average_length: self.total_length as f32 / documents.max(1) as f32,
        }
    }

    /// The `n` best-scoring documents among those `allowed` lets through
    /// (every document when `None`), best first; equal scores newest first.
    /// Documents matching no term are not returned.
    pub fn top(
        &self,
        query: &Resolved,
        allowed: Option<&[u64]>,
        excluded: &dyn Fn(u64) -> bool,
        n: usize,
    ) -> Vec<Scored> {
        if query.known.is_empty() {
            return Vec::new();
        }
        let mut scored: Vec<Scored> = match allowed {
            // A filter's candidates: a few are scored from their own
            // terms; many (the ~5,000 of a role) by walking each query
            // term's postings beside the candidates' slots, both sorted,
            // galloping over the longer. Scoring each of many candidates
            // from its own terms cost a random read per candidate and a
            // binary search per term: 43% of the server's CPU in the 100k
            // hybrid mix.
            Some(labels) if labels.len() <= FEW_CANDIDATES => labels
                .iter()
                .filter_map(|&label| {
                    let score = self.score(query, label)?;
                    (score > 0.0).then_some(Scored { label, score })
                })
                .collect(),
            Some(labels) => self.merged(query, labels),
            None => {
                // Terms most documents hold add little to any score but
                // cost most postings: past a small corpus they do not
                // draw candidates (the rarer terms do; the rarest if all
                // are common), and the drawn candidates are then scored
                // in full, so reported scores stay exact.
                let documents = self.slots.len;
                let common =
                    |id: u32| self.terms[id as usize].live as f32 > COMMON_SHARE * documents as f32;
                let mut drawing: Vec<(u32, f32)> = query
                    .known
                    .iter()
                    .copied()
                    .filter(|&(id, _)| documents < DRAW_ALL_BELOW || !common(id))
                    .collect();
                let complete = drawing.len() == query.known.len();
                if drawing.is_empty() {
                    drawing.extend(
                        query
                            .known
                            .iter()
                            .copied()
                            .max_by(|a, b| a.1.total_cmp(&b.1)),
                    );
                }
                let sums = self.sums(query, &drawing);
                let mut drawn: Vec<Scored> = sums
                    .iter()
                    .enumerate()
                    .filter(|(_, s)| **s > 0.0)
                    .filter_map(|(slot, &score)| {
                        let label = self.docs[slot].as_ref()?.label;
                        (!excluded(label)).then_some(Scored { label, score })
                    })
                    .collect();
                if !complete {
                    let keep = (n * DRAW_FACTOR).max(n + DRAW_EXTRA);
                    if drawn.len() > keep {
                        drawn.select_nth_unstable_by(keep - 1, |a, b| {
                            b.score.total_cmp(&a.score).then(b.label.cmp(&a.label))
                        });
                        drawn.truncate(keep);
                    }
                    for candidate in drawn.iter_mut() {
                        candidate.score = self.score(query, candidate.label).unwrap_or(0.0);
                    }
                }
                drawn
            }
        };
        let order =
            |a: &Scored, b: &Scored| b.score.total_cmp(&a.score).then(b.label.cmp(&a.label));
        if scored.len() > n && n > 0 {
            scored.select_nth_unstable_by(n - 1, order);
            scored.truncate(n);
        }
        scored.sort_by(order);
        scored
    }

    /// The scores of many candidates: per query term, its postings and the
    /// candidates' slots (both ascending) intersected by galloping.
    fn merged(&self, query: &Resolved, labels: &[u64]) -> Vec<Scored> {
        let mut candidates: Vec<(u32, u64)> = labels
            .iter()
            .filter_map(|&label| Some((self.slots.get(label)?, label)))
            .collect();
        candidates.sort_unstable();
        let mut scores = vec![0f32; candidates.len()];
        for &(id, idf) in &query.known {
            let postings = &self.terms[id as usize].postings;
            let mut at = 0;
            for (i, &(slot, _)) in candidates.iter().enumerate() {
                at += gallop(&postings[at..], |p| p.0 < slot);
                let Some(&(found, tf)) = postings.get(at) else {
                    break;
                };
                if found == slot {
                    if let Some(doc) = &self.docs[slot as usize] {
                        scores[i] +=
                            term_score(idf, u32::from(tf), doc.length, query.average_length);
                    }
                }
            }
        }
        candidates
            .into_iter()
            .zip(scores)
            .filter(|(_, score)| *score > 0.0)
            .map(|((_, label), score)| Scored { label, score })
            .collect()
    }

    /// Per slot, the BM25 score of `terms` (of `query`): one pass over
    /// each term's postings.
    fn sums(&self, query: &Resolved, terms: &[(u32, f32)]) -> Vec<f32> {
        let mut sums = vec![0f32; self.docs.len()];
        for &(id, idf) in terms {
            for &(slot, tf) in &self.terms[id as usize].postings {
                if let Some(doc) = &self.docs[slot as usize] {
                    sums[slot as usize] +=
                        term_score(idf, u32::from(tf), doc.length, query.average_length);
                }
            }
        }
        sums
    }

    /// The BM25 score of the document under `label` (`None`: no text).
    pub fn score(&self, query: &Resolved, label: u64) -> Option<f32> {
        Some(self.doc(label)?.score(query))
    }

    fn doc(&self, label: u64) -> Option<&Doc> {
        let slot = self.slots.get(label)?;
        self.docs[slot as usize].as_ref()
    }

    /// Which of `query`'s terms the document under `label` holds.
    pub fn matched(&self, query: &[String], label: u64) -> Vec<String> {
        let Some(doc) = self.doc(label) else {
            return Vec::new();
        };
        query
            .iter()
            .filter(|term| {
                self.vocabulary
                    .get(term.as_str())
                    .is_some_and(|&id| doc.frequency(id).is_some())
            })
            .cloned()
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::keyword::query_terms;

    fn labels(index: &KeywordIndex, query: &str, allowed: Option<&[u64]>) -> Vec<u64> {
        let resolved = index.resolve(&query_terms(query, Analysis::CURRENT));
        index
            .top(&resolved, allowed, &|_| false, 10)
            .into_iter()
            .map(|s| s.label)
            .collect()
    }

    use crate::actors::vectors::tests::Rng;

    /// BM25 computed from the texts alone, the textbook way: what every
    /// score the index reports must equal.
    fn full_scan(
        texts: &HashMap<u64, String>,
        query: &str,
        allowed: Option<&[u64]>,
        n: usize,
    ) -> Vec<(u64, f32)> {
        let analysed: HashMap<u64, Vec<String>> = texts
            .iter()
            .map(|(l, t)| (*l, terms(t, Analysis::CURRENT)))
            .collect();
        let documents = analysed.values().filter(|t| !t.is_empty()).count();
        let total: usize = analysed.values().map(Vec::len).sum();
        let average = total as f32 / documents.max(1) as f32;
        let query = query_terms(query, Analysis::CURRENT);
        let holders: Vec<usize> = query
            .iter()
            .map(|term| analysed.values().filter(|t| t.contains(term)).count())
            .collect();
        let mut scored: Vec<(u64, f32)> = analysed
            .iter()
            .filter(|(label, _)| allowed.is_none_or(|a| a.contains(*label)))
            .filter(|(_, t)| !t.is_empty())
            .map(|(&label, text)| {
                let score = query
                    .iter()
                    .zip(&holders)
                    .filter_map(|(term, &holders)| {
                        let tf = text.iter().filter(|t| *t == term).count() as u32;
                        (tf > 0).then(|| {
                            term_score(idf(documents, holders), tf, text.len() as u32, average)
                        })
                    })
                    .sum();
                (label, score)
            })
            .filter(|(_, score)| *score > 0.0)
            .collect();
        scored.sort_by(|a, b| b.1.total_cmp(&a.1).then(b.0.cmp(&a.0)));
        scored.truncate(n);
        scored
    }

    /// On random corpora — rare and common words, repeats, updates and
    /// removals — the index's top hits and their scores equal a full scan
    /// of the texts, with no filter, with a filter of many candidates and
    /// with one of a few.
    #[test]
    fn keyword_scores_equal_a_full_scan_on_random_corpora() {
        let words: Vec<String> = (0..60).map(|i| format!("w{i}")).collect();
        for seed in 0..6u64 {
            let mut rng = Rng(seed);
            let mut index = KeywordIndex::new(Analysis::CURRENT);
            let mut texts: HashMap<u64, String> = HashMap::new();
            // Past DRAW_ALL_BELOW for some seeds, so common terms stop
            // drawing; Zipf-like word choice makes some words common.
            let size = if seed % 2 == 0 { 600 } else { 5_000 };
            for step in 0..size + size / 4 {
                let label = rng.below(size as u64);
                if step % 17 == 0 {
                    index.remove(label);
                    texts.remove(&label);
                    continue;
                }
                let length = 1 + rng.below(12) as usize;
                let text: Vec<&str> = (0..length)
                    .map(|_| {
                        let rank = rng.below(60) * rng.below(60) / 59;
                        words[rank as usize].as_str()
                    })
                    .collect();
                let text = text.join(" ");
                index.insert(label, &text);
                texts.insert(label, text);
            }
            for query in ["w0", "w1 w30", "w59 w2 w0", "w44 w45 w46 w47", "nothing"] {
                let resolved = index.resolve(&query_terms(query, Analysis::CURRENT));
                let many: Vec<u64> = (0..size as u64).filter(|l| l % 3 != 1).collect();
                let few: Vec<u64> = (0..size as u64).step_by(97).collect();
                for allowed in [None, Some(many.as_slice()), Some(few.as_slice())] {
                    let found: Vec<(u64, f32)> = index
                        .top(&resolved, allowed, &|_| false, 10)
                        .into_iter()
                        .map(|s| (s.label, s.score))
                        .collect();
                    let all = full_scan(&texts, query, allowed, usize::MAX);
                    let expected = &all[..all.len().min(10)];
                    let context = format!(
                        "seed {seed}, {query:?}, {} allowed",
                        allowed.map_or(0, <[u64]>::len)
                    );
                    assert_eq!(found.len(), expected.len(), "{context}");
                    for (f, e) in found.iter().zip(expected) {
                        assert!((f.1 - e.1).abs() < 1e-4, "{context}: {f:?} vs {e:?}");
                        // Scores equal but for rounding may come in either
                        // order: the label must then score the same.
                        if f.0 != e.0 {
                            let tie = all.iter().any(|x| x.0 == f.0 && (x.1 - f.1).abs() < 1e-4);
                            assert!(tie, "{context}: {f:?} vs {e:?}");
                        }
                    }
                }
            }
        }
    }

    #[test]
    fn bm25_ranks_the_rare_exact_term_first() {
        let mut index = KeywordIndex::new(Analysis::CURRENT);
        index.insert(1, "Welder with OSHA 10 and MIG welding");
        index.insert(2, "Welder with OSHA 30, TIG welding");
        index.insert(3, "Electrician with OSHA 30");
        index.insert(4, "Forklift operator");
        assert_eq!(labels(&index, "OSHA 30", None), [3, 2, 1]);
        assert_eq!(labels(&index, "OSHA 30", Some(&[1, 2, 4])), [2, 1]);
        assert!(labels(&index, "pastry", None).is_empty());
        let resolved = index.resolve(&query_terms("OSHA 30", Analysis::CURRENT));
        let score = index.score(&resolved, 3).unwrap();
        let top = index.top(&resolved, None, &|_| false, 1);
        assert_eq!(top[0].score, score, "top and score agree");
        assert_eq!(
            index.matched(&query_terms("osha 30 tig", Analysis::CURRENT), 2),
            ["osha", "30", "tig"]
        );
    }

    #[test]
    fn common_terms_draw_no_candidates_but_every_score_is_exact() {
        let mut index = KeywordIndex::new(Analysis::CURRENT);
        // 6,000 documents: "shift" in all, "night" in a third, "forklift"
        // in a tenth, "hazmat" in 30.
        for label in 0..6000u64 {
            let mut text = String::from("available for shift work");
            if label % 3 == 0 {
                text.push_str(" night");
            }
            if label % 10 == 0 {
                text.push_str(" forklift");
            }
            if label % 200 == 0 {
                text.push_str(" hazmat hazmat");
            }
            index.insert(label, &text);
        }
        for query in [
            "hazmat night shift",
            "forklift shift",
            "shift",
            "night shift",
        ] {
            let resolved = index.resolve(&query_terms(query, Analysis::CURRENT));
            let top = index.top(&resolved, None, &|_| false, 10);
            // Exact: the same scores as scoring each document in full...
            for hit in &top {
                assert_eq!(
                    Some(hit.score),
                    index.score(&resolved, hit.label),
                    "{query}"
                );
            }
            // ...and the same top 10 as a full scan.
            let mut all: Vec<Scored> = (0..6000u64)
                .filter_map(|label| {
                    let score = index.score(&resolved, label)?;
                    (score > 0.0).then_some(Scored { label, score })
                })
                .collect();
            all.sort_by(|a, b| b.score.total_cmp(&a.score).then(b.label.cmp(&a.label)));
            all.truncate(10);
            assert_eq!(top, all, "{query}");
        }
    }

    #[test]
    fn compaction_forgets_terms_no_live_text_holds() {
        let mut index = KeywordIndex::new(Analysis::CURRENT);
        for label in 0..3000u64 {
            index.insert(label, &format!("forklift operator uniqueword{label}"));
        }
        assert_eq!(index.vocabulary_len(), 3002);
        // Every text rewritten with other words: the old unique words die.
        for label in 0..3000u64 {
            index.insert(label, &format!("forklift operator otherword{label}"));
        }
        // Removals past half the slots compact; the vocabulary follows.
        assert!(
            index.vocabulary_len() < 3002 + 3000,
            "{}",
            index.vocabulary_len()
        );
        let survivors = terms_of(&index, "otherword7");
        assert_eq!(survivors, vec![7]);
        assert!(terms_of(&index, "uniqueword7").is_empty());
        assert_eq!(
            terms_of(&index, "forklift").len(),
            10,
            "the top 10 of 3,000 holders"
        );
    }

    fn terms_of(index: &KeywordIndex, query: &str) -> Vec<u64> {
        labels(index, query, None)
    }

    #[test]
    fn updates_and_removals_leave_the_same_index_as_a_fresh_build() {
        let mut index = KeywordIndex::new(Analysis::CURRENT);
        for label in 0..3000u64 {
            index.insert(label, &format!("worker {} skill{}", label, label % 7));
        }
        // Every document replaced under a new label, half of them removed.
        for label in 0..3000u64 {
            index.remove(label);
            if label % 2 == 0 {
                index.insert(
                    label + 10_000,
                    &format!("worker {} skill{}", label, label % 7),
                );
            }
        }
        let mut fresh = KeywordIndex::new(Analysis::CURRENT);
        for label in (0..3000u64).filter(|l| l % 2 == 0) {
            fresh.insert(
                label + 10_000,
                &format!("worker {} skill{}", label, label % 7),
            );
        }
        assert_eq!(index.len(), 1500);
        assert!(index.docs.len() < 3 * 1500, "dead slots were compacted");
        for query in ["skill3", "worker 42", "worker skill5 2998"] {
            let a = index.top(
                &index.resolve(&query_terms(query, Analysis::CURRENT)),
                None,
                &|_| false,
                20,
            );
            let b = fresh.top(
                &fresh.resolve(&query_terms(query, Analysis::CURRENT)),
                None,
                &|_| false,
                20,
            );
            assert_eq!(a, b, "{query}");
        }
    }
}
