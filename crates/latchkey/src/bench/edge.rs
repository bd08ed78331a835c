//! `latchkey bench --edge`: what the gateway costs and how fast a revocation reaches it.
//!
//! Measured as users run it: the server, the gateway and the load generator are separate
//! processes talking over loopback TCP, so that socket effects between them (Nagle's
//! algorithm against delayed ACKs costs about 40 ms a message) show in the figures. The
//! gateway is this binary's `latchkey gateway --config FILE`, with a file the bench writes
//! into a temporary directory; the sample upstream answering `ok` stays a task of the
//! bench process, on its own loopback socket, since it only stands in for a vendor's
//! service. Three loads of the same GET: straight to the upstream, through the gateway on
//! a public route (no authentication), and through the gateway with a Bearer JWT
//! (verified-token cache hit plus deny-list lookup on every request). Then `revocations`
//! times: a fresh token's JWT is let through once, the token is revoked at the server,
//! and the time from the revoke call returning to the gateway's first refusal is
//! recorded. Then as many narrowings (none with `--skip-narrowing`): a fresh role's token
//! is let through, the role loses
//! the route's permission, and the time from that edit returning to the gateway's first
//! 403 is recorded — a narrowed grant travels the same feed as a revocation. Last, as
//! many synchronous revocations (`DELETE /v1/tokens/{id}?wait=propagated`, docs/API.md
//! "Synchronous revocation"): the latency of the call itself, which returns once the one
//! connected gateway has acknowledged the entry.

use super::child::{self, Listening};
use super::federation::issuer_of;
use super::keys::SigningKey;
use super::load::{self, Fresh, Maker, Outcome, Plan, Target};
use super::report;
use crate::admin::client::{Client, Credential};
use anyhow::{Context, bail};
use hyper::header::HeaderName;
use latchkey_core::permission::{ADMIN, INTROSPECT};
use latchkey_verify::dpop::access_token_hash;
use reqwest::Method;
use serde_json::json;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::net::TcpListener;

/// How long the gateway may take to load the deny list and let a good token through.
const READY_TIMEOUT: Duration = Duration::from_secs(10);

/// The results of an edge run.
pub struct EdgeReport {
    /// (name, outcome) of the three loads.
    pub loads: Vec<(&'static str, Outcome)>,
    /// Revocation-to-refusal latencies, sorted.
    pub propagation: Vec<Duration>,
    /// Role-edit-to-refusal latencies, sorted.
    pub narrowing: Vec<Duration>,
    /// Latencies of `DELETE /v1/tokens/{id}?wait=propagated`, sorted.
    pub synchronous: Vec<Duration>,
}

async fn upstream() -> anyhow::Result<SocketAddr> {
    let app = axum::Router::new()
        .route("/reports", axum::routing::get(|| async { "ok" }))
        .route("/public/ping", axum::routing::get(|| async { "ok" }));
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let address = listener.local_addr()?;
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    Ok(address)
}

/// A gateway the bench started in front of its upstream, following the server, with a
/// tenant for the bench's tokens and a good token's JWT it already let through.
struct Edge {
    client: Client,
    base: String,
    upstream: SocketAddr,
    gateway: Gateway,
    http: reqwest::Client,
    /// A client-credentials token of `tenant` holding `bench:read`: id and secret.
    token: (String, String),
}

impl Edge {
    /// Creates `tenant` and the gateway's key at the server `server`, starts the
    /// upstream and the gateway, and waits until the gateway lets a token through.
    async fn start(server: SocketAddr, admin: Credential, tenant: &str) -> anyhow::Result<Self> {
        let base = format!("http://{server}");
        let client = Client::new(&base, Some(admin))?;
        bench_tenant(&client, tenant).await?;
        let gateway_key = system_key(&client, "bench gateway", INTROSPECT).await?;
        let upstream = upstream().await?;
        let gateway = start_gateway(&base, &gateway_key, upstream).await?;
        let token =
            tenant_client_token(&client, tenant, json!({ "permissions": ["bench:read"] })).await?;
        let http = reqwest::Client::new();
        let jwt = exchange(&http, &base, &token.0, &token.1).await?;
        // The gateway listens before its deny list has loaded, and refuses tokens until
        // then.
        until_status(
            &http,
            &format!("http://{}/reports", gateway.address),
            &jwt,
            200,
            READY_TIMEOUT,
            "the gateway did not let a good token through within 10 s",
        )
        .await?;
        Ok(Self {
            client,
            base,
            upstream,
            gateway,
            http,
            token,
        })
    }
}

/// Runs the edge measurements against the server at `server`: `revocations` revocations
/// and synchronous revocations, and `narrowings` narrowings.
pub async fn run(
    server: SocketAddr,
    admin: Credential,
    plan: &Plan,
    (revocations, narrowings): (usize, usize),
) -> anyhow::Result<EdgeReport> {
    let Edge {
        client,
        base,
        upstream,
        gateway,
        http,
        token: (id, secret),
    } = Edge::start(server, admin, "edge").await?;
    let edge = gateway.address;
    let jwt = exchange(&http, &base, &id, &secret).await?;
    let mut loads = Vec::new();
    for (name, path, address, authorization) in [
        ("upstream directly", "/reports", upstream, String::new()),
        (
            "gateway, public route (no auth)",
            "/public/ping",
            edge,
            String::new(),
        ),
        (
            "gateway, JWT auth (cached)",
            "/reports",
            edge,
            format!("Bearer {jwt}"),
        ),
    ] {
        let target = Target {
            name: name.to_owned(),
            path,
            authorization,
            body: String::new(),
            expect: "ok",
            fresh: None,
        };
        let plan = Plan { address, ..*plan };
        eprintln!("running: {name}");
        loads.push((name, load::run(&target, &plan).await?));
    }

    eprintln!("running: {revocations} revocations");
    let mut propagation = Vec::with_capacity(revocations);
    for _ in 0..revocations {
        let (id, secret) = client_token(&client, json!({ "permissions": ["bench:read"] })).await?;
        let jwt = exchange(&http, &base, &id, &secret).await?;
        let through = format!("http://{edge}/reports");
        let status = http.get(&through).bearer_auth(&jwt).send().await?.status();
        if status != 200 {
            bail!("a fresh token was refused by the gateway: {status}");
        }
        client.delete(&["v1", "tokens", &id]).await?;
        propagation.push(
            until_status(
                &http,
                &through,
                &jwt,
                401,
                PROPAGATION_TIMEOUT,
                "the gateway still let a revoked token through after 10 s",
            )
            .await?,
        );
    }
    propagation.sort();

    eprintln!("running: {narrowings} narrowings");
    let mut narrowing = Vec::with_capacity(narrowings);
    for round in 0..narrowings {
        let role = format!("bench-narrow-{round}");
        let path = ["v1", "roles", role.as_str()];
        client
            .send(
                Method::PUT,
                &path,
                &json!({ "permissions": ["bench:read"] }),
            )
            .await?;
        let (id, secret) = client_token(&client, json!({ "roles": [role] })).await?;
        let jwt = exchange(&http, &base, &id, &secret).await?;
        let through = format!("http://{edge}/reports");
        let status = http.get(&through).bearer_auth(&jwt).send().await?.status();
        if status != 200 {
            bail!("a fresh role's token was refused by the gateway: {status}");
        }
        client
            .send(Method::PUT, &path, &json!({ "permissions": [] }))
            .await?;
        narrowing.push(
            until_status(
                &http,
                &through,
                &jwt,
                403,
                PROPAGATION_TIMEOUT,
                "the gateway still granted a removed permission after 10 s",
            )
            .await?,
        );
    }
    narrowing.sort();

    eprintln!("running: {revocations} revocations with ?wait=propagated");
    let revoker = revoker_key(&client).await?;
    let mut synchronous = Vec::with_capacity(revocations);
    for _ in 0..revocations {
        let (id, _) = client_token(&client, json!({ "permissions": ["bench:read"] })).await?;
        synchronous.push(revoke_and_wait(&http, &base, &revoker, &id).await?);
    }
    synchronous.sort();
    gateway.stop().await;
    Ok(EdgeReport {
        loads,
        propagation,
        narrowing,
        synchronous,
    })
}

/// The run names of `--edge --dpop`, which the report's comparison groups rounds by.
pub const BEARER: &str = "gateway, Bearer JWT";
pub const DPOP: &str = "gateway, DPoP-bound JWT + fresh proof";

/// `--edge --dpop`: the gateway's DPoP overhead. `rounds` times, alternating, the same
/// GET through the gateway with a Bearer JWT and with a DPoP-bound JWT of the same
/// grant and a new proof per request, which the load generator signs (its CPU shows in
/// the bench column, with the sample upstream's); the CPU column is the gateway
/// process's, and each run waits for the gateway to go idle first. Both tokens are
/// fetched anew each round, so no run outlives them.
pub async fn run_dpop(
    server: SocketAddr,
    admin: Credential,
    plan: &Plan,
    rounds: u64,
) -> anyhow::Result<Vec<Outcome>> {
    let edge = Edge::start(server, admin, &super::setup::unique_tenant()).await?;
    let address = edge.gateway.address;
    let url = format!("http://{address}/reports");
    let key = Arc::new(SigningKey::dpop()?);
    let token_endpoint = format!("{}/oauth/token", issuer_of(&edge.base).await?);
    let plan = Plan {
        address,
        server_pid: edge.gateway.process.pid(),
        ..*plan
    };
    let (id, secret) = &edge.token;
    let mut runs = Vec::new();
    for round in 1..=rounds {
        let bearer = exchange(&edge.http, &edge.base, id, secret).await?;
        let target = Target {
            name: format!("{BEARER}, round {round}"),
            path: "/reports",
            authorization: format!("Bearer {bearer}"),
            body: String::new(),
            expect: "ok",
            fresh: None,
        };
        runs.push(super::measure(&target, &plan).await?);

        let proof = key.proof("POST", &token_endpoint, None);
        let bound = bound_exchange(&edge.http, &edge.base, id, secret, &proof).await?;
        let ath = access_token_hash(&bound);
        let (signer, htu) = (key.clone(), url.clone());
        let maker: Maker = Arc::new(move || Ok(signer.proof("GET", &htu, Some(&ath))));
        let target = Target {
            name: format!("{DPOP}, round {round}"),
            path: "/reports",
            authorization: format!("DPoP {bound}"),
            body: String::new(),
            expect: "ok",
            fresh: Some(Fresh::Header(HeaderName::from_static("dpop"), maker)),
        };
        runs.push(super::measure(&target, &plan).await?);
    }
    edge.gateway.stop().await;
    Ok(runs)
}

/// A client-credentials grant with a DPoP `proof`: a token bound to its key.
async fn bound_exchange(
    http: &reqwest::Client,
    base: &str,
    id: &str,
    secret: &str,
    proof: &str,
) -> anyhow::Result<String> {
    let (token, token_type) = grant(http, base, id, secret, Some(proof)).await?;
    if token_type != "DPoP" {
        bail!("the server did not bind the token to the proof's key: {token_type}");
    }
    Ok(token)
}

/// How long a revocation or narrowing may take to reach the gateway before the bench
/// gives up.
const PROPAGATION_TIMEOUT: Duration = Duration::from_secs(10);

/// Starts `latchkey gateway` in front of `upstream`, following the server at `base`
/// with `credential`.
async fn start_gateway(
    base: &str,
    credential: &str,
    upstream: SocketAddr,
) -> anyhow::Result<Gateway> {
    let dir = tempfile::Builder::new()
        .prefix("latchkey-bench-gateway-")
        .tempdir()
        .context("creating a temporary directory for the gateway's configuration")?;
    let path = dir.path().join("gateway.toml");
    std::fs::write(
        &path,
        format!(
            "listen = \"127.0.0.1:0\"\nserver = \"{base}\"\ncredential = \"{credential}\"\n\
             [[route]]\nprefix = \"/reports\"\nupstream = \"http://{upstream}\"\n\
             scopes = {{ GET = [\"bench:read\"] }}\n\
             [[route]]\nprefix = \"/public\"\nupstream = \"http://{upstream}\"\npublic = true\n"
        ),
    )
    .context("writing the gateway's configuration")?;
    let mut command = child::command(&["gateway", "--config"])?;
    command.arg(&path);
    let process = child::start(command, "the gateway", "").await?;
    Ok(Gateway {
        address: process.address,
        process,
        _config: dir,
    })
}

/// The `latchkey gateway` child and the directory holding its configuration.
struct Gateway {
    process: Listening,
    address: SocketAddr,
    _config: tempfile::TempDir,
}

impl Gateway {
    async fn stop(self) {
        self.process.stop().await;
    }
}

/// A system-tenant api key holding `latchkey:admin`, sent as a plain Bearer token by the
/// synchronous revocations (the admin client knows no query strings).
async fn revoker_key(client: &Client) -> anyhow::Result<String> {
    system_key(client, "bench revoker", ADMIN).await
}

/// The permission `bench:read` (created again harmlessly) and a new tenant `tenant`.
pub(super) async fn bench_tenant(client: &Client, tenant: &str) -> anyhow::Result<()> {
    client
        .send(
            Method::PUT,
            &["v1", "permissions", "bench:read"],
            &json!({}),
        )
        .await?;
    client
        .send(Method::POST, &["v1", "tenants"], &json!({ "id": tenant }))
        .await?;
    Ok(())
}

/// A new system-tenant api key named `name` holding `permission`.
pub(super) async fn system_key(
    client: &Client,
    name: &str,
    permission: &str,
) -> anyhow::Result<String> {
    Ok(client
        .send(
            Method::POST,
            &["v1", "tenants", "latchkey", "tokens"],
            &json!({ "name": name, "kind": "api_key", "permissions": [permission] }),
        )
        .await?["api_key"]
        .as_str()
        .with_context(|| format!("the api key of {name}"))?
        .to_owned())
}

/// Revokes token `id` with `?wait=propagated` and answers how long the call took; fails
/// unless every connected follower acknowledged it.
async fn revoke_and_wait(
    http: &reqwest::Client,
    base: &str,
    revoker: &str,
    id: &str,
) -> anyhow::Result<Duration> {
    let started = Instant::now();
    let response = http
        .delete(format!("{base}/v1/tokens/{id}?wait=propagated"))
        .bearer_auth(revoker)
        .send()
        .await?;
    let elapsed = started.elapsed();
    let status = response.status();
    let body: serde_json::Value = response.json().await?;
    if status != 200 || body["propagated"] != true || body["connected"].as_u64() < Some(1) {
        bail!("a synchronous revocation was not propagated to the gateway: {status} {body}");
    }
    Ok(elapsed)
}

/// A client-credentials token of tenant `edge` holding `grant` (`permissions` or
/// `roles`): its id and secret. Only `run` uses the tenant `edge`; other modes make
/// their own.
async fn client_token(
    client: &Client,
    grant: serde_json::Value,
) -> anyhow::Result<(String, String)> {
    tenant_client_token(client, "edge", grant).await
}

/// A client-credentials token of `tenant` holding `grant`: its id and secret.
pub(super) async fn tenant_client_token(
    client: &Client,
    tenant: &str,
    grant: serde_json::Value,
) -> anyhow::Result<(String, String)> {
    let mut body = json!({ "name": "bench client", "kind": "client_credentials" });
    if let (Some(body), Some(grant)) = (body.as_object_mut(), grant.as_object()) {
        body.extend(grant.clone());
    }
    let created = client
        .send(Method::POST, &["v1", "tenants", tenant, "tokens"], &body)
        .await?;
    Ok((
        created["client_id"]
            .as_str()
            .context("client_id")?
            .to_owned(),
        created["client_secret"]
            .as_str()
            .context("client_secret")?
            .to_owned(),
    ))
}

/// The time until a GET of `url` with `jwt` answers `status`, polled from now.
async fn until_status(
    http: &reqwest::Client,
    url: &str,
    jwt: &str,
    status: u16,
    timeout: Duration,
    failure: &str,
) -> anyhow::Result<Duration> {
    let started = Instant::now();
    while http.get(url).bearer_auth(jwt).send().await?.status() != status {
        if started.elapsed() > timeout {
            bail!("{failure}");
        }
    }
    Ok(started.elapsed())
}

async fn exchange(
    http: &reqwest::Client,
    base: &str,
    id: &str,
    secret: &str,
) -> anyhow::Result<String> {
    Ok(grant(http, base, id, secret, None).await?.0)
}

/// A client-credentials grant, with a DPoP `proof` when given: the access token and
/// its type.
async fn grant(
    http: &reqwest::Client,
    base: &str,
    id: &str,
    secret: &str,
    proof: Option<&str>,
) -> anyhow::Result<(String, String)> {
    let mut request = http
        .post(format!("{base}/oauth/token"))
        .basic_auth(id, Some(secret));
    if let Some(proof) = proof {
        request = request.header("dpop", proof);
    }
    let granted: serde_json::Value = request
        .form(&[("grant_type", "client_credentials")])
        .send()
        .await?
        .json()
        .await?;
    let member = |name: &str| {
        granted[name]
            .as_str()
            .map(str::to_owned)
            .with_context(|| format!("the grant's answer has no {name}: {granted}"))
    };
    Ok((member("access_token")?, member("token_type")?))
}

impl EdgeReport {
    /// The report as text (and markdown: the same table).
    pub fn markdown(&self, command: &str, cores: usize) -> String {
        let mut text = format!(
            "- command: `{command}`\n- machine: {cores} cores; bench (with the upstream), server and gateway processes share them\n\n\
             | load | requests/s | p50 ms | p99 ms | errors | vs upstream |\n| --- | ---: | ---: | ---: | ---: | ---: |\n"
        );
        let direct = self.loads.first().map_or(0.0, |(_, o)| o.rate());
        for (name, outcome) in &self.loads {
            let ms = |q: f64| {
                outcome.quantile(q).map_or("-".to_owned(), |d| {
                    format!("{:.2}", d.as_secs_f64() * 1000.0)
                })
            };
            let ratio = if direct > 0.0 {
                outcome.rate() / direct
            } else {
                0.0
            };
            text.push_str(&format!(
                "| {name} | {:.0} | {} | {} | {} | {ratio:.2} |\n",
                outcome.rate(),
                ms(0.5),
                ms(0.99),
                outcome.errors.total(),
            ));
        }
        for (latencies, what) in [
            (
                &self.propagation,
                "Revocation propagation over {n} revocations (revoke call returned → first 401 at the gateway)",
            ),
            (
                &self.narrowing,
                "Narrowing propagation over {n} role edits (role PUT returned → first 403 at the gateway)",
            ),
            (
                &self.synchronous,
                "Synchronous revocation over {n} revocations (DELETE ?wait=propagated with one gateway connected, call latency)",
            ),
        ] {
            if let Some(summary) = report::latency_summary(latencies) {
                text.push_str(&format!(
                    "\n{}: {summary}\n",
                    what.replace("{n}", &latencies.len().to_string()),
                ));
            }
        }
        text
    }
}
