//! With no broker to reach, the consumer says so once per change of state,
//! with backoff: not once (or twice) per librdkafka error.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use light_kafka::record::Record;
use light_kafka::service::consumer::Consumer;
use tower::service_fn;
use tracing::Level;
use tracing_subscriber::layer::SubscriberExt;

/// Counts WARN and ERROR events, and keeps their messages.
#[derive(Clone, Default)]
struct Loud(Arc<Mutex<Vec<String>>>);

impl<S: tracing::Subscriber> tracing_subscriber::Layer<S> for Loud {
    fn on_event(&self, event: &tracing::Event<'_>, _: tracing_subscriber::layer::Context<'_, S>) {
        if *event.metadata().level() <= Level::WARN {
            struct Message(String);
            impl tracing::field::Visit for Message {
                fn record_debug(
                    &mut self,
                    field: &tracing::field::Field,
                    value: &dyn std::fmt::Debug,
                ) {
                    use std::fmt::Write;
                    let _ = write!(self.0, "{}={value:?} ", field.name());
                }
            }
            let mut message = Message(String::new());
            event.record(&mut message);
            self.0.lock().unwrap().push(message.0);
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_cluster_is_logged_once_per_state_change_with_backoff() {
    let loud = Loud::default();
    let subscriber = tracing_subscriber::registry().with(loud.clone());
    // Global: librdkafka's threads and the runtime's workers log too. This
    // binary holds this one test, so nothing else installs a subscriber.
    tracing::subscriber::set_global_default(subscriber).unwrap();

    let closed = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap()
    };
    let consumer = Consumer::builder()
        .bootstrap_servers(closed.to_string())
        .group_id("nobody-home")
        .topics(["orders"])
        .set("reconnect.backoff.ms", "10")
        .set("reconnect.backoff.max.ms", "100")
        .build()
        .unwrap();
    let handle = consumer.handle();
    let serving = tokio::spawn(consumer.serve(service_fn(|_: Record| async {
        Ok::<_, light_kafka::BoxError>(())
    })));
    tokio::time::sleep(Duration::from_secs(8)).await;
    handle.shutdown();
    serving.await.unwrap().unwrap();

    let lines = loud.0.lock().unwrap().clone();
    assert!(
        lines.len() <= 8,
        "{} warnings in 8 s with the broker unreachable:\n{}",
        lines.len(),
        lines.join("\n")
    );
    assert!(
        lines
            .iter()
            .any(|l| l.contains("unreachable") || l.contains("Connection refused")),
        "the outage must be reported at least once:\n{}",
        lines.join("\n")
    );
    assert!(
        handle.health().last_error.is_some(),
        "health still carries the last error"
    );
}
