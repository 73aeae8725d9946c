//! Chains from configuration files: the same behaviour as the chain in
//! code, enable flags, `${...}` values, registered layers, and every kind of
//! bad config reported with its file, line and column.

mod common;

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use light_kafka::builder::ServiceBuilderExt;
use light_kafka::config::{Config, ConfigErrorKind, Registry};
use light_kafka::layers::audit::{AuditLayer, KafkaSink};
use light_kafka::layers::retry::RetryPolicy;
use light_kafka::record::{Record, names};
use light_kafka::service::producer::Producer;
use light_kafka::testkit;
use light_kafka::{BoxError, Error, ErrorKind};
use metrics_util::debugging::{DebugValue, DebuggingRecorder, Snapshotter};
use tower::{ServiceBuilder, service_fn};

fn snapshotter() -> &'static Snapshotter {
    static SNAPSHOTTER: OnceLock<Snapshotter> = OnceLock::new();
    SNAPSHOTTER.get_or_init(|| {
        let recorder = DebuggingRecorder::new();
        let snapshotter = recorder.snapshotter();
        recorder
            .install()
            .expect("the only recorder of this binary");
        snapshotter
    })
}

/// Counters labelled `service.id = service`, that label left out.
fn counters(service: &str) -> BTreeMap<(String, Vec<(String, String)>), u64> {
    snapshotter()
        .snapshot()
        .into_vec()
        .into_iter()
        .filter_map(|(key, _, _, value)| {
            let (name, labels) = key.key().clone().into_parts();
            let labels: Vec<(String, String)> = labels
                .into_iter()
                .map(|l| (l.key().to_owned(), l.value().to_owned()))
                .collect();
            if !labels
                .iter()
                .any(|(k, v)| k == "service.id" && v == service)
            {
                return None;
            }
            let mut rest: Vec<_> = labels
                .into_iter()
                .filter(|(k, _)| k != "service.id")
                .collect();
            rest.sort();
            match value {
                DebugValue::Counter(n) => Some(((name.as_str().to_owned(), rest), n)),
                _ => None,
            }
        })
        .collect()
}

/// A config directory of `files` under the temp dir.
fn dir(name: &str, files: &[(&str, &str)]) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("lk-config-{name}-{}", common::uuid_like()));
    std::fs::create_dir_all(&dir).unwrap();
    for (file, text) in files {
        std::fs::write(dir.join(file), text).unwrap();
    }
    dir
}

/// The handler of these tests: `bad` fails as invalid, `flaky` fails once
/// (transiently), the rest pass.
fn handler()
-> impl tower::Service<Record, Response = (), Error = BoxError, Future: Send> + Clone + Send + Sync
{
    let flaky = Arc::new(AtomicU32::new(0));
    service_fn(move |record: Record| {
        let flaky = flaky.clone();
        async move {
            match record.value_str()? {
                "bad" => Err(Error::new(ErrorKind::Invalid, "bad order").into()),
                "flaky" if flaky.fetch_add(1, Ordering::SeqCst) == 0 => {
                    Err(Error::transient("try again").into())
                }
                _ => Ok(()),
            }
        }
    })
}

const CANONICAL: &str = "
handlers:
  - catch-panic
  - metrics
  - propagate
  - trace
  - audit
  - dead-letter
  - retry
  - orders
chains:
  default: [catch-panic, metrics, propagate, trace, audit, dead-letter, retry]
topics:
  - topic: ${TOPIC}
    exec: [default, orders]
";

fn consumer_yml() -> &'static str {
    "
properties:
  bootstrap.servers: ${BOOTSTRAP}
  group.id: ${GROUP:from-files}
topic: ${TOPIC}
deadLetterTopicExt: .files.dlq
auditTarget: topic
auditTopic: ${AUDIT_TOPIC}
# keys of the Java sidecar, accepted and ignored:
keyFormat: jsonschema
waitPeriod: 100
"
}

fn env(pairs: &[(&str, String)]) -> impl Fn(&str) -> Option<String> + use<> {
    let map: HashMap<String, String> = pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), v.clone()))
        .collect();
    move |name| map.get(name).cloned()
}

/// (offset, status, dlq kind) of each audit entry in `topic`.
fn audit_trail(bootstrap: &str, topic: &str, n: usize) -> Vec<(i64, String, Option<String>)> {
    let mut trail: Vec<_> = common::read_topic(
        bootstrap,
        topic,
        1,
        n,
        "read_uncommitted",
        Duration::from_secs(10),
    )
    .iter()
    .map(|r| {
        let entry: serde_json::Value = r.json().unwrap();
        (
            entry["offset"].as_i64().unwrap(),
            entry["status"].as_str().unwrap_or_default().to_owned(),
            entry["error"]
                .as_str()
                .map(|e| e.split(':').next().unwrap_or_default().to_owned()),
        )
    })
    .collect();
    trail.sort();
    trail
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_chain_from_files_behaves_as_the_same_chain_in_code() {
    snapshotter();
    let values = ["ok", "bad", "flaky", "ok", "bad"];
    let kafka = common::seeded("cfg-orders", 1, values.len(), |i| {
        (format!("k{i}"), values[i].into())
    })
    .await;
    let bootstrap = kafka.bootstrap_servers().to_owned();
    for topic in [
        "cfg-orders.code.dlq",
        "cfg-orders.files.dlq",
        "cfg-audit-code",
        "cfg-audit-files",
    ] {
        kafka.create_topic(topic, 1).unwrap();
    }
    let producer = Producer::builder()
        .bootstrap_servers(&bootstrap)
        .build()
        .unwrap();

    // In code.
    let in_code = ServiceBuilder::new()
        .catch_record_panic()
        .metrics_consume("from-code")
        .propagate_consume()
        .trace_consume()
        .audit(AuditLayer::consumer(
            "from-code",
            KafkaSink::new(producer.clone(), "cfg-audit-code"),
        ))
        .layer(
            light_kafka::layers::dead_letter::DeadLetterLayer::new(producer.clone())
                .suffix(".code.dlq"),
        )
        .retry_records(RetryPolicy::new(3))
        .service(handler());
    let runtime = common::consumer(&kafka, "from-code", "cfg-orders")
        .build()
        .unwrap();
    assert!(common::serve_until_committed(runtime, in_code, 5).await);

    // From files.
    let config_dir = dir(
        "same",
        &[
            ("handler.yml", CANONICAL),
            ("kafka-consumer.yml", consumer_yml()),
            ("metrics.yml", "serviceId: ${GROUP}\n"),
            (
                "audit.yml",
                "enabled: true\nauditOnError: false\nstatusCode: true\n",
            ),
            ("retry.yml", "maxAttempts: 3\n"),
        ],
    );
    let config = Config::load_with(
        &config_dir,
        env(&[
            ("BOOTSTRAP", bootstrap.clone()),
            ("TOPIC", "cfg-orders".into()),
            ("GROUP", "from-files".into()),
            ("AUDIT_TOPIC", "cfg-audit-files".into()),
        ]),
    )
    .unwrap();
    assert_eq!(config.service_id(), "from-files");
    assert_eq!(
        config.consumer.as_ref().unwrap().ignored_keys(),
        ["keyFormat", "waitPeriod"]
    );
    let chains = config
        .chains(&Registry::new().handler("orders", handler()))
        .unwrap();
    let runtime = config
        .consumer_builder()
        .unwrap()
        .set("fetch.wait.max.ms", "10")
        .commit_interval(Duration::from_millis(50))
        .build()
        .unwrap();
    assert!(common::serve_until_committed(runtime, chains, 5).await);

    // Same dead letters.
    let dead = |topic: &str| {
        let mut d: Vec<_> = common::read_topic_exactly(&bootstrap, topic, 1, 2)
            .iter()
            .map(|r| {
                (
                    r.key_str().unwrap().to_owned(),
                    r.header_str(names::DLQ_ERROR_KIND).unwrap().to_owned(),
                    r.header_str(names::DLQ_ORIGINAL_OFFSET).unwrap().to_owned(),
                )
            })
            .collect();
        d.sort();
        d
    };
    assert_eq!(dead("cfg-orders.code.dlq"), dead("cfg-orders.files.dlq"));
    // Same audit entries.
    let code = audit_trail(&bootstrap, "cfg-audit-code", 5);
    assert_eq!(code.len(), 5);
    assert_eq!(code, audit_trail(&bootstrap, "cfg-audit-files", 5));
    // Same metrics.
    assert!(!counters("from-code").is_empty());
    assert_eq!(counters("from-code"), counters("from-files"));
}

/// A chain of `layers` around the test handler, from files.
fn chain_of(
    files: &[(&str, &str)],
    bootstrap: &str,
    registry: Registry,
) -> light_kafka::config::Chains {
    let dir = dir("flags", files);
    let config = Config::load_with(&dir, env(&[("BOOTSTRAP", bootstrap.to_owned())])).unwrap();
    config
        .chains(&registry.handler("orders", handler()))
        .unwrap()
}

const FLAGS_HANDLER: &str = "
handlers: [catch-panic, metrics, audit, dead-letter, retry, jwt, orders]
defaultHandlers: [catch-panic, metrics, audit, dead-letter, retry, jwt, orders]
";

#[tokio::test]
async fn each_layer_is_left_out_when_its_file_disables_it() {
    let kafka = common::embedded_only();
    kafka.create_topic("flags", 1).unwrap();
    kafka.create_topic("flags.dlq", 1).unwrap();
    kafka.create_topic("flags-audit", 1).unwrap();
    let key = std::fs::canonicalize("tests/fixtures/jwt/key-a.pub.pem").unwrap();
    let security_on = format!("jwt:\n  keys:\n    key-a: {}\n", key.display());
    let consumer = "properties:\n  bootstrap.servers: ${BOOTSTRAP}\ntopic: flags\nauditTarget: topic\nauditTopic: flags-audit\n";
    let all_on = |extra: &[(&'static str, &'static str)]| {
        let mut files = vec![
            ("handler.yml", FLAGS_HANDLER),
            ("kafka-consumer.yml", consumer),
            (
                "security.yml",
                Box::leak(security_on.clone().into_boxed_str()) as &str,
            ),
            ("metrics.yml", "serviceId: flags-on\n"),
        ];
        files.extend_from_slice(extra);
        files
    };
    let kind = |r: Result<(), BoxError>| r.err().map(|e| light_kafka::error::classify(e.as_ref()));
    let unsigned = || testkit::record("flags").value("ok").build();

    // Everything on: an unsigned record is unauthorized → dead-lettered (settled).
    let mut on = chain_of(&all_on(&[]), kafka.bootstrap_servers(), Registry::new());
    assert_eq!(kind(testkit::call(&mut on, unsigned()).await), None);
    let dead = common::read_topic_exactly(kafka.bootstrap_servers(), "flags.dlq", 1, 1);
    assert_eq!(
        dead[0].header_str(names::DLQ_ERROR_KIND),
        Some("unauthorized")
    );

    // JWT off: it passes.
    let mut jwt_off = chain_of(
        &all_on(&[("security.yml", "enableVerifyJwt: false\n")]),
        kafka.bootstrap_servers(),
        Registry::new(),
    );
    assert_eq!(kind(testkit::call(&mut jwt_off, unsigned()).await), None);
    common::read_topic_exactly(kafka.bootstrap_servers(), "flags.dlq", 1, 1);

    // Dead letters off (and JWT off): a poison record fails the call.
    let off = [
        ("security.yml", "enableVerifyJwt: false\n"),
        (
            "kafka-consumer.yml",
            "properties:\n  bootstrap.servers: ${BOOTSTRAP}\ndeadLetterEnabled: false\n",
        ),
    ];
    let mut dlq_off = chain_of(&all_on(&off), kafka.bootstrap_servers(), Registry::new());
    let bad = testkit::record("flags").value("bad").build();
    assert_eq!(
        kind(testkit::call(&mut dlq_off, bad).await),
        Some(ErrorKind::Invalid)
    );

    // Retry off: a record failing once fails; on: it passes.
    let mut retry_on = chain_of(&all_on(&off), kafka.bootstrap_servers(), Registry::new());
    assert_eq!(
        kind(
            testkit::call(
                &mut retry_on,
                testkit::record("flags").value("flaky").build()
            )
            .await
        ),
        None
    );
    let mut retry_off = chain_of(
        &all_on(&[off[0], off[1], ("retry.yml", "enabled: false\n")]),
        kafka.bootstrap_servers(),
        Registry::new(),
    );
    let flaky = testkit::record("flags").value("flaky").build();
    assert_eq!(
        kind(testkit::call(&mut retry_off, flaky).await),
        Some(ErrorKind::Transient)
    );

    // Metrics off: nothing counted under its service id.
    snapshotter();
    let mut metrics_off = chain_of(
        &all_on(&[
            off[0],
            ("metrics.yml", "enabled: false\nserviceId: flags-off\n"),
        ]),
        kafka.bootstrap_servers(),
        Registry::new(),
    );
    testkit::call(&mut metrics_off, unsigned()).await.unwrap();
    assert!(counters("flags-off").is_empty());
    let mut metrics_on = chain_of(
        &all_on(&[off[0]]),
        kafka.bootstrap_servers(),
        Registry::new(),
    );
    testkit::call(&mut metrics_on, unsigned()).await.unwrap();
    assert!(!counters("flags-on").is_empty());

    // Audit off, through a registered sink: no entry.
    let entries = Arc::new(Mutex::new(0));
    let counted = entries.clone();
    let audit = AuditLayer::consumer("x", move |_| *counted.lock().unwrap() += 1);
    let registry = || Registry::new().layer("my-audit", audit.clone());
    let with_mine = "handlers: [my-audit, orders]\ndefaultHandlers: [my-audit, orders]\n";
    let mut mine = chain_of(
        &[("handler.yml", with_mine)],
        kafka.bootstrap_servers(),
        registry(),
    );
    testkit::call(&mut mine, unsigned()).await.unwrap();
    assert_eq!(
        *entries.lock().unwrap(),
        1,
        "a registered layer runs where the config places it"
    );
    let audited = || {
        common::read_topic(
            kafka.bootstrap_servers(),
            "flags-audit",
            1,
            usize::MAX,
            "read_uncommitted",
            Duration::from_secs(2),
        )
        .len()
    };
    tokio::time::sleep(Duration::from_millis(500)).await;
    let before = audited();
    assert!(before > 0, "with audit on, entries reach the audit topic");
    let mut audit_off = chain_of(
        &all_on(&[off[0], ("audit.yml", "enabled: false\n")]),
        kafka.bootstrap_servers(),
        Registry::new(),
    );
    for _ in 0..3 {
        testkit::call(&mut audit_off, unsigned()).await.unwrap();
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        audited(),
        before,
        "audit.yml `enabled: false` leaves the layer out"
    );
}

#[tokio::test]
async fn a_registered_layer_runs_at_its_place_in_the_chain() {
    // `stamp` sees the correlation id the propagate layer generated only when
    // it runs inside it.
    let seen = Arc::new(Mutex::new(Vec::new()));
    let saw = seen.clone();
    let stamp = correlation_probe(saw);
    for (order, expected) in [
        ("[propagate, stamp, orders]", true),
        ("[stamp, propagate, orders]", false),
    ] {
        let handler = format!("handlers: [propagate, stamp, orders]\ndefaultHandlers: {order}\n");
        let dir = dir("registered", &[("handler.yml", &handler)]);
        let config = Config::load(&dir).unwrap();
        let registry = Registry::new()
            .layer("stamp", stamp.clone())
            .handler("orders", handler_ok());
        let mut chains = config.chains(&registry).unwrap();
        testkit::call(&mut chains, testkit::record("t").value("ok").build())
            .await
            .unwrap();
        assert_eq!(seen.lock().unwrap().pop(), Some(expected), "{order}");
    }
}

/// A registered layer that records whether the record reaching it had a
/// generated correlation id in its context.
fn correlation_probe(
    seen: Arc<Mutex<Vec<bool>>>,
) -> impl tower::Layer<
    light_kafka::builder::BoxRecordService,
    Service = tower::util::MapRequest<
        light_kafka::builder::BoxRecordService,
        impl FnMut(Record) -> Record + Clone + Send + Sync,
    >,
> + Clone
+ Send
+ Sync
+ 'static {
    tower::layer::layer_fn(move |inner: light_kafka::builder::BoxRecordService| {
        let seen = seen.clone();
        tower::util::MapRequest::new(inner, move |record: Record| {
            let id = light_kafka::context::RecordContext::get(&record)
                .and_then(|c| c.fields().correlation_id);
            seen.lock().unwrap().push(id.is_some());
            record
        })
    })
}

fn handler_ok()
-> impl tower::Service<Record, Response = (), Error = BoxError, Future: Send> + Clone + Send + Sync
{
    service_fn(|_: Record| async { Ok::<_, BoxError>(()) })
}

#[test]
fn values_come_from_the_environment_then_values_yml_then_the_default() {
    let handler = "handlers: [retry, orders]\ndefaultHandlers: [retry, orders]\n";
    let files = [
        ("handler.yml", handler),
        (
            "values.yml",
            "kafka-consumer.group.id: from-values\nretries: 5\n",
        ),
        (
            "kafka-consumer.yml",
            "properties:\n  group.id: ${kafka-consumer.group.id:from-default}\n  client.id: ${kafka-consumer.client.id:from-default}\n  bootstrap.servers: ${BOOT}\n",
        ),
        ("retry.yml", "maxAttempts: ${retries:1}\n"),
    ];
    let dir = dir("values", &files);
    // From values.yml and defaults; `${BOOT}` from the environment.
    let config = Config::load_with(&dir, env(&[("BOOT", "127.0.0.1:9092".into())])).unwrap();
    let props = &config.consumer.as_ref().unwrap().properties;
    let get = |k: &str| props.0.get(k).unwrap().to_string();
    assert_eq!(get("group.id"), "from-values");
    assert_eq!(get("client.id"), "from-default");
    assert_eq!(get("bootstrap.servers"), "127.0.0.1:9092");
    assert_eq!(config.retry.as_ref().unwrap().max_attempts, Some(5));
    // The environment wins, under its own name or upper-cased with `_`.
    let config = Config::load_with(
        &dir,
        env(&[
            ("BOOT", "b:1".into()),
            ("KAFKA_CONSUMER_GROUP_ID", "from-env".into()),
        ]),
    )
    .unwrap();
    assert_eq!(
        config.consumer.as_ref().unwrap().properties.0["group.id"].to_string(),
        "from-env"
    );
    // Secrets never show in Debug output.
    let secret = dir_with_secret();
    let config = Config::load_with(&secret, env(&[("PASSWORD", "hunter2".into())])).unwrap();
    assert!(!format!("{config:?}").contains("hunter2"));
}

fn dir_with_secret() -> PathBuf {
    dir(
        "secret",
        &[
            (
                "handler.yml",
                "handlers: [orders]\ndefaultHandlers: [orders]\n",
            ),
            (
                "kafka-consumer.yml",
                "properties:\n  sasl.password: ${PASSWORD}\n",
            ),
        ],
    )
}

/// Loads a directory with `files` and builds its chains; the error.
fn bad(files: &[(&str, &str)]) -> light_kafka::config::ConfigError {
    let dir = dir("bad", files);
    let registry = Registry::new().handler("orders", handler_ok());
    let result = Config::load_with(&dir, env(&[("PASSWORD", "hunter2".into())]))
        .and_then(|c| c.chains(&registry).map(|_| ()));
    let error = result.unwrap_err();
    assert!(!error.to_string().contains("hunter2"), "{error}");
    error
}

fn at(error: &light_kafka::config::ConfigError) -> (String, u64, u64, ConfigErrorKind) {
    let file = error
        .file()
        .file_name()
        .unwrap()
        .to_string_lossy()
        .into_owned();
    (file, error.line(), error.column(), error.kind())
}

#[test]
fn every_bad_config_names_its_file_line_and_column() {
    use ConfigErrorKind::*;
    let ok_handler = "handlers: [orders]\ndefaultHandlers: [orders]\n";
    type Case<'a> = (
        &'a str,
        Vec<(&'a str, &'a str)>,
        (&'a str, u64, u64, ConfigErrorKind),
    );
    let cases: Vec<Case<'_>> = vec![
        (
            "unknown key",
            vec![
                ("handler.yml", ok_handler),
                ("audit.yml", "enabled: true\nmaskk: [a]\n"),
            ],
            ("audit.yml", 2, 1, UnknownKey),
        ),
        (
            "wrong type",
            vec![
                ("handler.yml", ok_handler),
                ("metrics.yml", "serviceId: s\nenabled: sometimes\n"),
            ],
            ("metrics.yml", 2, 10, WrongType),
        ),
        (
            "wrong type from a secret variable",
            vec![
                ("handler.yml", ok_handler),
                ("trace.yml", "enabled: ${PASSWORD}\n"),
            ],
            ("trace.yml", 1, 10, WrongType),
        ),
        (
            "missing variable",
            vec![
                ("handler.yml", ok_handler),
                ("kafka-consumer.yml", "properties:\n  group.id: x-${NOPE}\n"),
            ],
            ("kafka-consumer.yml", 2, 15, MissingVariable),
        ),
        (
            "unknown handler name",
            vec![(
                "handler.yml",
                "handlers:\n  - metrics\n  - metrix\n  - orders\ndefaultHandlers: [orders]\n",
            )],
            ("handler.yml", 3, 5, UnknownHandler),
        ),
        (
            "empty chain",
            vec![(
                "handler.yml",
                "handlers: [metrics, orders]\nchains:\n  base: []\ndefaultHandlers: [orders]\n",
            )],
            ("handler.yml", 3, 9, EmptyChain),
        ),
        (
            "undeclared name in a chain",
            vec![(
                "handler.yml",
                "handlers: [metrics, orders]\nchains:\n  base: [metrics, trace]\ndefaultHandlers: [base, orders]\n",
            )],
            ("handler.yml", 3, 19, UnknownHandler),
        ),
        (
            "exec ending with a chain",
            vec![(
                "handler.yml",
                "handlers: [metrics, orders]\nchains:\n  base: [metrics]\ndefaultHandlers: [metrics, base]\n",
            )],
            ("handler.yml", 4, 28, Dangling),
        ),
        (
            "a handler inside a chain",
            vec![(
                "handler.yml",
                "handlers: [metrics, orders]\nchains:\n  base: [metrics, orders]\ndefaultHandlers: [base, orders]\n",
            )],
            ("handler.yml", 3, 19, Dangling),
        ),
        (
            "retry outside dead-letter",
            vec![(
                "handler.yml",
                "handlers: [retry, dead-letter, orders]\ntopics:\n  - topic: t\n    exec: [retry, dead-letter, orders]\n",
            )],
            ("handler.yml", 4, 12, Order),
        ),
        (
            "a layer twice through a chain",
            vec![(
                "handler.yml",
                "handlers: [metrics, orders]\nchains:\n  base: [metrics]\ndefaultHandlers: [base, metrics, orders]\n",
            )],
            ("handler.yml", 4, 25, Order),
        ),
        (
            "a bad pattern",
            vec![(
                "handler.yml",
                "handlers: [orders]\ntopics:\n  - pattern: \"orders-(\"\n    exec: [orders]\n",
            )],
            ("handler.yml", 3, 14, Invalid),
        ),
        (
            "unknown key in handler.yml",
            vec![(
                "handler.yml",
                "handlers: [orders]\ndefaultHandler: [orders]\n",
            )],
            ("handler.yml", 2, 1, UnknownKey),
        ),
    ];
    for (what, files, expected) in cases {
        let error = bad(&files);
        let (file, line, column, kind) = at(&error);
        assert_eq!(
            (file.as_str(), line, column, kind),
            expected,
            "{what}: {error}"
        );
        assert!(
            error
                .to_string()
                .starts_with(&format!("{}:{line}:{column}: ", error.file().display())),
            "{error}"
        );
    }
}

#[test]
fn a_folder_without_handler_yml_builds_the_default_chain_around_a_default_handler() {
    // Java light-kafka folders have no handler.yml: they load, and the
    // default chain needs a handler (registered as `default`, or the HTTP
    // backend of kafka-consumer.yml's `backendApiHost`).
    let dir = dir("empty", &[]);
    let config = Config::load(&dir).unwrap();
    assert!(!config.has_handler_file());
    assert_eq!(config.default_layers(), ["catch-panic"]);
    let error = config.chains(&Registry::new()).unwrap_err();
    assert_eq!(error.kind(), ConfigErrorKind::UnknownHandler);
    assert!(Path::new(error.file()).ends_with("handler.yml"));
    let chains = config
        .chains(&Registry::new().handler(light_kafka::config::DEFAULT_HANDLER, handler_ok()))
        .unwrap();
    assert!(chains.covers("any-topic"));
}

/// Counts the spans opened while it is the default subscriber.
struct SpanCounter(Arc<AtomicU32>);

impl<S: tracing::Subscriber> tracing_subscriber::Layer<S> for SpanCounter {
    fn on_new_span(
        &self,
        _: &tracing::span::Attributes<'_>,
        _: &tracing::span::Id,
        _: tracing_subscriber::layer::Context<'_, S>,
    ) {
        self.0.fetch_add(1, Ordering::SeqCst);
    }
}

#[tokio::test(flavor = "current_thread")]
async fn trace_correlation_and_schema_follow_their_files() {
    use tracing_subscriber::layer::SubscriberExt;

    let spans = Arc::new(AtomicU32::new(0));
    let _default = tracing::subscriber::set_default(
        tracing_subscriber::registry().with(SpanCounter(spans.clone())),
    );
    let generated = Arc::new(Mutex::new(Vec::new()));
    let saw = generated.clone();
    let probe = correlation_probe(saw);
    let schema = r#"{"type": "object", "required": ["quantity"], "properties": {"quantity": {"type": "integer"}}}"#;
    let handler = "handlers: [trace, propagate, probe, schema, orders]\ndefaultHandlers: [trace, propagate, probe, schema, orders]\n";
    let schema_yml = "schemas:\n  orders: order.json\n";
    let run = |extra: &[(&'static str, &'static str)]| {
        let mut files = vec![
            ("handler.yml", handler),
            ("order.json", schema),
            ("schema.yml", schema_yml),
        ];
        files.extend_from_slice(extra);
        let dir = dir("switches", &files);
        Config::load(&dir)
            .unwrap()
            .chains(
                &Registry::new()
                    .layer("probe", probe.clone())
                    .handler("orders", handler_ok()),
            )
            .unwrap()
    };
    let invalid = || {
        testkit::record("orders")
            .value(r#"{"quantity": "two"}"#)
            .build()
    };
    let kind = |r: Result<(), BoxError>| r.err().map(|e| light_kafka::error::classify(e.as_ref()));

    let mut on = run(&[]);
    assert_eq!(
        kind(testkit::call(&mut on, invalid()).await),
        Some(ErrorKind::Invalid)
    );
    assert_eq!(
        generated.lock().unwrap().pop(),
        Some(true),
        "propagate generated an id"
    );
    assert!(spans.load(Ordering::SeqCst) >= 1, "trace opened a span");

    let off = [
        ("trace.yml", "enabled: false\n"),
        ("correlation.yml", "enabled: false\n"),
        (
            "schema.yml",
            "enabled: false\nschemas:\n  orders: order.json\n",
        ),
    ];
    let mut all_off = run(&off);
    let before = spans.load(Ordering::SeqCst);
    assert_eq!(
        kind(testkit::call(&mut all_off, invalid()).await),
        None,
        "schema off: the record passes"
    );
    assert_eq!(
        generated.lock().unwrap().pop(),
        Some(false),
        "propagate off: no id generated"
    );
    assert_eq!(spans.load(Ordering::SeqCst), before, "trace off: no span");
}
