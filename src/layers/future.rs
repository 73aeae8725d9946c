//! The response future shared by the checking layers.
//!
//! The JSON schema, Avro and JWT layers decide about a record before the inner
//! service sees it. Their calls end in one of three ways, and
//! [`ResponseFuture`] holds each without boxing the common one:
//!
//! - the record passed: the inner service's own future, polled in place;
//! - the record was rejected: the error, returned on the first poll;
//! - the layer must wait before deciding (an Avro schema fetched from the
//!   registry, a JWKS refreshed for an unknown key): a boxed future, the rare
//!   path only.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use pin_project_lite::pin_project;

use crate::error::BoxError;

/// A boxed future for the path where a layer awaits before deciding.
pub(crate) type Deferred<R> = Pin<Box<dyn Future<Output = Result<R, BoxError>> + Send>>;

pin_project! {
    /// Response future of the checking layers: `JsonSchema`, `AvroDecode`,
    /// `AvroEncode` and `JwtVerify`. `F` is the inner service's future and `R`
    /// its response.
    ///
    /// ```
    /// # #[cfg(feature = "json-schema")] {
    /// use light_kafka::layers::schema::JsonSchemaLayer;
    /// use light_kafka::record::Record;
    /// use light_kafka::testkit;
    /// use tower::Layer;
    ///
    /// # #[tokio::main(flavor = "current_thread")] async fn main() {
    /// let layer = JsonSchemaLayer::new()
    ///     .with_schema("orders", &serde_json::json!({"type": "object"}))
    ///     .unwrap();
    /// let mut service = layer.layer(testkit::Accept);
    /// // A rejection is decided in `call` and returned by the future's first poll.
    /// let record = Record::builder("orders").value("[1, 2]").build();
    /// assert!(testkit::call(&mut service, record).await.is_err());
    /// let record = Record::builder("orders").value("{}").build();
    /// assert!(testkit::call(&mut service, record).await.is_ok());
    /// # }
    /// # }
    /// ```
    pub struct ResponseFuture<F, R> {
        #[pin]
        kind: Kind<F, R>,
    }
}

pin_project! {
    #[project = KindProj]
    enum Kind<F, R> {
        Inner { #[pin] future: F },
        Rejected { error: Option<BoxError> },
        Deferred { future: Deferred<R> },
    }
}

impl<F, R> ResponseFuture<F, R> {
    /// The record passed: the inner service's future.
    pub(crate) fn inner(future: F) -> Self {
        ResponseFuture {
            kind: Kind::Inner { future },
        }
    }

    /// The record was rejected with `error`.
    pub(crate) fn rejected(error: impl Into<BoxError>) -> Self {
        ResponseFuture {
            kind: Kind::Rejected {
                error: Some(error.into()),
            },
        }
    }

    /// The layer decides after awaiting something.
    #[cfg_attr(not(any(feature = "avro", feature = "jwt")), allow(dead_code))]
    pub(crate) fn deferred(future: Deferred<R>) -> Self {
        ResponseFuture {
            kind: Kind::Deferred { future },
        }
    }
}

impl<F, R, E> Future for ResponseFuture<F, R>
where
    F: Future<Output = Result<R, E>>,
    E: Into<BoxError>,
{
    type Output = Result<R, BoxError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project().kind.project() {
            KindProj::Inner { future } => future.poll(cx).map_err(Into::into),
            KindProj::Rejected { error } => {
                Poll::Ready(Err(error.take().expect("polled after completion")))
            }
            KindProj::Deferred { future } => future.as_mut().poll(cx),
        }
    }
}

impl<F, R> fmt::Debug for ResponseFuture<F, R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = match &self.kind {
            Kind::Inner { .. } => "inner",
            Kind::Rejected { .. } => "rejected",
            Kind::Deferred { .. } => "deferred",
        };
        f.debug_struct("ResponseFuture")
            .field("state", &state)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::future::{Ready, ready};

    type Inner = Ready<Result<u8, std::io::Error>>;

    fn assert_send<T: Send>() {}

    #[test]
    fn is_send_when_the_inner_future_is() {
        assert_send::<ResponseFuture<Inner, u8>>();
    }

    #[tokio::test]
    async fn each_path_resolves_to_its_outcome() {
        let passed = ResponseFuture::<Inner, u8>::inner(ready(Ok(7)));
        assert_eq!(
            format!("{passed:?}"),
            r#"ResponseFuture { state: "inner" }"#
        );
        assert_eq!(passed.await.unwrap(), 7);

        let failed = ResponseFuture::<Inner, u8>::inner(ready(Err(std::io::Error::other("io"))));
        assert_eq!(failed.await.unwrap_err().to_string(), "io");

        let rejected = ResponseFuture::<Inner, u8>::rejected("no");
        assert_eq!(
            format!("{rejected:?}"),
            r#"ResponseFuture { state: "rejected" }"#
        );
        assert_eq!(rejected.await.unwrap_err().to_string(), "no");

        let deferred = ResponseFuture::<Inner, u8>::deferred(Box::pin(async { Ok(9) }));
        assert_eq!(deferred.await.unwrap(), 9);
    }
}
