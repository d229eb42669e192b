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

use std::collections::HashMap;

use crate::domain::keyword::{idf, term_score, terms};

/// Below this many documents every query term draws candidates.
const DRAW_ALL_BELOW: usize = 4096;
/// A term more than this share of the documents hold does not draw.
const COMMON_SHARE: f32 = 0.2;
/// Candidates drawn by the rarer terms and then scored in full: this many
/// times the number asked for, and at least that many more.
const DRAW_FACTOR: usize = 4;
const DRAW_EXTRA: usize = 64;
/// What one candidate's lookup in one term's postings costs, in postings
/// read sequentially: a binary search is ~17 steps over 100k postings,
/// most of them cache misses. Past `candidates × terms × this` postings,
/// filtered candidates are looked up one by one; below, the postings are
/// summed in one pass (a perf profile of the 100k mix, where a role filter
/// leaves ~5,000 candidates, had 38% of the server's CPU in the lookups).
const LOOKUP_COST: usize = 16;

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
    /// Its distinct term ids (to update `live` when it goes).
    terms: Box<[u32]>,
}

/// A text as the index needs it: its length in terms and each distinct
/// term's frequency. The costly part of an insert, done without the index.
pub struct Analysed {
    length: u32,
    counts: Vec<(Box<str>, u16)>,
}

impl Analysed {
    pub fn of(text: &str) -> Self {
        let mut counts: HashMap<String, u16> = HashMap::new();
        let mut length = 0u32;
        for term in terms(text) {
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

#[derive(Debug, Default)]
pub struct KeywordIndex {
    vocabulary: HashMap<Box<str>, u32>,
    terms: Vec<Term>,
    /// By slot; `None` once removed.
    docs: Vec<Option<Doc>>,
    slots: HashMap<u64, u32>,
    total_length: u64,
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
        self.slots.len()
    }

    pub fn is_empty(&self) -> bool {
        self.slots.is_empty()
    }

    /// Indexes `text` under `label` (replacing what the label had).
    pub fn insert(&mut self, label: u64, text: &str) {
        self.insert_analysed(label, Analysed::of(text));
    }

    /// Indexes a text analysed beforehand (outside any lock).
    pub fn insert_analysed(&mut self, label: u64, analysed: Analysed) {
        self.remove(label);
        let length = analysed.length;
        if length == 0 {
            return;
        }
        let mut counts: HashMap<u32, u16> = HashMap::with_capacity(analysed.counts.len());
        for (term, tf) in analysed.counts {
            let next = self.terms.len() as u32;
            let id = *self.vocabulary.entry(term).or_insert(next);
            if id == next {
                self.terms.push(Term::default());
            }
            counts.insert(id, tf);
        }
        let slot = self.docs.len() as u32;
        let mut ids: Vec<u32> = counts.keys().copied().collect();
        ids.sort_unstable();
        for &id in &ids {
            let term = &mut self.terms[id as usize];
            term.live += 1;
            term.postings.push((slot, counts[&id]));
        }
        self.docs.push(Some(Doc {
            label,
            length,
            terms: ids.into_boxed_slice(),
        }));
        self.slots.insert(label, slot);
        self.total_length += u64::from(length);
    }

    /// Forgets the document under `label`, if any.
    pub fn remove(&mut self, label: u64) {
        let Some(slot) = self.slots.remove(&label) else {
            return;
        };
        if let Some(doc) = self.docs[slot as usize].take() {
            for &id in doc.terms.iter() {
                self.terms[id as usize].live -= 1;
            }
            self.total_length -= u64::from(doc.length);
        }
        if self.docs.len() > 1024 && self.docs.len() > 2 * self.slots.len() {
            self.compact();
        }
    }

    /// Renumbers the live documents densely and drops dead postings.
    fn compact(&mut self) {
        let mut renumbered = vec![u32::MAX; self.docs.len()];
        let mut docs = Vec::with_capacity(self.slots.len());
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
        let documents = self.slots.len();
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
        let mut scored: Vec<Scored> = match allowed {
            // A filter's candidates: each looked up in every term's
            // postings (a binary search, mostly cache misses), or, when
            // that reads more than the postings themselves (thousands of
            // candidates, as a role filter leaves), one pass over each
            // term's postings into a sum per document.
            Some(labels) => {
                let postings: usize = query
                    .known
                    .iter()
                    .map(|&(id, _)| self.terms[id as usize].postings.len())
                    .sum();
                let sums = (postings < labels.len() * query.known.len() * LOOKUP_COST)
                    .then(|| self.sums(query, &query.known));
                labels
                    .iter()
                    .filter_map(|&label| {
                        let score = match &sums {
                            Some(sums) => sums[*self.slots.get(&label)? as usize],
                            None => self.score(query, label)?,
                        };
                        (score > 0.0).then_some(Scored { label, score })
                    })
                    .collect()
            }
            None => {
                // Terms most documents hold add little to any score but
                // cost most postings: past a small corpus they do not
                // draw candidates (the rarer terms do; the rarest if all
                // are common), and the drawn candidates are then scored
                // in full, so reported scores stay exact.
                let documents = self.slots.len();
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
        let slot = *self.slots.get(&label)?;
        let doc = self.docs[slot as usize].as_ref()?;
        Some(
            query
                .known
                .iter()
                .filter_map(|&(id, idf)| {
                    let tf = self.tf(id, slot)?;
                    Some(term_score(idf, tf, doc.length, query.average_length))
                })
                .sum(),
        )
    }

    /// Which of `query`'s terms the document under `label` holds.
    pub fn matched(&self, query: &[String], label: u64) -> Vec<String> {
        let Some(&slot) = self.slots.get(&label) else {
            return Vec::new();
        };
        query
            .iter()
            .filter(|term| {
                self.vocabulary
                    .get(term.as_str())
                    .is_some_and(|&id| self.tf(id, slot).is_some())
            })
            .cloned()
            .collect()
    }

    fn tf(&self, id: u32, slot: u32) -> Option<u32> {
        let postings = &self.terms[id as usize].postings;
        let at = postings.binary_search_by_key(&slot, |p| p.0).ok()?;
        Some(u32::from(postings[at].1))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::keyword::query_terms;

    fn labels(index: &KeywordIndex, query: &str, allowed: Option<&[u64]>) -> Vec<u64> {
        let resolved = index.resolve(&query_terms(query));
        index
            .top(&resolved, allowed, &|_| false, 10)
            .into_iter()
            .map(|s| s.label)
            .collect()
    }

    /// Both ways of scoring a filter's candidates — one lookup per
    /// candidate, or one pass over the postings — give every candidate
    /// its exact score.
    #[test]
    fn filtered_candidates_get_their_exact_scores_either_way() {
        let mut index = KeywordIndex::default();
        let words = ["forklift", "operator", "welder", "osha", "night", "dallas"];
        for label in 0..400u64 {
            let text: Vec<&str> = words
                .iter()
                .enumerate()
                .filter(|(i, _)| (label as usize + i) % (i + 2) == 0)
                .map(|(_, w)| *w)
                .collect();
            index.insert(label, &text.join(" "));
        }
        let resolved = index.resolve(&query_terms("forklift operator dallas"));
        let exact = |allowed: &[u64]| -> Vec<(u64, f32)> {
            let mut expected: Vec<(u64, f32)> = allowed
                .iter()
                .filter_map(|&l| Some((l, index.score(&resolved, l)?)))
                .filter(|(_, s)| *s > 0.0)
                .collect();
            expected.sort_by(|a, b| b.1.total_cmp(&a.1).then(b.0.cmp(&a.0)));
            expected
        };
        // Many candidates: summed from the postings. One: looked up.
        let many: Vec<u64> = (0..400).filter(|l| l % 3 != 0).collect();
        for allowed in [many, vec![7]] {
            let found: Vec<(u64, f32)> = index
                .top(&resolved, Some(&allowed), &|_| false, 1000)
                .into_iter()
                .map(|s| (s.label, s.score))
                .collect();
            let expected = exact(&allowed);
            assert_eq!(found.len(), expected.len());
            for (f, e) in found.iter().zip(&expected) {
                assert_eq!(f.0, e.0);
                assert!((f.1 - e.1).abs() < 1e-5, "{f:?} vs {e:?}");
            }
        }
    }

    #[test]
    fn bm25_ranks_the_rare_exact_term_first() {
        let mut index = KeywordIndex::default();
        index.insert(1, "Welder with OSHA 10 and MIG welding");
        index.insert(2, "Welder with OSHA 30, TIG welding");
        index.insert(3, "Electrician with OSHA 30");
        index.insert(4, "Forklift operator");
        assert_eq!(labels(&index, "OSHA 30", None), [3, 2, 1]);
        assert_eq!(labels(&index, "OSHA 30", Some(&[1, 2, 4])), [2, 1]);
        assert!(labels(&index, "pastry", None).is_empty());
        let resolved = index.resolve(&query_terms("OSHA 30"));
        let score = index.score(&resolved, 3).unwrap();
        let top = index.top(&resolved, None, &|_| false, 1);
        assert_eq!(top[0].score, score, "top and score agree");
        assert_eq!(
            index.matched(&query_terms("osha 30 tig"), 2),
            ["osha", "30", "tig"]
        );
    }

    #[test]
    fn common_terms_draw_no_candidates_but_every_score_is_exact() {
        let mut index = KeywordIndex::default();
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
            let resolved = index.resolve(&query_terms(query));
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
        let mut index = KeywordIndex::default();
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
        let mut index = KeywordIndex::default();
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
        let mut fresh = KeywordIndex::default();
        for label in (0..3000u64).filter(|l| l % 2 == 0) {
            fresh.insert(
                label + 10_000,
                &format!("worker {} skill{}", label, label % 7),
            );
        }
        assert_eq!(index.len(), 1500);
        assert!(index.docs.len() < 3 * 1500, "dead slots were compacted");
        for query in ["skill3", "worker 42", "worker skill5 2998"] {
            let a = index.top(&index.resolve(&query_terms(query)), None, &|_| false, 20);
            let b = fresh.top(&fresh.resolve(&query_terms(query)), None, &|_| false, 20);
            assert_eq!(a, b, "{query}");
        }
    }
}
