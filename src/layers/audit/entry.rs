use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;

use bytes::Bytes;
use serde::{Deserialize, Serialize};

/// Which chain wrote the entry.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AuditType {
    /// A producer chain.
    Producer,
    /// A consumer chain.
    Consumer,
    /// A stream processor chain.
    Streams,
}

/// How the record fared.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum AuditStatus {
    /// Handled, sent, or settled through the dead-letter topic.
    Success,
    /// Failed.
    Failure,
}

/// One audit entry per record, with light-kafka's `AuditRecord` fields plus
/// client, user and caller ids and the latency.
///
/// Serialized as camelCase JSON. `prevHash` and `hash` are set when the audit
/// layer keeps a hash chain.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AuditEntry {
    /// Unique id of the entry (UUID v7).
    pub id: uuid::Uuid,
    /// The service that wrote it.
    pub service_id: Arc<str>,
    /// Producer, consumer or streams.
    pub audit_type: AuditType,
    /// The record's topic.
    pub topic: Arc<str>,
    /// The record's partition, when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub partition: Option<i32>,
    /// The record's offset, when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub offset: Option<i64>,
    /// The record's key (written as UTF-8, lossy).
    #[serde(default, skip_serializing_if = "Option::is_none", with = "lossy_text")]
    pub key: Option<Bytes>,
    /// `X-Correlation-Id`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub correlation_id: Option<Arc<str>>,
    /// `X-Traceability-Id`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub traceability_id: Option<Arc<str>>,
    /// The verified token's client id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_id: Option<Arc<str>>,
    /// The verified token's user id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_id: Option<Arc<str>>,
    /// The producing service.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub caller_id: Option<Arc<str>>,
    /// SUCCESS or FAILURE.
    pub status: AuditStatus,
    /// The failure, when there was one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// The failure and its causes, one per line.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stack_trace: Option<String>,
    /// Milliseconds since the Unix epoch, when the record finished.
    pub timestamp: i64,
    /// Milliseconds the record took in the chain inside the audit layer.
    pub latency_ms: f64,
    /// Audited headers (the configured ones that were present).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub headers: BTreeMap<String, String>,
    /// Hash of the previous entry of the chain.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prev_hash: Option<String>,
    /// Hash of this entry, its `prevHash` included.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hash: Option<String>,
}

impl AuditEntry {
    /// `SUCCESS` or `FAILURE`.
    pub fn status_text(&self) -> &'static str {
        match self.status {
            AuditStatus::Success => "SUCCESS",
            AuditStatus::Failure => "FAILURE",
        }
    }

    /// The entry as one line of JSON.
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).unwrap_or_else(|e| format!(r#"{{"auditError":"{e}"}}"#))
    }

    /// SHA-256 (hex) of the entry without its `hash` field.
    pub fn digest(&self) -> String {
        let mut unhashed = self.clone();
        unhashed.hash = None;
        crate::text::sha256_hex(unhashed.to_json().as_bytes())
    }
}

/// Bytes written as (lossy) UTF-8 text and read back from text.
mod lossy_text {
    use bytes::Bytes;
    use serde::{Deserialize, Deserializer, Serializer};

    pub(super) fn serialize<S: Serializer>(
        value: &Option<Bytes>,
        serializer: S,
    ) -> Result<S::Ok, S::Error> {
        match value {
            Some(bytes) => serializer.serialize_str(&String::from_utf8_lossy(bytes)),
            None => serializer.serialize_none(),
        }
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(
        deserializer: D,
    ) -> Result<Option<Bytes>, D::Error> {
        Ok(Option::<String>::deserialize(deserializer)?.map(Bytes::from))
    }
}

/// Where a hash chain is broken.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ChainError {
    /// Entry `index` was changed after it was written.
    Altered {
        /// Position in the verified slice.
        index: usize,
    },
    /// Entry `index` does not follow the one before it: an entry was removed,
    /// inserted or reordered.
    Broken {
        /// Position in the verified slice.
        index: usize,
    },
    /// Entry `index` carries no hash.
    Unhashed {
        /// Position in the verified slice.
        index: usize,
    },
}

impl fmt::Display for ChainError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ChainError::Altered { index } => write!(f, "audit entry {index} was altered"),
            ChainError::Broken { index } => {
                write!(f, "the audit chain is broken before entry {index}")
            }
            ChainError::Unhashed { index } => write!(f, "audit entry {index} has no hash"),
        }
    }
}

impl std::error::Error for ChainError {}

/// Verifies a run of consecutive chained entries: each one's hash matches its
/// content, and each one's `prevHash` is the hash of the one before.
///
/// # Errors
///
/// The first [`ChainError`] found.
pub fn verify_chain(entries: &[AuditEntry]) -> Result<(), ChainError> {
    let mut previous: Option<&str> = None;
    for (index, entry) in entries.iter().enumerate() {
        let Some(hash) = entry.hash.as_deref() else {
            return Err(ChainError::Unhashed { index });
        };
        if entry.digest() != hash {
            return Err(ChainError::Altered { index });
        }
        if let Some(previous) = previous
            && entry.prev_hash.as_deref() != Some(previous)
        {
            return Err(ChainError::Broken { index });
        }
        previous = Some(hash);
    }
    Ok(())
}
