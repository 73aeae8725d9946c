//! Streams and CQRS on Kafka alone.
//!
//! - [`processor::StreamProcessor`]: consume → transform → produce in Kafka
//!   transactions, exactly once, with [`store`]s whose changelogs commit in
//!   the same transactions;
//! - [`projection::Projection`]: the read side, a topic folded into a table
//!   you can query while it runs (and serve over HTTP with the `axum` feature);
//! - [`aggregate`]: the write side, event-sourced aggregates handling
//!   commands into events with optimistic concurrency, and a gateway that
//!   submits a command and awaits its result;
//! - [`driver::TestDriver`]: all of it without a broker, for unit tests.
//!
//! See `examples/event_sourcing.rs` for the whole loop: commands over HTTP →
//! aggregate → events → projection → queries.

pub mod aggregate;
pub mod driver;
pub mod outputs;
#[cfg(feature = "redb")]
pub mod persistent;
pub mod processor;
pub mod projection;
pub mod restore;
pub mod store;
mod task;

pub use restore::RestoreProgress;
pub use task::changelog_topic;
