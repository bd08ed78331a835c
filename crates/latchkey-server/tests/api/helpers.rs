//! `TestApp`: a real server on port 0 over a fresh SQLite directory or a fresh PostgreSQL
//! database, with typed helpers for the calls most tests make.

use latchkey_core::clock::{Clock, ManualClock};
use latchkey_server::{Application, Config};
use reqwest::Method;
use reqwest::header::HeaderMap;
use serde_json::{Value, json};
use sqlx::AnyPool;
use sqlx::any::AnyPoolOptions;
use std::io::Write;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex, Once, OnceLock};
use tempfile::TempDir;

pub const POSTGRES_ENV: &str = "LATCHKEY_TEST_POSTGRES_URL";

/// A client trusting `ca` (and not the system's roots), adjusted by `adjust`.
pub fn trusting_client(
    ca: &latchkey_listener::test_pki::TestCa,
    adjust: impl FnOnce(reqwest::ClientBuilder) -> reqwest::ClientBuilder,
) -> reqwest::Client {
    let pem = std::fs::read(&ca.pem_file).unwrap();
    let builder = reqwest::Client::builder()
        .user_agent("latchkey-tests")
        .tls_built_in_root_certs(false)
        .add_root_certificate(reqwest::Certificate::from_pem(&pem).unwrap());
    adjust(builder).build().unwrap()
}

/// Every log line the servers of this test binary wrote.
static LOGS: Mutex<Vec<u8>> = Mutex::new(Vec::new());

struct LogWriter;

impl Write for LogWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        LOGS.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

pub fn capture_logs() {
    static INIT: Once = Once::new();
    INIT.call_once(|| {
        let _ = tracing_subscriber::fmt()
            .with_env_filter("info,latchkey_server=trace,latchkey_store=trace,tower_http=debug")
            .with_ansi(false)
            .with_writer(|| LogWriter)
            .try_init();
    });
}

/// The captured logs so far.
pub fn captured_logs() -> String {
    String::from_utf8_lossy(&LOGS.lock().unwrap()).into_owned()
}

/// A reply, read whole.
#[derive(Debug)]
pub struct Reply {
    pub status: u16,
    pub headers: HeaderMap,
    pub text: String,
    pub body: Value,
}

impl Reply {
    pub fn header(&self, name: &str) -> &str {
        self.headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
    }

    /// Asserts a problem+json answer with this status and type suffix.
    #[track_caller]
    pub fn assert_problem(&self, status: u16, code: &str) -> &Self {
        assert_eq!(
            self.status, status,
            "unexpected status; body: {}",
            self.text
        );
        assert_eq!(self.header("content-type"), "application/problem+json");
        assert_eq!(
            self.body["type"],
            format!("urn:latchkey:problem:{code}"),
            "body: {}",
            self.text
        );
        assert_eq!(self.body["status"], status);
        assert!(self.body["title"].is_string());
        assert!(self.body["detail"].is_string());
        self
    }

    #[track_caller]
    pub fn assert_status(&self, status: u16) -> &Self {
        assert_eq!(
            self.status, status,
            "unexpected status; body: {}",
            self.text
        );
        self
    }
}

pub struct TestApp {
    pub base: String,
    /// The server's TLS, when it serves TLS itself (see [`TestApp::tls`]).
    pub tls: Option<latchkey_listener::ServerTls>,
    pub root_key: String,
    pub data_dir: TempDir,
    pub database_url: String,
    /// The server's clock. It starts at the wall clock's now and stands still until a
    /// test moves it: expiry, lifetimes and schedules are tested by moving it.
    pub clock: Arc<ManualClock>,
    /// The running server's maintenance, for [`Self::maintain`]; `None` on a probe.
    maintenance: Option<latchkey_server::Maintenance>,
    client: reqwest::Client,
    postgres_db: Option<String>,
}

static NEXT_DB: AtomicU32 = AtomicU32::new(0);

impl TestApp {
    pub async fn sqlite() -> Self {
        Self::start(None, None, |_| {}).await
    }

    /// A SQLite server with a changed configuration.
    pub async fn sqlite_with(configure: impl FnOnce(&mut Config)) -> Self {
        Self::start(None, None, configure).await
    }

    /// A server on a fresh PostgreSQL database, or `None` (with one line saying so)
    /// when `LATCHKEY_TEST_POSTGRES_URL` is not set. Under `CI=true` a missing or
    /// unreachable PostgreSQL fails the test instead.
    pub async fn postgres() -> Option<Self> {
        Self::postgres_with(|_| {}).await
    }

    /// The database URL of a fresh PostgreSQL database, or `None` (see [`Self::postgres`]).
    pub async fn fresh_postgres_database() -> Option<(String, String)> {
        let Some(admin_url) = std::env::var(POSTGRES_ENV).ok().filter(|u| !u.is_empty()) else {
            if std::env::var("CI").is_ok_and(|v| v == "true") {
                panic!(
                    "CI=true but {POSTGRES_ENV} is not set: the PostgreSQL runs cannot be skipped in CI"
                );
            }
            static SAID: Once = Once::new();
            SAID.call_once(|| {
                // Straight to the process's stderr, past the test harness's capture.
                let _ = writeln!(
                    std::io::stderr(),
                    "{POSTGRES_ENV} is not set: skipping the PostgreSQL runs of the API tests"
                );
            });
            return None;
        };
        sqlx::any::install_default_drivers();
        let admin = AnyPoolOptions::new()
            .max_connections(1)
            .connect(&admin_url)
            .await
            .unwrap_or_else(|e| panic!("PostgreSQL at {POSTGRES_ENV} is unreachable: {e}"));
        let name = format!(
            "lk_test_{}_{}",
            std::process::id(),
            NEXT_DB.fetch_add(1, Ordering::Relaxed)
        );
        drop_stale_databases(&admin).await;
        sqlx::query(&format!("CREATE DATABASE {name}"))
            .execute(&admin)
            .await
            .expect("create test database");
        admin.close().await;
        let (base, _) = admin_url
            .rsplit_once('/')
            .expect("database URL with a path");
        Some((format!("{base}/{name}"), name))
    }

    /// A PostgreSQL server with a changed configuration.
    pub async fn postgres_with(configure: impl FnOnce(&mut Config)) -> Option<Self> {
        let (url, name) = Self::fresh_postgres_database().await?;
        Some(Self::start(Some(url), Some(name), configure).await)
    }

    /// A server on a database created with [`Self::fresh_postgres_database`], reached at
    /// `url` (through a relay, say); the database is dropped with the server.
    pub async fn on_database(
        url: String,
        name: String,
        configure: impl FnOnce(&mut Config),
    ) -> Self {
        Self::start(Some(url), Some(name), configure).await
    }

    /// A client of an already running server (for tasks that outlive a borrow).
    pub fn probe(base: String, root_key: String) -> Self {
        latchkey_verify::install_crypto_provider();
        Self {
            base,
            tls: None,
            root_key,
            data_dir: tempfile::tempdir().expect("temp dir"),
            database_url: String::new(),
            clock: Arc::new(ManualClock::starting_now()),
            maintenance: None,
            client: reqwest::Client::new(),
            postgres_db: None,
        }
    }

    /// A SQLite server serving TLS with a certificate from `ca` for 127.0.0.1 and
    /// `localhost`; its test client trusts `ca`.
    pub async fn tls(
        ca: &latchkey_listener::test_pki::TestCa,
        configure: impl FnOnce(&mut Config),
    ) -> Self {
        use latchkey_listener::test_pki::Use;
        let leaf = ca.issue("server", &["127.0.0.1", "localhost"], Use::Server);
        let mut app = Self::start(None, None, |config| {
            config.tls_cert_file = Some(leaf.cert_file);
            config.tls_key_file = Some(leaf.key_file);
            configure(config);
        })
        .await;
        app.client = trusting_client(ca, |builder| builder);
        app
    }

    /// A SQLite server serving TLS with `leaf`, whatever it is (expired, for another
    /// host, from an unknown CA), for tests of what its followers refuse.
    pub async fn start_serving(leaf: &latchkey_listener::test_pki::Issued) -> Self {
        Self::start(None, None, |config| {
            config.tls_cert_file = Some(leaf.cert_file.clone());
            config.tls_key_file = Some(leaf.key_file.clone());
        })
        .await
    }

    /// A second server on this one's database, pepper and master key, and on its clock:
    /// a replica.
    pub async fn replica(&self, configure: impl FnOnce(&mut Config)) -> Self {
        let pepper = self.data_dir.path().join("pepper");
        let master = self.data_dir.path().join("master.key");
        let url = self.database_url.clone();
        let mut replica =
            Self::start_on_clock(Some(url), None, self.clock.clone(), move |config| {
                config.pepper_file = Some(pepper);
                config.master_key_file = Some(master);
                configure(config);
            })
            .await;
        replica.root_key = self.root_key.clone();
        replica
    }

    /// The server's now, by its clock.
    pub fn now(&self) -> latchkey_core::Timestamp {
        self.clock.now()
    }

    /// The server's time `millis` from now, by its clock.
    pub fn in_millis(&self, millis: i64) -> latchkey_core::Timestamp {
        latchkey_core::Timestamp::from_millis(self.now().millis() + millis)
    }

    /// Runs one round of the server's maintenance (key schedule, retention,
    /// compaction) now, at the clock's time, instead of waiting for the next one.
    pub async fn maintain(&self) {
        self.maintenance
            .as_ref()
            .expect("a probe has no server to maintain")
            .run_once()
            .await;
    }

    async fn start(
        database_url: Option<String>,
        postgres_db: Option<String>,
        configure: impl FnOnce(&mut Config),
    ) -> Self {
        let clock = Arc::new(ManualClock::starting_now());
        Self::start_on_clock(database_url, postgres_db, clock, configure).await
    }

    async fn start_on_clock(
        database_url: Option<String>,
        postgres_db: Option<String>,
        clock: Arc<ManualClock>,
        configure: impl FnOnce(&mut Config),
    ) -> Self {
        sqlx::any::install_default_drivers();
        // reqwest has no TLS provider of its own in this workspace (README.md,
        // "Following an https issuer").
        latchkey_verify::install_crypto_provider();
        capture_logs();
        let data_dir = tempfile::tempdir().expect("temp dir");
        let mut config = Config {
            listen: "127.0.0.1:0".parse().unwrap(),
            data_dir: data_dir.path().to_path_buf(),
            database_url: database_url.clone(),
            database_max_connections: 4,
            ..Config::default()
        };
        configure(&mut config);
        let database_url = config.database_url();
        let app = Application::build_with_clock(config, clock.clone())
            .await
            .expect("build app");
        let maintenance = app.maintenance();
        let tls = app.tls();
        let scheme = if tls.is_some() { "https" } else { "http" };
        let base = format!("{scheme}://127.0.0.1:{}", app.port());
        // A replica joins a bootstrapped database and shows no key; it borrows the first's.
        let root_key = app
            .root_key()
            .map(|key| key.expose().to_owned())
            .unwrap_or_default();
        tokio::spawn(async move {
            let _ = app.run_until_stopped().await;
        });
        Self {
            base,
            tls,
            root_key,
            data_dir,
            database_url,
            clock,
            maintenance: Some(maintenance),
            // A request that gets no answer fails its test, naming the request, rather
            // than hanging the suite.
            client: reqwest::Client::builder()
                .user_agent("latchkey-tests")
                .timeout(std::time::Duration::from_secs(60))
                .build()
                .expect("an HTTP client"),
            postgres_db,
        }
    }

    /// A request with an optional bearer key and JSON body.
    pub async fn call(
        &self,
        method: Method,
        path: &str,
        key: Option<&str>,
        body: Option<Value>,
    ) -> Reply {
        let mut request = self.client.request(method, format!("{}{path}", self.base));
        if let Some(key) = key {
            request = request.bearer_auth(key);
        }
        if let Some(body) = body {
            request = request.json(&body);
        }
        read(request.send().await.expect("request")).await
    }

    /// A request with a raw body and content type, as root.
    pub async fn raw(
        &self,
        method: Method,
        path: &str,
        content_type: &str,
        body: Vec<u8>,
    ) -> Reply {
        let request = self
            .client
            .request(method, format!("{}{path}", self.base))
            .bearer_auth(&self.root_key)
            .header("content-type", content_type)
            .body(body);
        read(request.send().await.expect("request")).await
    }

    /// A POST with a raw body and content type and the given `Authorization` value.
    pub async fn client_request_raw(
        &self,
        path: &str,
        authorization: &str,
        content_type: &str,
        body: Vec<u8>,
    ) -> Reply {
        let request = self
            .client
            .post(format!("{}{path}", self.base))
            .header("authorization", authorization)
            .header("content-type", content_type)
            .body(body);
        read(request.send().await.expect("request")).await
    }

    /// A request builder on the test client, for calls that need their own headers.
    pub fn request(&self, method: Method, path: &str) -> reqwest::RequestBuilder {
        self.client.request(method, format!("{}{path}", self.base))
    }

    /// Sends a request from [`Self::request`] and reads the reply.
    pub async fn send(&self, request: reqwest::RequestBuilder) -> Reply {
        read(request.send().await.expect("request")).await
    }

    pub async fn get(&self, path: &str) -> Reply {
        self.call(Method::GET, path, Some(&self.root_key), None)
            .await
    }

    pub async fn post(&self, path: &str, body: Value) -> Reply {
        self.call(Method::POST, path, Some(&self.root_key), Some(body))
            .await
    }

    pub async fn put(&self, path: &str, body: Value) -> Reply {
        self.call(Method::PUT, path, Some(&self.root_key), Some(body))
            .await
    }

    pub async fn patch(&self, path: &str, body: Value) -> Reply {
        self.call(Method::PATCH, path, Some(&self.root_key), Some(body))
            .await
    }

    pub async fn delete(&self, path: &str) -> Reply {
        self.call(Method::DELETE, path, Some(&self.root_key), None)
            .await
    }

    /// Permissions `reports:read`, `reports:write`, `billing:read`; roles `viewer`
    /// (reports:read) and `editor` (reports:read, reports:write).
    pub async fn seed_catalogue(&self) {
        for name in ["reports:read", "reports:write", "billing:read"] {
            self.put(
                &format!("/v1/permissions/{name}"),
                json!({ "description": name }),
            )
            .await
            .assert_status(200);
        }
        self.put(
            "/v1/roles/viewer",
            json!({ "permissions": ["reports:read"] }),
        )
        .await
        .assert_status(200);
        self.put(
            "/v1/roles/editor",
            json!({ "permissions": ["reports:read", "reports:write"] }),
        )
        .await
        .assert_status(200);
    }

    pub async fn create_tenant(&self, id: &str) {
        self.post("/v1/tenants", json!({ "id": id, "name": id }))
            .await
            .assert_status(201);
    }

    pub async fn put_member(&self, tenant: &str, user: &str, roles: &[&str]) {
        self.put(
            &format!("/v1/tenants/{tenant}/users/{user}"),
            json!({ "roles": roles }),
        )
        .await
        .assert_status(200);
    }

    /// Creates a tenant token and returns the whole create response.
    pub async fn create_tenant_token(&self, tenant: &str, body: Value) -> Value {
        let reply = self
            .post(&format!("/v1/tenants/{tenant}/tokens"), body)
            .await;
        reply.assert_status(201);
        reply.body
    }

    /// Creates a personal token and returns the whole create response.
    pub async fn create_personal_token(&self, tenant: &str, user: &str, body: Value) -> Value {
        let reply = self
            .post(&format!("/v1/tenants/{tenant}/users/{user}/tokens"), body)
            .await;
        reply.assert_status(201);
        reply.body
    }

    /// An api key of `tenant` holding `latchkey:manage`.
    pub async fn manager_key(&self, tenant: &str) -> String {
        let created = self
            .create_tenant_token(
                tenant,
                json!({ "name": "manager", "kind": "api_key", "permissions": ["latchkey:manage"] }),
            )
            .await;
        created["api_key"].as_str().unwrap().to_owned()
    }

    /// A form POST with an optional `Authorization` header.
    pub async fn form(
        &self,
        path: &str,
        authorization: Option<&str>,
        pairs: &[(&str, &str)],
    ) -> Reply {
        let body: Vec<String> = pairs
            .iter()
            .map(|(k, v)| format!("{}={}", encode(k), encode(v)))
            .collect();
        let mut request = self
            .client
            .post(format!("{}{path}", self.base))
            .header("content-type", "application/x-www-form-urlencoded")
            .body(body.join("&"));
        if let Some(value) = authorization {
            request = request.header("authorization", value);
        }
        read(request.send().await.expect("request")).await
    }

    /// `grant_type=client_credentials` with `client_secret_basic`, plus `extra` parameters.
    /// A client-credentials exchange through a proxy that says the client is at
    /// `forwarded_for` (`X-Forwarded-For`).
    pub async fn exchange_via(&self, client_id: &str, secret: &str, forwarded_for: &str) -> Reply {
        let request = self
            .request(Method::POST, "/oauth/token")
            .header("authorization", basic(client_id, secret))
            .header("content-type", "application/x-www-form-urlencoded")
            .header("x-forwarded-for", forwarded_for)
            .body("grant_type=client_credentials");
        self.send(request).await
    }

    pub async fn exchange(&self, client_id: &str, secret: &str, extra: &[(&str, &str)]) -> Reply {
        let mut pairs = vec![("grant_type", "client_credentials")];
        pairs.extend_from_slice(extra);
        self.form("/oauth/token", Some(&basic(client_id, secret)), &pairs)
            .await
    }

    /// Introspects `token` with the root key and returns the answer.
    pub async fn introspect(&self, token: &str) -> Value {
        self.introspect_as(&self.root_key.clone(), token, &[]).await
    }

    /// Introspects `token` with `credential` and `extra` parameters; returns the answer.
    pub async fn introspect_as(
        &self,
        credential: &str,
        token: &str,
        extra: &[(&str, &str)],
    ) -> Value {
        let mut pairs = vec![("token", token)];
        pairs.extend_from_slice(extra);
        let reply = self
            .form(
                "/oauth/introspect",
                Some(&format!("Bearer {credential}")),
                &pairs,
            )
            .await;
        reply.assert_status(200);
        assert_eq!(reply.header("cache-control"), "no-store");
        reply.body
    }

    /// A new system-tenant api key holding only `latchkey:introspect`, as gateways use.
    pub async fn introspection_key(&self) -> String {
        self.create_tenant_token(
            "latchkey",
            json!({ "name": "introspector", "kind": "api_key", "permissions": ["latchkey:introspect"] }),
        )
        .await["api_key"]
            .as_str()
            .unwrap()
            .to_owned()
    }

    /// A client-credentials token of `tenant` with `body` merged into the defaults;
    /// returns (client_id, client_secret, token id).
    pub async fn client(&self, tenant: &str, body: Value) -> (String, String) {
        let mut request = json!({ "name": "client", "kind": "client_credentials" });
        if let (Value::Object(target), Value::Object(extra)) = (&mut request, body) {
            target.extend(extra);
        }
        let created = self.create_tenant_token(tenant, request).await;
        (
            created["client_id"].as_str().unwrap().to_owned(),
            created["client_secret"].as_str().unwrap().to_owned(),
        )
    }

    /// A fresh connection pool to the server's database, for checking stored state.
    pub async fn db(&self) -> AnyPool {
        AnyPoolOptions::new()
            .max_connections(1)
            .connect(&self.database_url)
            .await
            .expect("connect to the test database")
    }

    /// How many audit events carry `action`.
    pub async fn audit_count(&self, action: &str) -> i64 {
        let db = self.db().await;
        let count: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM audit_events WHERE action = $1")
            .bind(action.to_owned())
            .fetch_one(&db)
            .await
            .unwrap();
        db.close().await;
        count
    }

    /// The events `GET /v1/audit?{query}` lists once there are at least `count`:
    /// authentications are group-committed a moment after the answer. Fails after 5 s.
    pub async fn wait_for_audit(&self, query: &str, count: usize) -> Vec<Value> {
        let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(5);
        loop {
            let items = self.get(&format!("/v1/audit?{query}")).await.body["items"]
                .as_array()
                .unwrap()
                .clone();
            if items.len() >= count {
                return items;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "group commit within 5 s: {query}"
            );
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
    }
}

/// The Python client docs/MACHINES.md shows under `heading` (its first ```python
/// block), written to `file` in `dir`, to run as the document says. `None` when python3 cannot
/// `import_line` and CI is not "true": the interop test then skips.
pub fn documented_python(
    heading: &str,
    import_line: &str,
    dir: &std::path::Path,
    file: &str,
) -> Option<std::path::PathBuf> {
    let available = std::process::Command::new("python3")
        .args(["-c", import_line])
        .status()
        .is_ok_and(|status| status.success());
    if !available && std::env::var("CI").as_deref() != Ok("true") {
        eprintln!("python3 cannot `{import_line}`; skipping the interop test");
        return None;
    }
    let doc = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../docs/MACHINES.md"
    ))
    .unwrap();
    let section = doc
        .split_once(&format!("## {heading}\n"))
        .unwrap_or_else(|| panic!("docs/MACHINES.md has the section {heading}"))
        .1;
    let code = section
        .split_once("```python\n")
        .and_then(|(_, rest)| rest.split_once("```"))
        .unwrap_or_else(|| panic!("the section {heading} of docs/MACHINES.md has a Python block"))
        .0;
    let script = dir.join(file);
    std::fs::write(&script, code).unwrap();
    Some(script)
}

/// Runs `python3 script args…`, expects success and parses the JSON it printed.
pub async fn run_python(script: std::path::PathBuf, args: Vec<String>) -> Value {
    let output = tokio::task::spawn_blocking(move || {
        std::process::Command::new("python3")
            .arg(&script)
            .args(&args)
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice(&output.stdout).unwrap()
}

/// An `Authorization: Basic` value (RFC 6749 §2.3.1).
pub fn basic(client_id: &str, secret: &str) -> String {
    use base64::Engine;
    let pair = format!("{}:{}", encode(client_id), encode(secret));
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(pair)
    )
}

/// Form-urlencodes `text`.
pub fn encode(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// A TCP relay in front of PostgreSQL that a test can cut and restore, to stage an
/// outage without stopping the database other tests use.
pub struct Relay {
    pub port: u16,
    cut: std::sync::Arc<std::sync::atomic::AtomicBool>,
    links: std::sync::Arc<Mutex<Vec<tokio::task::AbortHandle>>>,
}

impl Relay {
    /// Relays 127.0.0.1:`port` to `target`.
    pub async fn start(target: std::net::SocketAddr) -> Self {
        use std::sync::Arc;
        use std::sync::atomic::AtomicBool;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let cut = Arc::new(AtomicBool::new(false));
        let links: Arc<Mutex<Vec<tokio::task::AbortHandle>>> = Arc::new(Mutex::new(Vec::new()));
        let (accept_cut, accept_links) = (cut.clone(), links.clone());
        tokio::spawn(async move {
            while let Ok((mut inbound, _)) = listener.accept().await {
                if accept_cut.load(Ordering::SeqCst) {
                    continue;
                }
                let task = tokio::spawn(async move {
                    if let Ok(mut outbound) = tokio::net::TcpStream::connect(target).await {
                        let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                    }
                });
                accept_links.lock().unwrap().push(task.abort_handle());
            }
        });
        Self { port, cut, links }
    }

    /// Drops every relayed connection and refuses new ones.
    pub fn cut(&self) {
        self.cut.store(true, Ordering::SeqCst);
        for link in self.links.lock().unwrap().drain(..) {
            link.abort();
        }
    }

    /// Relays again.
    pub fn restore(&self) {
        self.cut.store(false, Ordering::SeqCst);
    }
}

async fn read(response: reqwest::Response) -> Reply {
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    let text = response.text().await.expect("body");
    let body = serde_json::from_str(&text).unwrap_or(Value::Null);
    Reply {
        status,
        headers,
        text,
        body,
    }
}

/// Drops databases that earlier runs of this binary left behind: those whose process
/// (the pid in the name) is gone. Another test process running now keeps its own.
async fn drop_stale_databases(admin: &AnyPool) {
    static DONE: OnceLock<()> = OnceLock::new();
    if DONE.set(()).is_err() {
        return;
    }
    let names: Vec<String> =
        sqlx::query_scalar("SELECT datname::text FROM pg_database WHERE datname LIKE 'lk_test_%'")
            .fetch_all(admin)
            .await
            .unwrap_or_default();
    let alive = |name: &str| {
        name.strip_prefix("lk_test_")
            .and_then(|rest| rest.split('_').next())
            .is_some_and(|pid| std::path::Path::new(&format!("/proc/{pid}")).exists())
    };
    for name in names.into_iter().filter(|n| !alive(n)) {
        let _ = sqlx::query(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
            .execute(admin)
            .await;
    }
}

impl Drop for TestApp {
    fn drop(&mut self) {
        let Some(name) = self.postgres_db.take() else {
            return;
        };
        let Ok(admin_url) = std::env::var(POSTGRES_ENV) else {
            return;
        };
        // The test's runtime is going away; drop the database from a runtime of our own.
        let _ = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            runtime.block_on(async move {
                if let Ok(admin) = AnyPoolOptions::new()
                    .max_connections(1)
                    .connect(&admin_url)
                    .await
                {
                    let _ = sqlx::query(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
                        .execute(&admin)
                        .await;
                    admin.close().await;
                }
            });
        })
        .join();
    }
}

/// Declares a test that runs once on SQLite and once on PostgreSQL (when configured).
#[macro_export]
macro_rules! both_backends {
    ($($name:ident),* $(,)?) => {$(
        mod $name {
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn sqlite() {
                super::$name($crate::helpers::TestApp::sqlite().await).await
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn postgres() {
                if let Some(app) = $crate::helpers::TestApp::postgres().await {
                    super::$name(app).await
                }
            }
        }
    )*};
}

/// Like [`both_backends!`], on servers whose configuration `configure` (a function of the
/// calling module) changes.
#[macro_export]
macro_rules! both_backends_with {
    ($configure:ident; $($name:ident),* $(,)?) => {$(
        mod $name {
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn sqlite() {
                super::$name($crate::helpers::TestApp::sqlite_with(super::$configure).await).await
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn postgres() {
                if let Some(app) = $crate::helpers::TestApp::postgres_with(super::$configure).await {
                    super::$name(app).await
                }
            }
        }
    )*};
}
