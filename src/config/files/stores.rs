//! Java trust and key stores (`ssl.truststore.*`, `ssl.keystore.*`,
//! `ssl.key.password`) as librdkafka's PEM and PKCS#12 settings.

use std::path::Path;

use super::properties::Properties;

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

pub(super) type Errors = Vec<(String, (u64, u64), String)>;

pub(super) fn stores(
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
