//! The Avro side of the shared [`SchemaRegistry`](crate::layers::registry::SchemaRegistry):
//! parsed Avro schemas, cached by id.

use std::sync::Arc;

use apache_avro::Schema;

use super::error::{AvroError, AvroErrorKind};
use crate::layers::registry::{
    RegisteredSchema, RegistryError, RegistryErrorKind, SchemaType, SchemaVersion,
};

pub use crate::layers::registry::SchemaRegistry;

impl From<RegistryError> for AvroError {
    fn from(error: RegistryError) -> Self {
        let (kind, message, source) = error.into_parts();
        let kind = match kind {
            RegistryErrorKind::UnknownSchema => AvroErrorKind::UnknownSchema,
            _ => AvroErrorKind::Registry,
        };
        match source {
            Some(source) => AvroError::with_source(kind, message, source),
            None => AvroError::new(kind, message),
        }
    }
}

fn parse(schema: &RegisteredSchema) -> Result<Arc<Schema>, AvroError> {
    if schema.schema_type() != SchemaType::Avro {
        return Err(AvroError::new(
            AvroErrorKind::Decode,
            format!(
                "schema id {} is a {} schema, not Avro",
                schema.id(),
                schema.schema_type()
            ),
        ));
    }
    Schema::parse_str(schema.text()).map(Arc::new).map_err(|e| {
        AvroError::with_source(
            AvroErrorKind::Schema,
            "the registry returned an invalid Avro schema",
            e,
        )
    })
}

impl SchemaRegistry {
    /// The Avro schema with `id`, if it is cached.
    pub fn cached(&self, id: u32) -> Option<Arc<Schema>> {
        self.avro
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(&id)
            .cloned()
    }

    /// Caches the Avro `schema` under `id` (for schemas known without asking).
    pub fn insert(&self, id: u32, schema: Arc<Schema>) {
        self.avro
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .insert(id, schema);
    }

    fn parsed(&self, registered: &RegisteredSchema) -> Result<Arc<Schema>, AvroError> {
        if let Some(schema) = self.cached(registered.id()) {
            return Ok(schema);
        }
        let schema = parse(registered)?;
        self.insert(registered.id(), schema.clone());
        Ok(schema)
    }

    /// The Avro schema with `id`, from the cache or the registry.
    ///
    /// # Errors
    ///
    /// An [`AvroError`]: `UnknownSchema` when the registry has no such id,
    /// `Registry` when it cannot be reached, `Decode` when the id names a
    /// schema of another type.
    pub async fn schema(&self, id: u32) -> Result<Arc<Schema>, AvroError> {
        if let Some(schema) = self.cached(id) {
            return Ok(schema);
        }
        let registered = self.schema_by_id(id).await?;
        self.parsed(&registered)
    }

    /// The id and Avro schema of a subject's version.
    ///
    /// # Errors
    ///
    /// As [`SchemaRegistry::schema`].
    pub async fn version(
        &self,
        subject: &str,
        version: SchemaVersion,
    ) -> Result<(u32, Arc<Schema>), AvroError> {
        let registered = self.subject_version(subject, version).await?;
        Ok((registered.id(), self.parsed(&registered)?))
    }

    /// Registers the Avro `schema` under `subject` (or finds it registered)
    /// and returns its id.
    ///
    /// # Errors
    ///
    /// An [`AvroError`] of kind `Registry` when the registry refuses it
    /// (e.g. an incompatible change) or cannot be reached.
    pub async fn register(&self, subject: &str, schema: &Schema) -> Result<u32, AvroError> {
        let id = self
            .register_schema(subject, SchemaType::Avro, &schema.canonical_form(), &[])
            .await?;
        self.insert(id, Arc::new(schema.clone()));
        Ok(id)
    }
}
