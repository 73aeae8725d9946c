//! The HTTP client the layers use for their network calls (a JWKS endpoint,
//! a schema registry), always with a connect and a total timeout: an endpoint
//! that accepts a connection and never answers must not hold a record forever.

use std::time::Duration;

/// Timeouts of one kind of network call. Defaults: 2 s to connect, 5 s in all.
///
/// ```
/// use std::time::Duration;
/// use light_kafka::layers::http_client::Timeouts;
///
/// let timeouts = Timeouts::new(Duration::from_millis(500), Duration::from_secs(2));
/// assert_eq!(timeouts.total(), Duration::from_secs(2));
/// assert_eq!(Timeouts::default().connect(), Duration::from_secs(2));
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Timeouts {
    connect: Duration,
    total: Duration,
}

impl Timeouts {
    /// `connect` to establish the connection, `total` for the whole call.
    pub const fn new(connect: Duration, total: Duration) -> Self {
        Timeouts { connect, total }
    }

    /// The connect timeout.
    pub const fn connect(&self) -> Duration {
        self.connect
    }

    /// The total timeout.
    pub const fn total(&self) -> Duration {
        self.total
    }

    /// A client with these timeouts, or why none could be built.
    pub(crate) fn client(&self) -> Result<reqwest::Client, String> {
        reqwest::Client::builder()
            .connect_timeout(self.connect)
            .timeout(self.total)
            .build()
            .map_err(|e| format!("cannot build the HTTP client: {e}"))
    }
}

impl Default for Timeouts {
    fn default() -> Self {
        Timeouts::new(Duration::from_secs(2), Duration::from_secs(5))
    }
}
