//! The object store as the backend's I/O thread drives it: async operations on paths relative
//! to the backend's root, with object_store's errors turned into ours.

use std::io::{Read, Seek, SeekFrom};
use std::ops::Range;
use std::sync::Arc;

use futures_util::{StreamExt, TryStreamExt};
use object_store::path::Path;
use object_store::{
    GetOptions, GetResultPayload, ObjectStore, ObjectStoreExt, PutMode, PutOptions, PutPayload,
};

use super::{DirListing, ObjectInfo};
use crate::error::{location, Error, Result};

/// Bytes read at a time when streaming a local file.
const FILE_CHUNK: usize = 1 << 20;

/// The store as the I/O thread uses it: async operations on paths relative to the root.
#[derive(Clone)]
pub(crate) struct AsyncStore {
    store: Arc<dyn ObjectStore>,
    /// Writes that [`AsyncStore::sync`] makes durable later: on `file://` a store on the same
    /// directory that does not fsync; elsewhere `store` (whose writes are durable on return).
    unsynced: Arc<dyn ObjectStore>,
    /// The directory of a `file://` backend.
    local_dir: Option<Arc<std::path::Path>>,
    root: Path,
    url: Arc<str>,
}

impl AsyncStore {
    pub(super) fn new(built: super::from_url::Built) -> Self {
        let (local_dir, unsynced) = match built.local {
            Some((dir, unsynced)) => (Some(Arc::from(dir)), unsynced),
            None => (None, built.store.clone()),
        };
        AsyncStore {
            store: built.store,
            unsynced,
            local_dir,
            root: built.root,
            url: built.url.into(),
        }
    }

    /// The directory of a `file://` backend.
    pub(super) fn local_dir(&self) -> Option<&std::path::Path> {
        self.local_dir.as_deref()
    }

    /// The backend's URL, as shown in messages.
    pub(super) fn url(&self) -> &str {
        &self.url
    }

    /// `path`'s full location (`url/path`), for messages.
    pub(crate) fn location(&self, path: &str) -> String {
        location(&self.url, path)
    }

    /// The full store path of `path`, checked.
    fn full_path(&self, path: &str) -> Result<Path> {
        let rel = Path::parse(path).map_err(|e| Error::Backend {
            url: self.url.to_string(),
            path: path.to_string(),
            message: format!("invalid object path: {e}"),
        })?;
        Ok(self.root.parts().chain(rel.parts()).collect())
    }

    /// Our error for an object_store error about `path`.
    fn error(&self, path: &str, e: object_store::Error) -> Error {
        let (url, path) = (self.url.to_string(), path.to_string());
        match e {
            object_store::Error::NotFound { .. } => Error::NotFound { url, path },
            object_store::Error::AlreadyExists { .. } => Error::AlreadyExists { url, path },
            e => Error::Backend {
                url,
                path,
                message: e.to_string(),
            },
        }
    }

    /// `location` relative to the root, as a string.
    fn relative(&self, location: &Path) -> String {
        match location.prefix_match(&self.root) {
            Some(parts) => parts.collect::<Path>().to_string(),
            None => location.to_string(),
        }
    }

    pub(super) async fn put(&self, path: &str, bytes: Vec<u8>, mode: PutMode) -> Result<()> {
        let full = self.full_path(path)?;
        let create = matches!(mode, PutMode::Create);
        let options = PutOptions::from(mode);
        match self
            .store
            .put_opts(&full, PutPayload::from(bytes), options)
            .await
        {
            Ok(_) => Ok(()),
            // Some stores report a failed create-only write as a failed precondition.
            Err(object_store::Error::Precondition { .. }) if create => Err(Error::AlreadyExists {
                url: self.url.to_string(),
                path: path.to_string(),
            }),
            Err(e) => Err(self.error(path, e)),
        }
    }

    /// Writes `bytes` to `path` (replacing it) without making it durable: see [`AsyncStore::sync`].
    pub(super) async fn put_unsynced(&self, path: &str, bytes: Vec<u8>) -> Result<()> {
        let full = self.full_path(path)?;
        self.unsynced
            .put_opts(&full, PutPayload::from(bytes), PutOptions::default())
            .await
            .map(|_| ())
            .map_err(|e| self.error(path, e))
    }

    /// Makes what [`AsyncStore::put_unsynced`] wrote at `paths` durable. On `file://`: every
    /// file, and every directory from the root down to each file (a write may have created
    /// them), fsynced at once, in parallel, so that the journal commits them together instead of
    /// one chain of fsyncs per file. Elsewhere there is nothing to do: a put is durable when it
    /// returns. A missing file is an error.
    pub(super) async fn sync(&self, paths: &[String]) -> Result<()> {
        let Some(dir) = self.local_dir.clone() else {
            return Ok(());
        };
        let mut targets = std::collections::BTreeSet::new();
        for path in paths {
            let full = self.full_path(path)?;
            let mut file = dir.to_path_buf();
            file.extend(full.parts().map(|p| p.as_ref().to_string()));
            let mut parent = file.parent();
            while let Some(p) = parent.filter(|p| p.starts_with(&*dir)) {
                targets.insert((p.to_path_buf(), path.clone()));
                parent = p.parent();
            }
            targets.insert((file, path.clone()));
        }
        // One target per path on disk (a directory is shared by many files).
        let mut seen = std::collections::BTreeSet::new();
        let fsyncs = targets
            .into_iter()
            .filter(|(target, _)| seen.insert(target.clone()))
            .map(|(target, path)| {
                tokio::task::spawn_blocking(move || {
                    std::fs::File::open(&target)
                        .and_then(|f| f.sync_all())
                        .map_err(|e| (path, e))
                })
            });
        for done in futures_util::future::join_all(fsyncs).await {
            match done {
                Ok(Ok(())) => {}
                Ok(Err((path, e))) => {
                    return Err(Error::Backend {
                        url: self.url.to_string(),
                        path,
                        message: format!("cannot make it durable (fsync): {e}"),
                    })
                }
                Err(e) => {
                    return Err(Error::Backend {
                        url: self.url.to_string(),
                        path: String::new(),
                        message: format!("fsync stopped: {e}"),
                    })
                }
            }
        }
        Ok(())
    }

    pub(super) async fn get(&self, path: &str, max_bytes: u64) -> Result<Vec<u8>> {
        let full = self.full_path(path)?;
        let got = self
            .store
            .get_opts(&full, GetOptions::default())
            .await
            .map_err(|e| self.error(path, e))?;
        let size = got.meta.size;
        if size > max_bytes {
            return Err(self.too_large(path, size, max_bytes));
        }
        // The body is as long as `meta.size` (the store checks it), so this stays in bounds.
        let bytes = got.bytes().await.map_err(|e| self.error(path, e))?;
        Ok(Vec::from(bytes))
    }

    /// Bytes `range` of the object at `path`.
    pub(crate) async fn get_range(&self, path: &str, range: Range<u64>) -> Result<Vec<u8>> {
        let full = self.full_path(path)?;
        let bytes = self
            .store
            .get_range(&full, range)
            .await
            .map_err(|e| self.error(path, e))?;
        Ok(Vec::from(bytes))
    }

    /// Streams the object at `path` through `visit(&mut state, chunk)`, chunk by chunk, so that
    /// memory stays bounded by a chunk; fails with [`Error::TooLarge`] if it is longer than
    /// `max_bytes`. Returns the number of bytes read and the state.
    pub(crate) async fn read_chunks<S: Send + 'static>(
        &self,
        path: &str,
        max_bytes: u64,
        mut state: S,
        visit: fn(&mut S, &[u8]),
    ) -> Result<(u64, S)> {
        let full = self.full_path(path)?;
        let got = self
            .store
            .get_opts(&full, GetOptions::default())
            .await
            .map_err(|e| self.error(path, e))?;
        if got.meta.size > max_bytes {
            return Err(self.too_large(path, got.meta.size, max_bytes));
        }
        match got.payload {
            // object_store streams files in 8 KiB chunks, one blocking task each; read large
            // chunks in one blocking task instead.
            GetResultPayload::File(file, _) => {
                let range = got.range;
                let backend_error = |message: String| Error::Backend {
                    url: self.url.to_string(),
                    path: path.to_string(),
                    message,
                };
                tokio::task::spawn_blocking(move || {
                    let mut file = file;
                    file.seek(SeekFrom::Start(range.start))?;
                    // Never past the size checked above, even if the file grew since.
                    let mut limited = file.take(range.end - range.start);
                    let mut buffer = vec![0u8; FILE_CHUNK];
                    let mut read = 0u64;
                    loop {
                        let n = limited.read(&mut buffer)?;
                        if n == 0 {
                            return Ok((read, state));
                        }
                        read += n as u64;
                        visit(&mut state, &buffer[..n]);
                    }
                })
                .await
                .map_err(|e| backend_error(format!("reading stopped: {e}")))?
                .map_err(|e: std::io::Error| backend_error(format!("cannot read: {e}")))
            }
            GetResultPayload::Stream(mut chunks) => {
                let mut read = 0u64;
                while let Some(chunk) = chunks.next().await {
                    let chunk = chunk.map_err(|e| self.error(path, e))?;
                    read += chunk.len() as u64;
                    if read > max_bytes {
                        return Err(self.too_large(path, read, max_bytes));
                    }
                    visit(&mut state, &chunk);
                }
                Ok((read, state))
            }
        }
    }

    pub(crate) async fn exists(&self, path: &str) -> Result<bool> {
        let full = self.full_path(path)?;
        match self.store.head(&full).await {
            Ok(_) => Ok(true),
            Err(object_store::Error::NotFound { .. }) => Ok(false),
            Err(e) => Err(self.error(path, e)),
        }
    }

    pub(super) async fn list(&self, prefix: &str) -> Result<Vec<ObjectInfo>> {
        let full = self.full_path(prefix)?;
        let metas: Vec<object_store::ObjectMeta> = self
            .store
            .list(Some(&full))
            .try_collect()
            .await
            .map_err(|e| self.error(prefix, e))?;
        let mut out: Vec<ObjectInfo> = metas
            .into_iter()
            .map(|m| ObjectInfo {
                path: self.relative(&m.location),
                size: m.size,
            })
            .collect();
        out.sort_by(|a, b| a.path.cmp(&b.path));
        Ok(out)
    }

    pub(super) async fn list_dir(&self, prefix: &str) -> Result<DirListing> {
        let full = self.full_path(prefix)?;
        let listing = self
            .store
            .list_with_delimiter(Some(&full))
            .await
            .map_err(|e| self.error(prefix, e))?;
        let mut dirs: Vec<String> = listing
            .common_prefixes
            .iter()
            .filter_map(|p| p.filename().map(str::to_string))
            .collect();
        dirs.sort();
        let mut objects: Vec<ObjectInfo> = listing
            .objects
            .into_iter()
            .map(|m| ObjectInfo {
                path: self.relative(&m.location),
                size: m.size,
            })
            .collect();
        objects.sort_by(|a, b| a.path.cmp(&b.path));
        Ok(DirListing { dirs, objects })
    }

    pub(super) async fn delete_many(&self, paths: &[String]) -> Result<()> {
        let full: Vec<Path> = paths
            .iter()
            .map(|p| self.full_path(p))
            .collect::<Result<_>>()?;
        let locations = futures_util::stream::iter(full.into_iter().map(Ok)).boxed();
        let mut results = self.store.delete_stream(locations);
        while let Some(result) = results.next().await {
            match result {
                Ok(_) | Err(object_store::Error::NotFound { .. }) => {}
                // The store's message names the object.
                Err(e) => return Err(self.error("", e)),
            }
        }
        Ok(())
    }

    fn too_large(&self, path: &str, size: u64, limit: u64) -> Error {
        Error::TooLarge {
            url: self.url.to_string(),
            path: path.to_string(),
            size,
            limit,
        }
    }
}
