//! The zkcoproc REST API (v1, JSON), served with axum.
//!
//! Every error answers `{"error": {"code", "message"}}` with the right status: 400 bad input,
//! 404 unknown id, 409 not ready / conflict, 413 too large, 422 a controller failed in a dry run,
//! 500 only for real bugs. Request bodies are capped ([`ApiConfig::max_body_bytes`]).
//!
//! Not for business logic: handlers validate, call the [`Coordinator`] and render.
//!
//! Start from [`router`].

mod error;
mod views;

use std::sync::Arc;

use axum::extract::rejection::JsonRejection;
use axum::extract::{DefaultBodyLimit, Path, Query, State};
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::{get, post};
use axum::{Json, Router};
use base64::Engine as _;
use serde::Deserialize;
use serde_json::{json, Value};
use zkcoproc_coordinator::Coordinator;
use zkcoproc_types::journal;
use zkcoproc_zkvm::ImageId;

pub use error::ApiError;

/// API settings.
#[derive(Clone, Debug)]
pub struct ApiConfig {
    /// Largest request body accepted (413 above).
    pub max_body_bytes: usize,
}

impl Default for ApiConfig {
    fn default() -> Self {
        ApiConfig { max_body_bytes: 32 << 20 }
    }
}

type AppState = Arc<Coordinator>;
type ApiResult<T> = Result<T, ApiError>;

/// The v1 router over `coordinator`.
pub fn router(coordinator: Arc<Coordinator>, config: &ApiConfig) -> Router {
    Router::new()
        .route("/health", get(health))
        .route("/v1/programs", post(deploy))
        .route("/v1/programs/{id}", get(program))
        .route("/v1/programs/{id}/witnesses", post(witnesses))
        .route("/v1/programs/{id}/fs", get(fs_list))
        .route("/v1/programs/{id}/fs/{*path}", get(fs_read))
        .route("/v1/programs/{id}/volume", get(volume))
        .route("/v1/programs/{id}/proofs", post(submit))
        .route("/v1/tasks/{id}", get(task))
        .route("/v1/tasks/{id}/proof", get(proof))
        .route("/v1/verify", post(verify))
        .fallback(|| async { ApiError::not_found("no such endpoint") })
        .method_not_allowed_fallback(|| async {
            ApiError::new(StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed", "method not allowed")
        })
        .layer(DefaultBodyLimit::max(config.max_body_bytes))
        .layer(tower_http::trace::TraceLayer::new_for_http())
        .with_state(coordinator)
}

fn program_id(id: &str) -> ApiResult<&str> {
    if id.len() == 64 && id.bytes().all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase()) {
        Ok(id)
    } else {
        Err(ApiError::bad_request("bad_id", format!("`{id}` is not a program id (64 lower-case hex digits)")))
    }
}

fn task_id(id: &str) -> ApiResult<&str> {
    // Task ids are hyphenated UUIDs; reject anything else before touching the store.
    let ok = id.len() == 36
        && id.bytes().enumerate().all(|(i, b)| match i {
            8 | 13 | 18 | 23 => b == b'-',
            _ => b.is_ascii_hexdigit(),
        });
    if ok {
        Ok(id)
    } else {
        Err(ApiError::bad_request("bad_id", format!("`{id}` is not a task id")))
    }
}

fn b64(field: &str, s: &str) -> ApiResult<Vec<u8>> {
    base64::engine::general_purpose::STANDARD
        .decode(s.trim())
        .map_err(|e| ApiError::bad_request("bad_base64", format!("`{field}` is not base64: {e}")))
}

fn body<T>(json: Result<Json<T>, JsonRejection>) -> ApiResult<T> {
    json.map(|Json(t)| t).map_err(ApiError::from)
}

async fn health(State(c): State<AppState>) -> ApiResult<Json<Value>> {
    let counts = c.store().status_counts().await.map_err(zkcoproc_coordinator::CoordinatorError::from)?;
    let tasks: serde_json::Map<String, Value> =
        counts.into_iter().map(|(s, n)| (s.as_str().to_owned(), json!(n))).collect();
    Ok(Json(json!({
        "status": "ok",
        "version": env!("CARGO_PKG_VERSION"),
        "prover": c.prover_name(),
        "dev_mode": c.verifier().dev_mode(),
        "root": hex::encode(c.current_root()),
        "tasks": tasks,
    })))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct DeployRequest {
    /// controller component, base64
    controller: String,
    /// circuit program binary (or bare guest ELF), base64
    circuit: String,
}

async fn deploy(
    State(c): State<AppState>,
    req: Result<Json<DeployRequest>, JsonRejection>,
) -> ApiResult<impl IntoResponse> {
    let req = body(req)?;
    let controller = b64("controller", &req.controller)?;
    let circuit = b64("circuit", &req.circuit)?;
    let deployed = c.deploy(controller, circuit).await?;
    let status = if deployed.created { StatusCode::CREATED } else { StatusCode::OK };
    Ok((status, Json(deployed)))
}

async fn program(State(c): State<AppState>, Path(id): Path<String>) -> ApiResult<Json<Value>> {
    let info = c.program(program_id(&id)?).await?;
    Ok(Json(views::program(&info)))
}

#[derive(Deserialize)]
struct FsQuery {
    /// directory to list; default `/`
    path: Option<String>,
}

async fn fs_list(
    State(c): State<AppState>,
    Path(id): Path<String>,
    Query(q): Query<FsQuery>,
) -> ApiResult<Json<Value>> {
    let path = q.path.unwrap_or_else(|| "/".to_owned());
    let entries = c.list_dir(program_id(&id)?, &path).await?;
    let entries: Vec<Value> =
        entries.iter().map(|e| json!({"name": e.name, "is_dir": e.is_dir, "size": e.size})).collect();
    Ok(Json(json!({"path": path, "entries": entries})))
}

const OCTET_STREAM: [(axum::http::HeaderName, &str); 1] =
    [(axum::http::header::CONTENT_TYPE, "application/octet-stream")];

async fn fs_read(
    State(c): State<AppState>,
    Path((id, path)): Path<(String, String)>,
) -> ApiResult<impl IntoResponse> {
    let bytes = c.read_file(program_id(&id)?, &format!("/{path}")).await?;
    Ok((OCTET_STREAM, bytes))
}

async fn volume(State(c): State<AppState>, Path(id): Path<String>) -> ApiResult<impl IntoResponse> {
    let image = c.volume_image(program_id(&id)?).await?;
    Ok((OCTET_STREAM, image))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct WitnessRequest {
    #[serde(default)]
    args: Value,
}

async fn witnesses(
    State(c): State<AppState>,
    Path(id): Path<String>,
    req: Result<Json<WitnessRequest>, JsonRejection>,
) -> ApiResult<Json<Value>> {
    let req = body(req)?;
    let dry = c.dry_run(program_id(&id)?, &req.args.to_string()).await?;
    Ok(Json(views::dry_run(&dry)))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ProofRequest {
    #[serde(default)]
    args: Value,
    /// pin to this root (hex); default: the current root
    root: Option<String>,
    /// fake, composite, succinct or groth16; default: what the service's prover makes
    receipt_kind: Option<String>,
}

async fn submit(
    State(c): State<AppState>,
    Path(id): Path<String>,
    req: Result<Json<ProofRequest>, JsonRejection>,
) -> ApiResult<impl IntoResponse> {
    let req = body(req)?;
    let id = program_id(&id)?;
    let root = match req.root.as_deref() {
        None => None,
        Some(r) => Some(parse_root(r)?),
    };
    let task = c.submit(id, &req.args.to_string(), root, req.receipt_kind.as_deref()).await?;
    Ok((StatusCode::ACCEPTED, Json(json!({"task_id": task.id, "status": task.status.as_str()}))))
}

fn parse_root(s: &str) -> ApiResult<[u8; 32]> {
    let mut root = [0u8; 32];
    hex::decode_to_slice(s.strip_prefix("0x").unwrap_or(s), &mut root)
        .map_err(|_| ApiError::bad_request("bad_root", "root must be 32 bytes of hex"))?;
    Ok(root)
}

async fn task(State(c): State<AppState>, Path(id): Path<String>) -> ApiResult<Json<Value>> {
    let task = c.task(task_id(&id)?).await?;
    Ok(Json(views::task(&task)))
}

async fn proof(State(c): State<AppState>, Path(id): Path<String>) -> ApiResult<Json<Value>> {
    let task = c.task(task_id(&id)?).await?;
    let (Some(receipt), Some(journal_bytes)) = (&task.receipt, &task.journal) else {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "proof_not_ready",
            format!("task {} has no verified proof (status {})", task.id, task.status),
        ));
    };
    let image_id = c.image_id(&task.program_id).await?;
    Ok(Json(json!({
        "task_id": task.id,
        "program_id": task.program_id,
        "image_id": image_id.to_string(),
        "receipt_kind": task.receipt_kind,
        "receipt": base64::engine::general_purpose::STANDARD.encode(receipt),
        "journal": hex::encode(journal_bytes),
    })))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct VerifyRequest {
    task_id: Option<String>,
    /// receipt, base64 (bincode of a RISC Zero receipt)
    receipt: Option<String>,
    image_id: Option<String>,
}

async fn verify(
    State(c): State<AppState>,
    req: Result<Json<VerifyRequest>, JsonRejection>,
) -> ApiResult<Json<Value>> {
    let req = body(req)?;
    let (receipt, image_id) = match (req.task_id, req.receipt, req.image_id) {
        (Some(id), None, None) => {
            let task = c.task(task_id(&id)?).await?;
            let Some(receipt) = task.receipt else {
                return Err(ApiError::new(
                    StatusCode::CONFLICT,
                    "proof_not_ready",
                    format!("task {} has no receipt (status {})", task.id, task.status),
                ));
            };
            (receipt, c.image_id(&task.program_id).await?)
        }
        (None, Some(receipt), Some(image_id)) => {
            let image_id = ImageId::from_hex(&image_id)
                .ok_or_else(|| ApiError::bad_request("bad_image_id", "image_id must be 32 bytes of hex"))?;
            (b64("receipt", &receipt)?, image_id)
        }
        _ => {
            return Err(ApiError::bad_request(
                "bad_request",
                "give either `task_id`, or both `receipt` and `image_id`",
            ))
        }
    };
    let verifier = c.verifier();
    let verdict = tokio::task::spawn_blocking(move || verifier.verify(&receipt, image_id))
        .await
        .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", e.to_string()))?;
    Ok(Json(match verdict {
        Ok(v) => {
            let (root, output) = journal::split(&v.journal).unzip();
            json!({
                "valid": true,
                "image_id": image_id.to_string(),
                "receipt_kind": v.kind.as_str(),
                "journal": hex::encode(&v.journal),
                "root": root.map(hex::encode),
                "output": output.map(hex::encode),
                "root_known": root.is_some_and(|r| c.is_known_root(&r)),
            })
        }
        Err(e) => json!({
            "valid": false,
            "image_id": image_id.to_string(),
            "error": {"code": "invalid_receipt", "message": e.to_string()},
        }),
    }))
}
