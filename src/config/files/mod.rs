//! The files of a config directory, with light-kafka's and light-4j's names
//! and keys. Unknown keys are errors; keys of the Java implementation that
//! have no meaning here are accepted, listed in [`Config::ignored`] with
//! their reason, and logged once per load.
//!
//! [`Config::ignored`]: super::Config::ignored

mod handler;
mod jaas;
mod kafka;
mod layers;
mod properties;
mod stores;

use std::fmt;

use serde::Deserialize;

pub(crate) use handler::java_handler;
pub use handler::{HandlerFile, Route};
pub use kafka::{ConsumerFile, ProducerFile, StreamsFile};
pub use layers::{
    AuditFile, AuditTarget, CertificateMap, JwtSection, Mask, MetricsFile, RetryFile, SchemaFile,
    SecurityFile, SwitchFile,
};
pub use properties::{Properties, RegistrySettings};
pub(crate) use properties::{Role, translate};

/// A librdkafka property value: YAML scalars of any type, passed on as text
/// (a plain scalar as written: `007` stays `007`).
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(untagged)]
pub enum Scalar {
    /// `true` / `false`.
    Bool(bool),
    /// An integer.
    Int(i64),
    /// A number with a fraction.
    Float(f64),
    /// Text.
    Text(String),
}

impl fmt::Display for Scalar {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Scalar::Bool(b) => write!(f, "{b}"),
            Scalar::Int(i) => write!(f, "{i}"),
            Scalar::Float(x) => write!(f, "{x}"),
            Scalar::Text(s) => f.write_str(s),
        }
    }
}

/// A key (or a whole file) of the Java implementation that was found, is
/// accepted, and is not applied here: where, and why.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct Ignored {
    /// The file's name (`kafka-consumer.yml`).
    pub file: String,
    /// The key (`waitPeriod`, `properties.key.deserializer`), or `*` for a
    /// whole file.
    pub key: String,
    /// The line (1-based; 0 for a whole file).
    pub line: u64,
    /// The column (1-based; 0 for a whole file).
    pub column: u64,
    /// Why it does not apply, or what it was mapped to.
    pub reason: String,
}

impl fmt::Display for Ignored {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}:{}:{}: `{}`: {}",
            self.file, self.line, self.column, self.key, self.reason
        )
    }
}

/// Whether a property's value is a secret.
pub(crate) fn is_secret(key: &str) -> bool {
    let key = key.to_ascii_lowercase();
    [
        "password",
        "secret",
        "token",
        "jaas",
        "key.pem",
        "credentials",
        "user.info",
        "sasl.username",
    ]
    .iter()
    .any(|s| key.contains(s))
}

/// A Java key that is accepted and not applied: its value's location.
pub(crate) type Unused = Option<serde_saphyr::Spanned<serde::de::IgnoredAny>>;

/// Implements `ignored_keys` and `ignored` for a file struct from its
/// [`Unused`] fields, each with its reason.
macro_rules! java_keys {
    ($ty:ty { $($field:ident => $key:literal : $reason:expr),* $(,)? }) => {
        impl $ty {
            /// The keys of the Java file present here and not applied (see
            /// [`Config::ignored`](crate::config::Config::ignored) for
            /// positions and reasons).
            pub fn ignored_keys(&self) -> Vec<&'static str> {
                let mut keys = Vec::new();
                $( if self.$field.is_some() { keys.push($key); } )*
                keys
            }

            pub(crate) fn unused(&self) -> Vec<(&'static str, serde_saphyr::Location, &'static str)> {
                let mut out = Vec::new();
                $( if let Some(s) = &self.$field { out.push(($key, s.referenced, $reason)); } )*
                out
            }
        }
    };
}
pub(crate) use java_keys;

/// Lenient scalars: a value that stands for a number or a flag may be text
/// (a `${VAR}` from the environment is text); it is parsed, and an error
/// says where, never what.
pub(crate) mod lenient {
    use std::collections::BTreeMap;
    use std::fmt;
    use std::marker::PhantomData;
    use std::str::FromStr;

    use serde::Deserialize;
    use serde::de::{self, DeserializeOwned, Deserializer, IntoDeserializer, Visitor};

    struct Parse<T>(&'static str, PhantomData<T>);

    impl<'de, T: FromStr + TryFrom<u64> + TryFrom<i64>> Visitor<'de> for Parse<T> {
        type Value = Option<T>;
        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str(self.0)
        }
        fn visit_u64<E: de::Error>(self, v: u64) -> Result<Option<T>, E> {
            T::try_from(v)
                .map(Some)
                .map_err(|_| E::custom(format!("not {}: out of range", self.0)))
        }
        fn visit_i64<E: de::Error>(self, v: i64) -> Result<Option<T>, E> {
            T::try_from(v)
                .map(Some)
                .map_err(|_| E::custom(format!("not {}: out of range", self.0)))
        }
        fn visit_str<E: de::Error>(self, v: &str) -> Result<Option<T>, E> {
            let v = v.trim();
            if v.is_empty() {
                return Ok(None);
            }
            v.parse()
                .map(Some)
                .map_err(|_| E::custom(format!("not {}", self.0)))
        }
        fn visit_unit<E: de::Error>(self) -> Result<Option<T>, E> {
            Ok(None)
        }
        fn visit_none<E: de::Error>(self) -> Result<Option<T>, E> {
            Ok(None)
        }
    }

    /// An optional number (text is parsed; empty text is none).
    pub(crate) fn number<'de, D, T>(d: D) -> Result<Option<T>, D::Error>
    where
        D: Deserializer<'de>,
        T: FromStr + TryFrom<u64> + TryFrom<i64>,
    {
        d.deserialize_any(Parse::<T>("a whole number", PhantomData))
    }

    struct Flag;

    impl<'de> Visitor<'de> for Flag {
        type Value = Option<bool>;
        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("true or false")
        }
        fn visit_bool<E: de::Error>(self, v: bool) -> Result<Option<bool>, E> {
            Ok(Some(v))
        }
        fn visit_str<E: de::Error>(self, v: &str) -> Result<Option<bool>, E> {
            match v.trim().to_ascii_lowercase().as_str() {
                "" => Ok(None),
                "true" => Ok(Some(true)),
                "false" => Ok(Some(false)),
                _ => Err(E::custom("not true or false")),
            }
        }
        fn visit_unit<E: de::Error>(self) -> Result<Option<bool>, E> {
            Ok(None)
        }
        fn visit_none<E: de::Error>(self) -> Result<Option<bool>, E> {
            Ok(None)
        }
        fn visit_i64<E: de::Error>(self, _: i64) -> Result<Option<bool>, E> {
            Err(E::custom("not true or false"))
        }
        fn visit_u64<E: de::Error>(self, _: u64) -> Result<Option<bool>, E> {
            Err(E::custom("not true or false"))
        }
        fn visit_f64<E: de::Error>(self, _: f64) -> Result<Option<bool>, E> {
            Err(E::custom("not true or false"))
        }
        fn visit_seq<A: de::SeqAccess<'de>>(self, _: A) -> Result<Option<bool>, A::Error> {
            Err(de::Error::custom("not true or false: a list"))
        }
        fn visit_map<A: de::MapAccess<'de>>(self, _: A) -> Result<Option<bool>, A::Error> {
            Err(de::Error::custom("not true or false: a map"))
        }
    }

    /// A flag that is true unless the file says false.
    pub(crate) fn flag_true<'de, D: Deserializer<'de>>(d: D) -> Result<bool, D::Error> {
        Ok(d.deserialize_any(Flag)?.unwrap_or(true))
    }

    /// A flag that is false unless the file says true.
    pub(crate) fn flag_false<'de, D: Deserializer<'de>>(d: D) -> Result<bool, D::Error> {
        Ok(d.deserialize_any(Flag)?.unwrap_or(false))
    }

    /// Optional text: empty text is none.
    pub(crate) fn text<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
        let s: Option<String> = Option::deserialize(d)?;
        Ok(s.filter(|s| !s.trim().is_empty()))
    }

    /// A list, or the empty text of light-4j's `${x:}` for none.
    pub(crate) fn list<'de, D, T>(d: D) -> Result<Vec<T>, D::Error>
    where
        D: Deserializer<'de>,
        T: Deserialize<'de>,
    {
        struct L<T>(PhantomData<T>);
        impl<'de, T: Deserialize<'de>> Visitor<'de> for L<T> {
            type Value = Vec<T>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a list")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
                if v.trim().is_empty() {
                    return Ok(Vec::new());
                }
                // One value for a list of one.
                let one: Result<T, de::value::Error> = T::deserialize(v.into_deserializer());
                one.map(|t| vec![t]).map_err(|_| E::custom("not a list"))
            }
            fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
                Ok(Vec::new())
            }
            fn visit_seq<A: de::SeqAccess<'de>>(self, mut s: A) -> Result<Self::Value, A::Error> {
                let mut out = Vec::new();
                while let Some(v) = s.next_element::<T>()? {
                    out.push(v);
                }
                Ok(out)
            }
        }
        d.deserialize_any(L(PhantomData))
    }

    /// A map, or the empty text of light-4j's `${x:}` for none.
    pub(crate) fn map<'de, D, V>(d: D) -> Result<BTreeMap<String, V>, D::Error>
    where
        D: Deserializer<'de>,
        V: Deserialize<'de>,
    {
        struct M<V>(PhantomData<V>);
        impl<'de, V: Deserialize<'de>> Visitor<'de> for M<V> {
            type Value = BTreeMap<String, V>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a map")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
                if v.trim().is_empty() {
                    Ok(BTreeMap::new())
                } else {
                    Err(E::custom("not a map"))
                }
            }
            fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
                Ok(BTreeMap::new())
            }
            fn visit_map<A: de::MapAccess<'de>>(self, mut m: A) -> Result<Self::Value, A::Error> {
                let mut out = BTreeMap::new();
                while let Some((k, v)) = m.next_entry::<String, V>()? {
                    out.insert(k, v);
                }
                Ok(out)
            }
        }
        d.deserialize_any(M(PhantomData))
    }

    /// An enum by name (case-insensitive); empty text is the default. The
    /// error lists the names, never the value.
    pub(crate) fn choice<'de, D, T>(d: D) -> Result<T, D::Error>
    where
        D: Deserializer<'de>,
        T: DeserializeOwned + Default + Choices,
    {
        let s: Option<String> = Option::deserialize(d)?;
        let s = s.unwrap_or_default().trim().to_ascii_lowercase();
        if s.is_empty() {
            return Ok(T::default());
        }
        let value: Result<T, de::value::Error> = T::deserialize(s.as_str().into_deserializer());
        value.map_err(|_| de::Error::custom(format!("not one of {}", T::CHOICES)))
    }

    /// The names an enum accepts, for errors.
    pub(crate) trait Choices {
        const CHOICES: &'static str;
    }
}
