//! Context that travels with a unit of work: the propagated identity and trace
//! headers, available to any code running on its behalf.
//!
//! A [`Propagation`] holds the five headers that cross every hop
//! (`X-Correlation-Id`, `X-Traceability-Id`, `authorization`, `traceparent`,
//! `tracestate`). The consumer runtime makes the consumed record's propagation
//! *current* while its handler runs (a tokio task-local), so code deep inside a
//! handler can reach it without threading it through every call:
//!
//! - [`current`] returns it, e.g. to build the headers of an outgoing HTTP call
//!   with [`Propagation::to_header_map`];
//! - a producer chain with the propagate layer stamps it onto every record the
//!   handler produces.
//!
//! The task-local covers the handler's future, not tasks it spawns: wrap those
//! in [`scope`] (`context::scope(context::current().unwrap_or_default(), fut)`).
//!
//! A [`RecordContext`] is the per-record counterpart of light-4j's audit-info
//! map: it travels in the record's extensions, inner layers write what they
//! learned into it (the propagate layer the correlation ids, the JWT layer the
//! client, user and caller), and outer layers (metrics, audit, trace) read it
//! after the inner call returns. Tokens never go into it.
//!
//! ```
//! use light_kafka::context::{self, Propagation};
//! use light_kafka::record::{names, Headers};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() {
//! let mut headers = Headers::new();
//! headers.append(names::CORRELATION_ID, "c-7");
//! headers.append(names::AUTHORIZATION, "Bearer abc");
//!
//! assert!(context::current().is_none());
//! context::scope(Propagation::from_headers(&headers), async {
//!     let current = context::current().unwrap();
//!     assert_eq!(current.correlation_id(), Some("c-7"));
//!     let outgoing = current.to_header_map().unwrap();
//!     assert_eq!(outgoing["authorization"], "Bearer abc");
//! })
//! .await;
//! # }
//! ```

use std::fmt;
use std::future::Future;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use http::HeaderMap;
use tokio::task::futures::TaskLocalFuture;

use crate::record::{HeaderConversionError, HeaderName, Headers, Record, names};

tokio::task_local! {
    static CURRENT: Propagation;
}

const CORRELATION: usize = 0;
const TRACEABILITY: usize = 1;
const AUTHORIZATION: usize = 2;
const TRACEPARENT: usize = 3;
const TRACESTATE: usize = 4;

type Values = [Option<Bytes>; 5];

/// The identity and trace headers that pass from hop to hop.
///
/// A handle: empty costs nothing, clones share the values (copy on write).
/// `Debug` never shows the authorization value.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Propagation {
    values: Option<Arc<Values>>,
}

impl Propagation {
    /// Nothing to propagate.
    pub const fn new() -> Self {
        Propagation { values: None }
    }

    fn from_values(values: Values) -> Self {
        if values.iter().all(Option::is_none) {
            Propagation::new()
        } else {
            Propagation {
                values: Some(Arc::new(values)),
            }
        }
    }

    /// The propagated headers found in Kafka `headers` (the last value of each).
    pub fn from_headers(headers: &Headers) -> Self {
        if headers.is_empty() {
            return Propagation::new();
        }
        Propagation::from_values(std::array::from_fn(|i| {
            headers.get_bytes(names::PROPAGATED[i]).cloned()
        }))
    }

    /// The propagated headers found in an HTTP request's headers.
    pub fn from_http(map: &HeaderMap) -> Self {
        Propagation::from_values(std::array::from_fn(|i| {
            map.get(names::PROPAGATED[i])
                .map(|v| Bytes::copy_from_slice(v.as_bytes()))
        }))
    }

    fn value(&self, index: usize) -> Option<&Bytes> {
        self.values.as_deref()?[index].as_ref()
    }

    fn get(&self, index: usize) -> Option<&str> {
        self.value(index).and_then(|v| std::str::from_utf8(v).ok())
    }

    fn set(&mut self, index: usize, value: Bytes) {
        Arc::make_mut(self.values.get_or_insert_with(Default::default))[index] = Some(value);
    }

    /// `X-Correlation-Id`, when present and UTF-8.
    pub fn correlation_id(&self) -> Option<&str> {
        self.get(CORRELATION)
    }

    /// `X-Traceability-Id`, when present and UTF-8.
    pub fn traceability_id(&self) -> Option<&str> {
        self.get(TRACEABILITY)
    }

    /// The raw `authorization` value (`Bearer <token>`). Handle with care: never log it.
    pub fn authorization(&self) -> Option<&str> {
        self.get(AUTHORIZATION)
    }

    /// W3C `traceparent`, when present and UTF-8.
    pub fn traceparent(&self) -> Option<&str> {
        self.get(TRACEPARENT)
    }

    /// W3C `tracestate`, when present and UTF-8.
    pub fn tracestate(&self) -> Option<&str> {
        self.get(TRACESTATE)
    }

    /// Sets `X-Correlation-Id`.
    pub fn set_correlation_id(&mut self, value: impl Into<Bytes>) {
        self.set(CORRELATION, value.into());
    }

    /// Sets `X-Traceability-Id`.
    pub fn set_traceability_id(&mut self, value: impl Into<Bytes>) {
        self.set(TRACEABILITY, value.into());
    }

    /// Sets `authorization` (the whole value, e.g. `Bearer <token>`).
    pub fn set_authorization(&mut self, value: impl Into<Bytes>) {
        self.set(AUTHORIZATION, value.into());
    }

    /// Sets `traceparent`.
    pub fn set_traceparent(&mut self, value: impl Into<Bytes>) {
        self.set(TRACEPARENT, value.into());
    }

    /// Sets `tracestate`.
    pub fn set_tracestate(&mut self, value: impl Into<Bytes>) {
        self.set(TRACESTATE, value.into());
    }

    /// Whether no header is set.
    pub fn is_empty(&self) -> bool {
        self.values.is_none()
    }

    /// The set headers, by their Kafka names.
    pub fn iter(&self) -> impl Iterator<Item = (&'static str, &Bytes)> + '_ {
        names::PROPAGATED
            .iter()
            .enumerate()
            .filter_map(|(i, name)| self.value(i).map(|v| (*name, v)))
    }

    /// Writes every set header into `headers`, replacing any with the same name.
    /// Unset headers leave `headers` alone.
    ///
    /// ```
    /// # use light_kafka::context::Propagation;
    /// # use light_kafka::record::{names, Headers};
    /// let mut p = Propagation::new();
    /// p.set_correlation_id("c-1");
    /// let mut headers = Headers::new();
    /// headers.append(names::CORRELATION_ID, "old");
    /// headers.append(names::TRACEPARENT, "kept");
    /// p.apply_to(&mut headers);
    /// assert_eq!(headers.get_all(names::CORRELATION_ID).count(), 1);
    /// assert_eq!(headers.get_str(names::CORRELATION_ID), Some("c-1"));
    /// assert_eq!(headers.get_str(names::TRACEPARENT), Some("kept"));
    /// ```
    pub fn apply_to(&self, headers: &mut Headers) {
        for (name, value) in self.iter() {
            headers.insert(HeaderName::from_static(name), value.clone());
        }
    }

    /// The set headers as HTTP headers, for an outgoing request.
    ///
    /// # Errors
    ///
    /// A [`HeaderConversionError`] when a value is not a valid HTTP header value
    /// (it came from a Kafka header, which may hold any bytes).
    pub fn to_header_map(&self) -> Result<HeaderMap, HeaderConversionError> {
        let mut headers = Headers::with_capacity(5);
        self.apply_to(&mut headers);
        headers.to_header_map_all()
    }
}

impl fmt::Debug for Propagation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut d = f.debug_struct("Propagation");
        d.field("correlation_id", &self.correlation_id())
            .field("traceability_id", &self.traceability_id());
        if self.value(AUTHORIZATION).is_some() {
            d.field("authorization", &"<redacted>");
        }
        d.field("traceparent", &self.traceparent())
            .field("tracestate", &self.tracestate())
            .finish()
    }
}

/// The propagation of the unit of work running now, if any.
pub fn current() -> Option<Propagation> {
    CURRENT.try_with(Clone::clone).ok()
}

/// Runs `f` with a reference to the current propagation, without cloning it.
pub fn with_current<R>(f: impl FnOnce(Option<&Propagation>) -> R) -> R {
    let mut f = Some(f);
    match CURRENT.try_with(|p| (f.take().expect("called once"))(Some(p))) {
        Ok(r) => r,
        Err(_) => (f.take().expect("called once"))(None),
    }
}

/// A future that runs with a propagation current.
pub type Scoped<F> = TaskLocalFuture<Propagation, F>;

/// Makes `propagation` current while `future` runs.
pub fn scope<F: Future>(propagation: Propagation, future: F) -> Scoped<F> {
    CURRENT.scope(propagation, future)
}

/// Makes `propagation` current while `f` runs (synchronous code).
pub fn sync_scope<R>(propagation: Propagation, f: impl FnOnce() -> R) -> R {
    CURRENT.sync_scope(propagation, f)
}

/// What layers learned about one record, shared between them.
///
/// Cloning shares the same fields. Get it with [`RecordContext::of`] (which
/// inserts one into the record's extensions when there is none): an outer layer
/// takes it before calling inside, an inner layer fills it in, and the outer
/// layer reads it afterwards.
///
/// ```
/// use light_kafka::context::RecordContext;
/// use light_kafka::record::Record;
///
/// let mut record = Record::builder("orders").build();
/// let outer = RecordContext::of(&mut record);      // e.g. the metrics layer
///
/// // ...later, deeper in the chain (e.g. the JWT layer):
/// RecordContext::of(&mut record).update(|f| f.client_id = Some("portal".into()));
///
/// assert_eq!(outer.fields().client_id.as_deref(), Some("portal"));
/// ```
#[derive(Clone, Default)]
pub struct RecordContext {
    fields: Arc<Mutex<ContextFields>>,
}

/// The fields of a [`RecordContext`].
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct ContextFields {
    /// `X-Correlation-Id` (received or generated).
    pub correlation_id: Option<Arc<str>>,
    /// `X-Traceability-Id`.
    pub traceability_id: Option<Arc<str>>,
    /// The OAuth client of the verified token (`client_id` or `cid`).
    pub client_id: Option<Arc<str>>,
    /// The user of the verified token (`user_id` or `uid`).
    pub user_id: Option<Arc<str>>,
    /// The service that produced the record (`caller_id` header).
    pub caller_id: Option<Arc<str>>,
    /// The issuer of the verified token.
    pub issuer: Option<Arc<str>>,
    /// Set by the dead-letter layer when it settled the record by writing it
    /// to the dead-letter topic.
    pub dead_lettered: bool,
    /// Why the record was dead-lettered (`kind: message`).
    pub dead_letter_reason: Option<Arc<str>>,
}

impl RecordContext {
    /// The record's context, created if absent.
    pub fn of(record: &mut Record) -> RecordContext {
        record
            .context
            .get_or_insert_with(RecordContext::default)
            .clone()
    }

    /// The record's context, if a layer created one.
    pub fn get(record: &Record) -> Option<RecordContext> {
        record.context.clone()
    }

    /// A copy of the fields.
    pub fn fields(&self) -> ContextFields {
        self.lock().clone()
    }

    /// Changes the fields.
    pub fn update<R>(&self, f: impl FnOnce(&mut ContextFields) -> R) -> R {
        f(&mut self.lock())
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, ContextFields> {
        self.fields.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl fmt::Debug for RecordContext {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("RecordContext").field(&*self.lock()).finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn record_context_is_shared_through_the_extensions() {
        let mut record = Record::new("t");
        assert!(RecordContext::get(&record).is_none());
        let a = RecordContext::of(&mut record);
        let b = RecordContext::of(&mut record);
        b.update(|f| f.user_id = Some("u1".into()));
        assert_eq!(a.fields().user_id.as_deref(), Some("u1"));
        let copy = record.clone();
        RecordContext::get(&copy)
            .unwrap()
            .update(|f| f.dead_lettered = true);
        assert!(
            a.fields().dead_lettered,
            "clones of a record share its context"
        );
    }

    #[test]
    fn debug_redacts_the_token() {
        let mut p = Propagation::new();
        p.set_authorization("Bearer super-secret");
        p.set_correlation_id("c");
        let shown = format!("{p:?}");
        assert!(!shown.contains("super-secret"));
        assert!(shown.contains("<redacted>"));
    }

    #[test]
    fn http_round_trip() {
        let mut map = HeaderMap::new();
        map.insert("x-correlation-id", "c-1".parse().unwrap());
        map.insert("traceparent", "00-abc-def-01".parse().unwrap());
        map.insert("user-agent", "x".parse().unwrap());
        let p = Propagation::from_http(&map);
        assert_eq!(p.correlation_id(), Some("c-1"));
        assert_eq!(p.iter().count(), 2);
        let back = p.to_header_map().unwrap();
        assert_eq!(back.len(), 2);
        assert_eq!(back["traceparent"], "00-abc-def-01");
    }

    #[test]
    fn invalid_kafka_value_is_an_error_for_http() {
        let mut p = Propagation::new();
        p.set_traceability_id(vec![b'a', b'\r', b'b']);
        assert!(p.to_header_map().is_err());
    }

    #[test]
    fn sync_scope_and_with_current() {
        let mut p = Propagation::new();
        p.set_correlation_id("c-9");
        assert!(with_current(|c| c.is_none()));
        sync_scope(p, || {
            assert_eq!(
                with_current(|c| c.unwrap().correlation_id().map(str::to_owned)),
                Some("c-9".to_owned())
            );
        });
    }
}
