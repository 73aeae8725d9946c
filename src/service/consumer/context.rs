//! The librdkafka callbacks of the consumer runtime.
//!
//! Rebalances are not handled inside librdkafka's callback: the callback only
//! records the event, and the runtime's driver handles it between polls, where it
//! can wait for in-flight records, commit, and then call (incremental) assign or
//! unassign. librdkafka waits for that call. Once the driver is gone (shutdown or
//! drop) the context handles rebalances itself, so closing the consumer never
//! waits for a driver that will not come.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::sync::{Arc, Mutex};

use rdkafka::TopicPartitionList;
use rdkafka::client::ClientContext;
use rdkafka::config::RDKafkaLogLevel;
use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext, RebalanceProtocol};
use rdkafka::error::{KafkaError, KafkaResult};
use rdkafka::statistics::Statistics;
use rdkafka::types::RDKafkaRespErr;

use super::health::Shared;
use crate::service::client::{log_to_tracing, trouble_key};

#[derive(Debug)]
pub(crate) enum RebalanceEvent {
    Assign(TopicPartitionList),
    Revoke(TopicPartitionList),
    /// librdkafka reported a rebalance error; the assignment was dropped.
    Lost(KafkaError),
}

pub(crate) struct RuntimeContext {
    pub(crate) shared: Arc<Shared>,
    events: Mutex<VecDeque<RebalanceEvent>>,
    inline: AtomicBool,
}

impl RuntimeContext {
    pub(crate) fn new(shared: Arc<Shared>) -> Self {
        RuntimeContext {
            shared,
            events: Mutex::new(VecDeque::new()),
            inline: AtomicBool::new(false),
        }
    }

    pub(crate) fn next_event(&self) -> Option<RebalanceEvent> {
        self.events
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .pop_front()
    }

    pub(crate) fn has_events(&self) -> bool {
        !self
            .events
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .is_empty()
    }

    /// From now on, rebalances are handled in the callback (no driver any more).
    pub(crate) fn handle_rebalances_inline(&self) {
        self.inline.store(true, Relaxed);
    }

    fn push(&self, event: RebalanceEvent) {
        self.events
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push_back(event);
    }
}

impl ClientContext for RuntimeContext {
    fn log(&self, level: RDKafkaLogLevel, fac: &str, log_message: &str) {
        self.shared.connect.report_log(fac, log_message);
        if (level as i32) <= (RDKafkaLogLevel::Warning as i32) {
            // librdkafka's warnings repeat per connection attempt.
            self.shared
                .throttle
                .report(&format!("librdkafka {fac}"), |suppressed| {
                    if suppressed == 0 {
                        log_to_tracing(level, fac, log_message);
                    } else {
                        log_to_tracing(
                            level,
                            fac,
                            &format!("{log_message} (and {suppressed} more like it)"),
                        );
                    }
                });
        } else {
            log_to_tracing(level, fac, log_message);
        }
    }

    fn stats(&self, statistics: Statistics) {
        let mut watermarks = self
            .shared
            .high_watermarks
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        for (topic, t) in statistics.topics {
            for (partition, p) in t.partitions {
                if partition >= 0 && p.hi_offset >= 0 {
                    watermarks.insert((topic.clone(), partition), p.hi_offset);
                }
            }
        }
    }

    fn error(&self, error: KafkaError, reason: &str) {
        if let Some(failure) = self.shared.connect.report(&error, reason) {
            self.shared.set_error(&failure);
            return;
        }
        self.shared.set_error(format!("{error}: {reason}"));
        let key = trouble_key(&error);
        self.shared.throttle.report(&key, |suppressed| {
            tracing::warn!(
                target: "librdkafka", %error, reason, suppressed,
                "consumer client error: {key}"
            );
        });
    }
}

impl ConsumerContext for RuntimeContext {
    fn rebalance(
        &self,
        consumer: &BaseConsumer<Self>,
        err: RDKafkaRespErr,
        tpl: &mut TopicPartitionList,
    ) {
        let cooperative = matches!(
            consumer.rebalance_protocol(),
            RebalanceProtocol::Cooperative
        );
        match err {
            RDKafkaRespErr::RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS => {
                self.shared.connect.reached();
                if self.inline.load(Relaxed) {
                    report(assign(consumer, tpl, cooperative));
                } else {
                    self.push(RebalanceEvent::Assign(tpl.clone()));
                }
            }
            RDKafkaRespErr::RD_KAFKA_RESP_ERR__REVOKE_PARTITIONS => {
                if self.inline.load(Relaxed) {
                    report(unassign(consumer, tpl, cooperative));
                } else {
                    self.push(RebalanceEvent::Revoke(tpl.clone()));
                }
            }
            other => {
                let error = KafkaError::Rebalance(other.into());
                tracing::error!(%error, "rebalance failed; dropping the assignment");
                self.shared.set_error(&error);
                report(consumer.unassign());
                self.push(RebalanceEvent::Lost(error));
            }
        }
    }
}

pub(crate) fn assign<C: ConsumerContext, K: Consumer<C> + ?Sized>(
    consumer: &K,
    tpl: &TopicPartitionList,
    cooperative: bool,
) -> KafkaResult<()> {
    if cooperative {
        consumer.incremental_assign(tpl)
    } else {
        consumer.assign(tpl)
    }
}

pub(crate) fn unassign<C: ConsumerContext, K: Consumer<C> + ?Sized>(
    consumer: &K,
    tpl: &TopicPartitionList,
    cooperative: bool,
) -> KafkaResult<()> {
    if cooperative {
        consumer.incremental_unassign(tpl)
    } else {
        consumer.unassign()
    }
}

fn report(result: KafkaResult<()>) {
    if let Err(error) = result {
        tracing::error!(%error, "changing the assignment failed");
    }
}
