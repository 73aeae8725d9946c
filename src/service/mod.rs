//! The services and runtimes that talk to Kafka.
//!
//! - [`producer::Producer`]: `Service<Record, Response = Delivery>`;
//! - [`transactional::TransactionalProducer`]: all-or-nothing batches;
//! - [`batching::BatchingProducer`]: one record per call, one transaction per batch;
//! - [`embedded::EmbeddedKafka`]: an in-process cluster for tests and demos;
//! - [`connect`]: connections that can never succeed (credentials, certificates,
//!   protocol), reported as typed errors instead of endless reconnects.

pub mod batching;
pub mod client;
pub mod connect;
pub mod consumer;
pub mod embedded;
pub mod producer;
pub mod replay;
pub mod transactional;

pub use client::{BuildError, BuildErrorKind};
