//! The fake revocation feed: `GET /v1/revocations` pages and a `/v1/revocations/stream`
//! Server-Sent Events stream on 127.0.0.1:0, in the server's wire format, driven by the
//! test. Entries can be appended silently (as while nobody follows) or live; raw events
//! and heartbeats can be pushed; streams can be ended cleanly or broken mid-way; the
//! whole feed can go down (503). Every request is recorded.

use axum::Router;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::sse::{Event, Sse};
use axum::response::{IntoResponse, Json, Response};
use axum::routing::get;
use futures_util::stream;
use latchkey_verify::{Credential, ReplicaOptions, RevocationReplica};
use serde::Deserialize;
use serde_json::{Value, json};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::mpsc;

/// The credential the fake feed accepts.
pub const FEED_CREDENTIAL: &str = "lk_ak_gateway-credential";

/// One request the feed received.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FeedRequest {
    /// The stream, rather than a page.
    pub stream: bool,
    pub after: Option<i64>,
    pub limit: Option<i64>,
    pub last_event_id: Option<i64>,
    pub authorized: bool,
    /// It arrived while the feed was down.
    pub down: bool,
}

enum Frame {
    Event(Event),
    /// Drop the connection without ending the response properly.
    Break,
}

#[derive(Default)]
struct Log {
    entries: Vec<Value>,
    head: i64,
    streams: Vec<mpsc::UnboundedSender<Frame>>,
}

impl Log {
    fn broadcast(&mut self, frame: impl Fn() -> Frame) {
        self.streams.retain(|stream| stream.send(frame()).is_ok());
    }
}

#[derive(Default)]
struct FeedState {
    log: Mutex<Log>,
    requests: Mutex<Vec<FeedRequest>>,
    down: AtomicBool,
}

/// The fake feed.
pub struct Feed {
    pub url: String,
    state: Arc<FeedState>,
}

/// An entry as the server writes it.
pub fn entry(seq: i64, kind: &str, subject: &str, expires_at: Option<&str>) -> Value {
    json!({
        "seq": seq, "kind": kind, "subject": subject, "tenant_id": "acme",
        "revoked_at": "2026-01-01T00:00:00Z", "expires_at": expires_at,
    })
}

fn revocation(entry: &Value) -> Event {
    Event::default()
        .id(entry["seq"].to_string())
        .event("revocation")
        .data(entry.to_string())
}

fn heartbeat(head: i64) -> Event {
    Event::default()
        .event("heartbeat")
        .data(json!({ "head": head }).to_string())
}

impl Feed {
    pub async fn start() -> Self {
        Self::start_with(None).await
    }

    /// A feed served over TLS with `tls` at `https://localhost:PORT`.
    pub async fn start_tls(tls: tokio_rustls::TlsAcceptor) -> Self {
        Self::start_with(Some(tls)).await
    }

    async fn start_with(tls: Option<tokio_rustls::TlsAcceptor>) -> Self {
        let state = Arc::new(FeedState::default());
        let app = Router::new()
            .route("/v1/revocations", get(page))
            .route("/v1/revocations/stream", get(follow))
            .with_state(state.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let url = match tls {
            None => {
                tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
                format!("http://127.0.0.1:{port}")
            }
            Some(tls) => {
                let listener = crate::tls::TlsListener::new(listener, tls);
                tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
                format!("https://localhost:{port}")
            }
        };
        Self { url, state }
    }

    /// Appends an entry without telling the open streams, as if it committed while
    /// nobody followed; returns its seq.
    pub fn append(&self, kind: &str, subject: &str, expires_at: Option<&str>) -> i64 {
        let mut log = self.state.log.lock().unwrap();
        log.head += 1;
        let seq = log.head;
        log.entries.push(entry(seq, kind, subject, expires_at));
        seq
    }

    /// Appends an entry and sends it to every open stream; returns its seq.
    pub fn revoke(&self, kind: &str, subject: &str) -> i64 {
        let seq = self.append(kind, subject, None);
        let mut log = self.state.log.lock().unwrap();
        let sent = log.entries.last().unwrap().clone();
        log.broadcast(|| Frame::Event(revocation(&sent)));
        seq
    }

    /// Appends a `role` entry holding `permissions` and sends it to every open stream.
    pub fn set_role(&self, role: &str, permissions: &[&str]) -> i64 {
        self.state_entry("role", role, None, "permissions", permissions)
    }

    /// Appends a `member` entry giving `user` of `tenant` `roles` (none: the membership
    /// ended) and sends it to every open stream.
    pub fn set_member(&self, tenant: &str, user: &str, roles: &[&str]) -> i64 {
        self.state_entry("member", user, Some(tenant), "roles", roles)
    }

    fn state_entry(
        &self,
        kind: &str,
        subject: &str,
        tenant: Option<&str>,
        field: &str,
        values: &[&str],
    ) -> i64 {
        let mut log = self.state.log.lock().unwrap();
        log.head += 1;
        let seq = log.head;
        let mut sent = entry(seq, kind, subject, None);
        sent["tenant_id"] = json!(tenant);
        sent[field] = json!(values);
        log.entries.push(sent.clone());
        log.broadcast(|| Frame::Event(revocation(&sent)));
        seq
    }

    /// Removes entries from the log, as compaction does; the head stays.
    pub fn compact(&self, seqs: &[i64]) {
        let mut log = self.state.log.lock().unwrap();
        log.entries
            .retain(|e| !seqs.contains(&e["seq"].as_i64().unwrap()));
    }

    /// Sends `entry` to every open stream as is, whatever the log holds.
    pub fn push_raw(&self, entry: Value) {
        let mut log = self.state.log.lock().unwrap();
        log.broadcast(|| Frame::Event(revocation(&entry)));
    }

    /// Sends a heartbeat with the head to every open stream.
    pub fn heartbeat(&self) {
        let mut log = self.state.log.lock().unwrap();
        let head = log.head;
        log.broadcast(|| Frame::Event(heartbeat(head)));
    }

    /// Ends every open stream properly.
    pub fn end_streams(&self) {
        self.state.log.lock().unwrap().streams.clear();
    }

    /// Drops every open connection mid-response.
    pub fn break_streams(&self) {
        let mut log = self.state.log.lock().unwrap();
        log.broadcast(|| Frame::Break);
        log.streams.clear();
    }

    /// While down, every request is answered 503.
    pub fn set_down(&self, down: bool) {
        self.state.down.store(down, Ordering::SeqCst);
    }

    pub fn requests(&self) -> Vec<FeedRequest> {
        self.state.requests.lock().unwrap().clone()
    }

    pub fn stream_requests(&self) -> Vec<FeedRequest> {
        self.requests().into_iter().filter(|r| r.stream).collect()
    }

    pub fn page_requests(&self) -> Vec<FeedRequest> {
        self.requests().into_iter().filter(|r| !r.stream).collect()
    }

    /// Waits until `n` streams are open.
    pub async fn wait_for_streams(&self, n: usize) {
        wait_until(|| {
            let mut log = self.state.log.lock().unwrap();
            log.streams.retain(|s| !s.is_closed());
            log.streams.len() >= n
        })
        .await;
    }

    /// A replica of this feed with `options`, its snapshot loaded.
    pub async fn replica(&self, options: ReplicaOptions) -> RevocationReplica {
        let replica = self.start_replica(options);
        tokio::time::timeout(Duration::from_secs(5), replica.ready())
            .await
            .expect("the snapshot loads within 5 s");
        replica
    }

    /// A replica of this feed with `options`, started but not awaited.
    pub fn start_replica(&self, options: ReplicaOptions) -> RevocationReplica {
        RevocationReplica::start(&self.url, Credential::new(FEED_CREDENTIAL), options).unwrap()
    }
}

/// Polls `done` every 5 ms for up to 5 s.
pub async fn wait_until(mut done: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while !done() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "condition not met within 5 s"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

#[derive(Deserialize)]
struct FeedQuery {
    after: Option<i64>,
    limit: Option<i64>,
}

/// Records the request; the answer to give instead, if any.
fn admit(
    state: &FeedState,
    stream: bool,
    query: &FeedQuery,
    headers: &HeaderMap,
) -> Option<StatusCode> {
    let authorized = headers.get("authorization").and_then(|v| v.to_str().ok())
        == Some(&format!("Bearer {FEED_CREDENTIAL}"));
    let down = state.down.load(Ordering::SeqCst);
    state.requests.lock().unwrap().push(FeedRequest {
        stream,
        after: query.after,
        limit: query.limit,
        last_event_id: headers
            .get("last-event-id")
            .and_then(|v| v.to_str().ok()?.parse().ok()),
        authorized,
        down,
    });
    if down {
        Some(StatusCode::SERVICE_UNAVAILABLE)
    } else if !authorized {
        Some(StatusCode::UNAUTHORIZED)
    } else {
        None
    }
}

async fn page(
    State(state): State<Arc<FeedState>>,
    Query(query): Query<FeedQuery>,
    headers: HeaderMap,
) -> Response {
    if let Some(status) = admit(&state, false, &query, &headers) {
        return status.into_response();
    }
    let after = query.after.unwrap_or(0);
    let limit = usize::try_from(query.limit.unwrap_or(500)).unwrap();
    let log = state.log.lock().unwrap();
    let entries: Vec<&Value> = log
        .entries
        .iter()
        .filter(|e| e["seq"].as_i64().unwrap() > after)
        .take(limit)
        .collect();
    Json(json!({ "entries": entries, "head": log.head })).into_response()
}

async fn follow(
    State(state): State<Arc<FeedState>>,
    Query(query): Query<FeedQuery>,
    headers: HeaderMap,
) -> Response {
    if let Some(status) = admit(&state, true, &query, &headers) {
        return status.into_response();
    }
    let resume = headers
        .get("last-event-id")
        .and_then(|v| v.to_str().ok()?.parse::<i64>().ok());
    let after = query.after.or(resume).unwrap_or(0);
    let (sender, receiver) = mpsc::unbounded_channel();
    {
        // Replay and registration under one lock, so no entry falls between them.
        let mut log = state.log.lock().unwrap();
        sender.send(Frame::Event(heartbeat(log.head))).unwrap();
        for entry in log
            .entries
            .iter()
            .filter(|e| e["seq"].as_i64().unwrap() > after)
        {
            sender.send(Frame::Event(revocation(entry))).unwrap();
        }
        log.streams.push(sender);
    }
    let events = stream::unfold(Some(receiver), |receiver| async move {
        let mut receiver = receiver?;
        match receiver.recv().await? {
            Frame::Event(event) => Some((Ok(event), Some(receiver))),
            Frame::Break => Some((Err(std::io::Error::other("connection dropped")), None)),
        }
    });
    Sse::new(events).into_response()
}
