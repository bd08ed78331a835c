//! The listener's limits, seen from a client: TLS handshakes timed, HTTP/2 connections
//! closed when idle but not while a response streams, the header list bounded, and
//! certificates reloaded when their files change.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use super::*;
use crate::test_pki::{TestCa, Use};
use http_body_util::{BodyExt, Empty};
use hyper::body::Bytes;
use rustls::pki_types::ServerName;
use rustls::pki_types::pem::PemObject;
use std::path::Path;
use std::sync::atomic::AtomicUsize;
use tokio::io::AsyncReadExt;
use tokio_rustls::TlsConnector;

/// Long enough that nothing here waits for it unless it is the point of the test.
const GENEROUS: Duration = Duration::from_secs(20);

fn limits(idle: Duration) -> Limits {
    Limits {
        header_read_timeout: idle,
        body_read_timeout: Duration::from_secs(5),
        max_connections: 64,
        handshake_timeout: Duration::from_millis(300),
    }
}

type TestBody = http_body_util::combinators::BoxBody<Bytes, Infallible>;

/// A TLS listener on loopback whose service answers `/slow` with a body that sends its
/// second frame after `idle` × 3, and everything else with `ok`.
async fn start(ca: &TestCa, idle: Duration) -> (SocketAddr, ServerTls, Arc<AtomicUsize>) {
    let leaf = ca.issue("server", &["localhost", "127.0.0.1"], Use::Server);
    let tls = ServerTls::load(
        TlsFiles {
            cert: leaf.cert_file,
            key: leaf.key_file,
            client_ca: None,
        },
        Protocols::Http2AndHttp1,
    )
    .unwrap();
    let tcp = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = tcp.local_addr().unwrap();
    let listener = Listener::new(tcp, Some(tls.clone()), limits(idle));
    let served = Arc::new(AtomicUsize::new(0));
    let counter = served.clone();
    let make = move |_: Accepted| {
        let counter = counter.clone();
        service_fn(move |request: Request<RequestBody>| {
            counter.fetch_add(1, Ordering::Relaxed);
            async move {
                let body: TestBody = if request.uri().path() == "/slow" {
                    paused_body(idle * 3).boxed()
                } else {
                    http_body_util::Full::new(Bytes::from_static(b"ok")).boxed()
                };
                Ok::<_, Infallible>(Response::new(body))
            }
        })
    };
    tokio::spawn(listener.serve(make, std::future::pending(), None));
    (address, tls, served)
}

/// Two frames, the second after `pause`.
fn paused_body(
    pause: Duration,
) -> impl hyper::body::Body<Data = Bytes, Error = Infallible> + Send + Unpin + 'static {
    let (sender, receiver) = tokio::sync::mpsc::channel::<Result<Frame<Bytes>, Infallible>>(2);
    tokio::spawn(async move {
        let _ = sender
            .send(Ok(Frame::data(Bytes::from_static(b"first "))))
            .await;
        tokio::time::sleep(pause).await;
        let _ = sender
            .send(Ok(Frame::data(Bytes::from_static(b"second"))))
            .await;
    });
    ChannelBody(receiver)
}

struct ChannelBody(tokio::sync::mpsc::Receiver<Result<Frame<Bytes>, Infallible>>);

impl hyper::body::Body for ChannelBody {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        self.0.poll_recv(cx)
    }
}

fn connector(ca: &Path, alpn: &[u8]) -> TlsConnector {
    let mut roots = rustls::RootCertStore::empty();
    for cert in rustls::pki_types::CertificateDer::pem_file_iter(ca).unwrap() {
        roots.add(cert.unwrap()).unwrap();
    }
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = vec![alpn.to_vec()];
    TlsConnector::from(Arc::new(config))
}

/// An HTTP/2 connection to `address`: the request sender and the connection's task.
async fn h2(
    ca: &TestCa,
    address: SocketAddr,
) -> (
    hyper::client::conn::http2::SendRequest<Empty<Bytes>>,
    tokio::task::JoinHandle<Result<(), hyper::Error>>,
) {
    let tcp = TcpStream::connect(address).await.unwrap();
    let name = ServerName::try_from("localhost").unwrap();
    let stream = connector(&ca.pem_file, b"h2")
        .connect(name, tcp)
        .await
        .unwrap();
    assert_eq!(stream.get_ref().1.alpn_protocol(), Some(&b"h2"[..]));
    let (sender, connection) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(stream))
            .await
            .unwrap();
    (sender, tokio::spawn(connection))
}

fn get(path: &str) -> Request<Empty<Bytes>> {
    Request::builder()
        .uri(format!("https://localhost{path}"))
        .body(Empty::new())
        .unwrap()
}

#[tokio::test]
async fn a_client_that_never_finishes_its_handshake_is_disconnected() {
    let ca = TestCa::new("handshake");
    let (address, _tls, _) = start(&ca, Duration::from_secs(5)).await;
    // Attack: connect and say nothing. The server closes after the handshake timeout.
    let mut silent = TcpStream::connect(address).await.unwrap();
    let mut buffer = [0u8; 64];
    let read = tokio::time::timeout(GENEROUS, silent.read(&mut buffer))
        .await
        .expect("closed by the server");
    assert!(matches!(read, Ok(0) | Err(_)), "{read:?}");
    // Control: a real client is served.
    let (mut sender, _connection) = h2(&ca, address).await;
    let response = sender.send_request(get("/")).await.unwrap();
    assert_eq!(response.status(), 200);
}

#[tokio::test]
async fn an_idle_http2_connection_is_closed_but_a_streaming_response_is_not_cut() {
    let ca = TestCa::new("idle");
    let idle = Duration::from_millis(300);
    let (address, _tls, _) = start(&ca, idle).await;

    // Control: a response whose body pauses for three idle periods arrives whole.
    let (mut sender, connection) = h2(&ca, address).await;
    let response = sender.send_request(get("/slow")).await.unwrap();
    let body = response.into_body().collect().await.unwrap().to_bytes();
    assert_eq!(&body[..], b"first second");

    // Then nothing is in flight: the server ends the connection (GOAWAY), which the
    // client's connection task sees as a clean end.
    let ended = tokio::time::timeout(GENEROUS, connection)
        .await
        .expect("the idle connection was closed");
    assert!(ended.unwrap().is_ok());
}

#[tokio::test]
async fn an_http2_header_list_over_the_limit_is_refused() {
    let ca = TestCa::new("headers");
    let (address, _tls, served) = start(&ca, Duration::from_secs(5)).await;
    let (mut sender, _connection) = h2(&ca, address).await;
    let with_header = |bytes: usize| {
        let mut request = get("/");
        let value = hyper::header::HeaderValue::from_str(&"a".repeat(bytes)).unwrap();
        request.headers_mut().insert("x-filler", value);
        request
    };
    // Control: 8 KiB of headers pass.
    let response = sender.send_request(with_header(8 * 1024)).await.unwrap();
    assert_eq!(response.status(), 200);
    // Attack: more than the advertised 32 KiB never reaches the service.
    let (mut sender, _connection) = h2(&ca, address).await;
    let refused = sender
        .send_request(with_header(H2_MAX_HEADER_LIST_SIZE as usize + 1))
        .await;
    // hyper answers 431 itself, or the client, told the limit in SETTINGS, does not
    // send it at all; either way the service never sees it.
    if let Ok(response) = &refused {
        assert_eq!(response.status(), 431);
    }
    assert_eq!(
        served.load(Ordering::Relaxed),
        1,
        "only the control was served"
    );
}

#[tokio::test]
async fn a_certificate_changed_on_disk_is_served_without_a_restart() {
    let ca = TestCa::new("watch");
    let (_address, tls, _) = start(&ca, Duration::from_secs(5)).await;
    let before = tls.current_certificate().unwrap();
    let watcher = tls.watch(Duration::from_millis(50));
    // Renewal tools write new files in place.
    let renewed = ca.issue("renewed", &["localhost"], Use::Server);
    std::fs::copy(&renewed.key_file, ca.dir().join("server.key")).unwrap();
    std::fs::copy(&renewed.cert_file, ca.dir().join("server.pem")).unwrap();
    let deadline = tokio::time::Instant::now() + GENEROUS;
    while tls.current_certificate().unwrap() == before {
        assert!(tokio::time::Instant::now() < deadline, "never reloaded");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(
        tls.current_certificate().unwrap().as_ref(),
        &renewed.der[..]
    );
    watcher.abort();
}

#[test]
fn a_key_that_does_not_match_its_certificate_is_refused_naming_the_setting() {
    let ca = TestCa::new("mismatch");
    let one = ca.issue("one", &["localhost"], Use::Server);
    let two = ca.issue("two", &["localhost"], Use::Server);
    let error = ServerTls::load(
        TlsFiles {
            cert: one.cert_file.clone(),
            key: two.key_file,
            client_ca: None,
        },
        Protocols::Http1,
    )
    .unwrap_err();
    assert_eq!(error.setting, "tls_key_file");
    assert!(error.reason.contains("does not match"), "{error}");
    let missing = ServerTls::load(
        TlsFiles {
            cert: ca.dir().join("missing.pem"),
            key: one.key_file,
            client_ca: None,
        },
        Protocols::Http1,
    )
    .unwrap_err();
    assert_eq!(missing.setting, "tls_cert_file");
    assert!(missing.to_string().contains("missing.pem"), "{missing}");
}
