//! The replica's background follower: the snapshot, the stream, gaps and reconnection.
//!
//! Policy: see the parent module. One follower per replica, the only writer of the seq;
//! it talks to two fixed paths under the issuer and trusts nothing it reads beyond the
//! wire format (sizes are bounded, a page that does not advance is an error rather than a
//! loop).

use super::Shared;
use super::sse::{SseEvent, SseParser};
use crate::http::{Http, HttpError, describe};
use crate::options::Credential;
use crate::replica::ReplicaOptions;
use aws_lc_rs::rand::{SecureRandom, SystemRandom};
use latchkey_core::Timestamp;
use latchkey_core::clock::Clock;
use latchkey_core::store::FeedKind;
use serde::Deserialize;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

/// Largest page body accepted: 10 000 entries of about 200 bytes, with room to spare.
const MAX_PAGE_BYTES: usize = 16 * 1024 * 1024;

/// What an entry names: one of the server's feed kinds, or one this version does not
/// know.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(from = "String")]
pub(super) enum Kind {
    /// A kind this version knows (docs/API.md, "Revocation feed").
    Known(FeedKind),
    /// A kind this version does not know, by name. It may carry state that narrows
    /// grants, so the replica cannot go on without it: it turns stale for good.
    Other(String),
}

impl From<String> for Kind {
    fn from(name: String) -> Self {
        FeedKind::parse(&name).map_or(Self::Other(name), Self::Known)
    }
}

/// One entry of the feed, as much of it as the replica needs.
#[derive(Debug, Clone, Deserialize)]
pub(super) struct Entry {
    pub(super) seq: i64,
    pub(super) kind: Kind,
    pub(super) subject: String,
    #[serde(default)]
    pub(super) tenant_id: Option<String>,
    #[serde(default)]
    pub(super) expires_at: Option<Timestamp>,
    /// `role` entries: the role's permissions now.
    #[serde(default)]
    pub(super) permissions: Option<Vec<String>>,
    /// `member` entries: the member's roles now.
    #[serde(default)]
    pub(super) roles: Option<Vec<String>>,
    /// `tenant_policy` entries: the tenant's network rules now, read when applied so a
    /// shape this version does not know fails closed for that tenant alone.
    #[serde(default)]
    pub(super) network: Option<serde_json::Value>,
}

#[derive(Deserialize)]
struct Page {
    entries: Vec<Entry>,
    head: i64,
}

#[derive(Deserialize)]
struct Heartbeat {
    head: i64,
    /// The id this connection acknowledges applied seqs with (first heartbeat only).
    #[serde(default)]
    subscriber: Option<String>,
}

/// Why a session with the feed ended.
#[derive(Debug, thiserror::Error)]
enum FeedError {
    #[error("{0}")]
    Http(String),
    #[error("the stream was silent for {0:?}")]
    Idle(Duration),
    #[error("unexpected feed data: {0}")]
    Protocol(String),
}

impl From<HttpError> for FeedError {
    fn from(error: HttpError) -> Self {
        Self::Http(error.0)
    }
}

fn parse<'a, T: Deserialize<'a>>(data: &'a [u8]) -> Result<T, FeedError> {
    serde_json::from_slice(data).map_err(|e| FeedError::Protocol(e.to_string()))
}

pub(super) struct Follower {
    shared: Arc<Shared>,
    http: Http,
    page_url: String,
    stream_url: String,
    ack_url: String,
    credential: Credential,
    page_size: u32,
    http_timeout: Duration,
    idle_timeout: Duration,
    clock: Arc<dyn Clock>,
    backoff: Backoff,
    /// Sessions that ended in a row without delivering an event.
    failures: u32,
    /// Every entry up to this seq that the server still holds has been applied, so a
    /// gap at or below it is compaction, not loss.
    complete_through: i64,
}

impl Follower {
    pub(super) fn new(
        shared: Arc<Shared>,
        http: Http,
        base: &str,
        credential: Credential,
        options: &ReplicaOptions,
    ) -> Self {
        Self {
            shared,
            http,
            page_url: format!("{base}/v1/revocations"),
            stream_url: format!("{base}/v1/revocations/stream"),
            ack_url: format!("{base}/v1/revocations/ack"),
            credential,
            page_size: options.page_size,
            http_timeout: options.http_timeout,
            idle_timeout: options.idle_timeout,
            clock: options.clock.clone(),
            backoff: Backoff::new(options.backoff_initial, options.backoff_max),
            failures: 0,
            complete_through: 0,
        }
    }

    /// Follows the feed forever, reconnecting after each failure.
    pub(super) async fn run(mut self) {
        loop {
            let ended = self.session().await;
            if self.shared.incompatible() {
                // Nothing this version reads can make it current again: stop asking.
                return;
            }
            let delay = self.backoff.next_delay();
            self.shared
                .counters
                .reconnects
                .fetch_add(1, Ordering::Relaxed);
            let last_seq = self.shared.last_seq();
            self.failures += 1;
            // A feed that stays down fails every few seconds: say so on the first failure
            // and then every tenth, not on each.
            match ended {
                Ok(()) if self.failures == 1 => {
                    tracing::info!(last_seq, ?delay, "revocation stream ended; reconnecting");
                }
                Err(error) if self.failures == 1 || self.failures % 10 == 0 => {
                    let failures = self.failures;
                    tracing::warn!(
                        %error,
                        failures,
                        last_seq,
                        ?delay,
                        "revocation feed failed; reconnecting"
                    );
                }
                Ok(()) | Err(_) => {
                    tracing::debug!(?ended, last_seq, ?delay, "revocation feed reconnecting");
                }
            }
            tokio::time::sleep(delay).await;
        }
    }

    /// Loads the snapshot if need be, then follows the stream until it ends or fails.
    async fn session(&mut self) -> Result<(), FeedError> {
        if !self.shared.synced() {
            self.catch_up().await?;
            self.shared.mark_synced();
        }
        let last = self.shared.last_seq();
        let url = format!("{}?after={last}", self.stream_url);
        let mut response = self
            .http
            .open_event_stream(&url, self.credential.expose(), last, self.http_timeout)
            .await?;
        let mut stream = Stream::default();
        loop {
            let chunk = tokio::time::timeout(self.idle_timeout, response.chunk())
                .await
                .map_err(|_| FeedError::Idle(self.idle_timeout))?
                .map_err(|e| FeedError::Http(describe(&e)))?;
            let Some(chunk) = chunk else {
                return Ok(());
            };
            let events = stream
                .parser
                .push(&chunk)
                .map_err(|_| FeedError::Protocol("an event over the size limit".to_owned()))?;
            for event in events {
                if self.failures > 0 {
                    tracing::info!(
                        failures = self.failures,
                        last_seq = self.shared.last_seq(),
                        "revocation stream resumed"
                    );
                    self.failures = 0;
                    self.backoff.reset();
                }
                self.event(event, &mut stream).await?;
                stream.greeted = true;
            }
            // One application per chunk: a burst of entries costs one pass over the
            // verifiers' caches, not one per entry.
            self.flush(&mut stream.batch);
            if self.shared.incompatible() {
                return Err(FeedError::Protocol("an entry kind not known".to_owned()));
            }
            self.acknowledge(&mut stream);
        }
    }

    /// Tells the server how far this connection has applied the feed, so a revocation
    /// made with `wait=propagated` can count it. Sent in the background: the feed never
    /// waits for an acknowledgement.
    fn acknowledge(&self, stream: &mut Stream) {
        let applied = self.shared.last_seq();
        let Some(subscriber) = &stream.subscriber else {
            return;
        };
        if stream.acked.is_some_and(|acked| applied <= acked) {
            return;
        }
        stream.acked = Some(applied);
        let http = self.http.clone();
        let url = self.ack_url.clone();
        let credential = self.credential.expose().to_owned();
        let body = serde_json::json!({ "subscriber": subscriber, "seq": applied });
        let timeout = self.http_timeout;
        tokio::spawn(async move {
            if let Err(error) = http
                .post_json_authorized(&url, &credential, &body, timeout)
                .await
            {
                tracing::debug!(error = %error.0, "acknowledging the revocation feed failed");
            }
        });
    }

    async fn event(&mut self, event: SseEvent, stream: &mut Stream) -> Result<(), FeedError> {
        match event.event.as_str() {
            "heartbeat" => {
                let beat: Heartbeat = parse(event.data.as_bytes())?;
                if beat.subscriber.is_some() {
                    stream.subscriber = beat.subscriber;
                }
                self.shared.heard();
                self.shared.note_head(beat.head);
                self.flush(&mut stream.batch);
                // The server sends its first heartbeat before replaying, and every later
                // one only once it has sent all entries up to its head: a later head
                // beyond what we hold means entries were lost.
                if stream.greeted
                    && beat.head > self.shared.last_seq()
                    && beat.head > self.complete_through
                {
                    self.resync(beat.head).await?;
                }
            }
            "revocation" => {
                let entry: Entry = parse(event.data.as_bytes())?;
                self.shared.heard();
                self.shared.note_head(entry.seq);
                let last = stream
                    .batch
                    .last()
                    .map_or_else(|| self.shared.last_seq(), |e| e.seq);
                if entry.seq <= last {
                    self.shared.counters.ignored.fetch_add(1, Ordering::Relaxed);
                    return Ok(());
                }
                if entry.seq > last.saturating_add(1) && entry.seq - 1 > self.complete_through {
                    self.flush(&mut stream.batch);
                    self.resync(entry.seq).await?;
                }
                stream.batch.push(entry);
            }
            _ => {}
        }
        Ok(())
    }

    /// Applies the entries received so far.
    fn flush(&self, batch: &mut Vec<Entry>) {
        if !batch.is_empty() {
            self.shared.apply(batch, self.clock.now());
            batch.clear();
        }
    }

    /// Pages what lies between the last seq and `seen`, which the stream skipped.
    async fn resync(&mut self, seen: i64) -> Result<(), FeedError> {
        self.shared.counters.resyncs.fetch_add(1, Ordering::Relaxed);
        tracing::info!(
            last_seq = self.shared.last_seq(),
            seen,
            "gap in the revocation stream; paging the missing entries"
        );
        self.catch_up().await
    }

    /// Pages from the last seq to the head.
    async fn catch_up(&mut self) -> Result<(), FeedError> {
        loop {
            let after = self.shared.last_seq();
            let url = format!("{}?after={after}&limit={}", self.page_url, self.page_size);
            let body = self
                .http
                .get_authorized(
                    &url,
                    self.credential.expose(),
                    self.http_timeout,
                    MAX_PAGE_BYTES,
                )
                .await?;
            let mut page: Page = parse(&body)?;
            self.shared.heard();
            self.shared.note_head(page.head);
            page.entries.sort_by_key(|entry| entry.seq);
            self.shared.apply(&page.entries, self.clock.now());
            if self.shared.incompatible() {
                return Err(FeedError::Protocol("an entry kind not known".to_owned()));
            }
            let last = self.shared.last_seq();
            if page.entries.is_empty() || last >= page.head {
                self.complete_through = self.complete_through.max(page.head);
                return Ok(());
            }
            if last == after {
                return Err(FeedError::Protocol(format!(
                    "a page after {after} held nothing beyond it"
                )));
            }
        }
    }
}

/// The state of one connection to the stream.
#[derive(Default)]
struct Stream {
    parser: SseParser,
    /// The first event, a heartbeat sent before the replay, has gone by.
    greeted: bool,
    /// Entries of the current chunk, in ascending seq order, not yet applied.
    batch: Vec<Entry>,
    /// This connection's subscriber id, for acknowledgements.
    subscriber: Option<String>,
    /// The last seq acknowledged on this connection.
    acked: Option<i64>,
}

/// Capped exponential backoff with jitter: half of each delay is fixed and half random,
/// so replicas that lost the same server spread out, yet none retries at once.
struct Backoff {
    initial: Duration,
    max: Duration,
    next: Duration,
    random: SystemRandom,
}

impl Backoff {
    fn new(initial: Duration, max: Duration) -> Self {
        Self {
            initial,
            max,
            next: initial,
            random: SystemRandom::new(),
        }
    }

    fn next_delay(&mut self) -> Duration {
        let base = self.next;
        self.next = base.saturating_mul(2).min(self.max);
        let mut bytes = [0u8; 4];
        let share = match self.random.fill(&mut bytes) {
            Ok(()) => f64::from(u32::from_le_bytes(bytes)) / f64::from(u32::MAX),
            Err(_) => 0.5,
        };
        base / 2 + (base / 2).mul_f64(share)
    }

    fn reset(&mut self) {
        self.next = self.initial;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_the_cap_with_jitter_and_resets() {
        let mut backoff = Backoff::new(Duration::from_millis(100), Duration::from_millis(400));
        let delays: Vec<Duration> = (0..5).map(|_| backoff.next_delay()).collect();
        for (delay, base) in delays.iter().zip([100, 200, 400, 400, 400]) {
            let base = Duration::from_millis(base);
            assert!(
                *delay >= base / 2 && *delay <= base,
                "{delay:?} for {base:?}"
            );
        }
        backoff.reset();
        assert!(backoff.next_delay() <= Duration::from_millis(100));
    }

    #[test]
    fn entries_parse_from_the_wire_format_and_unknown_kinds_are_kept_apart() {
        let entry: Entry = parse(
            br#"{"seq":7,"kind":"jti","subject":"5f1c2b7e-8d1a-4c3e-9f0b-2a6d4e8c1b37",
                 "tenant_id":"acme","revoked_at":"2026-11-28T10:00:00Z",
                 "expires_at":"2026-11-28T10:15:00Z"}"#,
        )
        .unwrap();
        assert_eq!((entry.seq, entry.kind), (7, Kind::Known(FeedKind::Jti)));
        assert_eq!(
            entry.expires_at,
            Timestamp::parse_rfc3339("2026-11-28T10:15:00Z")
        );
        let other: Entry = parse(
            br#"{"seq":8,"kind":"user","subject":"u","tenant_id":null,
                 "revoked_at":"2026-11-28T10:00:00Z","expires_at":null}"#,
        )
        .unwrap();
        assert_eq!(
            (other.kind, other.expires_at),
            (Kind::Other("user".to_owned()), None)
        );
        let role: Entry = parse(
            br#"{"seq":9,"kind":"role","subject":"viewer","tenant_id":null,
                 "revoked_at":"2026-11-28T10:00:00Z","expires_at":null,
                 "permissions":["reports:read"]}"#,
        )
        .unwrap();
        assert_eq!(role.kind, Kind::Known(FeedKind::Role));
        assert_eq!(role.permissions, Some(vec!["reports:read".to_owned()]));
        let member: Entry = parse(
            br#"{"seq":10,"kind":"member","subject":"u_1","tenant_id":"acme",
                 "revoked_at":"2026-11-28T10:00:00Z","expires_at":null,"roles":[]}"#,
        )
        .unwrap();
        assert_eq!(
            (member.kind, member.tenant_id.as_deref(), member.roles),
            (Kind::Known(FeedKind::Member), Some("acme"), Some(vec![]))
        );
    }
}
