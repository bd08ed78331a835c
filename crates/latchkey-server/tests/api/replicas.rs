//! Several server replicas on one PostgreSQL database, and PostgreSQL going away.

use crate::helpers::{Relay, TestApp};
use reqwest::Method;
use serde_json::json;
use sqlx::Row;
use std::time::{Duration, Instant};

/// Follows B's revocation stream and returns when `subject` arrives.
async fn wait_on_stream(app: &TestApp, subject: &str) -> Instant {
    let mut response = reqwest::Client::new()
        .get(format!("{}/v1/revocations/stream?after=0", app.base))
        .bearer_auth(&app.root_key)
        .send()
        .await
        .unwrap();
    let mut seen = String::new();
    loop {
        let chunk = tokio::time::timeout(Duration::from_secs(10), response.chunk())
            .await
            .expect("the revocation reaches the other replica within 10 s")
            .unwrap()
            .unwrap();
        seen.push_str(&String::from_utf8_lossy(&chunk));
        if seen.contains(subject) {
            return Instant::now();
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revocation_through_one_replica_reaches_the_feed_of_another() {
    let Some(a) = TestApp::postgres().await else {
        return;
    };
    let b = a.replica(|_| {}).await;
    a.create_tenant("acme").await;
    let mut latencies = Vec::new();
    for n in 0..20 {
        let created = a
            .create_tenant_token(
                "acme",
                json!({ "name": format!("t{n}"), "kind": "client_credentials" }),
            )
            .await;
        let id = created["token"]["id"].as_str().unwrap().to_owned();
        // B authenticates the token's holder like A does: they share the pepper.
        let (client_id, secret) = (
            created["client_id"].as_str().unwrap(),
            created["client_secret"].as_str().unwrap(),
        );
        b.exchange(client_id, secret, &[]).await.assert_status(200);
        let follower = {
            let b_base = b.base.clone();
            let root = b.root_key.clone();
            let id = id.clone();
            tokio::spawn(async move {
                let probe = TestApp::probe(b_base, root);
                wait_on_stream(&probe, &id).await
            })
        };
        // Give the follower time to connect and replay what is already there.
        tokio::time::sleep(Duration::from_millis(100)).await;
        let revoked = Instant::now();
        a.delete(&format!("/v1/tokens/{id}"))
            .await
            .assert_status(204);
        let arrived = follower.await.unwrap();
        latencies.push(arrived.saturating_duration_since(revoked));
        // And B refuses the token within its one-second cache.
        tokio::time::sleep(Duration::from_millis(1100)).await;
        let reply = b.exchange(client_id, secret, &[]).await;
        assert_eq!(reply.status, 401, "{}", reply.text);
    }
    latencies.sort();
    eprintln!(
        "replica A revoke -> replica B feed: p50 {:?}, max {:?} over {} revocations",
        latencies[latencies.len() / 2],
        latencies[latencies.len() - 1],
        latencies.len()
    );
    assert!(
        latencies[latencies.len() / 2] < Duration::from_millis(500),
        "LISTEN/NOTIFY, not the poll"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_writers_on_two_replicas_keep_the_audit_chain_and_the_log_linear() {
    let Some(a) = TestApp::postgres().await else {
        return;
    };
    let b = a.replica(|_| {}).await;
    a.create_tenant("acme").await;
    let a = std::sync::Arc::new(a);
    let b = std::sync::Arc::new(b);
    let mut tasks = tokio::task::JoinSet::new();
    for n in 0..60 {
        let (a, b) = (a.clone(), b.clone());
        tasks.spawn(async move {
            let app = if n % 2 == 0 { &a } else { &b };
            let created = app
                .create_tenant_token(
                    "acme",
                    json!({ "name": format!("t{n}"), "kind": "api_key" }),
                )
                .await;
            let id = created["token"]["id"].as_str().unwrap().to_owned();
            app.delete(&format!("/v1/tokens/{id}"))
                .await
                .assert_status(204);
        });
    }
    while let Some(done) = tasks.join_next().await {
        done.unwrap();
    }
    let db = a.db().await;
    let rows = sqlx::query("SELECT seq, prev_hash, hash FROM audit_events ORDER BY seq")
        .fetch_all(&db)
        .await
        .unwrap();
    let mut previous = vec![0u8; 32];
    for (index, row) in rows.iter().enumerate() {
        assert_eq!(
            row.get::<i64, _>("seq"),
            index as i64 + 1,
            "audit seqs have no gap"
        );
        assert_eq!(
            row.get::<Vec<u8>, _>("prev_hash"),
            previous,
            "the chain links"
        );
        previous = row.get("hash");
    }
    let seqs: Vec<i64> = sqlx::query_scalar("SELECT seq FROM revocations ORDER BY seq")
        .fetch_all(&db)
        .await
        .unwrap();
    assert_eq!(
        seqs,
        (1..=60).collect::<Vec<i64>>(),
        "revocation seqs have no gap"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scheduled_rotation_happens_once_across_replicas() {
    let Some(a) = TestApp::postgres_with(|c| c.key_rotation_seconds = 2).await else {
        return;
    };
    let b = a.replica(|c| c.key_rotation_seconds = 2).await;
    // Three periods pass on the replicas' shared clock; after each, both look at the
    // schedule at once (their own rounds may run meanwhile too).
    for _ in 0..3 {
        a.clock.advance(Duration::from_millis(2100));
        tokio::join!(a.maintain(), b.maintain());
    }
    let db = a.db().await;
    let rotations: Vec<i64> =
        sqlx::query_scalar("SELECT at FROM audit_events WHERE action = 'key.rotated' ORDER BY seq")
            .fetch_all(&db)
            .await
            .unwrap();
    // Two at first start, then at most one per period (and never two at once).
    assert!(rotations.len() >= 3, "the schedule rotated: {rotations:?}");
    assert_eq!(rotations.len(), 5, "one per period: {rotations:?}");
    for pair in rotations[2..].windows(2) {
        assert!(
            pair[1] - pair[0] >= 2000,
            "rotations came {} ms apart",
            pair[1] - pair[0]
        );
    }
    for replica in [&a, &b] {
        let jwks = replica
            .call(Method::GET, "/.well-known/jwks.json", None, None)
            .await
            .body;
        assert_eq!(
            jwks["keys"].as_array().unwrap().len(),
            3,
            "next, current, previous"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_outage_of_postgresql_answers_503_and_recovery_needs_no_restart() {
    let Some((url, name)) = TestApp::fresh_postgres_database().await else {
        return;
    };
    let relay = Relay::start("127.0.0.1:5432".parse().unwrap()).await;
    let relayed = url.replacen(":5432/", &format!(":{}/", relay.port), 1);
    let app = TestApp::on_database(relayed, name, |c| {
        c.database_timeout_ms = 500;
        c.token_cache_ttl_ms = 1;
    })
    .await;
    app.create_tenant("acme").await;
    let kept = app
        .create_tenant_token(
            "acme",
            json!({ "name": "kept", "kind": "client_credentials" }),
        )
        .await;
    let kept_id = kept["token"]["id"].as_str().unwrap().to_owned();
    app.delete(&format!("/v1/tokens/{kept_id}"))
        .await
        .assert_status(204);
    let (id, secret) = app.client("acme", json!({})).await;

    relay.cut();
    tokio::time::sleep(Duration::from_millis(50)).await;
    let write = app.post("/v1/tenants", json!({ "id": "globex" })).await;
    write.assert_problem(503, "unavailable");
    assert!(!write.header("retry-after").is_empty());
    let grant = app.exchange(&id, &secret, &[]).await;
    assert_eq!(grant.status, 503, "{}", grant.text);
    assert_eq!(grant.body["error"], "temporarily_unavailable");
    let ready = app.call(Method::GET, "/readyz", None, None).await;
    ready.assert_problem(503, "unavailable");
    app.call(Method::GET, "/healthz", None, None)
        .await
        .assert_status(200);

    relay.restore();
    let deadline = Instant::now() + Duration::from_secs(10);
    while app.call(Method::GET, "/readyz", None, None).await.status != 200 {
        assert!(
            Instant::now() < deadline,
            "ready again within 10 s of the database returning"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    app.post("/v1/tenants", json!({ "id": "globex" }))
        .await
        .assert_status(201);
    app.exchange(&id, &secret, &[]).await.assert_status(200);
    // The revocation acknowledged before the outage is still there.
    assert!(app.get(&format!("/v1/tokens/{kept_id}")).await.body["revoked_at"].is_string());
    let feed = app.get("/v1/revocations?after=0").await;
    assert_eq!(feed.body["entries"][0]["subject"], kept_id);
}
