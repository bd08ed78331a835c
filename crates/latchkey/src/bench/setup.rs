//! What the runs need, made through the management API with an admin credential: a
//! permission, a role holding it, a tenant with a client_credentials token and an api
//! key of that role, and an api key of the system tenant holding `latchkey:introspect`
//! for the introspection calls.
//!
//! Names are fixed where creating again is harmless (`PUT` of the permission and role)
//! and unique where it is not (the tenant), so a bench can run again against the same
//! server or database.

use super::form_encode;
use super::load::Target;
use crate::admin::client::{Client, Credential};
use anyhow::{Context, anyhow};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use latchkey_core::permission::INTROSPECT;
use reqwest::Method;
use reqwest::header::CONTENT_TYPE;
use serde_json::{Value, json};
use std::net::SocketAddr;
use std::time::{SystemTime, UNIX_EPOCH};

const PERMISSION: &str = "bench:read";
/// The role the bench's tokens (and trusts) hold.
pub(super) const ROLE: &str = "bench-reader";
const SYSTEM_TENANT: &str = "latchkey";

/// The credentials the runs present.
pub struct Fixture {
    /// The tenant made for this bench.
    pub tenant: String,
    /// The client_credentials token's id and secret.
    pub client_id: String,
    pub client_secret: String,
    /// An api key of the tenant, the token introspected in the api-key run.
    pub api_key: String,
    /// The system-tenant api key holding `latchkey:introspect`, the introspection caller.
    pub introspect_key: String,
}

/// Creates the catalogue entries, tenant and tokens on the server at `address`.
pub async fn prepare(address: SocketAddr, admin: Credential) -> anyhow::Result<Fixture> {
    let client = Client::new(&format!("http://{address}"), Some(admin))?;
    client
        .send(Method::PUT, &["v1", "permissions", PERMISSION], &json!({}))
        .await
        .context("creating the bench permission")?;
    client
        .send(
            Method::PUT,
            &["v1", "roles", ROLE],
            &json!({ "permissions": [PERMISSION] }),
        )
        .await
        .context("creating the bench role")?;
    let tenant = unique_tenant();
    client
        .send(Method::POST, &["v1", "tenants"], &json!({ "id": tenant }))
        .await
        .context("creating the bench tenant")?;
    let tenant_tokens = ["v1", "tenants", tenant.as_str(), "tokens"];
    let grants = client
        .send(
            Method::POST,
            &tenant_tokens,
            &json!({ "name": "bench grants", "kind": "client_credentials", "roles": [ROLE] }),
        )
        .await
        .context("creating the client_credentials token")?;
    let api_key = client
        .send(
            Method::POST,
            &tenant_tokens,
            &json!({ "name": "bench api key", "kind": "api_key", "roles": [ROLE] }),
        )
        .await
        .context("creating the api key to introspect")?;
    let introspector = client
        .send(
            Method::POST,
            &["v1", "tenants", SYSTEM_TENANT, "tokens"],
            &json!({ "name": "bench introspection", "kind": "api_key",
                     "permissions": [INTROSPECT] }),
        )
        .await
        .context("creating the introspection key")?;
    Ok(Fixture {
        tenant,
        client_id: member(&grants, "client_id")?,
        client_secret: member(&grants, "client_secret")?,
        api_key: member(&api_key, "api_key")?,
        introspect_key: member(&introspector, "api_key")?,
    })
}

impl Fixture {
    /// The client-credentials grant, the client's secret in HTTP Basic.
    pub fn grants_target(&self) -> Target {
        let basic = STANDARD.encode(format!(
            "{}:{}",
            form_encode(&self.client_id),
            form_encode(&self.client_secret)
        ));
        Target {
            name: "client_credentials grant".to_owned(),
            path: "/oauth/token",
            authorization: format!("Basic {basic}"),
            body: "grant_type=client_credentials".to_owned(),
            expect: "\"access_token\"",
            fresh: None,
        }
    }

    /// One access JWT for the client, by one client-credentials grant.
    pub async fn access_token(&self, address: SocketAddr) -> anyhow::Result<String> {
        let response = reqwest::Client::new()
            .post(format!("http://{address}/oauth/token"))
            .basic_auth(&self.client_id, Some(&self.client_secret))
            .header(CONTENT_TYPE, "application/x-www-form-urlencoded")
            .body("grant_type=client_credentials")
            .send()
            .await
            .context("asking for an access token")?;
        let status = response.status();
        let body: Value = response
            .json()
            .await
            .with_context(|| format!("the token endpoint answered {status} without JSON"))?;
        if !status.is_success() {
            return Err(anyhow!("the token endpoint answered {status}: {body}"));
        }
        member(&body, "access_token")
    }
}

/// A string member of a create response.
fn member(body: &Value, key: &str) -> anyhow::Result<String> {
    body[key]
        .as_str()
        .map(str::to_owned)
        .ok_or_else(|| anyhow!("the server's response has no `{key}`"))
}

/// A tenant id no earlier bench on the same server has used.
pub(super) fn unique_tenant() -> String {
    let since_epoch = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    format!("bench-{}-{}", since_epoch.as_millis(), std::process::id())
}
