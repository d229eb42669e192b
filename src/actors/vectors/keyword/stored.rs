//! The keyword index stored beside the faiss snapshot, so a restart reads
//! it instead of analysing every text again (at 100k workers analysis took
//! ~1.1 s of a ~1.4 s restart; reading the stored index takes a tenth).
//!
//! One file, `<name>.keywords`, written to a temporary name and renamed
//! into place: a header (format, analysis, the Lance version and largest
//! `seq` it covers), the vocabulary in id order, then each live document
//! with its terms, frequencies, token sequence and its text's CRC-32, and
//! a CRC-32 of everything before it. Nothing in it is trusted blindly:
//! [`KeywordIndex::reconcile`] keeps a stored document only while a live
//! item has that label *and* a text with the stored checksum, removes the
//! rest and analyses whatever live text the file lacks. A stale, partial
//! or foreign file therefore costs time, never a wrong answer; a corrupt
//! one (size, CRC, a bound) is refused whole.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;

use super::{Doc, KeywordIndex, Term, BREAK};
use crate::domain::analysis::Analysis;

const MAGIC: &[u8; 4] = b"LHKW";
const FORMAT: u32 = 1;

/// What a stored index covers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StoredMeta {
    /// The Lance version of the items it was taken from.
    pub lance_version: u64,
    /// The largest `seq` written when it was taken.
    pub max_seq: u64,
}

/// Why a stored keyword index is not used.
#[derive(Debug, thiserror::Error)]
pub enum StoredError {
    #[error("no stored keyword index: {0}")]
    Missing(#[source] std::io::Error),
    #[error("stored keyword index is corrupt: {0}")]
    Corrupt(&'static str),
    #[error("stored keyword index has format {0}, this build reads {FORMAT}")]
    Format(u32),
    #[error("stored keyword index was analysed with {found:?}, the index uses {expected:?}")]
    Analysis { found: Analysis, expected: Analysis },
}

/// What reconciling a stored index with the live texts did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Reconciled {
    /// Stored documents kept as they were.
    pub kept: usize,
    /// Stored documents dropped: their item is gone or its text changed.
    pub dropped: usize,
    /// Live texts the file did not hold, analysed now.
    pub analysed: usize,
}

impl KeywordIndex {
    /// The index as bytes (see the module doc), covering `meta`.
    pub fn encode(&self, meta: StoredMeta) -> Vec<u8> {
        let live_docs = self.docs.iter().flatten();
        let mut out = Vec::with_capacity(64 + self.vocabulary.len() * 12 + self.len() * 256);
        out.extend_from_slice(MAGIC);
        put_u32(&mut out, FORMAT);
        out.push(analysis_code(self.analysis));
        put_u64(&mut out, meta.lance_version);
        put_u64(&mut out, meta.max_seq);
        let mut words: Vec<&str> = vec![""; self.terms.len()];
        for (word, &id) in &self.vocabulary {
            if let Some(slot) = words.get_mut(id as usize) {
                *slot = word;
            }
        }
        put_u32(&mut out, words.len() as u32);
        for word in words {
            put_u32(&mut out, word.len() as u32);
            out.extend_from_slice(word.as_bytes());
        }
        put_u32(&mut out, self.len() as u32);
        for doc in live_docs {
            put_u64(&mut out, doc.label);
            put_u32(&mut out, doc.length);
            put_u32(&mut out, doc.text_crc);
            put_u32(&mut out, doc.terms.len() as u32);
            for &id in doc.terms.iter() {
                put_u32(&mut out, id);
            }
            for &tf in doc.frequencies.iter() {
                out.extend_from_slice(&tf.to_le_bytes());
            }
            put_u32(&mut out, doc.tokens.len() as u32);
            for &id in doc.tokens.iter() {
                put_u32(&mut out, id);
            }
        }
        let crc = crc32fast::hash(&out);
        put_u32(&mut out, crc);
        out
    }

    /// An index read back from [`KeywordIndex::encode`]'s bytes, checked
    /// for its CRC, its analysis and every bound (a corrupt file is an
    /// error, never a panic or an unbounded allocation).
    pub fn decode(bytes: &[u8], analysis: Analysis) -> Result<(Self, StoredMeta), StoredError> {
        let Some(body_len) = bytes.len().checked_sub(4) else {
            return Err(StoredError::Corrupt("shorter than its checksum"));
        };
        let (body, trailer) = bytes.split_at(body_len);
        let mut crc = [0u8; 4];
        crc.copy_from_slice(trailer);
        if crc32fast::hash(body) != u32::from_le_bytes(crc) {
            return Err(StoredError::Corrupt("checksum"));
        }
        let mut r = Reader { bytes: body };
        if r.take(4)? != MAGIC {
            return Err(StoredError::Corrupt("not a stored keyword index"));
        }
        let format = r.u32()?;
        if format != FORMAT {
            return Err(StoredError::Format(format));
        }
        let found = analysis_of(r.u8()?).ok_or(StoredError::Corrupt("analysis"))?;
        if found != analysis {
            return Err(StoredError::Analysis {
                found,
                expected: analysis,
            });
        }
        let meta = StoredMeta {
            lance_version: r.u64()?,
            max_seq: r.u64()?,
        };
        let term_count = r.count(4)?;
        let mut index = KeywordIndex::new(analysis);
        index.vocabulary.reserve(term_count);
        index.terms.reserve(term_count);
        for id in 0..term_count {
            let len = r.count(1)?;
            let word = std::str::from_utf8(r.take(len)?)
                .map_err(|_| StoredError::Corrupt("a term is not UTF-8"))?;
            // Every id gets its Term (an unreferenced one stays dead), so
            // the ids in the documents below stay valid; a repeated word
            // keeps its first id.
            index.vocabulary.entry(word.into()).or_insert(id as u32);
            index.terms.push(Term::default());
        }
        index.added_terms = term_count;
        let doc_count = r.count(8 + 4 + 4 + 4 + 4)?;
        index.docs.reserve(doc_count);
        for _ in 0..doc_count {
            let label = r.u64()?;
            let length = r.u32()?;
            let text_crc = r.u32()?;
            let distinct = r.count(4 + 2)?;
            let terms = (0..distinct)
                .map(|_| r.u32())
                .collect::<Result<Box<[u32]>, _>>()?;
            let frequencies = (0..distinct)
                .map(|_| r.u16())
                .collect::<Result<Box<[u16]>, _>>()?;
            let token_count = r.count(4)?;
            let tokens = (0..token_count)
                .map(|_| r.u32())
                .collect::<Result<Box<[u32]>, _>>()?;
            if terms.windows(2).any(|w| w[0] >= w[1])
                || terms.iter().any(|&id| id as usize >= term_count)
                || tokens
                    .iter()
                    .any(|&id| id != BREAK && id as usize >= term_count)
            {
                return Err(StoredError::Corrupt("a document names a term out of range"));
            }
            if index.slots.get(label).is_some() || length == 0 {
                return Err(StoredError::Corrupt("a label twice, or an empty document"));
            }
            let slot = index.docs.len() as u32;
            for (&id, &tf) in terms.iter().zip(frequencies.iter()) {
                let term = &mut index.terms[id as usize];
                term.live += 1;
                term.postings.push((slot, tf));
            }
            index.total_length += u64::from(length);
            index.slots.insert(label, slot);
            index.docs.push(Some(Doc {
                label,
                length,
                terms,
                frequencies,
                tokens,
                text_crc,
            }));
        }
        if !r.bytes.is_empty() {
            return Err(StoredError::Corrupt("bytes after the last document"));
        }
        Ok((index, meta))
    }

    /// Makes the index hold exactly `texts` (label → the live item's
    /// text): a stored document stays only when its label is live with a
    /// text of the stored checksum; every other live text is analysed.
    pub fn reconcile(&mut self, texts: &HashMap<u64, Arc<str>>) -> Reconciled {
        let mut outcome = Reconciled::default();
        let stale: Vec<u64> = self
            .docs
            .iter()
            .flatten()
            .filter(|doc| {
                texts
                    .get(&doc.label)
                    .is_none_or(|text| crc32fast::hash(text.as_bytes()) != doc.text_crc)
            })
            .map(|doc| doc.label)
            .collect();
        for label in &stale {
            self.remove(*label);
        }
        outcome.dropped = stale.len();
        outcome.kept = self.len();
        for (&label, text) in texts {
            if self.slots.get(label).is_none() {
                self.insert(label, text);
                outcome.analysed += 1;
            }
        }
        outcome
    }
}

/// Reads a stored index (`Missing` when there is none).
pub fn read(path: &Path, analysis: Analysis) -> Result<(KeywordIndex, StoredMeta), StoredError> {
    let bytes = std::fs::read(path).map_err(StoredError::Missing)?;
    KeywordIndex::decode(&bytes, analysis)
}

fn analysis_code(analysis: Analysis) -> u8 {
    match analysis {
        Analysis::V1 => 1,
        Analysis::V2 => 2,
    }
}

fn analysis_of(code: u8) -> Option<Analysis> {
    match code {
        1 => Some(Analysis::V1),
        2 => Some(Analysis::V2),
        _ => None,
    }
}

fn put_u32(out: &mut Vec<u8>, value: u32) {
    out.extend_from_slice(&value.to_le_bytes());
}

fn put_u64(out: &mut Vec<u8>, value: u64) {
    out.extend_from_slice(&value.to_le_bytes());
}

/// A bounds-checked cursor over the file's bytes.
struct Reader<'a> {
    bytes: &'a [u8],
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], StoredError> {
        if n > self.bytes.len() {
            return Err(StoredError::Corrupt("truncated"));
        }
        let (head, rest) = self.bytes.split_at(n);
        self.bytes = rest;
        Ok(head)
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N], StoredError> {
        let mut out = [0u8; N];
        out.copy_from_slice(self.take(N)?);
        Ok(out)
    }

    fn u8(&mut self) -> Result<u8, StoredError> {
        Ok(self.array::<1>()?[0])
    }

    fn u16(&mut self) -> Result<u16, StoredError> {
        self.array().map(u16::from_le_bytes)
    }

    fn u32(&mut self) -> Result<u32, StoredError> {
        self.array().map(u32::from_le_bytes)
    }

    fn u64(&mut self) -> Result<u64, StoredError> {
        self.array().map(u64::from_le_bytes)
    }

    /// A count of items of at least `each` bytes, refused when the rest of
    /// the file could not hold them (so a corrupt count allocates nothing).
    fn count(&mut self, each: usize) -> Result<usize, StoredError> {
        let n = self.u32()? as usize;
        if n.saturating_mul(each.max(1)) > self.bytes.len() {
            return Err(StoredError::Corrupt("a count larger than the file"));
        }
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::keyword::{KeywordQuery, Synonyms};

    fn texts(pairs: &[(u64, &str)]) -> HashMap<u64, Arc<str>> {
        pairs.iter().map(|(l, t)| (*l, Arc::from(*t))).collect()
    }

    fn ranking(index: &KeywordIndex, words: &str) -> Vec<(u64, u32)> {
        let query = KeywordQuery::parse(words, index.analysis(), &Synonyms::default());
        let resolved = index.resolve(&query);
        let mut labels: Vec<u64> = index.docs.iter().flatten().map(|d| d.label).collect();
        labels.sort_unstable();
        labels
            .into_iter()
            .filter_map(|l| index.score(&resolved, l).map(|s| (l, s.to_bits())))
            .collect()
    }

    /// A corpus with repeated, rare and phrase-bearing texts; every query
    /// word below occurs in some of them.
    fn corpus(n: u64) -> HashMap<u64, Arc<str>> {
        let roles = ["forklift operator", "registered nurse", "welder", "CNA"];
        let extras = ["OSHA 30", "EPA 608", "night shift", "bilingual spanish"];
        (0..n)
            .map(|i| {
                let text = format!(
                    "{} in city {} with {} and {} years",
                    roles[(i % 4) as usize],
                    i % 13,
                    extras[(i % 7 % 4) as usize],
                    i % 9
                );
                (i * 3 + 1, Arc::from(text.as_str()))
            })
            .collect()
    }

    #[test]
    fn a_stored_index_scores_exactly_as_the_one_it_was_taken_from() {
        let live = corpus(600);
        let pairs: Vec<(u64, Arc<str>)> = live.iter().map(|(l, t)| (*l, t.clone())).collect();
        let mut built = KeywordIndex::of_texts(&pairs, Analysis::V2);
        // Removed documents leave dead slots and dead terms behind.
        built.insert(9_999, "zygote xylophone");
        built.remove(9_999);
        let meta = StoredMeta {
            lance_version: 7,
            max_seq: 9_999,
        };
        let bytes = built.encode(meta);
        let (mut read, read_meta) = KeywordIndex::decode(&bytes, Analysis::V2).expect("decodes");
        assert_eq!(read_meta, meta);
        assert_eq!(read.len(), built.len());
        let outcome = read.reconcile(&live);
        assert_eq!(
            outcome,
            Reconciled {
                kept: 600,
                dropped: 0,
                analysed: 0
            }
        );
        for query in [
            "forklift",
            "nurses",
            "\"EPA 608\"",
            "night welder",
            "spanish 3",
            "zygote",
        ] {
            assert_eq!(ranking(&read, query), ranking(&built, query), "{query}");
        }
        assert!(!ranking(&read, "nurse").is_empty());
    }

    #[test]
    fn reconcile_drops_what_changed_or_went_and_analyses_what_is_new() {
        let stored = texts(&[(1, "welder"), (2, "nurse"), (3, "forklift operator")]);
        let pairs: Vec<(u64, Arc<str>)> = stored.iter().map(|(l, t)| (*l, t.clone())).collect();
        let bytes = KeywordIndex::of_texts(&pairs, Analysis::V2).encode(StoredMeta {
            lance_version: 1,
            max_seq: 3,
        });
        let (mut index, _) = KeywordIndex::decode(&bytes, Analysis::V2).expect("decodes");
        // 1 is gone, 2's label now holds another text (never in practice:
        // seqs are not reused; the checksum makes it harmless anyway), 3
        // stays, 4 is new.
        let live = texts(&[(2, "electrician"), (3, "forklift operator"), (4, "welder")]);
        let outcome = index.reconcile(&live);
        assert_eq!(
            outcome,
            Reconciled {
                kept: 1,
                dropped: 2,
                analysed: 2
            }
        );
        let fresh = KeywordIndex::of_texts(
            &live
                .iter()
                .map(|(l, t)| (*l, t.clone()))
                .collect::<Vec<_>>(),
            Analysis::V2,
        );
        for query in ["welder", "nurse", "electrician", "forklift"] {
            assert_eq!(ranking(&index, query), ranking(&fresh, query), "{query}");
        }
    }

    #[test]
    fn a_damaged_or_foreign_file_is_refused_without_panicking() {
        let pairs: Vec<(u64, Arc<str>)> = corpus(50).into_iter().collect();
        let bytes = KeywordIndex::of_texts(&pairs, Analysis::V2).encode(StoredMeta {
            lance_version: 1,
            max_seq: 200,
        });
        assert!(matches!(
            KeywordIndex::decode(&bytes, Analysis::V1),
            Err(StoredError::Analysis { .. })
        ));
        for cut in [0, 3, 4, 20, bytes.len() / 2, bytes.len() - 1] {
            assert!(
                KeywordIndex::decode(&bytes[..cut], Analysis::V2).is_err(),
                "cut at {cut}"
            );
        }
        for at in [0, 9, 30, bytes.len() / 3, bytes.len() - 2] {
            let mut flipped = bytes.clone();
            flipped[at] ^= 0x41;
            assert!(matches!(
                KeywordIndex::decode(&flipped, Analysis::V2),
                Err(StoredError::Corrupt(_))
            ));
        }
        // A file whose checksum is right but whose counts lie (written by
        // something else): refused by the bounds, not by an allocation.
        let mut lying = bytes[..bytes.len() - 4].to_vec();
        let terms_at = 4 + 4 + 1 + 8 + 8;
        lying[terms_at..terms_at + 4].copy_from_slice(&u32::MAX.to_le_bytes());
        let crc = crc32fast::hash(&lying);
        lying.extend_from_slice(&crc.to_le_bytes());
        assert!(matches!(
            KeywordIndex::decode(&lying, Analysis::V2),
            Err(StoredError::Corrupt(_))
        ));
    }
}
