//! # light-kafka
//!
//! Kafka consumption and production as [`tower::Service`]s over one owned
//! [`Record`] type, with composable layers for identity,
//! validation, tracing, metrics, audit, dead letters and retries.
//!
//! ```
//! use light_kafka::record::Record;
//! use light_kafka::service::embedded::EmbeddedKafka;
//! use light_kafka::service::producer::Producer;
//! use tower::ServiceExt;
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let kafka = EmbeddedKafka::start()?;
//! kafka.create_topic("greetings", 1)?;
//! let producer = Producer::builder().bootstrap_servers(kafka.bootstrap_servers()).build()?;
//! let delivery = producer.oneshot(Record::builder("greetings").value("hello").build()).await?;
//! assert_eq!(delivery.offset(), 0);
//! # Ok(()) }
//! ```

pub mod builder;
pub mod config;
pub mod context;
pub mod error;
pub mod http;
pub mod layers;
pub mod prelude;
pub mod record;
pub mod service;
pub mod streams;
pub mod testkit;
mod text;

pub use error::{BoxError, Error, ErrorKind};
/// rdkafka, re-exported: its types appear in this crate's API (client
/// configuration, offsets, error codes), so use this one rather than pinning a
/// second copy.
pub use rdkafka;

#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;
pub use record::Record;
