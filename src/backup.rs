//! Snapshots of a whole data dir, and restoring one.
//!
//! A snapshot is a manifest (`snapshots/<id>.json` under the target) that
//! lists every file it holds with its SHA-256 and size, and the Lance
//! version of every dataset and index. The files themselves live once in
//! the target, by content (`objects/<sha256>`): a file a snapshot before
//! already holds is not copied again, so a second snapshot of a data dir
//! that changed little copies little.
//!
//! What it takes, while the service runs:
//! - of each Lance dataset (vector indexes, ingested datasets,
//!   `replay_runs`), the files of its newest version only — that version's
//!   manifest, its fragments' data and deletion files, its indices — and
//!   the version is tagged (`snapshot-<id>`) so retention keeps it while
//!   the snapshot does. Lance files are never rewritten, so a write landing
//!   meanwhile adds files the snapshot does not name and changes none it
//!   does;
//! - every other file: the catalogs, index definitions, faiss and keyword
//!   snapshots (a restore uses one only if it covers nothing the restored
//!   Lance version lacks, as any load does), stored objects. Uploads in
//!   progress and `tmp/` are left out.
//!
//! A restore (`lakehouse restore`) verifies every file's checksum before it
//! writes anything, and refuses a data dir that is not empty unless told to.

use std::collections::HashSet;
use std::io::{Read, Write};
use std::path::{Component, Path, PathBuf};
use std::time::Instant;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use sha2::Digest;

/// The manifest format this build writes and reads.
pub const FORMAT: u32 = 1;

/// One file of a snapshot.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct SnapshotFile {
    /// Relative to the data dir, `/`-separated.
    pub path: String,
    pub sha256: String,
    pub size: u64,
}

/// A Lance dataset of a snapshot and the version it holds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct SnapshotDataset {
    /// Relative to the data dir (`vectors/workers.lance`).
    pub path: String,
    pub version: u64,
}

/// `snapshots/<id>.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct SnapshotManifest {
    pub format: u32,
    pub id: String,
    pub created_at: DateTime<Utc>,
    pub datasets: Vec<SnapshotDataset>,
    pub files: Vec<SnapshotFile>,
    /// Bytes the snapshot holds, and of them those this snapshot copied
    /// (the rest the target held already).
    pub bytes: u64,
    pub copied_bytes: u64,
    pub copied_files: usize,
    /// How long taking it took.
    pub elapsed_ms: u64,
}

/// A snapshot as `GET /v1/admin/snapshots` lists it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct SnapshotSummary {
    pub id: String,
    pub created_at: DateTime<Utc>,
    pub datasets: Vec<SnapshotDataset>,
    pub files: usize,
    pub bytes: u64,
    pub copied_bytes: u64,
    pub elapsed_ms: u64,
}

impl From<&SnapshotManifest> for SnapshotSummary {
    fn from(manifest: &SnapshotManifest) -> Self {
        Self {
            id: manifest.id.clone(),
            created_at: manifest.created_at,
            datasets: manifest.datasets.clone(),
            files: manifest.files.len(),
            bytes: manifest.bytes,
            copied_bytes: manifest.copied_bytes,
            elapsed_ms: manifest.elapsed_ms,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum BackupError {
    #[error("{action} {path}: {source}")]
    Io {
        action: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("lance, {path}: {source}")]
    Lance {
        path: PathBuf,
        #[source]
        source: lance::Error,
    },
    #[error("no snapshot '{0}' in the target")]
    NotFound(String),
    #[error("snapshot manifest {path} does not parse: {reason}")]
    BadManifest { path: PathBuf, reason: String },
    #[error("the target's copy of {path} is corrupt (expected sha256 {expected}, found {found}): nothing was restored")]
    Corrupt {
        path: String,
        expected: String,
        found: String,
    },
    #[error("the target lacks the file {path} (object {sha256}): nothing was restored")]
    Missing { path: String, sha256: String },
    #[error("{0} is not empty: restore into an empty data dir, or pass --force to replace what it holds")]
    NotEmpty(PathBuf),
    #[error("a snapshot names a path outside the data dir: {0}")]
    BadPath(String),
    #[error("the snapshot target {0} is inside the data dir: set snapshots.dir outside it")]
    TargetInside(PathBuf),
}

fn io(action: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> BackupError {
    let path = path.to_path_buf();
    move |source| BackupError::Io {
        action,
        path,
        source,
    }
}

/// A new snapshot id: the time, and a few random letters.
pub fn new_id(now: DateTime<Utc>) -> String {
    let random: String = uuid::Uuid::new_v4().simple().to_string()[..6].to_string();
    format!("{}-{random}", now.format("%Y%m%dt%H%M%Sz"))
}

/// The tag a snapshot puts on each dataset version it holds.
pub fn tag_of(id: &str) -> String {
    format!("snapshot-{id}")
}

/// Takes a snapshot of `data_dir` into `target`, then keeps the newest
/// `keep` snapshots there (older ones, their tags and the files no kept
/// one names are removed).
pub async fn take(
    data_dir: &Path,
    target: &Path,
    keep: usize,
) -> Result<SnapshotManifest, BackupError> {
    let started = Instant::now();
    let now = Utc::now();
    let id = new_id(now);
    let (lance_dirs, plain) = {
        let data_dir = data_dir.to_path_buf();
        tokio::task::spawn_blocking(move || walk(&data_dir))
            .await
            .map_err(|e| BackupError::Io {
                action: "walking",
                path: PathBuf::new(),
                source: std::io::Error::other(e.to_string()),
            })??
    };
    if inside_of(target, data_dir) {
        return Err(BackupError::TargetInside(target.to_path_buf()));
    }
    // Plain files may be replaced meanwhile (they are skipped if gone);
    // the files a Lance version names never change.
    let mut files: Vec<(PathBuf, bool)> = plain.into_iter().map(|f| (f, false)).collect();
    let mut datasets = Vec::new();
    for dir in &lance_dirs {
        let (version, named) = version_files(dir).await?;
        lance::Dataset::open(&dir.to_string_lossy())
            .await
            .map_err(|source| BackupError::Lance {
                path: dir.clone(),
                source,
            })?
            .tags()
            .create(&tag_of(&id), version)
            .await
            .map_err(|source| BackupError::Lance {
                path: dir.clone(),
                source,
            })?;
        datasets.push(SnapshotDataset {
            path: relative(data_dir, dir),
            version,
        });
        files.extend(named.into_iter().map(|f| (f, true)));
    }
    let (data_dir, target_dir) = (data_dir.to_path_buf(), target.to_path_buf());
    let walked_dir = data_dir.clone();
    let manifest = tokio::task::spawn_blocking(move || -> Result<SnapshotManifest, BackupError> {
        let data_dir = walked_dir;
        let objects = target_dir.join("objects");
        std::fs::create_dir_all(&objects).map_err(io("creating", &objects))?;
        let mut entries = Vec::with_capacity(files.len());
        let (mut bytes, mut copied_bytes, mut copied_files) = (0, 0, 0);
        for (file, required) in files {
            // One read: what is hashed is what is stored.
            let Some((sha256, size, copied)) = store_object(&file, &objects, required)? else {
                continue; // replaced or removed since the walk (not a Lance file)
            };
            if copied {
                copied_bytes += size;
                copied_files += 1;
            }
            bytes += size;
            entries.push(SnapshotFile {
                path: relative(&data_dir, &file),
                sha256,
                size,
            });
        }
        entries.sort_by(|a, b| a.path.cmp(&b.path));
        Ok(SnapshotManifest {
            format: FORMAT,
            id: id.clone(),
            created_at: now,
            datasets,
            files: entries,
            bytes,
            copied_bytes,
            copied_files,
            elapsed_ms: 0,
        })
    })
    .await
    .map_err(|e| BackupError::Io {
        action: "copying",
        path: target.to_path_buf(),
        source: std::io::Error::other(e.to_string()),
    })??;
    let mut manifest = manifest;
    manifest.datasets.sort_by(|a, b| a.path.cmp(&b.path));
    manifest.elapsed_ms = started.elapsed().as_millis() as u64;
    let dir = target.join("snapshots");
    std::fs::create_dir_all(&dir).map_err(io("creating", &dir))?;
    let text = serde_json::to_vec_pretty(&manifest).map_err(|e| BackupError::BadManifest {
        path: dir.clone(),
        reason: e.to_string(),
    })?;
    let path = dir.join(format!("{}.json", manifest.id));
    crate::durability::write_atomically(&path, &text, crate::config::Durability::Fsync)
        .map_err(io("writing", &path))?;
    retain(target, keep)?;
    untag(&data_dir, target).await?;
    Ok(manifest)
}

/// Every snapshot in `target`, newest first.
pub fn list(target: &Path) -> Result<Vec<SnapshotManifest>, BackupError> {
    let dir = target.join("snapshots");
    let mut found = Vec::new();
    let entries = match std::fs::read_dir(&dir) {
        Ok(entries) => entries,
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => return Ok(found),
        Err(err) => return Err(io("listing", &dir)(err)),
    };
    for entry in entries {
        let path = entry.map_err(io("listing", &dir))?.path();
        if path.extension().is_some_and(|e| e == "json") {
            found.push(read_manifest(&path)?);
        }
    }
    found.sort_by(|a, b| b.created_at.cmp(&a.created_at).then(b.id.cmp(&a.id)));
    Ok(found)
}

fn read_manifest(path: &Path) -> Result<SnapshotManifest, BackupError> {
    let text = std::fs::read(path).map_err(io("reading", path))?;
    let manifest: SnapshotManifest =
        serde_json::from_slice(&text).map_err(|e| BackupError::BadManifest {
            path: path.to_path_buf(),
            reason: e.to_string(),
        })?;
    if manifest.format != FORMAT {
        return Err(BackupError::BadManifest {
            path: path.to_path_buf(),
            reason: format!("format {} (this build reads {FORMAT})", manifest.format),
        });
    }
    Ok(manifest)
}

/// Keeps the newest `keep` snapshots: older manifests go, then the files
/// no kept manifest names.
fn retain(target: &Path, keep: usize) -> Result<(), BackupError> {
    let all = list(target)?;
    if all.len() <= keep.max(1) {
        return Ok(());
    }
    let (kept, dropped) = all.split_at(keep.max(1));
    for manifest in dropped {
        let path = target
            .join("snapshots")
            .join(format!("{}.json", manifest.id));
        std::fs::remove_file(&path).map_err(io("removing", &path))?;
    }
    let named: HashSet<&str> = kept
        .iter()
        .flat_map(|m| m.files.iter().map(|f| f.sha256.as_str()))
        .collect();
    let objects = target.join("objects");
    for entry in std::fs::read_dir(&objects).map_err(io("listing", &objects))? {
        let path = entry.map_err(io("listing", &objects))?.path();
        let name = path
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or_default();
        if !named.contains(name) {
            std::fs::remove_file(&path).map_err(io("removing", &path))?;
        }
    }
    Ok(())
}

/// Removes the tags of snapshots no longer in `target` from the datasets
/// of `data_dir` (so retention of old versions can go on).
pub async fn untag(data_dir: &Path, target: &Path) -> Result<usize, BackupError> {
    let kept: HashSet<String> = list(target)?.iter().map(|m| tag_of(&m.id)).collect();
    let (lance_dirs, _) = walk(data_dir)?;
    let mut removed = 0;
    for dir in lance_dirs {
        let lance = |source| BackupError::Lance {
            path: dir.clone(),
            source,
        };
        let dataset = lance::Dataset::open(&dir.to_string_lossy())
            .await
            .map_err(lance)?;
        let tags = dataset.tags().list().await.map_err(lance)?;
        for tag in tags
            .keys()
            .filter(|t| t.starts_with("snapshot-") && !kept.contains(*t))
        {
            dataset.tags().delete(tag).await.map_err(lance)?;
            removed += 1;
        }
    }
    Ok(removed)
}

/// What a restore did.
#[derive(Debug, Clone, Serialize)]
pub struct Restored {
    pub id: String,
    pub files: usize,
    pub bytes: u64,
    pub datasets: Vec<SnapshotDataset>,
    pub elapsed_ms: u64,
}

/// Restores snapshot `id` of `target` into `data_dir`: every file's
/// checksum is verified first (a corrupt or missing one fails with its
/// name, and nothing is written); a data dir that is not empty is refused
/// unless `force`, which empties it first.
pub fn restore(
    target: &Path,
    id: &str,
    data_dir: &Path,
    force: bool,
) -> Result<Restored, BackupError> {
    let started = Instant::now();
    let path = target.join("snapshots").join(format!("{id}.json"));
    if id.is_empty() || id.contains(['/', '\\']) || id.starts_with('.') || !path.exists() {
        return Err(BackupError::NotFound(id.to_string()));
    }
    let manifest = read_manifest(&path)?;
    if inside_of(target, data_dir) {
        return Err(BackupError::TargetInside(target.to_path_buf()));
    }
    let objects = target.join("objects");
    for file in &manifest.files {
        inside(&file.path)?;
        let object = objects.join(&file.sha256);
        if !object.exists() {
            return Err(BackupError::Missing {
                path: file.path.clone(),
                sha256: file.sha256.clone(),
            });
        }
        let (found, _) = hash_file(&object)?;
        if found != file.sha256 {
            return Err(BackupError::Corrupt {
                path: file.path.clone(),
                expected: file.sha256.clone(),
                found,
            });
        }
    }
    let occupied = std::fs::read_dir(data_dir)
        .map(|mut entries| entries.next().is_some())
        .unwrap_or(false);
    if occupied && !force {
        return Err(BackupError::NotEmpty(data_dir.to_path_buf()));
    }
    // Written beside the data dir, then swapped in: a failure midway
    // leaves the data dir as it was.
    let name = data_dir
        .file_name()
        .map(|n| n.to_string_lossy().to_string())
        .unwrap_or_else(|| "data".into());
    let parent = data_dir
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    std::fs::create_dir_all(parent).map_err(io("creating", parent))?;
    let tag = uuid::Uuid::new_v4().simple().to_string();
    let staging = parent.join(format!(".{name}.restoring-{tag}"));
    let written = (|| -> Result<(), BackupError> {
        for file in &manifest.files {
            let to = staging.join(&file.path);
            if let Some(folder) = to.parent() {
                std::fs::create_dir_all(folder).map_err(io("creating", folder))?;
            }
            copy_atomically(&objects.join(&file.sha256), &to)?;
        }
        std::fs::create_dir_all(&staging).map_err(io("creating", &staging))
    })();
    if let Err(err) = written {
        let _ = std::fs::remove_dir_all(&staging);
        return Err(err);
    }
    let replaced = parent.join(format!(".{name}.replaced-{tag}"));
    if data_dir.exists() {
        std::fs::rename(data_dir, &replaced).map_err(io("moving aside", data_dir))?;
    }
    std::fs::rename(&staging, data_dir).map_err(io("moving into place", &staging))?;
    if replaced.exists() {
        std::fs::remove_dir_all(&replaced).map_err(io("removing", &replaced))?;
    }
    Ok(Restored {
        id: manifest.id.clone(),
        files: manifest.files.len(),
        bytes: manifest.bytes,
        datasets: manifest.datasets.clone(),
        elapsed_ms: started.elapsed().as_millis() as u64,
    })
}

/// A snapshot's path is relative and stays inside the data dir.
fn inside(path: &str) -> Result<(), BackupError> {
    let fine = !path.is_empty()
        && Path::new(path)
            .components()
            .all(|c| matches!(c, Component::Normal(_)));
    if fine {
        Ok(())
    } else {
        Err(BackupError::BadPath(path.to_string()))
    }
}

/// The Lance dataset dirs under `data_dir` and every other file a
/// snapshot takes (not `tmp/`, not uploads in progress, not lock files).
fn walk(data_dir: &Path) -> Result<(Vec<PathBuf>, Vec<PathBuf>), BackupError> {
    let mut lance = Vec::new();
    let mut plain = Vec::new();
    let mut stack = vec![data_dir.to_path_buf()];
    while let Some(dir) = stack.pop() {
        let entries = match std::fs::read_dir(&dir) {
            Ok(entries) => entries,
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => continue,
            Err(err) => return Err(io("listing", &dir)(err)),
        };
        for entry in entries {
            let entry = entry.map_err(io("listing", &dir))?;
            let path = entry.path();
            let name = entry.file_name().to_string_lossy().to_string();
            let kind = entry.file_type().map_err(io("reading", &path))?;
            if kind.is_dir() {
                if dir == data_dir && (name == "tmp" || name.starts_with('.')) {
                    continue;
                }
                if name.ends_with(".lance") {
                    lance.push(path);
                } else if !name.contains("quarantine") {
                    stack.push(path);
                }
            } else if kind.is_file()
                && !name.contains('#')
                && !name.contains(".tmp")
                && !name.ends_with(".lock")
                && !name.ends_with(".partial")
            {
                plain.push(path);
            }
        }
    }
    lance.sort();
    plain.sort();
    Ok((lance, plain))
}

/// The newest version of the Lance dataset at `dir` and the files it
/// reads: its manifest, its fragments' data and deletion files, its
/// indices.
async fn version_files(dir: &Path) -> Result<(u64, Vec<PathBuf>), BackupError> {
    let lance = |source| BackupError::Lance {
        path: dir.to_path_buf(),
        source,
    };
    let dataset = lance::Dataset::open(&dir.to_string_lossy())
        .await
        .map_err(lance)?;
    let version = dataset.version().version;
    // The location is the object store's full path: its file name is the
    // manifest's within `_versions`.
    let manifest = dataset
        .manifest_location()
        .path
        .filename()
        .unwrap_or_default()
        .to_string();
    let mut files = vec![dir.join("_versions").join(manifest)];
    for fragment in dataset.fragments().iter() {
        for data in &fragment.files {
            let at_root = dir.join(&data.path);
            files.push(if at_root.exists() {
                at_root
            } else {
                dir.join("data").join(&data.path)
            });
        }
        if let Some(deletion) = &fragment.deletion_file {
            files.push(
                dir.join(lance_table::io::deletion::relative_deletion_file_path(
                    fragment.id,
                    deletion,
                )),
            );
        }
    }
    let indices = dir.join("_indices");
    if indices.is_dir() {
        let mut stack = vec![indices];
        while let Some(at) = stack.pop() {
            for entry in std::fs::read_dir(&at).map_err(io("listing", &at))? {
                let path = entry.map_err(io("listing", &at))?.path();
                if path.is_dir() {
                    stack.push(path);
                } else {
                    files.push(path);
                }
            }
        }
    }
    Ok((version, files))
}

fn relative(base: &Path, path: &Path) -> String {
    path.strip_prefix(base)
        .unwrap_or(path)
        .components()
        .map(|c| c.as_os_str().to_string_lossy().to_string())
        .collect::<Vec<_>>()
        .join("/")
}

/// A file's SHA-256 (hex) and size, read in 1 MiB pieces.
fn hash_file(path: &Path) -> Result<(String, u64), BackupError> {
    let mut file = std::fs::File::open(path).map_err(io("opening", path))?;
    let mut hash = sha2::Sha256::new();
    let mut buffer = vec![0u8; 1 << 20];
    let mut size = 0u64;
    loop {
        let n = file.read(&mut buffer).map_err(io("reading", path))?;
        if n == 0 {
            break;
        }
        hash.update(&buffer[..n]);
        size += n as u64;
    }
    Ok((hex::encode(hash.finalize()), size))
}

/// Stores `file` in `objects` under its SHA-256, hashing what it copies:
/// written to a name of its own, synced, then renamed into place unless
/// an object of that content is there already. `(sha256, size, copied)`;
/// `None` when a file that is not `required` is gone.
fn store_object(
    file: &Path,
    objects: &Path,
    required: bool,
) -> Result<Option<(String, u64, bool)>, BackupError> {
    let mut source = match std::fs::File::open(file) {
        Ok(source) => source,
        Err(err) if err.kind() == std::io::ErrorKind::NotFound && !required => return Ok(None),
        Err(err) => return Err(io("opening", file)(err)),
    };
    let incoming = objects.join(format!(".incoming-{}", uuid::Uuid::new_v4().simple()));
    let mut out = std::fs::File::create(&incoming).map_err(io("creating", &incoming))?;
    let mut hash = sha2::Sha256::new();
    let mut buffer = vec![0u8; 1 << 20];
    let mut size = 0u64;
    let copied = (|| -> Result<(), BackupError> {
        loop {
            let n = source.read(&mut buffer).map_err(io("reading", file))?;
            if n == 0 {
                break;
            }
            hash.update(&buffer[..n]);
            out.write_all(&buffer[..n])
                .map_err(io("writing", &incoming))?;
            size += n as u64;
        }
        out.sync_all().map_err(io("syncing", &incoming))
    })();
    if let Err(err) = copied {
        let _ = std::fs::remove_file(&incoming);
        return Err(err);
    }
    let sha256 = hex::encode(hash.finalize());
    let object = objects.join(&sha256);
    if object.exists() {
        std::fs::remove_file(&incoming).map_err(io("removing", &incoming))?;
        return Ok(Some((sha256, size, false)));
    }
    std::fs::rename(&incoming, &object).map_err(io("renaming", &incoming))?;
    Ok(Some((sha256, size, true)))
}

/// Whether `target` is `data_dir` or inside it (compared as absolute,
/// resolved paths where they exist).
fn inside_of(target: &Path, data_dir: &Path) -> bool {
    let resolve = |path: &Path| {
        std::fs::canonicalize(path)
            .unwrap_or_else(|_| std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf()))
    };
    resolve(target).starts_with(resolve(data_dir))
}

/// Copies `from` to `to` through a temporary name beside it, synced, so
/// `to` is whole or absent.
fn copy_atomically(from: &Path, to: &Path) -> Result<(), BackupError> {
    let partial = to.with_extension("partial");
    std::fs::copy(from, &partial).map_err(io("copying", from))?;
    std::fs::File::open(&partial)
        .and_then(|f| f.sync_all())
        .map_err(io("syncing", &partial))?;
    std::fs::rename(&partial, to).map_err(io("renaming", &partial))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_target_inside_the_data_dir_is_refused_and_paths_stay_inside() {
        let root = tempfile::tempdir().unwrap();
        let data = root.path().join("data");
        std::fs::create_dir_all(data.join("vectors")).unwrap();
        assert!(inside_of(&data.join(".snapshots"), &data));
        assert!(inside_of(&data.join("vectors/../x"), &data));
        assert!(!inside_of(&root.path().join("data.snapshots"), &data));
        for bad in ["", "../x", "/etc/passwd", "a/../../b"] {
            assert!(inside(bad).is_err(), "{bad}");
        }
        assert!(inside("vectors/workers.lance/data/x.lance").is_ok());
        let err = restore(&data.join(".snapshots"), "x", &data, false).unwrap_err();
        assert!(matches!(err, BackupError::NotFound(_)), "{err}");
    }
}
