//! JWT verification: what passes, what is rejected and with which code, JWKS
//! key rotation over loopback HTTP, per-topic scopes, and token hygiene.

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
