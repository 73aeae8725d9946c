//! The processor consumer's librdkafka context: revocations, outages,
//! connections that cannot succeed.

#[allow(unused_imports)]
use super::*;

/// Records the partitions librdkafka revokes, for the processor to drop
/// between transactions.
#[derive(Default)]
pub(super) struct ProcessorContext {
    pub(super) revoked: Mutex<Vec<i32>>,
    pub(super) shared: Arc<Shared>,
    pub(super) throttle: LogThrottle,
    pub(super) connect: Arc<ConnectWatch>,
}

impl ClientContext for ProcessorContext {
    fn log(&self, level: RDKafkaLogLevel, fac: &str, log_message: &str) {
        self.connect.report_log(fac, log_message);
        if (level as i32) <= (RDKafkaLogLevel::Warning as i32) {
            self.throttle.report(&format!("{fac}{log_message}"), |_| {
                log_to_tracing(level, fac, log_message)
            });
        } else {
            log_to_tracing(level, fac, log_message);
        }
    }

    fn error(&self, error: KafkaError, reason: &str) {
        if self.connect.report(&error, reason).is_some() {
            return;
        }
        if error.rdkafka_error_code() == Some(RDKafkaErrorCode::AllBrokersDown) {
            // The cluster is away: health says so until it is back.
            let message = format!("{error}: {reason}");
            self.shared.update(|h| {
                h.recovering
                    .get_or_insert_with(|| Recovery {
                        since: SystemTime::now(),
                        attempts: 0,
                        last_error: String::new(),
                    })
                    .last_error = message;
            });
        }
        self.throttle.report(&trouble_key(&error), |suppressed| {
            tracing::warn!(%error, reason, suppressed, "stream processor client error")
        });
    }
}

impl ConsumerContext for ProcessorContext {
    fn pre_rebalance(&self, _consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        self.connect.reached();
        if let Rebalance::Revoke(tpl) = rebalance {
            let mut revoked = self.revoked.lock().unwrap_or_else(|p| p.into_inner());
            revoked.extend(tpl.elements().iter().map(|e| e.partition()));
        }
    }

    fn post_rebalance(&self, consumer: &BaseConsumer<Self>, _rebalance: &Rebalance<'_>) {
        // The whole assignment after the change (cooperative rebalances
        // report only what moved).
        let mut partitions: Vec<i32> = consumer
            .assignment()
            .map(|tpl| tpl.elements().iter().map(|e| e.partition()).collect())
            .unwrap_or_default();
        partitions.sort_unstable();
        partitions.dedup();
        self.shared.update(|h| h.partitions = partitions);
    }
}
