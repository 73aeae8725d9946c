//! Loading a directory: which files, `.yml` or `.yaml`, `values.yml`, the
//! Java files and keys that are accepted and ignored, and the checks that
//! need the whole file (duplicate routes).

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use serde::de::DeserializeOwned;

use super::Config;
use super::files::{self, HandlerFile, Ignored, RegistrySettings, Role, java_handler};
use super::source::{ConfigError, ConfigErrorKind, Source};
use super::subst::Resolved;

/// The files this crate reads, by stem.
pub(crate) const KNOWN: [&str; 12] = [
    "handler",
    "kafka-consumer",
    "kafka-producer",
    "kafka-streams",
    "security",
    "audit",
    "metrics",
    "trace",
    "correlation",
    "schema",
    "retry",
    "values",
];

/// Files of light-4j / light-kafka / kafka-sidecar that mean nothing here,
/// with the reason (any other `.yml` of a light-4j module is ignored with a
/// generic one).
const JAVA_FILES: &[(&str, &str)] = &[
    (
        "server",
        "light-4j's HTTP server; serve HTTP with an axum Router (crate::http)",
    ),
    (
        "client",
        "light-4j's HTTP client; the crate's HTTP clients are configured in code",
    ),
    (
        "service",
        "light-4j's service singletons and startup hooks; Rust wires services in code",
    ),
    (
        "app-status",
        "light-4j's error-code catalogue; errors here carry a kind",
    ),
    (
        "status",
        "light-4j's error-code catalogue; errors here carry a kind",
    ),
    (
        "traceability",
        "the propagate layer (correlation.yml) carries X-Traceability-Id too",
    ),
    (
        "jwt",
        "token signing settings of light-4j; this crate verifies tokens (security.yml)",
    ),
    (
        "kafka-admin",
        "the admin client of the Java sidecar; the admin API is crate::http's router",
    ),
    ("kafka-ksqldb", "ksqlDB is not supported"),
    (
        "schema-registry",
        "set the registry in properties (`schema.registry.url`, `basic.auth.*`)",
    ),
    (
        "openapi",
        "an OpenAPI spec of HTTP endpoints; records are validated by schema.yml",
    ),
    (
        "openapi-security",
        "HTTP security of light-4j; records are verified by security.yml",
    ),
    (
        "openapi-validator",
        "HTTP validation of light-4j; records are validated by schema.yml",
    ),
    (
        "openapi-handler",
        "HTTP routing of light-4j; records are routed by handler.yml topics",
    ),
];

/// The file `<stem>.yml` or `<stem>.yaml` of `dir`, if any.
///
/// # Errors
///
/// When both exist.
pub(crate) fn find(dir: &Path, stem: &str) -> Result<Option<PathBuf>, ConfigError> {
    let yml = dir.join(format!("{stem}.yml"));
    let yaml = dir.join(format!("{stem}.yaml"));
    match (yml.is_file(), yaml.is_file()) {
        (true, true) => Err(ConfigError::new(
            ConfigErrorKind::Invalid,
            &yml,
            (0, 0),
            format!(
                "both {stem}.yml and {stem}.yaml exist: keep one ({} and {})",
                yml.display(),
                yaml.display()
            ),
        )),
        (true, false) => Ok(Some(yml)),
        (false, true) => Ok(Some(yaml)),
        (false, false) => Ok(None),
    }
}

fn name_of(path: &Path) -> String {
    path.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
}

fn distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut prev = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let cur = row[j + 1];
            row[j + 1] = (prev + usize::from(ca != *cb)).min(row[j] + 1).min(cur + 1);
            prev = cur;
        }
    }
    row[b.len()]
}

/// The other `.yml` / `.yaml` files of `dir`: ignored with their reason,
/// or an error for a misspelt name of a file this crate reads.
fn other_files(dir: &Path, ignored: &mut Vec<Ignored>) -> Result<(), ConfigError> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Ok(());
    };
    let mut names: Vec<String> = entries
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    for name in names {
        let Some(stem) = name
            .strip_suffix(".yml")
            .or_else(|| name.strip_suffix(".yaml"))
        else {
            continue;
        };
        if KNOWN.contains(&stem) {
            continue;
        }
        let reason = match JAVA_FILES.iter().find(|(s, _)| *s == stem) {
            Some((_, reason)) => (*reason).to_owned(),
            None => {
                if let Some(known) = KNOWN.iter().find(|k| distance(k, stem) <= 2) {
                    return Err(ConfigError::new(
                        ConfigErrorKind::Invalid,
                        &dir.join(&name),
                        (0, 0),
                        format!(
                            "no file of light-kafka or light-4j has this name: is it {known}.yml?"
                        ),
                    ));
                }
                "a file of a light-4j module with no counterpart here".to_owned()
            }
        };
        ignored.push(Ignored {
            file: name,
            key: "*".into(),
            line: 0,
            column: 0,
            reason,
        });
    }
    Ok(())
}

/// The values of `values.yml`: any YAML value per name.
fn values(dir: &Path) -> Result<HashMap<String, serde_json::Value>, ConfigError> {
    let Some(path) = find(dir, "values")? else {
        return Ok(HashMap::new());
    };
    let source = Source::read(&path, &|_| None)?;
    let map: Option<BTreeMap<String, serde_json::Value>> = source.parse()?;
    Ok(map.unwrap_or_default().into_iter().collect())
}

/// Loads `dir`. See [`Config::load_with`].
pub(crate) fn load(
    dir: &Path,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Config, ConfigError> {
    if !dir.is_dir() {
        return Err(ConfigError::new(
            ConfigErrorKind::Io,
            dir,
            (0, 0),
            "not a directory (or it cannot be read)",
        ));
    }
    let values = values(dir)?;
    let lookup = |name: &str| -> Option<Resolved> {
        env(name)
            .or_else(|| env(&name.to_ascii_uppercase().replace(['.', '-'], "_")))
            .map(Resolved::Env)
            .or_else(|| values.get(name).cloned().map(Resolved::Value))
    };
    let mut ignored = Vec::new();
    other_files(dir, &mut ignored)?;
    let read = |stem: &str| -> Result<Option<Source>, ConfigError> {
        find(dir, stem)?
            .map(|path| Source::read(&path, &lookup))
            .transpose()
    };
    fn parse<T: DeserializeOwned>(source: &Option<Source>) -> Result<Option<T>, ConfigError> {
        source.as_ref().map(Source::parse).transpose()
    }
    let handler_source = read("handler")?;
    let mut handler: HandlerFile = match &handler_source {
        Some(source) => source.parse()?,
        None => Source::parse_text(Path::new("handler.yml"), "{}", &|_| None)?.parse()?,
    };
    handler.merge_additional();
    let consumer_source = read("kafka-consumer")?;
    let producer_source = read("kafka-producer")?;
    let streams_source = read("kafka-streams")?;
    let mut consumer: Option<files::ConsumerFile> = parse(&consumer_source)?;
    let mut producer: Option<files::ProducerFile> = parse(&producer_source)?;
    let mut streams: Option<files::StreamsFile> = parse(&streams_source)?;
    let mut registry = RegistrySettings::default();
    let mut merge = |r: RegistrySettings| {
        registry.url = registry.url.take().or(r.url);
        registry.basic_auth_user_info = registry
            .basic_auth_user_info
            .take()
            .or(r.basic_auth_user_info);
        registry.basic_auth_credentials_source = registry
            .basic_auth_credentials_source
            .take()
            .or(r.basic_auth_credentials_source);
    };
    if let (Some(file), Some(source)) = (&mut consumer, &consumer_source) {
        file.properties.finish(source);
        file.registry = files::translate(
            dir,
            source.path(),
            Role::Consumer,
            &mut file.properties,
            &mut ignored,
        )?
        .registry;
        merge(file.registry.clone());
        unused(source, file.unused(), &mut ignored);
    }
    if let (Some(file), Some(source)) = (&mut producer, &producer_source) {
        file.properties.finish(source);
        file.registry = files::translate(
            dir,
            source.path(),
            Role::Producer,
            &mut file.properties,
            &mut ignored,
        )?
        .registry;
        merge(file.registry.clone());
        unused(source, file.unused(), &mut ignored);
    }
    if let (Some(file), Some(source)) = (&mut streams, &streams_source) {
        file.properties.finish(source);
        let translated = files::translate(
            dir,
            source.path(),
            Role::Streams,
            &mut file.properties,
            &mut ignored,
        )?;
        file.registry = translated.registry;
        merge(file.registry.clone());
        file.application_id = file.application_id.take().or(translated.application_id);
        if let Some(servers) = &file.bootstrap_servers
            && !file.properties.0.contains_key("bootstrap.servers")
        {
            file.properties.0.insert(
                "bootstrap.servers".into(),
                files::Scalar::Text(servers.clone()),
            );
        }
        file.state_dir = translated.state_dir;
        unused(source, file.unused(), &mut ignored);
    }
    macro_rules! layer_file {
        ($stem:literal) => {{
            let source = read($stem)?;
            let file = parse(&source)?;
            (source, file)
        }};
    }
    let (security_source, security): (_, Option<files::SecurityFile>) = layer_file!("security");
    if let (Some(s), Some(f)) = (&security_source, &security) {
        unused(s, f.unused(), &mut ignored);
        unused(s, f.jwt.unused(), &mut ignored);
    }
    let (audit_source, audit): (_, Option<files::AuditFile>) = layer_file!("audit");
    if let (Some(s), Some(f)) = (&audit_source, &audit) {
        unused(s, f.unused(), &mut ignored);
    }
    let (metrics_source, metrics): (_, Option<files::MetricsFile>) = layer_file!("metrics");
    if let (Some(s), Some(f)) = (&metrics_source, &metrics) {
        unused(s, f.unused(), &mut ignored);
    }
    let (trace_source, trace): (_, Option<files::SwitchFile>) = layer_file!("trace");
    if let (Some(s), Some(f)) = (&trace_source, &trace) {
        unused(s, f.unused(), &mut ignored);
    }
    let (correlation_source, correlation): (_, Option<files::SwitchFile>) =
        layer_file!("correlation");
    if let (Some(s), Some(f)) = (&correlation_source, &correlation) {
        unused(s, f.unused(), &mut ignored);
    }
    let (_, schema) = layer_file!("schema");
    let (_, retry) = layer_file!("retry");
    let handler_path = handler_source
        .as_ref()
        .map_or_else(|| dir.join("handler.yml"), |s| s.path().to_owned());
    if let Some(source) = &handler_source {
        unused(source, handler.unused(), &mut ignored);
        check_handler(source, &handler, &mut ignored)?;
    }
    for entry in &ignored {
        tracing::info!(
            file = %entry.file,
            key = %entry.key,
            line = entry.line,
            column = entry.column,
            reason = %entry.reason,
            "light-kafka (Java) setting accepted and not applied"
        );
    }
    Ok(Config {
        dir: dir.to_owned(),
        producer_cache: std::sync::OnceLock::new(),
        handler_source,
        handler_path,
        handler,
        consumer,
        producer,
        streams,
        security,
        audit,
        metrics,
        trace,
        correlation,
        schema,
        retry,
        registry,
        ignored,
    })
}

fn unused(
    source: &Source,
    keys: Vec<(&'static str, serde_saphyr::Location, &'static str)>,
    ignored: &mut Vec<Ignored>,
) {
    for (key, location, reason) in keys {
        let (line, column) = source.at(&location);
        ignored.push(Ignored {
            file: name_of(source.path()),
            key: key.to_owned(),
            line,
            column,
            reason: reason.to_owned(),
        });
    }
}

/// light-4j class names and HTTP routes go to the ignored list; a topic,
/// pattern, or path and method routed twice is an error naming both places.
fn check_handler(
    source: &Source,
    handler: &HandlerFile,
    ignored: &mut Vec<Ignored>,
) -> Result<(), ConfigError> {
    let file = name_of(source.path());
    for spanned in &handler.handlers {
        let name = spanned.value.split('@').next().unwrap_or("").trim();
        if name.contains('.')
            && let Err(reason) = java_handler(name)
        {
            let (line, column) = source.at(&spanned.referenced);
            ignored.push(Ignored {
                file: file.clone(),
                key: format!("handlers.{}", spanned.value.trim()),
                line,
                column,
                reason: reason.to_owned(),
            });
        }
    }
    let mut seen: HashMap<String, &serde_saphyr::Spanned<String>> = HashMap::new();
    for route in &handler.topics {
        let (id, at) = match (&route.topic, &route.pattern, &route.path) {
            (Some(t), _, _) => (format!("topic `{}`", t.value), t),
            (_, Some(p), _) => (format!("pattern `{}`", p.value), p),
            (_, _, Some(p)) => {
                let method = route
                    .method
                    .as_ref()
                    .map_or("*".to_owned(), |m| m.value.to_ascii_uppercase());
                let (line, column) = source.at(&p.referenced);
                ignored.push(Ignored {
                    file: file.clone(),
                    key: format!("paths.{method} {}", p.value),
                    line,
                    column,
                    reason: "an HTTP route of the Java service; record chains route topics (HTTP is crate::http's)".into(),
                });
                (format!("path `{}` with method {method}", p.value), p)
            }
            _ => continue,
        };
        if let Some(first) = seen.insert(id.clone(), at) {
            let (l1, c1) = source.at(&first.referenced);
            let (l2, c2) = source.at(&at.referenced);
            return Err(ConfigError::new(
                ConfigErrorKind::Invalid,
                source.path(),
                (l2, c2),
                format!(
                    "{id} is routed twice: at {p}:{l1}:{c1} and at {p}:{l2}:{c2}",
                    p = source.path().display()
                ),
            ));
        }
    }
    Ok(())
}
