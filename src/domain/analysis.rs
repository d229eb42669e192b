//! How a word becomes the form search compares: the one rule BM25 and the
//! built-in embedder share, versioned because stored vectors and keyword
//! indexes depend on it.
//!
//! - `v1`, the first analysis: a light suffix stripper. It folds
//!   "operators" into "operator" but treats a word and its plural
//!   differently when the plural adds only "s" to an "e" ("nurse" stays,
//!   "nurses" becomes "nurs"), so "nurses" never found a nurse.
//! - `v2`, the current one: Snowball English (Porter 2, through `frostem`):
//!   "nurse", "nurses" and "nursing" are all "nurs"; "license",
//!   "licensed" and "licenses" are all "licens".
//!
//! An index records the analysis its texts were indexed and embedded with
//! (definitions written before it have `v1`), answers with it until it is
//! reindexed, and says in its info when it is not the current one.

use std::borrow::Cow;

use serde::{Deserialize, Serialize};

#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Hash,
    Default,
    Serialize,
    Deserialize,
    utoipa::ToSchema,
    schemars::JsonSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum Analysis {
    /// The light suffix stripper (indexes written before analysis was
    /// versioned).
    #[default]
    V1,
    /// Snowball English.
    V2,
}

impl Analysis {
    /// What new indexes and the embedder's default model use.
    pub const CURRENT: Analysis = Analysis::V2;

    /// The stem of one lower-cased word.
    pub fn stem(self, word: &str) -> Cow<'_, str> {
        match self {
            Analysis::V1 => Cow::Borrowed(strip_suffix(word)),
            Analysis::V2 => {
                // Snowball's English stemmer leaves words of one or two
                // letters alone; digits and codes ("608", "cdl") pass through.
                frostem::Stemmer::new(frostem::Algorithm::English).stem(word)
            }
        }
    }

    /// The built-in embedder's model name with this analysis.
    pub fn hash_model(self) -> &'static str {
        match self {
            Analysis::V1 => "lakehouse-hash-v1",
            Analysis::V2 => "lakehouse-hash-v2",
        }
    }

    /// The analysis of a built-in model name (`None`: not a built-in model).
    pub fn of_hash_model(model: &str) -> Option<Analysis> {
        [Analysis::V1, Analysis::V2]
            .into_iter()
            .find(|a| a.hash_model() == model)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Analysis::V1 => "v1",
            Analysis::V2 => "v2",
        }
    }
}

/// `v1`: strips the first matching suffix when three characters remain.
fn strip_suffix(word: &str) -> &str {
    const SUFFIXES: [&str; 9] = [
        "ations", "ation", "ings", "ing", "ers", "er", "es", "ed", "s",
    ];
    for suffix in SUFFIXES {
        if let Some(stripped) = word.strip_suffix(suffix) {
            if stripped.chars().count() >= 3 {
                return stripped;
            }
        }
    }
    word
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn v2_folds_the_forms_a_coordinator_types() {
        let v2 = Analysis::V2;
        for (forms, _why) in [
            (&["nurse", "nurses", "nursing"][..], "plural and gerund"),
            (&["machine", "machines"][..], "plural"),
            (
                &["license", "licensed", "licenses", "licensing"][..],
                "verb forms",
            ),
            (&["operator", "operators"][..], "agent plural"),
            (&["welder", "welders"][..], "agent plural"),
            (&["certification", "certifications"][..], "noun plural"),
        ] {
            let stems: Vec<_> = forms.iter().map(|w| v2.stem(w).into_owned()).collect();
            assert!(
                stems.iter().all(|s| *s == stems[0]),
                "{forms:?} -> {stems:?}"
            );
        }
        // Codes and numbers pass through.
        assert_eq!(v2.stem("608"), "608");
        assert_eq!(v2.stem("cdl"), "cdl");
        assert_eq!(v2.stem("a"), "a");
    }

    #[test]
    fn v1_keeps_the_first_analysis_exactly() {
        let v1 = Analysis::V1;
        assert_eq!(v1.stem("operators"), v1.stem("operator"));
        assert_eq!(v1.stem("operating"), "operat");
        assert_eq!(v1.stem("certifications"), "certific");
        assert_eq!(v1.stem("welders"), "weld");
        assert_eq!(v1.stem("gas"), "gas");
        // What v2 exists for.
        assert_ne!(v1.stem("nurses"), v1.stem("nurse"));
    }

    #[test]
    fn model_names_round_trip_and_old_definitions_read_as_v1() {
        for analysis in [Analysis::V1, Analysis::V2] {
            assert_eq!(
                Analysis::of_hash_model(analysis.hash_model()),
                Some(analysis)
            );
        }
        assert_eq!(Analysis::of_hash_model("nomic-embed-text"), None);
        assert_eq!(Analysis::default(), Analysis::V1);
        assert_eq!(serde_json::to_string(&Analysis::V2).unwrap(), "\"v2\"");
    }
}
