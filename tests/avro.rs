//! Avro with a schema registry stand-in served over loopback HTTP: evolution in
//! both directions through the embedded broker, caching, and typed errors.

mod common;

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use apache_avro::Schema;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::{Json, Router};
use light_kafka::BoxError;
use light_kafka::error::{ErrorKind, classify};
use light_kafka::layers::avro::{
    AvroCodec, AvroDecodeLayer, AvroEncodeLayer, AvroError, AvroErrorKind, AvroRecord,
    SchemaRegistry, SchemaVersion,
};
use light_kafka::record::{Codec, Record};
use light_kafka::service::consumer::Consumer;
use light_kafka::service::producer::Producer;
use light_kafka::testkit::{self, Accept};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use tower::{Layer, ServiceBuilder, ServiceExt, service_fn};

const USER_V1: &str =
    r#"{"type":"record","name":"User","fields":[{"name":"name","type":"string"}]}"#;
const USER_V2: &str = r#"{"type":"record","name":"User","fields":[
    {"name":"name","type":"string"},
    {"name":"age","type":"int","default":0}]}"#;

#[derive(Default)]
struct RegistryState {
    schemas: Vec<String>,
    subjects: HashMap<String, Vec<u32>>,
}

/// A Confluent schema registry stand-in: the endpoints the client calls.
struct Registry {
    url: String,
    id_lookups: Arc<AtomicUsize>,
}

async fn registry() -> Registry {
    type Shared = Arc<(Mutex<RegistryState>, AtomicUsize)>;
    let shared: Shared = Arc::new((Mutex::new(RegistryState::default()), AtomicUsize::new(0)));
    let id_lookups = Arc::new(AtomicUsize::new(0));
    let by_id = {
        let id_lookups = id_lookups.clone();
        move |State(s): State<Shared>, Path(id): Path<u32>| async move {
            id_lookups.fetch_add(1, Ordering::SeqCst);
            let state = s.0.lock().unwrap();
            match state.schemas.get(id as usize - 1) {
                Some(schema) => (StatusCode::OK, Json(json!({ "schema": schema }))),
                None => (
                    StatusCode::NOT_FOUND,
                    Json(json!({ "error_code": 40403, "message": "Schema not found" })),
                ),
            }
        }
    };
    let version = |State(s): State<Shared>, Path((subject, version)): Path<(String, String)>| async move {
        let state = s.0.lock().unwrap();
        let Some(ids) = state.subjects.get(&subject) else {
            return (StatusCode::NOT_FOUND, Json(json!({ "error_code": 40401 })));
        };
        let index = if version == "latest" {
            ids.len()
        } else {
            version.parse().unwrap_or(0)
        };
        match index.checked_sub(1).and_then(|i| ids.get(i)) {
            Some(&id) => (
                StatusCode::OK,
                Json(
                    json!({ "subject": subject, "version": index, "id": id, "schema": state.schemas[id as usize - 1] }),
                ),
            ),
            None => (StatusCode::NOT_FOUND, Json(json!({ "error_code": 40402 }))),
        }
    };
    let register = |State(s): State<Shared>, Path(subject): Path<String>, body: String| async move {
        let schema = serde_json::from_str::<Value>(&body).unwrap()["schema"]
            .as_str()
            .unwrap()
            .to_owned();
        let mut state = s.0.lock().unwrap();
        let id = match state.schemas.iter().position(|known| *known == schema) {
            Some(i) => i as u32 + 1,
            None => {
                state.schemas.push(schema);
                state.schemas.len() as u32
            }
        };
        let versions = state.subjects.entry(subject).or_default();
        if !versions.contains(&id) {
            versions.push(id);
        }
        Json(json!({ "id": id }))
    };
    let app = Router::new()
        .route("/schemas/ids/{id}", get(by_id))
        .route("/subjects/{subject}/versions/{version}", get(version))
        .route("/subjects/{subject}/versions", post(register))
        .with_state(shared);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    Registry { url, id_lookups }
}

fn schema(text: &str) -> Arc<Schema> {
    Arc::new(Schema::parse_str(text).unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn schema_evolution_works_both_ways_through_kafka() {
    let registry_server = registry().await;
    let kafka = common::Kafka::start();
    kafka.create_topic("users-new", 1).unwrap();
    kafka.create_topic("users-old", 1).unwrap();

    // Writers: users-new with v2 (adds `age` with a default), users-old with v1.
    let writer_registry = Arc::new(SchemaRegistry::new(&registry_server.url));
    let producer = ServiceBuilder::new()
        .layer(
            AvroEncodeLayer::new(writer_registry)
                .topic_with_schema("users-old", "users-value", schema(USER_V1))
                .topic_with_schema("users-new", "users-value", schema(USER_V2)),
        )
        .service(
            Producer::builder()
                .bootstrap_servers(kafka.bootstrap_servers())
                .build()
                .unwrap(),
        );
    for i in 0..3 {
        let new = Record::builder("users-new")
            .json(&json!({"name": format!("new-{i}"), "age": 30 + i}))
            .unwrap()
            .build();
        producer.clone().oneshot(new).await.unwrap();
        let old = Record::builder("users-old")
            .json(&json!({"name": format!("old-{i}")}))
            .unwrap()
            .build();
        producer.clone().oneshot(old).await.unwrap();
    }

    // Readers: an old service reads the new data with v1, a new one the old data with v2.
    let reader_registry = Arc::new(SchemaRegistry::new(&registry_server.url));
    let seen = Arc::new(Mutex::new(Vec::new()));
    let consumer = Consumer::builder()
        .bootstrap_servers(kafka.bootstrap_servers())
        .group_id("avro-readers")
        .topics(["users-new", "users-old"])
        .build()
        .unwrap();
    let handle = consumer.handle();
    let handler = {
        let (seen, handle) = (seen.clone(), handle.clone());
        service_fn(move |record: Record| {
            let (seen, handle) = (seen.clone(), handle.clone());
            async move {
                let avro = record.extensions().get::<AvroRecord>().expect("decoded");
                let mut seen = seen.lock().unwrap();
                seen.push((record.topic().to_owned(), avro.to_json()?));
                if seen.len() == 6 {
                    handle.shutdown();
                }
                Ok::<_, BoxError>(())
            }
        })
    };
    let chain = AvroDecodeLayer::new(reader_registry)
        .topic_with_reader("users-new", schema(USER_V1))
        .topic_with_reader("users-old", schema(USER_V2))
        .layer(handler);
    tokio::time::timeout(Duration::from_secs(30), consumer.serve(chain))
        .await
        .unwrap()
        .unwrap();

    let seen = seen.lock().unwrap();
    for (topic, value) in seen.iter() {
        match topic.as_str() {
            // v2 data, v1 reader: the new field is dropped (forward compatibility).
            "users-new" => assert!(
                value.get("age").is_none() && value["name"].as_str().unwrap().starts_with("new-"),
                "{value}"
            ),
            // v1 data, v2 reader: the new field takes its default (backward compatibility).
            _ => assert_eq!(value["age"], 0, "{value}"),
        }
    }
    assert_eq!(seen.iter().filter(|(t, _)| t == "users-new").count(), 3);
}

#[derive(Serialize, Deserialize, Debug, PartialEq)]
struct UserV1 {
    name: String,
}

#[derive(Serialize, Deserialize, Debug, PartialEq)]
struct UserV2 {
    name: String,
    age: i32,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_typed_codec_evolves_too_and_schemas_are_fetched_once() {
    let server = registry().await;
    let registry = Arc::new(SchemaRegistry::new(&server.url));
    let v1 = registry
        .register("people-value", &schema(USER_V1))
        .await
        .unwrap();
    let v2 = registry
        .register("people-value", &schema(USER_V2))
        .await
        .unwrap();
    assert_ne!(v1, v2);

    let writer_v2: AvroCodec<UserV2> =
        AvroCodec::from_registry(registry.clone(), "people-value", SchemaVersion::Latest)
            .await
            .unwrap();
    assert_eq!(writer_v2.schema_id(), v2);
    let bytes = writer_v2
        .encode(&UserV2 {
            name: "ada".into(),
            age: 36,
        })
        .unwrap();

    // A fresh client, as another service would have: it must fetch id v2 once.
    let other = Arc::new(SchemaRegistry::new(&server.url));
    let reader_v1: AvroCodec<UserV1> =
        AvroCodec::from_registry(other.clone(), "people-value", SchemaVersion::Number(1))
            .await
            .unwrap();
    let before = server.id_lookups.load(Ordering::SeqCst);
    let err = reader_v1.decode(&bytes).unwrap_err();
    assert_eq!(
        err.avro_kind(),
        AvroErrorKind::UnknownSchema,
        "not fetched yet"
    );
    other.schema(v2).await.unwrap();
    assert_eq!(
        reader_v1.decode(&bytes).unwrap(),
        UserV1 { name: "ada".into() }
    );

    let old = reader_v1.encode(&UserV1 { name: "bob".into() }).unwrap();
    let reader_v2 = AvroCodec::<UserV2>::new(other.clone(), v2, schema(USER_V2));
    assert_eq!(
        reader_v2.decode(&old).unwrap(),
        UserV2 {
            name: "bob".into(),
            age: 0
        }
    );

    // Decoding through the layer many times costs no more lookups.
    let mut decode = AvroDecodeLayer::new(other).topic("people").layer(Accept);
    for _ in 0..50 {
        testkit::call(
            &mut decode,
            testkit::record("people").value(bytes.clone()).build(),
        )
        .await
        .unwrap();
    }
    assert_eq!(
        server.id_lookups.load(Ordering::SeqCst),
        before + 1,
        "one lookup for id {v2}, then the cache"
    );
}

#[tokio::test]
async fn undecodable_and_unfit_values_are_typed_errors() {
    let server = registry().await;
    let registry = Arc::new(SchemaRegistry::new(&server.url));
    let id = registry
        .register("things-value", &schema(USER_V1))
        .await
        .unwrap();
    let mut decode = AvroDecodeLayer::new(registry.clone())
        .topic("things")
        .layer(Accept);

    let cases: Vec<(Vec<u8>, AvroErrorKind)> = vec![
        (
            b"{\"name\":\"json, not avro\"}".to_vec(),
            AvroErrorKind::Framing,
        ),
        (vec![0, 0, 0], AvroErrorKind::Framing),
        (vec![0, 0, 0, 3, 231, 1, 2], AvroErrorKind::UnknownSchema),
        (
            [vec![0], id.to_be_bytes().to_vec(), vec![0xff, 0xff, 0xff]].concat(),
            AvroErrorKind::Decode,
        ),
    ];
    for (value, kind) in cases {
        let err = testkit::call(&mut decode, testkit::record("things").value(value).build())
            .await
            .unwrap_err();
        let avro = err.downcast_ref::<AvroError>().expect("an AvroError");
        assert_eq!(avro.avro_kind(), kind, "{avro}");
        assert_eq!(classify(err.as_ref()), ErrorKind::Deserialization);
    }

    let mut encode = AvroEncodeLayer::new(registry)
        .topic("things", "things-value", SchemaVersion::Latest)
        .layer(Accept);
    let unfit = Record::builder("things")
        .json(&json!({"name": 42}))
        .unwrap()
        .build();
    let err = testkit::call(&mut encode, unfit).await.unwrap_err();
    assert_eq!(classify(err.as_ref()), ErrorKind::Invalid, "{err}");
    let not_json = Record::builder("things").value("plain text").build();
    assert_eq!(
        classify(
            testkit::call(&mut encode, not_json)
                .await
                .unwrap_err()
                .as_ref()
        ),
        ErrorKind::Invalid
    );
}

/// A schema registry that accepts connections and never answers fails the
/// lookup within the configured timeout, as a transient failure.
#[tokio::test]
async fn an_unresponsive_registry_times_out_as_a_transient_failure() {
    use light_kafka::layers::http_client::Timeouts;

    let (silent, accepting) = common::silent_server().await;
    let url = format!("http://{silent}");
    let registry = SchemaRegistry::with_timeouts(
        url,
        Timeouts::new(Duration::from_millis(200), Duration::from_millis(500)),
    );
    let started = std::time::Instant::now();
    let err = tokio::time::timeout(Duration::from_secs(5), registry.schema(1))
        .await
        .expect("the lookup must time out, not hang")
        .unwrap_err();
    assert!(started.elapsed() < Duration::from_secs(3));
    assert_eq!(classify(&err), ErrorKind::Transient, "{err}");
    accepting.abort();
}

/// A registry that demands HTTP basic credentials (Confluent Cloud's
/// `basic.auth.user.info`): the client sends them, from the setter or from
/// the URL, and neither `Debug` nor an error shows the password.
#[tokio::test]
async fn the_registry_client_sends_basic_credentials_and_never_shows_them() {
    use axum::http::HeaderMap;
    const PASSWORD: &str = "S3CR3T-MARKER-7f3a";
    let expected = format!(
        "Basic {}",
        base64::Engine::encode(
            &base64::engine::general_purpose::STANDARD,
            format!("svc:{PASSWORD}")
        )
    );
    let app = Router::new().route(
        "/schemas/ids/{id}",
        get(move |headers: HeaderMap| {
            let expected = expected.clone();
            async move {
                match headers.get("authorization").and_then(|v| v.to_str().ok()) {
                    Some(given) if given == expected => {
                        (StatusCode::OK, Json(json!({ "schema": USER_V1 })))
                    }
                    _ => (StatusCode::UNAUTHORIZED, Json(json!({ "error_code": 401 }))),
                }
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });

    let without = SchemaRegistry::new(format!("http://{address}"));
    let refused = without.schema(1).await.unwrap_err();
    assert_eq!(refused.avro_kind(), AvroErrorKind::Registry, "{refused}");

    let with_setter =
        SchemaRegistry::new(format!("http://{address}")).with_user_info(&format!("svc:{PASSWORD}"));
    with_setter
        .schema(1)
        .await
        .expect("credentials from user info");
    let in_url = SchemaRegistry::new(format!("http://svc:{PASSWORD}@{address}/"));
    in_url.schema(1).await.expect("credentials from the URL");

    // Nothing shows the password: Debug, or an error of a request that fails.
    let unreachable = SchemaRegistry::new(format!("http://svc:{PASSWORD}@127.0.0.1:9/"));
    let error = unreachable.schema(2).await.unwrap_err();
    let mut shown = format!("{with_setter:?} {in_url:?} {unreachable:?} {error} {error:?}");
    let mut source = std::error::Error::source(&error);
    while let Some(e) = source {
        shown.push_str(&format!(" {e} {e:?}"));
        source = e.source();
    }
    assert!(!shown.contains(PASSWORD), "{shown}");
    assert!(shown.contains("svc"), "the user is shown: {shown}");
}
