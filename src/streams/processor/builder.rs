//! Configuring a processor, and what building it checks and creates
//! (input partitions, changelog topics, the transactional producer).

#[allow(unused_imports)]
use super::*;

/// Configures a [`StreamProcessor`].
pub struct StreamProcessorBuilder {
    pub(super) application_id: String,
    pub(super) instance_id: Option<String>,
    pub(super) topics: Vec<String>,
    pub(super) common: ClientConfig,
    pub(super) consumer: ClientConfig,
    pub(super) producer: ClientConfig,
    pub(super) stores: Vec<(Arc<str>, Arc<dyn Storage>)>,
    pub(super) max_batch: usize,
    pub(super) max_batch_time: Duration,
    pub(super) backoff: (Duration, Duration),
    pub(super) operation_timeout: Duration,
    pub(super) group_commit: Option<bool>,
    pub(super) static_membership: bool,
}

impl fmt::Debug for StreamProcessorBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StreamProcessorBuilder")
            .field("application_id", &self.application_id)
            .field("topics", &self.topics)
            .field(
                "stores",
                &self.stores.iter().map(|s| &s.0).collect::<Vec<_>>(),
            )
            .finish_non_exhaustive()
    }
}

impl StreamProcessorBuilder {
    /// Sets `bootstrap.servers`.
    pub fn bootstrap_servers(self, servers: impl Into<String>) -> Self {
        self.set("bootstrap.servers", servers)
    }

    /// The topics to consume. Topics with stores must be co-partitioned: a
    /// partition's stores serve partition `n` of every input topic.
    pub fn topics<I, T>(mut self, topics: I) -> Self
    where
        I: IntoIterator<Item = T>,
        T: Into<String>,
    {
        self.topics.extend(topics.into_iter().map(Into::into));
        self
    }

    /// Sets a librdkafka property on both the consumer and the producer
    /// (`bootstrap.servers`, security settings...).
    pub fn set(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.common.set(key, value);
        self
    }

    /// Sets a librdkafka property of the consumer only.
    pub fn consumer_set(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.consumer.set(key, value);
        self
    }

    /// Sets a librdkafka property of the producer only (for example
    /// `transaction.timeout.ms`, 10 s by default here as in Kafka Streams).
    pub fn producer_set(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.producer.set(key, value);
        self
    }

    /// This instance's stable name: its `transactional.id` is
    /// `<application.id>-<instance>`. A restarted instance with the same name
    /// fences its predecessor at once and aborts the transaction it left open.
    /// Default: a random name, so instances never fence each other, and a
    /// transaction left open by a crash holds its partitions until
    /// `transaction.timeout.ms`. Set it (a pod name, a host name) in production.
    pub fn instance_id(mut self, id: impl Into<String>) -> Self {
        self.instance_id = Some(id.into());
        self
    }

    /// Joins the consumer group as a static member (KIP-345): the consumer's
    /// `group.instance.id` is `<application.id>-<instance>`, the name set with
    /// [`instance_id`](Self::instance_id), which is then required. A static
    /// member does not leave the group when it stops, so an instance that
    /// restarts (a new pod with the same name, a process killed and started
    /// again) gets its partitions back at once: no rebalance, and no wait for
    /// `session.timeout.ms` to expire the member it replaces. An instance that
    /// stays away longer than `session.timeout.ms` is expired and its
    /// partitions move to the others, so set that timeout to the longest
    /// restart you want to ride out. Two instances running with the same name
    /// fence each other: the older one stops with
    /// [`ProcessorErrorKind::Fenced`]. Default: off (dynamic membership).
    pub fn static_membership(mut self, on: bool) -> Self {
        self.static_membership = on;
        self
    }

    /// Adds an in-memory state store `name`, restored from its changelog.
    pub fn store(self, name: impl Into<String>) -> Self {
        self.store_with(name, MemoryStorage)
    }

    /// Adds a state store `name` kept by `storage` (for example
    /// [`RedbStorage`](crate::streams::persistent::RedbStorage)).
    pub fn store_with(mut self, name: impl Into<String>, storage: impl Storage) -> Self {
        self.stores.push((name.into().into(), Arc::new(storage)));
        self
    }

    /// Most input records per transaction. Default: 10,000 (so that under load
    /// a transaction usually ends by time, as in Kafka Streams; a failed record
    /// makes the whole batch run again).
    pub fn max_batch(mut self, records: usize) -> Self {
        self.max_batch = records.max(1);
        self
    }

    /// Longest a transaction waits for more input after its first record.
    /// Default: 100 ms.
    pub fn max_batch_time(mut self, time: Duration) -> Self {
        self.max_batch_time = time;
        self
    }

    /// The backoff after an aborted transaction: `first`, doubling up to
    /// `max`. Default: 100 ms to 5 s.
    pub fn backoff(mut self, first: Duration, max: Duration) -> Self {
        self.backoff = (first, max.max(first));
        self
    }

    /// How long one transaction operation (init, offsets, commit, abort) may
    /// block. Default: 30 s.
    pub fn operation_timeout(mut self, timeout: Duration) -> Self {
        self.operation_timeout = timeout;
        self
    }

    /// Also commits each transaction's input offsets through the consumer
    /// group once the transaction committed. Kafka needs nothing of the sort
    /// (the offsets commit inside the transaction) and it is off by default;
    /// it is on by default against an [`EmbeddedKafka`](crate::service::embedded::EmbeddedKafka)
    /// of this process, because librdkafka's mock cluster does not store
    /// offsets committed in a transaction. There a crash between the two
    /// commits reprocesses a batch: exactly-once holds on Kafka only.
    pub fn commit_offsets_to_group(mut self, on: bool) -> Self {
        self.group_commit = Some(on);
        self
    }

    /// Creates the consumer and the transactional producer (fencing an
    /// earlier instance of the same name), and makes sure every store's
    /// changelog topic exists, compacted, with a partition per input partition.
    ///
    /// # Errors
    ///
    /// A [`BuildError`] when a setting is missing or wrong (static membership
    /// without an instance id), a changelog topic is missing and cannot be
    /// created, or the producer cannot initialise its transactions.
    pub async fn build(self) -> Result<StreamProcessor, BuildError> {
        check_bootstrap(&self.common)?;
        if self.application_id.trim().is_empty() {
            return Err(BuildError::missing(
                "application.id",
                "the application id is empty",
            ));
        }
        if self.topics.is_empty() {
            return Err(BuildError::missing("topics", "no topic to consume"));
        }
        if self.static_membership && self.instance_id.is_none() {
            return Err(BuildError::missing(
                "instance_id",
                "static membership needs the instance's stable name (instance_id)",
            ));
        }
        let mut consumer_config = self.common.clone();
        consumer_config
            .set("group.id", &self.application_id)
            .set("enable.auto.commit", "false")
            .set("enable.auto.offset.store", "false")
            .set("auto.offset.reset", "earliest")
            .set("isolation.level", "read_committed");
        for (k, v) in crate::service::client::properties(&self.consumer) {
            consumer_config.set(k, v);
        }
        consumer_config.set("enable.auto.commit", "false");
        if let (true, Some(instance)) = (self.static_membership, &self.instance_id) {
            consumer_config.set(
                "group.instance.id",
                format!("{}-{instance}", self.application_id),
            );
        }

        if !self.stores.is_empty() {
            let partitions = input_partitions(&self.common, &self.topics).await?;
            let names: Vec<String> = self
                .stores
                .iter()
                .map(|(name, _)| changelog_topic(&self.application_id, name))
                .collect();
            ensure_changelogs(&self.common, names, partitions).await?;
        }

        let instance = self
            .instance_id
            .clone()
            .unwrap_or_else(|| uuid::Uuid::now_v7().to_string());
        let mut producer =
            TransactionalProducer::builder(format!("{}-{instance}", self.application_id))
                .operation_timeout(self.operation_timeout)
                .set("transaction.timeout.ms", "10000");
        for (k, v) in crate::service::client::properties(&self.common)
            .chain(crate::service::client::properties(&self.producer))
        {
            producer = producer.set(k, v);
        }
        let transaction_timeout = self
            .producer
            .get("transaction.timeout.ms")
            .or_else(|| self.common.get("transaction.timeout.ms"))
            .and_then(|ms| ms.trim().parse::<u64>().ok())
            .map_or(Duration::from_secs(10), Duration::from_millis);
        let rebuild = producer.clone();
        let producer = producer
            .build()
            .await
            .map_err(|e| BuildError::caused_by("the processor's transactional producer", e))?;

        let shared = Arc::new(Shared::default());
        let context = ProcessorContext {
            shared: shared.clone(),
            ..ProcessorContext::default()
        };
        crate::service::client::raise_log_level(&mut consumer_config);
        let consumer: StreamConsumer<ProcessorContext> = consumer_config
            .create_with_context(context)
            .map_err(|e| BuildError::kafka("creating the processor's consumer", e))?;
        let topics: Vec<&str> = self.topics.iter().map(String::as_str).collect();
        consumer
            .subscribe(&topics)
            .map_err(|e| BuildError::kafka("subscribing", e))?;
        let group_commit = self.group_commit.unwrap_or_else(|| {
            self.common
                .get("bootstrap.servers")
                .is_some_and(crate::service::embedded::is_embedded)
        });
        Ok(StreamProcessor {
            group_commit,
            consumer: Arc::new(consumer),
            slot: Arc::new(Slot {
                generation: AtomicU64::new(0),
                producer: Mutex::new(producer.clone()),
            }),
            producer,
            rebuild,
            transaction_timeout,
            stalls: HashMap::new(),
            tasks: Tasks::new(self.application_id.into(), self.stores),
            restore_config: self.common,
            handle: ProcessorHandle {
                shutdown: CancellationToken::new(),
                shared,
            },
            max_batch: self.max_batch,
            max_batch_time: self.max_batch_time,
            backoff: self.backoff,
            throttle: LogThrottle::default(),
        })
    }
}

/// The largest partition count among `topics`.
pub(super) async fn input_partitions(
    config: &ClientConfig,
    topics: &[String],
) -> Result<i32, BuildError> {
    let (mut config, topics) = (config.clone(), topics.to_vec());
    crate::service::client::raise_log_level(&mut config);
    let context = WatchContext::default();
    let connect = context.connect.clone();
    let consumer: BaseConsumer<WatchContext> = config
        .create_with_context(context)
        .map_err(|e| BuildError::kafka("creating a metadata client", e))?;
    let failed = connect.failed_owned();
    let fetch = tokio::task::spawn_blocking(move || {
        let mut most = 0;
        for topic in &topics {
            match crate::streams::task::partition_count(&consumer, topic)? {
                0 => {
                    return Err(BuildError::invalid(
                        "topics",
                        format!("the input topic `{topic}` does not exist"),
                    ));
                }
                n => most = most.max(n),
            }
        }
        Ok(most)
    });
    // A connection that can never succeed ends the wait at once, and names
    // the cause of a metadata request that failed because of it.
    let result = tokio::select! {
        result = fetch => result
            .unwrap_or_else(|e| Err(BuildError::new(format!("metadata task failed: {e}")))),
        () = failed => Err(BuildError::new("the connection failed")),
    };
    match (result, connect.failure()) {
        (Err(_), Some(failure)) => Err(BuildError::caused_by(
            "reading the input topics",
            failure.clone(),
        )),
        (result, _) => result,
    }
}

/// Creates the changelog topics that are missing (compacted, `partitions`
/// partitions) and checks those that exist have enough partitions.
pub(super) async fn ensure_changelogs(
    config: &ClientConfig,
    topics: Vec<String>,
    partitions: i32,
) -> Result<(), BuildError> {
    use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
    use rdkafka::client::DefaultClientContext;
    let admin: AdminClient<DefaultClientContext> = config
        .create()
        .map_err(|e| BuildError::kafka("creating an admin client", e))?;
    let new: Vec<NewTopic<'_>> = topics
        .iter()
        .map(|t| {
            NewTopic::new(t, partitions, TopicReplication::Fixed(-1))
                .set("cleanup.policy", "compact")
        })
        .collect();
    let options = AdminOptions::new().operation_timeout(Some(Duration::from_secs(30)));
    let created =
        tokio::time::timeout(Duration::from_secs(10), admin.create_topics(&new, &options)).await;
    if let Ok(Ok(results)) = &created {
        for result in results {
            if let Err((topic, code)) = result
                && *code != rdkafka::types::RDKafkaErrorCode::TopicAlreadyExists
            {
                tracing::debug!(topic, ?code, "changelog topic not created");
            }
        }
    }
    // Whatever the admin call said (a cluster may not offer it), the topics
    // must now exist with enough partitions.
    let config = config.clone();
    tokio::task::spawn_blocking(move || {
        let consumer: BaseConsumer = config
            .create()
            .map_err(|e| BuildError::kafka("creating a metadata client", e))?;
        for topic in &topics {
            let have = crate::streams::task::partition_count(&consumer, topic)?;
            if have < partitions {
                return Err(BuildError::invalid(
                    "stores",
                    format!(
                        "the changelog topic `{topic}` has {have} partitions and could not be created; \
                         create it compacted with {partitions} partitions (one per input partition)"
                    ),
                ));
            }
        }
        Ok(())
    })
    .await
    .unwrap_or_else(|e| Err(BuildError::new(format!("metadata task failed: {e}"))))
}
