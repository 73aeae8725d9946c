//! Messages, commands and events: light-kafka's kafka-common envelopes.
//!
//! In Event Sourcing on Kafka, a [`Command`] asks for a change, an [`Event`]
//! records one that happened, and both are [`Message`]s: typed values with a
//! partition key that map to and from a [`Record`] through any [`Codec`]. Every
//! event carries an [`EventId`] (id, user, host, nonce, timestamp, derived), the
//! same fields as light-kafka's `EventId`, serialized in its camelCase form.
//!
//! ```
//! use light_kafka::record::{Event, EventId, JsonCodec, Message, Record};
//! use serde::{Deserialize, Serialize};
//!
//! #[derive(Serialize, Deserialize, Debug, PartialEq)]
//! #[serde(rename_all = "camelCase")]
//! struct UserCreated { event_id: EventId, email: String }
//!
//! impl Message for UserCreated {
//!     fn key(&self) -> Option<String> { Some(self.email.clone()) }
//! }
//! impl Event for UserCreated {
//!     fn event_id(&self) -> &EventId { &self.event_id }
//! }
//!
//! let event = UserCreated { event_id: EventId::new("u1", "h1", 1), email: "a@b.c".into() };
//! let record = event.to_record("user-events", &JsonCodec)?;
//! assert_eq!(record.key_str(), Some("a@b.c"));
//! assert!(record.value_str()?.contains("\"userId\":\"u1\""));
//!
//! let back = UserCreated::from_record(&record, &JsonCodec)?;
//! assert_eq!(back, event);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use serde::{Deserialize, Serialize};

use super::codec::{Codec, CodecError};
use super::{Record, Timestamp};

/// A typed value carried by a record.
pub trait Message: Sized {
    /// The record key, which decides the partition (and so the order) of the
    /// message; typically the aggregate id. `None` lets the partitioner choose.
    fn key(&self) -> Option<String>;

    /// Encodes this message into a record for `topic`, keyed by [`Message::key`].
    ///
    /// # Errors
    ///
    /// The codec's error when the message cannot be encoded.
    fn to_record<C: Codec<Self>>(&self, topic: &str, codec: &C) -> Result<Record, C::Error> {
        let mut builder = Record::builder(topic).encode(codec, self)?;
        if let Some(key) = self.key() {
            builder = builder.key(key);
        }
        Ok(builder.build())
    }

    /// Decodes a message from a record's value.
    ///
    /// # Errors
    ///
    /// A [`CodecError`] when the value is null, or the codec's error when the
    /// value does not decode.
    fn from_record<C>(record: &Record, codec: &C) -> Result<Self, C::Error>
    where
        C: Codec<Self>,
        C::Error: From<CodecError>,
    {
        let value = record
            .value()
            .ok_or_else(|| CodecError::decode("the record value is null"))?;
        codec.decode(value)
    }
}

/// A request to change state, handled by exactly one service.
pub trait Command: Message {}

/// A fact that happened, appended to an event topic and never changed.
pub trait Event: Message {
    /// The identity of this event.
    fn event_id(&self) -> &EventId;
}

/// The identity of an event, as light-kafka defines it.
///
/// `nonce` orders the events of one user; `derived` marks events produced by a
/// service in reaction to another event rather than by a user's command.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct EventId {
    /// Unique id of the event (a UUID v7 by default, so ids sort by time).
    pub id: String,
    /// The user on whose behalf the event happened.
    pub user_id: String,
    /// The host (tenant) the event belongs to.
    pub host_id: String,
    /// Per-user sequence number.
    pub nonce: i64,
    /// Milliseconds since the Unix epoch.
    pub timestamp: i64,
    /// Whether the event was derived from another event.
    #[serde(default)]
    pub derived: bool,
}

impl EventId {
    /// A new event id with a fresh UUID v7 and the current time.
    ///
    /// ```
    /// # use light_kafka::record::EventId;
    /// let a = EventId::new("user", "host", 1);
    /// let b = EventId::new("user", "host", 2);
    /// assert_ne!(a.id, b.id);
    /// assert!(!a.derived);
    /// ```
    pub fn new(user_id: impl Into<String>, host_id: impl Into<String>, nonce: i64) -> Self {
        EventId {
            id: uuid::Uuid::now_v7().to_string(),
            user_id: user_id.into(),
            host_id: host_id.into(),
            nonce,
            timestamp: Timestamp::now().millis().unwrap_or_default(),
            derived: false,
        }
    }

    /// A new id for an event derived from this one: same user and host, a fresh
    /// id and time, `derived` set.
    ///
    /// ```
    /// # use light_kafka::record::EventId;
    /// let original = EventId::new("user", "host", 1);
    /// let derived = original.derive(2);
    /// assert!(derived.derived);
    /// assert_eq!(derived.user_id, "user");
    /// ```
    pub fn derive(&self, nonce: i64) -> Self {
        EventId {
            derived: true,
            ..EventId::new(self.user_id.clone(), self.host_id.clone(), nonce)
        }
    }
}
