//! The event loop of the consumer runtime: poll → dispatch → settle → commit.
//!
//! Everything runs in one task. Each turn of [`Driver::poll_run`] handles, in
//! order: the shutdown signal, rebalance events, finished work, dispatch of
//! runnable records (one `poll_ready` per record), new messages, pause/resume
//! changes and commits, until nothing makes progress.

use std::collections::{HashMap, VecDeque};
use std::future::Future;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use futures_util::stream::{FuturesUnordered, Stream, StreamExt};
use rdkafka::consumer::{
    CommitMode, Consumer as _, MessageStream, RebalanceProtocol, StreamConsumer,
};
use rdkafka::error::KafkaError;
use rdkafka::{Message as _, Offset, TopicPartitionList};
use tokio::time::{Instant, Sleep};
use tower_service::Service;

use super::config::{ErrorPolicy, Ordering, RuntimeConfig};
use super::context::{RebalanceEvent, RuntimeContext, assign, unassign};
use super::error::ConsumerError;
use super::health::{PartitionHealth, Shared, Stalled};
use super::partition::{Partition, Queued};
use super::work::{Done, RecordId, Work, poll_record};
use crate::context::{self, Propagation};
use crate::error::BoxError;
use crate::layers::catch_panic::PanicError;
use crate::record::{ConversionError, Record, RecordBatcher};
use crate::service::client::trouble_key;

/// Messages taken from librdkafka in one turn before other work gets a go.
const MESSAGES_PER_TURN: usize = 256;
/// Settle/dispatch rounds in one turn before new messages are taken.
const SETTLE_ROUNDS: usize = 1024;
/// Turns in one `poll` before yielding to the executor.
const TURNS_PER_POLL: usize = 32;
/// Failed attempts of one record after which its partition is logged as stalled.
const STALLED_AFTER: u32 = 3;
/// How long the runtime stops taking messages for a full partition before it
/// pauses that partition's fetching instead. Pausing is costly in librdkafka:
/// it discards the partition's prefetched messages, and the broker thread
/// resumes fetching only when it next wakes up (up to a second later), so a
/// partition whose window drains within this time is never paused.
const HOLD_BEFORE_PAUSE: Duration = Duration::from_millis(20);

struct Revocation {
    tpl: TopicPartitionList,
    slots: Vec<usize>,
    deadline: Pin<Box<Sleep>>,
    lost: bool,
}

/// A commit running on a blocking thread (librdkafka reports the outcome of a
/// manual commit only to a synchronous caller).
struct CommitTask {
    handle: tokio::task::JoinHandle<Result<(), KafkaError>>,
    offsets: Vec<(usize, u64, i64)>,
}

struct Stop {
    deadline: Pin<Box<Sleep>>,
    error: Option<ConsumerError>,
}

pub(crate) struct Driver<S: Service<Record>> {
    service: S,
    consumer: Arc<StreamConsumer<RuntimeContext>>,
    batcher: RecordBatcher,
    /// Slots of the messages in `batcher`, in order, and whether each arrived
    /// over its partition's bound (held back rather than accepted).
    batched: Vec<(usize, bool)>,
    /// This full partition's holding area is full too: take no more messages
    /// until it has room, or until `hold_timer` pauses it.
    holding: Option<usize>,
    hold_timer: Pin<Box<Sleep>>,
    /// The runtime holds `max_buffered` records: take no more messages.
    global_full: bool,
    config: RuntimeConfig,
    shared: Arc<Shared>,
    slots: Vec<Option<Partition>>,
    free_slots: Vec<usize>,
    next_epoch: u64,
    /// topic → partition number → slot.
    index: HashMap<Arc<str>, Vec<Option<usize>>>,
    ready: VecDeque<usize>,
    work: FuturesUnordered<Work<S::Future>>,
    in_flight: usize,
    buffered: usize,
    pause_dirty: Vec<usize>,
    settled_since_commit: usize,
    commit_timer: Pin<Box<Sleep>>,
    commit_task: Option<CommitTask>,
    /// A commit was due while another was running.
    commit_due: bool,
    revocation: Option<Revocation>,
    /// A partition's stall changed: publish the partitions' health.
    stalled_dirty: bool,
    /// A message arrived since the last client error.
    healthy: bool,
    stop: Option<Stop>,
    signal: Pin<Box<dyn Future<Output = ()> + Send>>,
}

impl<S> Driver<S>
where
    S: Service<Record>,
    S::Error: Into<BoxError>,
{
    pub(crate) fn new(
        service: S,
        consumer: Arc<StreamConsumer<RuntimeContext>>,
        config: RuntimeConfig,
        shared: Arc<Shared>,
        signal: Pin<Box<dyn Future<Output = ()> + Send>>,
    ) -> Self {
        let commit_timer = Box::pin(tokio::time::sleep(config.commit_interval));
        Driver {
            service,
            consumer,
            batcher: RecordBatcher::default(),
            batched: Vec::new(),
            holding: None,
            hold_timer: Box::pin(tokio::time::sleep(Duration::ZERO)),
            global_full: false,
            config,
            shared,
            slots: Vec::new(),
            free_slots: Vec::new(),
            next_epoch: 0,
            index: HashMap::new(),
            ready: VecDeque::new(),
            work: FuturesUnordered::new(),
            in_flight: 0,
            buffered: 0,
            pause_dirty: Vec::new(),
            settled_since_commit: 0,
            commit_timer,
            commit_task: None,
            commit_due: false,
            revocation: None,
            stalled_dirty: false,
            healthy: true,
            stop: None,
            signal,
        }
    }

    pub(crate) fn poll_run(
        &mut self,
        cx: &mut Context<'_>,
        stream: &mut MessageStream<'_, RuntimeContext>,
    ) -> Poll<Result<(), ConsumerError>> {
        for _ in 0..TURNS_PER_POLL {
            let mut progress = false;

            if self.stop.is_none() && self.signal.as_mut().poll(cx).is_ready() {
                // A shutdown, or a connection that can never succeed.
                let failure = self.shared.connect.failure().cloned();
                self.begin_stop(failure.map(ConsumerError::Connect));
            }
            if self.revocation.is_none() {
                progress |= self.handle_rebalance_event();
            }
            progress |= self.poll_revocation(cx);

            // Settle and dispatch until nothing moves, before taking more
            // messages: quick handlers then never let buffers fill up.
            for _ in 0..SETTLE_ROUNDS {
                let mut moved = false;
                while let Poll::Ready(Some(done)) = self.work.poll_next_unpin(cx) {
                    self.on_done(done);
                    moved = true;
                }
                if self.stop.is_none() {
                    match self.dispatch(cx) {
                        Ok(dispatched) => moved |= dispatched,
                        Err(error) => self.begin_stop(Some(error)),
                    }
                }
                if !moved {
                    break;
                }
                progress = true;
            }

            if let Some(slot) = self.holding
                && self.hold_timer.as_mut().poll(cx).is_ready()
            {
                self.hold_back(slot);
                progress = true;
            }
            if self.stop.is_none() {
                if !self.global_full && self.holding.is_none() {
                    progress |= self.poll_messages(cx, stream);
                }
            } else {
                // Keep serving librdkafka's events (rebalances) while stopping.
                while let Poll::Ready(Some(result)) = Pin::new(&mut *stream).poll_next(cx) {
                    if let Err(error) = result {
                        self.on_consumer_error(error);
                    }
                }
            }

            self.apply_pauses();

            progress |= self.poll_commit_task(cx);
            if self.settled_since_commit >= self.config.commit_every {
                self.commit();
            }
            if self.commit_timer.as_mut().poll(cx).is_ready() {
                self.commit();
                self.publish_partitions();
            }
            if std::mem::take(&mut self.stalled_dirty) {
                self.publish_partitions();
            }
            self.publish_counters();

            if let Some(result) = self.poll_stop(cx) {
                return Poll::Ready(result);
            }
            if !progress {
                return Poll::Pending;
            }
        }
        cx.waker().wake_by_ref();
        Poll::Pending
    }

    // ---- messages ---------------------------------------------------------------

    /// Takes messages from librdkafka into the batcher (one buffer for their
    /// payloads), then hands the records to their partitions. A message for a
    /// full partition is held outside its window; once its holding area is
    /// full too, no more messages are taken until that partition has room or
    /// is paused (see [`HOLD_BEFORE_PAUSE`]).
    fn poll_messages(
        &mut self,
        cx: &mut Context<'_>,
        stream: &mut MessageStream<'_, RuntimeContext>,
    ) -> bool {
        let mut progress = false;
        while self.holding.is_none()
            && self.batched.len() < MESSAGES_PER_TURN
            && self.buffered + self.batched.len() < self.config.max_buffered
        {
            match Pin::new(&mut *stream).poll_next(cx) {
                Poll::Ready(Some(Ok(message))) => {
                    progress = true;
                    if !self.healthy {
                        self.healthy = true;
                        self.shared.throttle.recovered();
                        self.shared.connect.reached();
                    }
                    let Some(slot) = self.lookup(message.topic(), message.partition()) else {
                        continue;
                    };
                    let p = self.slots[slot].as_mut().expect("indexed slot is live");
                    if p.revoking {
                        // Not tracked, so never committed: the next owner reads it again.
                        continue;
                    }
                    self.batcher.push(&message, p.topic.clone());
                    let held = p.full;
                    self.batched.push((slot, held));
                    if held {
                        p.incoming_held += 1;
                    } else {
                        p.incoming += 1;
                        p.full = p.window() + p.incoming >= self.config.window_bound();
                    }
                    if p.full
                        && !p.held_back
                        && p.held.len() + p.incoming_held >= self.config.hold_capacity()
                    {
                        // The partition holds all it may: take no more
                        // messages until it has room, or pause it.
                        self.holding = Some(slot);
                        let until = Instant::now() + HOLD_BEFORE_PAUSE;
                        self.hold_timer.as_mut().reset(until);
                    }
                }
                Poll::Ready(Some(Err(error))) => {
                    self.on_consumer_error(error);
                    progress = true;
                }
                Poll::Ready(None) | Poll::Pending => break,
            }
        }
        if !self.batched.is_empty() {
            let slots = std::mem::take(&mut self.batched);
            let mut batcher = std::mem::take(&mut self.batcher);
            let mut next = slots.iter();
            batcher.finish(|record| {
                let &(slot, held) = next.next().expect("one slot per record");
                self.on_record(slot, record, held);
            });
            self.batcher = batcher;
            self.batched = slots;
            self.batched.clear();
        }
        if self.buffered >= self.config.max_buffered {
            // Take no more messages; librdkafka's own prefetch limits then
            // stop its fetching.
            self.global_full = true;
        }
        // A rebalance callback ran inside the poll: handle it in the next turn.
        progress || self.consumer.context().has_events()
    }

    fn on_record(&mut self, slot: usize, record: Record, held: bool) {
        let Some(p) = self.slots[slot].as_mut() else {
            return;
        };
        if held {
            p.incoming_held -= 1;
        } else {
            p.incoming -= 1;
        }
        let Some(offset) = record.offset() else {
            return;
        };
        self.buffered += 1;
        if held {
            p.held.push_back((offset, record));
            return;
        }
        let lane = lane(self.config.ordering, &record);
        p.accept(record, offset, lane);
        self.enqueue_if_runnable(slot);
    }

    /// `n` records left the runtime's buffers.
    fn unbuffer(&mut self, n: usize) {
        self.buffered -= n;
        if self.global_full && self.buffered <= self.config.max_buffered / 2 {
            self.global_full = false;
        }
    }

    fn on_consumer_error(&mut self, error: KafkaError) {
        // The client error callback usually reported the same error already:
        // one throttle for both.
        let key = trouble_key(&error);
        self.shared.throttle.report(&key, |suppressed| {
            tracing::warn!(%error, suppressed, "consumer error: {key}");
        });
        self.shared.set_error(&error);
        self.healthy = false;
        if matches!(error, KafkaError::MessageConsumptionFatal(_)) && self.stop.is_none() {
            self.begin_stop(Some(ConsumerError::Kafka(error)));
        }
    }

    // ---- dispatch -------------------------------------------------------------

    fn dispatch(&mut self, cx: &mut Context<'_>) -> Result<bool, ConsumerError> {
        let mut progress = false;
        while self.in_flight < self.config.max_in_flight {
            let Some(&slot) = self.ready.front() else {
                break;
            };
            let runnable = match self.slots[slot].as_mut() {
                Some(p) if !p.revoking && !p.runnable.is_empty() => true,
                Some(p) => {
                    p.queued = false;
                    false
                }
                None => false,
            };
            if !runnable {
                self.ready.pop_front();
                continue;
            }
            match catch_unwind(AssertUnwindSafe(|| self.service.poll_ready(cx))) {
                Ok(Poll::Pending) => break,
                Ok(Poll::Ready(Ok(()))) => {}
                Ok(Poll::Ready(Err(error))) => return Err(ConsumerError::NotReady(error.into())),
                Err(payload) => {
                    return Err(ConsumerError::NotReady(
                        PanicError::from_payload(payload.as_ref()).into(),
                    ));
                }
            }
            self.ready.pop_front();
            let p = self.slots[slot].as_mut().expect("checked above");
            let queued = p.runnable.pop_front().expect("checked above");
            if p.runnable.is_empty() {
                p.queued = false;
            } else {
                self.ready.push_back(slot);
            }
            p.in_flight += 1;
            self.in_flight += 1;
            let id = RecordId {
                slot,
                epoch: p.epoch,
                seq: queued.seq,
                offset: queued.offset,
                lane: queued.lane,
                attempt: queued.attempt,
                defect: ConversionError::of(&queued.record).cloned(),
            };
            let retry = matches!(self.config.error_policy, ErrorPolicy::Retry(_))
                .then(|| queued.record.clone());
            let propagation = Propagation::from_headers(queued.record.headers());
            let record = queued.record;
            let call = catch_unwind(AssertUnwindSafe(|| {
                context::sync_scope(propagation.clone(), || self.service.call(record))
            }));
            let mut future = match call {
                Ok(future) => Box::pin(context::scope(propagation, future)),
                Err(payload) => {
                    self.on_done(Done::Failed {
                        id,
                        record: retry,
                        error: PanicError::from_payload(payload.as_ref()).into(),
                    });
                    progress = true;
                    continue;
                }
            };
            // Most handlers finish on their first poll: settle those at once,
            // and hand only the others to the set of running work.
            match poll_record(future.as_mut(), cx).map(|outcome| id.outcome(outcome)) {
                Poll::Ready(Ok(())) => self.on_done(Done::Settled(id)),
                Poll::Ready(Err(error)) => self.on_done(Done::Failed {
                    id,
                    record: retry,
                    error,
                }),
                Poll::Pending => {
                    let cancelled = self.slots[slot]
                        .as_ref()
                        .expect("dispatched partition is live")
                        .cancel
                        .clone()
                        .cancelled_owned();
                    self.work.push(Work::Running {
                        future,
                        id: Some(id),
                        retry,
                        cancelled,
                    });
                }
            }
            progress = true;
        }
        Ok(progress)
    }

    fn on_done(&mut self, done: Done) {
        match done {
            Done::Cancelled => {}
            Done::Settled(id) => {
                let Some(p) = live(&mut self.slots, id.slot, id.epoch) else {
                    return;
                };
                p.in_flight -= 1;
                self.in_flight -= 1;
                if id.attempt > 0 {
                    p.retrying -= 1;
                    self.pause_dirty.push(id.slot);
                }
                p.release(&id.lane);
                if p.stalled.as_ref().is_some_and(|s| s.offset == id.offset) {
                    p.stalled = None;
                    self.stalled_dirty = true;
                    tracing::info!(
                        topic = %p.topic, partition = p.partition, offset = id.offset,
                        attempts = id.attempt + 1, "stalled record settled"
                    );
                }
                let before = p.window();
                if let Some(commit) = p.tracker.settle(id.seq) {
                    p.committable = Some(commit);
                }
                let freed = before - p.window();
                self.unbuffer(freed);
                self.settled_since_commit += 1;
                self.shared.processed.fetch_add(1, Relaxed);
                self.enqueue_if_runnable(id.slot);
                self.refresh_full(id.slot);
            }
            Done::Failed { id, record, error } => {
                let Some(p) = live(&mut self.slots, id.slot, id.epoch) else {
                    return;
                };
                p.in_flight -= 1;
                self.in_flight -= 1;
                self.shared.failures.fetch_add(1, Relaxed);
                tracing::warn!(
                    topic = %p.topic, partition = p.partition, offset = id.offset,
                    attempt = id.attempt, error = %error, "record failed"
                );
                self.shared.set_error(format_args!(
                    "{}[{}]@{} attempt {}: {}",
                    p.topic, p.partition, id.offset, id.attempt, error
                ));
                if p.stalled.as_ref().is_none_or(|s| s.offset >= id.offset) {
                    let attempts = id.attempt + 1;
                    if attempts == STALLED_AFTER || (attempts > STALLED_AFTER && attempts % 10 == 0)
                    {
                        tracing::error!(
                            topic = %p.topic, partition = p.partition, offset = id.offset,
                            attempts, error = %error,
                            "partition stalled: a record keeps failing and holds its commits back"
                        );
                    }
                    p.stalled = Some(Stalled {
                        offset: id.offset,
                        attempts,
                        reason: error.to_string(),
                    });
                    self.stalled_dirty = true;
                }
                match (self.config.error_policy, record) {
                    (ErrorPolicy::Retry(backoff), Some(record))
                        if !p.revoking && self.stop.is_none() =>
                    {
                        if id.attempt == 0 {
                            p.retrying += 1;
                        }
                        let cancelled = p.cancel.clone().cancelled_owned();
                        let attempt = id.attempt + 1;
                        self.work.push(Work::Waiting {
                            sleep: tokio::time::sleep(backoff.delay(attempt)),
                            id: Some(RecordId { attempt, ..id }),
                            record: Some(record),
                            cancelled,
                        });
                        self.pause_dirty.push(id.slot);
                    }
                    (ErrorPolicy::Retry(_), _) => {
                        // Revoked or stopping: the record stays unsettled and
                        // will be delivered again.
                    }
                    (ErrorPolicy::FailFast, _) => {
                        let error = ConsumerError::Handler {
                            topic: p.topic.to_string(),
                            partition: p.partition,
                            offset: id.offset,
                            source: error,
                        };
                        if self.stop.is_none() {
                            self.begin_stop(Some(error));
                        }
                    }
                }
            }
            Done::RetryDue { id, record } => {
                let Some(p) = live(&mut self.slots, id.slot, id.epoch) else {
                    return;
                };
                if p.revoking || self.stop.is_some() {
                    return;
                }
                p.runnable.push_front(Queued {
                    seq: id.seq,
                    offset: id.offset,
                    lane: id.lane,
                    attempt: id.attempt,
                    record,
                });
                self.enqueue_if_runnable(id.slot);
            }
        }
    }

    fn enqueue_if_runnable(&mut self, slot: usize) {
        if let Some(p) = self.slots[slot].as_mut()
            && !p.queued
            && !p.runnable.is_empty()
            && !p.revoking
        {
            p.queued = true;
            self.ready.push_back(slot);
        }
    }

    // ---- backpressure ---------------------------------------------------------

    /// After records settled: whether a full partition has room again.
    /// Hysteresis: full at the bound, room again at half of it. The records
    /// held meanwhile join the window, and a partition paused for being full
    /// resumes.
    fn refresh_full(&mut self, slot: usize) {
        let bound = self.config.window_bound();
        let ordering = self.config.ordering;
        let Some(p) = self.slots[slot].as_mut() else {
            return;
        };
        if !p.full || p.window() > bound / 2 {
            return;
        }
        p.full = false;
        while let Some((offset, record)) = p.held.pop_front() {
            let lane = lane(ordering, &record);
            p.accept(record, offset, lane);
        }
        p.full = p.window() >= bound;
        if std::mem::take(&mut p.held_back) {
            self.pause_dirty.push(slot);
        }
        self.holding.take_if(|&mut held| held == slot);
        self.enqueue_if_runnable(slot);
    }

    /// The partition stayed full for [`HOLD_BEFORE_PAUSE`]: pause its fetching
    /// so that the other partitions' messages flow again. At once: librdkafka
    /// returns nothing more of the partition after the call, so the window
    /// and the held records stay within `max.poll.records`.
    fn hold_back(&mut self, slot: usize) {
        self.holding = None;
        if let Some(p) = self.slots[slot].as_mut()
            && p.full
        {
            p.held_back = true;
            if !p.paused {
                p.paused = true;
                self.shared.backpressure_pauses.fetch_add(1, Relaxed);
                let mut tpl = TopicPartitionList::new();
                tpl.add_partition(&p.topic, p.partition);
                if let Err(error) = self.consumer.pause(&tpl) {
                    self.shared.set_error(&error);
                }
            }
        }
    }

    /// Drops the partition's records that are not running yet.
    fn drop_waiting(&mut self, slot: usize) {
        if let Some(p) = self.slots[slot].as_mut() {
            let held = p.drop_waiting();
            self.unbuffer(held);
            self.pause_dirty.push(slot);
        }
        self.holding.take_if(|&mut held| held == slot);
    }

    fn apply_pauses(&mut self) {
        if self.pause_dirty.is_empty() {
            return;
        }
        let stopping = self.stop.is_some();
        let mut pause = TopicPartitionList::new();
        let mut resume = TopicPartitionList::new();
        let mut dirty = std::mem::take(&mut self.pause_dirty);
        dirty.sort_unstable();
        dirty.dedup();
        for slot in dirty {
            let Some(p) = self.slots[slot].as_mut() else {
                continue;
            };
            let wanted = p.wants_pause(stopping);
            if wanted == p.paused {
                continue;
            }
            p.paused = wanted;
            if wanted {
                pause.add_partition(&p.topic, p.partition);
            } else {
                resume.add_partition(&p.topic, p.partition);
            }
        }
        if pause.count() > 0
            && let Err(error) = self.consumer.pause(&pause)
        {
            self.shared.set_error(&error);
        }
        if resume.count() > 0
            && let Err(error) = self.consumer.resume(&resume)
        {
            self.shared.set_error(&error);
        }
    }

    // ---- commits --------------------------------------------------------------

    /// Starts committing the settled prefix of every partition that moved,
    /// unless a commit is already running (then it follows that one).
    fn commit(&mut self) {
        self.settled_since_commit = 0;
        self.commit_timer
            .as_mut()
            .reset(Instant::now() + self.config.commit_interval);
        if self.commit_task.is_some() {
            self.commit_due = true;
            return;
        }
        let (tpl, offsets) = self.committable(|p| !p.revoking && p.committable > p.requested);
        if offsets.is_empty() {
            return;
        }
        for &(slot, _, offset) in &offsets {
            if let Some(p) = self.slots[slot].as_mut() {
                p.requested = Some(offset);
            }
        }
        let consumer = self.consumer.clone();
        let handle = tokio::task::spawn_blocking(move || consumer.commit(&tpl, CommitMode::Sync));
        self.commit_task = Some(CommitTask { handle, offsets });
    }

    fn committable(
        &self,
        wanted: impl Fn(&Partition) -> bool,
    ) -> (TopicPartitionList, Vec<(usize, u64, i64)>) {
        let mut tpl = TopicPartitionList::new();
        let mut offsets = Vec::new();
        for (slot, p) in self.slots.iter().enumerate() {
            if let Some(p) = p
                && let Some(offset) = p.committable
                && wanted(p)
            {
                let _ = tpl.add_partition_offset(&p.topic, p.partition, Offset::Offset(offset));
                offsets.push((slot, p.epoch, offset));
            }
        }
        (tpl, offsets)
    }

    /// Applies the outcome of the running commit, if it finished.
    fn poll_commit_task(&mut self, cx: &mut Context<'_>) -> bool {
        let Some(task) = self.commit_task.as_mut() else {
            return false;
        };
        let Poll::Ready(joined) = Pin::new(&mut task.handle).poll(cx) else {
            return false;
        };
        let task = self.commit_task.take().expect("checked above");
        let outcome = joined.unwrap_or(Err(KafkaError::Canceled));
        self.apply_commit(&task.offsets, outcome);
        if std::mem::take(&mut self.commit_due) {
            self.commit();
        }
        true
    }

    fn apply_commit(&mut self, offsets: &[(usize, u64, i64)], outcome: Result<(), KafkaError>) {
        if let Err(error) = &outcome {
            tracing::warn!(%error, "offset commit failed");
            self.shared
                .set_error(format_args!("offset commit failed: {error}"));
        }
        for &(slot, epoch, offset) in offsets {
            if let Some(p) = live(&mut self.slots, slot, epoch) {
                if outcome.is_ok() {
                    p.committed = p.committed.max(Some(offset));
                } else {
                    p.requested = p.committed;
                }
            }
        }
    }

    /// Commits synchronously, in this thread: before giving partitions up and
    /// when stopping. Called only once no commit task is running, so an older
    /// commit can never land after this one.
    fn commit_now(&mut self, wanted: impl Fn(&Partition) -> bool) {
        let (tpl, offsets) = self.committable(|p| p.committable > p.committed && wanted(p));
        if offsets.is_empty() {
            return;
        }
        let outcome = self.consumer.commit(&tpl, CommitMode::Sync);
        self.apply_commit(&offsets, outcome);
    }

    // ---- rebalances -----------------------------------------------------------

    fn handle_rebalance_event(&mut self) -> bool {
        let Some(event) = self.consumer.context().next_event() else {
            return false;
        };
        let cooperative = matches!(
            self.consumer.rebalance_protocol(),
            RebalanceProtocol::Cooperative
        );
        match event {
            RebalanceEvent::Assign(tpl) => {
                // An assignment needs the group coordinator: the cluster answers.
                if !self.healthy {
                    self.healthy = true;
                    self.shared.throttle.recovered();
                }
                for element in tpl.elements() {
                    self.add_partition(element.topic(), element.partition());
                }
                if let Err(error) = assign(&*self.consumer, &tpl, cooperative) {
                    tracing::error!(%error, "assign failed");
                    self.shared.set_error(&error);
                }
                // librdkafka keeps a partition's pause flag across assignments:
                // one paused before it was revoked would stay paused.
                if tpl.count() > 0
                    && let Err(error) = self.consumer.resume(&tpl)
                {
                    self.shared.set_error(&error);
                }
                tracing::info!(partitions = tpl.count(), "partitions assigned");
            }
            RebalanceEvent::Revoke(tpl) => {
                let lost = self.consumer.assignment_lost();
                let mut slots = Vec::new();
                for element in tpl.elements() {
                    if let Some(slot) = self.lookup(element.topic(), element.partition()) {
                        let p = self.slots[slot].as_mut().expect("indexed slot is live");
                        p.revoking = true;
                        self.drop_waiting(slot);
                        slots.push(slot);
                    }
                }
                tracing::info!(partitions = tpl.count(), lost, "partitions revoked");
                self.revocation = Some(Revocation {
                    tpl,
                    slots,
                    deadline: Box::pin(tokio::time::sleep(self.config.revoke_timeout)),
                    lost,
                });
            }
            RebalanceEvent::Lost(error) => {
                tracing::warn!(%error, "assignment lost");
                let all: Vec<usize> = (0..self.slots.len())
                    .filter(|&s| self.slots[s].is_some())
                    .collect();
                for slot in all {
                    self.remove_partition(slot);
                }
            }
        }
        self.publish_partitions();
        true
    }

    fn poll_revocation(&mut self, cx: &mut Context<'_>) -> bool {
        let Some(revocation) = self.revocation.as_mut() else {
            return false;
        };
        let drained = revocation
            .slots
            .iter()
            .all(|&slot| self.slots[slot].as_ref().is_none_or(|p| p.in_flight == 0));
        if !drained && revocation.deadline.as_mut().poll(cx).is_pending() {
            return false;
        }
        if self.commit_task.is_some() {
            // Let the running commit land first.
            return self.poll_commit_task(cx);
        }
        let revocation = self.revocation.take().expect("checked above");
        if !revocation.lost {
            let revoked = revocation.slots.clone();
            let slots = &self.slots;
            let epochs: Vec<(usize, u64)> = revoked
                .iter()
                .filter_map(|&s| slots[s].as_ref().map(|p| (s, p.epoch)))
                .collect();
            self.commit_now(|p| epochs.iter().any(|&(_, e)| e == p.epoch));
        }
        for &slot in &revocation.slots {
            self.remove_partition(slot);
        }
        let cooperative = matches!(
            self.consumer.rebalance_protocol(),
            RebalanceProtocol::Cooperative
        );
        if let Err(error) = unassign(&*self.consumer, &revocation.tpl, cooperative) {
            tracing::error!(%error, "unassign failed");
            self.shared.set_error(&error);
        }
        self.publish_partitions();
        true
    }

    fn add_partition(&mut self, topic: &str, partition: i32) {
        if self.lookup(topic, partition).is_some() || partition < 0 {
            return;
        }
        let topic: Arc<str> = match self.index.get_key_value(topic) {
            Some((name, _)) => name.clone(),
            None => Arc::from(topic),
        };
        self.next_epoch += 1;
        let keyed = self.config.ordering == Ordering::Key;
        let state = Partition::new(topic.clone(), partition, self.next_epoch, keyed);
        let slot = match self.free_slots.pop() {
            Some(slot) => {
                self.slots[slot] = Some(state);
                slot
            }
            None => {
                self.slots.push(Some(state));
                self.slots.len() - 1
            }
        };
        let by_partition = self.index.entry(topic).or_default();
        let index = partition as usize;
        if by_partition.len() <= index {
            by_partition.resize(index + 1, None);
        }
        by_partition[index] = Some(slot);
        if self.stop.is_some() {
            self.pause_dirty.push(slot);
        }
    }

    fn remove_partition(&mut self, slot: usize) {
        let Some(p) = self.slots[slot].take() else {
            return;
        };
        p.cancel.cancel();
        self.in_flight -= p.in_flight;
        self.unbuffer(p.window() + p.held.len());
        self.holding.take_if(|&mut held| held == slot);
        if let Some(by_partition) = self.index.get_mut(&p.topic)
            && let Some(entry) = by_partition.get_mut(p.partition as usize)
        {
            *entry = None;
        }
        self.free_slots.push(slot);
    }

    fn lookup(&self, topic: &str, partition: i32) -> Option<usize> {
        *self
            .index
            .get(topic)?
            .get(usize::try_from(partition).ok()?)?
    }

    // ---- stopping -------------------------------------------------------------

    fn begin_stop(&mut self, error: Option<ConsumerError>) {
        if let Some(error) = &error {
            tracing::error!(%error, "consumer stopping on error");
            self.shared.set_error(error);
        } else {
            tracing::info!("consumer stopping");
        }
        for slot in 0..self.slots.len() {
            self.drop_waiting(slot);
        }
        self.ready.clear();
        self.stop = Some(Stop {
            deadline: Box::pin(tokio::time::sleep(self.config.shutdown_timeout)),
            error,
        });
    }

    fn poll_stop(&mut self, cx: &mut Context<'_>) -> Option<Result<(), ConsumerError>> {
        let stop = self.stop.as_mut()?;
        if self.in_flight > 0 && stop.deadline.as_mut().poll(cx).is_pending() {
            return None;
        }
        if self.commit_task.is_some() {
            self.poll_commit_task(cx);
            if self.commit_task.is_some() {
                return None;
            }
        }
        let error = self.stop.take().and_then(|s| s.error);
        // Offsets of records still running are not committed: they will be
        // delivered again.
        self.commit_now(|p| !p.revoking);
        for slot in 0..self.slots.len() {
            if let Some(p) = self.slots[slot].as_ref() {
                p.cancel.cancel();
            }
        }
        self.publish_partitions();
        self.publish_counters();
        Some(match error {
            Some(error) => Err(error),
            None => Ok(()),
        })
    }

    // ---- health ---------------------------------------------------------------

    fn publish_counters(&self) {
        self.shared.in_flight.store(self.in_flight, Relaxed);
        self.shared.set_buffered(self.buffered);
    }

    fn publish_partitions(&self) {
        self.shared.publish_partitions(
            &self.config.group,
            self.slots.iter().flatten().map(|p| PartitionHealth {
                topic: p.topic.to_string(),
                partition: p.partition,
                committed: p.committed,
                lag: None,
                in_flight: p.in_flight,
                buffered: p.window() + p.held.len(),
                paused: p.paused,
                stalled: p.stalled.clone(),
            }),
        );
    }
}

impl<S: Service<Record>> Drop for Driver<S> {
    fn drop(&mut self) {
        // Whatever closes the consumer from now on, rebalances need no driver.
        self.consumer.context().handle_rebalances_inline();
    }
}

/// The lane a record waits in: the partition's one, or its key's.
fn lane(ordering: Ordering, record: &Record) -> Option<Bytes> {
    match ordering {
        Ordering::Partition => None,
        Ordering::Key => record.key().cloned(),
    }
}

fn live(slots: &mut [Option<Partition>], slot: usize, epoch: u64) -> Option<&mut Partition> {
    slots.get_mut(slot)?.as_mut().filter(|p| p.epoch == epoch)
}
