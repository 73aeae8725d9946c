//! Layers: one module per cross-cutting concern, each a `tower::Layer`.
//!
//! The canonical order, outermost first, is the one every example uses:
//!
//! ```text
//! catch-panic → metrics → propagate → trace → audit → dead-letter → retry → jwt → schema → handler
//! ```

#[cfg(feature = "avro")]
pub mod avro;
pub mod catch_panic;
pub mod dead_letter;
pub mod http_context;
#[cfg(feature = "jwt")]
pub mod jwt;
pub mod propagate;
pub mod retry;
#[cfg(feature = "json-schema")]
pub mod schema;
