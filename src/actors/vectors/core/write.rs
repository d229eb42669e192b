//! The write path: a load installed, commits published, the graph rebuilt.

use super::*;

impl Core {
    /// Installs the live rows found in Lance at `version` and their texts
    /// (load path). Every label in the graph that is not among them counts
    /// as a tombstone.
    pub fn install(
        &self,
        rows: HashMap<String, Entry>,
        texts: Vec<(u64, Arc<str>)>,
        max_seq: u64,
        version: u64,
    ) {
        let keywords = KeywordIndex::of_texts(&texts, self.definition.analysis);
        self.install_indexed(rows, keywords, max_seq, version);
    }

    /// [`Core::install`] with the keyword index already built from the
    /// texts (a load builds it while the graph's snapshot is read).
    pub fn install_indexed(
        &self,
        rows: HashMap<String, Entry>,
        keywords: KeywordIndex,
        max_seq: u64,
        version: u64,
    ) {
        let mut inner = self.inner.write();
        inner.keywords = keywords;
        inner.by_label = rows.iter().map(|(id, e)| (e.seq, id.clone())).collect();
        inner.live = Bitmap::from_labels(rows.values().map(|e| e.seq));
        inner.tombstones = inner.hnsw.len().saturating_sub(rows.len() as u64);
        inner.rows = rows;
        inner.fields.clear();
        inner.presence = None;
        inner.arena = None;
        inner.dedupe = None;
        inner.max_seq = max_seq;
        inner.version = version;
    }

    /// The Lance version the live items are (a commit that changed no row,
    /// a compaction, moved it on).
    pub fn set_version(&self, version: u64) {
        self.inner.write().version = version;
    }

    /// Adds vectors to the graph without making them visible: a label is
    /// only found once [`Core::publish`] sets its live bit.
    pub fn add_vectors(&self, vectors: &[f32], labels: &[u64]) -> Result<(), HnswError> {
        let dimension = self.definition.dimension;
        for (chunk, chunk_labels) in vectors
            .chunks(ADD_CHUNK * dimension)
            .zip(labels.chunks(ADD_CHUNK))
        {
            let mut inner = self.inner.write();
            inner.hnsw.add(chunk, chunk_labels)?;
            if let Some(arena) = inner.arena.as_mut() {
                for (vector, &label) in chunk.chunks(dimension).zip(chunk_labels) {
                    arena.insert(label, vector);
                }
            }
        }
        Ok(())
    }

    /// Makes committed writes visible, in seq order, as Lance `version`.
    /// Returns the seqs that became superseded (old versions of updated or
    /// deleted items).
    pub fn publish(&self, writes: &[Applied<'_>], max_seq: u64, version: u64) -> Vec<u64> {
        // Texts are analysed before the lock: searches wait only for the
        // postings to be spliced in.
        let mut analysed: Vec<Option<Analysed>> = writes
            .iter()
            .map(|write| match write {
                Applied::Upsert {
                    text: Some(text), ..
                } => Some(Analysed::of(text, self.definition.analysis)),
                _ => None,
            })
            .collect();
        let mut inner = self.inner.write();
        let mut superseded = Vec::new();
        for (write, analysed) in writes.iter().zip(analysed.iter_mut()) {
            let id = match write {
                Applied::Upsert { id, .. } | Applied::Delete { id } => *id,
            };
            if let Some(old) = inner.rows.remove(id) {
                inner.retire(old.seq, &old.metadata);
                if let Some(dedupe) = inner.dedupe.as_mut() {
                    dedupe.remove(old.seq);
                }
                superseded.push(old.seq);
            }
            if let Applied::Upsert {
                id, seq, metadata, ..
            } = write
            {
                inner.live.set(*seq);
                if let Some(analysed) = analysed.take() {
                    inner.keywords.insert_analysed(*seq, analysed);
                }
                inner.by_label.insert(*seq, id.to_string());
                // An arena built between this write's graph insert and now
                // (by a search) missed it.
                let missing = inner.arena.as_ref().is_some_and(|a| !a.contains(*seq));
                if missing {
                    if let Ok(vector) = inner.hnsw.reconstruct(*seq) {
                        if let Some(arena) = inner.arena.as_mut() {
                            arena.insert(*seq, &vector);
                        }
                    }
                }
                let entry = Entry {
                    seq: *seq,
                    metadata: metadata.clone(),
                };
                inner.index_fields(*seq, &entry.metadata);
                if let Some(dedupe) = inner.dedupe.as_mut() {
                    dedupe.add(*seq, &entry.metadata);
                }
                inner.rows.insert(id.to_string(), entry);
            }
        }
        inner.max_seq = inner.max_seq.max(max_seq);
        inner.version = version;
        superseded
    }

    /// Rebuilds the graph from the live vectors only, dropping tombstones.
    /// Searches go on against the old graph until the swap; the caller
    /// (the commit pipeline) guarantees no write is applied meanwhile.
    pub fn rebuild(&self) -> Result<(), HnswError> {
        let (labels, vectors) = {
            let inner = self.inner.read();
            let mut labels: Vec<u64> = inner.by_label.keys().copied().collect();
            labels.sort_unstable();
            let mut vectors = Vec::with_capacity(labels.len() * self.definition.dimension);
            for label in &labels {
                vectors.extend(inner.hnsw.reconstruct(*label)?);
            }
            (labels, vectors)
        };
        let definition = &self.definition;
        let mut fresh = Hnsw::new(definition)?;
        for (chunk, chunk_labels) in vectors
            .chunks(ADD_CHUNK * 16 * definition.dimension)
            .zip(labels.chunks(ADD_CHUNK * 16))
        {
            fresh.add(chunk, chunk_labels)?;
        }
        let mut inner = self.inner.write();
        inner.hnsw = fresh;
        inner.tombstones = 0;
        Ok(())
    }
}
