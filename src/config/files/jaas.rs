//! `sasl.jaas.config` lines of the Java client, read for librdkafka's
//! `sasl.mechanism`, `sasl.username` and `sasl.password`.

/// The librdkafka mechanism of a Java login module.
pub(super) fn mechanism_of(module: &str) -> Option<&'static str> {
    match module.rsplit('.').next() {
        Some("PlainLoginModule") => Some("PLAIN"),
        Some("ScramLoginModule") => Some("SCRAM-SHA-512"),
        _ => None,
    }
}

/// `<module> required username="..." password="...";` into its parts.
pub(super) fn parse_jaas(
    value: &str,
) -> Result<Option<(&'static str, String, String)>, &'static str> {
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
