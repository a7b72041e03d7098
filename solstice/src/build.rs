//! What identifies a build of a workflow binary: the library's version and a fingerprint of the
//! executable's bytes, so that two processes can tell whether they run the same binary.

use std::hash::Hasher;
use std::io::Read;
use std::path::Path;

use crate::error::{Error, Result};

/// The version of the Solstice library the binary was built with.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

/// The fingerprint of the running executable: XXH64 of its bytes, as 16 hex digits. On Linux
/// the bytes are those of the image this process runs (`/proc/self/exe`), also when its file
/// was replaced or removed since it started (a rebuild, or a downloaded binary removed once
/// it ran).
pub fn fingerprint() -> Result<String> {
    let running = Path::new("/proc/self/exe");
    if running.exists() {
        return fingerprint_of(running);
    }
    let exe = std::env::current_exe().map_err(|e| Error::io("the running executable", e))?;
    fingerprint_of(&exe)
}

/// The fingerprint of the file at `path`: XXH64 of its bytes, as 16 hex digits.
pub fn fingerprint_of(path: &Path) -> Result<String> {
    let mut file = std::fs::File::open(path).map_err(|e| Error::io(path, e))?;
    let mut hasher = twox_hash::XxHash64::with_seed(0);
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = file.read(&mut buf).map_err(|e| Error::io(path, e))?;
        if n == 0 {
            break;
        }
        hasher.write(&buf[..n]);
    }
    Ok(format!("{:016x}", hasher.finish()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_fingerprint_follows_the_bytes() {
        let dir = std::env::temp_dir().join(format!("solstice-fp-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let (a, b) = (dir.join("a"), dir.join("b"));
        std::fs::write(&a, b"one binary").unwrap();
        std::fs::write(&b, b"one binary").unwrap();
        assert_eq!(fingerprint_of(&a).unwrap(), fingerprint_of(&b).unwrap());
        std::fs::write(&b, b"another binary").unwrap();
        assert_ne!(fingerprint_of(&a).unwrap(), fingerprint_of(&b).unwrap());
        assert_eq!(fingerprint_of(&a).unwrap().len(), 16);
        let missing = fingerprint_of(&dir.join("missing")).unwrap_err();
        assert!(missing.to_string().contains("missing"), "{missing}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
