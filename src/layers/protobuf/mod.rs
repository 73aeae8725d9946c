//! Protobuf in Confluent's wire format, with a schema registry (feature
//! `protobuf`).
//!
//! Confluent's `KafkaProtobufSerializer` writes a value as magic byte `0`,
//! the schema id (4 bytes, big-endian), the message-index array that picks
//! the message type in the schema's `.proto` file (see [`wire`]), then the
//! Protobuf binary encoding. kafka-sidecar's `PROTOBUF` format is this one.
//!
//! - [`ProtobufDecodeLayer`] (consume side) reads the id, fetches that
//!   schema (and the schemas it imports, listed as registry references)
//!   once, compiles the `.proto` text into descriptors once (cached per id),
//!   finds the message by its index path and decodes the body into a
//!   [`DynamicMessage`]. The handler finds it as a [`ProtobufRecord`] in the
//!   record's extensions, with [`ProtobufRecord::to_json`] for the
//!   Protobuf JSON mapping.
//! - [`ProtobufEncodeLayer`] (produce side) encodes each record of its
//!   topics: a [`ProtobufValue`] extension, or else the record's JSON value
//!   read with the Protobuf JSON mapping, is written as a message of a
//!   subject's schema and framed with its id and index path. It looks the
//!   subject up and never registers, unless the topic is added with
//!   [`topic_registering`](ProtobufEncodeLayer::topic_registering).
//! - [`encode`] frames a message by hand.
//!
//! Errors are a [`ProtobufError`]: a value that is not framed, an id the
//! registry does not know (404), an index path that names no message, or a
//! body that does not decode are kind `deserialization` (poison: the
//! dead-letter layer dead-letters them); a value to produce that does not
//! fit its message is kind `invalid`; a registry that is down, times out or
//! answers 5xx is kind `transient` (an outage: retried, never
//! dead-lettered); a schema that does not compile is kind `config`.
//!
//! # Which Protobuf crate
//!
//! The registry hands out `.proto` source text, so the layers need a
//! `.proto` compiler at run time and dynamic messages; generated code
//! cannot know schemas that appear later. Two pure-Rust choices exist:
//!
//! - **`prost-reflect` + `protox`** (chosen). `protox` compiles `.proto`
//!   text into a `prost-reflect` `DescriptorPool` (imports through a
//!   resolver, Google's well-known types built in); `prost-reflect`'s
//!   `DynamicMessage` decodes and encodes against it and implements the
//!   canonical Protobuf JSON mapping with serde (the mapping kafka-sidecar
//!   and Confluent's `ProtobufSchemaUtils.toJson` use). Both are maintained
//!   together, sit on `prost` (already in this crate's tree through
//!   OpenTelemetry's exporter), and `prost` is what most Rust services
//!   generate their own types with, so a `DynamicMessage` can be turned into
//!   a generated type with `transcode_to`.
//! - **`protobuf` (rust-protobuf v3) + `protobuf-parse`**. It has dynamic
//!   messages and a pure-Rust parser too, but its pure parser is documented
//!   as less complete than `protoc`, its JSON mapping lives in another
//!   module with its own options, and it would bring a second Protobuf
//!   runtime next to `prost` into the tree. Its maintenance has slowed
//!   (the 4.x line moved to the upstream C++-backed runtime).
//!
//! ```
//! use std::sync::Arc;
//! use light_kafka::layers::protobuf::{ProtobufDecodeLayer, ProtobufRecord};
//! use light_kafka::layers::registry::{RegisteredSchema, SchemaRegistry, SchemaType};
//! use light_kafka::record::Record;
//! use light_kafka::testkit;
//! use tower::{service_fn, Layer};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), light_kafka::BoxError> {
//! let registry = Arc::new(SchemaRegistry::new("http://registry:8081"));
//! // Known without asking the registry (as if fetched before): id 5.
//! registry.insert_schema(RegisteredSchema::new(
//!     5,
//!     SchemaType::Protobuf,
//!     r#"syntax = "proto3"; package shop; message Order { int64 id = 1; string item = 2; }"#,
//! ));
//! let mut handler = ProtobufDecodeLayer::new(registry).topic("orders").layer(service_fn(
//!     |record: Record| async move {
//!         let order = record.extensions().get::<ProtobufRecord>().unwrap();
//!         Ok::<_, light_kafka::BoxError>(order.to_json()?)
//!     },
//! ));
//!
//! // As Confluent's serializer writes it: magic 0, id 5, index array [0]
//! // as one 0 byte, then field 1 = 42 (08 2a) and field 2 = "tea" (12 03 ...).
//! let bytes = vec![0, 0, 0, 0, 5, 0, 0x08, 0x2a, 0x12, 3, b't', b'e', b'a'];
//! let record = Record::builder("orders").value(bytes).build();
//! let json = testkit::call(&mut handler, record).await?;
//! assert_eq!(json, serde_json::json!({"id": "42", "item": "tea"}));
//! # Ok(()) }
//! ```

mod error;
pub mod wire;

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::sync::{Arc, RwLock};
use std::task::{Context, Poll};

use bytes::Bytes;
use prost::Message as _;
use prost_reflect::ReflectMessage as _;
use tower::ServiceExt;
use tower_layer::Layer;
use tower_service::Service;

pub use crate::layers::future::ResponseFuture;
pub use crate::layers::registry::{SchemaRegistry, SchemaVersion};
pub use error::{ProtobufError, ProtobufErrorKind};
/// Re-exported from `prost-reflect`, so that callers never pin a second copy.
pub use prost_reflect::{self, DynamicMessage, FileDescriptor, MessageDescriptor};

use crate::error::BoxError;
use crate::layers::registry::{RegisteredSchema, SchemaType};
use crate::record::Record;

/// A decoded Protobuf message, in the record's extensions.
#[derive(Clone, Debug, PartialEq)]
pub struct ProtobufRecord {
    schema_id: u32,
    message: Arc<DynamicMessage>,
}

impl ProtobufRecord {
    /// The writer schema's registry id.
    pub fn schema_id(&self) -> u32 {
        self.schema_id
    }

    /// The decoded message.
    pub fn message(&self) -> &DynamicMessage {
        &self.message
    }

    /// The message's type.
    pub fn descriptor(&self) -> MessageDescriptor {
        self.message.descriptor()
    }

    /// The message in the canonical Protobuf JSON mapping (field names in
    /// lowerCamelCase, 64-bit integers as strings, default values left out).
    ///
    /// # Errors
    ///
    /// A [`ProtobufError`] of kind `Decode` for messages JSON cannot
    /// represent (e.g. non-finite floats).
    pub fn to_json(&self) -> Result<serde_json::Value, ProtobufError> {
        serde_json::to_value(&*self.message).map_err(|e| {
            ProtobufError::with_source(
                ProtobufErrorKind::Decode,
                "no JSON form for the Protobuf message",
                e,
            )
        })
    }
}

/// A Protobuf message to produce, in a record's extensions (instead of a
/// JSON value).
#[derive(Clone, Debug, PartialEq)]
pub struct ProtobufValue(pub DynamicMessage);

/// The message-index path of `message` in its file (see [`wire`]).
///
/// ```
/// use light_kafka::layers::protobuf::{compile, path_of};
/// let file = compile("a.proto", "syntax = \"proto3\"; message A {} message B { message C {} }")?;
/// let c = file.parent_pool().get_message_by_name("B.C").unwrap();
/// assert_eq!(path_of(&c), vec![1, 0]);
/// # Ok::<(), light_kafka::layers::protobuf::ProtobufError>(())
/// ```
pub fn path_of(message: &MessageDescriptor) -> Vec<usize> {
    let mut path = Vec::new();
    let mut current = message.clone();
    loop {
        let name = current.full_name().to_owned();
        match current.parent_message() {
            Some(parent) => {
                path.push(
                    parent
                        .child_messages()
                        .position(|m| m.full_name() == name)
                        .unwrap_or(0),
                );
                current = parent;
            }
            None => {
                path.push(
                    current
                        .parent_file()
                        .messages()
                        .position(|m| m.full_name() == name)
                        .unwrap_or(0),
                );
                break;
            }
        }
    }
    path.reverse();
    path
}

/// The message at `path` in `file`.
fn message_at(file: &FileDescriptor, path: &[usize]) -> Result<MessageDescriptor, ProtobufError> {
    let unknown = || {
        ProtobufError::new(
            ProtobufErrorKind::UnknownMessage,
            format!("no message at index path {path:?} of {}", file.name()),
        )
    };
    let (first, rest) = path.split_first().ok_or_else(unknown)?;
    let mut message = file.messages().nth(*first).ok_or_else(unknown)?;
    for &index in rest {
        let child = message.child_messages().nth(index);
        message = child.ok_or_else(unknown)?;
    }
    Ok(message)
}

/// Resolves imports from the registry's references, then Google's
/// well-known types.
struct Sources(HashMap<String, String>);

impl protox::file::FileResolver for Sources {
    fn open_file(&self, name: &str) -> Result<protox::file::File, protox::Error> {
        match self.0.get(name) {
            Some(source) => protox::file::File::from_source(name, source),
            None => protox::file::GoogleFileResolver::new().open_file(name),
        }
    }
}

/// Compiles `.proto` source text named `name` (imports of Google's
/// well-known types only) into its file descriptor.
///
/// # Errors
///
/// A [`ProtobufError`] of kind `Schema` when the text does not compile.
pub fn compile(name: &str, source: &str) -> Result<FileDescriptor, ProtobufError> {
    compile_with(name, source, HashMap::new())
}

fn compile_with(
    name: &str,
    source: &str,
    mut imports: HashMap<String, String>,
) -> Result<FileDescriptor, ProtobufError> {
    imports.insert(name.to_owned(), source.to_owned());
    let mut compiler = protox::Compiler::with_file_resolver(Sources(imports));
    let schema_error = |e: protox::Error| {
        ProtobufError::new(
            ProtobufErrorKind::Schema,
            format!("the .proto schema {name} does not compile: {e}"),
        )
    };
    compiler.open_file(name).map_err(schema_error)?;
    compiler
        .descriptor_pool()
        .get_file_by_name(name)
        .ok_or_else(|| {
            ProtobufError::new(
                ProtobufErrorKind::Schema,
                format!("{name} is missing from its own descriptors"),
            )
        })
}

/// Frames `message` in the wire format with schema `id`, finding its index
/// path from its descriptor.
///
/// ```
/// use light_kafka::layers::protobuf::{compile, encode, DynamicMessage};
/// let file = compile("n.proto", "syntax = \"proto3\"; message N { int32 n = 1; }")?;
/// let mut message = DynamicMessage::new(file.messages().next().unwrap());
/// use light_kafka::layers::protobuf::prost_reflect::Value;
/// message.set_field_by_name("n", Value::I32(42));
/// assert_eq!(&encode(3, &message)[..], &[0, 0, 0, 0, 3, 0, 0x08, 0x2a]);
/// # Ok::<(), light_kafka::layers::protobuf::ProtobufError>(())
/// ```
pub fn encode(id: u32, message: &DynamicMessage) -> Bytes {
    wire::frame(
        id,
        &path_of(&message.descriptor()),
        &message.encode_to_vec(),
    )
}

/// Compiled schemas by id, shared by a layer's clones.
struct Schemas {
    registry: Arc<SchemaRegistry>,
    by_id: RwLock<HashMap<u32, FileDescriptor>>,
}

impl Schemas {
    fn new(registry: Arc<SchemaRegistry>) -> Self {
        Schemas {
            registry,
            by_id: RwLock::new(HashMap::new()),
        }
    }

    fn cached(&self, id: u32) -> Option<FileDescriptor> {
        self.by_id
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(&id)
            .cloned()
    }

    /// Compiles `registered` with the schemas it references, once per id.
    async fn compile(
        &self,
        registered: &RegisteredSchema,
    ) -> Result<FileDescriptor, ProtobufError> {
        let id = registered.id();
        if let Some(file) = self.cached(id) {
            return Ok(file);
        }
        if registered.schema_type() != SchemaType::Protobuf {
            return Err(ProtobufError::new(
                ProtobufErrorKind::WrongType,
                format!(
                    "schema id {id} is a {} schema, not Protobuf",
                    registered.schema_type()
                ),
            ));
        }
        let imports = self
            .registry
            .references(registered)
            .await?
            .into_iter()
            .map(|(name, schema)| (name, schema.text().to_owned()))
            .collect();
        let file = compile_with(
            &format!("registry-schema-{id}.proto"),
            registered.text(),
            imports,
        )?;
        self.by_id
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .insert(id, file.clone());
        Ok(file)
    }

    /// The compiled schema `id`, fetched and compiled when not cached.
    async fn fetch(&self, id: u32) -> Result<FileDescriptor, ProtobufError> {
        if let Some(file) = self.cached(id) {
            return Ok(file);
        }
        let registered = self.registry.schema_by_id(id).await?;
        self.compile(&registered).await
    }
}

fn decode_body(
    id: u32,
    file: &FileDescriptor,
    path: &[usize],
    body: &[u8],
) -> Result<ProtobufRecord, ProtobufError> {
    let descriptor = message_at(file, path)?;
    let message = DynamicMessage::decode(descriptor, body).map_err(|e| {
        ProtobufError::with_source(
            ProtobufErrorKind::Decode,
            format!("the value framed with schema id {id} does not decode"),
            e,
        )
    })?;
    Ok(ProtobufRecord {
        schema_id: id,
        message: Arc::new(message),
    })
}

// ---- decoding ------------------------------------------------------------------

/// Layer that applies [`ProtobufDecode`]. See the [module documentation](self).
#[derive(Clone)]
pub struct ProtobufDecodeLayer {
    schemas: Arc<Schemas>,
    topics: Arc<HashSet<String>>,
}

impl ProtobufDecodeLayer {
    /// Decodes nothing yet: add topics.
    pub fn new(registry: Arc<SchemaRegistry>) -> Self {
        ProtobufDecodeLayer {
            schemas: Arc::new(Schemas::new(registry)),
            topics: Arc::new(HashSet::new()),
        }
    }

    /// Decodes `topic`'s values with the schemas their ids name.
    pub fn topic(mut self, topic: impl Into<String>) -> Self {
        Arc::make_mut(&mut self.topics).insert(topic.into());
        self
    }
}

impl fmt::Debug for ProtobufDecodeLayer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ProtobufDecodeLayer")
            .field("topics", &self.topics)
            .finish_non_exhaustive()
    }
}

impl<S> Layer<S> for ProtobufDecodeLayer {
    type Service = ProtobufDecode<S>;

    fn layer(&self, inner: S) -> ProtobufDecode<S> {
        ProtobufDecode {
            inner,
            schemas: self.schemas.clone(),
            topics: self.topics.clone(),
        }
    }
}

/// Decodes Protobuf record values before the inner service sees them.
#[derive(Clone)]
pub struct ProtobufDecode<S> {
    inner: S,
    schemas: Arc<Schemas>,
    topics: Arc<HashSet<String>>,
}

impl<S: fmt::Debug> fmt::Debug for ProtobufDecode<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ProtobufDecode")
            .field("inner", &self.inner)
            .finish_non_exhaustive()
    }
}

impl<S> ProtobufDecode<S> {
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

impl<S> Service<Record> for ProtobufDecode<S>
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
        let (id, path, body) = match wire::split(&bytes) {
            Ok(split) => split,
            Err(error) => return ResponseFuture::rejected(error),
        };
        if let Some(file) = self.schemas.cached(id) {
            return match decode_body(id, &file, &path, body) {
                Ok(decoded) => {
                    record.extensions_mut().insert(decoded);
                    ResponseFuture::inner(self.inner.call(record))
                }
                Err(error) => ResponseFuture::rejected(error),
            };
        }
        let clone = self.inner.clone();
        let inner = std::mem::replace(&mut self.inner, clone);
        let schemas = self.schemas.clone();
        ResponseFuture::deferred(Box::pin(async move {
            let file = schemas.fetch(id).await?;
            let (_, path, body) = wire::split(&bytes)?;
            let decoded = decode_body(id, &file, &path, body)?;
            record.extensions_mut().insert(decoded);
            inner.oneshot(record).await.map_err(Into::into)
        }))
    }
}

// ---- encoding ------------------------------------------------------------------

/// Where the produce side's schema comes from.
#[derive(Clone, Debug)]
enum Source {
    /// A registered subject version (looked up, never registered).
    Version(SchemaVersion),
    /// `.proto` text to register under the subject (or find registered).
    Register(Arc<String>),
}

/// How the produce side finds a topic's schema and message.
#[derive(Clone, Debug)]
struct Writer {
    subject: String,
    source: Source,
    /// The message's full name; `None` for the file's first message.
    message: Option<String>,
}

/// A topic's schema id, message type and index path.
type Resolved = (u32, MessageDescriptor, Arc<[usize]>);

struct EncodeConfig {
    schemas: Schemas,
    topics: HashMap<String, Writer>,
    resolved: RwLock<HashMap<String, Resolved>>,
}

impl EncodeConfig {
    fn resolved(&self, topic: &str) -> Option<Resolved> {
        self.resolved
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(topic)
            .cloned()
    }

    async fn resolve(&self, topic: &str, writer: &Writer) -> Result<Resolved, ProtobufError> {
        let registry = &self.schemas.registry;
        let registered = match &writer.source {
            Source::Version(version) => registry.subject_version(&writer.subject, *version).await?,
            Source::Register(text) => {
                // Compile first: a schema that does not compile is not sent.
                compile("registering.proto", text)?;
                let id = registry
                    .register_schema(&writer.subject, SchemaType::Protobuf, text, &[])
                    .await?;
                match registry.cached_schema(id) {
                    Some(schema) => schema,
                    None => registry.schema_by_id(id).await?,
                }
            }
        };
        let file = self.schemas.compile(&registered).await?;
        let message = match &writer.message {
            None => file.messages().next(),
            Some(name) => file.parent_pool().get_message_by_name(name),
        }
        .ok_or_else(|| {
            ProtobufError::new(
                ProtobufErrorKind::Schema,
                format!(
                    "schema id {} of subject {} has no message {}",
                    registered.id(),
                    writer.subject,
                    writer.message.as_deref().unwrap_or("at all")
                ),
            )
        })?;
        let path: Arc<[usize]> = path_of(&message).into();
        let found = (registered.id(), message, path);
        self.resolved
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .insert(topic.to_owned(), found.clone());
        Ok(found)
    }
}

/// Encodes `record`'s Protobuf value (extension) or JSON value as `message`.
fn encode_record(
    record: &mut Record,
    (id, descriptor, path): &Resolved,
) -> Result<(), ProtobufError> {
    let body = match record.extensions().get::<ProtobufValue>() {
        Some(ProtobufValue(message)) => {
            // By name: the message may come from another compilation of the
            // schema (a decode layer's), whose descriptors are not the same
            // objects.
            if message.descriptor().full_name() != descriptor.full_name() {
                return Err(ProtobufError::new(
                    ProtobufErrorKind::Encode,
                    format!(
                        "the message is a {}, the topic's schema writes {}",
                        message.descriptor().full_name(),
                        descriptor.full_name()
                    ),
                ));
            }
            message.encode_to_vec()
        }
        None => {
            let Some(bytes) = record.value() else {
                return Ok(());
            };
            let mut json = serde_json::Deserializer::from_slice(bytes);
            let message = DynamicMessage::deserialize(descriptor.clone(), &mut json)
                .and_then(|m| json.end().map(|()| m))
                .map_err(|e| {
                    ProtobufError::with_source(
                        ProtobufErrorKind::Encode,
                        format!("the record value is not a JSON {}", descriptor.full_name()),
                        e,
                    )
                })?;
            message.encode_to_vec()
        }
    };
    record.set_value(Some(wire::frame(*id, path, &body)));
    Ok(())
}

/// Layer that applies [`ProtobufEncode`]. See the [module documentation](self).
///
/// ```
/// use std::sync::Arc;
/// use light_kafka::layers::protobuf::ProtobufEncodeLayer;
/// use light_kafka::layers::registry::{SchemaRegistry, SchemaVersion, SubjectNameStrategy};
///
/// let registry = Arc::new(SchemaRegistry::new("http://registry:8081"));
/// let subject = SubjectNameStrategy::RecordName.subject("orders", "shop.Order", false);
/// let layer = ProtobufEncodeLayer::new(registry)
///     .topic_message("orders", subject, SchemaVersion::Latest, "shop.Order");
/// # let _ = layer;
/// ```
#[derive(Clone)]
pub struct ProtobufEncodeLayer {
    registry: Arc<SchemaRegistry>,
    topics: HashMap<String, Writer>,
}

impl ProtobufEncodeLayer {
    /// Encodes nothing yet: add topics.
    pub fn new(registry: Arc<SchemaRegistry>) -> Self {
        ProtobufEncodeLayer {
            registry,
            topics: HashMap::new(),
        }
    }

    /// Writes `topic`'s records as the first message of a version of
    /// `subject` (looked up on the first record). Never registers.
    pub fn topic(
        self,
        topic: impl Into<String>,
        subject: impl Into<String>,
        version: SchemaVersion,
    ) -> Self {
        self.insert(topic.into(), subject.into(), Source::Version(version), None)
    }

    /// Writes `topic`'s records as the message named `message` (full name,
    /// e.g. `shop.Order`, possibly nested: `shop.Order.Line`) of a version
    /// of `subject`. Never registers.
    pub fn topic_message(
        self,
        topic: impl Into<String>,
        subject: impl Into<String>,
        version: SchemaVersion,
        message: impl Into<String>,
    ) -> Self {
        self.insert(
            topic.into(),
            subject.into(),
            Source::Version(version),
            Some(message.into()),
        )
    }

    /// Writes `topic`'s records as the first message of `proto` (`.proto`
    /// source), registered under `subject` on first use (Confluent's
    /// `auto.register.schemas=true`).
    pub fn topic_registering(
        self,
        topic: impl Into<String>,
        subject: impl Into<String>,
        proto: impl Into<String>,
    ) -> Self {
        self.insert(
            topic.into(),
            subject.into(),
            Source::Register(Arc::new(proto.into())),
            None,
        )
    }

    fn insert(
        mut self,
        topic: String,
        subject: String,
        source: Source,
        message: Option<String>,
    ) -> Self {
        self.topics.insert(
            topic,
            Writer {
                subject,
                source,
                message,
            },
        );
        self
    }
}

impl fmt::Debug for ProtobufEncodeLayer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ProtobufEncodeLayer")
            .field("topics", &self.topics.keys().collect::<HashSet<_>>())
            .finish_non_exhaustive()
    }
}

impl<S> Layer<S> for ProtobufEncodeLayer {
    type Service = ProtobufEncode<S>;

    fn layer(&self, inner: S) -> ProtobufEncode<S> {
        ProtobufEncode {
            inner,
            config: Arc::new(EncodeConfig {
                schemas: Schemas::new(self.registry.clone()),
                topics: self.topics.clone(),
                resolved: RwLock::new(HashMap::new()),
            }),
        }
    }
}

/// Encodes record values as Protobuf before the inner service (a producer)
/// sends them.
#[derive(Clone)]
pub struct ProtobufEncode<S> {
    inner: S,
    config: Arc<EncodeConfig>,
}

impl<S: fmt::Debug> fmt::Debug for ProtobufEncode<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ProtobufEncode")
            .field("inner", &self.inner)
            .finish_non_exhaustive()
    }
}

impl<S> Service<Record> for ProtobufEncode<S>
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
        if let Some(resolved) = self.config.resolved(record.topic()) {
            return match encode_record(&mut record, &resolved) {
                Ok(()) => ResponseFuture::inner(self.inner.call(record)),
                Err(error) => ResponseFuture::rejected(error),
            };
        }
        let clone = self.inner.clone();
        let inner = std::mem::replace(&mut self.inner, clone);
        let config = self.config.clone();
        let writer = writer.clone();
        ResponseFuture::deferred(Box::pin(async move {
            let resolved = config.resolve(record.topic(), &writer).await?;
            encode_record(&mut record, &resolved)?;
            inner.oneshot(record).await.map_err(Into::into)
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::{ErrorKind, classify};
    use crate::testkit::{self, Accept};

    fn assert_send_sync<T: Send + Sync>() {}

    #[test]
    fn types_are_send_sync() {
        assert_send_sync::<ProtobufDecodeLayer>();
        assert_send_sync::<ProtobufDecode<Accept>>();
        assert_send_sync::<ProtobufEncodeLayer>();
        assert_send_sync::<ProtobufEncode<Accept>>();
        assert_send_sync::<ProtobufRecord>();
    }

    const NESTED: &str = r#"syntax = "proto3"; package p;
        message A { int32 a = 1; }
        message B { message C { string c = 1; } C inner = 1; }"#;

    #[tokio::test]
    async fn nested_messages_decode_by_path_and_bad_paths_are_poison() {
        let registry = Arc::new(SchemaRegistry::new("http://127.0.0.1:9"));
        registry.insert_schema(RegisteredSchema::new(4, SchemaType::Protobuf, NESTED));
        registry.insert_schema(RegisteredSchema::new(6, SchemaType::Json, "{}"));
        let mut service = ProtobufDecodeLayer::new(registry)
            .topic("t")
            .layer(tower::service_fn(|record: Record| async move {
                let decoded = record.extensions().get::<ProtobufRecord>().unwrap();
                Ok::<_, BoxError>(decoded.descriptor().full_name().to_owned())
            }));
        // B.C is [1, 0]: length 2 (zig-zag 4), 1 (zig-zag 2), 0; body c = "x".
        let bytes = vec![0, 0, 0, 0, 4, 4, 2, 0, 0x0a, 1, b'x'];
        let name = testkit::call(&mut service, testkit::record("t").value(bytes).build())
            .await
            .unwrap();
        assert_eq!(name, "p.B.C");

        for (bytes, kind) in [
            (vec![0, 0, 0, 0, 4, 2, 6], ProtobufErrorKind::UnknownMessage),
            (vec![0, 0, 0, 0, 4, 0, 0x08], ProtobufErrorKind::Decode),
            (vec![0, 0, 0, 0, 6, 0], ProtobufErrorKind::WrongType),
            (vec![2, 0, 0, 0, 4, 0], ProtobufErrorKind::Framing),
        ] {
            let err = testkit::call(&mut service, testkit::record("t").value(bytes).build())
                .await
                .unwrap_err();
            let typed = err.downcast_ref::<ProtobufError>().unwrap();
            assert_eq!(typed.protobuf_kind(), kind, "{typed}");
            assert_eq!(classify(err.as_ref()), ErrorKind::Deserialization);
        }
    }

    #[tokio::test]
    async fn a_schema_that_does_not_compile_is_not_registered() {
        // Nothing listens: a schema sent would fail as `Registry`.
        let registry = Arc::new(SchemaRegistry::new("http://127.0.0.1:9"));
        let mut service = ProtobufEncodeLayer::new(registry)
            .topic_registering("t", "t-value", "message {")
            .layer(Accept);
        let err = testkit::call(&mut service, testkit::record("t").value("{}").build())
            .await
            .unwrap_err();
        let typed = err.downcast_ref::<ProtobufError>().unwrap();
        assert_eq!(typed.protobuf_kind(), ProtobufErrorKind::Schema);
        assert_eq!(classify(err.as_ref()), ErrorKind::Config);
    }

    #[test]
    fn bad_proto_text_is_a_schema_error() {
        let err = compile("bad.proto", "message {").unwrap_err();
        assert_eq!(err.protobuf_kind(), ProtobufErrorKind::Schema);
    }
}
