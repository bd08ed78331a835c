//! `latchkey bench --jwt-bearer`: the JWT-bearer grant (docs/API.md, "The JWT-bearer
//! grant") against the client-credentials grant, in alternating rounds on one server.
//!
//! The bench serves a fake OpenID Connect issuer on its own loopback socket (discovery
//! and a JWKS with one Ed25519 key; plain http, which the server allows for a loopback
//! issuer) and creates two trusts for it in the bench's tenant, with the role the
//! client-credentials token holds, so both grants issue the same scope. Each round runs,
//! with the same load loop and after the server has settled:
//! 1. `client_credentials`: HTTP Basic with the client's secret (one hash check);
//! 2. `jwt-bearer`, replay protection off: one assertion, signed before the run, sent
//!    again and again — the grant's own cost, one more signature check and the trust
//!    lookup;
//! 3. `jwt-bearer`, replay protection on (the default): a fresh assertion per request,
//!    signed by the load generator (its CPU shows in the bench column), whose `jti` the
//!    server records once.
//!
//! The issuer's keys are fetched once, at the first grant, before any measurement.

use super::keys::{SigningKey, unix_now};
use super::load::{Fresh, Maker, Outcome, Plan, Target};
use super::setup::{Fixture, ROLE};
use super::{form_encode, measure};
use crate::admin::client::{Client, Credential};
use anyhow::{Context, bail};
use reqwest::Method;
use serde_json::{Value, json};
use std::net::SocketAddr;
use std::sync::Arc;
use tokio::net::TcpListener;

/// The grant type's name (RFC 7523 §2.1).
const GRANT_TYPE: &str = "urn:ietf:params:oauth:grant-type:jwt-bearer";

/// The fake issuer's key id.
const KID: &str = "bench-1";

/// The run names, which the report's comparison groups rounds by.
pub const CLIENT_CREDENTIALS: &str = "client_credentials grant";
pub const REUSED: &str = "jwt-bearer grant, replay protection off";
pub const FRESH: &str = "jwt-bearer grant, replay protection on";

/// The subjects of the two trusts; distinct, so each assertion fits exactly one.
const SUBJECT_REUSED: &str = "repo:bench/app:ref:refs/heads/main";
const SUBJECT_FRESH: &str = "repo:bench/app:ref:refs/heads/release";

/// Seconds an assertion lives beyond its run.
const ASSERTION_MARGIN_SECONDS: i64 = 300;

/// An OpenID Connect issuer on loopback: discovery and a JWKS.
struct FakeIssuer {
    url: String,
    key: Arc<SigningKey>,
}

impl FakeIssuer {
    async fn start() -> anyhow::Result<Self> {
        let key = Arc::new(SigningKey::issuer(KID)?);
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let url = format!("http://{}", listener.local_addr()?);
        let discovery = json!({
            "issuer": url,
            "jwks_uri": format!("{url}/.well-known/jwks"),
            "id_token_signing_alg_values_supported": ["EdDSA"],
        });
        let mut jwk = key.public_jwk();
        jwk["kid"] = json!(KID);
        jwk["alg"] = json!("EdDSA");
        jwk["use"] = json!("sig");
        let jwks = json!({ "keys": [jwk] });
        let app = axum::Router::new()
            .route(
                "/.well-known/openid-configuration",
                axum::routing::get(move || async move { axum::Json(discovery) }),
            )
            .route(
                "/.well-known/jwks",
                axum::routing::get(move || async move { axum::Json(jwks) }),
            );
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Ok(Self { url, key })
    }
}

/// What the assertions of one trust look like.
#[derive(Clone)]
struct Assertions {
    key: Arc<SigningKey>,
    issuer: String,
    audience: String,
    subject: &'static str,
}

impl Assertions {
    /// An ID token shaped like GitHub Actions', living `lifetime` seconds from now.
    fn sign(&self, lifetime: i64) -> String {
        let now = unix_now();
        self.key.sign(&json!({
            "iss": self.issuer, "aud": self.audience, "sub": self.subject,
            "jti": self.key.jti(), "iat": now, "nbf": now, "exp": now + lifetime,
            "repository": "bench/app", "repository_owner": "bench", "workflow": "bench",
            "ref": "refs/heads/main", "run_id": "1", "run_attempt": "1",
            "event_name": "push",
        }))
    }

    /// The form body of a grant with `assertion`.
    fn body(assertion: &str) -> String {
        format!(
            "grant_type={}&assertion={}",
            form_encode(GRANT_TYPE),
            form_encode(assertion)
        )
    }
}

/// The three runs, `rounds` times each, alternating: see the module docs.
pub async fn alternate(
    address: SocketAddr,
    admin: Credential,
    fixture: &Fixture,
    plan: &Plan,
    rounds: u64,
) -> anyhow::Result<Vec<Outcome>> {
    let base = format!("http://{address}");
    let client = Client::new(&base, Some(admin))?;
    let issuer = FakeIssuer::start().await?;
    let audience = issuer_of(&base).await?;
    let assertions = |subject| Assertions {
        key: issuer.key.clone(),
        issuer: issuer.url.clone(),
        audience: audience.clone(),
        subject,
    };
    let reused = assertions(SUBJECT_REUSED);
    let fresh = assertions(SUBJECT_FRESH);
    create_trust(&client, fixture, &reused, false).await?;
    create_trust(&client, fixture, &fresh, true).await?;
    // The first grant discovers the issuer's keys; it must work before anything counts.
    first_grant(&base, &reused.sign(ASSERTION_MARGIN_SECONDS)).await?;
    let lifetime = i64::try_from((plan.warmup + plan.duration).as_secs())
        .unwrap_or(i64::MAX)
        .saturating_add(ASSERTION_MARGIN_SECONDS);
    let mut runs = Vec::new();
    for round in 1..=rounds {
        let mut grants = fixture.grants_target();
        grants.name = format!("{CLIENT_CREDENTIALS}, round {round}");
        runs.push(measure(&grants, plan).await?);
        let once = Target {
            name: format!("{REUSED}, round {round}"),
            path: "/oauth/token",
            authorization: String::new(),
            body: Assertions::body(&reused.sign(lifetime)),
            expect: "\"access_token\"",
            fresh: None,
        };
        runs.push(measure(&once, plan).await?);
        let signer = fresh.clone();
        let maker: Maker = Arc::new(move || Ok(Assertions::body(&signer.sign(lifetime))));
        let each = Target {
            name: format!("{FRESH}, round {round}"),
            path: "/oauth/token",
            authorization: String::new(),
            // Not sent (the maker's body is), but not empty: the request is a POST.
            body: "-".to_owned(),
            expect: "\"access_token\"",
            fresh: Some(Fresh::Body(maker)),
        };
        runs.push(measure(&each, plan).await?);
    }
    Ok(runs)
}

/// The server's issuer URL, from its metadata: the audience its trusts should name.
pub(super) async fn issuer_of(base: &str) -> anyhow::Result<String> {
    let metadata: Value = reqwest::get(format!("{base}/.well-known/oauth-authorization-server"))
        .await
        .context("reading the server's metadata")?
        .json()
        .await
        .context("the server's metadata is not JSON")?;
    metadata["issuer"]
        .as_str()
        .map(str::to_owned)
        .context("the server's metadata names no issuer")
}

/// A trust in the bench's tenant accepting `assertions`, with the bench's role.
async fn create_trust(
    client: &Client,
    fixture: &Fixture,
    assertions: &Assertions,
    replay_protection: bool,
) -> anyhow::Result<()> {
    client
        .send(
            Method::POST,
            &["v1", "tenants", fixture.tenant.as_str(), "trusts"],
            &json!({
                "name": format!("bench {}", assertions.subject),
                "issuer": assertions.issuer,
                "audience": assertions.audience,
                "subject": assertions.subject,
                "claims": { "repository": "bench/app" },
                "roles": [ROLE],
                "replay_protection": replay_protection,
            }),
        )
        .await
        .context("creating the bench's trust")?;
    Ok(())
}

/// One grant with `assertion`, which must issue a token.
async fn first_grant(base: &str, assertion: &str) -> anyhow::Result<()> {
    let response = reqwest::Client::new()
        .post(format!("{base}/oauth/token"))
        .header(
            reqwest::header::CONTENT_TYPE,
            "application/x-www-form-urlencoded",
        )
        .body(Assertions::body(assertion))
        .send()
        .await
        .context("the first JWT-bearer grant")?;
    let status = response.status();
    let body = response.text().await.unwrap_or_default();
    if !status.is_success() {
        bail!("the first JWT-bearer grant answered {status}: {body}");
    }
    Ok(())
}
