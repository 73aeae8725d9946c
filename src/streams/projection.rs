//! [`Projection`]: the read side. A topic folded into a table keyed by the
//! record key, kept in a store, queried while it runs.
//!
//! By default the table holds the latest value of each key and a null value
//! (a tombstone) deletes the key, like a compacted topic;
//! [`ProjectionBuilder::fold`] computes each key's value from the previous
//! one and the record instead (a balance from deposits and withdrawals).
//!
//! The projection reads every partition of its topic `read_committed`, from
//! the beginning (or from a persistent store's checkpoint). Until it has read
//! up to the end offsets it saw when it started, queries answer
//! [`QueryError::NotReady`] with the progress: a half-built table is never
//! served as if it were the truth. With the `axum` feature,
//! [`Projection::router`] serves it as JSON.
//!
//! A value that does not decode (or a fold that fails) is skipped, logged at
//! error level and counted in [`ProjectionStatus::failed`]: the read side
//! cannot stop at a poison record the write side already committed.
//!
//! ```
//! use light_kafka::record::Record;
//! use light_kafka::service::embedded::EmbeddedKafka;
//! use light_kafka::service::producer::Producer;
//! use light_kafka::streams::projection::Projection;
//! use std::time::Duration;
//! use tower::ServiceExt;
//!
//! # #[tokio::main]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let kafka = EmbeddedKafka::start()?;
//! kafka.create_topic("prices", 2)?;
//! let producer = Producer::builder().bootstrap_servers(kafka.bootstrap_servers()).build()?;
//! producer.clone().oneshot(Record::builder("prices").key("apple").value("3").build()).await?;
//! producer.oneshot(Record::builder("prices").key("apple").value("4").build()).await?;
//!
//! let prices = Projection::<u32>::builder("prices", "prices")
//!     .bootstrap_servers(kafka.bootstrap_servers())
//!     .start()
//!     .await?;
//! prices.ready(Duration::from_secs(10)).await?;
//! assert_eq!(prices.get("apple")?, Some(4));
//! # Ok(()) }
//! ```

use std::collections::HashMap;
use std::fmt;
use std::marker::PhantomData;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::{Message, Offset, TopicPartitionList};

use super::store::{Backend, MemoryStorage, Storage, StoreError};
use crate::error::BoxError;
use crate::record::{Codec, JsonCodec, Record};
use crate::service::BuildError;
use crate::service::client::check_bootstrap;

/// Where a projection stands.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct ProjectionStatus {
    /// Whether it has read up to the end offsets it saw when it started.
    pub ready: bool,
    /// Records read since it started (records of committed transactions and
    /// plain records; never transaction markers or aborted records).
    pub consumed: u64,
    /// Offsets read past since it started, up to the end offsets it saw when
    /// it started: reaches [`total`](Self::total) exactly when it is ready.
    /// It counts transaction markers and aborted records too, which occupy
    /// offsets and are never delivered, so it is the measure of progress.
    pub read: u64,
    /// Offsets to read before it is ready: from where it started to the end
    /// offsets it saw then. With transactional producers this is more than
    /// the records there are (each transaction leaves a marker); see
    /// [`read`](Self::read).
    pub total: u64,
    /// Records skipped because their value did not decode or fold.
    pub failed: u64,
    /// Why the last record was skipped.
    pub last_error: Option<String>,
}

/// Why a query has no answer.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum QueryError {
    /// The projection is still reading its topic up to where it was when it
    /// started; the answer would be stale.
    #[error("the projection is restoring ({read} of {total} offsets read)")]
    NotReady {
        /// Offsets read past so far ([`ProjectionStatus::read`]).
        read: u64,
        /// Offsets to read before it is ready ([`ProjectionStatus::total`]).
        total: u64,
    },
    /// The store failed or a value did not decode.
    #[error(transparent)]
    Store(#[from] StoreError),
}

type FoldFn<V> = dyn Fn(Option<V>, &Record) -> Result<Option<V>, BoxError> + Send + Sync;
type Fold<V> = Arc<FoldFn<V>>;

/// Configures a [`Projection`].
pub struct ProjectionBuilder<V, C = JsonCodec> {
    name: String,
    topic: String,
    config: ClientConfig,
    storage: Arc<dyn Storage>,
    codec: C,
    fold: Option<Fold<V>>,
}

impl<V, C> fmt::Debug for ProjectionBuilder<V, C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ProjectionBuilder")
            .field("name", &self.name)
            .field("topic", &self.topic)
            .finish_non_exhaustive()
    }
}

impl<V, C> ProjectionBuilder<V, C>
where
    V: Send + 'static,
    C: Codec<V> + Clone + Send + Sync + 'static,
{
    /// Sets `bootstrap.servers`.
    pub fn bootstrap_servers(self, servers: impl Into<String>) -> Self {
        self.set("bootstrap.servers", servers)
    }

    /// Sets any librdkafka property of the projection's consumer.
    pub fn set(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.config.set(key, value);
        self
    }

    /// Keeps the table in `storage` (in memory by default). A persistent
    /// storage resumes from its checkpoint instead of the beginning.
    pub fn storage(mut self, storage: impl Storage) -> Self {
        self.storage = Arc::new(storage);
        self
    }

    /// Decodes values (and encodes the table's) with `codec`.
    pub fn codec<C2: Codec<V>>(self, codec: C2) -> ProjectionBuilder<V, C2> {
        ProjectionBuilder {
            name: self.name,
            topic: self.topic,
            config: self.config,
            storage: self.storage,
            codec,
            fold: self.fold,
        }
    }

    /// Computes a key's new value from its previous value and the record
    /// (`None` deletes the key), instead of keeping the latest value.
    pub fn fold<F>(mut self, fold: F) -> Self
    where
        F: Fn(Option<V>, &Record) -> Result<Option<V>, BoxError> + Send + Sync + 'static,
    {
        self.fold = Some(Arc::new(fold));
        self
    }

    /// Starts reading the topic in the background.
    ///
    /// # Errors
    ///
    /// A [`BuildError`] when a setting is wrong, the topic does not exist or
    /// a store cannot be opened.
    pub async fn start(self) -> Result<Projection<V, C>, BuildError> {
        check_bootstrap(&self.config)?;
        let mut config = self.config.clone();
        config
            .set("group.id", format!("{}-projection", self.name))
            .set("enable.auto.commit", "false")
            .set("enable.partition.eof", "true")
            .set("isolation.level", "read_committed")
            .set("auto.offset.reset", "earliest");
        let topic = self.topic.clone();
        let storage = self.storage.clone();
        let name = self.name.clone();
        let (consumer, partitions, ranges) =
            tokio::task::spawn_blocking(move || open(&config, &topic, &name, storage.as_ref()))
                .await
                .unwrap_or_else(|e| {
                    Err(BuildError::new(format!("projection start failed: {e}")))
                })?;
        let fold = self.fold.unwrap_or_else(|| {
            let codec = self.codec.clone();
            Arc::new(move |_, record: &Record| match record.value() {
                None => Ok(None),
                Some(value) => codec.decode(value).map(Some).map_err(Into::into),
            })
        });
        let inner = Arc::new(Inner {
            name: self.name,
            partitions: partitions
                .into_iter()
                .map(|(p, b)| (p, Mutex::new(b)))
                .collect(),
            status: Mutex::new(ProjectionStatus {
                ready: ranges.values().all(|(start, end)| start == end),
                total: ranges
                    .values()
                    .map(|(start, end)| (end - start) as u64)
                    .sum(),
                ..ProjectionStatus::default()
            }),
            stop: AtomicBool::new(false),
            ready: tokio::sync::Notify::new(),
        });
        let (reader, codec) = (inner.clone(), self.codec.clone());
        std::thread::Builder::new()
            .name(format!("projection-{}", inner.name))
            .spawn(move || follow(consumer, &reader, ranges, &codec, fold.as_ref()))
            .map_err(|e| BuildError::new(format!("cannot start the projection thread: {e}")))?;
        Ok(Projection {
            _stop: Arc::new(StopOnDrop(inner.clone())),
            inner,
            codec: self.codec,
            value: PhantomData,
        })
    }
}

/// Where each partition's reading starts and where it is ready.
type Ranges = HashMap<i32, (i64, i64)>;

/// The consumer assigned to every partition from each backend's checkpoint,
/// the backends, and each partition's offsets from where reading starts to
/// the end offset it must reach before it is ready.
#[allow(clippy::type_complexity)]
fn open(
    config: &ClientConfig,
    topic: &str,
    name: &str,
    storage: &dyn Storage,
) -> Result<(BaseConsumer, Vec<(i32, Box<dyn Backend>)>, Ranges), BuildError> {
    let consumer: BaseConsumer = config
        .create()
        .map_err(|e| BuildError::kafka("creating the projection's consumer", e))?;
    let timeout = Duration::from_secs(30);
    let count = super::task::partition_count(&consumer, topic)?;
    if count == 0 {
        return Err(BuildError::invalid(
            "topic",
            format!("the topic `{topic}` does not exist"),
        ));
    }
    let mut tpl = TopicPartitionList::new();
    let mut backends = Vec::new();
    let mut ranges = HashMap::new();
    for partition in 0..count {
        let backend = storage
            .open(name, partition)
            .map_err(|e| BuildError::new(format!("opening the projection's store: {e}")))?;
        let (low, high) = consumer
            .fetch_watermarks(topic, partition, timeout)
            .map_err(|e| BuildError::kafka(format!("reading the offsets of `{topic}`"), e))?;
        let checkpoint = backend
            .checkpoint()
            .map_err(|e| BuildError::new(format!("reading the projection's checkpoint: {e}")))?;
        let start = checkpoint.unwrap_or(low).max(low);
        ranges.insert(partition, (start, high.max(start)));
        tpl.add_partition_offset(topic, partition, Offset::Offset(start))
            .map_err(|e| BuildError::kafka("assigning", e))?;
        backends.push((partition, backend));
    }
    consumer
        .assign(&tpl)
        .map_err(|e| BuildError::kafka("assigning", e))?;
    Ok((consumer, backends, ranges))
}

struct Inner {
    name: String,
    partitions: HashMap<i32, Mutex<Box<dyn Backend>>>,
    status: Mutex<ProjectionStatus>,
    stop: AtomicBool,
    ready: tokio::sync::Notify,
}

impl Inner {
    fn status<R>(&self, f: impl FnOnce(&mut ProjectionStatus) -> R) -> R {
        f(&mut self.status.lock().unwrap_or_else(|p| p.into_inner()))
    }
}

/// Reads the topic into the backends until the projection is dropped.
fn follow<V, C: Codec<V>>(
    consumer: BaseConsumer,
    inner: &Inner,
    ranges: Ranges,
    codec: &C,
    fold: &FoldFn<V>,
) {
    let mut pending_eof: usize = if inner.status(|s| s.ready) {
        0
    } else {
        inner.partitions.len()
    };
    let mut eof_seen: Vec<i32> = Vec::new();
    // Per partition: where reading started, the end to reach, the next offset.
    let mut progress: HashMap<i32, (i64, i64, i64)> = ranges
        .into_iter()
        .map(|(p, (start, end))| (p, (start, end, start)))
        .collect();
    let read = |progress: &HashMap<i32, (i64, i64, i64)>| -> u64 {
        progress
            .values()
            .map(|(start, end, next)| (next.min(end) - start).max(0) as u64)
            .sum()
    };
    while !inner.stop.load(Ordering::Relaxed) {
        match consumer.poll(Duration::from_millis(100)) {
            Some(Ok(message)) => {
                let record = Record::from_message(&message);
                let partition = message.partition();
                if let Some((_, _, next)) = progress.get_mut(&partition) {
                    *next = (*next).max(message.offset() + 1);
                    let read = read(&progress);
                    inner.status(|s| s.read = read);
                }
                let Some(key) = record.key().cloned() else {
                    inner.status(|s| s.consumed += 1);
                    continue;
                };
                let Some(backend) = inner.partitions.get(&partition) else {
                    continue;
                };
                let mut backend = backend.lock().unwrap_or_else(|p| p.into_inner());
                let applied = (|| -> Result<(), BoxError> {
                    let previous = backend.get(&key)?.map(|b| codec.decode(&b)).transpose()?;
                    let value = fold(previous, &record)?
                        .map(|v| codec.encode(&v))
                        .transpose()?;
                    backend.write(&[(key.clone(), value)], Some(message.offset() + 1))?;
                    Ok(())
                })();
                drop(backend);
                inner.status(|s| {
                    s.consumed += 1;
                    if let Err(error) = &applied {
                        s.failed += 1;
                        s.last_error = Some(error.to_string());
                    }
                });
                if let Err(error) = applied {
                    tracing::error!(projection = %inner.name, partition, offset = message.offset(), %error, "record skipped by the projection");
                }
            }
            Some(Err(KafkaError::PartitionEOF(partition)))
                if pending_eof > 0 && !eof_seen.contains(&partition) =>
            {
                // At the end: past every marker and aborted record too.
                if let Some((_, end, next)) = progress.get_mut(&partition) {
                    *next = (*next).max(*end);
                    let read = read(&progress);
                    inner.status(|s| s.read = read);
                }
                eof_seen.push(partition);
                pending_eof -= 1;
                if pending_eof == 0 {
                    inner.status(|s| s.ready = true);
                    inner.ready.notify_waiters();
                }
            }
            Some(Err(KafkaError::PartitionEOF(_))) => {}
            Some(Err(error)) => {
                tracing::warn!(projection = %inner.name, %error, "projection consumer error")
            }
            None => {}
        }
    }
}

/// A table built from a topic, queried while it runs. Cheap to clone; the
/// reading stops when the last clone is dropped. See the
/// [module documentation](self).
pub struct Projection<V, C = JsonCodec> {
    inner: Arc<Inner>,
    _stop: Arc<StopOnDrop>,
    codec: C,
    value: PhantomData<fn() -> V>,
}

impl<V, C: Clone> Clone for Projection<V, C> {
    fn clone(&self) -> Self {
        Projection {
            inner: self.inner.clone(),
            _stop: self._stop.clone(),
            codec: self.codec.clone(),
            value: PhantomData,
        }
    }
}

impl<V, C> fmt::Debug for Projection<V, C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Projection")
            .field("name", &self.inner.name)
            .field("status", &self.inner.status(|s| s.clone()))
            .finish()
    }
}

/// Stops the reading thread when the last [`Projection`] clone goes.
struct StopOnDrop(Arc<Inner>);

impl Drop for StopOnDrop {
    fn drop(&mut self) {
        self.0.stop.store(true, Ordering::Relaxed);
    }
}

impl<V> Projection<V, JsonCodec>
where
    JsonCodec: Codec<V>,
{
    /// Starts configuring the projection `name` of `topic`, JSON values.
    pub fn builder(
        name: impl Into<String>,
        topic: impl Into<String>,
    ) -> ProjectionBuilder<V, JsonCodec> {
        ProjectionBuilder {
            name: name.into(),
            topic: topic.into(),
            config: ClientConfig::new(),
            storage: Arc::new(MemoryStorage),
            codec: JsonCodec,
            fold: None,
        }
    }
}

impl<V, C: Codec<V>> Projection<V, C> {
    /// The projection's name.
    pub fn name(&self) -> &str {
        &self.inner.name
    }

    /// Where it stands.
    pub fn status(&self) -> ProjectionStatus {
        self.inner.status(|s| s.clone())
    }

    /// Waits until it is ready, at most `timeout`.
    ///
    /// # Errors
    ///
    /// [`QueryError::NotReady`] when it is still restoring after `timeout`.
    pub async fn ready(&self, timeout: Duration) -> Result<(), QueryError> {
        let wait = async {
            loop {
                let notified = self.inner.ready.notified();
                if self.inner.status(|s| s.ready) {
                    return;
                }
                notified.await;
            }
        };
        let _ = tokio::time::timeout(timeout, wait).await;
        self.check()
    }

    fn check(&self) -> Result<(), QueryError> {
        self.inner.status(|s| {
            if s.ready {
                Ok(())
            } else {
                Err(QueryError::NotReady {
                    read: s.read,
                    total: s.total,
                })
            }
        })
    }

    /// The value of `key`.
    ///
    /// # Errors
    ///
    /// [`QueryError::NotReady`] while restoring; [`QueryError::Store`] when
    /// the store fails or the value does not decode.
    pub fn get(&self, key: impl AsRef<[u8]>) -> Result<Option<V>, QueryError> {
        self.check()?;
        for backend in self.inner.partitions.values() {
            let found = backend
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .get(key.as_ref())?;
            if let Some(bytes) = found {
                return Ok(Some(self.decode(&bytes)?));
            }
        }
        Ok(None)
    }

    /// The entries with `from <= key < to`, in key order.
    ///
    /// # Errors
    ///
    /// As [`Projection::get`].
    pub fn range(
        &self,
        from: impl AsRef<[u8]>,
        to: impl AsRef<[u8]>,
    ) -> Result<Vec<(Bytes, V)>, QueryError> {
        self.entries(from.as_ref(), Some(to.as_ref()))
    }

    /// Every entry, in key order.
    ///
    /// # Errors
    ///
    /// As [`Projection::get`].
    pub fn all(&self) -> Result<Vec<(Bytes, V)>, QueryError> {
        self.entries(&[], None)
    }

    fn entries(&self, from: &[u8], to: Option<&[u8]>) -> Result<Vec<(Bytes, V)>, QueryError> {
        self.check()?;
        let mut entries = Vec::new();
        for backend in self.inner.partitions.values() {
            entries.extend(
                backend
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .range(from, to)?,
            );
        }
        entries.sort_by(|a, b| a.0.cmp(&b.0));
        entries
            .into_iter()
            .map(|(k, v)| Ok((k, self.decode(&v)?)))
            .collect()
    }

    fn decode(&self, bytes: &[u8]) -> Result<V, StoreError> {
        super::store::decode(&self.codec, bytes)
    }
}

#[cfg(feature = "axum")]
mod http {
    use axum::Json;
    use axum::extract::{Path, State};
    use axum::http::StatusCode;
    use axum::response::{IntoResponse, Response};
    use axum::routing::get;
    use serde::Serialize;
    use serde_json::{Map, Value, json};

    use super::{Projection, QueryError};
    use crate::record::Codec;

    impl<V, C> Projection<V, C>
    where
        V: Serialize + Send + 'static,
        C: Codec<V> + Clone + Send + Sync + 'static,
    {
        /// An axum router serving the projection as JSON: `GET /{name}` (an
        /// object of every key and value) and `GET /{name}/{key}` (the value,
        /// or 404). While it restores, both answer 503 with the progress.
        ///
        /// ```
        /// # use light_kafka::streams::projection::Projection;
        /// # fn serve(prices: Projection<u32>) {
        /// let app: axum::Router = axum::Router::new().merge(prices.router());
        /// # }
        /// ```
        pub fn router<S: Clone + Send + Sync + 'static>(&self) -> axum::Router<S> {
            let name = self.name().to_owned();
            axum::Router::new()
                .route(&format!("/{name}"), get(all::<V, C>))
                .route(&format!("/{name}/{{key}}"), get(one::<V, C>))
                .with_state(self.clone())
        }
    }

    fn failure(error: QueryError) -> Response {
        match error {
            QueryError::NotReady { read, total } => (
                StatusCode::SERVICE_UNAVAILABLE,
                Json(json!({"status": "restoring", "read": read, "total": total})),
            )
                .into_response(),
            QueryError::Store(error) => (
                StatusCode::INTERNAL_SERVER_ERROR,
                Json(json!({"error": error.to_string()})),
            )
                .into_response(),
        }
    }

    async fn one<V: Serialize, C: Codec<V>>(
        State(projection): State<Projection<V, C>>,
        Path(key): Path<String>,
    ) -> Response {
        match projection.get(&key) {
            Ok(Some(value)) => Json(value).into_response(),
            Ok(None) => (
                StatusCode::NOT_FOUND,
                Json(json!({"error": "no such key", "key": key})),
            )
                .into_response(),
            Err(error) => failure(error),
        }
    }

    async fn all<V: Serialize, C: Codec<V>>(
        State(projection): State<Projection<V, C>>,
    ) -> Response {
        match projection.all() {
            Ok(entries) => {
                let mut map = Map::new();
                for (key, value) in entries {
                    let value = serde_json::to_value(value).unwrap_or(Value::Null);
                    map.insert(String::from_utf8_lossy(&key).into_owned(), value);
                }
                Json(Value::Object(map)).into_response()
            }
            Err(error) => failure(error),
        }
    }
}
