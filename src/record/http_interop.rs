//! Moving selected headers between a record and an [`http::HeaderMap`].
//!
//! Kafka header values are arbitrary bytes; HTTP header values are not (no control
//! characters, no newlines). Copying to HTTP therefore can fail, and does so with
//! a [`HeaderConversionError`] naming the header (never its value, which may be a
//! token). Null Kafka values have no HTTP form and are skipped. Copying from HTTP
//! always succeeds; well-known names get their canonical Kafka spelling
//! (`x-correlation-id` becomes `X-Correlation-Id`).
//!
//! ```
//! use http::HeaderMap;
//! use light_kafka::record::{names, Headers, Record};
//!
//! let mut incoming = HeaderMap::new();
//! incoming.insert("x-correlation-id", "c-9".parse()?);
//! incoming.insert("user-agent", "curl".parse()?);
//!
//! let headers = Headers::from_header_map(&incoming, names::PROPAGATED);
//! assert_eq!(headers.iter().next().unwrap().name(), "X-Correlation-Id");
//! assert!(!headers.contains("user-agent"));
//!
//! let record = Record::builder("t").headers(headers).header("bad", "line\nbreak").build();
//! let outgoing = record.headers().to_header_map([names::CORRELATION_ID])?;
//! assert_eq!(outgoing["x-correlation-id"], "c-9");
//! assert!(record.headers().to_header_map(["bad"]).is_err());
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use std::fmt;

use bytes::Bytes;
use http::{HeaderMap, HeaderValue};

use super::{Header, HeaderName, Headers, names};

/// Why a Kafka header could not become an HTTP header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum HeaderConversionErrorReason {
    /// The name is not a valid HTTP header name.
    InvalidName,
    /// The value contains bytes HTTP does not allow in a header value.
    InvalidValue,
}

/// A header that has no valid HTTP form.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HeaderConversionError {
    name: String,
    reason: HeaderConversionErrorReason,
}

impl HeaderConversionError {
    /// The offending header's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// What was wrong with it.
    pub fn reason(&self) -> HeaderConversionErrorReason {
        self.reason
    }
}

impl fmt::Display for HeaderConversionError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.reason {
            HeaderConversionErrorReason::InvalidName => {
                write!(
                    f,
                    "header name {:?} is not a valid HTTP header name",
                    self.name
                )
            }
            HeaderConversionErrorReason::InvalidValue => write!(
                f,
                "the value of header {:?} is not a valid HTTP header value",
                self.name
            ),
        }
    }
}

impl std::error::Error for HeaderConversionError {}

impl Headers {
    /// Copies the headers whose names are in `selected` (ASCII-case-insensitive)
    /// into a new [`HeaderMap`], keeping repeats. Null values are skipped.
    ///
    /// # Errors
    ///
    /// A [`HeaderConversionError`] for the first selected header whose name or
    /// value is not valid in HTTP.
    pub fn to_header_map<'a>(
        &self,
        selected: impl IntoIterator<Item = &'a str>,
    ) -> Result<HeaderMap, HeaderConversionError> {
        let selected: Vec<&str> = selected.into_iter().collect();
        self.copy_into_header_map(|name| selected.iter().any(|s| s.eq_ignore_ascii_case(name)))
    }

    /// Copies every header into a new [`HeaderMap`], keeping repeats. Null
    /// values are skipped.
    ///
    /// # Errors
    ///
    /// A [`HeaderConversionError`] for the first header whose name or value is not
    /// valid in HTTP.
    pub fn to_header_map_all(&self) -> Result<HeaderMap, HeaderConversionError> {
        self.copy_into_header_map(|_| true)
    }

    fn copy_into_header_map(
        &self,
        keep: impl Fn(&str) -> bool,
    ) -> Result<HeaderMap, HeaderConversionError> {
        let mut map = HeaderMap::new();
        for header in self.iter().filter(|h| keep(h.name())) {
            let Some(value) = header.value() else {
                continue;
            };
            let error = |reason| HeaderConversionError {
                name: header.name().to_owned(),
                reason,
            };
            let name = http::HeaderName::from_bytes(header.name().as_bytes())
                .map_err(|_| error(HeaderConversionErrorReason::InvalidName))?;
            let value = HeaderValue::from_maybe_shared(value.clone())
                .map_err(|_| error(HeaderConversionErrorReason::InvalidValue))?;
            map.append(name, value);
        }
        Ok(map)
    }

    /// Headers copied from the HTTP headers whose names are in `selected`.
    pub fn from_header_map<'a>(
        map: &HeaderMap,
        selected: impl IntoIterator<Item = &'a str>,
    ) -> Headers {
        let mut headers = Headers::new();
        headers.extend_from_header_map(map, selected);
        headers
    }

    /// Appends the HTTP headers whose names are in `selected`, in the map's
    /// order for each name.
    pub fn extend_from_header_map<'a>(
        &mut self,
        map: &HeaderMap,
        selected: impl IntoIterator<Item = &'a str>,
    ) {
        for wanted in selected {
            let name = match names::well_known(wanted) {
                Some(known) => HeaderName::from_static(known),
                None => HeaderName::from(wanted.to_ascii_lowercase()),
            };
            for value in map.get_all(wanted) {
                self.push(Header::new(
                    name.clone(),
                    Bytes::copy_from_slice(value.as_bytes()),
                ));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn invalid_values_and_names_are_errors_not_panics() {
        let mut h = Headers::new();
        h.append("ok", "fine");
        h.append("nul", vec![b'a', 0, b'b']);
        let err = h.to_header_map(["nul"]).unwrap_err();
        assert_eq!(err.reason(), HeaderConversionErrorReason::InvalidValue);
        assert_eq!(err.name(), "nul");

        let mut h = Headers::new();
        h.append(String::from("bad name"), "v");
        let err = h.to_header_map_all().unwrap_err();
        assert_eq!(err.reason(), HeaderConversionErrorReason::InvalidName);
    }

    #[test]
    fn error_message_never_contains_the_value() {
        let mut h = Headers::new();
        h.append(names::AUTHORIZATION, "Bearer abc\ndef");
        let err = h.to_header_map([names::AUTHORIZATION]).unwrap_err();
        assert!(!err.to_string().contains("abc"));
    }

    #[test]
    fn repeats_and_nulls() {
        let mut h = Headers::new();
        h.append("hop", "1");
        h.append_null("hop");
        h.append("hop", "2");
        let map = h.to_header_map(["HOP"]).unwrap();
        let values: Vec<_> = map
            .get_all("hop")
            .iter()
            .map(|v| v.to_str().unwrap())
            .collect();
        assert_eq!(values, ["1", "2"]);

        let back = Headers::from_header_map(&map, ["hop"]);
        assert_eq!(back.get_all("hop").count(), 2);
    }
}
