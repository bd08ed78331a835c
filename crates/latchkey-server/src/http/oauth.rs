//! The authorization server's endpoints (docs/API.md, "The authorization server"):
//! client credentials and refresh tokens exchanged for signed JWTs at `/oauth/token`,
//! RFC 7662 introspection, RFC 7009 revocation, RFC 8414 metadata and the JWKS.
//!
//! Policy: every endpoint here answers RFC 6749 error objects ([`error::OAuthError`]),
//! never problem+json, and every answer carries `Cache-Control: no-store`. A client that
//! fails to authenticate learns nothing about why.

pub(crate) mod client;
pub(crate) mod error;
pub(crate) mod introspect;
pub(crate) mod jwt_bearer;
pub(crate) mod metadata;
pub(crate) mod revoke;
pub(crate) mod token;
