//! The build-time check of a file sink's output directory: what `sinks.<stage>.path` names must
//! be a writable directory, or a path that can be created as one when the job runs. The check
//! creates nothing (so `--explain` stays side-effect free); only a probe file, removed at once,
//! tests that a directory is writable.

use std::fs::OpenOptions;
use std::io::ErrorKind;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

/// Why `dir` cannot be the output directory of a sink, if it cannot.
pub(super) fn check(dir: &Path) -> Result<(), String> {
    let shown = dir.display();
    match std::fs::metadata(dir) {
        Ok(meta) if meta.is_dir() => {
            writable(dir).map_err(|e| format!("{shown} is not writable ({e})"))
        }
        Ok(_) => Err(format!("{shown} is not a directory")),
        // Not found, or a component of the path is a file ("Not a directory").
        Err(e) => {
            let Some(ancestor) = nearest_existing(dir) else {
                return Err(format!("{shown}: {e}"));
            };
            let at = ancestor.display();
            match std::fs::metadata(&ancestor) {
                Ok(meta) if !meta.is_dir() => Err(format!(
                    "{shown} cannot be created: {at} is not a directory"
                )),
                Ok(_) if e.kind() == ErrorKind::NotFound => writable(&ancestor)
                    .map_err(|e| format!("{shown} cannot be created: {at} is not writable ({e})")),
                Ok(_) => Err(format!("{shown}: {e}")),
                Err(e) => Err(format!("{shown} cannot be created: {at}: {e}")),
            }
        }
    }
}

/// The nearest ancestor of `dir` that exists (as anything); `.` for a relative path none of
/// whose components exists.
fn nearest_existing(dir: &Path) -> Option<PathBuf> {
    let mut at = dir.parent();
    while let Some(p) = at {
        if p.as_os_str().is_empty() {
            return Some(PathBuf::from("."));
        }
        // `symlink_metadata`: a dangling link exists, and creating through it fails. Any error
        // (not found, a file as a component) means this one does not exist: look further up.
        if std::fs::symlink_metadata(p).is_ok() {
            return Some(p.to_path_buf());
        }
        at = p.parent();
    }
    None
}

/// Whether files can be created in directory `dir`, by creating a uniquely named hidden probe
/// and removing it. Permission bits alone would not do: root ignores them, read-only mounts do
/// not show in them.
fn writable(dir: &Path) -> std::io::Result<()> {
    static PROBES: AtomicU64 = AtomicU64::new(0);
    let n = PROBES.fetch_add(1, Ordering::Relaxed);
    let probe = dir.join(format!(".solstice-probe-{}-{n}", std::process::id()));
    OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&probe)?;
    std::fs::remove_file(&probe)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scratch(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("solstice-{name}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    #[test]
    fn existing_and_creatable_directories_pass_and_nothing_is_left() {
        let dir = scratch("sinkdir-ok");
        check(&dir).unwrap();
        check(&dir.join("a/b/c")).unwrap();
        assert!(!dir.join("a").exists());
        assert_eq!(std::fs::read_dir(&dir).unwrap().count(), 0);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn files_and_paths_under_files_are_refused() {
        let dir = scratch("sinkdir-bad");
        let file = dir.join("f.txt");
        std::fs::write(&file, "x").unwrap();
        let e = check(&file).unwrap_err();
        assert!(e.ends_with("f.txt is not a directory"), "{e}");
        let e = check(&file.join("out")).unwrap_err();
        assert!(
            e.contains("cannot be created") && e.contains("f.txt is not a directory"),
            "{e}"
        );
        let e = check(Path::new("/dev/null")).unwrap_err();
        assert_eq!(e, "/dev/null is not a directory");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
