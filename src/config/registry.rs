//! The registry of layers and handlers an application adds by name.

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;

use tower::ServiceExt;
use tower_layer::Layer;
use tower_service::Service;

use super::chain::LayerFn;
use crate::builder::{BoxRecordService, boxed};
use crate::error::BoxError;
use crate::record::Record;

/// Layers and handlers an application adds by name, for a config to place.
///
/// ```
/// use light_kafka::config::Registry;
/// use light_kafka::record::Record;
/// use tower::{service_fn, timeout::TimeoutLayer};
/// use std::time::Duration;
///
/// let registry = Registry::new()
///     .layer("timeout", TimeoutLayer::new(Duration::from_secs(2)))
///     .handler("orders", service_fn(|_: Record| async { Ok::<_, light_kafka::BoxError>(()) }));
/// assert!(registry.has_layer("timeout") && registry.has_handler("orders"));
/// ```
#[derive(Clone, Default)]
pub struct Registry {
    pub(crate) layers: HashMap<String, LayerFn>,
    pub(crate) handlers: HashMap<String, BoxRecordService>,
}

impl fmt::Debug for Registry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut layers: Vec<_> = self.layers.keys().collect();
        let mut handlers: Vec<_> = self.handlers.keys().collect();
        layers.sort();
        handlers.sort();
        f.debug_struct("Registry")
            .field("layers", &layers)
            .field("handlers", &handlers)
            .finish()
    }
}

impl Registry {
    /// An empty registry (the built-ins need no registration).
    pub fn new() -> Self {
        Registry::default()
    }

    /// Adds the layer `name`. Its response is dropped once the chain is
    /// built (a record is settled or not).
    pub fn layer<L>(mut self, name: impl Into<String>, layer: L) -> Self
    where
        L: Layer<BoxRecordService> + Send + Sync + 'static,
        L::Service: Service<Record> + Clone + Send + Sync + 'static,
        <L::Service as Service<Record>>::Error: Into<BoxError>,
        <L::Service as Service<Record>>::Future: Send + 'static,
    {
        let layer: LayerFn = Arc::new(move |inner| erase(layer.layer(inner)));
        self.layers.insert(name.into(), layer);
        self
    }

    /// Adds the handler `name`.
    pub fn handler<S>(mut self, name: impl Into<String>, service: S) -> Self
    where
        S: Service<Record> + Clone + Send + Sync + 'static,
        S::Error: Into<BoxError>,
        S::Future: Send + 'static,
    {
        self.handlers.insert(name.into(), erase(service));
        self
    }

    /// Whether a layer `name` is registered.
    pub fn has_layer(&self, name: &str) -> bool {
        self.layers.contains_key(name)
    }

    /// Whether a handler `name` is registered.
    pub fn has_handler(&self, name: &str) -> bool {
        self.handlers.contains_key(name)
    }
}

/// Erases a service's type and response.
pub(crate) fn erase<S>(service: S) -> BoxRecordService
where
    S: Service<Record> + Clone + Send + Sync + 'static,
    S::Error: Into<BoxError>,
    S::Future: Send + 'static,
{
    boxed(service.map_response(|_| ()))
}
