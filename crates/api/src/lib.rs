//! The zkcoproc REST API (v1, JSON), served with axum.
//!
//! Every error answers `{"error": {"code", "message"}}` with the right status: 400 bad input,
//! 401 no or unknown API key, 403 not the owner, 404 unknown id, 409 not ready / conflict, 410
//! pruned, 413 too large, 422 a controller failed in a dry run, 429 a caller's quota (with
//! `Retry-After`), 503 the service is busy (with `Retry-After`), 500 only for real bugs. Request
//! bodies are capped ([`ApiConfig::max_body_bytes`]); who may do what is [`access`]'s concern.
//!
//! Not for business logic: handlers validate, call the [`Coordinator`] and render.
//!
//! Start from [`router`].

pub mod access;
mod console;
mod domains;
mod error;
mod lists;
pub mod openapi;
pub mod server;
mod views;
pub mod webhooks;
mod worker;
pub mod worker_auth;

use std::sync::Arc;

use axum::extract::rejection::JsonRejection;
use axum::extract::{DefaultBodyLimit, Path, Query, State};
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::{get, post};
use axum::{Json, Router};
use base64::Engine as _;
use serde::Deserialize;
use serde_json::value::RawValue;
use serde_json::{json, Value};
use zkcoproc_coordinator::Coordinator;
use zkcoproc_store::{CancelOutcome, TaskRecord};
use zkcoproc_types::journal;
use zkcoproc_zkvm::ImageId;

use access::{Access, Caller};
pub use domains::{FeederAuth, MAX_FEED_HEADERS};
pub use error::ApiError;

/// API settings.
#[derive(Clone, Debug)]
pub struct ApiConfig {
    /// Largest request body accepted (413 above).
    pub max_body_bytes: usize,
    /// Largest controller `args` accepted (413 `args_too_large`), checked before they are parsed.
    pub max_args_bytes: usize,
    /// Identities, owners and quotas.
    pub access: Arc<Access>,
    /// Accept callback URLs of non-public addresses (see [`webhooks::WebhookConfig::allow_private`]).
    pub allow_private_callbacks: bool,
}

impl Default for ApiConfig {
    fn default() -> Self {
        ApiConfig {
            max_body_bytes: 32 << 20,
            max_args_bytes: zkcoproc_runtime::Limits::default().max_args_bytes,
            access: Arc::new(Access::open()),
            allow_private_callbacks: false,
        }
    }
}

/// The API's settings, as handlers see them.
#[derive(Debug)]
pub(crate) struct Settings {
    max_args_bytes: usize,
    allow_private_callbacks: bool,
}

pub(crate) type AppState = Arc<Coordinator>;
pub(crate) type ApiResult<T> = Result<T, ApiError>;

/// The v1 router over `coordinator`; `workers` authenticates prover workers and `feeders`
/// block feeders.
pub fn router(
    coordinator: Arc<Coordinator>,
    config: &ApiConfig,
    workers: worker_auth::WorkerAuth,
    feeders: FeederAuth,
) -> Router {
    Router::new()
        .route("/v1/worker/lease", post(worker::lease))
        .route("/v1/worker/circuits/{image_id}", get(worker::circuit))
        .route("/v1/worker/tasks/{id}/heartbeat", post(worker::heartbeat))
        .route("/v1/worker/tasks/{id}/result", post(worker::result))
        .route("/", get(console::index))
        .route("/console/app.js", get(console::script))
        .route("/console/style.css", get(console::style))
        .route("/v1/identity", get(lists::identity))
        .route("/health", get(health))
        .route("/openapi.json", get(openapi::openapi_json))
        .route("/metrics", get(metrics))
        .route("/v1/programs", post(deploy).get(lists::programs))
        .route("/v1/tasks", get(lists::tasks))
        .route("/v1/events", get(lists::events))
        .route("/v1/workers", get(lists::workers))
        .route("/v1/programs/{id}", get(program))
        .route("/v1/programs/{id}/witnesses", post(witnesses))
        .route("/v1/programs/{id}/fs", get(fs_list))
        .route("/v1/programs/{id}/fs/{*path}", get(fs_read))
        .route("/v1/programs/{id}/volume", get(volume))
        .route("/v1/programs/{id}/controller", get(controller))
        .route("/v1/programs/{id}/circuit", get(circuit))
        .route("/v1/programs/{id}/proofs", post(submit))
        .route("/v1/programs/{id}/webhook-secret", post(rotate_webhook_secret))
        .route("/v1/tasks/{id}", get(task).delete(cancel))
        .route("/v1/tasks/{id}/proof", get(proof))
        .route("/v1/tasks/{id}/input", get(input))
        .route("/v1/tasks/{id}/events", get(events))
        .route("/v1/verify", post(verify))
        .route("/v1/root", get(domains::root))
        .route("/v1/roots/{root}", get(domains::root_info))
        .route("/v1/domains/{name}/light-client", get(domains::light_client))
        .route("/v1/domains/{name}/latest", get(domains::latest))
        .route("/v1/domains/{name}/blocks", post(domains::feed))
        .route("/v1/domains/{name}/blocks/{number}/opening", get(domains::opening))
        .fallback(|| async { ApiError::not_found("no such endpoint") })
        .method_not_allowed_fallback(|| async {
            ApiError::new(StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed", "method not allowed")
        })
        .layer(axum::Extension(Arc::new(workers)))
        .layer(axum::Extension(config.access.clone()))
        .layer(axum::Extension(Arc::new(Settings {
            max_args_bytes: config.max_args_bytes,
            allow_private_callbacks: config.allow_private_callbacks,
        })))
        .layer(axum::Extension(Arc::new(feeders)))
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

/// A request's controller arguments, refused by size before they are parsed into a value, then
/// normalized (compact JSON) as the controller and the idempotency hash see them.
fn controller_args(raw: Option<&RawValue>, settings: &Settings) -> ApiResult<String> {
    let Some(raw) = raw else { return Ok("null".to_owned()) };
    let text = raw.get();
    if text.len() > settings.max_args_bytes {
        return Err(ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "args_too_large",
            format!(
                "arguments of {} bytes exceed the limit of {} bytes",
                text.len(),
                settings.max_args_bytes
            ),
        ));
    }
    let value: Value =
        serde_json::from_str(text).map_err(|e| ApiError::bad_request("bad_json", format!("`args`: {e}")))?;
    Ok(value.to_string())
}

/// The owner check of a program-private route: 404 for an unknown program, 403 for another
/// identity's program.
async fn owned(c: &AppState, caller: &Caller, id: &str) -> ApiResult<()> {
    let info = c.program(id).await?;
    caller.must_own(info.owner.as_deref(), id)
}

#[utoipa::path(get, path = "/health", tag = "service",
    responses((status = 200, description = "service status, prover, root and task counts", body = openapi::HealthView), crate::openapi::Errors))]
async fn health(State(c): State<AppState>) -> ApiResult<Json<openapi::HealthView>> {
    let counts = c.store().status_counts().await.map_err(zkcoproc_coordinator::CoordinatorError::from)?;
    Ok(Json(openapi::HealthView {
        status: "ok".into(),
        version: env!("CARGO_PKG_VERSION").into(),
        prover: c.prover_name().into(),
        dev_mode: c.verifier().dev_mode(),
        root: hex::encode(c.current_root()),
        tasks: counts.into_iter().map(|(s, n)| (s.as_str().to_owned(), n)).collect(),
        domains: c.domain_statuses(),
    }))
}

#[utoipa::path(get, path = "/metrics", tag = "service",
    responses((status = 200, description = "OpenMetrics text", body = String,
        content_type = "application/openmetrics-text; version=1.0.0; charset=utf-8"), crate::openapi::Errors))]
async fn metrics(State(c): State<AppState>) -> ApiResult<impl IntoResponse> {
    let text = c.render_metrics().await?;
    let content_type = "application/openmetrics-text; version=1.0.0; charset=utf-8";
    Ok(([(axum::http::header::CONTENT_TYPE, content_type)], text))
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct DeployRequest {
    /// controller component, base64
    controller: String,
    /// circuit program binary (or bare guest ELF), base64
    circuit: String,
    /// size of the program's FAT-16 volume in MiB (default: the service's `--volume-size-mb`, at
    /// most its `--max-volume-size-mb`); only the first deploy of a program sets it
    #[serde(default)]
    volume_size_mb: Option<u64>,
    /// where the program's finished tasks are POSTed when their request names no `callback_url`;
    /// only the first deploy of a program sets it
    #[serde(default)]
    callback_url: Option<String>,
}

/// A request's callback URL, checked (400 `bad_callback_url`).
fn callback_url(url: Option<String>, settings: &Settings) -> ApiResult<Option<String>> {
    let Some(url) = url else { return Ok(None) };
    webhooks::check_url(&url, settings.allow_private_callbacks)
        .map_err(|e| ApiError::bad_request("bad_callback_url", e))?;
    Ok(Some(url))
}

#[utoipa::path(post, path = "/v1/programs", tag = "programs", request_body = DeployRequest,
    responses((status = 201, description = "deployed", body = openapi::DeployedView),
        (status = 200, description = "already deployed (same id)", body = openapi::DeployedView), crate::openapi::Errors))]
async fn deploy(
    State(c): State<AppState>,
    caller: Caller,
    axum::Extension(access): axum::Extension<Arc<Access>>,
    axum::Extension(settings): axum::Extension<Arc<Settings>>,
    req: Result<Json<DeployRequest>, JsonRejection>,
) -> ApiResult<impl IntoResponse> {
    let req = body(req)?;
    let controller = b64("controller", &req.controller)?;
    let circuit = b64("circuit", &req.circuit)?;
    let url = callback_url(req.callback_url, &settings)?;
    let _slot = access.deploys.take(&caller.quota_key()).await?;
    let volume_size = req.volume_size_mb.map(|mb| mb.saturating_mul(1 << 20));
    let d = c.deploy(controller, circuit, caller.identity(), volume_size, url).await?;
    let status = if d.created { StatusCode::CREATED } else { StatusCode::OK };
    Ok((
        status,
        Json(openapi::DeployedView {
            program_id: d.program_id,
            image_id: d.image_id,
            created: d.created,
            webhook_secret: d.webhook_secret,
        }),
    ))
}

#[utoipa::path(get, path = "/v1/programs/{id}", tag = "programs", params(("id" = String, Path, description = "program id: 64 lower-case hex digits", pattern = "^[0-9a-f]{64}$")),
    responses((status = 200, description = "the program", body = openapi::ProgramView), crate::openapi::Errors))]
async fn program(State(c): State<AppState>, Path(id): Path<String>) -> ApiResult<Json<openapi::ProgramView>> {
    let info = c.program(program_id(&id)?).await?;
    Ok(Json(views::program(&info)))
}

/// Gives the program a new webhook secret, told once in the answer; the old one signs nothing
/// from now on. Only the program's owner may ask.
#[utoipa::path(post, path = "/v1/programs/{id}/webhook-secret", tag = "programs",
    params(("id" = String, Path, description = "program id: 64 lower-case hex digits", pattern = "^[0-9a-f]{64}$")),
    responses((status = 200, description = "`{program_id, webhook_secret}`", body = Object), crate::openapi::Errors))]
async fn rotate_webhook_secret(
    State(c): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> ApiResult<Json<Value>> {
    let id = program_id(&id)?;
    owned(&c, &caller, id).await?;
    let secret = c.rotate_webhook_secret(id).await?;
    Ok(Json(json!({"program_id": id, "webhook_secret": secret})))
}

#[derive(Deserialize)]
struct FsQuery {
    /// directory to list; default `/`
    path: Option<String>,
}

#[utoipa::path(get, path = "/v1/programs/{id}/fs", tag = "programs",
    params(("id" = String, Path, description = "program id: 64 lower-case hex digits", pattern = "^[0-9a-f]{64}$"), ("path" = Option<String>, Query, description = "directory; default `/`")),
    responses((status = 200, description = "directory entries", body = Object), crate::openapi::Errors))]
async fn fs_list(
    State(c): State<AppState>,
    caller: Caller,
    axum::Extension(access): axum::Extension<Arc<Access>>,
    Path(id): Path<String>,
    Query(q): Query<FsQuery>,
) -> ApiResult<Json<Value>> {
    let path = q.path.unwrap_or_else(|| "/".to_owned());
    let id = program_id(&id)?;
    owned(&c, &caller, id).await?;
    let _slot = access.volume_reads.take(&caller.quota_key()).await?;
    let entries = c.list_dir(id, &path).await?;
    let entries: Vec<Value> =
        entries.iter().map(|e| json!({"name": e.name, "is_dir": e.is_dir, "size": e.size})).collect();
    Ok(Json(json!({"path": path, "entries": entries})))
}

const OCTET_STREAM: [(axum::http::HeaderName, &str); 1] =
    [(axum::http::header::CONTENT_TYPE, "application/octet-stream")];

#[utoipa::path(get, path = "/v1/programs/{id}/fs/{path}", tag = "programs",
    params(("id" = String, Path, description = "program id: 64 lower-case hex digits", pattern = "^[0-9a-f]{64}$"), ("path" = String, Path, description = "file path in the volume (8.3 names)")),
    responses((status = 200, description = "file bytes", body = Vec<u8>, content_type = "application/octet-stream"), crate::openapi::Errors))]
async fn fs_read(
    State(c): State<AppState>,
    caller: Caller,
    axum::Extension(access): axum::Extension<Arc<Access>>,
    Path((id, path)): Path<(String, String)>,
) -> ApiResult<impl IntoResponse> {
    let id = program_id(&id)?;
    owned(&c, &caller, id).await?;
    let _slot = access.volume_reads.take(&caller.quota_key()).await?;
    let bytes = c.read_file(id, &format!("/{path}")).await?;
    Ok((OCTET_STREAM, bytes))
}

#[utoipa::path(get, path = "/v1/programs/{id}/volume", tag = "programs", params(("id" = String, Path, description = "program id: 64 lower-case hex digits", pattern = "^[0-9a-f]{64}$")),
    responses((status = 200, description = "the FAT-16 image", body = Vec<u8>, content_type = "application/octet-stream"), crate::openapi::Errors))]
async fn volume(
    State(c): State<AppState>,
    caller: Caller,
    axum::Extension(access): axum::Extension<Arc<Access>>,
    Path(id): Path<String>,
) -> ApiResult<impl IntoResponse> {
    let id = program_id(&id)?;
    owned(&c, &caller, id).await?;
    let slot = access.volume_reads.take(&caller.quota_key()).await?;
    // Pieces sent to the client, and how many wait in the channel.
    const PIECE: usize = 256 << 10;
    const CHANNEL: usize = 4;
    // The export's version stays pinned while chunks are read. Between two chunk reads the
    // pieces of one chunk go out, each given `export_idle`: the pin lasts that long, and the
    // channel's depth and two pieces more.
    const CHUNK: usize =
        zkcoproc_coordinator::VolumeExport::BLOCKS_PER_CHUNK as usize * zkcoproc_vfs::BLOCK_SIZE;
    const BETWEEN_READS: u32 = (CHUNK.div_ceil(PIECE) + CHANNEL + 2) as u32;
    let export = c.volume_export(id, access.export_idle.saturating_mul(BETWEEN_READS)).await?;
    let size = export.size;
    // Streamed chunk by chunk, each read from the store by a task of its own, a little ahead of
    // the client: a 2 GB volume is never in memory whole. The read slot is held until the last
    // piece is taken, or until the client has taken none for `export_idle`: then the export is
    // cut off (the body ends short of its length and the connection is closed), so clients that
    // stop reading cannot keep every volume read of the service waiting. The deadline applies to
    // pieces of 256 KiB, not to whole 4 MiB chunks; a slow reader may still be cut off, as the
    // kernel wakes a writer only once a good part of its send buffer has drained (README).
    let idle = access.export_idle;
    let (tx, rx) = tokio::sync::mpsc::channel::<std::io::Result<axum::body::Bytes>>(CHANNEL);
    let program = id.to_owned();
    tokio::spawn(async move {
        let _slot = slot;
        let mut first = 0;
        loop {
            let mut pieces = match export.chunk(first).await {
                Ok(chunk) if chunk.is_empty() => return,
                Ok(chunk) => axum::body::Bytes::from(chunk),
                Err(e) => {
                    // The client learns of it as a broken body (if it is still there).
                    let _ = tx.send_timeout(Err(std::io::Error::other(e.to_string())), idle).await;
                    return;
                }
            };
            while !pieces.is_empty() {
                let piece = pieces.split_to(PIECE.min(pieces.len()));
                match tx.send_timeout(Ok(piece), idle).await {
                    Ok(()) => {}
                    Err(tokio::sync::mpsc::error::SendTimeoutError::Timeout(_)) => {
                        tracing::info!(%program, ?idle, "volume export cut off: its client stopped reading");
                        return;
                    }
                    // The client went away.
                    Err(tokio::sync::mpsc::error::SendTimeoutError::Closed(_)) => return,
                }
            }
            first += zkcoproc_coordinator::VolumeExport::BLOCKS_PER_CHUNK;
        }
    });
    let chunks = futures_util::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|c| (c, rx)) });
    let headers = [
        (axum::http::header::CONTENT_TYPE, "application/octet-stream".to_owned()),
        (axum::http::header::CONTENT_LENGTH, size.to_string()),
    ];
    Ok((headers, axum::body::Body::from_stream(chunks)))
}

/// The controller component's bytes, so a verifier can recompute the program id from them and
/// the image id (`zkcoproc verify --task` does) instead of taking the image id on our word.
#[utoipa::path(get, path = "/v1/programs/{id}/controller", tag = "programs", params(("id" = String, Path, description = "program id: 64 lower-case hex digits", pattern = "^[0-9a-f]{64}$")),
    responses((status = 200, description = "the controller component (wasm)", body = Vec<u8>, content_type = "application/octet-stream"), crate::openapi::Errors))]
async fn controller(State(c): State<AppState>, Path(id): Path<String>) -> ApiResult<impl IntoResponse> {
    let wasm = c.controller_bytes(program_id(&id)?).await?;
    Ok((OCTET_STREAM, wasm))
}

/// The circuit binary (what was deployed), to execute or prove a task's input elsewhere
/// (`zkcoproc task dump`, `zkcoproc prove-local`); its image id is the program's.
#[utoipa::path(get, path = "/v1/programs/{id}/circuit", tag = "programs", params(("id" = String, Path, description = "program id: 64 lower-case hex digits", pattern = "^[0-9a-f]{64}$")),
    responses((status = 200, description = "the circuit binary", body = Vec<u8>, content_type = "application/octet-stream"), crate::openapi::Errors))]
async fn circuit(State(c): State<AppState>, Path(id): Path<String>) -> ApiResult<impl IntoResponse> {
    let bin = c.circuit_bytes(program_id(&id)?).await?;
    Ok((OCTET_STREAM, bin))
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct WitnessRequest {
    /// the controller's JSON arguments
    #[serde(default)]
    #[schema(value_type = Object)]
    args: Option<Box<RawValue>>,
}

#[utoipa::path(post, path = "/v1/programs/{id}/witnesses", tag = "programs", params(("id" = String, Path, description = "program id: 64 lower-case hex digits", pattern = "^[0-9a-f]{64}$")),
    request_body = WitnessRequest,
    responses((status = 200, description = "dry run of the controller's get-witnesses", body = openapi::DryRunView), crate::openapi::Errors))]
async fn witnesses(
    State(c): State<AppState>,
    caller: Caller,
    axum::Extension(access): axum::Extension<Arc<Access>>,
    axum::Extension(settings): axum::Extension<Arc<Settings>>,
    Path(id): Path<String>,
    req: Result<Json<WitnessRequest>, JsonRejection>,
) -> ApiResult<Json<openapi::DryRunView>> {
    let req = body(req)?;
    let id = program_id(&id)?;
    let args = controller_args(req.args.as_deref(), &settings)?;
    owned(&c, &caller, id).await?;
    let who = caller.quota_key();
    let _slot = access.dry_runs.take(&who).await?;
    let dry = c.dry_run(id, &args, &who).await?;
    // The view executes each EVM call again to count what it reads: off the async threads.
    let view = tokio::task::spawn_blocking(move || views::dry_run(&dry))
        .await
        .map_err(|e| zkcoproc_coordinator::CoordinatorError::Internal(format!("dry-run view: {e}")))?;
    Ok(Json(view))
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct ProofRequest {
    /// the controller's JSON arguments
    #[serde(default)]
    #[schema(value_type = Object)]
    args: Option<Box<RawValue>>,
    /// pin to this root (hex); default: the current root
    root: Option<String>,
    /// fake, composite, succinct or groth16; default: what the service's prover makes
    receipt_kind: Option<String>,
    /// where to POST the task JSON when the task finishes (done, failed or cancelled), signed
    /// with the program's webhook secret; default: the program's `callback_url`, if any
    callback_url: Option<String>,
}

/// `Idempotency-Key`: 1 to 255 visible ASCII characters.
fn idempotency_key(headers: &axum::http::HeaderMap) -> ApiResult<Option<String>> {
    let Some(value) = headers.get("idempotency-key") else { return Ok(None) };
    match value.to_str() {
        Ok(k) if !k.is_empty() && k.len() <= 255 && k.bytes().all(|b| b.is_ascii_graphic()) => {
            Ok(Some(k.to_owned()))
        }
        _ => Err(ApiError::bad_request(
            "bad_idempotency_key",
            "Idempotency-Key must be 1 to 255 visible ASCII characters",
        )),
    }
}

#[utoipa::path(post, path = "/v1/programs/{id}/proofs", tag = "tasks",
    params(("id" = String, Path, description = "program id: 64 lower-case hex digits", pattern = "^[0-9a-f]{64}$"), ("Idempotency-Key" = Option<String>, Header, description = "1 to 255 visible ASCII characters")),
    request_body = ProofRequest,
    responses((status = 202, description = "task accepted (durable)", body = openapi::SubmittedView), crate::openapi::Errors))]
async fn submit(
    State(c): State<AppState>,
    caller: Caller,
    axum::Extension(access): axum::Extension<Arc<Access>>,
    axum::Extension(settings): axum::Extension<Arc<Settings>>,
    Path(id): Path<String>,
    headers: axum::http::HeaderMap,
    req: Result<Json<ProofRequest>, JsonRejection>,
) -> ApiResult<impl IntoResponse> {
    access.submit_token(&caller)?;
    let key = idempotency_key(&headers)?;
    let req = body(req)?;
    let id = program_id(&id)?;
    let args = controller_args(req.args.as_deref(), &settings)?;
    let root = match req.root.as_deref() {
        None => None,
        Some(r) => Some(parse_root(r)?),
    };
    let url = callback_url(req.callback_url, &settings)?;
    let options = zkcoproc_coordinator::SubmitOptions {
        receipt_kind: req.receipt_kind.as_deref(),
        idempotency_key: key.as_deref(),
        submitter: caller.identity(),
        callback_url: url.as_deref(),
    };
    let inserted = c.submit(id, &args, root, options).await?;
    let task = inserted.task;
    let view = openapi::SubmittedView {
        task_id: task.id,
        status: task.status.as_str().to_owned(),
        replayed: !inserted.created,
    };
    Ok((StatusCode::ACCEPTED, Json(view)))
}

pub(crate) fn parse_root(s: &str) -> ApiResult<[u8; 32]> {
    let mut root = [0u8; 32];
    hex::decode_to_slice(s.strip_prefix("0x").unwrap_or(s), &mut root)
        .map_err(|_| ApiError::bad_request("bad_root", "root must be 32 bytes of hex"))?;
    Ok(root)
}

#[utoipa::path(get, path = "/v1/tasks/{id}", tag = "tasks", params(("id" = String, Path, description = "task id (UUID)", pattern = "^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$")),
    responses((status = 200, description = "the task: status, history, provers, result", body = Object), crate::openapi::Errors))]
async fn task(State(c): State<AppState>, Path(id): Path<String>) -> ApiResult<Json<Value>> {
    let task = c.task(task_id(&id)?).await?;
    let attempts = c.prover_attempts(&task.id).await?;
    Ok(Json(views::task(&task, &attempts)))
}

#[utoipa::path(delete, path = "/v1/tasks/{id}", tag = "tasks", params(("id" = String, Path, description = "task id (UUID)", pattern = "^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$")),
    responses((status = 200, description = "cancelled; the task", body = Object), crate::openapi::Errors))]
async fn cancel(State(c): State<AppState>, caller: Caller, Path(id): Path<String>) -> ApiResult<Json<Value>> {
    let id = task_id(&id)?;
    if caller.identity().is_some() {
        let task = c.task(id).await?;
        may_manage(&c, &caller, &task, "cancelled").await?;
    }
    match c.cancel(id).await? {
        CancelOutcome::Cancelled(_) => {
            Ok(Json(views::task(&c.task(id).await?, &c.prover_attempts(id).await?)))
        }
        CancelOutcome::AlreadyFinished(status) => Err(ApiError::new(
            StatusCode::CONFLICT,
            "task_finished",
            format!("task {id} already finished ({status}); nothing to cancel"),
        )),
        CancelOutcome::NotFound => Err(ApiError::not_found(format!("task {id} not found"))),
    }
}

/// Allows what only a task's submitter or its program's owner may do to the task (anyone, for
/// what was submitted or deployed while the service was open, or when it has no API keys).
async fn may_manage(c: &AppState, caller: &Caller, task: &TaskRecord, verb: &str) -> ApiResult<()> {
    let Some(me) = caller.identity() else { return Ok(()) };
    let owner = c.program(&task.program_id).await?.owner;
    let unowned = task.submitter.is_none() && owner.is_none();
    if unowned || task.submitter.as_deref() == Some(me) || owner.as_deref() == Some(me) {
        return Ok(());
    }
    Err(ApiError::new(
        StatusCode::FORBIDDEN,
        "forbidden",
        format!("task {} may be {verb} by its submitter or its program's owner only", task.id),
    ))
}

/// The circuit input the controller's get-witnesses built for this task (the bytes a prover
/// reads), so the task can be executed or proven elsewhere (`zkcoproc task dump`). Only its
/// submitter or its program's owner may read it: it can hold what the controller read.
#[utoipa::path(get, path = "/v1/tasks/{id}/input", tag = "tasks", params(("id" = String, Path, description = "task id (UUID)", pattern = "^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$")),
    responses((status = 200, description = "the circuit input", body = Vec<u8>, content_type = "application/octet-stream"),
        crate::openapi::Errors))]
async fn input(
    State(c): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> ApiResult<impl IntoResponse> {
    let task = c.task(task_id(&id)?).await?;
    may_manage(&c, &caller, &task, "read").await?;
    match task.input {
        Some(input) => Ok((OCTET_STREAM, input)),
        None => Err(ApiError::new(
            StatusCode::CONFLICT,
            "no_input",
            format!(
                "task {} has no circuit input: it is {} and {}",
                task.id,
                task.status,
                if task.status.is_terminal() {
                    "its input was never built (it failed before) or was pruned after the retention"
                } else {
                    "its controller has not built the input yet"
                }
            ),
        )),
    }
}

/// Server-Sent Events: one `status` event per stage change (replayed from the task's history,
/// then live), in order, and while proving a `progress` event each time the prover reports
/// (`{stage, done, total}`); the stream ends after a terminal status.
#[utoipa::path(get, path = "/v1/tasks/{id}/events", tag = "tasks", params(("id" = String, Path, description = "task id (UUID)", pattern = "^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$")),
    responses((status = 200, description = "Server-Sent Events, one `status` event per stage change, `progress` events while proving",
        body = openapi::SseEventView, content_type = "text/event-stream"), crate::openapi::Errors))]
async fn events(
    State(c): State<AppState>,
    client: access::Client,
    axum::Extension(access): axum::Extension<Arc<Access>>,
    Path(id): Path<String>,
) -> ApiResult<
    axum::response::sse::Sse<
        impl futures_util::Stream<Item = Result<axum::response::sse::Event, std::convert::Infallible>>,
    >,
> {
    use axum::response::sse::{Event, KeepAlive, Sse};
    let id = task_id(&id)?.to_owned();
    c.task(&id).await?; // 404 before the stream starts
    let slot = access.event_streams.take(&client.0).await?;
    struct State {
        _slot: zkcoproc_coordinator::fair::FairPermit,
        c: Arc<Coordinator>,
        id: String,
        changes: tokio::sync::broadcast::Receiver<String>,
        sent: usize,
        pending: std::collections::VecDeque<Event>,
        finished: bool,
        progress: Option<(u64, u64)>,
    }
    let changes = c.subscribe();
    let start = State {
        _slot: slot,
        c,
        id,
        changes,
        sent: 0,
        pending: Default::default(),
        finished: false,
        progress: None,
    };
    let stream = futures_util::stream::unfold(start, |mut st| async move {
        loop {
            if let Some(event) = st.pending.pop_front() {
                return Some((Ok(event), st));
            }
            if st.finished {
                return None;
            }
            let history = match st.c.store().task_events(&st.id).await {
                Ok(h) => h,
                Err(e) => {
                    tracing::warn!(task = %st.id, error = %e, "event stream: store error");
                    return None;
                }
            };
            for e in history.iter().skip(st.sent) {
                let data = json!({"status": e.status.as_str(), "seq": e.seq, "at": views::rfc3339(e.at)});
                st.pending.push_back(Event::default().event("status").data(data.to_string()));
                st.finished |= e.status.is_terminal();
            }
            st.sent = st.sent.max(history.len());
            // While proving: a `progress` event each time the prover's report changes.
            if history.last().is_some_and(|e| e.status == zkcoproc_store::TaskStatus::Proving) {
                match st.c.store().task_progress(&st.id).await {
                    Ok(Some(p)) if st.progress != Some(p) => {
                        st.progress = Some(p);
                        let data = views::progress(p.0, p.1).to_string();
                        st.pending.push_back(Event::default().event("progress").data(data));
                    }
                    Ok(_) => {}
                    Err(e) => tracing::warn!(task = %st.id, error = %e, "event stream: store error"),
                }
            }
            if st.pending.is_empty() && !st.finished {
                // Wake on a change of this task, or re-check every second (changes made by
                // another process, or a lagging receiver).
                let deadline = tokio::time::sleep(std::time::Duration::from_secs(1));
                tokio::pin!(deadline);
                loop {
                    tokio::select! {
                        _ = &mut deadline => break,
                        changed = st.changes.recv() => match changed {
                            Ok(task) if task != st.id => continue,
                            Ok(_) | Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => break,
                            // No more live changes: fall back to the periodic re-check.
                            Err(tokio::sync::broadcast::error::RecvError::Closed) => {
                                (&mut deadline).await;
                                break;
                            }
                        },
                    }
                }
            }
        }
    });
    Ok(Sse::new(stream).keep_alive(KeepAlive::default()))
}

#[utoipa::path(get, path = "/v1/tasks/{id}/proof", tag = "tasks", params(("id" = String, Path, description = "task id (UUID)", pattern = "^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$")),
    responses((status = 200, description = "receipt (base64) and journal (hex)", body = Object), crate::openapi::Errors))]
async fn proof(State(c): State<AppState>, Path(id): Path<String>) -> ApiResult<Json<Value>> {
    let task = c.task(task_id(&id)?).await?;
    if task.status.is_terminal() && task.receipt.is_none() && task.journal.is_some() {
        return Err(ApiError::new(
            StatusCode::GONE,
            "proof_pruned",
            format!(
                "task {} finished longer ago than the service keeps receipts (--retention-days); \
                 its journal is still in the task",
                task.id
            ),
        ));
    }
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

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct VerifyRequest {
    task_id: Option<String>,
    /// receipt, base64 (bincode of a RISC Zero receipt)
    receipt: Option<String>,
    image_id: Option<String>,
}

#[utoipa::path(post, path = "/v1/verify", tag = "tasks", request_body = VerifyRequest,
    responses((status = 200, description = "verdict: `valid` (the receipt verifies and its root is known), `receipt_valid` (the receipt alone), journal, root and `root_known`", body = openapi::VerifyView), crate::openapi::Errors))]
async fn verify(
    State(c): State<AppState>,
    client: access::Client,
    axum::Extension(access): axum::Extension<Arc<Access>>,
    req: Result<Json<VerifyRequest>, JsonRejection>,
) -> ApiResult<Json<openapi::VerifyView>> {
    let req = body(req)?;
    let _slot = access.verifications.take(&client.0).await?;
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
            let root_known = match root {
                Some(r) => c.is_known_root(&r).await?,
                None => false,
            };
            openapi::VerifyView {
                valid: root_known,
                receipt_valid: true,
                image_id: image_id.to_string(),
                receipt_kind: Some(v.kind.as_str().to_owned()),
                journal: Some(hex::encode(&v.journal)),
                root: Some(root.map(hex::encode)),
                output: Some(output.map(hex::encode)),
                root_known: Some(root_known),
                error: (!root_known).then(|| openapi::ErrorDetail {
                    code: "unknown_root".into(),
                    message: match root {
                        Some(r) => format!(
                            "the receipt is valid, but its root {} is not a root this service has had: \
                             the chain facts it proves were not checked by this service",
                            hex::encode(r)
                        ),
                        None => "the receipt is valid, but its journal is too short to hold a root".into(),
                    },
                }),
            }
        }
        Err(e) => openapi::VerifyView {
            valid: false,
            receipt_valid: false,
            image_id: image_id.to_string(),
            receipt_kind: None,
            journal: None,
            root: None,
            output: None,
            root_known: None,
            error: Some(openapi::ErrorDetail { code: "invalid_receipt".into(), message: e.to_string() }),
        },
    }))
}
