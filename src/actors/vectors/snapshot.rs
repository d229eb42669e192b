//! faiss snapshots: the derived HNSW index written beside its Lance
//! dataset, so a restart loads it (~0.3 s at 100k) instead of rebuilding
//! the graph (~a minute).
//!
//! A snapshot is two files: `<name>.faiss` and `<name>.faiss.json`, the
//! latter recording the Lance version and the largest `seq` the index
//! covers, the file's size and CRC-32. Both are written to temporary files
//! and renamed into place, the index first: a crash between the renames
//! leaves a new index with old metadata, which fails the size/CRC check and
//! is ignored. A snapshot is trusted only when every check passes;
//! otherwise the index is rebuilt from Lance.
//!
//! The keyword index taken with the graph goes to a third file,
//! `<name>.keywords`, installed last. It checks itself and is reconciled
//! document by document with the live texts at load (see
//! [`crate::actors::vectors::keyword::stored`]), so it needs no pairing
//! with the other two: an old one only costs analysis time.

use std::io::Read;
use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::hnsw::{Hnsw, HnswError};
use crate::domain::vectors::{IndexDefinition, IndexKind, Metric, VectorStorage};

const FORMAT: u32 = 1;

/// Why a snapshot was not written, or is not used.
#[derive(Debug, thiserror::Error)]
pub enum SnapshotError {
    #[error("no snapshot metadata: {0}")]
    Missing(#[source] std::io::Error),
    #[error("unreadable snapshot metadata: {0}")]
    Metadata(#[from] serde_json::Error),
    #[error("snapshot does not match the index: {0}")]
    Mismatch(&'static str),
    #[error(
        "snapshot file is corrupt (size {size} vs {expected_size}, crc {crc:08x} vs {expected_crc:08x})"
    )]
    Corrupt {
        size: u64,
        expected_size: u64,
        crc: u32,
        expected_crc: u32,
    },
    #[error("snapshot holds {found} vectors, its metadata says {expected}")]
    Count { found: u64, expected: u64 },
    #[error("snapshot is newer than the Lance dataset (version {snapshot} > {lance})")]
    NewerThanLance { snapshot: u64, lance: u64 },
    #[error("snapshot covers writes Lance does not have (seq {snapshot} > {lance})")]
    AheadOfLance { snapshot: u64, lance: u64 },
    #[error("{action} {path}: {source}")]
    Io {
        action: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Faiss(#[from] HnswError),
}

fn io<'a>(
    action: &'static str,
    path: &'a Path,
) -> impl FnOnce(std::io::Error) -> SnapshotError + 'a {
    move |source| SnapshotError::Io {
        action,
        path: path.to_path_buf(),
        source,
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct SnapshotMeta {
    pub format: u32,
    pub dimension: usize,
    pub metric: Metric,
    pub m: u32,
    /// Absent in snapshots written before indexes had a kind and a
    /// storage: an HNSW graph over f32.
    #[serde(default)]
    pub kind: IndexKind,
    #[serde(default)]
    pub storage: VectorStorage,
    /// The Lance version the index reflects.
    pub lance_version: u64,
    /// Every row with `seq <= max_seq` is in the index; none above.
    pub max_seq: u64,
    /// Vectors in the graph, tombstoned ones included.
    pub ntotal: u64,
    pub file_size: u64,
    pub crc32: u32,
    pub written_at: DateTime<Utc>,
}

#[derive(Debug, Clone)]
pub struct SnapshotPaths {
    pub index: PathBuf,
    pub meta: PathBuf,
    /// The keyword index taken with the graph (see
    /// [`crate::actors::vectors::keyword::stored`]): one self-checking
    /// file, installed after the other two.
    pub keywords: PathBuf,
}

impl SnapshotPaths {
    pub fn new(dir: &Path, name: &str) -> Self {
        Self {
            index: dir.join(format!("{name}.faiss")),
            meta: dir.join(format!("{name}.faiss.json")),
            keywords: dir.join(format!("{name}.keywords")),
        }
    }

    fn tmp_tagged(path: &Path, tag: u64) -> PathBuf {
        let mut name = path.as_os_str().to_owned();
        name.push(format!(".tmp-{tag}"));
        PathBuf::from(name)
    }

    /// Removes the snapshot and any temporary files.
    pub fn remove(&self) {
        let _ = std::fs::remove_file(&self.index);
        let _ = std::fs::remove_file(&self.meta);
        let _ = std::fs::remove_file(&self.keywords);
        self.remove_temporary();
    }

    /// Removes temporary files left by writers that did not finish (a
    /// crash, or an incarnation that died mid-write).
    pub fn remove_temporary(&self) {
        for path in [&self.index, &self.meta, &self.keywords] {
            let (Some(dir), Some(name)) = (path.parent(), path.file_name()) else {
                continue;
            };
            let mut prefix = name.to_owned();
            prefix.push(".tmp");
            let prefix = prefix.to_string_lossy().into_owned();
            let Ok(entries) = std::fs::read_dir(dir) else {
                continue;
            };
            for entry in entries.flatten() {
                if entry.file_name().to_string_lossy().starts_with(&prefix) {
                    let _ = std::fs::remove_file(entry.path());
                }
            }
        }
    }
}

/// What the Lance dataset holds, which a snapshot must not exceed.
pub struct Covering {
    pub lance_version: u64,
    pub lance_max_seq: u64,
}

/// A snapshot written to temporary files, not yet in place.
pub struct Prepared {
    pub meta: SnapshotMeta,
    tmp_index: PathBuf,
    tmp_meta: PathBuf,
    tmp_keywords: PathBuf,
}

impl Prepared {
    /// Renames the files into place, the index first (see the module doc).
    pub fn install(self, paths: &SnapshotPaths) -> Result<SnapshotMeta, SnapshotError> {
        std::fs::rename(&self.tmp_index, &paths.index).map_err(io("installing", &paths.index))?;
        std::fs::rename(&self.tmp_meta, &paths.meta).map_err(io("installing", &paths.meta))?;
        std::fs::rename(&self.tmp_keywords, &paths.keywords)
            .map_err(io("installing", &paths.keywords))?;
        Ok(self.meta)
    }

    /// Drops the temporary files (a newer incarnation owns the index).
    pub fn discard(self) {
        let _ = std::fs::remove_file(&self.tmp_index);
        let _ = std::fs::remove_file(&self.tmp_meta);
        let _ = std::fs::remove_file(&self.tmp_keywords);
    }
}

/// Writes `hnsw` as a snapshot covering `lance_version` / `max_seq`, and
/// the encoded keyword index beside it, into temporary files named with
/// `tag`, so writers of different incarnations never share one.
pub fn prepare(
    paths: &SnapshotPaths,
    tag: u64,
    hnsw: &Hnsw,
    keywords: &[u8],
    definition: &IndexDefinition,
    lance_version: u64,
    max_seq: u64,
) -> Result<Prepared, SnapshotError> {
    let tmp_index = SnapshotPaths::tmp_tagged(&paths.index, tag);
    let tmp_meta = SnapshotPaths::tmp_tagged(&paths.meta, tag);
    let tmp_keywords = SnapshotPaths::tmp_tagged(&paths.keywords, tag);
    let written = (|| {
        hnsw.write(&tmp_index)?;
        std::fs::write(&tmp_keywords, keywords).map_err(io("writing", &tmp_keywords))?;
        let (file_size, crc32) = checksum(&tmp_index)?;
        let meta = SnapshotMeta {
            format: FORMAT,
            dimension: definition.dimension,
            metric: definition.metric,
            m: definition.hnsw.m,
            kind: definition.kind,
            storage: definition.storage,
            lance_version,
            max_seq,
            ntotal: hnsw.len(),
            file_size,
            crc32,
            written_at: Utc::now(),
        };
        let json = serde_json::to_vec_pretty(&meta)?;
        std::fs::write(&tmp_meta, json).map_err(io("writing", &tmp_meta))?;
        Ok(meta)
    })();
    match written {
        Ok(meta) => Ok(Prepared {
            meta,
            tmp_index,
            tmp_meta,
            tmp_keywords,
        }),
        Err(err) => {
            let _ = std::fs::remove_file(&tmp_index);
            let _ = std::fs::remove_file(&tmp_meta);
            let _ = std::fs::remove_file(&tmp_keywords);
            Err(err)
        }
    }
}

/// Writes and installs a snapshot in one step.
pub fn write(
    paths: &SnapshotPaths,
    hnsw: &Hnsw,
    keywords: &[u8],
    definition: &IndexDefinition,
    lance_version: u64,
    max_seq: u64,
) -> Result<SnapshotMeta, SnapshotError> {
    prepare(paths, 0, hnsw, keywords, definition, lance_version, max_seq)?.install(paths)
}

/// Reads the snapshot and checks it against the index definition and its
/// own size and CRC — everything but what Lance holds (see
/// [`check_covering`]), so it can run while Lance is being scanned.
pub fn read(
    paths: &SnapshotPaths,
    definition: &IndexDefinition,
) -> Result<(Hnsw, SnapshotMeta), SnapshotError> {
    let bytes = std::fs::read(&paths.meta).map_err(SnapshotError::Missing)?;
    let meta: SnapshotMeta = serde_json::from_slice(&bytes)?;
    let checks = [
        (meta.format == FORMAT, "format"),
        (meta.dimension == definition.dimension, "dimension"),
        (meta.metric == definition.metric, "metric"),
        (meta.m == definition.hnsw.m, "hnsw.m"),
        (meta.kind == definition.kind, "kind"),
        (meta.storage == definition.storage, "storage"),
    ];
    if let Some((_, what)) = checks.iter().find(|(ok, _)| !ok) {
        return Err(SnapshotError::Mismatch(what));
    }
    let (size, crc) = checksum(&paths.index)?;
    if size != meta.file_size || crc != meta.crc32 {
        return Err(SnapshotError::Corrupt {
            size,
            expected_size: meta.file_size,
            crc,
            expected_crc: meta.crc32,
        });
    }
    let hnsw = Hnsw::read(&paths.index, definition.dimension)?;
    if hnsw.len() != meta.ntotal {
        return Err(SnapshotError::Count {
            found: hnsw.len(),
            expected: meta.ntotal,
        });
    }
    Ok((hnsw, meta))
}

/// A snapshot may not cover more than Lance holds (a newer version, or
/// writes Lance does not have): it would show rows that are not durable.
pub fn check_covering(meta: &SnapshotMeta, lance: &Covering) -> Result<(), SnapshotError> {
    if meta.lance_version > lance.lance_version {
        return Err(SnapshotError::NewerThanLance {
            snapshot: meta.lance_version,
            lance: lance.lance_version,
        });
    }
    if meta.max_seq > lance.lance_max_seq {
        return Err(SnapshotError::AheadOfLance {
            snapshot: meta.max_seq,
            lance: lance.lance_max_seq,
        });
    }
    Ok(())
}

fn checksum(path: &Path) -> Result<(u64, u32), SnapshotError> {
    let mut file = std::fs::File::open(path).map_err(io("opening", path))?;
    let mut hasher = crc32fast::Hasher::new();
    let mut buffer = vec![0u8; 1 << 20];
    let mut size = 0u64;
    loop {
        let n = file.read(&mut buffer).map_err(io("reading", path))?;
        if n == 0 {
            break;
        }
        hasher.update(&buffer[..n]);
        size += n as u64;
    }
    Ok((size, hasher.finalize()))
}
