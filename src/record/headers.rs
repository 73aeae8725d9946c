//! Ordered Kafka record headers.
//!
//! Kafka headers are an ordered list of `(name, value)` pairs in which a name may
//! repeat and a value may be null. [`Headers`] keeps exactly that: nothing is
//! merged, reordered or dropped. Lookups compare names ASCII-case-insensitively,
//! because the identity headers this crate carries cross HTTP (where names are
//! case-insensitive) and Kafka (where they are not); the stored spelling is kept.
//!
//! ```
//! use light_kafka::record::Headers;
//!
//! let mut headers = Headers::new();
//! headers.append("X-Correlation-Id", "c-1");
//! headers.append("hop", "a");
//! headers.append("hop", "b");
//! headers.append_null("deleted-by");
//!
//! assert_eq!(headers.get_str("x-correlation-id"), Some("c-1"));
//! assert_eq!(headers.get("hop"), Some(&b"b"[..])); // the last one wins, as in Kafka's lastHeader
//! assert_eq!(headers.get_all("hop").count(), 2);
//! assert!(headers.contains("deleted-by"));
//! assert_eq!(headers.get("deleted-by"), None);
//! assert_eq!(headers.len(), 4);
//! ```

use std::fmt;
use std::sync::Arc;

use bytes::Bytes;

/// The name of a header: a `&'static str` or a shared string, cheap to clone.
#[derive(Clone)]
pub struct HeaderName(Repr);

#[derive(Clone)]
enum Repr {
    Static(&'static str),
    Shared(Arc<str>),
}

impl HeaderName {
    /// A name from a static string, without allocating.
    ///
    /// ```
    /// # use light_kafka::record::HeaderName;
    /// const NAME: HeaderName = HeaderName::from_static("X-Correlation-Id");
    /// assert_eq!(NAME.as_str(), "X-Correlation-Id");
    /// ```
    pub const fn from_static(name: &'static str) -> Self {
        HeaderName(Repr::Static(name))
    }

    /// The name as a string slice.
    pub fn as_str(&self) -> &str {
        match &self.0 {
            Repr::Static(s) => s,
            Repr::Shared(s) => s,
        }
    }

    /// Whether this name equals `other`, ignoring ASCII case.
    pub fn matches(&self, other: &str) -> bool {
        self.as_str().eq_ignore_ascii_case(other)
    }

    /// Interns a borrowed name: well-known names reuse their static spelling,
    /// others are copied once.
    pub(crate) fn intern(name: &str) -> Self {
        match super::names::well_known(name) {
            Some(known) if known == name => HeaderName::from_static(known),
            _ => HeaderName(Repr::Shared(Arc::from(name))),
        }
    }
}

impl From<&'static str> for HeaderName {
    fn from(name: &'static str) -> Self {
        HeaderName::from_static(name)
    }
}

impl From<String> for HeaderName {
    fn from(name: String) -> Self {
        HeaderName(Repr::Shared(Arc::from(name)))
    }
}

impl From<&String> for HeaderName {
    fn from(name: &String) -> Self {
        HeaderName::intern(name)
    }
}

impl AsRef<str> for HeaderName {
    fn as_ref(&self) -> &str {
        self.as_str()
    }
}

impl PartialEq for HeaderName {
    fn eq(&self, other: &Self) -> bool {
        self.as_str() == other.as_str()
    }
}

impl Eq for HeaderName {}

impl fmt::Debug for HeaderName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self.as_str(), f)
    }
}

impl fmt::Display for HeaderName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One header: a name and an optional (nullable) value.
#[derive(Clone, PartialEq, Eq)]
pub struct Header {
    name: HeaderName,
    value: Option<Bytes>,
}

impl Header {
    /// A header with a value.
    pub fn new(name: impl Into<HeaderName>, value: impl Into<Bytes>) -> Self {
        Header {
            name: name.into(),
            value: Some(value.into()),
        }
    }

    /// A header whose value is null.
    pub fn null(name: impl Into<HeaderName>) -> Self {
        Header {
            name: name.into(),
            value: None,
        }
    }

    /// The header name.
    pub fn name(&self) -> &str {
        self.name.as_str()
    }

    /// The value, or `None` when it is null.
    pub fn value(&self) -> Option<&Bytes> {
        self.value.as_ref()
    }

    /// The value as UTF-8, or `None` when it is null or not UTF-8.
    pub fn value_str(&self) -> Option<&str> {
        self.value
            .as_deref()
            .and_then(|v| std::str::from_utf8(v).ok())
    }
}

impl fmt::Debug for Header {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut d = f.debug_tuple("Header");
        d.field(&self.name);
        if super::names::is_sensitive(self.name.as_str()) {
            d.field(&"<redacted>");
        } else {
            match &self.value {
                None => d.field(&None::<()>),
                Some(v) => match std::str::from_utf8(v) {
                    Ok(s) => d.field(&s),
                    Err(_) => d.field(v),
                },
            };
        }
        d.finish()
    }
}

/// The ordered headers of a record.
///
/// `Debug` output redacts the values of sensitive headers (`authorization`), so a
/// record can be logged without leaking its token.
///
/// Cloning is cheap: the entries are shared until one of the clones changes
/// them (copy on write), so the layers that keep a copy of a record (retry,
/// dead letters) do not copy its headers.
#[derive(Clone, Default)]
pub struct Headers {
    /// `None` while there are none (no allocation for a record without headers).
    entries: Option<Arc<Vec<Header>>>,
}

impl PartialEq for Headers {
    fn eq(&self, other: &Headers) -> bool {
        self.slice() == other.slice()
    }
}

impl Eq for Headers {}

impl Headers {
    fn slice(&self) -> &[Header] {
        self.entries.as_deref().map_or(&[], Vec::as_slice)
    }

    /// The entries to change, copied first when shared.
    fn vec_mut(&mut self) -> &mut Vec<Header> {
        Arc::make_mut(self.entries.get_or_insert_with(Default::default))
    }

    /// No headers.
    pub const fn new() -> Self {
        Headers { entries: None }
    }

    /// No headers, with room for `capacity` of them.
    pub fn with_capacity(capacity: usize) -> Self {
        Headers {
            entries: (capacity > 0).then(|| Arc::new(Vec::with_capacity(capacity))),
        }
    }

    /// The number of headers, counting repeats and nulls.
    pub fn len(&self) -> usize {
        self.slice().len()
    }

    /// Whether there are no headers.
    pub fn is_empty(&self) -> bool {
        self.slice().is_empty()
    }

    /// Adds a header at the end, keeping any with the same name.
    pub fn append(&mut self, name: impl Into<HeaderName>, value: impl Into<Bytes>) {
        self.vec_mut().push(Header::new(name, value));
    }

    /// Adds a header with a null value at the end.
    pub fn append_null(&mut self, name: impl Into<HeaderName>) {
        self.vec_mut().push(Header::null(name));
    }

    /// Adds a prepared header at the end.
    pub fn push(&mut self, header: Header) {
        self.vec_mut().push(header);
    }

    /// Replaces every header named `name` with one header holding `value`.
    ///
    /// ```
    /// # use light_kafka::record::Headers;
    /// let mut h = Headers::new();
    /// h.append("a", "1");
    /// h.append("a", "2");
    /// h.insert("A", "3");
    /// assert_eq!(h.get_all("a").count(), 1);
    /// assert_eq!(h.get_str("a"), Some("3"));
    /// ```
    pub fn insert(&mut self, name: impl Into<HeaderName>, value: impl Into<Bytes>) {
        let header = Header::new(name, value);
        self.vec_mut().retain(|h| !h.name.matches(header.name()));
        self.vec_mut().push(header);
    }

    /// Removes every header named `name`, returning how many were removed.
    pub fn remove(&mut self, name: &str) -> usize {
        if !self.contains(name) {
            return 0;
        }
        let before = self.len();
        self.vec_mut().retain(|h| !h.name.matches(name));
        before - self.len()
    }

    /// Whether a header named `name` is present (even with a null value).
    pub fn contains(&self, name: &str) -> bool {
        self.slice().iter().any(|h| h.name.matches(name))
    }

    /// The value of the last header named `name`, or `None` when there is none
    /// or its value is null.
    pub fn get(&self, name: &str) -> Option<&[u8]> {
        self.last(name).and_then(|h| h.value.as_deref())
    }

    /// Like [`Headers::get`], as a shared [`Bytes`].
    pub fn get_bytes(&self, name: &str) -> Option<&Bytes> {
        self.last(name).and_then(|h| h.value.as_ref())
    }

    /// The value of the last header named `name` as UTF-8, or `None` when it is
    /// absent, null, or not UTF-8. Use [`Headers::get_utf8`] to tell these apart.
    pub fn get_str(&self, name: &str) -> Option<&str> {
        self.get(name).and_then(|v| std::str::from_utf8(v).ok())
    }

    /// The value of the last header named `name` as UTF-8: `Ok(None)` when it is
    /// absent or null, an error when it is not UTF-8.
    ///
    /// # Errors
    ///
    /// [`std::str::Utf8Error`] when the value is not valid UTF-8.
    ///
    /// ```
    /// # use light_kafka::record::Headers;
    /// let mut h = Headers::new();
    /// h.append("bad", vec![0xff, 0xfe]);
    /// assert!(h.get_utf8("bad").is_err());
    /// assert_eq!(h.get_utf8("missing").unwrap(), None);
    /// ```
    pub fn get_utf8(&self, name: &str) -> Result<Option<&str>, std::str::Utf8Error> {
        self.get(name).map(std::str::from_utf8).transpose()
    }

    /// Every header named `name`, in order; a null value is `None`.
    pub fn get_all<'a>(&'a self, name: &'a str) -> impl Iterator<Item = Option<&'a [u8]>> + 'a {
        self.slice()
            .iter()
            .filter(move |h| h.name.matches(name))
            .map(|h| h.value.as_deref())
    }

    /// All headers in order.
    pub fn iter(&self) -> std::slice::Iter<'_, Header> {
        self.slice().iter()
    }

    fn last(&self, name: &str) -> Option<&Header> {
        self.slice().iter().rev().find(|h| h.name.matches(name))
    }
}

impl<'a> IntoIterator for &'a Headers {
    type Item = &'a Header;
    type IntoIter = std::slice::Iter<'a, Header>;

    fn into_iter(self) -> Self::IntoIter {
        self.slice().iter()
    }
}

impl FromIterator<Header> for Headers {
    fn from_iter<T: IntoIterator<Item = Header>>(iter: T) -> Self {
        let entries: Vec<Header> = iter.into_iter().collect();
        Headers {
            entries: (!entries.is_empty()).then(|| Arc::new(entries)),
        }
    }
}

impl Extend<Header> for Headers {
    fn extend<T: IntoIterator<Item = Header>>(&mut self, iter: T) {
        self.vec_mut().extend(iter);
    }
}

impl fmt::Debug for Headers {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.slice().iter()).finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clones_share_until_one_changes() {
        let mut a = Headers::new();
        assert!(a.entries.is_none(), "no allocation without headers");
        a.append("x", "1");
        let mut b = a.clone();
        assert!(Arc::ptr_eq(
            a.entries.as_ref().unwrap(),
            b.entries.as_ref().unwrap()
        ));
        b.append("y", "2");
        assert_eq!((a.len(), b.len()), (1, 2), "the clone changed alone");
        assert_eq!(a.get_str("y"), None);
        assert_eq!(b.remove("nope"), 0);
        assert_eq!(Headers::new(), Headers::with_capacity(4), "empty is empty");
    }

    #[test]
    fn keeps_order_duplicates_and_nulls() {
        let mut h = Headers::new();
        h.append("a", "1");
        h.append_null("b");
        h.append("a", "2");
        let names: Vec<_> = h.iter().map(Header::name).collect();
        assert_eq!(names, ["a", "b", "a"]);
        assert_eq!(
            h.get_all("a").collect::<Vec<_>>(),
            [Some(&b"1"[..]), Some(&b"2"[..])]
        );
        assert_eq!(h.get_all("b").collect::<Vec<_>>(), [None]);
    }

    #[test]
    fn remove_is_case_insensitive() {
        let mut h = Headers::new();
        h.append("Trace", "1");
        h.append("trace", "2");
        h.append("other", "3");
        assert_eq!(h.remove("TRACE"), 2);
        assert_eq!(h.len(), 1);
    }

    #[test]
    fn debug_redacts_authorization() {
        let mut h = Headers::new();
        h.append("authorization", "Bearer secret-token");
        h.append("x", "visible");
        let shown = format!("{h:?}");
        assert!(!shown.contains("secret-token"), "{shown}");
        assert!(shown.contains("visible"));
    }

    #[test]
    fn well_known_names_are_interned() {
        let name = HeaderName::intern("X-Correlation-Id");
        assert!(matches!(name.0, Repr::Static(_)));
        let other = HeaderName::intern("x-correlation-id");
        assert!(matches!(other.0, Repr::Shared(_)));
    }
}
