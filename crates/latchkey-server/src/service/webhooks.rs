//! Webhooks (docs/API.md, "Webhooks"): endpoints with a signing secret, and the
//! background sender that works through the outbox the store fills in each event's
//! transaction.
//!
//! Policy: the sender resolves the endpoint's host itself, refuses non-public addresses
//! unless `webhook_allow_private_targets` is set, and connects to the address it checked,
//! so a DNS answer that changes between check and use (rebinding) gains nothing. It
//! follows no redirect: any answer but 2xx is a failed attempt. Deliveries are signed
//! the Standard Webhooks way: `webhook-signature: v1,<base64 HMAC-SHA256(secret,
//! id.timestamp.body)>`.

use crate::service::error::{Error, Result};
use crate::service::state::AppState;
use aws_lc_rs::hmac;
use aws_lc_rs::rand::SecureRandom;
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use latchkey_core::audit::AuditContext;
use latchkey_core::store::{
    DeliveryNext, WebhookAttempt, WebhookAttemptOutcome, WebhookDelivery, WebhookRecord,
};
use latchkey_core::{Timestamp, TokenId};
use std::future::Future;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::pin::Pin;
use std::time::{Duration, Instant};

/// The shown form of a secret: this prefix, then base64 of [`SECRET_BYTES`] bytes.
pub const SECRET_PREFIX: &str = "whsec_";
const SECRET_BYTES: usize = 32;
/// The longest URL accepted.
pub const MAX_URL_LENGTH: usize = 2048;

/// How long resolving a host may take; connecting has as long again.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// How long the receiver may take to answer, body included.
pub const RESPONSE_TIMEOUT: Duration = Duration::from_secs(30);
/// How long one replica holds an endpoint while it sends: longer than any attempt.
const LEASE_SECONDS: i64 = 120;
/// Endpoints sent to at once by one server.
const PARALLEL_ENDPOINTS: usize = 8;
/// The first retry waits this long; each later one twice as long as the one before...
const FIRST_BACKOFF_SECONDS: i64 = 5;
/// ...up to this.
const MAX_BACKOFF_SECONDS: i64 = 3_600;
/// A delivery is retried until it is this old, then marked failed.
pub const GIVE_UP_AFTER_SECONDS: i64 = 86_400;
/// An endpoint is disabled when this many deliveries in a row failed for good.
pub const DISABLE_AFTER_FAILED_DELIVERIES: i64 = 3;

/// A webhook URL, checked: http or https, a host, no user information.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    /// https rather than http.
    pub https: bool,
    /// The host name or IP literal, without brackets.
    pub host: String,
    /// The port, explicit or the scheme's.
    pub port: u16,
    /// What the `Host` header says.
    pub authority: String,
    /// The request target: path and query.
    pub path_and_query: String,
}

/// Parses a webhook URL; the reason is safe to show.
pub fn parse_url(text: &str) -> std::result::Result<Target, String> {
    if text.len() > MAX_URL_LENGTH {
        return Err(format!("must be at most {MAX_URL_LENGTH} characters"));
    }
    let uri: http::Uri = text
        .parse()
        .map_err(|_| "must be an absolute http or https URL".to_owned())?;
    let https = match uri.scheme_str() {
        Some("https") => true,
        Some("http") => false,
        _ => return Err("must be an http or https URL".to_owned()),
    };
    let authority = uri
        .authority()
        .ok_or_else(|| "must name a host".to_owned())?;
    if authority.as_str().contains('@') {
        return Err("must not carry user information (`user:password@`)".to_owned());
    }
    let host = authority
        .host()
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_owned();
    if host.is_empty() {
        return Err("must name a host".to_owned());
    }
    Ok(Target {
        https,
        port: authority.port_u16().unwrap_or(if https { 443 } else { 80 }),
        authority: authority.as_str().to_owned(),
        path_and_query: uri
            .path_and_query()
            .map_or_else(|| "/".to_owned(), |p| p.as_str().to_owned()),
        host,
    })
}

/// True for addresses a webhook may not reach unless the operator allows it: loopback,
/// private, shared (carrier-grade NAT), link-local, unique-local, unspecified,
/// multicast, broadcast, and the IPv6 forms that embed such an IPv4 address.
pub fn is_forbidden(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => forbidden_v4(v4),
        IpAddr::V6(v6) => {
            if let Some(v4) = v6.to_ipv4_mapped() {
                return forbidden_v4(v4);
            }
            let segments = v6.segments();
            // ::a.b.c.d (IPv4-compatible) and 64:ff9b::a.b.c.d (NAT64) reach IPv4.
            let embeds_v4 = segments[..6] == [0; 6] || segments[..6] == [0x64, 0xff9b, 0, 0, 0, 0];
            if embeds_v4 && !v6.is_unspecified() && !v6.is_loopback() {
                let [.., a, b, c, d] = v6.octets();
                return forbidden_v4(Ipv4Addr::new(a, b, c, d));
            }
            v6.is_loopback()
                || v6.is_unspecified()
                || v6.is_multicast()
                || (segments[0] & 0xfe00) == 0xfc00
                || (segments[0] & 0xffc0) == 0xfe80
                || (segments[0] & 0xffc0) == 0xfec0
        }
    }
}

fn forbidden_v4(ip: Ipv4Addr) -> bool {
    let [a, b, ..] = ip.octets();
    ip.is_loopback()
        || ip.is_private()
        || ip.is_link_local()
        || ip.is_unspecified()
        || ip.is_multicast()
        || ip.is_broadcast()
        || a == 0
        || (a == 100 && (64..128).contains(&b))
}

/// Why a URL may not be a webhook's when private targets are refused; `None` when it
/// may. Only what the URL itself shows is judged here (an IP literal, `localhost`);
/// a name is judged by the addresses it resolves to, at each delivery.
pub fn forbidden_target(target: &Target) -> Option<String> {
    // A trailing dot names the same host.
    let host = target.host.to_ascii_lowercase();
    let host = host.trim_end_matches('.');
    if host == "localhost" || host.ends_with(".localhost") {
        return Some(format!("targets {host}, a loopback name"));
    }
    let ip: IpAddr = host.parse().ok()?;
    is_forbidden(ip).then(|| {
        format!(
            "targets {ip}, a loopback, private or link-local address (the operator can allow \
             such targets with webhook_allow_private_targets)"
        )
    })
}

/// A fresh secret: its shown form (`whsec_…`) and the bytes that sign.
pub fn generate_secret(state: &AppState) -> Result<(String, Vec<u8>)> {
    let mut bytes = vec![0u8; SECRET_BYTES];
    state
        .rng()
        .fill(&mut bytes)
        .map_err(|_| Error::internal("random failure"))?;
    Ok((format!("{SECRET_PREFIX}{}", STANDARD.encode(&bytes)), bytes))
}

/// What binds a sealed secret to its webhook: a secret moved to another row does not
/// open.
fn seal_label(id: TokenId) -> String {
    format!("webhook:{id}")
}

/// Seals a webhook's secret under the master key.
pub fn seal_secret(state: &AppState, id: TokenId, secret: &[u8]) -> Result<Vec<u8>> {
    state.keyring().master().seal(&seal_label(id), secret)
}

/// The secrets that sign a delivery at `at`: the current one, and after a rotation
/// the previous one until its time is up (docs/API.md, "Webhooks").
fn signing_secrets(
    state: &AppState,
    record: &WebhookRecord,
    at: Timestamp,
) -> Result<Vec<Vec<u8>>> {
    let open = |sealed: &[u8]| {
        state
            .keyring()
            .master()
            .open(&seal_label(record.webhook.id), sealed)
            .map_err(|_| Error::internal("a webhook secret does not open under this master key"))
    };
    let mut secrets = vec![open(&record.secret_sealed)?];
    let previous_live = record
        .webhook
        .previous_secret_expires_at
        .is_some_and(|until| at < until);
    if let (true, Some(previous)) = (previous_live, &record.previous_secret_sealed) {
        secrets.push(open(previous)?);
    }
    Ok(secrets)
}

/// The `webhook-signature` value: `v1,` and the base64 HMAC-SHA256 of
/// `id.timestamp.body` under the secret's bytes.
pub fn signature(secret: &[u8], id: &str, timestamp: i64, body: &str) -> String {
    let key = hmac::Key::new(hmac::HMAC_SHA256, secret);
    let mut context = hmac::Context::with_key(&key);
    context.update(id.as_bytes());
    context.update(b".");
    context.update(timestamp.to_string().as_bytes());
    context.update(b".");
    context.update(body.as_bytes());
    format!("v1,{}", STANDARD.encode(context.sign().as_ref()))
}

/// The `webhook-id` of a delivery: the event's, the same on every retry.
pub fn message_id(seq: i64) -> String {
    format!("evt_{seq}")
}

/// How long to wait after the `attempt`-th failed attempt.
fn backoff_seconds(attempt: i64) -> i64 {
    let doublings = u32::try_from(attempt.saturating_sub(1))
        .unwrap_or(u32::MAX)
        .min(20);
    FIRST_BACKOFF_SECONDS
        .saturating_mul(1i64 << doublings)
        .min(MAX_BACKOFF_SECONDS)
}

/// One signed POST, to the address the sender checked: the HTTP layer sends it
/// (`http::outbound`), with no redirect followed and bounded timeouts.
#[derive(Debug, Clone)]
pub struct Outbound {
    /// The address to connect to: resolved and checked, never resolved again.
    pub address: SocketAddr,
    /// The URL: scheme, `Host`, TLS server name and request target.
    pub target: Target,
    /// The Standard Webhooks headers.
    pub headers: Vec<(&'static str, String)>,
    /// The JSON body.
    pub body: String,
}

/// What sends an [`Outbound`] request: the receiver's status, or why there was none.
pub type Post =
    fn(Outbound) -> Pin<Box<dyn Future<Output = std::result::Result<u16, String>> + Send>>;

/// Sends due deliveries every `webhook_poll_interval_ms` until `stop` turns true; then
/// returns once the attempts under way are recorded, so a stopped server leaves no
/// endpoint leased.
pub async fn run(state: AppState, post: Post, mut stop: tokio::sync::watch::Receiver<bool>) {
    let mut tick = tokio::time::interval(state.settings().webhook_poll_interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = stop.changed() => return,
        }
        deliver_due(&state, post, &stop).await;
        if *stop.borrow() {
            return;
        }
    }
}

/// Leases endpoints with a due delivery, one at a time, and sends each its oldest
/// pending delivery, several endpoints at once. Each finished attempt frees its
/// endpoint, which is leased again at once if its next delivery is due, so a backlog
/// drains without waiting for the next round. Returns when nothing is due and nothing
/// is under way, or once `stop` is true and the attempts under way are recorded.
async fn deliver_due(state: &AppState, post: Post, stop: &tokio::sync::watch::Receiver<bool>) {
    let mut running = tokio::task::JoinSet::new();
    loop {
        let mut leased_none = true;
        if running.len() < PARALLEL_ENDPOINTS && !*stop.borrow() {
            let now = state.now();
            match state
                .store()
                .lease_webhook_delivery(now, now.plus_seconds(LEASE_SECONDS))
                .await
            {
                Ok(Some((record, delivery))) => {
                    leased_none = false;
                    let state = state.clone();
                    running.spawn(async move { attempt(&state, post, &record, &delivery).await });
                }
                Ok(None) => {}
                Err(error) => {
                    tracing::warn!(
                        ?error,
                        "leasing a webhook delivery failed; retrying shortly"
                    );
                    while running.join_next().await.is_some() {}
                    return;
                }
            }
        }
        if !leased_none {
            continue;
        }
        // Nothing more to lease now: wait for an attempt to finish, then look again.
        if running.join_next().await.is_none() {
            return;
        }
    }
}

/// One attempt at `delivery`, recorded whatever its outcome.
async fn attempt(state: &AppState, post: Post, record: &WebhookRecord, delivery: &WebhookDelivery) {
    let at = state.now();
    let started = Instant::now();
    let sent = match signing_secrets(state, record, at) {
        Ok(secrets) => send(state, post, record, delivery, &secrets, at).await,
        Err(error) => {
            tracing::error!(webhook = %record.webhook.id, %error, "cannot sign a delivery");
            Err("the server cannot open this webhook's secret".to_owned())
        }
    };
    let duration_ms = i64::try_from(started.elapsed().as_millis()).unwrap_or(i64::MAX);
    let number = i64::try_from(delivery.attempts.len()).unwrap_or(i64::MAX - 1) + 1;
    let (status_code, error) = match sent {
        Ok(code) if (200..300).contains(&code) => (Some(i64::from(code)), None),
        Ok(code) => (
            Some(i64::from(code)),
            Some(if (300..400).contains(&code) {
                format!("HTTP {code}: redirects are not followed")
            } else {
                format!("HTTP {code}")
            }),
        ),
        Err(error) => (None, Some(error)),
    };
    let now = state.now();
    let next = if error.is_none() {
        DeliveryNext::Delivered
    } else if now.millis() - delivery.created_at.millis() >= GIVE_UP_AFTER_SECONDS * 1000 {
        DeliveryNext::Failed
    } else {
        DeliveryNext::RetryAt(now.plus_seconds(backoff_seconds(number)))
    };
    if let Some(error) = &error {
        tracing::info!(
            webhook = %record.webhook.id,
            seq = delivery.seq,
            attempt = number,
            %error,
            "a webhook delivery attempt failed"
        );
    }
    let outcome = WebhookAttemptOutcome {
        webhook_id: record.webhook.id,
        seq: delivery.seq,
        attempt: WebhookAttempt {
            attempt: number,
            at,
            duration_ms,
            status_code,
            error,
        },
        next,
        disable_after: DISABLE_AFTER_FAILED_DELIVERIES,
    };
    if let Err(error) = state
        .store()
        .finish_webhook_attempt(&outcome, &AuditContext::system(now))
        .await
    {
        // The lease runs out and the delivery is sent again: at least once.
        tracing::warn!(?error, "recording a webhook attempt failed");
    }
}

/// Signs the delivery at `at`, resolves and checks the host, and has `post` send it to
/// the address checked; the receiver's status, or why there was none.
async fn send(
    state: &AppState,
    post: Post,
    record: &WebhookRecord,
    delivery: &WebhookDelivery,
    secrets: &[Vec<u8>],
    at: Timestamp,
) -> std::result::Result<u16, String> {
    let target = parse_url(&record.webhook.url)?;
    let allow_private = state.settings().webhook_allow_private_targets;
    let address = tokio::time::timeout(CONNECT_TIMEOUT, resolve(&target, allow_private))
        .await
        .map_err(|_| "resolving the host timed out".to_owned())??;
    let id = message_id(delivery.seq);
    let timestamp = at.millis().div_euclid(1000);
    // One `v1,` value per live secret, space-separated: a receiver that has the new
    // secret or still the old one verifies either.
    let signature = secrets
        .iter()
        .map(|secret| signature(secret, &id, timestamp, &delivery.payload))
        .collect::<Vec<_>>()
        .join(" ");
    post(Outbound {
        address,
        target,
        headers: vec![
            ("webhook-id", id),
            ("webhook-timestamp", timestamp.to_string()),
            ("webhook-signature", signature),
        ],
        body: delivery.payload.clone(),
    })
    .await
}

/// The first address of the host that may be reached. Every refused address is named
/// when none may.
async fn resolve(target: &Target, allow_private: bool) -> std::result::Result<SocketAddr, String> {
    let found: Vec<SocketAddr> = tokio::net::lookup_host((target.host.as_str(), target.port))
        .await
        .map_err(|error| format!("resolving {}: {error}", target.host))?
        .collect();
    if found.is_empty() {
        return Err(format!("{} has no address", target.host));
    }
    if allow_private {
        return Ok(found[0]);
    }
    found
        .iter()
        .find(|address| !is_forbidden(address.ip()))
        .copied()
        .ok_or_else(|| {
            let refused: Vec<String> = found.iter().map(|a| a.ip().to_string()).collect();
            format!(
                "refused: {} resolves only to non-public addresses ({}); \
                 webhook_allow_private_targets is off",
                target.host,
                refused.join(", ")
            )
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_must_be_http_or_https_with_a_host_and_no_user_information() {
        let target = parse_url("https://hooks.example.com/in?x=1").unwrap();
        assert_eq!(
            (target.https, target.host.as_str(), target.port),
            (true, "hooks.example.com", 443)
        );
        assert_eq!(target.path_and_query, "/in?x=1");
        let target = parse_url("http://[::1]:8080").unwrap();
        assert_eq!((target.host.as_str(), target.port), ("::1", 8080));
        assert_eq!(target.path_and_query, "/");
        for bad in [
            "ftp://example.com/",
            "example.com/hook",
            "/relative",
            "https://user:pw@example.com/",
            "javascript:alert(1)",
            "",
        ] {
            assert!(parse_url(bad).is_err(), "{bad}");
        }
        assert!(parse_url(&format!("https://e.com/{}", "a".repeat(MAX_URL_LENGTH))).is_err());
    }

    #[test]
    fn non_public_addresses_are_forbidden_in_every_spelling() {
        for ip in [
            "127.0.0.1",
            "127.1.2.3",
            "10.0.0.1",
            "172.16.0.1",
            "192.168.1.1",
            "169.254.169.254",
            "100.64.0.1",
            "0.0.0.0",
            "224.0.0.1",
            "255.255.255.255",
            "::1",
            "::",
            "fe80::1",
            "fc00::1",
            "fd12:3456::1",
            "ff02::1",
            "::ffff:127.0.0.1",
            "::ffff:169.254.169.254",
            "::127.0.0.1",
            "64:ff9b::10.0.0.1",
        ] {
            assert!(is_forbidden(ip.parse().unwrap()), "{ip}");
        }
        for ip in [
            "93.184.216.34",
            "8.8.8.8",
            "2606:4700::1111",
            "::ffff:8.8.8.8",
        ] {
            assert!(!is_forbidden(ip.parse().unwrap()), "{ip}");
        }
    }

    #[test]
    fn literal_and_localhost_targets_are_judged_at_creation_names_later() {
        let judge = |url: &str| forbidden_target(&parse_url(url).unwrap());
        assert!(judge("http://127.0.0.1:9000/").is_some());
        assert!(judge("http://[::ffff:10.1.2.3]/").is_some());
        assert!(judge("http://LOCALHOST/").is_some());
        assert!(judge("http://api.localhost/").is_some());
        assert!(judge("http://localhost.:8080/").is_some());
        assert!(judge("https://hooks.example.com/").is_none());
        assert!(judge("https://93.184.216.34/").is_none());
    }

    #[test]
    fn the_signature_is_the_standard_webhooks_one() {
        // HMAC-SHA256 over "msg_1.1700000000.{}" under the bytes of "secret".
        let signed = signature(b"secret", "msg_1", 1_700_000_000, "{}");
        let key = hmac::Key::new(hmac::HMAC_SHA256, b"secret");
        let expected = hmac::sign(&key, b"msg_1.1700000000.{}");
        assert_eq!(signed, format!("v1,{}", STANDARD.encode(expected.as_ref())));
    }

    #[test]
    fn the_worked_example_of_docs_api_md_signs_as_shown() {
        let secret: Vec<u8> = (0u8..32).collect();
        assert_eq!(
            format!("{SECRET_PREFIX}{}", STANDARD.encode(&secret)),
            "whsec_AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8="
        );
        let body = r#"{"data":{"actor":"b55f9849-b477-4e0f-9926-1ee499e7d1c3","actor_user":null,"details":{},"tenant_id":"acme","token_id":"7f3c0a1e-2b4d-4c6e-8f00-123456789abc"},"timestamp":"2026-11-30T12:00:00Z","type":"token.revoked"}"#;
        assert_eq!(
            signature(&secret, &message_id(42), 1_764_504_000, body),
            "v1,F1LsJwMadNpYEeJD32duo/SoydXBmDtO7cEvIKKnl8E="
        );
    }

    #[test]
    fn backoff_doubles_from_five_seconds_to_an_hour() {
        let waits: Vec<i64> = (1..=12).map(backoff_seconds).collect();
        assert_eq!(
            waits,
            [5, 10, 20, 40, 80, 160, 320, 640, 1280, 2560, 3600, 3600]
        );
        assert_eq!(backoff_seconds(i64::MAX), 3600);
    }
}
