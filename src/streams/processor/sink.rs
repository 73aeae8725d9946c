//! The producer a dead-letter layer writes through, following the
//! processor's current transactional producer.

#[allow(unused_imports)]
use super::*;

/// The processor's current transactional producer, replaced when an outage
/// made it unusable.
pub(super) struct Slot {
    pub(super) generation: AtomicU64,
    pub(super) producer: Mutex<TransactionalProducer>,
}

impl Slot {
    pub(super) fn sink(&self) -> (u64, Producer) {
        let producer = self.producer.lock().unwrap_or_else(|p| p.into_inner());
        (self.generation.load(Ordering::Acquire), producer.sink())
    }

    pub(super) fn replace(&self, new: TransactionalProducer) -> TransactionalProducer {
        let mut producer = self.producer.lock().unwrap_or_else(|p| p.into_inner());
        let old = std::mem::replace(&mut *producer, new);
        self.generation.fetch_add(1, Ordering::AcqRel);
        old
    }
}

/// A producer whose records join the processor's open transaction, from
/// [`StreamProcessor::sink`]: give it to a
/// [`DeadLetterLayer`](crate::layers::dead_letter::DeadLetterLayer) in the
/// chain. It follows the processor when the processor re-creates its
/// producer after an outage. Cheap to clone.
pub struct ProcessorSink {
    pub(super) slot: Arc<Slot>,
    pub(super) generation: u64,
    pub(super) producer: Producer,
}

impl ProcessorSink {
    pub(super) fn new(slot: Arc<Slot>) -> Self {
        let (generation, producer) = slot.sink();
        ProcessorSink {
            slot,
            generation,
            producer,
        }
    }
}

impl Clone for ProcessorSink {
    fn clone(&self) -> Self {
        ProcessorSink::new(self.slot.clone())
    }
}

impl fmt::Debug for ProcessorSink {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ProcessorSink")
            .field("generation", &self.generation)
            .field("producer", &self.producer)
            .finish()
    }
}

impl Service<Record> for ProcessorSink {
    type Response = Delivery;
    type Error = ProduceError;
    type Future = crate::service::producer::ResponseFuture;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), ProduceError>> {
        if self.slot.generation.load(Ordering::Acquire) != self.generation {
            // The processor re-created its producer between two transactions.
            let (generation, producer) = self.slot.sink();
            self.generation = generation;
            self.producer = producer;
        }
        self.producer.poll_ready(cx)
    }

    fn call(&mut self, record: Record) -> Self::Future {
        self.producer.call(record)
    }
}
