//! Leak reports (docs/API.md, "Leak reports"; docs/SECRET_SCANNING.md): given a string
//! someone found in public, recognise whether it is a credential this server issued and
//! revoke it at once.
//!
//! Recognition is as strict as authentication: a secret string must pass its format and
//! checksum, then its token is found (by the id an api key or refresh token embeds, by
//! the lookup value for a client secret) and the secret verified in constant time
//! against its salted hash; a JWT must carry a valid signature by one of the server's
//! published keys. Anything else is not ours and changes nothing. Whoever reports a
//! secret learns nothing from the answer (`POST /v1/leaks` always says 202); at most
//! they learn that the secret they hold was valid, which is the moment it stops being.
//!
//! Reports from a scanning partner are signed: [`PartnerKeys`] holds its ECDSA P-256
//! public keys, read from `leak_report_public_keys_file` at start, and [`remote`] those
//! of `leak_report_public_keys_url`, refreshed.

use crate::service::error::Result;
use crate::service::issuer::reload_deny_list;
use crate::service::jwt;
use crate::service::state::AppState;
use crate::service::throttle::RequestLimit;
use aws_lc_rs::signature::{ECDSA_P256_SHA256_ASN1, ParsedPublicKey};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use latchkey_core::audit::AuditContext;
use latchkey_core::secret::SecretType;
use latchkey_core::store::{LeakReport, LeakedCredential};
use latchkey_core::token::{TokenKind, TokenRecord};
use latchkey_core::{Timestamp, TokenId};
use remote::RemoteKeys;
use serde::Deserialize;
use std::path::Path;
use std::sync::Arc;

/// Longer strings are no credential of ours (a JWT is the longest, at most 8 KiB).
const MAX_PRESENTED_BYTES: usize = 8 * 1024;

/// The most of a reporter's `url`, `source` or `type` the audit trail keeps.
const MAX_REPORT_TEXT_CHARS: usize = 2048;

pub mod remote;

/// What the leak endpoints need beside the rest of the state: the per-address limit of
/// `POST /v1/leaks` and the scanning partner's keys, when configured.
pub struct LeakIntake {
    /// Requests a minute from one address to `POST /v1/leaks`.
    pub limit: RequestLimit,
    /// The scanning partner's keys from `leak_report_public_keys_file`.
    pub partner: Option<PartnerKeys>,
    /// The scanning partner's keys from `leak_report_public_keys_url`, refreshed.
    pub remote: Option<Arc<RemoteKeys>>,
}

impl LeakIntake {
    /// Whether partner reports are on: some key source is configured. Without one the
    /// partner endpoint answers `not-configured`.
    pub fn takes_partner_reports(&self) -> bool {
        self.partner.is_some() || self.remote.is_some()
    }

    /// Checks a partner's signature against the key its identifier names, in the file
    /// or, failing that, at the URL.
    pub fn verify_partner(
        &self,
        key_id: Option<&str>,
        signature: Option<&str>,
        body: &[u8],
    ) -> std::result::Result<(), SignatureRefused> {
        let from_file = self
            .partner
            .as_ref()
            .map_or(Err(SignatureRefused::UnknownKey), |keys| {
                keys.verify(key_id, signature, body)
            });
        match (from_file, &self.remote) {
            (Err(SignatureRefused::UnknownKey), Some(remote)) => {
                remote.current().verify(key_id, signature, body)
            }
            (outcome, _) => outcome,
        }
    }
}

/// What a report of one string came to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Not a credential this server issued (or one it cannot find: a client secret
    /// made before lookup values existed). Nothing changed.
    NotOurs,
    /// A credential this server issued, revoked by this report.
    Revoked,
    /// A credential this server issued that was revoked or expired already: nothing
    /// changed.
    AlreadyDead,
}

impl Verdict {
    /// Whether the string was one of our credentials (a scanning partner's
    /// `true_positive`).
    pub fn is_ours(self) -> bool {
        !matches!(self, Self::NotOurs)
    }
}

/// Checks `presented` and, when it is a live credential of ours, revokes it with
/// `report` in its `token.leaked` audit event (`ctx` is the reporter).
pub async fn report(
    state: &AppState,
    presented: &str,
    report: LeakReport,
    ctx: &AuditContext,
) -> Result<Verdict> {
    let Some(found) = recognise(state, presented).await? else {
        return Ok(Verdict::NotOurs);
    };
    let Found::Live(leaked) = found else {
        return Ok(Verdict::AlreadyDead);
    };
    let report = scrub(report, presented);
    let revoked = state.store().revoke_leaked(&leaked, &report, ctx).await?;
    if !revoked {
        return Ok(Verdict::AlreadyDead);
    }
    tracing::warn!(credential = ?leaked, "a credential reported leaked was revoked");
    match &leaked {
        LeakedCredential::Token(_) => {}
        LeakedCredential::AccessToken { jti, .. } => state.keyring().add_revoked_jti(jti),
        LeakedCredential::RefreshFamily(_) => reload_deny_list(state).await,
    }
    state.auth_changed();
    Ok(Verdict::Revoked)
}

/// A credential of ours: still to revoke, or revoked or expired already.
enum Found {
    Live(LeakedCredential),
    Dead,
}

async fn recognise(state: &AppState, presented: &str) -> Result<Option<Found>> {
    if presented.len() > MAX_PRESENTED_BYTES {
        return Ok(None);
    }
    if let Ok(parsed) = state.codec().parse(presented) {
        let codec = state.codec();
        return Ok(match (parsed.kind, parsed.id) {
            (SecretType::ApiKey, Some(id)) => {
                let record = state.store().get_token(id).await?;
                record
                    .filter(|r| r.token.kind == TokenKind::ApiKey)
                    .filter(|r| r.secret.as_ref().is_some_and(|s| codec.verify(&parsed, s)))
                    .map(|r| token_finding(state, &r))
            }
            (SecretType::ClientSecret, None) => {
                let lookup = codec.lookup(&parsed);
                let record = state.store().find_token_by_lookup(&lookup).await?;
                record
                    .filter(|r| r.token.kind == TokenKind::ClientCredentials)
                    .filter(|r| r.secret.as_ref().is_some_and(|s| codec.verify(&parsed, s)))
                    .map(|r| token_finding(state, &r))
            }
            (SecretType::RefreshToken, Some(id)) => {
                let found = state.store().get_refresh(id).await?;
                found
                    .filter(|(record, _)| codec.verify(&parsed, &record.secret))
                    .map(|(_, family)| {
                        let ended = family.revoked_at.is_some() || family.expires_at <= state.now();
                        if ended {
                            Found::Dead
                        } else {
                            Found::Live(LeakedCredential::RefreshFamily(family.id))
                        }
                    })
            }
            _ => None,
        });
    }
    if presented.matches('.').count() == 2 {
        return recognise_jwt(state, presented).await;
    }
    Ok(None)
}

/// A token's own credential: live unless it is revoked or expired.
fn token_finding(state: &AppState, record: &TokenRecord) -> Found {
    if record.token.is_active(state.now()) {
        Found::Live(LeakedCredential::Token(record.token.id))
    } else {
        Found::Dead
    }
}

/// A JWT signed by one of the server's published keys: a long-lived JWT names its
/// token, an access token its `jti`.
async fn recognise_jwt(state: &AppState, presented: &str) -> Result<Option<Found>> {
    let keys = state.keyring().keys();
    let issuer = &state.settings().public_url;
    let claims = match jwt::verify(&keys, issuer, presented, state.now().unix_seconds()) {
        Ok(claims) => claims,
        Err(jwt::Rejected::Expired) => return Ok(Some(Found::Dead)),
        Err(jwt::Rejected::Invalid) => return Ok(None),
    };
    let Ok(id) = TokenId::parse(&claims.client_id) else {
        return Ok(None);
    };
    let Some(record) = state.store().get_token(id).await? else {
        // Signed by us, for a token since deleted: nothing is left to revoke.
        return Ok(Some(Found::Dead));
    };
    if claims.is_long_lived() {
        if record.token.kind != TokenKind::Jwt {
            return Ok(None);
        }
        return Ok(Some(token_finding(state, &record)));
    }
    let Some(exp) = claims.exp else {
        return Ok(None);
    };
    if state.keyring().is_jti_revoked(&claims.jti) || !record.token.is_active(state.now()) {
        return Ok(Some(Found::Dead));
    }
    Ok(Some(Found::Live(LeakedCredential::AccessToken {
        jti: claims.jti,
        token_id: id,
        tenant: record.token.owner.tenant_id().clone(),
        expires_at: Timestamp::from_millis(exp.saturating_mul(1000)),
    })))
}

/// The report as the audit trail keeps it: each text bounded, and the presented string
/// cut out wherever a careless reporter repeated it.
fn scrub(report: LeakReport, presented: &str) -> LeakReport {
    let clean = |text: Option<String>| {
        text.map(|text| {
            let text = if presented.is_empty() {
                text
            } else {
                text.replace(presented, "[secret]")
            };
            text.chars()
                .filter(|c| !c.is_control())
                .take(MAX_REPORT_TEXT_CHARS)
                .collect()
        })
    };
    LeakReport {
        url: clean(report.url),
        source: clean(report.source),
        secret_type: clean(report.secret_type),
    }
}

/// The public keys a scanning partner signs its reports with, by key identifier.
pub struct PartnerKeys {
    keys: Vec<(String, ParsedPublicKey)>,
}

/// The partner's key document: `{"public_keys":[{"key_identifier","key","is_current"}]}`
/// with PEM keys (docs/SECRET_SCANNING.md).
#[derive(Deserialize)]
struct KeyDocument {
    public_keys: Vec<KeyEntry>,
}

/// One key of the document. `is_current` is not read: every listed key is accepted, so
/// that reports signed just before a partner's rotation still count.
#[derive(Deserialize)]
struct KeyEntry {
    key_identifier: String,
    key: String,
}

/// Why a partner's signature was refused; the text is safe to show the caller.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SignatureRefused {
    /// A header is absent.
    #[error("the report carries no Github-Public-Key-Identifier or Github-Public-Key-Signature")]
    Missing,
    /// The key identifier names no configured key.
    #[error("the report's key identifier names no configured key")]
    UnknownKey,
    /// Not base64, or not a valid signature of the body by that key.
    #[error("the report's signature does not verify")]
    Invalid,
}

impl PartnerKeys {
    /// Reads and checks a key document: every key must be a PEM ECDSA P-256 public key,
    /// and there must be at least one. The error names what is wrong, not the path.
    pub fn parse(document: &str) -> std::result::Result<Self, String> {
        let document: KeyDocument = serde_json::from_str(document)
            .map_err(|e| format!("is not a public-keys document: {e}"))?;
        if document.public_keys.is_empty() {
            return Err("lists no public keys".to_owned());
        }
        let mut keys = Vec::with_capacity(document.public_keys.len());
        for entry in document.public_keys {
            let der = pem_public_key(&entry.key)
                .ok_or_else(|| format!("key {:?} is not a PEM PUBLIC KEY", entry.key_identifier))?;
            let key = ParsedPublicKey::new(&ECDSA_P256_SHA256_ASN1, der).map_err(|_| {
                format!(
                    "key {:?} is not an ECDSA P-256 public key",
                    entry.key_identifier
                )
            })?;
            keys.push((entry.key_identifier, key));
        }
        Ok(Self { keys })
    }

    /// Reads [`Self::parse`]'s document from `path`.
    pub fn load(path: &Path) -> std::result::Result<Self, String> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("leak_report_public_keys_file {}: {e}", path.display()))?;
        Self::parse(&text)
            .map_err(|e| format!("leak_report_public_keys_file {}: {e}", path.display()))
    }

    /// Checks `signature` (base64 of an ASN.1 ECDSA P-256 SHA-256 signature) over the
    /// raw `body` with the key named `key_id`.
    pub fn verify(
        &self,
        key_id: Option<&str>,
        signature: Option<&str>,
        body: &[u8],
    ) -> std::result::Result<(), SignatureRefused> {
        let (Some(key_id), Some(signature)) = (key_id, signature) else {
            return Err(SignatureRefused::Missing);
        };
        let key = self
            .keys
            .iter()
            .find(|(id, _)| id == key_id)
            .map(|(_, key)| key)
            .ok_or(SignatureRefused::UnknownKey)?;
        let signature = STANDARD
            .decode(signature.trim())
            .map_err(|_| SignatureRefused::Invalid)?;
        key.verify_sig(body, &signature)
            .map_err(|_| SignatureRefused::Invalid)
    }
}

/// The DER of a `-----BEGIN PUBLIC KEY-----` PEM block.
fn pem_public_key(pem: &str) -> Option<Vec<u8>> {
    let body = pem
        .trim()
        .strip_prefix("-----BEGIN PUBLIC KEY-----")?
        .strip_suffix("-----END PUBLIC KEY-----")?;
    let base64: String = body.chars().filter(|c| !c.is_whitespace()).collect();
    STANDARD.decode(base64).ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_lc_rs::encoding::AsDer;
    use aws_lc_rs::rand::SystemRandom;
    use aws_lc_rs::signature::{ECDSA_P256_SHA256_ASN1_SIGNING, EcdsaKeyPair, KeyPair};

    fn pem_of(pair: &EcdsaKeyPair) -> String {
        let der = pair.public_key().as_der().unwrap();
        format!(
            "-----BEGIN PUBLIC KEY-----\n{}\n-----END PUBLIC KEY-----\n",
            STANDARD.encode(der.as_ref())
        )
    }

    fn document(entries: &[(&str, String)]) -> String {
        let keys: Vec<_> = entries
            .iter()
            .map(|(id, key)| serde_json::json!({"key_identifier": id, "key": key, "is_current": true}))
            .collect();
        serde_json::json!({ "public_keys": keys }).to_string()
    }

    #[test]
    fn a_signature_verifies_only_with_its_key_over_its_body() {
        let pair = EcdsaKeyPair::generate(&ECDSA_P256_SHA256_ASN1_SIGNING).unwrap();
        let other = EcdsaKeyPair::generate(&ECDSA_P256_SHA256_ASN1_SIGNING).unwrap();
        let keys = PartnerKeys::parse(&document(&[("k1", pem_of(&pair)), ("k2", pem_of(&other))]))
            .unwrap();
        let body = br#"[{"token":"x"}]"#;
        let signature = STANDARD.encode(pair.sign(&SystemRandom::new(), body).unwrap());
        assert_eq!(keys.verify(Some("k1"), Some(&signature), body), Ok(()));
        assert_eq!(
            keys.verify(Some("k2"), Some(&signature), body),
            Err(SignatureRefused::Invalid)
        );
        assert_eq!(
            keys.verify(Some("k1"), Some(&signature), br#"[{"token":"y"}]"#),
            Err(SignatureRefused::Invalid)
        );
        assert_eq!(
            keys.verify(Some("k3"), Some(&signature), body),
            Err(SignatureRefused::UnknownKey)
        );
        assert_eq!(
            keys.verify(Some("k1"), Some("not base64!"), body),
            Err(SignatureRefused::Invalid)
        );
        assert_eq!(
            keys.verify(None, Some(&signature), body),
            Err(SignatureRefused::Missing)
        );
        assert_eq!(
            keys.verify(Some("k1"), None, body),
            Err(SignatureRefused::Missing)
        );
    }

    #[test]
    fn bad_key_documents_are_refused_naming_the_fault() {
        let pair = EcdsaKeyPair::generate(&ECDSA_P256_SHA256_ASN1_SIGNING).unwrap();
        let p384 =
            EcdsaKeyPair::generate(&aws_lc_rs::signature::ECDSA_P384_SHA384_ASN1_SIGNING).unwrap();
        for (text, error) in [
            ("{".to_owned(), "is not a public-keys document"),
            (r#"{"public_keys":[]}"#.to_owned(), "lists no public keys"),
            (
                document(&[("k1", "not pem".to_owned())]),
                "key \"k1\" is not a PEM PUBLIC KEY",
            ),
            (
                document(&[("k1", pem_of(&pair)), ("k2", pem_of(&p384))]),
                "key \"k2\" is not an ECDSA P-256 public key",
            ),
        ] {
            let refused = PartnerKeys::parse(&text).err().unwrap();
            assert!(refused.starts_with(error), "{text}: {refused}");
        }
    }

    #[test]
    fn a_report_is_scrubbed_of_the_secret_and_bounded() {
        let report = LeakReport {
            url: Some("https://example.test/?k=lk_ak_SECRET".to_owned()),
            source: Some("x".repeat(5000)),
            secret_type: Some("latchkey\u{0}_api_key".to_owned()),
        };
        let scrubbed = scrub(report, "lk_ak_SECRET");
        assert_eq!(
            scrubbed.url.as_deref(),
            Some("https://example.test/?k=[secret]")
        );
        assert_eq!(scrubbed.source.unwrap().len(), MAX_REPORT_TEXT_CHARS);
        assert_eq!(scrubbed.secret_type.as_deref(), Some("latchkey_api_key"));
    }
}
