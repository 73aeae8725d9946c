//! JSON Schema records in Confluent's wire format, with a schema registry.
//!
//! Confluent's `KafkaJsonSchemaSerializer` writes a value as magic byte `0`,
//! the schema id as a 4-byte big-endian integer, then the JSON document as
//! UTF-8. kafka-sidecar's `JSONSCHEMA` format is this one.
//!
//! - [`JsonSchemaRegistryLayer`] (consume side) reads the id, fetches that
//!   schema from the [`SchemaRegistry`] once, compiles it once (the compiled
//!   validator is cached per id), parses the JSON and validates it. The
//!   handler finds the parsed value as a [`JsonSchemaRecord`] (with the
//!   schema id) and as a [`ParsedJson`] (as the plain
//!   [`JsonSchemaLayer`](crate::layers::schema::JsonSchemaLayer) leaves it)
//!   in the record's extensions.
//! - [`JsonSchemaRegistryEncodeLayer`] (produce side) validates each JSON
//!   value of its topics against a subject's schema and frames it with that
//!   schema's id. It looks the subject up and never registers, unless the
//!   topic is added with
//!   [`topic_registering`](JsonSchemaRegistryEncodeLayer::topic_registering).
//! - [`encode`] frames a value by hand.
//!
//! Errors (see [`JsonSchemaRegistryError`]): a value that is not framed, an
//! id the registry does not know (404), or bytes that are not JSON are kind
//! `deserialization`; a value that violates its schema is a
//! [`SchemaError`] of kind `invalid` listing every violation. All of these
//! are poison: the dead-letter layer dead-letters them. A registry that is
//! down, times out or answers 5xx is kind `transient`: an outage, retried and
//! never dead-lettered. Tombstones (null values) and records of other topics
//! pass untouched. JSON Schema references (`$ref` to other subjects) are not
//! resolved.
//!
//! ```
//! use std::sync::Arc;
//! use light_kafka::error::{classify, ErrorKind};
//! use light_kafka::layers::json_schema_registry::{encode, JsonSchemaRecord, JsonSchemaRegistryLayer};
//! use light_kafka::layers::registry::{RegisteredSchema, SchemaRegistry, SchemaType};
//! use light_kafka::record::Record;
//! use light_kafka::testkit;
//! use serde_json::json;
//! use tower::{service_fn, Layer};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), light_kafka::BoxError> {
//! let registry = Arc::new(SchemaRegistry::new("http://registry:8081"));
//! // Known without asking the registry (as if fetched before): id 7.
//! registry.insert_schema(RegisteredSchema::new(
//!     7,
//!     SchemaType::Json,
//!     r#"{"type":"object","required":["id"],"properties":{"id":{"type":"integer"}}}"#,
//! ));
//! let mut handler = JsonSchemaRegistryLayer::new(registry).topic("orders").layer(service_fn(
//!     |record: Record| async move {
//!         let order = record.extensions().get::<JsonSchemaRecord>().unwrap();
//!         Ok::<_, light_kafka::BoxError>((order.schema_id(), order["id"].as_i64()))
//!     },
//! ));
//!
//! let good = Record::builder("orders").value(encode(7, &json!({"id": 42}))).build();
//! assert_eq!(testkit::call(&mut handler, good).await?, (7, Some(42)));
//!
//! let bad = Record::builder("orders").value(encode(7, &json!({"id": "x"}))).build();
//! let err = testkit::call(&mut handler, bad).await.unwrap_err();
//! assert_eq!(classify(err.as_ref()), ErrorKind::Invalid);
//!
//! let unframed = Record::builder("orders").value(r#"{"id": 42}"#).build();
//! let err = testkit::call(&mut handler, unframed).await.unwrap_err();
//! assert_eq!(classify(err.as_ref()), ErrorKind::Deserialization);
//! # Ok(()) }
//! ```

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::ops::Deref;
use std::sync::{Arc, RwLock};
use std::task::{Context, Poll};

use bytes::{BufMut, Bytes, BytesMut};
use jsonschema::Validator;
use serde_json::Value;
use tower::ServiceExt;
use tower_layer::Layer;
use tower_service::Service;

pub use crate::layers::future::ResponseFuture;
pub use crate::layers::registry::{SchemaRegistry, SchemaVersion};
pub use crate::layers::schema::{ParsedJson, SchemaError};

use crate::error::{BoxError, ErrorKind, Kinded};
use crate::layers::registry::{RegistryError, RegistryErrorKind, SchemaType, split_header};
use crate::record::Record;

/// What went wrong with a JSON Schema record in the wire format.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum JsonSchemaRegistryErrorKind {
    /// The value is not in Confluent's wire format (magic byte 0, a 4-byte
    /// schema id, then JSON).
    Framing,
    /// The bytes after the header are not UTF-8 JSON.
    NotJson,
    /// The registry does not know the schema id or subject version.
    UnknownSchema,
    /// The schema id names a schema of another type (Avro, Protobuf).
    WrongType,
    /// The registry could not be reached or answered with an error.
    Registry,
    /// The registry's schema text is not a valid JSON Schema.
    Schema,
    /// A value to produce is not JSON.
    Encode,
}

/// A JSON Schema wire-format failure. Kinds: framing, not JSON, unknown
/// schemas and wrong types are [`ErrorKind::Deserialization`]; encode is
/// [`ErrorKind::Invalid`]; an unreachable registry is
/// [`ErrorKind::Transient`]; a schema that does not compile is
/// [`ErrorKind::Config`]. (Violations are a [`SchemaError`], kind `invalid`.)
#[derive(Debug)]
pub struct JsonSchemaRegistryError {
    kind: JsonSchemaRegistryErrorKind,
    message: String,
    source: Option<BoxError>,
}

impl JsonSchemaRegistryError {
    fn new(kind: JsonSchemaRegistryErrorKind, message: impl Into<String>) -> Self {
        JsonSchemaRegistryError {
            kind,
            message: message.into(),
            source: None,
        }
    }

    fn with_source(
        kind: JsonSchemaRegistryErrorKind,
        message: impl Into<String>,
        source: impl Into<BoxError>,
    ) -> Self {
        JsonSchemaRegistryError {
            kind,
            message: message.into(),
            source: Some(source.into()),
        }
    }

    /// What went wrong.
    pub fn json_kind(&self) -> JsonSchemaRegistryErrorKind {
        self.kind
    }
}

impl From<RegistryError> for JsonSchemaRegistryError {
    fn from(error: RegistryError) -> Self {
        let (kind, message, source) = error.into_parts();
        JsonSchemaRegistryError {
            kind: match kind {
                RegistryErrorKind::UnknownSchema => JsonSchemaRegistryErrorKind::UnknownSchema,
                _ => JsonSchemaRegistryErrorKind::Registry,
            },
            message,
            source,
        }
    }
}

impl fmt::Display for JsonSchemaRegistryError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)?;
        if let Some(source) = &self.source {
            write!(f, ": {source}")?;
        }
        Ok(())
    }
}

impl std::error::Error for JsonSchemaRegistryError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.source
            .as_deref()
            .map(|e| e as &(dyn std::error::Error + 'static))
    }
}

impl Kinded for JsonSchemaRegistryError {
    fn kind(&self) -> ErrorKind {
        use JsonSchemaRegistryErrorKind as K;
        match self.kind {
            K::Framing | K::NotJson | K::UnknownSchema | K::WrongType => ErrorKind::Deserialization,
            K::Encode => ErrorKind::Invalid,
            K::Registry => ErrorKind::Transient,
            K::Schema => ErrorKind::Config,
        }
    }
}

/// A decoded, validated JSON value and its schema id, in the record's
/// extensions. Dereferences to the value.
#[derive(Clone, Debug, PartialEq)]
pub struct JsonSchemaRecord {
    schema_id: u32,
    value: Arc<Value>,
}

impl JsonSchemaRecord {
    /// The writer's schema id.
    pub fn schema_id(&self) -> u32 {
        self.schema_id
    }

    /// The parsed value.
    pub fn value(&self) -> &Value {
        &self.value
    }
}

impl Deref for JsonSchemaRecord {
    type Target = Value;

    fn deref(&self) -> &Value {
        &self.value
    }
}

/// Frames `value` in the wire format with schema `id` (no validation).
///
/// ```
/// use light_kafka::layers::json_schema_registry::encode;
/// let bytes = encode(258, &serde_json::json!({"a": 1}));
/// assert_eq!(&bytes[..], b"\x00\x00\x00\x01\x02{\"a\":1}");
/// ```
pub fn encode(id: u32, value: &Value) -> Bytes {
    frame(id, &serde_json::to_vec(value).unwrap_or_default())
}

fn frame(id: u32, json: &[u8]) -> Bytes {
    let mut out = BytesMut::with_capacity(5 + json.len());
    out.put_u8(0);
    out.put_u32(id);
    out.extend_from_slice(json);
    out.freeze()
}

/// Compiled validators by schema id, shared by a layer's clones.
struct Validators {
    registry: Arc<SchemaRegistry>,
    by_id: RwLock<HashMap<u32, Arc<Validator>>>,
}

impl Validators {
    fn new(registry: Arc<SchemaRegistry>) -> Self {
        Validators {
            registry,
            by_id: RwLock::new(HashMap::new()),
        }
    }

    fn cached(&self, id: u32) -> Option<Arc<Validator>> {
        self.by_id
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(&id)
            .cloned()
    }

    /// Compiles the registered schema with `id`, once.
    fn compile(&self, id: u32, text: &str) -> Result<Arc<Validator>, JsonSchemaRegistryError> {
        if let Some(validator) = self.cached(id) {
            return Ok(validator);
        }
        let validator = Arc::new(build(&format!("schema id {id}"), text)?);
        self.by_id
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .insert(id, validator.clone());
        Ok(validator)
    }

    /// The validator for schema `id`, fetched and compiled when not cached.
    async fn fetch(&self, id: u32) -> Result<Arc<Validator>, JsonSchemaRegistryError> {
        if let Some(validator) = self.cached(id) {
            return Ok(validator);
        }
        let registered = self.registry.schema_by_id(id).await?;
        check_type(&registered)?;
        self.compile(id, registered.text())
    }
}

/// Compiles the JSON Schema `text` (`what` names it in errors).
fn build(what: &str, text: &str) -> Result<Validator, JsonSchemaRegistryError> {
    let schema: Value = serde_json::from_str(text).map_err(|e| {
        JsonSchemaRegistryError::with_source(
            JsonSchemaRegistryErrorKind::Schema,
            format!("{what} is not JSON"),
            e,
        )
    })?;
    jsonschema::validator_for(&schema).map_err(|e| {
        JsonSchemaRegistryError::new(
            JsonSchemaRegistryErrorKind::Schema,
            format!("{what} is not a valid JSON Schema: {e}"),
        )
    })
}

fn check_type(
    registered: &crate::layers::registry::RegisteredSchema,
) -> Result<(), JsonSchemaRegistryError> {
    if registered.schema_type() != SchemaType::Json {
        return Err(JsonSchemaRegistryError::new(
            JsonSchemaRegistryErrorKind::WrongType,
            format!(
                "schema id {} is a {} schema, not JSON Schema",
                registered.id(),
                registered.schema_type()
            ),
        ));
    }
    Ok(())
}

/// Parses and validates a framed value with `validator`.
fn check(topic: &str, id: u32, body: &[u8], validator: &Validator) -> Result<Value, BoxError> {
    let value: Value = serde_json::from_slice(body).map_err(|e| {
        JsonSchemaRegistryError::with_source(
            JsonSchemaRegistryErrorKind::NotJson,
            format!("the value framed with schema id {id} is not JSON"),
            e,
        )
    })?;
    match crate::layers::schema::violations(topic, validator, &value) {
        None => Ok(value),
        Some(error) => Err(error.into()),
    }
}

fn framing(message: String) -> JsonSchemaRegistryError {
    JsonSchemaRegistryError::new(JsonSchemaRegistryErrorKind::Framing, message)
}

fn insert_decoded(record: &mut Record, schema_id: u32, value: Value) {
    let value = Arc::new(value);
    record
        .extensions_mut()
        .insert(ParsedJson::new(value.clone()));
    record
        .extensions_mut()
        .insert(JsonSchemaRecord { schema_id, value });
}

// ---- decoding ------------------------------------------------------------------

/// Layer that applies [`JsonSchemaRegistry`]. See the [module documentation](self).
#[derive(Clone)]
pub struct JsonSchemaRegistryLayer {
    validators: Arc<Validators>,
    topics: Arc<HashSet<String>>,
}

impl JsonSchemaRegistryLayer {
    /// Decodes nothing yet: add topics.
    pub fn new(registry: Arc<SchemaRegistry>) -> Self {
        JsonSchemaRegistryLayer {
            validators: Arc::new(Validators::new(registry)),
            topics: Arc::new(HashSet::new()),
        }
    }

    /// Decodes and validates `topic`'s values with the schemas their ids name.
    pub fn topic(mut self, topic: impl Into<String>) -> Self {
        Arc::make_mut(&mut self.topics).insert(topic.into());
        self
    }
}

impl fmt::Debug for JsonSchemaRegistryLayer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("JsonSchemaRegistryLayer")
            .field("topics", &self.topics)
            .finish_non_exhaustive()
    }
}

impl<S> Layer<S> for JsonSchemaRegistryLayer {
    type Service = JsonSchemaRegistry<S>;

    fn layer(&self, inner: S) -> JsonSchemaRegistry<S> {
        JsonSchemaRegistry {
            inner,
            validators: self.validators.clone(),
            topics: self.topics.clone(),
        }
    }
}

/// Decodes and validates wire-format JSON values before the inner service
/// sees them.
#[derive(Clone)]
pub struct JsonSchemaRegistry<S> {
    inner: S,
    validators: Arc<Validators>,
    topics: Arc<HashSet<String>>,
}

impl<S: fmt::Debug> fmt::Debug for JsonSchemaRegistry<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("JsonSchemaRegistry")
            .field("inner", &self.inner)
            .finish_non_exhaustive()
    }
}

impl<S> JsonSchemaRegistry<S> {
    /// The inner service.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    /// The inner service, mutably.
    pub fn get_mut(&mut self) -> &mut S {
        &mut self.inner
    }

    /// Consumes the layer, returning the inner service.
    pub fn into_inner(self) -> S {
        self.inner
    }
}

impl<S> Service<Record> for JsonSchemaRegistry<S>
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
        if !self.topics.contains(record.topic()) {
            return ResponseFuture::inner(self.inner.call(record));
        }
        let Some(bytes) = record.value().cloned() else {
            return ResponseFuture::inner(self.inner.call(record));
        };
        let (id, body) = match split_header(&bytes) {
            Ok(split) => split,
            Err(message) => return ResponseFuture::rejected(framing(message)),
        };
        if let Some(validator) = self.validators.cached(id) {
            return match check(record.topic(), id, body, &validator) {
                Ok(value) => {
                    insert_decoded(&mut record, id, value);
                    ResponseFuture::inner(self.inner.call(record))
                }
                Err(error) => ResponseFuture::rejected(error),
            };
        }
        let clone = self.inner.clone();
        let inner = std::mem::replace(&mut self.inner, clone);
        let validators = self.validators.clone();
        ResponseFuture::deferred(Box::pin(async move {
            let validator = validators.fetch(id).await?;
            let value = check(record.topic(), id, &bytes[5..], &validator)?;
            insert_decoded(&mut record, id, value);
            inner.oneshot(record).await.map_err(Into::into)
        }))
    }
}

// ---- encoding ------------------------------------------------------------------

/// How the produce side finds a topic's schema.
#[derive(Clone, Debug)]
enum Writer {
    /// A registered subject version (looked up, never registered).
    Version(String, SchemaVersion),
    /// A schema to register under a subject (or find registered).
    Register(String, Arc<String>),
}

struct EncodeConfig {
    validators: Validators,
    topics: HashMap<String, Writer>,
    resolved: RwLock<HashMap<String, (u32, Arc<Validator>)>>,
}

impl EncodeConfig {
    fn resolved(&self, topic: &str) -> Option<(u32, Arc<Validator>)> {
        self.resolved
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(topic)
            .cloned()
    }

    async fn resolve(
        &self,
        topic: &str,
        writer: &Writer,
    ) -> Result<(u32, Arc<Validator>), JsonSchemaRegistryError> {
        let registry = &self.validators.registry;
        let found = match writer {
            Writer::Version(subject, version) => {
                let registered = registry.subject_version(subject, *version).await?;
                check_type(&registered)?;
                let validator = self
                    .validators
                    .compile(registered.id(), registered.text())?;
                (registered.id(), validator)
            }
            Writer::Register(subject, text) => {
                // Compile first: an invalid schema is not sent.
                let validator = Arc::new(build(&format!("the schema for {subject}"), text)?);
                let id = registry
                    .register_schema(subject, SchemaType::Json, text, &[])
                    .await?;
                (id, validator)
            }
        };
        self.resolved
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .insert(topic.to_owned(), found.clone());
        Ok(found)
    }
}

/// Validates `record`'s JSON value and frames it with `id`.
fn encode_record(record: &mut Record, id: u32, validator: &Validator) -> Result<(), BoxError> {
    let Some(bytes) = record.value() else {
        return Ok(());
    };
    let value: Value = serde_json::from_slice(bytes).map_err(|e| {
        JsonSchemaRegistryError::with_source(
            JsonSchemaRegistryErrorKind::Encode,
            "the record value is not JSON",
            e,
        )
    })?;
    if let Some(error) = crate::layers::schema::violations(record.topic(), validator, &value) {
        return Err(error.into());
    }
    let framed = frame(id, bytes);
    record.set_value(Some(framed));
    Ok(())
}

/// Layer that applies [`JsonSchemaRegistryEncode`]. See the [module documentation](self).
///
/// ```
/// use std::sync::Arc;
/// use light_kafka::layers::json_schema_registry::JsonSchemaRegistryEncodeLayer;
/// use light_kafka::layers::registry::{SchemaRegistry, SchemaVersion, SubjectNameStrategy};
///
/// let registry = Arc::new(SchemaRegistry::new("http://registry:8081"));
/// let subject = SubjectNameStrategy::TopicName.subject("orders", "Order", false);
/// let layer = JsonSchemaRegistryEncodeLayer::new(registry)
///     .topic("orders", subject, SchemaVersion::Latest);
/// # let _ = layer;
/// ```
#[derive(Clone)]
pub struct JsonSchemaRegistryEncodeLayer {
    registry: Arc<SchemaRegistry>,
    topics: HashMap<String, Writer>,
}

impl JsonSchemaRegistryEncodeLayer {
    /// Encodes nothing yet: add topics.
    pub fn new(registry: Arc<SchemaRegistry>) -> Self {
        JsonSchemaRegistryEncodeLayer {
            registry,
            topics: HashMap::new(),
        }
    }

    /// Writes `topic`'s records with a version of `subject` (looked up once
    /// per service; [`SchemaVersion::Latest`] is also looked up once, when
    /// the first record is sent). Never registers.
    pub fn topic(
        mut self,
        topic: impl Into<String>,
        subject: impl Into<String>,
        version: SchemaVersion,
    ) -> Self {
        self.topics
            .insert(topic.into(), Writer::Version(subject.into(), version));
        self
    }

    /// Writes `topic`'s records with `schema`, registered under `subject`
    /// on first use (Confluent's `auto.register.schemas=true`).
    pub fn topic_registering(
        mut self,
        topic: impl Into<String>,
        subject: impl Into<String>,
        schema: &Value,
    ) -> Self {
        self.topics.insert(
            topic.into(),
            Writer::Register(subject.into(), Arc::new(schema.to_string())),
        );
        self
    }
}

impl fmt::Debug for JsonSchemaRegistryEncodeLayer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("JsonSchemaRegistryEncodeLayer")
            .field("topics", &self.topics.keys().collect::<HashSet<_>>())
            .finish_non_exhaustive()
    }
}

impl<S> Layer<S> for JsonSchemaRegistryEncodeLayer {
    type Service = JsonSchemaRegistryEncode<S>;

    fn layer(&self, inner: S) -> JsonSchemaRegistryEncode<S> {
        JsonSchemaRegistryEncode {
            inner,
            config: Arc::new(EncodeConfig {
                validators: Validators::new(self.registry.clone()),
                topics: self.topics.clone(),
                resolved: RwLock::new(HashMap::new()),
            }),
        }
    }
}

/// Validates and frames JSON record values before the inner service (a
/// producer) sends them.
#[derive(Clone)]
pub struct JsonSchemaRegistryEncode<S> {
    inner: S,
    config: Arc<EncodeConfig>,
}

impl<S: fmt::Debug> fmt::Debug for JsonSchemaRegistryEncode<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("JsonSchemaRegistryEncode")
            .field("inner", &self.inner)
            .finish_non_exhaustive()
    }
}

impl<S> Service<Record> for JsonSchemaRegistryEncode<S>
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
        if let Some((id, validator)) = self.config.resolved(record.topic()) {
            return match encode_record(&mut record, id, &validator) {
                Ok(()) => ResponseFuture::inner(self.inner.call(record)),
                Err(error) => ResponseFuture::rejected(error),
            };
        }
        let clone = self.inner.clone();
        let inner = std::mem::replace(&mut self.inner, clone);
        let config = self.config.clone();
        let writer = writer.clone();
        ResponseFuture::deferred(Box::pin(async move {
            let (id, validator) = config.resolve(record.topic(), &writer).await?;
            encode_record(&mut record, id, &validator)?;
            inner.oneshot(record).await.map_err(Into::into)
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::layers::registry::RegisteredSchema;
    use crate::testkit::{self, Accept};

    fn assert_send_sync<T: Send + Sync>() {}

    #[test]
    fn types_are_send_sync() {
        assert_send_sync::<JsonSchemaRegistryLayer>();
        assert_send_sync::<JsonSchemaRegistry<Accept>>();
        assert_send_sync::<JsonSchemaRegistryEncodeLayer>();
        assert_send_sync::<JsonSchemaRegistryEncode<Accept>>();
        assert_send_sync::<JsonSchemaRecord>();
    }

    #[tokio::test]
    async fn a_schema_of_another_type_is_poison() {
        let registry = Arc::new(SchemaRegistry::new("http://127.0.0.1:9"));
        registry.insert_schema(RegisteredSchema::new(3, SchemaType::Avro, "\"string\""));
        let mut service = JsonSchemaRegistryLayer::new(registry)
            .topic("t")
            .layer(Accept);
        let record = testkit::record("t").value(encode(3, &Value::Null)).build();
        let err = testkit::call(&mut service, record).await.unwrap_err();
        let typed = err.downcast_ref::<JsonSchemaRegistryError>().unwrap();
        assert_eq!(typed.json_kind(), JsonSchemaRegistryErrorKind::WrongType);
        assert_eq!(
            crate::error::classify(err.as_ref()),
            ErrorKind::Deserialization
        );
    }

    #[tokio::test]
    async fn an_invalid_schema_is_not_registered() {
        // Nothing listens: a schema sent would fail as `Registry`.
        let registry = Arc::new(SchemaRegistry::new("http://127.0.0.1:9"));
        let mut service = JsonSchemaRegistryEncodeLayer::new(registry)
            .topic_registering("t", "t-value", &serde_json::json!({"type": 12}))
            .layer(Accept);
        let err = testkit::call(&mut service, testkit::record("t").value("{}").build())
            .await
            .unwrap_err();
        let typed = err.downcast_ref::<JsonSchemaRegistryError>().unwrap();
        assert_eq!(typed.json_kind(), JsonSchemaRegistryErrorKind::Schema);
        assert_eq!(crate::error::classify(err.as_ref()), ErrorKind::Config);
    }

    #[tokio::test]
    async fn tombstones_and_other_topics_pass() {
        let registry = Arc::new(SchemaRegistry::new("http://127.0.0.1:9"));
        let mut service = JsonSchemaRegistryLayer::new(registry)
            .topic("t")
            .layer(Accept);
        testkit::call(&mut service, testkit::record("t").build())
            .await
            .unwrap();
        testkit::call(
            &mut service,
            testkit::record("other").value("not framed").build(),
        )
        .await
        .unwrap();
    }
}
