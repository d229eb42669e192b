//! What an acknowledged write survives (`data.durability`), and the
//! syncing that makes a Lance commit survive a host power loss.
//!
//! - `process` (the default): Lance's local store writes files and renames
//!   them into place but never syncs them. When a commit returns, its data
//!   files and manifest are in the operating system's page cache: safe from
//!   any crash or kill of the process, not from a power loss of the host.
//! - `fsync`: every dataset is opened through Lance's object-store API
//!   (`file-object-store://`, the same files on disk) wrapped by
//!   [`SyncingWrapper`], Lance's `WrappingObjectStore` hook. Each object
//!   Lance writes — data file, deletion file, transaction file, manifest —
//!   is synced, with the directory that received it, before the write
//!   returns to Lance. Lance writes a version's data files before its
//!   manifest, so they are on disk before the manifest that refers to them
//!   can be, and the manifest is on disk before the commit returns and the
//!   write is acknowledged.
//!
//! Why not sync after the commit instead: a version's manifest could then
//! reach the disk before its data files, and a power loss in between would
//! leave a whole manifest pointing at missing data. And why not the plain
//! `file://` path with a wrapper: on a local directory Lance writes data
//! files straight through the filesystem, so a wrapper never sees them.

use std::fmt;
use std::fs::File;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;
use futures::stream::BoxStream;
use lance::io::{ObjectStoreParams, WrappingObjectStore};
use object_store::list::PaginatedListStore;
use object_store::path::Path as ObjectPath;
use object_store::{
    CopyOptions, GetOptions, GetResult, ListResult, MultipartUpload, ObjectMeta, ObjectStore,
    PutMultipartOptions, PutOptions, PutPayload, PutResult, RenameOptions, UploadPart,
};

use crate::config::Durability;

/// The URI under which Lance opens the dataset at `path` in this mode.
pub fn dataset_uri(path: &Path, durability: Durability) -> std::io::Result<String> {
    let utf8 = |p: &Path| {
        p.to_str().map(str::to_string).ok_or_else(|| {
            std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                format!("path {} is not UTF-8", p.display()),
            )
        })
    };
    match durability {
        Durability::Process => utf8(path),
        Durability::Fsync => Ok(format!(
            "file-object-store://{}",
            utf8(&std::path::absolute(path)?)?
        )),
    }
}

/// The object-store parameters Lance opens and writes datasets with.
pub fn store_params(durability: Durability) -> ObjectStoreParams {
    match durability {
        Durability::Process => ObjectStoreParams::default(),
        Durability::Fsync => ObjectStoreParams {
            object_store_wrapper: Some(Arc::new(SyncingWrapper)),
            ..ObjectStoreParams::default()
        },
    }
}

/// An object store over the local directory `dir` whose every completed
/// write is synced, with its directory, before it returns (the stored
/// objects' store in the `fsync` mode).
pub fn syncing_directory(dir: &Path) -> object_store::Result<Arc<dyn ObjectStore>> {
    let absolute = std::path::absolute(dir).map_err(sync_error)?;
    let root: Arc<dyn ObjectStore> = Arc::new(SyncingStore {
        inner: Arc::new(object_store::local::LocalFileSystem::new()),
    });
    let prefix = ObjectPath::from_absolute_path(&absolute)?;
    Ok(Arc::new(object_store::prefix::PrefixStore::new(
        root, prefix,
    )))
}

/// Lance's hook: wraps the local object store in a [`SyncingStore`].
#[derive(Debug)]
pub struct SyncingWrapper;

impl WrappingObjectStore for SyncingWrapper {
    fn wrap(&self, _store_prefix: &str, original: Arc<dyn ObjectStore>) -> Arc<dyn ObjectStore> {
        Arc::new(SyncingStore { inner: original })
    }

    /// Listings are only read, never intercepted: keep Lance's own.
    fn wrap_paginated(
        &self,
        _store_prefix: &str,
        original: Arc<dyn PaginatedListStore>,
    ) -> Option<Arc<dyn PaginatedListStore>> {
        Some(original)
    }
}

/// An object store (object_store's `LocalFileSystem`, rooted at `/`) whose
/// every completed write is synced to disk, with its directory, before it
/// returns.
#[derive(Debug)]
pub struct SyncingStore {
    inner: Arc<dyn ObjectStore>,
}

impl fmt::Display for SyncingStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Syncing({})", self.inner)
    }
}

#[async_trait]
impl ObjectStore for SyncingStore {
    async fn put_opts(
        &self,
        location: &ObjectPath,
        payload: PutPayload,
        opts: PutOptions,
    ) -> object_store::Result<PutResult> {
        let created = NewDirectories::before_write(location);
        let result = self.inner.put_opts(location, payload, opts).await?;
        sync_object(location, created).await?;
        Ok(result)
    }

    async fn put_multipart_opts(
        &self,
        location: &ObjectPath,
        opts: PutMultipartOptions,
    ) -> object_store::Result<Box<dyn MultipartUpload>> {
        let created = NewDirectories::before_write(location);
        let inner = self.inner.put_multipart_opts(location, opts).await?;
        Ok(Box::new(SyncingUpload {
            inner,
            location: location.clone(),
            created,
        }))
    }

    async fn get_opts(
        &self,
        location: &ObjectPath,
        options: GetOptions,
    ) -> object_store::Result<GetResult> {
        self.inner.get_opts(location, options).await
    }

    async fn get_ranges(
        &self,
        location: &ObjectPath,
        ranges: &[Range<u64>],
    ) -> object_store::Result<Vec<Bytes>> {
        self.inner.get_ranges(location, ranges).await
    }

    fn delete_stream(
        &self,
        locations: BoxStream<'static, object_store::Result<ObjectPath>>,
    ) -> BoxStream<'static, object_store::Result<ObjectPath>> {
        self.inner.delete_stream(locations)
    }

    fn list(
        &self,
        prefix: Option<&ObjectPath>,
    ) -> BoxStream<'static, object_store::Result<ObjectMeta>> {
        self.inner.list(prefix)
    }

    fn list_with_offset(
        &self,
        prefix: Option<&ObjectPath>,
        offset: &ObjectPath,
    ) -> BoxStream<'static, object_store::Result<ObjectMeta>> {
        self.inner.list_with_offset(prefix, offset)
    }

    async fn list_with_delimiter(
        &self,
        prefix: Option<&ObjectPath>,
    ) -> object_store::Result<ListResult> {
        self.inner.list_with_delimiter(prefix).await
    }

    async fn copy_opts(
        &self,
        from: &ObjectPath,
        to: &ObjectPath,
        options: CopyOptions,
    ) -> object_store::Result<()> {
        let created = NewDirectories::before_write(to);
        self.inner.copy_opts(from, to, options).await?;
        sync_object(to, created).await
    }

    async fn rename_opts(
        &self,
        from: &ObjectPath,
        to: &ObjectPath,
        options: RenameOptions,
    ) -> object_store::Result<()> {
        let created = NewDirectories::before_write(to);
        self.inner.rename_opts(from, to, options).await?;
        sync_object(to, created).await?;
        // The old name is gone from its directory too.
        sync_directory(filesystem_path(from).parent()).await
    }
}

/// A multipart upload that syncs the object when it completes.
#[derive(Debug)]
struct SyncingUpload {
    inner: Box<dyn MultipartUpload>,
    location: ObjectPath,
    created: NewDirectories,
}

#[async_trait]
impl MultipartUpload for SyncingUpload {
    fn put_part(&mut self, data: PutPayload) -> UploadPart {
        self.inner.put_part(data)
    }

    async fn complete(&mut self) -> object_store::Result<PutResult> {
        let result = self.inner.complete().await?;
        sync_object(&self.location, self.created.clone()).await?;
        Ok(result)
    }

    async fn abort(&mut self) -> object_store::Result<()> {
        self.inner.abort().await
    }
}

/// Directories a write is about to create (they must be synced into their
/// own parents too), outermost first.
#[derive(Debug, Clone, Default)]
struct NewDirectories(Vec<PathBuf>);

impl NewDirectories {
    fn before_write(location: &ObjectPath) -> Self {
        let file = filesystem_path(location);
        let mut missing = Vec::new();
        let mut dir = file.parent();
        while let Some(d) = dir {
            if d.exists() {
                break;
            }
            missing.push(d.to_path_buf());
            dir = d.parent();
        }
        missing.reverse();
        Self(missing)
    }
}

/// `LocalFileSystem::new()` keeps absolute paths without their leading `/`.
fn filesystem_path(location: &ObjectPath) -> PathBuf {
    Path::new("/").join(location.as_ref())
}

/// Syncs the object's file, its directory, and the parents of any
/// directory the write created.
async fn sync_object(location: &ObjectPath, created: NewDirectories) -> object_store::Result<()> {
    let file = filesystem_path(location);
    tokio::task::spawn_blocking(move || -> std::io::Result<()> {
        File::open(&file)?.sync_all()?;
        if let Some(parent) = file.parent() {
            File::open(parent)?.sync_all()?;
        }
        for dir in &created.0 {
            if let Some(parent) = dir.parent() {
                File::open(parent)?.sync_all()?;
            }
        }
        Ok(())
    })
    .await
    .map_err(|e| sync_error(std::io::Error::other(e)))?
    .map_err(sync_error)
}

async fn sync_directory(dir: Option<&Path>) -> object_store::Result<()> {
    let Some(dir) = dir.map(Path::to_path_buf) else {
        return Ok(());
    };
    tokio::task::spawn_blocking(move || File::open(&dir)?.sync_all())
        .await
        .map_err(|e| sync_error(std::io::Error::other(e)))?
        .map_err(sync_error)
}

fn sync_error(source: std::io::Error) -> object_store::Error {
    object_store::Error::Generic {
        store: "SyncingStore",
        source: Box::new(source),
    }
}

/// Writes `bytes` to `path` atomically (temporary file, then rename); in
/// the `fsync` mode the file and the rename are synced before returning.
/// Syncs directory `dir`, so that the entries it received (a created or
/// renamed file) survive a power loss.
pub fn sync_dir(dir: &Path) -> std::io::Result<()> {
    File::open(dir)?.sync_all()
}

pub fn write_atomically(path: &Path, bytes: &[u8], durability: Durability) -> std::io::Result<()> {
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    let tmp = PathBuf::from(tmp);
    std::fs::write(&tmp, bytes)?;
    if durability == Durability::Fsync {
        File::open(&tmp)?.sync_all()?;
    }
    std::fs::rename(&tmp, path)?;
    if durability == Durability::Fsync {
        if let Some(parent) = path.parent() {
            sync_dir(parent)?;
        }
    }
    Ok(())
}
