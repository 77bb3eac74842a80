//! Webhooks: each finished task that has a callback URL is POSTed there, as the task JSON of
//! `GET /v1/tasks/{id}`, signed with its program's secret.
//!
//! The store keeps the deliveries (its outbox, written in the transaction that ends the task), so
//! a delivery survives restarts and is made at least once: a sender leases due deliveries, POSTs
//! them, and records each attempt with what follows it (delivered on a 2xx answer; otherwise
//! retried with exponential backoff until [`WebhookConfig::retry_for`] after the task ended, then
//! abandoned). A sender that dies mid-delivery loses its lease and the delivery is due again, so
//! a receiver may see one delivery twice: [`HEADER_DELIVERY`] (the task id) tells it so.
//!
//! What is sent where: only to `http` and `https` URLs whose host resolves to public addresses
//! (checked on the addresses the connection uses, so a name that re-resolves elsewhere is
//! caught), unless [`WebhookConfig::allow_private`]; without proxies, without following
//! redirects, within [`WebhookConfig::timeout`]. The answer's body is not read.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use hmac::{Hmac, Mac as _};
use sha2::Sha256;
use tokio::task::JoinHandle;
use zkcoproc_coordinator::Coordinator;
use zkcoproc_store::{DueWebhook, WebhookVerdict};

/// The delivery id: the task's id, the same on every attempt of its delivery.
pub const HEADER_DELIVERY: &str = "x-zkcoproc-delivery";
/// Unix seconds when the attempt was signed.
pub const HEADER_TIMESTAMP: &str = "x-zkcoproc-timestamp";
/// Lower-case hex HMAC-SHA256, keyed with the program's webhook secret, over the timestamp's
/// decimal digits followed by the body.
pub const HEADER_SIGNATURE: &str = "x-zkcoproc-signature";
/// Longest callback URL accepted.
pub const MAX_URL_LEN: usize = 2_048;

/// How webhooks are sent.
#[derive(Clone, Debug)]
pub struct WebhookConfig {
    /// Allow URLs whose host is a loopback, private, link-local or otherwise non-public address
    /// (for tests and private networks).
    pub allow_private: bool,
    /// Longest one attempt may take, connecting included.
    pub timeout: Duration,
    /// How long after the task ended a delivery is retried before it is abandoned.
    pub retry_for: Duration,
    /// Pause after the first failed attempt; each further one doubles it.
    pub first_retry: Duration,
    /// Longest pause between attempts.
    pub max_backoff: Duration,
    /// Deliveries in flight at once.
    pub concurrency: usize,
    /// How often the outbox is looked at for due deliveries.
    pub poll: Duration,
}

impl Default for WebhookConfig {
    fn default() -> Self {
        WebhookConfig {
            allow_private: false,
            timeout: Duration::from_secs(10),
            retry_for: Duration::from_secs(24 * 3600),
            first_retry: Duration::from_secs(2),
            max_backoff: Duration::from_secs(600),
            concurrency: 16,
            poll: Duration::from_millis(500),
        }
    }
}

/// The signature of `body` sent at `timestamp` (unix seconds) with `secret`: lower-case hex
/// HMAC-SHA256 over the timestamp's decimal digits followed by the body.
pub fn sign(secret: &[u8], timestamp: u64, body: &[u8]) -> String {
    // HMAC accepts keys of any length.
    let mut mac =
        Hmac::<Sha256>::new_from_slice(secret).unwrap_or_else(|_| unreachable!("HMAC takes any key"));
    mac.update(timestamp.to_string().as_bytes());
    mac.update(body);
    hex::encode(mac.finalize().into_bytes())
}

/// Whether `ip` is a public unicast address: not loopback, private, shared (CGNAT), link-local,
/// unspecified, broadcast, multicast, documentation, benchmarking or reserved, nor an IPv6 form
/// of such an IPv4 address (mapped, compatible, NAT64, 6to4).
pub fn is_public(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => is_public_v4(v4),
        IpAddr::V6(v6) => is_public_v6(v6),
    }
}

fn is_public_v4(ip: Ipv4Addr) -> bool {
    let [a, b, c, _] = ip.octets();
    !(ip.is_unspecified()
        || ip.is_loopback()
        || ip.is_private()
        || ip.is_link_local()
        || ip.is_broadcast()
        || ip.is_multicast()
        || ip.is_documentation()
        || a == 0
        || (a == 100 && (64..128).contains(&b)) // shared address space (RFC 6598)
        || (a == 192 && b == 0 && c == 0) // IETF protocol assignments
        || (a == 198 && (b == 18 || b == 19)) // benchmarking (RFC 2544)
        || a >= 240) // reserved
}

fn is_public_v6(ip: Ipv6Addr) -> bool {
    let s = ip.segments();
    if let Some(v4) = ip.to_ipv4_mapped() {
        return is_public_v4(v4);
    }
    let embedded = |hi: u16, lo: u16| Ipv4Addr::new((hi >> 8) as u8, hi as u8, (lo >> 8) as u8, lo as u8);
    if s[..6] == [0; 6] && !ip.is_unspecified() && !ip.is_loopback() {
        return is_public_v4(embedded(s[6], s[7])); // IPv4-compatible (deprecated)
    }
    if s[0] == 0x64 && s[1] == 0xff9b {
        return is_public_v4(embedded(s[6], s[7])); // NAT64
    }
    if s[0] == 0x2002 {
        return is_public_v4(embedded(s[1], s[2])); // 6to4
    }
    !(ip.is_unspecified()
        || ip.is_loopback()
        || ip.is_multicast()
        || (s[0] & 0xfe00) == 0xfc00 // unique local
        || (s[0] & 0xffc0) == 0xfe80 // link-local
        || (s[0] & 0xffc0) == 0xfec0 // site-local (deprecated)
        || (s[0] == 0x2001 && s[1] == 0x0db8) // documentation
        || (s[0] == 0x0100 && s[1..4] == [0; 3])) // discard-only
}

/// Checks a callback URL before it is stored or used: `http` or `https`, at most
/// [`MAX_URL_LEN`] characters, a host, no user name or password, and (unless `allow_private`)
/// not a non-public IP address. A host name's addresses are checked when it is resolved for a
/// delivery. `Err` says what is wrong.
pub fn check_url(url: &str, allow_private: bool) -> Result<reqwest::Url, String> {
    if url.len() > MAX_URL_LEN {
        return Err(format!("callback_url is {} characters; at most {MAX_URL_LEN}", url.len()));
    }
    let parsed = reqwest::Url::parse(url).map_err(|e| format!("callback_url `{url}` is not a URL: {e}"))?;
    if !matches!(parsed.scheme(), "http" | "https") {
        return Err(format!("callback_url `{url}`: only http and https URLs are called"));
    }
    if !parsed.username().is_empty() || parsed.password().is_some() {
        return Err("callback_url must not hold a user name or password".to_owned());
    }
    let ip = match parsed.host() {
        None => return Err(format!("callback_url `{url}` has no host")),
        Some(url::Host::Domain(_)) => None,
        Some(url::Host::Ipv4(v4)) => Some(IpAddr::V4(v4)),
        Some(url::Host::Ipv6(v6)) => Some(IpAddr::V6(v6)),
    };
    if let Some(ip) = ip.filter(|ip| !allow_private && !is_public(*ip)) {
        return Err(format!(
            "callback_url `{url}`: {ip} is not a public address (the service calls public addresses only)"
        ));
    }
    Ok(parsed)
}

/// Resolves host names for deliveries and refuses a name with any non-public address: the
/// addresses checked are the ones connected to.
#[derive(Debug)]
struct PublicResolver {
    allow_private: bool,
}

impl reqwest::dns::Resolve for PublicResolver {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let allow_private = self.allow_private;
        Box::pin(async move {
            let addrs = resolve_public(name.as_str(), allow_private).await?;
            Ok::<_, Box<dyn std::error::Error + Send + Sync>>(
                Box::new(addrs.into_iter()) as reqwest::dns::Addrs
            )
        })
    }
}

/// The addresses of `host`, or why they may not be called.
async fn resolve_public(host: &str, allow_private: bool) -> Result<Vec<SocketAddr>, NotPublic> {
    let addrs: Vec<SocketAddr> = tokio::net::lookup_host((host, 0))
        .await
        .map_err(|e| NotPublic { message: format!("cannot resolve {host}: {e}"), permanent: false })?
        .collect();
    if addrs.is_empty() {
        return Err(NotPublic { message: format!("{host} has no addresses"), permanent: false });
    }
    if let Some(bad) = addrs.iter().find(|a| !allow_private && !is_public(a.ip())) {
        let message = format!(
            "{host} resolves to {}, not a public address (the service calls public addresses only)",
            bad.ip()
        );
        return Err(NotPublic { message, permanent: true });
    }
    Ok(addrs)
}

/// A host that cannot be called: unresolvable now (`permanent` false) or not public.
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
struct NotPublic {
    message: String,
    permanent: bool,
}

/// Starts the sender: it leases due deliveries from the outbox every [`WebhookConfig::poll`]
/// and makes up to [`WebhookConfig::concurrency`] at once. Abort the handle to stop it.
pub fn spawn(coordinator: Arc<Coordinator>, config: WebhookConfig) -> Result<JoinHandle<()>, String> {
    let client = reqwest::Client::builder()
        .no_proxy()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(config.timeout)
        .connect_timeout(config.timeout)
        .dns_resolver(Arc::new(PublicResolver { allow_private: config.allow_private }))
        .user_agent(concat!("zkcoproc-webhooks/", env!("CARGO_PKG_VERSION")))
        .build()
        .map_err(|e| format!("webhook client: {e}"))?;
    let owner = format!("webhooks-{}", uuid::Uuid::new_v4().simple());
    let sender = Arc::new(Sender { c: coordinator, client, config, owner });
    Ok(tokio::spawn(async move { sender.run().await }))
}

#[derive(Debug)]
struct Sender {
    c: Arc<Coordinator>,
    client: reqwest::Client,
    config: WebhookConfig,
    owner: String,
}

impl Sender {
    async fn run(self: Arc<Self>) {
        let slots = Arc::new(tokio::sync::Semaphore::new(self.config.concurrency.max(1)));
        // A lease outlives the attempt it covers.
        let lease = self.config.timeout + Duration::from_secs(10);
        loop {
            let free = slots.available_permits();
            if free > 0 {
                match self.c.store().due_webhooks(&self.owner, lease, free).await {
                    Ok(due) => {
                        for d in due {
                            let Ok(slot) = Arc::clone(&slots).acquire_owned().await else { return };
                            let me = Arc::clone(&self);
                            tokio::spawn(async move {
                                me.deliver(d).await;
                                drop(slot);
                            });
                        }
                    }
                    Err(e) => tracing::warn!(error = %e, "cannot read the webhook outbox"),
                }
            }
            tokio::time::sleep(self.config.poll).await;
        }
    }

    /// Makes one attempt of `due` and records it.
    async fn deliver(&self, due: DueWebhook) {
        let (status, error, verdict) = self.attempt(&due).await;
        match &error {
            // The URL without its query, which often carries the receiver's token.
            None => {
                tracing::info!(task = %due.task_id, url = %crate::views::shown_url(&due.url), "webhook delivered")
            }
            Some(e) => tracing::warn!(
                task = %due.task_id, url = %crate::views::shown_url(&due.url), error = %e, ?verdict,
                "webhook attempt failed"
            ),
        }
        self.c.webhook_attempted(match verdict {
            WebhookVerdict::Delivered => "delivered",
            WebhookVerdict::Retry(_) => "retry",
            WebhookVerdict::Abandon => "abandoned",
        });
        let recorded =
            self.c.store().record_webhook_attempt(&due.task_id, &self.owner, status, error, verdict).await;
        match recorded {
            Ok(true) => {}
            Ok(false) => {
                tracing::warn!(task = %due.task_id, "webhook lease lost before the attempt was recorded")
            }
            Err(e) => tracing::warn!(task = %due.task_id, error = %e, "cannot record a webhook attempt"),
        }
    }

    /// One POST of `due`: the receiver's status, the error if it did not count, what follows.
    async fn attempt(&self, due: &DueWebhook) -> (Option<u16>, Option<String>, WebhookVerdict) {
        let give_up = |message: String| (None, Some(message), WebhookVerdict::Abandon);
        let url = match check_url(&due.url, self.config.allow_private) {
            Ok(url) => url,
            Err(e) => return give_up(e),
        };
        // Refused for good before anything is sent: a name of a non-public address.
        // The look-up is bounded like the request: a resolver that hangs costs one attempt.
        if let Some(url::Host::Domain(host)) = url.host() {
            let resolved =
                tokio::time::timeout(self.config.timeout, resolve_public(host, self.config.allow_private));
            match resolved.await {
                Ok(Ok(_)) => {}
                Ok(Err(e)) => {
                    let verdict = if e.permanent { WebhookVerdict::Abandon } else { self.retry(due).await };
                    return (None, Some(e.message), verdict);
                }
                Err(_) => {
                    let message = format!("resolving {host} took longer than {:?}", self.config.timeout);
                    return (None, Some(message), self.retry(due).await);
                }
            }
        }
        let body = match self.body(due).await {
            Ok(Some(body)) => body,
            Ok(None) => return give_up(format!("program {} has no webhook secret", due.program_id)),
            Err(e) => return (None, Some(e), self.retry(due).await),
        };
        let (secret, body) = body;
        let timestamp = crate::worker_auth::unix_now();
        let sent = self
            .client
            .post(url)
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .header(HEADER_DELIVERY, &due.task_id)
            .header(HEADER_TIMESTAMP, timestamp.to_string())
            .header(HEADER_SIGNATURE, sign(secret.as_bytes(), timestamp, &body))
            .body(body)
            .send()
            .await;
        match sent {
            Ok(resp) if resp.status().is_success() => {
                (Some(resp.status().as_u16()), None, WebhookVerdict::Delivered)
            }
            Ok(resp) => {
                let status = resp.status();
                let message = if status.is_redirection() {
                    format!("the receiver answered {status} (redirects are not followed)")
                } else {
                    format!("the receiver answered {status}")
                };
                (Some(status.as_u16()), Some(message), self.retry(due).await)
            }
            Err(e) => (None, Some(error_chain(&e)), self.retry(due).await),
        }
    }

    /// The program's secret and the task JSON to send (`None`: the program has no secret).
    async fn body(&self, due: &DueWebhook) -> Result<Option<(String, Vec<u8>)>, String> {
        let Some(secret) = self.c.store().webhook_secret(&due.program_id).await.map_err(|e| e.to_string())?
        else {
            return Ok(None);
        };
        let task = self.c.task(&due.task_id).await.map_err(|e| e.to_string())?;
        let attempts = self.c.prover_attempts(&due.task_id).await.map_err(|e| e.to_string())?;
        let body = serde_json::to_vec(&crate::views::task(&task, &attempts)).map_err(|e| e.to_string())?;
        Ok(Some((secret, body)))
    }

    /// After a failed attempt: try again after the next backoff, unless that is past the
    /// delivery's time.
    async fn retry(&self, due: &DueWebhook) -> WebhookVerdict {
        let shift = due.attempts.min(30);
        let pause = self.config.first_retry.saturating_mul(1 << shift).min(self.config.max_backoff);
        let now = self.c.store().now_ms().await.unwrap_or_else(|_| zkcoproc_store::now_ms());
        let deadline = due
            .created_at
            .saturating_add(i64::try_from(self.config.retry_for.as_millis()).unwrap_or(i64::MAX));
        let next = now.saturating_add(i64::try_from(pause.as_millis()).unwrap_or(i64::MAX));
        if next > deadline {
            WebhookVerdict::Abandon
        } else {
            WebhookVerdict::Retry(pause)
        }
    }
}

/// An error and its causes, on one line.
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut message = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let text = s.to_string();
        if !message.contains(&text) {
            message.push_str(": ");
            message.push_str(&text);
        }
        source = s.source();
    }
    message
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().expect("address")
    }

    #[test]
    fn only_public_addresses_are_public() {
        for private in [
            "127.0.0.1",
            "10.1.2.3",
            "172.16.0.1",
            "192.168.1.1",
            "169.254.169.254",
            "0.0.0.0",
            "100.64.0.1",
            "198.18.0.1",
            "224.0.0.1",
            "255.255.255.255",
            "192.0.2.1",
            "240.0.0.1",
            "::1",
            "::",
            "fc00::1",
            "fd12::1",
            "fe80::1",
            "ff02::1",
            "::ffff:127.0.0.1",
            "::ffff:169.254.169.254",
            "64:ff9b::a00:1",
            "2002:a00:1::",
            "2001:db8::1",
        ] {
            assert!(!is_public(ip(private)), "{private} taken as public");
        }
        for public in ["8.8.8.8", "1.1.1.1", "93.184.216.34", "2606:4700::1111", "::ffff:8.8.8.8"] {
            assert!(is_public(ip(public)), "{public} taken as non-public");
        }
    }

    #[test]
    fn urls_are_checked() {
        assert!(check_url("https://example.com/hook?x=1", false).is_ok());
        assert!(check_url("http://8.8.8.8:8080/", false).is_ok());
        for bad in [
            "ftp://example.com/",
            "file:///etc/passwd",
            "not a url",
            "http://user:pw@example.com/",
            "http://127.0.0.1:9/",
            "http://[::1]/",
            "http://169.254.169.254/latest/meta-data/",
            "http://0x7f000001/",
        ] {
            assert!(check_url(bad, false).is_err(), "{bad} accepted");
        }
        assert!(check_url("http://127.0.0.1:9/", true).is_ok());
        assert!(check_url(&format!("https://example.com/{}", "a".repeat(MAX_URL_LEN)), true).is_err());
    }

    #[test]
    fn answers_hide_a_callback_urls_query() {
        assert_eq!(
            crate::views::shown_url("https://h.example/hook?token=s3cret"),
            "https://h.example/hook?…"
        );
        assert_eq!(crate::views::shown_url("https://h.example/hook#s3cret"), "https://h.example/hook?…");
        assert_eq!(crate::views::shown_url("https://h.example/hook"), "https://h.example/hook");
    }

    #[test]
    fn signatures_cover_timestamp_and_body() {
        let s = sign(b"secret", 1_700_000_000, b"{}");
        assert_eq!(s.len(), 64);
        assert_ne!(s, sign(b"secret", 1_700_000_001, b"{}"));
        assert_ne!(s, sign(b"secret", 1_700_000_000, b"{ }"));
        assert_ne!(s, sign(b"other", 1_700_000_000, b"{}"));
        // HMAC-SHA256 keyed with the secret over the decimal timestamp, then the body.
        let mut mac = Hmac::<Sha256>::new_from_slice(b"secret").expect("key");
        mac.update(b"1700000000{}");
        assert_eq!(s, hex::encode(mac.finalize().into_bytes()));
    }
}
