//! https upstreams: a route trusting a private CA through its `tls_ca_file`, the
//! certificates that must be refused (unknown CA, another host, expired) and how they
//! are logged, the configuration mistakes around `tls_ca_file`, reloads, and which
//! routes share a connection pool.

use crate::support::{FakeServer, FakeUpstream, TestGateway};
use hyper::StatusCode;
use latchkey_gateway::{ConfigError, GatewayConfig};
use latchkey_listener::test_pki::{TestCa, Use};
use std::io;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::TlsAcceptor;
use tokio_rustls::server::TlsStream;

/// A TLS listener for `axum::serve` that counts completed handshakes; a handshake the
/// client gives up on is dropped and the next connection accepted.
struct TlsListener {
    tcp: TcpListener,
    acceptor: TlsAcceptor,
    handshakes: Arc<AtomicUsize>,
}

impl axum::serve::Listener for TlsListener {
    type Io = TlsStream<TcpStream>;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        loop {
            let Ok((tcp, peer)) = self.tcp.accept().await else {
                continue;
            };
            if let Ok(Ok(tls)) =
                tokio::time::timeout(Duration::from_secs(5), self.acceptor.accept(tcp)).await
            {
                self.handshakes.fetch_add(1, Ordering::SeqCst);
                return (tls, peer);
            }
        }
    }

    fn local_addr(&self) -> io::Result<SocketAddr> {
        self.tcp.local_addr()
    }
}

/// What the upstream's certificate is like.
#[derive(Clone, Copy)]
enum Leaf {
    /// Valid now, for 127.0.0.1 and `localhost`.
    Good,
    /// Valid now, for `other.example` only.
    OtherHost,
    /// For 127.0.0.1, but it expired in 2021.
    Expired,
}

/// Another file beside `ca`'s holding the same CA certificate.
fn copy(ca: &TestCa, name: &str) -> PathBuf {
    let path = ca.dir().join(name);
    std::fs::copy(&ca.pem_file, &path).unwrap();
    path
}

/// A file named `name` beside `ca`'s, holding `text`.
fn file(ca: &TestCa, name: &str, text: &str) -> PathBuf {
    let path = ca.dir().join(name);
    std::fs::write(&path, text).unwrap();
    path
}

/// An acceptor presenting a certificate of `ca`, as `leaf` says.
fn server(ca: &TestCa, leaf: Leaf) -> TlsAcceptor {
    let issued = match leaf {
        Leaf::Good => ca.issue("upstream", &["127.0.0.1", "localhost"], Use::Server),
        Leaf::OtherHost => ca.issue("upstream", &["other.example"], Use::Server),
        Leaf::Expired => ca.issue_expired("upstream", &["127.0.0.1", "localhost"], Use::Server),
    };
    issued.acceptor()
}

/// The echoing upstream, over TLS with a certificate of `ca` as `leaf` says, at
/// `https://127.0.0.1:PORT`; and its count of completed handshakes.
async fn tls_upstream(ca: &TestCa, leaf: Leaf) -> (FakeUpstream, Arc<AtomicUsize>) {
    let tcp = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("https://{}", tcp.local_addr().unwrap());
    let handshakes = Arc::new(AtomicUsize::new(0));
    let listener = TlsListener {
        tcp,
        acceptor: server(ca, leaf),
        handshakes: handshakes.clone(),
    };
    (FakeUpstream::start_on("tls", url, listener), handshakes)
}

/// A route `prefix` to `upstream` that needs `billing:read`, trusting `ca_file`.
fn route(prefix: &str, upstream: &str, ca_file: Option<&Path>) -> String {
    let ca = ca_file
        .map(|path| format!("tls_ca_file = '{}'\n", path.display()))
        .unwrap_or_default();
    format!(
        "[[route]]\nprefix = \"{prefix}\"\nupstream = \"{upstream}\"\nscopes = {{ GET = [\"billing:read\"] }}\n{ca}"
    )
}

async fn gateway(upstream: FakeUpstream, routes: &str) -> TestGateway {
    TestGateway::start_with(FakeServer::start().await, upstream, routes).await
}

/// What is logged on this thread while it lives. The tests run on a current-thread
/// runtime, so the gateway's tasks log on this thread too.
struct Logs {
    lines: Arc<Mutex<Vec<u8>>>,
    _guard: tracing::subscriber::DefaultGuard,
}

struct Capture(Arc<Mutex<Vec<u8>>>);

impl io::Write for Capture {
    fn write(&mut self, bytes: &[u8]) -> io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl Logs {
    fn capture() -> Self {
        let lines = Arc::new(Mutex::new(Vec::new()));
        let writer = lines.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_max_level(tracing::Level::WARN)
            .with_ansi(false)
            .with_writer(move || Capture(writer.clone()))
            .finish();
        Self {
            lines,
            _guard: tracing::subscriber::set_default(subscriber),
        }
    }

    /// The warnings logged so far, one a line.
    fn warnings(&self) -> Vec<String> {
        let text = String::from_utf8(self.lines.lock().unwrap().clone()).unwrap();
        text.lines()
            .filter(|line| line.contains(" WARN "))
            .map(str::to_owned)
            .collect()
    }
}

#[tokio::test]
async fn an_https_upstream_trusted_through_the_routes_ca_file_gets_the_request() {
    let ca = TestCa::new("upstream CA");
    let (upstream, _) = tls_upstream(&ca, Leaf::Good).await;
    let routes = route("/billing", &upstream.url, Some(&ca.pem_file));
    let gw = gateway(upstream, &routes).await;
    let token = gw.token("billing:read");

    let answer = gw
        .get("/billing/invoices/%37?x=1", Some(&token.bearer()))
        .await;

    assert_eq!(answer.status, StatusCode::OK);
    let json = answer.json();
    assert_eq!(json["upstream"], "tls");
    assert_eq!(json["path"], "/billing/invoices/7?x=1");
    assert_eq!(
        answer.upstream_saw("x-latchkey-token-id"),
        Some(vec![token.id.clone()])
    );
    assert_eq!(
        answer.upstream_saw("x-latchkey-tenant"),
        Some(vec!["acme".to_owned()])
    );
    assert_eq!(
        answer.upstream_saw("x-latchkey-scopes"),
        Some(vec!["billing:read".to_owned()])
    );
    assert_eq!(gw.upstream.echoed(), 1);
}

/// Requests to `path` on a gateway whose only route there reaches an upstream whose
/// certificate the gateway refuses: 502 with the usual body, nothing reaches the
/// upstream, and one warning names the upstream and says why.
async fn refused(leaf: Leaf, trust_ca: bool, reason: &str) {
    let ca = TestCa::new("upstream CA");
    let (upstream, _) = tls_upstream(&ca, leaf).await;
    let url = upstream.url.clone();
    let routes = route("/billing", &url, trust_ca.then_some(ca.pem_file.as_path()));
    let gw = gateway(upstream, &routes).await;
    let bearer = gw.token("billing:read").bearer();
    let logs = Logs::capture();

    let answer = gw.get("/billing/invoices", Some(&bearer)).await;

    assert_eq!(answer.status, StatusCode::BAD_GATEWAY);
    assert_eq!(answer.json()["error"], "bad_gateway");
    assert_eq!(gw.upstream.echoed(), 0);
    let warnings = logs.warnings();
    assert_eq!(warnings.len(), 1, "{warnings:#?}");
    assert!(warnings[0].contains("upstream TLS failed"), "{warnings:#?}");
    assert!(
        warnings[0].contains(&format!("upstream={url}")),
        "{warnings:#?}"
    );
    assert!(warnings[0].contains(reason), "{warnings:#?}");
    assert!(!warnings[0].contains("/billing/invoices"), "{warnings:#?}");
}

#[tokio::test]
async fn an_upstream_certificate_from_a_ca_the_route_does_not_trust_is_a_logged_502() {
    refused(
        Leaf::Good,
        false,
        "reason=invalid peer certificate: UnknownIssuer",
    )
    .await;
}

#[tokio::test]
async fn an_upstream_certificate_for_another_host_is_a_logged_502() {
    refused(
        Leaf::OtherHost,
        true,
        "reason=invalid peer certificate: certificate not valid for name \"127.0.0.1\"",
    )
    .await;
}

#[tokio::test]
async fn an_expired_upstream_certificate_is_a_logged_502() {
    refused(
        Leaf::Expired,
        true,
        "reason=invalid peer certificate: certificate expired",
    )
    .await;
}

#[tokio::test]
async fn only_the_route_naming_the_ca_file_trusts_it() {
    let ca = TestCa::new("upstream CA");
    let (upstream, _) = tls_upstream(&ca, Leaf::Good).await;
    let routes = [
        route("/billing", &upstream.url, Some(&ca.pem_file)),
        route("/ledger", &upstream.url, None),
    ]
    .concat();
    let gw = gateway(upstream, &routes).await;
    let bearer = gw.token("billing:read").bearer();

    assert_eq!(
        gw.get("/ledger", Some(&bearer)).await.status,
        StatusCode::BAD_GATEWAY
    );
    assert_eq!(
        gw.get("/billing", Some(&bearer)).await.status,
        StatusCode::OK
    );
    assert_eq!(gw.upstream.echoed(), 1);
}

#[tokio::test]
async fn a_route_without_a_ca_file_trusts_the_top_level_tls_ca_file() {
    let ca = TestCa::new("private CA");
    let (upstream, _) = tls_upstream(&ca, Leaf::Good).await;
    // The top-level tls_ca_file is trusted for the server and for upstreams alike.
    let routes = format!(
        "tls_ca_file = '{}'\n{}",
        ca.pem_file.display(),
        route("/billing", &upstream.url, None)
    );
    let gw = gateway(upstream, &routes).await;
    let bearer = gw.token("billing:read").bearer();
    assert_eq!(
        gw.get("/billing", Some(&bearer)).await.status,
        StatusCode::OK
    );
    assert_eq!(gw.upstream.echoed(), 1);
}

#[tokio::test]
async fn a_refused_plain_connection_is_a_502_without_a_warning() {
    let ca = TestCa::new("upstream CA");
    let (upstream, _) = tls_upstream(&ca, Leaf::Good).await;
    let closed = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let down = format!("https://{}", closed.local_addr().unwrap());
    drop(closed);
    let routes = route("/down", &down, Some(&ca.pem_file));
    let gw = gateway(upstream, &routes).await;
    let bearer = gw.token("billing:read").bearer();
    let logs = Logs::capture();

    assert_eq!(
        gw.get("/down", Some(&bearer)).await.status,
        StatusCode::BAD_GATEWAY
    );
    assert_eq!(logs.warnings(), Vec::<String>::new());
}

#[tokio::test]
async fn routes_naming_the_same_ca_file_share_one_connection_pool() {
    let ca = TestCa::new("upstream CA");
    let (upstream, handshakes) = tls_upstream(&ca, Leaf::Good).await;
    let routes = [
        route("/billing", &upstream.url, Some(&ca.pem_file)),
        route("/ledger", &upstream.url, Some(&ca.pem_file)),
    ]
    .concat();
    let gw = gateway(upstream, &routes).await;
    let bearer = gw.token("billing:read").bearer();

    for path in ["/billing", "/ledger", "/billing"] {
        assert_eq!(gw.get(path, Some(&bearer)).await.status, StatusCode::OK);
    }
    assert_eq!(handshakes.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn routes_naming_different_ca_files_have_pools_of_their_own() {
    let ca = TestCa::new("upstream CA");
    let (upstream, handshakes) = tls_upstream(&ca, Leaf::Good).await;
    let routes = [
        route("/billing", &upstream.url, Some(&ca.pem_file)),
        route("/ledger", &upstream.url, Some(&copy(&ca, "same-ca.pem"))),
    ]
    .concat();
    let gw = gateway(upstream, &routes).await;
    let bearer = gw.token("billing:read").bearer();

    for path in ["/billing", "/ledger", "/billing"] {
        assert_eq!(gw.get(path, Some(&bearer)).await.status, StatusCode::OK);
    }
    assert_eq!(handshakes.load(Ordering::SeqCst), 2);
}

fn validated(routes: &str) -> Result<GatewayConfig, ConfigError> {
    let text = format!(
        "listen = \"127.0.0.1:0\"\nserver = \"http://127.0.0.1:1\"\ncredential = \"c\"\n{routes}"
    );
    let config = GatewayConfig::from_toml(&text)?;
    config.validate()?;
    Ok(config)
}

/// The `BadRouteCaFile` error of `routes`, checked to name `/billing` and `file`.
fn ca_file_refusal(routes: &str, file: &Path) -> String {
    let error = validated(routes).unwrap_err();
    let expected = file.display().to_string();
    assert!(
        matches!(&error, ConfigError::BadRouteCaFile { prefix, file, .. }
            if prefix == "/billing" && *file == expected),
        "{error}"
    );
    let message = error.to_string();
    let head = format!("route `/billing`: tls_ca_file `{expected}`: ");
    assert!(message.starts_with(&head), "{message}");
    assert_eq!(message.matches(&expected).count(), 1, "{message}");
    message
}

#[test]
fn a_ca_file_on_an_http_upstream_is_refused() {
    let ca = TestCa::new("upstream CA");
    let plain = route("/billing", "http://127.0.0.1:9", Some(&ca.pem_file));
    let message = ca_file_refusal(&plain, &ca.pem_file);
    assert!(message.ends_with("applies only to an https:// upstream, and this one is http://"));
    // The same file on an https upstream is fine.
    validated(&route(
        "/billing",
        "https://127.0.0.1:9",
        Some(&ca.pem_file),
    ))
    .unwrap();
}

#[test]
fn a_missing_ca_file_is_refused() {
    let ca = TestCa::new("upstream CA");
    let missing = ca.dir().join("missing.pem");
    let routes = route("/billing", "https://127.0.0.1:9", Some(&missing));
    let message = ca_file_refusal(&routes, &missing);
    assert!(message.contains("No such file"), "{message}");
}

#[test]
fn a_ca_file_without_a_certificate_is_refused() {
    let ca = TestCa::new("upstream CA");
    let issued = ca.issue("leaf", &["localhost"], Use::Server);
    let key_only = std::fs::read_to_string(&issued.key_file).unwrap();
    for (name, text) in [("empty.pem", ""), ("key.pem", key_only.as_str())] {
        let file = file(&ca, name, text);
        let routes = route("/billing", "https://127.0.0.1:9", Some(&file));
        let message = ca_file_refusal(&routes, &file);
        assert!(message.ends_with(": holds no PEM certificate"), "{message}");
    }
}

#[test]
fn a_garbled_ca_file_is_refused() {
    let ca = TestCa::new("upstream CA");
    let garbled = file(
        &ca,
        "garbled.pem",
        "-----BEGIN CERTIFICATE-----\nbm90IGEgY2VydGlmaWNhdGU=\n-----END CERTIFICATE-----\n",
    );
    let routes = route("/billing", "https://127.0.0.1:9", Some(&garbled));
    let message = ca_file_refusal(&routes, &garbled);
    assert!(message.ends_with("BadEncoding"), "{message}");
}

#[tokio::test]
async fn a_reload_to_a_garbled_ca_file_fails_and_the_routes_keep_working() {
    let ca = TestCa::new("upstream CA");
    let (upstream, _) = tls_upstream(&ca, Leaf::Good).await;
    let url = upstream.url.clone();
    let gw = gateway(upstream, &route("/billing", &url, Some(&ca.pem_file))).await;
    let bearer = gw.token("billing:read").bearer();
    assert_eq!(
        gw.get("/billing", Some(&bearer)).await.status,
        StatusCode::OK
    );

    let garbled = file(&ca, "garbled.pem", "-----BEGIN CERTIFICATE-----\n@@@\n");
    let routes = [
        route("/billing", &url, Some(&garbled)),
        route("/ledger", &url, Some(&ca.pem_file)),
    ]
    .concat();
    let text = TestGateway::config_text(&gw.server, &routes);
    let error = gw
        .gateway
        .reload(GatewayConfig::from_toml(&text).unwrap())
        .unwrap_err();
    assert!(
        matches!(&error, ConfigError::BadRouteCaFile { prefix, file, .. }
            if prefix == "/billing" && *file == garbled.display().to_string()),
        "{error}"
    );
    assert_eq!(
        gw.get("/billing", Some(&bearer)).await.status,
        StatusCode::OK
    );
    assert_eq!(
        gw.get("/ledger", Some(&bearer)).await.status,
        StatusCode::NOT_FOUND
    );

    // The same change with a good file goes through.
    let copy = copy(&ca, "renewed.pem");
    let routes = [
        route("/billing", &url, Some(&copy)),
        route("/ledger", &url, Some(&ca.pem_file)),
    ]
    .concat();
    let text = TestGateway::config_text(&gw.server, &routes);
    gw.gateway
        .reload(GatewayConfig::from_toml(&text).unwrap())
        .unwrap();
    assert_eq!(
        gw.get("/billing", Some(&bearer)).await.status,
        StatusCode::OK
    );
    assert_eq!(
        gw.get("/ledger", Some(&bearer)).await.status,
        StatusCode::OK
    );
}
