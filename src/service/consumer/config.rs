//! Runtime settings of the consumer, beside the librdkafka properties.

use std::time::Duration;

/// How records of one partition may overlap.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Ordering {
    /// One record at a time per partition, in offset order. Different
    /// partitions run concurrently.
    #[default]
    Partition,
    /// Records with different keys in the same partition run concurrently;
    /// records with the same key (null keys count as one key) run one at a
    /// time, in offset order.
    Key,
}

/// Capped exponential backoff between attempts of one record.
///
/// ```
/// use std::time::Duration;
/// use light_kafka::service::consumer::Backoff;
///
/// let backoff = Backoff::new(Duration::from_millis(100), Duration::from_secs(1));
/// assert_eq!(backoff.delay(1), Duration::from_millis(100));
/// assert_eq!(backoff.delay(2), Duration::from_millis(200));
/// assert_eq!(backoff.delay(10), Duration::from_secs(1));
/// ```
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Backoff {
    initial: Duration,
    max: Duration,
    multiplier: f64,
}

impl Backoff {
    /// Starts at `initial`, doubles per attempt, never exceeds `max`.
    pub const fn new(initial: Duration, max: Duration) -> Self {
        Backoff {
            initial,
            max,
            multiplier: 2.0,
        }
    }

    /// Sets the growth factor (default 2).
    pub const fn multiplier(mut self, multiplier: f64) -> Self {
        self.multiplier = multiplier;
        self
    }

    /// The delay before retry number `attempt` (1 for the first retry).
    pub fn delay(&self, attempt: u32) -> Duration {
        let exponent = attempt.saturating_sub(1).min(64) as i32;
        let factor = self.multiplier.max(1.0).powi(exponent);
        self.initial.mul_f64(factor).min(self.max)
    }
}

impl Default for Backoff {
    /// 100 ms, doubling, capped at 30 s.
    fn default() -> Self {
        Backoff::new(Duration::from_millis(100), Duration::from_secs(30))
    }
}

/// What the runtime does when the service fails a record (returns an error or
/// panics). Either way the failed record is never skipped and no offset is
/// committed past it; a dead-letter layer inside the service is how a record is
/// settled despite failing.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum ErrorPolicy {
    /// Retry the same record after a capped exponential backoff, for as long as
    /// it takes, while its partition's fetching stays paused. The default.
    Retry(Backoff),
    /// Stop the consumer: commit what was settled before the failed record and
    /// return the error from `serve`.
    FailFast,
}

impl Default for ErrorPolicy {
    fn default() -> Self {
        ErrorPolicy::Retry(Backoff::default())
    }
}

#[derive(Clone, Debug)]
pub(crate) struct RuntimeConfig {
    pub(crate) group: String,
    pub(crate) ordering: Ordering,
    pub(crate) max_in_flight: usize,
    pub(crate) partition_buffer: usize,
    pub(crate) max_buffered: usize,
    pub(crate) commit_interval: Duration,
    pub(crate) commit_every: usize,
    pub(crate) error_policy: ErrorPolicy,
    pub(crate) revoke_timeout: Duration,
    pub(crate) shutdown_timeout: Duration,
}

impl RuntimeConfig {
    /// Records of a partition that may wait outside its window while the
    /// window is full: a third of `max.poll.records`.
    pub(crate) fn hold_capacity(&self) -> usize {
        self.partition_buffer / 3
    }

    /// Records of a partition received and not yet committable before it is
    /// full: the rest of `max.poll.records`. Once half of it settled, every
    /// held record fits in it again, so window and held records together
    /// never exceed `max.poll.records`.
    pub(crate) fn window_bound(&self) -> usize {
        self.partition_buffer - self.hold_capacity()
    }
}

impl Default for RuntimeConfig {
    fn default() -> Self {
        RuntimeConfig {
            group: String::new(),
            ordering: Ordering::Partition,
            max_in_flight: 256,
            partition_buffer: 500,
            max_buffered: 5_000,
            commit_interval: Duration::from_secs(1),
            commit_every: 1_000,
            error_policy: ErrorPolicy::default(),
            revoke_timeout: Duration::from_secs(10),
            shutdown_timeout: Duration::from_secs(30),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn window_and_holding_area_never_exceed_max_poll_records() {
        for bound in 1..=3_000 {
            let config = RuntimeConfig {
                partition_buffer: bound,
                ..RuntimeConfig::default()
            };
            let (window, hold) = (config.window_bound(), config.hold_capacity());
            assert!(window >= 1, "bound {bound}");
            assert_eq!(window + hold, bound, "bound {bound}");
            // When half the window settled, every held record fits in it.
            assert!(window / 2 + hold <= window, "bound {bound}");
        }
    }
}
