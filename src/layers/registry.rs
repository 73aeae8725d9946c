//! A Confluent schema registry client shared by the Avro, JSON Schema and
//! Protobuf layers: schemas of every `schemaType`, cached by id and by
//! subject version, and the subject name strategies.
//!
//! The registry answers with a schema's text, its type (`AVRO` when the
//! field is absent, `JSON` or `PROTOBUF`) and its references. The client
//! keeps each answer: ids never change meaning, and neither does a numbered
//! version of a subject, so once a schema is known a record costs a map
//! lookup. Only [`SchemaVersion::Latest`] asks again each time.
//!
//! Nothing is registered unless asked: [`SchemaRegistry::register_schema`]
//! (and the encode layers' `*_registering` setters that call it) is the only
//! call that writes; by default producers look schemas up by subject, as
//! Confluent's serializers do with `auto.register.schemas=false`.
//!
//! Failures are typed as a [`RegistryError`]: an id or subject the registry
//! does not know (404) is kind [`RegistryErrorKind::UnknownSchema`]
//! (`deserialization`: a record naming it will never decode), a registry
//! that is down, times out, or answers 5xx is
//! [`RegistryErrorKind::Unavailable`] (`transient`: retried, never
//! dead-lettered). The format layers carry these kinds into their own error
//! types.
//!
//! ```
//! use light_kafka::layers::registry::{SchemaRegistry, SchemaType, SubjectNameStrategy};
//!
//! let registry = SchemaRegistry::new("http://registry:8081")
//!     .with_basic_auth("svc-orders", "s3cret");
//! assert!(registry.cached_schema(1).is_none());
//!
//! let strategy = SubjectNameStrategy::default();
//! assert_eq!(strategy.subject("orders", "shop.Order", false), "orders-value");
//! assert_eq!(
//!     SubjectNameStrategy::TopicRecordName.subject("orders", "shop.Order", true),
//!     "orders-shop.Order"
//! );
//! assert_eq!("PROTOBUF".parse::<SchemaType>().unwrap(), SchemaType::Protobuf);
//! ```

use std::collections::HashMap;
use std::fmt;
use std::str::FromStr;
use std::sync::{Arc, RwLock};

use serde::{Deserialize, Serialize};

use crate::error::{BoxError, ErrorKind, Kinded};
use crate::layers::http_client::Timeouts;

/// Which version of a subject.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum SchemaVersion {
    /// The newest version (looked up each time; its id is cached).
    Latest,
    /// A fixed version (cached).
    Number(u32),
}

/// The registry's `schemaType`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum SchemaType {
    /// Avro (the registry's default: answers for Avro schemas omit the field).
    #[default]
    Avro,
    /// JSON Schema.
    Json,
    /// Protobuf (`.proto` text).
    Protobuf,
}

impl SchemaType {
    /// The name the registry uses: `AVRO`, `JSON` or `PROTOBUF`.
    pub fn as_str(self) -> &'static str {
        match self {
            SchemaType::Avro => "AVRO",
            SchemaType::Json => "JSON",
            SchemaType::Protobuf => "PROTOBUF",
        }
    }
}

impl fmt::Display for SchemaType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for SchemaType {
    type Err = String;

    /// Parses the registry's names, ignoring case (`JSONSCHEMA`, the
    /// sidecar's name for the JSON format, is accepted too).
    fn from_str(s: &str) -> Result<Self, String> {
        match s.to_ascii_uppercase().as_str() {
            "AVRO" => Ok(SchemaType::Avro),
            "JSON" | "JSONSCHEMA" => Ok(SchemaType::Json),
            "PROTOBUF" => Ok(SchemaType::Protobuf),
            _ => Err(format!("unknown schema type {s:?}")),
        }
    }
}

/// A reference from one schema to another (a Protobuf `import`, a JSON
/// Schema `$ref`, a named Avro type), as the registry lists it.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct SchemaReference {
    /// The name the referring schema uses (for Protobuf: the import path).
    pub name: String,
    /// The subject holding the referenced schema.
    pub subject: String,
    /// The version of that subject.
    pub version: u32,
}

/// A schema as the registry holds it: id, type, text and references.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RegisteredSchema {
    id: u32,
    schema_type: SchemaType,
    text: String,
    references: Vec<SchemaReference>,
}

impl RegisteredSchema {
    /// A schema known without asking the registry (to [`SchemaRegistry::insert_schema`]).
    pub fn new(id: u32, schema_type: SchemaType, text: impl Into<String>) -> Self {
        RegisteredSchema {
            id,
            schema_type,
            text: text.into(),
            references: Vec::new(),
        }
    }

    /// With `references` (see [`SchemaReference`]).
    pub fn with_references(mut self, references: Vec<SchemaReference>) -> Self {
        self.references = references;
        self
    }

    /// The registry id.
    pub fn id(&self) -> u32 {
        self.id
    }

    /// The schema's type.
    pub fn schema_type(&self) -> SchemaType {
        self.schema_type
    }

    /// The schema text (Avro JSON, a JSON Schema document, or `.proto` source).
    pub fn text(&self) -> &str {
        &self.text
    }

    /// The schemas this one refers to.
    pub fn references(&self) -> &[SchemaReference] {
        &self.references
    }
}

/// How a producer names the subject of a record's schema (Confluent's
/// `value.subject.name.strategy` / `key.subject.name.strategy`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum SubjectNameStrategy {
    /// `<topic>-value` or `<topic>-key` (Confluent's default).
    #[default]
    TopicName,
    /// The record's fully-qualified name (Avro record, Protobuf message,
    /// JSON Schema `title`), whatever the topic.
    RecordName,
    /// `<topic>-<record name>`.
    TopicRecordName,
}

impl SubjectNameStrategy {
    /// The subject for a record named `record_name` on `topic`, for its key
    /// or its value. `record_name` is unused by [`SubjectNameStrategy::TopicName`].
    pub fn subject(self, topic: &str, record_name: &str, is_key: bool) -> String {
        match self {
            SubjectNameStrategy::TopicName => {
                format!("{topic}-{}", if is_key { "key" } else { "value" })
            }
            SubjectNameStrategy::RecordName => record_name.to_owned(),
            SubjectNameStrategy::TopicRecordName => format!("{topic}-{record_name}"),
        }
    }
}

/// What went wrong talking to the registry.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum RegistryErrorKind {
    /// The registry does not know the schema id or subject version (404).
    UnknownSchema,
    /// The registry could not be reached, timed out, or answered with
    /// another error.
    Unavailable,
}

/// A registry failure: [`RegistryErrorKind::UnknownSchema`] is
/// [`ErrorKind::Deserialization`] (a record naming an unknown id is poison),
/// [`RegistryErrorKind::Unavailable`] is [`ErrorKind::Transient`] (an outage).
#[derive(Debug)]
pub struct RegistryError {
    kind: RegistryErrorKind,
    message: String,
    source: Option<BoxError>,
}

impl RegistryError {
    pub(crate) fn new(kind: RegistryErrorKind, message: impl Into<String>) -> Self {
        RegistryError {
            kind,
            message: message.into(),
            source: None,
        }
    }

    pub(crate) fn with_source(
        kind: RegistryErrorKind,
        message: impl Into<String>,
        source: impl Into<BoxError>,
    ) -> Self {
        RegistryError {
            kind,
            message: message.into(),
            source: Some(source.into()),
        }
    }

    /// What went wrong.
    pub fn registry_kind(&self) -> RegistryErrorKind {
        self.kind
    }

    /// The message and the cause, for the format errors that carry them on.
    pub(crate) fn into_parts(self) -> (RegistryErrorKind, String, Option<BoxError>) {
        (self.kind, self.message, self.source)
    }
}

impl fmt::Display for RegistryError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)?;
        if let Some(source) = &self.source {
            write!(f, ": {source}")?;
        }
        Ok(())
    }
}

impl std::error::Error for RegistryError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.source
            .as_deref()
            .map(|e| e as &(dyn std::error::Error + 'static))
    }
}

impl Kinded for RegistryError {
    fn kind(&self) -> ErrorKind {
        match self.kind {
            RegistryErrorKind::UnknownSchema => ErrorKind::Deserialization,
            RegistryErrorKind::Unavailable => ErrorKind::Transient,
        }
    }
}

/// A schema registry speaking Confluent's REST API.
///
/// Schemas are cached by id (ids never change meaning) and by subject and
/// version number; light-kafka's own measurements put the schema cache as its
/// main speed-up, and here a cached id costs a map lookup.
///
/// Endpoints used: `GET /schemas/ids/{id}`,
/// `GET /subjects/{subject}/versions/{version}` and
/// `POST /subjects/{subject}/versions`. References are listed with each
/// schema; the Protobuf layers resolve them (imports), the Avro and JSON
/// Schema layers do not.
pub struct SchemaRegistry {
    base: String,
    auth: Option<BasicAuth>,
    client: Result<reqwest::Client, String>,
    by_id: RwLock<HashMap<u32, Arc<RegisteredSchema>>>,
    by_version: RwLock<HashMap<(String, u32), Arc<RegisteredSchema>>>,
    /// Parsed Avro schemas by id (see `layers::avro`).
    #[cfg(feature = "avro")]
    pub(crate) avro: RwLock<HashMap<u32, Arc<apache_avro::Schema>>>,
}

/// HTTP basic credentials (Confluent's `basic.auth.user.info`); `Debug`
/// shows the user only.
#[derive(Clone)]
struct BasicAuth {
    user: String,
    password: String,
}

impl fmt::Debug for BasicAuth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BasicAuth")
            .field("user", &self.user)
            .field("password", &"<redacted>")
            .finish()
    }
}

/// Splits credentials written into a URL (`https://user:pass@host`) off it,
/// so that the URL can be shown and logged.
fn split_userinfo(url: &str) -> (String, Option<BasicAuth>) {
    let Some((scheme, rest)) = url.split_once("://") else {
        return (url.to_owned(), None);
    };
    let authority_end = rest.find('/').unwrap_or(rest.len());
    match rest[..authority_end].rsplit_once('@') {
        Some((userinfo, host)) => {
            let (user, password) = userinfo.split_once(':').unwrap_or((userinfo, ""));
            let auth = BasicAuth {
                user: user.to_owned(),
                password: password.to_owned(),
            };
            (
                format!("{scheme}://{host}{}", &rest[authority_end..]),
                Some(auth),
            )
        }
        None => (url.to_owned(), None),
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct SchemaResponse {
    schema: String,
    #[serde(default)]
    schema_type: SchemaType,
    #[serde(default)]
    references: Vec<SchemaReference>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct VersionResponse {
    id: u32,
    version: u32,
    schema: String,
    #[serde(default)]
    schema_type: SchemaType,
    #[serde(default)]
    references: Vec<SchemaReference>,
}

#[derive(Deserialize)]
struct IdResponse {
    id: u32,
}

fn unavailable(what: &str) -> impl FnOnce(reqwest::Error) -> RegistryError + '_ {
    move |e| {
        RegistryError::with_source(
            RegistryErrorKind::Unavailable,
            format!("cannot reach the schema registry for {what}"),
            e,
        )
    }
}

impl SchemaRegistry {
    /// A client for the registry at `url` (e.g. `http://registry:8081`),
    /// with the default [`Timeouts`] (2 s to connect, 5 s per request).
    pub fn new(url: impl Into<String>) -> Self {
        SchemaRegistry::with_timeouts(url, Timeouts::default())
    }

    /// A client for the registry at `url` with `timeouts` on every request.
    /// A request that times out fails as unavailable (transient: the record
    /// is tried again later, not dead-lettered).
    ///
    /// ```
    /// use std::time::Duration;
    /// use light_kafka::layers::registry::SchemaRegistry;
    /// use light_kafka::layers::http_client::Timeouts;
    ///
    /// let registry = SchemaRegistry::with_timeouts(
    ///     "http://registry:8081",
    ///     Timeouts::new(Duration::from_millis(500), Duration::from_secs(2)),
    /// );
    /// # let _ = registry;
    /// ```
    pub fn with_timeouts(url: impl Into<String>, timeouts: Timeouts) -> Self {
        let (base, auth) = split_userinfo(url.into().trim_end_matches('/'));
        SchemaRegistry {
            base,
            auth,
            client: timeouts.client(),
            by_id: RwLock::new(HashMap::new()),
            by_version: RwLock::new(HashMap::new()),
            #[cfg(feature = "avro")]
            avro: RwLock::new(HashMap::new()),
        }
    }

    /// Sends HTTP basic credentials with every request: Confluent's
    /// `basic.auth.credentials.source=USER_INFO` with
    /// `basic.auth.user.info=user:password`. Credentials written into the URL
    /// (`https://user:pass@registry`) are taken the same way. Neither `Debug`
    /// nor an error ever shows the password.
    ///
    /// ```
    /// use light_kafka::layers::registry::SchemaRegistry;
    ///
    /// let registry = SchemaRegistry::new("https://registry.example.com")
    ///     .with_basic_auth("svc-orders", "s3cret");
    /// assert!(!format!("{registry:?}").contains("s3cret"));
    /// ```
    pub fn with_basic_auth(mut self, user: impl Into<String>, password: impl Into<String>) -> Self {
        self.auth = Some(BasicAuth {
            user: user.into(),
            password: password.into(),
        });
        self
    }

    /// [`with_basic_auth`](Self::with_basic_auth) from Confluent's
    /// `basic.auth.user.info` (`user:password`; a password may hold `:`).
    pub fn with_user_info(self, user_info: &str) -> Self {
        let (user, password) = user_info.split_once(':').unwrap_or((user_info, ""));
        self.with_basic_auth(user, password)
    }

    fn client(&self) -> Result<&reqwest::Client, RegistryError> {
        self.client
            .as_ref()
            .map_err(|e| RegistryError::new(RegistryErrorKind::Unavailable, e.clone()))
    }

    fn authorized(&self, request: reqwest::RequestBuilder) -> reqwest::RequestBuilder {
        match &self.auth {
            Some(auth) => request.basic_auth(&auth.user, Some(&auth.password)),
            None => request,
        }
    }

    async fn get<T: serde::de::DeserializeOwned>(
        &self,
        path: &str,
        what: &str,
    ) -> Result<T, RegistryError> {
        let request = self.client()?.get(format!("{}{path}", self.base));
        let response = self
            .authorized(request)
            .header("accept", "application/vnd.schemaregistry.v1+json")
            .send()
            .await
            .map_err(unavailable(what))?;
        Self::read(response, what).await
    }

    async fn read<T: serde::de::DeserializeOwned>(
        response: reqwest::Response,
        what: &str,
    ) -> Result<T, RegistryError> {
        let status = response.status();
        if status == reqwest::StatusCode::NOT_FOUND {
            return Err(RegistryError::new(
                RegistryErrorKind::UnknownSchema,
                format!("the schema registry has no {what}"),
            ));
        }
        if !status.is_success() {
            return Err(RegistryError::new(
                RegistryErrorKind::Unavailable,
                format!("the schema registry answered {status} for {what}"),
            ));
        }
        let body = response.bytes().await.map_err(|e| {
            RegistryError::with_source(RegistryErrorKind::Unavailable, format!("reading {what}"), e)
        })?;
        serde_json::from_slice(&body).map_err(|e| {
            RegistryError::with_source(
                RegistryErrorKind::Unavailable,
                format!("unexpected registry answer for {what}"),
                e,
            )
        })
    }

    /// The schema with `id`, if it is cached.
    pub fn cached_schema(&self, id: u32) -> Option<Arc<RegisteredSchema>> {
        self.by_id
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(&id)
            .cloned()
    }

    /// Caches `schema` under its id (for schemas known without asking).
    pub fn insert_schema(&self, schema: RegisteredSchema) -> Arc<RegisteredSchema> {
        let schema = Arc::new(schema);
        self.by_id
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .insert(schema.id, schema.clone());
        schema
    }

    /// The schema with `id`, of any type, from the cache or the registry.
    ///
    /// # Errors
    ///
    /// A [`RegistryError`]: `UnknownSchema` when the registry has no such id,
    /// `Unavailable` when it cannot be reached or fails.
    pub async fn schema_by_id(&self, id: u32) -> Result<Arc<RegisteredSchema>, RegistryError> {
        if let Some(schema) = self.cached_schema(id) {
            return Ok(schema);
        }
        let response: SchemaResponse = self
            .get(&format!("/schemas/ids/{id}"), &format!("schema id {id}"))
            .await?;
        Ok(self.insert_schema(RegisteredSchema {
            id,
            schema_type: response.schema_type,
            text: response.schema,
            references: response.references,
        }))
    }

    /// A version of `subject`, of any type: its id, type, text and references.
    ///
    /// # Errors
    ///
    /// As [`SchemaRegistry::schema_by_id`].
    pub async fn subject_version(
        &self,
        subject: &str,
        version: SchemaVersion,
    ) -> Result<Arc<RegisteredSchema>, RegistryError> {
        if let SchemaVersion::Number(n) = version
            && let Some(found) = self
                .by_version
                .read()
                .unwrap_or_else(|p| p.into_inner())
                .get(&(subject.to_owned(), n))
        {
            return Ok(found.clone());
        }
        let label = match version {
            SchemaVersion::Latest => "latest".to_owned(),
            SchemaVersion::Number(n) => n.to_string(),
        };
        let response: VersionResponse = self
            .get(
                &format!("/subjects/{subject}/versions/{label}"),
                &format!("version {label} of subject {subject}"),
            )
            .await?;
        let schema = match self.cached_schema(response.id) {
            Some(schema) => schema,
            None => self.insert_schema(RegisteredSchema {
                id: response.id,
                schema_type: response.schema_type,
                text: response.schema,
                references: response.references,
            }),
        };
        self.by_version
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .insert((subject.to_owned(), response.version), schema.clone());
        Ok(schema)
    }

    /// Every schema `schema` refers to, directly or through others, with the
    /// name it is referred to by; each listed once.
    ///
    /// # Errors
    ///
    /// As [`SchemaRegistry::subject_version`], for each reference.
    pub async fn references(
        &self,
        schema: &RegisteredSchema,
    ) -> Result<Vec<(String, Arc<RegisteredSchema>)>, RegistryError> {
        let mut found: Vec<(String, Arc<RegisteredSchema>)> = Vec::new();
        let mut pending: Vec<SchemaReference> = schema.references.clone();
        while let Some(reference) = pending.pop() {
            if found.iter().any(|(name, _)| *name == reference.name) {
                continue;
            }
            let referenced = self
                .subject_version(&reference.subject, SchemaVersion::Number(reference.version))
                .await?;
            pending.extend(referenced.references.iter().cloned());
            found.push((reference.name, referenced));
        }
        Ok(found)
    }

    /// Registers `text` (of `schema_type`, with `references`) under
    /// `subject`, or finds it registered, and returns its id. This is the
    /// only call that writes to the registry.
    ///
    /// # Errors
    ///
    /// A [`RegistryError`] of kind `Unavailable` when the registry refuses it
    /// (e.g. an incompatible change: 409, or an invalid schema: 422) or
    /// cannot be reached.
    pub async fn register_schema(
        &self,
        subject: &str,
        schema_type: SchemaType,
        text: &str,
        references: &[SchemaReference],
    ) -> Result<u32, RegistryError> {
        let what = format!("registering a schema under {subject}");
        let mut body = serde_json::json!({ "schema": text });
        if schema_type != SchemaType::Avro {
            body["schemaType"] = schema_type.as_str().into();
        }
        if !references.is_empty() {
            body["references"] = serde_json::to_value(references).unwrap_or_default();
        }
        let request = self
            .client()?
            .post(format!("{}/subjects/{subject}/versions", self.base));
        let response = self
            .authorized(request)
            .header("content-type", "application/vnd.schemaregistry.v1+json")
            .body(body.to_string())
            .send()
            .await
            .map_err(unavailable(&what))?;
        let IdResponse { id } = Self::read(response, &what).await.map_err(|e| {
            // A subject the registry refuses to take is not a missing schema.
            let (_, message, source) = e.into_parts();
            RegistryError {
                kind: RegistryErrorKind::Unavailable,
                message,
                source,
            }
        })?;
        if self.cached_schema(id).is_none() {
            self.insert_schema(
                RegisteredSchema::new(id, schema_type, text).with_references(references.to_vec()),
            );
        }
        Ok(id)
    }
}

impl fmt::Debug for SchemaRegistry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SchemaRegistry")
            .field("url", &self.base)
            .field("auth", &self.auth)
            .field(
                "cached_ids",
                &self.by_id.read().unwrap_or_else(|p| p.into_inner()).len(),
            )
            .finish()
    }
}

/// The Confluent wire format's header: magic byte `0` and the schema id as
/// a 4-byte big-endian integer. `Err` names what is wrong.
pub(crate) fn split_header(bytes: &[u8]) -> Result<(u32, &[u8]), String> {
    match bytes {
        [0, a, b, c, d, body @ ..] => Ok((u32::from_be_bytes([*a, *b, *c, *d]), body)),
        [0, ..] => Err("value shorter than the 5-byte Confluent header".to_owned()),
        [] => Err("empty value".to_owned()),
        [other, ..] => Err(format!(
            "magic byte is {other}, not 0: not in the Confluent wire format"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schema_types_read_as_the_registry_writes_them() {
        let avro: SchemaResponse = serde_json::from_str(r#"{"schema":"\"string\""}"#).unwrap();
        assert_eq!(avro.schema_type, SchemaType::Avro);
        let proto: SchemaResponse = serde_json::from_str(
            r#"{"schema":"syntax = \"proto3\";","schemaType":"PROTOBUF",
                "references":[{"name":"a.proto","subject":"a","version":2}]}"#,
        )
        .unwrap();
        assert_eq!(proto.schema_type, SchemaType::Protobuf);
        assert_eq!(proto.references[0].version, 2);
        assert_eq!("json".parse::<SchemaType>(), Ok(SchemaType::Json));
        assert!("xml".parse::<SchemaType>().is_err());
    }

    #[test]
    fn the_header_is_magic_and_id() {
        assert_eq!(split_header(&[0, 0, 0, 1, 2, 9]), Ok((258, &[9u8][..])));
        assert!(split_header(&[1, 0, 0, 0, 1]).is_err());
        assert!(split_header(&[0, 0]).is_err());
        assert!(split_header(&[]).is_err());
    }

    #[test]
    fn errors_are_poison_or_outage() {
        let unknown = RegistryError::new(RegistryErrorKind::UnknownSchema, "no id 7");
        assert_eq!(Kinded::kind(&unknown), ErrorKind::Deserialization);
        let down = RegistryError::new(RegistryErrorKind::Unavailable, "503");
        assert_eq!(Kinded::kind(&down), ErrorKind::Transient);
    }
}
