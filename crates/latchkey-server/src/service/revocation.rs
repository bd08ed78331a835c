//! The revocation feed (docs/API.md, "The revocation feed"): the ordered, durable deny
//! list that gateways and resource servers replay and then follow live. This module
//! holds the hub that wakes followers and counts their acknowledgements, and a
//! follower's sequence of [`FeedItem`]s; `http::revocation` serves them as pages and
//! as a Server-Sent Events stream.
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

use crate::service::error::Result;
use crate::service::state::AppState;
use latchkey_core::store::{RevocationEntry, Store};
use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::watch;
use uuid::Uuid;

/// Entries a follower reads from the log at a time.
const PAGE: u32 = 500;

/// Entries the shared tail keeps: a follower at most this far behind the head is served
/// from memory; one further behind reads the store until it catches up.
const TAIL_CAPACITY: usize = 4_096;

/// A revocation entry, encoded once for every follower that sends it.
#[derive(Debug)]
pub struct EncodedEntry {
    /// Its seq, the event id.
    pub seq: i64,
    /// Its JSON, the event data.
    pub json: String,
}

impl EncodedEntry {
    fn new(entry: &RevocationEntry) -> Arc<Self> {
        Arc::new(Self {
            seq: entry.seq,
            json: serde_json::json!(entry).to_string(),
        })
    }
}

/// The recent end of the log, read once per wake-up for all followers. Without it every
/// connected follower read the store on every wake-up: a thousand followers meant a
/// thousand queries and encodings per revocation.
#[derive(Default)]
struct Tail {
    /// Read at least once.
    loaded: bool,
    /// The wake-up generation it was last read at.
    generation: u64,
    /// Every entry of the log with a seq above this one, up to `end`, is in `entries`.
    start: i64,
    /// The last seq read.
    end: i64,
    /// The log's head at the last read.
    head: i64,
    entries: VecDeque<Arc<EncodedEntry>>,
}

/// Wakes the followers of the feed, and knows how far each connected follower has
/// applied it (for `DELETE /v1/tokens/{id}?wait=propagated`).
pub struct RevocationHub {
    wake: watch::Sender<u64>,
    heartbeat: Duration,
    subscribers: Mutex<HashMap<Uuid, i64>>,
    acks: watch::Sender<u64>,
    closing: watch::Sender<bool>,
    tail: tokio::sync::Mutex<Tail>,
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
            tail: tokio::sync::Mutex::new(Tail::default()),
        }
    }

    /// Ends every stream (the server is shutting down; followers reconnect elsewhere).
    pub fn close(&self) {
        self.closing.send_replace(true);
    }

    /// Followers connected now.
    pub fn followers(&self) -> usize {
        self.subscribers
            .lock()
            .map_or(0, |subscribers| subscribers.len())
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

    /// The entries after `after` (at most `PAGE` of them) and the log's head. Followers
    /// at most `TAIL_CAPACITY` entries behind are served from the shared tail, which one
    /// of them reads from the store once per wake-up while the others wait for it;
    /// followers further behind read the store themselves.
    async fn entries_after(
        &self,
        store: &dyn Store,
        after: i64,
    ) -> Result<(Vec<Arc<EncodedEntry>>, i64)> {
        let mut tail = self.tail.lock().await;
        // The generation before the read: a wake-up during the read makes the next call
        // read again.
        let generation = *self.wake.borrow();
        if !tail.loaded {
            let (_, head) = store.revocations_after(i64::MAX, 1).await?;
            *tail = Tail {
                loaded: true,
                generation,
                start: head,
                end: head,
                head,
                entries: VecDeque::new(),
            };
        } else if tail.generation != generation {
            loop {
                let (entries, head) = store.revocations_after(tail.end, PAGE).await?;
                tail.head = head;
                let full = entries.len() == PAGE as usize;
                for entry in &entries {
                    tail.end = tail.end.max(entry.seq);
                    tail.entries.push_back(EncodedEntry::new(entry));
                }
                while tail.entries.len() > TAIL_CAPACITY {
                    if let Some(dropped) = tail.entries.pop_front() {
                        tail.start = dropped.seq;
                    }
                }
                if !full {
                    break;
                }
            }
            tail.generation = generation;
        }
        if after < tail.start {
            drop(tail);
            let (entries, head) = store.revocations_after(after, PAGE).await?;
            return Ok((entries.iter().map(EncodedEntry::new).collect(), head));
        }
        let first = tail.entries.partition_point(|entry| entry.seq <= after);
        let entries = tail
            .entries
            .range(first..)
            .take(PAGE as usize)
            .cloned()
            .collect();
        Ok((entries, tail.head))
    }
}

/// What a follower of the feed receives, in order: one [`FeedItem::Hello`], then entries
/// as they commit, with heartbeats between.
#[derive(Debug)]
pub enum FeedItem {
    /// The head at once, so the follower knows how far behind it is, and its subscriber
    /// id, with which it acknowledges what it has applied.
    Hello {
        /// The log's head seq.
        head: i64,
        /// The id for acknowledgements.
        subscriber: Uuid,
    },
    /// The next entry after the last one sent, encoded.
    Entry(Arc<EncodedEntry>),
    /// Nothing new for a heartbeat interval.
    Heartbeat {
        /// The log's head seq.
        head: i64,
    },
}

/// Starts following the feed after `after`. Fails now, with an error the caller can
/// answer with a status, if the log cannot be read at all.
pub async fn follow(state: AppState, after: i64) -> Result<Follower> {
    let (_, head) = state.store().revocations_after(after, 1).await?;
    tracing::debug!(after, head, "revocation stream ready");
    let hub = state.revocations();
    let heartbeat = hub.heartbeat;
    Ok(Follower {
        closing: hub.closing.subscribe(),
        wake: hub.wake.subscribe(),
        subscriber: Subscription {
            id: hub.register(),
            state: state.clone(),
        },
        state,
        after,
        head,
        pending: VecDeque::new(),
        heartbeat: tokio::time::interval_at(tokio::time::Instant::now() + heartbeat, heartbeat),
        greeted: false,
    })
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

/// One follower's place in the feed.
pub struct Follower {
    closing: watch::Receiver<bool>,
    subscriber: Subscription,
    state: AppState,
    wake: watch::Receiver<u64>,
    after: i64,
    head: i64,
    pending: VecDeque<Arc<EncodedEntry>>,
    heartbeat: tokio::time::Interval,
    greeted: bool,
}

impl Follower {
    /// The next item, or `None` when the stream ends: the server is closing, or the log
    /// cannot be read (the follower reconnects and resumes from its last seq).
    pub async fn next(mut self) -> Option<(FeedItem, Self)> {
        if !self.greeted {
            self.greeted = true;
            let hello = FeedItem::Hello {
                head: self.head,
                subscriber: self.subscriber.id,
            };
            return Some((hello, self));
        }
        loop {
            if let Some(entry) = self.pending.pop_front() {
                self.after = entry.seq;
                return Some((FeedItem::Entry(entry), self));
            }
            // Mark the wake-up seen before reading, so a commit after the read wakes us.
            self.wake.borrow_and_update();
            let hub = self.state.revocations();
            match hub.entries_after(self.state.store(), self.after).await {
                Ok((entries, head)) => {
                    self.head = head;
                    if !entries.is_empty() {
                        self.pending.extend(entries);
                        continue;
                    }
                }
                Err(error) => {
                    tracing::warn!(?error, "revocation stream cannot read the log");
                    return None;
                }
            }
            if *self.closing.borrow() {
                return None;
            }
            tokio::select! {
                _ = self.closing.changed() => return None,
                changed = self.wake.changed() => {
                    if changed.is_err() {
                        return None;
                    }
                }
                _ = self.heartbeat.tick() => {
                    let head = self.head;
                    return Some((FeedItem::Heartbeat { head }, self));
                }
            }
        }
    }
}
