//! Event-sourced aggregates: the write side of CQRS, with Kafka as the only store.
//!
//! An [`Aggregate`] handles a command into events (or a domain error) and
//! applies events to its state, the shape the `cqrs-es` crate made familiar.
//! [`AggregateService`] is the stream-processor service that runs it:
//! commands are records keyed by aggregate id, so every command of one
//! aggregate reaches the partition that owns it, in order; the aggregate's
//! state and version live in a state store of that partition (named
//! [`Aggregate::TYPE`]), restored from its changelog. For each command, in one
//! Kafka transaction: the events are appended to the event topic (keyed by
//! aggregate id, each a [`DomainEvent`] with an [`EventId`]), the state is
//! updated, the outcome is written to the reply topic and the command's
//! offset is committed. Nothing is written twice and nothing is lost.
//!
//! **Optimistic concurrency**: a command may carry the version it expects
//! the aggregate to be at. If the aggregate moved on, the command is not
//! handled and its outcome is [`CommandOutcome::Conflict`], with both
//! versions: never a lost update.
//!
//! [`CommandGateway`] submits a command and awaits its outcome from the
//! reply topic (no polling by the caller); with the `axum` feature,
//! [`CommandGateway::router`] takes commands over HTTP.
//!
//! ```
//! use light_kafka::record::Record;
//! use light_kafka::streams::aggregate::{Aggregate, AggregateService, CommandEnvelope, CommandOutcome};
//! use light_kafka::streams::driver::TestDriver;
//! use serde::{Deserialize, Serialize};
//!
//! #[derive(Default, Serialize, Deserialize)]
//! struct Counter { value: i64 }
//!
//! #[derive(Serialize, Deserialize)]
//! enum CounterCommand { Add(i64) }
//!
//! #[derive(Clone, Serialize, Deserialize)]
//! enum CounterEvent { Added(i64) }
//!
//! impl Aggregate for Counter {
//!     const TYPE: &'static str = "counter";
//!     type Command = CounterCommand;
//!     type Event = CounterEvent;
//!     type Error = String;
//!     fn handle(&self, command: &CounterCommand) -> Result<Vec<CounterEvent>, String> {
//!         match command {
//!             CounterCommand::Add(0) => Err("adding nothing".into()),
//!             CounterCommand::Add(n) => Ok(vec![CounterEvent::Added(*n)]),
//!         }
//!     }
//!     fn apply(&mut self, event: &CounterEvent) {
//!         match event { CounterEvent::Added(n) => self.value += n }
//!     }
//! }
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), light_kafka::BoxError> {
//! let service = AggregateService::<Counter>::new("counter-events", "counter-replies");
//! let mut driver = TestDriver::new(service).store(Counter::TYPE);
//! let command = CommandEnvelope::new("c-1", CounterCommand::Add(5)).expect_version(0);
//! let outputs = driver.pipe(command.to_record("counter-commands")?).await?;
//! assert_eq!(outputs[0].topic(), "counter-events");
//! assert_eq!(CommandOutcome::of(&outputs[1])?, CommandOutcome::Accepted { version: 1 });
//! // The same expected version again: the aggregate moved on.
//! let again = CommandEnvelope::new("c-1", CounterCommand::Add(5)).expect_version(0);
//! let outputs = driver.pipe(again.to_record("counter-commands")?).await?;
//! assert_eq!(CommandOutcome::of(&outputs[0])?, CommandOutcome::Conflict { expected: 0, actual: 1 });
//! # Ok(()) }
//! ```

use std::collections::HashMap;
use std::fmt;
use std::future::{Ready, ready};
use std::marker::PhantomData;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::{Message as _, Offset, TopicPartitionList};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use tokio::sync::oneshot;
use tower::ServiceExt;
use tower_service::Service;

use super::store::Stores;
use crate::error::{BoxError, ErrorKind};
use crate::record::{Event, EventId, JsonCodec, Message, Record};
use crate::service::BuildError;
use crate::service::client::check_bootstrap;
use crate::service::producer::Producer;

/// The header carrying a command's id on the command and on its reply.
pub const COMMAND_ID: &str = "lk.command.id";

/// An event-sourced aggregate: its state, the commands it handles and the
/// events it emits.
pub trait Aggregate: Default + Serialize + DeserializeOwned + Send + 'static {
    /// The aggregate type, also the name of the state store holding it.
    const TYPE: &'static str;
    /// What it is asked to do.
    type Command: Serialize + DeserializeOwned + Send + 'static;
    /// What happened.
    type Event: Serialize + DeserializeOwned + Clone + Send + 'static;
    /// Why a command was refused.
    type Error: fmt::Display;

    /// Decides the events for `command` from the current state, or refuses it.
    ///
    /// # Errors
    ///
    /// The domain's reason to refuse the command.
    fn handle(&self, command: &Self::Command) -> Result<Vec<Self::Event>, Self::Error>;

    /// Moves the state on by one event. Never fails: events already happened.
    fn apply(&mut self, event: &Self::Event);
}

/// A command for one aggregate, as it travels on the command topic.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct CommandEnvelope<C> {
    /// Unique id of the command; its reply carries it.
    pub command_id: String,
    /// The aggregate the command is for (also the record key).
    pub aggregate_id: String,
    /// The version the sender saw; `None` accepts any.
    #[serde(default)]
    pub expected_version: Option<u64>,
    /// On whose behalf (goes into the events' [`EventId`]).
    #[serde(default)]
    pub user_id: String,
    /// The command itself.
    pub command: C,
}

impl<C: Serialize + DeserializeOwned> CommandEnvelope<C> {
    /// A command for `aggregate_id`, with a fresh command id and no expected version.
    pub fn new(aggregate_id: impl Into<String>, command: C) -> Self {
        CommandEnvelope {
            command_id: uuid::Uuid::now_v7().to_string(),
            aggregate_id: aggregate_id.into(),
            expected_version: None,
            user_id: String::new(),
            command,
        }
    }

    /// Handles the command only if the aggregate is at `version`.
    pub fn expect_version(mut self, version: u64) -> Self {
        self.expected_version = Some(version);
        self
    }

    /// Sets the user on whose behalf the command runs.
    pub fn user(mut self, user_id: impl Into<String>) -> Self {
        self.user_id = user_id.into();
        self
    }

    /// The command as a record of `topic`: keyed by aggregate id, its id in
    /// the [`COMMAND_ID`] header.
    ///
    /// # Errors
    ///
    /// When the command does not serialize.
    pub fn to_record(&self, topic: &str) -> Result<Record, BoxError> {
        Ok(Record::builder(topic)
            .key(self.aggregate_id.clone())
            .header(COMMAND_ID, self.command_id.clone())
            .value(serde_json::to_vec(self)?)
            .build())
    }
}

/// An event as appended to the event topic.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct DomainEvent<E> {
    /// Its identity (its nonce is the aggregate version it produced).
    pub event_id: EventId,
    /// [`Aggregate::TYPE`].
    pub aggregate_type: String,
    /// The aggregate it belongs to.
    pub aggregate_id: String,
    /// The aggregate's version after this event (the first event is 1).
    pub version: u64,
    /// The event itself.
    pub event: E,
}

impl<E> Message for DomainEvent<E> {
    fn key(&self) -> Option<String> {
        Some(self.aggregate_id.clone())
    }
}

impl<E> Event for DomainEvent<E> {
    fn event_id(&self) -> &EventId {
        &self.event_id
    }
}

/// What became of a command.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(tag = "outcome", rename_all = "camelCase")]
pub enum CommandOutcome {
    /// Handled: its events are appended and the aggregate is at `version`.
    Accepted {
        /// The aggregate's version after the command's events.
        version: u64,
    },
    /// The aggregate refused it (its [`Aggregate::Error`]).
    Rejected {
        /// The refusal.
        reason: String,
    },
    /// The aggregate was not at the expected version; nothing was done.
    Conflict {
        /// The version the command expected.
        expected: u64,
        /// The version the aggregate is at.
        actual: u64,
    },
    /// The command did not decode.
    Invalid {
        /// Why.
        reason: String,
    },
}

impl CommandOutcome {
    /// The outcome carried by a reply record.
    ///
    /// # Errors
    ///
    /// When the record is not a reply.
    pub fn of(reply: &Record) -> Result<CommandOutcome, BoxError> {
        Ok(reply.json()?)
    }
}

/// An aggregate's state with its version, as kept in its store.
#[derive(Serialize, Deserialize)]
struct Versioned<A> {
    version: u64,
    state: A,
}

/// The stream-processor service running aggregate `A`: a command record in,
/// the event records and the reply record out. See the
/// [module documentation](self).
pub struct AggregateService<A> {
    events: Arc<str>,
    replies: Arc<str>,
    aggregate: PhantomData<fn() -> A>,
}

impl<A> Clone for AggregateService<A> {
    fn clone(&self) -> Self {
        AggregateService {
            events: self.events.clone(),
            replies: self.replies.clone(),
            aggregate: PhantomData,
        }
    }
}

impl<A> fmt::Debug for AggregateService<A> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AggregateService")
            .field("events", &self.events)
            .field("replies", &self.replies)
            .finish()
    }
}

impl<A: Aggregate> AggregateService<A> {
    /// Appends events to `events` and outcomes to `replies`. Its processor
    /// needs a store named [`Aggregate::TYPE`].
    pub fn new(events: impl Into<Arc<str>>, replies: impl Into<Arc<str>>) -> Self {
        AggregateService {
            events: events.into(),
            replies: replies.into(),
            aggregate: PhantomData,
        }
    }

    fn handle(&self, record: &Record) -> Result<Vec<Record>, BoxError> {
        let command_id = record.header_str(COMMAND_ID).map(str::to_owned);
        let envelope: CommandEnvelope<A::Command> = match record.json() {
            Ok(envelope) => envelope,
            Err(error) => {
                let Some(command_id) = command_id else {
                    // Nobody awaits it: a poison record for the dead-letter path.
                    return Err(crate::Error::with_source(
                        ErrorKind::Deserialization,
                        "the command does not decode",
                        error,
                    )
                    .into());
                };
                let outcome = CommandOutcome::Invalid {
                    reason: error.to_string(),
                };
                return Ok(vec![self.reply(&command_id, &outcome)?]);
            }
        };
        let store = Stores::of(record)?.json::<Versioned<A>>(A::TYPE)?;
        let id = envelope.aggregate_id.as_str();
        let current = store.get(id)?.unwrap_or(Versioned {
            version: 0,
            state: A::default(),
        });
        if let Some(expected) = envelope.expected_version
            && expected != current.version
        {
            let outcome = CommandOutcome::Conflict {
                expected,
                actual: current.version,
            };
            return Ok(vec![self.reply(&envelope.command_id, &outcome)?]);
        }
        let events = match current.state.handle(&envelope.command) {
            Ok(events) => events,
            Err(reason) => {
                let outcome = CommandOutcome::Rejected {
                    reason: reason.to_string(),
                };
                return Ok(vec![self.reply(&envelope.command_id, &outcome)?]);
            }
        };
        let Versioned {
            mut version,
            mut state,
        } = current;
        let mut outputs = Vec::with_capacity(events.len() + 1);
        for event in events {
            state.apply(&event);
            version += 1;
            let event = DomainEvent {
                event_id: EventId::new(envelope.user_id.clone(), String::new(), version as i64),
                aggregate_type: A::TYPE.to_owned(),
                aggregate_id: envelope.aggregate_id.clone(),
                version,
                event,
            };
            outputs.push(event.to_record(&self.events, &JsonCodec)?);
        }
        let accepted = CommandOutcome::Accepted { version };
        store.put(id, &Versioned { version, state })?;
        outputs.push(self.reply(&envelope.command_id, &accepted)?);
        Ok(outputs)
    }

    fn reply(&self, command_id: &str, outcome: &CommandOutcome) -> Result<Record, BoxError> {
        Ok(Record::builder(self.replies.clone())
            .key(command_id.to_owned())
            .header(COMMAND_ID, command_id.to_owned())
            .value(serde_json::to_vec(outcome)?)
            .build())
    }
}

impl<A: Aggregate> Service<Record> for AggregateService<A> {
    type Response = Vec<Record>;
    type Error = BoxError;
    type Future = Ready<Result<Vec<Record>, BoxError>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, record: Record) -> Self::Future {
        ready(self.handle(&record))
    }
}

/// Why a submitted command has no outcome.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum GatewayError {
    /// The command could not be written to the command topic.
    #[error("the command could not be sent: {0}")]
    Send(#[source] BoxError),
    /// No reply came in time. The command may still be handled later.
    #[error("no outcome within {0:?}")]
    Timeout(Duration),
}

type Pending = Arc<Mutex<HashMap<String, oneshot::Sender<CommandOutcome>>>>;

/// Submits commands and awaits their outcomes. Cheap to clone.
pub struct CommandGateway<A: Aggregate> {
    producer: Producer,
    commands: Arc<str>,
    pending: Pending,
    timeout: Duration,
    _stop: Arc<StopFlag>,
    aggregate: PhantomData<fn() -> A>,
}

impl<A: Aggregate> Clone for CommandGateway<A> {
    fn clone(&self) -> Self {
        CommandGateway {
            producer: self.producer.clone(),
            commands: self.commands.clone(),
            pending: self.pending.clone(),
            timeout: self.timeout,
            _stop: self._stop.clone(),
            aggregate: PhantomData,
        }
    }
}

impl<A: Aggregate> fmt::Debug for CommandGateway<A> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CommandGateway")
            .field("commands", &self.commands)
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

struct StopFlag(Arc<std::sync::atomic::AtomicBool>);

impl Drop for StopFlag {
    fn drop(&mut self) {
        self.0.store(true, std::sync::atomic::Ordering::Relaxed);
    }
}

/// Configures a [`CommandGateway`], like every other client of the crate.
///
/// ```no_run
/// # use light_kafka::streams::aggregate::{Aggregate, CommandGateway};
/// # async fn run<A: Aggregate>() -> Result<(), light_kafka::service::BuildError> {
/// let gateway = CommandGateway::<A>::builder("account-commands", "account-replies")
///     .bootstrap_servers("kafka:9092")
///     .set("security.protocol", "SASL_SSL")
///     .timeout(std::time::Duration::from_secs(10))
///     .start()
///     .await?;
/// # let _ = gateway; Ok(()) }
/// ```
pub struct CommandGatewayBuilder<A: Aggregate> {
    config: ClientConfig,
    commands: Arc<str>,
    replies: String,
    group_id: Option<String>,
    timeout: Duration,
    aggregate: PhantomData<fn() -> A>,
}

impl<A: Aggregate> fmt::Debug for CommandGatewayBuilder<A> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CommandGatewayBuilder")
            .field("config", &crate::service::client::Redacted(&self.config))
            .field("commands", &self.commands)
            .field("replies", &self.replies)
            .field("group_id", &self.group_id)
            .field("timeout", &self.timeout)
            .finish()
    }
}

impl<A: Aggregate> CommandGatewayBuilder<A> {
    /// Sets `bootstrap.servers`.
    pub fn bootstrap_servers(self, servers: impl Into<String>) -> Self {
        self.set("bootstrap.servers", servers)
    }

    /// Sets any librdkafka property of the gateway's producer and reply reader.
    pub fn set(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.config.set(key, value);
        self
    }

    /// The `group.id` of the reply reader. It is assigned the reply topic's
    /// partitions and commits nothing, so the group only names it to the
    /// cluster (quotas, ACLs); by default `<replies>-gateway-<uuid>`, one per
    /// gateway.
    pub fn group_id(mut self, group: impl Into<String>) -> Self {
        self.group_id = Some(group.into());
        self
    }

    /// How long [`CommandGateway::submit`] waits for an outcome (30 s unless set).
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// Creates the producer and starts reading outcomes from the reply
    /// topic's current end.
    ///
    /// # Errors
    ///
    /// A [`BuildError`] when a setting is wrong or the reply topic does not exist.
    pub async fn start(self) -> Result<CommandGateway<A>, BuildError> {
        let config = self.config;
        check_bootstrap(&config)?;
        let mut producer = Producer::builder();
        for (k, v) in crate::service::client::properties(&config) {
            producer = producer.set(k, v);
        }
        let producer = producer.build()?;
        let replies = self.replies;
        let group = self
            .group_id
            .unwrap_or_else(|| format!("{replies}-gateway-{}", uuid::Uuid::now_v7()));
        let mut reader = config.clone();
        reader
            .set("group.id", group)
            .set("enable.auto.commit", "false")
            .set("isolation.level", "read_committed");
        let pending: Pending = Arc::default();
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let consumer = tokio::task::spawn_blocking(move || assign_at_end(&reader, &replies))
            .await
            .unwrap_or_else(|e| Err(BuildError::new(format!("gateway start failed: {e}"))))?;
        let (waiting, stopped) = (pending.clone(), stop.clone());
        std::thread::Builder::new()
            .name("command-gateway".into())
            .spawn(move || deliver(consumer, &waiting, &stopped))
            .map_err(|e| BuildError::new(format!("cannot start the gateway thread: {e}")))?;
        Ok(CommandGateway {
            producer,
            commands: self.commands,
            pending,
            timeout: self.timeout,
            _stop: Arc::new(StopFlag(stop)),
            aggregate: PhantomData,
        })
    }
}

impl<A: Aggregate> CommandGateway<A> {
    /// Starts configuring a gateway that writes commands to `commands` and
    /// reads their outcomes from `replies`.
    pub fn builder(
        commands: impl Into<Arc<str>>,
        replies: impl Into<String>,
    ) -> CommandGatewayBuilder<A> {
        CommandGatewayBuilder {
            config: ClientConfig::new(),
            commands: commands.into(),
            replies: replies.into(),
            group_id: None,
            timeout: Duration::from_secs(30),
            aggregate: PhantomData,
        }
    }

    /// How long [`CommandGateway::submit`] waits for an outcome.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// Sends `command` and waits for its outcome.
    ///
    /// # Errors
    ///
    /// A [`GatewayError`] when it cannot be sent or no outcome came in time.
    pub async fn submit(
        &self,
        command: CommandEnvelope<A::Command>,
    ) -> Result<CommandOutcome, GatewayError> {
        let record = command
            .to_record(&self.commands)
            .map_err(GatewayError::Send)?;
        let (tx, rx) = oneshot::channel();
        let id = command.command_id.clone();
        self.pending
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(id.clone(), tx);
        let forget = || {
            self.pending
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .remove(&id)
        };
        if let Err(error) = self.producer.clone().oneshot(record).await {
            forget();
            return Err(GatewayError::Send(error.into()));
        }
        match tokio::time::timeout(self.timeout, rx).await {
            Ok(Ok(outcome)) => Ok(outcome),
            _ => {
                forget();
                Err(GatewayError::Timeout(self.timeout))
            }
        }
    }
}

fn assign_at_end(config: &ClientConfig, topic: &str) -> Result<BaseConsumer, BuildError> {
    let consumer: BaseConsumer = config
        .create()
        .map_err(|e| BuildError::kafka("creating the gateway's reply consumer", e))?;
    let timeout = Duration::from_secs(30);
    let count = super::task::partition_count(&consumer, topic)?;
    if count == 0 {
        return Err(BuildError::invalid(
            "replies",
            format!("the reply topic `{topic}` does not exist"),
        ));
    }
    let mut tpl = TopicPartitionList::new();
    for partition in 0..count {
        // An explicit offset, so that no reply written after this call is missed.
        let (_, high) = consumer
            .fetch_watermarks(topic, partition, timeout)
            .map_err(|e| BuildError::kafka(format!("reading the offsets of `{topic}`"), e))?;
        tpl.add_partition_offset(topic, partition, Offset::Offset(high))
            .map_err(|e| BuildError::kafka("assigning", e))?;
    }
    consumer
        .assign(&tpl)
        .map_err(|e| BuildError::kafka("assigning", e))?;
    Ok(consumer)
}

fn deliver(consumer: BaseConsumer, pending: &Pending, stop: &std::sync::atomic::AtomicBool) {
    while !stop.load(std::sync::atomic::Ordering::Relaxed) {
        let Some(polled) = consumer.poll(Duration::from_millis(100)) else {
            continue;
        };
        let message = match polled {
            Ok(message) => message,
            Err(error) => {
                tracing::warn!(%error, "command gateway: reply consumer error");
                continue;
            }
        };
        let record = Record::from_message(&message);
        let (Some(id), Ok(outcome)) = (
            record.header_str(COMMAND_ID),
            record.json::<CommandOutcome>(),
        ) else {
            tracing::warn!(
                offset = message.offset(),
                "command gateway: a reply without a command id or an outcome"
            );
            continue;
        };
        if let Some(waiting) = pending.lock().unwrap_or_else(|p| p.into_inner()).remove(id) {
            let _ = waiting.send(outcome);
        }
    }
}

#[cfg(feature = "axum")]
mod http {
    use axum::Json;
    use axum::extract::{Path, State};
    use axum::http::StatusCode;
    use axum::response::{IntoResponse, Response};
    use axum::routing::post;
    use serde::Deserialize;
    use serde_json::json;

    use super::{Aggregate, CommandEnvelope, CommandGateway, CommandOutcome, GatewayError};

    /// The body of `POST /{type}/{id}`.
    #[derive(Deserialize)]
    #[serde(rename_all = "camelCase")]
    struct Body<C> {
        #[serde(default)]
        expected_version: Option<u64>,
        command: C,
    }

    impl<A: Aggregate> CommandGateway<A>
    where
        A::Command: Sync,
    {
        /// An axum router taking commands: `POST /{type}/{id}` with
        /// `{"expectedVersion": n, "command": ...}` answers, once the command
        /// was handled, 200 with `{"outcome": "accepted", "version": n}`, 409
        /// on a conflict, 422 when rejected or invalid, 504 when no outcome
        /// came in time and 503 when it could not be sent.
        pub fn router<S: Clone + Send + Sync + 'static>(&self) -> axum::Router<S> {
            axum::Router::new()
                .route(&format!("/{}/{{id}}", A::TYPE), post(submit::<A>))
                .with_state(self.clone())
        }
    }

    async fn submit<A: Aggregate>(
        State(gateway): State<CommandGateway<A>>,
        Path(id): Path<String>,
        Json(body): Json<Body<A::Command>>,
    ) -> Response {
        let mut command = CommandEnvelope::new(id, body.command);
        command.expected_version = body.expected_version;
        match gateway.submit(command).await {
            Ok(outcome) => {
                let status = match outcome {
                    CommandOutcome::Accepted { .. } => StatusCode::OK,
                    CommandOutcome::Conflict { .. } => StatusCode::CONFLICT,
                    CommandOutcome::Rejected { .. } | CommandOutcome::Invalid { .. } => {
                        StatusCode::UNPROCESSABLE_ENTITY
                    }
                };
                (status, Json(outcome)).into_response()
            }
            Err(error @ GatewayError::Timeout(_)) => (
                StatusCode::GATEWAY_TIMEOUT,
                Json(json!({"error": error.to_string()})),
            )
                .into_response(),
            Err(error) => (
                StatusCode::SERVICE_UNAVAILABLE,
                Json(json!({"error": error.to_string()})),
            )
                .into_response(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::classify;
    use crate::streams::driver::TestDriver;

    #[derive(Default, Serialize, Deserialize)]
    struct Tally {
        total: u32,
    }

    impl Aggregate for Tally {
        const TYPE: &'static str = "tally";
        type Command = u32;
        type Event = u32;
        type Error = &'static str;

        fn handle(&self, command: &u32) -> Result<Vec<u32>, &'static str> {
            match command {
                0 => Err("zero"),
                n => Ok(vec![*n, *n]),
            }
        }

        fn apply(&mut self, event: &u32) {
            self.total += event;
        }
    }

    fn driver() -> TestDriver<AggregateService<Tally>> {
        TestDriver::new(AggregateService::<Tally>::new("events", "replies")).store(Tally::TYPE)
    }

    fn state(driver: &mut TestDriver<AggregateService<Tally>>, id: &str) -> Option<(u64, u32)> {
        driver
            .json::<Versioned<Tally>>(Tally::TYPE, 0, id)
            .unwrap()
            .map(|v| (v.version, v.state.total))
    }

    #[tokio::test(start_paused = true)]
    async fn accepted_commands_append_versioned_events_and_move_the_state() {
        let mut driver = driver();
        let command = CommandEnvelope::new("t-1", 3).user("alice");
        let outputs = driver
            .pipe(command.to_record("commands").unwrap())
            .await
            .unwrap();
        assert_eq!(outputs.len(), 3);
        let events: Vec<DomainEvent<u32>> =
            outputs[..2].iter().map(|r| r.json().unwrap()).collect();
        assert_eq!(events.iter().map(|e| e.version).collect::<Vec<_>>(), [1, 2]);
        assert!(
            events
                .iter()
                .all(|e| e.aggregate_id == "t-1" && e.event_id.user_id == "alice")
        );
        assert_eq!(events[1].event_id.nonce, 2);
        assert_eq!(outputs[0].key_str(), Some("t-1"));
        assert_eq!(outputs[2].topic(), "replies");
        assert_eq!(
            outputs[2].header_str(COMMAND_ID),
            Some(command.command_id.as_str())
        );
        assert_eq!(
            CommandOutcome::of(&outputs[2]).unwrap(),
            CommandOutcome::Accepted { version: 2 }
        );
        assert_eq!(state(&mut driver, "t-1"), Some((2, 6)));
        assert_eq!(driver.changelog().len(), 1);
    }

    #[tokio::test]
    async fn refused_commands_reply_and_change_nothing() {
        let mut driver = driver();
        let rejected = driver
            .pipe(
                CommandEnvelope::new("t-1", 0)
                    .to_record("commands")
                    .unwrap(),
            )
            .await
            .unwrap();
        assert_eq!(rejected.len(), 1);
        assert_eq!(
            CommandOutcome::of(&rejected[0]).unwrap(),
            CommandOutcome::Rejected {
                reason: "zero".into()
            }
        );
        let conflict = driver
            .pipe(
                CommandEnvelope::new("t-1", 1)
                    .expect_version(4)
                    .to_record("commands")
                    .unwrap(),
            )
            .await
            .unwrap();
        assert_eq!(
            CommandOutcome::of(&conflict[0]).unwrap(),
            CommandOutcome::Conflict {
                expected: 4,
                actual: 0
            }
        );
        assert_eq!(state(&mut driver, "t-1"), None);
        assert!(driver.changelog().is_empty());
    }

    #[tokio::test]
    async fn an_undecodable_command_is_answered_when_someone_awaits_it_and_dead_lettered_otherwise()
    {
        let mut driver = driver();
        let awaited = Record::builder("commands")
            .key("t-1")
            .header(COMMAND_ID, "c-9")
            .value("{not json")
            .build();
        let reply = driver.pipe(awaited).await.unwrap();
        assert!(matches!(
            CommandOutcome::of(&reply[0]).unwrap(),
            CommandOutcome::Invalid { .. }
        ));
        assert_eq!(reply[0].key_str(), Some("c-9"));
        let orphan = Record::builder("commands")
            .key("t-1")
            .value("{not json")
            .build();
        let error = driver.pipe(orphan).await.unwrap_err();
        assert_eq!(classify(error.as_ref()), ErrorKind::Deserialization);
    }
}
