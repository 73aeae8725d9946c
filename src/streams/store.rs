//! State stores: ordered key-value tables owned by one input partition, whose
//! writes are logged to a compacted changelog topic.
//!
//! A handler run by a [`StreamProcessor`](super::processor::StreamProcessor)
//! (or by the [`TestDriver`](super::driver::TestDriver)) finds the stores of
//! its record's partition in the record's extensions, as [`Stores`], and opens
//! a typed view with [`Stores::json`] or [`Stores::store`]:
//!
//! ```
//! use light_kafka::record::Record;
//! use light_kafka::streams::driver::TestDriver;
//! use light_kafka::streams::store::Stores;
//! use tower::service_fn;
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), light_kafka::BoxError> {
//! let counter = service_fn(|record: Record| async move {
//!     let counts = Stores::of(&record)?.json::<u64>("counts")?;
//!     let key = record.key().cloned().unwrap_or_default();
//!     let n = counts.get(&key)?.unwrap_or(0) + 1;
//!     counts.put(&key, &n)?;
//!     Ok::<_, light_kafka::BoxError>(vec![])
//! });
//! let mut driver = TestDriver::new(counter).store("counts");
//! for _ in 0..3 {
//!     driver.pipe(Record::builder("clicks").key("home").build()).await?;
//! }
//! assert_eq!(driver.json::<u64>("counts", 0, "home")?, Some(3));
//! # Ok(()) }
//! ```
//!
//! Writes made while a record is handled are *pending*: later reads in the
//! same transaction see them, and they reach the store's backend (and its
//! changelog) only when the transaction commits. An aborted transaction
//! leaves the store as it was.
//!
//! Two backends ship: [`MemoryStorage`] (a `BTreeMap`, rebuilt from the
//! changelog on every assignment) and, with the `redb` feature,
//! [`RedbStorage`](super::persistent::RedbStorage) (a file per store, restored
//! from its checkpointed changelog offset).

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::marker::PhantomData;
use std::ops::Bound;
use std::sync::{Arc, Mutex, MutexGuard};

use bytes::Bytes;

use crate::error::{BoxError, ErrorKind, Kinded};
use crate::record::{Codec, JsonCodec, Record};

/// How a store operation failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum StoreErrorKind {
    /// No store of that name was configured.
    UnknownStore,
    /// The record carries no [`Stores`]: it is not being handled by a stream
    /// processor or a test driver.
    NoStores,
    /// A value did not encode or decode.
    Codec,
    /// The backend (a file, a disk) failed.
    Backend,
    /// Restoring from the changelog failed.
    Restore,
}

/// A failed store operation.
#[derive(Debug)]
pub struct StoreError {
    kind: StoreErrorKind,
    message: String,
    source: Option<BoxError>,
}

impl StoreError {
    pub(crate) fn new(kind: StoreErrorKind, message: impl Into<String>) -> Self {
        StoreError {
            kind,
            message: message.into(),
            source: None,
        }
    }

    pub(crate) fn caused_by(mut self, source: impl Into<BoxError>) -> Self {
        self.source = Some(source.into());
        self
    }

    /// A backend failure, for implementors of [`Backend`].
    pub fn backend(message: impl Into<String>, source: impl Into<BoxError>) -> Self {
        StoreError::new(StoreErrorKind::Backend, message).caused_by(source)
    }

    /// What failed.
    pub fn kind(&self) -> StoreErrorKind {
        self.kind
    }
}

impl fmt::Display for StoreError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)?;
        if let Some(source) = &self.source {
            write!(f, ": {source}")?;
        }
        Ok(())
    }
}

impl std::error::Error for StoreError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.source.as_deref().map(|e| e as _)
    }
}

impl Kinded for StoreError {
    fn kind(&self) -> ErrorKind {
        match self.kind {
            StoreErrorKind::Codec => ErrorKind::Deserialization,
            StoreErrorKind::UnknownStore | StoreErrorKind::NoStores => ErrorKind::Config,
            StoreErrorKind::Backend | StoreErrorKind::Restore => ErrorKind::Transient,
        }
    }
}

/// Entries of a range, in key order.
pub type Entries = Vec<(Bytes, Bytes)>;

/// Where one store of one partition keeps its committed entries.
///
/// Implement it to keep state somewhere else; [`MemoryBackend`] is the
/// reference. Every method is called from one thread at a time.
pub trait Backend: Send + 'static {
    /// The value under `key`.
    ///
    /// # Errors
    ///
    /// A [`StoreError`] when the backend cannot be read.
    fn get(&self, key: &[u8]) -> Result<Option<Bytes>, StoreError>;

    /// The entries with `from <= key < to` (`to` `None`: to the end), in key order.
    ///
    /// # Errors
    ///
    /// A [`StoreError`] when the backend cannot be read.
    fn range(&self, from: &[u8], to: Option<&[u8]>) -> Result<Entries, StoreError>;

    /// Applies `writes` (a `None` value deletes) atomically, with the
    /// changelog offset to restore from next time, when known.
    ///
    /// # Errors
    ///
    /// A [`StoreError`] when the backend cannot be written.
    fn write(
        &mut self,
        writes: &[(Bytes, Option<Bytes>)],
        checkpoint: Option<i64>,
    ) -> Result<(), StoreError>;

    /// The changelog offset from which to restore: `None` restores from the
    /// beginning (always, for a store that does not outlive the process).
    ///
    /// # Errors
    ///
    /// A [`StoreError`] when the backend cannot be read.
    fn checkpoint(&self) -> Result<Option<i64>, StoreError>;
}

/// Opens the [`Backend`] of one store for one partition.
pub trait Storage: Send + Sync + 'static {
    /// Opens (or creates) the backend of `store` for `partition`.
    ///
    /// # Errors
    ///
    /// A [`StoreError`] when the backend cannot be opened.
    fn open(&self, store: &str, partition: i32) -> Result<Box<dyn Backend>, StoreError>;
}

/// In-memory stores, rebuilt from their changelog on every assignment.
#[derive(Clone, Copy, Debug, Default)]
pub struct MemoryStorage;

impl Storage for MemoryStorage {
    fn open(&self, _store: &str, _partition: i32) -> Result<Box<dyn Backend>, StoreError> {
        Ok(Box::new(MemoryBackend::default()))
    }
}

/// A store in a `BTreeMap`.
#[derive(Clone, Debug, Default)]
pub struct MemoryBackend {
    entries: BTreeMap<Bytes, Bytes>,
}

impl Backend for MemoryBackend {
    fn get(&self, key: &[u8]) -> Result<Option<Bytes>, StoreError> {
        Ok(self.entries.get(key).cloned())
    }

    fn range(&self, from: &[u8], to: Option<&[u8]>) -> Result<Entries, StoreError> {
        let upper = to.map_or(Bound::Unbounded, Bound::Excluded);
        Ok(self
            .entries
            .range::<[u8], _>((Bound::Included(from), upper))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect())
    }

    fn write(
        &mut self,
        writes: &[(Bytes, Option<Bytes>)],
        _checkpoint: Option<i64>,
    ) -> Result<(), StoreError> {
        for (key, value) in writes {
            match value {
                Some(value) => self.entries.insert(key.clone(), value.clone()),
                None => self.entries.remove(key),
            };
        }
        Ok(())
    }

    fn checkpoint(&self) -> Result<Option<i64>, StoreError> {
        Ok(None)
    }
}

/// One store of one partition: the committed backend and the writes of the
/// open transaction.
pub(crate) struct Shard {
    backend: Box<dyn Backend>,
    pending: BTreeMap<Bytes, Option<Bytes>>,
}

impl Shard {
    pub(crate) fn new(backend: Box<dyn Backend>) -> Self {
        Shard {
            backend,
            pending: BTreeMap::new(),
        }
    }

    fn get(&self, key: &[u8]) -> Result<Option<Bytes>, StoreError> {
        match self.pending.get(key) {
            Some(value) => Ok(value.clone()),
            None => self.backend.get(key),
        }
    }

    fn range(&self, from: &[u8], to: Option<&[u8]>) -> Result<Entries, StoreError> {
        let mut merged: BTreeMap<Bytes, Bytes> =
            self.backend.range(from, to)?.into_iter().collect();
        let upper = to.map_or(Bound::Unbounded, Bound::Excluded);
        for (key, value) in self
            .pending
            .range::<[u8], _>((Bound::Included(from), upper))
        {
            match value {
                Some(value) => merged.insert(key.clone(), value.clone()),
                None => merged.remove(key),
            };
        }
        Ok(merged.into_iter().collect())
    }

    /// Takes the pending writes, to log and then apply them.
    pub(crate) fn take_pending(&mut self) -> Vec<(Bytes, Option<Bytes>)> {
        std::mem::take(&mut self.pending).into_iter().collect()
    }

    pub(crate) fn discard(&mut self) {
        self.pending.clear();
    }

    pub(crate) fn backend_mut(&mut self) -> &mut dyn Backend {
        self.backend.as_mut()
    }
}

pub(crate) type SharedShard = Arc<Mutex<Shard>>;

pub(crate) fn lock(shard: &SharedShard) -> MutexGuard<'_, Shard> {
    shard.lock().unwrap_or_else(|p| p.into_inner())
}

/// The stores of one partition, found in the extensions of every record a
/// stream processor or a test driver hands to its service.
#[derive(Clone)]
pub struct Stores {
    partition: i32,
    shards: Arc<HashMap<Arc<str>, SharedShard>>,
}

impl Stores {
    pub(crate) fn new(partition: i32, shards: HashMap<Arc<str>, SharedShard>) -> Self {
        Stores {
            partition,
            shards: Arc::new(shards),
        }
    }

    /// The stores in `record`'s extensions.
    ///
    /// # Errors
    ///
    /// A [`StoreError`] of kind `NoStores` when the record is not being
    /// handled by a stream processor or a test driver.
    pub fn of(record: &Record) -> Result<&Stores, StoreError> {
        record.extensions().get::<Stores>().ok_or_else(|| {
            StoreError::new(
                StoreErrorKind::NoStores,
                "the record carries no state stores: it is not handled by a stream processor",
            )
        })
    }

    /// The partition these stores belong to.
    pub fn partition(&self) -> i32 {
        self.partition
    }

    /// The store `name`, its values encoded with `codec`.
    ///
    /// # Errors
    ///
    /// A [`StoreError`] of kind `UnknownStore` when no store has that name.
    pub fn store<V, C: Codec<V>>(&self, name: &str, codec: C) -> Result<Store<V, C>, StoreError> {
        let shard = self.shards.get(name).cloned().ok_or_else(|| {
            StoreError::new(
                StoreErrorKind::UnknownStore,
                format!("no state store named `{name}` was configured"),
            )
        })?;
        Ok(Store {
            shard,
            codec,
            value: PhantomData,
        })
    }

    /// The store `name`, its values in JSON.
    ///
    /// # Errors
    ///
    /// As [`Stores::store`].
    pub fn json<V>(&self, name: &str) -> Result<Store<V, JsonCodec>, StoreError>
    where
        JsonCodec: Codec<V>,
    {
        self.store(name, JsonCodec)
    }

    pub(crate) fn shards(&self) -> impl Iterator<Item = (&Arc<str>, &SharedShard)> {
        self.shards.iter()
    }
}

impl fmt::Debug for Stores {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut names: Vec<_> = self.shards.keys().collect();
        names.sort();
        f.debug_struct("Stores")
            .field("partition", &self.partition)
            .field("stores", &names)
            .finish()
    }
}

/// A typed view of one store of one partition. Keys are bytes (a record key,
/// an aggregate id), ordered bytewise; values go through the codec.
pub struct Store<V, C> {
    shard: SharedShard,
    codec: C,
    value: PhantomData<fn() -> V>,
}

impl<V, C: Codec<V>> Store<V, C> {
    /// The value under `key`.
    ///
    /// # Errors
    ///
    /// A [`StoreError`] when the backend fails or the value does not decode.
    pub fn get(&self, key: impl AsRef<[u8]>) -> Result<Option<V>, StoreError> {
        let bytes = lock(&self.shard).get(key.as_ref())?;
        bytes.map(|b| self.decode(&b)).transpose()
    }

    /// Puts `value` under `key` (pending until the transaction commits).
    ///
    /// # Errors
    ///
    /// A [`StoreError`] when the value does not encode.
    pub fn put(&self, key: impl AsRef<[u8]>, value: &V) -> Result<(), StoreError> {
        let bytes = self.codec.encode(value).map_err(|e| {
            StoreError::new(StoreErrorKind::Codec, "cannot encode a store value").caused_by(e)
        })?;
        lock(&self.shard)
            .pending
            .insert(Bytes::copy_from_slice(key.as_ref()), Some(bytes));
        Ok(())
    }

    /// Deletes `key` (a tombstone in the changelog).
    ///
    /// # Errors
    ///
    /// None today; fallible for backends to come.
    pub fn delete(&self, key: impl AsRef<[u8]>) -> Result<(), StoreError> {
        lock(&self.shard)
            .pending
            .insert(Bytes::copy_from_slice(key.as_ref()), None);
        Ok(())
    }

    /// The entries with `from <= key < to`, in key order.
    ///
    /// # Errors
    ///
    /// A [`StoreError`] when the backend fails or a value does not decode.
    pub fn range(
        &self,
        from: impl AsRef<[u8]>,
        to: impl AsRef<[u8]>,
    ) -> Result<Vec<(Bytes, V)>, StoreError> {
        self.entries(lock(&self.shard).range(from.as_ref(), Some(to.as_ref()))?)
    }

    /// Every entry, in key order.
    ///
    /// # Errors
    ///
    /// As [`Store::range`].
    pub fn scan(&self) -> Result<Vec<(Bytes, V)>, StoreError> {
        self.entries(lock(&self.shard).range(&[], None)?)
    }

    fn entries(&self, entries: Entries) -> Result<Vec<(Bytes, V)>, StoreError> {
        entries
            .into_iter()
            .map(|(k, v)| Ok((k, self.decode(&v)?)))
            .collect()
    }

    fn decode(&self, bytes: &[u8]) -> Result<V, StoreError> {
        decode(&self.codec, bytes)
    }
}

/// Decodes a stored value, a codec failure as a [`StoreError`] of kind `Codec`.
pub(crate) fn decode<V, C: Codec<V>>(codec: &C, bytes: &[u8]) -> Result<V, StoreError> {
    codec.decode(bytes).map_err(|e| {
        StoreError::new(StoreErrorKind::Codec, "cannot decode a stored value").caused_by(e)
    })
}

impl<V, C> fmt::Debug for Store<V, C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Store").finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stores() -> Stores {
        let shard = Arc::new(Mutex::new(Shard::new(Box::new(MemoryBackend::default()))));
        Stores::new(3, HashMap::from([(Arc::from("s"), shard)]))
    }

    #[test]
    fn pending_writes_are_read_back_and_merged_into_ranges() {
        let stores = stores();
        let store = stores.json::<u32>("s").unwrap();
        lock(stores.shards.get("s").unwrap())
            .backend_mut()
            .write(
                &[
                    (Bytes::from("a"), Some(Bytes::from("1"))),
                    (Bytes::from("b"), Some(Bytes::from("2"))),
                    (Bytes::from("c"), Some(Bytes::from("3"))),
                ],
                None,
            )
            .unwrap();
        store.put("b", &20).unwrap();
        store.delete("c").unwrap();
        store.put("d", &4).unwrap();
        assert_eq!(store.get("b").unwrap(), Some(20));
        assert_eq!(store.get("c").unwrap(), None);
        let all: Vec<_> = store.scan().unwrap().into_iter().map(|(_, v)| v).collect();
        assert_eq!(all, [1, 20, 4]);
        let some: Vec<_> = store
            .range("b", "d")
            .unwrap()
            .into_iter()
            .map(|(_, v)| v)
            .collect();
        assert_eq!(some, [20]);
    }

    #[test]
    fn discarded_writes_leave_the_backend_unchanged() {
        let stores = stores();
        let store = stores.json::<u32>("s").unwrap();
        store.put("a", &1).unwrap();
        lock(stores.shards.get("s").unwrap()).discard();
        assert_eq!(store.get("a").unwrap(), None);
    }

    #[test]
    fn errors_name_what_is_missing_or_wrong() {
        let stores = stores();
        let err = stores.json::<u32>("nope").unwrap_err();
        assert_eq!(err.kind(), StoreErrorKind::UnknownStore);
        assert!(err.to_string().contains("`nope`"));
        let store = stores.json::<u32>("s").unwrap();
        stores
            .json::<String>("s")
            .unwrap()
            .put("k", &"x".to_owned())
            .unwrap();
        let err = store.get("k").unwrap_err();
        assert_eq!(Kinded::kind(&err), ErrorKind::Deserialization);
        let err = Stores::of(&Record::builder("t").build()).unwrap_err();
        assert_eq!(err.kind(), StoreErrorKind::NoStores);
    }
}
