//! The one place that knows how state is encoded: bincode 2 (serde), behind a format header.
//!
//! Layout: `SOLS` magic, format version (u16 LE), codec id (u8), then the bincode payload.
//! Decoding never trusts a length read from the bytes beyond [`MAX_DECODE_BYTES`].

use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::error::{Error, Result};

/// Magic bytes at the start of every encoded state blob.
pub const MAGIC: [u8; 4] = *b"SOLS";
/// Current format version; files of other versions are refused with both numbers in the error.
/// Version 2: the manifest lost `extra` and `created_at_millis` and gained `end_of_input`.
/// Version 3: keyed state is filed in parts of contiguous key-group ranges (`kg-00000-00063`),
/// each an index of its groups followed by their encoded entries.
/// Version 4: the manifest records the epoch of the run that took the checkpoint, and part files
/// are named after it (`kg-00000-00063.e00000003`).
pub const FORMAT_VERSION: u16 = 4;
/// Codec identifier of bincode 2 with the standard configuration.
pub const CODEC_BINCODE2: u8 = 1;
/// Upper bound on what one decode may allocate.
pub const MAX_DECODE_BYTES: usize = 1 << 32;

fn config() -> bincode::config::Configuration<
    bincode::config::LittleEndian,
    bincode::config::Varint,
    bincode::config::Limit<MAX_DECODE_BYTES>,
> {
    bincode::config::standard().with_limit::<MAX_DECODE_BYTES>()
}

/// Encodes `value` with the format header.
pub fn encode<T: Serialize + ?Sized>(value: &T) -> Result<Vec<u8>> {
    let mut out = Vec::with_capacity(64);
    out.extend_from_slice(&MAGIC);
    out.extend_from_slice(&FORMAT_VERSION.to_le_bytes());
    out.push(CODEC_BINCODE2);
    bincode::serde::encode_into_std_write(value, &mut out, config())
        .map_err(|e| Error::Codec(format!("encode: {e}")))?;
    Ok(out)
}

/// Length of the format header.
pub const HEADER_LEN: usize = 7;

/// Checks the format header at the start of `bytes` (which may be just the first bytes).
pub fn check_header(bytes: &[u8]) -> std::result::Result<(), String> {
    if bytes.len() < HEADER_LEN {
        return Err(format!(
            "truncated: {} bytes, shorter than the {HEADER_LEN}-byte header",
            bytes.len()
        ));
    }
    if bytes[..4] != MAGIC {
        return Err("not a Solstice state file (bad magic)".into());
    }
    let version = u16::from_le_bytes([bytes[4], bytes[5]]);
    if version != FORMAT_VERSION {
        return Err(format!(
            "format version {version} is not supported (this build reads {FORMAT_VERSION})"
        ));
    }
    if bytes[6] != CODEC_BINCODE2 {
        return Err(format!("unknown codec id {}", bytes[6]));
    }
    Ok(())
}

/// Decodes a value written by [`encode`], checking the header and that no bytes are left over.
pub fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T> {
    check_header(bytes).map_err(Error::Codec)?;
    let (value, read) = bincode::serde::decode_from_slice(&bytes[HEADER_LEN..], config())
        .map_err(|e| Error::Codec(format!("decode: {e}")))?;
    let rest = bytes.len() - HEADER_LEN - read;
    if rest != 0 {
        return Err(Error::Codec(format!(
            "{rest} trailing bytes after the payload"
        )));
    }
    Ok(value)
}

/// Decodes a value written by [`encode`] at the start of `bytes`, returning it and the number
/// of bytes it took (header included): for files that carry raw bytes after a header value.
pub fn decode_prefix<T: DeserializeOwned>(bytes: &[u8]) -> Result<(T, usize)> {
    check_header(bytes).map_err(Error::Codec)?;
    let (value, read) = bincode::serde::decode_from_slice(&bytes[HEADER_LEN..], config())
        .map_err(|e| Error::Codec(format!("decode: {e}")))?;
    Ok((value, HEADER_LEN + read))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::BTreeMap;

    #[test]
    fn rejects_foreign_and_corrupt_bytes() {
        let good = encode(&vec![1u64, 2, 3]).unwrap();
        assert!(matches!(
            decode::<Vec<u64>>(&good[..3]),
            Err(Error::Codec(_))
        ));
        let mut bad = good.clone();
        bad[0] = b'X';
        assert!(decode::<Vec<u64>>(&bad)
            .unwrap_err()
            .to_string()
            .contains("magic"));
        let mut newer = good.clone();
        newer[4] = 9;
        assert!(decode::<Vec<u64>>(&newer)
            .unwrap_err()
            .to_string()
            .contains("version"));
        let mut truncated = good.clone();
        truncated.pop();
        assert!(decode::<Vec<u64>>(&truncated).is_err());
    }

    #[test]
    fn huge_length_prefix_does_not_allocate() {
        // A length of ~2^62 elements must fail cleanly instead of reserving memory.
        let mut bytes = encode(&Vec::<u64>::new()).unwrap();
        bytes.truncate(HEADER_LEN);
        bytes.extend_from_slice(&[0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x3f]);
        assert!(decode::<Vec<u64>>(&bytes).is_err());
    }

    proptest! {
        #[test]
        fn round_trip(map in proptest::collection::btree_map(".{0,12}", any::<(u64, i32, bool)>(), 0..50)) {
            let bytes = encode(&map).unwrap();
            let back: BTreeMap<String, (u64, i32, bool)> = decode(&bytes).unwrap();
            prop_assert_eq!(back, map);
        }
    }
}
