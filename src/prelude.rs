//! The names most services need, in one import.
//!
//! ```
//! use light_kafka::prelude::*;
//! use tower::{service_fn, ServiceBuilder};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() {
//! let dlq = testkit::RecordingProducer::new();
//! let mut chain = ServiceBuilder::new()
//!     .catch_record_panic()
//!     .propagate_consume()
//!     .dead_letter(dlq.clone())
//!     .service(service_fn(|record: Record| async move {
//!         let _: serde_json::Value = record.json()?;
//!         Ok::<_, BoxError>(())
//!     }));
//! let outcome = testkit::call(&mut chain, testkit::record("orders").value("{}").build()).await;
//! assert!(matches!(outcome, Ok(Outcome::Handled(()))));
//! # }
//! ```

pub use crate::builder::{BoxRecordService, ServiceBuilderExt, boxed};
pub use crate::error::{BoxError, Error, ErrorKind};
pub use crate::layers::dead_letter::{DeadLetterLayer, Outcome, Route};
pub use crate::layers::retry::RetryPolicy;
pub use crate::record::{Headers, Record, names};
pub use crate::service::consumer::{Consumer, ErrorPolicy, Ordering};
pub use crate::service::producer::{Delivery, Producer};
pub use crate::testkit;
