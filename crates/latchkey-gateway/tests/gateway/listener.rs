//! The gateway's listener against slow clients: a stalled request head or body closes
//! the connection, an idle kept-alive connection is closed, a capped listener makes
//! extra clients wait, and none of it cuts a long download or a slow upload that keeps
//! arriving. Raw TCP, since an HTTP client would not stall on purpose.

use crate::support::{CHUNK, DOWNLOAD_CHUNKS, TestGateway};
use serde_json::Value;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Long enough for any closing to be seen on a loaded machine; the tests assert that a
/// connection is closed, not how fast.
const PATIENCE: Duration = Duration::from_secs(10);

const ONE_SECOND_TIMEOUTS: &str = "header_read_timeout_seconds = 1\nbody_read_timeout_seconds = 1";

/// How a raw connection ended up.
#[derive(Debug)]
struct Outcome {
    text: String,
    /// The gateway closed the connection (EOF or reset).
    closed: bool,
    after: Duration,
}

async fn read_until_closed(stream: &mut TcpStream, patience: Duration) -> Outcome {
    let start = Instant::now();
    let mut received = Vec::new();
    let mut buffer = [0_u8; 4096];
    let closed = loop {
        let left = patience.saturating_sub(start.elapsed());
        match tokio::time::timeout(left, stream.read(&mut buffer)).await {
            Err(_) => break false,
            Ok(Ok(0) | Err(_)) => break true,
            Ok(Ok(n)) => received.extend_from_slice(&buffer[..n]),
        }
    };
    Outcome {
        text: String::from_utf8_lossy(&received).into_owned(),
        closed,
        after: start.elapsed(),
    }
}

/// One whole response with a `Content-Length`, or `None` when nothing complete came
/// within `patience`.
async fn read_response(stream: &mut TcpStream, patience: Duration) -> Option<String> {
    let deadline = Instant::now() + patience;
    let mut received = Vec::new();
    let mut buffer = [0_u8; 4096];
    loop {
        let text = String::from_utf8_lossy(&received).into_owned();
        if let Some((head, body)) = text.split_once("\r\n\r\n") {
            let length = header_in(head, "content-length")
                .and_then(|v| v.parse::<usize>().ok())
                .unwrap_or(0);
            if body.len() >= length {
                return Some(text);
            }
        }
        let left = deadline.checked_duration_since(Instant::now())?;
        match tokio::time::timeout(left, stream.read(&mut buffer)).await {
            Ok(Ok(n)) if n > 0 => received.extend_from_slice(&buffer[..n]),
            _ => return None,
        }
    }
}

fn header_in<'a>(head: &'a str, name: &str) -> Option<&'a str> {
    head.lines().find_map(|line| {
        let (key, value) = line.split_once(':')?;
        key.eq_ignore_ascii_case(name).then_some(value.trim())
    })
}

fn header_of<'a>(response: &'a str, name: &str) -> Option<&'a str> {
    header_in(response.split_once("\r\n\r\n")?.0, name)
}

fn body_of(response: &str) -> Value {
    let (_, body) = response.split_once("\r\n\r\n").unwrap();
    serde_json::from_str(body).unwrap_or_else(|e| panic!("{e}: {response}"))
}

fn host(gw: &TestGateway) -> String {
    gw.address.to_string()
}

#[tokio::test]
async fn a_stalled_request_head_is_closed_in_every_form() {
    let gw = TestGateway::start_with_settings(ONE_SECOND_TIMEOUTS).await;
    let host = host(&gw);
    let attacks: Vec<(&str, Vec<String>)> = vec![
        ("nothing at all", vec![]),
        ("half a request line", vec!["GET /public/x HT".to_owned()]),
        (
            "headers without the blank line",
            vec![format!(
                "POST /public/x HTTP/1.1\r\nHost: {host}\r\nContent-Length: 2\r\n"
            )],
        ),
        (
            // Slowloris: bytes keep coming, the head never ends.
            "a header dripped a byte at a time",
            std::iter::once(format!(
                "GET /public/x HTTP/1.1\r\nHost: {host}\r\nX-Drip: "
            ))
            .chain((0..40).map(|_| "a".to_owned()))
            .collect(),
        ),
    ];
    let runs = attacks.into_iter().map(|(name, pieces)| {
        let address = gw.address;
        async move {
            let mut stream = TcpStream::connect(address).await.unwrap();
            let start = Instant::now();
            let drip = async {
                for piece in pieces {
                    if stream.write_all(piece.as_bytes()).await.is_err() {
                        return;
                    }
                    tokio::time::sleep(Duration::from_millis(150)).await;
                }
            };
            let _ = tokio::time::timeout(PATIENCE, drip).await;
            let outcome = read_until_closed(&mut stream, PATIENCE).await;
            let lasted = start.elapsed();
            assert!(outcome.closed, "{name}: still open after {lasted:?}");
            assert!(
                outcome.text.is_empty() || outcome.text.starts_with("HTTP/1.1 408"),
                "{name}: {}",
                outcome.text
            );
            assert!(
                lasted >= Duration::from_millis(900),
                "{name}: closed after {lasted:?}, before the timeout"
            );
        }
    });
    let mut handles = Vec::new();
    for run in runs {
        handles.push(tokio::spawn(run));
    }
    for handle in handles {
        handle.await.unwrap();
    }
    // Nothing reached the routing phases.
    assert_eq!(gw.gateway.stats().requests, 0);
}

#[tokio::test]
async fn an_idle_kept_alive_connection_is_closed_after_the_head_timeout() {
    let gw = TestGateway::start_with_settings(ONE_SECOND_TIMEOUTS).await;
    let mut stream = TcpStream::connect(gw.address).await.unwrap();
    let request = format!("GET /public/x HTTP/1.1\r\nHost: {}\r\n\r\n", host(&gw));
    stream.write_all(request.as_bytes()).await.unwrap();
    let first = read_response(&mut stream, PATIENCE).await.expect("served");
    assert!(first.starts_with("HTTP/1.1 200"), "{first}");
    let outcome = read_until_closed(&mut stream, PATIENCE).await;
    assert!(outcome.closed, "an idle connection stayed open");
    assert!(outcome.text.is_empty(), "{}", outcome.text);
    assert!(outcome.after >= Duration::from_millis(900), "{outcome:?}");
}

#[tokio::test]
async fn a_request_head_sent_slowly_but_within_the_timeout_is_served() {
    let gw = TestGateway::start_with_settings(ONE_SECOND_TIMEOUTS).await;
    let mut stream = TcpStream::connect(gw.address).await.unwrap();
    for piece in [
        "GET /public/slowly HTTP/1.1\r\n".to_owned(),
        format!("Host: {}\r\n", host(&gw)),
        "\r\n".to_owned(),
    ] {
        stream.write_all(piece.as_bytes()).await.unwrap();
        tokio::time::sleep(Duration::from_millis(150)).await;
    }
    let response = read_response(&mut stream, PATIENCE).await.expect("served");
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");
    assert_eq!(body_of(&response)["path"], "/public/slowly");
}

#[tokio::test]
async fn a_stalled_request_body_is_answered_408_and_closed() {
    let gw = TestGateway::start_with_settings(ONE_SECOND_TIMEOUTS).await;
    let host = host(&gw);
    let attacks = [
        (
            "a length longer than what is sent",
            "Content-Length: 100\r\n",
            "only part of it",
        ),
        (
            "a chunk that never ends",
            "Transfer-Encoding: chunked\r\n",
            "64\r\nonly part of it",
        ),
        ("a length and no body at all", "Content-Length: 10\r\n", ""),
    ];
    for (name, framing, sent) in attacks {
        let mut stream = TcpStream::connect(gw.address).await.unwrap();
        let head = format!("POST /public/upload HTTP/1.1\r\nHost: {host}\r\n{framing}\r\n");
        stream.write_all(head.as_bytes()).await.unwrap();
        stream.write_all(sent.as_bytes()).await.unwrap();
        let outcome = read_until_closed(&mut stream, PATIENCE).await;
        assert!(outcome.closed, "{name}: still open");
        assert!(
            outcome.text.starts_with("HTTP/1.1 408"),
            "{name}: {}",
            outcome.text
        );
        assert_eq!(header_of(&outcome.text, "connection"), Some("close"));
        assert_eq!(header_of(&outcome.text, "cache-control"), Some("no-store"));
        let body = body_of(&outcome.text);
        assert_eq!(body["error"], "request_timeout", "{name}");
        assert!(body["error_description"].is_string());
        assert!(outcome.after >= Duration::from_millis(900), "{outcome:?}");
    }
    let stats = gw.gateway.stats();
    assert_eq!(stats.requests, 3);
    assert_eq!(stats.bad_request, 3, "{stats:?}");
    assert_eq!(stats.forwarded, 0, "{stats:?}");
}

#[tokio::test]
async fn a_slow_upload_that_keeps_arriving_is_not_cut() {
    let gw = TestGateway::start_with_settings(ONE_SECOND_TIMEOUTS).await;
    let body = "a body sent in six slow pieces";
    let mut stream = TcpStream::connect(gw.address).await.unwrap();
    let head = format!(
        "POST /public/upload HTTP/1.1\r\nHost: {}\r\nContent-Length: {}\r\n\r\n",
        host(&gw),
        body.len()
    );
    stream.write_all(head.as_bytes()).await.unwrap();
    let start = Instant::now();
    // Each piece comes well within the 1 s body timeout; all of them take longer than it.
    for piece in body.as_bytes().chunks(body.len().div_ceil(6)) {
        stream.write_all(piece).await.unwrap();
        tokio::time::sleep(Duration::from_millis(350)).await;
    }
    assert!(start.elapsed() > Duration::from_secs(1));
    let response = read_response(&mut stream, PATIENCE).await.expect("served");
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");
    assert_eq!(body_of(&response)["body"], body);
}

#[tokio::test]
async fn a_long_download_outlives_both_timeouts() {
    let gw = TestGateway::start_with_settings(ONE_SECOND_TIMEOUTS).await;
    let mut stream = TcpStream::connect(gw.address).await.unwrap();
    let request = format!(
        "GET /stream/download HTTP/1.1\r\nHost: {}\r\n\r\n",
        host(&gw)
    );
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut received = Vec::new();
    let mut buffer = vec![0_u8; 64 * 1024];
    // The first chunk, then silence from the upstream for longer than both timeouts.
    while received.len() < CHUNK {
        let n = tokio::time::timeout(PATIENCE, stream.read(&mut buffer))
            .await
            .unwrap()
            .unwrap();
        assert!(n > 0, "closed during the first chunk");
        received.extend_from_slice(&buffer[..n]);
    }
    tokio::time::sleep(Duration::from_millis(2500)).await;
    gw.upstream.release_download();
    let rest = read_until_closed(&mut stream, PATIENCE).await;
    let total = received.len() + rest.text.len();
    assert!(
        total > (DOWNLOAD_CHUNKS + 1) * CHUNK,
        "only {total} bytes arrived"
    );
    assert!(
        rest.text.ends_with("0\r\n\r\n"),
        "the chunked body did not end"
    );
}

#[tokio::test]
async fn a_connection_beyond_max_connections_waits_until_one_closes() {
    let gw = TestGateway::start_with_settings("max_connections = 2").await;
    let request = format!("GET /public/x HTTP/1.1\r\nHost: {}\r\n\r\n", host(&gw));
    let mut held = Vec::new();
    for _ in 0..2 {
        let mut stream = TcpStream::connect(gw.address).await.unwrap();
        stream.write_all(request.as_bytes()).await.unwrap();
        let response = read_response(&mut stream, PATIENCE).await.expect("served");
        assert!(response.starts_with("HTTP/1.1 200"), "{response}");
        held.push(stream);
    }
    // The kernel completes the handshake; the gateway does not take the connection.
    let mut third = TcpStream::connect(gw.address).await.unwrap();
    third.write_all(request.as_bytes()).await.unwrap();
    assert_eq!(
        read_response(&mut third, Duration::from_secs(1)).await,
        None,
        "a third connection was served"
    );
    // The held ones are still served meanwhile.
    held[0].write_all(request.as_bytes()).await.unwrap();
    let again = read_response(&mut held[0], PATIENCE).await.expect("served");
    assert!(again.starts_with("HTTP/1.1 200"), "{again}");

    drop(held.remove(1));
    let response = read_response(&mut third, PATIENCE)
        .await
        .expect("served once a slot was free");
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");
    assert_eq!(gw.gateway.stats().forwarded, 4);
}

#[tokio::test]
async fn a_request_smuggled_behind_a_length_given_two_ways_reaches_no_upstream() {
    let gw = TestGateway::start().await;
    let host = host(&gw);
    let smuggled = format!("GET /public/smuggled HTTP/1.1\r\nHost: {host}\r\n\r\n");
    for framing in [
        "Content-Length: 5\r\nTransfer-Encoding: chunked\r\n",
        "Transfer-Encoding: chunked\r\nContent-length: 5\r\n",
        "Content-Length: 5\r\nTransfer-Encoding: gzip, chunked\r\n",
        "Transfer-Encoding: chunked\r\nTransfer-Encoding: identity\r\n",
    ] {
        let mut stream = TcpStream::connect(gw.address).await.unwrap();
        let request =
            format!("POST /public/x HTTP/1.1\r\nHost: {host}\r\n{framing}\r\n0\r\n\r\n{smuggled}");
        stream.write_all(request.as_bytes()).await.unwrap();
        let outcome = read_until_closed(&mut stream, PATIENCE).await;
        assert!(outcome.closed, "{framing}: {outcome:?}");
        let status = &outcome.text[9..12];
        assert!(status == "400" || status == "501", "{framing}: {outcome:?}");
        assert_eq!(outcome.text.matches("HTTP/1.1 ").count(), 1, "{outcome:?}");
    }
    assert_eq!(gw.upstream.echoed(), 0);
    // Control: chunked alone is forwarded, and the request after it is its own.
    let mut stream = TcpStream::connect(gw.address).await.unwrap();
    let request = format!(
        "POST /public/x HTTP/1.1\r\nHost: {host}\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nhi\r\n0\r\n\r\n\
         GET /public/next HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n"
    );
    stream.write_all(request.as_bytes()).await.unwrap();
    let outcome = read_until_closed(&mut stream, PATIENCE).await;
    assert_eq!(
        outcome.text.matches("HTTP/1.1 200 ").count(),
        2,
        "{outcome:?}"
    );
    assert_eq!(gw.upstream.echoed(), 2);
}
