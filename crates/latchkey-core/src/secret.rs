//! Secrets on the wire and at rest (docs/API.md, "Tokens").
//!
//! A secret reads `PREFIX_TYPE_BODY`: client secrets `lk_sk_` + 43 base62 characters of
//! 256 random bits; api keys `lk_ak_` and refresh tokens `lk_rt_` + 22 characters of a
//! 128-bit id + 43 characters of secret; each ends in six base62 characters of the CRC32
//! of everything before them, so a typo or a truncation is refused before any lookup.
//!
//! At rest only `HMAC-SHA256(pepper, salt ‖ secret)` and the per-secret 16-byte salt are
//! kept. The secrets carry 256 bits of entropy, so a slow password hash would add latency
//! and a denial-of-service lever without adding security; the pepper, kept out of the
//! database, makes a stolen database useless for offline guessing. Verification compares
//! in constant time.
//!
//! A client secret carries no id, so a leaked one could not be found by its text alone.
//! New secrets of every kind therefore also keep a lookup value,
//! `HMAC-SHA256(pepper, "lookup" ‖ secret)`, indexed: without the pepper it reveals
//! nothing, and with 256 bits of secret behind it there is nothing to guess
//! (docs/SECRET_SCANNING.md).

use crate::encoding::{
    CHECKSUM_CHARS, base62_decode_u128, base62_encode, checksum, checksum_matches, is_base62,
};
pub use crate::ids::RandomError;
use crate::ids::{FieldError, TokenId};
use aws_lc_rs::hmac;
use aws_lc_rs::rand::SecureRandom;
use std::fmt;

const SECRET_CHARS: usize = 43;
const ID_CHARS: usize = 22;
/// What a lookup value's message starts with, where a salted hash has its salt.
const LOOKUP_LABEL: &[u8] = b"lookup";

/// The deployment's secret prefix (`lk` by default): 1–16 characters of `[a-z0-9]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SecretPrefix(String);

impl SecretPrefix {
    /// Accepts 1–16 characters of `[a-z0-9]`.
    pub fn parse(text: &str) -> Result<Self, FieldError> {
        let ok = (1..=16).contains(&text.len())
            && text
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit());
        if !ok {
            return Err(FieldError("must be 1–16 characters of [a-z0-9]".to_owned()));
        }
        Ok(Self(text.to_owned()))
    }

    /// The prefix as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl Default for SecretPrefix {
    fn default() -> Self {
        Self("lk".to_owned())
    }
}

/// The three kinds of secret string, by their TYPE segment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SecretType {
    /// `sk`: an OAuth client secret.
    ClientSecret,
    /// `ak`: an opaque api key.
    ApiKey,
    /// `rt`: a refresh token.
    RefreshToken,
}

impl SecretType {
    fn code(self) -> &'static str {
        match self {
            Self::ClientSecret => "sk",
            Self::ApiKey => "ak",
            Self::RefreshToken => "rt",
        }
    }

    fn from_code(code: &str) -> Option<Self> {
        match code {
            "sk" => Some(Self::ClientSecret),
            "ak" => Some(Self::ApiKey),
            "rt" => Some(Self::RefreshToken),
            _ => None,
        }
    }

    fn has_id(self) -> bool {
        !matches!(self, Self::ClientSecret)
    }
}

/// A secret in clear, as handed to its owner once. Its `Debug` shows only the hint, and it
/// has no `Display`, so it cannot slip into a log line by accident.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// The full secret string. Call only to hand it to its owner or to a hasher.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// The display hint: type and last four characters, e.g. `lk_sk_…k9Qz`.
    pub fn hint(&self) -> String {
        hint_of(&self.0)
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Secret({})", self.hint())
    }
}

fn hint_of(text: &str) -> String {
    let type_prefix_end = text
        .match_indices('_')
        .nth(1)
        .map(|(i, _)| i + 1)
        .unwrap_or(0);
    let tail_start = text.len().saturating_sub(4).max(type_prefix_end);
    format!("{}…{}", &text[..type_prefix_end], &text[tail_start..])
}

/// A freshly generated secret and the record to store for it.
#[derive(Debug)]
pub struct IssuedSecret {
    /// The secret string, shown once.
    pub secret: Secret,
    /// What the store keeps.
    pub stored: StoredSecret,
    /// The indexed lookup value ([`SecretCodec::lookup`]): how a leaked secret is found.
    pub lookup: Vec<u8>,
}

/// What the store keeps of a secret: a random salt and the peppered HMAC.
#[derive(Clone, PartialEq, Eq)]
pub struct StoredSecret {
    /// 16 random bytes, unique per secret.
    pub salt: Vec<u8>,
    /// `HMAC-SHA256(pepper, salt ‖ secret)`.
    pub hash: Vec<u8>,
}

impl fmt::Debug for StoredSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("StoredSecret(..)")
    }
}

/// A secret string that passed the format and checksum checks; not yet verified against
/// the store.
#[derive(Clone, PartialEq, Eq)]
pub struct ParsedSecret {
    /// Which kind of secret it is.
    pub kind: SecretType,
    /// The id embedded in api keys and refresh tokens.
    pub id: Option<TokenId>,
    secret_part: String,
}

impl fmt::Debug for ParsedSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ParsedSecret({:?}, {:?})", self.kind, self.id)
    }
}

/// Why a presented secret was refused before any lookup.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SecretFormatError {
    /// Not of the shape `PREFIX_TYPE_BODY` for this deployment.
    #[error("malformed credential")]
    Malformed,
    /// The shape is right but the last six characters are not the CRC32 of the rest.
    #[error("credential checksum mismatch")]
    ChecksumMismatch,
}

/// Generates and recognises secrets for one deployment, and seals them with its pepper.
pub struct SecretCodec {
    prefix: SecretPrefix,
    pepper: hmac::Key,
}

impl fmt::Debug for SecretCodec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SecretCodec({})", self.prefix.as_str())
    }
}

impl SecretCodec {
    /// A codec for `prefix` whose hashes are keyed by `pepper` (at least 32 bytes).
    pub fn new(prefix: SecretPrefix, pepper: &[u8]) -> Self {
        Self {
            prefix,
            pepper: hmac::Key::new(hmac::HMAC_SHA256, pepper),
        }
    }

    /// The deployment's prefix.
    pub fn prefix(&self) -> &SecretPrefix {
        &self.prefix
    }

    /// A new secret of `kind`; `id` is embedded for api keys and refresh tokens.
    pub fn generate(
        &self,
        kind: SecretType,
        id: TokenId,
        rng: &dyn SecureRandom,
    ) -> Result<IssuedSecret, RandomError> {
        let mut random = [0u8; 32];
        rng.fill(&mut random).map_err(|_| RandomError)?;
        let secret_part = base62_encode(&random, SECRET_CHARS).ok_or(RandomError)?;
        let mut text = format!("{}_{}_", self.prefix.as_str(), kind.code());
        if kind.has_id() {
            let id_part =
                base62_encode(&id.as_u128().to_be_bytes(), ID_CHARS).ok_or(RandomError)?;
            text.push_str(&id_part);
        }
        text.push_str(&secret_part);
        text.push_str(&checksum(&text));
        let mut salt = vec![0u8; 16];
        rng.fill(&mut salt).map_err(|_| RandomError)?;
        let hash = self.seal(&salt, &secret_part);
        let lookup = self.lookup_of(&secret_part);
        Ok(IssuedSecret {
            secret: Secret(text),
            stored: StoredSecret { salt, hash },
            lookup,
        })
    }

    /// Checks the prefix, type, length, alphabet and checksum of `text`.
    pub fn parse(&self, text: &str) -> Result<ParsedSecret, SecretFormatError> {
        let rest = text
            .strip_prefix(self.prefix.as_str())
            .and_then(|r| r.strip_prefix('_'))
            .ok_or(SecretFormatError::Malformed)?;
        let (code, body) = rest.split_once('_').ok_or(SecretFormatError::Malformed)?;
        let kind = SecretType::from_code(code).ok_or(SecretFormatError::Malformed)?;
        let id_chars = if kind.has_id() { ID_CHARS } else { 0 };
        if body.len() != id_chars + SECRET_CHARS + CHECKSUM_CHARS || !is_base62(body) {
            return Err(SecretFormatError::Malformed);
        }
        let (signed, sum) = text.split_at(text.len() - CHECKSUM_CHARS);
        if !checksum_matches(signed, sum) {
            return Err(SecretFormatError::ChecksumMismatch);
        }
        let id = if kind.has_id() {
            let value =
                base62_decode_u128(&body[..ID_CHARS]).ok_or(SecretFormatError::Malformed)?;
            Some(TokenId::from_u128(value))
        } else {
            None
        };
        Ok(ParsedSecret {
            kind,
            id,
            secret_part: body[id_chars..id_chars + SECRET_CHARS].to_owned(),
        })
    }

    /// True when `presented` matches `stored`, compared in constant time.
    pub fn verify(&self, presented: &ParsedSecret, stored: &StoredSecret) -> bool {
        let mut message = Vec::with_capacity(stored.salt.len() + SECRET_CHARS);
        message.extend_from_slice(&stored.salt);
        message.extend_from_slice(presented.secret_part.as_bytes());
        hmac::verify(&self.pepper, &message, &stored.hash).is_ok()
    }

    /// The lookup value of `presented`: `HMAC-SHA256(pepper, "lookup" ‖ secret)`. It
    /// finds the token of a secret that embeds no id (a client secret reported leaked);
    /// the secret is still verified against its salted hash afterwards. Its message is
    /// 49 bytes and a salted hash's 59, so the two never sign the same input.
    pub fn lookup(&self, presented: &ParsedSecret) -> Vec<u8> {
        self.lookup_of(&presented.secret_part)
    }

    fn lookup_of(&self, secret_part: &str) -> Vec<u8> {
        let mut context = hmac::Context::with_key(&self.pepper);
        context.update(LOOKUP_LABEL);
        context.update(secret_part.as_bytes());
        context.sign().as_ref().to_vec()
    }

    fn seal(&self, salt: &[u8], secret_part: &str) -> Vec<u8> {
        let mut context = hmac::Context::with_key(&self.pepper);
        context.update(salt);
        context.update(secret_part.as_bytes());
        context.sign().as_ref().to_vec()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_lc_rs::rand::SystemRandom;

    fn codec() -> SecretCodec {
        SecretCodec::new(SecretPrefix::default(), &[7u8; 32])
    }

    fn id() -> TokenId {
        TokenId::parse("0b9f6c1e-3c1a-4f7e-9b51-8a2f7d0e4c11").unwrap()
    }

    #[test]
    fn client_secrets_have_the_documented_shape() {
        let issued = codec()
            .generate(SecretType::ClientSecret, id(), &SystemRandom::new())
            .unwrap();
        let text = issued.secret.expose();
        assert!(text.starts_with("lk_sk_"));
        assert_eq!(text.len(), 6 + 43 + 6);
        let parsed = codec().parse(text).unwrap();
        assert_eq!(parsed.kind, SecretType::ClientSecret);
        assert_eq!(parsed.id, None);
        assert!(codec().verify(&parsed, &issued.stored));
    }

    #[test]
    fn api_keys_embed_their_token_id() {
        let issued = codec()
            .generate(SecretType::ApiKey, id(), &SystemRandom::new())
            .unwrap();
        let text = issued.secret.expose();
        assert_eq!(text.len(), 6 + 22 + 43 + 6);
        let parsed = codec().parse(text).unwrap();
        assert_eq!(parsed.id, Some(id()));
        assert!(codec().verify(&parsed, &issued.stored));
    }

    #[test]
    fn a_typo_fails_the_checksum() {
        let issued = codec()
            .generate(SecretType::ApiKey, id(), &SystemRandom::new())
            .unwrap();
        let mut text = issued.secret.expose().to_owned();
        let position = 20;
        let replacement = if &text[position..=position] == "A" {
            "B"
        } else {
            "A"
        };
        text.replace_range(position..=position, replacement);
        assert_eq!(
            codec().parse(&text),
            Err(SecretFormatError::ChecksumMismatch)
        );
    }

    #[test]
    fn foreign_shapes_are_malformed() {
        for bad in [
            "",
            "lk_",
            "lk_zz_abc",
            "gh_sk_abc",
            "lk_sk_short",
            "lk_sk_!!",
        ] {
            assert_eq!(
                codec().parse(bad),
                Err(SecretFormatError::Malformed),
                "{bad}"
            );
        }
    }

    #[test]
    fn a_different_pepper_or_secret_does_not_verify() {
        let rng = SystemRandom::new();
        let issued = codec()
            .generate(SecretType::ClientSecret, id(), &rng)
            .unwrap();
        let other = codec()
            .generate(SecretType::ClientSecret, id(), &rng)
            .unwrap();
        let parsed = codec().parse(issued.secret.expose()).unwrap();
        assert!(!codec().verify(&parsed, &other.stored));
        let peppered = SecretCodec::new(SecretPrefix::default(), &[8u8; 32]);
        assert!(!peppered.verify(&parsed, &issued.stored));
    }

    #[test]
    fn the_lookup_value_finds_the_secret_and_depends_on_the_pepper() {
        let rng = SystemRandom::new();
        let issued = codec()
            .generate(SecretType::ClientSecret, id(), &rng)
            .unwrap();
        let parsed = codec().parse(issued.secret.expose()).unwrap();
        assert_eq!(codec().lookup(&parsed), issued.lookup);
        assert_eq!(issued.lookup.len(), 32);
        // Neither the salted hash nor another secret's value, nor another pepper's.
        assert_ne!(issued.lookup, issued.stored.hash);
        let other = codec()
            .generate(SecretType::ClientSecret, id(), &rng)
            .unwrap();
        assert_ne!(other.lookup, issued.lookup);
        let peppered = SecretCodec::new(SecretPrefix::default(), &[8u8; 32]);
        assert_ne!(peppered.lookup(&parsed), issued.lookup);
        // The same secret issued twice has two salts but one lookup value.
        let again = generate_fixed(&codec(), [3u8; 32], [1u8; 16]);
        let twice = generate_fixed(&codec(), [3u8; 32], [2u8; 16]);
        assert_eq!(again.lookup, twice.lookup);
        assert_ne!(again.stored.hash, twice.stored.hash);
    }

    fn generate_fixed(codec: &SecretCodec, random: [u8; 32], salt: [u8; 16]) -> IssuedSecret {
        let slices: [&[u8]; 2] = [&random, &salt];
        let rng = aws_lc_rs::test::rand::FixedSliceSequenceRandom {
            bytes: &slices,
            current: std::cell::UnsafeCell::new(0),
        };
        codec
            .generate(SecretType::ClientSecret, id(), &rng)
            .unwrap()
    }

    #[test]
    fn hints_and_debug_never_show_the_secret() {
        let issued = codec()
            .generate(SecretType::ClientSecret, id(), &SystemRandom::new())
            .unwrap();
        let text = issued.secret.expose();
        let hint = issued.secret.hint();
        assert_eq!(hint, format!("lk_sk_…{}", &text[text.len() - 4..]));
        assert!(!format!("{:?}", issued).contains(&text[6..20]));
    }
}

#[cfg(test)]
mod proptests;
