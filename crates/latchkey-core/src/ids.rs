//! Identifiers chosen by the host application (tenants, users, roles) and by latchkey
//! (tokens). Each is a newtype whose only constructor checks the charset and length, so
//! code past the HTTP boundary never sees an invalid one.

use serde::{Deserialize, Deserializer, Serialize};
use std::fmt;
use uuid::Uuid;

/// Why a value was refused at the boundary; the caller adds the field's name.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct FieldError(pub String);

const MAX_ID_LEN: usize = 128;

fn is_host_id_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-')
}

/// Checks `text` is 1–128 characters accepted by `allowed`.
pub(crate) fn check_charset(
    text: &str,
    allowed: fn(char) -> bool,
    charset: &str,
) -> Result<(), FieldError> {
    if text.is_empty() || text.len() > MAX_ID_LEN || !text.chars().all(allowed) {
        return Err(FieldError(format!(
            "must be 1–{MAX_ID_LEN} characters of {charset}"
        )));
    }
    Ok(())
}

macro_rules! host_id {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
        #[serde(transparent)]
        pub struct $name(String);

        impl $name {
            /// Accepts 1–128 characters of `[A-Za-z0-9._-]`.
            pub fn parse(text: &str) -> Result<Self, FieldError> {
                check_charset(text, is_host_id_char, "[A-Za-z0-9._-]")?;
                Ok(Self(text.to_owned()))
            }

            /// The id as text.
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
                let text = String::deserialize(deserializer)?;
                Self::parse(&text).map_err(|e| serde::de::Error::custom(format!("`{text}` {e}")))
            }
        }
    };
}

host_id!(
    /// A tenant (customer account) id chosen by the host application, e.g. `acme`.
    TenantId
);
host_id!(
    /// A user id chosen by the host application, e.g. `u_42`.
    UserId
);

impl TenantId {
    /// The tenant that owns latchkey's own credentials (the root key, gateways).
    pub fn system() -> Self {
        Self(SYSTEM_TENANT.to_owned())
    }

    /// True for the system tenant `latchkey`.
    pub fn is_system(&self) -> bool {
        self.0 == SYSTEM_TENANT
    }
}

/// The id of the system tenant.
pub const SYSTEM_TENANT: &str = "latchkey";

/// The permission charset `[a-z0-9_.:-]`, shared by permissions and role names.
pub(crate) fn is_permission_char(c: char) -> bool {
    c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '_' | '.' | ':' | '-')
}

/// A role name: 1–128 characters of `[a-z0-9_.:-]`, e.g. `viewer`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(transparent)]
pub struct RoleName(String);

impl RoleName {
    /// Accepts 1–128 characters of `[a-z0-9_.:-]`.
    pub fn parse(text: &str) -> Result<Self, FieldError> {
        check_charset(text, is_permission_char, "[a-z0-9_.:-]")?;
        Ok(Self(text.to_owned()))
    }

    /// The name as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for RoleName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for RoleName {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        Self::parse(&text).map_err(|e| serde::de::Error::custom(format!("`{text}` {e}")))
    }
}

/// A token's id: a UUID v4, which is also the OAuth `client_id`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(transparent)]
pub struct TokenId(Uuid);

impl TokenId {
    /// A fresh random (v4) id.
    pub fn generate(rng: &dyn aws_lc_rs::rand::SecureRandom) -> Result<Self, RandomError> {
        let mut bytes = [0u8; 16];
        rng.fill(&mut bytes).map_err(|_| RandomError)?;
        Ok(Self(uuid::Builder::from_random_bytes(bytes).into_uuid()))
    }

    /// Accepts the canonical lowercase hyphenated form only.
    pub fn parse(text: &str) -> Result<Self, FieldError> {
        let uuid = Uuid::try_parse(text)
            .map_err(|_| FieldError("must be a lowercase hyphenated UUID".to_owned()))?;
        if uuid.hyphenated().to_string() != text {
            return Err(FieldError("must be a lowercase hyphenated UUID".to_owned()));
        }
        Ok(Self(uuid))
    }

    /// The id from its 128-bit value (as embedded in api keys and refresh tokens).
    pub fn from_u128(value: u128) -> Self {
        Self(Uuid::from_u128(value))
    }

    /// The 128-bit value.
    pub fn as_u128(self) -> u128 {
        self.0.as_u128()
    }

    /// The underlying UUID.
    pub fn uuid(self) -> Uuid {
        self.0
    }
}

impl fmt::Display for TokenId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.0.hyphenated(), f)
    }
}

impl<'de> Deserialize<'de> for TokenId {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        Self::parse(&text).map_err(|e| serde::de::Error::custom(format!("`{text}` {e}")))
    }
}

/// The operating system's randomness source failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the system random number generator failed")]
pub struct RandomError;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_ids_accept_the_documented_charset_only() {
        assert!(TenantId::parse("acme.EU_1-x").is_ok());
        assert!(TenantId::parse("").is_err());
        assert!(TenantId::parse("a b").is_err());
        assert!(UserId::parse(&"u".repeat(128)).is_ok());
        assert!(UserId::parse(&"u".repeat(129)).is_err());
        assert!(UserId::parse("ü").is_err());
    }

    #[test]
    fn role_names_use_the_permission_charset() {
        assert!(RoleName::parse("billing:admin").is_ok());
        assert!(RoleName::parse("Viewer").is_err());
    }

    #[test]
    fn token_ids_must_be_canonical() {
        let text = "0b9f6c1e-3c1a-4f7e-9b51-8a2f7d0e4c11";
        assert_eq!(TokenId::parse(text).unwrap().to_string(), text);
        assert!(TokenId::parse(&text.to_uppercase()).is_err());
        assert!(TokenId::parse("0b9f6c1e3c1a4f7e9b518a2f7d0e4c11").is_err());
    }
}
