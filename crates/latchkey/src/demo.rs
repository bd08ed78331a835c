//! `latchkey demo`: the one-command tour. A server on a temporary directory, a sample
//! upstream and a gateway, all on free loopback ports; then the whole flow, each step
//! printed with its timing: catalogue, tenant and token; an exchange for a JWT; a call
//! through the gateway (200); a call without the scope (403); a revocation; the same
//! call again (401). It ends by printing a console session URL for the demo tenant and
//! keeps serving until interrupted, so a newcomer can click into the console.

use anyhow::{Context, bail};
use axum::Json;
use axum::routing::get;
use latchkey_core::permission::INTROSPECT;
use latchkey_gateway::{GatewayConfig, assemble};
use latchkey_server::{Application, Config};
use latchkey_wire::{CreatedToken, TokenResponse};
use serde_json::{Value, json};
use std::time::{Duration, Instant};
use tokio::net::TcpListener;

struct Tour {
    http: reqwest::Client,
    server: String,
    root: String,
    step: usize,
}

impl Tour {
    fn say(&mut self, what: &str, started: Instant, outcome: &str) {
        self.step += 1;
        println!(
            "{:>2}. {what:<58} {outcome:<22} {:>8.2} ms",
            self.step,
            started.elapsed().as_secs_f64() * 1000.0
        );
    }

    async fn admin(
        &mut self,
        what: &str,
        method: reqwest::Method,
        path: &str,
        body: Value,
    ) -> anyhow::Result<Value> {
        let started = Instant::now();
        let response = self
            .http
            .request(method, format!("{}{path}", self.server))
            .bearer_auth(&self.root)
            .json(&body)
            .send()
            .await?;
        let status = response.status();
        let answer: Value = response.json().await.unwrap_or(Value::Null);
        if !status.is_success() {
            bail!("{what}: {status} {answer}");
        }
        self.say(what, started, &status.to_string());
        Ok(answer)
    }

    async fn through_gateway(
        &mut self,
        what: &str,
        gateway: &str,
        method: reqwest::Method,
        jwt: &str,
        expected: u16,
    ) -> anyhow::Result<()> {
        let started = Instant::now();
        let response = self
            .http
            .request(method, format!("{gateway}/reports"))
            .bearer_auth(jwt)
            .send()
            .await?;
        let status = response.status();
        if status.as_u16() != expected {
            bail!("{what}: expected {expected}, got {status}");
        }
        self.say(what, started, &status.to_string());
        Ok(())
    }
}

/// A sample upstream: answers with who the gateway says is calling.
async fn upstream() -> anyhow::Result<u16> {
    async fn reports(headers: axum::http::HeaderMap) -> Json<Value> {
        let header = |name: &str| {
            headers
                .get(name)
                .and_then(|v| v.to_str().ok())
                .unwrap_or("")
                .to_owned()
        };
        Json(
            json!({ "reports": [], "tenant": header("x-latchkey-tenant"), "token": header("x-latchkey-token-id") }),
        )
    }
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let port = listener.local_addr()?.port();
    let app = axum::Router::new().route("/reports", get(reports).post(reports));
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    Ok(port)
}

pub async fn run() -> anyhow::Result<()> {
    let data = tempfile::tempdir().context("creating a temporary directory")?;
    println!(
        "latchkey demo: server, upstream and gateway on loopback; data in {}",
        data.path().display()
    );
    let started = Instant::now();
    let app = Application::build(Config {
        listen: "127.0.0.1:0".parse()?,
        data_dir: data.path().to_path_buf(),
        ..Config::default()
    })
    .await?;
    let server = format!("http://127.0.0.1:{}", app.port());
    let root = app
        .root_key()
        .map(|key| key.expose().to_owned())
        .context("a fresh server shows its root key")?;
    tokio::spawn(app.run_until_stopped());
    let mut tour = Tour {
        http: reqwest::Client::new(),
        server: server.clone(),
        root,
        step: 0,
    };
    tour.say(&format!("start the server at {server}"), started, "ready");

    let post = reqwest::Method::POST;
    let put = reqwest::Method::PUT;
    tour.admin(
        "define permission reports:read",
        put.clone(),
        "/v1/permissions/reports:read",
        json!({}),
    )
    .await?;
    tour.admin(
        "define permission reports:write",
        put.clone(),
        "/v1/permissions/reports:write",
        json!({}),
    )
    .await?;
    tour.admin(
        "define role viewer = {reports:read}",
        put,
        "/v1/roles/viewer",
        json!({ "permissions": ["reports:read"] }),
    )
    .await?;
    tour.admin(
        "create tenant acme",
        post.clone(),
        "/v1/tenants",
        json!({ "id": "acme", "name": "Acme Inc." }),
    )
    .await?;
    let created: CreatedToken = serde_json::from_value(
        tour.admin(
            "create a client_credentials token with role viewer",
            post.clone(),
            "/v1/tenants/acme/tokens",
            json!({ "name": "ci deploy", "kind": "client_credentials", "roles": ["viewer"] }),
        )
        .await?,
    )?;
    let client_id = created.client_id.context("client_id")?.to_string();
    let client_secret = created.client_secret.context("client_secret")?;
    let gateway: CreatedToken = serde_json::from_value(
        tour.admin(
            "create the gateway's credential (latchkey:introspect)",
            post,
            "/v1/tenants/latchkey/tokens",
            json!({ "name": "gateway", "kind": "api_key", "permissions": [INTROSPECT] }),
        )
        .await?,
    )?;
    let gateway_key = gateway.api_key.context("api_key")?;

    let started = Instant::now();
    let upstream = upstream().await?;
    let config = GatewayConfig::from_toml(&format!(
        "listen = \"127.0.0.1:0\"\nserver = \"{server}\"\ncredential = \"{gateway_key}\"\n\
         [[route]]\nprefix = \"/reports\"\nupstream = \"http://127.0.0.1:{upstream}\"\n\
         scopes = {{ GET = [\"reports:read\"], POST = [\"reports:write\"] }}\n"
    ))?;
    let (gateway, replica) = assemble(config).await?;
    tokio::time::timeout(Duration::from_secs(10), replica.ready())
        .await
        .context("the gateway's deny list loads")?;
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let gateway_url = format!("http://{}", listener.local_addr()?);
    tokio::spawn(async move { gateway.serve(listener, std::future::pending()).await });
    tour.say(
        &format!("start upstream :{upstream} and gateway {gateway_url}"),
        started,
        "ready",
    );

    let started = Instant::now();
    let granted: TokenResponse = tour
        .http
        .post(format!("{server}/oauth/token"))
        .basic_auth(&client_id, Some(&client_secret))
        .form(&[("grant_type", "client_credentials")])
        .send()
        .await?
        .json()
        .await
        .context("access_token")?;
    // Quoted, as the JSON string it came as.
    tour.say(
        "exchange client credentials for a JWT",
        started,
        &format!("scope {:?}", granted.scope),
    );
    let jwt = granted.access_token;

    let get = reqwest::Method::GET;
    tour.through_gateway(
        "GET /reports through the gateway (reports:read)",
        &gateway_url,
        get.clone(),
        &jwt,
        200,
    )
    .await?;
    tour.through_gateway(
        "POST /reports without reports:write",
        &gateway_url,
        reqwest::Method::POST,
        &jwt,
        403,
    )
    .await?;
    tour.admin(
        "revoke the token (wait until the gateway knows)",
        reqwest::Method::DELETE,
        &format!("/v1/tokens/{client_id}?wait=propagated"),
        Value::Null,
    )
    .await?;
    tour.through_gateway(
        "GET /reports again with the revoked JWT",
        &gateway_url,
        get,
        &jwt,
        401,
    )
    .await?;
    println!("done: the JWT was refused at the gateway the moment the revocation returned.");
    tour.admin(
        "add user demo-user to acme as a viewer",
        reqwest::Method::PUT,
        "/v1/tenants/acme/users/demo-user",
        json!({ "roles": ["viewer"] }),
    )
    .await?;
    let console = tour
        .admin(
            "make a console session URL for demo-user",
            reqwest::Method::POST,
            "/v1/tenants/acme/users/demo-user/console-sessions",
            Value::Null,
        )
        .await?;
    let url = console["url"]
        .as_str()
        .context("a console session answers with its URL")?;
    // The URL opens once, within 5 minutes; the server keeps serving until interrupted.
    println!("console: {url}");
    println!("open it in a browser within 5 minutes (it works once); Ctrl-C stops the demo.");
    tokio::signal::ctrl_c()
        .await
        .context("waiting for Ctrl-C")?;
    Ok(())
}
