use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};
use std::time::Duration;

use pin_project_lite::pin_project;
use tokio::time::Sleep;

use super::core::{Core, DeliveryReceiver, Pending, is_queue_full};
use super::{Delivery, ProduceError, ProduceErrorKind};
use crate::record::Record;

const FIRST_BACKOFF: Duration = Duration::from_millis(1);
const MAX_BACKOFF: Duration = Duration::from_millis(100);

pin_project! {
    /// Response future of [`super::Producer`]: resolves when the broker
    /// acknowledges the record, or with the reason it never will.
    pub struct ResponseFuture {
        #[pin]
        state: State,
    }
}

pin_project! {
    #[project = StateProj]
    enum State {
        // The core is held so the producer outlives its in-flight records even
        // when every `Producer` handle is gone (`ServiceExt::oneshot`).
        Waiting { rx: DeliveryReceiver, _core: Arc<Core> },
        // librdkafka's queue was full despite our permit (its byte limit, or a
        // permit released a moment before librdkafka freed the slot): try again.
        Backoff {
            #[pin]
            sleep: Sleep,
            delay: Duration,
            retry: Option<Retry>,
        },
        Failed { error: Option<ProduceError> },
    }
}

struct Retry {
    core: Arc<Core>,
    record: Record,
    pending: Box<Pending>,
    rx: DeliveryReceiver,
}

impl ResponseFuture {
    pub(super) fn send(
        core: Arc<Core>,
        record: Record,
        pending: Box<Pending>,
        rx: DeliveryReceiver,
    ) -> Self {
        let state = State::enqueue(core, record, pending, rx, FIRST_BACKOFF);
        ResponseFuture { state }
    }

    pub(super) fn failed(error: ProduceError) -> Self {
        ResponseFuture {
            state: State::Failed { error: Some(error) },
        }
    }
}

impl State {
    /// Hands `record` to librdkafka: then waits for its delivery report, or,
    /// when the local queue is full, backs off for `delay` and tries again.
    fn enqueue(
        core: Arc<Core>,
        record: Record,
        pending: Box<Pending>,
        rx: DeliveryReceiver,
        delay: Duration,
    ) -> State {
        match core.enqueue(&record, pending) {
            Ok(()) => State::Waiting { rx, _core: core },
            Err((error, pending)) if is_queue_full(&error) => State::Backoff {
                sleep: tokio::time::sleep(delay),
                delay,
                retry: Some(Retry {
                    core,
                    record,
                    pending,
                    rx,
                }),
            },
            Err((error, _)) => State::Failed {
                error: Some(ProduceError::from_kafka(
                    &error,
                    Some(record.topic_arc().clone()),
                )),
            },
        }
    }
}

impl Future for ResponseFuture {
    type Output = Result<Delivery, ProduceError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut state = self.project().state;
        loop {
            match state.as_mut().project() {
                StateProj::Waiting { rx, .. } => {
                    return Poll::Ready(match ready!(Pin::new(rx).poll(cx)) {
                        Ok(outcome) => outcome,
                        Err(_) => Err(ProduceError::new(ProduceErrorKind::Closed, None)),
                    });
                }
                StateProj::Backoff {
                    sleep,
                    delay,
                    retry,
                } => {
                    ready!(sleep.poll(cx));
                    let delay = (*delay * 2).min(MAX_BACKOFF);
                    let Retry {
                        core,
                        record,
                        pending,
                        rx,
                    } = retry.take().expect("polled after completion");
                    let next = State::enqueue(core, record, pending, rx, delay);
                    state.set(next);
                }
                StateProj::Failed { error } => {
                    return Poll::Ready(Err(error.take().expect("polled after completion")));
                }
            }
        }
    }
}

impl std::fmt::Debug for ResponseFuture {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ResponseFuture").finish_non_exhaustive()
    }
}
