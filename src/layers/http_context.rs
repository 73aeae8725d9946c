//! HTTP → Kafka: the identity and trace headers of an HTTP request become the
//! current [`Propagation`] while its handler runs.
//!
//! Put [`HttpContextLayer`] on the HTTP side (an axum `Router`, any tower HTTP
//! service). A record produced while the handler runs, through a producer with
//! the propagate layer, then carries the request's `authorization`,
//! `X-Correlation-Id`, `X-Traceability-Id`, `traceparent` and `tracestate`
//! without the handler copying anything. A request without a correlation id
//! gets a generated one (as light-4j's correlation handler does), which the
//! handler also sees as an `X-Correlation-Id` request header.
//!
//! Without tower on the HTTP side, the explicit API does the same:
//! `context::scope(Propagation::from_http(request.headers()), handler)`.
//!
//! ```
//! use http::{Request, Response};
//! use light_kafka::context;
//! use light_kafka::layers::http_context::HttpContextLayer;
//! use tower::{service_fn, ServiceBuilder, ServiceExt};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() {
//! let app = ServiceBuilder::new()
//!     .layer(HttpContextLayer::new())
//!     .service(service_fn(|_request: Request<()>| async {
//!         let current = context::current().expect("set by the layer");
//!         Ok::<_, std::convert::Infallible>(Response::new(current.correlation_id().unwrap().to_owned()))
//!     }));
//!
//! let request = Request::builder().header("x-correlation-id", "c-3").body(()).unwrap();
//! let response = app.oneshot(request).await.unwrap();
//! assert_eq!(response.body(), "c-3");
//! # }
//! ```

use std::fmt;
use std::sync::Arc;
use std::task::{Context, Poll};

use http::{HeaderValue, Request};
use tower_layer::Layer;
use tower_service::Service;

use super::propagate::{MakeCorrelationId, UuidV7};
use crate::context::{self, Propagation, Scoped};
use crate::record::names;

/// Layer that applies [`HttpContext`].
#[derive(Clone)]
pub struct HttpContextLayer {
    ids: Option<Arc<dyn MakeCorrelationId>>,
}

impl HttpContextLayer {
    /// Captures the request's headers; generates a UUID v7 correlation id when
    /// the request has none.
    pub fn new() -> Self {
        HttpContextLayer {
            ids: Some(Arc::new(UuidV7)),
        }
    }

    /// Generates missing correlation ids with `ids`.
    pub fn correlation_ids(mut self, ids: impl MakeCorrelationId) -> Self {
        self.ids = Some(Arc::new(ids));
        self
    }

    /// Leaves a request without a correlation id without one.
    pub fn without_generated_ids(mut self) -> Self {
        self.ids = None;
        self
    }
}

impl Default for HttpContextLayer {
    fn default() -> Self {
        HttpContextLayer::new()
    }
}

impl fmt::Debug for HttpContextLayer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HttpContextLayer")
            .field("generates_ids", &self.ids.is_some())
            .finish()
    }
}

impl<S> Layer<S> for HttpContextLayer {
    type Service = HttpContext<S>;

    fn layer(&self, inner: S) -> HttpContext<S> {
        HttpContext {
            inner,
            layer: self.clone(),
        }
    }
}

/// Runs each request's handler with the request's propagation current.
#[derive(Clone)]
pub struct HttpContext<S> {
    inner: S,
    layer: HttpContextLayer,
}

impl<S: fmt::Debug> fmt::Debug for HttpContext<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HttpContext")
            .field("inner", &self.inner)
            .field("layer", &self.layer)
            .finish()
    }
}

impl<S> HttpContext<S> {
    /// The inner service.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    /// Unwraps the inner service.
    pub fn into_inner(self) -> S {
        self.inner
    }
}

impl<S, B> Service<Request<B>> for HttpContext<S>
where
    S: Service<Request<B>>,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = Scoped<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: Request<B>) -> Self::Future {
        if !request.headers().contains_key(names::CORRELATION_ID)
            && let Some(ids) = &self.layer.ids
            && let Ok(value) = HeaderValue::try_from(ids.make())
        {
            request.headers_mut().insert(names::CORRELATION_ID, value);
        }
        let propagation = Propagation::from_http(request.headers());
        request.extensions_mut().insert(propagation.clone());
        let future = context::sync_scope(propagation.clone(), || self.inner.call(request));
        context::scope(propagation, future)
    }
}

#[cfg(feature = "axum")]
mod extract {
    use axum::extract::FromRequestParts;
    use http::request::Parts;

    use crate::context::Propagation;

    /// In an axum handler, `propagation: Propagation` extracts the request's
    /// propagation (as captured by `HttpContextLayer`, or read from the headers).
    impl<S: Send + Sync> FromRequestParts<S> for Propagation {
        type Rejection = std::convert::Infallible;

        async fn from_request_parts(
            parts: &mut Parts,
            _state: &S,
        ) -> Result<Self, Self::Rejection> {
            Ok(parts
                .extensions
                .get::<Propagation>()
                .cloned()
                .unwrap_or_else(|| Propagation::from_http(&parts.headers)))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::Response;
    use tower::{ServiceBuilder, ServiceExt, service_fn};

    #[tokio::test]
    async fn generates_a_missing_correlation_id_and_exposes_the_token() {
        let app = ServiceBuilder::new()
            .layer(HttpContextLayer::new().correlation_ids(|| "gen-1".to_owned()))
            .service(service_fn(|request: Request<()>| async move {
                let current = context::current().unwrap();
                assert_eq!(request.headers()[names::CORRELATION_ID], "gen-1");
                Ok::<_, std::convert::Infallible>(Response::new((
                    current.correlation_id().map(str::to_owned),
                    current.authorization().map(str::to_owned),
                )))
            }));
        let request = Request::builder()
            .header("authorization", "Bearer t")
            .body(())
            .unwrap();
        let body = app.oneshot(request).await.unwrap().into_body();
        assert_eq!(
            body,
            (Some("gen-1".to_owned()), Some("Bearer t".to_owned()))
        );
    }

    #[tokio::test]
    async fn can_leave_ids_alone() {
        let app = ServiceBuilder::new()
            .layer(HttpContextLayer::new().without_generated_ids())
            .service(service_fn(|_: Request<()>| async move {
                Ok::<_, std::convert::Infallible>(context::current().unwrap().is_empty())
            }));
        assert!(app.oneshot(Request::new(())).await.unwrap());
    }
}
