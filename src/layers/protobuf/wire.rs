//! Confluent's wire format for Protobuf: magic byte `0`, the schema id as a
//! 4-byte big-endian integer, the message-index array, then the Protobuf
//! binary encoding of the message.
//!
//! The message-index array locates the message type in the schema's
//! `.proto` file: the first index is a top-level message in declaration
//! order, each next one a message nested in the previous. It is written as
//! zig-zag varints, its length first; the common `[0]` (the file's first
//! message) is written as a single `0` byte.

use bytes::{BufMut, Bytes, BytesMut};

use super::error::{ProtobufError, ProtobufErrorKind};
use crate::layers::registry::split_header;

/// More nesting than any real schema has: an index array longer than this is
/// corrupt, not a message type.
const MAX_DEPTH: usize = 64;

fn framing(message: impl Into<String>) -> ProtobufError {
    ProtobufError::new(ProtobufErrorKind::Framing, message)
}

/// Reads one zig-zag varint (Java's `ByteUtils.readVarint`, at most 5 bytes).
fn read_varint(bytes: &mut &[u8]) -> Result<i32, ProtobufError> {
    let mut value: u32 = 0;
    for i in 0..5 {
        let Some((&byte, rest)) = bytes.split_first() else {
            return Err(framing("truncated message-index array"));
        };
        *bytes = rest;
        value |= u32::from(byte & 0x7f) << (7 * i);
        if byte & 0x80 == 0 {
            return Ok(((value >> 1) as i32) ^ -((value & 1) as i32));
        }
    }
    Err(framing("a message index is longer than 5 bytes"))
}

fn write_varint(out: &mut BytesMut, value: i32) {
    let mut zigzag = ((value << 1) ^ (value >> 31)) as u32;
    while zigzag >= 0x80 {
        out.put_u8((zigzag as u8) | 0x80);
        zigzag >>= 7;
    }
    out.put_u8(zigzag as u8);
}

/// Splits a framed value into its schema id, message-index path and
/// Protobuf body.
///
/// # Errors
///
/// A [`ProtobufError`] of kind `Framing` when the header is missing or
/// wrong, or the index array is truncated or negative.
///
/// ```
/// use light_kafka::layers::protobuf::wire;
/// // id 7, the first message ([0], written as one 0 byte), body 08 2a.
/// let (id, path, body) = wire::split(&[0, 0, 0, 0, 7, 0, 0x08, 0x2a]).unwrap();
/// assert_eq!((id, path, body), (7, vec![0], &[0x08u8, 0x2a][..]));
/// // [1, 0]: length 2 (zig-zag 4), then 1 (zig-zag 2) and 0.
/// let (_, path, _) = wire::split(&[0, 0, 0, 0, 7, 4, 2, 0]).unwrap();
/// assert_eq!(path, vec![1, 0]);
/// assert!(wire::split(&[1, 0, 0, 0, 7, 0]).is_err());
/// ```
pub fn split(bytes: &[u8]) -> Result<(u32, Vec<usize>, &[u8]), ProtobufError> {
    let (id, mut rest) = split_header(bytes).map_err(framing)?;
    let count = read_varint(&mut rest)?;
    if count == 0 {
        return Ok((id, vec![0], rest));
    }
    let count = usize::try_from(count)
        .ok()
        .filter(|&n| n <= MAX_DEPTH)
        .ok_or_else(|| framing(format!("message-index array of length {count}")))?;
    let mut path = Vec::with_capacity(count);
    for _ in 0..count {
        let index = read_varint(&mut rest)?;
        path.push(
            usize::try_from(index)
                .map_err(|_| framing(format!("negative message index {index}")))?,
        );
    }
    Ok((id, path, rest))
}

/// Frames a Protobuf `body` with schema `id` and message-index `path`.
///
/// ```
/// use light_kafka::layers::protobuf::wire;
/// assert_eq!(&wire::frame(7, &[0], &[0x08, 0x2a])[..], &[0, 0, 0, 0, 7, 0, 0x08, 0x2a]);
/// assert_eq!(&wire::frame(7, &[1, 0], &[])[..], &[0, 0, 0, 0, 7, 4, 2, 0]);
/// ```
pub fn frame(id: u32, path: &[usize], body: &[u8]) -> Bytes {
    let mut out = BytesMut::with_capacity(6 + path.len() + body.len());
    out.put_u8(0);
    out.put_u32(id);
    if path == [0] {
        out.put_u8(0);
    } else {
        write_varint(&mut out, path.len() as i32);
        for &index in path {
            write_varint(&mut out, index as i32);
        }
    }
    out.extend_from_slice(body);
    out.freeze()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn varints_round_trip() {
        for value in [0, 1, -1, 63, 64, 300, i32::MAX, i32::MIN] {
            let mut out = BytesMut::new();
            write_varint(&mut out, value);
            let mut slice = &out[..];
            assert_eq!(read_varint(&mut slice).unwrap(), value);
            assert!(slice.is_empty());
        }
        let mut truncated: &[u8] = &[0x80];
        assert!(read_varint(&mut truncated).is_err());
    }

    #[test]
    fn paths_round_trip_and_bad_arrays_are_framing_errors() {
        for path in [vec![0], vec![3], vec![1, 0], vec![0, 2, 5]] {
            let framed = frame(9, &path, b"xy");
            assert_eq!(split(&framed).unwrap(), (9, path, &b"xy"[..]));
        }
        // Length -1 (zig-zag 1), and a length with no indexes after it.
        assert!(split(&[0, 0, 0, 0, 9, 1]).is_err());
        assert!(split(&[0, 0, 0, 0, 9, 4, 2]).is_err());
        assert!(split(&[0, 0, 0, 0, 9]).is_err());
    }
}
