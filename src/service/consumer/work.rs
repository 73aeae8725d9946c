//! One record's work, as the driver polls it: running in the service, or
//! waiting out a retry backoff.

use std::future::Future;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use pin_project_lite::pin_project;
use tokio::time::Sleep;
use tokio_util::sync::WaitForCancellationFutureOwned;

use crate::context::Scoped;
use crate::error::BoxError;
use crate::layers::catch_panic::PanicError;
use crate::record::{ConversionError, Record};

/// Which record a piece of work belongs to.
#[derive(Debug)]
pub(crate) struct RecordId {
    /// Slot of the partition in the driver.
    pub(crate) slot: usize,
    /// Generation of that slot, so work of a revoked partition is ignored.
    pub(crate) epoch: u64,
    /// Position of the record in its partition's offset tracker.
    pub(crate) seq: u64,
    pub(crate) offset: i64,
    /// The ordering lane (the key in key-ordered mode).
    pub(crate) lane: Option<Bytes>,
    /// 0 for the first attempt.
    pub(crate) attempt: u32,
    /// The record could not be converted faithfully: it is settled only once
    /// a dead-letter layer took it.
    pub(crate) defect: Option<ConversionError>,
}

impl RecordId {
    /// The service's outcome, unless the record is a poison record the
    /// service returned `Ok` for without dead-lettering it.
    pub(crate) fn outcome(&self, outcome: Result<(), BoxError>) -> Result<(), BoxError> {
        match (&self.defect, outcome) {
            (Some(defect), Ok(())) if !defect.is_dead_lettered() => Err(Box::new(defect.clone())),
            (_, outcome) => outcome,
        }
    }
}

pub(crate) enum Done {
    Settled(RecordId),
    Failed {
        id: RecordId,
        record: Option<Record>,
        error: BoxError,
    },
    RetryDue {
        id: RecordId,
        record: Record,
    },
    Cancelled,
}

pin_project! {
    #[project = WorkProj]
    pub(crate) enum Work<F> {
        Running {
            future: Pin<Box<Scoped<F>>>,
            id: Option<RecordId>,
            retry: Option<Record>,
            #[pin]
            cancelled: WaitForCancellationFutureOwned,
        },
        Waiting {
            #[pin]
            sleep: Sleep,
            id: Option<RecordId>,
            record: Option<Record>,
            #[pin]
            cancelled: WaitForCancellationFutureOwned,
        },
    }
}

/// Polls a handler's future, turning a panic into a [`PanicError`].
pub(crate) fn poll_record<F, T, E>(
    future: Pin<&mut F>,
    cx: &mut Context<'_>,
) -> Poll<Result<(), BoxError>>
where
    F: Future<Output = Result<T, E>>,
    E: Into<BoxError>,
{
    match catch_unwind(AssertUnwindSafe(|| future.poll(cx))) {
        Ok(Poll::Ready(Ok(_))) => Poll::Ready(Ok(())),
        Ok(Poll::Ready(Err(e))) => Poll::Ready(Err(e.into())),
        Ok(Poll::Pending) => Poll::Pending,
        Err(payload) => Poll::Ready(Err(PanicError::from_payload(payload.as_ref()).into())),
    }
}

impl<F, T, E> Future for Work<F>
where
    F: Future<Output = Result<T, E>>,
    E: Into<BoxError>,
{
    type Output = Done;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Done> {
        match self.project() {
            WorkProj::Running {
                future,
                id,
                retry,
                cancelled,
            } => {
                let outcome = match poll_record(future.as_mut(), cx) {
                    Poll::Ready(outcome) => outcome,
                    Poll::Pending => {
                        return match cancelled.poll(cx) {
                            Poll::Ready(()) => Poll::Ready(Done::Cancelled),
                            Poll::Pending => Poll::Pending,
                        };
                    }
                };
                let id = id.take().expect("work polled after completion");
                Poll::Ready(match id.outcome(outcome) {
                    Ok(()) => Done::Settled(id),
                    Err(error) => Done::Failed {
                        id,
                        record: retry.take(),
                        error,
                    },
                })
            }
            WorkProj::Waiting {
                sleep,
                id,
                record,
                cancelled,
            } => {
                if cancelled.poll(cx).is_ready() {
                    return Poll::Ready(Done::Cancelled);
                }
                match sleep.poll(cx) {
                    Poll::Pending => Poll::Pending,
                    Poll::Ready(()) => Poll::Ready(Done::RetryDue {
                        id: id.take().expect("work polled after completion"),
                        record: record.take().expect("work polled after completion"),
                    }),
                }
            }
        }
    }
}
