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

use parking_lot::Mutex;

pub mod stored;

use crate::domain::analysis::Analysis;
use crate::domain::keyword::{
    idf, term_score, tokens, FormMatch, KeywordQuery, Phrase, PhraseFit, PhraseMatch, Token,
};

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

/// The `n` best of `scored`, best first; equal scores newest first.
fn best(mut scored: Vec<Scored>, n: usize) -> Vec<Scored> {
    let order = |a: &Scored, b: &Scored| b.score.total_cmp(&a.score).then(b.label.cmp(&a.label));
    if scored.len() > n && n > 0 {
        scored.select_nth_unstable_by(n - 1, order);
        scored.truncate(n);
    }
    scored.sort_by(order);
    scored
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
    /// The text's term ids in order, [`BREAK`] between segments (for
    /// phrases).
    tokens: Box<[u32]>,
    /// CRC-32 of the text: a stored index (see [`stored`]) keeps a
    /// document only while its item's text still has this checksum.
    text_crc: u32,
}

/// The token between two segments of a text.
const BREAK: u32 = u32::MAX;

impl Doc {
    /// How often the term `id` occurs in this text (`None`: never).
    fn frequency(&self, id: u32) -> Option<u32> {
        let at = self.terms.binary_search(&id).ok()?;
        Some(u32::from(self.frequencies[at]))
    }

    /// The BM25 score of the resolved query in this text.
    fn score(&self, query: &Resolved) -> f32 {
        if let Some(groups) = &query.groups {
            return groups
                .iter()
                .map(|group| group.score(self, query.average_length))
                .try_fold(0.0, |sum, score| score.map(|s| sum + s))
                .unwrap_or(0.0);
        }
        query
            .known
            .iter()
            .filter_map(|&(id, idf)| {
                let tf = self.frequency(id)?;
                Some(term_score(idf, tf, self.length, query.average_length))
            })
            .sum()
    }

    /// How the terms `ids` stand in this text: adjacent and in order as a
    /// whole segment, as part of one, or not at all.
    fn phrase_fit(&self, ids: &[u32]) -> PhraseFit {
        let tokens = &self.tokens;
        let mut best = PhraseFit::None;
        if ids.is_empty() || ids.len() > tokens.len() {
            return best;
        }
        for start in 0..=tokens.len() - ids.len() {
            if tokens[start..start + ids.len()] != *ids {
                continue;
            }
            let end = start + ids.len();
            let opens = start == 0 || tokens[start - 1] == BREAK;
            let closes = end == tokens.len() || tokens[end] == BREAK;
            if opens && closes {
                return PhraseFit::Whole;
            }
            best = PhraseFit::Part;
        }
        best
    }
}

/// A query unit resolved against the vocabulary: the ways a text may
/// hold it, scored as the best of them.
#[derive(Debug)]
struct ResolvedGroup {
    /// Index into the query's groups.
    group: usize,
    /// The query's words it stands for ("fork lift", "epa 608").
    text: String,
    ways: Vec<Way>,
    /// A quoted phrase: a text that does not hold it scores nothing.
    required: bool,
}

#[derive(Debug)]
struct Way {
    /// `(term id, idf)`, in the order a phrase needs them.
    ids: Vec<(u32, f32)>,
    /// The terms must stand adjacent and in order.
    phrase: bool,
    /// What a match of this way is worth against an exact one.
    weight: f32,
    kind: WayKind,
    /// The form, as explain shows it.
    form: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum WayKind {
    Exact,
    Synonym,
    Fuzzy,
}

/// A part of a phrase scores this share of a whole one ("EPA 608" in
/// "EPA 608 Universal").
const PART_PHRASE: f32 = 0.5;
/// A fuzzy form scores at most this share of an exact match.
const FUZZY_WEIGHT: f32 = 0.25;
/// The words of a multi-word synonym ("certified nursing assistant")
/// apart, not as the phrase, score this share.
const LOOSE_WEIGHT: f32 = 0.5;
/// Fuzzy forms one query term may bring.
const MAX_FUZZY_FORMS: usize = 8;
/// A query word held by more texts than this (or than one in a thousand)
/// gets no typo forms: it is a word, not a typo.
const FUZZY_RARE_HOLDERS: usize = 3;

impl ResolvedGroup {
    /// The best way's score in `doc`; `None` when a required phrase is
    /// missing (the whole document then scores nothing).
    fn score(&self, doc: &Doc, average_length: f32) -> Option<f32> {
        let best = self
            .ways
            .iter()
            .map(|way| way.score(doc, average_length).0)
            .fold(0.0f32, f32::max);
        (best > 0.0 || !self.required).then_some(best)
    }

    /// The ceiling of what a text holding the group once, at average
    /// length, scores (the sum of idf of its best way).
    fn reference(&self) -> f32 {
        self.ways
            .iter()
            .map(|way| way.weight * way.ids.iter().map(|(_, idf)| idf).sum::<f32>())
            .fold(0.0, f32::max)
    }
}

impl Way {
    /// Its score in `doc`, and the phrase's fit (for a phrase).
    fn score(&self, doc: &Doc, average_length: f32) -> (f32, PhraseFit) {
        let mut sum = 0.0;
        for &(id, idf) in &self.ids {
            match doc.frequency(id) {
                Some(tf) => sum += term_score(idf, tf, doc.length, average_length),
                // Every term of a phrase, a synonym or a fuzzy form is
                // needed; the query's own words count one by one.
                None if self.phrase || self.kind != WayKind::Exact => {
                    return (0.0, PhraseFit::None)
                }
                None => {}
            }
        }
        if !self.phrase {
            return (self.weight * sum, PhraseFit::Whole);
        }
        let ids: Vec<u32> = self.ids.iter().map(|(id, _)| *id).collect();
        let fit = doc.phrase_fit(&ids);
        let share = match fit {
            PhraseFit::Whole => 1.0,
            PhraseFit::Part => PART_PHRASE,
            PhraseFit::None => 0.0,
        };
        (self.weight * share * sum, fit)
    }
}

/// A text as the index needs it: its length in terms and each distinct
/// term's frequency. The costly part of an insert, done without the index.
pub struct Analysed {
    length: u32,
    text_crc: u32,
    counts: Vec<(Box<str>, u16)>,
    /// Indexes into `counts` in text order, `None` between segments.
    sequence: Vec<Option<u32>>,
}

impl Analysed {
    pub fn of(text: &str, analysis: Analysis) -> Self {
        let mut at: HashMap<String, u32> = HashMap::new();
        let mut counts: Vec<(Box<str>, u16)> = Vec::new();
        let mut sequence = Vec::new();
        let mut length = 0u32;
        for token in tokens(text, analysis) {
            let Token::Term(term) = token else {
                sequence.push(None);
                continue;
            };
            length = length.saturating_add(1);
            let next = counts.len() as u32;
            let index = *at.entry(term).or_insert_with_key(|term| {
                counts.push((term.clone().into_boxed_str(), 0));
                next
            });
            let tf = &mut counts[index as usize].1;
            *tf = tf.saturating_add(1);
            sequence.push(Some(index));
        }
        Self {
            length,
            text_crc: crc32fast::hash(text.as_bytes()),
            counts,
            sequence,
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
    /// The vocabulary as an fst set, for typo-tolerant lookups: rebuilt
    /// when a search needs it and enough terms were added since.
    fuzzy: Mutex<FuzzySet>,
    /// Terms added to the vocabulary since it was built.
    added_terms: usize,
}

#[derive(Default)]
struct FuzzySet {
    /// Shared, so a search walks it without holding the lock.
    set: Option<std::sync::Arc<fst::Set<Vec<u8>>>>,
    /// `added_terms` when it was built.
    built_at: usize,
}

impl std::fmt::Debug for FuzzySet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("FuzzySet")
    }
}

/// A query resolved against the vocabulary: `(term id, idf)` of the terms
/// some live document holds, and, when the query is more than a bag of
/// words (a phrase, a code, a synonym, a fuzzy form, a compound), its
/// groups.
pub struct Resolved {
    known: Vec<(u32, f32)>,
    groups: Option<Vec<ResolvedGroup>>,
    average_length: f32,
}

impl Resolved {
    /// What a text holding each of the query's terms once, at average
    /// length, scores: the sum of their idf (of each group's best way).
    pub fn reference(&self) -> f32 {
        match &self.groups {
            Some(groups) => groups.iter().map(ResolvedGroup::reference).sum(),
            None => self.known.iter().map(|(_, idf)| idf).sum(),
        }
    }
}

/// What a document matched of a query, as `explain` shows it.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Matched {
    pub terms: Vec<String>,
    pub phrases: Vec<PhraseMatch>,
    pub fuzzy_terms: Vec<FormMatch>,
    pub synonyms: Vec<FormMatch>,
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
        let mut ids_at: Vec<u32> = Vec::with_capacity(analysed.counts.len());
        // (Distinct terms: `Analysed` counted them.)
        for (term, tf) in analysed.counts {
            let next = self.terms.len() as u32;
            let id = *self.vocabulary.entry(term).or_insert(next);
            if id == next {
                self.terms.push(Term::default());
                self.added_terms += 1;
            }
            counts.insert(id, tf);
            ids_at.push(id);
        }
        let tokens: Box<[u32]> = analysed
            .sequence
            .iter()
            .map(|at| at.map_or(BREAK, |at| ids_at[at as usize]))
            .collect();
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
            tokens,
            text_crc: analysed.text_crc,
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
            for id in doc.tokens.iter_mut().filter(|id| **id != BREAK) {
                *id = renumbered[*id as usize];
            }
        }
        // The fst set maps words, not ids: only dropped words linger in it
        // (a lookup then finds no id), so it needs no rebuild.
    }

    /// Terms in the vocabulary (dead ones included until a compaction).
    pub fn vocabulary_len(&self) -> usize {
        self.vocabulary.len()
    }

    /// The id and idf of `term`, if a live document holds it.
    fn known(&self, term: &str) -> Option<(u32, f32)> {
        let id = *self.vocabulary.get(term)?;
        let live = self.terms[id as usize].live as usize;
        (live > 0).then(|| (id, idf(self.slots.len, live)))
    }

    /// A plain list of terms, each on its own (no phrases, synonyms or
    /// fuzzy forms).
    pub fn resolve_terms(&self, query: &[String]) -> Resolved {
        Resolved {
            known: query.iter().filter_map(|term| self.known(term)).collect(),
            groups: None,
            average_length: self.average_length(),
        }
    }

    fn average_length(&self) -> f32 {
        self.total_length as f32 / self.slots.len.max(1) as f32
    }

    /// The query against this vocabulary: each group's exact way, its
    /// synonyms, its words' fuzzy forms (a typo or two away, for words of
    /// 5 or more characters) and compounds ("fork lift" / "forklift").
    /// A query that is only words, each matching itself, is resolved to
    /// the plain list the fast paths score.
    pub fn resolve(&self, query: &KeywordQuery) -> Resolved {
        let mut groups: Vec<ResolvedGroup> = Vec::with_capacity(query.groups.len());
        let mut index = 0;
        while index < query.groups.len() {
            let group = &query.groups[index];
            let single = |g: &crate::domain::keyword::Group| {
                g.terms.len() == 1 && g.phrase.is_none() && g.synonyms.is_empty()
            };
            // Two plain words a text may write as one ("fork lift").
            if let Some(next) = query
                .groups
                .get(index + 1)
                .filter(|n| single(group) && single(n))
            {
                let joined = format!("{}{}", group.terms[0], next.terms[0]);
                if let Some(compound) = self.known(&joined) {
                    let exact: Vec<(u32, f32)> = [&group.terms[0], &next.terms[0]]
                        .iter()
                        .filter_map(|t| self.known(t))
                        .collect();
                    let mut ways = vec![Way {
                        ids: vec![compound],
                        phrase: false,
                        weight: 1.0,
                        kind: WayKind::Synonym,
                        form: joined,
                    }];
                    if !exact.is_empty() {
                        ways.insert(
                            0,
                            Way {
                                ids: exact,
                                phrase: false,
                                weight: 1.0,
                                kind: WayKind::Exact,
                                form: format!("{} {}", group.terms[0], next.terms[0]),
                            },
                        );
                    }
                    groups.push(ResolvedGroup {
                        group: index,
                        text: format!("{} {}", group.terms[0], next.terms[0]),
                        ways,
                        required: false,
                    });
                    index += 2;
                    continue;
                }
            }
            groups.push(self.resolve_group(index, group));
            index += 1;
        }
        let plain = groups.iter().all(|g| {
            g.ways.len() <= 1
                && g.ways
                    .iter()
                    .all(|w| !w.phrase && w.kind == WayKind::Exact && w.weight == 1.0)
                && !g.required
        });
        let mut known: Vec<(u32, f32)> = Vec::new();
        for id in groups
            .iter()
            .flat_map(|g| g.ways.iter().filter(|w| w.kind == WayKind::Exact))
            .flat_map(|w| w.ids.iter().copied())
        {
            if !known.iter().any(|k| k.0 == id.0) {
                known.push(id);
            }
        }
        groups.retain(|g| !g.ways.is_empty() || g.required);
        Resolved {
            known,
            groups: (!plain).then_some(groups),
            average_length: self.average_length(),
        }
    }

    fn resolve_group(&self, index: usize, group: &crate::domain::keyword::Group) -> ResolvedGroup {
        let phrase = group.phrase.is_some();
        let mut ways = Vec::new();
        let exact: Vec<Option<(u32, f32)>> = group.terms.iter().map(|t| self.known(t)).collect();
        // A member of a synonym group is a phrase: "certified nursing
        // assistant" scores in full where it stands as written, and its
        // words apart score less than "CNA" would.
        let member = !phrase && group.terms.len() > 1 && !group.synonyms.is_empty();
        if member && exact.iter().all(Option::is_some) {
            ways.push(Way {
                ids: exact.iter().flatten().copied().collect(),
                phrase: true,
                weight: 1.0,
                kind: WayKind::Exact,
                form: group.text(),
            });
        }
        if !phrase || exact.iter().all(Option::is_some) {
            let ids: Vec<(u32, f32)> = exact.iter().flatten().copied().collect();
            if !ids.is_empty() {
                ways.push(Way {
                    ids,
                    phrase: phrase && group.terms.len() > 1,
                    weight: if member { LOOSE_WEIGHT } else { 1.0 },
                    kind: WayKind::Exact,
                    form: group.text(),
                });
            }
        }
        for synonym in &group.synonyms {
            let ids: Option<Vec<(u32, f32)>> = synonym.iter().map(|t| self.known(t)).collect();
            if let Some(ids) = ids {
                ways.push(Way {
                    ids,
                    phrase: synonym.len() > 1,
                    weight: 1.0,
                    kind: WayKind::Synonym,
                    form: synonym.join(" "),
                });
            }
        }
        if group.terms.len() == 1 && !phrase {
            let term = &group.terms[0];
            // Its idf caps its fuzzy forms' (a rare typo of a common word
            // must not outscore the word).
            let cap = exact[0].map_or(f32::INFINITY, |(_, idf)| idf);
            // A word many texts hold is spelled right: its typo forms are
            // not looked for (they would cost every such query the grouped
            // scoring path, measured at 100k workers in docs/benchmarks.md).
            let rare = exact[0].is_none_or(|(id, _)| {
                let most = FUZZY_RARE_HOLDERS.max(self.slots.len / 1000);
                self.terms[id as usize].live as usize <= most
            });
            for form in rare.then(|| self.fuzzy_forms(term)).unwrap_or_default() {
                if let Some((id, idf)) = self.known(&form) {
                    ways.push(Way {
                        ids: vec![(id, idf.min(cap))],
                        phrase: false,
                        weight: FUZZY_WEIGHT,
                        kind: WayKind::Fuzzy,
                        form,
                    });
                }
            }
            // A word a text may write as two ("forklift" / "fork lift").
            let chars: Vec<char> = term.chars().collect();
            if chars.len() >= 6 {
                for cut in 3..=chars.len() - 3 {
                    let (a, b): (String, String) =
                        (chars[..cut].iter().collect(), chars[cut..].iter().collect());
                    if let (Some(x), Some(y)) = (self.known(&a), self.known(&b)) {
                        ways.push(Way {
                            ids: vec![x, y],
                            phrase: true,
                            weight: 1.0,
                            kind: WayKind::Synonym,
                            form: format!("{a} {b}"),
                        });
                    }
                }
            }
        }
        ResolvedGroup {
            group: index,
            text: group.text(),
            ways,
            required: group.phrase == Some(Phrase::Quoted),
        }
    }

    /// Forms of `term` in the vocabulary within its typo budget: one edit
    /// (an insertion, deletion, substitution or swap of two neighbours)
    /// for 5 to 8 characters, two for 9 or more; the term itself excluded.
    fn fuzzy_forms(&self, term: &str) -> Vec<String> {
        use fst::{IntoStreamer, Streamer};
        let length = term.chars().count();
        let distance = match length {
            0..=4 => return Vec::new(),
            5..=8 => 1,
            _ => 2,
        };
        let mut forms: Vec<String> = Vec::new();
        let set = {
            let mut fuzzy = self.fuzzy.lock();
            let stale = self.added_terms > fuzzy.built_at
                && (fuzzy.set.is_none()
                    || self.vocabulary.len() < 4096
                    || self.added_terms - fuzzy.built_at >= self.vocabulary.len() / 100);
            if stale || fuzzy.set.is_none() {
                let mut words: Vec<&str> = self.vocabulary.keys().map(|k| &**k).collect();
                words.sort_unstable();
                fuzzy.set = fst::Set::from_iter(words).ok().map(std::sync::Arc::new);
                fuzzy.built_at = self.added_terms;
            }
            fuzzy.set.clone()
        };
        if let (Some(set), Ok(automaton)) = (set, fst::automaton::Levenshtein::new(term, distance))
        {
            let mut stream = set.search(automaton).into_stream();
            while let Some(key) = stream.next() {
                if let Ok(form) = std::str::from_utf8(key) {
                    if form != term {
                        forms.push(form.to_string());
                    }
                }
            }
        }
        // A swap of two neighbours is one typo ("forklfit"); Levenshtein
        // counts it as two.
        if distance == 1 {
            let chars: Vec<char> = term.chars().collect();
            for i in 0..chars.len() - 1 {
                if chars[i] == chars[i + 1] {
                    continue;
                }
                let mut swapped = chars.clone();
                swapped.swap(i, i + 1);
                let swapped: String = swapped.into_iter().collect();
                if self.vocabulary.contains_key(swapped.as_str()) && !forms.contains(&swapped) {
                    forms.push(swapped);
                }
            }
        }
        // The most common forms first, a few at most.
        forms.sort_by_key(|form| {
            std::cmp::Reverse(
                self.vocabulary
                    .get(form.as_str())
                    .map_or(0, |&id| self.terms[id as usize].live),
            )
        });
        forms.truncate(MAX_FUZZY_FORMS);
        forms
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
        if let Some(groups) = &query.groups {
            return best(self.top_grouped(query, groups, allowed, excluded), n);
        }
        if query.known.is_empty() {
            return Vec::new();
        }
        let scored: Vec<Scored> = match allowed {
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
        best(scored, n)
    }

    /// Every candidate of a query with groups, scored in full: the
    /// allowed ones, or the holders of each way's drawing terms (a
    /// phrase's, a synonym's or a fuzzy form's rarest term, since a match
    /// needs all of them; each of the query's own words, but for the
    /// common ones past a small corpus, as in the plain path).
    fn top_grouped(
        &self,
        query: &Resolved,
        groups: &[ResolvedGroup],
        allowed: Option<&[u64]>,
        excluded: &dyn Fn(u64) -> bool,
    ) -> Vec<Scored> {
        let scored_doc = |doc: &Doc| {
            let score = doc.score(query);
            (score > 0.0).then_some(Scored {
                label: doc.label,
                score,
            })
        };
        match allowed {
            Some(labels) if labels.len() <= FEW_CANDIDATES => {
                return labels
                    .iter()
                    .filter_map(|&label| scored_doc(self.doc(label)?))
                    .collect()
            }
            Some(labels) => return self.merged_grouped(query, groups, labels),
            None => {}
        }
        let documents = self.slots.len;
        let live = |id: u32| self.terms[id as usize].live;
        let common = |id: u32| {
            documents >= DRAW_ALL_BELOW && live(id) as f32 > COMMON_SHARE * documents as f32
        };
        let mut drawing: Vec<u32> = Vec::new();
        let mut common_ones: Vec<u32> = Vec::new();
        for way in groups.iter().flat_map(|g| &g.ways) {
            if way.phrase || way.kind != WayKind::Exact {
                if let Some(&(id, _)) = way.ids.iter().min_by_key(|(id, _)| live(*id)) {
                    drawing.push(id);
                }
            } else {
                for &(id, _) in &way.ids {
                    if common(id) {
                        common_ones.push(id);
                    } else {
                        drawing.push(id);
                    }
                }
            }
        }
        if drawing.is_empty() {
            drawing.extend(common_ones.iter().min_by_key(|id| live(**id)));
        }
        let mut slots: Vec<u32> = drawing
            .iter()
            .flat_map(|&id| self.terms[id as usize].postings.iter().map(|p| p.0))
            .collect();
        slots.sort_unstable();
        slots.dedup();
        slots
            .into_iter()
            .filter_map(|slot| self.docs[slot as usize].as_ref())
            .filter(|doc| !excluded(doc.label))
            .filter_map(scored_doc)
            .collect()
    }

    /// The scores of many candidates for a query with groups, equal to
    /// [`Doc::score`]'s: per way, each of its terms' postings walked beside
    /// the candidates' slots as in [`Self::merged`], a phrase's order
    /// checked only in the texts that hold all its words. A role filter's
    /// ~5,000 candidates scored one by one cost a random read each.
    fn merged_grouped(
        &self,
        query: &Resolved,
        groups: &[ResolvedGroup],
        labels: &[u64],
    ) -> Vec<Scored> {
        let mut candidates: Vec<(u32, u64)> = labels
            .iter()
            .filter_map(|&label| Some((self.slots.get(label)?, label)))
            .collect();
        candidates.sort_unstable();
        let n = candidates.len();
        let mut totals = vec![0f32; n];
        let mut missing = vec![false; n];
        let mut best = vec![0f32; n];
        let mut sums = vec![0f32; n];
        let mut hits = vec![0u32; n];
        for group in groups {
            best.fill(0.0);
            for way in &group.ways {
                sums.fill(0.0);
                hits.fill(0);
                for &(id, idf) in &way.ids {
                    let postings = &self.terms[id as usize].postings;
                    let mut at = 0;
                    for (i, &(slot, _)) in candidates.iter().enumerate() {
                        at += gallop(&postings[at..], |p| p.0 < slot);
                        let Some(&(found, tf)) = postings.get(at) else {
                            break;
                        };
                        if found == slot {
                            if let Some(doc) = &self.docs[slot as usize] {
                                sums[i] += term_score(
                                    idf,
                                    u32::from(tf),
                                    doc.length,
                                    query.average_length,
                                );
                                hits[i] += 1;
                            }
                        }
                    }
                }
                let needs_all = way.phrase || way.kind != WayKind::Exact;
                for i in 0..n {
                    if hits[i] == 0 || (needs_all && hits[i] as usize != way.ids.len()) {
                        continue;
                    }
                    let score = match &self.docs[candidates[i].0 as usize] {
                        Some(doc) if way.phrase => way.score(doc, query.average_length).0,
                        _ => way.weight * sums[i],
                    };
                    best[i] = best[i].max(score);
                }
            }
            for i in 0..n {
                if best[i] > 0.0 {
                    totals[i] += best[i];
                } else if group.required {
                    missing[i] = true;
                }
            }
        }
        candidates
            .into_iter()
            .zip(totals)
            .zip(missing)
            .filter(|((_, score), missing)| *score > 0.0 && !missing)
            .map(|(((_, label), score), _)| Scored { label, score })
            .collect()
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

    /// What the document under `label` matched of `query` (resolved as
    /// `resolved`): the query's terms it holds, and per group how.
    pub fn matched(&self, query: &KeywordQuery, resolved: &Resolved, label: u64) -> Matched {
        let mut matched = Matched::default();
        let Some(doc) = self.doc(label) else {
            return matched;
        };
        for group in &query.groups {
            for term in &group.terms {
                let holds = self
                    .vocabulary
                    .get(term.as_str())
                    .is_some_and(|&id| doc.frequency(id).is_some());
                if holds && !matched.terms.contains(term) {
                    matched.terms.push(term.clone());
                }
            }
        }
        for group in resolved.groups.iter().flatten() {
            let Some(source) = query.groups.get(group.group) else {
                continue;
            };
            let mut best: Option<(&Way, f32, PhraseFit)> = None;
            for way in &group.ways {
                let (score, fit) = way.score(doc, resolved.average_length);
                if score > 0.0 && best.is_none_or(|(_, s, _)| score > s) {
                    best = Some((way, score, fit));
                }
            }
            if let Some(phrase) = source.phrase {
                let fit = match best {
                    Some((way, _, fit)) if way.kind == WayKind::Exact => fit,
                    _ => PhraseFit::None,
                };
                matched.phrases.push(PhraseMatch {
                    phrase: group.text.clone(),
                    quoted: phrase == Phrase::Quoted,
                    fit,
                });
            }
            let query_form = group.text.clone();
            match best {
                Some((way, _, _)) if way.kind == WayKind::Fuzzy => {
                    matched.fuzzy_terms.push(FormMatch {
                        query: query_form,
                        matched: way.form.clone(),
                    })
                }
                Some((way, _, _)) if way.kind == WayKind::Synonym => {
                    matched.synonyms.push(FormMatch {
                        query: query_form,
                        matched: way.form.clone(),
                    })
                }
                _ => {}
            }
        }
        matched
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::keyword::{query_terms, terms, Synonyms};

    fn labels(index: &KeywordIndex, query: &str, allowed: Option<&[u64]>) -> Vec<u64> {
        let resolved = index.resolve_terms(&query_terms(query, Analysis::CURRENT));
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
                let resolved = index.resolve_terms(&query_terms(query, Analysis::CURRENT));
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
        let resolved = index.resolve_terms(&query_terms("OSHA 30", Analysis::CURRENT));
        let score = index.score(&resolved, 3).unwrap();
        let top = index.top(&resolved, None, &|_| false, 1);
        assert_eq!(top[0].score, score, "top and score agree");
        let query = KeywordQuery::parse("osha tig 30", Analysis::CURRENT, &Synonyms::default());
        let resolved = index.resolve(&query);
        assert_eq!(
            index.matched(&query, &resolved, 2).terms,
            ["osha", "tig", "30"]
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
            let resolved = index.resolve_terms(&query_terms(query, Analysis::CURRENT));
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
                &index.resolve_terms(&query_terms(query, Analysis::CURRENT)),
                None,
                &|_| false,
                20,
            );
            let b = fresh.top(
                &fresh.resolve_terms(&query_terms(query, Analysis::CURRENT)),
                None,
                &|_| false,
                20,
            );
            assert_eq!(a, b, "{query}");
        }
    }

    fn grouped(index: &KeywordIndex, query: &str, synonyms: &Synonyms) -> Vec<(u64, f32)> {
        let query = KeywordQuery::parse(query, Analysis::CURRENT, synonyms);
        let resolved = index.resolve(&query);
        index
            .top(&resolved, None, &|_| false, 10)
            .into_iter()
            .map(|s| (s.label, s.score))
            .collect()
    }

    fn ranked(index: &KeywordIndex, query: &str) -> Vec<u64> {
        grouped(index, query, &Synonyms::default())
            .into_iter()
            .map(|(label, _)| label)
            .collect()
    }

    #[test]
    fn a_phrase_ranks_a_whole_segment_above_a_longer_name_and_needs_its_words_in_order() {
        let mut index = KeywordIndex::new(Analysis::CURRENT);
        index.insert(
            1,
            "HVAC technician. Certifications: EPA 608 Universal, NATE Certification.",
        );
        index.insert(2, "HVAC technician. Certifications: OSHA 10, EPA 608.");
        index.insert(
            3,
            "Plumber. Certifications: EPA Lead-Safe. 608 hours logged.",
        );
        index.insert(4, "Welder. Certifications: OSHA 30.");
        // Quoted: required; the whole certification first, the longer
        // name at half; the words apart do not match.
        assert_eq!(ranked(&index, "\"EPA 608\""), [2, 1]);
        // Unquoted, a code: the same order, and "epa" or "608" alone
        // scores nothing for it.
        assert_eq!(ranked(&index, "EPA 608"), [2, 1]);
        assert_eq!(ranked(&index, "OSHA 30"), [4]);
        let query = KeywordQuery::parse("\"EPA 608\"", Analysis::CURRENT, &Synonyms::default());
        let resolved = index.resolve(&query);
        let fit = |label| index.matched(&query, &resolved, label).phrases[0].fit;
        assert_eq!(
            (fit(2), fit(1), fit(3)),
            (PhraseFit::Whole, PhraseFit::Part, PhraseFit::None)
        );
        // A quoted phrase no text holds matches nothing.
        assert!(ranked(&index, "\"608 EPA\" technician").is_empty());
    }

    #[test]
    fn a_typo_finds_the_word_below_its_exact_holders_and_says_so() {
        let mut index = KeywordIndex::new(Analysis::CURRENT);
        for label in 0..20u64 {
            index.insert(label, "Forklift operator, warehouse");
        }
        index.insert(100, "Typed by hand: forklfit driver");
        index.insert(101, "Warehouse associate");
        let found = ranked(&index, "forklfit");
        assert_eq!(found[0], 100, "the exact form first: {found:?}");
        assert_eq!(found.len(), 10);
        assert!(found[1..].iter().all(|l| *l < 20), "{found:?}");
        let query = KeywordQuery::parse("forklfit", Analysis::CURRENT, &Synonyms::default());
        let resolved = index.resolve(&query);
        let matched = index.matched(&query, &resolved, 3);
        assert_eq!(
            matched.fuzzy_terms,
            [FormMatch {
                query: "forklfit".into(),
                matched: "forklift".into()
            }]
        );
        assert!(index.matched(&query, &resolved, 100).fuzzy_terms.is_empty());
        // Short words get no typo budget; long ones two.
        index.insert(200, "cdl driver, hazmat endorsement, experienced");
        assert!(ranked(&index, "cdk").is_empty());
        assert_eq!(ranked(&index, "experinced"), [200]);
        assert_eq!(
            ranked(&index, "experiancd"),
            [200],
            "two edits at 10 characters"
        );
    }

    #[test]
    fn synonyms_and_compounds_match_the_other_way_of_saying_it() {
        let mut index = KeywordIndex::new(Analysis::CURRENT);
        index.insert(1, "Certified nursing assistant, night shift");
        index.insert(2, "CNA with two years in memory care");
        index.insert(3, "Nursing home cook, certified food handler");
        index.insert(4, "Forklift operator");
        index.insert(5, "Lift truck and fork lift experience");
        let synonyms = Synonyms::new(
            &[vec![
                "CNA".to_string(),
                "certified nursing assistant".to_string(),
            ]],
            Analysis::CURRENT,
        );
        let labels = |q: &str| -> Vec<u64> {
            grouped(&index, q, &synonyms)
                .into_iter()
                .map(|x| x.0)
                .collect()
        };
        let cna = labels("cna");
        assert!(
            cna.contains(&1) && cna.contains(&2) && !cna.contains(&3),
            "{cna:?}"
        );
        let spelled = labels("certified nursing assistant");
        assert_eq!(
            spelled[..2]
                .iter()
                .copied()
                .collect::<std::collections::BTreeSet<_>>(),
            [1, 2].into()
        );
        // "fork lift" finds "forklift", and "forklift" finds "fork lift".
        let fork_lift = labels("fork lift");
        assert_eq!(
            fork_lift[..2]
                .iter()
                .copied()
                .collect::<std::collections::BTreeSet<_>>(),
            [4, 5].into()
        );
        assert!(labels("forklift").contains(&5));
        let query = KeywordQuery::parse("cna", Analysis::CURRENT, &synonyms);
        let resolved = index.resolve(&query);
        assert_eq!(
            index.matched(&query, &resolved, 1).synonyms,
            [FormMatch {
                query: "cna".into(),
                matched: "certifi nurs assist".into()
            }]
        );
    }

    /// A query with groups (phrases, typos, synonyms) drawn through the
    /// postings gives the same top hits and scores as scoring every
    /// document in full.
    #[test]
    fn grouped_queries_equal_scoring_every_document() {
        let words = [
            "epa", "608", "osha", "30", "forklift", "operator", "welder", "night", "shift",
        ];
        let mut rng = Rng(11);
        let mut index = KeywordIndex::new(Analysis::CURRENT);
        for label in 0..5000u64 {
            let length = 2 + rng.below(8) as usize;
            let text: Vec<&str> = (0..length)
                .map(|_| {
                    let w = words[rng.below(words.len() as u64) as usize];
                    if rng.below(9) == 0 {
                        ","
                    } else {
                        w
                    }
                })
                .collect();
            index.insert(label, &text.join(" ").replace(" ,", ","));
        }
        let synonyms = Synonyms::new(
            &[vec!["welder".to_string(), "night shift".to_string()]],
            Analysis::CURRENT,
        );
        for query in [
            "\"epa 608\"",
            "osha 30 forklift",
            "forklfit operater",
            "welder",
            "shift",
        ] {
            let parsed = KeywordQuery::parse(query, Analysis::CURRENT, &synonyms);
            let resolved = index.resolve(&parsed);
            // No filter, a filter of many candidates, one of a few.
            let many: Vec<u64> = (0..5000u64).filter(|l| l % 3 != 0).collect();
            let few: Vec<u64> = (0..5000u64).filter(|l| l % 97 == 0).collect();
            for allowed in [None, Some(&many[..]), Some(&few[..])] {
                let top = index.top(&resolved, allowed, &|_| false, 10);
                let mut all: Vec<Scored> = (0..5000u64)
                    .filter(|label| allowed.is_none_or(|a| a.contains(label)))
                    .filter_map(|label| {
                        let score = index.score(&resolved, label)?;
                        (score > 0.0).then_some(Scored { label, score })
                    })
                    .collect();
                all.sort_by(|a, b| b.score.total_cmp(&a.score).then(b.label.cmp(&a.label)));
                all.truncate(10);
                assert_eq!(top, all, "{query} {:?}", allowed.map(<[u64]>::len));
                assert!(!top.is_empty(), "{query}");
            }
        }
    }
}
