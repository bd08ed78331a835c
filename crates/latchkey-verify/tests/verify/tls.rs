//! The verifier and the replica over TLS, with a private CA made here: an https issuer
//! trusted through `tls_ca_file`, an issuer reached at a connect address that differs
//! from its public URL, the certificates that must be refused (another host, expired,
//! an unknown CA), and plain http beyond loopback.

use crate::feed::{FEED_CREDENTIAL, Feed};
use crate::support::{Issuer, TestKey, api_key, claims, header, sign, unix_now};
use latchkey_listener::test_pki::{TestCa, Use};
use latchkey_verify::{
    Credential, DiscoveryError, ReplicaOptions, Revocation, RevocationCheck, RevocationReplica,
    TokenKind, Verifier, VerifierOptions,
};
use std::io;
use std::net::SocketAddr;
use std::time::Duration;
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::TlsAcceptor;
use tokio_rustls::server::TlsStream;

/// A TLS listener for `axum::serve`: handshakes that fail (a client refusing the
/// certificate) are dropped and the next connection is accepted.
pub struct TlsListener {
    tcp: TcpListener,
    acceptor: TlsAcceptor,
}

impl TlsListener {
    pub fn new(tcp: TcpListener, acceptor: TlsAcceptor) -> Self {
        Self { tcp, acceptor }
    }
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
                return (tls, peer);
            }
        }
    }

    fn local_addr(&self) -> io::Result<SocketAddr> {
        self.tcp.local_addr()
    }
}

/// What a server certificate should be like.
struct Leaf<'a> {
    names: &'a [&'a str],
    expired: bool,
}

/// A server presenting a certificate of `ca` for `localhost` and 127.0.0.1.
fn server(ca: &TestCa) -> TlsAcceptor {
    server_for(
        ca,
        &Leaf {
            names: &["localhost", "127.0.0.1"],
            expired: false,
        },
    )
}

fn server_for(ca: &TestCa, leaf: &Leaf<'_>) -> TlsAcceptor {
    let issued = if leaf.expired {
        ca.issue_expired("server", leaf.names, Use::Server)
    } else {
        ca.issue("server", leaf.names, Use::Server)
    };
    issued.acceptor()
}

fn trusting(ca: &TestCa) -> VerifierOptions {
    VerifierOptions {
        tls_ca_file: Some(ca.pem_file.clone()),
        credential: Some(Credential::new(crate::support::VERIFIER_CREDENTIAL)),
        jwks_refresh_interval: Duration::ZERO,
        ..VerifierOptions::default()
    }
}

#[tokio::test]
async fn an_https_issuer_trusted_through_tls_ca_file_loads_its_keys_and_verifies_a_token() {
    let ca = TestCa::new("latchkey test CA");
    let key = TestKey::ed25519("k1");
    let (issuer, address) = Issuer::start_tls(&[&key], server(&ca), None).await;
    assert_eq!(issuer.url, address);
    assert!(address.starts_with("https://localhost:"));

    let verifier = Verifier::discover(&issuer.url, trusting(&ca))
        .await
        .unwrap();
    assert_eq!(verifier.issuer(), address);
    assert_eq!(verifier.audience(), address);
    assert_eq!(issuer.jwks_fetches(), 1);

    let token = sign(&key, &header(&key), &claims(&issuer.url, unix_now()));
    let principal = verifier.verify(&token).await.unwrap();
    assert_eq!(principal.kind, TokenKind::ClientCredentials);
    assert_eq!(principal.tenant.as_str(), "acme");

    // Introspection goes over TLS too.
    let (secret, id) = api_key();
    issuer.activate(&secret, id, "reports:read");
    let principal = verifier.verify(&secret).await.unwrap();
    assert_eq!(principal.token_id, id);
    assert_eq!(issuer.introspections(), 1);
}

#[tokio::test]
async fn an_issuer_reached_at_a_connect_address_is_checked_against_its_public_url() {
    let ca = TestCa::new("latchkey test CA");
    let key = TestKey::ed25519("k1");
    let public = "https://auth.example.com";
    let (issuer, address) = Issuer::start_tls(&[&key], server(&ca), Some(public)).await;

    let verifier = Verifier::discover(
        public,
        VerifierOptions {
            connect: Some(address.clone()),
            ..trusting(&ca)
        },
    )
    .await
    .unwrap();
    assert_eq!(verifier.issuer(), public);
    assert_eq!(
        verifier.audience(),
        public,
        "the audience defaults to the issuer"
    );
    // The metadata named https://auth.example.com/.well-known/jwks.json; it was
    // fetched from the connect address instead.
    assert_eq!(issuer.jwks_fetches(), 1);

    let token = sign(&key, &header(&key), &claims(public, unix_now()));
    assert!(verifier.verify(&token).await.is_ok());
    // A token naming the connect address as its issuer is not this issuer's.
    let foreign = sign(&key, &header(&key), &claims(&address, unix_now()));
    assert!(verifier.verify(&foreign).await.is_err());

    let (secret, id) = api_key();
    issuer.activate(&secret, id, "reports:read");
    assert_eq!(verifier.verify(&secret).await.unwrap().token_id, id);
    assert_eq!(issuer.introspections(), 1);
}

#[tokio::test]
async fn a_metadata_issuer_other_than_the_configured_one_is_refused_naming_the_settings() {
    let ca = TestCa::new("latchkey test CA");
    let key = TestKey::ed25519("k1");
    let (issuer, address) =
        Issuer::start_tls(&[&key], server(&ca), Some("https://auth.example.com")).await;
    let error = Verifier::discover(
        "https://auth.example.org",
        VerifierOptions {
            connect: Some(address.clone()),
            ..trusting(&ca)
        },
    )
    .await
    .unwrap_err();
    assert!(
        matches!(&error, DiscoveryError::IssuerMismatch { expected, found }
            if expected == "https://auth.example.org" && found == "https://auth.example.com"),
        "{error:?}"
    );
    let text = error.to_string();
    assert!(text.contains("set issuer"), "{text}");
    assert!(text.contains("connect"), "{text}");
    assert_eq!(
        issuer.jwks_fetches(),
        0,
        "no keys from a server that is not ours"
    );

    // Without a connect address the server's own address is the issuer, and it too
    // differs from what the metadata says.
    let error = Verifier::discover(&address, trusting(&ca))
        .await
        .unwrap_err();
    assert!(
        matches!(error, DiscoveryError::IssuerMismatch { .. }),
        "{error:?}"
    );
}

/// Discovers `https://localhost:PORT` served with `server`, trusting `ca`, and returns
/// the error text.
async fn refusal(server: TlsAcceptor, ca: Option<&TestCa>) -> (String, String) {
    let key = TestKey::ed25519("k1");
    let (issuer, address) = Issuer::start_tls(&[&key], server, None).await;
    let options = VerifierOptions {
        tls_ca_file: ca.map(|ca| ca.pem_file.clone()),
        jwks_refresh_interval: Duration::ZERO,
        ..VerifierOptions::default()
    };
    let error = Verifier::discover(&address, options).await.unwrap_err();
    assert!(
        matches!(error, DiscoveryError::Http { .. }),
        "a TLS failure is a failed fetch: {error:?}"
    );
    assert_eq!(issuer.total_hits(), 0, "nothing was served over it");
    (error.to_string(), address)
}

#[tokio::test]
async fn a_certificate_for_another_host_is_refused_naming_the_host() {
    let ca = TestCa::new("latchkey test CA");
    let server = server_for(
        &ca,
        &Leaf {
            names: &["other.example"],
            expired: false,
        },
    );
    let (text, address) = refusal(server, Some(&ca)).await;
    assert!(text.contains(&address), "{text}");
    assert!(text.contains("not valid for name"), "{text}");
    assert!(text.contains("localhost"), "{text}");
}

#[tokio::test]
async fn an_expired_certificate_is_refused_naming_the_host() {
    let ca = TestCa::new("latchkey test CA");
    let server = server_for(
        &ca,
        &Leaf {
            names: &["localhost"],
            expired: true,
        },
    );
    let (text, address) = refusal(server, Some(&ca)).await;
    assert!(text.contains(&address), "{text}");
    assert!(text.contains("expired"), "{text}");
}

#[tokio::test]
async fn a_certificate_from_an_unknown_ca_is_refused_naming_the_host() {
    let ours = TestCa::new("latchkey test CA");
    let theirs = TestCa::new("someone else's CA");
    // Trusting another CA, and trusting only the system's roots: both refuse.
    for trusted in [Some(&theirs), None] {
        let (text, address) = refusal(server(&ours), trusted).await;
        assert!(text.contains(&address), "{text}");
        assert!(
            text.contains("UnknownIssuer") || text.contains("unknown issuer"),
            "{text}"
        );
    }
}

#[tokio::test]
async fn plain_http_beyond_loopback_is_refused_before_any_connection() {
    for (issuer, connect) in [
        ("http://10.0.0.5:7700", None),
        ("https://auth.example.com", Some("http://10.0.0.5:7700")),
        ("https://auth.example.com", Some("http://auth.internal")),
    ] {
        let options = VerifierOptions {
            connect: connect.map(str::to_owned),
            ..VerifierOptions::default()
        };
        let error = Verifier::discover(issuer, options).await.unwrap_err();
        assert!(
            matches!(&error, DiscoveryError::InsecureIssuer { setting, .. }
                if setting == if connect.is_some() { "connect" } else { "issuer" }),
            "{error:?}"
        );
        assert!(
            error.to_string().contains("allow_insecure_issuer"),
            "{error}"
        );
    }
    let replica = RevocationReplica::start(
        "http://10.0.0.5:7700",
        Credential::new(FEED_CREDENTIAL),
        ReplicaOptions::default(),
    );
    assert!(
        matches!(replica, Err(DiscoveryError::InsecureIssuer { .. })),
        "{replica:?}"
    );
}

#[tokio::test]
async fn a_plain_http_issuer_name_is_fine_when_the_connect_address_is_loopback() {
    let key = TestKey::ed25519("k1");
    let public = "http://auth.internal";
    let (issuer, address) = Issuer::start_advertising(&[&key], public).await;
    let verifier = Verifier::discover(
        public,
        VerifierOptions {
            connect: Some(address),
            jwks_refresh_interval: Duration::ZERO,
            ..VerifierOptions::default()
        },
    )
    .await
    .unwrap();
    assert_eq!(issuer.jwks_fetches(), 1);
    let token = sign(&key, &header(&key), &claims(public, unix_now()));
    assert!(verifier.verify(&token).await.is_ok());
}

#[tokio::test]
async fn a_connect_address_with_a_path_is_refused_naming_the_setting() {
    let error = Verifier::discover(
        "https://auth.example.com",
        VerifierOptions {
            connect: Some("https://127.0.0.1:1/prefix".to_owned()),
            ..VerifierOptions::default()
        },
    )
    .await
    .unwrap_err();
    assert!(matches!(error, DiscoveryError::BadIssuer(_)), "{error:?}");
    assert!(error.to_string().contains("connect"), "{error}");
}

#[tokio::test]
async fn the_replica_follows_an_https_feed_and_a_revocation_reaches_it() {
    let ca = TestCa::new("latchkey test CA");
    let feed = Feed::start_tls(server(&ca)).await;
    assert!(feed.url.starts_with("https://localhost:"));
    let options = ReplicaOptions {
        tls_ca_file: Some(ca.pem_file.clone()),
        backoff_initial: Duration::from_millis(10),
        backoff_max: Duration::from_millis(40),
        ..ReplicaOptions::default()
    };
    let replica = feed.replica(options).await;
    let id = uuid::Uuid::new_v4().to_string();
    let token_id = latchkey_core::TokenId::parse(&id).unwrap();
    assert_eq!(replica.check(&token_id, None), Revocation::NotRevoked);
    let seq = feed.revoke("token", &id);
    tokio::time::timeout(
        Duration::from_secs(5),
        replica.applied().wait_for(|last| *last >= seq),
    )
    .await
    .expect("applied within 5 s")
    .unwrap();
    assert_eq!(replica.check(&token_id, None), Revocation::Revoked);

    // The same feed without the CA: never loads, so it fails closed.
    let untrusting = RevocationReplica::start(
        &feed.url,
        Credential::new(FEED_CREDENTIAL),
        ReplicaOptions {
            backoff_initial: Duration::from_millis(10),
            backoff_max: Duration::from_millis(40),
            ..ReplicaOptions::default()
        },
    )
    .unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(untrusting.check(&token_id, None), Revocation::Stale);
    assert!(untrusting.metrics().reconnects >= 1);
}

#[tokio::test]
async fn a_connect_address_with_a_default_port_is_an_origin_not_a_path() {
    let ca = TestCa::new("latchkey test CA");
    let key = TestKey::ed25519("k1");
    let public = "https://auth.example.com";
    let (issuer, address) = Issuer::start_tls(&[&key], server(&ca), Some(public)).await;
    // Spelled with upper case and a trailing slash: still the same origin.
    let spelled = format!("{}/", address.replace("localhost", "LOCALHOST"));
    let verifier = Verifier::discover(
        public,
        VerifierOptions {
            connect: Some(spelled),
            ..trusting(&ca)
        },
    )
    .await
    .unwrap();
    assert_eq!(issuer.jwks_fetches(), 1);
    assert_eq!(verifier.issuer(), public);
}
