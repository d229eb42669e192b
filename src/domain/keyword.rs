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

/// The terms of a text, in order, repeats kept: lower-cased runs of
/// letters and digits, stemmed by `analysis` as the built-in embedder
/// stems, so "operators" finds "operator" (and, with `v2`, "nurses" a
/// nurse). A number keeps its decimal point or
/// thousands comma ("$30.25/hr" is `30.25`, `hr`), so "OSHA 30" (`osha`,
/// `30`) does not match every rate of thirty-something dollars. "CDL-A" is
/// `cdl`, `a`.
pub fn terms(text: &str, analysis: Analysis) -> Vec<String> {
    let chars: Vec<char> = text.chars().collect();
    let mut out = Vec::new();
    let mut word = String::new();
    for (i, &c) in chars.iter().enumerate() {
        let inside_number = (c == '.' || c == ',')
            && i > 0
            && chars[i - 1].is_ascii_digit()
            && chars.get(i + 1).is_some_and(|n| n.is_ascii_digit());
        if c.is_alphanumeric() || inside_number {
            word.extend(c.to_lowercase());
        } else if !word.is_empty() {
            out.push(analysis.stem(&word).into_owned());
            word.clear();
        }
    }
    if !word.is_empty() {
        out.push(analysis.stem(&word).into_owned());
    }
    out
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
    pub keyword_weight: f32,
    pub fused_distance: f32,
    /// 1-based rank by fused distance, before any playbook boost.
    pub fused_rank: usize,
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
