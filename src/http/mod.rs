//! HTTP is one adapter away: [`HttpAdapter`] makes any HTTP service a record
//! handler.
//!
//! A record becomes a `POST` request: the path from the topic (`/{topic}` by
//! default, [`HttpAdapter::path`] to change it), the record's headers as HTTP
//! headers (the ones HTTP cannot carry are left out), the ids a propagate
//! layer generated for the record (`X-Correlation-Id`, `X-Traceability-Id`)
//! when its headers had none, `x-kafka-topic`, `x-kafka-partition`,
//! `x-kafka-offset` and `x-kafka-key` (when the key is a valid header value),
//! `content-type: application/json` unless the record names its own, the
//! value as the body, and the record's extensions (claims, decoded payload...)
//! plus its [`KafkaMeta`] as the request's extensions.
//!
//! The response settles the record: **2xx** settles it; **4xx** fails it for
//! good with a kind a dead-letter layer routes (400 and 422 `invalid`, 401
//! `unauthorized`, 403 `forbidden`, 413, 414 and 431 `rejected`, any other
//! `handler`); **408** `timeout`, **429** `overloaded`, **5xx** `transient`
//! (504 `timeout`): outages, retried and never dead-lettered. The error keeps
//! the status and the first 512 bytes of the body.
//!
//! So (a) an axum `Router` is the handler of a topic, with its extractors;
//! (b) tower-http's layers run on records, placed around the router; (c) a
//! remote service reached through [`HttpBackend`](backend::HttpBackend) is the
//! handler: light-kafka's sidecar.
//!
//! ```
//! use axum::{Json, Router, routing::post};
//! use light_kafka::http::HttpAdapter;
//! use light_kafka::testkit;
//! use serde::Deserialize;
//!
//! #[derive(Deserialize)]
//! struct Order { quantity: u32 }
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() {
//! let router = Router::new().route("/orders", post(|Json(order): Json<Order>| async move {
//!     if order.quantity == 0 { axum::http::StatusCode::UNPROCESSABLE_ENTITY } else { axum::http::StatusCode::OK }
//! }));
//! let mut handler = HttpAdapter::new(router);
//! let ok = testkit::record("orders").value(r#"{"quantity": 2}"#).build();
//! assert!(testkit::call(&mut handler, ok).await.is_ok());
//! let bad = testkit::record("orders").value(r#"{"quantity": 0}"#).build();
//! let error = testkit::call(&mut handler, bad).await.unwrap_err();
//! assert_eq!(light_kafka::error::classify(error.as_ref()), light_kafka::ErrorKind::Invalid);
//! # }
//! ```

#[cfg(feature = "http-backend")]
pub mod backend;

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use http::header::{CONTENT_TYPE, HeaderName, HeaderValue};
use http::{Request, Response, StatusCode};
use http_body::Body;
use http_body_util::BodyExt;
use tower_service::Service;

use crate::context::RecordContext;
use crate::error::{BoxError, ErrorKind, Kinded};
use crate::record::{Record, names};

/// Most bytes of a failed response's body kept in the error.
const BODY_EXCERPT: usize = 512;

/// Where a request came from: the consumed record's coordinates, in the
/// request's extensions.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct KafkaMeta {
    /// The topic.
    pub topic: Arc<str>,
    /// The partition, when consumed.
    pub partition: Option<i32>,
    /// The offset, when consumed.
    pub offset: Option<i64>,
    /// The key.
    pub key: Option<Bytes>,
}

/// A response that did not settle its record.
#[derive(Clone, Debug)]
pub struct HttpStatusError {
    status: StatusCode,
    body: String,
}

impl HttpStatusError {
    /// The response's status.
    pub fn status(&self) -> StatusCode {
        self.status
    }

    /// The start of the response's body (at most 512 bytes, lossy UTF-8).
    pub fn body(&self) -> &str {
        &self.body
    }
}

impl fmt::Display for HttpStatusError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "the HTTP handler answered {}", self.status)?;
        if !self.body.is_empty() {
            write!(f, ": {}", self.body)?;
        }
        Ok(())
    }
}

impl std::error::Error for HttpStatusError {}

impl Kinded for HttpStatusError {
    fn kind(&self) -> ErrorKind {
        kind_of(self.status)
    }
}

/// The kind of failure a status means (see the [module documentation](self)).
pub fn kind_of(status: StatusCode) -> ErrorKind {
    match status.as_u16() {
        400 | 422 => ErrorKind::Invalid,
        401 => ErrorKind::Unauthorized,
        403 => ErrorKind::Forbidden,
        413 | 414 | 431 => ErrorKind::Rejected,
        408 | 504 => ErrorKind::Timeout,
        429 => ErrorKind::Overloaded,
        500..=599 => ErrorKind::Transient,
        _ => ErrorKind::Handler,
    }
}

type PathFn = Arc<dyn Fn(&Record) -> String + Send + Sync>;

/// A record handler made of an HTTP service. See the [module documentation](self).
pub struct HttpAdapter<S> {
    inner: S,
    path: Option<PathFn>,
    content_type: HeaderValue,
}

impl<S: Clone> Clone for HttpAdapter<S> {
    fn clone(&self) -> Self {
        HttpAdapter {
            inner: self.inner.clone(),
            path: self.path.clone(),
            content_type: self.content_type.clone(),
        }
    }
}

impl<S: fmt::Debug> fmt::Debug for HttpAdapter<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HttpAdapter")
            .field("inner", &self.inner)
            .field("content_type", &self.content_type)
            .finish_non_exhaustive()
    }
}

impl<S> HttpAdapter<S> {
    /// Records to `inner`, posted to `/{topic}`.
    pub fn new(inner: S) -> Self {
        HttpAdapter {
            inner,
            path: None,
            content_type: HeaderValue::from_static("application/json"),
        }
    }

    /// The request path (and query) for a record.
    pub fn path(mut self, path: impl Fn(&Record) -> String + Send + Sync + 'static) -> Self {
        self.path = Some(Arc::new(path));
        self
    }

    /// The `content-type` of records that carry none. Default: `application/json`.
    pub fn content_type(mut self, value: HeaderValue) -> Self {
        self.content_type = value;
        self
    }

    /// The HTTP service.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    /// Unwraps the HTTP service.
    pub fn into_inner(self) -> S {
        self.inner
    }

    fn request(&self, mut record: Record) -> Request<RequestBody> {
        let path = match &self.path {
            Some(path) => path(&record),
            None => format!("/{}", record.topic()),
        };
        let mut request = Request::new(RequestBody::new(
            record.value().cloned().unwrap_or_default(),
        ));
        *request.method_mut() = http::Method::POST;
        *request.uri_mut() = path.parse().unwrap_or_else(|_| http::Uri::from_static("/"));
        let headers = request.headers_mut();
        for header in record.headers().iter() {
            let (Ok(name), Some(Ok(value))) = (
                HeaderName::from_bytes(header.name().as_bytes()),
                header.value().map(|v| HeaderValue::from_bytes(v)),
            ) else {
                continue;
            };
            headers.append(name, value);
        }
        if let Some(context) = RecordContext::get(&record) {
            let fields = context.fields();
            for (name, value) in [
                (names::CORRELATION_ID, fields.correlation_id),
                (names::TRACEABILITY_ID, fields.traceability_id),
            ] {
                if let Some(value) = value
                    && !headers.contains_key(name)
                    && let Ok(value) = HeaderValue::from_str(&value)
                    && let Ok(name) = HeaderName::from_bytes(name.as_bytes())
                {
                    headers.insert(name, value);
                }
            }
        }
        if !headers.contains_key(CONTENT_TYPE) {
            headers.insert(CONTENT_TYPE, self.content_type.clone());
        }
        headers.insert("x-kafka-topic", header_value(record.topic()));
        if let Some(partition) = record.partition() {
            headers.insert("x-kafka-partition", header_value(&partition.to_string()));
        }
        if let Some(offset) = record.offset() {
            headers.insert("x-kafka-offset", header_value(&offset.to_string()));
        }
        if let Some(Ok(key)) = record.key().map(|k| HeaderValue::from_bytes(k)) {
            headers.insert("x-kafka-key", key);
        }
        let meta = KafkaMeta {
            topic: record.topic_arc().clone(),
            partition: record.partition(),
            offset: record.offset(),
            key: record.key().cloned(),
        };
        let extensions = request.extensions_mut();
        *extensions = std::mem::take(record.extensions_mut());
        extensions.insert(meta);
        if let Some(context) = RecordContext::get(&record) {
            extensions.insert(context);
        }
        request
    }
}

fn header_value(text: &str) -> HeaderValue {
    HeaderValue::from_str(text).unwrap_or_else(|_| HeaderValue::from_static("?"))
}

/// The body of the requests an [`HttpAdapter`] makes.
pub type RequestBody = http_body_util::Full<Bytes>;

impl<S, ResBody> Service<Record> for HttpAdapter<S>
where
    S: Service<Request<RequestBody>, Response = Response<ResBody>> + Clone + Send + 'static,
    S::Error: Into<BoxError>,
    S::Future: Send + 'static,
    ResBody: Body + Send + 'static,
    ResBody::Data: Send,
    ResBody::Error: Into<BoxError>,
{
    type Response = ();
    type Error = BoxError;
    type Future = Pin<Box<dyn Future<Output = Result<(), BoxError>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, record: Record) -> Self::Future {
        let request = self.request(record);
        let response = self.inner.call(request);
        Box::pin(async move {
            let response = response.await.map_err(Into::into)?;
            let status = response.status();
            if status.is_success() {
                return Ok(());
            }
            let mut excerpt = Vec::new();
            let mut body = std::pin::pin!(response.into_body());
            while excerpt.len() < BODY_EXCERPT {
                match body.frame().await {
                    Some(Ok(frame)) => {
                        if let Ok(data) = frame.into_data() {
                            use bytes::Buf;
                            let mut data = data;
                            while data.has_remaining() && excerpt.len() < BODY_EXCERPT {
                                let chunk = data.chunk();
                                let n = chunk.len().min(BODY_EXCERPT - excerpt.len());
                                excerpt.extend_from_slice(&chunk[..n]);
                                data.advance(n);
                            }
                        }
                    }
                    _ => break,
                }
            }
            Err(HttpStatusError {
                status,
                body: String::from_utf8_lossy(&excerpt).into_owned(),
            }
            .into())
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testkit;

    #[test]
    fn statuses_map_to_kinds() {
        assert_eq!(kind_of(StatusCode::BAD_REQUEST), ErrorKind::Invalid);
        assert_eq!(kind_of(StatusCode::UNAUTHORIZED), ErrorKind::Unauthorized);
        assert_eq!(kind_of(StatusCode::FORBIDDEN), ErrorKind::Forbidden);
        assert_eq!(kind_of(StatusCode::PAYLOAD_TOO_LARGE), ErrorKind::Rejected);
        assert_eq!(kind_of(StatusCode::NOT_FOUND), ErrorKind::Handler);
        assert_eq!(
            kind_of(StatusCode::TOO_MANY_REQUESTS),
            ErrorKind::Overloaded
        );
        assert_eq!(
            kind_of(StatusCode::SERVICE_UNAVAILABLE),
            ErrorKind::Transient
        );
        assert_eq!(kind_of(StatusCode::GATEWAY_TIMEOUT), ErrorKind::Timeout);
        for kind in [
            ErrorKind::Overloaded,
            ErrorKind::Transient,
            ErrorKind::Timeout,
        ] {
            assert!(!kind.is_poison());
        }
    }

    #[tokio::test]
    async fn a_record_becomes_a_request_with_its_headers_coordinates_and_extensions() {
        #[derive(Clone, Debug, PartialEq)]
        struct Claims(&'static str);
        let seen = Arc::new(std::sync::Mutex::new(None));
        let saw = seen.clone();
        let service = tower::service_fn(move |request: Request<RequestBody>| {
            *saw.lock().unwrap() = Some(request);
            async { Ok::<_, BoxError>(Response::new(http_body_util::Empty::<Bytes>::new())) }
        });
        let mut adapter = HttpAdapter::new(service).path(|r| format!("/v1/{}", r.topic()));
        let mut record = testkit::record("orders")
            .key("k-1")
            .value("{}")
            .offset(7)
            .header("authorization", "Bearer t")
            .header("bin", vec![0u8, 1, 255])
            .build();
        record.extensions_mut().insert(Claims("alice"));
        RecordContext::of(&mut record).update(|f| f.correlation_id = Some("generated".into()));
        testkit::call(&mut adapter, record).await.unwrap();
        let request = seen.lock().unwrap().take().unwrap();
        use http_body_util::BodyExt as _;
        assert_eq!(request.uri(), "/v1/orders");
        assert_eq!(request.method(), http::Method::POST);
        let h = request.headers();
        assert_eq!(h["authorization"], "Bearer t");
        assert_eq!(h["x-correlation-id"], "generated");
        assert_eq!(h["x-kafka-topic"], "orders");
        assert_eq!(h["x-kafka-offset"], "7");
        assert_eq!(h["x-kafka-key"], "k-1");
        assert_eq!(h["content-type"], "application/json");
        assert!(
            h.get("bin").is_none(),
            "a value HTTP cannot carry is left out"
        );
        assert_eq!(request.extensions().get::<Claims>(), Some(&Claims("alice")));
        assert_eq!(
            request.extensions().get::<KafkaMeta>().unwrap().offset,
            Some(7)
        );
        let body = request.into_body().collect().await.unwrap().to_bytes();
        assert_eq!(body, "{}");
    }

    #[tokio::test]
    async fn a_failed_response_keeps_its_status_and_the_start_of_its_body() {
        let service = tower::service_fn(|_: Request<RequestBody>| async {
            let body = http_body_util::Full::new(Bytes::from("x".repeat(2000)));
            Ok::<_, BoxError>(Response::builder().status(503).body(body).unwrap())
        });
        let mut adapter = HttpAdapter::new(service);
        let error = testkit::call(&mut adapter, testkit::record("t").build())
            .await
            .unwrap_err();
        let status = error.downcast_ref::<HttpStatusError>().unwrap();
        assert_eq!(status.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(status.body().len(), BODY_EXCERPT);
        assert_eq!(crate::error::classify(error.as_ref()), ErrorKind::Transient);
    }
}
