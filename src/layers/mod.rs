//! Layers: one module per cross-cutting concern, each a `tower::Layer`.
//!
//! The canonical order, outermost first, is the one every example uses:
//!
//! ```text
//! catch-panic → metrics → propagate → trace → audit → dead-letter → retry → jwt → schema → handler
//! ```

pub mod catch_panic;
pub mod http_context;
#[cfg(feature = "jwt")]
pub mod jwt;
pub mod propagate;
