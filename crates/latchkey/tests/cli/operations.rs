//! Operating latchkey (docs/OPERATIONS.md): metrics and who may read them, request ids,
//! access logs that never hold a secret, backups under write load, break-glass
//! recovery, the configuration check, and the deploy files.

use super::{command, latchkey};
use latchkey_gateway::GatewayConfig;
use latchkey_server::Config;
use serde_json::Value;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use tempfile::TempDir;

/// A `latchkey serve` whose stderr goes to a file the test reads.
struct Logged {
    child: Child,
    url: String,
    address: String,
    root_key: String,
    log: PathBuf,
    dir: TempDir,
}

impl Drop for Logged {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Logged {
    /// Serves `data` (made if new) with JSON logs, `extra` flags added.
    fn start(dir: TempDir, data: &Path, extra: &[&str]) -> Self {
        let log = dir.path().join(format!(
            "serve-{}.log",
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos()
        ));
        let key_file = dir.path().join("root.key");
        let mut serve = command(&["serve", "--listen", "127.0.0.1:0", "--log-format", "json"]);
        serve
            .arg("--data-dir")
            .arg(data)
            .arg("--root-key-file")
            .arg(&key_file)
            .args(extra)
            .env("RUST_LOG", "info")
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap());
        let child = serve.spawn().unwrap();
        let deadline = Instant::now() + Duration::from_secs(60);
        let address = loop {
            let text = std::fs::read_to_string(&log).unwrap_or_default();
            if let Some((_, rest)) = text.split_once("listening on http://") {
                break rest
                    .chars()
                    .take_while(|c| c.is_ascii_digit() || *c == '.' || *c == ':')
                    .collect::<String>();
            }
            assert!(Instant::now() < deadline, "server did not start:\n{text}");
            std::thread::sleep(Duration::from_millis(50));
        };
        let root_key = std::fs::read_to_string(&key_file)
            .unwrap_or_default()
            .trim()
            .to_owned();
        Self {
            child,
            url: format!("http://{address}"),
            address,
            root_key,
            log,
            dir,
        }
    }

    fn logs(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap()
    }
}

/// One HTTP/1.1 exchange over a fresh connection, with the head written as given.
struct Answer {
    status: u16,
    head: String,
    body: String,
}

impl Answer {
    fn header(&self, name: &str) -> Option<String> {
        self.head.lines().find_map(|line| {
            let (key, value) = line.split_once(':')?;
            key.eq_ignore_ascii_case(name)
                .then(|| value.trim().to_owned())
        })
    }
}

fn http(address: &str, method: &str, path: &str, headers: &[(&str, &[u8])], body: &str) -> Answer {
    let mut stream = TcpStream::connect(address).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    let mut request = format!(
        "{method} {path} HTTP/1.1\r\nHost: {address}\r\nConnection: close\r\nContent-Length: {}\r\n",
        body.len()
    )
    .into_bytes();
    for (name, value) in headers {
        request.extend_from_slice(name.as_bytes());
        request.extend_from_slice(b": ");
        request.extend_from_slice(value);
        request.extend_from_slice(b"\r\n");
    }
    request.extend_from_slice(b"\r\n");
    request.extend_from_slice(body.as_bytes());
    stream.write_all(&request).unwrap();
    let mut raw = Vec::new();
    let _ = stream.read_to_end(&mut raw);
    let text = String::from_utf8_lossy(&raw).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    Answer {
        status,
        head: head.to_owned(),
        body: body.to_owned(),
    }
}

fn bearer(key: &str) -> String {
    format!("Bearer {key}")
}

fn get(address: &str, path: &str, key: &str) -> Answer {
    http(
        address,
        "GET",
        path,
        &[("Authorization", bearer(key).as_bytes())],
        "",
    )
}

fn post_json(address: &str, path: &str, key: &str, body: &str) -> Answer {
    http(
        address,
        "POST",
        path,
        &[
            ("Authorization", bearer(key).as_bytes()),
            ("Content-Type", b"application/json"),
        ],
        body,
    )
}

fn json(answer: &Answer) -> Value {
    // Bodies may come chunked; the JSON object is between the first { and last }.
    let start = answer.body.find('{').unwrap_or(0);
    let end = answer.body.rfind('}').map_or(answer.body.len(), |i| i + 1);
    serde_json::from_str(&answer.body[start..end])
        .unwrap_or_else(|e| panic!("no JSON ({e}): {}", answer.body))
}

fn new_server(extra: &[&str]) -> Logged {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    Logged::start(dir, &data, extra)
}

fn create_tenant_api_key(server: &Logged, tenant: &str, permissions: &str) -> (String, String) {
    let made = post_json(
        &server.address,
        &format!("/v1/tenants/{tenant}/tokens"),
        &server.root_key,
        &format!(r#"{{"name":"k","kind":"api_key","permissions":{permissions}}}"#),
    );
    assert_eq!(made.status, 201, "{}", made.body);
    let body = json(&made);
    (
        body["token"]["id"].as_str().unwrap().to_owned(),
        body["api_key"].as_str().unwrap().to_owned(),
    )
}

#[test]
fn metrics_are_read_only_with_an_introspect_or_admin_credential_and_label_route_templates() {
    let server = new_server(&[]);
    let created = post_json(
        &server.address,
        "/v1/tenants",
        &server.root_key,
        r#"{"id":"acme","name":"Acme"}"#,
    );
    assert_eq!(created.status, 201, "{}", created.body);
    assert_eq!(
        get(&server.address, "/v1/tenants/acme", &server.root_key).status,
        200
    );

    // No credential: 401. A tenant manager: 403. Neither sees a metric.
    let anonymous = http(&server.address, "GET", "/metrics", &[], "");
    assert_eq!(anonymous.status, 401);
    assert!(!anonymous.body.contains("latchkey_http_requests"));
    let (_, manager) = create_tenant_api_key(&server, "acme", r#"["latchkey:manage"]"#);
    let refused = get(&server.address, "/metrics", &manager);
    assert_eq!(refused.status, 403, "{}", refused.body);
    assert!(!refused.body.contains("latchkey_http_requests"));

    // A gateway's credential (latchkey:introspect) and the admin may read them.
    let (_, introspect) = create_tenant_api_key(&server, "latchkey", r#"["latchkey:introspect"]"#);
    let scraped = get(&server.address, "/metrics", &introspect);
    assert_eq!(scraped.status, 200, "{}", scraped.body);
    assert!(
        scraped
            .header("content-type")
            .unwrap()
            .starts_with("application/openmetrics-text")
    );
    let text = &scraped.body;
    assert!(
        text.contains(
            r#"latchkey_http_requests_total{route="/v1/tenants/{tid}",method="GET",status="200"} 1"#
        ),
        "{text}"
    );
    assert!(
        !text.contains("/v1/tenants/acme"),
        "a raw path became a label:\n{text}"
    );
    for family in [
        "latchkey_http_request_duration_seconds_bucket{le=\"0.00005\",route=\"/v1/tenants/{tid}\"}",
        "latchkey_revocations_total",
        "latchkey_feed_followers 0",
        "latchkey_audit_queue_depth",
        "latchkey_webhook_outbox_depth 0",
        "latchkey_db_connections{state=\"max\"}",
    ] {
        assert!(text.contains(family), "{family} missing:\n{text}");
    }
    // A raw path that matches no route is counted as `unmatched`.
    assert_eq!(
        get(&server.address, "/nowhere/secret-looking", &server.root_key).status,
        404
    );
    let again = get(&server.address, "/metrics", &server.root_key).body;
    assert!(again.contains(r#"route="unmatched""#), "{again}");
    assert!(!again.contains("secret-looking"));
}

#[test]
fn with_metrics_off_nothing_is_recorded_and_metrics_is_404() {
    let server = new_server(&["--metrics-enabled", "false"]);
    let scraped = get(&server.address, "/metrics", &server.root_key);
    assert_eq!(scraped.status, 404);
    assert!(!scraped.body.contains("latchkey_http_requests"));
}

#[test]
fn a_sane_request_id_is_echoed_an_insane_one_replaced_and_logs_never_hold_a_secret() {
    let server = new_server(&[]);
    let kept = http(
        &server.address,
        "GET",
        "/healthz",
        &[("X-Request-Id", b"trace-42.a:b_c")],
        "",
    );
    assert_eq!(kept.status, 200);
    assert_eq!(
        kept.header("x-request-id").as_deref(),
        Some("trace-42.a:b_c")
    );
    let long = "x".repeat(65);
    for insane in [
        long.as_bytes(),
        b"has space",
        b"tab\there",
        "caf\u{e9}".as_bytes(),
        b"a,b",
        b"<script>alert(1)</script>",
        b"\"quoted\"",
    ] {
        let answer = http(
            &server.address,
            "GET",
            "/healthz",
            &[("X-Request-Id", insane)],
            "",
        );
        assert_eq!(answer.status, 200);
        let id = answer.header("x-request-id").unwrap();
        assert_ne!(id.as_bytes(), insane);
        assert!(
            !id.is_empty()
                && id.len() <= 64
                && id
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"._:-".contains(&b)),
            "{id}"
        );
    }
    // Every answer has one, generated when the client sent none.
    let generated = http(&server.address, "GET", "/healthz", &[], "");
    assert!(generated.header("x-request-id").is_some());
    // A second request id header, or a header split attempt, is never echoed.
    let split = http(
        &server.address,
        "GET",
        "/healthz",
        &[
            ("X-Request-Id", b"a"),
            ("X-Request-Id", b"b\x0bSet-Cookie: x=1"),
        ],
        "",
    );
    assert!(
        !split.head.to_ascii_lowercase().contains("set-cookie"),
        "{}",
        split.head
    );

    // A client exchanges its secret; the access log names the token and tenant but
    // holds neither the secret nor the root key.
    let created = post_json(
        &server.address,
        "/v1/tenants",
        &server.root_key,
        r#"{"id":"acme","name":"Acme"}"#,
    );
    assert_eq!(created.status, 201);
    let client = json(&post_json(
        &server.address,
        "/v1/tenants/acme/tokens",
        &server.root_key,
        r#"{"name":"ci","kind":"client_credentials","permissions":[]}"#,
    ));
    let client_id = client["client_id"].as_str().unwrap().to_owned();
    let secret = client["client_secret"].as_str().unwrap().to_owned();
    let form =
        format!("grant_type=client_credentials&client_id={client_id}&client_secret={secret}");
    let exchanged = http(
        &server.address,
        "POST",
        "/oauth/token",
        &[
            ("Content-Type", b"application/x-www-form-urlencoded"),
            ("X-Request-Id", b"exchange-1"),
        ],
        &form,
    );
    assert_eq!(exchanged.status, 200, "{}", exchanged.body);
    let access_token = json(&exchanged)["access_token"]
        .as_str()
        .unwrap()
        .to_owned();
    std::thread::sleep(Duration::from_millis(300));
    let logs = server.logs();
    for secret in [&secret, &access_token] {
        assert!(!logs.contains(secret.as_str()), "a secret reached the log");
    }
    // The root key is shown once, on the first start, on its own line; no log line
    // of a request that presented it holds it.
    let root_lines: Vec<&str> = logs
        .lines()
        .filter(|line| line.contains(server.root_key.as_str()))
        .collect();
    assert_eq!(root_lines.len(), 1, "{root_lines:?}");
    assert!(root_lines[0].starts_with("root key: "));
    let line: Value = logs
        .lines()
        .filter_map(|line| serde_json::from_str::<Value>(line).ok())
        .find(|line| {
            line["span"]["request_id"] == "exchange-1" && line["target"] == "latchkey::access"
        })
        .unwrap_or_else(|| panic!("no access line for the exchange:\n{logs}"));
    assert_eq!(line["fields"]["status"], 200);
    assert!(line["fields"]["duration_us"].is_u64());
    assert_eq!(line["span"]["route"], "/oauth/token");
    assert_eq!(line["span"]["method"], "POST");
    assert_eq!(line["span"]["token_id"], client_id.as_str());
    assert_eq!(line["span"]["tenant"], "acme");
    // Every line is one JSON object.
    // (The first start's root-key notice is printed for a person, not logged.)
    let notice = |l: &str| l.starts_with("root key: ") || l.starts_with("Keep it safe");
    for line in logs.lines().filter(|l| !l.trim().is_empty() && !notice(l)) {
        assert!(
            serde_json::from_str::<Value>(line).is_ok(),
            "not JSON: {line}"
        );
    }
}

#[test]
fn a_backup_taken_under_write_load_restores_every_acknowledged_write() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let server = Logged::start(tempfile::tempdir().unwrap(), &data, &[]);
    let created = post_json(
        &server.address,
        "/v1/tenants",
        &server.root_key,
        r#"{"id":"acme","name":"Acme"}"#,
    );
    assert_eq!(created.status, 201);
    // A writer creates tokens as fast as it can; what it saw acknowledged before the
    // backup started must be in the copy.
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let acknowledged = std::sync::Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
    let writer = {
        let (stop, acknowledged) = (stop.clone(), acknowledged.clone());
        let (address, key) = (server.address.clone(), server.root_key.clone());
        std::thread::spawn(move || {
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let made = post_json(
                    &address,
                    "/v1/tenants/acme/tokens",
                    &key,
                    r#"{"name":"w","kind":"api_key","permissions":[]}"#,
                );
                if made.status == 201 {
                    let id = json(&made)["token"]["id"].as_str().unwrap().to_owned();
                    acknowledged.lock().unwrap().push(id);
                }
            }
        })
    };
    while acknowledged.lock().unwrap().len() < 20 {
        std::thread::sleep(Duration::from_millis(10));
    }
    let before: Vec<String> = acknowledged.lock().unwrap().clone();
    let copy = dir.path().join("backup.db");
    let run = command(&["backup", "--to"])
        .arg(&copy)
        .arg("--data-dir")
        .arg(&data)
        .output()
        .unwrap();
    assert!(
        run.status.success(),
        "{}",
        String::from_utf8_lossy(&run.stderr)
    );
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    writer.join().unwrap();
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&copy).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
    }
    // Never overwrites.
    let again = command(&["backup", "--to"])
        .arg(&copy)
        .arg("--data-dir")
        .arg(&data)
        .output()
        .unwrap();
    assert!(!again.status.success());
    assert!(String::from_utf8_lossy(&again.stderr).contains("never overwrites"));
    // PostgreSQL is pg_dump's.
    let postgres = command(&["backup", "--to"])
        .arg(dir.path().join("pg.db"))
        .args(["--database-url", "postgres://postgres@127.0.0.1:5432/test"])
        .output()
        .unwrap();
    assert!(!postgres.status.success());
    assert!(String::from_utf8_lossy(&postgres.stderr).contains("pg_dump"));
    assert!(!dir.path().join("pg.db").exists());

    // Restore: the copy as the database, beside the same pepper and master key.
    let restored = dir.path().join("restored");
    std::fs::create_dir(&restored).unwrap();
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&restored, std::fs::Permissions::from_mode(0o700)).unwrap();
    }
    for file in ["pepper", "master.key"] {
        std::fs::copy(data.join(file), restored.join(file)).unwrap();
    }
    std::fs::copy(&copy, restored.join("latchkey.db")).unwrap();
    let root = server.root_key.clone();
    drop(server);
    let second = Logged::start(tempfile::tempdir().unwrap(), &restored, &[]);
    assert!(
        second.root_key.is_empty(),
        "a restored server made a new root key"
    );
    for id in &before {
        let found = get(&second.address, &format!("/v1/tokens/{id}"), &root);
        assert_eq!(found.status, 200, "token {id} lost: {}", found.body);
    }
}

#[test]
fn recover_makes_a_new_root_key_when_every_admin_key_is_revoked_and_audits_it() {
    let server = new_server(&[]);
    let tokens = json(&get(
        &server.address,
        "/v1/tenants/latchkey/tokens",
        &server.root_key,
    ));
    let root_id = tokens["items"][0]["id"].as_str().unwrap().to_owned();
    let revoked = http(
        &server.address,
        "DELETE",
        &format!("/v1/tokens/{root_id}"),
        &[("Authorization", bearer(&server.root_key).as_bytes())],
        "",
    );
    assert_eq!(revoked.status, 204, "{}", revoked.body);
    assert_eq!(
        get(&server.address, "/v1/tenants", &server.root_key).status,
        401
    );

    let data = server.dir.path().join("data");
    let run = command(&["admin", "recover", "--data-dir"])
        .arg(&data)
        .output()
        .unwrap();
    assert!(
        run.status.success(),
        "{}",
        String::from_utf8_lossy(&run.stderr)
    );
    let key = String::from_utf8(run.stdout).unwrap().trim().to_owned();
    assert!(key.starts_with("lk_ak_"), "{key}");
    assert_eq!(get(&server.address, "/v1/tenants", &key).status, 200);
    let audit = json(&get(
        &server.address,
        "/v1/audit?action=token.created",
        &key,
    ));
    assert!(
        audit["items"]
            .as_array()
            .unwrap()
            .iter()
            .any(|event| event["actor"] == "break-glass:recover"),
        "{audit}"
    );
    // Without the server's files nothing is created.
    let empty = tempfile::tempdir().unwrap();
    let refused = command(&["admin", "recover", "--data-dir"])
        .arg(empty.path())
        .output()
        .unwrap();
    assert!(!refused.status.success());
    assert!(String::from_utf8_lossy(&refused.stderr).contains("does not exist"));
    assert!(!empty.path().join("latchkey.db").exists());
}

#[test]
fn check_config_summarises_a_good_configuration_and_names_the_bad_key() {
    let dir = tempfile::tempdir().unwrap();
    let good = dir.path().join("good.toml");
    std::fs::write(
        &good,
        "listen = \"127.0.0.1:7799\"\nmetrics_enabled = false\n",
    )
    .unwrap();
    let data = dir.path().join("data");
    let run = command(&["serve", "--check-config", "--config"])
        .arg(&good)
        .arg("--data-dir")
        .arg(&data)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&run.stdout);
    assert!(
        run.status.success(),
        "{}",
        String::from_utf8_lossy(&run.stderr)
    );
    assert!(stdout.contains("listen: 127.0.0.1:7799"), "{stdout}");
    assert!(
        stdout.contains("absent: created on first start"),
        "{stdout}"
    );
    assert!(stdout.contains("configuration ok"));
    assert!(!data.exists(), "a check created the data directory");
    for (text, key) in [
        ("max_connections = 0\n", "max_connections"),
        ("listen = \"nowhere\"\n", "listen"),
        ("signing_algorithm = \"HS256\"\n", "signing_algorithm"),
        ("no_such_key = 1\n", "no_such_key"),
        (
            "tls_cert_file = \"/nonexistent.pem\"\ntls_key_file = \"/nonexistent.key\"\n",
            "tls_cert_file",
        ),
    ] {
        let bad = dir.path().join("bad.toml");
        std::fs::write(&bad, text).unwrap();
        for args in [
            &["serve", "--check-config", "--config"][..],
            &["serve", "--config"][..],
        ] {
            let run = command(args)
                .arg(&bad)
                .arg("--data-dir")
                .arg(&data)
                .args(["--listen", "127.0.0.1:0"])
                .output()
                .unwrap();
            let stderr = String::from_utf8_lossy(&run.stderr);
            assert!(!run.status.success(), "{text} accepted");
            assert!(stderr.contains(key), "{text}: {stderr}");
        }
    }
    // A key file others may read is refused by the check, naming it.
    std::fs::create_dir_all(&data).unwrap();
    std::fs::write(data.join("pepper"), "short").unwrap();
    let run = command(&["serve", "--check-config", "--data-dir"])
        .arg(&data)
        .output()
        .unwrap();
    assert!(!run.status.success());
    assert!(String::from_utf8_lossy(&run.stderr).contains("pepper"));
}

#[test]
fn the_gateway_serves_metrics_on_its_own_listener_to_allowed_peers_only() {
    let server = new_server(&[]);
    let (_, credential) = create_tenant_api_key(&server, "latchkey", r#"["latchkey:introspect"]"#);
    let dir = tempfile::tempdir().unwrap();
    // Both listeners bind port 0 and the addresses come from the gateway's log, so no other
    // process can take a port between choosing it and the gateway binding it.
    let start = |allowed: &str| {
        let name = if allowed.contains("127.") {
            "allowed"
        } else {
            "refused"
        };
        let config = dir.path().join(format!("gateway-{name}.toml"));
        let log = dir.path().join(format!("gateway-{name}.log"));
        std::fs::write(
            &config,
            format!(
                "listen = \"127.0.0.1:0\"\nserver = \"{}\"\ncredential = \"{credential}\"\n\
                 metrics_listen = \"127.0.0.1:0\"\nmetrics_allowed_networks = {allowed}\n\
                 [[route]]\nprefix = \"/healthz\"\nupstream = \"{}\"\npublic = true\n",
                server.url, server.url
            ),
        )
        .unwrap();
        let mut child = KillOnDrop(
            command(&["gateway", "--config"])
                .arg(&config)
                .env("RUST_LOG", "info")
                .env("NO_COLOR", "1")
                .stdout(Stdio::null())
                .stderr(std::fs::File::create(&log).unwrap())
                .spawn()
                .unwrap(),
        );
        let address_after = |text: &str, marker: &str| {
            let (_, rest) = text.split_once(marker)?;
            let address: String = rest
                .chars()
                .take_while(|c| c.is_ascii_digit() || *c == '.' || *c == ':')
                .collect();
            Some(address)
        };
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let text = std::fs::read_to_string(&log).unwrap_or_default();
            let proxy = address_after(&text, "gateway listening on http://");
            let metrics = address_after(&text, "gateway metrics on http://");
            if let (Some(proxy), Some(metrics)) = (proxy, metrics) {
                return (child, proxy, metrics);
            }
            let exited = child.0.try_wait().unwrap();
            assert!(exited.is_none(), "the gateway exited ({exited:?}):\n{text}");
            assert!(
                Instant::now() < deadline,
                "the gateway did not start:\n{text}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    };
    let (_gateway, proxy, metrics) = start(r#"["127.0.0.0/8"]"#);
    let through = http(
        &proxy,
        "GET",
        "/healthz",
        &[("X-Request-Id", b"via-gateway")],
        "",
    );
    assert_eq!(through.status, 200, "{}", through.body);
    assert_eq!(
        through.header("x-request-id").as_deref(),
        Some("via-gateway")
    );
    let insane = http(
        &proxy,
        "GET",
        "/healthz",
        &[("X-Request-Id", b"bad id")],
        "",
    );
    assert_ne!(insane.header("x-request-id").as_deref(), Some("bad id"));
    assert_eq!(http(&proxy, "GET", "/nope", &[], "").status, 404);
    let scraped = http(&metrics, "GET", "/metrics", &[], "");
    assert_eq!(scraped.status, 200);
    for family in [
        r#"latchkey_gateway_requests_total{route="/healthz",method="GET",status="200"} 2"#,
        r#"latchkey_gateway_requests_total{route="unmatched",method="GET",status="404"} 1"#,
        "latchkey_gateway_request_duration_seconds_bucket{le=\"0.00005\",route=\"/healthz\"}",
        "latchkey_gateway_replica_seq ",
        "latchkey_gateway_replica_stale 0",
        "latchkey_gateway_replica_lag ",
    ] {
        assert!(
            scraped.body.contains(family),
            "{family} missing:\n{}",
            scraped.body
        );
    }
    // Only /metrics, and nothing on the proxy listener.
    assert_eq!(http(&metrics, "GET", "/other", &[], "").status, 404);
    assert_ne!(http(&proxy, "GET", "/metrics", &[], "").status, 200);
    // A peer outside metrics_allowed_networks gets 403.
    let (_other, _, refused) = start(r#"["10.0.0.0/8"]"#);
    let denied = http(&refused, "GET", "/metrics", &[], "");
    assert_eq!(denied.status, 403);
    assert!(!denied.body.contains("latchkey_gateway"));
}

struct KillOnDrop(Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

const DEPLOY: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../deploy");

#[test]
fn the_example_configurations_load_with_the_real_parsers() {
    let server = std::fs::read_to_string(format!("{DEPLOY}/latchkey.toml")).unwrap();
    let config = Config::from_toml(&server).unwrap();
    config.validate().unwrap();
    assert!(config.metrics_enabled);
    let gateway = std::fs::read_to_string(format!("{DEPLOY}/gateway.toml")).unwrap();
    let config = GatewayConfig::from_toml(&gateway).unwrap();
    config.validate().unwrap();
    assert!(config.metrics_listen.is_some());
}

#[test]
fn the_systemd_units_are_hardened_and_verify() {
    for unit in ["latchkey.service", "latchkey-gateway.service"] {
        let path = format!("{DEPLOY}/{unit}");
        let text = std::fs::read_to_string(&path).unwrap();
        for setting in [
            "DynamicUser=yes",
            "ProtectSystem=strict",
            "NoNewPrivileges=yes",
            "PrivateTmp=yes",
            "ProtectHome=yes",
            "CapabilityBoundingSet=",
        ] {
            assert!(text.contains(setting), "{unit} lacks {setting}");
        }
        let Ok(output) = Command::new("systemd-analyze")
            .args(["verify", "--man=no"])
            .arg(&path)
            .output()
        else {
            println!("skipped systemd-analyze verify of {unit}: systemd-analyze is not installed");
            continue;
        };
        let stderr = String::from_utf8_lossy(&output.stderr);
        // The binary path of the unit need not exist on a test machine.
        let complaints: Vec<&str> = stderr
            .lines()
            .filter(|l| !l.contains("/usr/local/bin/latchkey") && !l.trim().is_empty())
            .collect();
        assert!(complaints.is_empty(), "{unit}: {stderr}");
    }
    let _ = latchkey;
}
