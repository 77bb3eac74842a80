//! Authentication of prover workers: an HMAC-SHA256 over each request.
//!
//! A worker signs `zkcoproc-worker-v1 \n METHOD \n PATH \n TIMESTAMP \n NONCE \n hex(SHA-256(body))`
//! with its secret and sends its name, the timestamp (unix seconds), a fresh nonce and the
//! signature in headers. The service checks the signature against the named worker's secret
//! (constant time), refuses timestamps more than [`MAX_SKEW_SECS`] away from the clock it is
//! given (the store's: every replica judges by the same one), and refuses a nonce it has seen
//! within that window: a captured request cannot be replayed.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Mutex;

use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};

/// Worker name header.
pub const HEADER_WORKER: &str = "x-zkcoproc-worker";
/// Unix-seconds timestamp header.
pub const HEADER_TIMESTAMP: &str = "x-zkcoproc-timestamp";
/// Nonce header (16–64 hex digits).
pub const HEADER_NONCE: &str = "x-zkcoproc-nonce";
/// Signature header (hex HMAC-SHA256).
pub const HEADER_SIGNATURE: &str = "x-zkcoproc-signature";
/// Largest accepted clock difference.
pub const MAX_SKEW_SECS: u64 = 60;
/// Nonces remembered at most (oldest dropped first beyond this; they are expired by then).
const MAX_NONCES: usize = 200_000;

/// Why a worker request is refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum AuthError {
    /// No worker secret is configured: remote workers are disabled.
    #[error("remote workers are disabled: start the service with --worker-secret-file")]
    Disabled,
    /// Headers missing or malformed.
    #[error("missing or malformed worker authentication headers: {0}")]
    Malformed(&'static str),
    /// Unknown worker or wrong signature.
    #[error("worker authentication failed")]
    BadSignature,
    /// Timestamp too far from the service's clock.
    #[error("request timestamp is more than {MAX_SKEW_SECS} s away from the service's clock")]
    Stale,
    /// The nonce was used before.
    #[error("replayed request (nonce already used)")]
    Replayed,
}

/// The string a worker signs.
fn payload(method: &str, path: &str, timestamp: u64, nonce: &str, body: &[u8]) -> String {
    let body_hash = hex::encode(Sha256::digest(body));
    format!("zkcoproc-worker-v1\n{method}\n{path}\n{timestamp}\n{nonce}\n{body_hash}")
}

/// Signs a request (what `zkcoproc worker` does): hex HMAC-SHA256.
pub fn sign(secret: &[u8], method: &str, path: &str, timestamp: u64, nonce: &str, body: &[u8]) -> String {
    // HMAC accepts keys of any length.
    let mut mac =
        Hmac::<Sha256>::new_from_slice(secret).unwrap_or_else(|_| unreachable!("HMAC takes any key"));
    mac.update(payload(method, path, timestamp, nonce, body).as_bytes());
    hex::encode(mac.finalize().into_bytes())
}

/// Unix seconds now.
pub fn unix_now() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0)
}

/// Reads a secret file: one `name:secret` per line (or a single bare secret, for a worker named
/// `worker`); blank lines and `#` comments are skipped. Secrets must be at least 16 characters.
pub fn read_secrets(path: &Path) -> Result<Vec<(String, Vec<u8>)>, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let mut out = Vec::new();
    for line in text.lines().map(str::trim).filter(|l| !l.is_empty() && !l.starts_with('#')) {
        let (name, secret) = match line.split_once(':') {
            Some((n, s)) => (n.trim().to_owned(), s.trim()),
            None => ("worker".to_owned(), line),
        };
        if name.is_empty() || !name.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b)) {
            return Err(format!("{}: bad worker name `{name}`", path.display()));
        }
        if name.starts_with("local-") {
            return Err(format!(
                "{}: `{name}`: names starting with `local-` belong to the service's own provers",
                path.display()
            ));
        }
        if secret.len() < 16 {
            return Err(format!("{}: the secret of `{name}` is shorter than 16 characters", path.display()));
        }
        out.push((name, secret.as_bytes().to_vec()));
    }
    if out.is_empty() {
        return Err(format!("{}: no secret in the file", path.display()));
    }
    Ok(out)
}

/// Nonces seen within the replay window, and when, oldest first.
#[derive(Default)]
struct Nonces {
    seen: std::collections::HashSet<String>,
    order: std::collections::VecDeque<(u64, String)>,
}

/// The service's side: known secrets and recently seen nonces.
#[derive(Default)]
pub struct WorkerAuth {
    secrets: HashMap<String, Vec<u8>>,
    nonces: Mutex<Nonces>,
}

impl std::fmt::Debug for WorkerAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WorkerAuth").field("workers", &self.secrets.keys().collect::<Vec<_>>()).finish()
    }
}

impl WorkerAuth {
    /// Authentication with these named secrets (none: remote workers are refused).
    pub fn new(secrets: Vec<(String, Vec<u8>)>) -> Self {
        WorkerAuth { secrets: secrets.into_iter().collect(), nonces: Mutex::default() }
    }

    /// Checks a request against the clock `now` (unix seconds); returns the authenticated
    /// worker's name.
    pub fn verify(
        &self,
        method: &str,
        path: &str,
        headers: &axum::http::HeaderMap,
        body: &[u8],
        now: u64,
    ) -> Result<String, AuthError> {
        if self.secrets.is_empty() {
            return Err(AuthError::Disabled);
        }
        let header = |name: &'static str| {
            headers.get(name).and_then(|v| v.to_str().ok()).ok_or(AuthError::Malformed(name))
        };
        let worker = header(HEADER_WORKER)?;
        let timestamp: u64 =
            header(HEADER_TIMESTAMP)?.parse().map_err(|_| AuthError::Malformed(HEADER_TIMESTAMP))?;
        let nonce = header(HEADER_NONCE)?;
        if !(16..=64).contains(&nonce.len()) || !nonce.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(AuthError::Malformed(HEADER_NONCE));
        }
        let signature =
            hex::decode(header(HEADER_SIGNATURE)?).map_err(|_| AuthError::Malformed(HEADER_SIGNATURE))?;
        let secret = self.secrets.get(worker).ok_or(AuthError::BadSignature)?;
        let mut mac = Hmac::<Sha256>::new_from_slice(secret).map_err(|_| AuthError::BadSignature)?;
        mac.update(payload(method, path, timestamp, nonce, body).as_bytes());
        mac.verify_slice(&signature).map_err(|_| AuthError::BadSignature)?;
        if now.abs_diff(timestamp) > MAX_SKEW_SECS {
            return Err(AuthError::Stale);
        }
        let mut nonces = self.nonces.lock().map_err(|_| AuthError::BadSignature)?;
        let Nonces { seen, order } = &mut *nonces;
        // A nonce older than twice the skew can no longer come with an acceptable timestamp.
        while let Some((at, key)) = order.front() {
            if *at + 2 * MAX_SKEW_SECS < now || order.len() > MAX_NONCES {
                seen.remove(key);
                order.pop_front();
            } else {
                break;
            }
        }
        let key = format!("{worker}/{nonce}");
        if !seen.insert(key.clone()) {
            return Err(AuthError::Replayed);
        }
        order.push_back((now, key));
        Ok(worker.to_owned())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderMap;

    fn headers(worker: &str, ts: u64, nonce: &str, sig: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in [
            (HEADER_WORKER, worker),
            (HEADER_TIMESTAMP, &ts.to_string()),
            (HEADER_NONCE, nonce),
            (HEADER_SIGNATURE, sig),
        ] {
            h.insert(k, v.parse().expect("header value"));
        }
        h
    }

    #[test]
    fn signatures_check_and_replays_fail() {
        let auth = WorkerAuth::new(vec![("w1".into(), b"0123456789abcdef".to_vec())]);
        let now = unix_now();
        let nonce = "00112233445566778899aabbccddeeff";
        let sig = sign(b"0123456789abcdef", "POST", "/v1/worker/lease", now, nonce, b"{}");
        let h = headers("w1", now, nonce, &sig);
        assert_eq!(auth.verify("POST", "/v1/worker/lease", &h, b"{}", now), Ok("w1".into()));
        assert_eq!(auth.verify("POST", "/v1/worker/lease", &h, b"{}", now), Err(AuthError::Replayed));
        // Any change to what was signed breaks the signature.
        let nonce2 = "ffeeddccbbaa99887766554433221100";
        let sig2 = sign(b"0123456789abcdef", "POST", "/v1/worker/lease", now, nonce2, b"{}");
        let h2 = headers("w1", now, nonce2, &sig2);
        assert_eq!(auth.verify("POST", "/v1/worker/lease", &h2, b"{ }", now), Err(AuthError::BadSignature));
        assert_eq!(auth.verify("POST", "/v1/worker/other", &h2, b"{}", now), Err(AuthError::BadSignature));
        assert_eq!(
            auth.verify("POST", "/v1/worker/lease", &headers("w2", now, nonce2, &sig2), b"{}", now),
            Err(AuthError::BadSignature)
        );
        let wrong = sign(b"another-secret-16", "POST", "/v1/worker/lease", now, nonce2, b"{}");
        assert_eq!(
            auth.verify("POST", "/v1/worker/lease", &headers("w1", now, nonce2, &wrong), b"{}", now),
            Err(AuthError::BadSignature)
        );
        let old = now - 10 * MAX_SKEW_SECS;
        let stale = sign(b"0123456789abcdef", "POST", "/v1/worker/lease", old, nonce2, b"{}");
        assert_eq!(
            auth.verify("POST", "/v1/worker/lease", &headers("w1", old, nonce2, &stale), b"{}", now),
            Err(AuthError::Stale)
        );
        assert_eq!(auth.verify("POST", "/v1/worker/lease", &h2, b"{}", now), Ok("w1".into()));
        assert_eq!(WorkerAuth::default().verify("POST", "/x", &h2, b"", now), Err(AuthError::Disabled));
        // The clock is the one given (the store's), not this machine's: a request this machine
        // would find fresh is stale by a clock ten minutes ahead.
        let nonce3 = "0123456789abcdef0123456789abcdef";
        let sig3 = sign(b"0123456789abcdef", "POST", "/v1/worker/lease", now, nonce3, b"{}");
        let h3 = headers("w1", now, nonce3, &sig3);
        assert_eq!(auth.verify("POST", "/v1/worker/lease", &h3, b"{}", now + 600), Err(AuthError::Stale));
    }
}
