//! Avro in Confluent's wire format, with a schema registry.
//!
//! - [`AvroDecodeLayer`] (consume side) decodes each framed value of its
//!   topics with the writer schema named by the value's schema id, resolved
//!   to a reader schema when one is configured (schema evolution: a value
//!   written with an older or newer compatible schema still decodes). The
//!   handler finds the result as an [`AvroRecord`] in the extensions.
//! - [`AvroEncodeLayer`] (produce side) encodes each record of its topics:
//!   an [`AvroValue`] extension, or else the record's JSON value, is written
//!   with the topic's schema and framed with its id.
//! - [`AvroCodec`] is the same format as a typed [`Codec`] for serde types.
//!
//! Schemas come from a [`SchemaRegistry`] (the client shared with the JSON
//! Schema and Protobuf layers, in [`layers::registry`](crate::layers::registry)),
//! cached by id and by subject version: once a schema is known, decoding and encoding make no request.
//! Undecodable values fail with an [`AvroError`] (kind `deserialization`),
//! values that do not fit their schema with kind `invalid`.
//!
//! ```
//! use std::sync::Arc;
//! use apache_avro::Schema;
//! use light_kafka::layers::avro::{AvroCodec, SchemaRegistry};
//! use light_kafka::record::Codec;
//! use serde::{Deserialize, Serialize};
//!
//! #[derive(Serialize, Deserialize, Debug, PartialEq)]
//! struct User { name: String }
//!
//! let schema = Arc::new(Schema::parse_str(
//!     r#"{"type":"record","name":"User","fields":[{"name":"name","type":"string"}]}"#,
//! )?);
//! // A codec for a schema whose registry id is already known (here: 1).
//! let registry = Arc::new(SchemaRegistry::new("http://localhost:8081"));
//! let codec = AvroCodec::new(registry, 1, schema);
//! let bytes = codec.encode(&User { name: "ada".into() })?;
//! assert_eq!(&bytes[..5], &[0, 0, 0, 0, 1]);
//! assert_eq!(codec.decode(&bytes)?, User { name: "ada".into() });
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

mod error;
mod registry;
pub mod wire;

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::marker::PhantomData;
use std::sync::{Arc, RwLock};
use std::task::{Context, Poll};

use apache_avro::types::Value;
use bytes::Bytes;
use serde::Serialize;
use serde::de::DeserializeOwned;
use tower::ServiceExt;
use tower_layer::Layer;
use tower_service::Service;

pub use crate::layers::future::ResponseFuture;
pub use crate::layers::registry::{SchemaType, SchemaVersion, SubjectNameStrategy};
/// Re-exported from `apache-avro`, so that callers never pin a second copy.
pub use apache_avro::Schema;
pub use error::{AvroError, AvroErrorKind};
pub use registry::SchemaRegistry;

use crate::error::BoxError;
use crate::record::{Codec, Record};

/// A decoded Avro value, in the record's extensions.
#[derive(Clone, Debug, PartialEq)]
pub struct AvroRecord {
    schema_id: u32,
    value: Arc<Value>,
}

impl AvroRecord {
    /// The writer schema's registry id.
    pub fn schema_id(&self) -> u32 {
        self.schema_id
    }

    /// The decoded value (resolved to the reader schema when one is configured).
    pub fn value(&self) -> &Value {
        &self.value
    }

    /// The value as JSON.
    ///
    /// # Errors
    ///
    /// An [`AvroError`] of kind `Decode` for values JSON cannot represent.
    pub fn to_json(&self) -> Result<serde_json::Value, AvroError> {
        serde_json::Value::try_from((*self.value).clone()).map_err(|e| {
            AvroError::with_source(AvroErrorKind::Decode, "no JSON form for the Avro value", e)
        })
    }

    /// The value as a serde type.
    ///
    /// # Errors
    ///
    /// An [`AvroError`] of kind `Decode` when the value does not fit `T`.
    pub fn deserialize<T: DeserializeOwned>(&self) -> Result<T, AvroError> {
        apache_avro::from_value(&self.value).map_err(|e| {
            AvroError::with_source(
                AvroErrorKind::Decode,
                "the Avro value does not fit the type",
                e,
            )
        })
    }
}

/// An Avro value to produce, in a record's extensions (instead of a JSON value).
#[derive(Clone, Debug, PartialEq)]
pub struct AvroValue(pub Value);

// ---- decoding ------------------------------------------------------------------

#[derive(Clone)]
struct DecodeConfig {
    registry: Arc<SchemaRegistry>,
    topics: HashMap<String, Option<Arc<Schema>>>,
}

impl DecodeConfig {
    fn decode(
        &self,
        reader: Option<&Schema>,
        bytes: &[u8],
    ) -> Result<Result<AvroRecord, u32>, AvroError> {
        let (id, body) = wire::split(bytes)?;
        let Some(writer) = self.registry.cached(id) else {
            return Ok(Err(id));
        };
        let value = wire::decode(body, &writer, reader)?;
        Ok(Ok(AvroRecord {
            schema_id: id,
            value: Arc::new(value),
        }))
    }
}

/// Layer that applies [`AvroDecode`]. See the [module documentation](self).
#[derive(Clone)]
pub struct AvroDecodeLayer {
    config: Arc<DecodeConfig>,
}

impl AvroDecodeLayer {
    /// Decodes nothing yet: add topics.
    pub fn new(registry: Arc<SchemaRegistry>) -> Self {
        AvroDecodeLayer {
            config: Arc::new(DecodeConfig {
                registry,
                topics: HashMap::new(),
            }),
        }
    }

    /// The topics, copied first when the layer was already cloned (the
    /// clones keep theirs).
    fn topics(&mut self) -> &mut HashMap<String, Option<Arc<Schema>>> {
        &mut Arc::make_mut(&mut self.config).topics
    }

    /// Decodes `topic`'s values with their writer schemas.
    pub fn topic(mut self, topic: impl Into<String>) -> Self {
        self.topics().insert(topic.into(), None);
        self
    }

    /// Decodes `topic`'s values and resolves them to `reader`.
    pub fn topic_with_reader(mut self, topic: impl Into<String>, reader: Arc<Schema>) -> Self {
        self.topics().insert(topic.into(), Some(reader));
        self
    }
}

impl fmt::Debug for AvroDecodeLayer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AvroDecodeLayer")
            .field("topics", &self.config.topics.keys().collect::<HashSet<_>>())
            .finish_non_exhaustive()
    }
}

impl<S> Layer<S> for AvroDecodeLayer {
    type Service = AvroDecode<S>;

    fn layer(&self, inner: S) -> AvroDecode<S> {
        AvroDecode {
            inner,
            config: self.config.clone(),
        }
    }
}

/// Decodes Avro record values before the inner service sees them.
#[derive(Clone)]
pub struct AvroDecode<S> {
    inner: S,
    config: Arc<DecodeConfig>,
}

impl<S: fmt::Debug> fmt::Debug for AvroDecode<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AvroDecode")
            .field("inner", &self.inner)
            .finish_non_exhaustive()
    }
}

impl<S> Service<Record> for AvroDecode<S>
where
    S: Service<Record> + Clone + Send + 'static,
    S::Future: Send + 'static,
    S::Response: Send + 'static,
    S::Error: Into<BoxError>,
{
    type Response = S::Response;
    type Error = BoxError;
    type Future = ResponseFuture<S::Future, S::Response>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, mut record: Record) -> Self::Future {
        let Some(reader) = self.config.topics.get(record.topic()) else {
            return ResponseFuture::inner(self.inner.call(record));
        };
        let Some(bytes) = record.value().cloned() else {
            return ResponseFuture::inner(self.inner.call(record));
        };
        match self.config.decode(reader.as_deref(), &bytes) {
            Ok(Ok(decoded)) => {
                record.extensions_mut().insert(decoded);
                ResponseFuture::inner(self.inner.call(record))
            }
            Err(error) => ResponseFuture::rejected(error),
            Ok(Err(id)) => {
                let clone = self.inner.clone();
                let inner = std::mem::replace(&mut self.inner, clone);
                let config = self.config.clone();
                let reader = reader.clone();
                ResponseFuture::deferred(Box::pin(async move {
                    config.registry.schema(id).await?;
                    let decoded = config.decode(reader.as_deref(), &bytes)?.map_err(|id| {
                        AvroError::new(
                            AvroErrorKind::UnknownSchema,
                            format!("schema id {id} vanished"),
                        )
                    })?;
                    record.extensions_mut().insert(decoded);
                    inner.oneshot(record).await.map_err(Into::into)
                }))
            }
        }
    }
}

// ---- encoding ------------------------------------------------------------------

/// How the produce side finds a topic's writer schema.
#[derive(Clone, Debug)]
enum Writer {
    /// A registered subject version.
    Version(String, SchemaVersion),
    /// A schema to register under a subject (or find registered).
    Register(String, Arc<Schema>),
}

struct EncodeConfig {
    registry: Arc<SchemaRegistry>,
    topics: HashMap<String, Writer>,
    resolved: RwLock<HashMap<String, (u32, Arc<Schema>)>>,
}

impl Clone for EncodeConfig {
    fn clone(&self) -> Self {
        EncodeConfig {
            registry: self.registry.clone(),
            topics: self.topics.clone(),
            resolved: RwLock::new(
                self.resolved
                    .read()
                    .unwrap_or_else(|p| p.into_inner())
                    .clone(),
            ),
        }
    }
}

impl EncodeConfig {
    fn resolved(&self, topic: &str) -> Option<(u32, Arc<Schema>)> {
        self.resolved
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(topic)
            .cloned()
    }

    async fn resolve(&self, topic: &str, writer: &Writer) -> Result<(u32, Arc<Schema>), AvroError> {
        let found = match writer {
            Writer::Version(subject, version) => self.registry.version(subject, *version).await?,
            Writer::Register(subject, schema) => (
                self.registry.register(subject, schema).await?,
                schema.clone(),
            ),
        };
        self.resolved
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .insert(topic.to_owned(), found.clone());
        Ok(found)
    }
}

/// Encodes `record`'s Avro value (extension) or JSON value with `schema`.
fn encode_record(record: &mut Record, id: u32, schema: &Schema) -> Result<(), AvroError> {
    let value = match record.extensions().get::<AvroValue>() {
        Some(AvroValue(value)) => value.clone(),
        None => {
            let json: serde_json::Value = record.json().map_err(|e| {
                AvroError::with_source(AvroErrorKind::Encode, "the record value is not JSON", e)
            })?;
            Value::try_from(json).map_err(|e| {
                AvroError::with_source(AvroErrorKind::Encode, "no Avro form for the JSON value", e)
            })?
        }
    };
    let bytes: Bytes = wire::encode(id, schema, value)?;
    record.set_value(Some(bytes));
    Ok(())
}

/// Layer that applies [`AvroEncode`]. See the [module documentation](self).
#[derive(Clone)]
pub struct AvroEncodeLayer {
    config: Arc<EncodeConfig>,
}

impl AvroEncodeLayer {
    /// Encodes nothing yet: add topics.
    pub fn new(registry: Arc<SchemaRegistry>) -> Self {
        AvroEncodeLayer {
            config: Arc::new(EncodeConfig {
                registry,
                topics: HashMap::new(),
                resolved: RwLock::new(HashMap::new()),
            }),
        }
    }

    /// The topics, copied first when the layer was already cloned (the
    /// clones keep theirs).
    fn topics(&mut self) -> &mut HashMap<String, Writer> {
        &mut Arc::make_mut(&mut self.config).topics
    }

    /// Writes `topic`'s records with a version of `subject` (looked up once).
    pub fn topic(
        mut self,
        topic: impl Into<String>,
        subject: impl Into<String>,
        version: SchemaVersion,
    ) -> Self {
        self.topics()
            .insert(topic.into(), Writer::Version(subject.into(), version));
        self
    }

    /// Writes `topic`'s records with `schema`, registered under `subject` on first use.
    pub fn topic_with_schema(
        mut self,
        topic: impl Into<String>,
        subject: impl Into<String>,
        schema: Arc<Schema>,
    ) -> Self {
        self.topics()
            .insert(topic.into(), Writer::Register(subject.into(), schema));
        self
    }
}

impl fmt::Debug for AvroEncodeLayer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AvroEncodeLayer")
            .field("topics", &self.config.topics.keys().collect::<HashSet<_>>())
            .finish_non_exhaustive()
    }
}

impl<S> Layer<S> for AvroEncodeLayer {
    type Service = AvroEncode<S>;

    fn layer(&self, inner: S) -> AvroEncode<S> {
        AvroEncode {
            inner,
            config: self.config.clone(),
        }
    }
}

/// Encodes record values as Avro before the inner service (a producer) sends them.
#[derive(Clone)]
pub struct AvroEncode<S> {
    inner: S,
    config: Arc<EncodeConfig>,
}

impl<S: fmt::Debug> fmt::Debug for AvroEncode<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AvroEncode")
            .field("inner", &self.inner)
            .finish_non_exhaustive()
    }
}

impl<S> Service<Record> for AvroEncode<S>
where
    S: Service<Record> + Clone + Send + 'static,
    S::Future: Send + 'static,
    S::Response: Send + 'static,
    S::Error: Into<BoxError>,
{
    type Response = S::Response;
    type Error = BoxError;
    type Future = ResponseFuture<S::Future, S::Response>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, mut record: Record) -> Self::Future {
        let Some(writer) = self.config.topics.get(record.topic()) else {
            return ResponseFuture::inner(self.inner.call(record));
        };
        if let Some((id, schema)) = self.config.resolved(record.topic()) {
            return match encode_record(&mut record, id, &schema) {
                Ok(()) => ResponseFuture::inner(self.inner.call(record)),
                Err(error) => ResponseFuture::rejected(error),
            };
        }
        let clone = self.inner.clone();
        let inner = std::mem::replace(&mut self.inner, clone);
        let config = self.config.clone();
        let writer = writer.clone();
        ResponseFuture::deferred(Box::pin(async move {
            let (id, schema) = config.resolve(record.topic(), &writer).await?;
            encode_record(&mut record, id, &schema)?;
            inner.oneshot(record).await.map_err(Into::into)
        }))
    }
}

// ---- the typed codec -----------------------------------------------------------

/// Confluent-framed Avro as a [`Codec`] for serde types.
///
/// It writes with one schema (whose registry id it knows) and reads any value
/// whose writer schema the registry has cached (its own, or fetched before with
/// [`SchemaRegistry::schema`]), resolved to its reader schema.
pub struct AvroCodec<T> {
    registry: Arc<SchemaRegistry>,
    id: u32,
    writer: Arc<Schema>,
    reader: Arc<Schema>,
    _type: PhantomData<fn() -> T>,
}

impl<T> AvroCodec<T> {
    /// Writes and reads with `schema`, registered as `id`.
    pub fn new(registry: Arc<SchemaRegistry>, id: u32, schema: Arc<Schema>) -> Self {
        registry.insert(id, schema.clone());
        AvroCodec {
            registry,
            id,
            reader: schema.clone(),
            writer: schema,
            _type: PhantomData,
        }
    }

    /// Writes with a version of `subject` from the registry.
    ///
    /// # Errors
    ///
    /// As [`SchemaRegistry::version`].
    pub async fn from_registry(
        registry: Arc<SchemaRegistry>,
        subject: &str,
        version: SchemaVersion,
    ) -> Result<Self, AvroError> {
        let (id, schema) = registry.version(subject, version).await?;
        Ok(AvroCodec::new(registry, id, schema))
    }

    /// Reads with `reader` (resolving each value's writer schema to it).
    pub fn with_reader(mut self, reader: Arc<Schema>) -> Self {
        self.reader = reader;
        self
    }

    /// The id values are written with.
    pub fn schema_id(&self) -> u32 {
        self.id
    }
}

impl<T> fmt::Debug for AvroCodec<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AvroCodec")
            .field("schema_id", &self.id)
            .finish_non_exhaustive()
    }
}

impl<T: Serialize + DeserializeOwned> Codec<T> for AvroCodec<T> {
    type Error = AvroError;

    fn encode(&self, value: &T) -> Result<Bytes, AvroError> {
        let value = apache_avro::to_value(value).map_err(|e| {
            AvroError::with_source(AvroErrorKind::Encode, "no Avro form for the value", e)
        })?;
        wire::encode(self.id, &self.writer, value)
    }

    fn decode(&self, bytes: &[u8]) -> Result<T, AvroError> {
        let (id, body) = wire::split(bytes)?;
        let writer = self.registry.cached(id).ok_or_else(|| {
            AvroError::new(
                AvroErrorKind::UnknownSchema,
                format!(
                    "writer schema {id} is not cached: fetch it with SchemaRegistry::schema first"
                ),
            )
        })?;
        let value = wire::decode(body, &writer, Some(&self.reader))?;
        apache_avro::from_value(&value).map_err(|e| {
            AvroError::with_source(
                AvroErrorKind::Decode,
                "the Avro value does not fit the type",
                e,
            )
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn assert_send_sync<T: Send + Sync>() {}

    #[test]
    fn types_are_send_sync() {
        assert_send_sync::<AvroDecodeLayer>();
        assert_send_sync::<AvroEncodeLayer>();
        assert_send_sync::<AvroDecode<crate::testkit::Accept>>();
        assert_send_sync::<AvroCodec<String>>();
        assert_send_sync::<AvroRecord>();
    }
}
