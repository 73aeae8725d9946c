//! What a running processor has done, read through its handle.

#[allow(unused_imports)]
use super::*;

/// What a running processor has done, for health checks.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct ProcessorHealth {
    /// Transactions committed.
    pub committed: u64,
    /// Input records whose transaction committed.
    pub committed_records: u64,
    /// Transactions aborted (a failed record, a failed commit).
    pub aborted: u64,
    /// The restore running now, if any.
    pub restoring: Option<RestoreProgress>,
    /// Changelog records read by finished restores.
    pub restored: u64,
    /// The input partitions assigned to this instance now (sorted; a
    /// partition number of several co-partitioned topics appears once).
    pub partitions: Vec<i32>,
    /// The last failure, until the next commit.
    pub last_error: Option<String>,
    /// Set while the processor is held up by an outage: its consumer found
    /// every broker down, or its producer failed in a way only a new
    /// producer mends (the cluster was unreachable longer than
    /// `transaction.timeout.ms`, a commit or an abort could not finish) and
    /// is being re-created. Cleared when a transaction commits again (or,
    /// when no producer had to be re-created, when input arrives again).
    pub recovering: Option<Recovery>,
    /// How many times the transactional producer was re-created.
    pub recoveries: u64,
    /// Partitions held back by a record that keeps failing (no dead-letter
    /// layer took it): the other partitions go on, this one is retried on its
    /// own with backoff and commits nothing past the record.
    pub stalled: Vec<StalledPartition>,
}

/// An outage the processor is recovering from ([`ProcessorHealth::recovering`]).
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct Recovery {
    /// When the outage was first seen.
    pub since: SystemTime,
    /// Attempts to re-create the producer and rewind so far (0 while the
    /// processor only waits for the cluster).
    pub attempts: u32,
    /// What failed last: the producer's error, then each failed attempt's.
    pub last_error: String,
}

/// A partition held back by a failing record ([`ProcessorHealth::stalled`]).
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct StalledPartition {
    /// The input topic of the record.
    pub topic: String,
    /// Its partition.
    pub partition: i32,
    /// Its offset: the partition's committed offset stays at or before it.
    pub offset: i64,
    /// How many times the record failed.
    pub attempts: u32,
    /// The record's last error.
    pub last_error: String,
    /// When it failed first.
    pub since: SystemTime,
}

#[derive(Debug, Default)]
pub(super) struct Shared {
    pub(super) health: Mutex<ProcessorHealth>,
}

impl Shared {
    pub(super) fn update<R>(&self, f: impl FnOnce(&mut ProcessorHealth) -> R) -> R {
        f(&mut self.health.lock().unwrap_or_else(|p| p.into_inner()))
    }
}

/// Stops a processor and reads its health. Cheap to clone.
#[derive(Clone, Debug)]
pub struct ProcessorHandle {
    pub(super) shutdown: CancellationToken,
    pub(super) shared: Arc<Shared>,
}

impl ProcessorHandle {
    /// Asks the processor to stop once its current transaction ended.
    pub fn shutdown(&self) {
        self.shutdown.cancel();
    }

    /// A copy of the processor's health.
    pub fn health(&self) -> ProcessorHealth {
        self.shared.update(|h| h.clone())
    }
}
