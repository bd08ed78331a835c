//! Signing keys: generated here, sealed at rest with AES-256-GCM under the master key,
//! rotated on a schedule with overlap, published as a JWKS.
//!
//! Keys are ordered by creation. The newest is *next* (published, not yet signing), the
//! second newest *current* (signs), the third *previous* (published so tokens it signed
//! keep verifying). A rotation adds a new *next*; the old *previous* leaves the JWKS and
//! every token it signed stops verifying, except that a key which signed a long-lived JWT
//! stays published while that token lives. A verifier that caches the JWKS therefore
//! never meets an unknown `kid` during a rotation.

use crate::service::error::Error;
use aws_lc_rs::aead::{AES_256_GCM, Aad, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};
use aws_lc_rs::encoding::AsDer;
use aws_lc_rs::rand::{SecureRandom, SystemRandom};
use aws_lc_rs::rsa::KeySize;
use aws_lc_rs::signature::{
    self, ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, Ed25519KeyPair, KeyPair, ParsedPublicKey,
    RsaKeyPair,
};
use latchkey_core::Timestamp;
use latchkey_core::jwt::{Algorithm, b64url_encode};
use latchkey_core::store::SigningKeyRecord;
use serde_json::{Value, json};
use std::sync::Arc;

/// A usable signing key: the private half for signing and the parsed public half for
/// checking the server's own tokens.
pub struct SigningKey {
    /// The key id.
    pub kid: String,
    /// Its algorithm.
    pub alg: Algorithm,
    signer: Signer,
    verifier: ParsedPublicKey,
    jwk: Value,
}

enum Signer {
    Ed25519(Ed25519KeyPair),
    Es256(EcdsaKeyPair),
    Rs256(RsaKeyPair),
}

impl SigningKey {
    /// Signs `message` (a JWS signing input).
    pub fn sign(&self, message: &[u8]) -> Result<Vec<u8>, Error> {
        let failed = |_| Error::internal("signing failed");
        match &self.signer {
            Signer::Ed25519(pair) => Ok(pair.sign(message).as_ref().to_vec()),
            Signer::Es256(pair) => pair
                .sign(&SystemRandom::new(), message)
                .map(|s| s.as_ref().to_vec())
                .map_err(failed),
            Signer::Rs256(pair) => {
                let mut signature = vec![0u8; pair.public_modulus_len()];
                pair.sign(
                    &signature::RSA_PKCS1_SHA256,
                    &SystemRandom::new(),
                    message,
                    &mut signature,
                )
                .map_err(failed)?;
                Ok(signature)
            }
        }
    }

    /// True when `signature` over `message` is this key's.
    pub fn verify(&self, message: &[u8], signature: &[u8]) -> bool {
        self.verifier.verify_sig(message, signature).is_ok()
    }
}

/// The master key that seals private keys.
pub struct MasterKey(LessSafeKey);

impl MasterKey {
    /// A master key from 32 bytes.
    pub fn new(bytes: &[u8]) -> anyhow::Result<Self> {
        let key = bytes
            .get(..32)
            .ok_or_else(|| anyhow::anyhow!("the master key must hold 32 bytes"))?;
        let unbound = UnboundKey::new(&AES_256_GCM, key)
            .map_err(|_| anyhow::anyhow!("the master key is not an AES-256 key"))?;
        Ok(Self(LessSafeKey::new(unbound)))
    }

    /// Seals `plaintext` with `kid` (a key id, or another label that binds the
    /// ciphertext to its row) as associated data: nonce then ciphertext and tag.
    pub(crate) fn seal(&self, kid: &str, plaintext: &[u8]) -> Result<Vec<u8>, Error> {
        let mut nonce = [0u8; NONCE_LEN];
        SystemRandom::new()
            .fill(&mut nonce)
            .map_err(|_| Error::internal("random failure"))?;
        let mut sealed = plaintext.to_vec();
        self.0
            .seal_in_place_append_tag(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(kid.as_bytes()),
                &mut sealed,
            )
            .map_err(|_| Error::internal("sealing a key failed"))?;
        let mut out = nonce.to_vec();
        out.extend_from_slice(&sealed);
        Ok(out)
    }

    /// Opens what [`MasterKey::seal`] sealed with the same `kid`.
    pub(crate) fn open(&self, kid: &str, sealed: &[u8]) -> Result<Vec<u8>, Error> {
        let wrong = || {
            Error::Internal(format!(
                "signing key {kid} does not open under this master key"
            ))
        };
        if sealed.len() < NONCE_LEN {
            return Err(wrong());
        }
        let (nonce, ciphertext) = sealed.split_at(NONCE_LEN);
        let nonce = Nonce::try_assume_unique_for_key(nonce).map_err(|_| wrong())?;
        let mut buffer = ciphertext.to_vec();
        let plain = self
            .0
            .open_in_place(nonce, Aad::from(kid.as_bytes()), &mut buffer)
            .map_err(|_| wrong())?;
        Ok(plain.to_vec())
    }
}

/// Generates a new key of `alg` and returns its sealed record (its `seq` is assigned by
/// the store).
pub fn generate(
    master: &MasterKey,
    alg: Algorithm,
    now: Timestamp,
) -> Result<SigningKeyRecord, Error> {
    let failed = |_| Error::internal("key generation failed");
    let rng = SystemRandom::new();
    let mut id = [0u8; 16];
    rng.fill(&mut id).map_err(failed)?;
    let kid = b64url_encode(&id);
    let pkcs8 = match alg {
        Algorithm::EdDSA => Ed25519KeyPair::generate_pkcs8(&rng)
            .map_err(failed)?
            .as_ref()
            .to_vec(),
        Algorithm::ES256 => EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng)
            .map_err(failed)?
            .as_ref()
            .to_vec(),
        Algorithm::RS256 => {
            let pair = RsaKeyPair::generate(KeySize::Rsa2048).map_err(failed)?;
            AsDer::<aws_lc_rs::encoding::Pkcs8V1Der>::as_der(&pair)
                .map_err(failed)?
                .as_ref()
                .to_vec()
        }
    };
    let key = load(&kid, alg, &pkcs8)?;
    Ok(SigningKeyRecord {
        kid: kid.clone(),
        seq: 0,
        alg,
        created_at: now,
        private_sealed: master.seal(&kid, &pkcs8)?,
        public_jwk: key.jwk.to_string(),
    })
}

/// Opens a stored key.
pub fn open(master: &MasterKey, record: &SigningKeyRecord) -> Result<SigningKey, Error> {
    let alg = record.alg;
    let pkcs8 = master.open(&record.kid, &record.private_sealed)?;
    load(&record.kid, alg, &pkcs8)
}

fn load(kid: &str, alg: Algorithm, pkcs8: &[u8]) -> Result<SigningKey, Error> {
    let rejected = |_| Error::Internal(format!("signing key {kid} is unreadable"));
    let (signer, verifier, jwk) = match alg {
        Algorithm::EdDSA => {
            let pair = Ed25519KeyPair::from_pkcs8(pkcs8).map_err(rejected)?;
            let public = pair.public_key().as_ref().to_vec();
            let jwk = json!({ "kty": "OKP", "crv": "Ed25519", "x": b64url_encode(&public) });
            let verifier = ParsedPublicKey::new(&signature::ED25519, &public).map_err(rejected)?;
            (Signer::Ed25519(pair), verifier, jwk)
        }
        Algorithm::ES256 => {
            let pair = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, pkcs8)
                .map_err(rejected)?;
            let public = pair.public_key().as_ref().to_vec();
            // An uncompressed point: 0x04 ‖ x ‖ y.
            let point = match public.split_first() {
                Some((0x04, point)) if point.len() == 64 => point,
                _ => {
                    return Err(Error::Internal(format!(
                        "signing key {kid} is not a P-256 point"
                    )));
                }
            };
            let (x, y) = point.split_at(32);
            let jwk = json!({ "kty": "EC", "crv": "P-256", "x": b64url_encode(x), "y": b64url_encode(y) });
            let verifier = ParsedPublicKey::new(&signature::ECDSA_P256_SHA256_FIXED, &public)
                .map_err(rejected)?;
            (Signer::Es256(pair), verifier, jwk)
        }
        Algorithm::RS256 => {
            let pair = RsaKeyPair::from_pkcs8(pkcs8).map_err(rejected)?;
            let public = pair.public_key().as_ref().to_vec();
            let (n, e) = rsa_public_components(&public).ok_or_else(|| {
                Error::Internal(format!("signing key {kid} has an unreadable public key"))
            })?;
            let jwk = json!({ "kty": "RSA", "n": b64url_encode(n), "e": b64url_encode(e) });
            let verifier = ParsedPublicKey::new(&signature::RSA_PKCS1_2048_8192_SHA256, &public)
                .map_err(rejected)?;
            (Signer::Rs256(pair), verifier, jwk)
        }
    };
    let mut jwk = jwk;
    if let Value::Object(map) = &mut jwk {
        map.insert("kid".into(), json!(kid));
        map.insert("alg".into(), json!(alg.as_str()));
        map.insert("use".into(), json!("sig"));
    }
    Ok(SigningKey {
        kid: kid.to_owned(),
        alg,
        signer,
        verifier,
        jwk,
    })
}

/// Reads `n` and `e` out of a DER `RSAPublicKey` (RFC 8017 A.1.1), without leading zeros.
fn rsa_public_components(der: &[u8]) -> Option<(&[u8], &[u8])> {
    let (tag, body, _) = der_element(der)?;
    if tag != 0x30 {
        return None;
    }
    let (n_tag, n, rest) = der_element(body)?;
    let (e_tag, e, _) = der_element(rest)?;
    if n_tag != 0x02 || e_tag != 0x02 {
        return None;
    }
    Some((strip_leading_zeros(n), strip_leading_zeros(e)))
}

fn strip_leading_zeros(int: &[u8]) -> &[u8] {
    let start = int
        .iter()
        .position(|&b| b != 0)
        .unwrap_or(int.len().saturating_sub(1));
    &int[start..]
}

/// One DER element: its tag, its contents, and what follows it.
fn der_element(input: &[u8]) -> Option<(u8, &[u8], &[u8])> {
    let tag = *input.first()?;
    let first = *input.get(1)?;
    let (length, header) = if first < 0x80 {
        (usize::from(first), 2)
    } else {
        let count = usize::from(first & 0x7f);
        if count == 0 || count > 4 {
            return None;
        }
        let bytes = input.get(2..2 + count)?;
        (
            bytes
                .iter()
                .fold(0usize, |acc, &b| (acc << 8) | usize::from(b)),
            2 + count,
        )
    };
    let body = input.get(header..header + length)?;
    Some((tag, body, &input[header + length..]))
}

/// The published keys, newest first, and the one that signs; plus the JWTs already
/// verified against exactly this set (a new set, after a rotation, starts empty).
pub struct KeySet {
    keys: Vec<Arc<SigningKey>>,
    jwks: String,
    verified: VerifiedTokens,
}

/// JWTs whose signature, issuer and type were checked against one key set, with their
/// claims. A signature check costs about 40 µs and a lookup well under 1; expiry and
/// revocation are still checked on every use. Keys hash with foldhash under a random
/// seed: SipHash over a JWT's few hundred bytes cost an introspection 2% of its
/// instructions.
pub struct VerifiedTokens {
    entries: std::sync::Mutex<
        std::collections::HashMap<String, Arc<latchkey_wire::Claims>, foldhash::fast::RandomState>,
    >,
}

const VERIFIED_CAPACITY: usize = 50_000;

impl VerifiedTokens {
    fn new() -> Self {
        Self {
            entries: std::sync::Mutex::new(std::collections::HashMap::default()),
        }
    }

    /// The claims of a token verified before.
    pub fn get(&self, token: &str) -> Option<Arc<latchkey_wire::Claims>> {
        self.entries.lock().ok()?.get(token).cloned()
    }

    /// Remembers a verified token; forgets everything when full.
    pub fn put(&self, token: &str, claims: Arc<latchkey_wire::Claims>) {
        if let Ok(mut entries) = self.entries.lock() {
            if entries.len() >= VERIFIED_CAPACITY {
                entries.clear();
            }
            entries.insert(token.to_owned(), claims);
        }
    }
}

impl KeySet {
    /// Builds the set from opened keys, newest first.
    pub fn new(keys: Vec<Arc<SigningKey>>) -> Self {
        let jwks =
            json!({ "keys": keys.iter().map(|k| k.jwk.clone()).collect::<Vec<_>>() }).to_string();
        Self {
            keys,
            jwks,
            verified: VerifiedTokens::new(),
        }
    }

    /// Tokens already verified against this set.
    pub fn verified(&self) -> &VerifiedTokens {
        &self.verified
    }

    /// The signing key: the second newest (the newest is announced ahead of use), or the
    /// only one.
    pub fn current(&self) -> Option<&Arc<SigningKey>> {
        self.keys.get(1).or_else(|| self.keys.first())
    }

    /// A published key by id.
    pub fn find(&self, kid: &str) -> Option<&Arc<SigningKey>> {
        self.keys.iter().find(|k| k.kid == kid)
    }

    /// The ids of the published keys, newest first.
    pub fn kids(&self) -> Vec<String> {
        self.keys.iter().map(|k| k.kid.clone()).collect()
    }

    /// The JWKS document.
    pub fn jwks(&self) -> &str {
        &self.jwks
    }

    /// The algorithms of the published keys.
    pub fn algorithms(&self) -> Vec<&'static str> {
        let mut algs: Vec<&'static str> = self.keys.iter().map(|k| k.alg.as_str()).collect();
        algs.sort_unstable();
        algs.dedup();
        algs
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_algorithm_seals_opens_signs_and_verifies() {
        let master = MasterKey::new(&[9u8; 32]).unwrap();
        for alg in [Algorithm::EdDSA, Algorithm::ES256, Algorithm::RS256] {
            let record = generate(&master, alg, Timestamp::from_millis(0)).unwrap();
            let key = open(&master, &record).unwrap();
            let signature = key.sign(b"input").unwrap();
            assert!(key.verify(b"input", &signature), "{alg:?}");
            assert!(!key.verify(b"other", &signature), "{alg:?}");
            let jwk: Value = serde_json::from_str(&record.public_jwk).unwrap();
            assert_eq!(jwk["alg"], alg.as_str());
            assert!(jwk.get("d").is_none() && jwk.get("p").is_none());
            let other = MasterKey::new(&[8u8; 32]).unwrap();
            assert!(open(&other, &record).is_err());
        }
    }

    #[test]
    fn rsa_jwk_has_a_2048_bit_modulus_and_the_usual_exponent() {
        let master = MasterKey::new(&[9u8; 32]).unwrap();
        let record = generate(&master, Algorithm::RS256, Timestamp::from_millis(0)).unwrap();
        let jwk: Value = serde_json::from_str(&record.public_jwk).unwrap();
        assert_eq!(jwk["e"], "AQAB");
        let n = latchkey_core::jwt::b64url_decode(jwk["n"].as_str().unwrap()).unwrap();
        assert_eq!(n.len(), 256);
    }
}
