//! A resource server protected by latchkey.
//!
//! ```text
//! LATCHKEY_ISSUER=http://127.0.0.1:7700 LATCHKEY_CREDENTIAL=lk_ak_… PORT=8080 \
//!     cargo run -p latchkey-verify --example resource_server
//! ```
//!
//! `GET /reports` needs `reports:read`, `POST /reports` needs `reports:write`, and
//! `GET /whoami` answers the verified principal as JSON. `LATCHKEY_AUDIENCE` defaults to
//! the issuer URL, which is the server's default audience; `LATCHKEY_CREDENTIAL` (a
//! `latchkey` tenant api key holding `latchkey:introspect`) is needed only to accept api
//! keys and long-lived JWTs. It serves with the TCP peer's address (`ConnectInfo`), so
//! tokens with an IP allowlist are judged against it.

use anyhow::Context;
use axum::routing::{get, post};
use axum::{Json, Router};
use latchkey_verify::{Credential, Principal, Scopes, Verifier, VerifierOptions};
use serde_json::{Value, json};

async fn list_reports(principal: Principal) -> Json<Value> {
    Json(json!({ "tenant": principal.tenant, "reports": ["q3-revenue", "q3-churn"] }))
}

async fn create_report(principal: Principal) -> Json<Value> {
    Json(json!({ "tenant": principal.tenant, "created": "q4-forecast" }))
}

async fn whoami(principal: Principal) -> Json<Principal> {
    Json(principal)
}

/// An environment variable, with an empty value counted as unset.
fn env(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|value| !value.is_empty())
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "info,latchkey_verify=debug".into()),
        )
        .init();
    let issuer =
        env("LATCHKEY_ISSUER").context("set LATCHKEY_ISSUER to the server's public URL")?;
    let port: u16 = env("PORT")
        .map(|port| port.parse())
        .transpose()
        .context("PORT must be a port number")?
        .unwrap_or(8080);
    let options = VerifierOptions {
        audience: env("LATCHKEY_AUDIENCE"),
        credential: env("LATCHKEY_CREDENTIAL").map(Credential::new),
        ..VerifierOptions::default()
    };
    let verifier = Verifier::discover(&issuer, options)
        .await
        .with_context(|| format!("discovering {issuer}"))?;

    let app = Router::new()
        .route(
            "/reports",
            get(list_reports).route_layer(verifier.require(Scopes::all_of(["reports:read"]))),
        )
        .route(
            "/reports",
            post(create_report).route_layer(verifier.require(Scopes::all_of(["reports:write"]))),
        )
        .route("/whoami", get(whoami).route_layer(verifier.layer()));

    let listener = tokio::net::TcpListener::bind(("0.0.0.0", port)).await?;
    tracing::info!(
        port,
        issuer,
        audience = verifier.audience(),
        "resource server listening"
    );
    axum::serve(
        listener,
        app.into_make_service_with_connect_info::<std::net::SocketAddr>(),
    )
    .await?;
    Ok(())
}
