//! The `storage` actor: object I/O on `object_store` — a local directory
//! under `data.dir/objects` by default, `s3://bucket/prefix` by
//! configuration (endpoint and credentials from config, never logged).
//!
//! Uploads stream: the HTTP edge forwards body chunks through a bounded
//! channel into a multipart upload, which becomes visible only when it
//! completes, so an oversized or aborted upload stores nothing. A semaphore
//! caps concurrent transfers; when it is full callers get 503.

use std::sync::Arc;

use bytes::Bytes;
use chrono::{DateTime, Utc};
use futures::stream::BoxStream;
use futures::{StreamExt, TryStreamExt};
use object_store::local::LocalFileSystem;
use object_store::path::Path as ObjectPath;
use object_store::{ObjectStore, ObjectStoreExt, WriteMultipart};
use ractor::{Actor, ActorProcessingErr, ActorRef, RpcReplyPort};
use serde::Serialize;
use tokio::sync::{mpsc, OwnedSemaphorePermit, Semaphore};

use crate::codes::{ErrorCode, HasCode};
use crate::config::StorageSettings;
use crate::supervision::Fault;

pub const NAME: &str = "storage";

/// Longest key, in characters.
pub const MAX_KEY_CHARS: usize = 1024;
/// Longest segment of a key, in characters; and in bytes of UTF-8, which
/// the document cannot state: file systems count a name's bytes (255 on
/// ext4), and the local store stages an upload as `name#<counter>`.
pub const MAX_SEGMENT_CHARS: usize = 200;

#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    #[error("invalid key: {0}")]
    InvalidKey(String),
    #[error("no object '{0}'")]
    NotFound(String),
    #[error("the object is larger than the limit of {limit} bytes")]
    TooLarge { limit: u64 },
    #[error("too many transfers in progress; retry shortly")]
    Busy,
    #[error("the upload was interrupted: {0}")]
    Aborted(String),
    #[error("{0}")]
    Conflict(String),
    #[error("object store: {0}")]
    Backend(String),
}

impl HasCode for StorageError {
    fn code(&self) -> ErrorCode {
        match self {
            StorageError::InvalidKey(_) => ErrorCode::InvalidKey,
            StorageError::NotFound(_) => ErrorCode::ObjectNotFound,
            StorageError::TooLarge { .. } => ErrorCode::PayloadTooLarge,
            StorageError::Busy => ErrorCode::TooManyTransfers,
            StorageError::Aborted(_) => ErrorCode::UploadAborted,
            StorageError::Conflict(_) => ErrorCode::KeyConflict,
            StorageError::Backend(_) => ErrorCode::StorageError,
        }
    }
}

impl From<object_store::Error> for StorageError {
    fn from(err: object_store::Error) -> Self {
        StorageError::Backend(err.to_string())
    }
}

/// The error of a store call about `key`: a missing object is named by
/// its key (the store's own path would show the data directory); a key
/// the store refuses is the client's mistake, and so is one whose folder
/// is an object (or the reverse), which a racing upload can still meet
/// after [`check_conflicts`].
fn about(key: &str) -> impl Fn(object_store::Error) -> StorageError + '_ {
    move |err| match err {
        object_store::Error::NotFound { .. } => StorageError::NotFound(key.to_string()),
        object_store::Error::InvalidPath { .. } => {
            StorageError::InvalidKey(format!("the store does not take the key {:?}", short(key)))
        }
        other => {
            let message = other.to_string();
            if ["Not a directory", "Is a directory", "File exists"]
                .iter()
                .any(|m| message.contains(m))
            {
                StorageError::Conflict(format!(
                    "{:?} clashes with an object that is a folder of it, or it of one",
                    short(key)
                ))
            } else {
                StorageError::Backend(message)
            }
        }
    }
}

fn short(key: &str) -> String {
    key.chars().take(100).collect()
}

/// One chunk of an upload, the end of it, or the edge saying the upload
/// is off. A channel that closes without `End` is an aborted upload.
pub enum UploadChunk {
    Data(Bytes),
    End,
    Abort(String),
}

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct ObjectInfo {
    pub key: String,
    pub size: u64,
    pub modified: DateTime<Utc>,
}

pub type ObjectStream = BoxStream<'static, Result<Bytes, StorageError>>;

pub enum StorageMessage {
    /// Starts an upload; the caller then sends the body through `chunks`.
    Put {
        key: String,
        chunks: mpsc::Receiver<UploadChunk>,
        reply: RpcReplyPort<Result<ObjectInfo, StorageError>>,
    },
    Get {
        key: String,
        reply: RpcReplyPort<Result<(ObjectInfo, ObjectStream), StorageError>>,
    },
    Delete {
        key: String,
        reply: RpcReplyPort<Result<(), StorageError>>,
    },
    List {
        prefix: Option<String>,
        reply: RpcReplyPort<Result<Vec<ObjectInfo>, StorageError>>,
    },
    Fault(Fault),
}

impl From<Fault> for StorageMessage {
    fn from(fault: Fault) -> Self {
        Self::Fault(fault)
    }
}

pub struct StorageActor;

pub struct StorageArguments {
    pub settings: StorageSettings,
    /// `data.dir`, for the local default.
    pub data_dir: std::path::PathBuf,
    /// `fsync`: a stored object is synced to disk before it is acknowledged.
    pub durability: crate::config::Durability,
}

pub struct StorageState {
    store: Arc<dyn ObjectStore>,
    permits: Arc<Semaphore>,
    max_object_bytes: u64,
}

/// A key is a relative path of non-empty segments: no `..` or `.`, no
/// leading `/`, no backslashes or control characters, at most
/// [`MAX_KEY_CHARS`], each segment at most [`MAX_SEGMENT_CHARS`]
/// characters and bytes. Keys arrive percent-decoded, so encoded forms of
/// these (`%2e%2e`, `%2f`) are caught too.
pub fn validate_key(key: &str) -> Result<ObjectPath, StorageError> {
    let invalid = |why: &str| {
        Err(StorageError::InvalidKey(format!(
            "{why}: {:?}",
            key.chars().take(100).collect::<String>()
        )))
    };
    if key.is_empty() {
        return invalid("empty key");
    }
    if key.chars().count() > MAX_KEY_CHARS {
        return invalid(&format!("a key is at most {MAX_KEY_CHARS} characters"));
    }
    if key.starts_with('/') {
        return invalid("absolute keys are not allowed");
    }
    if key.chars().any(|c| c.is_control() || c == '\\') {
        return invalid("control characters and backslashes are not allowed");
    }
    if key.contains('%') {
        return invalid("percent signs are not allowed (keys are already decoded)");
    }
    for segment in key.split('/') {
        if segment.is_empty() || segment == "." || segment == ".." {
            return invalid("empty, '.' and '..' segments are not allowed");
        }
        if segment.len() > MAX_SEGMENT_CHARS {
            return invalid(&format!(
                "a segment is at most {MAX_SEGMENT_CHARS} characters and {MAX_SEGMENT_CHARS} bytes of UTF-8"
            ));
        }
        // `name#123` is how the local store names an upload in progress.
        if let Some((_, suffix)) = segment.rsplit_once('#') {
            if !suffix.is_empty() && suffix.bytes().all(|b| b.is_ascii_digit()) {
                return invalid(
                    "a segment may not end in '#' and digits (reserved for uploads in progress)",
                );
            }
        }
    }
    ObjectPath::parse(key).map_err(|e| StorageError::InvalidKey(e.to_string()))
}

impl Actor for StorageActor {
    type Msg = StorageMessage;
    type State = StorageState;
    type Arguments = StorageArguments;

    async fn pre_start(
        &self,
        _myself: ActorRef<Self::Msg>,
        args: StorageArguments,
    ) -> Result<Self::State, ActorProcessingErr> {
        let store: Arc<dyn ObjectStore> = match args.settings.url.as_deref() {
            None | Some("") => {
                let dir = args.data_dir.join("objects");
                std::fs::create_dir_all(&dir)?;
                match args.durability {
                    crate::config::Durability::Process => {
                        Arc::new(LocalFileSystem::new_with_prefix(&dir)?)
                    }
                    crate::config::Durability::Fsync => crate::durability::syncing_directory(&dir)?,
                }
            }
            Some(url) => s3_store(url, &args.settings)?,
        };
        Ok(StorageState {
            store,
            permits: Arc::new(Semaphore::new(args.settings.max_concurrent_transfers)),
            max_object_bytes: args.settings.max_object_bytes,
        })
    }

    async fn handle(
        &self,
        _myself: ActorRef<Self::Msg>,
        message: Self::Msg,
        state: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        match message {
            StorageMessage::Put { key, chunks, reply } => {
                let prepared = validate_key(&key).and_then(|path| Ok((path, state.permit()?)));
                match prepared {
                    Ok((path, permit)) => {
                        let (store, limit) = (state.store.clone(), state.max_object_bytes);
                        tokio::spawn(async move {
                            let stored = match check_conflicts(&store, &path, &key).await {
                                Ok(()) => upload(store, path, key, chunks, limit, permit).await,
                                Err(err) => Err(err),
                            };
                            let _ = reply.send(stored);
                        });
                    }
                    Err(err) => {
                        let _ = reply.send(Err(err));
                    }
                }
            }
            StorageMessage::Get { key, reply } => {
                let prepared = validate_key(&key).and_then(|path| Ok((path, state.permit()?)));
                match prepared {
                    Ok((path, permit)) => {
                        let store = state.store.clone();
                        tokio::spawn(async move {
                            let _ = reply.send(download(store, path, key, permit).await);
                        });
                    }
                    Err(err) => {
                        let _ = reply.send(Err(err));
                    }
                }
            }
            StorageMessage::Delete { key, reply } => {
                let store = state.store.clone();
                tokio::spawn(async move {
                    let result = async {
                        let path = validate_key(&key)?;
                        store.head(&path).await.map_err(about(&key))?;
                        store.delete(&path).await.map_err(about(&key))?;
                        Ok(())
                    }
                    .await;
                    let _ = reply.send(result);
                });
            }
            StorageMessage::List { prefix, reply } => {
                let store = state.store.clone();
                tokio::spawn(async move {
                    let result = async {
                        let prefix = match prefix.as_deref().map(|p| p.trim_end_matches('/')) {
                            None | Some("") => None,
                            Some(p) => Some(validate_key(p)?),
                        };
                        let mut objects: Vec<ObjectInfo> = store
                            .list(prefix.as_ref())
                            .map_ok(|meta| ObjectInfo {
                                key: meta.location.to_string(),
                                size: meta.size,
                                modified: meta.last_modified,
                            })
                            .try_collect()
                            .await?;
                        objects.sort_by(|a, b| a.key.cmp(&b.key));
                        Ok(objects)
                    }
                    .await;
                    let _ = reply.send(result);
                });
            }
            StorageMessage::Fault(fault) => fault.apply(NAME).await?,
        }
        Ok(())
    }
}

impl StorageState {
    fn permit(&self) -> Result<OwnedSemaphorePermit, StorageError> {
        self.permits
            .clone()
            .try_acquire_owned()
            .map_err(|_| StorageError::Busy)
    }
}

/// Keys are paths: an object cannot also be a folder of others. Refuses
/// `a/b` when `a` is an object, and `a` when objects live under `a/` (the
/// local store could not hold both; S3 could, but the same key must mean
/// the same on every store).
async fn check_conflicts(
    store: &Arc<dyn ObjectStore>,
    path: &ObjectPath,
    key: &str,
) -> Result<(), StorageError> {
    let parts: Vec<_> = path.parts().collect();
    let mut ancestor = ObjectPath::default();
    for part in &parts[..parts.len().saturating_sub(1)] {
        ancestor = ancestor.join(part.clone());
        if store.head(&ancestor).await.is_ok() {
            return Err(StorageError::Conflict(format!(
                "{:?} is an object, so {:?} cannot be stored under it",
                ancestor.to_string(),
                short(key)
            )));
        }
    }
    // Nothing under the key (the local store: no such directory, or a file).
    let under = match store.list_with_delimiter(Some(path)).await {
        Ok(under) => under,
        Err(object_store::Error::NotFound { .. }) => return Ok(()),
        Err(err) if err.to_string().contains("Not a directory") => return Ok(()),
        Err(err) => return Err(about(key)(err)),
    };
    if !under.objects.is_empty() || !under.common_prefixes.is_empty() {
        return Err(StorageError::Conflict(format!(
            "objects are stored under {:?}/, so it cannot be an object itself",
            short(key)
        )));
    }
    Ok(())
}

async fn upload(
    store: Arc<dyn ObjectStore>,
    path: ObjectPath,
    key: String,
    mut chunks: mpsc::Receiver<UploadChunk>,
    limit: u64,
    _permit: OwnedSemaphorePermit,
) -> Result<ObjectInfo, StorageError> {
    let mut writer = WriteMultipart::new(store.put_multipart(&path).await.map_err(about(&key))?);
    let mut size = 0u64;
    let outcome = loop {
        match chunks.recv().await {
            Some(UploadChunk::Data(bytes)) => {
                size += bytes.len() as u64;
                if size > limit {
                    break Err(StorageError::TooLarge { limit });
                }
                writer.put(bytes);
            }
            Some(UploadChunk::Abort(reason)) => break Err(StorageError::Aborted(reason)),
            Some(UploadChunk::End) => break Ok(()),
            None => {
                break Err(StorageError::Aborted(
                    "the request ended before its body".into(),
                ))
            }
        }
    };
    match outcome {
        Ok(()) => {
            writer.finish().await.map_err(about(&key))?;
            // A delete of the same key may land between the two calls: the
            // upload still succeeded, with the bytes it counted.
            let modified = match store.head(&path).await {
                Ok(meta) => meta.last_modified,
                Err(object_store::Error::NotFound { .. }) => chrono::Utc::now(),
                Err(err) => return Err(err.into()),
            };
            Ok(ObjectInfo {
                key,
                size,
                modified,
            })
        }
        Err(err) => {
            let _ = writer.abort().await;
            Err(err)
        }
    }
}

async fn download(
    store: Arc<dyn ObjectStore>,
    path: ObjectPath,
    key: String,
    permit: OwnedSemaphorePermit,
) -> Result<(ObjectInfo, ObjectStream), StorageError> {
    let result = store.get(&path).await.map_err(about(&key))?;
    let info = ObjectInfo {
        key,
        size: result.meta.size,
        modified: result.meta.last_modified,
    };
    // The permit travels with the stream: released when the transfer ends.
    let stream = result
        .into_stream()
        .map(move |chunk| {
            let _held = &permit;
            chunk.map_err(StorageError::from)
        })
        .boxed();
    Ok((info, stream))
}

#[cfg(feature = "s3")]
fn s3_store(
    url: &str,
    settings: &StorageSettings,
) -> Result<Arc<dyn ObjectStore>, ActorProcessingErr> {
    use object_store::aws::AmazonS3Builder;
    let rest = url
        .strip_prefix("s3://")
        .ok_or("storage.url must start with s3://")?;
    let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
    let mut builder = AmazonS3Builder::new()
        .with_bucket_name(bucket)
        .with_region(&settings.s3_region);
    if let Some(endpoint) = &settings.s3_endpoint {
        builder = builder
            .with_endpoint(endpoint)
            .with_allow_http(endpoint.starts_with("http://"));
    }
    if let (Some(key), Some(secret)) = (&settings.s3_access_key_id, &settings.s3_secret_access_key)
    {
        builder = builder
            .with_access_key_id(key)
            .with_secret_access_key(secret.0.clone());
    }
    let store: Arc<dyn ObjectStore> = Arc::new(builder.build()?);
    Ok(if prefix.is_empty() {
        store
    } else {
        Arc::new(object_store::prefix::PrefixStore::new(store, prefix))
    })
}

#[cfg(not(feature = "s3"))]
fn s3_store(
    url: &str,
    _settings: &StorageSettings,
) -> Result<Arc<dyn ObjectStore>, ActorProcessingErr> {
    Err(
        format!("storage.url = {url}: this build has no S3 support (build with --features s3)")
            .into(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_can_never_leave_the_store() {
        for bad in [
            "",
            "/etc/passwd",
            "../x",
            "a/../../b",
            "a/./b",
            "a//b",
            "x\u{0}y",
            "a\\b",
            "%2e%2e/x",
            "a/..",
            "..",
        ] {
            assert!(validate_key(bad).is_err(), "{bad:?} must be refused");
        }
        for good in ["report.csv", "2026/11/21/data.parquet", "a-b_c.d/e f"] {
            assert!(validate_key(good).is_ok(), "{good:?} is fine");
        }
    }
}
