//! The built-in embedder: deterministic feature hashing, no model needed.
//!
//! A text becomes a bag of features — normalised word unigrams (stemmed),
//! word bigrams, and character trigrams of each word — and each feature adds
//! a signed weight to one of `dimension` buckets chosen by a fixed 64-bit
//! hash (the "hashing trick"). The result is L2-normalised, so the cosine of
//! two vectors grows with the features their texts share: texts that share
//! words or stems ("operator"/"operators") land close, unrelated texts are
//! near orthogonal. The hash is FNV-1a plus a splitmix64 finaliser, fixed
//! here rather than taken from `std`, so vectors are identical across runs,
//! machines and Rust versions — stored vectors stay comparable.

use super::analysis::Analysis;

/// Weight of one stemmed word.
const UNIGRAM_WEIGHT: f32 = 1.0;
/// Weight of one pair of adjacent words (word order, phrases).
const BIGRAM_WEIGHT: f32 = 0.5;
/// Total weight of one word's character trigrams (misspellings, stems the
/// stemmer misses), spread over its trigrams.
const TRIGRAM_WEIGHT: f32 = 0.6;

#[derive(Debug, Clone)]
pub struct HashEmbedder {
    dimension: usize,
    /// How words are stemmed (the model name says which: see
    /// [`Analysis::hash_model`]).
    analysis: Analysis,
}

impl HashEmbedder {
    pub fn new(dimension: usize, analysis: Analysis) -> Self {
        assert!(dimension > 0, "dimension must be positive");
        Self {
            dimension,
            analysis,
        }
    }

    /// The model name this embedder answers to.
    pub fn model(&self) -> &'static str {
        self.analysis.hash_model()
    }

    pub fn dimension(&self) -> usize {
        self.dimension
    }

    /// Embeds one text into a unit vector. A text with no letters or digits
    /// at all is hashed by its characters, so every non-empty text gets a
    /// unit vector.
    pub fn embed(&self, text: &str) -> Vec<f32> {
        let mut vector = vec![0f32; self.dimension];
        let words = words(text);
        for (i, word) in words.iter().enumerate() {
            let root = self.analysis.stem(word);
            self.add(&mut vector, &["w:", &root], UNIGRAM_WEIGHT);
            if let Some(next) = words.get(i + 1) {
                let next = self.analysis.stem(next);
                self.add(&mut vector, &["b:", &root, " ", &next], BIGRAM_WEIGHT);
            }
            self.add_trigrams(&mut vector, word);
        }
        if words.is_empty() {
            self.add_trigrams(&mut vector, text.trim());
        }
        if vector.iter().all(|&x| x == 0.0) {
            // Terms that landed on one component with opposite signs
            // cancelled out: one term cannot.
            self.add(&mut vector, &["t:", text], UNIGRAM_WEIGHT);
        }
        normalise(&mut vector);
        vector
    }

    fn add_trigrams(&self, vector: &mut [f32], word: &str) {
        let chars: Vec<char> = std::iter::once('^')
            .chain(word.chars())
            .chain(std::iter::once('$'))
            .collect();
        let count = chars.len().saturating_sub(2).max(1);
        let weight = TRIGRAM_WEIGHT / (count as f32).sqrt();
        let mut buf = [0u8; 12];
        for window in chars.windows(3) {
            let mut gram = String::with_capacity(8);
            gram.push_str("c:");
            for c in window {
                gram.push_str(c.encode_utf8(&mut buf));
            }
            self.add(vector, &[&gram], weight);
        }
        if chars.len() < 3 {
            let gram: String = chars.iter().collect();
            self.add(vector, &["c:", &gram], weight);
        }
    }

    fn add(&self, vector: &mut [f32], parts: &[&str], weight: f32) {
        let hash = hash_parts(parts);
        // Multiply-shift maps the hash onto 0..dimension without modulo bias.
        let index = ((hash >> 32) * self.dimension as u64) >> 32;
        let sign = if hash & 1 == 0 { 1.0 } else { -1.0 };
        vector[index as usize] += sign * weight;
    }
}

/// Lower-cased runs of letters and digits.
fn words(text: &str) -> Vec<String> {
    text.split(|c: char| !c.is_alphanumeric())
        .filter(|w| !w.is_empty())
        .map(|w| w.to_lowercase())
        .collect()
}

fn hash_parts(parts: &[&str]) -> u64 {
    const FNV_OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
    const FNV_PRIME: u64 = 0x0000_0100_0000_01b3;
    let mut hash = FNV_OFFSET;
    for part in parts {
        for byte in part.as_bytes() {
            hash ^= u64::from(*byte);
            hash = hash.wrapping_mul(FNV_PRIME);
        }
    }
    // splitmix64 finaliser: FNV's low bits alone are poorly mixed.
    hash = (hash ^ (hash >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    hash = (hash ^ (hash >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    hash ^ (hash >> 31)
}

/// Scales `vector` to unit length (a zero vector stays zero).
pub fn normalise(vector: &mut [f32]) {
    let norm = vector.iter().map(|x| x * x).sum::<f32>().sqrt();
    if norm > 0.0 {
        for x in vector.iter_mut() {
            *x /= norm;
        }
    }
}

/// Cosine similarity of two unit vectors.
pub fn dot(a: &[f32], b: &[f32]) -> f32 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn norm(v: &[f32]) -> f32 {
        v.iter().map(|x| x * x).sum::<f32>().sqrt()
    }

    /// On a small dimension many terms share a component, and two with
    /// opposite signs cancel: the text still gets a unit vector (the
    /// fuzzer found `"\u{10f4ce}\u{15}"` embedding to zero at 64).
    #[test]
    fn terms_that_cancel_out_still_give_a_unit_vector() {
        for dimension in [1, 2, 3, 64] {
            let embedder = HashEmbedder::new(dimension, Analysis::CURRENT);
            for a in (0x20..0x2100u32)
                .filter_map(char::from_u32)
                .filter(|c| !c.is_alphanumeric())
            {
                for text in [
                    a.to_string(),
                    format!("{a}\u{15}"),
                    format!("\u{10f4ce}{a}"),
                ] {
                    let v = embedder.embed(&text);
                    assert!(
                        (norm(&v) - 1.0).abs() < 1e-5,
                        "{text:?} at {dimension}: norm {}",
                        norm(&v)
                    );
                }
            }
        }
    }

    #[test]
    fn vectors_are_unit_length_and_deterministic() {
        let embedder = HashEmbedder::new(768, Analysis::CURRENT);
        for text in [
            "Forklift operator, Chicago IL",
            "!!!",
            "a",
            "日本語のテキスト",
        ] {
            let v = embedder.embed(text);
            assert_eq!(v.len(), 768);
            assert!((norm(&v) - 1.0).abs() < 1e-5, "{text}: norm {}", norm(&v));
            assert_eq!(v, embedder.embed(text));
        }
    }

    #[test]
    fn shared_words_and_stems_score_higher_than_unrelated_text() {
        let embedder = HashEmbedder::new(768, Analysis::CURRENT);
        let query = embedder.embed("forklift operator with OSHA certification");
        let similar = embedder.embed("certified forklift operators");
        let unrelated = embedder.embed("pastry chef baking sourdough bread");
        let near = dot(&query, &similar);
        let far = dot(&query, &unrelated);
        assert!(near > 0.3, "near = {near}");
        assert!(far.abs() < 0.15, "far = {far}");
        assert!(near > far + 0.2);
    }

    /// `v1` vectors are exactly what they were before analysis was
    /// versioned (stored vectors stay comparable); `v2` folds the forms
    /// `v1` missed.
    #[test]
    fn each_analysis_embeds_with_its_own_stems() {
        let v1 = HashEmbedder::new(768, Analysis::V1);
        let v2 = HashEmbedder::new(768, Analysis::V2);
        assert_eq!(v1.model(), "lakehouse-hash-v1");
        assert_eq!(v2.model(), "lakehouse-hash-v2");
        let operator = v1.embed("operator");
        assert!(dot(&operator, &v1.embed("operators")) > 0.8);
        let gap = |e: &HashEmbedder| dot(&e.embed("nurse"), &e.embed("nurses"));
        assert!(gap(&v2) > gap(&v1) + 0.2, "v2 {} v1 {}", gap(&v2), gap(&v1));
    }

    #[test]
    fn case_and_punctuation_do_not_matter() {
        let embedder = HashEmbedder::new(128, Analysis::CURRENT);
        assert_eq!(
            embedder.embed("CNC Operator"),
            embedder.embed("cnc, operator!")
        );
    }
}
