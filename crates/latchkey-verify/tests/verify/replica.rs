//! The deny-list replica against the fake feed: snapshot and live entries, resuming
//! after a restart without a gap, staleness (503, heartbeats, fail-open), cache
//! eviction, and the order rules (duplicates, gaps, compaction).

use crate::feed::{Feed, entry, wait_until};
use crate::support::{Fixture, api_key, header, sign};
use axum::Router;
use axum::body::Body;
use axum::http::{Request, StatusCode, header as http_header};
use axum::routing::get;
use latchkey_core::TokenId;
use latchkey_verify::{
    Credential, DiscoveryError, InvalidReason, ReplicaOptions, Revocation, RevocationCheck,
    RevocationReplica, Scopes, VerifyError,
};
use std::sync::Arc;
use std::time::Duration;
use tower::ServiceExt;

/// Fast retries and small pages, so paging and reconnection show within milliseconds.
fn options() -> ReplicaOptions {
    ReplicaOptions {
        page_size: 2,
        backoff_initial: Duration::from_millis(10),
        backoff_max: Duration::from_millis(40),
        ..ReplicaOptions::default()
    }
}

fn staleness(max_staleness: Duration) -> ReplicaOptions {
    ReplicaOptions {
        max_staleness,
        ..options()
    }
}

fn new_id() -> String {
    uuid::Uuid::new_v4().to_string()
}

fn id(text: &str) -> TokenId {
    TokenId::parse(text).unwrap()
}

fn unknown() -> TokenId {
    id(&new_id())
}

/// Waits until the replica has applied `seq`.
async fn applied(replica: &RevocationReplica, seq: i64) {
    tokio::time::timeout(
        Duration::from_secs(5),
        replica.applied().wait_for(|last| *last >= seq),
    )
    .await
    .expect("applied within 5 s")
    .unwrap();
}

async fn status_through_layer(f: &Fixture, token: &str) -> StatusCode {
    let app: Router = Router::new().route(
        "/reports",
        get(|| async { "reports" })
            .route_layer(f.verifier.require(Scopes::all_of(["reports:read"]))),
    );
    let request = Request::builder()
        .uri("/reports")
        .header(http_header::AUTHORIZATION, format!("Bearer {token}"))
        .body(Body::empty())
        .unwrap();
    app.oneshot(request).await.unwrap().status()
}

/// A verifier whose deny list is `replica`, reporting revocations to it.
async fn verifier_on(replica: &RevocationReplica) -> Fixture {
    let f = Fixture::with(|o| o.revocation = Arc::new(replica.clone())).await;
    replica.attach(f.verifier.evictor());
    f
}

#[tokio::test]
async fn the_replica_loads_the_snapshot_in_pages_then_follows_live_entries() {
    let feed = Feed::start().await;
    let (token, jti, family) = (new_id(), new_id(), new_id());
    feed.append("token", &token, None);
    feed.append("jti", &jti, Some("2099-01-01T00:00:00Z"));
    feed.append("family", &family, None);
    let replica = feed.replica(options()).await;
    assert_eq!((replica.last_seq(), replica.head_seq()), (3, 3));
    assert_eq!(replica.len(), 2, "a family entry is not kept");
    assert!(!replica.is_stale());
    assert_eq!(replica.check(&id(&token), None), Revocation::Revoked);
    assert_eq!(replica.check(&unknown(), Some(&jti)), Revocation::Revoked);
    assert_eq!(replica.check(&id(&jti), None), Revocation::NotRevoked);
    assert_eq!(replica.check(&id(&family), None), Revocation::NotRevoked);
    assert_eq!(
        replica.check(&unknown(), Some(&new_id())),
        Revocation::NotRevoked
    );

    feed.wait_for_streams(1).await;
    let pages: Vec<_> = feed
        .page_requests()
        .iter()
        .map(|r| (r.after, r.limit))
        .collect();
    assert_eq!(pages, [(Some(0), Some(2)), (Some(2), Some(2))]);
    let stream = &feed.stream_requests()[0];
    assert_eq!((stream.after, stream.last_event_id), (Some(3), Some(3)));
    assert!(feed.requests().iter().all(|r| r.authorized));

    let live = new_id();
    assert_eq!(feed.revoke("token", &live), 4);
    applied(&replica, 4).await;
    assert_eq!(replica.check(&id(&live), None), Revocation::Revoked);
    let metrics = replica.metrics();
    assert_eq!(
        (
            metrics.entries,
            metrics.entries_applied,
            metrics.reconnects,
            metrics.resyncs
        ),
        (3, 4, 0, 0)
    );
    assert!(metrics.memory_bytes > 0);
}

#[tokio::test]
async fn after_a_server_restart_the_replica_resumes_from_its_last_seq_and_misses_nothing() {
    let feed = Feed::start().await;
    let ids: Vec<String> = (0..6).map(|_| new_id()).collect();
    feed.append("token", &ids[0], None);
    let replica = feed.replica(options()).await;
    feed.wait_for_streams(1).await;
    feed.revoke("token", &ids[1]);
    applied(&replica, 2).await;

    // The server goes away mid-stream; revocations commit while it restarts.
    feed.set_down(true);
    feed.break_streams();
    wait_until(|| feed.stream_requests().iter().filter(|r| r.down).count() >= 2).await;
    feed.append("token", &ids[2], None);
    feed.append("jti", &ids[3], None);
    feed.set_down(false);
    applied(&replica, 4).await;
    let resumed: Vec<_> = feed.stream_requests()[1..]
        .iter()
        .map(|r| (r.after, r.last_event_id))
        .collect();
    assert!(
        resumed.iter().all(|r| *r == (Some(2), Some(2))),
        "{resumed:?}"
    );

    // A stream that ends cleanly is resumed the same way.
    feed.wait_for_streams(1).await;
    feed.end_streams();
    feed.revoke("token", &ids[4]);
    feed.revoke("token", &ids[5]);
    applied(&replica, 6).await;
    let last = feed.stream_requests().last().unwrap().clone();
    assert_eq!((last.after, last.last_event_id), (Some(4), Some(4)));

    for (n, subject) in ids.iter().enumerate() {
        let revoked = if n == 3 {
            replica.check(&unknown(), Some(subject))
        } else {
            replica.check(&id(subject), None)
        };
        assert_eq!(revoked, Revocation::Revoked, "entry {}", n + 1);
    }
    assert_eq!(
        feed.page_requests().len(),
        1,
        "resumed by the stream, no new snapshot"
    );
    let metrics = replica.metrics();
    assert!(metrics.reconnects >= 3, "{metrics:?}");
    assert_eq!((metrics.entries_applied, metrics.resyncs), (6, 0));
}

#[tokio::test]
async fn a_replica_that_hears_nothing_for_max_staleness_fails_closed_with_503() {
    let feed = Feed::start().await;
    let replica = feed.replica(staleness(Duration::from_millis(300))).await;
    let f = verifier_on(&replica).await;
    let token = f.token(&f.ed);
    // Building the fixture may take longer than max_staleness (key generation).
    feed.wait_for_streams(1).await;
    feed.heartbeat();
    wait_until(|| !replica.is_stale()).await;
    assert_eq!(status_through_layer(&f, &token).await, StatusCode::OK);
    let transitions = replica.metrics().stale_transitions;

    tokio::time::sleep(Duration::from_millis(400)).await;
    assert!(replica.is_stale());
    assert_eq!(replica.check(&unknown(), None), Revocation::Stale);
    assert_eq!(
        status_through_layer(&f, &token).await,
        StatusCode::SERVICE_UNAVAILABLE
    );
    assert!(matches!(
        f.verifier.verify(&token).await,
        Err(VerifyError::Unavailable(_))
    ));
    assert_eq!(replica.metrics().stale_transitions, transitions + 1);

    feed.heartbeat();
    wait_until(|| !replica.is_stale()).await;
    assert_eq!(status_through_layer(&f, &token).await, StatusCode::OK);
}

#[tokio::test]
async fn heartbeats_keep_the_replica_current() {
    let feed = Feed::start().await;
    let replica = feed.replica(staleness(Duration::from_millis(300))).await;
    feed.wait_for_streams(1).await;
    for _ in 0..8 {
        feed.heartbeat();
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert!(!replica.is_stale());
    }
    let metrics = replica.metrics();
    assert_eq!(metrics.stale_transitions, 0);
    assert!(metrics.since_heard.unwrap() < Duration::from_millis(300));
}

#[tokio::test]
async fn a_replica_set_to_fail_open_answers_from_its_list_when_stale() {
    let feed = Feed::start().await;
    let revoked = new_id();
    feed.append("token", &revoked, None);
    let replica = feed
        .replica(ReplicaOptions {
            fail_open: true,
            ..staleness(Duration::from_millis(150))
        })
        .await;
    tokio::time::sleep(Duration::from_millis(250)).await;
    assert!(replica.is_stale());
    assert_eq!(replica.check(&id(&revoked), None), Revocation::Revoked);
    assert_eq!(replica.check(&unknown(), None), Revocation::NotRevoked);
    assert!(replica.metrics().stale);
}

#[tokio::test]
async fn before_its_first_snapshot_a_replica_fails_closed_even_when_set_to_fail_open() {
    let feed = Feed::start().await;
    feed.set_down(true);
    let replica = feed.start_replica(ReplicaOptions {
        fail_open: true,
        ..options()
    });
    wait_until(|| replica.metrics().reconnects >= 2).await;
    assert_eq!(replica.check(&unknown(), None), Revocation::Stale);
    assert_eq!(replica.metrics().since_heard, None);
    feed.set_down(false);
    tokio::time::timeout(Duration::from_secs(5), replica.ready())
        .await
        .unwrap();
    assert_eq!(replica.check(&unknown(), None), Revocation::NotRevoked);
}

#[tokio::test]
async fn a_token_revoked_on_the_feed_is_refused_at_its_next_use() {
    let feed = Feed::start().await;
    let replica = feed.replica(options()).await;
    let f = verifier_on(&replica).await;
    let claims = f.claims();
    let token = sign(&f.ed, &header(&f.ed), &claims);
    f.verifier.verify(&token).await.unwrap();
    f.verifier.verify(&token).await.unwrap();
    let seq = feed.revoke("token", claims["client_id"].as_str().unwrap());
    applied(&replica, seq).await;
    assert_eq!(
        f.verifier.verify(&token).await.unwrap_err(),
        VerifyError::InvalidToken(InvalidReason::Revoked)
    );
    assert_eq!(
        status_through_layer(&f, &token).await,
        StatusCode::UNAUTHORIZED
    );
}

#[tokio::test]
async fn an_applied_entry_evicts_the_verified_token_and_introspection_caches() {
    let feed = Feed::start().await;
    let replica = feed.replica(options()).await;
    // No deny list on this verifier: only eviction can make it let go of its caches.
    let f = Fixture::start().await;
    replica.attach(f.verifier.evictor());
    let claims = f.claims();
    let token = sign(&f.ed, &header(&f.ed), &claims);
    let first = f.verifier.verify(&token).await.unwrap();
    assert!(Arc::ptr_eq(
        &first,
        &f.verifier.verify(&token).await.unwrap()
    ));
    let (key, key_id) = api_key();
    f.issuer.activate(&key, key_id, "reports:read");
    f.verifier.verify(&key).await.unwrap();
    f.verifier.verify(&key).await.unwrap();
    assert_eq!(f.issuer.introspections(), 1);

    feed.revoke("token", claims["client_id"].as_str().unwrap());
    let seq = feed.revoke("token", &key_id.to_string());
    applied(&replica, seq).await;
    let again = f.verifier.verify(&token).await.unwrap();
    assert!(!Arc::ptr_eq(&first, &again), "verified afresh");
    f.verifier.verify(&key).await.unwrap();
    assert_eq!(f.issuer.introspections(), 2, "introspected afresh");
}

#[tokio::test]
async fn a_jti_revocation_refuses_that_jwt_only() {
    let feed = Feed::start().await;
    let replica = feed.replica(options()).await;
    let f = verifier_on(&replica).await;
    let revoked_claims = f.claims();
    let mut sibling_claims = revoked_claims.clone();
    sibling_claims["jti"] = new_id().into();
    let revoked = sign(&f.ed, &header(&f.ed), &revoked_claims);
    let sibling = sign(&f.ed, &header(&f.ed), &sibling_claims);
    f.verifier.verify(&revoked).await.unwrap();
    let seq = feed.revoke("jti", revoked_claims["jti"].as_str().unwrap());
    applied(&replica, seq).await;
    assert_eq!(
        f.verifier.verify(&revoked).await.unwrap_err(),
        VerifyError::InvalidToken(InvalidReason::Revoked)
    );
    assert!(f.verifier.verify(&sibling).await.is_ok());
}

#[tokio::test]
async fn duplicate_and_out_of_order_events_are_ignored() {
    let feed = Feed::start().await;
    feed.append("token", &new_id(), None);
    feed.append("token", &new_id(), None);
    let replica = feed.replica(options()).await;
    feed.wait_for_streams(1).await;
    let (repeated, late, next) = (new_id(), new_id(), new_id());
    feed.push_raw(entry(2, "token", &repeated, None));
    feed.push_raw(entry(1, "token", &late, None));
    feed.revoke("token", &next);
    applied(&replica, 3).await;
    assert_eq!(replica.check(&id(&repeated), None), Revocation::NotRevoked);
    assert_eq!(replica.check(&id(&late), None), Revocation::NotRevoked);
    assert_eq!(replica.check(&id(&next), None), Revocation::Revoked);
    let metrics = replica.metrics();
    assert_eq!(
        (metrics.last_seq, metrics.entries_ignored, metrics.resyncs),
        (3, 2, 0)
    );
}

#[tokio::test]
async fn a_gap_in_the_stream_is_filled_from_the_pages() {
    let feed = Feed::start().await;
    feed.append("token", &new_id(), None);
    let replica = feed.replica(options()).await;
    feed.wait_for_streams(1).await;
    let missed: Vec<String> = (0..3).map(|_| new_id()).collect();
    feed.append("token", &missed[0], None);
    feed.append("token", &missed[1], None);
    feed.revoke("token", &missed[2]);
    applied(&replica, 4).await;
    for subject in &missed {
        assert_eq!(replica.check(&id(subject), None), Revocation::Revoked);
    }
    assert!(
        feed.page_requests()
            .iter()
            .any(|r| r.after == Some(1) && !r.down)
    );
    assert_eq!(replica.metrics().resyncs, 1);

    // A heartbeat whose head is beyond the last entry also reveals a loss.
    let lost = new_id();
    feed.append("jti", &lost, None);
    feed.heartbeat();
    applied(&replica, 5).await;
    assert_eq!(replica.check(&unknown(), Some(&lost)), Revocation::Revoked);
    assert_eq!(replica.metrics().resyncs, 2);
}

#[tokio::test]
async fn a_gap_left_by_compaction_is_accepted_once_the_pages_confirm_it() {
    let feed = Feed::start().await;
    feed.append("token", &new_id(), None);
    let replica = feed.replica(options()).await;
    feed.wait_for_streams(1).await;
    let compacted = new_id();
    feed.append("token", &compacted, None);
    feed.append("token", &new_id(), None);
    feed.compact(&[2, 3]);
    let after = new_id();
    feed.revoke("token", &after);
    applied(&replica, 4).await;
    assert_eq!(replica.check(&id(&after), None), Revocation::Revoked);
    assert_eq!(replica.check(&id(&compacted), None), Revocation::NotRevoked);
    feed.heartbeat();
    feed.heartbeat();
    let later = new_id();
    feed.revoke("token", &later);
    applied(&replica, 5).await;
    assert_eq!(replica.metrics().resyncs, 1, "the gap is paged once");
}

#[tokio::test]
async fn entries_past_their_expiry_and_grace_are_not_kept() {
    let feed = Feed::start().await;
    let (long_gone, just_expired, current) = (new_id(), new_id(), new_id());
    let minute_ago = latchkey_core::Timestamp::from_millis(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_millis() as i64
            - 60_000,
    )
    .to_rfc3339();
    feed.append("token", &long_gone, Some("2020-01-01T00:00:00Z"));
    feed.append("token", &just_expired, Some(&minute_ago));
    feed.append("token", &current, Some("2099-01-01T00:00:00Z"));
    let replica = feed.replica(options()).await;
    assert_eq!((replica.len(), replica.last_seq()), (2, 3));
    assert_eq!(replica.check(&id(&long_gone), None), Revocation::NotRevoked);
    assert_eq!(
        replica.check(&id(&just_expired), None),
        Revocation::Revoked,
        "kept through the grace that covers the verifier's leeway"
    );
    assert_eq!(replica.check(&id(&current), None), Revocation::Revoked);
}

#[tokio::test]
async fn a_refused_credential_keeps_the_replica_stale() {
    let feed = Feed::start().await;
    let replica =
        RevocationReplica::start(&feed.url, Credential::new("lk_ak_wrong"), options()).unwrap();
    wait_until(|| replica.metrics().reconnects >= 2).await;
    assert!(feed.requests().iter().all(|r| !r.authorized));
    assert_eq!(replica.check(&unknown(), None), Revocation::Stale);
}

#[tokio::test]
async fn start_refuses_bad_issuers_and_options() {
    let credential = || Credential::new("k");
    for issuer in [
        "ftp://auth.example",
        "http://",
        "auth.example",
        "http://a?b",
    ] {
        assert!(matches!(
            RevocationReplica::start(issuer, credential(), ReplicaOptions::default()),
            Err(DiscoveryError::BadIssuer(_))
        ));
    }
    let bad = [
        ReplicaOptions {
            page_size: 0,
            ..ReplicaOptions::default()
        },
        ReplicaOptions {
            page_size: 10_001,
            ..ReplicaOptions::default()
        },
        ReplicaOptions {
            max_staleness: Duration::ZERO,
            ..ReplicaOptions::default()
        },
        ReplicaOptions {
            backoff_max: Duration::from_millis(1),
            ..ReplicaOptions::default()
        },
    ];
    for options in bad {
        assert!(matches!(
            RevocationReplica::start("http://127.0.0.1:1", credential(), options),
            Err(DiscoveryError::BadOption(_))
        ));
    }
}
