//! The listener's own HTTP/1.1, attacked over plain TCP: every way to make it read a
//! request's length differently from a proxy in front of it or an application behind
//! it is refused, and each refusal has its control that the legitimate form works.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use super::*;
use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper::{Method, StatusCode};
use std::sync::Mutex;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

type TestBody = http_body_util::combinators::BoxBody<Bytes, Infallible>;

/// What the test service saw: each request's method, target and body, in order.
#[derive(Default)]
struct Seen(Mutex<Vec<String>>);

impl Seen {
    fn all(&self) -> Vec<String> {
        self.0.lock().unwrap().clone()
    }
}

/// A plain listener whose service records each request and answers:
/// - `/refuse`: 401 without reading the body;
/// - `/stream`: 200 with a body of unknown length, two frames;
/// - anything else: 200 echoing the body it read, or 400 naming the body's error.
async fn start() -> (SocketAddr, Arc<Seen>) {
    let tcp = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = tcp.local_addr().unwrap();
    let limits = Limits {
        header_read_timeout: Duration::from_secs(3),
        body_read_timeout: Duration::from_secs(3),
        max_connections: 64,
        handshake_timeout: Duration::from_secs(3),
    };
    let listener = Listener::new(tcp, None, limits);
    let seen = Arc::new(Seen::default());
    let record = seen.clone();
    let make = move |_: Accepted| {
        let record = record.clone();
        service_fn(move |request: Request<RequestBody>| {
            let record = record.clone();
            async move {
                let (parts, body) = request.into_parts();
                let target = parts.uri.to_string();
                let mut entry = format!("{} {target}", parts.method);
                let response = match target.as_str() {
                    "/refuse" => {
                        let mut response = Response::new(full("refused"));
                        *response.status_mut() = StatusCode::UNAUTHORIZED;
                        response
                    }
                    "/stream" => Response::new(BodyExt::boxed(Unsized(vec!["two", "one "]))),
                    "/passed" | "/passed-unsized" => passed(&target, &parts.method),
                    _ => match body.collect().await {
                        Ok(collected) => {
                            let bytes = collected.to_bytes();
                            entry.push_str(&format!(" body={}", String::from_utf8_lossy(&bytes)));
                            Response::new(full(bytes))
                        }
                        Err(error) => {
                            entry.push_str(" body failed");
                            let mut response = Response::new(full(error.to_string()));
                            *response.status_mut() = StatusCode::BAD_REQUEST;
                            response
                        }
                    },
                };
                record.0.lock().unwrap().push(entry);
                Ok::<_, Infallible>(response)
            }
        })
    };
    tokio::spawn(listener.serve(make, std::future::pending(), None));
    (address, seen)
}

/// An answer whose fields come in wire form, as a proxy passes them on: with its
/// length declared (`/passed`), or not (`/passed-unsized`: two frames, and to `HEAD`
/// an empty body, as a proxy has nothing to stream).
fn passed(target: &str, method: &Method) -> Response<TestBody> {
    let mut fields = WireFields::default();
    fields.push(b"X-Passed", b"yes").unwrap();
    fields
        .push(b"Date", b"Tue, 01 Dec 2026 00:00:00 GMT")
        .unwrap();
    let mut response = if target == "/passed" {
        fields.set_length(Some(5));
        Response::new(full("hello"))
    } else if method == Method::HEAD {
        Response::new(full(""))
    } else {
        Response::new(BodyExt::boxed(Unsized(vec!["lo", "hel"])))
    };
    response.extensions_mut().insert(fields);
    response
}

fn full(bytes: impl Into<Bytes>) -> TestBody {
    Full::new(bytes.into()).boxed()
}

/// A body of these frames (taken from the end), whose length it does not say.
struct Unsized(Vec<&'static str>);

impl Body for Unsized {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        _: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        Poll::Ready(self.0.pop().map(|text| Ok(Frame::data(Bytes::from(text)))))
    }
}

/// Sends `bytes` on a new connection and reads until the listener closes it (at most
/// 5 s): everything it answered, and whether it closed.
async fn exchange(address: SocketAddr, bytes: &[u8]) -> (String, bool) {
    let mut stream = tokio::net::TcpStream::connect(address).await.unwrap();
    stream.write_all(bytes).await.unwrap();
    read_all(&mut stream).await
}

async fn read_all(stream: &mut tokio::net::TcpStream) -> (String, bool) {
    let mut received = Vec::new();
    let mut buf = [0u8; 8192];
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    loop {
        match tokio::time::timeout_at(deadline, stream.read(&mut buf)).await {
            Ok(Ok(0)) => return (String::from_utf8_lossy(&received).into_owned(), true),
            Ok(Ok(read)) => received.extend_from_slice(&buf[..read]),
            Ok(Err(_)) => return (String::from_utf8_lossy(&received).into_owned(), true),
            Err(_) => return (String::from_utf8_lossy(&received).into_owned(), false),
        }
    }
}

/// Sends `request` on a new connection and checks that the listener refused it with
/// `status` alone and closed the connection; gives what it answered.
async fn refused(address: SocketAddr, request: &str, status: u16) -> String {
    let (answer, closed) = exchange(address, request.as_bytes()).await;
    assert_eq!(statuses(&answer), [status], "{request:?}: {answer}");
    assert!(closed, "{request:?}: the connection stayed open");
    answer
}

fn statuses(answer: &str) -> Vec<u16> {
    answer
        .match_indices("HTTP/1.1 ")
        .filter_map(|(at, _)| answer.get(at + 9..at + 12)?.parse().ok())
        .collect()
}

const CLOSE: &str = "Connection: close\r\n";

#[tokio::test]
async fn a_kept_alive_connection_and_pipelined_requests_are_answered_in_order() {
    let (address, seen) = start().await;
    let requests = format!(
        "POST /a HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\nabc\
         GET /b HTTP/1.1\r\nHost: x\r\n\r\n\
         POST /c HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n{CLOSE}\r\n\
         2;ext=1\r\nde\r\n1\r\nf\r\n0\r\nx-trailer: t\r\n\r\n"
    );
    let (answer, closed) = exchange(address, requests.as_bytes()).await;
    assert_eq!(statuses(&answer), [200, 200, 200], "{answer}");
    assert!(closed);
    assert_eq!(
        seen.all(),
        ["POST /a body=abc", "GET /b body=", "POST /c body=def"]
    );
    // Each answer is framed by its length; only the last says it closes.
    assert_eq!(
        answer.matches("content-length: 3\r\n").count(),
        2,
        "{answer}"
    );
    assert_eq!(
        answer.matches("connection: close\r\n").count(),
        1,
        "{answer}"
    );
    assert!(answer.contains("\r\ndate: "), "{answer}");
}

#[tokio::test]
async fn a_length_given_two_ways_is_refused_and_nothing_behind_it_is_served() {
    let (address, seen) = start().await;
    // Content-Length says the "0" chunk is the whole body; chunked says the GET after
    // it is a second request. Either reading smuggles something.
    let smuggled = "GET /smuggled HTTP/1.1\r\nHost: x\r\n\r\n";
    for framing in [
        "Content-Length: 5\r\nTransfer-Encoding: chunked\r\n",
        "Transfer-Encoding: chunked\r\nContent-Length: 5\r\n",
        "Content-Length: 5\r\nTransfer-Encoding: identity, chunked\r\n",
    ] {
        let request = format!("POST /a HTTP/1.1\r\nHost: x\r\n{framing}\r\n0\r\n\r\n{smuggled}");
        let answer = refused(address, &request, 400).await;
        assert!(answer.contains("connection: close\r\n"), "{answer}");
    }
    assert!(seen.all().is_empty(), "{:?}", seen.all());
    // Control: chunked alone is read by its chunks, and the request after it served.
    let request = format!(
        "POST /a HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n\
         GET /next HTTP/1.1\r\nHost: x\r\n{CLOSE}\r\n"
    );
    let (answer, _) = exchange(address, request.as_bytes()).await;
    assert_eq!(statuses(&answer), [200, 200], "{answer}");
    assert_eq!(seen.all(), ["POST /a body=", "GET /next body="]);
}

#[tokio::test]
async fn every_transfer_coding_but_chunked_alone_is_refused() {
    let (address, seen) = start().await;
    let cases = [
        ("Transfer-Encoding: chunked, chunked\r\n", 400),
        (
            "Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n",
            400,
        ),
        ("Transfer-Encoding: chunked, identity\r\n", 400),
        ("Transfer-Encoding: gzip, chunked\r\n", 501),
        ("Transfer-Encoding: gzip\r\n", 501),
        ("Transfer-Encoding: xchunked\r\n", 501),
        ("Transfer-Encoding: chunked;q=1\r\n", 501),
        ("Transfer-Encoding: \"chunked\"\r\n", 501),
        ("Transfer-Encoding:\r\n", 501),
    ];
    for (framing, status) in cases {
        let request = format!("POST /a HTTP/1.1\r\nHost: x\r\n{framing}\r\n0\r\n\r\n");
        refused(address, &request, status).await;
    }
    // HTTP/1.0 has no transfer codings at all.
    let request = "POST /a HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n";
    let (answer, _) = exchange(address, request.as_bytes()).await;
    assert_eq!(statuses(&answer), [400], "{answer}");
    assert!(seen.all().is_empty(), "{:?}", seen.all());
    // Controls: any spelling of chunked alone.
    for framing in ["CHUNKED", " Chunked ", "chunked,"] {
        let request = format!(
            "POST /a HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: {framing}\r\n{CLOSE}\r\n1\r\nz\r\n0\r\n\r\n"
        );
        let (answer, _) = exchange(address, request.as_bytes()).await;
        assert_eq!(statuses(&answer), [200], "{framing}: {answer}");
    }
    assert_eq!(seen.all(), ["POST /a body=z"; 3]);
}

#[tokio::test]
async fn a_content_length_that_is_not_one_plain_number_is_refused() {
    let (address, seen) = start().await;
    for length in [
        "+3",
        "-3",
        "0x3",
        "3 3",
        "3.0",
        " ",
        "3,4",
        "",
        "99999999999999999999",
        "３",
    ] {
        let request = format!("POST /a HTTP/1.1\r\nHost: x\r\nContent-Length: {length}\r\n\r\nabc");
        refused(address, &request, 400).await;
    }
    let twice = "POST /a HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\nabcd";
    let (answer, _) = exchange(address, twice.as_bytes()).await;
    assert_eq!(statuses(&answer), [400], "{answer}");
    assert!(seen.all().is_empty(), "{:?}", seen.all());
    // Controls: one number, said once, or the same number said again.
    for framing in [
        "Content-Length: 3\r\n",
        "Content-Length: 003\r\n",
        "Content-Length: 3\r\nContent-Length: 3\r\n",
        "Content-Length: 3, 3\r\n",
    ] {
        let request = format!("POST /a HTTP/1.1\r\nHost: x\r\n{framing}{CLOSE}\r\nabc");
        let (answer, _) = exchange(address, request.as_bytes()).await;
        assert_eq!(statuses(&answer), [200], "{framing}: {answer}");
    }
    assert_eq!(seen.all(), ["POST /a body=abc"; 4]);
}

#[tokio::test]
async fn a_malformed_chunk_fails_the_body_and_closes_the_connection() {
    let (address, seen) = start().await;
    let after = "GET /smuggled HTTP/1.1\r\nHost: x\r\n\r\n";
    for chunks in [
        "x\r\nabc\r\n0\r\n\r\n",
        "3\nabc\r\n0\r\n\r\n",
        "3\r\nabcd\r\n0\r\n\r\n",
        "3 x\r\nabc\r\n0\r\n\r\n",
        "-3\r\nabc\r\n0\r\n\r\n",
        "ffffffffffffffffff\r\nabc\r\n0\r\n\r\n",
        "3;a=\rb\r\nabc\r\n0\r\n\r\n",
    ] {
        let request = format!(
            "POST /a HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n{chunks}{after}"
        );
        let answer = refused(address, &request, 400).await;
        assert!(answer.contains("malformed request body"), "{answer}");
        assert!(answer.contains("connection: close\r\n"), "{answer}");
    }
    assert!(
        seen.all()
            .iter()
            .all(|entry| entry == "POST /a body failed"),
        "{:?}",
        seen.all()
    );
}

#[tokio::test]
async fn a_head_that_does_not_parse_is_a_400_and_reaches_no_application() {
    let (address, seen) = start().await;
    for request in [
        "GET /a HTTP/1.1\r\nHost: x\r\nX-Folded: a\r\n b\r\n\r\n",
        "GET /a HTTP/1.1\r\nHost : x\r\n\r\n",
        "GET /a HTTP/1.1\r\nHost: x\r\nX-A: a\0b\r\n\r\n",
        "GET /a HTTP/1.1\r\nHost: x\rX-A: b\r\n\r\n",
        "GET /a b HTTP/1.1\r\nHost: x\r\n\r\n",
        "GET /a HTTP/1.2\r\nHost: x\r\n\r\n",
        "GET /a HTTP/2.0\r\nHost: x\r\n\r\n",
        "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n",
        "G(T /a HTTP/1.1\r\nHost: x\r\n\r\n",
        "GET /a\x7f HTTP/1.1\r\nHost: x\r\n\r\n",
        "GET http://[::1 HTTP/1.1\r\nHost: x\r\n\r\n",
    ] {
        refused(address, request, 400).await;
    }
    assert!(seen.all().is_empty(), "{:?}", seen.all());
    // Control: the same requests, well formed.
    let request = format!("GET /a HTTP/1.1\r\nHost: x\r\nX-A: a b\r\n{CLOSE}\r\n");
    let (answer, _) = exchange(address, request.as_bytes()).await;
    assert_eq!(statuses(&answer), [200], "{answer}");
}

#[tokio::test]
async fn a_head_over_its_limits_is_a_431() {
    let (address, seen) = start().await;
    let huge = format!(
        "GET /a HTTP/1.1\r\nHost: x\r\nX-Big: {}\r\n\r\n",
        "a".repeat(MAX_HEAD)
    );
    let (answer, closed) = exchange(address, huge.as_bytes()).await;
    assert_eq!(statuses(&answer), [431], "{answer}");
    assert!(closed);
    let many: String = (0..MAX_FIELDS).map(|n| format!("X-{n}: v\r\n")).collect();
    let crowded = format!("GET /a HTTP/1.1\r\nHost: x\r\n{many}\r\n");
    let (answer, _) = exchange(address, crowded.as_bytes()).await;
    assert_eq!(statuses(&answer), [431], "{answer}");
    assert!(seen.all().is_empty());
    // Controls: half the size, and the most fields allowed.
    let half = format!(
        "GET /a HTTP/1.1\r\nHost: x\r\n{CLOSE}X-Big: {}\r\n\r\n",
        "a".repeat(MAX_HEAD / 2)
    );
    let (answer, _) = exchange(address, half.as_bytes()).await;
    assert_eq!(statuses(&answer), [200], "{answer}");
    let most: String = (2..MAX_FIELDS).map(|n| format!("X-{n}: v\r\n")).collect();
    let full_head = format!("GET /a HTTP/1.1\r\nHost: x\r\n{CLOSE}{most}\r\n");
    let (answer, _) = exchange(address, full_head.as_bytes()).await;
    assert_eq!(statuses(&answer), [200], "{answer}");
}

#[tokio::test]
async fn http_1_0_is_closed_unless_it_asks_to_be_kept() {
    let (address, _) = start().await;
    let (answer, closed) =
        exchange(address, b"GET /a HTTP/1.0\r\n\r\nGET /b HTTP/1.0\r\n\r\n").await;
    assert_eq!(statuses(&answer), [200], "{answer}");
    assert!(closed);
    let kept = "GET /a HTTP/1.0\r\nConnection: keep-alive\r\n\r\nGET /b HTTP/1.0\r\n\r\n";
    let (answer, closed) = exchange(address, kept.as_bytes()).await;
    assert_eq!(statuses(&answer), [200, 200], "{answer}");
    assert_eq!(
        answer.matches("connection: keep-alive\r\n").count(),
        1,
        "{answer}"
    );
    assert!(closed);
    // A body of unknown length goes to an HTTP/1.0 client until the close.
    let (answer, closed) = exchange(address, b"GET /stream HTTP/1.0\r\n\r\n").await;
    assert!(answer.ends_with("\r\n\r\none two"), "{answer}");
    assert!(!answer.contains("transfer-encoding"), "{answer}");
    assert!(closed);
    // Control: to HTTP/1.1, chunked, and the connection kept.
    let request =
        format!("GET /stream HTTP/1.1\r\nHost: x\r\n\r\nGET /b HTTP/1.1\r\nHost: x\r\n{CLOSE}\r\n");
    let (answer, _) = exchange(address, request.as_bytes()).await;
    assert!(
        answer.contains("transfer-encoding: chunked\r\n"),
        "{answer}"
    );
    assert!(
        answer.contains("\r\n\r\n4\r\none \r\n3\r\ntwo\r\n0\r\n\r\n"),
        "{answer}"
    );
    assert_eq!(statuses(&answer), [200, 200], "{answer}");
}

#[tokio::test]
async fn head_has_no_body_but_keeps_its_length() {
    let (address, _) = start().await;
    let request =
        format!("HEAD /a HTTP/1.1\r\nHost: x\r\n\r\nGET /b HTTP/1.1\r\nHost: x\r\n{CLOSE}\r\n");
    let (answer, _) = exchange(address, request.as_bytes()).await;
    assert_eq!(statuses(&answer), [200, 200], "{answer}");
    let (first, _) = answer.split_once("\r\n\r\n").unwrap();
    assert!(first.contains("content-length: 0"), "{answer}");
}

#[tokio::test]
async fn expect_100_continue_is_answered_only_when_the_body_is_read() {
    let (address, seen) = start().await;
    // Read by the application: 100 first, then the body is sent and echoed.
    let mut stream = tokio::net::TcpStream::connect(address).await.unwrap();
    stream
        .write_all(
            b"POST /a HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nExpect: 100-continue\r\n\r\n",
        )
        .await
        .unwrap();
    let mut interim = [0u8; 25];
    tokio::time::timeout(Duration::from_secs(5), stream.read_exact(&mut interim))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(&interim, b"HTTP/1.1 100 Continue\r\n\r\n");
    stream.write_all(b"abc").await.unwrap();
    stream
        .write_all(b"GET /b HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let (answer, _) = read_all(&mut stream).await;
    assert_eq!(statuses(&answer), [200, 200], "{answer}");
    assert!(
        answer.ends_with("abc") || answer.contains("abcHTTP/1.1 200"),
        "{answer}"
    );
    // Refused unread: no 100, the refusal, and the connection closed.
    let refused =
        "POST /refuse HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nExpect: 100-continue\r\n\r\n";
    let (answer, closed) = exchange(address, refused.as_bytes()).await;
    assert_eq!(statuses(&answer), [401], "{answer}");
    assert!(answer.contains("connection: close\r\n"), "{answer}");
    assert!(closed);
    assert_eq!(
        seen.all(),
        ["POST /a body=abc", "GET /b body=", "POST /refuse"]
    );
}

#[tokio::test]
async fn an_answer_to_an_unread_body_reaches_the_client_and_closes_the_connection() {
    let (address, seen) = start().await;
    // The body, and a request hidden in it, are never read as requests.
    let body = format!(
        "{}GET /hidden HTTP/1.1\r\nHost: x\r\n\r\n",
        "a".repeat(200_000)
    );
    let request = format!(
        "POST /refuse HTTP/1.1\r\nHost: x\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    let (answer, closed) = exchange(address, request.as_bytes()).await;
    assert_eq!(statuses(&answer), [401], "{answer}");
    assert!(answer.ends_with("refused"), "{answer}");
    assert!(closed);
    assert_eq!(seen.all(), ["POST /refuse"]);
}

#[tokio::test]
async fn a_body_cut_short_fails_and_the_connection_closes() {
    let (address, seen) = start().await;
    let mut stream = tokio::net::TcpStream::connect(address).await.unwrap();
    stream
        .write_all(b"POST /a HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\nabc")
        .await
        .unwrap();
    stream.shutdown().await.unwrap();
    let (answer, closed) = read_all(&mut stream).await;
    assert_eq!(statuses(&answer), [400], "{answer}");
    assert!(closed);
    assert_eq!(seen.all(), ["POST /a body failed"]);
}

#[tokio::test]
async fn a_request_names_its_host_once_and_as_a_host() {
    let (address, seen) = start().await;
    for request in [
        "GET /a HTTP/1.1\r\n\r\n",
        "GET /a HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n",
        "GET /a HTTP/1.1\r\nHost: a, b\r\n\r\n",
        "GET /a HTTP/1.1\r\nHost: user@a\r\n\r\n",
        "GET /a HTTP/1.1\r\nHost: a/b\r\n\r\n",
        "GET /a HTTP/1.1\r\nHost: a:port\r\n\r\n",
        "GET /a HTTP/1.0\r\nHost: a\r\nHost: a\r\n\r\n",
    ] {
        refused(address, request, 400).await;
    }
    assert!(seen.all().is_empty(), "{:?}", seen.all());
    // Controls: a name, a name and port, an address, empty; none at all over HTTP/1.0.
    for host in ["a", "a.example:8443", "127.0.0.1:1", "[::1]:2", ""] {
        let request = format!("GET /a HTTP/1.1\r\nHost: {host}\r\n{CLOSE}\r\n");
        let (answer, _) = exchange(address, request.as_bytes()).await;
        assert_eq!(statuses(&answer), [200], "{host:?}: {answer}");
    }
    let (answer, _) = exchange(address, b"GET /a HTTP/1.0\r\n\r\n").await;
    assert_eq!(statuses(&answer), [200], "{answer}");
}

#[tokio::test]
async fn a_refusal_names_the_rule_it_broke() {
    let (address, _) = start().await;
    for (request, reason) in [
        (
            "GET /a HTTP/1.1\r\nHost: x\r\nX-Folded: a\r\n b\r\n\r\n",
            "a header field name is invalid",
        ),
        (
            "GET /a HTTP/1.1\r\nHost: x\r\nX-A: a\0b\r\n\r\n",
            "a header field value is invalid",
        ),
        (
            "GET /a HTTP/1.2\r\nHost: x\r\n\r\n",
            "the version is not HTTP/1.0 or HTTP/1.1",
        ),
        (
            "G(T /a HTTP/1.1\r\nHost: x\r\n\r\n",
            "the method or the target is invalid",
        ),
        (
            "POST /a HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip, chunked\r\n\r\n",
            "a transfer coding other than chunked alone",
        ),
        (
            "POST /a HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n",
            "both Content-Length and Transfer-Encoding are given",
        ),
    ] {
        let (answer, _) = exchange(address, request.as_bytes()).await;
        assert!(answer.contains("content-type: text/plain"), "{answer}");
        assert!(
            answer.ends_with(&format!("\r\n\r\n{reason}\n")),
            "{request:?}: {answer}"
        );
    }
}

#[tokio::test]
async fn fields_passed_through_are_written_as_given_and_the_listener_frames_the_answer() {
    let (address, _) = start().await;
    let ask = |method: &str, target: &str| {
        format!("{method} {target} HTTP/1.1\r\nHost: x\r\n{CLOSE}\r\n").into_bytes()
    };
    let lines = |answer: &str| -> Vec<String> {
        let (head, _) = answer.split_once("\r\n\r\n").unwrap();
        head.lines()
            .skip(1)
            .map(|line| line.to_ascii_lowercase())
            .collect()
    };
    for (method, target, framing, body) in [
        ("GET", "/passed", Some("content-length: 5"), "hello"),
        ("HEAD", "/passed", Some("content-length: 5"), ""),
        (
            "GET",
            "/passed-unsized",
            Some("transfer-encoding: chunked"),
            "3\r\nhel\r\n2\r\nlo\r\n0\r\n\r\n",
        ),
        // Control for the attack on HEAD: a passed answer's empty body is not its length.
        ("HEAD", "/passed-unsized", None, ""),
    ] {
        let (answer, closed) = exchange(address, &ask(method, target)).await;
        assert!(
            closed && answer.starts_with("HTTP/1.1 200 OK\r\n"),
            "{answer}"
        );
        assert!(
            answer.contains("\r\nX-Passed: yes\r\n"),
            "as given: {answer}"
        );
        let lines = lines(&answer);
        let dates = lines
            .iter()
            .filter(|line| line.starts_with("date:"))
            .count();
        assert_eq!(dates, 1, "the passed Date only: {answer}");
        let framed: Vec<_> = lines
            .iter()
            .filter(|line| {
                line.starts_with("content-length:") || line.starts_with("transfer-encoding:")
            })
            .map(String::as_str)
            .collect();
        assert_eq!(
            framed,
            framing.into_iter().collect::<Vec<_>>(),
            "{method} {target}: {answer}"
        );
        assert!(
            answer.ends_with(&format!("\r\n\r\n{body}")),
            "{method} {target}: {answer}"
        );
    }
}
