//! TLS and SASL to a real Apache Kafka broker (`scripts/kafka test`), whose
//! script listens with SSL, SASL_SSL (SCRAM-SHA-512) and mTLS on
//! certificates from a throwaway CA (`$LIGHT_KAFKA_TEST_TLS`): the producer,
//! the consumer runtime and the exactly-once processor work over each, and a
//! wrong password, an untrusted or expired certificate, or a plaintext client
//! on a TLS port fails with a typed error within a bounded time, with health
//! saying why.

mod common;

use std::path::PathBuf;
use std::time::{Duration, Instant};

use light_kafka::BoxError;
use light_kafka::error::{ErrorKind, classify};
use light_kafka::record::Record;
use light_kafka::service::connect::{ConnectError, ConnectErrorKind};
use light_kafka::service::consumer::{Consumer, ConsumerError};
use light_kafka::service::producer::{ProduceErrorKind, Producer};
use light_kafka::streams::processor::StreamProcessor;
use light_kafka::streams::store::Stores;
use tower::{Service, ServiceExt, service_fn};

/// What a failing connection must be reported within.
const BOUND: Duration = Duration::from_secs(20);

/// The script's TLS material and listener addresses.
struct Tls {
    dir: PathBuf,
    /// The PLAINTEXT listener, for creating topics and reading back.
    plain: String,
}

impl Tls {
    fn get() -> Tls {
        let kafka = common::real_only();
        let dir = std::env::var("LIGHT_KAFKA_TEST_TLS").unwrap_or_else(|_| {
            panic!("LIGHT_KAFKA_TEST_TLS is not set: run the TLS tests with `scripts/kafka test`")
        });
        Tls {
            dir: PathBuf::from(dir),
            plain: kafka.bootstrap_servers().to_owned(),
        }
    }

    fn read(&self, name: &str) -> String {
        let path = self.dir.join(name);
        std::fs::read_to_string(&path)
            .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
            .trim()
            .to_owned()
    }

    fn path(&self, name: &str) -> String {
        self.dir.join(name).display().to_string()
    }

    /// librdkafka settings for one of the listeners, as a user would write them.
    fn settings(&self, listener: Listener) -> Vec<(&'static str, String)> {
        let mut settings = vec![("ssl.ca.location", self.path("ca.pem"))];
        match listener {
            Listener::Ssl => {
                settings.push(("bootstrap.servers", self.read("ssl.bootstrap")));
                settings.push(("security.protocol", "ssl".into()));
            }
            Listener::SaslScram => {
                settings.push(("bootstrap.servers", self.read("sasl_ssl.bootstrap")));
                settings.push(("security.protocol", "sasl_ssl".into()));
                settings.push(("sasl.mechanism", "SCRAM-SHA-512".into()));
                settings.push(("sasl.username", self.read("scram-user")));
                settings.push(("sasl.password", self.read("scram-password")));
            }
            Listener::Mtls => {
                settings.push(("bootstrap.servers", self.read("mtls.bootstrap")));
                settings.push(("security.protocol", "ssl".into()));
                settings.push(("ssl.certificate.location", self.path("client.pem")));
                settings.push(("ssl.key.location", self.path("client.key")));
            }
        }
        settings
    }
}

#[derive(Clone, Copy, Debug)]
enum Listener {
    Ssl,
    SaslScram,
    Mtls,
}

fn producer(settings: &[(&'static str, String)]) -> Producer {
    let mut builder = Producer::builder().set("message.timeout.ms", "30000");
    for (k, v) in settings {
        builder = builder.set(*k, v);
    }
    builder.build().expect("producer")
}

fn consumer(settings: &[(&'static str, String)], group: &str, topic: &str) -> Consumer {
    let mut builder = Consumer::builder()
        .group_id(group)
        .topics([topic])
        .commit_interval(Duration::from_millis(50));
    for (k, v) in settings {
        builder = builder.set(*k, v);
    }
    builder.build().expect("consumer")
}

/// Produce, consume (committing), and run the exactly-once processor, all
/// over `listener`.
async fn round_trip(listener: Listener) {
    let tls = Tls::get();
    let kafka = common::Kafka::start();
    let settings = tls.settings(listener);
    let name = format!("tls-{listener:?}-{}", common::uuid_like()).to_lowercase();
    let (input, output) = (format!("{name}-in"), format!("{name}-out"));
    kafka.create_topic(&input, 2).unwrap();
    kafka.create_topic(&output, 2).unwrap();

    // Produce over TLS.
    const N: usize = 200;
    let mut producer = producer(&settings);
    for i in 0..N {
        let record = Record::builder(input.as_str())
            .partition((i % 2) as i32)
            .key(format!("k{}", i % 7))
            .value(format!("v{i}"))
            .build();
        producer
            .ready()
            .await
            .expect("ready")
            .call(record)
            .await
            .unwrap_or_else(|e| panic!("{listener:?}: delivery: {e}"));
    }

    // Consume over TLS with the runtime, committing everything.
    let seen = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counter = seen.clone();
    let handler = service_fn(move |_: Record| {
        counter.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        async { Ok::<_, BoxError>(()) }
    });
    let group = format!("{name}-group");
    let committed =
        common::serve_until_committed(consumer(&settings, &group, &input), handler, N as i64).await;
    assert!(
        committed,
        "{listener:?}: the consumer committed every record"
    );
    assert!(seen.load(std::sync::atomic::Ordering::Relaxed) >= N);
    assert_eq!(
        common::committed(&tls.plain, &group, &input, 2),
        vec![(N / 2) as i64; 2]
    );

    // The exactly-once processor over TLS: one output per input, counted in a store.
    let mut builder = StreamProcessor::builder(format!("{name}-app"))
        .topics([input.as_str()])
        .store("count")
        .max_batch(50)
        .operation_timeout(Duration::from_secs(20));
    for (k, v) in &settings {
        builder = builder.set(*k, v);
    }
    let processor = builder
        .build()
        .await
        .unwrap_or_else(|e| panic!("{listener:?}: processor: {e}"));
    let handle = processor.handle();
    let out = output.clone();
    let running = tokio::spawn(processor.run(service_fn(move |record: Record| {
        let out = out.clone();
        async move {
            let counts = Stores::of(&record)?.json::<u64>("count")?;
            let key = record.partition().unwrap_or(0).to_string();
            let n = counts.get(&key)?.unwrap_or(0) + 1;
            counts.put(&key, &n)?;
            Ok::<_, BoxError>(vec![
                Record::builder(out.as_str())
                    .key(key)
                    .value(n.to_string())
                    .build(),
            ])
        }
    })));
    let outputs = common::read_topic(
        &tls.plain,
        &output,
        2,
        N,
        "read_committed",
        Duration::from_secs(60),
    );
    handle.shutdown();
    running
        .await
        .expect("processor task")
        .unwrap_or_else(|e| panic!("{listener:?}: processor run: {e}"));
    assert_eq!(outputs.len(), N, "{listener:?}: one output per input");
    // Keyed by input partition; in order per input partition.
    let mut last = [0u64; 2];
    for record in &outputs {
        let p: usize = record.key_str().unwrap().parse().unwrap();
        let n: u64 = record.value_str().unwrap().parse().unwrap();
        assert_eq!(n, last[p] + 1, "{listener:?}: counts in order, once each");
        last[p] = n;
    }
    common::report(format_args!(
        "tls {listener:?}: {N} produced, consumed and committed, {} processed exactly once",
        outputs.len()
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs the real broker (scripts/kafka test)"]
async fn produce_consume_and_process_over_ssl() {
    round_trip(Listener::Ssl).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs the real broker (scripts/kafka test)"]
async fn produce_consume_and_process_over_sasl_ssl_scram() {
    round_trip(Listener::SaslScram).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs the real broker (scripts/kafka test)"]
async fn produce_consume_and_process_over_mtls() {
    round_trip(Listener::Mtls).await;
}

/// A setting that cannot connect: what it changes, and the failure expected.
struct Bad {
    name: &'static str,
    listener: Listener,
    change: fn(&Tls, &mut Vec<(&'static str, String)>),
    kind: ConnectErrorKind,
    error_kind: ErrorKind,
}

fn set(settings: &mut Vec<(&'static str, String)>, key: &'static str, value: String) {
    settings.retain(|(k, _)| *k != key);
    settings.push((key, value));
}

const BAD: [Bad; 5] = [
    Bad {
        name: "a wrong SCRAM password",
        listener: Listener::SaslScram,
        change: |_, s| set(s, "sasl.password", "not-the-password".into()),
        kind: ConnectErrorKind::Authentication,
        error_kind: ErrorKind::Unauthorized,
    },
    Bad {
        name: "a broker certificate from a CA the client does not trust",
        listener: Listener::Ssl,
        change: |tls, s| set(s, "ssl.ca.location", tls.path("other-ca.pem")),
        kind: ConnectErrorKind::BrokerCertificate,
        error_kind: ErrorKind::Config,
    },
    Bad {
        name: "an expired client certificate",
        listener: Listener::Mtls,
        change: |tls, s| {
            set(
                s,
                "ssl.certificate.location",
                tls.path("expired-client.pem"),
            );
            set(s, "ssl.key.location", tls.path("expired-client.key"));
        },
        kind: ConnectErrorKind::ClientCertificate,
        error_kind: ErrorKind::Unauthorized,
    },
    Bad {
        name: "a client certificate from a CA the broker does not trust",
        listener: Listener::Mtls,
        change: |tls, s| {
            set(
                s,
                "ssl.certificate.location",
                tls.path("untrusted-client.pem"),
            );
            set(s, "ssl.key.location", tls.path("untrusted-client.key"));
        },
        kind: ConnectErrorKind::ClientCertificate,
        error_kind: ErrorKind::Unauthorized,
    },
    Bad {
        name: "a plaintext client on a TLS port",
        listener: Listener::Ssl,
        change: |_, s| {
            s.retain(|(k, _)| *k != "ssl.ca.location");
            set(s, "security.protocol", "plaintext".into());
        },
        kind: ConnectErrorKind::Protocol,
        error_kind: ErrorKind::Config,
    },
];

fn connect_error_in<'a>(error: &'a (dyn std::error::Error + 'static)) -> Option<&'a ConnectError> {
    let mut next = Some(error);
    while let Some(e) = next {
        if let Some(found) = e.downcast_ref::<ConnectError>() {
            return Some(found);
        }
        next = e.source();
    }
    None
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs the real broker (scripts/kafka test)"]
async fn connections_that_cannot_succeed_fail_typed_within_a_bound() {
    let tls = Tls::get();
    let kafka = common::Kafka::start();
    let topic = format!("tls-bad-{}", common::uuid_like());
    kafka.create_topic(&topic, 1).unwrap();
    for bad in &BAD {
        let mut settings = tls.settings(bad.listener);
        (bad.change)(&tls, &mut settings);

        // The producer: the pending record and later calls fail with it.
        let started = Instant::now();
        let mut producer = producer(&settings);
        let record = Record::builder(topic.as_str()).value("x").build();
        let result =
            tokio::time::timeout(BOUND, async { producer.ready().await?.call(record).await })
                .await
                .unwrap_or_else(|_| panic!("{}: the producer hung past {BOUND:?}", bad.name));
        let error = result.expect_err(bad.name);
        assert_eq!(
            error.kind(),
            ProduceErrorKind::Connect,
            "{}: {error}",
            bad.name
        );
        let connect = error.connect_error().expect("the connect error");
        assert_eq!(connect.kind(), bad.kind, "{}: {connect}", bad.name);
        assert_eq!(classify(connect), bad.error_kind, "{}", bad.name);
        assert!(
            futures_util::future::poll_fn(|cx| producer.poll_ready(cx))
                .await
                .is_err(),
            "{}: later calls fail at once",
            bad.name
        );
        let producer_took = started.elapsed();

        // The consumer runtime: serve returns the typed error; health says why.
        let started = Instant::now();
        let consumer = consumer(&settings, &format!("{topic}-g"), &topic);
        let handle = consumer.handle();
        let served = tokio::time::timeout(
            BOUND,
            consumer.serve(service_fn(|_: Record| async { Ok::<_, BoxError>(()) })),
        )
        .await
        .unwrap_or_else(|_| panic!("{}: the consumer hung past {BOUND:?}", bad.name));
        let error = served.expect_err(bad.name);
        let ConsumerError::Connect(connect) = &error else {
            panic!("{}: not a connect error: {error}", bad.name)
        };
        assert_eq!(connect.kind(), bad.kind, "{}: {connect}", bad.name);
        assert_eq!(classify(&error), bad.error_kind, "{}", bad.name);
        let health = handle.health();
        assert_eq!(health.connect_error.as_ref(), Some(connect), "{}", bad.name);
        assert!(!health.running);
        let consumer_took = started.elapsed();

        // The exactly-once processor: building it fails with the reason.
        let started = Instant::now();
        let mut builder = StreamProcessor::builder(format!("{topic}-app"))
            .topics([topic.as_str()])
            .operation_timeout(Duration::from_secs(15));
        for (k, v) in &settings {
            builder = builder.set(*k, v);
        }
        let built = tokio::time::timeout(BOUND, builder.build())
            .await
            .unwrap_or_else(|_| panic!("{}: the processor hung past {BOUND:?}", bad.name));
        let error = built.expect_err(bad.name);
        let connect = connect_error_in(&error)
            .unwrap_or_else(|| panic!("{}: no connect error in {error}", bad.name));
        assert_eq!(connect.kind(), bad.kind, "{}: {connect}", bad.name);
        common::report(format_args!(
            "tls failure, {}: producer {:.1} s, consumer {:.1} s, processor {:.1} s → {:?} ({})",
            bad.name,
            producer_took.as_secs_f64(),
            consumer_took.as_secs_f64(),
            started.elapsed().as_secs_f64(),
            bad.kind,
            bad.error_kind
        ));
    }
}
