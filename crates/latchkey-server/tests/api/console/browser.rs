//! The console in a real browser: Debian's Chromium driven through chromedriver's W3C
//! WebDriver HTTP API with the tests' own HTTP client. Without chromium and
//! chromedriver the test says why and passes, except under `CI=true` (where `.ci/run`
//! installs them) where it fails. With `LATCHKEY_SCREENSHOTS_DIR` set it also saves the
//! screenshots docs/CONSOLE.md shows.

use crate::helpers::TestApp;
use base64::Engine;
use serde_json::{Value, json};
use std::process::{Child, Command, Stdio};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const ELEMENT: &str = "element-6066-11e4-a52e-4f735466cecf";

fn find_binary(names: &[&str]) -> Option<String> {
    let path = std::env::var("PATH").unwrap_or_default();
    names.iter().find_map(|name| {
        std::env::split_paths(&path)
            .map(|dir| dir.join(name))
            .find(|candidate| candidate.is_file())
            .map(|found| found.display().to_string())
    })
}

/// A chromedriver process and one browser session in it.
struct Browser {
    driver: Child,
    /// Chromium's profile, removed with the browser.
    _profile: tempfile::TempDir,
    http: reqwest::Client,
    url: String,
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}

impl Browser {
    async fn start(chromium: &str, chromedriver: &str) -> Self {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let driver = Command::new(chromedriver)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start chromedriver");
        let http = reqwest::Client::new();
        let base = format!("http://127.0.0.1:{port}");
        let profile = tempfile::tempdir().unwrap();
        let profile_arg = format!("--user-data-dir={}", profile.path().display());
        for _ in 0..100 {
            if http.get(format!("{base}/status")).send().await.is_ok() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let mut browser = Self {
            driver,
            _profile: profile,
            http,
            url: base.clone(),
        };
        let created = browser
            .call(
                reqwest::Method::POST,
                "/session",
                json!({"capabilities": {"alwaysMatch": {
                    "browserName": "chrome",
                    "goog:loggingPrefs": {"browser": "ALL"},
                    "goog:chromeOptions": {
                        "binary": chromium,
                        "args": ["--headless=new", "--no-sandbox", "--disable-gpu",
                                 "--disable-dev-shm-usage", "--window-size=1280,900", profile_arg]
                    }
                }}}),
            )
            .await;
        let id = created["sessionId"].as_str().expect("a WebDriver session");
        browser.url = format!("{base}/session/{id}");
        browser
    }

    async fn call(&self, method: reqwest::Method, path: &str, body: Value) -> Value {
        let mut request = self
            .http
            .request(method.clone(), format!("{}{path}", self.url));
        if method != reqwest::Method::GET {
            request = request.json(&body);
        }
        let reply: Value = request.send().await.unwrap().json().await.unwrap();
        assert!(
            reply["value"]["error"].is_null(),
            "WebDriver {path}: {reply}"
        );
        reply["value"].clone()
    }

    async fn post(&self, path: &str, body: Value) -> Value {
        self.call(reqwest::Method::POST, path, body).await
    }

    async fn get(&self, path: &str) -> Value {
        self.call(reqwest::Method::GET, path, Value::Null).await
    }

    async fn goto(&self, url: &str) {
        self.post("/url", json!({ "url": url })).await;
    }

    async fn current_url(&self) -> String {
        self.get("/url").await.as_str().unwrap().to_owned()
    }

    async fn source(&self) -> String {
        self.get("/source").await.as_str().unwrap().to_owned()
    }

    async fn find(&self, css: &str) -> String {
        let found = self
            .post("/element", json!({"using": "css selector", "value": css}))
            .await;
        found[ELEMENT]
            .as_str()
            .unwrap_or_else(|| panic!("no element {css}: {found}"))
            .to_owned()
    }

    async fn click(&self, css: &str) {
        let element = self.find(css).await;
        self.post(&format!("/element/{element}/click"), json!({}))
            .await;
    }

    async fn type_into(&self, css: &str, text: &str) {
        let element = self.find(css).await;
        self.post(
            &format!("/element/{element}/value"),
            json!({ "text": text }),
        )
        .await;
    }

    async fn property(&self, css: &str, name: &str) -> Value {
        let element = self.find(css).await;
        self.get(&format!("/element/{element}/property/{name}"))
            .await
    }

    async fn script(&self, script: &str) -> Value {
        self.post("/execute/sync", json!({"script": script, "args": []}))
            .await
    }

    async fn resize(&self, width: u32, height: u32) {
        self.post("/window/rect", json!({"width": width, "height": height}))
            .await;
    }

    /// The browser console's messages since the last call.
    async fn log(&self) -> Vec<String> {
        let reply = self
            .http
            .post(format!("{}/se/log", self.url))
            .json(&json!({"type": "browser"}))
            .send()
            .await
            .unwrap()
            .json::<Value>()
            .await
            .unwrap();
        reply["value"]
            .as_array()
            .map(|entries| {
                entries
                    .iter()
                    .map(|e| e["message"].as_str().unwrap_or("").to_owned())
                    .collect()
            })
            .unwrap_or_default()
    }

    async fn screenshot(&self, name: &str) {
        let Ok(dir) = std::env::var("LATCHKEY_SCREENSHOTS_DIR") else {
            return;
        };
        let png = self.get("/screenshot").await;
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(png.as_str().unwrap())
            .unwrap();
        std::fs::write(
            std::path::Path::new(&dir).join(format!("{name}.png")),
            bytes,
        )
        .unwrap();
    }

    /// Whether the page fits the window's width (nothing scrolls sideways).
    async fn fits_width(&self) -> bool {
        self.script("return document.documentElement.scrollWidth <= window.innerWidth + 1")
            .await
            == json!(true)
    }

    /// Fills in and sends the open "Create a token" form: `name`, the first scope.
    async fn create_token(&self, name: &str) -> String {
        self.wait_for_text("Create a token").await;
        self.type_into("#name", name).await;
        self.click("#perm-0").await;
        self.click("button[type=submit]:not(nav button)").await;
        self.wait_for_text("You won't see it again").await
    }

    /// A screenshot of the whole page at `width`, not just what the window shows; the
    /// window is `width` × `height` again afterwards.
    async fn screenshot_whole(&self, name: &str, width: u32, height: u32) {
        if std::env::var("LATCHKEY_SCREENSHOTS_DIR").is_err() {
            return;
        }
        let tall = self
            .script("return document.documentElement.scrollHeight")
            .await
            .as_u64()
            .unwrap();
        self.resize(width, u32::try_from(tall).unwrap().max(height) + 100)
            .await;
        self.screenshot(name).await;
        self.resize(width, height).await;
    }

    async fn wait_for_text(&self, text: &str) -> String {
        for _ in 0..50 {
            let source = self.source().await;
            if source.contains(text) {
                return source;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("the page never showed {text:?}: {}", self.source().await);
    }
}

/// A page on another site (`localhost` is not the site of `127.0.0.1`) that posts a
/// forged form to the console as soon as it loads.
async fn attacker_site(target: String) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let page = format!(
        "<!doctype html><form id=f method=post action=\"{target}\">\
         <input name=owner value=me><input name=name value=forged>\
         <input name=kind value=api_key><input name=permissions value=reports:read></form>\
         <script>document.getElementById('f').submit()</script>"
    );
    tokio::spawn(async move {
        while let Ok((mut socket, _)) = listener.accept().await {
            let mut buffer = [0u8; 4096];
            let _ = socket.read(&mut buffer).await;
            let reply = format!(
                "HTTP/1.1 200 OK\r\ncontent-type: text/html\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{page}",
                page.len()
            );
            let _ = socket.write_all(reply.as_bytes()).await;
        }
    });
    format!("http://localhost:{port}/")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_user_makes_sees_once_copies_and_revokes_a_token_in_chromium() {
    let (Some(chromium), Some(chromedriver)) = (
        find_binary(&["chromium", "chromium-browser", "google-chrome"]),
        find_binary(&["chromedriver"]),
    ) else {
        let why =
            "chromium or chromedriver is not installed (apt-get install chromium chromium-driver)";
        if std::env::var("CI").is_ok_and(|v| v == "true") {
            panic!("CI=true: the browser tests cannot be skipped: {why}");
        }
        eprintln!("skipping the console's browser test: {why}");
        return;
    };
    let app = TestApp::sqlite().await;
    app.seed_catalogue().await;
    app.create_tenant("acme").await;
    app.put_member("acme", "u_42", &["viewer"]).await;
    app.create_tenant_token(
        "acme",
        json!({"name": "shared", "kind": "api_key", "roles": ["viewer"]}),
    )
    .await;
    let made = app
        .call(
            reqwest::Method::POST,
            "/v1/tenants/acme/users/u_42/console-sessions",
            Some(&app.root_key),
            None,
        )
        .await;
    made.assert_status(201);
    let session_url = made.body["url"].as_str().unwrap().to_owned();
    let browser = Browser::start(&chromium, &chromedriver).await;

    // Open the session URL: redirected at once, the code gone from the address bar.
    browser.goto(&session_url).await;
    assert_eq!(
        browser.current_url().await,
        format!("{}/console/t/acme/tokens", app.base)
    );
    let list = browser.wait_for_text("No tokens yet").await;
    // A user without latchkey:manage sees no tenant tokens.
    assert!(!list.contains("Tenant tokens") && !list.contains("shared"));
    browser.screenshot("console-empty-desktop").await;

    // Create a personal token with the keyboard-labelled form.
    browser.click("a.button").await;
    let shown = browser.create_token("laptop").await;
    let secret = browser.property("#secret", "value").await;
    let secret = secret.as_str().unwrap().to_owned();
    assert!(secret.starts_with("lk_ak_"), "{secret}");
    assert!(shown.contains(&secret));
    assert!(!browser.current_url().await.contains(&secret));
    browser.screenshot("console-secret-once-desktop").await;
    // The copy button is there (shown by the script) and answers a click.
    browser.click("button[data-copy]").await;
    for _ in 0..30 {
        let text = browser.property("button[data-copy]", "textContent").await;
        if text != "Copy" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let said = browser.property("button[data-copy]", "textContent").await;
    assert_ne!(said, "Copy", "the copy button did nothing");

    // Reload: the secret is gone.
    browser.post("/refresh", json!({})).await;
    let reloaded = browser.wait_for_text("Secret already shown").await;
    assert!(!reloaded.contains(&secret));

    // The token's page charts what a gateway reported, then revoke with confirmation;
    // the API agrees.
    let laptop = app.get("/v1/tenants/acme/users/u_42/tokens").await.body["items"][0]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    super::report_usage(
        &app,
        &laptop,
        &[
            ("/reports", "203.0.113.7", 40, 0),
            ("/reports", "198.51.100.2", 25, 1),
            ("/billing", "203.0.113.7", 12, 1),
            ("/reports", "203.0.113.7", 31, 3),
            ("/billing", "198.51.100.2", 9, 6),
        ],
    )
    .await;
    browser.click("main a").await;
    let charted = browser.wait_for_text("requests per day").await;
    assert!(
        charted.contains("Requests per day by route"),
        "no chart drawn"
    );
    browser
        .screenshot_whole("console-token-desktop", 1280, 900)
        .await;
    browser
        .goto(&format!("{}/console/t/acme/tokens", app.base))
        .await;
    browser.wait_for_text("laptop").await;
    browser.screenshot("console-tokens-desktop").await;

    // At 360 px wide nothing scrolls sideways.
    browser.resize(360, 800).await;
    browser
        .goto(&format!("{}/console/t/acme/tokens", app.base))
        .await;
    browser.wait_for_text("laptop").await;
    let width = browser.script("return window.innerWidth").await;
    assert!(
        browser.fits_width().await,
        "the token list scrolls sideways at {width} px"
    );
    browser.screenshot("console-tokens-phone").await;
    browser.click("td a").await;
    browser.wait_for_text("requests per day").await;
    assert!(
        browser.fits_width().await,
        "the token page scrolls sideways"
    );
    browser
        .screenshot_whole("console-token-phone", 360, 800)
        .await;
    browser.resize(1280, 900).await;

    browser.click("a.button.danger").await;
    browser.wait_for_text("cannot be undone").await;
    browser.click("button.danger").await;
    browser.wait_for_text("Revoked").await;
    let tokens = app.get("/v1/tenants/acme/users/u_42/tokens").await;
    let token = &tokens.body["items"][0];
    assert_eq!(token["name"], "laptop");
    assert!(!token["revoked_at"].is_null(), "the API says it is revoked");

    // A reused session URL fails.
    browser.goto(&session_url).await;
    browser.wait_for_text("This link no longer works").await;

    // A forged cross-site POST is refused and creates nothing.
    let attacker = attacker_site(format!("{}/console/t/acme/tokens/new", app.base)).await;
    browser.goto(&attacker).await;
    let refused = browser.wait_for_text("</h1>").await;
    assert!(
        refused.contains("This form cannot be accepted")
            || refused.contains("Your session has ended"),
        "{refused}"
    );
    let after = app.get("/v1/tenants/acme/users/u_42/tokens").await;
    assert_eq!(after.body["items"].as_array().unwrap().len(), 1);

    // No Content-Security-Policy violation on any console page.
    browser
        .goto(&format!("{}/console/t/acme/tokens", app.base))
        .await;
    browser.wait_for_text("laptop").await;
    let log = browser.log().await;
    let violations: Vec<&String> = log
        .iter()
        .filter(|m| m.contains("Content Security Policy") && !m.contains("localhost"))
        .collect();
    assert!(violations.is_empty(), "{violations:?}");

    // The secret, shown once, fits a phone too.
    browser.resize(360, 800).await;
    browser
        .goto(&format!("{}/console/t/acme/tokens/new?owner=me", app.base))
        .await;
    browser.create_token("phone").await;
    assert!(
        browser.fits_width().await,
        "the secret-once page scrolls sideways"
    );
    browser.screenshot("console-secret-once-phone").await;
}
