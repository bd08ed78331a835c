//! The deny-list replica at a million entries: its memory, how long the snapshot takes
//! to load, and the lookup a verifier makes on every request (hit and miss).
//!
//! A minimal feed in-process serves a million synthetic entries (half token ids, half
//! `jti`s, never expiring) in pages of 10 000, then a stream of heartbeats, so the
//! replica is loaded the way a gateway's is. The memory figures are printed once before
//! the timings: the tables' own size and the growth of the process's resident set
//! across the load (which includes the in-process feed and allocator slack left by the
//! page bodies); after them, the resident set released by dropping the replica.

// Benchmark setup fails loudly, like a test.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use axum::Router;
use axum::extract::Query;
use axum::response::sse::{Event, Sse};
use axum::response::{IntoResponse, Json};
use axum::routing::get;
use criterion::{Criterion, criterion_group, criterion_main};
use futures_util::stream::{self, Stream, StreamExt};
use latchkey_core::TokenId;
use latchkey_verify::{Credential, ReplicaOptions, Revocation, RevocationCheck, RevocationReplica};
use serde::Deserialize;
use serde_json::{Value, json};
use std::convert::Infallible;
use std::hint::black_box;
use std::time::{Duration, Instant};

const ENTRIES: i64 = 1_000_000;

/// Distinct keys each lookup benchmark cycles through.
const SAMPLE: i64 = 65_536;

/// A well-spread 128-bit id for `n` (splitmix64 on each half).
fn id(n: i64) -> u128 {
    fn mix(mut z: u64) -> u64 {
        z = z.wrapping_add(0x9e37_79b9_7f4a_7c15);
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    let n = n as u64;
    (u128::from(mix(n)) << 64) | u128::from(mix(n ^ 0xdead_beef))
}

fn subject(seq: i64) -> String {
    uuid::Uuid::from_u128(id(seq)).hyphenated().to_string()
}

#[derive(Deserialize)]
struct FeedQuery {
    after: i64,
    #[serde(default)]
    limit: Option<i64>,
}

async fn page(Query(q): Query<FeedQuery>) -> Json<Value> {
    let end = (q.after + q.limit.unwrap_or(500)).min(ENTRIES);
    let entries: Vec<Value> = (q.after + 1..=end)
        .map(|seq| {
            json!({
                "seq": seq, "kind": if seq % 2 == 0 { "token" } else { "jti" },
                "subject": subject(seq), "tenant_id": "acme",
                "revoked_at": "2026-01-01T00:00:00Z", "expires_at": null,
            })
        })
        .collect();
    Json(json!({ "entries": entries, "head": ENTRIES }))
}

fn heartbeats() -> impl Stream<Item = Result<Event, Infallible>> {
    let beat = || {
        Ok(Event::default()
            .event("heartbeat")
            .data(json!({ "head": ENTRIES }).to_string()))
    };
    stream::once(async move { beat() }).chain(stream::unfold((), move |()| async move {
        tokio::time::sleep(Duration::from_secs(1)).await;
        Some((beat(), ()))
    }))
}

async fn follow() -> impl IntoResponse {
    Sse::new(heartbeats())
}

/// Resident set size, from /proc/self/statm (Linux).
fn rss_bytes() -> Option<usize> {
    let statm = std::fs::read_to_string("/proc/self/statm").ok()?;
    let pages: usize = statm.split_whitespace().nth(1)?.parse().ok()?;
    Some(pages * 4096)
}

fn mib(bytes: usize) -> f64 {
    bytes as f64 / (1024.0 * 1024.0)
}

fn replica(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let replica = runtime.block_on(async {
        let app = Router::new()
            .route("/v1/revocations", get(page))
            .route("/v1/revocations/stream", get(follow));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        let before = rss_bytes();
        let started = Instant::now();
        let replica =
            RevocationReplica::start(&url, Credential::new("bench"), ReplicaOptions::default())
                .unwrap();
        replica.ready().await;
        let loaded = started.elapsed();
        let metrics = replica.metrics();
        assert_eq!(metrics.entries, ENTRIES as usize);
        println!(
            "replica: {} entries loaded in {loaded:.2?}; tables {:.1} MiB; resident set grew {}",
            metrics.entries,
            mib(metrics.memory_bytes),
            match (before, rss_bytes()) {
                (Some(b), Some(a)) => format!("{:.1} MiB", mib(a.saturating_sub(b))),
                _ => "(unknown)".to_owned(),
            }
        );
        replica
    });
    let _guard = runtime.enter();

    // Lookups cycle through many keys spread over the whole table, as a gateway
    // serving many callers does, rather than hitting one cache-hot slot.
    let revoked_ids: Vec<TokenId> = (0..SAMPLE)
        .map(|n| TokenId::from_u128(id(2 * n + 2)))
        .collect();
    let revoked_jtis: Vec<String> = (0..SAMPLE).map(|n| subject(2 * n + 1)).collect();
    let unknown_ids: Vec<TokenId> = (0..SAMPLE)
        .map(|n| TokenId::from_u128(id(ENTRIES + 1 + n)))
        .collect();
    let unknown_jtis: Vec<String> = (0..SAMPLE).map(|n| subject(2 * ENTRIES + n)).collect();
    for n in 0..SAMPLE as usize {
        assert_eq!(replica.check(&revoked_ids[n], None), Revocation::Revoked);
        assert_eq!(
            replica.check(&unknown_ids[n], Some(&revoked_jtis[n])),
            Revocation::Revoked
        );
        assert_eq!(
            replica.check(&unknown_ids[n], Some(&unknown_jtis[n])),
            Revocation::NotRevoked
        );
    }

    let mut group = c.benchmark_group("replica 1M");
    let mut n = 0;
    let mut next = move || {
        n = (n + 1) % SAMPLE as usize;
        n
    };
    group.bench_function("hit by token id", |b| {
        b.iter(|| replica.check(black_box(&revoked_ids[next()]), None))
    });
    group.bench_function("hit by jti", |b| {
        b.iter(|| {
            let n = next();
            replica.check(
                black_box(&unknown_ids[n]),
                Some(black_box(&revoked_jtis[n])),
            )
        })
    });
    group.bench_function("miss, token id and jti (a JWT)", |b| {
        b.iter(|| {
            let n = next();
            replica.check(
                black_box(&unknown_ids[n]),
                Some(black_box(&unknown_jtis[n])),
            )
        })
    });
    group.bench_function("miss, token id only (an api key)", |b| {
        b.iter(|| replica.check(black_box(&unknown_ids[next()]), None))
    });
    // The same lookups on one cache-hot key: the cost of the code alone.
    group.bench_function("hit by token id, one hot key", |b| {
        b.iter(|| replica.check(black_box(&revoked_ids[0]), None))
    });
    group.bench_function("miss, token id and jti, one hot key", |b| {
        b.iter(|| {
            replica.check(
                black_box(&unknown_ids[0]),
                Some(black_box(&unknown_jtis[0])),
            )
        })
    });
    group.finish();
    assert!(!replica.is_stale(), "heartbeats kept it current throughout");

    // What the replica itself held: the resident set it gives back when dropped (an
    // underestimate when the allocator keeps freed memory; run with
    // MALLOC_MMAP_THRESHOLD_=131072 to make glibc return it).
    let held = rss_bytes();
    drop(replica);
    std::thread::sleep(Duration::from_millis(200));
    if let (Some(held), Some(after)) = (held, rss_bytes()) {
        println!(
            "replica: dropping it released {:.1} MiB of resident set",
            mib(held.saturating_sub(after))
        );
    }
}

criterion_group!(benches, replica);
criterion_main!(benches);
