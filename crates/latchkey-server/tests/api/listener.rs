//! The listener against slow clients: a stalled request head or body closes the
//! connection, an idle kept-alive connection is closed, a capped listener makes extra
//! clients wait, and none of it cuts a revocation stream or a slow request that keeps
//! arriving. Raw TCP, since an HTTP client would not stall on purpose.

use crate::both_backends_with;
use crate::helpers::{TestApp, basic, encode};
use latchkey_server::{Application, Config};
use serde_json::{Value, json};
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Long enough for any closing to be seen on a loaded machine; the tests assert that a
/// connection is closed, not how fast.
const PATIENCE: Duration = Duration::from_secs(10);

fn one_second_timeouts(config: &mut Config) {
    config.header_read_timeout_seconds = 1;
    config.body_read_timeout_seconds = 1;
    config.revocation_heartbeat_seconds = 1;
}

fn two_connections(config: &mut Config) {
    config.max_connections = 2;
}

both_backends_with!(one_second_timeouts;
    a_stalled_request_head_is_closed_in_every_form,
    an_idle_kept_alive_connection_is_closed_after_the_head_timeout,
    a_request_head_sent_slowly_but_within_the_timeout_is_served,
    a_stalled_body_to_the_token_endpoint_is_answered_408_and_closed,
    a_stalled_json_body_is_answered_408_problem_and_nothing_is_created,
    a_slow_body_that_keeps_arriving_is_not_cut,
    a_revocation_stream_outlives_both_timeouts,
);

both_backends_with!(two_connections;
    a_connection_beyond_max_connections_waits_until_one_closes,
);

/// How a raw connection ended up.
#[derive(Debug)]
struct Outcome {
    /// Everything the server sent.
    text: String,
    /// The server closed the connection (EOF or reset).
    closed: bool,
    /// When it did, from the start of the read.
    after: Duration,
}

/// Reads until the server closes the connection or `patience` runs out.
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

/// Reads one whole response with a `Content-Length` and returns it, or `None` when
/// nothing complete came within `patience`.
async fn read_response(stream: &mut TcpStream, patience: Duration) -> Option<String> {
    let deadline = Instant::now() + patience;
    let mut received = Vec::new();
    let mut buffer = [0_u8; 4096];
    loop {
        let text = String::from_utf8_lossy(&received).into_owned();
        if let Some((head, body)) = text.split_once("\r\n\r\n") {
            let length = head
                .lines()
                .find_map(|line| {
                    let (name, value) = line.split_once(':')?;
                    name.eq_ignore_ascii_case("content-length")
                        .then(|| value.trim().parse::<usize>().ok())?
                })
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

async fn connect(app: &TestApp) -> TcpStream {
    let address = app.base.trim_start_matches("http://");
    TcpStream::connect(address).await.unwrap()
}

/// The JSON body of a raw response.
fn body_of(response: &str) -> Value {
    let (_, body) = response.split_once("\r\n\r\n").unwrap();
    serde_json::from_str(body).unwrap_or_else(|e| panic!("{e}: {response}"))
}

fn header_of<'a>(response: &'a str, name: &str) -> Option<&'a str> {
    let (head, _) = response.split_once("\r\n\r\n")?;
    head.lines().find_map(|line| {
        let (key, value) = line.split_once(':')?;
        key.eq_ignore_ascii_case(name).then_some(value.trim())
    })
}

async fn a_stalled_request_head_is_closed_in_every_form(app: TestApp) {
    let host = app.base.trim_start_matches("http://").to_owned();
    let attacks: Vec<(&str, Vec<String>)> = vec![
        ("nothing at all", vec![]),
        ("half a request line", vec!["POST /oauth/to".to_owned()]),
        (
            "headers without the blank line",
            vec![format!(
                "POST /oauth/token HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/x-www-form-urlencoded\r\n"
            )],
        ),
        (
            // Slowloris: bytes keep coming, the head never ends.
            "a header dripped a byte at a time",
            std::iter::once(format!("GET /healthz HTTP/1.1\r\nHost: {host}\r\nX-Drip: "))
                .chain((0..40).map(|_| "a".to_owned()))
                .collect(),
        ),
    ];
    let runs = attacks.into_iter().map(|(name, pieces)| {
        let app = &app;
        async move {
            let mut stream = connect(app).await;
            let start = Instant::now();
            let drip = async {
                for piece in pieces {
                    if stream.write_all(piece.as_bytes()).await.is_err() {
                        return;
                    }
                    tokio::time::sleep(Duration::from_millis(150)).await;
                }
            };
            // The drip stops early when the server closes; either way read what is left.
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
    futures_util::future::join_all(runs).await;
}

async fn an_idle_kept_alive_connection_is_closed_after_the_head_timeout(app: TestApp) {
    let host = app.base.trim_start_matches("http://").to_owned();
    let mut stream = connect(&app).await;
    stream
        .write_all(format!("GET /healthz HTTP/1.1\r\nHost: {host}\r\n\r\n").as_bytes())
        .await
        .unwrap();
    let first = read_response(&mut stream, PATIENCE).await.expect("served");
    assert!(first.starts_with("HTTP/1.1 200"), "{first}");
    assert_ne!(header_of(&first, "connection"), Some("close"));
    let outcome = read_until_closed(&mut stream, PATIENCE).await;
    assert!(outcome.closed, "an idle connection stayed open");
    assert!(outcome.text.is_empty(), "{}", outcome.text);
    assert!(outcome.after >= Duration::from_millis(900), "{outcome:?}");
}

async fn a_request_head_sent_slowly_but_within_the_timeout_is_served(app: TestApp) {
    let host = app.base.trim_start_matches("http://").to_owned();
    let mut stream = connect(&app).await;
    for piece in [
        "GET /healthz HTTP/1.1\r\n".to_owned(),
        format!("Host: {host}\r\n"),
        "\r\n".to_owned(),
    ] {
        stream.write_all(piece.as_bytes()).await.unwrap();
        tokio::time::sleep(Duration::from_millis(150)).await;
    }
    let response = read_response(&mut stream, PATIENCE).await.expect("served");
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");
}

/// A client of tenant `acme`, for exchanges.
async fn acme_client(app: &TestApp) -> (String, String) {
    app.seed_catalogue().await;
    app.create_tenant("acme").await;
    app.client("acme", json!({ "roles": ["editor"] })).await
}

fn token_request_head(host: &str, id: &str, secret: &str, framing: &str) -> String {
    format!(
        "POST /oauth/token HTTP/1.1\r\nHost: {host}\r\nAuthorization: {}\r\nContent-Type: application/x-www-form-urlencoded\r\n{framing}\r\n",
        basic(id, secret)
    )
}

async fn a_stalled_body_to_the_token_endpoint_is_answered_408_and_closed(app: TestApp) {
    let (id, secret) = acme_client(&app).await;
    let host = app.base.trim_start_matches("http://").to_owned();
    let form = "grant_type=client_credentials";
    let attacks = [
        (
            "a length longer than what is sent",
            format!("Content-Length: {}\r\n", form.len() + 20),
            form.to_owned(),
        ),
        (
            "a chunk that never ends",
            "Transfer-Encoding: chunked\r\n".to_owned(),
            format!("{:x}\r\n{form}", form.len() + 20),
        ),
        (
            "a length and no body at all",
            format!("Content-Length: {}\r\n", form.len()),
            String::new(),
        ),
    ];
    for (name, framing, sent) in attacks {
        let mut stream = connect(&app).await;
        let head = token_request_head(&host, &id, &secret, &framing);
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
        assert_eq!(
            header_of(&outcome.text, "content-type"),
            Some("application/json")
        );
        let body = body_of(&outcome.text);
        assert_eq!(body["error"], "invalid_request", "{name}");
        assert_eq!(
            body["error_description"],
            "the request body sent nothing for 1 s"
        );
        assert!(outcome.after >= Duration::from_millis(900), "{outcome:?}");
    }
    // None of them got a token; the client still works.
    app.exchange(&id, &secret, &[]).await.assert_status(200);
    let exchanged = app.wait_for_audit("action=token.exchanged", 1).await;
    assert_eq!(exchanged.len(), 1);
}

async fn a_stalled_json_body_is_answered_408_problem_and_nothing_is_created(app: TestApp) {
    let host = app.base.trim_start_matches("http://").to_owned();
    // The system tenant's creation is audited at the first start.
    let created_before = app.audit_count("tenant.created").await;
    let body = json!({ "id": "slowco", "name": "Slow Co" }).to_string();
    let mut stream = connect(&app).await;
    let head = format!(
        "POST /v1/tenants HTTP/1.1\r\nHost: {host}\r\nAuthorization: Bearer {}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
        app.root_key,
        body.len()
    );
    stream.write_all(head.as_bytes()).await.unwrap();
    stream
        .write_all(&body.as_bytes()[..body.len() / 2])
        .await
        .unwrap();
    let outcome = read_until_closed(&mut stream, PATIENCE).await;
    assert!(outcome.closed, "still open");
    assert!(outcome.text.starts_with("HTTP/1.1 408"), "{}", outcome.text);
    assert_eq!(
        header_of(&outcome.text, "content-type"),
        Some("application/problem+json")
    );
    assert_eq!(header_of(&outcome.text, "connection"), Some("close"));
    let problem = body_of(&outcome.text);
    assert_eq!(problem["type"], "urn:latchkey:problem:request-timeout");
    assert_eq!(problem["status"], 408);
    assert_eq!(problem["title"], "Request timeout");
    assert!(problem["detail"].is_string());

    app.get("/v1/tenants/slowco")
        .await
        .assert_problem(404, "not-found");
    assert_eq!(app.audit_count("tenant.created").await, created_before);
    // The same request, sent whole, works.
    app.post("/v1/tenants", serde_json::from_str(&body).unwrap())
        .await
        .assert_status(201);
}

async fn a_slow_body_that_keeps_arriving_is_not_cut(app: TestApp) {
    let (id, secret) = acme_client(&app).await;
    let host = app.base.trim_start_matches("http://").to_owned();
    let form = format!(
        "grant_type=client_credentials&scope={}",
        encode("reports:read")
    );
    let mut stream = connect(&app).await;
    let framing = format!("Content-Length: {}\r\n", form.len());
    let head = token_request_head(&host, &id, &secret, &framing);
    stream.write_all(head.as_bytes()).await.unwrap();
    let start = Instant::now();
    // Each piece comes well within the 1 s body timeout; all of them take longer than it.
    for piece in form.as_bytes().chunks(form.len().div_ceil(6)) {
        stream.write_all(piece).await.unwrap();
        tokio::time::sleep(Duration::from_millis(350)).await;
    }
    assert!(start.elapsed() > Duration::from_secs(1));
    let response = read_response(&mut stream, PATIENCE).await.expect("served");
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");
    assert_eq!(body_of(&response)["scope"], "reports:read");
}

async fn a_revocation_stream_outlives_both_timeouts(app: TestApp) {
    let response = reqwest::Client::new()
        .get(format!("{}/v1/revocations/stream", app.base))
        .bearer_auth(&app.root_key)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let mut response = response;
    let start = Instant::now();
    let mut received = String::new();
    // Heartbeats come every second; read well past both 1 s timeouts.
    while start.elapsed() < Duration::from_millis(3500) {
        let chunk = tokio::time::timeout(PATIENCE, response.chunk())
            .await
            .expect("the stream went silent")
            .expect("the stream failed")
            .expect("the stream was closed");
        received.push_str(&String::from_utf8_lossy(&chunk));
    }
    let heartbeats = received.matches("event: heartbeat").count();
    assert!(heartbeats >= 3, "{heartbeats} heartbeats: {received}");
}

async fn a_connection_beyond_max_connections_waits_until_one_closes(app: TestApp) {
    let host = app.base.trim_start_matches("http://").to_owned();
    let request = format!("GET /healthz HTTP/1.1\r\nHost: {host}\r\n\r\n");
    let mut held = Vec::new();
    for _ in 0..2 {
        let mut stream = connect(&app).await;
        stream.write_all(request.as_bytes()).await.unwrap();
        let response = read_response(&mut stream, PATIENCE).await.expect("served");
        assert!(response.starts_with("HTTP/1.1 200"), "{response}");
        held.push(stream);
    }
    // The kernel completes the handshake; the server does not take the connection.
    let mut third = connect(&app).await;
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
}

#[tokio::test]
async fn a_zero_or_absurd_listener_limit_stops_the_start_naming_the_key() {
    for (configure, key) in [
        (
            (|c: &mut Config| c.header_read_timeout_seconds = 0) as fn(&mut Config),
            "header_read_timeout_seconds",
        ),
        (
            |c| c.body_read_timeout_seconds = 0,
            "body_read_timeout_seconds",
        ),
        (
            |c| c.body_read_timeout_seconds = 1_000_000,
            "body_read_timeout_seconds",
        ),
        (|c| c.max_connections = 0, "max_connections"),
    ] {
        let dir = tempfile::tempdir().unwrap();
        let mut config = Config {
            listen: "127.0.0.1:0".parse().unwrap(),
            data_dir: dir.path().join("data"),
            ..Config::default()
        };
        configure(&mut config);
        let error = match Application::build(config).await {
            Ok(_) => panic!("{key}: started"),
            Err(error) => error.to_string(),
        };
        assert!(error.starts_with(key), "{key}: {error}");
        // Refused before anything was created.
        assert!(!dir.path().join("data").exists(), "{key}");
    }
}
