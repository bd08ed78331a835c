//! Test support: a fake latchkey server (usage collector and introspection), a fake
//! upstream that echoes, streams and stalls, signing keys and tokens made here with
//! aws-lc-rs, a scriptable deny list, and a running gateway with a small HTTP client.

use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{Ed25519KeyPair, KeyPair};
use axum::Router;
use axum::body::Body as AxumBody;
use axum::extract::{Request as AxumRequest, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Json};
use axum::routing::{any, post};
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::{BodyExt, Empty, Full};
use hyper::body::{Body, Bytes, Frame, Incoming};
use hyper::{Method, Request, Response};
use hyper_util::client::legacy::Client as HyperClient;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use latchkey_core::jwt::b64url_encode;
use latchkey_core::secret::{SecretCodec, SecretPrefix, SecretType};
use latchkey_core::usable::Standing;
use latchkey_core::{Permission, PermissionSet, RoleName, TenantId, TokenId, UserId};
use latchkey_gateway::{Gateway, GatewayConfig, GatewayDeps, UsageOptions};
use latchkey_verify::{Clock, Revocation, RevocationCheck, SystemClock, Verifier};
use serde_json::{Value, json};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tokio::sync::{Notify, mpsc, oneshot};

pub type BoxError = Box<dyn std::error::Error + Send + Sync>;
pub type TestBody = UnsyncBoxBody<Bytes, BoxError>;

/// The gateway's credential, which the fake server expects.
pub const GATEWAY_CREDENTIAL: &str = "lk_ak_gateway-test-credential";

/// Waits for a condition, polling, at most five seconds.
pub async fn eventually(mut done: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while !done() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "condition not met within 5 s"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

async fn serve(app: Router) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    url
}

// ---------------------------------------------------------------------------------
// Keys and tokens

pub fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

/// An Ed25519 signing key, as the server's.
pub struct TestKey {
    kid: String,
    pair: Ed25519KeyPair,
}

impl TestKey {
    pub fn new(kid: &str) -> Self {
        Self {
            kid: kid.to_owned(),
            pair: Ed25519KeyPair::generate().unwrap(),
        }
    }

    pub fn jwks(&self) -> Vec<u8> {
        json!({ "keys": [{
            "kid": self.kid, "kty": "OKP", "crv": "Ed25519", "alg": "EdDSA", "use": "sig",
            "x": b64url_encode(self.pair.public_key().as_ref()),
        }]})
        .to_string()
        .into_bytes()
    }

    pub fn sign(&self, claims: &Value) -> String {
        let header = json!({ "alg": "EdDSA", "typ": "at+jwt", "kid": self.kid });
        let input = format!(
            "{}.{}",
            b64url_encode(header.to_string().as_bytes()),
            b64url_encode(claims.to_string().as_bytes())
        );
        let signature = self.pair.sign(input.as_bytes());
        format!("{input}.{}", b64url_encode(signature.as_ref()))
    }
}

/// A signed access token and its id.
pub struct Token {
    pub jwt: String,
    pub id: String,
}

impl Token {
    pub fn bearer(&self) -> String {
        format!("Bearer {}", self.jwt)
    }
}

// ---------------------------------------------------------------------------------
// The fake latchkey server

/// One `POST /v1/usage` the fake server accepted.
#[derive(Debug, Clone)]
pub struct UsagePost {
    pub authorization: Option<String>,
    pub body: Value,
}

#[derive(Default)]
struct ServerState {
    usage: Mutex<Vec<UsagePost>>,
    usage_attempts: AtomicUsize,
    /// Answer this many usage POSTs with 503 before accepting.
    fail_usage: AtomicUsize,
    introspection: Mutex<HashMap<String, Value>>,
}

/// The latchkey server as the gateway sees it: the issuer, introspection and the usage
/// collector.
pub struct FakeServer {
    pub url: String,
    state: Arc<ServerState>,
}

impl FakeServer {
    pub async fn start() -> Self {
        let state = Arc::new(ServerState::default());
        let app = Router::new()
            .route("/v1/usage", post(collect_usage))
            .route("/oauth/introspect", post(introspect))
            .with_state(state.clone());
        Self {
            url: serve(app).await,
            state,
        }
    }

    /// Every accepted usage POST so far.
    pub fn usage_posts(&self) -> Vec<UsagePost> {
        self.state.usage.lock().unwrap().clone()
    }

    /// Usage POSTs tried, accepted or not.
    pub fn usage_attempts(&self) -> usize {
        self.state.usage_attempts.load(Ordering::SeqCst)
    }

    /// Fails the next `n` usage POSTs with 503.
    pub fn fail_usage(&self, n: usize) {
        self.state.fail_usage.store(n, Ordering::SeqCst);
    }

    /// The sum of every accepted entry's count.
    pub fn usage_total(&self) -> u64 {
        self.usage_posts()
            .iter()
            .flat_map(|p| p.body["entries"].as_array().cloned().unwrap_or_default())
            .map(|e| e["count"].as_u64().unwrap())
            .sum()
    }

    /// Counts by (token, route, method, status class, client IP), over every post.
    pub fn usage_by_key(&self) -> BTreeMap<(String, String, String, String, String), u64> {
        let mut sums = BTreeMap::new();
        for post in self.usage_posts() {
            for entry in post.body["entries"].as_array().unwrap() {
                let field = |name: &str| entry[name].as_str().unwrap().to_owned();
                let key = (
                    field("token_id"),
                    field("route"),
                    field("method"),
                    field("status_class"),
                    field("client_ip"),
                );
                *sums.entry(key).or_insert(0) += entry["count"].as_u64().unwrap();
            }
        }
        sums
    }

    /// A well-formed api key that introspection reports active with `scope`.
    pub fn api_key(&self, scope: &str) -> (String, TokenId) {
        self.api_key_with(scope, json!({}))
    }

    /// Like `api_key`, with `extra` members in the introspection answer.
    pub fn api_key_with(&self, scope: &str, extra: Value) -> (String, TokenId) {
        let (key, id) = new_api_key();
        let mut answer = json!({
            "active": true, "scope": scope, "client_id": id.to_string(),
            "sub": id.to_string(), "tid": "acme", "token_type": "Bearer",
            "iat": unix_now(), "iss": self.url,
        });
        for (name, value) in extra.as_object().unwrap() {
            answer[name] = value.clone();
        }
        self.state
            .introspection
            .lock()
            .unwrap()
            .insert(key.clone(), answer);
        (key, id)
    }
}

/// A well-formed api key (right prefix and checksum) that no server knows.
pub fn new_api_key() -> (String, TokenId) {
    let rng = SystemRandom::new();
    let id = TokenId::generate(&rng).unwrap();
    let codec = SecretCodec::new(SecretPrefix::default(), &[0; 32]);
    let key = codec
        .generate(SecretType::ApiKey, id, &rng)
        .unwrap()
        .secret
        .expose()
        .to_owned();
    (key, id)
}

async fn collect_usage(
    State(state): State<Arc<ServerState>>,
    headers: HeaderMap,
    Json(body): Json<Value>,
) -> StatusCode {
    state.usage_attempts.fetch_add(1, Ordering::SeqCst);
    let failing = state
        .fail_usage
        .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
        .is_ok();
    if failing {
        return StatusCode::SERVICE_UNAVAILABLE;
    }
    let authorization = headers
        .get("authorization")
        .map(|v| v.to_str().unwrap().to_owned());
    state.usage.lock().unwrap().push(UsagePost {
        authorization,
        body,
    });
    StatusCode::NO_CONTENT
}

async fn introspect(
    State(state): State<Arc<ServerState>>,
    headers: HeaderMap,
    body: String,
) -> axum::response::Response {
    let authorized = headers.get("authorization").and_then(|v| v.to_str().ok())
        == Some(&format!("Bearer {GATEWAY_CREDENTIAL}"));
    if !authorized {
        return StatusCode::UNAUTHORIZED.into_response();
    }
    let token = body.strip_prefix("token=").unwrap_or_default();
    let answer = state.introspection.lock().unwrap().get(token).cloned();
    Json(answer.unwrap_or_else(|| json!({ "active": false }))).into_response()
}

// ---------------------------------------------------------------------------------
// The fake upstream

#[derive(Default)]
struct UpstreamState {
    name: String,
    /// Requests the echo answered.
    echoed: AtomicUsize,
    /// Told the size of the first chunk of an upload, as soon as it arrives.
    first_chunk: Mutex<Option<mpsc::UnboundedSender<usize>>>,
    /// Lets a download go on past its first chunk.
    release_download: Notify,
}

/// A service behind the gateway. `/stream/upload` counts a streamed body, reporting
/// its first chunk at once; `/stream/download` sends one chunk, then the rest when
/// released; `/slow` answers after 30 s; anything else echoes the request as JSON
/// (status from `?status=`), with the path it received and that path percent-decoded,
/// as a typical framework reads it.
pub struct FakeUpstream {
    pub url: String,
    state: Arc<UpstreamState>,
}

/// Chunks of a streamed download after the first.
pub const DOWNLOAD_CHUNKS: usize = 100;
pub const CHUNK: usize = 64 * 1024;

impl FakeUpstream {
    pub async fn start(name: &str) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        Self::start_on(name, url, listener)
    }

    /// The same service on `listener` (a TLS one, say), reached at `url`.
    pub fn start_on<L>(name: &str, url: String, listener: L) -> Self
    where
        L: axum::serve::Listener,
        L::Addr: std::fmt::Debug,
    {
        let state = Arc::new(UpstreamState {
            name: name.to_owned(),
            ..UpstreamState::default()
        });
        let app = Router::new()
            .route("/stream/upload", post(upload))
            .route("/stream/download", any(download))
            .route("/slow", any(slow))
            .fallback(echo)
            .with_state(state.clone());
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        Self { url, state }
    }

    /// Receives the size of each upload's first chunk.
    pub fn watch_uploads(&self) -> mpsc::UnboundedReceiver<usize> {
        let (tx, rx) = mpsc::unbounded_channel();
        *self.state.first_chunk.lock().unwrap() = Some(tx);
        rx
    }

    pub fn release_download(&self) {
        self.state.release_download.notify_one();
    }

    /// How many requests the echo answered.
    pub fn echoed(&self) -> usize {
        self.state.echoed.load(Ordering::SeqCst)
    }
}

/// Percent-decodes `text` once; a `%` without two hex digits after it stays as it is.
pub fn percent_decode(text: &str) -> Vec<u8> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let escape = bytes
            .get(i + 1..i + 3)
            .filter(|hex| bytes[i] == b'%' && hex.iter().all(u8::is_ascii_hexdigit))
            .and_then(|hex| std::str::from_utf8(hex).ok())
            .and_then(|hex| u8::from_str_radix(hex, 16).ok());
        match escape {
            Some(byte) => {
                out.push(byte);
                i += 3;
            }
            None => {
                out.push(bytes[i]);
                i += 1;
            }
        }
    }
    out
}

async fn echo(State(state): State<Arc<UpstreamState>>, request: AxumRequest) -> impl IntoResponse {
    state.echoed.fetch_add(1, Ordering::SeqCst);
    let (parts, body) = request.into_parts();
    let mut headers: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for (name, value) in &parts.headers {
        headers
            .entry(name.as_str().to_owned())
            .or_default()
            .push(value.to_str().unwrap_or("<binary>").to_owned());
    }
    let body = body.collect().await.unwrap().to_bytes();
    let status = parts
        .uri
        .query()
        .and_then(|q| q.strip_prefix("status="))
        .and_then(|s| s.parse().ok())
        .and_then(|s| StatusCode::from_u16(s).ok())
        .unwrap_or(StatusCode::OK);
    (
        status,
        Json(json!({
            "upstream": state.name,
            "method": parts.method.as_str(),
            "path": parts.uri.path_and_query().map(|p| p.as_str()),
            "decoded": String::from_utf8_lossy(&percent_decode(parts.uri.path())),
            "headers": headers,
            "body": String::from_utf8_lossy(&body),
        })),
    )
}

async fn upload(State(state): State<Arc<UpstreamState>>, request: AxumRequest) -> Json<Value> {
    let mut body = request.into_body();
    let mut total = 0;
    let mut first = true;
    while let Some(frame) = body.frame().await {
        if let Ok(data) = frame.unwrap().into_data() {
            if first {
                first = false;
                if let Some(tx) = &*state.first_chunk.lock().unwrap() {
                    let _ = tx.send(data.len());
                }
            }
            total += data.len();
        }
    }
    Json(json!({ "bytes": total }))
}

async fn download(State(state): State<Arc<UpstreamState>>) -> AxumBody {
    let (body, tx) = ChannelBody::new();
    tokio::spawn(async move {
        tx.send(Bytes::from(vec![b'a'; CHUNK])).await.unwrap();
        state.release_download.notified().await;
        for _ in 0..DOWNLOAD_CHUNKS {
            if tx.send(Bytes::from(vec![b'b'; CHUNK])).await.is_err() {
                return;
            }
        }
    });
    AxumBody::new(body)
}

async fn slow() -> &'static str {
    tokio::time::sleep(Duration::from_secs(30)).await;
    "too late"
}

/// A body fed through a channel, frame by frame.
pub struct ChannelBody(mpsc::Receiver<Bytes>);

impl ChannelBody {
    pub fn new() -> (Self, mpsc::Sender<Bytes>) {
        let (tx, rx) = mpsc::channel(4);
        (Self(rx), tx)
    }
}

impl Body for ChannelBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        self.0
            .poll_recv(cx)
            .map(|chunk| chunk.map(|b| Ok(Frame::data(b))))
    }
}

// ---------------------------------------------------------------------------------
// Deny list

/// Scripted grant state, as the feed's `role` and `member` entries give it: role
/// permissions by role name, and members' roles by user id (tenant `acme`).
#[derive(Default)]
pub struct GrantScript {
    pub roles: HashMap<String, Vec<String>>,
    pub members: HashMap<String, Vec<String>>,
}

/// A deny list that revokes the ids given and otherwise answers `otherwise`. It knows
/// grant state only once scripted.
pub struct DenyList {
    revoked: Mutex<HashSet<String>>,
    otherwise: Mutex<Revocation>,
    state: Mutex<Option<GrantScript>>,
    epoch: AtomicU64,
}

impl DenyList {
    pub fn new() -> Arc<Self> {
        Arc::new(Self {
            revoked: Mutex::new(HashSet::new()),
            otherwise: Mutex::new(Revocation::NotRevoked),
            state: Mutex::new(None),
            epoch: AtomicU64::new(0),
        })
    }

    /// Changes the grant state, as a `role` or `member` entry does.
    pub fn script(&self, change: impl FnOnce(&mut GrantScript)) {
        change(
            self.state
                .lock()
                .unwrap()
                .get_or_insert_with(GrantScript::default),
        );
        self.epoch.fetch_add(1, Ordering::SeqCst);
    }

    pub fn revoke(&self, id: &str) {
        self.revoked.lock().unwrap().insert(id.to_owned());
    }

    pub fn set_otherwise(&self, answer: Revocation) {
        *self.otherwise.lock().unwrap() = answer;
    }
}

impl RevocationCheck for DenyList {
    fn check(&self, token_id: &TokenId, jti: Option<&str>) -> Revocation {
        let revoked = self.revoked.lock().unwrap();
        if revoked.contains(&token_id.to_string()) || jti.is_some_and(|j| revoked.contains(j)) {
            Revocation::Revoked
        } else {
            *self.otherwise.lock().unwrap()
        }
    }

    fn standing(
        &self,
        _tenant: &TenantId,
        user: Option<&UserId>,
        roles: &[RoleName],
    ) -> Option<Standing> {
        let state = self.state.lock().unwrap();
        let script = state.as_ref()?;
        let of = |roles: Vec<&str>| -> PermissionSet {
            roles
                .into_iter()
                .filter_map(|r| script.roles.get(r))
                .flatten()
                .map(|p| Permission::parse(p).unwrap())
                .collect()
        };
        Some(match user {
            None => Standing::Tenant {
                role_permissions: of(roles.iter().map(RoleName::as_str).collect()),
            },
            Some(user) => match script.members.get(user.as_str()) {
                Some(held) if !held.is_empty() => Standing::Member {
                    holds: of(held.iter().map(String::as_str).collect()),
                },
                _ => Standing::Departed,
            },
        })
    }

    fn state_epoch(&self) -> u64 {
        self.epoch.load(Ordering::SeqCst)
    }
}

// ---------------------------------------------------------------------------------
// The gateway under test

/// A response read whole.
pub struct Answer {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl Answer {
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&self.body)))
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).map(|v| v.to_str().unwrap())
    }

    /// The values of request header `name` as the upstream saw them.
    pub fn upstream_saw(&self, name: &str) -> Option<Vec<String>> {
        let json = self.json();
        json["headers"].get(name).map(|v| {
            v.as_array()
                .unwrap()
                .iter()
                .map(|s| s.as_str().unwrap().to_owned())
                .collect()
        })
    }
}

/// An HTTP/1.1 client, optionally bound to a local address.
#[derive(Clone)]
pub struct TestClient {
    client: HyperClient<HttpConnector, TestBody>,
}

impl TestClient {
    pub fn new(local: Option<IpAddr>) -> Self {
        let mut connector = HttpConnector::new();
        connector.set_local_address(local);
        Self {
            client: HyperClient::builder(TokioExecutor::new()).build(connector),
        }
    }

    pub async fn send(&self, request: Request<TestBody>) -> Response<Incoming> {
        self.client.request(request).await.unwrap()
    }

    pub async fn call(
        &self,
        method: Method,
        url: &str,
        headers: &[(&str, &str)],
        body: &str,
    ) -> Answer {
        let mut request = Request::builder().method(method).uri(url);
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        let body = if body.is_empty() {
            Empty::new().map_err(|never| match never {}).boxed_unsync()
        } else {
            Full::new(Bytes::from(body.to_owned()))
                .map_err(|never| match never {})
                .boxed_unsync()
        };
        let response = self.send(request.body(body).unwrap()).await;
        let status = response.status();
        let headers = response.headers().clone();
        let body = response.into_body().collect().await.unwrap().to_bytes();
        Answer {
            status,
            headers,
            body,
        }
    }
}

/// The routes every test gateway has, given the upstream's URL and a closed port.
pub fn routes(upstream: &str, down: &str) -> String {
    format!(
        r#"
[[route]]
prefix = "/public"
upstream = "{upstream}"
public = true

[[route]]
prefix = "/reports"
upstream = "{upstream}"
scopes = {{ GET = ["reports:read"], POST = ["reports:write"], "*" = ["reports:admin"] }}

[[route]]
prefix = "/reports/admin"
upstream = "{upstream}"
scopes = {{ GET = ["reports:admin"] }}

[[route]]
prefix = "/any"
upstream = "{upstream}"

[[route]]
prefix = "/private"
upstream = "{upstream}"
strip_authorization = true

[[route]]
prefix = "/stream"
upstream = "{upstream}"
public = true
timeout_seconds = 0.5

[[route]]
prefix = "/slow"
upstream = "{upstream}"
public = true
timeout_seconds = 0.3

[[route]]
prefix = "/down"
upstream = "{down}"
public = true
"#
    )
}

/// An address nothing listens on.
pub async fn closed_port() -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    drop(listener);
    format!("http://{address}")
}

/// A running gateway in front of a fake upstream, verifying tokens of a fake server.
pub struct TestGateway {
    pub url: String,
    pub address: SocketAddr,
    pub gateway: Gateway,
    pub server: FakeServer,
    pub upstream: FakeUpstream,
    pub deny: Arc<DenyList>,
    pub client: TestClient,
    key: TestKey,
    shutdown: oneshot::Sender<()>,
    serving: tokio::task::JoinHandle<()>,
}

impl TestGateway {
    pub async fn start() -> Self {
        let server = FakeServer::start().await;
        let upstream = FakeUpstream::start("one").await;
        let routes = routes(&upstream.url, &closed_port().await);
        Self::start_with(server, upstream, &routes).await
    }

    /// The configuration text of a gateway with `routes`, for `server`.
    pub fn config_text(server: &FakeServer, routes: &str) -> String {
        format!(
            "listen = \"127.0.0.1:0\"\nserver = \"{}\"\ncredential = \"{GATEWAY_CREDENTIAL}\"\nmax_staleness_seconds = 30\n{routes}",
            server.url
        )
    }

    pub async fn start_with(server: FakeServer, upstream: FakeUpstream, routes: &str) -> Self {
        let usage = UsageOptions {
            flush_interval: Duration::from_millis(50),
            ..UsageOptions::default()
        };
        Self::start_with_usage(server, upstream, routes, usage).await
    }

    pub async fn start_with_usage(
        server: FakeServer,
        upstream: FakeUpstream,
        routes: &str,
        usage: UsageOptions,
    ) -> Self {
        Self::start_configured(server, upstream, routes, "", usage, Arc::new(SystemClock)).await
    }

    /// A gateway with the usual routes whose verifier reads time from `clock`.
    pub async fn start_on_clock(clock: Arc<dyn Clock>) -> Self {
        let server = FakeServer::start().await;
        let upstream = FakeUpstream::start("one").await;
        let routes = routes(&upstream.url, &closed_port().await);
        let usage = UsageOptions {
            flush_interval: Duration::from_millis(50),
            ..UsageOptions::default()
        };
        Self::start_configured(server, upstream, &routes, "", usage, clock).await
    }

    /// A gateway with the usual routes and `settings` (top-level keys, one a line).
    pub async fn start_with_settings(settings: &str) -> Self {
        let server = FakeServer::start().await;
        let upstream = FakeUpstream::start("one").await;
        let routes = routes(&upstream.url, &closed_port().await);
        let usage = UsageOptions {
            flush_interval: Duration::from_millis(50),
            ..UsageOptions::default()
        };
        let clock = Arc::new(SystemClock);
        Self::start_configured(server, upstream, &routes, settings, usage, clock).await
    }

    async fn start_configured(
        server: FakeServer,
        upstream: FakeUpstream,
        routes: &str,
        settings: &str,
        usage: UsageOptions,
        clock: Arc<dyn Clock>,
    ) -> Self {
        let routes = format!("{settings}\n{routes}");
        let config = GatewayConfig::from_toml(&Self::config_text(&server, &routes)).unwrap();
        let key = TestKey::new("ed-1");
        let deny = DenyList::new();
        let mut options = config.verifier_options(deny.clone()).unwrap();
        options.clock = clock;
        let verifier = Verifier::from_jwks(&server.url, &key.jwks(), options).unwrap();
        let deps = GatewayDeps { verifier, usage };
        let gateway = Gateway::build(config, deps).unwrap();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        let (shutdown, stop) = oneshot::channel::<()>();
        let serving = gateway.clone();
        let serving = tokio::spawn(async move {
            serving
                .serve(listener, async move {
                    let _ = stop.await;
                })
                .await;
        });
        Self {
            url: format!("http://{address}"),
            address,
            gateway,
            server,
            upstream,
            deny,
            client: TestClient::new(None),
            key,
            shutdown,
            serving,
        }
    }

    /// Stops the gateway and waits until `serve` has returned.
    pub async fn shut_down(self) -> (FakeServer, Gateway) {
        let _ = self.shutdown.send(());
        tokio::time::timeout(Duration::from_secs(5), self.serving)
            .await
            .expect("serve did not return")
            .unwrap();
        (self.server, self.gateway)
    }

    /// A tenant access token of tenant `acme` holding `scope`.
    pub fn token(&self, scope: &str) -> Token {
        self.token_for(scope, None)
    }

    /// An access token holding `scope`, personal to `user` when given; its own
    /// permissions are `scope` and it has no roles.
    pub fn token_for(&self, scope: &str, user: Option<&str>) -> Token {
        self.token_with(scope, |claims| {
            if let Some(user) = user {
                claims["tkt"] = json!("user");
                claims["uid"] = json!(user);
            }
        })
    }

    /// A tenant access token holding `scope`, its claims then changed by `edit`.
    pub fn token_with(&self, scope: &str, edit: impl FnOnce(&mut Value)) -> Token {
        let id = uuid::Uuid::new_v4().to_string();
        let now = unix_now();
        let mut claims = json!({
            "iss": self.server.url, "sub": id, "aud": self.server.url,
            "exp": now + 900, "iat": now, "nbf": now,
            "jti": uuid::Uuid::new_v4().to_string(),
            "client_id": id, "scope": scope, "tid": "acme", "tkt": "tenant",
            "rol": [], "prm": scope.split_whitespace().collect::<Vec<_>>(),
        });
        edit(&mut claims);
        Token {
            jwt: self.key.sign(&claims),
            id,
        }
    }

    pub fn at(&self, path: &str) -> String {
        format!("{}{path}", self.url)
    }

    pub async fn get(&self, path: &str, authorization: Option<&str>) -> Answer {
        self.call(Method::GET, path, authorization).await
    }

    pub async fn call(&self, method: Method, path: &str, authorization: Option<&str>) -> Answer {
        let headers: Vec<(&str, &str)> = authorization
            .map(|a| vec![("authorization", a)])
            .unwrap_or_default();
        self.client.call(method, &self.at(path), &headers, "").await
    }
}
