//! Server configuration: built from defaults, then a TOML file, then environment
//! variables and flags (the CLI merges those). Every key is documented in the README.

use latchkey_core::cidr::IpNet;
use serde::{Deserialize, Deserializer};
use std::net::SocketAddr;
use std::path::PathBuf;

/// The default listen address.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:7700";

/// Everything `latchkey serve` can be told.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Address to listen on; port 0 picks a free one.
    pub listen: SocketAddr,
    /// Directory for the SQLite database, the pepper and the master key.
    pub data_dir: PathBuf,
    /// The URL clients reach the server at (`iss`); `http://` + `listen` by default.
    pub public_url: Option<String>,
    /// `sqlite://…` or `postgres://…`; SQLite in `data_dir` by default.
    pub database_url: Option<String>,
    /// Where to write the root key on first start (mode 0600).
    pub root_key_file: Option<PathBuf>,
    /// The secret prefix, `lk` by default.
    pub secret_prefix: String,
    /// File holding the pepper; `data_dir/pepper` by default, created on first start.
    pub pepper_file: Option<PathBuf>,
    /// File holding the master key that encrypts signing keys; `data_dir/master.key` by
    /// default, created on first start.
    pub master_key_file: Option<PathBuf>,
    /// Lifetime of access tokens when a token does not set its own.
    pub default_access_token_ttl_seconds: u32,
    /// The longest lifetime a token may set.
    pub max_access_token_ttl_seconds: u32,
    /// Database connections per server.
    pub database_max_connections: u32,
    /// How long a request waits for a database connection before answering 503.
    pub database_timeout_ms: u64,
    /// Algorithm of new signing keys: `EdDSA`, `ES256` or `RS256`.
    pub signing_algorithm: String,
    /// Signing keys rotate this often.
    pub key_rotation_seconds: i64,
    /// Audiences a `resource` parameter may name; the public URL when empty.
    pub audiences: Vec<String>,
    /// The `aud` of tokens requested without `resource`; the public URL by default.
    pub default_audience: Option<String>,
    /// Absolute lifetime of a refresh-token family.
    pub refresh_token_lifetime_seconds: i64,
    /// Active refresh families per token.
    pub max_refresh_families: u32,
    /// Failed client authentications per client id from one address per minute before
    /// that address gets 429 for that client.
    pub client_failures_per_minute: u32,
    /// Failed client authentications per client id from all addresses together per
    /// minute before 429, except at addresses the client authenticated from in the last
    /// day.
    pub client_failures_all_addresses_per_minute: u32,
    /// Failed client authentications per client IP per minute before 429.
    pub ip_failures_per_minute: u32,
    /// How long a token stays cached in memory. Local changes clear the cache at once;
    /// this bounds how long another replica's change can go unseen.
    pub token_cache_ttl_ms: u64,
    /// How often the revocation stream sends a heartbeat with the head seq.
    pub revocation_heartbeat_seconds: u64,
    /// Audit every authentication (exchanges, refreshes, failures). On by default; off
    /// only to measure what it costs.
    pub audit_authentications: bool,
    /// Usage aggregates older than this are deleted.
    pub usage_retention_days: i64,
    /// Reverse proxies (addresses or CIDR networks) whose `X-Forwarded-For` is believed;
    /// from any other peer the header is ignored. Empty by default.
    #[serde(deserialize_with = "trusted_proxies")]
    pub trusted_proxies: Vec<IpNet>,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 7700)),
            data_dir: PathBuf::from("latchkey-data"),
            public_url: None,
            database_url: None,
            root_key_file: None,
            secret_prefix: "lk".to_owned(),
            pepper_file: None,
            master_key_file: None,
            default_access_token_ttl_seconds: 900,
            max_access_token_ttl_seconds: 86_400,
            database_max_connections: 8,
            database_timeout_ms: 5000,
            signing_algorithm: "EdDSA".to_owned(),
            key_rotation_seconds: 30 * 86_400,
            audiences: Vec::new(),
            default_audience: None,
            refresh_token_lifetime_seconds: 30 * 86_400,
            max_refresh_families: 100,
            client_failures_per_minute: 10,
            client_failures_all_addresses_per_minute: 100,
            ip_failures_per_minute: 100,
            token_cache_ttl_ms: 1000,
            revocation_heartbeat_seconds: 5,
            audit_authentications: true,
            usage_retention_days: 90,
            trusted_proxies: Vec::new(),
        }
    }
}

impl Config {
    /// Reads a TOML file; keys it does not set keep their defaults.
    pub fn from_toml(text: &str) -> Result<Self, String> {
        toml_from_str(text)
    }

    /// The database URL in effect.
    pub fn database_url(&self) -> String {
        self.database_url.clone().unwrap_or_else(|| {
            format!(
                "sqlite://{}?mode=rwc",
                self.data_dir.join("latchkey.db").display()
            )
        })
    }

    /// The pepper file in effect.
    pub fn pepper_path(&self) -> PathBuf {
        self.pepper_file
            .clone()
            .unwrap_or_else(|| self.data_dir.join("pepper"))
    }

    /// The master key file in effect.
    pub fn master_key_path(&self) -> PathBuf {
        self.master_key_file
            .clone()
            .unwrap_or_else(|| self.data_dir.join("master.key"))
    }
}

fn toml_from_str(text: &str) -> Result<Config, String> {
    toml::from_str(text).map_err(|e| e.to_string())
}

/// Parses `trusted_proxies`, naming the key in the error: a typo here silently changes
/// which addresses the audit trail and the allowlists see, so it must stop the start.
fn trusted_proxies<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Vec<IpNet>, D::Error> {
    let texts = Vec::<String>::deserialize(deserializer)?;
    parse_trusted_proxies(texts.iter().map(String::as_str))
        .map_err(|e| serde::de::Error::custom(format!("trusted_proxies: {e}")))
}

/// Parses a list of proxy addresses or CIDR networks (`10.0.0.0/8`, `192.0.2.7`).
pub fn parse_trusted_proxies<'a>(
    texts: impl IntoIterator<Item = &'a str>,
) -> Result<Vec<IpNet>, String> {
    texts
        .into_iter()
        .map(|text| IpNet::parse(text.trim()).map_err(|e| e.to_string()))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trusted_proxies_are_read_from_toml_and_default_to_none() {
        assert!(Config::default().trusted_proxies.is_empty());
        let config = Config::from_toml(r#"trusted_proxies = ["10.0.0.0/8", "192.0.2.7"]"#).unwrap();
        let shown: Vec<String> = config
            .trusted_proxies
            .iter()
            .map(ToString::to_string)
            .collect();
        assert_eq!(shown, ["10.0.0.0/8", "192.0.2.7/32"]);
    }

    #[test]
    fn an_invalid_trusted_proxy_names_the_key() {
        let error = Config::from_toml("trusted_proxies = [\n  \"10.0.0.0/8\",\n  \"nope\",\n]")
            .unwrap_err();
        assert!(
            error.contains("trusted_proxies: `nope` is not an IP address"),
            "{error}"
        );
    }
}
