//! Domains and the coprocessor root: `GET /v1/root`, `GET /v1/roots/{root}`,
//! `GET /v1/domains/{name}/latest`, `GET /v1/domains/{name}/light-client`, `GET /v1/domains/{name}/blocks/{n}/opening` and the
//! authenticated feeder's `POST /v1/domains/{name}/blocks`.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, Method, Uri};
use axum::{Extension, Json};
use serde::Deserialize;
use serde_json::{json, Value};
use zkcoproc_types::Root;

use crate::worker::{authed, Role};
use crate::worker_auth::WorkerAuth;
use crate::{parse_root, ApiError, ApiResult, AppState};

/// Block feeders (`--feeder-secret-file`).
const FEEDERS: Role = Role {
    name: "feeder",
    disabled_code: "feeders_disabled",
    disabled_message: "block feeding is disabled: start the service with --feeder-secret-file",
};

/// Most headers in one feeder request.
pub const MAX_FEED_HEADERS: usize = 1024;

/// Authentication of block feeders: the worker scheme (HMAC-SHA256 over method, path, time,
/// nonce and body) with its own secrets (`--feeder-secret-file`), so a worker cannot feed blocks.
#[derive(Debug)]
pub struct FeederAuth(pub WorkerAuth);

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RootQuery {
    /// pin the answer to this root (hex) instead of the current one
    root: Option<String>,
}

impl RootQuery {
    fn root(&self) -> ApiResult<Option<Root>> {
        self.root.as_deref().map(parse_root).transpose()
    }
}

#[utoipa::path(get, path = "/v1/root", tag = "domains",
    responses((status = 200, description = "the current coprocessor root and each domain's newest block", body = Object)))]
pub(crate) async fn root(State(c): State<AppState>) -> Json<Value> {
    let (root, heads) = c.root_summary();
    Json(json!({
        "root": root.root,
        "seq": root.seq,
        "block": root.block,
        "domains": heads,
        "configured": c.domain_names(),
        "trust": c.domain_statuses(),
    }))
}

#[utoipa::path(get, path = "/v1/roots/{root}", tag = "domains",
    params(("root" = String, Path, description = "a root (hex)")),
    responses((status = 200, description = "whether the service ever had this root", body = Object), crate::openapi::Errors))]
pub(crate) async fn root_info(State(c): State<AppState>, Path(root): Path<String>) -> ApiResult<Json<Value>> {
    let r = parse_root(&root)?;
    Ok(Json(match c.root_info(&r).await? {
        Some(info) => json!({
            "known": true,
            "root": info.root,
            "seq": info.seq,
            "block": info.block,
            "domains": info.domains,
        }),
        None => json!({"known": false, "root": hex::encode(r)}),
    }))
}

#[utoipa::path(get, path = "/v1/domains/{name}/light-client", tag = "domains",
    params(("name" = String, Path, description = "domain name, e.g. `ethereum`")),
    responses((status = 200, description = "how the domain's blocks are admitted, its light client's state \
        (finalized and optimistic slots, sync-committee period, last update) and why it is stalled, if it is", body = Object),
        crate::openapi::Errors))]
pub(crate) async fn light_client(
    State(c): State<AppState>,
    Path(name): Path<String>,
) -> ApiResult<Json<zkcoproc_coordinator::DomainStatus>> {
    Ok(Json(c.domain_status(&name)?))
}

#[utoipa::path(get, path = "/v1/domains/{name}/latest", tag = "domains", params(("name" = String, Path, description = "domain name, e.g. `ethereum`"), ("root" = Option<String>, Query, description = "answer under this root (hex) instead of the current one")),
    responses((status = 200, description = "the domain's newest block under the root", body = Object), crate::openapi::Errors))]
pub(crate) async fn latest(
    State(c): State<AppState>,
    Path(name): Path<String>,
    Query(q): Query<RootQuery>,
) -> ApiResult<Json<Value>> {
    let root = q.root()?;
    let block = c.latest_block(&name, root.as_ref()).await?;
    let root = root.unwrap_or_else(|| c.current_root());
    Ok(Json(json!({
        "domain": block.domain,
        "number": block.number,
        "hash": block.hash,
        "state_root": block.state_root,
        "root": hex::encode(root),
    })))
}

#[utoipa::path(get, path = "/v1/domains/{name}/blocks/{number}/opening", tag = "domains",
    params(("name" = String, Path, description = "domain name, e.g. `ethereum`"), ("number" = String, Path, description = "block number"), ("root" = Option<String>, Query, description = "answer under this root (hex) instead of the current one")),
    responses((status = 200, description = "the block's sparse-Merkle opening (membership or not) and header", body = Object), crate::openapi::Errors))]
pub(crate) async fn opening(
    State(c): State<AppState>,
    Path((name, number)): Path<(String, String)>,
    Query(q): Query<RootQuery>,
) -> ApiResult<Json<Value>> {
    let number: u64 = number
        .parse()
        .map_err(|_| ApiError::bad_request("bad_block", format!("`{number}` is not a block number")))?;
    let root = q.root()?;
    let o = c.opening(&name, number, root.as_ref()).await?;
    let header = match o.value {
        Some(_) => c
            .store()
            .block_header(&name, number)
            .await
            .map_err(zkcoproc_coordinator::CoordinatorError::from)?,
        None => None,
    };
    Ok(Json(json!({
        "domain": name,
        "number": number,
        "root": hex::encode(o.root),
        "key": hex::encode(o.key),
        "present": o.value.is_some(),
        "block_hash": o.value.map(|v| format!("0x{}", hex::encode(v.block_hash))),
        "state_root": o.value.map(|v| format!("0x{}", hex::encode(v.state_root))),
        "siblings": o.opening.siblings.iter().map(hex::encode).collect::<Vec<_>>(),
        "leaf": o.opening.leaf.map(|l| json!({
            "key": hex::encode(l.key),
            "block_hash": hex::encode(l.value.block_hash),
            "state_root": hex::encode(l.value.state_root),
        })),
        "opening": hex::encode(o.opening.encode()),
        "header": header.map(|h| format!("0x{}", hex::encode(h))),
    })))
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct FeedRequest {
    /// RLP-encoded headers (hex, `0x` optional), oldest first
    headers: Vec<String>,
}

#[utoipa::path(post, path = "/v1/domains/{name}/blocks", tag = "domains", params(("name" = String, Path, description = "domain name, e.g. `ethereum`")),
    request_body(content = FeedRequest, description = "signed by a feeder (x-zkcoproc-* headers)"),
    responses((status = 200, description = "blocks inserted", body = Object), crate::openapi::Errors, crate::openapi::AuthErrors))]
pub(crate) async fn feed(
    State(c): State<AppState>,
    Extension(auth): Extension<Arc<FeederAuth>>,
    Path(name): Path<String>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> ApiResult<Json<Value>> {
    let (feeder, req): (String, FeedRequest) =
        authed(&c, &auth.0, &FEEDERS, &method, &uri, &headers, &body).await?;
    if req.headers.is_empty() || req.headers.len() > MAX_FEED_HEADERS {
        return Err(ApiError::bad_request(
            "bad_request",
            format!("send 1 to {MAX_FEED_HEADERS} headers, not {}", req.headers.len()),
        ));
    }
    let mut rlp = Vec::with_capacity(req.headers.len());
    for (i, h) in req.headers.iter().enumerate() {
        let hex_str = h.strip_prefix("0x").unwrap_or(h);
        rlp.push(
            hex::decode(hex_str)
                .map_err(|_| ApiError::bad_request("bad_header", format!("header {i} is not hex")))?,
        );
    }
    let outcome = c.feed_headers(&name, rlp).await?;
    tracing::info!(feeder, domain = %name, inserted = outcome.inserted, "blocks fed");
    let latest = c.latest_block(&name, None).await.ok();
    Ok(Json(json!({
        "inserted": outcome.inserted,
        "skipped": outcome.skipped,
        "latest": latest,
        "root": hex::encode(c.current_root()),
    })))
}
