//! No secret ever appears in a config error (Display, Debug, source chain),
//! in a log line (captured at DEBUG), or in `Debug` of a loaded config.

use std::io::Write;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};

use light_kafka::BoxError;
use light_kafka::config::{Config, Registry};
use light_kafka::record::Record;
use tower::service_fn;

const MARKER: &str = "S3CR3T-MARKER-7f3a";

fn dir(files: &[(&str, String)]) -> PathBuf {
    static N: AtomicU32 = AtomicU32::new(0);
    let dir = std::env::temp_dir().join(format!(
        "lk-config-secrets-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    ));
    std::fs::create_dir_all(&dir).unwrap();
    for (file, text) in files {
        std::fs::write(dir.join(file), text).unwrap();
    }
    dir
}

/// Every secret-bearing field of the Java files, with the marker in it.
fn secret_consumer() -> String {
    format!(
        r#"properties:
  bootstrap.servers: localhost:9092
  group.id: secrets
  security.protocol: SASL_PLAINTEXT
  sasl.jaas.config: org.apache.kafka.common.security.plain.PlainLoginModule required username="u" password="{MARKER}";
  ssl.truststore.password: {MARKER}
  ssl.keystore.password: {MARKER}
  ssl.key.password: {MARKER}
  schema.registry.ssl.truststore.password: {MARKER}
  basic.auth.user.info: user:{MARKER}
  schema.registry.url: https://registry.example.com
topic: orders
"#
    )
}

fn secret_producer() -> String {
    format!(
        "properties:\n  bootstrap.servers: localhost:9092\n  security.protocol: SASL_PLAINTEXT\n  sasl.jaas.config.module: org.apache.kafka.common.security.scram.ScramLoginModule\n  sasl.jaas.config.username: u\n  sasl.jaas.config.password: {MARKER}\n  sasl.mechanism: PLAIN\n  basic.auth.user.info: ${{REG_USER:u}}:${{REG_SECRET}}\n"
    )
}

fn secret_metrics() -> String {
    format!("enabled: true\nserverUser: admin\nserverPass: {MARKER}\n")
}

fn secret_security() -> String {
    format!(
        "enableVerifyJwt: false\nswtClientSecretHeader: {MARKER}\njwt:\n  certificate: ${{JWT_CERT:100=primary.crt}}\n"
    )
}

/// The environment: the marker behind every variable.
fn env(name: &str) -> Option<String> {
    match name {
        "SECRET" | "REG_SECRET" | "JWT_CERT_PASSWORD" => Some(MARKER.to_owned()),
        _ => None,
    }
}

/// A writer into a shared buffer, for the subscriber.
#[derive(Clone, Default)]
struct Buffer(Arc<Mutex<Vec<u8>>>);

impl Write for Buffer {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Everything an error shows: Display, Debug, its sources.
fn shown(error: &(dyn std::error::Error + 'static)) -> String {
    let mut out = format!("{error}\n{error:?}\n{error:#?}\n");
    let mut source = error.source();
    while let Some(e) = source {
        out.push_str(&format!("{e}\n{e:?}\n"));
        source = e.source();
    }
    out
}

fn registry() -> Registry {
    Registry::new().handler(
        "orders",
        service_fn(|_: Record| async { Ok::<_, BoxError>(()) }),
    )
}

#[tokio::test]
async fn no_secret_shows_in_errors_logs_or_debug_output() {
    let buffer = Buffer::default();
    let writer = buffer.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::DEBUG)
        .with_writer(move || writer.clone())
        .with_ansi(false)
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);

    let ok_handler = "handlers: [orders]\ndefaultHandlers: [orders]\n".to_owned();
    let good = [
        ("handler.yml", ok_handler.clone()),
        ("kafka-consumer.yml", secret_consumer()),
        ("kafka-producer.yml", secret_producer()),
        ("metrics.yml", secret_metrics()),
        ("security.yml", secret_security()),
        (
            "values.yml",
            format!("kafka-consumer.password: {MARKER}\nlist: [a, {MARKER}]\n"),
        ),
        (
            "jwt.yml",
            format!("key: {{\"kid\":\"100\",\"password\":\"{MARKER}\"}}\n"),
        ),
    ];
    let mut seen = String::new();

    // A folder that loads: Debug of everything, the ignored list.
    let config = Config::load_with(dir(&good), env).unwrap();
    seen.push_str(&format!("{config:?}\n{config:#?}\n"));
    seen.push_str(&format!("{:?}\n", config.consumer));
    seen.push_str(&format!("{:?}\n", config.producer));
    seen.push_str(&format!("{:?}\n", config.registry));
    for entry in config.ignored() {
        seen.push_str(&format!("{entry}\n{entry:?}\n"));
    }
    let chains = config.chains(&registry()).unwrap();
    seen.push_str(&format!("{chains:?}\n"));
    assert_eq!(
        config.consumer.as_ref().unwrap().properties.0["sasl.password"].to_string(),
        MARKER,
        "the secret is applied"
    );

    // Every error path, each with secrets around.
    let with = |file: &str, text: String| {
        let mut files: Vec<(&str, String)> =
            good.iter().filter(|(f, _)| *f != file).cloned().collect();
        files.push((Box::leak(file.to_owned().into_boxed_str()), text));
        dir(&files)
    };
    let consumer = secret_consumer();
    let cases: Vec<(&str, PathBuf)> = vec![
        (
            "misspelt secret property (sasl.pasword)",
            with(
                "kafka-consumer.yml",
                consumer.replace("  group.id: secrets\n", &format!("  group.id: secrets\n  sasl.pasword: {MARKER}\n")),
            ),
        ),
        (
            "wrong enum value",
            with("kafka-consumer.yml", format!("{consumer}auditTarget: {MARKER}\n")),
        ),
        (
            "wrong enum value from the environment",
            with("kafka-consumer.yml", format!("{consumer}auditTarget: ${{SECRET}}\n")),
        ),
        (
            "bad type",
            with("kafka-consumer.yml", format!("{consumer}maxRetries: {MARKER}\n")),
        ),
        (
            "bad type from a variable",
            with("metrics.yml", format!("{}reportInMinutes: 1\nenabled: ${{SECRET}}\n", secret_metrics().replace("enabled: true\n", ""))),
        ),
        (
            "librdkafka rejects a value",
            with(
                "kafka-consumer.yml",
                consumer.replace("  group.id: secrets\n", &format!("  group.id: secrets\n  acks: {MARKER}\n  auto.offset.reset: {MARKER}\n")),
            ),
        ),
        (
            "librdkafka rejects a secret property's value",
            with(
                "kafka-consumer.yml",
                consumer.replace("  group.id: secrets\n", &format!("  group.id: secrets\n  sasl.kerberos.kinit.cmd: {MARKER}\n  enable.auto.commit: {MARKER}\n")),
            ),
        ),
        (
            "JKS store",
            with(
                "kafka-consumer.yml",
                consumer
                    .replace("SASL_PLAINTEXT", "SASL_SSL")
                    .replace("  group.id: secrets\n", "  group.id: secrets\n  ssl.truststore.location: /etc/kafka/truststore.jks\n"),
            ),
        ),
        (
            "unknown key next to a secret",
            with("kafka-consumer.yml", format!("{consumer}unknwonKey: {MARKER}\n")),
        ),
        (
            "unknown key in a map of secrets",
            with("kafka-consumer.yml", consumer.replace("topic: orders\n", &format!("topic: orders\nsasl: {{password: {MARKER}}}\n"))),
        ),
        (
            "duplicate route",
            with(
                "handler.yml",
                "handlers: [orders]\ntopics:\n  - topic: t\n    exec: [orders]\n  - topic: t\n    exec: [orders]\n".to_owned(),
            ),
        ),
        (
            "a malformed JAAS line",
            with(
                "kafka-consumer.yml",
                consumer.replace(&format!("password=\"{MARKER}\";"), &format!("password=\"{MARKER};")),
            ),
        ),
        (
            "another login module",
            with(
                "kafka-consumer.yml",
                consumer.replace("org.apache.kafka.common.security.plain.PlainLoginModule", &format!("com.example.{MARKER}Module")),
            ),
        ),
        (
            "a list of values.yml in a secret's place",
            with("metrics.yml", "serviceId: ${list}\n".to_owned()),
        ),
        (
            "a list of values.yml inside a text",
            with("metrics.yml", "serviceId: x-${list}\n".to_owned()),
        ),
        (
            "a YAML syntax error after a secret",
            with("kafka-consumer.yml", format!("{consumer}notes: [\"{MARKER}\", {MARKER}\n")),
        ),
        (
            "a missing variable next to a secret",
            with("kafka-consumer.yml", format!("{consumer}backendApiPath: {MARKER}-${{NOPE}}\n")),
        ),
        (
            "an unknown handler with a JAAS config around",
            with("handler.yml", "handlers: [orders, nope]\ndefaultHandlers: [orders]\n".to_owned()),
        ),
        (
            "a bad regular expression",
            with("handler.yml", "handlers: [orders]\ntopics:\n  - pattern: \"(\"\n    exec: [orders]\n".to_owned()),
        ),
        (
            "jwt keys that cannot be read",
            with(
                "security.yml",
                secret_security().replace("enableVerifyJwt: false", "enableVerifyJwt: true"),
            ),
        ),
    ];
    let mut errors = 0;
    for (what, dir) in cases {
        let handler = if what == "jwt keys that cannot be read" {
            "handlers: [jwt, orders]\ndefaultHandlers: [jwt, orders]\n".to_owned()
        } else {
            String::new()
        };
        if !handler.is_empty() {
            std::fs::write(dir.join("handler.yml"), handler).unwrap();
        }
        let result = Config::load_with(&dir, env).and_then(|config| {
            seen.push_str(&format!("{config:?}\n"));
            config.chains(&registry()).map(|_| ())
        });
        if let Err(error) = result {
            errors += 1;
            seen.push_str(&shown(&error));
            let boxed: BoxError = error.into();
            seen.push_str(&format!("{boxed}\n{boxed:?}\n"));
        } else {
            panic!("{what}: no error");
        }
    }
    assert!(errors >= 18, "{errors} error paths ran");
    let logs = String::from_utf8(buffer.0.lock().unwrap().clone()).unwrap();
    assert!(
        logs.contains("accepted and not applied"),
        "the log was captured"
    );
    assert!(
        !seen.contains(MARKER),
        "a secret in errors or Debug output:\n{seen}"
    );
    assert!(!logs.contains(MARKER), "a secret in the log:\n{logs}");
    // The marker's halves are not spliced in either (quoted fragments).
    assert!(!seen.contains("7f3a") && !logs.contains("7f3a"));
}
