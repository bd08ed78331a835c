//! latchkey for resource servers: verify the credentials latchkey issues, locally and
//! cheaply, and check their scopes.
//!
//! A [`Verifier`] reads the issuer's RFC 8414 metadata and JWKS once, then checks
//! access tokens (RFC 9068 JWTs) on its own: hardened per RFC 8725 (the algorithm comes
//! from the key, never from the token; `typ`, `iss`, `aud`, time window with leeway,
//! required claims, no `crit`, no token-supplied keys or key URLs, strict base64url,
//! no duplicate JSON members, a size limit before any decoding). Verified tokens are
//! remembered in a bounded cache keyed by a fast hash of the token's signature's end
//! and compared whole, so a repeat
//! costs well under a microsecond instead of a signature check. Api keys and long-lived
//! JWTs are checked through the issuer's introspection endpoint with the verifier's
//! own credential, behind a cache keyed by the key's SHA-256. A [`RevocationCheck`]
//! runs on every request, cache hits included; [`RevocationReplica`] is the one to use:
//! a local copy of the issuer's revocation feed, kept current over Server-Sent Events,
//! that fails closed (503) when it has not heard from the feed for too long, or when the
//! feed sends an entry kind it does not know.
//!
//! A credential never grants more than its roles and its user hold now. The replica also
//! keeps every role's permissions and every member's roles from the feed, and on every
//! request — cache hits included — the caller's scopes are the token's `scope` cut down
//! to what its `rol`/`prm` give now; a personal token whose user left its tenant is
//! refused. Without a replica, short-lived access tokens are taken as issued and
//! long-lived JWTs, api keys and JWTs without `rol`/`prm` are introspected. A credential
//! with an IP allowlist is usable only from an address the list holds:
//! [`Verifier::verify`] knows no address and refuses it, [`Verifier::verify_from`] takes
//! one, and the tower layer reads a [`ClientAddress`] extension or axum's `ConnectInfo`
//! with [`VerifierOptions::trusted_proxies`] (README.md, "Narrowing and IP allowlists").
//!
//! Protecting an axum route with a scope takes three lines:
//!
//! ```no_run
//! use axum::{Json, Router, routing::get};
//! use latchkey_verify::{Principal, Scopes, Verifier, VerifierOptions};
//!
//! async fn reports(principal: Principal) -> Json<Principal> {
//!     Json(principal)
//! }
//!
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! let verifier = Verifier::discover("http://127.0.0.1:7700", VerifierOptions::default()).await?;
//! let app: Router = Router::new()
//!     .route("/reports", get(reports).route_layer(verifier.require(Scopes::all_of(["reports:read"]))));
//! # let _ = app;
//! # Ok(())
//! # }
//! ```
//!
//! Failures follow RFC 6750: no token is a 401 with a bare `Bearer` challenge, a bad
//! one a 401 with `error="invalid_token"`, a missing scope a 403 with
//! `error="insufficient_scope"` and the scope needed:
//!
//! ```
//! use latchkey_verify::{Scopes, VerifyError};
//! # use latchkey_verify::{Principal, TokenKind};
//! # use latchkey_core::{TenantId, TokenId, jwt::TokenOwnerType, permission::parse_scope};
//! # let principal = Principal {
//! #     token_id: TokenId::from_u128(7), tenant: TenantId::parse("acme").unwrap(),
//! #     user: None, owner: TokenOwnerType::Tenant, kind: TokenKind::ApiKey,
//! #     scopes: parse_scope("reports:read").unwrap(), jti: None, expires_at: None,
//! #     ip_allowlist: Vec::new(), trust: None,
//! # };
//! let denied = Scopes::all_of(["reports:write"]).check(&principal).unwrap_err();
//! assert_eq!(denied.status(), 403);
//! assert_eq!(
//!     denied.www_authenticate().unwrap(),
//!     r#"Bearer error="insufficient_scope", scope="reports:write""#
//! );
//! assert!(Scopes::any_of(["reports:read", "reports:write"]).check(&principal).is_ok());
//! assert_eq!(VerifyError::MissingToken.www_authenticate().unwrap(), "Bearer");
//! ```
//!
//! Transport: HTTP/1.1, over TLS for `https://` (rustls on aws-lc-rs, the crate's only
//! crypto stack — no ring, no OpenSSL), trusting the system's roots plus an optional
//! private CA bundle ([`VerifierOptions::tls_ca_file`]). The issuer (the `iss` tokens
//! carry) may differ from where the server is reached ([`VerifierOptions::connect`]);
//! plain `http://` is accepted only on loopback unless
//! [`VerifierOptions::allow_insecure_issuer`] (README.md, "latchkey-verify";
//! docs/DEPLOYMENT.md, "Gateways in another network following an https issuer").

pub mod assertion;
mod bearer;
mod cache;
pub mod dpop;
mod error;
mod http;
mod introspection;
mod json;
mod jwk;
mod jwt;
mod keys;
mod layer;
mod narrow;
mod options;
mod principal;
mod replica;
mod revocation;
mod transport;
mod verifier;

pub use error::{DiscoveryError, InvalidReason, VerifyError};
pub use latchkey_core::bearer::Scheme;
pub use layer::{
    ClientAddress, VerifyLayer, VerifyService, bearer_token, presented_token, request_uri,
};
// The clock lives in latchkey-core, so the server, the gateway and a verifier can share
// one; verifier users keep finding it here.
pub use latchkey_core::clock::{Clock, SystemClock};
pub use options::{Credential, VerifierOptions};
pub use principal::{Principal, Scopes, TokenKind, TrustCaller};
pub use replica::{ReplicaMetrics, ReplicaOptions, RevocationReplica, StaleReason};
pub use revocation::{NoRevocationList, Revocation, RevocationCheck};
pub use transport::{ClientIdentity, install_crypto_provider, tls_client_config};
pub use verifier::{DpopRequest, Evictor, Verifier};
