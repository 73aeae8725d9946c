//! [`TestDriver`]: a processor's service, its stores and its outputs, with no
//! broker, in the spirit of Kafka Streams' `TopologyTestDriver`.
//!
//! Each [`pipe`](TestDriver::pipe) is one committed transaction: the record
//! runs through the service with its partition's [`Stores`] in its
//! extensions; on success the store writes are applied (and logged as
//! changelog records you can read back), the outputs collected; on failure
//! the writes are dropped, as an aborted transaction drops them. Time is
//! tokio's: under `#[tokio::test(start_paused = true)]`, timeouts and
//! sleeps in the chain run on a paused clock.
//!
//! ```
//! use light_kafka::record::Record;
//! use light_kafka::streams::driver::TestDriver;
//! use tower::service_fn;
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), light_kafka::BoxError> {
//! let upper = service_fn(|r: Record| async move {
//!     let text = r.value_str()?.to_uppercase();
//!     Ok::<_, light_kafka::BoxError>(Record::builder("loud").value(text).build())
//! });
//! let mut driver = TestDriver::new(upper);
//! driver.pipe(Record::builder("quiet").value("hi").build()).await?;
//! assert_eq!(driver.outputs()[0].value_str()?, "HI");
//! # Ok(()) }
//! ```

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;

use tower_service::Service;

use super::outputs::IntoOutputs;
use super::store::{MemoryStorage, Storage, StoreError, Stores};
use super::task::{Tasks, step};
use crate::error::BoxError;
use crate::record::{Codec, JsonCodec, Record};

/// Drives a stream processor's service without a broker. See the
/// [module documentation](self).
pub struct TestDriver<S> {
    service: S,
    stores: Vec<(Arc<str>, Arc<dyn Storage>)>,
    tasks: Option<Tasks>,
    outputs: Vec<Record>,
    changelog: Vec<Record>,
    offsets: HashMap<(String, i32), i64>,
}

impl<S> fmt::Debug for TestDriver<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TestDriver")
            .field("outputs", &self.outputs.len())
            .field("changelog", &self.changelog.len())
            .finish_non_exhaustive()
    }
}

impl<S> TestDriver<S>
where
    S: Service<Record>,
    S::Response: IntoOutputs,
    S::Error: Into<BoxError>,
{
    /// A driver for `service`, with no stores yet.
    pub fn new(service: S) -> Self {
        TestDriver {
            service,
            stores: Vec::new(),
            tasks: None,
            outputs: Vec::new(),
            changelog: Vec::new(),
            offsets: HashMap::new(),
        }
    }

    /// Adds an in-memory store `name`.
    pub fn store(self, name: impl Into<String>) -> Self {
        self.store_with(name, MemoryStorage)
    }

    /// Adds a store `name` kept by `storage`.
    pub fn store_with(mut self, name: impl Into<String>, storage: impl Storage) -> Self {
        self.stores.push((name.into().into(), Arc::new(storage)));
        self.tasks = None;
        self
    }

    fn tasks(&mut self) -> &mut Tasks {
        let stores = &self.stores;
        self.tasks
            .get_or_insert_with(|| Tasks::new("test-driver".into(), stores.clone()))
    }

    fn stores_of(&mut self, partition: i32) -> Result<Stores, StoreError> {
        let tasks = self.tasks();
        if let Some(stores) = tasks.get(partition) {
            return Ok(stores.clone());
        }
        let backends = tasks.open(partition)?;
        Ok(tasks.insert(partition, backends))
    }

    /// Runs `record` as one transaction and returns its outputs (also kept in
    /// [`outputs`](TestDriver::outputs)). A record without a partition is on
    /// partition 0; one without an offset gets the next of its partition.
    ///
    /// # Errors
    ///
    /// The service's error (the transaction is then aborted: no store write
    /// and no output remains), or a [`StoreError`] opening a store.
    pub async fn pipe(&mut self, mut record: Record) -> Result<Vec<Record>, BoxError> {
        let partition = *record.partition().get_or_insert(0);
        record.set_partition(Some(partition));
        let next = self
            .offsets
            .entry((record.topic().to_owned(), partition))
            .or_insert(0);
        let offset = record.offset().unwrap_or(*next);
        record.set_offset(Some(offset));
        *next = offset + 1;
        let stores = self.stores_of(partition)?;
        match step(&mut self.service, record, stores).await {
            Ok(outputs) => {
                let tasks = self.tasks();
                let application_id = tasks.application_id().to_owned();
                let mut logged = Vec::new();
                for staged in tasks.stage() {
                    logged.extend(staged.changelog(&application_id));
                    staged.apply(None)?;
                }
                self.changelog.extend(logged);
                self.outputs.extend(outputs.iter().cloned());
                Ok(outputs)
            }
            Err(error) => {
                self.tasks().discard();
                Err(error)
            }
        }
    }

    /// Every output so far, in order.
    pub fn outputs(&self) -> &[Record] {
        &self.outputs
    }

    /// Takes the outputs so far.
    pub fn take_outputs(&mut self) -> Vec<Record> {
        std::mem::take(&mut self.outputs)
    }

    /// Every changelog record written so far (topic
    /// `test-driver-<store>-changelog`), in order.
    pub fn changelog(&self) -> &[Record] {
        &self.changelog
    }

    /// The stores of `partition`, to read (or seed) directly.
    ///
    /// # Errors
    ///
    /// A [`StoreError`] opening a store.
    pub fn stores(&mut self, partition: i32) -> Result<Stores, StoreError> {
        self.stores_of(partition)
    }

    /// The JSON value under `key` in `store` of `partition`.
    ///
    /// # Errors
    ///
    /// A [`StoreError`] when there is no such store or the value does not decode.
    pub fn json<V>(
        &mut self,
        store: &str,
        partition: i32,
        key: impl AsRef<[u8]>,
    ) -> Result<Option<V>, StoreError>
    where
        JsonCodec: Codec<V>,
    {
        self.stores_of(partition)?.json::<V>(store)?.get(key)
    }

    /// The service.
    pub fn get_mut(&mut self) -> &mut S {
        &mut self.service
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Error;
    use crate::error::ErrorKind;
    use tower::service_fn;

    #[tokio::test(start_paused = true)]
    async fn a_failed_record_leaves_no_write_and_no_output() {
        let service = service_fn(|r: Record| async move {
            let counts = Stores::of(&r)?.json::<u64>("n")?;
            counts.put("k", &(counts.get("k")?.unwrap_or(0) + 1))?;
            if r.value_str()? == "bad" {
                return Err(Error::new(ErrorKind::Invalid, "bad").into());
            }
            tokio::time::sleep(std::time::Duration::from_secs(60)).await;
            Ok::<_, BoxError>(vec![Record::builder("out").build()])
        });
        let mut driver = TestDriver::new(service).store("n");
        driver
            .pipe(Record::builder("in").value("ok").build())
            .await
            .unwrap();
        assert!(
            driver
                .pipe(Record::builder("in").value("bad").build())
                .await
                .is_err()
        );
        assert_eq!(driver.json::<u64>("n", 0, "k").unwrap(), Some(1));
        assert_eq!(driver.outputs().len(), 1);
        assert_eq!(driver.changelog().len(), 1);
        assert_eq!(driver.changelog()[0].topic(), "test-driver-n-changelog");
        assert_eq!(driver.changelog()[0].value_str().unwrap(), "1");
    }

    #[tokio::test]
    async fn partitions_have_their_own_stores() {
        let service = service_fn(|r: Record| async move {
            let s = Stores::of(&r)?.json::<i32>("p")?;
            s.put("me", &Stores::of(&r)?.partition())?;
            Ok::<_, BoxError>(())
        });
        let mut driver = TestDriver::new(service).store("p");
        let mut record = Record::builder("in").build();
        record.set_partition(Some(2));
        driver.pipe(record).await.unwrap();
        assert_eq!(driver.json::<i32>("p", 2, "me").unwrap(), Some(2));
        assert_eq!(driver.json::<i32>("p", 0, "me").unwrap(), None);
    }
}
