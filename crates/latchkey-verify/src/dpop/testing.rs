//! A DPoP client for tests (feature `test-dpop`): a key pair of each algorithm proofs
//! may use, and proofs made with it — well-formed ones, and any header or claims an
//! attack needs. Not for production clients: keys live only in memory.

#![allow(clippy::expect_used)]

use super::access_token_hash;
use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::rsa::KeySize;
use aws_lc_rs::signature::{
    ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, Ed25519KeyPair, KeyPair, RSA_PKCS1_SHA256,
    RsaKeyPair,
};
use latchkey_core::jwt::b64url_encode;
use serde_json::{Map, Value, json};
use std::sync::atomic::{AtomicU64, Ordering};

enum Pair {
    Ed(Ed25519KeyPair),
    Es(EcdsaKeyPair),
    Rs(Box<RsaKeyPair>),
}

/// A client's proof key.
pub struct ProofKey {
    pair: Pair,
}

static NEXT_JTI: AtomicU64 = AtomicU64::new(1);

impl ProofKey {
    /// A fresh Ed25519 key (`EdDSA`).
    pub fn ed25519() -> Self {
        Self {
            pair: Pair::Ed(Ed25519KeyPair::generate().expect("Ed25519 key")),
        }
    }

    /// A fresh P-256 key (`ES256`).
    pub fn es256() -> Self {
        Self {
            pair: Pair::Es(
                EcdsaKeyPair::generate(&ECDSA_P256_SHA256_FIXED_SIGNING).expect("P-256 key"),
            ),
        }
    }

    /// A fresh RSA-2048 key (`RS256`); slow to make.
    pub fn rs256() -> Self {
        Self {
            pair: Pair::Rs(Box::new(
                RsaKeyPair::generate(KeySize::Rsa2048).expect("RSA key"),
            )),
        }
    }

    /// The JOSE algorithm name.
    pub fn alg(&self) -> &'static str {
        match self.pair {
            Pair::Ed(_) => "EdDSA",
            Pair::Es(_) => "ES256",
            Pair::Rs(_) => "RS256",
        }
    }

    /// The public JWK, with only the members RFC 7638 needs.
    pub fn public_jwk(&self) -> Value {
        match &self.pair {
            Pair::Ed(pair) => json!({
                "kty": "OKP", "crv": "Ed25519", "x": b64url_encode(pair.public_key().as_ref()),
            }),
            Pair::Es(pair) => {
                let point = pair.public_key().as_ref();
                json!({
                    "kty": "EC", "crv": "P-256",
                    "x": b64url_encode(&point[1..33]), "y": b64url_encode(&point[33..65]),
                })
            }
            Pair::Rs(pair) => {
                let public = pair.public_key();
                json!({
                    "kty": "RSA",
                    "n": b64url_encode(public.modulus().big_endian_without_leading_zero()),
                    "e": b64url_encode(public.exponent().big_endian_without_leading_zero()),
                })
            }
        }
    }

    /// Its RFC 7638 thumbprint: the `cnf.jkt` of tokens bound to it.
    pub fn jkt(&self) -> String {
        let Value::Object(jwk) = self.public_jwk() else {
            unreachable!("a JWK is an object")
        };
        super::thumbprint(&jwk).expect("thumbprint of a generated key")
    }

    /// The header of an honest proof.
    pub fn header(&self) -> Map<String, Value> {
        let mut header = Map::new();
        header.insert("typ".into(), json!("dpop+jwt"));
        header.insert("alg".into(), json!(self.alg()));
        header.insert("jwk".into(), self.public_jwk());
        header
    }

    /// The claims of an honest proof for `method` and `uri` at `iat`, with a fresh
    /// `jti`, and `ath` for `access_token` when given.
    pub fn claims(
        &self,
        method: &str,
        uri: &str,
        iat: i64,
        access_token: Option<&str>,
    ) -> Map<String, Value> {
        let mut claims = Map::new();
        let n = NEXT_JTI.fetch_add(1, Ordering::Relaxed);
        claims.insert("jti".into(), json!(format!("{}-{n}", uuid::Uuid::new_v4())));
        claims.insert("htm".into(), json!(method));
        claims.insert("htu".into(), json!(uri));
        claims.insert("iat".into(), json!(iat));
        if let Some(token) = access_token {
            claims.insert("ath".into(), json!(access_token_hash(token)));
        }
        claims
    }

    /// An honest proof.
    pub fn proof(&self, method: &str, uri: &str, iat: i64, access_token: Option<&str>) -> String {
        self.sign(&self.header(), &self.claims(method, uri, iat, access_token))
    }

    /// `header` and `claims` signed with this key, whatever they say.
    pub fn sign(&self, header: &Map<String, Value>, claims: &Map<String, Value>) -> String {
        let mut token = b64url_encode(&serde_json::to_vec(header).expect("JSON"));
        token.push('.');
        token.push_str(&b64url_encode(&serde_json::to_vec(claims).expect("JSON")));
        let signature = self.signature(token.as_bytes());
        token.push('.');
        token.push_str(&b64url_encode(&signature));
        token
    }

    fn signature(&self, message: &[u8]) -> Vec<u8> {
        let rng = SystemRandom::new();
        match &self.pair {
            Pair::Ed(pair) => pair.sign(message).as_ref().to_vec(),
            Pair::Es(pair) => pair.sign(&rng, message).expect("sign").as_ref().to_vec(),
            Pair::Rs(pair) => {
                let mut signature = vec![0; pair.public_modulus_len()];
                pair.sign(&RSA_PKCS1_SHA256, &rng, message, &mut signature)
                    .expect("sign");
                signature
            }
        }
    }
}
