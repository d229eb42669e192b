//! Keyword retrieval rules that need no I/O: how a text becomes terms,
//! how BM25 scores a document, and how a keyword score and a semantic
//! distance fuse into the one distance a hybrid search ranks by.
//!
//! The fusion is a weighted sum of distances, chosen over reciprocal rank
//! fusion because every hit can then say exactly where its distance comes
//! from (`explain`), and because the playbook boost multiplies a distance:
//!
//! ```text
//! keyword_distance = reference / (reference + keyword_score)   (1: no term matched)
//! fused_distance   = (1 − w) · semantic_distance + w · keyword_distance
//! ```
//!
//! `reference` is the sum of the idf of the query's terms: the BM25 score
//! of a text holding each of them once, at average length (which so gets
//! 0.5). It depends on the query and the corpus, never on which items are
//! candidates, so a filter only removes hits and never reorders the rest.
//! The keyword side spans (0, 1] like a cosine distance. A semantic search
//! is the case `w = 0`, a keyword search `w = 1`.

use serde::{Deserialize, Serialize};

use super::analysis::Analysis;

/// BM25's term-frequency saturation.
pub const BM25_K1: f32 = 1.2;
/// BM25's document-length normalisation.
pub const BM25_B: f32 = 0.75;
/// Distinct terms a keyword query may hold.
pub const MAX_QUERY_TERMS: usize = 64;

/// Which side of an index a search asks.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Hash,
    Serialize,
    Deserialize,
    Default,
    utoipa::ToSchema,
    schemars::JsonSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum SearchMode {
    /// Nearest vectors only.
    #[default]
    Semantic,
    /// BM25 over the items' texts only; items matching no term are not hits.
    Keyword,
    /// Both, fused by a weighted sum of distances.
    Hybrid,
}

impl std::fmt::Display for SearchMode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            SearchMode::Semantic => "semantic",
            SearchMode::Keyword => "keyword",
            SearchMode::Hybrid => "hybrid",
        })
    }
}

impl SearchMode {
    /// The keyword weight this mode uses, given the hybrid one.
    pub fn weight(self, hybrid: f32) -> f32 {
        match self {
            SearchMode::Semantic => 0.0,
            SearchMode::Keyword => 1.0,
            SearchMode::Hybrid => hybrid,
        }
    }

    pub fn uses_keywords(self) -> bool {
        self != SearchMode::Semantic
    }

    pub fn uses_vectors(self) -> bool {
        self != SearchMode::Keyword
    }
}

/// One token of a text: a term, or the break between two segments.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Token {
    Term(String),
    /// Punctuation other than a hyphen or an apostrophe (",", ".", ";",
    /// "/", a bracket…) between two terms: "EPA 608, OSHA 10" is two
    /// segments, so the phrase "EPA 608" fills the first one whole.
    Break,
}

/// The tokens of a text, in order: lower-cased runs of letters and
/// digits, stemmed by `analysis` as the built-in embedder stems (so
/// "operators" finds "operator" and, with `v2`, "nurses" a nurse), with
/// one [`Token::Break`] wherever a segment ends. A number keeps its
/// decimal point or thousands comma ("$30.25/hr" is `30.25`, `hr`), so
/// "OSHA 30" (`osha`, `30`) does not match every rate of thirty-something
/// dollars. "CDL-A" is `cdl`, `a`.
pub fn tokens(text: &str, analysis: Analysis) -> Vec<Token> {
    let chars: Vec<char> = text.chars().collect();
    let mut out = Vec::new();
    let mut word = String::new();
    let mut pending_break = false;
    for (i, &c) in chars.iter().enumerate() {
        let inside_number = (c == '.' || c == ',')
            && i > 0
            && chars[i - 1].is_ascii_digit()
            && chars.get(i + 1).is_some_and(|n| n.is_ascii_digit());
        if c.is_alphanumeric() || inside_number {
            if pending_break && !out.is_empty() {
                out.push(Token::Break);
            }
            pending_break = false;
            word.extend(c.to_lowercase());
            continue;
        }
        if !word.is_empty() {
            out.push(Token::Term(analysis.stem(&word).into_owned()));
            word.clear();
        }
        if !(c.is_whitespace() || c == '-' || c == '\'' || c == '\u{2019}') {
            pending_break = true;
        }
    }
    if !word.is_empty() {
        out.push(Token::Term(analysis.stem(&word).into_owned()));
    }
    out
}

/// The terms of a text, in order, repeats kept (its [`tokens`] without
/// the breaks).
pub fn terms(text: &str, analysis: Analysis) -> Vec<String> {
    tokens(text, analysis)
        .into_iter()
        .filter_map(|token| match token {
            Token::Term(term) => Some(term),
            Token::Break => None,
        })
        .collect()
}

/// The distinct terms of a query, in first-seen order, at most
/// [`MAX_QUERY_TERMS`].
pub fn query_terms(text: &str, analysis: Analysis) -> Vec<String> {
    let mut distinct: Vec<String> = Vec::new();
    for term in terms(text, analysis) {
        if !distinct.contains(&term) {
            distinct.push(term);
        }
        if distinct.len() == MAX_QUERY_TERMS {
            break;
        }
    }
    distinct
}

/// Synonym groups per member, analysed: each member is the term sequence
/// a text may say it with ("cna"; "certifi", "nurs", "assist").
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Synonyms {
    groups: Vec<Vec<Vec<String>>>,
}

/// Synonym groups a configuration or an index may hold, and their members.
pub const MAX_SYNONYM_GROUPS: usize = 1024;
pub const MAX_SYNONYM_MEMBERS: usize = 16;
pub const MAX_SYNONYM_CHARS: usize = 64;

impl Synonyms {
    /// Analyses `groups` (each a list of equivalent words or phrases).
    /// Members with no term are left out, as are groups left with fewer
    /// than two.
    pub fn new<'a>(groups: impl IntoIterator<Item = &'a Vec<String>>, analysis: Analysis) -> Self {
        let groups = groups
            .into_iter()
            .map(|group| {
                let mut members: Vec<Vec<String>> = Vec::new();
                for member in group {
                    let terms = terms(member, analysis);
                    if !terms.is_empty() && !members.contains(&terms) {
                        members.push(terms);
                    }
                }
                members
            })
            .filter(|members| members.len() > 1)
            .collect();
        Self { groups }
    }

    pub fn is_empty(&self) -> bool {
        self.groups.is_empty()
    }

    /// The longest member starting at `terms[0]`, with the other members
    /// of its groups.
    fn longest_at(&self, terms: &[String]) -> Option<(usize, Vec<Vec<String>>)> {
        let mut best: Option<(usize, Vec<Vec<String>>)> = None;
        for group in &self.groups {
            for member in group {
                let fits = member.len() <= terms.len() && terms[..member.len()] == member[..];
                if !fits || best.as_ref().is_some_and(|(len, _)| *len > member.len()) {
                    continue;
                }
                let others = group.iter().filter(|m| *m != member).cloned();
                match &mut best {
                    Some((len, alternatives)) if *len == member.len() => {
                        alternatives.extend(others)
                    }
                    _ => best = Some((member.len(), others.collect())),
                }
            }
        }
        best
    }
}

/// Checks configured or requested synonym groups: their number and
/// sizes are bounded, and no member is empty.
pub fn validate_synonyms(groups: &[Vec<String>], field: &str) -> Result<(), String> {
    if groups.len() > MAX_SYNONYM_GROUPS {
        return Err(format!(
            "{field}: at most {MAX_SYNONYM_GROUPS} groups, got {}",
            groups.len()
        ));
    }
    for (i, group) in groups.iter().enumerate() {
        if !(2..=MAX_SYNONYM_MEMBERS).contains(&group.len()) {
            return Err(format!(
                "{field}[{i}]: a group has 2 to {MAX_SYNONYM_MEMBERS} members, got {}",
                group.len()
            ));
        }
        for (j, member) in group.iter().enumerate() {
            let chars = member.chars().count();
            if member.trim().is_empty()
                || chars > MAX_SYNONYM_CHARS
                || member.chars().any(char::is_control)
            {
                return Err(format!(
                    "{field}[{i}][{j}]: a member is 1 to {MAX_SYNONYM_CHARS} printable characters"
                ));
            }
        }
    }
    Ok(())
}

/// How a group's words must appear.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Phrase {
    /// Quoted in the query: a text without the words adjacent and in
    /// order does not match it, and in keyword mode is not a hit.
    Quoted,
    /// A code ("EPA 608", "OSHA 30": a word, then a number): its words
    /// count only where they stand adjacent and in order.
    Code,
}

/// One unit a keyword query scores: a word, a phrase or a code, with the
/// other ways a text may say it (synonyms). A text scores the group's
/// best way.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Group {
    /// The query's own terms.
    pub terms: Vec<String>,
    pub phrase: Option<Phrase>,
    /// Synonyms' term sequences (adjacent and in order when longer than one).
    pub synonyms: Vec<Vec<String>>,
}

impl Group {
    /// The group as its query wrote it, normalised ("epa 608").
    pub fn text(&self) -> String {
        self.terms.join(" ")
    }
}

/// A keyword query: its groups, in query order. Word forms, fuzzy forms
/// and compounds are found when an index resolves it against its
/// vocabulary.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct KeywordQuery {
    pub groups: Vec<Group>,
}

impl KeywordQuery {
    /// Parses `text`: a part in double quotes is a phrase; a word followed
    /// by a number is a code; a run of words that is a member of a
    /// synonym group brings the group's other members. At most
    /// [`MAX_QUERY_TERMS`] distinct terms count.
    pub fn parse(text: &str, analysis: Analysis, synonyms: &Synonyms) -> Self {
        let mut groups: Vec<Group> = Vec::new();
        let mut distinct: Vec<String> = Vec::new();
        let parts: Vec<&str> = text.split('"').collect();
        for (i, part) in parts.iter().enumerate() {
            // Odd parts are inside quotes, unless the last quote is unclosed.
            let quoted = i % 2 == 1 && i + 1 < parts.len();
            let terms = terms(part, analysis);
            let mut found: Vec<Group> = Vec::new();
            if quoted && terms.len() > 1 {
                found.push(Group {
                    terms,
                    phrase: Some(Phrase::Quoted),
                    synonyms: Vec::new(),
                });
            } else {
                let mut at = 0;
                while at < terms.len() {
                    let rest = &terms[at..];
                    let (len, phrase, others) = match synonyms.longest_at(rest) {
                        Some((len, others)) => (len, None, others),
                        None if rest.len() > 1 && is_word(&rest[0]) && is_number(&rest[1]) => {
                            (2, Some(Phrase::Code), Vec::new())
                        }
                        None => (1, None, Vec::new()),
                    };
                    found.push(Group {
                        terms: rest[..len].to_vec(),
                        phrase,
                        synonyms: others,
                    });
                    at += len;
                }
            }
            for group in found {
                if groups.contains(&group) {
                    continue;
                }
                let new_terms = group.terms.iter().filter(|t| !distinct.contains(t)).count();
                if distinct.len() + new_terms > MAX_QUERY_TERMS {
                    return Self { groups };
                }
                for term in &group.terms {
                    if !distinct.contains(term) {
                        distinct.push(term.clone());
                    }
                }
                groups.push(group);
            }
        }
        Self { groups }
    }

    pub fn is_empty(&self) -> bool {
        self.groups.is_empty()
    }

    /// Roughly what it holds, in bytes (for the result cache's budget).
    pub fn bytes(&self) -> usize {
        self.groups
            .iter()
            .flat_map(|g| g.terms.iter().chain(g.synonyms.iter().flatten()))
            .map(|t| t.len() + 24)
            .sum()
    }
}

fn is_word(term: &str) -> bool {
    term.chars().all(char::is_alphabetic)
}

fn is_number(term: &str) -> bool {
    term.chars().next().is_some_and(|c| c.is_ascii_digit())
        && term
            .chars()
            .all(|c| c.is_ascii_digit() || c == '.' || c == ',')
}

/// BM25's inverse document frequency (the "plus one" form: never negative).
pub fn idf(documents: usize, containing: usize) -> f32 {
    let n = documents as f32;
    let df = containing as f32;
    (1.0 + (n - df + 0.5) / (df + 0.5)).ln()
}

/// One term's BM25 contribution to one document.
pub fn term_score(idf: f32, tf: u32, length: u32, average_length: f32) -> f32 {
    let tf = tf as f32;
    let norm = 1.0 - BM25_B + BM25_B * length as f32 / average_length.max(1e-6);
    idf * tf * (BM25_K1 + 1.0) / (tf + BM25_K1 * norm)
}

/// `reference / (reference + score)`: 1 when no term matched, 0.5 for a
/// text holding each query term once at average length, towards 0 above.
pub fn keyword_distance(score: f32, reference: f32) -> f32 {
    if score > 0.0 && reference > 0.0 {
        reference / (reference + score)
    } else {
        1.0
    }
}

/// The distance a search ranks by. In keyword mode there is no semantic
/// distance (`None`) and the weight is 1.
pub fn fused_distance(semantic: Option<f32>, keyword: f32, weight: f32) -> f32 {
    (1.0 - weight) * semantic.unwrap_or(0.0) + weight * keyword
}

/// Why a hit ranks where it does (`explain: true`). The reported distance
/// is `fused_distance`, which is
/// `(1 − keyword_weight) · semantic_distance + keyword_weight · keyword_distance`,
/// with `keyword_distance = keyword_reference / (keyword_reference + keyword_score)`
/// (1 when `keyword_score` is 0).
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct HitExplain {
    pub mode: SearchMode,
    /// The metric's distance between the query and the item's vector;
    /// null in keyword mode.
    pub semantic_distance: Option<f32>,
    /// 1-based rank among the semantic candidates; null if not among them.
    pub semantic_rank: Option<usize>,
    /// The item's BM25 score for the query's terms (0: none matched).
    pub keyword_score: f32,
    /// The sum of the idf of the query's terms (the normaliser).
    pub keyword_reference: f32,
    pub keyword_distance: f32,
    /// 1-based rank among the keyword candidates; null if not among them.
    pub keyword_rank: Option<usize>,
    /// The query's terms the item's text holds (as normalised).
    pub matched_terms: Vec<String>,
    /// Each phrase or code of the query, and how the text holds it.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub phrases: Vec<PhraseMatch>,
    /// Words of the query the text holds only in a form one or two typos
    /// away (scored at a quarter at most of an exact match).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub fuzzy_terms: Vec<FormMatch>,
    /// Words of the query the text holds as a synonym, or as a compound
    /// ("fork lift" as "forklift").
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub synonyms: Vec<FormMatch>,
    pub keyword_weight: f32,
    pub fused_distance: f32,
    /// 1-based rank by fused distance, before any playbook boost.
    pub fused_rank: usize,
}

/// How a text holds one of the query's phrases or codes.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct PhraseMatch {
    /// The phrase, normalised ("epa 608").
    pub phrase: String,
    /// Quoted in the query (required) rather than a code.
    pub quoted: bool,
    /// `whole`: it fills a segment of the text on its own ("EPA 608, …"),
    /// scored in full; `part`: it starts or ends a longer one ("EPA 608
    /// Universal"), scored at half; `none`: its words are not adjacent in
    /// order, so they score nothing.
    pub fit: PhraseFit,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum PhraseFit {
    None,
    Part,
    Whole,
}

/// A word (or words) of the query and the form the text held instead.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct FormMatch {
    pub query: String,
    pub matched: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exact_codes_become_terms_that_match_their_documents() {
        for analysis in [Analysis::V1, Analysis::V2] {
            assert_eq!(
                terms("CDL-A, OSHA 30", analysis),
                ["cdl", "a", "osha", "30"]
            );
            assert_eq!(
                terms("at $30.25/hr, 1,200 hours.", analysis),
                ["at", "30.25", "hr", "1,200", "hour"]
            );
            let many: String = (0..100).map(|i| format!("t{i} ")).collect();
            assert_eq!(query_terms(&many, analysis).len(), MAX_QUERY_TERMS);
        }
        assert_eq!(
            query_terms("welders Welder welding", Analysis::V1),
            ["weld"]
        );
        assert_eq!(query_terms("nurses Nurse nursing", Analysis::V2), ["nurs"]);
    }

    #[test]
    fn rarer_terms_and_more_occurrences_score_higher() {
        assert!(idf(1000, 3) > idf(1000, 300));
        assert!(idf(1000, 1000) > 0.0, "never negative");
        let rare = idf(1000, 3);
        assert!(term_score(rare, 2, 10, 10.0) > term_score(rare, 1, 10, 10.0));
        // A longer document dilutes the same occurrence.
        assert!(term_score(rare, 1, 10, 10.0) > term_score(rare, 1, 40, 10.0));
    }

    #[test]
    fn the_fused_distance_is_the_weighted_sum() {
        assert_eq!(keyword_distance(5.0, 5.0), 0.5);
        assert_eq!(keyword_distance(15.0, 5.0), 0.25);
        assert_eq!(keyword_distance(0.0, 5.0), 1.0);
        assert_eq!(keyword_distance(3.0, 0.0), 1.0);
        let fused = fused_distance(Some(0.4), keyword_distance(5.0, 5.0), 0.3);
        assert!((fused - (0.7 * 0.4 + 0.3 * 0.5)).abs() < 1e-6);
        assert_eq!(
            fused_distance(Some(0.4), 0.9, SearchMode::Semantic.weight(0.3)),
            0.4
        );
        assert_eq!(
            fused_distance(None, 0.25, SearchMode::Keyword.weight(0.3)),
            0.25
        );
    }
}
