//! Forwarding: identity and forwarding headers, streaming both ways, and the answers
//! for upstreams that are down or slow and for paths with no route.

use crate::support::{
    CHUNK, ChannelBody, DOWNLOAD_CHUNKS, FakeServer, FakeUpstream, TestGateway, closed_port, routes,
};
use http_body_util::BodyExt;
use hyper::body::Bytes;
use hyper::{Method, Request, StatusCode};
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

#[tokio::test]
async fn spoofed_identity_headers_are_stripped_and_replaced() {
    let gw = TestGateway::start().await;
    let token = gw.token("reports:read reports:write");
    let bearer = token.bearer();
    let answer = gw
        .client
        .call(
            Method::POST,
            &gw.at("/reports/upload"),
            &[
                ("authorization", &bearer),
                (
                    "x-latchkey-token-id",
                    "00000000-0000-0000-0000-000000000000",
                ),
                ("X-Latchkey-Tenant", "victim"),
                ("x-latchkey-user", "admin"),
                ("x-latchkey-scopes", "everything:*"),
                ("x-latchkey-anything-else", "1"),
            ],
            "the body",
        )
        .await;
    assert_eq!(answer.status, StatusCode::OK);
    let saw = |name| answer.upstream_saw(name);
    assert_eq!(saw("x-latchkey-token-id"), Some(vec![token.id.clone()]));
    assert_eq!(saw("x-latchkey-tenant"), Some(vec!["acme".to_owned()]));
    assert_eq!(saw("x-latchkey-user"), None);
    assert_eq!(
        saw("x-latchkey-scopes"),
        Some(vec!["reports:read reports:write".to_owned()])
    );
    assert_eq!(saw("x-latchkey-anything-else"), None);
    assert_eq!(answer.json()["body"], "the body");
}

/// The identity headers are encoded once per client connection and reused while the same
/// verified caller comes back: a connection that switches tokens must never send one
/// token's identity with another's request.
#[tokio::test]
async fn tokens_switched_on_one_connection_each_send_their_own_identity() {
    let gw = TestGateway::start().await;
    let tenant = gw.token("reports:read");
    let personal = gw.token_for("reports:read reports:write", Some("u_7"));
    let stream = tokio::net::TcpStream::connect(gw.address).await.unwrap();
    let (mut sender, connection) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
            .await
            .unwrap();
    tokio::spawn(connection);
    for (token, user, scopes) in [
        (&tenant, None, "reports:read"),
        (&personal, Some("u_7"), "reports:read reports:write"),
        (&tenant, None, "reports:read"),
        (&tenant, None, "reports:read"),
        (&personal, Some("u_7"), "reports:read reports:write"),
    ] {
        let request = Request::get("/reports")
            .header("host", gw.address.to_string())
            .header("authorization", token.bearer())
            .body(http_body_util::Empty::<Bytes>::new())
            .unwrap();
        let response = sender.send_request(request).await.unwrap();
        let answer = crate::support::Answer {
            status: response.status(),
            headers: response.headers().clone(),
            body: response.into_body().collect().await.unwrap().to_bytes(),
        };
        assert_eq!(answer.status, StatusCode::OK);
        let saw = |name| answer.upstream_saw(name);
        assert_eq!(saw("x-latchkey-token-id"), Some(vec![token.id.clone()]));
        assert_eq!(
            saw("x-latchkey-user"),
            user.map(|u: &str| vec![u.to_owned()])
        );
        assert_eq!(saw("x-latchkey-scopes"), Some(vec![scopes.to_owned()]));
    }
}

#[tokio::test]
async fn a_personal_token_sets_the_user_header() {
    let gw = TestGateway::start().await;
    let token = gw.token_for("reports:read", Some("u_42"));
    let answer = gw.get("/reports", Some(&token.bearer())).await;
    assert_eq!(answer.status, StatusCode::OK);
    assert_eq!(
        answer.upstream_saw("x-latchkey-user"),
        Some(vec!["u_42".to_owned()])
    );
    assert_eq!(
        answer.upstream_saw("x-latchkey-tenant"),
        Some(vec!["acme".to_owned()])
    );
}

#[tokio::test]
async fn a_public_route_passes_no_identity_headers_even_spoofed_ones() {
    let gw = TestGateway::start().await;
    let answer = gw
        .client
        .call(
            Method::GET,
            &gw.at("/public"),
            &[
                ("x-latchkey-tenant", "victim"),
                ("x-latchkey-token-id", "x"),
            ],
            "",
        )
        .await;
    assert_eq!(answer.status, StatusCode::OK);
    let headers = answer.json()["headers"].clone();
    let names: Vec<&String> = headers.as_object().unwrap().keys().collect();
    assert!(
        names.iter().all(|n| !n.starts_with("x-latchkey-")),
        "{names:?}"
    );
}

#[tokio::test]
async fn forwarding_headers_are_added_and_hop_by_hop_ones_removed() {
    let gw = TestGateway::start().await;
    let bearer = gw.token("").bearer();
    let answer = gw
        .client
        .call(
            Method::GET,
            &gw.at("/any"),
            &[
                ("authorization", &bearer),
                ("x-forwarded-for", "203.0.113.7"),
                ("connection", "x-private"),
                ("x-private", "secret"),
                ("proxy-authorization", "Basic eA=="),
                ("x-kept", "yes"),
            ],
            "",
        )
        .await;
    assert_eq!(answer.status, StatusCode::OK);
    assert_eq!(
        answer.upstream_saw("x-forwarded-for"),
        Some(vec!["203.0.113.7, 127.0.0.1".to_owned()])
    );
    assert_eq!(answer.upstream_saw("x-private"), None);
    assert_eq!(answer.upstream_saw("proxy-authorization"), None);
    assert_eq!(answer.upstream_saw("x-kept"), Some(vec!["yes".to_owned()]));
    // Kept by default, so an upstream may verify the token again.
    assert_eq!(
        answer.upstream_saw("authorization"),
        Some(vec![bearer.clone()])
    );
    assert_eq!(
        answer.upstream_saw("host"),
        Some(vec![gw.address.to_string()])
    );

    let stripped = gw.get("/private", Some(&bearer)).await;
    assert_eq!(stripped.status, StatusCode::OK);
    assert_eq!(stripped.upstream_saw("authorization"), None);
    assert!(stripped.upstream_saw("x-latchkey-token-id").is_some());
}

#[tokio::test]
async fn a_large_upload_streams_to_the_upstream_before_the_client_has_finished() {
    let gw = TestGateway::start().await;
    let mut first_chunks = gw.upstream.watch_uploads();
    let (body, tx) = ChannelBody::new();
    let request = Request::post(gw.at("/stream/upload"))
        .body(body.boxed_unsync())
        .unwrap();
    let client = gw.client.clone();
    let exchange = tokio::spawn(async move { client.send(request).await });

    tx.send(Bytes::from(vec![b'x'; CHUNK])).await.unwrap();
    // The client still holds the rest: the upstream can only see this chunk if the
    // gateway passed it on without waiting for the whole body.
    let first = tokio::time::timeout(Duration::from_secs(5), first_chunks.recv())
        .await
        .expect("the upstream saw nothing while the upload was still open")
        .unwrap();
    assert!(first > 0 && first <= CHUNK);
    for _ in 0..100 {
        tx.send(Bytes::from(vec![b'y'; CHUNK])).await.unwrap();
    }
    drop(tx);

    let response = exchange.await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let body = response.into_body().collect().await.unwrap().to_bytes();
    let counted: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(counted["bytes"], 101 * CHUNK);
}

#[tokio::test]
async fn a_large_download_streams_to_the_client_before_the_upstream_has_finished() {
    let gw = TestGateway::start().await;
    let request = Request::get(gw.at("/stream/download"))
        .body(
            http_body_util::Empty::new()
                .map_err(|n| match n {})
                .boxed_unsync(),
        )
        .unwrap();
    let response = tokio::time::timeout(Duration::from_secs(5), gw.client.send(request))
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let mut body = response.into_body();
    // The upstream sends the rest only once released, so this chunk came through alone.
    let mut received = 0;
    while received < CHUNK {
        let frame = tokio::time::timeout(Duration::from_secs(5), body.frame())
            .await
            .expect("the first chunk did not arrive before the upstream finished")
            .unwrap()
            .unwrap();
        received += frame.into_data().map_or(0, |d| d.len());
    }
    gw.upstream.release_download();
    let rest = body.collect().await.unwrap().to_bytes();
    assert_eq!(received + rest.len(), (DOWNLOAD_CHUNKS + 1) * CHUNK);
}

#[tokio::test]
async fn a_slow_upload_does_not_count_against_the_upstream_timeout() {
    let gw = TestGateway::start().await;
    let (body, tx) = ChannelBody::new();
    let request = Request::post(gw.at("/stream/upload"))
        .body(body.boxed_unsync())
        .unwrap();
    let client = gw.client.clone();
    let exchange = tokio::spawn(async move { client.send(request).await });
    // The route's timeout is 0.5 s; the upload takes about 1 s.
    for _ in 0..4 {
        tx.send(Bytes::from_static(b"slow")).await.unwrap();
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    drop(tx);
    let response = exchange.await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
}

#[tokio::test]
async fn an_upstream_that_is_down_is_a_502() {
    let gw = TestGateway::start().await;
    let answer = gw.get("/down/x", None).await;
    assert_eq!(answer.status, StatusCode::BAD_GATEWAY);
    assert_eq!(answer.json()["error"], "bad_gateway");
    assert_eq!(gw.gateway.stats().upstream_unreachable, 1);
}

#[tokio::test]
async fn an_upstream_that_is_slow_is_a_504_after_the_route_timeout() {
    let gw = TestGateway::start().await;
    let started = Instant::now();
    let answer = gw.get("/slow", None).await;
    let took = started.elapsed();
    assert_eq!(answer.status, StatusCode::GATEWAY_TIMEOUT);
    assert_eq!(answer.json()["error"], "gateway_timeout");
    assert!(took >= Duration::from_millis(300), "{took:?}");
    assert!(took < Duration::from_secs(3), "{took:?}");
    assert_eq!(gw.gateway.stats().upstream_timeout, 1);
}

#[tokio::test]
async fn a_path_without_a_route_is_a_404() {
    let gw = TestGateway::start().await;
    for path in ["/nowhere", "/publicity", "/"] {
        let answer = gw.get(path, None).await;
        assert_eq!(answer.status, StatusCode::NOT_FOUND, "{path}");
        assert_eq!(answer.json()["error"], "not_found");
    }
    assert_eq!(gw.gateway.stats().no_route, 3);
}

#[tokio::test]
async fn a_dot_segment_cannot_climb_from_a_public_route_to_a_protected_one() {
    let gw = TestGateway::start().await;
    for path in [
        "/public/../reports",
        "/public/%2e%2e/reports",
        "/public//reports",
    ] {
        let answer = gw.get(path, None).await;
        assert_eq!(answer.status, StatusCode::BAD_REQUEST, "{path}");
        assert_eq!(answer.json()["error"], "invalid_request");
    }
}

#[tokio::test]
async fn upstream_errors_pass_through_untouched() {
    let gw = TestGateway::start().await;
    let answer = gw.get("/public/x?status=418", None).await;
    assert_eq!(answer.status, StatusCode::IM_A_TEAPOT);
    assert_eq!(answer.json()["upstream"], "one");
}

/// An upstream that answers every request on a connection with `head` (and `body`,
/// except to `HEAD`), exactly as given.
async fn raw_upstream(head: &'static str, body: &'static str) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut received = Vec::new();
                let mut buffer = [0_u8; 4096];
                while let Ok(read @ 1..) = stream.read(&mut buffer).await {
                    received.extend_from_slice(&buffer[..read]);
                    while let Some(end) = received.windows(4).position(|w| w == b"\r\n\r\n") {
                        let head_method = received.starts_with(b"HEAD ");
                        received.drain(..end + 4);
                        let answer = if head_method {
                            head.to_owned()
                        } else {
                            format!("{head}{body}")
                        };
                        if stream.write_all(answer.as_bytes()).await.is_err() {
                            return;
                        }
                    }
                }
            });
        }
    });
    url
}

#[tokio::test]
async fn an_answer_reaches_the_client_without_hop_by_hop_fields_or_the_upstreams_request_id() {
    let head = "HTTP/1.1 200 OK\r\n\
        Server: raw\r\n\
        Connection: keep-alive, X-Private\r\n\
        X-PRIVATE: secret\r\n\
        Keep-Alive: timeout=5\r\n\
        Proxy-Authenticate: Basic\r\n\
        Upgrade: h2c\r\n\
        X-Request-Id: upstream-chosen\r\n\
        X-Kept: yes\r\n\
        Set-Cookie: a=1\r\n\
        Set-Cookie: b=2\r\n\
        Content-Type: application/json\r\n\
        Content-Length: 2\r\n\r\n";
    let upstream = raw_upstream(head, "{}").await;
    let routes = routes(&upstream, &closed_port().await);
    let gw = TestGateway::start_with(
        FakeServer::start().await,
        FakeUpstream::start("unused").await,
        &routes,
    )
    .await;
    for method in [Method::GET, Method::GET, Method::HEAD] {
        let sent_id = "client-chosen-1";
        let answer = gw
            .client
            .call(
                method.clone(),
                &gw.at("/public/x"),
                &[("x-request-id", sent_id)],
                "",
            )
            .await;
        assert_eq!(answer.status, StatusCode::OK, "{method}");
        for gone in [
            "connection",
            "x-private",
            "keep-alive",
            "proxy-authenticate",
            "upgrade",
        ] {
            assert_eq!(answer.header(gone), None, "{method}: {gone}");
        }
        // Attack above, control here: every end-to-end field passes, repeated ones too.
        assert_eq!(answer.header("server"), Some("raw"));
        assert_eq!(answer.header("x-kept"), Some("yes"));
        assert_eq!(answer.header("content-type"), Some("application/json"));
        let cookies: Vec<_> = answer.headers.get_all("set-cookie").iter().collect();
        assert_eq!(cookies, ["a=1", "b=2"], "{method}");
        let ids: Vec<_> = answer.headers.get_all("x-request-id").iter().collect();
        assert_eq!(ids, [sent_id], "{method}: the gateway's id, once");
        assert_eq!(answer.header("content-length"), Some("2"), "{method}");
        assert!(
            answer.header("date").is_some(),
            "{method}: the listener dates it"
        );
        let body = if method == Method::HEAD { "" } else { "{}" };
        assert_eq!(answer.body, body, "{method}");
    }
    assert_eq!(gw.gateway.stats().forwarded, 3);
}
