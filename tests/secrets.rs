//! No secret ever shows: a marker planted in every secret-bearing client
//! setting must not appear in any error (its `Display`, `Debug` and source
//! chain), in `Debug` output, or in anything logged at any level — including
//! librdkafka's own logs with `debug=all` — while the clients are built, fail
//! and connect. (The config files' side is in `tests/config*.rs`.)

mod common;

use std::io::Write;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use light_kafka::BoxError;
use light_kafka::layers::avro::SchemaRegistry;
use light_kafka::record::Record;
use light_kafka::service::consumer::Consumer;
use light_kafka::service::producer::Producer;
use light_kafka::service::replay::Replay;
use light_kafka::service::transactional::TransactionalProducer;
use tower::{Service, ServiceExt, service_fn};

const MARKER: &str = "S3CR3T-MARKER-7f3a";

/// Every line any thread logs, at every level, for the whole test binary.
fn logs() -> Arc<Mutex<Vec<u8>>> {
    static LOGS: OnceLock<Arc<Mutex<Vec<u8>>>> = OnceLock::new();
    LOGS.get_or_init(|| {
        let logs = Arc::new(Mutex::new(Vec::new()));
        let writer = logs.clone();
        tracing_subscriber::fmt()
            .with_max_level(tracing::Level::TRACE)
            .with_writer(move || Sink(writer.clone()))
            .try_init()
            .expect("the only subscriber of this test binary");
        logs
    })
    .clone()
}

struct Sink(Arc<Mutex<Vec<u8>>>);

impl Write for Sink {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// An error's `Display`, `Debug`, and those of every source.
fn everything(error: &(dyn std::error::Error + 'static)) -> String {
    let mut shown = format!("{error} {error:?}");
    let mut next = error.source();
    while let Some(e) = next {
        shown.push_str(&format!(" | {e} {e:?}"));
        next = e.source();
    }
    shown
}

fn assert_hidden(what: &str, shown: &str) {
    assert!(!shown.contains(MARKER), "{what} shows the secret: {shown}");
}

/// Every librdkafka property whose value is a secret, and misspellings a
/// user makes of them.
const SECRET_PROPERTIES: [&str; 9] = [
    "sasl.password",
    "ssl.key.password",
    "ssl.keystore.password",
    "ssl.truststore.password",
    "ssl.key.pem",
    "sasl.oauthbearer.client.secret",
    "sasl.oauthbearer.config",
    "sasl.pasword",
    "basic.auth.user.info",
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_secret_shows_in_errors_debug_or_logs() {
    let logs = logs();
    let kafka = common::embedded_only();
    let bootstrap = kafka.bootstrap_servers().to_owned();

    // Each secret property on its own: Debug of every builder that holds it,
    // and the error of building with it (misspelt ones are refused).
    for key in SECRET_PROPERTIES {
        let producer = Producer::builder()
            .bootstrap_servers(&bootstrap)
            .set(key, MARKER);
        assert_hidden(key, &format!("{producer:?}"));
        if let Err(error) = producer.build() {
            assert_hidden(key, &everything(&error));
        }
        let consumer = Consumer::builder()
            .bootstrap_servers(&bootstrap)
            .group_id("secrets")
            .topics(["secrets"])
            .set(key, MARKER);
        assert_hidden(key, &format!("{consumer:?}"));
        match consumer.build() {
            Ok(consumer) => assert_hidden(key, &format!("{consumer:?}")),
            Err(error) => assert_hidden(key, &everything(&error)),
        }
        let transactional = TransactionalProducer::builder("secrets").set(key, MARKER);
        assert_hidden(key, &format!("{transactional:?}"));
        let replay = Replay::new(&bootstrap, "secrets.dlq").set(key, MARKER);
        assert_hidden(key, &format!("{replay:?}"));
    }

    // A value librdkafka refuses, for a property whose value it quotes in
    // its own message.
    let error = Producer::builder()
        .bootstrap_servers(&bootstrap)
        .set("security.protocol", MARKER)
        .build()
        .expect_err("an unknown security protocol");
    assert_hidden("a refused value", &everything(&error));
    assert!(
        everything(&error).contains("security.protocol"),
        "the property is named"
    );

    // A client that authenticates with the marker and cannot connect
    // (SASL over plaintext to a broker that offers none), with librdkafka's
    // debug logs on: it fails typed, and nothing logged shows the password.
    let mut producer = Producer::builder()
        .bootstrap_servers(&bootstrap)
        .set("security.protocol", "sasl_plaintext")
        .set("sasl.mechanism", "PLAIN")
        .set("sasl.username", "svc")
        .set("sasl.password", MARKER)
        .set("debug", "all")
        .set("message.timeout.ms", "3000")
        .build()
        .expect("producer");
    let sent = tokio::time::timeout(Duration::from_secs(20), async {
        producer
            .ready()
            .await?
            .call(Record::builder("secrets").value("x").build())
            .await
    })
    .await
    .expect("bounded");
    if let Err(error) = &sent {
        assert_hidden("the produce error", &everything(error));
    }
    let consumer = Consumer::builder()
        .bootstrap_servers(&bootstrap)
        .group_id("secrets")
        .topics(["secrets"])
        .set("security.protocol", "sasl_plaintext")
        .set("sasl.mechanism", "PLAIN")
        .set("sasl.username", "svc")
        .set("sasl.password", MARKER)
        .set("debug", "all")
        .build()
        .expect("consumer");
    let handle = consumer.handle();
    let serving =
        tokio::spawn(consumer.serve(service_fn(|_: Record| async { Ok::<_, BoxError>(()) })));
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_hidden("the consumer's health", &format!("{:?}", handle.health()));
    handle.shutdown();
    if let Ok(Err(error)) = tokio::time::timeout(Duration::from_secs(20), serving)
        .await
        .expect("the consumer stops")
    {
        assert_hidden("the consumer's error", &everything(&error));
    }

    // The schema registry's credentials.
    let registry = SchemaRegistry::new(format!("http://svc:{MARKER}@127.0.0.1:9"))
        .with_user_info(&format!("svc:{MARKER}"));
    assert_hidden("the registry", &format!("{registry:?}"));
    let error = registry
        .schema(7)
        .await
        .expect_err("nothing listens on port 9");
    assert_hidden("the registry's error", &everything(&error));

    drop(producer);
    let logged = String::from_utf8_lossy(&logs.lock().unwrap()).into_owned();
    assert!(
        logged.contains("librdkafka"),
        "librdkafka's logs were captured (the test would see nothing otherwise)"
    );
    assert_hidden("the logs", &logged);
}
