//! The runtime's state for one assigned partition.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;

use bytes::Bytes;
use tokio_util::sync::CancellationToken;

use super::health::Stalled;
use super::tracker::OffsetTracker;
use crate::record::Record;

/// A received record waiting for its turn.
pub(crate) struct Queued {
    pub(crate) seq: u64,
    pub(crate) offset: i64,
    pub(crate) lane: Option<Bytes>,
    pub(crate) attempt: u32,
    pub(crate) record: Record,
}

/// One partition: records received and not yet committable, split into the
/// ones that may run now (`runnable`) and the ones waiting behind a busy lane.
///
/// A lane is the unit of ordering: the whole partition in partition-ordered
/// mode (every record has lane `None`), the record key in key-ordered mode. At
/// most one record per lane is runnable, running or waiting for a retry.
pub(crate) struct Partition {
    pub(crate) topic: Arc<str>,
    pub(crate) partition: i32,
    pub(crate) epoch: u64,
    pub(crate) cancel: CancellationToken,
    pub(crate) tracker: OffsetTracker,
    pub(crate) runnable: VecDeque<Queued>,
    lanes: Lanes,
    pub(crate) in_flight: usize,
    /// Messages taken from librdkafka and not yet accepted.
    pub(crate) incoming: usize,
    /// Records between a failed attempt and their successful retry.
    pub(crate) retrying: usize,
    /// Whether the partition is in the driver's ready queue.
    pub(crate) queued: bool,
    /// Whether fetching is paused in librdkafka.
    pub(crate) paused: bool,
    /// Its window reached two thirds of `max.poll.records`: records that
    /// arrive now wait in `held` until half the window settled.
    pub(crate) full: bool,
    /// Records that arrived while the partition was full (at most a third of
    /// `max.poll.records`: then the driver stops taking messages).
    pub(crate) held: VecDeque<(i64, Record)>,
    /// Messages taken from librdkafka to be held, not yet in `held`.
    pub(crate) incoming_held: usize,
    /// Fetching paused because the partition stayed full.
    pub(crate) held_back: bool,
    pub(crate) revoking: bool,
    /// The offset after the settled prefix.
    pub(crate) committable: Option<i64>,
    /// The offset last sent in a commit request.
    pub(crate) requested: Option<i64>,
    /// The offset the group has committed, as last confirmed.
    pub(crate) committed: Option<i64>,
    /// The lowest record that keeps failing, if any.
    pub(crate) stalled: Option<Stalled>,
}

impl Partition {
    pub(crate) fn new(topic: Arc<str>, partition: i32, epoch: u64, keyed: bool) -> Self {
        Partition {
            topic,
            partition,
            epoch,
            cancel: CancellationToken::new(),
            tracker: OffsetTracker::default(),
            runnable: VecDeque::new(),
            lanes: if keyed {
                Lanes::Keyed(HashMap::new())
            } else {
                Lanes::Single {
                    busy: false,
                    waiting: VecDeque::new(),
                }
            },
            in_flight: 0,
            incoming: 0,
            retrying: 0,
            queued: false,
            paused: false,
            full: false,
            held: VecDeque::new(),
            incoming_held: 0,
            held_back: false,
            revoking: false,
            committable: None,
            requested: None,
            committed: None,
            stalled: None,
        }
    }

    /// Takes a received record: runnable at once when its lane is free.
    pub(crate) fn accept(&mut self, record: Record, offset: i64, lane: Option<Bytes>) {
        let seq = self.tracker.push(offset);
        let queued = Queued {
            seq,
            offset,
            lane,
            attempt: 0,
            record,
        };
        if let Some(queued) = self.lanes.occupy(queued) {
            self.runnable.push_back(queued);
        }
    }

    /// The lane's current record settled: the next one in the lane may run.
    pub(crate) fn release(&mut self, lane: &Option<Bytes>) {
        if let Some(next) = self.lanes.release(lane) {
            self.runnable.push_back(next);
        }
    }

    /// Drops every record not yet running (revocation or shutdown: they will be
    /// delivered again from the committed offset). Returns how many of them
    /// were held outside the window.
    pub(crate) fn drop_waiting(&mut self) -> usize {
        self.runnable.clear();
        self.lanes.clear();
        let held = self.held.len();
        self.held.clear();
        held
    }

    /// Records received and not yet committable.
    pub(crate) fn window(&self) -> usize {
        self.tracker.len()
    }

    /// Whether fetching should be paused.
    pub(crate) fn wants_pause(&self, stopping: bool) -> bool {
        stopping || self.held_back || self.retrying > 0 || self.revoking
    }
}

/// The ordering lanes of a partition: one for the whole partition, or one per key.
enum Lanes {
    /// Partition-ordered: the lane is busy while a record runs; the rest wait.
    Single {
        busy: bool,
        waiting: VecDeque<Queued>,
    },
    /// Key-ordered: busy keys, each with the records waiting behind its current one.
    Keyed(HashMap<Option<Bytes>, VecDeque<Queued>>),
}

impl Lanes {
    /// Gives the record its lane if the lane is free (returning it to run), or
    /// queues it behind the lane's current record.
    fn occupy(&mut self, queued: Queued) -> Option<Queued> {
        match self {
            Lanes::Single { busy, waiting } => {
                if *busy {
                    waiting.push_back(queued);
                    None
                } else {
                    *busy = true;
                    Some(queued)
                }
            }
            Lanes::Keyed(lanes) => match lanes.get_mut(&queued.lane) {
                Some(waiting) => {
                    waiting.push_back(queued);
                    None
                }
                None => {
                    lanes.insert(queued.lane.clone(), VecDeque::new());
                    Some(queued)
                }
            },
        }
    }

    /// Frees the lane, or hands it to the next waiting record (returned).
    fn release(&mut self, lane: &Option<Bytes>) -> Option<Queued> {
        match self {
            Lanes::Single { busy, waiting } => {
                let next = waiting.pop_front();
                *busy = next.is_some();
                next
            }
            Lanes::Keyed(lanes) => {
                let waiting = lanes.get_mut(lane)?;
                let next = waiting.pop_front();
                if next.is_none() {
                    lanes.remove(lane);
                }
                next
            }
        }
    }

    fn clear(&mut self) {
        match self {
            Lanes::Single { busy, waiting } => {
                *busy = false;
                waiting.clear();
            }
            Lanes::Keyed(lanes) => lanes.clear(),
        }
    }

    #[cfg(test)]
    fn is_idle(&self) -> bool {
        match self {
            Lanes::Single { busy, waiting } => !busy && waiting.is_empty(),
            Lanes::Keyed(lanes) => lanes.is_empty(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(key: &'static str) -> Record {
        Record::builder("t").key(key).build()
    }

    #[test]
    fn same_lane_waits_different_lanes_run() {
        let mut p = Partition::new("t".into(), 0, 0, true);
        let a: Option<Bytes> = Some(Bytes::from_static(b"a"));
        let b: Option<Bytes> = Some(Bytes::from_static(b"b"));
        p.accept(record("a"), 0, a.clone());
        p.accept(record("a"), 1, a.clone());
        p.accept(record("b"), 2, b.clone());
        let offsets: Vec<i64> = p.runnable.iter().map(|q| q.offset).collect();
        assert_eq!(offsets, [0, 2]);
        p.runnable.clear();
        p.release(&a);
        assert_eq!(p.runnable.front().map(|q| q.offset), Some(1));
        p.runnable.clear();
        p.release(&a);
        p.release(&b);
        assert!(p.lanes.is_idle());
        assert_eq!(p.window(), 3);
    }

    #[test]
    fn partition_lane_runs_one_at_a_time() {
        let mut p = Partition::new("t".into(), 0, 0, false);
        p.accept(record("a"), 0, None);
        p.accept(record("b"), 1, None);
        assert_eq!(p.runnable.len(), 1);
        p.runnable.clear();
        p.release(&None);
        assert_eq!(p.runnable.front().map(|q| q.offset), Some(1));
        p.runnable.clear();
        p.release(&None);
        assert!(p.lanes.is_idle());
    }
}
