//! `properties:` of light-kafka's files: Java client properties translated
//! into librdkafka's, the schema registry's set apart, JVM-only ones
//! dropped with their reason, and what librdkafka still rejects reported
//! with positions, never values.

use std::collections::BTreeMap;
use std::fmt;
use std::path::Path;

use serde::Deserialize;
use serde::de::{self, Deserializer, MapAccess, Visitor};
use serde_saphyr::{Location, Spanned};

use super::jaas::{mechanism_of, parse_jaas};
use super::stores::stores;
use super::{Ignored, Scalar, is_secret};
use crate::config::source::{ConfigError, ConfigErrorKind, Source};

/// One value under `properties:`: a scalar, or a map
/// (`additionalKafkaProperties`).
#[derive(Clone, Debug)]
enum Value {
    Scalar(Scalar, bool),
    Map(Vec<(String, Spanned<Value>)>),
}

impl<'de> Deserialize<'de> for Value {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Value;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a property value")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Value, E> {
                Ok(Value::Scalar(Scalar::Text(v.to_owned()), false))
            }
            fn visit_string<E: de::Error>(self, v: String) -> Result<Value, E> {
                Ok(Value::Scalar(Scalar::Text(v), false))
            }
            fn visit_bool<E: de::Error>(self, v: bool) -> Result<Value, E> {
                Ok(Value::Scalar(Scalar::Bool(v), true))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Value, E> {
                Ok(Value::Scalar(Scalar::Int(v), true))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Value, E> {
                Ok(match i64::try_from(v) {
                    Ok(i) => Value::Scalar(Scalar::Int(i), true),
                    Err(_) => Value::Scalar(Scalar::Text(v.to_string()), true),
                })
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<Value, E> {
                Ok(Value::Scalar(Scalar::Float(v), true))
            }
            fn visit_unit<E: de::Error>(self) -> Result<Value, E> {
                Ok(Value::Scalar(Scalar::Text(String::new()), false))
            }
            fn visit_none<E: de::Error>(self) -> Result<Value, E> {
                self.visit_unit()
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
                let mut out = Vec::new();
                while let Some((k, v)) = map.next_entry::<String, Spanned<Value>>()? {
                    out.push((k, v));
                }
                Ok(Value::Map(out))
            }
        }
        deserializer.deserialize_any(V)
    }
}

/// librdkafka properties (`properties:` in light-kafka's files), as
/// translated at load (see the README's "Moving from Java light-kafka").
/// `Debug` hides the values of passwords, secrets, tokens and JAAS settings.
#[derive(Clone, Default)]
pub struct Properties(
    /// The properties, by key.
    pub BTreeMap<String, Scalar>,
    pub(crate) Places,
);

/// Where each property was written: parser locations until the load maps
/// them to file positions.
#[derive(Clone, Debug, Default)]
pub(crate) struct Places {
    pending: BTreeMap<String, (Location, bool)>,
    extra: Vec<(String, Scalar, Location, bool)>,
    pub(crate) at: BTreeMap<String, (u64, u64)>,
    merged: bool,
}

impl PartialEq for Properties {
    fn eq(&self, other: &Self) -> bool {
        self.0 == other.0
    }
}

impl<'de> Deserialize<'de> for Properties {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let raw = BTreeMap::<String, Spanned<Value>>::deserialize(deserializer)?;
        let mut properties = Properties::default();
        for (key, value) in raw {
            match value.value {
                Value::Scalar(scalar, plain) => {
                    properties
                        .1
                        .pending
                        .insert(key.clone(), (value.referenced, plain));
                    properties.0.insert(key, scalar);
                }
                Value::Map(entries) => {
                    for (k, v) in entries {
                        match v.value {
                            Value::Scalar(s, plain) => {
                                properties.1.extra.push((k, s, v.referenced, plain))
                            }
                            Value::Map(_) => {
                                return Err(de::Error::custom(
                                    "not a property value: a map inside a map",
                                ));
                            }
                        }
                    }
                    properties
                        .1
                        .pending
                        .insert(key.clone(), (value.referenced, false));
                    properties.0.insert(key, Scalar::Text(String::new()));
                }
            }
        }
        Ok(properties)
    }
}

impl Properties {
    /// The properties as `(key, value)` text pairs.
    pub fn iter(&self) -> impl Iterator<Item = (&str, String)> {
        self.0.iter().map(|(k, v)| (k.as_str(), v.to_string()))
    }

    /// The file position (line, column) of the property `key`, if it was
    /// written in the file.
    pub fn position(&self, key: &str) -> Option<(u64, u64)> {
        self.1.at.get(key).copied()
    }

    /// Maps parser locations to file positions, and takes plain scalars as
    /// written (`007` stays `007`, `0x1F` stays `0x1F`).
    pub(crate) fn finish(&mut self, source: &Source) {
        let pending = std::mem::take(&mut self.1.pending);
        for (key, (location, plain)) in pending {
            if plain && let Some(raw) = source.slice(&location) {
                self.0
                    .insert(key.clone(), Scalar::Text(raw.trim().to_owned()));
            }
            self.1.at.insert(key, source.at(&location));
        }
        // `additionalKafkaProperties`: added where the root has no such key.
        let extra = std::mem::take(&mut self.1.extra);
        self.1.merged = !extra.is_empty();
        for (key, mut value, location, plain) in extra {
            if plain && let Some(raw) = source.slice(&location) {
                value = Scalar::Text(raw.trim().to_owned());
            }
            if !self.0.contains_key(&key) {
                self.1.at.insert(key.clone(), source.at(&location));
                self.0.insert(key, value);
            }
        }
    }
}

impl fmt::Debug for Properties {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut map = f.debug_map();
        for (key, value) in &self.0 {
            if is_secret(key) {
                map.entry(key, &"<redacted>");
            } else {
                map.entry(key, value);
            }
        }
        map.finish()
    }
}

/// Which client a properties map configures.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Role {
    Consumer,
    Producer,
    Streams,
}

/// The schema registry's settings, taken out of `properties:`
/// (`schema.registry.*`, `basic.auth.*`). `Debug` hides the credentials.
#[derive(Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct RegistrySettings {
    /// `schema.registry.url`.
    pub url: Option<String>,
    /// `basic.auth.user.info` (`user:password`).
    pub basic_auth_user_info: Option<String>,
    /// `basic.auth.credentials.source` (`USER_INFO`...).
    pub basic_auth_credentials_source: Option<String>,
}

impl fmt::Debug for RegistrySettings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RegistrySettings")
            .field("url", &self.url)
            .field(
                "basic_auth_user_info",
                &self.basic_auth_user_info.as_ref().map(|_| "<redacted>"),
            )
            .field(
                "basic_auth_credentials_source",
                &self.basic_auth_credentials_source,
            )
            .finish()
    }
}

/// Keys dropped, with the reason (a prefix ends with `.`... `*`).
const DROPPED: &[(&str, &str)] = &[
    (
        "key.serializer",
        "records carry bytes; values are encoded by the crate's codecs (record::codec), not by a Java class",
    ),
    (
        "value.serializer",
        "records carry bytes; values are encoded by the crate's codecs (record::codec), not by a Java class",
    ),
    (
        "key.deserializer",
        "records reach handlers as bytes; decode them with the crate's codecs (record::codec)",
    ),
    (
        "value.deserializer",
        "records reach handlers as bytes; decode them with the crate's codecs (record::codec)",
    ),
    (
        "application.id",
        "a Kafka Streams setting: kafka-streams.yml's properties.application.id names the stream processor",
    ),
    (
        "state.dir",
        "a Kafka Streams setting: kafka-streams.yml's state.dir is kept in StreamsFile::state_dir",
    ),
    (
        "key.subject.name.strategy",
        "subjects are named by the Avro layer's code, not by a Java strategy class",
    ),
    (
        "value.subject.name.strategy",
        "subjects are named by the Avro layer's code, not by a Java strategy class",
    ),
    (
        "schema.registry.auto.register.schemas",
        "schemas are registered by code (layers::avro), never implicitly",
    ),
    (
        "schema.registry.cache",
        "the registry client caches every schema it has fetched",
    ),
    (
        "schema.registry.ssl.truststore.location",
        "the registry client uses the system's roots (rustls)",
    ),
    (
        "schema.registry.ssl.truststore.password",
        "the registry client uses the system's roots (rustls)",
    ),
    (
        "schema.registry.ssl.truststore.type",
        "the registry client uses the system's roots (rustls)",
    ),
    (
        "max.message.size",
        "a kafka-sidecar setting of the JVM; librdkafka's message.max.bytes bounds messages",
    ),
    (
        "default.api.timeout.ms",
        "a JVM client setting with no librdkafka counterpart",
    ),
];

/// Keys mapped to another librdkafka key, with a unit factor.
const RENAMED: &[(&str, &str, u64)] = &[
    ("buffer.memory", "queue.buffering.max.kbytes", 1024),
    ("max.request.size", "message.max.bytes", 1),
];

/// The outcome of translating one file's properties.
pub(crate) struct Translated {
    pub(crate) registry: RegistrySettings,
    pub(crate) application_id: Option<String>,
    pub(crate) state_dir: Option<String>,
}

/// Translates `properties` of `file` in place.
pub(crate) fn translate(
    dir: &Path,
    file: &Path,
    role: Role,
    properties: &mut Properties,
    ignored: &mut Vec<Ignored>,
) -> Result<Translated, ConfigError> {
    let name = file
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let mut out = Translated {
        registry: RegistrySettings::default(),
        application_id: None,
        state_dir: None,
    };
    let at = |p: &Properties, key: &str| p.position(key).unwrap_or((0, 0));
    let mut ignore = |p: &Properties, key: &str, reason: String| {
        let (line, column) = at(p, key);
        ignored.push(Ignored {
            file: name.clone(),
            key: format!("properties.{key}"),
            line,
            column,
            reason,
        });
    };
    let text = |p: &Properties, key: &str| p.0.get(key).map(ToString::to_string);
    let keys: Vec<String> = properties.0.keys().cloned().collect();
    let protocol = text(properties, "security.protocol")
        .unwrap_or_default()
        .to_ascii_uppercase();
    let tls = protocol.ends_with("SSL");
    let mut errors: Vec<(String, (u64, u64), String)> = Vec::new();
    let mut set: Vec<(String, String, (u64, u64))> = Vec::new();
    let mut removed: Vec<String> = Vec::new();
    for key in &keys {
        let value = text(properties, key).unwrap_or_default();
        let k = key.as_str();
        if k == "application.id" && role == Role::Streams {
            out.application_id = Some(value).filter(|v| !v.is_empty());
            removed.push(key.clone());
        } else if k == "state.dir" && role == Role::Streams {
            out.state_dir = Some(value).filter(|v| !v.is_empty());
            removed.push(key.clone());
        } else if k == "additionalKafkaProperties" {
            removed.push(key.clone());
            if !properties.1.merged {
                ignore(properties, k, "empty: nothing to add".into());
            }
        } else if k == "schema.registry.url" {
            out.registry.url = Some(value).filter(|v| !v.is_empty());
            removed.push(key.clone());
        } else if k == "basic.auth.user.info" {
            out.registry.basic_auth_user_info = Some(value).filter(|v| !v.is_empty() && v != ":");
            removed.push(key.clone());
        } else if k == "basic.auth.credentials.source" {
            out.registry.basic_auth_credentials_source = Some(value).filter(|v| !v.is_empty());
            removed.push(key.clone());
        } else if let Some((_, reason)) = DROPPED.iter().find(|(d, _)| *d == k) {
            ignore(properties, k, (*reason).to_owned());
            removed.push(key.clone());
        } else if let Some(&(_, to, factor)) = RENAMED.iter().find(|(r, _, _)| *r == k) {
            removed.push(key.clone());
            match value.trim().parse::<u64>() {
                Ok(n) => set.push((
                    to.to_owned(),
                    (n / factor).max(1).to_string(),
                    at(properties, k),
                )),
                Err(_) => errors.push((k.to_owned(), at(properties, k), "not a number".into())),
            }
            ignore(
                properties,
                k,
                format!("a JVM client setting: applied as librdkafka's `{to}`"),
            );
        } else if k == "sasl.jaas.config" {
            removed.push(key.clone());
            match parse_jaas(&value) {
                Ok(Some((_, user, password))) if user.is_empty() || password.is_empty() => {
                    errors.push((
                        k.to_owned(),
                        at(properties, k),
                        "the JAAS line's username or password is empty (a `${...:}` without a value?)".into(),
                    ));
                }
                Ok(Some((mechanism, user, password))) => {
                    let pos = at(properties, k);
                    if !properties.0.contains_key("sasl.mechanism") {
                        set.push(("sasl.mechanism".into(), mechanism.into(), pos));
                    }
                    set.push(("sasl.username".into(), user, pos));
                    set.push(("sasl.password".into(), password, pos));
                }
                Ok(None) => ignore(properties, k, "empty: no SASL login".into()),
                Err(why) => errors.push((k.to_owned(), at(properties, k), why.into())),
            }
        } else if k == "sasl.jaas.config.module" {
            removed.push(key.clone());
            let user = text(properties, "sasl.jaas.config.username").unwrap_or_default();
            let password = text(properties, "sasl.jaas.config.password").unwrap_or_default();
            if user.is_empty() && password.is_empty() {
                ignore(
                    properties,
                    k,
                    "no username nor password: no SASL login".into(),
                );
                continue;
            }
            if user.is_empty() || password.is_empty() {
                errors.push((
                    k.to_owned(),
                    at(properties, k),
                    "`sasl.jaas.config.username` or `.password` is empty while the other is set"
                        .into(),
                ));
                continue;
            }
            match mechanism_of(value.trim()) {
                Some(mechanism) => {
                    let pos = at(properties, k);
                    if !properties.0.contains_key("sasl.mechanism") {
                        set.push(("sasl.mechanism".into(), mechanism.into(), pos));
                    }
                    set.push(("sasl.username".into(), user, pos));
                    set.push(("sasl.password".into(), password, pos));
                }
                None => errors.push((
                    k.to_owned(),
                    at(properties, k),
                    "an unsupported login module: PlainLoginModule and ScramLoginModule are translated; set librdkafka's sasl.* properties for others".into(),
                )),
            }
        } else if k == "sasl.jaas.config.username" || k == "sasl.jaas.config.password" {
            removed.push(key.clone());
            if !properties.0.contains_key("sasl.jaas.config.module") && !value.is_empty() {
                errors.push((
                    k.to_owned(),
                    at(properties, k),
                    "needs `sasl.jaas.config.module` (the login module)".into(),
                ));
            }
        } else if k.starts_with("ssl.") && !tls && !k.starts_with("ssl.endpoint") {
            ignore(
                properties,
                k,
                format!(
                    "security.protocol is {}: TLS is not used",
                    if protocol.is_empty() {
                        "PLAINTEXT"
                    } else {
                        &protocol
                    }
                ),
            );
            removed.push(key.clone());
        } else if k == "ssl.endpoint.identification.algorithm" {
            removed.push(key.clone());
            let v = value.trim().to_ascii_lowercase();
            if !tls {
                ignore(
                    properties,
                    k,
                    "TLS is not used by this security.protocol".into(),
                );
            } else if v.is_empty() || v == "none" {
                set.push((k.to_owned(), "none".into(), at(properties, k)));
            } else if v == "https" {
                set.push((k.to_owned(), "https".into(), at(properties, k)));
            } else {
                errors.push((
                    k.to_owned(),
                    at(properties, k),
                    "librdkafka knows `https` and `none` (empty in Java)".into(),
                ));
            }
        } else if k.starts_with("ssl.truststore.")
            || k.starts_with("ssl.keystore.")
            || k == "ssl.key.password"
        {
            removed.push(key.clone());
        }
    }
    // Stores, once all their keys are known.
    if tls {
        stores(dir, properties, &mut set, &mut errors, &mut ignore);
    }
    for key in removed {
        properties.0.remove(&key);
    }
    for (key, value, pos) in set {
        properties.1.at.insert(key.clone(), pos);
        properties.0.insert(key, Scalar::Text(value));
    }
    // What librdkafka still rejects, each with its position.
    for (key, value) in properties.0.iter() {
        if role == Role::Consumer && key == "max.poll.records" {
            if value.to_string().trim().parse::<usize>().is_err() {
                errors.push((key.clone(), at(properties, key), "not a number".into()));
            }
            continue;
        }
        let mut config = rdkafka::ClientConfig::new();
        config.set(key.as_str(), value.to_string());
        if let Err(rdkafka::error::KafkaError::ClientConfig(code, ..)) =
            config.create_native_config()
        {
            let why = if code == rdkafka::types::RDKafkaConfRes::RD_KAFKA_CONF_UNKNOWN {
                "librdkafka has no such property (a Java-only setting? see the README's \"Moving from Java light-kafka\")"
            } else {
                "librdkafka rejects its value"
            };
            errors.push((key.clone(), at(properties, key), why.into()));
        }
    }
    if errors.is_empty() {
        return Ok(out);
    }
    errors.sort_by_key(|e| e.1);
    let list: Vec<String> = errors
        .iter()
        .map(|(key, (line, column), why)| {
            format!("{}:{line}:{column}: `{key}`: {why}", file.display())
        })
        .collect();
    let first = errors[0].1;
    Err(ConfigError::new(
        ConfigErrorKind::Invalid,
        file,
        first,
        format!(
            "{} propert{} cannot be used: {}",
            errors.len(),
            if errors.len() == 1 { "y" } else { "ies" },
            list.join("; ")
        ),
    ))
}
