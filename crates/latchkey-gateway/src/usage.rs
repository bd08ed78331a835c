//! Usage: per-minute request counts by token, route, method, status class and client
//! IP, sent to the server in batches (docs/API.md, "Usage").
//!
//! Policy:
//! - **Aggregated, not logged.** Each authenticated request adds one to the count of
//!   its (minute, token id, route prefix, method, status class, client IP) entry and
//!   moves the entry's `last_used_at`. Requests with no verified token (public routes,
//!   401s, 404s) have nobody to attribute them to and are only counted in
//!   [`GatewayStats`](crate::GatewayStats). The client IP is the TCP peer, or the
//!   address a trusted proxy named in `X-Forwarded-For` (`trusted_proxies`), never an
//!   address an untrusted peer forwarded.
//! - **Sent every second** to `POST {server}/v1/usage` with the gateway's credential,
//!   one POST per minute window, oldest first, at most
//!   [`UsageOptions::max_batch_entries`] entries each:
//!   `{"window_start":"2026-01-01T10:00:00Z","entries":[{"token_id","route","method",
//!   "status_class":"2xx","client_ip","count","last_used_at"}]}`.
//! - **Never lost to a blip, never unbounded.** A batch the server does not accept is
//!   merged back and retried next time, except one refused as malformed (400, 413,
//!   422), which retrying cannot fix and is dropped with an error. At most
//!   [`UsageOptions::max_entries`] entries are held; beyond that the oldest window's
//!   entries are dropped, with a warning at most every ten seconds. On shutdown one last
//!   flush is tried.

use crate::stats::UsageStats;
use foldhash::fast::RandomState;
use hyper::{Method, StatusCode};
use latchkey_core::{Timestamp, TokenId};
use serde::Serialize;
use std::collections::{BTreeMap, HashMap};
use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};
use tokio::sync::watch;

/// The least time between two "usage dropped" warnings.
const DROP_WARNING_INTERVAL: Duration = Duration::from_secs(10);

/// How usage is batched and sent. Start from `Default`:
///
/// ```
/// use latchkey_gateway::UsageOptions;
/// use std::time::Duration;
/// let options = UsageOptions {
///     flush_interval: Duration::from_millis(100),
///     ..UsageOptions::default()
/// };
/// assert_eq!(options.max_batch_entries, 1_000);
/// ```
#[derive(Debug, Clone)]
pub struct UsageOptions {
    /// Whether usage is recorded and sent at all.
    pub enabled: bool,
    /// How often pending counts are sent.
    pub flush_interval: Duration,
    /// The most entries held in memory (about 150 bytes each); beyond, the oldest go.
    pub max_entries: usize,
    /// The most entries in one POST.
    pub max_batch_entries: usize,
    /// Deadline of each POST.
    pub timeout: Duration,
}

impl Default for UsageOptions {
    fn default() -> Self {
        Self {
            enabled: true,
            flush_interval: Duration::from_secs(1),
            max_entries: 100_000,
            max_batch_entries: 1_000,
            timeout: Duration::from_secs(5),
        }
    }
}

/// What one entry counts.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) struct UsageKey {
    pub(crate) token: TokenId,
    pub(crate) route: Arc<str>,
    pub(crate) method: Method,
    /// The status divided by 100.
    pub(crate) class: u16,
    pub(crate) client: IpAddr,
}

impl UsageKey {
    pub(crate) fn new(
        token: TokenId,
        route: Arc<str>,
        method: Method,
        status: StatusCode,
        client: IpAddr,
    ) -> Self {
        Self {
            token,
            route,
            method,
            class: status.as_u16() / 100,
            client,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Tally {
    pub(crate) count: u64,
    pub(crate) last_used: Timestamp,
}

/// The entries of one minute window, taken for sending.
#[derive(Debug)]
pub(crate) struct Batch {
    pub(crate) window: i64,
    pub(crate) entries: Vec<(UsageKey, Tally)>,
}

/// Counts by minute window, bounded.
#[derive(Debug)]
pub(crate) struct Aggregator {
    /// Keys hash with foldhash under a random seed, as latchkey-verify's caches do:
    /// std's SipHash cost a proxied request more than the rest of its usage record.
    windows: BTreeMap<i64, HashMap<UsageKey, Tally, RandomState>>,
    len: usize,
    cap: usize,
}

fn minute(at: Timestamp) -> i64 {
    at.millis().div_euclid(60_000) * 60_000
}

impl Aggregator {
    pub(crate) fn new(cap: usize) -> Self {
        Self {
            windows: BTreeMap::new(),
            len: 0,
            cap: cap.max(1),
        }
    }

    /// Entries held.
    pub(crate) fn len(&self) -> usize {
        self.len
    }

    /// Adds `tally` to `key`'s entry in the window of `tally.last_used`; returns how
    /// many entries were dropped to make room.
    pub(crate) fn add(&mut self, key: UsageKey, tally: Tally) -> usize {
        let window = minute(tally.last_used);
        if let Some(held) = self.windows.get_mut(&window).and_then(|w| w.get_mut(&key)) {
            held.count = held.count.saturating_add(tally.count);
            held.last_used = held.last_used.max(tally.last_used);
            return 0;
        }
        let mut dropped = 0;
        while self.len >= self.cap && self.drop_oldest() {
            dropped += 1;
        }
        self.windows.entry(window).or_default().insert(key, tally);
        self.len += 1;
        dropped
    }

    /// Counts one request at `at`.
    pub(crate) fn record(&mut self, key: UsageKey, at: Timestamp) -> usize {
        self.add(
            key,
            Tally {
                count: 1,
                last_used: at,
            },
        )
    }

    fn drop_oldest(&mut self) -> bool {
        let Some(mut oldest) = self.windows.first_entry() else {
            return false;
        };
        let key = oldest.get().keys().next().cloned();
        if let Some(key) = key {
            oldest.get_mut().remove(&key);
            self.len -= 1;
        }
        if oldest.get().is_empty() {
            oldest.remove();
        }
        true
    }

    /// Takes up to `max` entries of the oldest window.
    pub(crate) fn take(&mut self, max: usize) -> Option<Batch> {
        let mut oldest = self.windows.first_entry()?;
        let window = *oldest.key();
        let entries: Vec<(UsageKey, Tally)> = if oldest.get().len() <= max {
            oldest.remove().into_iter().collect()
        } else {
            let keys: Vec<UsageKey> = oldest.get().keys().take(max).cloned().collect();
            keys.into_iter()
                .filter_map(|k| oldest.get_mut().remove_entry(&k))
                .collect()
        };
        self.len -= entries.len();
        Some(Batch { window, entries })
    }

    /// Puts back a batch that could not be sent; returns how many entries were dropped
    /// to make room.
    pub(crate) fn restore(&mut self, batch: Batch) -> usize {
        batch
            .entries
            .into_iter()
            .map(|(key, tally)| self.add(key, tally))
            .sum()
    }
}

#[derive(Serialize)]
struct WireBatch<'a> {
    window_start: String,
    entries: Vec<WireEntry<'a>>,
}

#[derive(Serialize)]
struct WireEntry<'a> {
    token_id: String,
    route: &'a str,
    method: &'a str,
    status_class: String,
    client_ip: String,
    count: u64,
    last_used_at: String,
}

/// The JSON body of `POST /v1/usage` for `batch`.
pub(crate) fn encode(batch: &Batch) -> Result<Vec<u8>, serde_json::Error> {
    let wire = WireBatch {
        window_start: Timestamp::from_millis(batch.window).to_rfc3339(),
        entries: batch
            .entries
            .iter()
            .map(|(key, tally)| WireEntry {
                token_id: key.token.to_string(),
                route: &key.route,
                method: key.method.as_str(),
                status_class: format!("{}xx", key.class),
                client_ip: key.client.to_string(),
                count: tally.count,
                last_used_at: tally.last_used.to_rfc3339(),
            })
            .collect(),
    };
    serde_json::to_vec(&wire)
}

/// Sends usage batches to the server: over TLS when `server` is `https://`, trusting
/// what the gateway's verifier trusts (`tls_ca_file`) and presenting its client
/// certificate when mutual TLS is configured.
#[derive(Debug, Clone)]
pub(crate) struct UsageClient(reqwest::Client);

impl UsageClient {
    pub(crate) fn new(
        tls_ca_file: Option<&std::path::Path>,
        identity: Option<&latchkey_verify::ClientIdentity>,
    ) -> Result<Self, String> {
        let tls =
            latchkey_verify::tls_client_config(tls_ca_file, identity).map_err(|e| e.to_string())?;
        reqwest::Client::builder()
            .use_preconfigured_tls(tls)
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map(Self)
            .map_err(|e| e.to_string())
    }

    /// POSTs a JSON `body` to `uri` with a bearer `credential`, and returns the
    /// status, all within `timeout`. The answer's body is drained, not kept.
    async fn post_json(
        &self,
        uri: &str,
        credential: &str,
        body: Vec<u8>,
        timeout: Duration,
    ) -> Result<StatusCode, String> {
        let exchange = async {
            let response = self
                .0
                .post(uri)
                .header(reqwest::header::CONTENT_TYPE, "application/json")
                .bearer_auth(credential)
                .body(body)
                .send()
                .await
                .map_err(|e| describe(&e))?;
            let status = response.status();
            // Drained so the connection goes back to the pool.
            let _ = response.bytes().await;
            Ok(status)
        };
        tokio::time::timeout(timeout, exchange)
            .await
            .map_err(|_| format!("no answer within {timeout:?}"))?
    }
}

/// An error with its causes, which reqwest's own message leaves out.
fn describe(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

/// What became of one POST.
enum Sent {
    Accepted,
    /// Retry later.
    Failed(String),
    /// Retrying will not help.
    Refused(StatusCode),
}

/// The aggregator, and the task that sends it.
#[derive(Debug)]
pub(crate) struct UsageReporter {
    aggregator: Mutex<Aggregator>,
    endpoint: String,
    credential: String,
    options: UsageOptions,
    client: UsageClient,
    batches_sent: AtomicU64,
    entries_sent: AtomicU64,
    send_failures: AtomicU64,
    entries_dropped: AtomicU64,
    failing: AtomicBool,
    last_drop_warning: Mutex<Option<Instant>>,
}

impl UsageReporter {
    pub(crate) fn new(
        server: &str,
        credential: &str,
        options: UsageOptions,
        client: UsageClient,
    ) -> Self {
        Self {
            aggregator: Mutex::new(Aggregator::new(options.max_entries)),
            endpoint: format!("{server}/v1/usage"),
            credential: credential.to_owned(),
            options,
            client,
            batches_sent: AtomicU64::new(0),
            entries_sent: AtomicU64::new(0),
            send_failures: AtomicU64::new(0),
            entries_dropped: AtomicU64::new(0),
            failing: AtomicBool::new(false),
            last_drop_warning: Mutex::new(None),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Aggregator> {
        self.aggregator
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// Counts one authenticated request.
    pub(crate) fn record(&self, key: UsageKey, at: Timestamp) {
        if !self.options.enabled {
            return;
        }
        let dropped = self.lock().record(key, at);
        self.dropped(dropped, "the usage buffer is full");
    }

    fn dropped(&self, count: usize, why: &str) {
        if count == 0 {
            return;
        }
        let total = self
            .entries_dropped
            .fetch_add(count as u64, Ordering::Relaxed)
            + count as u64;
        let mut last = self
            .last_drop_warning
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if last.is_none_or(|at| at.elapsed() >= DROP_WARNING_INTERVAL) {
            *last = Some(Instant::now());
            tracing::warn!(
                dropped_total = total,
                max_entries = self.options.max_entries,
                "dropping the oldest usage counts: {why}"
            );
        }
    }

    pub(crate) fn stats(&self) -> UsageStats {
        let read = |c: &AtomicU64| c.load(Ordering::Relaxed);
        UsageStats {
            pending_entries: self.lock().len() as u64,
            batches_sent: read(&self.batches_sent),
            entries_sent: read(&self.entries_sent),
            send_failures: read(&self.send_failures),
            entries_dropped: read(&self.entries_dropped),
        }
    }

    /// Flushes every `flush_interval` until `stop` turns true, then once more.
    pub(crate) async fn run(self: Arc<Self>, mut stop: watch::Receiver<bool>) {
        if !self.options.enabled {
            return;
        }
        // The first flush is one interval in, not at once: `interval`'s immediate first
        // tick fired whenever this task first ran, which on a busy runtime could be after
        // the first requests were counted, sending them early and at random.
        let period = self.options.flush_interval;
        let mut ticker = tokio::time::interval_at(tokio::time::Instant::now() + period, period);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = ticker.tick() => self.flush().await,
                changed = stop.changed() => {
                    if changed.is_err() || *stop.borrow() {
                        break;
                    }
                }
            }
        }
        self.flush().await;
    }

    /// Sends what is pending, oldest window first, until done or a POST fails.
    pub(crate) async fn flush(&self) {
        let max = self.options.max_batch_entries.max(1);
        // Bounded by what is pending now, so steady traffic cannot keep it looping.
        let rounds = self.lock().len().div_ceil(max);
        for _ in 0..rounds {
            let Some(batch) = self.lock().take(max) else {
                return;
            };
            let entries = batch.entries.len() as u64;
            match self.send(&batch).await {
                Sent::Accepted => {
                    self.batches_sent.fetch_add(1, Ordering::Relaxed);
                    self.entries_sent.fetch_add(entries, Ordering::Relaxed);
                    if self.failing.swap(false, Ordering::Relaxed) {
                        tracing::info!("usage batches are accepted again");
                    }
                }
                Sent::Refused(status) => {
                    tracing::error!(%status, entries, "the server refused a usage batch as malformed; dropping it");
                    self.entries_dropped.fetch_add(entries, Ordering::Relaxed);
                }
                Sent::Failed(reason) => {
                    self.send_failures.fetch_add(1, Ordering::Relaxed);
                    if !self.failing.swap(true, Ordering::Relaxed) {
                        tracing::warn!(%reason, endpoint = %self.endpoint, "sending usage failed; keeping the counts and retrying");
                    } else {
                        tracing::debug!(%reason, "sending usage failed again");
                    }
                    let dropped = self.lock().restore(batch);
                    self.dropped(dropped, "the server has not accepted usage for a while");
                    return;
                }
            }
        }
    }

    async fn send(&self, batch: &Batch) -> Sent {
        let body = match encode(batch) {
            Ok(body) => body,
            Err(error) => return Sent::Failed(error.to_string()),
        };
        match self
            .client
            .post_json(&self.endpoint, &self.credential, body, self.options.timeout)
            .await
        {
            Ok(status) if status.is_success() => Sent::Accepted,
            Ok(
                status @ (StatusCode::BAD_REQUEST
                | StatusCode::PAYLOAD_TOO_LARGE
                | StatusCode::UNPROCESSABLE_ENTITY),
            ) => Sent::Refused(status),
            Ok(status) => Sent::Failed(format!("status {status}")),
            Err(reason) => Sent::Failed(reason),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(token: u128, class: u16) -> UsageKey {
        UsageKey::new(
            TokenId::from_u128(token),
            Arc::from("/reports"),
            Method::GET,
            StatusCode::from_u16(class * 100).unwrap(),
            [127, 0, 0, 1].into(),
        )
    }

    const MINUTE: i64 = 60_000;

    #[test]
    fn requests_in_one_minute_with_one_key_add_up_in_one_entry() {
        let mut agg = Aggregator::new(10);
        agg.record(key(1, 2), Timestamp::from_millis(MINUTE + 5));
        agg.record(key(1, 2), Timestamp::from_millis(MINUTE + 9));
        agg.record(key(1, 4), Timestamp::from_millis(MINUTE + 7));
        agg.record(key(1, 2), Timestamp::from_millis(2 * MINUTE));
        assert_eq!(agg.len(), 3);
        let first = agg.take(100).unwrap();
        assert_eq!(first.window, MINUTE);
        let ok = first.entries.iter().find(|(k, _)| k.class == 2).unwrap();
        assert_eq!(ok.1.count, 2);
        assert_eq!(ok.1.last_used, Timestamp::from_millis(MINUTE + 9));
        let second = agg.take(100).unwrap();
        assert_eq!(second.window, 2 * MINUTE);
        assert!(agg.take(100).is_none());
    }

    #[tokio::test]
    async fn counts_pending_when_the_reporter_starts_wait_for_the_first_interval() {
        // A port nothing listens on: every POST fails at once and is counted.
        let closed = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let server = format!("http://{}", closed.local_addr().unwrap());
        drop(closed);
        let options = UsageOptions {
            flush_interval: Duration::from_secs(3600),
            ..UsageOptions::default()
        };
        let reporter = Arc::new(UsageReporter::new(
            &server,
            "lk_ak_test",
            options,
            UsageClient::new(None, None).unwrap(),
        ));
        reporter.record(key(1, 2), Timestamp::from_millis(MINUTE));
        let (stop, stopped) = watch::channel(false);
        let running = tokio::spawn(reporter.clone().run(stopped));
        tokio::time::sleep(Duration::from_millis(300)).await;
        let waiting = reporter.stats();
        assert_eq!(waiting.send_failures, 0, "flushed before the interval");
        assert_eq!(waiting.pending_entries, 1);

        stop.send(true).unwrap();
        running.await.unwrap();
        let stopped = reporter.stats();
        assert_eq!(
            stopped.send_failures, 1,
            "the last flush at shutdown is tried"
        );
        assert_eq!(
            stopped.pending_entries, 1,
            "a failed flush keeps the counts"
        );
    }

    #[test]
    fn a_restored_batch_merges_with_what_came_meanwhile() {
        let mut agg = Aggregator::new(10);
        agg.record(key(1, 2), Timestamp::from_millis(MINUTE));
        let batch = agg.take(100).unwrap();
        agg.record(key(1, 2), Timestamp::from_millis(MINUTE + 1));
        assert_eq!(agg.restore(batch), 0);
        let merged = agg.take(100).unwrap();
        assert_eq!(merged.entries.len(), 1);
        assert_eq!(merged.entries[0].1.count, 2);
    }

    #[test]
    fn over_the_cap_the_oldest_window_goes_first() {
        let mut agg = Aggregator::new(2);
        assert_eq!(agg.record(key(1, 2), Timestamp::from_millis(MINUTE)), 0);
        assert_eq!(agg.record(key(2, 2), Timestamp::from_millis(2 * MINUTE)), 0);
        assert_eq!(agg.record(key(3, 2), Timestamp::from_millis(3 * MINUTE)), 1);
        assert_eq!(agg.len(), 2);
        assert_eq!(agg.take(100).unwrap().window, 2 * MINUTE);
    }

    #[test]
    fn a_large_window_is_taken_in_batches() {
        let mut agg = Aggregator::new(100);
        for token in 0..5 {
            agg.record(key(token, 2), Timestamp::from_millis(MINUTE));
        }
        assert_eq!(agg.take(2).unwrap().entries.len(), 2);
        assert_eq!(agg.take(2).unwrap().entries.len(), 2);
        assert_eq!(agg.take(2).unwrap().entries.len(), 1);
        assert_eq!(agg.len(), 0);
    }

    #[test]
    fn the_wire_form_is_the_server_contract() {
        let mut agg = Aggregator::new(10);
        agg.record(
            key(1, 4),
            Timestamp::from_millis(MINUTE * 29_000_000 + 1_500),
        );
        let body: serde_json::Value =
            serde_json::from_slice(&encode(&agg.take(10).unwrap()).unwrap()).unwrap();
        assert_eq!(
            body,
            serde_json::json!({
                "window_start": "2025-02-19T21:20:00Z",
                "entries": [{
                    "token_id": TokenId::from_u128(1).to_string(),
                    "route": "/reports",
                    "method": "GET",
                    "status_class": "4xx",
                    "client_ip": "127.0.0.1",
                    "count": 1,
                    "last_used_at": "2025-02-19T21:20:01.5Z",
                }],
            })
        );
    }

    /// A `POST /v1/usage` collector over TLS on `localhost`, with a certificate from
    /// a private CA; returns its URL and the CA's PEM file.
    async fn tls_collector() -> (
        String,
        latchkey_listener::test_pki::TestCa,
        std::path::PathBuf,
    ) {
        use latchkey_listener::test_pki::{TestCa, Use};
        let ca = TestCa::new("usage");
        let acceptor = ca
            .issue("collector", &["localhost"], Use::Server)
            .acceptor();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!(
            "https://localhost:{}",
            listener.local_addr().unwrap().port()
        );
        tokio::spawn(async move {
            loop {
                let (tcp, _) = listener.accept().await.unwrap();
                let acceptor = acceptor.clone();
                tokio::spawn(async move {
                    use tokio::io::{AsyncReadExt, AsyncWriteExt};
                    let Ok(mut tls) = acceptor.accept(tcp).await else {
                        return;
                    };
                    let mut head = vec![0; 4096];
                    let n = tls.read(&mut head).await.unwrap_or(0);
                    let text = String::from_utf8_lossy(&head[..n]).to_string();
                    let status = if text.starts_with("POST /v1/usage ") {
                        "202 Accepted"
                    } else {
                        "404 Not Found"
                    };
                    let answer = format!(
                        "HTTP/1.1 {status}\r\ncontent-length: 0\r\nconnection: close\r\n\r\n"
                    );
                    let _ = tls.write_all(answer.as_bytes()).await;
                    let _ = tls.shutdown().await;
                });
            }
        });
        let pem = ca.pem_file.clone();
        (url, ca, pem)
    }

    #[tokio::test]
    async fn usage_reaches_an_https_server_trusted_through_tls_ca_file_and_not_otherwise() {
        let (server, _dir, pem) = tls_collector().await;
        let endpoint = format!("{server}/v1/usage");
        let timeout = Duration::from_secs(5);
        let trusting = UsageClient::new(Some(&pem), None).unwrap();
        let status = trusting
            .post_json(&endpoint, "lk_ak_test", b"{}".to_vec(), timeout)
            .await
            .unwrap();
        assert_eq!(status, StatusCode::ACCEPTED);

        let untrusting = UsageClient::new(None, None).unwrap();
        let error = untrusting
            .post_json(&endpoint, "lk_ak_test", b"{}".to_vec(), timeout)
            .await
            .unwrap_err();
        assert!(error.contains(&server), "{error}");
        assert!(
            error.contains("UnknownIssuer") || error.contains("unknown issuer"),
            "{error}"
        );
    }
}
