//! Who may do what, and how much: API keys (identities), program owners, per-identity submit
//! rates and global limits on the expensive requests.
//!
//! With `serve --api-keys-file`, every mutating or program-private route needs
//! `Authorization: Bearer TOKEN` naming an identity (401 otherwise), and program-private routes
//! need the program's owner (403 otherwise). Without it the service is open: every caller is
//! anonymous and may do everything (it then listens on loopback only, unless told otherwise).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::{ConnectInfo, FromRequestParts};
use axum::http::request::Parts;
use axum::http::StatusCode;
use sha2::{Digest, Sha256};
use zkcoproc_coordinator::fair::{FairPermit, FairSlots};

use crate::ApiError;

/// Identities and their tokens (`name:token` lines, as the worker secrets). Tokens are kept as
/// SHA-256 digests and compared in constant time.
#[derive(Clone, Default)]
pub struct ApiKeys {
    keys: Vec<(String, [u8; 32])>,
}

impl std::fmt::Debug for ApiKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ApiKeys")
            .field("identities", &self.keys.iter().map(|k| &k.0).collect::<Vec<_>>())
            .finish()
    }
}

impl ApiKeys {
    /// Keys from `name:token` pairs (tokens of 16 characters or more).
    pub fn new(keys: Vec<(String, Vec<u8>)>) -> Self {
        ApiKeys {
            keys: keys.into_iter().map(|(name, token)| (name, Sha256::digest(&token).into())).collect(),
        }
    }

    /// Reads an API keys file: one `name:token` per line, `#` comments (the format of
    /// `--worker-secret-file`, each line naming its identity).
    pub fn read(path: &Path) -> Result<Self, String> {
        let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
        if text.lines().map(str::trim).any(|l| !l.is_empty() && !l.starts_with('#') && !l.contains(':')) {
            return Err(format!("{}: every line must be `name:token`", path.display()));
        }
        Ok(ApiKeys::new(crate::worker_auth::read_secrets(path)?))
    }

    /// The identity a token belongs to.
    fn identify(&self, token: &str) -> Option<&str> {
        let digest: [u8; 32] = Sha256::digest(token.as_bytes()).into();
        let mut found = None;
        // Every key is compared, whatever matches, so the time taken says nothing of which.
        for (name, key) in &self.keys {
            let diff = key.iter().zip(digest.iter()).fold(0u8, |acc, (a, b)| acc | (a ^ b));
            if diff == 0 && found.is_none() {
                found = Some(name.as_str());
            }
        }
        found
    }
}

/// Limits on what one caller, and all callers together, may ask of the service.
#[derive(Clone, Debug)]
pub struct Quotas {
    /// submits per second one identity may make, on average
    pub submit_rate: f64,
    /// submits one identity may make at once before the rate applies
    pub submit_burst: u32,
    /// dry runs (`POST /v1/programs/{id}/witnesses`) running at once
    pub dry_runs: usize,
    /// deploys (compiling a controller) running at once
    pub deploys: usize,
    /// volume reads (`fs`, `volume`) running at once
    pub volume_reads: usize,
    /// receipt verifications (`POST /v1/verify`) running at once
    pub verifications: usize,
    /// Server-Sent Event streams open at once
    pub event_streams: usize,
    /// how long a request waits for a free slot before it gets 503
    pub queue_wait: Duration,
    /// how long a volume export waits for its client to take the next 256 KiB; then the export
    /// is cut off and its volume-read slot freed
    pub export_idle: Duration,
}

impl Default for Quotas {
    fn default() -> Self {
        let cores = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(2);
        Quotas {
            submit_rate: 20.0,
            submit_burst: 100,
            dry_runs: 2 * cores,
            deploys: cores,
            volume_reads: 4 * cores,
            verifications: 2 * cores,
            event_streams: 1_000,
            queue_wait: Duration::from_secs(2),
            export_idle: Duration::from_secs(30),
        }
    }
}

/// A limit on requests of one kind running at once, shared fairly between callers: one caller
/// never holds the last free slot while it holds another (so, with two slots or more, one
/// caller alone never holds them all), and a freed slot goes to the waiting caller holding the
/// fewest.
#[derive(Debug)]
pub(crate) struct Slots {
    what: &'static str,
    slots: FairSlots,
    wait: Duration,
}

impl Slots {
    fn new(what: &'static str, n: usize, wait: Duration) -> Self {
        Slots { what, slots: FairSlots::reserving(n), wait }
    }

    /// A slot for `caller` (a [`Caller::quota_key`]), waiting a little for one; 503 `busy` with
    /// `Retry-After` when none frees up.
    pub(crate) async fn take(&self, caller: &str) -> Result<FairPermit, ApiError> {
        match tokio::time::timeout(self.wait, self.slots.acquire(caller)).await {
            Ok(permit) => Ok(permit),
            Err(_) => Err(ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "busy",
                format!("too many {} are running; try again shortly", self.what),
            )
            .retry_after(Duration::from_secs(1))),
        }
    }
}

/// A token bucket per caller.
#[derive(Debug)]
struct Buckets {
    rate: f64,
    burst: f64,
    buckets: Mutex<HashMap<String, (f64, Instant)>>,
}

/// Callers tracked at most; beyond it, the full buckets (callers idle long enough) are dropped.
const MAX_BUCKETS: usize = 100_000;

impl Buckets {
    /// Takes a token for `who`, or says how long until one is there.
    fn take(&self, who: &str) -> Result<(), Duration> {
        let Ok(mut buckets) = self.buckets.lock() else { return Ok(()) };
        let now = Instant::now();
        if buckets.len() >= MAX_BUCKETS {
            let (rate, burst) = (self.rate, self.burst);
            buckets.retain(|_, (tokens, at)| *tokens + now.duration_since(*at).as_secs_f64() * rate < burst);
        }
        let (tokens, at) = buckets.entry(who.to_owned()).or_insert((self.burst, now));
        *tokens = (*tokens + now.duration_since(*at).as_secs_f64() * self.rate).min(self.burst);
        *at = now;
        if *tokens >= 1.0 {
            *tokens -= 1.0;
            Ok(())
        } else {
            let wait = if self.rate > 0.0 { (1.0 - *tokens) / self.rate } else { 3600.0 };
            Err(Duration::from_secs_f64(wait.min(3600.0)))
        }
    }
}

/// The access rules of a running service.
#[derive(Debug)]
pub struct Access {
    keys: Option<ApiKeys>,
    submits: Buckets,
    pub(crate) dry_runs: Slots,
    pub(crate) deploys: Slots,
    pub(crate) volume_reads: Slots,
    pub(crate) verifications: Slots,
    pub(crate) event_streams: Slots,
    pub(crate) export_idle: Duration,
}

impl Access {
    /// Access with `keys` (`None`: an open service) and `quotas`.
    pub fn new(keys: Option<ApiKeys>, quotas: &Quotas) -> Self {
        let wait = quotas.queue_wait;
        Access {
            keys,
            submits: Buckets {
                rate: quotas.submit_rate.max(0.0),
                burst: f64::from(quotas.submit_burst.max(1)),
                buckets: Mutex::new(HashMap::new()),
            },
            dry_runs: Slots::new("dry runs", quotas.dry_runs, wait),
            deploys: Slots::new("deploys", quotas.deploys, wait),
            volume_reads: Slots::new("volume reads", quotas.volume_reads, wait),
            verifications: Slots::new("verifications", quotas.verifications, wait),
            // A stream lasts long: one that finds no slot is refused at once.
            event_streams: Slots::new("event streams", quotas.event_streams, Duration::ZERO),
            export_idle: quotas.export_idle.max(Duration::from_millis(100)),
        }
    }

    /// An open service (no keys) with default quotas.
    pub fn open() -> Self {
        Access::new(None, &Quotas::default())
    }

    /// Whether callers need an API key.
    pub(crate) fn keyed(&self) -> bool {
        self.keys.is_some()
    }

    /// Takes a submit token for `caller`; 429 `rate_limited` with `Retry-After` when its bucket
    /// is empty.
    pub(crate) fn submit_token(&self, caller: &Caller) -> Result<(), ApiError> {
        self.submits.take(&caller.quota_key()).map_err(|wait| {
            ApiError::new(
                StatusCode::TOO_MANY_REQUESTS,
                "rate_limited",
                format!(
                    "{} submits too fast; try again in {} ms",
                    caller.describe(),
                    wait.as_millis().max(1)
                ),
            )
            .retry_after(wait)
        })
    }
}

/// The caller of a request: an identity (API key), or anonymous on an open service.
#[derive(Clone, Debug)]
pub(crate) struct Caller {
    /// the identity; `None` on an open service
    pub(crate) identity: Option<String>,
    /// the peer address, when known (rate limits of anonymous callers)
    peer: Option<SocketAddr>,
}

impl Caller {
    pub(crate) fn identity(&self) -> Option<&str> {
        self.identity.as_deref()
    }

    /// What tells this caller apart in quotas and slots: its identity, else its address.
    pub(crate) fn quota_key(&self) -> String {
        match (&self.identity, self.peer) {
            (Some(name), _) => format!("id:{name}"),
            (None, Some(peer)) => format!("ip:{}", peer.ip()),
            (None, None) => "anonymous".to_owned(),
        }
    }

    fn describe(&self) -> String {
        match &self.identity {
            Some(name) => format!("identity `{name}`"),
            None => "this anonymous client".to_owned(),
        }
    }

    /// Whether the caller may use a program-private route of a program owned by `owner`: on an
    /// open service anyone; otherwise its owner, or anyone when the program has none (deployed
    /// while the service was open).
    pub(crate) fn may_use(&self, owner: Option<&str>) -> bool {
        match (self.identity(), owner) {
            (None, _) | (_, None) => true,
            (Some(me), Some(owner)) => me == owner,
        }
    }

    /// 403 unless [`Caller::may_use`].
    pub(crate) fn must_own(&self, owner: Option<&str>, program_id: &str) -> Result<(), ApiError> {
        if self.may_use(owner) {
            Ok(())
        } else {
            Err(ApiError::new(
                StatusCode::FORBIDDEN,
                "forbidden",
                format!("program {program_id} belongs to another identity: only its owner may do this"),
            ))
        }
    }
}

impl<S: Send + Sync> FromRequestParts<S> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, ApiError> {
        let peer = parts.extensions.get::<ConnectInfo<SocketAddr>>().map(|c| c.0);
        let access = parts
            .extensions
            .get::<Arc<Access>>()
            .ok_or_else(|| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", "no access rules"))?;
        let Some(keys) = &access.keys else { return Ok(Caller { identity: None, peer }) };
        let unauthorized = |message: &str| {
            ApiError::new(StatusCode::UNAUTHORIZED, "unauthorized", message.to_owned())
                .header(axum::http::header::WWW_AUTHENTICATE, "Bearer")
        };
        let Some(value) = parts.headers.get(axum::http::header::AUTHORIZATION) else {
            return Err(unauthorized("this service needs an API key: send `Authorization: Bearer TOKEN`"));
        };
        let token =
            bearer(value).ok_or_else(|| unauthorized("the Authorization header must be `Bearer TOKEN`"))?;
        match keys.identify(token) {
            Some(name) => Ok(Caller { identity: Some(name.to_owned()), peer }),
            None => Err(unauthorized("unknown API key")),
        }
    }
}

/// The caller of a public route, for its fair share of slots: the identity of a valid API key
/// sent with it, else the client's address. Never refuses a request.
#[derive(Clone, Debug)]
pub(crate) struct Client(pub(crate) String);

impl<S: Send + Sync> FromRequestParts<S> for Client {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        let peer = parts.extensions.get::<ConnectInfo<SocketAddr>>().map(|c| c.0);
        let keys = parts.extensions.get::<Arc<Access>>().and_then(|a| a.keys.as_ref());
        let identity = keys.and_then(|keys| {
            let token = bearer(parts.headers.get(axum::http::header::AUTHORIZATION)?)?;
            keys.identify(token).map(str::to_owned)
        });
        Ok(Client(Caller { identity, peer }.quota_key()))
    }
}

/// The token of an `Authorization: Bearer TOKEN` header, if it has that form.
fn bearer(value: &axum::http::HeaderValue) -> Option<&str> {
    let value = value.to_str().ok()?;
    value.strip_prefix("Bearer ").or_else(|| value.strip_prefix("bearer ")).map(str::trim)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_name_their_identity_and_buckets_refill() {
        let keys = ApiKeys::new(vec![
            ("alice".into(), b"alice-token-0123456789".to_vec()),
            ("bob".into(), b"bob-token-0123456789ab".to_vec()),
        ]);
        assert_eq!(keys.identify("alice-token-0123456789"), Some("alice"));
        assert_eq!(keys.identify("bob-token-0123456789ab"), Some("bob"));
        assert_eq!(keys.identify("alice-token-012345678"), None);
        assert_eq!(keys.identify(""), None);

        let b = Buckets { rate: 1000.0, burst: 2.0, buckets: Mutex::new(HashMap::new()) };
        assert!(b.take("a").is_ok());
        assert!(b.take("a").is_ok());
        let wait = b.take("a").expect_err("empty after the burst");
        assert!(wait <= Duration::from_millis(1), "{wait:?}");
        assert!(b.take("b").is_ok(), "buckets are per caller");
        std::thread::sleep(Duration::from_millis(5));
        assert!(b.take("a").is_ok(), "refilled");
    }
}
