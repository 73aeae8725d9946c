//! Building chains from `handler.yml`: the registry of names, the checks,
//! and the type-erased services.

use std::collections::HashMap;
use std::fmt;
use std::path::Path;
use std::sync::Arc;
use std::task::{Context, Poll};

use serde_saphyr::Spanned;
use tower_service::Service;

use super::Config;
pub use super::registry::Registry;
pub(crate) use super::registry::erase;
use super::source::{ConfigError, ConfigErrorKind};
use crate::builder::BoxRecordService;
use crate::error::{BoxError, ErrorKind};
use crate::record::Record;

/// A layer as the config builder applies it: a chain in, a chain out.
pub type LayerFn = Arc<dyn Fn(BoxRecordService) -> BoxRecordService + Send + Sync>;

/// The built-in layers, in the canonical order.
pub const BUILTIN_LAYERS: [&str; 9] = [
    "catch-panic",
    "metrics",
    "propagate",
    "trace",
    "audit",
    "dead-letter",
    "retry",
    "jwt",
    "schema",
];

/// The built-in handler: records forwarded to `backendApiHost` +
/// `backendApiPath` of `kafka-consumer.yml` (the sidecar).
pub const HTTP_BACKEND: &str = "http-backend";

/// What a name in `handler.yml` stands for.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Entry {
    Layer(String),
    Handler(String),
    /// A light-4j class with no counterpart (in the ignored list).
    Java,
}

/// One element of an execution list, where it was written.
struct Placed<'a> {
    name: &'a str,
    at: &'a Spanned<String>,
}

/// The chains of a config, one per route. A [`Service`] itself: it sends
/// each record to the chain of its topic (exact routes first, then
/// patterns in file order, then `defaultHandlers`). It is ready when every
/// chain is ready (as tower's `Steer`), and calls the chain without cloning
/// it or boxing its future again.
#[derive(Clone)]
pub struct Chains {
    chains: Vec<BoxRecordService>,
    exact: Arc<HashMap<String, usize>>,
    patterns: Arc<Vec<(regex_lite::Regex, usize)>>,
    default: Option<usize>,
    // The route of the last topic seen: records of one partition share
    // their topic's `Arc`, so this is usually a pointer comparison.
    last: Option<(Arc<str>, Option<usize>)>,
}

impl fmt::Debug for Chains {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Chains")
            .field("topics", &self.exact.keys().collect::<Vec<_>>())
            .field(
                "patterns",
                &self
                    .patterns
                    .iter()
                    .map(|p| p.0.as_str())
                    .collect::<Vec<_>>(),
            )
            .field("default", &self.default.is_some())
            .finish()
    }
}

impl Chains {
    /// One chain for every topic.
    pub(crate) fn single(chain: BoxRecordService, exact: Arc<HashMap<String, usize>>) -> Chains {
        Chains {
            chains: vec![chain],
            exact,
            patterns: Arc::new(Vec::new()),
            default: Some(0),
            last: None,
        }
    }

    fn route_of(&self, topic: &str) -> Option<usize> {
        if let Some(&i) = self.exact.get(topic) {
            return Some(i);
        }
        self.patterns
            .iter()
            .find(|(pattern, _)| pattern.is_match(topic))
            .map(|&(_, i)| i)
            .or(self.default)
    }

    /// The chain records of `topic` run through, if a route covers it.
    pub fn for_topic(&self, topic: &str) -> Option<BoxRecordService> {
        self.route_of(topic).map(|i| self.chains[i].clone())
    }

    /// Whether a route covers `topic`.
    pub fn covers(&self, topic: &str) -> bool {
        self.route_of(topic).is_some()
    }
}

impl Service<Record> for Chains {
    type Response = ();
    type Error = BoxError;
    type Future = <BoxRecordService as Service<Record>>::Future;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        for chain in &mut self.chains {
            if chain.poll_ready(cx)?.is_pending() {
                return Poll::Pending;
            }
        }
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, record: Record) -> Self::Future {
        let route = match &self.last {
            Some((topic, route))
                if Arc::ptr_eq(topic, record.topic_arc()) || **topic == *record.topic() =>
            {
                *route
            }
            _ => {
                let route = self.route_of(record.topic());
                self.last = Some((record.topic_arc().clone(), route));
                route
            }
        };
        match route {
            Some(i) => self.chains[i].call(record),
            None => {
                let error = crate::Error::new(
                    ErrorKind::Config,
                    format!("no route in handler.yml for topic `{}`", record.topic()),
                );
                Box::pin(std::future::ready(Err(error.into())))
            }
        }
    }
}

impl Config {
    /// Builds the chain of every route of `handler.yml`, with the built-in
    /// layers configured by their files and `registry`'s layers and
    /// handlers. Layers whose file says `enabled: false` are left out.
    ///
    /// # Errors
    ///
    /// A [`ConfigError`] naming the file, line and column of an unknown
    /// name, an empty or dangling chain, a broken order, a bad pattern, or a
    /// layer that cannot be built from its file.
    pub fn chains(&self, registry: &Registry) -> Result<Chains, ConfigError> {
        let file = self.handler_path();
        let handler = &self.handler;
        // Names and aliases.
        let mut entries: HashMap<&str, Entry> = HashMap::new();
        for spanned in &handler.handlers {
            let (name, alias) = match spanned.value.split_once('@') {
                Some((name, alias)) => (name.trim(), alias.trim()),
                None => (spanned.value.trim(), spanned.value.trim()),
            };
            let entry = if BUILTIN_LAYERS.contains(&name) || registry.has_layer(name) {
                Entry::Layer(name.to_owned())
            } else if name.contains('.') && !registry.has_handler(name) {
                match super::files::java_handler(name) {
                    Ok(builtin) => Entry::Layer(builtin.to_owned()),
                    Err(_) => Entry::Java,
                }
            } else if name == HTTP_BACKEND || registry.has_handler(name) {
                Entry::Handler(name.to_owned())
            } else {
                return Err(self.at(spanned,
                    ConfigErrorKind::UnknownHandler,
                    format!("`{name}` is neither a built-in layer ({}) nor `{HTTP_BACKEND}` nor registered", BUILTIN_LAYERS.join(", ")),
                ));
            };
            if entries.insert(alias, entry).is_some() {
                return Err(self.at(
                    spanned,
                    ConfigErrorKind::Invalid,
                    format!("`{alias}` is declared twice"),
                ));
            }
        }
        // Chains hold layers only.
        let mut chains: HashMap<&str, Vec<Placed<'_>>> = HashMap::new();
        for (name, list) in &handler.chains {
            if list.value.is_empty() {
                return Err(self.at_location(
                    &list.referenced,
                    ConfigErrorKind::EmptyChain,
                    format!("the chain `{name}` is empty"),
                ));
            }
            let mut layers = Vec::new();
            for item in &list.value {
                match entries.get(item.value.as_str()) {
                    Some(Entry::Layer(_)) => layers.push(Placed {
                        name: item.value.as_str(),
                        at: item,
                    }),
                    Some(Entry::Java) => {}
                    Some(Entry::Handler(_)) => {
                        return Err(self.at(item,
                            ConfigErrorKind::Dangling,
                            format!("`{}` is a handler: a chain holds layers; put the handler at the end of an `exec` list", item.value),
                        ));
                    }
                    None => {
                        return Err(self.at(
                            item,
                            ConfigErrorKind::UnknownHandler,
                            format!(
                                "the chain `{name}` names `{}`, which `handlers` does not declare",
                                item.value
                            ),
                        ));
                    }
                }
            }
            chains.insert(name.as_str(), layers);
        }
        let mut exact = HashMap::new();
        let mut patterns = Vec::new();
        let mut services: Vec<BoxRecordService> = Vec::new();
        let mut built: HashMap<String, BoxRecordService> = HashMap::new();
        if !handler.routes_topics() {
            return self.default_chains(registry);
        }
        for route in &handler.topics {
            if route.path.is_some() && route.topic.is_none() && route.pattern.is_none() {
                // An HTTP route of light-4j: in the ignored list.
                continue;
            }
            let place = route.topic.as_ref().or(route.pattern.as_ref());
            let Some(place) = place else {
                let first = route.exec.first().map(|e| e.referenced);
                return Err(ConfigError::new(
                    ConfigErrorKind::Invalid,
                    &file,
                    first.map_or((0, 0), |l| self.handler_position(&l)),
                    "a route needs a `topic` or a `pattern`",
                ));
            };
            if route.topic.is_some() && route.pattern.is_some() {
                return Err(self.at(
                    place,
                    ConfigErrorKind::Invalid,
                    "a route has a `topic` or a `pattern`, not both",
                ));
            }
            services.push(self.route(
                &file,
                &route.exec,
                place,
                &entries,
                &chains,
                registry,
                &mut built,
            )?);
            let chain = services.len() - 1;
            match (&route.topic, &route.pattern) {
                (Some(topic), _) => {
                    exact.insert(topic.value.clone(), chain);
                }
                (_, Some(pattern)) => {
                    let regex = regex_lite::Regex::new(&format!("^(?:{})$", pattern.value))
                        .map_err(|e| {
                            self.at(
                                pattern,
                                ConfigErrorKind::Invalid,
                                format!("not a regular expression: {e}"),
                            )
                        })?;
                    patterns.push((regex, chain));
                }
                _ => {}
            }
        }
        let default = match &handler.default_handlers {
            Some(list) => {
                let place = list.value.first().ok_or_else(|| {
                    self.at_location(
                        &list.referenced,
                        ConfigErrorKind::EmptyChain,
                        "`defaultHandlers` is empty",
                    )
                })?;
                {
                    services.push(self.route(
                        &file,
                        &list.value,
                        place,
                        &entries,
                        &chains,
                        registry,
                        &mut built,
                    )?);
                    Some(services.len() - 1)
                }
            }
            None => None,
        };
        Ok(Chains {
            chains: services,
            exact: Arc::new(exact),
            patterns: Arc::new(patterns),
            default,
            last: None,
        })
    }

    /// Checks and builds one execution list.
    #[allow(clippy::too_many_arguments)]
    fn route(
        &self,
        file: &Path,
        exec: &[Spanned<String>],
        place: &Spanned<String>,
        entries: &HashMap<&str, Entry>,
        chains: &HashMap<&str, Vec<Placed<'_>>>,
        registry: &Registry,
        built: &mut HashMap<String, BoxRecordService>,
    ) -> Result<BoxRecordService, ConfigError> {
        if exec.is_empty() {
            return Err(self.at(
                place,
                ConfigErrorKind::EmptyChain,
                "`exec` is empty: it needs at least a handler",
            ));
        }
        let mut layers: Vec<Placed<'_>> = Vec::new();
        let mut handler: Option<(&str, &Spanned<String>)> = None;
        for (i, item) in exec.iter().enumerate() {
            let last = i + 1 == exec.len();
            if let Some(chain) = chains.get(item.value.as_str()) {
                if last {
                    return Err(self.at(
                        item,
                        ConfigErrorKind::Dangling,
                        format!(
                            "`exec` ends with the chain `{}`: it must end with a handler",
                            item.value
                        ),
                    ));
                }
                layers.extend(chain.iter().map(|p| Placed {
                    name: p.name,
                    at: p.at,
                }));
                continue;
            }
            match entries.get(item.value.as_str()) {
                Some(Entry::Layer(_)) if last => {
                    return Err(self.at(
                        item,
                        ConfigErrorKind::Dangling,
                        format!(
                            "`exec` ends with the layer `{}`: it must end with a handler",
                            item.value
                        ),
                    ));
                }
                Some(Entry::Layer(_)) => layers.push(Placed {
                    name: item.value.as_str(),
                    at: item,
                }),
                Some(Entry::Handler(name)) if last => handler = Some((name.as_str(), item)),
                Some(Entry::Java) if last => {
                    return Err(self.at(
                        item,
                        ConfigErrorKind::UnknownHandler,
                        format!(
                            "`{}` is a light-4j HTTP handler: records need a registered handler or `{HTTP_BACKEND}`",
                            item.value
                        ),
                    ));
                }
                Some(Entry::Java) => {}
                Some(Entry::Handler(_)) => {
                    return Err(self.at(
                        item,
                        ConfigErrorKind::Dangling,
                        format!(
                            "the handler `{}` is not last: nothing runs after a handler",
                            item.value
                        ),
                    ));
                }
                None => {
                    return Err(self.at(
                        item,
                        ConfigErrorKind::UnknownHandler,
                        format!(
                            "`{}` is neither a chain nor declared in `handlers`",
                            item.value
                        ),
                    ));
                }
            }
        }
        let Some((handler_name, handler_at)) = handler else {
            return Err(self.at(place, ConfigErrorKind::Dangling, "`exec` has no handler"));
        };
        check_order(file, &layers, entries, |l| self.handler_position(l))?;
        let mut service = match built.get(handler_name) {
            Some(service) => service.clone(),
            None => {
                let service = self.handler_service(handler_name, handler_at, registry)?;
                built.insert(handler_name.to_owned(), service.clone());
                service
            }
        };
        if !self.handler.enabled {
            return Ok(service);
        }
        let names: Vec<(&str, &Spanned<String>)> = layers
            .iter()
            .map(|p| match entries.get(p.name) {
                Some(Entry::Layer(name)) => (name.as_str(), p.at),
                _ => (p.name, p.at),
            })
            .collect();
        if let Some(chain) = self.static_chain(&names, service.clone(), registry)? {
            return Ok(chain);
        }
        for placed in layers.iter().rev() {
            let Some(Entry::Layer(name)) = entries.get(placed.name) else {
                continue;
            };
            if let Some(layer) = self.layer(name, placed.at, registry)? {
                service = layer(service);
            }
        }
        Ok(service)
    }

    pub(crate) fn handler_service(
        &self,
        name: &str,
        place: &Spanned<String>,
        registry: &Registry,
    ) -> Result<BoxRecordService, ConfigError> {
        if let Some(service) = registry.handlers.get(name) {
            return Ok(service.clone());
        }
        #[cfg(feature = "http-backend")]
        if name == HTTP_BACKEND {
            let consumer = self.consumer.as_ref().ok_or_else(|| {
                self.at(
                    place,
                    ConfigErrorKind::Invalid,
                    "`http-backend` needs kafka-consumer.yml with `backendApiHost`",
                )
            })?;
            let host = consumer.backend_api_host.as_deref().ok_or_else(|| {
                self.at(
                    place,
                    ConfigErrorKind::Invalid,
                    "`http-backend` needs `backendApiHost` in kafka-consumer.yml",
                )
            })?;
            let base = format!(
                "{}{}",
                host.trim_end_matches('/'),
                consumer.backend_api_path.as_deref().unwrap_or("")
            );
            let backend = crate::http::backend::HttpBackend::new(base).map_err(|e| {
                self.at(
                    place,
                    ConfigErrorKind::Invalid,
                    format!("`backendApiHost`: {e}"),
                )
            })?;
            return Ok(erase(crate::http::HttpAdapter::new(backend)));
        }
        Err(self.at(
            place,
            ConfigErrorKind::UnknownHandler,
            format!("no handler `{name}` is registered"),
        ))
    }
}

/// The documented invariants of an order (outermost first): each layer at
/// most once; `retry`, `jwt` and `schema` inside `dead-letter` (a rejection
/// is a poison record the dead-letter layer must see; a retry outside it
/// would write a dead letter per attempt).
fn check_order(
    file: &Path,
    layers: &[Placed<'_>],
    entries: &HashMap<&str, Entry>,
    position: impl Fn(&serde_saphyr::Location) -> (u64, u64),
) -> Result<(), ConfigError> {
    let name_of = |p: &Placed<'_>| -> String {
        match entries.get(p.name) {
            Some(Entry::Layer(name)) => name.clone(),
            _ => p.name.to_owned(),
        }
    };
    let mut seen: HashMap<String, usize> = HashMap::new();
    for (i, placed) in layers.iter().enumerate() {
        if seen.insert(name_of(placed), i).is_some() {
            return Err(ConfigError::new(
                ConfigErrorKind::Order,
                file,
                position(&placed.at.referenced),
                format!(
                    "`{}` appears twice in this execution list (chains included)",
                    placed.name
                ),
            ));
        }
    }
    if let Some(&dead_letter) = seen.get("dead-letter") {
        for inner in ["retry", "jwt", "schema"] {
            if let Some(&i) = seen.get(inner)
                && i < dead_letter
            {
                let why = if inner == "retry" {
                    "retries run inside the dead-letter layer, or each attempt writes a dead letter"
                } else {
                    "its rejections are poison records the dead-letter layer must see"
                };
                return Err(ConfigError::new(
                    ConfigErrorKind::Order,
                    file,
                    position(&layers[i].at.referenced),
                    format!("`{inner}` must come after `dead-letter`: {why}"),
                ));
            }
        }
    }
    Ok(())
}

impl Config {
    pub(super) fn at(
        &self,
        spanned: &Spanned<String>,
        kind: ConfigErrorKind,
        message: impl Into<String>,
    ) -> ConfigError {
        self.at_location(&spanned.referenced, kind, message)
    }

    fn at_location(
        &self,
        location: &serde_saphyr::Location,
        kind: ConfigErrorKind,
        message: impl Into<String>,
    ) -> ConfigError {
        ConfigError::new(
            kind,
            &self.handler_path(),
            self.handler_position(location),
            message,
        )
    }
}
