//! From a backend URL and its options to an object store and a root prefix.

use std::collections::BTreeMap;
use std::sync::Arc;

use object_store::local::LocalFileSystem;
use object_store::memory::InMemory;
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreScheme};

use crate::error::{Error, Result};

/// A store built from a URL.
pub(super) struct Built {
    /// The URL as shown in messages (a local path made absolute).
    pub url: String,
    /// The store; its writes are durable when they return.
    pub store: Arc<dyn ObjectStore>,
    /// The root prefix inside the store.
    pub root: Path,
    /// For a `file://` backend, its directory and a second store on it whose writes are not
    /// fsynced, for writes that are made durable together later ([`super::StateBackend::sync`]).
    pub local: Option<(std::path::PathBuf, Arc<dyn ObjectStore>)>,
}

impl Built {
    fn remote(url: &str, store: Arc<dyn ObjectStore>, root: Path) -> Built {
        Built {
            url: url.to_string(),
            store,
            root,
            local: None,
        }
    }
}

/// Parses `url` and builds its store.
pub(super) fn build_store(url: &str, options: &BTreeMap<String, String>) -> Result<Built> {
    let backend_error = |message: String| Error::Backend {
        url: url.to_string(),
        path: String::new(),
        message,
    };
    if !url.contains("://") {
        // A plain local path.
        let dir = std::path::absolute(url).map_err(|e| Error::io(url, e))?;
        return local_store(&dir, options);
    }
    let parsed = url::Url::parse(url).map_err(|e| backend_error(format!("not a URL: {e}")))?;
    let (scheme, prefix) = ObjectStoreScheme::parse(&parsed).map_err(|_| {
        backend_error(if parsed.scheme() == "file" {
            "a file:// URL needs an absolute path: file:///abs/dir (three slashes)".into()
        } else {
            "unsupported URL: use file:///abs/dir, memory://, s3://bucket/prefix, \
             gs://bucket/prefix or az://container/prefix"
                .into()
        })
    })?;
    match scheme {
        ObjectStoreScheme::Local => {
            let dir = parsed.to_file_path().map_err(|()| {
                backend_error(
                    "a file:// URL needs an absolute path, e.g. file:///var/lib/solstice".into(),
                )
            })?;
            local_store(&dir, options)
        }
        ObjectStoreScheme::Memory => {
            no_options(url, "memory://", options)?;
            Ok(Built::remote(url, Arc::new(InMemory::new()), prefix))
        }
        ObjectStoreScheme::AmazonS3
        | ObjectStoreScheme::GoogleCloudStorage
        | ObjectStoreScheme::MicrosoftAzure => {
            if let Some(feature) = missing_feature(&scheme) {
                return Err(backend_error(format!(
                    "{}:// backends are not built into this binary: build it with the `{feature}` \
                     feature of the solstice crate (e.g. `cargo build --features \
                     solstice/{feature}`)",
                    parsed.scheme()
                )));
            }
            let env = std::env::vars_os()
                .filter_map(|(k, v)| Some((k.into_string().ok()?, v.into_string().ok()?)));
            let merged = cloud_options(&scheme, env, options).map_err(|key| {
                backend_error(format!(
                    "unknown option `{key}` for {}:// (e.g. endpoint, region, access_key_id, \
                     secret_access_key, allow_http for s3://)",
                    parsed.scheme()
                ))
            })?;
            let (store, root) = object_store::parse_url_opts(&parsed, merged)
                .map_err(|e| backend_error(e.to_string()))?;
            Ok(Built::remote(url, Arc::from(store), root))
        }
        _ => Err(backend_error(format!(
            "unsupported URL scheme `{}`: use file://, memory://, s3://, gs:// or az://",
            parsed.scheme()
        ))),
    }
}

/// Environment variables read for a scheme, as object_store's `from_env` builders do.
fn env_prefix(scheme: &ObjectStoreScheme) -> Option<&'static str> {
    match scheme {
        ObjectStoreScheme::AmazonS3 => Some("AWS_"),
        ObjectStoreScheme::GoogleCloudStorage => Some("GOOGLE_"),
        ObjectStoreScheme::MicrosoftAzure => Some("AZURE_"),
        _ => None,
    }
}

/// The cargo feature of the solstice crate that builds the scheme's store in, when this build
/// lacks it (`s3`, `gcs`, `azure`; off by default, so that a job on local files does not compile
/// HTTP clients and TLS).
fn missing_feature(scheme: &ObjectStoreScheme) -> Option<&'static str> {
    match scheme {
        ObjectStoreScheme::AmazonS3 if !cfg!(feature = "s3") => Some("s3"),
        ObjectStoreScheme::GoogleCloudStorage if !cfg!(feature = "gcs") => Some("gcs"),
        ObjectStoreScheme::MicrosoftAzure if !cfg!(feature = "azure") => Some("azure"),
        _ => None,
    }
}

/// True if `key` (lower case) is a configuration key of the scheme's object store (always false
/// for a store this build lacks).
fn is_store_key(scheme: &ObjectStoreScheme, key: &str) -> bool {
    match scheme {
        #[cfg(feature = "s3")]
        ObjectStoreScheme::AmazonS3 => key.parse::<object_store::aws::AmazonS3ConfigKey>().is_ok(),
        #[cfg(feature = "gcs")]
        ObjectStoreScheme::GoogleCloudStorage => {
            key.parse::<object_store::gcp::GoogleConfigKey>().is_ok()
        }
        #[cfg(feature = "azure")]
        ObjectStoreScheme::MicrosoftAzure => {
            key.parse::<object_store::azure::AzureConfigKey>().is_ok()
        }
        _ => {
            let _ = key;
            false
        }
    }
}

/// The store options of a cloud `scheme`: its environment variables from `env` (e.g. `AWS_*`)
/// first, then `options`, keys in lower case. Later entries win when the store is built, so
/// `options` override the environment. An unknown key in `options` is returned as the error.
fn cloud_options(
    scheme: &ObjectStoreScheme,
    env: impl IntoIterator<Item = (String, String)>,
    options: &BTreeMap<String, String>,
) -> std::result::Result<Vec<(String, String)>, String> {
    let mut merged = Vec::new();
    if let Some(prefix) = env_prefix(scheme) {
        for (key, value) in env {
            if key.starts_with(prefix) {
                let key = key.to_ascii_lowercase();
                if is_store_key(scheme, &key) {
                    merged.push((key, value));
                }
            }
        }
    }
    for (key, value) in options {
        let key = key.to_ascii_lowercase();
        if !is_store_key(scheme, &key) {
            return Err(key);
        }
        merged.push((key, value.clone()));
    }
    Ok(merged)
}

/// A local directory store rooted at `dir` (created), with empty directories removed on delete,
/// in two flavours: one that fsyncs every write (and the directories it changes) before it
/// returns, and one that does not, for writes whose files and directories are fsynced together
/// afterwards, all at once, instead of one fsync chain each.
fn local_store(dir: &std::path::Path, options: &BTreeMap<String, String>) -> Result<Built> {
    let url = format!("file://{}", dir.display());
    no_options(&url, "file://", options)?;
    std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
    let open = |fsync: bool| {
        LocalFileSystem::new_with_prefix(dir)
            .map(|s| s.with_automatic_cleanup(true).with_fsync(fsync))
            .map_err(|e| Error::Backend {
                url: url.clone(),
                path: String::new(),
                message: e.to_string(),
            })
    };
    let (synced, unsynced) = (open(true)?, open(false)?);
    Ok(Built {
        url: url.clone(),
        store: Arc::new(synced),
        root: Path::ROOT,
        local: Some((dir.to_path_buf(), Arc::new(unsynced))),
    })
}

fn no_options(url: &str, kind: &str, options: &BTreeMap<String, String>) -> Result<()> {
    match options.keys().next() {
        None => Ok(()),
        Some(key) => Err(Error::Backend {
            url: url.to_string(),
            path: String::new(),
            message: format!("option `{key}` does not apply to {kind} backends, which take none"),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::backend::StateBackend;

    #[test]
    fn bad_urls_and_options() {
        let none = BTreeMap::new();
        let err = StateBackend::open("ftp://host/x", &none).unwrap_err();
        assert!(err.to_string().contains("unsupported"), "{err}");
        let err = StateBackend::open("file://relative/dir", &none).unwrap_err();
        assert!(err.to_string().contains("absolute path"), "{err}");
        let opts: BTreeMap<String, String> = [("colour".to_string(), "red".to_string())].into();
        let err = StateBackend::open("s3://bucket/prefix", &opts).unwrap_err();
        if cfg!(feature = "s3") {
            assert!(err.to_string().contains("unknown option `colour`"), "{err}");
        } else {
            assert!(err.to_string().contains("`s3` feature"), "{err}");
        }
        let err = StateBackend::open("memory://", &opts).unwrap_err();
        assert!(err.to_string().contains("does not apply"), "{err}");
    }

    #[cfg(feature = "s3")]
    #[test]
    fn s3_url_with_options_builds_without_network() {
        let opts: BTreeMap<String, String> = [
            ("endpoint", "http://127.0.0.1:9"),
            ("region", "us-east-1"),
            ("access_key_id", "id"),
            ("secret_access_key", "secret"),
            ("allow_http", "true"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        let built = build_store("s3://bucket/some/prefix", &opts).unwrap();
        assert_eq!(built.url, "s3://bucket/some/prefix");
        assert_eq!(built.root.as_ref(), "some/prefix");
        StateBackend::open("s3://bucket/some/prefix", &opts).unwrap();
    }

    #[cfg(all(feature = "s3", feature = "gcs", feature = "azure"))]
    #[test]
    fn options_override_the_environment() {
        let env = [
            ("AWS_REGION", "from-env"),
            ("AWS_ENDPOINT", "http://env:9000"),
            ("AWS_PROFILE", "ignored: not a store key"),
            ("GOOGLE_BUCKET", "ignored: another store"),
            ("HOME", "/root"),
        ]
        .map(|(k, v)| (k.to_string(), v.to_string()));
        let options: BTreeMap<String, String> = [("Region", "from-config")]
            .into_iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let merged = cloud_options(&ObjectStoreScheme::AmazonS3, env, &options).unwrap();
        let merged: Vec<(&str, &str)> = merged
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        assert_eq!(
            merged,
            [
                ("aws_region", "from-env"),
                ("aws_endpoint", "http://env:9000"),
                ("region", "from-config"),
            ]
        );
        let bad: BTreeMap<String, String> = [("regoin".to_string(), "x".to_string())].into();
        assert_eq!(
            cloud_options(&ObjectStoreScheme::AmazonS3, [], &bad).unwrap_err(),
            "regoin"
        );
        let gcs: BTreeMap<String, String> =
            [("service_account_key".to_string(), "{}".to_string())].into();
        cloud_options(&ObjectStoreScheme::GoogleCloudStorage, [], &gcs).unwrap();
        let azure: BTreeMap<String, String> =
            [("account_name".to_string(), "acct".to_string())].into();
        cloud_options(&ObjectStoreScheme::MicrosoftAzure, [], &azure).unwrap();
        StateBackend::open("az://container/prefix", &azure).unwrap();
        StateBackend::open("gs://bucket/prefix", &BTreeMap::new()).unwrap();
    }
}
