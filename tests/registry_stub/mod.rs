//! A Confluent schema registry stand-in on loopback, for schemas of every
//! type: the endpoints the client calls, with `schemaType` and `references`
//! as the real registry writes them, and switches that make it fail.
#![allow(dead_code, unreachable_pub)]

use std::collections::HashMap;
use std::sync::atomic::{AtomicU8, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::{Value, json};

/// How the stand-in answers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum Mode {
    /// As a registry does.
    Up = 0,
    /// 503 Service Unavailable to everything.
    Unavailable = 1,
    /// Accepts the request and answers after 10 s (clients time out first).
    Hanging = 2,
}

#[derive(Default)]
struct Stored {
    /// (schemaType, schema, references), id = index + 1.
    schemas: Vec<(String, String, Value)>,
    subjects: HashMap<String, Vec<u32>>,
}

struct Shared {
    stored: Mutex<Stored>,
    mode: AtomicU8,
    id_lookups: AtomicUsize,
    requests: AtomicUsize,
}

/// A running stand-in.
#[derive(Clone)]
pub struct Registry {
    pub url: String,
    shared: Arc<Shared>,
}

impl Registry {
    /// Sets how it answers from now on.
    pub fn set_mode(&self, mode: Mode) {
        self.shared.mode.store(mode as u8, Ordering::SeqCst);
    }

    /// `GET /schemas/ids/{id}` requests answered so far (in any mode).
    pub fn id_lookups(&self) -> usize {
        self.shared.id_lookups.load(Ordering::SeqCst)
    }

    /// Requests received so far (in any mode).
    pub fn requests(&self) -> usize {
        self.shared.requests.load(Ordering::SeqCst)
    }

    /// Registers directly (as another team's producer would have) and
    /// returns the id.
    pub fn register(
        &self,
        subject: &str,
        schema_type: &str,
        schema: &str,
        references: Value,
    ) -> u32 {
        let mut stored = self.shared.stored.lock().unwrap();
        register(&mut stored, subject, schema_type, schema, references)
    }

    /// The `schemaType` stored for `id`.
    pub fn schema_type(&self, id: u32) -> Option<String> {
        let stored = self.shared.stored.lock().unwrap();
        stored.schemas.get(id as usize - 1).map(|s| s.0.clone())
    }
}

fn register(
    stored: &mut Stored,
    subject: &str,
    schema_type: &str,
    schema: &str,
    references: Value,
) -> u32 {
    let id = match stored
        .schemas
        .iter()
        .position(|(t, s, _)| t == schema_type && s == schema)
    {
        Some(i) => i as u32 + 1,
        None => {
            stored
                .schemas
                .push((schema_type.to_owned(), schema.to_owned(), references));
            stored.schemas.len() as u32
        }
    };
    let versions = stored.subjects.entry(subject.to_owned()).or_default();
    if !versions.contains(&id) {
        versions.push(id);
    }
    id
}

fn body(schema_type: &str, schema: &str, references: &Value) -> Value {
    let mut body = json!({ "schema": schema });
    // The real registry leaves `schemaType` out for Avro.
    if schema_type != "AVRO" {
        body["schemaType"] = schema_type.into();
    }
    if references.as_array().is_some_and(|r| !r.is_empty()) {
        body["references"] = references.clone();
    }
    body
}

/// Answers per the mode; `None` means answer normally.
async fn gate(shared: &Shared) -> Option<Response> {
    shared.requests.fetch_add(1, Ordering::SeqCst);
    match shared.mode.load(Ordering::SeqCst) {
        1 => Some(
            (
                StatusCode::SERVICE_UNAVAILABLE,
                Json(json!({ "error_code": 50301, "message": "unavailable" })),
            )
                .into_response(),
        ),
        2 => {
            tokio::time::sleep(Duration::from_secs(10)).await;
            Some(StatusCode::GATEWAY_TIMEOUT.into_response())
        }
        _ => None,
    }
}

/// Starts a stand-in on loopback.
pub async fn start() -> Registry {
    let shared = Arc::new(Shared {
        stored: Mutex::new(Stored::default()),
        mode: AtomicU8::new(Mode::Up as u8),
        id_lookups: AtomicUsize::new(0),
        requests: AtomicUsize::new(0),
    });
    let by_id = |State(s): State<Arc<Shared>>, Path(id): Path<u32>| async move {
        s.id_lookups.fetch_add(1, Ordering::SeqCst);
        if let Some(refused) = gate(&s).await {
            return refused;
        }
        let stored = s.stored.lock().unwrap();
        match id
            .checked_sub(1)
            .and_then(|i| stored.schemas.get(i as usize))
        {
            Some((t, schema, refs)) => Json(body(t, schema, refs)).into_response(),
            None => (
                StatusCode::NOT_FOUND,
                Json(json!({ "error_code": 40403, "message": "Schema not found" })),
            )
                .into_response(),
        }
    };
    let version = |State(s): State<Arc<Shared>>,
                   Path((subject, version)): Path<(String, String)>| async move {
        if let Some(refused) = gate(&s).await {
            return refused;
        }
        let stored = s.stored.lock().unwrap();
        let Some(ids) = stored.subjects.get(&subject) else {
            return (StatusCode::NOT_FOUND, Json(json!({ "error_code": 40401 }))).into_response();
        };
        let index = if version == "latest" {
            ids.len()
        } else {
            version.parse().unwrap_or(0)
        };
        match index.checked_sub(1).and_then(|i| ids.get(i)) {
            Some(&id) => {
                let (t, schema, refs) = &stored.schemas[id as usize - 1];
                let mut answer = body(t, schema, refs);
                answer["subject"] = subject.into();
                answer["version"] = index.into();
                answer["id"] = id.into();
                Json(answer).into_response()
            }
            None => (StatusCode::NOT_FOUND, Json(json!({ "error_code": 40402 }))).into_response(),
        }
    };
    let post_version = |State(s): State<Arc<Shared>>, Path(subject): Path<String>, text: String| async move {
        if let Some(refused) = gate(&s).await {
            return refused;
        }
        let request: Value = serde_json::from_str(&text).unwrap();
        let schema_type = request["schemaType"].as_str().unwrap_or("AVRO").to_owned();
        let schema = request["schema"].as_str().unwrap().to_owned();
        let references = request.get("references").cloned().unwrap_or(json!([]));
        let mut stored = s.stored.lock().unwrap();
        let id = register(&mut stored, &subject, &schema_type, &schema, references);
        Json(json!({ "id": id })).into_response()
    };
    let app = Router::new()
        .route("/schemas/ids/{id}", get(by_id))
        .route("/subjects/{subject}/versions/{version}", get(version))
        .route("/subjects/{subject}/versions", post(post_version))
        .with_state(shared.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    Registry { url, shared }
}

/// A loopback address nothing listens on (bound, then released).
pub async fn closed_port() -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    drop(listener);
    format!("http://{address}")
}
