//! The corpus: folders written in the exact format of the config files
//! networknt's Java projects ship (light-kafka, kafka-sidecar, light-4j,
//! light-example-4j; see each folder's ORIGIN.md). Each loads, builds its
//! chains, and says what it ignored and why.

use std::path::{Path, PathBuf};

use light_kafka::BoxError;
use light_kafka::config::{Config, ConfigErrorKind, DEFAULT_HANDLER, Ignored, Registry};
use light_kafka::record::Record;
use tower::service_fn;

fn corpus(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/config-corpus")
        .join(name)
}

/// The folders' own values and defaults; from the environment only the
/// SASL secrets that a folder leaves empty on purpose (Confluent Cloud's API
/// secrets, the SCRAM password).
fn load(name: &str) -> Result<Config, light_kafka::config::ConfigError> {
    Config::load_with(corpus(name), |name| match name {
        "CCLOUD_API_SECRET" | "CCLOUD_SR_SECRET" | "KAFKA_CONSUMER_PASSWORD" => {
            Some("from-the-environment".to_owned())
        }
        _ => None,
    })
}

fn registry() -> Registry {
    let ok = service_fn(|_: Record| async { Ok::<_, BoxError>(()) });
    Registry::new()
        .handler(DEFAULT_HANDLER, ok)
        .handler("orders", ok)
}

fn has(ignored: &[Ignored], file: &str, key: &str) -> bool {
    ignored.iter().any(|i| i.file == file && i.key == key)
}

/// Loads `name`, builds its chains, checks what it ignored; returns the
/// config.
fn check(name: &str, ignored: &[(&str, &str)]) -> Config {
    let result = load(name);
    let config = result.unwrap_or_else(|e| panic!("{name}: {e}"));
    config
        .chains(&registry())
        .unwrap_or_else(|e| panic!("{name}: chains: {e}"));
    assert!(!config.ignored().is_empty(), "{name}: nothing ignored");
    for (file, key) in ignored {
        assert!(
            has(config.ignored(), file, key),
            "{name}: `{key}` of {file} is not in the ignored list: {:#?}",
            config.ignored()
        );
    }
    for entry in config.ignored() {
        assert!(!entry.reason.is_empty(), "{name}: {entry} has no reason");
        assert!(
            entry.key == "*" || entry.line > 0,
            "{name}: {entry} has no position"
        );
    }
    config
}

fn property(config: &Option<light_kafka::config::ConsumerFile>, key: &str) -> Option<String> {
    config
        .as_ref()?
        .properties
        .0
        .get(key)
        .map(ToString::to_string)
}

#[tokio::test]
async fn the_corpus_has_at_least_twelve_folders_each_with_its_origin() {
    let folders: Vec<PathBuf> = std::fs::read_dir(corpus(""))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_dir())
        .collect();
    assert!(folders.len() >= 12, "{} folders", folders.len());
    for folder in folders {
        let origin = std::fs::read_to_string(folder.join("ORIGIN.md")).unwrap();
        assert!(origin.contains("networknt/"), "{}", folder.display());
    }
}

#[tokio::test]
async fn light_kafka_common_yaml_files_load_with_their_defaults() {
    let config = check(
        "light-kafka-common-local",
        &[
            ("kafka-consumer.yaml", "properties.key.deserializer"),
            ("kafka-consumer.yaml", "properties.ssl.truststore.location"),
            ("kafka-consumer.yaml", "properties.sasl.jaas.config.module"),
            (
                "kafka-consumer.yaml",
                "properties.additionalKafkaProperties",
            ),
            ("kafka-consumer.yaml", "waitPeriod"),
            ("kafka-consumer.yaml", "backendConnectionReset"),
            ("kafka-producer.yaml", "properties.buffer.memory"),
            ("kafka-producer.yaml", "properties.max.request.size"),
            ("kafka-producer.yaml", "injectOpenTracing"),
            ("kafka-streams.yaml", "cleanUp"),
            ("kafka-streams.yaml", "deadLetterControllerTopic"),
        ],
    );
    let consumer = config.consumer.as_ref().unwrap();
    assert_eq!(consumer.batch_rollback_threshold, 30);
    assert_eq!(
        (consumer.max_retries, consumer.retry_delay_ms),
        (Some(3), Some(1000))
    );
    assert_eq!(consumer.topic.as_deref(), Some("account-event,user-event"));
    // `auditTarget: ${...:}` (empty) is the default.
    assert_eq!(
        consumer.audit_target,
        light_kafka::config::AuditTarget::Logfile
    );
    assert_eq!(
        property(&config.consumer, "group.id").as_deref(),
        Some("account-query")
    );
    assert_eq!(
        property(&config.consumer, "max.poll.records").as_deref(),
        Some("100")
    );
    assert_eq!(property(&config.consumer, "key.deserializer"), None);
    assert_eq!(property(&config.consumer, "schema.registry.url"), None);
    let producer = &config.producer.as_ref().unwrap().properties.0;
    assert_eq!(producer["queue.buffering.max.kbytes"].to_string(), "32768");
    assert_eq!(producer["message.max.bytes"].to_string(), "1048576");
    assert!(!producer.contains_key("buffer.memory"));
    let streams = config.streams.as_ref().unwrap();
    assert_eq!(streams.application_id.as_deref(), Some("account-stream"));
    assert_eq!(
        streams.state_dir.as_deref(),
        Some("/var/lib/account-stream")
    );
    assert!(!streams.properties.0.contains_key("application.id"));
    assert_eq!(
        config.registry.url.as_deref(),
        Some("http://localhost:8081")
    );
    assert!(config.registry.basic_auth_user_info.is_some());
    // No handler.yml: the default chain around the HTTP backend.
    assert!(!config.has_handler_file());
    assert_eq!(
        config.default_layers(),
        ["catch-panic", "dead-letter", "retry"]
    );
}

#[tokio::test]
async fn light_kafka_sasl_ssl_translates_split_jaas_keys_and_a_pem_truststore() {
    let config = check(
        "light-kafka-common-sasl-ssl",
        &[("kafka-consumer.yaml", "properties.ssl.truststore.password")],
    );
    let get = |k: &str| property(&config.consumer, k);
    assert_eq!(get("sasl.mechanism").as_deref(), Some("PLAIN"));
    assert_eq!(get("sasl.username").as_deref(), Some("svc-accounts"));
    assert!(get("sasl.password").is_some());
    assert!(get("sasl.jaas.config.password").is_none());
    assert!(get("ssl.ca.location").unwrap().ends_with("ca.pem"));
    assert_eq!(
        get("ssl.endpoint.identification.algorithm").as_deref(),
        Some("https")
    );
    assert_eq!(
        config.registry.url.as_deref(),
        Some("https://registry.example.com")
    );
}

#[tokio::test]
async fn additional_kafka_properties_are_added_unless_the_root_has_them() {
    let config = check(
        "light-kafka-additional-props",
        &[("kafka-consumer.yml", "cleanUp")],
    );
    assert_eq!(
        property(&config.consumer, "session.timeout.ms").as_deref(),
        Some("45000")
    );
    assert_eq!(
        config.registry.url.as_deref(),
        Some("http://localhost:8081")
    );
    let producer = &config.producer.as_ref().unwrap().properties;
    assert_eq!(producer.0["compression.type"].to_string(), "lz4");
    assert!(producer.position("compression.type").is_some());
    let streams = config.streams.as_ref().unwrap();
    assert_eq!(
        streams.properties.0["client.id"].to_string(),
        "streams-client-7"
    );
    assert_eq!(
        streams.application_id.as_deref(),
        Some("additional-props-app")
    );
}

#[tokio::test]
async fn split_jaas_keys_keep_a_password_full_of_yaml_characters() {
    let config = check(
        "light-kafka-sasl-jaas-split",
        &[("kafka-consumer.yml", "cleanUp")],
    );
    assert_eq!(
        property(&config.consumer, "sasl.mechanism").as_deref(),
        Some("PLAIN")
    );
    assert_eq!(
        property(&config.consumer, "sasl.username").as_deref(),
        Some("corpus-user")
    );
    assert_eq!(
        property(&config.consumer, "sasl.password").as_deref(),
        Some("#(*&_p@ss: w0rd_^%$, \"q\"")
    );
}

#[tokio::test]
async fn kafka_sidecar_folders_load_and_build_the_default_chain() {
    for name in [
        "sidecar-local",
        "sidecar-docker",
        "sidecar-streams",
        "example-reactive-consumer-producer",
    ] {
        let config = check(
            name,
            &[
                ("kafka-admin.yml", "*"),
                ("kafka-consumer.yml", "keyFormat"),
                ("kafka-consumer.yml", "maxConsumerThreads"),
                ("kafka-producer.yml", "properties.max.message.size"),
            ],
        );
        let consumer = config.consumer.as_ref().unwrap();
        assert!(consumer.backend_api_host.is_some(), "{name}");
        // light-kafka's default when the file does not say.
        assert_eq!(consumer.batch_rollback_threshold, 30, "{name}");
        assert_eq!(
            config.default_layers(),
            ["catch-panic", "dead-letter"],
            "{name}"
        );
    }
    let config = load("sidecar-streams").unwrap();
    assert_eq!(
        config.streams.as_ref().unwrap().application_id.as_deref(),
        Some("word-count-docker")
    );
    assert_eq!(
        property(&config.consumer, "bootstrap.servers").as_deref(),
        Some("broker:9092")
    );
}

#[tokio::test]
async fn a_producer_only_sidecar_builds_around_the_registered_default_handler() {
    let config = check(
        "sidecar-producer-only",
        &[
            ("kafka-producer.yml", "keyFormat"),
            ("kafka-streams.yml", "cleanUp"),
        ],
    );
    assert!(config.consumer.is_none());
    let error = config.chains(&Registry::new()).unwrap_err();
    assert_eq!(error.kind(), ConfigErrorKind::UnknownHandler);
}

#[tokio::test]
async fn the_sidecar_handler_yml_lists_its_http_routes_and_java_handlers_as_ignored() {
    let config = check(
        "sidecar-service-defaults",
        &[
            ("handler.yml", "paths.POST /producers/{topic}"),
            (
                "handler.yml",
                "paths.PUT /consumers/{group}/instances/{instance}/offsets",
            ),
            (
                "handler.yml",
                "paths.GET /health/com.networknt.kafka-sidecar-1.0.0",
            ),
            (
                "handler.yml",
                "handlers.com.networknt.body.BodyHandler@body",
            ),
            ("handler.yml", "basePath"),
            ("handler.yml", "auditOnError"),
            ("service.yml", "*"),
            ("app-status.yml", "*"),
            ("openapi.yaml", "*"),
        ],
    );
    assert!(!config.handler.routes_topics());
    assert!(config.handler.handlers.len() > 10);
}

#[tokio::test]
async fn confluent_ccloud_and_scram_jaas_lines_become_librdkafka_sasl_settings() {
    for (name, mechanism, user) in [
        ("sidecar-confluent-sasl-ssl", "PLAIN", "sidecar-svc"),
        ("sidecar-ccloud", "PLAIN", "ABCDEFGHIJKLMNOP"),
        ("sidecar-scram", "SCRAM-SHA-512", "orders"),
    ] {
        let config = check(name, &[("kafka-consumer.yml", "keyFormat")]);
        let get = |k: &str| property(&config.consumer, k);
        assert_eq!(get("sasl.mechanism").as_deref(), Some(mechanism), "{name}");
        assert_eq!(get("sasl.username").as_deref(), Some(user), "{name}");
        assert!(get("sasl.jaas.config").is_none(), "{name}");
        assert!(!format!("{config:?}").contains("corpus-confluent-password"));
    }
    if let Ok(config) = load("sidecar-ccloud") {
        assert!(config.registry.basic_auth_user_info.is_some());
        assert!(has(
            config.ignored(),
            "kafka-producer.yml",
            "properties.value.subject.name.strategy"
        ));
    }
}

#[tokio::test]
async fn mutual_tls_maps_pem_truststores_and_pkcs12_or_pem_keystores() {
    let config = check(
        "sidecar-mtls",
        &[("kafka-consumer.yml", "properties.ssl.key.password")],
    );
    let get = |k: &str| property(&config.consumer, k);
    assert!(get("ssl.ca.location").unwrap().ends_with("ca.pem"));
    assert!(
        get("ssl.keystore.location")
            .unwrap()
            .ends_with("client.p12")
    );
    assert_eq!(get("ssl.keystore.password").as_deref(), Some("changeit"));
    assert_eq!(
        get("ssl.endpoint.identification.algorithm").as_deref(),
        Some("none")
    );
    let producer = &config.producer.as_ref().unwrap().properties.0;
    assert!(
        producer["ssl.certificate.location"]
            .to_string()
            .ends_with("client-bundle.pem")
    );
    assert!(
        producer["ssl.key.location"]
            .to_string()
            .ends_with("client-bundle.pem")
    );
}

#[tokio::test]
async fn light_4j_handler_and_security_from_values_yml_lists_and_maps() {
    let config = check(
        "light-4j-handler-from-values",
        &[
            ("traceability.yml", "*"),
            ("security.yml", "enableVerifyScope"),
            ("security.yml", "jwt.keyResolver"),
            ("audit.yml", "statusCode"),
            ("metrics.yml", "serverHost"),
            ("correlation.yml", "autogenCorrelationID"),
            ("handler.yaml", "reportHandlerDuration"),
            ("handler.yaml", "paths.GET /v1/orders"),
        ],
    );
    assert_eq!(config.handler.handlers.len(), 7);
    assert!(config.handler.routes_topics());
    let security = config.security.as_ref().unwrap();
    assert_eq!(security.jwt.keys.as_ref().unwrap().value.0.len(), 2);
    assert_eq!(security.jwt.issuer, ["urn:com:networknt:oauth2:v1"]);
    let audit = config.audit.as_ref().unwrap();
    assert_eq!(
        audit.headers,
        ["X-Correlation-Id", "X-Traceability-Id", "caller_id"]
    );
    assert_eq!(config.retry.as_ref().unwrap().max_attempts, Some(4));
    let chains = config.chains(&registry()).unwrap();
    assert!(chains.covers("orders") && chains.covers("anything"));
}

#[tokio::test]
async fn light_example_4j_streams_processor_folder_with_older_keys() {
    let config = check(
        "example-streams-processor-api",
        &[
            ("kafka-streams.yml", "processingGuarantee"),
            ("kafka-streams.yml", "replicationFactor"),
            ("server.yml", "*"),
            ("mask.yml", "*"),
            ("metrics.yml", "influxdbProtocol"),
            ("audit.yml", "audit"),
            ("handler.yml", "paths.GET /query/{userId}"),
        ],
    );
    let streams = config.streams.as_ref().unwrap();
    assert_eq!(streams.application_id.as_deref(), Some("user-query"));
    assert_eq!(
        streams.properties.0["bootstrap.servers"].to_string(),
        "localhost:9092"
    );
}

#[tokio::test]
async fn every_folder_of_the_corpus_is_covered_by_a_test_above() {
    let covered = [
        "light-kafka-common-local",
        "light-kafka-common-sasl-ssl",
        "light-kafka-additional-props",
        "light-kafka-sasl-jaas-split",
        "sidecar-local",
        "sidecar-docker",
        "sidecar-streams",
        "example-reactive-consumer-producer",
        "sidecar-producer-only",
        "sidecar-service-defaults",
        "sidecar-confluent-sasl-ssl",
        "sidecar-ccloud",
        "sidecar-scram",
        "sidecar-mtls",
        "light-4j-handler-from-values",
        "example-streams-processor-api",
    ];
    for entry in std::fs::read_dir(corpus("")).unwrap() {
        let name = entry.unwrap().file_name().to_string_lossy().into_owned();
        assert!(covered.contains(&name.as_str()), "{name} has no test");
    }
}
