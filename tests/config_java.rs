//! Java light-kafka folders: `${VAR}` keeps types, `.yml`/`.yaml`, keys of
//! the Java files accepted (typos still caught), Java client properties
//! translated and what librdkafka rejects reported with positions,
//! duplicate routes.

use std::path::PathBuf;
use std::sync::atomic::{AtomicU32, Ordering};

use light_kafka::BoxError;
use light_kafka::config::{Config, ConfigError, ConfigErrorKind, Registry};
use light_kafka::record::Record;
use tower::service_fn;

fn dir(name: &str, files: &[(&str, &str)]) -> PathBuf {
    static N: AtomicU32 = AtomicU32::new(0);
    let dir = std::env::temp_dir().join(format!(
        "lk-config-java-{name}-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    ));
    std::fs::create_dir_all(&dir).unwrap();
    for (file, text) in files {
        std::fs::write(dir.join(file), text).unwrap();
    }
    dir
}

fn env(pairs: &'static [(&'static str, &'static str)]) -> impl Fn(&str) -> Option<String> {
    move |name| {
        pairs
            .iter()
            .find(|(k, _)| *k == name)
            .map(|(_, v)| (*v).to_owned())
    }
}

fn consumer_prop(config: &Config, key: &str) -> Option<String> {
    config
        .consumer
        .as_ref()?
        .properties
        .0
        .get(key)
        .map(ToString::to_string)
}

fn position(error: &ConfigError) -> (String, u64, u64) {
    let file = error
        .file()
        .file_name()
        .unwrap()
        .to_string_lossy()
        .into_owned();
    (file, error.line(), error.column())
}

const ENV: &[(&str, &str)] = &[
    ("GROUP", "007"),
    ("CLIENT", "yes"),
    ("SERVICE", "svc #1"),
    ("RACK", "0x1F"),
    ("ODD", "a: b, \"y"),
    ("RETRIES", "5"),
    ("NOT_A_NUMBER", "five"),
];

#[test]
fn a_whole_scalar_from_the_environment_is_the_text_it_holds() {
    let dir = dir(
        "types",
        &[
            (
                "kafka-consumer.yml",
                "properties:\n  group.id: ${GROUP}\n  client.id: ${CLIENT}\n  client.rack: ${RACK}\ntopic: ${ODD}\nbackendApiPath: /x/${SERVICE}/y\n",
            ),
            ("metrics.yml", "serviceId: ${SERVICE}\n"),
        ],
    );
    let config = Config::load_with(&dir, env(ENV)).unwrap();
    assert_eq!(consumer_prop(&config, "group.id").as_deref(), Some("007"));
    assert_eq!(consumer_prop(&config, "client.id").as_deref(), Some("yes"));
    assert_eq!(
        consumer_prop(&config, "client.rack").as_deref(),
        Some("0x1F")
    );
    let consumer = config.consumer.as_ref().unwrap();
    assert_eq!(consumer.topic.as_deref(), Some("a: b, \"y"));
    // Inside a longer text: interpolated, `#` included.
    assert_eq!(consumer.backend_api_path.as_deref(), Some("/x/svc #1/y"));
    assert_eq!(config.service_id(), "svc #1");
}

#[test]
fn plain_scalars_written_in_the_file_stay_as_written() {
    let dir = dir(
        "plain",
        &[(
            "kafka-consumer.yml",
            "properties:\n  group.id: 007\n  client.rack: 0x1F\n  enable.auto.commit: false\n",
        )],
    );
    let config = Config::load_with(&dir, env(ENV)).unwrap();
    assert_eq!(consumer_prop(&config, "group.id").as_deref(), Some("007"));
    assert_eq!(
        consumer_prop(&config, "client.rack").as_deref(),
        Some("0x1F")
    );
    assert_eq!(
        consumer_prop(&config, "enable.auto.commit").as_deref(),
        Some("false")
    );
}

#[test]
fn number_and_flag_fields_parse_text_and_say_where_when_it_does_not_parse() {
    let ok = dir(
        "numbers",
        &[
            (
                "kafka-consumer.yml",
                "maxRetries: ${RETRIES}\ndeadLetterEnabled: ${FLAG:false}\n",
            ),
            ("retry.yml", "maxAttempts: ${RETRIES}\n"),
        ],
    );
    let config = Config::load_with(&ok, env(ENV)).unwrap();
    assert_eq!(config.retry.as_ref().unwrap().max_attempts, Some(5));
    let consumer = config.consumer.as_ref().unwrap();
    assert_eq!(consumer.max_retries, Some(5));
    assert!(!consumer.dead_letter_enabled);
    let bad = dir(
        "nan",
        &[(
            "retry.yml",
            "enabled: true\nmaxAttempts:   ${NOT_A_NUMBER}\n",
        )],
    );
    let error = Config::load_with(&bad, env(ENV)).unwrap_err();
    assert_eq!(error.kind(), ConfigErrorKind::WrongType, "{error}");
    assert_eq!(position(&error), ("retry.yml".into(), 2, 16));
    assert!(!error.to_string().contains("five"), "{error}");
}

#[test]
fn values_yml_keeps_yaml_types_and_a_list_in_a_scalar_place_is_an_error() {
    let values = "retries: 4\nhandler.handlers: [retry, orders]\nhandler.chains:\n  base: [retry]\nservice.singletons:\n  - a.B:\n      - a.C\nname: 007x\n";
    let ok = dir(
        "values",
        &[
            ("values.yml", values),
            ("retry.yml", "maxAttempts: ${retries}\n"),
            (
                "handler.yml",
                "handlers: ${handler.handlers}\nchains: ${handler.chains}\ndefaultHandlers: [base, orders]\n",
            ),
            ("metrics.yml", "serviceId: ${name}\n"),
        ],
    );
    let config = Config::load_with(&ok, |_| None).unwrap();
    assert_eq!(config.retry.as_ref().unwrap().max_attempts, Some(4));
    assert_eq!(config.handler.handlers.len(), 2);
    assert_eq!(config.service_id(), "007x");
    let registry = Registry::new().handler(
        "orders",
        service_fn(|_: Record| async { Ok::<_, BoxError>(()) }),
    );
    assert!(config.chains(&registry).unwrap().covers("t"));
    // A list where one value goes.
    let bad = dir(
        "values-list",
        &[
            ("values.yml", values),
            (
                "metrics.yml",
                "enabled: true\nserviceId:  ${handler.handlers}\n",
            ),
        ],
    );
    let error = Config::load_with(&bad, |_| None).unwrap_err();
    assert_eq!(error.kind(), ConfigErrorKind::WrongType, "{error}");
    assert_eq!(position(&error), ("metrics.yml".into(), 2, 13));
    assert!(error.message().contains("${handler.handlers}"), "{error}");
    // ... or inside a text.
    let bad = dir(
        "values-text",
        &[
            ("values.yml", values),
            ("metrics.yml", "serviceId: x-${handler.chains}\n"),
        ],
    );
    let error = Config::load_with(&bad, |_| None).unwrap_err();
    assert_eq!(error.kind(), ConfigErrorKind::WrongType, "{error}");
    assert_eq!(position(&error), ("metrics.yml".into(), 1, 14));
}

#[test]
fn positions_after_a_substitution_are_those_of_the_file() {
    let dir = dir(
        "positions",
        &[
            (
                "audit.yml",
                "headers: [${SERVICE}, \"${ODD}\"]   \nmaskk: x\n",
            ),
            ("metrics.yml", "serviceId: ${ODD}  ${ODD} \nenabled: nope\n"),
        ],
    );
    let error = Config::load_with(&dir, env(ENV)).unwrap_err();
    assert_eq!(error.kind(), ConfigErrorKind::UnknownKey, "{error}");
    assert_eq!(position(&error), ("audit.yml".into(), 2, 1));
    std::fs::remove_file(dir.join("audit.yml")).unwrap();
    let error = Config::load_with(&dir, env(ENV)).unwrap_err();
    assert_eq!(position(&error), ("metrics.yml".into(), 2, 10), "{error}");
}

#[test]
fn yml_and_yaml_both_load_and_both_at_once_is_an_error_naming_both() {
    let dir = dir(
        "ext",
        &[
            ("kafka-consumer.yaml", "topic: a\n"),
            ("retry.yml", "maxAttempts: 2\n"),
        ],
    );
    let config = Config::load_with(&dir, |_| None).unwrap();
    assert_eq!(
        config.consumer.as_ref().unwrap().topic.as_deref(),
        Some("a")
    );
    std::fs::write(dir.join("kafka-consumer.yml"), "topic: b\n").unwrap();
    let error = Config::load_with(&dir, |_| None).unwrap_err();
    assert_eq!(error.kind(), ConfigErrorKind::Invalid);
    let text = error.to_string();
    assert!(
        text.contains("kafka-consumer.yml") && text.contains("kafka-consumer.yaml"),
        "{text}"
    );
}

#[test]
fn a_typo_in_a_key_or_a_file_name_is_still_an_error() {
    let dir1 = dir(
        "typo",
        &[("kafka-consumer.yml", "topic: a\ndeadLetterEnabeld: true\n")],
    );
    let error = Config::load_with(&dir1, |_| None).unwrap_err();
    assert_eq!(error.kind(), ConfigErrorKind::UnknownKey);
    assert_eq!(position(&error), ("kafka-consumer.yml".into(), 2, 1));
    let dir2 = dir("typo-file", &[("kafka-consumr.yml", "topic: a\n")]);
    let error = Config::load_with(&dir2, |_| None).unwrap_err();
    assert!(error.message().contains("kafka-consumer.yml"), "{error}");
    // Files of other light-4j modules are listed, not errors.
    let dir3 = dir(
        "java-files",
        &[
            ("server.yml", "httpPort: 8080\n"),
            ("cors.yml", "enabled: true\n"),
        ],
    );
    let config = Config::load_with(&dir3, |_| None).unwrap();
    let files: Vec<_> = config.ignored().iter().map(|i| i.file.as_str()).collect();
    assert_eq!(files, ["cors.yml", "server.yml"]);
}

#[test]
fn properties_librdkafka_rejects_are_listed_all_at_once_with_positions() {
    let dir = dir(
        "rejected",
        &[(
            "kafka-consumer.yml",
            "properties:\n  bootstrap.servers: b:9092\n  fetch.max.wait.msec: 10\n  acks: maybe\n  sasl.pasword: ${ODD}\n",
        )],
    );
    let error = Config::load_with(&dir, env(ENV)).unwrap_err();
    assert_eq!(error.kind(), ConfigErrorKind::Invalid);
    assert_eq!(position(&error), ("kafka-consumer.yml".into(), 3, 24));
    let text = error.to_string();
    assert!(text.contains("3 properties"), "{text}");
    for expected in [
        "kafka-consumer.yml:3:24: `fetch.max.wait.msec`: librdkafka has no such property",
        "kafka-consumer.yml:4:9: `acks`: librdkafka rejects its value",
        "kafka-consumer.yml:5:17: `sasl.pasword`: librdkafka has no such property",
    ] {
        assert!(text.contains(expected), "{expected} in {text}");
    }
    assert!(!text.contains("maybe") && !text.contains("a: b"), "{text}");
}

#[test]
fn jaas_lines_and_split_keys_become_librdkafka_sasl_settings() {
    let dir = dir(
        "jaas",
        &[
            (
                "kafka-consumer.yml",
                "properties:\n  security.protocol: SASL_PLAINTEXT\n  sasl.jaas.config: org.apache.kafka.common.security.plain.PlainLoginModule required username=\"alice\" password=\"${PW:p\\\"w}\";\n",
            ),
            (
                "kafka-producer.yml",
                "properties:\n  security.protocol: SASL_PLAINTEXT\n  sasl.mechanism: PLAIN\n  sasl.jaas.config.module: org.apache.kafka.common.security.plain.PlainLoginModule\n  sasl.jaas.config.username: bob\n  sasl.jaas.config.password: pw2\n",
            ),
        ],
    );
    let config = Config::load_with(&dir, |_| None).unwrap();
    assert_eq!(
        consumer_prop(&config, "sasl.mechanism").as_deref(),
        Some("PLAIN")
    );
    assert_eq!(
        consumer_prop(&config, "sasl.username").as_deref(),
        Some("alice")
    );
    assert_eq!(
        consumer_prop(&config, "sasl.password").as_deref(),
        Some("p\"w")
    );
    assert!(consumer_prop(&config, "sasl.jaas.config").is_none());
    let producer = &config.producer.as_ref().unwrap().properties.0;
    assert_eq!(producer["sasl.username"].to_string(), "bob");
    assert!(!producer.contains_key("sasl.jaas.config.module"));
    // Another login module: an error that says what to do.
    let bad = self::dir(
        "kerberos",
        &[(
            "kafka-consumer.yml",
            "properties:\n  sasl.jaas.config: com.sun.security.auth.module.Krb5LoginModule required useKeyTab=true;\n",
        )],
    );
    let error = Config::load_with(&bad, |_| None).unwrap_err();
    assert!(
        error.message().contains("unsupported login module"),
        "{error}"
    );
    assert_eq!(position(&error), ("kafka-consumer.yml".into(), 2, 21));
}

#[test]
fn a_jks_store_is_an_error_saying_how_to_convert_it() {
    let dir = dir(
        "jks",
        &[(
            "kafka-consumer.yml",
            "properties:\n  security.protocol: SSL\n  ssl.truststore.location: /etc/kafka/client.truststore.jks\n  ssl.truststore.password: changeit\n",
        )],
    );
    let error = Config::load_with(&dir, |_| None).unwrap_err();
    let text = error.to_string();
    assert!(
        text.contains("kafka-consumer.yml:3:28: `ssl.truststore.location`: a JKS store"),
        "{text}"
    );
    assert!(
        text.contains("keytool -importkeystore -srcstoretype JKS -deststoretype PKCS12"),
        "{text}"
    );
    assert!(!text.contains("changeit"), "{text}");
}

#[test]
fn a_topic_routed_twice_or_a_path_and_method_twice_names_both_places() {
    let cases = [
        (
            "handlers: [orders]\ntopics:\n  - topic: t\n    exec: [orders]\n  - topic: t\n    method: GET\n    exec: [orders]\n",
            (5, 12),
            (3, 12),
        ),
        (
            "handlers: [orders]\npaths:\n  - path: /a\n    method: get\n    exec: [orders]\n  - path: /a\n    method: GET\n    exec: [orders]\ndefaultHandlers: [orders]\n",
            (6, 11),
            (3, 11),
        ),
    ];
    for (handler, (l2, c2), (l1, c1)) in cases {
        let dir = dir("dup", &[("handler.yml", handler)]);
        let error = Config::load_with(&dir, |_| None).unwrap_err();
        assert_eq!(error.kind(), ConfigErrorKind::Invalid);
        assert_eq!((error.line(), error.column()), (l2, c2), "{error}");
        let text = error.to_string();
        assert!(text.contains(&format!("handler.yml:{l1}:{c1}")), "{text}");
        assert!(text.contains(&format!("handler.yml:{l2}:{c2}")), "{text}");
    }
    // The same path with two methods is two routes.
    let dir = dir(
        "two-methods",
        &[(
            "handler.yml",
            "handlers: [orders]\npaths:\n  - path: /a\n    method: get\n    exec: [orders]\n  - path: /a\n    method: post\n    exec: [orders]\n",
        )],
    );
    let config = Config::load_with(&dir, |_| None).unwrap();
    assert_eq!(config.ignored().len(), 2);
}

#[test]
fn retries_of_kafka_consumer_yml_configure_the_retry_layer_and_rollback_is_checked() {
    let dir = dir(
        "retries",
        &[(
            "kafka-consumer.yml",
            "maxRetries: 2\nretryDelayMs: 10\nbatchRollbackThreshold: 15\n",
        )],
    );
    let config = Config::load_with(&dir, |_| None).unwrap();
    assert!(config.default_layers().contains(&"retry"));
    assert_eq!(
        config.consumer.as_ref().unwrap().batch_rollback_threshold,
        15
    );
    let bad = self::dir(
        "rollback",
        &[("kafka-consumer.yml", "batchRollbackThreshold: 130\n")],
    );
    let error = Config::load_with(&bad, |_| None).unwrap_err();
    assert_eq!(error.kind(), ConfigErrorKind::WrongType);
    assert_eq!(position(&error), ("kafka-consumer.yml".into(), 1, 25));
}

#[test]
fn kafka_streams_yml_configures_the_stream_processor() {
    let dir = dir(
        "streams",
        &[(
            "kafka-streams.yml",
            "properties:\n  bootstrap.servers: localhost:9092\n  application.id: ${kafka-streams.application.id:word-count}\n  state.dir: /tmp/wc\ncleanUp: false\n",
        )],
    );
    let config = Config::load_with(&dir, |_| None).unwrap();
    let builder = config.stream_processor_builder().unwrap();
    assert!(format!("{builder:?}").contains("word-count"));
    assert_eq!(
        config.streams.as_ref().unwrap().state_dir.as_deref(),
        Some("/tmp/wc")
    );
    let none = self::dir("no-streams", &[]);
    let error = Config::load_with(&none, |_| None)
        .unwrap()
        .stream_processor_builder()
        .unwrap_err();
    assert_eq!(error.kind(), ConfigErrorKind::Io);
}

#[test]
fn an_empty_jaas_password_is_an_error_at_its_place() {
    let dir = dir(
        "empty-jaas",
        &[(
            "kafka-consumer.yml",
            "properties:\n  sasl.jaas.config: org.apache.kafka.common.security.plain.PlainLoginModule required username=\"k\" password=\"${SECRET:}\";\n",
        )],
    );
    let error = Config::load_with(&dir, |_| None).unwrap_err();
    assert_eq!(position(&error), ("kafka-consumer.yml".into(), 2, 21));
    assert!(error.message().contains("empty"), "{error}");
}

#[test]
fn the_registry_settings_are_kept_apart_from_librdkafka() {
    let dir = dir(
        "registry",
        &[(
            "kafka-consumer.yml",
            "properties:\n  schema.registry.url: http://registry:8081\n  schema.registry.cache: 100\n",
        )],
    );
    let config = Config::load_with(&dir, |_| None).unwrap();
    assert_eq!(config.registry.url.as_deref(), Some("http://registry:8081"));
    assert!(consumer_prop(&config, "schema.registry.url").is_none());
    assert!(config.schema_registry().unwrap().is_some());
    let dir = self::dir(
        "registry-auth",
        &[(
            "kafka-consumer.yml",
            "properties:\n  schema.registry.url: https://registry:8081\n  basic.auth.user.info: u:${PW}\n",
        )],
    );
    let config = Config::load_with(&dir, |n| (n == "PW").then(|| "pw".to_owned())).unwrap();
    assert_eq!(
        config.registry.basic_auth_user_info.as_deref(),
        Some("u:pw")
    );
    assert!(!format!("{:?}", config.registry).contains("u:pw"));
    let registry = config.schema_registry().unwrap().expect("a registry");
    let shown = format!("{registry:?}");
    assert!(shown.contains("\"u\"") && !shown.contains("pw"), "{shown}");
    let dir = self::dir(
        "registry-inherit",
        &[(
            "kafka-consumer.yml",
            "properties:\n  schema.registry.url: https://registry:8081\n  basic.auth.credentials.source: SASL_INHERIT\n",
        )],
    );
    let config = Config::load_with(&dir, |_| None).unwrap();
    let error = config.schema_registry().unwrap_err();
    assert!(error.message().contains("USER_INFO"), "{error}");
}

#[test]
fn a_directory_that_does_not_exist_is_an_io_error() {
    let error = Config::load_with("/nonexistent/light-kafka/config", |_| None).unwrap_err();
    assert_eq!(error.kind(), ConfigErrorKind::Io);
}
