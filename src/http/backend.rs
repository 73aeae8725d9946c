//! [`HttpBackend`]: a remote HTTP service as a tower `Service`, the handler of
//! light-kafka's sidecar (feature `http-backend`).
//!
//! Put it behind an [`HttpAdapter`](super::HttpAdapter) and every record is
//! forwarded to the backend, with the record's propagated identity and trace
//! headers (`X-Correlation-Id`, `X-Traceability-Id`, `authorization`,
//! `traceparent`, `tracestate`) among its headers; the backend's answer
//! settles the record (see [the adapter](super)). A backend that cannot be
//! reached, or does not answer within its timeouts (2 s to connect, 5 s in
//! all by default), fails the record as an outage (`transient` or
//! `timeout`): retried, never dead-lettered.
//!
//! ```no_run
//! use light_kafka::http::HttpAdapter;
//! use light_kafka::http::backend::HttpBackend;
//!
//! let backend = HttpBackend::new("http://127.0.0.1:8080/kafka")?;
//! let handler = HttpAdapter::new(backend).path(|r| format!("/records/{}", r.topic()));
//! # Ok::<(), light_kafka::service::BuildError>(())
//! ```

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use http::{Request, Response};

use crate::error::{ErrorKind, Kinded};
use crate::layers::http_client::Timeouts;
use crate::service::BuildError;

/// Why the backend could not be called.
#[derive(Debug)]
pub struct BackendError {
    kind: ErrorKind,
    source: reqwest::Error,
}

impl fmt::Display for BackendError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.kind {
            ErrorKind::Timeout => write!(
                f,
                "the HTTP backend did not answer in time: {}",
                self.source
            ),
            _ => write!(f, "the HTTP backend cannot be reached: {}", self.source),
        }
    }
}

impl std::error::Error for BackendError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&self.source)
    }
}

impl Kinded for BackendError {
    fn kind(&self) -> ErrorKind {
        self.kind
    }
}

/// A remote HTTP service. Cheap to clone (one connection pool).
#[derive(Clone)]
pub struct HttpBackend {
    client: reqwest::Client,
    base: String,
}

impl fmt::Debug for HttpBackend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HttpBackend")
            .field("base", &self.base)
            .finish()
    }
}

impl HttpBackend {
    /// A backend at `base` (scheme, host, port and an optional path prefix
    /// to which each request's path is appended), with the default timeouts.
    ///
    /// # Errors
    ///
    /// A [`BuildError`] when `base` is not an `http` or `https` URL.
    pub fn new(base: impl Into<String>) -> Result<Self, BuildError> {
        HttpBackend::with_timeouts(base, Timeouts::default())
    }

    /// A backend at `base` with `timeouts`.
    ///
    /// # Errors
    ///
    /// As [`HttpBackend::new`].
    pub fn with_timeouts(base: impl Into<String>, timeouts: Timeouts) -> Result<Self, BuildError> {
        let base = base.into().trim_end_matches('/').to_owned();
        let uri: http::Uri = base
            .parse()
            .map_err(|_| BuildError::invalid("backend", format!("`{base}` is not a URL")))?;
        if !matches!(uri.scheme_str(), Some("http" | "https")) || uri.host().is_none() {
            return Err(BuildError::invalid(
                "backend",
                format!("`{base}` is not an http(s) URL"),
            ));
        }
        let client = timeouts.client().map_err(BuildError::new)?;
        Ok(HttpBackend { client, base })
    }
}

impl Service<Request<super::RequestBody>> for HttpBackend {
    type Response = Response<reqwest::Body>;
    type Error = crate::BoxError;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Self::Error>> + Send>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: Request<super::RequestBody>) -> Self::Future {
        let (mut parts, body) = request.into_parts();
        let path = parts.uri.path_and_query().map_or("/", |p| p.as_str());
        let url = format!("{}{path}", self.base);
        let client = self.client.clone();
        Box::pin(async move {
            use http_body_util::BodyExt as _;
            parts.uri = url.parse()?;
            let body = reqwest::Body::from(body.collect().await?.to_bytes());
            let request = reqwest::Request::try_from(Request::from_parts(parts, body))?;
            match client.execute(request).await {
                Ok(response) => Ok(Response::from(response)),
                Err(source) => {
                    let kind = if source.is_timeout() {
                        ErrorKind::Timeout
                    } else {
                        ErrorKind::Transient
                    };
                    Err(BackendError { kind, source }.into())
                }
            }
        })
    }
}

use tower_service::Service;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_base_must_be_an_http_url() {
        assert!(HttpBackend::new("http://127.0.0.1:8080/prefix/").is_ok());
        for bad in ["", "localhost:8080", "ftp://host/x", "http://"] {
            let error = HttpBackend::new(bad).unwrap_err();
            assert_eq!(error.setting(), Some("backend"), "{bad}");
        }
    }
}
