//! [`EmbeddedKafka`]: a Kafka cluster inside the process, for tests, benches and the quickstart.
//!
//! It runs librdkafka's mock cluster (`rdkafka::mocking`) on loopback. Clients
//! connect to it like to any cluster, through [`EmbeddedKafka::bootstrap_servers`],
//! so the code under test is the code that runs against a real cluster: only the
//! `bootstrap.servers` value changes.
//!
//! The mock cluster is a test double with known limits:
//!
//! - it keeps only about 5 MB (and at most 100,000 message sets) per partition;
//!   older records are deleted and the low watermark rises, so size tests for it;
//! - it does not implement `read_committed` isolation: records of aborted
//!   transactions stay visible (the `LastStableOffset` it reports is the high
//!   watermark and it never returns aborted-transaction ranges).
//!
//! Error injection ([`EmbeddedKafka::request_errors`], [`EmbeddedKafka::topic_error`],
//! [`EmbeddedKafka::broker_down`]) lets tests exercise failure paths.
//!
//! ```
//! use light_kafka::service::embedded::EmbeddedKafka;
//!
//! let kafka = EmbeddedKafka::start()?;
//! kafka.create_topic("orders", 4)?;
//! assert!(kafka.bootstrap_servers().starts_with("127.0.0.1:"));
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use std::fmt;
use std::sync::mpsc;
use std::thread::JoinHandle;
use std::time::Duration;

use rdkafka::error::{KafkaError, KafkaResult};
use rdkafka::mocking::MockCluster;
use rdkafka::producer::DefaultProducerContext;
use rdkafka::types::{RDKafkaApiKey, RDKafkaRespErr};

use super::client::BuildError;

type Mock = MockCluster<'static, DefaultProducerContext>;
type Job = Box<dyn FnOnce(&Mock) + Send>;

/// An in-process Kafka cluster on loopback (librdkafka's mock cluster).
///
/// The cluster lives on a thread of its own, since librdkafka's handle may not
/// move between threads; it stops when this value is dropped.
pub struct EmbeddedKafka {
    bootstrap_servers: String,
    jobs: Option<mpsc::Sender<Job>>,
    thread: Option<JoinHandle<()>>,
}

impl EmbeddedKafka {
    /// Starts a cluster with one broker.
    ///
    /// # Errors
    ///
    /// A [`BuildError`] when librdkafka cannot create the cluster.
    pub fn start() -> Result<Self, BuildError> {
        EmbeddedKafka::with_brokers(1)
    }

    /// Starts a cluster with `brokers` brokers.
    ///
    /// # Errors
    ///
    /// A [`BuildError`] when librdkafka cannot create the cluster.
    pub fn with_brokers(brokers: i32) -> Result<Self, BuildError> {
        let (jobs_tx, jobs_rx) = mpsc::channel::<Job>();
        let (ready_tx, ready_rx) = mpsc::channel::<KafkaResult<String>>();
        let thread = std::thread::Builder::new()
            .name("light-kafka-embedded".into())
            .spawn(move || {
                let mock = match MockCluster::new(brokers) {
                    Ok(mock) => mock,
                    Err(e) => {
                        let _ = ready_tx.send(Err(e));
                        return;
                    }
                };
                let _ = ready_tx.send(Ok(mock.bootstrap_servers()));
                while let Ok(job) = jobs_rx.recv() {
                    job(&mock);
                }
            })
            .map_err(|e| {
                BuildError::new(format!("cannot start the embedded cluster thread: {e}"))
            })?;
        let bootstrap_servers = ready_rx
            .recv()
            .map_err(|_| BuildError::new("the embedded cluster thread exited"))?
            .map_err(|e| BuildError::kafka("cannot create the embedded cluster", e))?;
        running().push(bootstrap_servers.clone());
        Ok(EmbeddedKafka {
            bootstrap_servers,
            jobs: Some(jobs_tx),
            thread: Some(thread),
        })
    }

    /// The value for `bootstrap.servers`.
    pub fn bootstrap_servers(&self) -> &str {
        &self.bootstrap_servers
    }

    /// Runs `f` with the mock cluster on its thread and returns its result:
    /// the way to reach any `MockCluster` operation this type does not wrap.
    ///
    /// # Errors
    ///
    /// [`KafkaError::Canceled`] when the cluster thread is gone.
    pub fn with_mock_cluster<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Mock) -> KafkaResult<T> + Send + 'static,
    ) -> KafkaResult<T> {
        let (tx, rx) = mpsc::sync_channel(1);
        let job: Job = Box::new(move |mock| {
            let _ = tx.send(f(mock));
        });
        self.jobs
            .as_ref()
            .ok_or(KafkaError::Canceled)?
            .send(job)
            .map_err(|_| KafkaError::Canceled)?;
        rx.recv().map_err(|_| KafkaError::Canceled)?
    }

    /// Creates `topic` with `partitions` partitions (replication factor 1).
    ///
    /// # Errors
    ///
    /// The cluster's error, e.g. when the topic exists.
    pub fn create_topic(&self, topic: &str, partitions: i32) -> KafkaResult<()> {
        let topic = topic.to_owned();
        self.with_mock_cluster(move |mock| mock.create_topic(&topic, partitions, 1))
    }

    /// Makes the next requests of type `api_key` fail, one error per request, in order.
    ///
    /// # Errors
    ///
    /// [`KafkaError::Canceled`] when the cluster thread is gone.
    pub fn request_errors(
        &self,
        api_key: RDKafkaApiKey,
        errors: &[RDKafkaRespErr],
    ) -> KafkaResult<()> {
        let errors = errors.to_vec();
        self.with_mock_cluster(move |mock| {
            mock.request_errors(api_key, &errors);
            Ok(())
        })
    }

    /// Forgets the errors queued by [`EmbeddedKafka::request_errors`] for `api_key`.
    ///
    /// # Errors
    ///
    /// [`KafkaError::Canceled`] when the cluster thread is gone.
    pub fn clear_request_errors(&self, api_key: RDKafkaApiKey) -> KafkaResult<()> {
        self.with_mock_cluster(move |mock| {
            mock.clear_request_errors(api_key);
            Ok(())
        })
    }

    /// Makes every metadata answer for `topic` carry `error`
    /// (`RD_KAFKA_RESP_ERR_NO_ERROR` clears it).
    ///
    /// # Errors
    ///
    /// The cluster's error.
    pub fn topic_error(&self, topic: &str, error: RDKafkaRespErr) -> KafkaResult<()> {
        let topic = topic.to_owned();
        self.with_mock_cluster(move |mock| mock.topic_error(&topic, error))
    }

    /// Takes broker `broker_id` down: its connections close and it refuses new ones.
    ///
    /// # Errors
    ///
    /// The cluster's error.
    pub fn broker_down(&self, broker_id: i32) -> KafkaResult<()> {
        self.with_mock_cluster(move |mock| mock.broker_down(broker_id))
    }

    /// Brings broker `broker_id` back up.
    ///
    /// # Errors
    ///
    /// The cluster's error.
    pub fn broker_up(&self, broker_id: i32) -> KafkaResult<()> {
        self.with_mock_cluster(move |mock| mock.broker_up(broker_id))
    }

    /// Delays every response of broker `broker_id` by `delay`.
    ///
    /// # Errors
    ///
    /// The cluster's error.
    pub fn broker_round_trip_time(&self, broker_id: i32, delay: Duration) -> KafkaResult<()> {
        self.with_mock_cluster(move |mock| mock.broker_round_trip_time(broker_id, delay))
    }
}

/// The bootstrap servers of the embedded clusters running in this process.
fn running() -> std::sync::MutexGuard<'static, Vec<String>> {
    static RUNNING: std::sync::Mutex<Vec<String>> = std::sync::Mutex::new(Vec::new());
    RUNNING.lock().unwrap_or_else(|p| p.into_inner())
}

/// Whether `bootstrap` names an embedded cluster of this process (whose
/// transactional offset commits are not stored: librdkafka's mock cluster
/// answers `TxnOffsetCommit` without keeping the offsets).
pub(crate) fn is_embedded(bootstrap: &str) -> bool {
    running().iter().any(|b| b == bootstrap)
}

impl Drop for EmbeddedKafka {
    fn drop(&mut self) {
        running().retain(|b| *b != self.bootstrap_servers);
        // Closing the job channel ends the thread, which drops the cluster.
        self.jobs.take();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

impl fmt::Debug for EmbeddedKafka {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EmbeddedKafka")
            .field("bootstrap_servers", &self.bootstrap_servers)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn embedded_kafka_is_send_and_sync() {
        fn assert_send_sync<T: Send + Sync>() {}
        assert_send_sync::<EmbeddedKafka>();
    }

    #[test]
    fn creating_a_topic_twice_fails() {
        let kafka = EmbeddedKafka::start().unwrap();
        kafka.create_topic("dup", 1).unwrap();
        assert!(kafka.create_topic("dup", 1).is_err());
    }
}
