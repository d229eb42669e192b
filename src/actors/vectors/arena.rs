//! Compact copies of the live vectors for exact filtered scans.
//!
//! A filter that leaves a few thousand candidates is answered by scoring
//! every candidate (see `core`). Reading each one back out of faiss costs a
//! C call, a hash lookup, an allocation and a scalar dot product — about a
//! microsecond, three milliseconds for a role over 100k workers. The arena
//! keeps each vector as 8-bit codes with one scale (a quarter of the f32
//! size: 77 MB at 100k × 768) in one contiguous buffer, and scores a
//! candidate with an AVX2 loop in tens of nanoseconds. The approximate
//! ranking only chooses which candidates to rescore exactly from faiss, so
//! reported distances are exact.
//!
//! Built on the first filtered search of an index (like the field indexes)
//! and kept up to date by every graph insert and retirement after that.

use super::hnsw::{Hnsw, HnswError};
use crate::domain::vectors::Metric;

/// Candidates rescored exactly per result: generous, because codes of two
/// near-identical vectors can swap order.
pub const RESCORE_FACTOR: usize = 4;
/// Rescored at least this many beyond `k`.
pub const RESCORE_EXTRA: usize = 32;

pub struct Arena {
    dimension: usize,
    /// `dimension` codes per slot.
    codes: Vec<i8>,
    /// Per slot: the factor that turns codes back into the vector.
    scales: Vec<f32>,
    /// Per slot: the squared norm of the original vector (l2 only).
    norms: Vec<f32>,
    /// Slot per label (labels are seqs, so dense): `NONE` when absent.
    slots: Vec<u32>,
    live: usize,
    free: Vec<u32>,
}

const NONE: u32 = u32::MAX;

impl Arena {
    pub fn new(dimension: usize) -> Self {
        Self {
            dimension,
            codes: Vec::new(),
            scales: Vec::new(),
            norms: Vec::new(),
            slots: Vec::new(),
            live: 0,
            free: Vec::new(),
        }
    }

    /// An arena of the vectors of `labels`, read back from the graph.
    pub fn from_graph(
        hnsw: &Hnsw,
        labels: impl Iterator<Item = u64>,
        count: usize,
        dimension: usize,
    ) -> Result<Self, HnswError> {
        let mut arena = Arena::new(dimension);
        arena.codes.reserve_exact(count * dimension);
        arena.scales.reserve_exact(count);
        arena.norms.reserve_exact(count);
        // In label order: faiss stores vectors in insertion (= label) order,
        // so the reads run forward, and slots follow labels (searches
        // visit candidates in label order, see `Arena::distances`).
        let mut labels: Vec<u64> = labels.collect();
        labels.sort_unstable();
        let mut vector = vec![0f32; dimension];
        for label in labels {
            hnsw.reconstruct_into(label, &mut vector)?;
            arena.insert(label, &vector);
        }
        Ok(arena)
    }

    pub fn len(&self) -> usize {
        self.live
    }

    pub fn is_empty(&self) -> bool {
        self.live == 0
    }

    fn slot(&self, label: u64) -> Option<u32> {
        self.slots
            .get(label as usize)
            .copied()
            .filter(|&slot| slot != NONE)
    }

    /// Bytes held, for the memory gauge and the docs.
    pub fn bytes(&self) -> usize {
        self.codes.capacity()
            + (self.scales.capacity() + self.norms.capacity() + self.slots.capacity()) * 4
    }

    /// Stores `vector` under `label` (replacing any earlier one).
    pub fn insert(&mut self, label: u64, vector: &[f32]) {
        debug_assert_eq!(vector.len(), self.dimension);
        let (max, norm) = max_abs_and_norm(vector);
        let scale = if max > 0.0 { max / 127.0 } else { 1.0 };
        let slot = match self.slot(label) {
            Some(slot) => slot,
            None => match self.free.pop() {
                Some(slot) => slot,
                None => {
                    let slot = self.scales.len() as u32;
                    self.codes.resize(self.codes.len() + self.dimension, 0);
                    self.scales.push(0.0);
                    self.norms.push(0.0);
                    slot
                }
            },
        };
        let start = slot as usize * self.dimension;
        let inverse = 1.0 / scale;
        for (code, x) in self.codes[start..start + self.dimension]
            .iter_mut()
            .zip(vector)
        {
            // Round half away from zero by truncation (`round` is a libm
            // call per element without SSE4.1; this loop vectorises).
            let v = x * inverse;
            let rounded = (v + 0.5f32.copysign(v)) as i32;
            *code = rounded.clamp(-127, 127) as i8;
        }
        self.scales[slot as usize] = scale;
        self.norms[slot as usize] = norm;
        let index = label as usize;
        if index >= self.slots.len() {
            self.slots.resize((index + 1).next_power_of_two(), NONE);
        }
        if self.slots[index] == NONE {
            self.live += 1;
        }
        self.slots[index] = slot;
    }

    pub fn contains(&self, label: u64) -> bool {
        self.slot(label).is_some()
    }

    /// Keeps only the labels `keep` holds to.
    pub fn retain(&mut self, keep: impl Fn(u64) -> bool) {
        let held: Vec<u64> = self
            .slots
            .iter()
            .enumerate()
            .filter(|(_, slot)| **slot != NONE)
            .map(|(label, _)| label as u64)
            .collect();
        for label in held {
            if !keep(label) {
                self.remove(label);
            }
        }
    }

    pub fn remove(&mut self, label: u64) {
        if let Some(slot) = self.slot(label) {
            self.slots[label as usize] = NONE;
            self.live -= 1;
            self.free.push(slot);
        }
    }

    /// Approximate distances of `labels` from `query` (see [`Arena::distance`]),
    /// pushed as `(label, distance)`; labels the arena lacks are skipped.
    /// Sorting `labels` first makes the reads run forward through memory.
    pub fn distances(
        &self,
        metric: Metric,
        query: &[f32],
        labels: &[u64],
        out: &mut Vec<(u64, f32)>,
    ) {
        let kernel = kernel();
        let slots: Vec<(u64, usize)> = labels
            .iter()
            .filter_map(|&label| Some((label, self.slot(label)? as usize)))
            .collect();
        out.reserve(slots.len());
        for (i, &(label, slot)) in slots.iter().enumerate() {
            if let Some(&(_, ahead)) = slots.get(i + PREFETCH_AHEAD) {
                prefetch(&self.codes[ahead * self.dimension..(ahead + 1) * self.dimension]);
            }
            let start = slot * self.dimension;
            let dot = self.scales[slot] * kernel(query, &self.codes[start..start + self.dimension]);
            out.push((label, self.finish(metric, slot, dot)));
        }
    }

    /// As [`Arena::distances`], with a bound on each distance's error:
    /// `(label, approximate distance, e)` such that the exact distance is
    /// within `approximate ± e`. Each code is its component rounded to the
    /// nearest multiple of the vector's scale, so a component is off by at
    /// most `scale / 2` and the dot product by at most `scale / 2 · Σ|q_i|`
    /// (twice that for l2, whose distance holds `2 q·x`), plus a margin for
    /// the float sums. What an exact search needs to know which candidates
    /// it must rescore.
    pub fn distances_bounded(
        &self,
        metric: Metric,
        query: &[f32],
        labels: &[u64],
        out: &mut Vec<(u64, f32, f32)>,
    ) {
        let l1: f32 = query.iter().map(|x| x.abs()).sum();
        let factor = if metric == Metric::L2 { 2.0 } else { 1.0 };
        // `finish` leaves |q|² out of an l2 ranking; a bound compared with
        // exact distances needs it.
        let offset = match metric {
            Metric::L2 => query.iter().map(|x| x * x).sum(),
            _ => 0.0,
        };
        let kernel = kernel();
        out.reserve(labels.len());
        for &label in labels {
            let Some(slot) = self.slot(label).map(|s| s as usize) else {
                continue;
            };
            let start = slot * self.dimension;
            let scale = self.scales[slot];
            let raw = kernel(query, &self.codes[start..start + self.dimension]);
            let dot = scale * raw;
            let approximate = self.finish(metric, slot, dot) + offset;
            let error =
                factor * (scale * 0.5 * l1 + 1e-4 * (dot.abs() + scale * l1 + 1.0)) + 1e-4 * offset;
            out.push((label, approximate, error));
        }
    }

    fn finish(&self, metric: Metric, slot: usize, dot: f32) -> f32 {
        match metric {
            Metric::Cosine => 1.0 - dot,
            Metric::InnerProduct => -dot,
            // |q - x|² = |q|² - 2 q·x + |x|²; |q|² is the same for every
            // candidate, so it can be left out of a ranking.
            Metric::L2 => self.norms[slot] - 2.0 * dot,
        }
    }
}

/// `(max |x|, Σ x²)` with eight independent lanes, so the loop vectorises
/// (a single running max or sum is a chain of dependent instructions: it
/// made the arena of 100k × 768 take ~0.4 s to build at a restart).
fn max_abs_and_norm(vector: &[f32]) -> (f32, f32) {
    const LANES: usize = 8;
    let mut max = [0f32; LANES];
    let mut sum = [0f32; LANES];
    let chunks = vector.chunks_exact(LANES);
    let rest = chunks.remainder();
    for chunk in chunks {
        for lane in 0..LANES {
            let a = chunk[lane].abs();
            max[lane] = if a > max[lane] { a } else { max[lane] };
            sum[lane] += chunk[lane] * chunk[lane];
        }
    }
    let mut m = max.iter().fold(0f32, |m, &x| if x > m { x } else { m });
    let mut n: f32 = sum.iter().sum();
    for x in rest {
        m = if x.abs() > m { x.abs() } else { m };
        n += x * x;
    }
    (m, n)
}

/// Candidates ahead whose codes are prefetched while one is scored.
const PREFETCH_AHEAD: usize = 4;

fn prefetch(codes: &[i8]) {
    #[cfg(target_arch = "x86_64")]
    for line in codes.chunks(64) {
        // SAFETY: a prefetch is a hint; the address is inside `codes`.
        unsafe {
            std::arch::x86_64::_mm_prefetch::<{ std::arch::x86_64::_MM_HINT_T0 }>(line.as_ptr())
        };
    }
}

type Kernel = fn(&[f32], &[i8]) -> f32;

/// The `Σ q_i · c_i` kernel for this CPU (AVX2 and FMA when it has them),
/// chosen once.
fn kernel() -> Kernel {
    static KERNEL: std::sync::OnceLock<Kernel> = std::sync::OnceLock::new();
    *KERNEL.get_or_init(|| {
        #[cfg(target_arch = "x86_64")]
        {
            if std::arch::is_x86_feature_detected!("avx2")
                && std::arch::is_x86_feature_detected!("fma")
            {
                return dot_i8_avx2_safe;
            }
        }
        dot_i8_portable
    })
}

#[cfg(target_arch = "x86_64")]
fn dot_i8_avx2_safe(query: &[f32], codes: &[i8]) -> f32 {
    // SAFETY: only chosen by `kernel` after the CPU reported AVX2 and FMA.
    unsafe { dot_i8_avx2(query, codes) }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn dot_i8_avx2(query: &[f32], codes: &[i8]) -> f32 {
    // The same loop; compiled with AVX2 the compiler vectorises it.
    dot_i8_portable(query, codes)
}

/// Sixteen independent accumulators so the loop vectorises (a single
/// running sum would have to keep the scalar order of additions).
#[inline(always)]
fn dot_i8_portable(query: &[f32], codes: &[i8]) -> f32 {
    const LANES: usize = 16;
    let mut acc = [0f32; LANES];
    let q_chunks = query.chunks_exact(LANES);
    let c_chunks = codes.chunks_exact(LANES);
    let q_rest = q_chunks.remainder();
    let c_rest = c_chunks.remainder();
    for (q, c) in q_chunks.zip(c_chunks) {
        for lane in 0..LANES {
            acc[lane] += q[lane] * c[lane] as f32;
        }
    }
    let mut sum: f32 = acc.iter().sum();
    for (q, c) in q_rest.iter().zip(c_rest) {
        sum += q * *c as f32;
    }
    sum
}

#[cfg(test)]
mod tests {
    use super::*;

    fn distance(arena: &Arena, metric: Metric, query: &[f32], label: u64) -> Option<f32> {
        let mut out = Vec::new();
        arena.distances(metric, query, &[label], &mut out);
        out.first().map(|(_, distance)| *distance)
    }

    fn lcg_vector(seed: u64, dimension: usize) -> Vec<f32> {
        let mut state = seed.wrapping_mul(6364136223846793005).wrapping_add(1);
        let mut v: Vec<f32> = (0..dimension)
            .map(|_| {
                state = state
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                ((state >> 40) as f32 / (1u64 << 24) as f32) - 0.5
            })
            .collect();
        let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt();
        v.iter_mut().for_each(|x| *x /= norm);
        v
    }

    #[test]
    fn approximate_distances_are_close_to_exact_ones() {
        let dimension = 771; // not a multiple of the lane count
        let mut arena = Arena::new(dimension);
        let query = lcg_vector(999, dimension);
        for label in 0..200u64 {
            let vector = lcg_vector(label, dimension);
            arena.insert(label, &vector);
            let exact_dot: f32 = query.iter().zip(&vector).map(|(a, b)| a * b).sum();
            let norm: f32 = vector.iter().map(|x| x * x).sum();
            for (metric, exact) in [
                (Metric::Cosine, 1.0 - exact_dot),
                (Metric::InnerProduct, -exact_dot),
                (Metric::L2, norm - 2.0 * exact_dot),
            ] {
                let approx = distance(&arena, metric, &query, label).unwrap();
                assert!(
                    (approx - exact).abs() < 0.01,
                    "{metric:?} label {label}: {approx} vs {exact}"
                );
            }
        }
    }

    #[test]
    fn removed_slots_are_reused_and_forgotten() {
        let mut arena = Arena::new(8);
        arena.insert(1, &[1.0; 8]);
        arena.insert(2, &[-1.0; 8]);
        arena.remove(1);
        assert!(distance(&arena, Metric::InnerProduct, &[1.0; 8], 1).is_none());
        arena.insert(3, &[0.5; 8]);
        assert_eq!(arena.len(), 2);
        assert_eq!(arena.scales.len(), 2, "the freed slot was reused");
        let d2 = distance(&arena, Metric::InnerProduct, &[1.0; 8], 2).unwrap();
        let d3 = distance(&arena, Metric::InnerProduct, &[1.0; 8], 3).unwrap();
        assert!(
            (d2 - 8.0).abs() < 1e-4 && (d3 + 4.0).abs() < 1e-4,
            "{d2} {d3}"
        );
    }

    #[test]
    fn the_avx2_and_portable_kernels_agree() {
        let query = lcg_vector(7, 768);
        let codes: Vec<i8> = (0..768).map(|i| ((i * 37) % 255) as i8).collect();
        let fast = kernel()(&query, &codes);
        let slow: f32 = query.iter().zip(&codes).map(|(q, c)| q * *c as f32).sum();
        assert!((fast - slow).abs() < 1e-3, "{fast} vs {slow}");
    }
}
