//! A `tower::retry::Policy` for records: capped exponential backoff with
//! jitter, a limit on attempts, and a choice of what to retry by error kind.
//!
//! By default only transient kinds are retried (`timeout`, `overloaded`,
//! `transient`, `produce`): retrying a schema violation or a bad token would
//! fail the same way. Put the retry layer inside the dead-letter layer, so a
//! record reaches the dead-letter topic only once its retries are spent.
//!
//! ```
//! use std::time::Duration;
//! use light_kafka::layers::retry::RetryPolicy;
//! use light_kafka::record::Record;
//! use light_kafka::{testkit, BoxError, Error};
//! use tower::retry::RetryLayer;
//! use tower::{service_fn, ServiceBuilder};
//!
//! # #[tokio::main(flavor = "current_thread", start_paused = true)]
//! # async fn main() {
//! let attempts = std::sync::Arc::new(std::sync::atomic::AtomicU32::new(0));
//! let policy = RetryPolicy::new(4)
//!     .backoff(Duration::from_millis(100), Duration::from_secs(1))
//!     .jitter(0.0);
//! let mut svc = ServiceBuilder::new()
//!     .layer(RetryLayer::new(policy))
//!     .service(service_fn({
//!         let attempts = attempts.clone();
//!         move |_: Record| {
//!             let n = attempts.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
//!             async move { if n < 2 { Err(BoxError::from(Error::transient("busy"))) } else { Ok(()) } }
//!         }
//!     }));
//! testkit::call(&mut svc, testkit::record("t").build()).await.unwrap();
//! assert_eq!(attempts.load(std::sync::atomic::Ordering::SeqCst), 3);
//! # }
//! ```

use std::fmt;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use rand::Rng;
use tokio::time::Sleep;
use tower::retry::Policy;

use crate::error::{BoxError, ErrorKind, classify};
use crate::record::Record;

/// Decides which failures to retry.
pub trait Classifier: Send + Sync + 'static {
    /// Whether a failure of `kind` may be retried.
    fn retry(&self, kind: ErrorKind) -> bool;
}

impl<F> Classifier for F
where
    F: Fn(ErrorKind) -> bool + Send + Sync + 'static,
{
    fn retry(&self, kind: ErrorKind) -> bool {
        self(kind)
    }
}

/// Retries transient kinds only (the default).
#[derive(Clone, Copy, Debug, Default)]
pub struct Transient;

impl Classifier for Transient {
    fn retry(&self, kind: ErrorKind) -> bool {
        kind.is_transient()
    }
}

/// Retry policy for `tower::retry::RetryLayer`. See the [module documentation](self).
#[derive(Clone)]
pub struct RetryPolicy {
    max_attempts: u32,
    initial: Duration,
    max_delay: Duration,
    multiplier: f64,
    jitter: f64,
    classifier: Arc<dyn Classifier>,
    /// Attempts made for the current record (this value is cloned per record).
    attempts: u32,
}

impl RetryPolicy {
    /// At most `max_attempts` attempts per record (the first one included),
    /// 100 ms doubling up to 10 s, ±20 % jitter, transient kinds only.
    pub fn new(max_attempts: u32) -> Self {
        RetryPolicy {
            max_attempts: max_attempts.max(1),
            initial: Duration::from_millis(100),
            max_delay: Duration::from_secs(10),
            multiplier: 2.0,
            jitter: 0.2,
            classifier: Arc::new(Transient),
            attempts: 1,
        }
    }

    /// The first delay and the cap.
    pub fn backoff(mut self, initial: Duration, max: Duration) -> Self {
        self.initial = initial;
        self.max_delay = max;
        self
    }

    /// The growth factor of the delay (default 2).
    pub fn multiplier(mut self, multiplier: f64) -> Self {
        self.multiplier = multiplier.max(1.0);
        self
    }

    /// Randomizes each delay by up to ±`fraction` of it (default 0.2; 0 for
    /// exact delays).
    pub fn jitter(mut self, fraction: f64) -> Self {
        self.jitter = fraction.clamp(0.0, 1.0);
        self
    }

    /// Retries the kinds `classifier` accepts.
    pub fn classify(mut self, classifier: impl Classifier) -> Self {
        self.classifier = Arc::new(classifier);
        self
    }

    /// The delay before retry number `retry` (1 for the first retry), before jitter.
    pub fn delay(&self, retry: u32) -> Duration {
        let exponent = retry.saturating_sub(1).min(64) as i32;
        self.initial
            .mul_f64(self.multiplier.powi(exponent))
            .min(self.max_delay)
    }

    fn jittered(&self, delay: Duration) -> Duration {
        if self.jitter == 0.0 {
            return delay;
        }
        let factor = rand::rng().random_range(1.0 - self.jitter..=1.0 + self.jitter);
        delay.mul_f64(factor).min(self.max_delay)
    }
}

impl fmt::Debug for RetryPolicy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RetryPolicy")
            .field("max_attempts", &self.max_attempts)
            .field("initial", &self.initial)
            .field("max_delay", &self.max_delay)
            .field("multiplier", &self.multiplier)
            .field("jitter", &self.jitter)
            .finish_non_exhaustive()
    }
}

impl RetryPolicy {
    /// A layer that retries with this policy below any service whose error
    /// converts into a [`BoxError`] (the error is boxed first, then
    /// classified). `tower::retry::RetryLayer::new(policy)` works too, below
    /// services whose error already is a `BoxError`.
    ///
    /// ```
    /// use std::time::Duration;
    /// use light_kafka::layers::retry::RetryPolicy;
    /// use light_kafka::record::Record;
    /// use light_kafka::{testkit, Error};
    /// use tower::{service_fn, ServiceBuilder};
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// let calls = std::sync::Arc::new(std::sync::atomic::AtomicU32::new(0));
    /// let counted = calls.clone();
    /// // The handler's error is light_kafka::Error, not a BoxError.
    /// let mut chain = ServiceBuilder::new()
    ///     .layer(RetryPolicy::new(3).backoff(Duration::from_millis(1), Duration::from_millis(1)).layer())
    ///     .service(service_fn(move |_: Record| {
    ///         let n = counted.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    ///         async move { if n < 2 { Err(Error::transient("busy")) } else { Ok(()) } }
    ///     }));
    /// testkit::call(&mut chain, testkit::record("t").build()).await.unwrap();
    /// assert_eq!(calls.load(std::sync::atomic::Ordering::Relaxed), 3);
    /// # }
    /// ```
    pub fn layer(self) -> RetryRecordsLayer {
        RetryRecordsLayer { policy: self }
    }
}

/// Retries records with a [`RetryPolicy`] below any service whose error
/// converts into a [`BoxError`]. Made by [`RetryPolicy::layer`].
#[derive(Clone, Debug)]
pub struct RetryRecordsLayer {
    policy: RetryPolicy,
}

/// The service [`RetryRecordsLayer`] makes: tower's `Retry` around the inner
/// service with its error boxed.
pub type RetryRecords<S> = tower::retry::Retry<
    RetryPolicy,
    tower::util::MapErr<S, fn(<S as tower::Service<Record>>::Error) -> BoxError>,
>;

impl<S> tower_layer::Layer<S> for RetryRecordsLayer
where
    S: tower::Service<Record>,
    S::Error: Into<BoxError>,
{
    type Service = RetryRecords<S>;

    fn layer(&self, inner: S) -> Self::Service {
        let boxed: fn(S::Error) -> BoxError = Into::into;
        tower::retry::Retry::new(self.policy.clone(), tower::util::MapErr::new(inner, boxed))
    }
}

impl<Res> Policy<Record, Res, BoxError> for RetryPolicy {
    /// Boxed: a retry is rare, and an unboxed `Sleep` (112 bytes) would make
    /// every record's response future — and every future around it — larger.
    type Future = Pin<Box<Sleep>>;

    fn retry(
        &mut self,
        _record: &mut Record,
        result: &mut Result<Res, BoxError>,
    ) -> Option<Pin<Box<Sleep>>> {
        let error = result.as_ref().err()?;
        if self.attempts >= self.max_attempts || !self.classifier.retry(classify(error.as_ref())) {
            return None;
        }
        let delay = self.jittered(self.delay(self.attempts));
        self.attempts += 1;
        Some(Box::pin(tokio::time::sleep(delay)))
    }

    fn clone_request(&mut self, record: &Record) -> Option<Record> {
        Some(record.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delays_grow_and_cap() {
        let p = RetryPolicy::new(10).backoff(Duration::from_millis(10), Duration::from_millis(50));
        let delays: Vec<_> = (1..=4).map(|r| p.delay(r).as_millis()).collect();
        assert_eq!(delays, [10, 20, 40, 50]);
    }

    #[test]
    fn jitter_stays_within_bounds() {
        let p = RetryPolicy::new(3)
            .backoff(Duration::from_millis(100), Duration::from_secs(1))
            .jitter(0.5);
        for _ in 0..100 {
            let d = p.jittered(Duration::from_millis(100)).as_millis();
            assert!((50..=150).contains(&d), "{d}");
        }
    }
}
