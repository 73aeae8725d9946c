//! A Confluent schema registry client, cached by schema id and by subject version.

use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, RwLock};

use apache_avro::Schema;
use serde::Deserialize;

use super::error::{AvroError, AvroErrorKind};
use crate::layers::http_client::Timeouts;

/// Which version of a subject.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum SchemaVersion {
    /// The newest version (looked up each time; its id is cached).
    Latest,
    /// A fixed version (cached).
    Number(u32),
}

/// A schema registry speaking Confluent's REST API.
///
/// Schemas are cached by id (ids never change meaning) and by subject and
/// version number; light-kafka's own measurements put the schema cache as its
/// main speed-up, and here a cached id costs a map lookup.
///
/// Endpoints used: `GET /schemas/ids/{id}`,
/// `GET /subjects/{subject}/versions/{version}` and
/// `POST /subjects/{subject}/versions`. Schema references are not supported.
pub struct SchemaRegistry {
    base: String,
    auth: Option<BasicAuth>,
    client: Result<reqwest::Client, String>,
    by_id: RwLock<HashMap<u32, Arc<Schema>>>,
    by_version: RwLock<HashMap<(String, u32), Registered>>,
}

/// A schema with its registry id.
type Registered = (u32, Arc<Schema>);

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
struct SchemaResponse {
    schema: String,
}

#[derive(Deserialize)]
struct VersionResponse {
    id: u32,
    version: u32,
    schema: String,
}

#[derive(Deserialize)]
struct IdResponse {
    id: u32,
}

fn parse(text: &str) -> Result<Arc<Schema>, AvroError> {
    Schema::parse_str(text).map(Arc::new).map_err(|e| {
        AvroError::with_source(
            AvroErrorKind::Schema,
            "the registry returned an invalid Avro schema",
            e,
        )
    })
}

impl SchemaRegistry {
    /// A client for the registry at `url` (e.g. `http://registry:8081`),
    /// with the default [`Timeouts`] (2 s to connect, 5 s per request).
    pub fn new(url: impl Into<String>) -> Self {
        SchemaRegistry::with_timeouts(url, Timeouts::default())
    }

    /// A client for the registry at `url` with `timeouts` on every request.
    /// A request that times out fails with kind [`AvroErrorKind::Registry`]
    /// (transient: the record is tried again later, not dead-lettered).
    ///
    /// ```
    /// use std::time::Duration;
    /// use light_kafka::layers::avro::SchemaRegistry;
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
        }
    }

    /// Sends HTTP basic credentials with every request: Confluent's
    /// `basic.auth.credentials.source=USER_INFO` with
    /// `basic.auth.user.info=user:password`. Credentials written into the URL
    /// (`https://user:pass@registry`) are taken the same way. Neither `Debug`
    /// nor an error ever shows the password.
    ///
    /// ```
    /// use light_kafka::layers::avro::SchemaRegistry;
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

    fn client(&self) -> Result<&reqwest::Client, AvroError> {
        self.client
            .as_ref()
            .map_err(|e| AvroError::new(AvroErrorKind::Registry, e.clone()))
    }

    fn authorized(&self, request: reqwest::RequestBuilder) -> reqwest::RequestBuilder {
        match &self.auth {
            Some(auth) => request.basic_auth(&auth.user, Some(&auth.password)),
            None => request,
        }
    }

    /// The schema with `id`, if it is cached.
    pub fn cached(&self, id: u32) -> Option<Arc<Schema>> {
        self.by_id
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(&id)
            .cloned()
    }

    /// Caches `schema` under `id` (for schemas known without asking).
    pub fn insert(&self, id: u32, schema: Arc<Schema>) {
        self.by_id
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .insert(id, schema);
    }

    async fn get<T: serde::de::DeserializeOwned>(
        &self,
        path: &str,
        what: &str,
    ) -> Result<T, AvroError> {
        let request = self.client()?.get(format!("{}{path}", self.base));
        let response = self
            .authorized(request)
            .header("accept", "application/vnd.schemaregistry.v1+json")
            .send()
            .await
            .map_err(|e| {
                AvroError::with_source(
                    AvroErrorKind::Registry,
                    format!("cannot reach the schema registry for {what}"),
                    e,
                )
            })?;
        Self::read(response, what).await
    }

    async fn read<T: serde::de::DeserializeOwned>(
        response: reqwest::Response,
        what: &str,
    ) -> Result<T, AvroError> {
        let status = response.status();
        if status == reqwest::StatusCode::NOT_FOUND {
            return Err(AvroError::new(
                AvroErrorKind::UnknownSchema,
                format!("the schema registry has no {what}"),
            ));
        }
        if !status.is_success() {
            return Err(AvroError::new(
                AvroErrorKind::Registry,
                format!("the schema registry answered {status} for {what}"),
            ));
        }
        let body = response.bytes().await.map_err(|e| {
            AvroError::with_source(AvroErrorKind::Registry, format!("reading {what}"), e)
        })?;
        serde_json::from_slice(&body).map_err(|e| {
            AvroError::with_source(
                AvroErrorKind::Registry,
                format!("unexpected registry answer for {what}"),
                e,
            )
        })
    }

    /// The schema with `id`, from the cache or the registry.
    ///
    /// # Errors
    ///
    /// An [`AvroError`]: `UnknownSchema` when the registry has no such id,
    /// `Registry` when it cannot be reached.
    pub async fn schema(&self, id: u32) -> Result<Arc<Schema>, AvroError> {
        if let Some(schema) = self.cached(id) {
            return Ok(schema);
        }
        let response: SchemaResponse = self
            .get(&format!("/schemas/ids/{id}"), &format!("schema id {id}"))
            .await?;
        let schema = parse(&response.schema)?;
        self.insert(id, schema.clone());
        Ok(schema)
    }

    /// The id and schema of a subject's version.
    ///
    /// # Errors
    ///
    /// As [`SchemaRegistry::schema`].
    pub async fn version(
        &self,
        subject: &str,
        version: SchemaVersion,
    ) -> Result<(u32, Arc<Schema>), AvroError> {
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
        let schema = match self.cached(response.id) {
            Some(schema) => schema,
            None => parse(&response.schema)?,
        };
        self.insert(response.id, schema.clone());
        self.by_version
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .insert(
                (subject.to_owned(), response.version),
                (response.id, schema.clone()),
            );
        Ok((response.id, schema))
    }

    /// Registers `schema` under `subject` (or finds it registered) and returns its id.
    ///
    /// # Errors
    ///
    /// An [`AvroError`] of kind `Registry` when the registry refuses it
    /// (e.g. an incompatible change) or cannot be reached.
    pub async fn register(&self, subject: &str, schema: &Schema) -> Result<u32, AvroError> {
        let what = format!("registering a schema under {subject}");
        let body = serde_json::json!({ "schema": schema.canonical_form() });
        let request = self
            .client()?
            .post(format!("{}/subjects/{subject}/versions", self.base));
        let response = self
            .authorized(request)
            .header("content-type", "application/vnd.schemaregistry.v1+json")
            .body(body.to_string())
            .send()
            .await
            .map_err(|e| {
                AvroError::with_source(
                    AvroErrorKind::Registry,
                    format!("cannot reach the schema registry {what}"),
                    e,
                )
            })?;
        let IdResponse { id } = Self::read(response, &what).await?;
        self.insert(id, Arc::new(schema.clone()));
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
