//! JWT verification: what passes, what is rejected and with which code, JWKS
//! key rotation over loopback HTTP, per-topic scopes, and token hygiene.

mod common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::Engine as _;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use light_kafka::BoxError;
use light_kafka::context::RecordContext;
use light_kafka::error::{ErrorKind, classify};
use light_kafka::layers::jwt::{Claims, JwtError, JwtErrorKind, JwtVerifyLayer, KeySet, KeySource};
use light_kafka::record::{Record, names};
use light_kafka::testkit;
use serde_json::{Value, json};
use tower::{Service, ServiceBuilder, service_fn};

const KEY_A: &[u8] = include_bytes!("fixtures/jwt/key-a.pem");
const KEY_A_PUB: &[u8] = include_bytes!("fixtures/jwt/key-a.pub.pem");
const KEY_B: &[u8] = include_bytes!("fixtures/jwt/key-b.pem");
const ISSUER: &str = "https://auth.example";

fn now() -> u64 {
    jsonwebtoken::get_current_timestamp()
}

fn claims(extra: Value) -> Value {
    let mut base = json!({
        "iss": ISSUER,
        "aud": "kafka",
        "sub": "alice",
        "client_id": "portal",
        "user_id": "alice@example.com",
        "scope": ["order.r", "order.w"],
        "exp": now() + 600,
    });
    base.as_object_mut()
        .unwrap()
        .extend(extra.as_object().unwrap().clone());
    base
}

fn mint(kid: Option<&str>, key: &[u8], claims: &Value) -> String {
    let mut header = Header::new(Algorithm::RS256);
    header.kid = kid.map(str::to_owned);
    jsonwebtoken::encode(&header, claims, &EncodingKey::from_rsa_pem(key).unwrap()).unwrap()
}

fn record(topic: &str, token: &str) -> Record {
    testkit::record(topic)
        .header(names::AUTHORIZATION, format!("Bearer {token}"))
        .header(names::CALLER_ID, "gateway")
        .build()
}

fn keys() -> KeySet {
    KeySet::new().rsa_pem(Some("key-a"), KEY_A_PUB).unwrap()
}

/// A handler that returns what verification left on the record.
fn chain(
    layer: JwtVerifyLayer,
) -> impl Service<Record, Response = (Claims, light_kafka::context::ContextFields), Error = BoxError>
{
    ServiceBuilder::new()
        .layer(layer)
        .service(service_fn(|record: Record| async move {
            let claims = record
                .extensions()
                .get::<Claims>()
                .cloned()
                .expect("claims");
            let fields = RecordContext::get(&record).expect("context").fields();
            Ok::<_, BoxError>((claims, fields))
        }))
}

fn layer() -> light_kafka::layers::jwt::JwtVerifyBuilder {
    JwtVerifyLayer::builder(keys())
        .issuer([ISSUER])
        .audience(["kafka"])
}

async fn rejection(
    svc: &mut (impl Service<Record, Error = BoxError> + Send),
    record: Record,
) -> JwtError {
    let err = testkit::call(svc, record).await.err().expect("rejected");
    err.downcast_ref::<JwtError>().cloned().expect("a JwtError")
}

#[tokio::test]
async fn a_token_minted_here_passes_and_fills_the_context() {
    let mut svc = chain(layer().build());
    let token = mint(Some("key-a"), KEY_A, &claims(json!({})));
    let (claims, fields) = testkit::call(&mut svc, record("orders", &token))
        .await
        .unwrap();
    assert_eq!(claims.subject(), Some("alice"));
    assert_eq!(fields.client_id.as_deref(), Some("portal"));
    assert_eq!(fields.user_id.as_deref(), Some("alice@example.com"));
    assert_eq!(fields.issuer.as_deref(), Some(ISSUER));
    assert_eq!(fields.caller_id.as_deref(), Some("gateway"));
    // Reused: served from the cache, same answer.
    let (again, _) = testkit::call(&mut svc, record("orders", &token))
        .await
        .unwrap();
    assert_eq!(again, claims);
}

#[tokio::test]
async fn expiry_honours_skew_grace_and_can_be_switched_off() {
    let expired = mint(Some("key-a"), KEY_A, &claims(json!({ "exp": now() - 300 })));

    let mut strict = chain(layer().clock_skew(Duration::from_secs(60)).build());
    let err = rejection(&mut strict, record("orders", &expired)).await;
    assert_eq!(
        (err.kind(), err.code()),
        (JwtErrorKind::Expired, "ERR10001")
    );

    let mut graceful = chain(
        layer()
            .clock_skew(Duration::from_secs(60))
            .grace_period(Duration::from_secs(600))
            .build(),
    );
    assert!(
        testkit::call(&mut graceful, record("orders", &expired))
            .await
            .is_ok(),
        "within the grace period"
    );

    let long_gone = mint(
        Some("key-a"),
        KEY_A,
        &claims(json!({ "exp": now() - 3600 })),
    );
    let err = rejection(&mut graceful, record("orders", &long_gone)).await;
    assert_eq!(err.kind(), JwtErrorKind::Expired, "beyond the grace period");

    let mut lenient = chain(layer().skip_expiry_check().build());
    assert!(
        testkit::call(&mut lenient, record("orders", &long_gone))
            .await
            .is_ok(),
        "expiry not checked"
    );
}

fn b64(value: &Value) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(serde_json::to_vec(value).unwrap())
}

#[tokio::test]
async fn forged_and_malformed_tokens_are_rejected_with_the_right_kind() {
    let mut svc = chain(layer().build());
    let good = mint(Some("key-a"), KEY_A, &claims(json!({})));

    // alg=none, unsigned.
    let none = format!(
        "{}.{}.",
        b64(&json!({"alg": "none", "typ": "JWT"})),
        b64(&claims(json!({})))
    );
    // HS256 "signed" with the RSA public key as the HMAC secret: both when HS256 is
    // not allowed and when it is (the key still only verifies RSA algorithms).
    let mut hs_header = Header::new(Algorithm::HS256);
    hs_header.kid = Some("key-a".into());
    let confused = jsonwebtoken::encode(
        &hs_header,
        &claims(json!({})),
        &EncodingKey::from_secret(KEY_A_PUB),
    )
    .unwrap();
    let mut hs_allowed = chain(
        layer()
            .algorithms([Algorithm::RS256, Algorithm::HS256])
            .build(),
    );

    let cases: Vec<(&str, Record, JwtErrorKind)> = vec![
        ("alg=none", record("orders", &none), JwtErrorKind::Invalid),
        (
            "HS256 with the public key",
            record("orders", &confused),
            JwtErrorKind::Invalid,
        ),
        (
            "wrong kid",
            record("orders", &mint(Some("other"), KEY_A, &claims(json!({})))),
            JwtErrorKind::UnknownKey,
        ),
        (
            "wrong signer",
            record("orders", &mint(Some("key-a"), KEY_B, &claims(json!({})))),
            JwtErrorKind::Invalid,
        ),
        (
            "wrong issuer",
            record(
                "orders",
                &mint(
                    Some("key-a"),
                    KEY_A,
                    &claims(json!({"iss": "https://evil"})),
                ),
            ),
            JwtErrorKind::Invalid,
        ),
        (
            "wrong audience",
            record(
                "orders",
                &mint(Some("key-a"), KEY_A, &claims(json!({"aud": "billing"}))),
            ),
            JwtErrorKind::Invalid,
        ),
        (
            "not yet valid",
            record(
                "orders",
                &mint(Some("key-a"), KEY_A, &claims(json!({"nbf": now() + 3600}))),
            ),
            JwtErrorKind::Invalid,
        ),
        (
            "truncated",
            record("orders", &good[..good.len() / 2]),
            JwtErrorKind::Invalid,
        ),
        (
            "garbage",
            record("orders", "not-a-jwt-at-all"),
            JwtErrorKind::Invalid,
        ),
        (
            "non-UTF-8 header",
            testkit::record("orders")
                .header(names::AUTHORIZATION, vec![b'B', 0xff, 0xfe])
                .build(),
            JwtErrorKind::Invalid,
        ),
        (
            "missing",
            testkit::record("orders").build(),
            JwtErrorKind::Missing,
        ),
    ];
    for (what, record, kind) in cases {
        let err = rejection(&mut svc, record).await;
        assert_eq!(err.kind(), kind, "{what}: {err}");
        assert_eq!(classify(&err), ErrorKind::Unauthorized, "{what}");
    }
    let err = rejection(&mut hs_allowed, record("orders", &confused)).await;
    assert_eq!(
        err.kind(),
        JwtErrorKind::Invalid,
        "HS/RS confusion with HS256 allowed: {err}"
    );
    assert_eq!(
        rejection(&mut svc, testkit::record("orders").build())
            .await
            .code(),
        "ERR10002"
    );
    assert_eq!(
        rejection(&mut svc, record("orders", "garbage"))
            .await
            .code(),
        "ERR10000"
    );
}

#[tokio::test]
async fn scopes_are_enforced_per_topic() {
    let mut svc = chain(
        layer()
            .scopes("payments", ["payment.w", "payment.admin"])
            .build(),
    );
    let orders_only = mint(Some("key-a"), KEY_A, &claims(json!({})));
    let payer = mint(Some("key-a"), KEY_A, &claims(json!({"scope": "payment.w"})));

    assert!(
        testkit::call(&mut svc, record("orders", &orders_only))
            .await
            .is_ok(),
        "no scopes required"
    );
    let err = rejection(&mut svc, record("payments", &orders_only)).await;
    assert_eq!(
        (err.kind(), err.code()),
        (JwtErrorKind::ScopeMismatch, "ERR10005")
    );
    assert_eq!(classify(&err), ErrorKind::Forbidden);
    assert!(
        testkit::call(&mut svc, record("payments", &payer))
            .await
            .is_ok()
    );
}

/// A JWKS endpoint on loopback whose document the test can rotate.
struct JwksServer {
    url: String,
    document: Arc<Mutex<String>>,
    requests: Arc<AtomicUsize>,
}

async fn jwks_server(initial: &str) -> JwksServer {
    let document = Arc::new(Mutex::new(initial.to_owned()));
    let requests = Arc::new(AtomicUsize::new(0));
    let app = {
        let (document, requests) = (document.clone(), requests.clone());
        axum::Router::new().route(
            "/jwks.json",
            axum::routing::get(move || {
                let (document, requests) = (document.clone(), requests.clone());
                async move {
                    requests.fetch_add(1, Ordering::SeqCst);
                    document.lock().unwrap().clone()
                }
            }),
        )
    };
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/jwks.json", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    JwksServer {
        url,
        document,
        requests,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_rotate_through_a_jwks_url_with_rate_limited_refresh() {
    let server = jwks_server(include_str!("fixtures/jwt/jwks-a.json")).await;
    let layer = JwtVerifyLayer::builder(KeySource::Jwks {
        url: server.url.clone(),
        refresh_interval: Duration::from_millis(500),
    })
    .issuer([ISSUER])
    .build();
    let mut svc = chain(layer);

    let token_a = mint(Some("key-a"), KEY_A, &claims(json!({})));
    assert!(
        testkit::call(&mut svc, record("orders", &token_a))
            .await
            .is_ok(),
        "first use fetches the keys"
    );
    assert_eq!(server.requests.load(Ordering::SeqCst), 1);

    // The issuer rotates to key B.
    *server.document.lock().unwrap() = include_str!("fixtures/jwt/jwks-ab.json").to_owned();
    let token_b = mint(Some("key-b"), KEY_B, &claims(json!({})));
    let err = rejection(&mut svc, record("orders", &token_b)).await;
    assert_eq!(
        err.kind(),
        JwtErrorKind::UnknownKey,
        "too soon to fetch again"
    );
    assert_eq!(
        server.requests.load(Ordering::SeqCst),
        1,
        "refresh is rate-limited"
    );

    tokio::time::sleep(Duration::from_millis(600)).await;
    assert!(
        testkit::call(&mut svc, record("orders", &token_b))
            .await
            .is_ok(),
        "unknown kid triggers a refresh"
    );
    assert_eq!(server.requests.load(Ordering::SeqCst), 2);
    assert!(
        testkit::call(&mut svc, record("orders", &token_a))
            .await
            .is_ok(),
        "old key still served"
    );

    tokio::time::sleep(Duration::from_millis(600)).await;
    let stranger = mint(Some("key-zzz"), KEY_B, &claims(json!({})));
    assert_eq!(
        rejection(&mut svc, record("orders", &stranger))
            .await
            .kind(),
        JwtErrorKind::UnknownKey
    );
    assert_eq!(
        rejection(&mut svc, record("orders", &stranger))
            .await
            .kind(),
        JwtErrorKind::UnknownKey
    );
    assert_eq!(
        server.requests.load(Ordering::SeqCst),
        3,
        "one refresh for the stranger, then rate-limited"
    );
}

#[tokio::test]
async fn the_token_never_shows_in_errors_logs_or_debug_output() {
    use tracing_subscriber::fmt::MakeWriter;

    #[derive(Clone, Default)]
    struct Capture(Arc<Mutex<Vec<u8>>>);
    impl std::io::Write for Capture {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    impl<'a> MakeWriter<'a> for Capture {
        type Writer = Capture;
        fn make_writer(&'a self) -> Capture {
            self.clone()
        }
    }
    let logs = Capture::default();
    let subscriber = tracing_subscriber::fmt()
        .with_writer(logs.clone())
        .with_max_level(tracing::Level::TRACE)
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);

    let good = mint(Some("key-a"), KEY_A, &claims(json!({})));
    let expired = mint(Some("key-a"), KEY_A, &claims(json!({"exp": now() - 3600})));
    let forged = mint(Some("key-a"), KEY_B, &claims(json!({})));
    let tokens = [&good, &expired, &forged];

    let layer = layer().build();
    let mut svc = chain(layer.clone());
    let mut outputs = vec![format!("{layer:?}")];
    for token in tokens {
        let record = record("orders", token);
        outputs.push(format!("{record:?}"));
        outputs.push(format!(
            "{:?}",
            light_kafka::context::Propagation::from_headers(record.headers())
        ));
        match testkit::call(&mut svc, record).await {
            Ok((claims, fields)) => {
                outputs.push(format!("{claims:?} {fields:?}"));
                tracing::info!(?claims, ?fields, "verified");
            }
            Err(error) => {
                outputs.push(format!("{error} {error:?}"));
                tracing::warn!(%error, ?error, "rejected");
            }
        }
    }
    outputs.push(String::from_utf8(logs.0.lock().unwrap().clone()).unwrap());
    assert!(
        outputs.last().unwrap().contains("rejected"),
        "the logs were captured"
    );
    for token in tokens {
        // Any recognisable part of a token: its signature.
        let signature = token.rsplit('.').next().unwrap();
        for output in &outputs {
            assert!(!output.contains(signature), "token leaked into: {output}");
        }
    }
}

/// Claims the issue's review found accepted: with issuers and audiences
/// configured, a token without `iss` or `aud`, or with `null`, is rejected.
#[tokio::test]
async fn a_token_without_iss_or_aud_is_rejected_when_they_are_required() {
    let mut svc = chain(layer().build());
    for (what, token_claims) in [
        ("no iss", {
            let mut c = claims(json!({}));
            c.as_object_mut().unwrap().remove("iss");
            c
        }),
        ("null iss", claims(json!({ "iss": null }))),
        ("no aud", {
            let mut c = claims(json!({}));
            c.as_object_mut().unwrap().remove("aud");
            c
        }),
        ("null aud", claims(json!({ "aud": null }))),
        (
            "aud of another service",
            claims(json!({ "aud": ["billing", "mail"] })),
        ),
        ("iss not a string", claims(json!({ "iss": 7 }))),
    ] {
        let token = mint(Some("key-a"), KEY_A, &token_claims);
        let err = rejection(&mut svc, record("orders", &token)).await;
        assert_eq!(err.kind(), JwtErrorKind::Invalid, "{what}");
        assert_eq!(err.code(), "ERR10000", "{what}");
    }
    // An array audience naming this service passes.
    let token = mint(
        Some("key-a"),
        KEY_A,
        &claims(json!({ "aud": ["billing", "kafka"] })),
    );
    testkit::call(&mut svc, record("orders", &token))
        .await
        .unwrap();
}

/// Two `authorization` headers are two identities: ambiguous, rejected
/// (not last-wins), even when both tokens are valid.
#[tokio::test]
async fn more_than_one_authorization_header_is_rejected() {
    let mut svc = chain(layer().build());
    let good = mint(Some("key-a"), KEY_A, &claims(json!({})));
    let other = mint(Some("key-a"), KEY_A, &claims(json!({ "sub": "mallory" })));
    let record = testkit::record("orders")
        .header(names::AUTHORIZATION, format!("Bearer {good}"))
        .header("Authorization", format!("Bearer {other}"))
        .build();
    let err = rejection(&mut svc, record).await;
    assert_eq!(err.kind(), JwtErrorKind::Invalid);
    assert!(err.detail().contains("more than one"), "{err}");
}

/// Scopes: a second `.scopes()` for a topic adds to the first; an option
/// rejects topics without a rule.
#[tokio::test]
async fn scope_rules_add_up_and_unscoped_topics_can_be_rejected() {
    let admin = mint(
        Some("key-a"),
        KEY_A,
        &claims(json!({ "scope": "order.admin" })),
    );
    let mut svc = chain(
        layer()
            .scopes("orders", ["order.w"])
            .scopes("orders", ["order.admin"])
            .build(),
    );
    testkit::call(&mut svc, record("orders", &admin))
        .await
        .expect("the second rule for the topic adds, never replaces");
    let writer = mint(Some("key-a"), KEY_A, &claims(json!({})));
    testkit::call(&mut svc, record("orders", &writer))
        .await
        .expect("the first rule still holds");
    testkit::call(&mut svc, record("audit", &writer))
        .await
        .expect("by default a topic without a rule admits any verified token");

    let mut strict = chain(
        layer()
            .scopes("orders", ["order.w"])
            .reject_unscoped_topics()
            .build(),
    );
    testkit::call(&mut strict, record("orders", &writer))
        .await
        .unwrap();
    let err = rejection(&mut strict, record("audit", &writer)).await;
    assert_eq!(err.kind(), JwtErrorKind::ScopeMismatch);
    assert!(err.detail().contains("no scope rule"), "{err}");
}

/// RFC 7519 NumericDates need not be integers.
#[tokio::test]
async fn fractional_numeric_dates_are_accepted() {
    let mut svc = chain(layer().clock_skew(Duration::ZERO).build());
    let now = now() as f64;
    let token = mint(
        Some("key-a"),
        KEY_A,
        &claims(json!({ "exp": now + 600.5, "nbf": now - 10.25, "iat": now - 10.75 })),
    );
    let (claims_seen, _) = testkit::call(&mut svc, record("orders", &token))
        .await
        .unwrap();
    assert_eq!(claims_seen.expires_at(), Some((now + 600.5) as u64));
    // A fractional exp in the past is still expired, and a non-number is invalid.
    let expired = mint(Some("key-a"), KEY_A, &claims(json!({ "exp": now - 5.5 })));
    assert_eq!(
        rejection(&mut svc, record("orders", &expired)).await.kind(),
        JwtErrorKind::Expired
    );
    let garbled = mint(Some("key-a"), KEY_A, &claims(json!({ "iat": "yesterday" })));
    assert_eq!(
        rejection(&mut svc, record("orders", &garbled)).await.kind(),
        JwtErrorKind::Invalid
    );
    let future = mint(Some("key-a"), KEY_A, &claims(json!({ "nbf": now + 120.5 })));
    assert_eq!(
        rejection(&mut svc, record("orders", &future)).await.kind(),
        JwtErrorKind::Invalid
    );
}

/// The tolerance after `exp` is the clock skew plus the grace period, and
/// the error says so.
#[tokio::test]
async fn the_tolerance_after_exp_is_skew_plus_grace_and_the_error_says_so() {
    let mut svc = chain(
        layer()
            .clock_skew(Duration::from_secs(60))
            .grace_period(Duration::from_secs(600))
            .build(),
    );
    let within = mint(Some("key-a"), KEY_A, &claims(json!({ "exp": now() - 650 })));
    testkit::call(&mut svc, record("orders", &within))
        .await
        .expect("650 s after exp is within 60 s + 600 s");
    let beyond = mint(Some("key-a"), KEY_A, &claims(json!({ "exp": now() - 700 })));
    let err = rejection(&mut svc, record("orders", &beyond)).await;
    assert_eq!(err.kind(), JwtErrorKind::Expired);
    assert!(
        err.detail()
            .contains("accepted until exp + 60 s clock skew + 600 s grace period"),
        "{err}"
    );
}

/// Untrusted values echoed into errors are cut to a bounded length.
#[tokio::test]
async fn an_unknown_kid_is_echoed_cut_short() {
    let mut svc = chain(layer().build());
    let kid = "k".repeat(10_000);
    let token = mint(Some(&kid), KEY_A, &claims(json!({})));
    let err = rejection(&mut svc, record("orders", &token)).await;
    assert_eq!(err.kind(), JwtErrorKind::UnknownKey);
    assert!(
        err.to_string().len() < 200,
        "{} bytes",
        err.to_string().len()
    );
    assert!(err.detail().contains("10000 bytes"), "{err}");
}

/// A JWKS endpoint that accepts connections and never answers fails the
/// record within the configured timeout, as a transient failure (an outage,
/// not an unauthorized record); so does one that refuses connections.
#[tokio::test]
async fn an_unresponsive_or_refusing_key_server_is_a_transient_failure() {
    use light_kafka::layers::http_client::Timeouts;

    let (silent, accepting) = common::silent_server().await;
    let silent_url = format!("http://{silent}/jwks");
    let refusing = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let address = listener.local_addr().unwrap();
        drop(listener);
        format!("http://{address}/jwks")
    };
    let token = mint(Some("key-a"), KEY_A, &claims(json!({})));
    for url in [silent_url, refusing] {
        let mut svc = chain(
            JwtVerifyLayer::builder(KeySource::Jwks {
                url: url.clone(),
                refresh_interval: Duration::from_secs(60),
            })
            .jwks_timeouts(Timeouts::new(
                Duration::from_millis(200),
                Duration::from_millis(500),
            ))
            .build(),
        );
        let started = std::time::Instant::now();
        let err = tokio::time::timeout(
            Duration::from_secs(5),
            testkit::call(&mut svc, record("orders", &token)),
        )
        .await
        .expect("the fetch must time out, not hang")
        .expect_err("rejected");
        assert!(started.elapsed() < Duration::from_secs(3), "{url}");
        assert_eq!(classify(err.as_ref()), ErrorKind::Transient, "{url}: {err}");
        let jwt = err.downcast_ref::<JwtError>().unwrap();
        assert_eq!(jwt.kind(), JwtErrorKind::KeysUnavailable);
        // Within the refresh interval the next record fails the same way,
        // as an outage, not as an unknown key.
        let again = testkit::call(&mut svc, record("orders", &token))
            .await
            .err()
            .unwrap();
        assert_eq!(classify(again.as_ref()), ErrorKind::Transient, "{url}");
    }
    accepting.abort();
}

/// JWKS over HTTPS: the client speaks TLS (rustls, no system OpenSSL); a
/// server that hangs up mid-handshake is an outage, transient.
#[tokio::test]
async fn a_jwks_url_over_https_speaks_tls_through_rustls() {
    use tokio::io::AsyncReadExt;

    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("https://{}/jwks", listener.local_addr().unwrap());
    let first_bytes = tokio::spawn(async move {
        let (mut socket, _) = listener.accept().await.unwrap();
        let mut hello = [0u8; 3];
        socket.read_exact(&mut hello).await.unwrap();
        hello // then hang up
    });
    let mut svc = chain(
        JwtVerifyLayer::builder(KeySource::Jwks {
            url,
            refresh_interval: Duration::from_secs(60),
        })
        .build(),
    );
    let token = mint(Some("key-a"), KEY_A, &claims(json!({})));
    let err = testkit::call(&mut svc, record("orders", &token))
        .await
        .expect_err("no keys");
    assert_eq!(classify(err.as_ref()), ErrorKind::Transient, "{err}");
    let hello = first_bytes.await.unwrap();
    assert_eq!(hello[0], 0x16, "a TLS handshake record");
    assert_eq!(hello[1], 0x03, "TLS 1.x");
}
