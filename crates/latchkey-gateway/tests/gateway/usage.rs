//! Usage batches: what reaches `POST /v1/usage`, and that a failed send loses nothing.

use crate::support::{
    FakeServer, FakeUpstream, GATEWAY_CREDENTIAL, TestClient, TestGateway, closed_port, eventually,
    routes,
};
use hyper::{Method, StatusCode};
use latchkey_core::Timestamp;
use latchkey_core::clock::{Clock, ManualClock};
use latchkey_gateway::UsageOptions;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

#[tokio::test]
async fn usage_batches_sum_to_the_requests_split_by_route_method_status_class_and_ip() {
    let gw = TestGateway::start().await;
    let reader = gw.token("reports:read");
    let writer = gw.token("reports:read reports:write");
    let other_ip = TestClient::new(Some("127.0.0.2".parse().unwrap()));

    let local = &gw.client;
    // (client, token, method, path, route, status class, client IP, times)
    let cases = [
        (
            local,
            &reader,
            Method::GET,
            "/reports/1",
            "/reports",
            "2xx",
            "127.0.0.1",
            3,
        ),
        (
            local,
            &reader,
            Method::POST,
            "/reports",
            "/reports",
            "4xx",
            "127.0.0.1",
            2,
        ),
        (
            local,
            &writer,
            Method::POST,
            "/reports",
            "/reports",
            "2xx",
            "127.0.0.1",
            1,
        ),
        (
            local,
            &writer,
            Method::GET,
            "/any/x?status=404",
            "/any",
            "4xx",
            "127.0.0.1",
            2,
        ),
        (
            local,
            &writer,
            Method::GET,
            "/any/x?status=503",
            "/any",
            "5xx",
            "127.0.0.1",
            1,
        ),
        (
            &other_ip,
            &reader,
            Method::GET,
            "/reports",
            "/reports",
            "2xx",
            "127.0.0.2",
            1,
        ),
    ];
    let mut expected = BTreeMap::new();
    for (client, token, method, path, route, class, ip, times) in cases {
        let bearer = token.bearer();
        for _ in 0..times {
            let answer = client
                .call(
                    method.clone(),
                    &gw.at(path),
                    &[("authorization", &bearer)],
                    "",
                )
                .await;
            assert_eq!(
                answer.status.as_u16() / 100,
                class[..1].parse::<u16>().unwrap(),
                "{method} {path}"
            );
        }
        let key = (
            token.id.clone(),
            route.into(),
            method.to_string(),
            class.into(),
            ip.into(),
        );
        *expected.entry(key).or_insert(0) += times;
    }
    // Nobody to attribute these to: counted in stats, not in usage.
    assert_eq!(
        gw.get("/reports", None).await.status,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(gw.get("/public", None).await.status, StatusCode::OK);

    eventually(|| gw.server.usage_total() >= 10).await;
    // One more flush period: nothing beyond the ten may arrive.
    tokio::time::sleep(Duration::from_millis(150)).await;
    assert_eq!(gw.server.usage_total(), 10);
    assert_eq!(gw.server.usage_by_key(), expected);

    for post in gw.server.usage_posts() {
        assert_eq!(
            post.authorization.as_deref(),
            Some(format!("Bearer {GATEWAY_CREDENTIAL}").as_str())
        );
        let window = post.body["window_start"].as_str().unwrap();
        let window = Timestamp::parse_rfc3339(window).unwrap();
        assert_eq!(window.millis() % 60_000, 0, "a window starts on a minute");
        for entry in post.body["entries"].as_array().unwrap() {
            let last = Timestamp::parse_rfc3339(entry["last_used_at"].as_str().unwrap()).unwrap();
            assert!(last >= window && last.millis() < window.millis() + 60_000);
        }
    }
    let stats = gw.gateway.stats();
    assert_eq!(stats.requests, 12);
    // A key whose requests straddle a flush goes out in two entries.
    assert!(stats.usage.entries_sent >= expected.len() as u64);
    assert_eq!(stats.usage.pending_entries, 0);
}

#[tokio::test]
async fn usage_that_fails_to_send_is_kept_and_sent_once_later() {
    let gw = TestGateway::start().await;
    gw.server.fail_usage(3);
    let token = gw.token("reports:read");
    for _ in 0..5 {
        let answer = gw.get("/reports", Some(&token.bearer())).await;
        assert_eq!(answer.status, StatusCode::OK);
    }
    eventually(|| gw.server.usage_total() >= 5).await;
    tokio::time::sleep(Duration::from_millis(150)).await;
    assert_eq!(gw.server.usage_total(), 5, "no count lost or sent twice");
    assert!(gw.server.usage_attempts() >= 4);
    let stats = gw.gateway.stats().usage;
    assert!(stats.send_failures >= 3, "{stats:?}");
    assert_eq!(stats.entries_dropped, 0);
}

#[tokio::test]
async fn shutdown_stops_listening_and_sends_the_pending_usage() {
    let server = FakeServer::start().await;
    let upstream = FakeUpstream::start("one").await;
    let routes = routes(&upstream.url, &closed_port().await);
    // No periodic flush within the test: only the one at shutdown can send.
    let usage = UsageOptions {
        flush_interval: Duration::from_secs(3600),
        ..UsageOptions::default()
    };
    let gw = TestGateway::start_with_usage(server, upstream, &routes, usage).await;
    let token = gw.token("reports:read");
    for _ in 0..2 {
        let answer = gw.get("/reports", Some(&token.bearer())).await;
        assert_eq!(answer.status, StatusCode::OK);
    }
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(gw.server.usage_total(), 0);

    let address = gw.address;
    let (server, gateway) = gw.shut_down().await;
    assert_eq!(server.usage_total(), 2);
    assert_eq!(gateway.stats().usage.pending_entries, 0);
    assert!(tokio::net::TcpStream::connect(address).await.is_err());
}

#[tokio::test]
async fn one_clock_dates_the_usage_and_judges_the_token() {
    // Five minutes ahead of the wall clock: within the test token's fifteen minutes.
    let clock = Arc::new(ManualClock::starting_now());
    clock.advance(Duration::from_secs(300));
    let gw = TestGateway::start_on_clock(clock.clone()).await;
    let token = gw.token("reports:read");
    let answer = gw.get("/reports", Some(&token.bearer())).await;
    assert_eq!(answer.status, StatusCode::OK);
    eventually(|| gw.server.usage_total() >= 1).await;
    let posts = gw.server.usage_posts();
    let entry = &posts[0].body["entries"][0];
    assert_eq!(entry["token_id"], token.id);
    let last = Timestamp::parse_rfc3339(entry["last_used_at"].as_str().unwrap()).unwrap();
    assert_eq!(
        last,
        clock.now(),
        "the request is dated by the verifier's clock"
    );

    // Past the token's expiry and the 60 s leeway by that same clock: refused.
    clock.advance(Duration::from_secs(900));
    let answer = gw.get("/reports", Some(&token.bearer())).await;
    assert_eq!(answer.status, StatusCode::UNAUTHORIZED);
    assert_eq!(gw.gateway.stats().requests, 2);
}
