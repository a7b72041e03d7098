//! The one place that knows how state is encoded: bincode 2 (serde), behind a format header.
//!
//! Layout: `SOLS` magic, format version (u16 LE), codec id (u8), then the bincode payload.
//! Decoding never trusts a length read from the bytes beyond [`MAX_DECODE_BYTES`] (or the
//! smaller limit a caller gives [`decode_append`]).

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
/// Codec identifier of bincode 2 with fixed-width integers: for record batches between
/// processes ([`encode_batch_into`]), which it encodes and decodes faster than varints do, at
/// the cost of more bytes for small numbers. State is never written with it.
pub const CODEC_BINCODE2_FIXED: u8 = 2;
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

/// Appends the format header and `value` to `out`, reusing its allocation: for callers that
/// encode many values one after another into the same buffer (e.g. a transport's frames).
pub fn encode_into<T: Serialize + ?Sized>(value: &T, out: &mut Vec<u8>) -> Result<()> {
    out.extend_from_slice(&MAGIC);
    out.extend_from_slice(&FORMAT_VERSION.to_le_bytes());
    out.push(CODEC_BINCODE2);
    bincode::serde::encode_into_writer(value, VecWriter(out), config())
        .map_err(|e| Error::Codec(format!("encode: {e}")))?;
    Ok(())
}

/// [`encode_into`] for a batch of records sent to another process: fixed-width integers
/// ([`CODEC_BINCODE2_FIXED`]); [`decode_append`] reads either.
pub fn encode_batch_into<T: Serialize + ?Sized>(value: &T, out: &mut Vec<u8>) -> Result<()> {
    out.extend_from_slice(&MAGIC);
    out.extend_from_slice(&FORMAT_VERSION.to_le_bytes());
    out.push(CODEC_BINCODE2_FIXED);
    let config = bincode::config::standard()
        .with_fixed_int_encoding()
        .with_limit::<MAX_DECODE_BYTES>();
    bincode::serde::encode_into_writer(value, VecWriter(out), config)
        .map_err(|e| Error::Codec(format!("encode: {e}")))?;
    Ok(())
}

/// Appends to a vector, for bincode: the same bytes as through `std::io::Write`, twice as fast
/// (a varint is a write or two of a few bytes; `io::Write` adds a layer to each).
struct VecWriter<'a>(&'a mut Vec<u8>);

impl bincode::enc::write::Writer for VecWriter<'_> {
    #[inline(always)]
    fn write(&mut self, bytes: &[u8]) -> std::result::Result<(), bincode::error::EncodeError> {
        self.0.extend_from_slice(bytes);
        Ok(())
    }
}

/// Length of the format header.
pub const HEADER_LEN: usize = 7;

/// Checks the format header of state at the start of `bytes` (which may be just the first
/// bytes).
pub fn check_header(bytes: &[u8]) -> std::result::Result<(), String> {
    header_codec(bytes, &[CODEC_BINCODE2]).map(drop)
}

/// Checks the format header at the start of `bytes` and returns its codec id, one of `codecs`.
fn header_codec(bytes: &[u8], codecs: &[u8]) -> std::result::Result<u8, String> {
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
    if !codecs.contains(&bytes[6]) {
        return Err(format!("unknown codec id {}", bytes[6]));
    }
    Ok(bytes[6])
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

/// [`decode`] for bytes from another process: what their lengths claim is capped at `LIMIT`
/// bytes.
pub fn decode_limited<T: DeserializeOwned, const LIMIT: usize>(bytes: &[u8]) -> Result<T> {
    check_header(bytes).map_err(Error::Codec)?;
    let config = bincode::config::standard().with_limit::<LIMIT>();
    let (value, read) = bincode::serde::decode_from_slice(&bytes[HEADER_LEN..], config)
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

/// Decodes a sequence written by [`encode`], [`encode_into`] or [`encode_batch_into`] (of a
/// `Vec<T>` or a `[T]`),
/// appending its elements to `out` so that a caller reuses one vector for batch after batch.
///
/// The bytes may come from another process: what their lengths claim is capped at `LIMIT`
/// bytes, and `out` grows with the elements actually decoded, not with the length the bytes
/// announce. On error, `out` may hold some of the elements.
pub fn decode_append<T: DeserializeOwned, const LIMIT: usize>(
    bytes: &[u8],
    out: &mut Vec<T>,
) -> Result<()> {
    // Either codec: the header says which.
    let codec =
        header_codec(bytes, &[CODEC_BINCODE2, CODEC_BINCODE2_FIXED]).map_err(Error::Codec)?;
    let payload = &bytes[HEADER_LEN..];
    let read = match codec == CODEC_BINCODE2_FIXED {
        true => {
            let config = bincode::config::standard()
                .with_fixed_int_encoding()
                .with_limit::<LIMIT>();
            bincode::serde::seed_decode_from_slice(AppendSeq(out), payload, config)
        }
        false => {
            let config = bincode::config::standard().with_limit::<LIMIT>();
            bincode::serde::seed_decode_from_slice(AppendSeq(out), payload, config)
        }
    }
    .map(|((), read)| read)
    .map_err(|e| Error::Codec(format!("decode: {e}")))?;
    let rest = bytes.len() - HEADER_LEN - read;
    if rest != 0 {
        return Err(Error::Codec(format!(
            "{rest} trailing bytes after the payload"
        )));
    }
    Ok(())
}

/// Deserializes a sequence into an existing vector (see [`decode_append`]).
struct AppendSeq<'a, T>(&'a mut Vec<T>);

impl<'de, T: DeserializeOwned> serde::de::DeserializeSeed<'de> for AppendSeq<'_, T> {
    type Value = ();

    fn deserialize<D: serde::Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        deserializer.deserialize_seq(self)
    }
}

impl<'de, T: DeserializeOwned> serde::de::Visitor<'de> for AppendSeq<'_, T> {
    type Value = ();

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("a sequence")
    }

    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        // A local vector, not pushes through the reference: the loop then keeps the length in
        // a register (decoding is 1.5x faster).
        let mut out = std::mem::take(self.0);
        // The announced length is untrusted: reserve no more than 1 MiB ahead of the elements
        // that actually decode (a reused vector has its capacity already).
        let cautious = (1 << 20) / std::mem::size_of::<T>().max(1);
        out.reserve(seq.size_hint().unwrap_or(0).min(cautious));
        let outcome = loop {
            match seq.next_element::<T>() {
                Ok(Some(item)) => out.push(item),
                Ok(None) => break Ok(()),
                Err(e) => break Err(e),
            }
        };
        *self.0 = out;
        outcome
    }
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

    #[test]
    fn batches_in_fixed_width_read_back_and_are_not_state() {
        let batch = vec![(1u64, "a".to_string()), (u64::MAX, String::new())];
        let mut buf = Vec::new();
        encode_batch_into(&batch[..], &mut buf).unwrap();
        assert_eq!(buf[6], CODEC_BINCODE2_FIXED);
        let mut out = Vec::new();
        decode_append::<(u64, String), 1024>(&buf, &mut out).unwrap();
        assert_eq!(out, batch);
        // State decoders refuse the batch codec, naming it.
        let e = decode::<Vec<(u64, String)>>(&buf).unwrap_err().to_string();
        assert!(e.contains("unknown codec id 2"), "{e}");
        // Lengths are bounded as with varints: a string claiming more than the limit fails.
        let mut big = Vec::new();
        encode_batch_into(&["x".repeat(2000)][..], &mut big).unwrap();
        assert!(decode_append::<String, 1024>(&big, &mut Vec::new()).is_err());
        // Truncated: an error, not a panic.
        assert!(
            decode_append::<(u64, String), 1024>(&buf[..buf.len() - 1], &mut Vec::new()).is_err()
        );
        assert!(decode_append::<(u64, String), 1024>(&buf[..3], &mut Vec::new()).is_err());
    }

    #[test]
    fn append_reuses_the_vector_and_bounds_claims() {
        let mut buf = Vec::new();
        encode_into(&[(1u64, 2u64), (3, 4)][..], &mut buf).unwrap();
        assert_eq!(buf, encode(&vec![(1u64, 2u64), (3, 4)]).unwrap());
        let mut out: Vec<(u64, u64)> = Vec::with_capacity(8);
        decode_append::<_, 1024>(&buf, &mut out).unwrap();
        assert_eq!(out, vec![(1, 2), (3, 4)]);
        let cap = out.capacity();
        out.clear();
        decode_append::<_, 1024>(&buf, &mut out).unwrap();
        assert_eq!((out.len(), out.capacity()), (2, cap));
        // A vector of strings encoded by `encode` reads back the same way.
        let strings = encode(&vec!["a".to_string(), "bc".to_string()]).unwrap();
        let mut back: Vec<String> = Vec::new();
        decode_append::<_, 1024>(&strings, &mut back).unwrap();
        assert_eq!(back, ["a", "bc"]);
        // A string claiming more than the limit fails before anything is allocated for it.
        let big = encode(&vec!["x".repeat(2000)]).unwrap();
        assert!(decode_append::<String, 1024>(&big, &mut Vec::new()).is_err());
        // An announced length of ~2^62 elements over a few bytes fails cleanly.
        let mut huge = buf[..HEADER_LEN].to_vec();
        huge.extend_from_slice(&[0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x3f]);
        let mut out: Vec<u64> = Vec::new();
        assert!(decode_append::<_, 1024>(&huge, &mut out).is_err());
        assert!(out.capacity() <= (1 << 20) / 8);
        let mut trailing = buf.clone();
        trailing.push(0);
        assert!(decode_append::<(u64, u64), 1024>(&trailing, &mut Vec::new()).is_err());
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
