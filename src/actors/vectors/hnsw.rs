//! The derived faiss index, labelled by `seq`: `IDMap2,HNSW<M>,Flat` (an
//! HNSW graph over f32 vectors), or with `SQfp16` storage (half the
//! memory), or with no graph at all (`IDMap2,Flat`: an exact scan, for
//! indexes always searched with a filter). The type name stays `Hnsw`:
//! the graph is the common case and the search entry point is the same.
//!
//! faiss-rs marks `search` as `&mut self` because it cannot know which
//! index types are safe to share, but faiss's CPU HNSW search only reads the
//! graph. [`Hnsw::search`] therefore takes `&self` and calls faiss directly,
//! so many readers can search at once under a read lock while writers take
//! the write lock. Each search passes its own `SearchParametersHNSW` with
//! its efSearch and a bitmap `IDSelector` of the live labels, so tombstoned
//! labels (HNSW cannot remove) and metadata filters are applied inside the
//! graph walk rather than by over-fetching, and a request's own efSearch
//! never touches the index's shared state. faiss's C API has no
//! `SearchParametersHNSW`: a few lines of C++ (`ffi/hnsw_search.cpp`,
//! compiled by `build.rs` against faiss-sys's headers) build it.

use std::path::Path;

use faiss::index::autotune::ParameterSpace;
use faiss::index::{IndexImpl, TryClone};
use faiss::{Idx, Index, MetricType};
use faiss_sys::faiss_Index_reconstruct;

use crate::domain::vectors::{IndexDefinition, IndexKind, Metric, VectorStorage};

#[derive(Debug, thiserror::Error)]
#[error("faiss: {0}")]
pub struct HnswError(pub String);

impl From<faiss::error::Error> for HnswError {
    fn from(err: faiss::error::Error) -> Self {
        Self(err.to_string())
    }
}

extern "C" {
    /// `ffi/hnsw_search.cpp`: search with a `SearchParametersHNSW` of the
    /// caller's (efSearch and a bitmap selector). 0, or -1 with a message.
    fn lakehouse_hnsw_search(
        index: *const std::ffi::c_void,
        n: i64,
        x: *const f32,
        k: i64,
        ef_search: i32,
        allowed: *const u8,
        allowed_len: usize,
        distances: *mut f32,
        labels: *mut i64,
        error: *mut std::ffi::c_char,
        error_len: usize,
    ) -> i32;
}

/// The faiss factory string of an index: `IDMap2` (our labels) over the
/// graph (or none) over the vectors' storage.
fn description(definition: &IndexDefinition) -> String {
    let storage = match definition.storage {
        VectorStorage::F32 => "Flat",
        VectorStorage::Fp16 => "SQfp16",
    };
    match definition.kind {
        IndexKind::Hnsw => format!("IDMap2,HNSW{},{storage}", definition.hnsw.m),
        IndexKind::Flat => format!("IDMap2,{storage}"),
    }
}

pub struct Hnsw {
    index: IndexImpl,
    dimension: usize,
}

// SAFETY: `IndexImpl` is Send + Sync in faiss-rs; the only `&self` entry
// points used here (search with params, reconstruct, write) are read-only
// in faiss for HNSW/IDMap2, and all mutation goes through `&mut self`.
unsafe impl Send for Hnsw {}
unsafe impl Sync for Hnsw {}

/// One search result: `(label, raw faiss score)`.
pub type Neighbour = (u64, f32);

impl Hnsw {
    /// An empty index as `definition` describes it: an HNSW graph or a
    /// flat scan, over f32 or fp16 vectors.
    pub fn new(definition: &IndexDefinition) -> Result<Self, HnswError> {
        let dimension = definition.dimension;
        let faiss_metric = match definition.metric {
            Metric::Cosine | Metric::InnerProduct => MetricType::InnerProduct,
            Metric::L2 => MetricType::L2,
        };
        let index = faiss::index_factory(dimension as u32, description(definition), faiss_metric)?;
        let hnsw = Self { index, dimension };
        if definition.kind == IndexKind::Hnsw {
            hnsw.set_parameter("efConstruction", definition.hnsw.ef_construction)?;
        }
        Ok(hnsw)
    }

    /// Loads a snapshot written by [`Hnsw::write`].
    pub fn read(path: &Path, dimension: usize) -> Result<Self, HnswError> {
        let path = path
            .to_str()
            .ok_or_else(|| HnswError("snapshot path is not UTF-8".into()))?;
        let index = faiss::read_index(path)?;
        if index.d() as usize != dimension {
            return Err(HnswError(format!(
                "snapshot has dimension {}, index has {dimension}",
                index.d()
            )));
        }
        Ok(Self { index, dimension })
    }

    pub fn write(&self, path: &Path) -> Result<(), HnswError> {
        let path = path
            .to_str()
            .ok_or_else(|| HnswError("snapshot path is not UTF-8".into()))?;
        faiss::write_index(&self.index, path)?;
        Ok(())
    }

    /// A deep copy (faiss `clone_index`), so a snapshot can be written
    /// without holding the index's lock for the duration of the write.
    pub fn try_clone(&self) -> Result<Self, HnswError> {
        Ok(Self {
            index: self.index.try_clone()?,
            dimension: self.dimension,
        })
    }

    fn set_parameter(&self, name: &str, value: u32) -> Result<(), HnswError> {
        ParameterSpace::new()?.set_index_parameter(&self.index, name, value)?;
        Ok(())
    }

    /// Number of vectors in the graph, tombstoned ones included.
    pub fn len(&self) -> u64 {
        self.index.ntotal()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Adds `vectors` (row-major, `labels.len()` rows) under `labels`.
    pub fn add(&mut self, vectors: &[f32], labels: &[u64]) -> Result<(), HnswError> {
        debug_assert_eq!(vectors.len(), labels.len() * self.dimension);
        let ids: Vec<Idx> = labels.iter().map(|&l| Idx::new(l)).collect();
        self.index.add_with_ids(vectors, &ids)?;
        Ok(())
    }

    /// The stored vector of `label` (IDMap2 keeps the reverse map).
    pub fn reconstruct(&self, label: u64) -> Result<Vec<f32>, HnswError> {
        let mut out = vec![0f32; self.dimension];
        self.reconstruct_into(label, &mut out)?;
        Ok(out)
    }

    /// Like [`Hnsw::reconstruct`], into a caller's buffer of `dimension`.
    pub fn reconstruct_into(&self, label: u64, out: &mut [f32]) -> Result<(), HnswError> {
        assert_eq!(out.len(), self.dimension, "buffer of the index's dimension");
        // SAFETY: `out` holds `dimension` floats; the index outlives the call.
        let code = unsafe {
            faiss_Index_reconstruct(self.index.inner_ptr(), label as i64, out.as_mut_ptr())
        };
        check(code)
    }

    /// The `k` nearest labels among those whose bit is set in `allowed`
    /// (bit `l` of byte `l / 8`; `None`: every label), as `(label, raw
    /// score)`, best first, walking the graph with `ef_search` (this
    /// search's alone).
    pub fn search(
        &self,
        query: &[f32],
        k: usize,
        ef_search: u32,
        allowed: Option<&[u8]>,
    ) -> Result<Vec<Neighbour>, HnswError> {
        if k == 0 || self.is_empty() {
            return Ok(Vec::new());
        }
        assert_eq!(
            query.len(),
            self.dimension,
            "query of the index's dimension"
        );
        let mut distances = vec![0f32; k];
        let mut labels = vec![-1i64; k];
        let mut error = [0 as std::ffi::c_char; 256];
        // SAFETY: the index outlives the call and faiss's HNSW search only
        // reads it; `query` holds `dimension` floats; the output buffers
        // hold `k` entries; `allowed` (or null) is read for its length; the
        // shim catches every C++ exception and reports it through `error`.
        let code = unsafe {
            lakehouse_hnsw_search(
                self.index.inner_ptr() as *const std::ffi::c_void,
                1,
                query.as_ptr(),
                k as i64,
                ef_search.min(i32::MAX as u32) as i32,
                allowed.map_or(std::ptr::null(), <[u8]>::as_ptr),
                allowed.map_or(0, <[u8]>::len),
                distances.as_mut_ptr(),
                labels.as_mut_ptr(),
                error.as_mut_ptr(),
                error.len(),
            )
        };
        if code != 0 {
            // SAFETY: the shim wrote a NUL-terminated message into `error`.
            let message = unsafe { std::ffi::CStr::from_ptr(error.as_ptr()) };
            return Err(HnswError(message.to_string_lossy().into_owned()));
        }
        Ok(labels
            .into_iter()
            .zip(distances)
            .filter(|(label, _)| *label >= 0)
            .map(|(label, score)| (label as u64, score))
            .collect())
    }
}

fn check(code: i32) -> Result<(), HnswError> {
    if code == 0 {
        return Ok(());
    }
    // SAFETY: faiss_get_last_error returns a thread-local C string or null.
    let message = unsafe {
        let err = faiss_sys::faiss_get_last_error();
        if err.is_null() {
            format!("error code {code}")
        } else {
            std::ffi::CStr::from_ptr(err).to_string_lossy().into_owned()
        }
    };
    Err(HnswError(message))
}

#[cfg(test)]
mod tests {
    use super::*;

    extern "C" {
        /// `ffi/distances.cpp`: the kernels faiss's calls are sent to.
        fn lakehouse_inner_product(x: *const f32, y: *const f32, d: usize) -> f32;
        fn lakehouse_l2_squared(x: *const f32, y: *const f32, d: usize) -> f32;
    }

    fn vector(seed: usize, d: usize) -> Vec<f32> {
        (0..d)
            .map(|i| (((seed * 7919 + i * 104_729) % 2001) as f32 / 1000.0) - 1.0)
            .collect()
    }

    /// The four-accumulator kernels give the plain sums (up to rounding)
    /// for every length, multiples of 32 and 8 and odd tails alike.
    #[test]
    fn the_distance_kernels_compute_inner_products_and_squared_distances() {
        for d in (1..=100).chain([767, 768, 1536]) {
            let (x, y) = (vector(1, d), vector(2, d));
            let ip: f64 = x.iter().zip(&y).map(|(a, b)| f64::from(a * b)).sum();
            let l2: f64 = x
                .iter()
                .zip(&y)
                .map(|(a, b)| f64::from((a - b) * (a - b)))
                .sum();
            // SAFETY: both slices hold `d` floats.
            let (got_ip, got_l2) = unsafe {
                (
                    lakehouse_inner_product(x.as_ptr(), y.as_ptr(), d),
                    lakehouse_l2_squared(x.as_ptr(), y.as_ptr(), d),
                )
            };
            assert!(
                (f64::from(got_ip) - ip).abs() < 1e-3,
                "d {d}: {got_ip} vs {ip}"
            );
            assert!(
                (f64::from(got_l2) - l2).abs() < 1e-3,
                "d {d}: {got_l2} vs {l2}"
            );
        }
    }

    /// faiss's own scans call our kernel, not its single-accumulator loop:
    /// a flat index's scores are bit for bit what the kernel returns
    /// (faiss's loop adds in another order, so its roundings differ).
    #[test]
    fn faiss_scores_with_the_linked_kernel() {
        let d = 768;
        let definition = IndexDefinition {
            name: "kernel".into(),
            dimension: d,
            metric: Metric::InnerProduct,
            hnsw: crate::domain::vectors::HnswParams {
                m: 16,
                ef_construction: 40,
                ef_search: 40,
            },
            kind: IndexKind::Flat,
            storage: VectorStorage::F32,
            analysis: Default::default(),
            created_at: chrono::Utc::now(),
            synonyms: Vec::new(),
            reindex: None,
        };
        let mut index = Hnsw::new(&definition).unwrap();
        let vectors: Vec<Vec<f32>> = (0..64).map(|i| vector(i + 10, d)).collect();
        let labels: Vec<u64> = (0..64).collect();
        index.add(&vectors.concat(), &labels).unwrap();
        let query = vector(3, d);
        let found = index.search(&query, 64, 16, None).unwrap();
        assert_eq!(found.len(), 64);
        let mut sequential_differs = false;
        for (label, score) in found {
            let v = &vectors[label as usize];
            // SAFETY: both hold `d` floats.
            let kernel = unsafe { lakehouse_inner_product(query.as_ptr(), v.as_ptr(), d) };
            assert_eq!(score.to_bits(), kernel.to_bits(), "label {label}");
            let sequential: f32 = query.iter().zip(v).map(|(a, b)| a * b).sum();
            sequential_differs |= sequential.to_bits() != kernel.to_bits();
        }
        assert!(
            sequential_differs,
            "the check can tell summation orders apart"
        );
    }
}
