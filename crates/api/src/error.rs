//! API errors: one mapping from domain errors to an HTTP status and a stable `code`.

use axum::extract::rejection::JsonRejection;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::json;
use zkcoproc_coordinator::CoordinatorError;
use zkcoproc_store::StoreError;
use zkcoproc_vfs::VfsError;

/// An error response: `{"error": {"code", "message"}}` with a status.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    code: String,
    message: String,
    logs: Option<serde_json::Value>,
    headers: Vec<(axum::http::HeaderName, String)>,
}

impl ApiError {
    /// An error with `status`, `code` and `message`.
    pub fn new(status: StatusCode, code: impl Into<String>, message: impl Into<String>) -> Self {
        ApiError { status, code: code.into(), message: message.into(), logs: None, headers: Vec::new() }
    }

    /// This error with a response header.
    pub fn header(mut self, name: axum::http::HeaderName, value: impl Into<String>) -> Self {
        self.headers.push((name, value.into()));
        self
    }

    /// This error with `Retry-After` (whole seconds, at least 1).
    pub fn retry_after(self, after: std::time::Duration) -> Self {
        let secs = after.as_secs() + u64::from(after.subsec_nanos() > 0);
        self.header(axum::http::header::RETRY_AFTER, secs.max(1).to_string())
    }

    /// The error's stable code.
    pub fn code(&self) -> &str {
        &self.code
    }

    /// 400 with `code`.
    pub fn bad_request(code: &str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, code, message)
    }

    /// 404.
    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, "not_found", message)
    }

    /// The status this error answers with.
    pub fn status(&self) -> StatusCode {
        self.status
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        if self.status.is_server_error() {
            tracing::error!(code = %self.code, message = %self.message, "request failed");
        }
        let mut error = json!({"code": self.code, "message": self.message});
        if let Some(logs) = self.logs {
            error["logs"] = logs;
        }
        let mut response = (self.status, Json(json!({ "error": error }))).into_response();
        for (name, value) in self.headers {
            if let Ok(value) = axum::http::HeaderValue::from_str(&value) {
                response.headers_mut().insert(name, value);
            }
        }
        response
    }
}

impl From<CoordinatorError> for ApiError {
    fn from(e: CoordinatorError) -> Self {
        match e {
            CoordinatorError::NotFound { .. } => ApiError::not_found(e.to_string()),
            CoordinatorError::Invalid { code, message } => {
                let status = match code {
                    "unlinked_header"
                    | "conflicting_block"
                    | "smt_conflict"
                    | "no_blocks"
                    | "light_client_domain"
                    | "no_webhook_secret" => StatusCode::CONFLICT,
                    "domain_rpc" => StatusCode::BAD_GATEWAY,
                    _ => StatusCode::BAD_REQUEST,
                };
                ApiError::new(status, code, message)
            }
            CoordinatorError::Controller { error, logs } => {
                let mut err =
                    ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, error.code(), error.to_string());
                err.logs = serde_json::to_value(logs).ok();
                err
            }
            CoordinatorError::Vfs(e) => {
                let status = match &e {
                    VfsError::InvalidPath { .. } | VfsError::WrongKind(..) => StatusCode::BAD_REQUEST,
                    VfsError::NotFound(_) => StatusCode::NOT_FOUND,
                    VfsError::Full => StatusCode::INSUFFICIENT_STORAGE,
                    VfsError::Corrupt(_) | VfsError::BadSize(_) => StatusCode::INTERNAL_SERVER_ERROR,
                    VfsError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
                };
                let err = ApiError::new(status, e.code(), e.to_string());
                match e {
                    VfsError::Unavailable(_) => err.retry_after(std::time::Duration::from_secs(1)),
                    _ => err,
                }
            }
            CoordinatorError::Store(StoreError::Conflict(m)) => {
                ApiError::new(StatusCode::CONFLICT, "conflict", m)
            }
            CoordinatorError::Store(e) => {
                ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "store_error", e.to_string())
            }
            CoordinatorError::TooMany { code, message, retry_after } => {
                ApiError::new(StatusCode::TOO_MANY_REQUESTS, code, message).retry_after(retry_after)
            }
            CoordinatorError::Internal(m) => ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", m),
        }
    }
}

impl From<JsonRejection> for ApiError {
    fn from(r: JsonRejection) -> Self {
        let status = r.status();
        let code = match status {
            StatusCode::PAYLOAD_TOO_LARGE => "too_large",
            StatusCode::UNSUPPORTED_MEDIA_TYPE => "unsupported_media_type",
            _ => "bad_json",
        };
        ApiError::new(status, code, r.body_text())
    }
}
