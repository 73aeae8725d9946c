//! Confluent's wire format: magic byte `0`, the schema id as a 4-byte
//! big-endian integer, then the Avro binary encoding of the value.

use apache_avro::Schema;
use apache_avro::reader::datum::GenericDatumReader;
use apache_avro::types::Value;
use apache_avro::writer::datum::GenericDatumWriter;
use bytes::{BufMut, Bytes, BytesMut};

use super::error::{AvroError, AvroErrorKind};

const MAGIC: u8 = 0;

/// Splits a framed value into its schema id and Avro body.
///
/// # Errors
///
/// An [`AvroError`] of kind `Framing` when `bytes` is too short or does not
/// start with the magic byte.
///
/// ```
/// use light_kafka::layers::avro::wire;
/// assert_eq!(wire::split(&[0, 0, 0, 0, 7, 1, 2]).unwrap(), (7, &[1u8, 2][..]));
/// assert!(wire::split(&[1, 0, 0, 0, 7]).is_err());
/// assert!(wire::split(&[0, 0]).is_err());
/// ```
pub fn split(bytes: &[u8]) -> Result<(u32, &[u8]), AvroError> {
    crate::layers::registry::split_header(bytes)
        .map_err(|message| AvroError::new(AvroErrorKind::Framing, message))
}

/// Decodes a framed body written with `writer`, resolved to `reader` when given.
///
/// # Errors
///
/// An [`AvroError`] of kind `Decode` when the body does not decode.
pub fn decode(body: &[u8], writer: &Schema, reader: Option<&Schema>) -> Result<Value, AvroError> {
    let decoder = GenericDatumReader::builder(writer)
        .maybe_reader_schema(reader)
        .build()
        .map_err(|e| {
            AvroError::with_source(AvroErrorKind::Decode, "incompatible reader schema", e)
        })?;
    let mut slice = body;
    let value = decoder.read_value(&mut slice).map_err(|e| {
        AvroError::with_source(AvroErrorKind::Decode, "cannot decode the Avro value", e)
    })?;
    if !slice.is_empty() {
        return Err(AvroError::new(
            AvroErrorKind::Decode,
            format!("{} bytes left after the Avro value", slice.len()),
        ));
    }
    Ok(value)
}

/// Encodes `value` with `schema` and frames it with `id`.
///
/// # Errors
///
/// An [`AvroError`] of kind `Encode` when `value` does not fit `schema`.
pub fn encode(id: u32, schema: &Schema, value: Value) -> Result<Bytes, AvroError> {
    let value = value.resolve(schema).map_err(|e| {
        AvroError::with_source(
            AvroErrorKind::Encode,
            "the value does not fit the schema",
            e,
        )
    })?;
    let body = GenericDatumWriter::builder(schema)
        .build()
        .and_then(|w| w.write_value_to_vec(value))
        .map_err(|e| {
            AvroError::with_source(AvroErrorKind::Encode, "cannot encode the Avro value", e)
        })?;
    let mut out = BytesMut::with_capacity(5 + body.len());
    out.put_u8(MAGIC);
    out.put_u32(id);
    out.extend_from_slice(&body);
    Ok(out.freeze())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_trailing_bytes() {
        let schema = Schema::parse_str(
            r#"{"type":"record","name":"T","fields":[{"name":"n","type":"long"}]}"#,
        )
        .unwrap();
        let value = Value::Record(vec![("n".into(), Value::Long(42))]);
        let bytes = encode(9, &schema, value.clone()).unwrap();
        let (id, body) = split(&bytes).unwrap();
        assert_eq!(id, 9);
        assert_eq!(decode(body, &schema, None).unwrap(), value);
        let mut longer = body.to_vec();
        longer.push(1);
        assert_eq!(
            decode(&longer, &schema, None).unwrap_err().avro_kind(),
            AvroErrorKind::Decode
        );
        assert_eq!(
            encode(1, &schema, Value::String("x".into()))
                .unwrap_err()
                .avro_kind(),
            AvroErrorKind::Encode
        );
    }
}
