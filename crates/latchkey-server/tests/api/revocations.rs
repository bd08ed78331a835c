//! The revocation feed: ordered pages, a live SSE stream that resumes where it left off,
//! and compaction.

use crate::both_backends;
use crate::helpers::TestApp;
use reqwest::Method;
use serde_json::{Value, json};
use std::time::Duration;

both_backends!(
    the_feed_pages_revocations_in_order_with_the_head,
    the_feed_needs_the_introspect_permission,
    the_stream_replays_follows_live_and_resumes_after_the_last_event_id,
    compaction_drops_entries_that_can_match_nothing,
    a_revocation_can_wait_until_every_follower_acknowledged_it,
    many_followers_at_different_places_each_get_every_entry_once_in_order,
);

/// One SSE event: its name, id and data.
#[derive(Debug)]
struct SseEvent {
    event: String,
    id: Option<String>,
    data: Value,
}

struct SseReader {
    response: reqwest::Response,
    buffer: String,
}

impl SseReader {
    async fn open(app: &TestApp, query: &str, last_event_id: Option<&str>) -> Self {
        let mut request = reqwest::Client::new()
            .get(format!("{}/v1/revocations/stream{query}", app.base))
            .bearer_auth(&app.root_key);
        if let Some(id) = last_event_id {
            request = request.header("last-event-id", id);
        }
        let response = request.send().await.unwrap();
        assert_eq!(response.status(), 200);
        assert!(
            response.headers()["content-type"]
                .to_str()
                .unwrap()
                .starts_with("text/event-stream")
        );
        Self {
            response,
            buffer: String::new(),
        }
    }

    async fn next(&mut self) -> SseEvent {
        loop {
            if let Some(end) = self.buffer.find("\n\n") {
                let block: String = self.buffer.drain(..end + 2).collect();
                let mut event = SseEvent {
                    event: "message".into(),
                    id: None,
                    data: Value::Null,
                };
                for line in block.lines() {
                    if let Some(v) = line.strip_prefix("event:") {
                        event.event = v.trim().to_owned();
                    } else if let Some(v) = line.strip_prefix("id:") {
                        event.id = Some(v.trim().to_owned());
                    } else if let Some(v) = line.strip_prefix("data:") {
                        event.data = serde_json::from_str(v.trim()).unwrap();
                    }
                }
                if line_is_comment(&block) {
                    continue;
                }
                return event;
            }
            let chunk = tokio::time::timeout(Duration::from_secs(10), self.response.chunk())
                .await
                .expect("an event within 10 s")
                .unwrap()
                .expect("the stream stays open");
            self.buffer.push_str(&String::from_utf8_lossy(&chunk));
        }
    }

    /// The next revocation event, skipping heartbeats.
    async fn next_revocation(&mut self) -> SseEvent {
        loop {
            let event = self.next().await;
            if event.event == "revocation" {
                return event;
            }
        }
    }
}

fn line_is_comment(block: &str) -> bool {
    block
        .lines()
        .all(|line| line.starts_with(':') || line.is_empty())
}

async fn revoked_token(app: &TestApp, name: &str) -> String {
    let created = app
        .create_tenant_token(
            "acme",
            json!({ "name": name, "kind": "client_credentials" }),
        )
        .await;
    let id = created["token"]["id"].as_str().unwrap().to_owned();
    app.delete(&format!("/v1/tokens/{id}"))
        .await
        .assert_status(204);
    id
}

async fn the_feed_pages_revocations_in_order_with_the_head(app: TestApp) {
    app.create_tenant("acme").await;
    let mut ids = Vec::new();
    for n in 0..3 {
        ids.push(revoked_token(&app, &format!("t{n}")).await);
    }
    let page = app.get("/v1/revocations?after=0").await;
    page.assert_status(200);
    assert_eq!(page.header("cache-control"), "no-store");
    assert_eq!(page.body["head"], 3);
    let entries = page.body["entries"].as_array().unwrap();
    let seqs: Vec<i64> = entries.iter().map(|e| e["seq"].as_i64().unwrap()).collect();
    assert_eq!(seqs, [1, 2, 3]);
    let subjects: Vec<&str> = entries
        .iter()
        .map(|e| e["subject"].as_str().unwrap())
        .collect();
    assert_eq!(subjects, ids.iter().map(String::as_str).collect::<Vec<_>>());
    assert_eq!(entries[0]["kind"], "token");
    assert_eq!(entries[0]["tenant_id"], "acme");
    assert!(
        entries[0]["expires_at"].is_string(),
        "a client_credentials entry stops mattering"
    );
    let tail = app.get("/v1/revocations?after=2&limit=5").await;
    assert_eq!(tail.body["entries"].as_array().unwrap().len(), 1);
    assert_eq!(tail.body["entries"][0]["subject"], ids[2]);
    let limited = app.get("/v1/revocations?after=0&limit=2").await;
    assert_eq!(limited.body["entries"].as_array().unwrap().len(), 2);
    app.get("/v1/revocations?after=-1")
        .await
        .assert_problem(400, "invalid-field");
    app.get("/v1/revocations?limit=0")
        .await
        .assert_problem(400, "invalid-field");
}

async fn the_feed_needs_the_introspect_permission(app: TestApp) {
    app.create_tenant("acme").await;
    let manager = app.manager_key("acme").await;
    let reply = app
        .call(Method::GET, "/v1/revocations", Some(&manager), None)
        .await;
    reply.assert_problem(403, "insufficient-scope");
    let reply = app
        .call(Method::GET, "/v1/revocations/stream", None, None)
        .await;
    reply.assert_problem(401, "invalid-token");
    let gateway = app
        .create_tenant_token(
            "latchkey",
            json!({ "name": "gw", "kind": "api_key", "permissions": ["latchkey:introspect"] }),
        )
        .await;
    let key = gateway["api_key"].as_str().unwrap();
    app.call(Method::GET, "/v1/revocations", Some(key), None)
        .await
        .assert_status(200);
}

async fn the_stream_replays_follows_live_and_resumes_after_the_last_event_id(app: TestApp) {
    app.create_tenant("acme").await;
    let first = revoked_token(&app, "before").await;
    let mut stream = SseReader::open(&app, "?after=0", None).await;
    let hello = stream.next().await;
    assert_eq!(hello.event, "heartbeat");
    assert_eq!(hello.data["head"], 1);
    let replayed = stream.next_revocation().await;
    assert_eq!(replayed.id.as_deref(), Some("1"));
    assert_eq!(replayed.data["subject"], first);
    let live = revoked_token(&app, "during").await;
    let event = stream.next_revocation().await;
    assert_eq!(event.id.as_deref(), Some("2"));
    assert_eq!(event.data["subject"], live);
    drop(stream);
    // While nobody follows, another revocation commits; resuming misses nothing.
    let missed = revoked_token(&app, "while away").await;
    let mut resumed = SseReader::open(&app, "", Some("2")).await;
    let event = resumed.next_revocation().await;
    assert_eq!(event.id.as_deref(), Some("3"));
    assert_eq!(event.data["subject"], missed);
}

async fn compaction_drops_entries_that_can_match_nothing(app: TestApp) {
    app.create_tenant("acme").await;
    let kept = app
        .create_tenant_token("acme", json!({ "name": "forever", "kind": "jwt" }))
        .await;
    let kept_id = kept["token"]["id"].as_str().unwrap().to_owned();
    app.delete(&format!("/v1/tokens/{kept_id}"))
        .await
        .assert_status(204);
    let gone = revoked_token(&app, "short").await;
    // Age the short-lived token's entry past its last JWT's expiry.
    let db = app.db().await;
    sqlx::query("UPDATE revocations SET expires_at = 1 WHERE subject = $1")
        .bind(gone.clone())
        .execute(&db)
        .await
        .unwrap();
    // A round of maintenance now, rather than waiting for the server's next one.
    app.maintain().await;
    let entries = app.get("/v1/revocations?after=0").await.body["entries"].clone();
    let subjects: Vec<String> = entries
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["subject"].as_str().unwrap().to_owned())
        .collect();
    assert!(!subjects.contains(&gone), "compacted: {subjects:?}");
    assert_eq!(
        subjects,
        vec![kept_id],
        "a long-lived JWT without expiry stays listed"
    );
    assert!(entries[0]["expires_at"].is_null());
    assert_eq!(
        app.get("/v1/revocations?after=0").await.body["head"],
        2,
        "the head never moves back"
    );
}

async fn a_revocation_can_wait_until_every_follower_acknowledged_it(app: TestApp) {
    app.create_tenant("acme").await;
    let token = |name: &str| {
        let app = &app;
        let name = name.to_owned();
        async move {
            let created = app
                .create_tenant_token("acme", json!({ "name": name, "kind": "api_key" }))
                .await;
            created["token"]["id"].as_str().unwrap().to_owned()
        }
    };
    // Nobody follows: nothing to wait for.
    let lonely = token("lonely").await;
    let reply = app
        .delete(&format!("/v1/tokens/{lonely}?wait=propagated"))
        .await;
    reply.assert_status(200);
    assert_eq!(reply.body["connected"], 0);
    assert_eq!(reply.body["propagated"], true);

    let mut stream = SseReader::open(&app, "?after=1", None).await;
    let hello = stream.next().await;
    let subscriber = hello.data["subscriber"].as_str().unwrap().to_owned();
    // A follower that does not acknowledge makes the wait time out, and says so.
    let slow = token("slow").await;
    let started = std::time::Instant::now();
    let reply = app
        .delete(&format!("/v1/tokens/{slow}?wait=propagated&timeout_ms=300"))
        .await;
    reply.assert_status(200);
    assert!(started.elapsed() >= Duration::from_millis(300));
    assert_eq!(reply.body["connected"], 1);
    assert_eq!(reply.body["acknowledged"], 0);
    assert_eq!(reply.body["propagated"], false);
    let seen = stream.next_revocation().await;
    assert_eq!(seen.data["subject"], slow);

    // One that acknowledges releases the wait as soon as it does.
    let fast = token("fast").await;
    let waiting = {
        let base = app.base.clone();
        let root = app.root_key.clone();
        let fast = fast.clone();
        tokio::spawn(async move {
            reqwest::Client::new()
                .delete(format!(
                    "{base}/v1/tokens/{fast}?wait=propagated&timeout_ms=10000"
                ))
                .bearer_auth(root)
                .send()
                .await
                .unwrap()
                .json::<Value>()
                .await
                .unwrap()
        })
    };
    let event = stream.next_revocation().await;
    assert_eq!(event.data["subject"], fast);
    let seq: i64 = event.id.unwrap().parse().unwrap();
    let acked = app
        .post(
            "/v1/revocations/ack",
            json!({ "subscriber": subscriber, "seq": seq }),
        )
        .await;
    acked.assert_status(204);
    let answer = tokio::time::timeout(Duration::from_secs(5), waiting)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(answer["connected"], 1);
    assert_eq!(answer["acknowledged"], 1);
    assert_eq!(answer["propagated"], true);
    assert_eq!(answer["seq"], seq);
    let unknown = app
        .post(
            "/v1/revocations/ack",
            json!({ "subscriber": "00000000-0000-4000-8000-000000000000", "seq": 1 }),
        )
        .await;
    unknown.assert_problem(404, "not-found");
    app.delete(&format!("/v1/tokens/{fast}?wait=soon"))
        .await
        .assert_problem(400, "invalid-field");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_graceful_shutdown_ends_the_streams_instead_of_waiting_for_them() {
    // Without a TestApp nothing else in this test installs reqwest's TLS provider.
    latchkey_verify::install_crypto_provider();
    let dir = tempfile::tempdir().unwrap();
    let config = latchkey_server::Config {
        listen: "127.0.0.1:0".parse().unwrap(),
        data_dir: dir.path().to_path_buf(),
        ..latchkey_server::Config::default()
    };
    let app = latchkey_server::Application::build(config).await.unwrap();
    let base = format!("http://127.0.0.1:{}", app.port());
    let root = app.root_key().unwrap().expose().to_owned();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(app.run_until(async move {
        let _ = stopped.await;
    }));
    let mut response = reqwest::Client::new()
        .get(format!("{base}/v1/revocations/stream"))
        .bearer_auth(&root)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    response
        .chunk()
        .await
        .unwrap()
        .expect("the first heartbeat");
    stop.send(()).unwrap();
    tokio::time::timeout(Duration::from_secs(5), server)
        .await
        .expect("the server stops within 5 s although a follower is connected")
        .unwrap()
        .unwrap();
    // The follower sees its stream end, and reconnects elsewhere.
    let end = tokio::time::timeout(Duration::from_secs(5), response.chunk())
        .await
        .unwrap();
    assert!(matches!(end, Ok(None) | Err(_)));
}

/// The stream serves followers that are caught up from one shared read of the log per
/// wake-up (docs/API.md, "The revocation feed"); the sharing must not cost any follower
/// an entry, repeat one or reorder them, whether it started at the beginning, in the
/// middle or at the head, and whether entries arrive one by one or in a burst.
async fn many_followers_at_different_places_each_get_every_entry_once_in_order(app: TestApp) {
    app.create_tenant("acme").await;
    let mut expected = Vec::new();
    for n in 0..3 {
        expected.push(revoked_token(&app, &format!("before {n}")).await);
    }
    let mut followers = Vec::new();
    for (index, after) in [0, 0, 1, 2, 3, 3, 3, 3].into_iter().enumerate() {
        let mut stream = SseReader::open(&app, &format!("?after={after}"), None).await;
        assert_eq!(stream.next().await.event, "heartbeat", "follower {index}");
        followers.push((after, stream));
    }
    // One by one, each followed by a burst committed back to back.
    expected.push(revoked_token(&app, "single").await);
    let burst = revoked_at_once(&app, 5).await;
    expected.extend(burst);
    let total = expected.len();
    for (index, (after, stream)) in followers.iter_mut().enumerate() {
        let mut seen = Vec::new();
        for _ in *after as usize..total {
            let event = stream.next_revocation().await;
            seen.push((
                event.id.clone().unwrap().parse::<i64>().unwrap(),
                event.data["subject"].as_str().unwrap().to_owned(),
            ));
        }
        let seqs: Vec<i64> = seen.iter().map(|(seq, _)| *seq).collect();
        let wanted: Vec<i64> = ((*after + 1)..=total as i64).collect();
        assert_eq!(seqs, wanted, "follower {index} from {after}");
        let subjects: std::collections::BTreeSet<&str> =
            seen.iter().map(|(_, subject)| subject.as_str()).collect();
        let expected_subjects: std::collections::BTreeSet<&str> = expected[*after as usize..]
            .iter()
            .map(String::as_str)
            .collect();
        assert_eq!(subjects, expected_subjects, "follower {index} from {after}");
    }
    // Control: the page endpoint, which reads the store itself, agrees.
    let page = app.get("/v1/revocations?after=0").await;
    assert_eq!(page.body["entries"].as_array().unwrap().len(), total);
    assert_eq!(page.body["head"], total);
}

/// Revokes `n` new tokens concurrently; returns their ids.
async fn revoked_at_once(app: &TestApp, n: usize) -> Vec<String> {
    let mut ids = Vec::new();
    for index in 0..n {
        let created = app
            .create_tenant_token(
                "acme",
                json!({ "name": format!("burst {index}"), "kind": "api_key" }),
            )
            .await;
        ids.push(created["token"]["id"].as_str().unwrap().to_owned());
    }
    let paths: Vec<String> = ids.iter().map(|id| format!("/v1/tokens/{id}")).collect();
    let revokes = paths.iter().map(|path| app.delete(path));
    for reply in futures_util::future::join_all(revokes).await {
        reply.assert_status(204);
    }
    ids
}
