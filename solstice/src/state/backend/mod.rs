//! State backends: one blocking API over an object store (`file://`, `memory://`, `s3://`, `gs://`,
//! `az://`), for checkpoints and anything else the runtime persists.
//!
//! A [`StateBackend`] owns a small tokio runtime on a dedicated I/O thread. Its blocking methods
//! hand the operation to that thread and wait on a channel, so they can be called from the
//! work-stealing pool's threads (which have no async context) and never run object-store code on
//! them; [`StateBackend::upload`] and [`StateBackend::upload_then`] return at once and let the
//! upload run in the background while records keep flowing.
//!
//! Paths are `/`-separated and relative to the backend's root (the URL's path). What the paths
//! mean (the checkpoint layout) lives in [`super::checkpoint`], not here.

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use object_store::PutMode;

use crate::error::{location, Error, Result};

mod from_url;
mod store;

pub(crate) use store::AsyncStore;

/// Where state is stored: an object store plus a root prefix, built from a URL.
///
/// Cheap to clone (clones share the store and the I/O thread). The I/O thread stops when the last
/// clone is dropped; uploads still running then are cancelled, so wait on their handles first.
///
/// ```
/// use std::collections::BTreeMap;
/// use solstice::state::backend::StateBackend;
///
/// let backend = StateBackend::open("memory://", &BTreeMap::new())?;
/// backend.put("job/a", b"hello".to_vec())?;
/// assert_eq!(backend.get("job/a", 1024)?, b"hello");
/// # Ok::<(), solstice::Error>(())
/// ```
#[derive(Clone)]
pub struct StateBackend {
    inner: Arc<Inner>,
}

struct Inner {
    /// The store, its root, and the URL as shown in messages (local paths made absolute). For a
    /// `file://` backend also its directory: a process killed mid-write can leave a store's
    /// temporary file or an empty directory there, which listing the store does not show.
    store: AsyncStore,
    io: IoThread,
}

/// The I/O thread running the backend's runtime.
struct IoThread {
    handle: tokio::runtime::Handle,
    thread: std::thread::ThreadId,
    /// Dropping it ends the thread.
    _stop: tokio::sync::oneshot::Sender<()>,
}

impl std::fmt::Debug for StateBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StateBackend")
            .field("url", &self.url())
            .finish_non_exhaustive()
    }
}

/// An object found by [`StateBackend::list`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ObjectInfo {
    /// Its path, relative to the backend's root.
    pub path: String,
    /// Its size in bytes.
    pub size: u64,
}

/// One level of a listing: see [`StateBackend::list_dir`].
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DirListing {
    /// The names (last path segment) of the "directories" directly under the prefix, sorted.
    pub dirs: Vec<String>,
    /// The objects directly under the prefix, sorted by path.
    pub objects: Vec<ObjectInfo>,
}

impl StateBackend {
    /// Opens the backend at `url` with store `options`.
    ///
    /// - `file:///abs/dir` (or a plain path, made absolute against the current directory): the
    ///   directory is created; files are fsynced before a write returns.
    /// - `memory://`: in this process's memory, for tests; clones of the backend share it.
    /// - `s3://bucket/prefix`, `gs://bucket/prefix`, `az://container/prefix`: object_store's URL
    ///   parsing. `options` are store keys, e.g. for S3 `endpoint`, `region`, `access_key_id`,
    ///   `secret_access_key`, `allow_http` (the `aws_…` spellings work too). Keys not given fall
    ///   back to the standard environment variables (`AWS_*`, `GOOGLE_*`, `AZURE_*`); the URL's
    ///   bucket wins over both. An unknown key is an error naming it.
    ///
    /// No request is made here: bad credentials show up on the first operation.
    pub fn open(url: &str, options: &BTreeMap<String, String>) -> Result<StateBackend> {
        let built = from_url::build_store(url, options)?;
        let io = start_io_thread(&built.url)?;
        Ok(StateBackend {
            inner: Arc::new(Inner {
                store: AsyncStore::new(built),
                io,
            }),
        })
    }

    /// The backend's URL, as shown in messages (a local path as `file:///abs/dir`).
    pub fn url(&self) -> &str {
        self.inner.store.url()
    }

    /// `path`'s full location (`url/path`), for messages.
    pub fn location(&self, path: &str) -> String {
        location(self.url(), path)
    }

    /// Writes `bytes` to `path`, replacing any object there. Atomic: readers see the old or the
    /// new object, never a part.
    pub fn put(&self, path: &str, bytes: Vec<u8>) -> Result<()> {
        let (s, path) = (self.store(), path.to_string());
        self.run(async move { s.put(&path, bytes, PutMode::Overwrite).await })
    }

    /// Writes `bytes` to `path` only if nothing is there yet; otherwise fails with
    /// [`Error::AlreadyExists`]. The check and the write are one atomic operation of the store.
    pub fn put_create_only(&self, path: &str, bytes: Vec<u8>) -> Result<()> {
        let (s, path) = (self.store(), path.to_string());
        self.run(async move { s.put(&path, bytes, PutMode::Create).await })
    }

    /// Starts writing `bytes` to `path` (replacing any object there) in the background.
    ///
    /// Returns at once; the [`UploadHandle`] says when the object is durable. Dropping the handle
    /// does not cancel the upload.
    pub fn upload(&self, path: &str, bytes: Vec<u8>) -> UploadHandle {
        let (tx, rx) = crossbeam_channel::bounded(1);
        self.upload_then(path, bytes, move |result| {
            // The handle may have been dropped: nobody wants the result then.
            let _ = tx.send(result);
        });
        UploadHandle {
            location: self.location(path),
            rx: Some(rx),
        }
    }

    /// Starts writing `bytes` to `path` in the background and calls `done` with the outcome.
    ///
    /// `done` runs on the backend's I/O thread: keep it short (e.g. send a message or wake a
    /// task). A blocking method of this backend called from it fails with [`Error::Internal`]
    /// rather than deadlock. It is not called if the backend is dropped before the upload
    /// finishes.
    pub fn upload_then(
        &self,
        path: &str,
        bytes: Vec<u8>,
        done: impl FnOnce(Result<()>) + Send + 'static,
    ) {
        let (s, path) = (self.store(), path.to_string());
        self.inner.io.handle.spawn(async move {
            done(s.put(&path, bytes, PutMode::Overwrite).await);
        });
    }

    /// Like [`StateBackend::upload`], except that on `file://` the object is not durable when the
    /// upload finishes (it is written, not fsynced): [`StateBackend::sync`] makes many such
    /// objects durable at once, which costs about one fsync instead of a chain per object. On
    /// object stores it is the same as [`StateBackend::upload`].
    pub fn upload_unsynced(&self, path: &str, bytes: Vec<u8>) -> UploadHandle {
        let (tx, rx) = crossbeam_channel::bounded(1);
        let (s, owned) = (self.store(), path.to_string());
        self.inner.io.handle.spawn(async move {
            let _ = tx.send(s.put_unsynced(&owned, bytes).await);
        });
        UploadHandle {
            location: self.location(path),
            rx: Some(rx),
        }
    }

    /// Makes the objects at `paths`, written by finished [`StateBackend::upload_unsynced`]s,
    /// durable (on `file://`: fsyncs each file and the directories leading to it, all in
    /// parallel; elsewhere nothing to do). A missing object is an error.
    pub fn sync(&self, paths: &[String]) -> Result<()> {
        let (s, paths) = (self.store(), paths.to_vec());
        self.run(async move { s.sync(&paths).await })
    }

    /// Like [`StateBackend::sync`], in the background: the handle says when the objects are
    /// durable.
    pub fn start_sync(&self, paths: &[String]) -> UploadHandle {
        let (tx, rx) = crossbeam_channel::bounded(1);
        let (s, owned) = (self.store(), paths.to_vec());
        self.inner.io.handle.spawn(async move {
            let _ = tx.send(s.sync(&owned).await);
        });
        UploadHandle {
            location: self.location(paths.first().map_or("", String::as_str)),
            rx: Some(rx),
        }
    }

    /// Reads the object at `path`, which must be at most `max_bytes` long; a larger object is an
    /// [`Error::TooLarge`] and is not read. A missing one is [`Error::NotFound`].
    pub fn get(&self, path: &str, max_bytes: u64) -> Result<Vec<u8>> {
        let (s, path) = (self.store(), path.to_string());
        self.run(async move { s.get(&path, max_bytes).await })
    }

    /// True if an object exists at `path`.
    pub fn exists(&self, path: &str) -> Result<bool> {
        let (s, path) = (self.store(), path.to_string());
        self.run(async move { s.exists(&path).await })
    }

    /// Every object under `prefix` (recursively, matching whole path segments: `a/b` is a prefix
    /// of `a/b/c`, not of `a/bc`), sorted by path. An empty prefix lists the whole root.
    pub fn list(&self, prefix: &str) -> Result<Vec<ObjectInfo>> {
        let (s, prefix) = (self.store(), prefix.to_string());
        self.run(async move { s.list(&prefix).await })
    }

    /// One level under `prefix`: the directories and the objects directly in it.
    pub fn list_dir(&self, prefix: &str) -> Result<DirListing> {
        let (s, prefix) = (self.store(), prefix.to_string());
        self.run(async move { s.list_dir(&prefix).await })
    }

    /// Deletes the object at `path`; a missing object is not an error.
    pub fn delete(&self, path: &str) -> Result<()> {
        self.delete_many(vec![path.to_string()])
    }

    /// Deletes the objects at `paths` (in batches where the store supports it); missing objects
    /// are not an error.
    pub fn delete_many(&self, paths: Vec<String>) -> Result<()> {
        let s = self.store();
        self.run(async move { s.delete_many(&paths).await })
    }

    /// Deletes everything under directory `dir`: every object the store lists there and, for a
    /// `file://` backend, whatever else a killed process left in the directory (a store's
    /// temporary files, empty directories), and the directory itself.
    pub fn delete_dir(&self, dir: &str) -> Result<()> {
        let objects = self.list(dir)?;
        self.delete_many(objects.into_iter().map(|o| o.path).collect())?;
        if let Some(root) = self.inner.store.local_dir() {
            let path = root.join(dir);
            match std::fs::remove_dir_all(&path) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(Error::io(path, e)),
            }
        }
        Ok(())
    }

    /// Runs `f` with the store on the I/O thread and waits for it: for operations of the `state`
    /// module that issue several requests at once.
    pub(crate) fn run_async<T, Fut>(&self, f: impl FnOnce(AsyncStore) -> Fut) -> Result<T>
    where
        T: Send + 'static,
        Fut: Future<Output = Result<T>> + Send + 'static,
    {
        self.run(f(self.store()))
    }

    fn store(&self) -> AsyncStore {
        self.inner.store.clone()
    }

    /// Runs `fut` on the I/O thread and waits for its result. Safe from any thread: the caller
    /// only blocks on a channel, it never enters the runtime.
    fn run<T: Send + 'static>(
        &self,
        fut: impl Future<Output = Result<T>> + Send + 'static,
    ) -> Result<T> {
        if std::thread::current().id() == self.inner.io.thread {
            // The I/O thread would wait for itself.
            return Err(Error::Internal(format!(
                "a blocking call to the state backend {} was made on its own I/O thread \
                 (from an upload callback?); send a message out of the callback instead",
                self.url()
            )));
        }
        let (tx, rx) = crossbeam_channel::bounded(1);
        self.inner.io.handle.spawn(async move {
            let _ = tx.send(fut.await);
        });
        rx.recv().unwrap_or_else(|_| {
            Err(Error::Backend {
                url: self.url().to_string(),
                path: String::new(),
                message: "the state backend's I/O thread stopped".into(),
            })
        })
    }
}

/// A background upload started by [`StateBackend::upload`] (or fsyncs started by
/// [`StateBackend::start_sync`]).
#[derive(Debug)]
pub struct UploadHandle {
    location: String,
    /// `None` once the result has been handed out.
    rx: Option<crossbeam_channel::Receiver<Result<()>>>,
}

impl UploadHandle {
    /// Where the object goes (`url/path`), for messages.
    pub fn location(&self) -> &str {
        &self.location
    }

    /// Blocks until the upload has finished; `Ok` means the object is durable.
    pub fn wait(mut self) -> Result<()> {
        match self.rx.take() {
            Some(rx) => rx.recv().unwrap_or_else(|_| Err(self.cancelled())),
            None => Err(self.taken()),
        }
    }

    /// The outcome if the upload has finished, `None` while it runs. Never blocks.
    ///
    /// The outcome is handed out once; after that this returns an [`Error::Internal`].
    pub fn try_wait(&mut self) -> Option<Result<()>> {
        self.wait_with(|rx| match rx.try_recv() {
            Ok(result) => Some(Some(result)),
            Err(crossbeam_channel::TryRecvError::Empty) => None,
            Err(crossbeam_channel::TryRecvError::Disconnected) => Some(None),
        })
    }

    /// Like [`UploadHandle::try_wait`], waiting up to `timeout` for the upload to finish.
    pub fn wait_timeout(&mut self, timeout: Duration) -> Option<Result<()>> {
        self.wait_with(|rx| match rx.recv_timeout(timeout) {
            Ok(result) => Some(Some(result)),
            Err(crossbeam_channel::RecvTimeoutError::Timeout) => None,
            Err(crossbeam_channel::RecvTimeoutError::Disconnected) => Some(None),
        })
    }

    /// `recv` gives `None` while running, `Some(None)` if the upload was dropped unfinished.
    fn wait_with(
        &mut self,
        recv: impl FnOnce(&crossbeam_channel::Receiver<Result<()>>) -> Option<Option<Result<()>>>,
    ) -> Option<Result<()>> {
        let Some(rx) = &self.rx else {
            return Some(Err(self.taken()));
        };
        let outcome = recv(rx)?;
        self.rx = None;
        Some(outcome.unwrap_or_else(|| Err(self.cancelled())))
    }

    fn cancelled(&self) -> Error {
        Error::Backend {
            url: self.location.clone(),
            path: String::new(),
            message: "upload cancelled: the state backend was dropped before it finished".into(),
        }
    }

    fn taken(&self) -> Error {
        Error::Internal(format!(
            "the result of the upload to {} was already taken",
            self.location
        ))
    }
}

/// Starts the I/O thread; its runtime lives until the returned [`IoThread`] is dropped.
fn start_io_thread(url: &str) -> Result<IoThread> {
    let io_error = |e: std::io::Error| Error::Backend {
        url: url.to_string(),
        path: String::new(),
        message: format!("cannot start the state backend's I/O thread: {e}"),
    };
    // Local file I/O runs on the runtime's blocking pool; keep it small.
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .thread_name("solstice-state-blocking")
        .max_blocking_threads(8)
        .build()
        .map_err(io_error)?;
    let handle = runtime.handle().clone();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let thread = std::thread::Builder::new()
        .name("solstice-state-io".into())
        .spawn(move || {
            // Ends when the sender is dropped (sent or not); unfinished tasks are then dropped.
            runtime.block_on(async move {
                let _ = stopped.await;
            });
        })
        .map_err(io_error)?;
    Ok(IoThread {
        handle,
        thread: thread.thread().id(),
        _stop: stop,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn memory() -> StateBackend {
        StateBackend::open("memory://", &BTreeMap::new()).unwrap()
    }

    #[test]
    fn put_get_list_delete() {
        let b = memory();
        b.put("j/a/1", vec![1]).unwrap();
        b.put("j/a/2", vec![2, 2]).unwrap();
        b.put("j/ab", vec![3]).unwrap();
        b.put("j/a/1", vec![4]).unwrap();
        assert_eq!(b.get("j/a/1", 10).unwrap(), vec![4]);
        let listed: Vec<(String, u64)> = b
            .list("j/a")
            .unwrap()
            .into_iter()
            .map(|o| (o.path, o.size))
            .collect();
        assert_eq!(listed, vec![("j/a/1".into(), 1), ("j/a/2".into(), 2)]);
        let dir = b.list_dir("j").unwrap();
        assert_eq!(dir.dirs, vec!["a".to_string()]);
        assert_eq!(dir.objects.len(), 1);
        b.delete("j/a/1").unwrap();
        b.delete("j/a/1").unwrap(); // missing: fine
        assert!(!b.exists("j/a/1").unwrap());
        assert!(b.exists("j/a/2").unwrap());
        assert!(matches!(b.get("j/a/1", 10), Err(Error::NotFound { .. })));
    }

    #[test]
    fn create_only_and_limits() {
        let b = memory();
        b.put_create_only("x", vec![1]).unwrap();
        let err = b.put_create_only("x", vec![2]).unwrap_err();
        assert!(matches!(err, Error::AlreadyExists { .. }), "{err}");
        assert_eq!(err.to_string(), "memory://x already exists");
        assert_eq!(b.get("x", 1).unwrap(), vec![1]);
        b.put("big", vec![0; 100]).unwrap();
        let err = b.get("big", 99).unwrap_err();
        assert!(
            matches!(
                err,
                Error::TooLarge {
                    size: 100,
                    limit: 99,
                    ..
                }
            ),
            "{err}"
        );
    }

    #[test]
    fn uploads_in_the_background() {
        let b = memory();
        let handles: Vec<UploadHandle> = (0..20)
            .map(|i| b.upload(&format!("u/{i}"), vec![i as u8; 1000]))
            .collect();
        for h in handles {
            h.wait().unwrap();
        }
        assert_eq!(b.list("u").unwrap().len(), 20);

        let mut h = b.upload("u/polled", vec![1]);
        let result = h.wait_timeout(Duration::from_secs(30)).expect("finished");
        result.unwrap();
        assert!(matches!(h.try_wait(), Some(Err(Error::Internal(_)))));

        let (tx, rx) = crossbeam_channel::bounded(1);
        let inner = b.clone();
        b.upload_then("u/cb", vec![1], move |r| {
            // A blocking call from the callback is refused instead of deadlocking.
            let nested = inner.exists("u/cb");
            tx.send((r, nested)).unwrap();
        });
        let (r, nested) = rx.recv_timeout(Duration::from_secs(30)).unwrap();
        r.unwrap();
        assert!(matches!(nested, Err(Error::Internal(_))), "{nested:?}");
        assert!(b.exists("u/cb").unwrap());
    }

    #[test]
    fn unsynced_uploads_are_made_durable_together() {
        let dir = std::env::temp_dir().join(format!("solstice-sync-{}", std::process::id()));
        let url = format!("file://{}", dir.display());
        let b = StateBackend::open(&url, &BTreeMap::new()).unwrap();
        let paths: Vec<String> = (0..5).map(|i| format!("j/chk/s{}/p{i}", i % 2)).collect();
        let handles: Vec<UploadHandle> = paths
            .iter()
            .map(|p| b.upload_unsynced(p, vec![7; 100]))
            .collect();
        for h in handles {
            h.wait().unwrap();
        }
        b.sync(&paths).unwrap();
        b.start_sync(&paths[..2]).wait().unwrap();
        assert_eq!(b.get(&paths[3], 100).unwrap(), vec![7; 100]);
        let err = b.sync(&["j/chk/missing".to_string()]).unwrap_err();
        assert!(
            err.to_string().contains("j/chk/missing") && err.to_string().contains("fsync"),
            "{err}"
        );
        // Elsewhere a put is durable on return: nothing to sync, nothing to check.
        memory().sync(&["absent".to_string()]).unwrap();
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn paths_are_checked() {
        let b = memory();
        let err = b.put("a//b", vec![]).unwrap_err();
        assert!(matches!(err, Error::Backend { .. }), "{err}");
        let err = b.put("a/../b", vec![]).unwrap_err();
        assert!(err.to_string().contains("invalid object path"), "{err}");
    }
}
