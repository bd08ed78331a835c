//! The revocation feed (docs/API.md, "The revocation feed"): the ordered, durable deny list that gateways
//! and resource servers replay and then follow live.
//!
//! `GET /v1/revocations?after=SEQ&limit=N` answers a page of entries and the head seq;
//! `GET /v1/revocations/stream?after=SEQ` (or `Last-Event-ID`) is a Server-Sent Events
//! stream: every entry after SEQ as an event whose id is its seq, then new entries as they
//! commit, and a heartbeat carrying the head seq every few seconds. Readers need a
//! system-tenant credential with `latchkey:introspect` or `latchkey:admin`.
//!
//! Order: a revocation takes its seq under the lock of the log's head row and holds it
//! until commit, so seqs commit in order and with no gaps; a follower that has read up
//! to N and reads again sees exactly N+1, N+2, … The stream re-reads the log whenever it
//! is woken: by a change made through this server at once, by PostgreSQL NOTIFY for a
//! change made through another replica, and by a one-second poll as a fallback.
//!
//! Compaction: an entry is deleted once its `expires_at` has passed, that is once no
//! credential it could match is still valid — a token's short-lived JWTs expire within
//! its access-token lifetime after revocation, a long-lived JWT at its token's own
//! expiry (never, without one), an access token at its `exp`.

use crate::auth::ServiceCaller;
use crate::extract::form_pairs;
use crate::problem::{ApiError, ApiResult};
use crate::state::AppState;
use axum::Json;
use axum::extract::State;
use axum::http::request::Parts;
use axum::response::sse::{Event, Sse};
use futures_util::stream::{self, Stream};
use latchkey_core::store::RevocationEntry;
use serde_json::{Value, json};
use std::collections::{HashMap, VecDeque};
use std::convert::Infallible;
use std::sync::Mutex;
use std::time::Duration;
use tokio::sync::watch;
use uuid::Uuid;

const PAGE: u32 = 500;
const MAX_PAGE: u32 = 10_000;

/// Wakes the followers of the feed, and knows how far each connected follower has
/// applied it (for `DELETE /v1/tokens/{id}?wait=propagated`).
pub struct RevocationHub {
    wake: watch::Sender<u64>,
    heartbeat: Duration,
    subscribers: Mutex<HashMap<Uuid, i64>>,
    acks: watch::Sender<u64>,
    closing: watch::Sender<bool>,
}

/// How far the connected followers of this server have applied the feed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Propagation {
    /// Followers connected now.
    pub connected: usize,
    /// Those that acknowledged the seq asked about.
    pub acknowledged: usize,
}

impl RevocationHub {
    /// A hub whose streams send a heartbeat every `heartbeat`.
    pub fn new(heartbeat: Duration) -> Self {
        Self {
            wake: watch::Sender::new(0),
            heartbeat,
            subscribers: Mutex::new(HashMap::new()),
            acks: watch::Sender::new(0),
            closing: watch::Sender::new(false),
        }
    }

    /// Ends every stream (the server is shutting down; followers reconnect elsewhere).
    pub fn close(&self) {
        self.closing.send_replace(true);
    }

    fn register(&self) -> Uuid {
        let id = Uuid::new_v4();
        if let Ok(mut subscribers) = self.subscribers.lock() {
            subscribers.insert(id, 0);
        }
        self.acks.send_modify(|n| *n = n.wrapping_add(1));
        id
    }

    fn unregister(&self, id: Uuid) {
        if let Ok(mut subscribers) = self.subscribers.lock() {
            subscribers.remove(&id);
        }
        self.acks.send_modify(|n| *n = n.wrapping_add(1));
    }

    /// Records that follower `id` has applied everything up to `seq`. False when no such
    /// follower is connected.
    pub fn acknowledge(&self, id: Uuid, seq: i64) -> bool {
        let known = match self.subscribers.lock() {
            Ok(mut subscribers) => match subscribers.get_mut(&id) {
                Some(acked) => {
                    *acked = (*acked).max(seq);
                    true
                }
                None => false,
            },
            Err(_) => false,
        };
        self.acks.send_modify(|n| *n = n.wrapping_add(1));
        known
    }

    /// How many connected followers have applied `seq`.
    pub fn progress(&self, seq: i64) -> Propagation {
        match self.subscribers.lock() {
            Ok(subscribers) => Propagation {
                connected: subscribers.len(),
                acknowledged: subscribers.values().filter(|acked| **acked >= seq).count(),
            },
            Err(_) => Propagation {
                connected: 0,
                acknowledged: 0,
            },
        }
    }

    /// Waits until every connected follower has applied `seq`, or `timeout` passes.
    pub async fn wait_for(&self, seq: i64, timeout: Duration) -> Propagation {
        let mut changes = self.acks.subscribe();
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            changes.borrow_and_update();
            let progress = self.progress(seq);
            if progress.acknowledged == progress.connected {
                return progress;
            }
            if tokio::time::timeout_at(deadline, changes.changed())
                .await
                .is_err()
            {
                return self.progress(seq);
            }
        }
    }

    /// Something may have been appended: every stream re-reads the log.
    pub fn wake(&self) {
        self.wake.send_modify(|n| *n = n.wrapping_add(1));
    }

    fn subscribe(&self) -> watch::Receiver<u64> {
        self.wake.subscribe()
    }
}

/// `after` and `limit` from the query string.
fn feed_query(parts: &Parts) -> ApiResult<(i64, u32)> {
    let mut after = None;
    let mut limit = PAGE;
    for (key, value) in form_pairs(parts.uri.query().unwrap_or("")) {
        match key.as_str() {
            "after" => {
                after = Some(
                    value
                        .parse::<i64>()
                        .ok()
                        .filter(|n| *n >= 0)
                        .ok_or_else(|| ApiError::field("after", "must be a sequence number"))?,
                )
            }
            "limit" => {
                limit = value
                    .parse()
                    .ok()
                    .filter(|n| (1..=MAX_PAGE).contains(n))
                    .ok_or_else(|| {
                        ApiError::field(
                            "limit",
                            format!("must be a whole number from 1 to {MAX_PAGE}"),
                        )
                    })?
            }
            other => {
                return Err(ApiError::field(
                    other,
                    "is not a query parameter of this endpoint",
                ));
            }
        }
    }
    let resume = parts
        .headers
        .get("last-event-id")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<i64>().ok());
    Ok((after.or(resume).unwrap_or(0), limit))
}

/// `GET /v1/revocations`.
pub async fn page(
    State(state): State<AppState>,
    _reader: ServiceCaller,
    parts: Parts,
) -> ApiResult<Json<Value>> {
    let (after, limit) = feed_query(&parts)?;
    let (entries, head) = state.store().revocations_after(after, limit).await?;
    Ok(Json(json!({ "entries": entries, "head": head })))
}

/// `GET /v1/revocations/stream`.
pub async fn follow(
    State(state): State<AppState>,
    _reader: ServiceCaller,
    parts: Parts,
) -> ApiResult<Sse<impl Stream<Item = Result<Event, Infallible>>>> {
    let (after, _) = feed_query(&parts)?;
    tracing::debug!(after, "a follower opens the revocation stream");
    // Fail now, with a status, if the log cannot be read at all.
    let (_, head) = state.store().revocations_after(after, 1).await?;
    tracing::debug!(after, head, "revocation stream ready");
    let heartbeat = state.revocations().heartbeat;
    let subscriber = Subscription {
        id: state.revocations().register(),
        state: state.clone(),
    };
    let follower = Follower {
        closing: state.revocations().closing.subscribe(),
        subscriber,
        wake: state.revocations().subscribe(),
        state,
        after,
        head,
        pending: VecDeque::new(),
        heartbeat: tokio::time::interval_at(tokio::time::Instant::now() + heartbeat, heartbeat),
        greeted: false,
    };
    Ok(Sse::new(stream::unfold(follower, next_event)))
}

/// A connected follower; it leaves the hub when its stream is dropped.
struct Subscription {
    id: Uuid,
    state: AppState,
}

impl Drop for Subscription {
    fn drop(&mut self) {
        self.state.revocations().unregister(self.id);
    }
}

struct Follower {
    closing: watch::Receiver<bool>,
    subscriber: Subscription,
    state: AppState,
    wake: watch::Receiver<u64>,
    after: i64,
    head: i64,
    pending: VecDeque<RevocationEntry>,
    heartbeat: tokio::time::Interval,
    greeted: bool,
}

fn heartbeat_event(head: i64) -> Event {
    Event::default()
        .event("heartbeat")
        .data(json!({ "head": head }).to_string())
}

async fn next_event(mut f: Follower) -> Option<(Result<Event, Infallible>, Follower)> {
    if !f.greeted {
        // Tells the follower the head at once, so it knows how far behind it is, and its
        // subscriber id, with which it acknowledges what it has applied.
        f.greeted = true;
        let hello = Event::default()
            .event("heartbeat")
            .data(json!({ "head": f.head, "subscriber": f.subscriber.id }).to_string());
        return Some((Ok(hello), f));
    }
    loop {
        if let Some(entry) = f.pending.pop_front() {
            f.after = entry.seq;
            let event = Event::default()
                .id(entry.seq.to_string())
                .event("revocation")
                .data(json!(entry).to_string());
            return Some((Ok(event), f));
        }
        // Mark the wake-up seen before reading, so a commit after the read wakes us.
        f.wake.borrow_and_update();
        match f.state.store().revocations_after(f.after, PAGE).await {
            Ok((entries, head)) => {
                f.head = head;
                if !entries.is_empty() {
                    f.pending.extend(entries);
                    continue;
                }
            }
            Err(error) => {
                // End the stream: the follower reconnects and resumes from its last seq.
                tracing::warn!(?error, "revocation stream cannot read the log");
                return None;
            }
        }
        if *f.closing.borrow() {
            return None;
        }
        tokio::select! {
            _ = f.closing.changed() => return None,
            changed = f.wake.changed() => {
                if changed.is_err() {
                    return None;
                }
            }
            _ = f.heartbeat.tick() => return Some((Ok(heartbeat_event(f.head)), f)),
        }
    }
}

/// `POST /v1/revocations/ack` `{"subscriber": "<id from the stream>", "seq": N}`: the
/// follower has applied every entry up to N.
#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Ack {
    subscriber: Uuid,
    seq: i64,
}

/// `POST /v1/revocations/ack`.
pub async fn ack(
    State(state): State<AppState>,
    _caller: ServiceCaller,
    crate::extract::ApiJson(ack): crate::extract::ApiJson<Ack>,
) -> ApiResult<axum::http::StatusCode> {
    if state.revocations().acknowledge(ack.subscriber, ack.seq) {
        Ok(axum::http::StatusCode::NO_CONTENT)
    } else {
        Err(ApiError::NotFound(format!("subscriber {}", ack.subscriber)))
    }
}
