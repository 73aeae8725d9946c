//! Metrics per record, on the `metrics` crate (any recorder works).
//!
//! Names follow OpenTelemetry's messaging conventions:
//!
//! | metric | kind | where |
//! | --- | --- | --- |
//! | `messaging.process.duration` | histogram, seconds | consume |
//! | `messaging.client.consumed.messages` | counter | consume |
//! | `messaging.client.operation.duration` | histogram, seconds | produce |
//! | `messaging.client.sent.messages` | counter | produce |
//!
//! Two views, as light-kafka describes them:
//!
//! - the **service view**, the metrics above, labelled `service.id`,
//!   `messaging.destination.name` (the topic) and `outcome`;
//! - the **client view**, the same measurements under `light_kafka.client.*`
//!   names (`light_kafka.client.process.duration`,
//!   `light_kafka.client.consumed.messages`, ...), labelled `service.id`,
//!   `client.id` and `outcome`. The client id is the verified JWT's
//!   `client_id`, read from the per-record context after the inner call
//!   (place the JWT layer inside), or `unknown`.
//!
//! `outcome` is one of light-4j's classes: `success`, `auth_error` (token
//! missing, invalid, expired, scope), `request_error` (validation or
//! deserialization), `server_error` (any other failure) and `dead_lettered`
//! (settled by the dead-letter layer).
//!
//! Client ids are bounded: an allowlist maps every other id to `other`, or
//! (by default) the first 100 distinct ids are kept and later ones are `other`.
//!
//! The consumer runtime adds a gauge, `messaging.kafka.consumer.lag`, per
//! partition (labels: topic, partition, group).
//!
//! ```
//! use light_kafka::layers::metrics::MetricsLayer;
//! use light_kafka::testkit::{self, Accept};
//! use tower::Layer;
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() {
//! let mut handler = MetricsLayer::consume("billing").max_clients(50).layer(Accept);
//! testkit::call(&mut handler, testkit::record("orders").build()).await.unwrap();
//! # }
//! ```

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, OnceLock};
use std::task::{Context, Poll, ready};

use metrics::{Counter, Histogram, SharedString};
use pin_project_lite::pin_project;
use quanta::Instant;
use tower_layer::Layer;
use tower_service::Service;

use crate::context::RecordContext;
use crate::error::{BoxError, ErrorKind, classify};
use crate::record::Record;

/// `messaging.process.duration`.
pub const PROCESS_DURATION: &str = "messaging.process.duration";
/// `messaging.client.consumed.messages`.
pub const CONSUMED_MESSAGES: &str = "messaging.client.consumed.messages";
/// `messaging.client.operation.duration`.
pub const OPERATION_DURATION: &str = "messaging.client.operation.duration";
/// `messaging.client.sent.messages`.
pub const SENT_MESSAGES: &str = "messaging.client.sent.messages";
/// Client view of [`PROCESS_DURATION`].
pub const CLIENT_PROCESS_DURATION: &str = "light_kafka.client.process.duration";
/// Client view of [`CONSUMED_MESSAGES`].
pub const CLIENT_CONSUMED_MESSAGES: &str = "light_kafka.client.consumed.messages";
/// Client view of [`OPERATION_DURATION`].
pub const CLIENT_OPERATION_DURATION: &str = "light_kafka.client.operation.duration";
/// Client view of [`SENT_MESSAGES`].
pub const CLIENT_SENT_MESSAGES: &str = "light_kafka.client.sent.messages";
/// The consumer runtime's lag gauge.
pub const CONSUMER_LAG: &str = "messaging.kafka.consumer.lag";

/// The outcome classes, as light-4j has them.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Outcome {
    /// Handled or sent.
    Success,
    /// The token was missing, invalid, expired or lacked a scope.
    AuthError,
    /// The value failed validation or deserialization.
    RequestError,
    /// Any other failure.
    ServerError,
    /// Settled by writing it to the dead-letter topic.
    DeadLettered,
}

impl Outcome {
    /// The label value.
    pub const fn as_str(self) -> &'static str {
        match self {
            Outcome::Success => "success",
            Outcome::AuthError => "auth_error",
            Outcome::RequestError => "request_error",
            Outcome::ServerError => "server_error",
            Outcome::DeadLettered => "dead_lettered",
        }
    }

    /// The class of a failure of `kind`.
    pub const fn of(kind: ErrorKind) -> Self {
        match kind {
            ErrorKind::Unauthorized | ErrorKind::Forbidden => Outcome::AuthError,
            ErrorKind::Invalid | ErrorKind::Deserialization => Outcome::RequestError,
            _ => Outcome::ServerError,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Direction {
    Consume,
    Produce,
}

impl Direction {
    fn names(self) -> [&'static str; 4] {
        match self {
            Direction::Consume => [
                PROCESS_DURATION,
                CONSUMED_MESSAGES,
                CLIENT_PROCESS_DURATION,
                CLIENT_CONSUMED_MESSAGES,
            ],
            Direction::Produce => [
                OPERATION_DURATION,
                SENT_MESSAGES,
                CLIENT_OPERATION_DURATION,
                CLIENT_SENT_MESSAGES,
            ],
        }
    }
}

const UNKNOWN: &str = "unknown";
const OTHER: &str = "other";

/// Maps client ids to bounded label values.
struct Clients {
    allow: Option<HashSet<Arc<str>>>,
    max: usize,
    other: Arc<str>,
}

impl Clients {
    fn label(&self, seen: &mut HashSet<Arc<str>>, client: &Arc<str>) -> Arc<str> {
        if let Some(allow) = &self.allow {
            return if allow.contains(client) {
                client.clone()
            } else {
                self.other.clone()
            };
        }
        if seen.contains(client) {
            client.clone()
        } else if seen.len() < self.max {
            seen.insert(client.clone());
            client.clone()
        } else {
            self.other.clone()
        }
    }
}

/// The handles of one label value (a topic, or a client) in one view: a
/// histogram and a counter per [`Outcome`], registered with the recorder on
/// first use.
struct Series {
    view: View,
    label: Arc<str>,
    per_outcome: [OnceLock<(Histogram, Counter)>; 5],
}

#[derive(Clone, Copy)]
enum View {
    Service,
    Client,
}

impl Series {
    fn new(view: View, label: Arc<str>) -> Arc<Self> {
        Arc::new(Series {
            view,
            label,
            per_outcome: Default::default(),
        })
    }

    fn record(&self, handles: &Handles, outcome: Outcome, seconds: f64) {
        let (histogram, counter) = self.per_outcome[outcome as usize]
            .get_or_init(|| handles.register(self.view, &self.label, outcome));
        histogram.record(seconds);
        counter.increment(1);
    }
}

/// Label value (topic or client) → its series; hashed with foldhash.
type Views = HashMap<Arc<str>, Arc<Series>, foldhash::fast::FixedState>;

#[derive(Default)]
struct State {
    service_view: Views,
    client_view: Views,
    clients_seen: HashSet<Arc<str>>,
}

/// Registered metric handles, cached per label set. A record of the topic the
/// layer saw last, without a client, costs no lock and no map lookup: two
/// histogram samples and two counter increments in the recorder.
struct Handles {
    direction: Direction,
    service_id: Arc<str>,
    clients: Clients,
    /// The client view of records without a verified client (`unknown`).
    unknown: Arc<Series>,
    state: Mutex<State>,
}

impl Handles {
    fn register(&self, view: View, label: &Arc<str>, outcome: Outcome) -> (Histogram, Counter) {
        let names = self.direction.names();
        let operation = match self.direction {
            Direction::Consume => "process",
            Direction::Produce => "send",
        };
        let service = SharedString::from(self.service_id.clone());
        let outcome = SharedString::const_str(outcome.as_str());
        match view {
            View::Service => {
                let labels = [
                    ("service.id", service),
                    ("messaging.system", SharedString::const_str("kafka")),
                    (
                        "messaging.operation.name",
                        SharedString::const_str(operation),
                    ),
                    (
                        "messaging.destination.name",
                        SharedString::from(label.clone()),
                    ),
                    ("outcome", outcome),
                ];
                (
                    metrics::histogram!(names[0], &labels),
                    metrics::counter!(names[1], &labels),
                )
            }
            View::Client => {
                let labels = [
                    ("service.id", service),
                    ("client.id", SharedString::from(label.clone())),
                    ("outcome", outcome),
                ];
                (
                    metrics::histogram!(names[2], &labels),
                    metrics::counter!(names[3], &labels),
                )
            }
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The service-view series of `topic`.
    fn topic(&self, topic: &Arc<str>) -> Arc<Series> {
        self.lock()
            .service_view
            .entry(topic.clone())
            .or_insert_with(|| Series::new(View::Service, topic.clone()))
            .clone()
    }

    /// The client-view series of `client` (bounded: see [`Clients`]).
    fn client(&self, client: &Arc<str>) -> Arc<Series> {
        let mut state = self.lock();
        let state = &mut *state;
        let label = self.clients.label(&mut state.clients_seen, client);
        state
            .client_view
            .entry(label.clone())
            .or_insert_with(|| Series::new(View::Client, label))
            .clone()
    }

    fn record(&self, topic: &Series, client: Option<&Arc<str>>, outcome: Outcome, seconds: f64) {
        topic.record(self, outcome, seconds);
        match client {
            None => self.unknown.record(self, outcome, seconds),
            Some(client) => self.client(client).record(self, outcome, seconds),
        }
    }
}

/// Layer that applies [`Metrics`]. See the [module documentation](self).
#[derive(Clone)]
pub struct MetricsLayer {
    direction: Direction,
    service_id: Arc<str>,
    allow: Option<HashSet<Arc<str>>>,
    max_clients: usize,
}

impl MetricsLayer {
    /// Consumer metrics of service `service_id`.
    pub fn consume(service_id: impl Into<Arc<str>>) -> Self {
        MetricsLayer::new(Direction::Consume, service_id.into())
    }

    /// Producer metrics of service `service_id`.
    pub fn produce(service_id: impl Into<Arc<str>>) -> Self {
        MetricsLayer::new(Direction::Produce, service_id.into())
    }

    fn new(direction: Direction, service_id: Arc<str>) -> Self {
        MetricsLayer {
            direction,
            service_id,
            allow: None,
            max_clients: 100,
        }
    }

    /// Labels only these client ids; others are `other`.
    pub fn client_allowlist<I: IntoIterator<Item = T>, T: Into<Arc<str>>>(
        mut self,
        clients: I,
    ) -> Self {
        self.allow = Some(clients.into_iter().map(Into::into).collect());
        self
    }

    /// Labels at most `n` distinct client ids (the first seen); later ones are `other`.
    pub fn max_clients(mut self, n: usize) -> Self {
        self.max_clients = n;
        self
    }
}

impl fmt::Debug for MetricsLayer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MetricsLayer")
            .field("direction", &self.direction)
            .field("service_id", &self.service_id)
            .field("max_clients", &self.max_clients)
            .finish_non_exhaustive()
    }
}

impl<S> Layer<S> for MetricsLayer {
    type Service = Metrics<S>;

    fn layer(&self, inner: S) -> Metrics<S> {
        Metrics {
            inner,
            last_topic: None,
            handles: Arc::new(Handles {
                unknown: Series::new(View::Client, Arc::from(UNKNOWN)),
                direction: self.direction,
                service_id: self.service_id.clone(),
                clients: Clients {
                    allow: self.allow.clone(),
                    max: self.max_clients,
                    other: Arc::from(OTHER),
                },
                state: Mutex::new(State::default()),
            }),
        }
    }
}

/// Measures each record's processing or sending.
#[derive(Clone)]
pub struct Metrics<S> {
    inner: S,
    handles: Arc<Handles>,
    /// The topic of the last record and its series: consecutive records of a
    /// topic find their handles without a lock.
    last_topic: Option<(Arc<str>, Arc<Series>)>,
}

impl<S: fmt::Debug> fmt::Debug for Metrics<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Metrics")
            .field("inner", &self.inner)
            .finish_non_exhaustive()
    }
}

impl<S> Metrics<S> {
    /// The inner service.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    /// Unwraps the inner service.
    pub fn into_inner(self) -> S {
        self.inner
    }
}

impl<S> Service<Record> for Metrics<S>
where
    S: Service<Record>,
    S::Error: Into<BoxError>,
{
    type Response = S::Response;
    type Error = BoxError;
    type Future = ResponseFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, mut record: Record) -> Self::Future {
        let context = RecordContext::of(&mut record);
        let topic = match &self.last_topic {
            Some((name, series)) if Arc::ptr_eq(name, record.topic_arc()) => series.clone(),
            _ => {
                let name = record.topic_arc().clone();
                let series = self.handles.topic(&name);
                self.last_topic = Some((name, series.clone()));
                series
            }
        };
        ResponseFuture {
            future: self.inner.call(record),
            context,
            topic,
            start: Instant::now(),
            handles: self.handles.clone(),
        }
    }
}

pin_project! {
    /// Response future of [`Metrics`].
    pub struct ResponseFuture<F> {
        #[pin]
        future: F,
        context: RecordContext,
        topic: Arc<Series>,
        start: Instant,
        handles: Arc<Handles>,
    }
}

impl<F, T, E> Future for ResponseFuture<F>
where
    F: Future<Output = Result<T, E>>,
    E: Into<BoxError>,
{
    type Output = Result<T, BoxError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let result = ready!(this.future.poll(cx)).map_err(Into::into);
        let seconds = this.start.elapsed().as_secs_f64();
        let (dead_lettered, client) = this
            .context
            .update(|f| (f.dead_lettered, f.client_id.clone()));
        let outcome = match &result {
            Ok(_) if dead_lettered => Outcome::DeadLettered,
            Ok(_) => Outcome::Success,
            Err(error) => Outcome::of(classify(error.as_ref())),
        };
        this.handles
            .record(this.topic, client.as_ref(), outcome, seconds);
        Poll::Ready(result)
    }
}

impl<F> fmt::Debug for ResponseFuture<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ResponseFuture")
            .field("topic", &self.topic.label)
            .finish_non_exhaustive()
    }
}

/// Serving the metrics for Prometheus to scrape (feature `prometheus`).
#[cfg(feature = "prometheus")]
pub mod prometheus {
    use std::net::SocketAddr;

    use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpListener;

    use crate::error::BoxError;

    /// The Prometheus recorder and the address of its `/metrics` endpoint.
    #[derive(Debug)]
    pub struct Exporter {
        /// Renders the metrics in Prometheus's text format.
        pub handle: PrometheusHandle,
        /// Where `/metrics` is served.
        pub address: SocketAddr,
    }

    /// How often [`install_recorder`] drains the recorder's histograms: often
    /// enough that the samples buffered in between stay in a few megabytes at
    /// a million records per second.
    pub const UPKEEP_INTERVAL: std::time::Duration = std::time::Duration::from_millis(500);

    /// Installs a Prometheus recorder as the global `metrics` recorder and
    /// keeps it small: a thread runs its upkeep every `upkeep` (see
    /// [`UPKEEP_INTERVAL`]). The recorder buffers every histogram sample until
    /// upkeep or a scrape drains it, so a recorder installed with
    /// `PrometheusBuilder::install_recorder` and never scraped grows without
    /// bound; this one does not.
    ///
    /// # Errors
    ///
    /// When a global recorder is already installed.
    ///
    /// ```
    /// use light_kafka::layers::metrics::prometheus;
    ///
    /// let handle = prometheus::install_recorder(prometheus::UPKEEP_INTERVAL)?;
    /// metrics::counter!("orders").increment(1);
    /// assert!(handle.render().contains("orders 1"));
    /// # Ok::<_, light_kafka::BoxError>(())
    /// ```
    pub fn install_recorder(upkeep: std::time::Duration) -> Result<PrometheusHandle, BoxError> {
        let handle = PrometheusBuilder::new().install_recorder()?;
        let drained = handle.clone();
        std::thread::Builder::new()
            .name("light-kafka-metrics-upkeep".into())
            .spawn(move || {
                loop {
                    std::thread::sleep(upkeep);
                    drained.run_upkeep();
                }
            })?;
        Ok(handle)
    }

    /// Installs a Prometheus recorder as the global `metrics` recorder (with
    /// its upkeep, as [`install_recorder`]) and serves `GET /metrics` on
    /// `address` (port 0 picks a free port).
    ///
    /// # Errors
    ///
    /// When a global recorder is already installed or `address` cannot be bound.
    ///
    /// ```no_run
    /// # #[tokio::main] async fn main() -> Result<(), light_kafka::BoxError> {
    /// let exporter = light_kafka::layers::metrics::prometheus::serve("127.0.0.1:9464".parse()?).await?;
    /// println!("scrape http://{}/metrics", exporter.address);
    /// # Ok(()) }
    /// ```
    pub async fn serve(address: SocketAddr) -> Result<Exporter, BoxError> {
        let listener = TcpListener::bind(address).await?;
        let address = listener.local_addr()?;
        let handle = install_recorder(UPKEEP_INTERVAL)?;
        let renderer = handle.clone();
        tokio::spawn(async move {
            loop {
                let mut stream = match listener.accept().await {
                    Ok((stream, _)) => stream,
                    Err(error) => {
                        // Out of file descriptors, say: wait instead of spinning.
                        tracing::warn!(%error, "metrics endpoint: accept failed");
                        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                        continue;
                    }
                };
                let renderer = renderer.clone();
                tokio::spawn(async move {
                    let mut request = Vec::with_capacity(1024);
                    let mut buffer = [0u8; 1024];
                    while !request.windows(4).any(|w| w == b"\r\n\r\n") && request.len() < 16 * 1024
                    {
                        match stream.read(&mut buffer).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => request.extend_from_slice(&buffer[..n]),
                        }
                    }
                    let response = if request.starts_with(b"GET /metrics ") {
                        let body = renderer.render();
                        format!(
                            "HTTP/1.1 200 OK\r\ncontent-type: text/plain; version=0.0.4\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                            body.len()
                        )
                    } else {
                        "HTTP/1.1 404 Not Found\r\ncontent-length: 0\r\nconnection: close\r\n\r\n"
                            .to_owned()
                    };
                    let _ = stream.write_all(response.as_bytes()).await;
                    let _ = stream.shutdown().await;
                });
            }
        });
        Ok(Exporter { handle, address })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn outcome_classes() {
        assert_eq!(Outcome::of(ErrorKind::Forbidden), Outcome::AuthError);
        assert_eq!(
            Outcome::of(ErrorKind::Deserialization),
            Outcome::RequestError
        );
        assert_eq!(Outcome::of(ErrorKind::Panic), Outcome::ServerError);
    }

    #[test]
    fn client_labels_are_bounded() {
        let clients = Clients {
            allow: None,
            max: 2,
            other: Arc::from(OTHER),
        };
        let mut seen = HashSet::new();
        let id = |s: &str| Arc::<str>::from(s);
        assert_eq!(&*clients.label(&mut seen, &id("a")), "a");
        assert_eq!(&*clients.label(&mut seen, &id("b")), "b");
        assert_eq!(&*clients.label(&mut seen, &id("c")), "other");
        assert_eq!(&*clients.label(&mut seen, &id("a")), "a");

        let allow = Clients {
            allow: Some([Arc::from("portal")].into_iter().collect()),
            max: 0,
            other: Arc::from(OTHER),
        };
        assert_eq!(&*allow.label(&mut seen, &id("portal")), "portal");
        assert_eq!(&*allow.label(&mut seen, &id("x")), "other");
    }

    #[test]
    fn types_are_send_sync() {
        fn check<T: Send + Sync>() {}
        check::<MetricsLayer>();
        check::<Metrics<crate::testkit::Accept>>();
    }
}
