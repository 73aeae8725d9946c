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
            } else if (key.starts_with("ssl.")
                || key.starts_with("sasl.")
                || key == "security.protocol")
                && !tls_built()
            {
                "this librdkafka was built without OpenSSL: enable rdkafka's `ssl` (or `ssl-vendored`) feature"
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

/// Whether this librdkafka can do TLS.
pub(crate) fn tls_built() -> bool {
    let mut config = rdkafka::ClientConfig::new();
    config.set("security.protocol", "ssl");
    config.create_native_config().is_ok()
}

/// The librdkafka mechanism of a Java login module.
fn mechanism_of(module: &str) -> Option<&'static str> {
    match module.rsplit('.').next() {
        Some("PlainLoginModule") => Some("PLAIN"),
        Some("ScramLoginModule") => Some("SCRAM-SHA-512"),
        _ => None,
    }
}

/// `<module> required username="..." password="...";` into its parts.
fn parse_jaas(value: &str) -> Result<Option<(&'static str, String, String)>, &'static str> {
    let value = value.trim();
    if value.is_empty() {
        return Ok(None);
    }
    let (module, rest) = value
        .split_once(char::is_whitespace)
        .ok_or("not a JAAS login line (`<module> required username=\"...\" password=\"...\";`)")?;
    let mechanism = mechanism_of(module).ok_or(
        "an unsupported login module: PlainLoginModule and ScramLoginModule are translated; set librdkafka's sasl.* properties for others",
    )?;
    let option = |name: &str| -> Option<String> {
        let start = rest.find(&format!("{name}=\""))? + name.len() + 2;
        let mut out = String::new();
        let mut chars = rest[start..].chars();
        while let Some(c) = chars.next() {
            match c {
                '\\' => out.push(chars.next()?),
                '"' => return Some(out),
                c => out.push(c),
            }
        }
        None
    };
    let user = option("username").ok_or("the JAAS line has no username=\"...\"")?;
    let password = option("password").ok_or("the JAAS line has no password=\"...\"")?;
    Ok(Some((mechanism, user, password)))
}

/// The kind of a key or trust store.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Store {
    Pem,
    Pkcs12,
    Jks,
}

fn store_kind(declared: Option<&str>, location: &str) -> Option<Store> {
    match declared.map(|t| t.trim().to_ascii_uppercase()).as_deref() {
        Some("PEM") => return Some(Store::Pem),
        Some("PKCS12" | "P12") => return Some(Store::Pkcs12),
        Some("JKS") => return Some(Store::Jks),
        _ => {}
    }
    let lower = location.to_ascii_lowercase();
    if lower.ends_with(".jks") {
        Some(Store::Jks)
    } else if lower.ends_with(".p12") || lower.ends_with(".pfx") {
        Some(Store::Pkcs12)
    } else if [".pem", ".crt", ".cer", ".key"]
        .iter()
        .any(|e| lower.ends_with(e))
    {
        Some(Store::Pem)
    } else {
        // Java's default store type is JKS; the file's first bytes tell.
        match std::fs::read(location).ok()?.get(..4)? {
            [0xFE, 0xED, 0xFE, 0xED] => Some(Store::Jks),
            [b'-', b'-', b'-', b'-'] => Some(Store::Pem),
            [0x30, ..] => Some(Store::Pkcs12),
            _ => None,
        }
    }
}

const JKS: &str = "a JKS store, which librdkafka cannot read: convert it with `keytool -importkeystore -srcstoretype JKS -deststoretype PKCS12 -srckeystore <store>.jks -destkeystore <store>.p12` (then, for a truststore, `openssl pkcs12 -in <store>.p12 -nokeys -out ca.pem`)";

type Errors = Vec<(String, (u64, u64), String)>;

fn stores(
    dir: &Path,
    p: &Properties,
    set: &mut Vec<(String, String, (u64, u64))>,
    errors: &mut Errors,
    ignore: &mut dyn FnMut(&Properties, &str, String),
) {
    let get = |k: &str| {
        p.0.get(k)
            .map(ToString::to_string)
            .filter(|v| !v.is_empty())
    };
    let at = |k: &str| p.position(k).unwrap_or((0, 0));
    // A relative store is looked for next to the config files first.
    let place = |location: String| -> String {
        let path = Path::new(&location);
        let local = dir.join(path);
        if path.is_relative() && local.exists() {
            local.to_string_lossy().into_owned()
        } else {
            location
        }
    };
    let get_path = |k: &str| get(k).map(place);
    if let Some(location) = get_path("ssl.truststore.location") {
        let key = "ssl.truststore.location";
        match store_kind(get("ssl.truststore.type").as_deref(), &location) {
            Some(Store::Pem) => set.push(("ssl.ca.location".into(), location, at(key))),
            Some(Store::Jks) => errors.push((key.into(), at(key), JKS.into())),
            Some(Store::Pkcs12) => errors.push((key.into(), at(key), "a PKCS#12 truststore, which librdkafka cannot read: `openssl pkcs12 -in <store>.p12 -nokeys -out ca.pem` and point to ca.pem (type PEM)".into())),
            None => errors.push((key.into(), at(key), "the store's type is unknown (no such file, or neither PEM, PKCS#12 nor JKS): set ssl.truststore.type to PEM".into())),
        }
        if get("ssl.truststore.password").is_some() {
            ignore(
                p,
                "ssl.truststore.password",
                "a PEM CA file needs no password".into(),
            );
        }
    }
    if let Some(location) = get_path("ssl.keystore.location") {
        let key = "ssl.keystore.location";
        match store_kind(get("ssl.keystore.type").as_deref(), &location) {
            Some(Store::Pkcs12) => {
                set.push((key.into(), location, at(key)));
                if let Some(password) = get("ssl.keystore.password") {
                    set.push(("ssl.keystore.password".into(), password, at("ssl.keystore.password")));
                }
                if get("ssl.key.password").is_some() {
                    ignore(p, "ssl.key.password", "a PKCS#12 keystore is opened with ssl.keystore.password".into());
                }
            }
            Some(Store::Pem) => {
                set.push(("ssl.certificate.location".into(), location.clone(), at(key)));
                set.push(("ssl.key.location".into(), location, at(key)));
                if let Some(password) = get("ssl.key.password").or_else(|| get("ssl.keystore.password")) {
                    set.push(("ssl.key.password".into(), password, at("ssl.key.password")));
                }
            }
            Some(Store::Jks) => errors.push((key.into(), at(key), JKS.into())),
            None => errors.push((key.into(), at(key), "the store's type is unknown (no such file, or neither PEM, PKCS#12 nor JKS): set ssl.keystore.type to PKCS12 or PEM".into())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jaas_lines_give_mechanism_user_and_password() {
        let (m, u, p) = parse_jaas(r#"org.apache.kafka.common.security.scram.ScramLoginModule required username="alice" password="p\"w";"#)
            .unwrap()
            .unwrap();
        assert_eq!(
            (m, u.as_str(), p.as_str()),
            ("SCRAM-SHA-512", "alice", "p\"w")
        );
        assert!(parse_jaas("com.sun.security.auth.module.Krb5LoginModule required;").is_err());
        assert_eq!(parse_jaas("").unwrap(), None);
    }
}
