//! The state of the partitions a processor (or a test driver) owns, and the
//! step both run for one input record.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use tower::ServiceExt;
use tower_service::Service;

use super::outputs::{IntoOutputs, inherited, stamp};
use super::store::{Shard, SharedShard, Storage, StoreError, Stores, lock};
use crate::context::{Propagation, RecordContext};
use crate::error::BoxError;
use crate::record::Record;

/// The configured stores and, per owned partition, their open shards.
pub(crate) struct Tasks {
    application_id: Arc<str>,
    stores: Vec<(Arc<str>, Arc<dyn Storage>)>,
    owned: HashMap<i32, Stores>,
}

/// The opened backends of one partition, by store name.
pub(crate) type Backends = Vec<(Arc<str>, Box<dyn super::store::Backend>)>;

/// The writes of one shard taken at commit time, to log and then apply.
pub(crate) struct Staged {
    pub(crate) shard: SharedShard,
    pub(crate) store: Arc<str>,
    pub(crate) partition: i32,
    pub(crate) writes: Vec<(Bytes, Option<Bytes>)>,
}

impl Staged {
    /// The changelog records of these writes, in order.
    pub(crate) fn changelog(&self, application_id: &str) -> impl Iterator<Item = Record> + '_ {
        let topic: Arc<str> = changelog_topic(application_id, &self.store).into();
        self.writes.iter().map(move |(key, value)| {
            let mut record = Record::new(topic.clone());
            record.set_partition(Some(self.partition));
            record.set_key(Some(key.clone()));
            record.set_value(value.clone());
            record
        })
    }

    /// Applies the writes to the backend, with the changelog offset to
    /// restore from next time.
    pub(crate) fn apply(self, checkpoint: Option<i64>) -> Result<(), StoreError> {
        lock(&self.shard)
            .backend_mut()
            .write(&self.writes, checkpoint)
    }
}

/// How many partitions `topic` has (0 when it does not exist). Blocking.
pub(crate) fn partition_count<C: rdkafka::consumer::ConsumerContext>(
    consumer: &rdkafka::consumer::BaseConsumer<C>,
    topic: &str,
) -> Result<i32, crate::service::BuildError> {
    use rdkafka::consumer::Consumer as _;
    let metadata = consumer
        .fetch_metadata(Some(topic), std::time::Duration::from_secs(30))
        .map_err(|e| {
            crate::service::BuildError::kafka(format!("reading the metadata of `{topic}`"), e)
        })?;
    Ok(metadata
        .topics()
        .iter()
        .find(|t| t.name() == topic && t.error().is_none())
        .map_or(0, |t| t.partitions().len() as i32))
}

/// `<application.id>-<store>-changelog`.
pub fn changelog_topic(application_id: &str, store: &str) -> String {
    format!("{application_id}-{store}-changelog")
}

impl Tasks {
    pub(crate) fn new(application_id: Arc<str>, stores: Vec<(Arc<str>, Arc<dyn Storage>)>) -> Self {
        Tasks {
            application_id,
            stores,
            owned: HashMap::new(),
        }
    }

    pub(crate) fn application_id(&self) -> &str {
        &self.application_id
    }

    pub(crate) fn get(&self, partition: i32) -> Option<&Stores> {
        self.owned.get(&partition)
    }

    pub(crate) fn owned(&self) -> impl Iterator<Item = i32> + '_ {
        self.owned.keys().copied()
    }

    /// Opens the backends of every store for `partition` (not restored).
    pub(crate) fn open(&self, partition: i32) -> Result<Backends, StoreError> {
        self.stores
            .iter()
            .map(|(name, storage)| Ok((name.clone(), storage.open(name, partition)?)))
            .collect()
    }

    /// Takes ownership of `partition` with its (restored) backends.
    pub(crate) fn insert(&mut self, partition: i32, backends: Backends) -> Stores {
        let shards = backends
            .into_iter()
            .map(|(name, backend)| (name, Arc::new(Mutex::new(Shard::new(backend)))))
            .collect();
        let stores = Stores::new(partition, shards);
        self.owned.insert(partition, stores.clone());
        stores
    }

    /// Gives `partition` up (its backends close).
    pub(crate) fn remove(&mut self, partition: i32) {
        self.owned.remove(&partition);
    }

    /// Drops the pending writes of every owned shard (the transaction aborted).
    pub(crate) fn discard(&self) {
        for stores in self.owned.values() {
            for (_, shard) in stores.shards() {
                lock(shard).discard();
            }
        }
    }

    /// Takes the pending writes of every owned shard.
    pub(crate) fn stage(&self) -> Vec<Staged> {
        let mut staged = Vec::new();
        for stores in self.owned.values() {
            for (name, shard) in stores.shards() {
                let writes = lock(shard).take_pending();
                if !writes.is_empty() {
                    staged.push(Staged {
                        shard: shard.clone(),
                        store: name.clone(),
                        partition: stores.partition(),
                        writes,
                    });
                }
            }
        }
        staged
    }
}

/// Runs `record` through `service` with `stores` in its extensions, and
/// returns its outputs, each given the input's propagated context.
pub(crate) async fn step<S>(
    service: &mut S,
    mut record: Record,
    stores: Stores,
) -> Result<Vec<Record>, BoxError>
where
    S: Service<Record>,
    S::Response: IntoOutputs,
    S::Error: Into<BoxError>,
{
    // Copy-on-write: the headers are read only when there are outputs.
    let received = record.headers().clone();
    let context = RecordContext::of(&mut record);
    record.extensions_mut().insert(stores);
    let service = service.ready().await.map_err(Into::into)?;
    let mut outputs = service
        .call(record)
        .await
        .map_err(Into::into)?
        .into_outputs();
    if !outputs.is_empty() {
        let from = inherited(Propagation::from_headers(&received), &context);
        for output in &mut outputs {
            stamp(output, &from);
        }
    }
    Ok(outputs)
}
