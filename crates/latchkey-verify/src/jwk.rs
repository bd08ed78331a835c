//! Public JWKs (RFC 7517, RFC 8037) turned into parsed aws-lc-rs verification keys.
//!
//! Policy: each key is parsed once, when the set is fetched, and carries its own
//! algorithm, derived from `kty`/`crv` and cross-checked against the JWK's `alg` when
//! present. The token header never chooses the algorithm (RFC 8725 §3.1); it can only
//! agree with the key. Keys this verifier cannot or may not use (another `use`, an
//! algorithm not allowed, a curve not supported, malformed material, a `kid` that
//! appears twice) are left out of the set with a warning rather than failing the whole
//! set, so one odd key never locks out the others.

use crate::json::parse_object;
use aws_lc_rs::signature::{
    ECDSA_P256_SHA256_FIXED, ED25519, ParsedPublicKey, RSA_PKCS1_2048_8192_SHA256,
    RsaPublicKeyComponents,
};
use latchkey_core::jwt::{Algorithm, b64url_decode};
use serde_json::{Map, Value};
use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;

/// Longest `kid` looked up; longer ones are unknown without a refetch.
pub(crate) const MAX_KID_LEN: usize = 256;

/// RSA moduli below 2048 bits are refused at load, not only at verification.
const MIN_RSA_MODULUS_BYTES: usize = 256;

/// One usable public key and the only algorithm it verifies.
pub(crate) struct VerifyingKey {
    alg: Algorithm,
    key: ParsedPublicKey,
}

impl fmt::Debug for VerifyingKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "VerifyingKey({})", self.alg.as_str())
    }
}

impl VerifyingKey {
    /// The algorithm this key was published for.
    pub(crate) fn alg(&self) -> Algorithm {
        self.alg
    }

    /// True when `signature` is this key's signature over `message`.
    pub(crate) fn verify(&self, message: &[u8], signature: &[u8]) -> bool {
        self.key.verify_sig(message, signature).is_ok()
    }
}

/// The issuer's usable keys by `kid`.
#[derive(Debug, Default)]
pub(crate) struct KeySet {
    keys: HashMap<String, Arc<VerifyingKey>>,
}

impl KeySet {
    /// The key named `kid`.
    pub(crate) fn get(&self, kid: &str) -> Option<Arc<VerifyingKey>> {
        self.keys.get(kid).cloned()
    }

    /// True when every key of `self` is also in `next` under the same kid, with the
    /// same algorithm and material, so nothing verified under `self` loses its key by
    /// switching to `next`.
    pub(crate) fn is_covered_by(&self, next: &KeySet) -> bool {
        self.keys.iter().all(|(kid, key)| {
            next.keys
                .get(kid)
                .is_some_and(|k| k.alg == key.alg && k.key.as_ref() == key.key.as_ref())
        })
    }

    /// How many keys are usable.
    pub(crate) fn len(&self) -> usize {
        self.keys.len()
    }
}

/// Parses a JWK Set document, keeping the keys usable with `allowed` algorithms.
pub(crate) fn parse_jwks(bytes: &[u8], allowed: &[Algorithm]) -> Result<KeySet, String> {
    let document = parse_object(bytes).map_err(|e| format!("{e:?}"))?;
    let Some(Value::Array(entries)) = document.get("keys") else {
        return Err("no `keys` array".to_owned());
    };
    let mut keys: HashMap<String, Arc<VerifyingKey>> = HashMap::new();
    let mut repeated: Vec<String> = Vec::new();
    for entry in entries {
        let Value::Object(jwk) = entry else {
            continue;
        };
        let Some(kid) = string(jwk, "kid") else {
            tracing::warn!("JWKS entry without a kid ignored");
            continue;
        };
        match parse_jwk(jwk, allowed) {
            Ok(key) => {
                if keys.insert(kid.to_owned(), Arc::new(key)).is_some() {
                    repeated.push(kid.to_owned());
                }
            }
            Err(why) => tracing::warn!(kid, why, "JWKS key ignored"),
        }
    }
    // Two keys under one kid leave the verifier guessing which was meant: use neither.
    for kid in repeated {
        tracing::warn!(kid, "kid appears twice in the JWKS; both ignored");
        keys.remove(&kid);
    }
    Ok(KeySet { keys })
}

fn string<'a>(jwk: &'a Map<String, Value>, name: &str) -> Option<&'a str> {
    jwk.get(name).and_then(Value::as_str)
}

fn bytes(jwk: &Map<String, Value>, name: &'static str) -> Result<Vec<u8>, &'static str> {
    string(jwk, name)
        .and_then(b64url_decode)
        .ok_or("a key parameter is missing or not base64url")
}

pub(crate) fn parse_jwk(
    jwk: &Map<String, Value>,
    allowed: &[Algorithm],
) -> Result<VerifyingKey, &'static str> {
    if let Some(usage) = jwk.get("use")
        && usage.as_str() != Some("sig")
    {
        return Err("not a signing key");
    }
    let derived = match (string(jwk, "kty"), string(jwk, "crv")) {
        (Some("OKP"), Some("Ed25519")) => Algorithm::EdDSA,
        (Some("EC"), Some("P-256")) => Algorithm::ES256,
        (Some("RSA"), _) => Algorithm::RS256,
        _ => return Err("unsupported key type or curve"),
    };
    if let Some(alg) = jwk.get("alg")
        && alg.as_str() != Some(derived.as_str())
    {
        return Err("`alg` does not fit the key type");
    }
    if !allowed.contains(&derived) {
        return Err("algorithm not allowed by this verifier");
    }
    let key = match derived {
        Algorithm::EdDSA => {
            let x = bytes(jwk, "x")?;
            if x.len() != 32 {
                return Err("Ed25519 `x` must be 32 bytes");
            }
            ParsedPublicKey::new(&ED25519, x)
        }
        Algorithm::ES256 => {
            let (x, y) = (bytes(jwk, "x")?, bytes(jwk, "y")?);
            if x.len() != 32 || y.len() != 32 {
                return Err("P-256 `x` and `y` must be 32 bytes");
            }
            let mut point = Vec::with_capacity(65);
            point.push(0x04);
            point.extend_from_slice(&x);
            point.extend_from_slice(&y);
            ParsedPublicKey::new(&ECDSA_P256_SHA256_FIXED, point)
        }
        Algorithm::RS256 => {
            let (n, e) = (bytes(jwk, "n")?, bytes(jwk, "e")?);
            if n.len() < MIN_RSA_MODULUS_BYTES {
                return Err("RSA modulus shorter than 2048 bits");
            }
            RsaPublicKeyComponents { n, e }.to_parsed_public_key(&RSA_PKCS1_2048_8192_SHA256)
        }
    }
    .map_err(|_| "key material rejected")?;
    Ok(VerifyingKey { alg: derived, key })
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_lc_rs::signature::{Ed25519KeyPair, KeyPair};
    use latchkey_core::jwt::b64url_encode;

    fn ed_jwk(kid: &str, extra: &str) -> String {
        let pair = Ed25519KeyPair::generate().unwrap();
        let x = b64url_encode(pair.public_key().as_ref());
        format!(r#"{{"kid":"{kid}","kty":"OKP","crv":"Ed25519","x":"{x}"{extra}}}"#)
    }

    const ALL: [Algorithm; 3] = [Algorithm::EdDSA, Algorithm::ES256, Algorithm::RS256];

    #[test]
    fn keys_carry_the_algorithm_of_their_type() {
        let doc = format!(
            r#"{{"keys":[{}]}}"#,
            ed_jwk("a", r#","alg":"EdDSA","use":"sig""#)
        );
        let set = parse_jwks(doc.as_bytes(), &ALL).unwrap();
        assert_eq!(set.get("a").unwrap().alg(), Algorithm::EdDSA);
    }

    #[test]
    fn unusable_keys_are_skipped_not_fatal() {
        let doc = format!(
            r#"{{"keys":[{},{},{},{},{}, {{"kid":"x","kty":"oct","k":"AAAA"}}]}}"#,
            ed_jwk("wrong-alg", r#","alg":"RS256""#),
            ed_jwk("enc", r#","use":"enc""#),
            ed_jwk("twice", ""),
            ed_jwk("twice", ""),
            ed_jwk("good", ""),
        );
        let set = parse_jwks(doc.as_bytes(), &ALL).unwrap();
        assert_eq!(set.len(), 1);
        assert!(set.get("good").is_some());
        let only_es = parse_jwks(doc.as_bytes(), &[Algorithm::ES256]).unwrap();
        assert_eq!(only_es.len(), 0);
    }
}
