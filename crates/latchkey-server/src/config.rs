//! Server configuration: built from defaults, then a TOML file, then environment
//! variables and flags (the CLI merges those). Every key is documented in the README.

use latchkey_core::cidr::IpNet;
use latchkey_core::policy::TenantPolicy;
use latchkey_listener::TlsFiles;
use serde::{Deserialize, Deserializer};
use std::net::SocketAddr;
use std::path::PathBuf;

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
    /// A client must send a whole request head within this long, on a new connection
    /// and between requests on a kept-alive one; then the connection is closed.
    pub header_read_timeout_seconds: u64,
    /// A request body that sends nothing for this long is answered 408 and its
    /// connection closed. Per read: a slow body that keeps arriving may take longer.
    pub body_read_timeout_seconds: u64,
    /// Open connections at most; beyond, new clients wait until one closes.
    pub max_connections: u32,
    /// PEM certificate chain (leaf first) to serve TLS with, beside `tls_key_file`.
    /// Plain HTTP when unset. Reloaded on SIGHUP and when the file changes.
    pub tls_cert_file: Option<PathBuf>,
    /// PEM private key of `tls_cert_file`.
    pub tls_key_file: Option<PathBuf>,
    /// PEM CA bundle for mutual TLS: followers (gateways, latchkey-verify) must present
    /// a certificate from it to read the revocation feed, introspect and send usage.
    pub tls_client_ca_file: Option<PathBuf>,
    /// A TLS handshake must finish within this long.
    pub tls_handshake_timeout_seconds: u64,
    /// `[policy_floor]`: the operator's tenant policy, which binds every tenant and
    /// which tenants' own policies may only tighten (docs/API.md, "Tenant policies").
    pub policy_floor: TenantPolicy,
    /// A MaxMind DB country database (`country.iso_code` or `country_code`) for the
    /// country rules of tenant policies; read at start and again when it changes.
    pub geoip_database_file: Option<PathBuf>,
    /// Requests a minute from one address to `POST /v1/leaks` before 429.
    pub leak_reports_per_minute: u32,
    /// A scanning partner's public-keys document (docs/SECRET_SCANNING.md): with it,
    /// `POST /v1/leaks/github` takes reports signed by those keys. Read and checked at
    /// start; a bad file stops the start.
    pub leak_report_public_keys_file: Option<PathBuf>,
    /// The same document served at a URL (`https://`, or `http://` on loopback),
    /// beside or instead of the file: read at start (a failure stops the start) and
    /// every `leak_report_public_keys_refresh_seconds` after.
    pub leak_report_public_keys_url: Option<String>,
    /// How often the keys at `leak_report_public_keys_url` are read again.
    pub leak_report_public_keys_refresh_seconds: u64,
    /// Let webhooks target loopback, private, link-local and other non-public addresses
    /// (docs/API.md, "Webhooks"). Off by default: a tenant manager's webhook could
    /// otherwise probe the network the server sits in.
    pub webhook_allow_private_targets: bool,
    /// How often each server looks for webhook deliveries that are due.
    pub webhook_poll_interval_ms: u64,
    /// Who may frame the console: the sources of its `frame-ancestors` directive
    /// (docs/CONSOLE.md, "Embedding"). `'none'` (the default) forbids any framing.
    pub console_frame_ancestors: String,
    /// Whether operators may sign in at `/console/login` with an admin key.
    pub console_login: bool,
    /// Count requests, grants and introspections and serve them at `/metrics`
    /// (docs/OPERATIONS.md, "Metrics"). On by default; off records nothing and
    /// `/metrics` answers 404.
    pub metrics_enabled: bool,
    /// Let trusts name plain-http issuers beyond loopback (docs/API.md, "Trusts").
    pub trust_allow_insecure_issuers: bool,
    /// Let trust issuers' documents be fetched from private, link-local and loopback
    /// addresses (an in-house CI system). Off by default: a trust's issuer could
    /// otherwise make the server probe the network it sits in.
    pub trust_allow_private_issuers: bool,
    /// The least time between two fetches of one issuer's keys when assertions name a
    /// `kid` the cached set lacks.
    pub trust_jwks_min_refresh_seconds: u64,
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
            header_read_timeout_seconds: 10,
            body_read_timeout_seconds: 30,
            max_connections: 10_000,
            tls_cert_file: None,
            tls_key_file: None,
            tls_client_ca_file: None,
            tls_handshake_timeout_seconds: 10,
            policy_floor: TenantPolicy::default(),
            geoip_database_file: None,
            leak_reports_per_minute: 10,
            leak_report_public_keys_file: None,
            leak_report_public_keys_url: None,
            leak_report_public_keys_refresh_seconds: 3600,
            webhook_allow_private_targets: false,
            webhook_poll_interval_ms: 1000,
            console_frame_ancestors: "'none'".to_owned(),
            console_login: true,
            metrics_enabled: true,
            trust_allow_insecure_issuers: false,
            trust_allow_private_issuers: false,
            trust_jwks_min_refresh_seconds: 10,
        }
    }
}

/// The longest read timeout accepted: beyond an hour a slow client is not being
/// limited at all, and the value is more likely a typo.
pub const MAX_READ_TIMEOUT_SECONDS: u64 = 3_600;

/// The longest interval between two reads of a scanning partner's keys: a week, past
/// which a rotated-out key would be trusted too long.
pub const MAX_KEYS_REFRESH_SECONDS: u64 = 7 * 86_400;

/// The most connections accepted; each costs a file descriptor and some memory, so a
/// larger value is a typo rather than a plan.
pub const MAX_CONNECTIONS: u32 = 1_000_000;

impl Config {
    /// Reads a TOML file; keys it does not set keep their defaults.
    pub fn from_toml(text: &str) -> Result<Self, String> {
        toml_from_str(text)
    }

    /// Checks the settings whose type alone does not bound them, naming the key at
    /// fault. `Application::build` calls it before anything is opened.
    pub fn validate(&self) -> Result<(), String> {
        for (key, value) in [
            (
                "header_read_timeout_seconds",
                self.header_read_timeout_seconds,
            ),
            ("body_read_timeout_seconds", self.body_read_timeout_seconds),
            (
                "tls_handshake_timeout_seconds",
                self.tls_handshake_timeout_seconds,
            ),
        ] {
            if !(1..=MAX_READ_TIMEOUT_SECONDS).contains(&value) {
                return Err(format!(
                    "{key} must be from 1 to {MAX_READ_TIMEOUT_SECONDS} seconds, not {value}"
                ));
            }
        }
        if !(1..=MAX_CONNECTIONS).contains(&self.max_connections) {
            return Err(format!(
                "max_connections must be from 1 to {MAX_CONNECTIONS}, not {}",
                self.max_connections
            ));
        }
        let ancestors = self.console_frame_ancestors.trim();
        if ancestors.is_empty()
            || ancestors
                .chars()
                .any(|c| c.is_control() || matches!(c, ';' | ',' | '"'))
        {
            return Err(
                "console_frame_ancestors must be a space-separated list of CSP sources, such as 'none' or https://app.example.com"
                    .to_owned(),
            );
        }
        if self.leak_reports_per_minute == 0 {
            return Err("leak_reports_per_minute must be at least 1".to_owned());
        }
        if !(1..=MAX_KEYS_REFRESH_SECONDS).contains(&self.leak_report_public_keys_refresh_seconds) {
            return Err(format!(
                "leak_report_public_keys_refresh_seconds must be from 1 to {MAX_KEYS_REFRESH_SECONDS}, not {}",
                self.leak_report_public_keys_refresh_seconds
            ));
        }
        if !(10..=60_000).contains(&self.webhook_poll_interval_ms) {
            return Err(format!(
                "webhook_poll_interval_ms must be from 10 to 60000, not {}",
                self.webhook_poll_interval_ms
            ));
        }
        match (&self.tls_cert_file, &self.tls_key_file) {
            (Some(_), None) => return Err("tls_cert_file is set without tls_key_file".to_owned()),
            (None, Some(_)) => return Err("tls_key_file is set without tls_cert_file".to_owned()),
            _ => {}
        }
        if let Err(error) = self
            .policy_floor
            .validate(self.max_access_token_ttl_seconds)
        {
            return Err(format!("policy_floor.{} {}", error.field, error.reason));
        }
        if !self.policy_floor.network.is_empty() {
            return Err(
                "policy_floor takes no network rules: restrict networks at your edge, or in each tenant's policy"
                    .to_owned(),
            );
        }
        if self.tls_client_ca_file.is_some() && self.tls_cert_file.is_none() {
            return Err(
                "tls_client_ca_file needs tls_cert_file and tls_key_file: client certificates are checked only when latchkey serves TLS itself"
                    .to_owned(),
            );
        }
        Ok(())
    }

    /// The TLS files, when the server serves TLS itself.
    pub fn tls_files(&self) -> Option<TlsFiles> {
        Some(TlsFiles {
            cert: self.tls_cert_file.clone()?,
            key: self.tls_key_file.clone()?,
            client_ca: self.tls_client_ca_file.clone(),
        })
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
    fn listener_limits_default_to_10_s_head_30_s_body_and_10_000_connections() {
        let config = Config::from_toml("").unwrap();
        config.validate().unwrap();
        assert_eq!(config.header_read_timeout_seconds, 10);
        assert_eq!(config.body_read_timeout_seconds, 30);
        assert_eq!(config.max_connections, 10_000);
        let set = Config::from_toml(
            "header_read_timeout_seconds = 5\nbody_read_timeout_seconds = 60\nmax_connections = 2",
        )
        .unwrap();
        set.validate().unwrap();
        assert_eq!(
            (
                set.header_read_timeout_seconds,
                set.body_read_timeout_seconds,
                set.max_connections
            ),
            (5, 60, 2)
        );
    }

    #[test]
    fn a_zero_or_absurd_listener_limit_is_refused_naming_the_key() {
        for (text, message) in [
            (
                "header_read_timeout_seconds = 0",
                "header_read_timeout_seconds must be from 1 to 3600 seconds, not 0",
            ),
            (
                "body_read_timeout_seconds = 0",
                "body_read_timeout_seconds must be from 1 to 3600 seconds, not 0",
            ),
            (
                "body_read_timeout_seconds = 86400",
                "body_read_timeout_seconds must be from 1 to 3600 seconds, not 86400",
            ),
            (
                "max_connections = 0",
                "max_connections must be from 1 to 1000000, not 0",
            ),
            (
                "max_connections = 2000000",
                "max_connections must be from 1 to 1000000, not 2000000",
            ),
        ] {
            let error = Config::from_toml(text).unwrap().validate().unwrap_err();
            assert_eq!(error, message, "{text}");
        }
    }

    #[test]
    fn tls_needs_both_files_and_client_certificates_need_tls() {
        let plain = Config::from_toml("").unwrap();
        assert_eq!(plain.tls_files(), None);
        assert_eq!(plain.tls_handshake_timeout_seconds, 10);
        for (text, message) in [
            (
                "tls_cert_file = \"cert.pem\"",
                "tls_cert_file is set without tls_key_file",
            ),
            (
                "tls_key_file = \"key.pem\"",
                "tls_key_file is set without tls_cert_file",
            ),
            (
                "tls_client_ca_file = \"ca.pem\"",
                "tls_client_ca_file needs tls_cert_file and tls_key_file: client certificates are checked only when latchkey serves TLS itself",
            ),
            (
                "tls_cert_file = \"c\"\ntls_key_file = \"k\"\ntls_handshake_timeout_seconds = 0",
                "tls_handshake_timeout_seconds must be from 1 to 3600 seconds, not 0",
            ),
        ] {
            let error = Config::from_toml(text).unwrap().validate().unwrap_err();
            assert_eq!(error, message, "{text}");
        }
        let tls = Config::from_toml(
            "tls_cert_file = \"c.pem\"\ntls_key_file = \"k.pem\"\ntls_client_ca_file = \"ca.pem\"",
        )
        .unwrap();
        tls.validate().unwrap();
        assert_eq!(
            tls.tls_files(),
            Some(TlsFiles {
                cert: PathBuf::from("c.pem"),
                key: PathBuf::from("k.pem"),
                client_ca: Some(PathBuf::from("ca.pem")),
            })
        );
    }

    #[test]
    fn a_negative_or_non_numeric_listener_limit_is_refused_naming_the_key() {
        for (text, key) in [
            (
                "header_read_timeout_seconds = -1",
                "header_read_timeout_seconds",
            ),
            (
                "body_read_timeout_seconds = \"30\"",
                "body_read_timeout_seconds",
            ),
            ("max_connections = -5", "max_connections"),
            ("max_connections = 1.5", "max_connections"),
            (
                "header_read_timeout_seconds = \"ten\"",
                "header_read_timeout_seconds",
            ),
        ] {
            let error = Config::from_toml(text).unwrap_err();
            assert!(error.contains(key), "{text}: {error}");
        }
    }

    #[test]
    fn leak_reports_are_limited_per_address_and_partner_keys_are_optional() {
        let config = Config::from_toml("").unwrap();
        assert_eq!(config.leak_reports_per_minute, 10);
        assert_eq!(config.leak_report_public_keys_file, None);
        let set = Config::from_toml(
            "leak_reports_per_minute = 3\nleak_report_public_keys_file = \"keys.json\"",
        )
        .unwrap();
        set.validate().unwrap();
        assert_eq!(set.leak_reports_per_minute, 3);
        assert_eq!(
            set.leak_report_public_keys_file,
            Some(PathBuf::from("keys.json"))
        );
        let error = Config::from_toml("leak_reports_per_minute = 0")
            .unwrap()
            .validate()
            .unwrap_err();
        assert_eq!(error, "leak_reports_per_minute must be at least 1");
        assert_eq!(config.leak_report_public_keys_url, None);
        assert_eq!(config.leak_report_public_keys_refresh_seconds, 3600);
        for (text, value) in [("0", 0), ("604801", 604_801)] {
            let error =
                Config::from_toml(&format!("leak_report_public_keys_refresh_seconds = {text}"))
                    .unwrap()
                    .validate()
                    .unwrap_err();
            assert_eq!(
                error,
                format!(
                    "leak_report_public_keys_refresh_seconds must be from 1 to 604800, not {value}"
                )
            );
        }
    }

    #[test]
    fn webhooks_refuse_private_targets_and_poll_every_second_by_default() {
        let config = Config::from_toml("").unwrap();
        assert!(!config.webhook_allow_private_targets);
        assert_eq!(config.webhook_poll_interval_ms, 1000);
        for (text, message) in [
            (
                "webhook_poll_interval_ms = 0",
                "webhook_poll_interval_ms must be from 10 to 60000, not 0",
            ),
            (
                "webhook_poll_interval_ms = 3600000",
                "webhook_poll_interval_ms must be from 10 to 60000, not 3600000",
            ),
        ] {
            let error = Config::from_toml(text).unwrap().validate().unwrap_err();
            assert_eq!(error, message, "{text}");
        }
        let set = Config::from_toml(
            "webhook_allow_private_targets = true\nwebhook_poll_interval_ms = 50",
        )
        .unwrap();
        set.validate().unwrap();
        assert!(set.webhook_allow_private_targets);
        assert_eq!(set.webhook_poll_interval_ms, 50);
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

    #[test]
    fn the_policy_floor_is_read_from_toml_and_checked_like_a_tenants_policy() {
        assert!(Config::default().policy_floor.is_empty());
        let config = Config::from_toml(
            "[policy_floor]\nmax_token_lifetime_days = 365\nrequire_expiry = true\n\
             allowed_kinds = [\"client_credentials\"]\n",
        )
        .unwrap();
        assert_eq!(config.policy_floor.max_token_lifetime_days, Some(365));
        assert!(config.policy_floor.require_expiry);
        config.validate().unwrap();

        let zero = Config::from_toml("[policy_floor]\nrevoke_unused_after_days = 0\n").unwrap();
        assert_eq!(
            zero.validate().unwrap_err(),
            "policy_floor.revoke_unused_after_days must be between 1 and 3650"
        );
        let ttl = Config::from_toml(
            "max_access_token_ttl_seconds = 600\n[policy_floor]\nmax_access_token_ttl_seconds = 601\n",
        )
        .unwrap();
        assert!(
            ttl.validate()
                .unwrap_err()
                .starts_with("policy_floor.max_access_token_ttl_seconds")
        );
        assert!(Config::from_toml("[policy_floor]\nmax_lifetime = 3\n").is_err());
        let networks =
            Config::from_toml("[policy_floor.network]\ndeny = [\"10.0.0.0/8\"]\n").unwrap();
        assert!(
            networks
                .validate()
                .unwrap_err()
                .contains("no network rules")
        );
    }
}
