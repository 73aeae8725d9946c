//! Turns a panic in the inner service into a typed error.
//!
//! A panic while calling the service, or while polling the future it returned,
//! becomes a [`PanicError`] (kind [`ErrorKind::Panic`]) carrying the panic
//! message, so a poisoned record reaches the dead-letter path like any other
//! failure instead of unwinding through the consumer.
//!
//! ```
//! use light_kafka::error::{classify, ErrorKind};
//! use light_kafka::layers::catch_panic::CatchPanicLayer;
//! use light_kafka::record::Record;
//! use tower::{service_fn, ServiceBuilder, ServiceExt};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() {
//! let handler = ServiceBuilder::new()
//!     .layer(CatchPanicLayer::new())
//!     .service(service_fn(|record: Record| async move {
//!         if record.value().is_none() {
//!             panic!("tombstones are not expected here");
//!         }
//!         Ok::<_, light_kafka::error::BoxError>(())
//!     }));
//!
//! let err = handler.oneshot(Record::new("t")).await.unwrap_err();
//! assert_eq!(classify(err.as_ref()), ErrorKind::Panic);
//! assert!(err.to_string().contains("tombstones are not expected here"));
//! # }
//! ```

use std::any::Any;
use std::fmt;
use std::future::Future;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::pin::Pin;
use std::task::{Context, Poll};

use pin_project_lite::pin_project;
use tower_layer::Layer;
use tower_service::Service;

use crate::error::{BoxError, ErrorKind, Kinded};

/// A panic caught in a service: kind [`ErrorKind::Panic`].
#[derive(Clone, Debug)]
pub struct PanicError {
    message: String,
}

impl PanicError {
    /// Builds the error from a panic payload, as returned by `catch_unwind`.
    pub fn from_payload(payload: &(dyn Any + Send)) -> Self {
        let message = if let Some(s) = payload.downcast_ref::<&'static str>() {
            (*s).to_owned()
        } else if let Some(s) = payload.downcast_ref::<String>() {
            s.clone()
        } else {
            "panic with a non-string payload".to_owned()
        };
        PanicError { message }
    }

    /// The panic message.
    pub fn message(&self) -> &str {
        &self.message
    }
}

impl fmt::Display for PanicError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "handler panicked: {}", self.message)
    }
}

impl std::error::Error for PanicError {}

impl Kinded for PanicError {
    fn kind(&self) -> ErrorKind {
        ErrorKind::Panic
    }
}

/// Layer that applies [`CatchPanic`].
#[derive(Clone, Copy, Debug, Default)]
pub struct CatchPanicLayer {
    _priv: (),
}

impl CatchPanicLayer {
    /// A new layer.
    pub const fn new() -> Self {
        CatchPanicLayer { _priv: () }
    }
}

impl<S> Layer<S> for CatchPanicLayer {
    type Service = CatchPanic<S>;

    fn layer(&self, inner: S) -> CatchPanic<S> {
        CatchPanic::new(inner)
    }
}

/// Catches panics in the inner service and its futures.
#[derive(Clone, Debug)]
pub struct CatchPanic<S> {
    inner: S,
}

impl<S> CatchPanic<S> {
    /// Wraps `inner`.
    pub const fn new(inner: S) -> Self {
        CatchPanic { inner }
    }

    /// The inner service.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    /// The inner service, mutably.
    pub fn get_mut(&mut self) -> &mut S {
        &mut self.inner
    }

    /// Unwraps the inner service.
    pub fn into_inner(self) -> S {
        self.inner
    }
}

impl<S, R> Service<R> for CatchPanic<S>
where
    S: Service<R>,
    S::Error: Into<BoxError>,
{
    type Response = S::Response;
    type Error = BoxError;
    type Future = ResponseFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        match catch_unwind(AssertUnwindSafe(|| self.inner.poll_ready(cx))) {
            Ok(ready) => ready.map_err(Into::into),
            Err(payload) => Poll::Ready(Err(PanicError::from_payload(payload.as_ref()).into())),
        }
    }

    fn call(&mut self, request: R) -> Self::Future {
        match catch_unwind(AssertUnwindSafe(|| self.inner.call(request))) {
            Ok(future) => ResponseFuture {
                kind: Kind::Future { future },
            },
            Err(payload) => ResponseFuture {
                kind: Kind::Panicked {
                    error: Some(PanicError::from_payload(payload.as_ref())),
                },
            },
        }
    }
}

pin_project! {
    /// Response future of [`CatchPanic`].
    pub struct ResponseFuture<F> {
        #[pin]
        kind: Kind<F>,
    }
}

pin_project! {
    #[project = KindProj]
    enum Kind<F> {
        Future { #[pin] future: F },
        Panicked { error: Option<PanicError> },
    }
}

impl<F, T, E> Future for ResponseFuture<F>
where
    F: Future<Output = Result<T, E>>,
    E: Into<BoxError>,
{
    type Output = Result<T, BoxError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project().kind.project() {
            KindProj::Future { future } => {
                match catch_unwind(AssertUnwindSafe(|| future.poll(cx))) {
                    Ok(Poll::Pending) => Poll::Pending,
                    Ok(Poll::Ready(result)) => Poll::Ready(result.map_err(Into::into)),
                    Err(payload) => {
                        Poll::Ready(Err(PanicError::from_payload(payload.as_ref()).into()))
                    }
                }
            }
            KindProj::Panicked { error } => {
                Poll::Ready(Err(error.take().expect("polled after completion").into()))
            }
        }
    }
}

impl<F> fmt::Debug for ResponseFuture<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ResponseFuture").finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::Record;
    use crate::testkit;
    use tower::service_fn;

    fn assert_send_sync<T: Send + Sync>() {}

    #[test]
    fn types_are_send_sync() {
        assert_send_sync::<CatchPanicLayer>();
        assert_send_sync::<CatchPanic<testkit::Accept>>();
        assert_send_sync::<ResponseFuture<std::future::Ready<Result<(), BoxError>>>>();
    }

    struct PanicsInCall;
    impl Service<Record> for PanicsInCall {
        type Response = ();
        type Error = BoxError;
        type Future = std::future::Ready<Result<(), BoxError>>;
        fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
            Poll::Ready(Ok(()))
        }
        fn call(&mut self, _: Record) -> Self::Future {
            panic!("call exploded {}", 42)
        }
    }

    #[tokio::test]
    async fn panic_in_call_is_caught_with_its_formatted_message() {
        let mut svc = CatchPanic::new(PanicsInCall);
        let err = testkit::call(&mut svc, testkit::record("t").build())
            .await
            .unwrap_err();
        let panic = err.downcast_ref::<PanicError>().unwrap();
        assert_eq!(panic.message(), "call exploded 42");
    }

    #[tokio::test]
    async fn errors_pass_through_and_service_survives_a_panic() {
        let mut svc = CatchPanic::new(service_fn(|r: Record| async move {
            match r.value_str().unwrap_or("") {
                "panic" => panic!("boom"),
                "fail" => Err(BoxError::from("plain failure")),
                _ => Ok(()),
            }
        }));
        let rec = |v: &str| testkit::record("t").value(v.to_owned()).build();
        assert!(
            testkit::call(&mut svc, rec("panic"))
                .await
                .unwrap_err()
                .is::<PanicError>()
        );
        let err = testkit::call(&mut svc, rec("fail")).await.unwrap_err();
        assert_eq!(err.to_string(), "plain failure");
        assert!(testkit::call(&mut svc, rec("ok")).await.is_ok());
    }
}
