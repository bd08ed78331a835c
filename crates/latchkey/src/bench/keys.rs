//! Ed25519 keys the bench signs with: a client's DPoP proof key (RFC 9449 §4), and the
//! key of the fake OIDC issuer whose ID tokens the JWT-bearer runs exchange. Both sign
//! on the load generator's cores, once per request where a run asks for it, so the
//! header is encoded once and only the claims are built per signature.

use anyhow::anyhow;
use aws_lc_rs::signature::{Ed25519KeyPair, KeyPair};
use latchkey_core::jwt::b64url_encode;
use serde_json::{Value, json};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

/// An Ed25519 key with a fixed JWS header, and a source of unique `jti`s.
pub struct SigningKey {
    pair: Ed25519KeyPair,
    /// The protected header, base64url.
    header: String,
    /// Random, so that `jti`s differ between runs of the bench on one server.
    jti_prefix: String,
    next: AtomicU64,
}

impl SigningKey {
    /// A fresh key whose tokens carry `header` plus `"alg":"EdDSA"` (and the public key
    /// as `jwk` when `embed_jwk`, as a DPoP proof does).
    fn generate(mut header: Value, embed_jwk: bool) -> anyhow::Result<Self> {
        let pair = Ed25519KeyPair::generate().map_err(|_| anyhow!("generating an Ed25519 key"))?;
        header["alg"] = json!("EdDSA");
        if embed_jwk {
            header["jwk"] = public_jwk(&pair);
        }
        let mut random = [0u8; 12];
        aws_lc_rs::rand::fill(&mut random).map_err(|_| anyhow!("no randomness"))?;
        Ok(Self {
            header: b64url_encode(header.to_string().as_bytes()),
            jti_prefix: b64url_encode(&random),
            pair,
            next: AtomicU64::new(0),
        })
    }

    /// A DPoP proof key.
    pub fn dpop() -> anyhow::Result<Self> {
        Self::generate(json!({ "typ": "dpop+jwt" }), true)
    }

    /// An ID-token issuer's key, published as `kid`.
    pub fn issuer(kid: &str) -> anyhow::Result<Self> {
        Self::generate(json!({ "typ": "JWT", "kid": kid }), false)
    }

    /// The public key as a JWK, for a JWKS.
    pub fn public_jwk(&self) -> Value {
        public_jwk(&self.pair)
    }

    /// A `jti` no other token of this key has.
    pub fn jti(&self) -> String {
        let n = self.next.fetch_add(1, Ordering::Relaxed);
        format!("{}-{n}", self.jti_prefix)
    }

    /// `claims` signed under the key's header: a compact JWS.
    pub fn sign(&self, claims: &Value) -> String {
        let mut token = format!(
            "{}.{}",
            self.header,
            b64url_encode(claims.to_string().as_bytes())
        );
        let signature = self.pair.sign(token.as_bytes());
        token.push('.');
        token.push_str(&b64url_encode(signature.as_ref()));
        token
    }

    /// A DPoP proof for `method` on `uri`, issued now with a fresh `jti`, and `ath`
    /// (the access token's hash) when given.
    pub fn proof(&self, method: &str, uri: &str, ath: Option<&str>) -> String {
        let mut claims = json!({
            "jti": self.jti(), "htm": method, "htu": uri, "iat": unix_now(),
        });
        if let Some(ath) = ath {
            claims["ath"] = json!(ath);
        }
        self.sign(&claims)
    }
}

fn public_jwk(pair: &Ed25519KeyPair) -> Value {
    json!({
        "kty": "OKP", "crv": "Ed25519",
        "x": b64url_encode(pair.public_key().as_ref()),
    })
}

/// Seconds since the epoch.
pub fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

#[cfg(test)]
mod tests {
    use super::*;
    use latchkey_core::Timestamp;
    use latchkey_verify::dpop::{ProofExpectations, access_token_hash, check_proof};

    #[test]
    fn a_proof_is_accepted_by_the_verifiers_check_and_each_has_its_own_jti() {
        let key = SigningKey::dpop().unwrap();
        let token = "eyJ.access.token";
        let ath = access_token_hash(token);
        let uri = "http://127.0.0.1:8080/reports";
        let first = key.proof("GET", uri, Some(&ath));
        let second = key.proof("GET", uri, Some(&ath));
        assert_ne!(first, second);
        let expect = ProofExpectations {
            method: "GET",
            uri,
            access_token: Some(token),
            now: Timestamp::from_millis(unix_now() * 1000),
            window_seconds: 60,
        };
        let checked = check_proof(&first, &expect).unwrap();
        assert!(!checked.jkt.is_empty());
        let other = ProofExpectations {
            method: "POST",
            ..expect
        };
        assert!(check_proof(&first, &other).is_err());
    }

    #[test]
    fn issuer_tokens_name_their_kid_and_verify_with_the_published_key() {
        let key = SigningKey::issuer("bench-1").unwrap();
        let jwk = json!({ "keys": [{ "kid": "bench-1", "alg": "EdDSA", "use": "sig",
            "kty": "OKP", "crv": "Ed25519", "x": key.public_jwk()["x"] }] });
        let set = latchkey_verify::assertion::JwkSet::parse(jwk.to_string().as_bytes()).unwrap();
        let token = key.sign(&json!({ "iss": "i", "sub": "s", "jti": key.jti() }));
        let parsed = latchkey_verify::assertion::parse(&token).unwrap();
        assert_eq!(parsed.kid(), Some("bench-1"));
        let claims = parsed.verify(&set.get("bench-1").unwrap()).unwrap();
        assert_eq!(claims["sub"], "s");
    }
}
