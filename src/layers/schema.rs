//! JSON-schema validation of record values, per topic.
//!
//! [`JsonSchemaLayer`] validates the value of every record whose topic has a
//! schema, in consumer chains (before the handler) and in producer chains
//! (before sending). Schemas come from values or files and are compiled once.
//!
//! - A value that is not UTF-8 or not JSON fails with a
//!   [`DecodeError`] (kind `deserialization`).
//! - A value that violates the schema fails with a [`SchemaError`] (kind
//!   `invalid`) listing **every** violation with its JSON pointer. Messages
//!   mask the offending values (`value is not of type "number"`), so record
//!   data does not leak into logs or dead-letter headers.
//! - A valid value is parsed once: the handler finds it as [`ParsedJson`] in
//!   the record's extensions.
//! - Records of topics without a schema, and tombstones (null values), pass
//!   through untouched.
//!
//! ```
//! use light_kafka::error::{classify, ErrorKind};
//! use light_kafka::layers::schema::{JsonSchemaLayer, ParsedJson, SchemaError};
//! use light_kafka::record::Record;
//! use light_kafka::testkit;
//! use serde_json::json;
//! use tower::{service_fn, ServiceBuilder};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), light_kafka::BoxError> {
//! let schema = json!({
//!     "type": "object",
//!     "required": ["id", "total"],
//!     "properties": { "id": { "type": "integer" }, "total": { "type": "number", "minimum": 0 } }
//! });
//! let mut handler = ServiceBuilder::new()
//!     .layer(JsonSchemaLayer::new().with_schema("orders", &schema)?)
//!     .service(service_fn(|record: Record| async move {
//!         let order = record.extensions().get::<ParsedJson>().unwrap();
//!         Ok::<_, light_kafka::BoxError>(order["total"].as_f64())
//!     }));
//!
//! let good = Record::builder("orders").value(r#"{"id": 1, "total": 9.5}"#).build();
//! assert_eq!(testkit::call(&mut handler, good).await?, Some(9.5));
//!
//! let bad = Record::builder("orders").value(r#"{"id": "one", "total": -1}"#).build();
//! let err = testkit::call(&mut handler, bad).await.unwrap_err();
//! assert_eq!(classify(err.as_ref()), ErrorKind::Invalid);
//! let violations = err.downcast_ref::<SchemaError>().unwrap().violations();
//! assert_eq!(violations.len(), 2);
//! assert_eq!(violations[0].pointer(), "/id");
//! # Ok(()) }
//! ```

use std::collections::HashMap;
use std::fmt;
use std::ops::Deref;
use std::path::Path;
use std::sync::Arc;
use std::task::{Context, Poll};

use jsonschema::Validator;
use serde_json::Value;
use tower_layer::Layer;
use tower_service::Service;

use crate::error::{BoxError, ErrorKind, Kinded};
use crate::record::{DecodeError, DecodeErrorReason, Record};

pub use crate::layers::future::ResponseFuture;

/// The record value, parsed and validated, in the record's extensions.
#[derive(Clone, Debug, PartialEq)]
pub struct ParsedJson(Arc<Value>);

impl ParsedJson {
    /// The parsed value.
    pub fn value(&self) -> &Value {
        &self.0
    }
}

impl Deref for ParsedJson {
    type Target = Value;

    fn deref(&self) -> &Value {
        &self.0
    }
}

/// One schema violation.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Violation {
    pointer: String,
    message: String,
}

impl Violation {
    /// JSON pointer to the offending part of the value (`""` for the root).
    pub fn pointer(&self) -> &str {
        &self.pointer
    }

    /// What is wrong, with the value itself masked.
    pub fn message(&self) -> &str {
        &self.message
    }
}

/// A value that violates its topic's schema: kind [`ErrorKind::Invalid`].
#[derive(Clone, Debug)]
pub struct SchemaError {
    topic: String,
    violations: Vec<Violation>,
}

impl SchemaError {
    /// Every violation, in the order the validator found them.
    pub fn violations(&self) -> &[Violation] {
        &self.violations
    }

    /// The topic whose schema was violated.
    pub fn topic(&self) -> &str {
        &self.topic
    }
}

impl fmt::Display for SchemaError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "the value violates the schema of topic {}:", self.topic)?;
        for (i, v) in self.violations.iter().enumerate() {
            let sep = if i == 0 { " " } else { "; " };
            let pointer = if v.pointer.is_empty() {
                "/"
            } else {
                &v.pointer
            };
            write!(f, "{sep}{pointer}: {}", v.message)?;
        }
        Ok(())
    }
}

impl std::error::Error for SchemaError {}

impl Kinded for SchemaError {
    fn kind(&self) -> ErrorKind {
        ErrorKind::Invalid
    }
}

/// A schema that could not be loaded or compiled: kind [`ErrorKind::Config`].
#[derive(Debug)]
pub struct SchemaConfigError {
    message: String,
}

impl fmt::Display for SchemaConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for SchemaConfigError {}

impl Kinded for SchemaConfigError {
    fn kind(&self) -> ErrorKind {
        ErrorKind::Config
    }
}

/// Layer that applies [`JsonSchema`]. See the [module documentation](self).
#[derive(Clone, Default)]
pub struct JsonSchemaLayer {
    schemas: Arc<HashMap<String, Arc<Validator>>>,
}

impl JsonSchemaLayer {
    /// No schemas yet.
    pub fn new() -> Self {
        JsonSchemaLayer::default()
    }

    /// Validates the values of `topic` against `schema` (compiled now).
    ///
    /// # Errors
    ///
    /// A [`SchemaConfigError`] when `schema` is not a valid JSON schema.
    pub fn with_schema(
        mut self,
        topic: impl Into<String>,
        schema: &Value,
    ) -> Result<Self, SchemaConfigError> {
        let topic = topic.into();
        let validator = jsonschema::validator_for(schema).map_err(|e| SchemaConfigError {
            message: format!("invalid JSON schema for topic {topic}: {e}"),
        })?;
        Arc::make_mut(&mut self.schemas).insert(topic, Arc::new(validator));
        Ok(self)
    }

    /// Validates the values of `topic` against the schema in the file at `path`.
    ///
    /// # Errors
    ///
    /// A [`SchemaConfigError`] when the file cannot be read, is not JSON, or is
    /// not a valid JSON schema.
    pub fn with_schema_file(
        self,
        topic: impl Into<String>,
        path: impl AsRef<Path>,
    ) -> Result<Self, SchemaConfigError> {
        let path = path.as_ref();
        let text = std::fs::read_to_string(path).map_err(|e| SchemaConfigError {
            message: format!("cannot read {}: {e}", path.display()),
        })?;
        let schema: Value = serde_json::from_str(&text).map_err(|e| SchemaConfigError {
            message: format!("{} is not JSON: {e}", path.display()),
        })?;
        self.with_schema(topic, &schema)
    }

    /// The topics with a schema.
    pub fn topics(&self) -> impl Iterator<Item = &str> {
        self.schemas.keys().map(String::as_str)
    }
}

impl fmt::Debug for JsonSchemaLayer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("JsonSchemaLayer")
            .field("topics", &self.schemas.keys().collect::<Vec<_>>())
            .finish()
    }
}

impl<S> Layer<S> for JsonSchemaLayer {
    type Service = JsonSchema<S>;

    fn layer(&self, inner: S) -> JsonSchema<S> {
        JsonSchema {
            inner,
            schemas: self.schemas.clone(),
        }
    }
}

/// Validates record values before the inner service sees them.
#[derive(Clone)]
pub struct JsonSchema<S> {
    inner: S,
    schemas: Arc<HashMap<String, Arc<Validator>>>,
}

impl<S: fmt::Debug> fmt::Debug for JsonSchema<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("JsonSchema")
            .field("inner", &self.inner)
            .finish_non_exhaustive()
    }
}

impl<S> JsonSchema<S> {
    /// The inner service.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    /// Unwraps the inner service.
    pub fn into_inner(self) -> S {
        self.inner
    }
}

impl ParsedJson {
    pub(crate) fn new(value: Arc<Value>) -> Self {
        ParsedJson(value)
    }
}

/// Every violation of `validator` by `value`, as an error naming `topic`;
/// `None` when the value is valid.
pub(crate) fn violations(topic: &str, validator: &Validator, value: &Value) -> Option<SchemaError> {
    if validator.is_valid(value) {
        return None;
    }
    Some(SchemaError {
        topic: topic.to_owned(),
        violations: validator
            .iter_errors(value)
            .map(|e| Violation {
                pointer: e.instance_path().as_str().to_owned(),
                message: e.masked().to_string(),
            })
            .collect(),
    })
}

/// Parses and validates `record`'s value against `validator`.
fn check(record: &Record, validator: &Validator) -> Result<Value, BoxError> {
    let Some(bytes) = record.value() else {
        return Ok(Value::Null);
    };
    let text =
        std::str::from_utf8(bytes).map_err(|e| DecodeError::new(DecodeErrorReason::NotUtf8, e))?;
    let value: Value =
        serde_json::from_str(text).map_err(|e| DecodeError::new(DecodeErrorReason::NotJson, e))?;
    match violations(record.topic(), validator, &value) {
        None => Ok(value),
        Some(error) => Err(error.into()),
    }
}

impl<S> Service<Record> for JsonSchema<S>
where
    S: Service<Record>,
    S::Error: Into<BoxError>,
{
    type Response = S::Response;
    type Error = BoxError;
    type Future = ResponseFuture<S::Future, S::Response>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, mut record: Record) -> Self::Future {
        let Some(validator) = self.schemas.get(record.topic()) else {
            return ResponseFuture::inner(self.inner.call(record));
        };
        if record.is_tombstone() {
            return ResponseFuture::inner(self.inner.call(record));
        }
        match check(&record, validator) {
            Ok(value) => {
                record.extensions_mut().insert(ParsedJson(Arc::new(value)));
                ResponseFuture::inner(self.inner.call(record))
            }
            Err(error) => ResponseFuture::rejected(error),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::classify;
    use crate::testkit::{self, Accept};
    use serde_json::json;

    fn layer() -> JsonSchemaLayer {
        JsonSchemaLayer::new()
            .with_schema("orders", &json!({"type": "object", "required": ["id"], "properties": {"id": {"type": "integer"}}}))
            .unwrap()
    }

    fn assert_send_sync<T: Send + Sync>() {}

    #[test]
    fn types_are_send_sync() {
        assert_send_sync::<JsonSchemaLayer>();
        assert_send_sync::<JsonSchema<Accept>>();
    }

    #[tokio::test]
    async fn undecodable_values_are_deserialization_errors() {
        let mut svc = layer().layer(Accept);
        for value in [vec![0xff, 0xfe], b"{not json".to_vec()] {
            let record = testkit::record("orders").value(value).build();
            let err = testkit::call(&mut svc, record).await.unwrap_err();
            assert_eq!(classify(err.as_ref()), ErrorKind::Deserialization);
        }
    }

    #[tokio::test]
    async fn other_topics_and_tombstones_pass_untouched() {
        let mut svc = layer().layer(Accept);
        assert!(
            testkit::call(
                &mut svc,
                testkit::record("other").value("{not json").build()
            )
            .await
            .is_ok()
        );
        assert!(
            testkit::call(&mut svc, testkit::record("orders").build())
                .await
                .is_ok()
        );
    }

    #[tokio::test]
    async fn every_violation_is_listed_and_values_are_masked() {
        let layer = JsonSchemaLayer::new()
            .with_schema(
                "orders",
                &json!({
                    "type": "object",
                    "required": ["id", "email"],
                    "properties": {"id": {"type": "integer"}, "total": {"type": "number", "maximum": 10}}
                }),
            )
            .unwrap();
        let mut svc = layer.layer(Accept);
        let record = testkit::record("orders")
            .value(r#"{"id": "secret-id", "total": 99}"#)
            .build();
        let err = testkit::call(&mut svc, record).await.unwrap_err();
        let schema_error = err.downcast_ref::<SchemaError>().unwrap();
        let pointers: Vec<_> = schema_error
            .violations()
            .iter()
            .map(Violation::pointer)
            .collect();
        assert_eq!(schema_error.violations().len(), 3, "{schema_error}");
        assert!(
            pointers.contains(&"/id") && pointers.contains(&"/total") && pointers.contains(&"")
        );
        assert!(!err.to_string().contains("secret-id"), "{err}");
    }

    #[test]
    fn bad_schemas_are_config_errors() {
        assert!(
            JsonSchemaLayer::new()
                .with_schema("t", &json!({"type": 12}))
                .is_err()
        );
        assert!(
            JsonSchemaLayer::new()
                .with_schema_file("t", "/nonexistent.json")
                .is_err()
        );
    }
}
