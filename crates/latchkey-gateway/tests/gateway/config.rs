//! The configuration file: what it accepts, and how clearly it refuses the rest.

use latchkey_gateway::{ConfigError, GatewayConfig};
use std::time::Duration;

const BASE: &str = "listen = \"127.0.0.1:8080\"\nserver = \"http://127.0.0.1:7700\"\n";

fn parse(text: &str) -> Result<GatewayConfig, ConfigError> {
    let config = GatewayConfig::from_toml(text)?.with_env_credential(None);
    config.validate()?;
    Ok(config)
}

fn refusal(text: &str) -> String {
    let full = format!("{BASE}credential = \"lk_ak_x\"\n{text}");
    parse(&full).unwrap_err().to_string()
}

#[test]
fn a_config_file_with_every_setting_loads() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("gateway.toml");
    std::fs::write(
        &path,
        format!(
            r#"{BASE}credential = "lk_ak_file"
audience = "https://api.example.com"
max_staleness_seconds = 10
upstream_timeout_seconds = 2.5
drain_timeout_seconds = 3

[[route]]
prefix = "/reports/"
upstream = "http://127.0.0.1:9000"
scopes = {{ GET = ["reports:read"], "*" = ["reports:admin"] }}
timeout_seconds = 1
strip_authorization = true

[[route]]
prefix = "/"
upstream = "http://localhost:9001/"
public = true
"#
        ),
    )
    .unwrap();
    let config = GatewayConfig::load(&path).unwrap();
    assert_eq!(config.max_staleness(), Duration::from_secs(10));
    assert_eq!(config.drain_timeout(), Duration::from_secs(3));
    assert_eq!(config.audience.as_deref(), Some("https://api.example.com"));
    assert_eq!(config.routes.len(), 2);
    assert!(config.routes[0].strip_authorization);
    assert!(config.routes[1].public);
}

#[test]
fn a_missing_file_names_the_file() {
    let error = GatewayConfig::load("/nonexistent/gateway.toml").unwrap_err();
    assert!(matches!(error, ConfigError::Read { .. }));
    assert!(error.to_string().contains("/nonexistent/gateway.toml"));
}

#[test]
fn a_config_without_a_credential_names_the_environment_variable() {
    let error = parse(BASE).unwrap_err();
    assert!(matches!(error, ConfigError::MissingCredential));
    assert!(error.to_string().contains("LATCHKEY_GATEWAY_CREDENTIAL"));
    let from_env = GatewayConfig::from_toml(BASE)
        .unwrap()
        .with_env_credential(Some("lk_ak_env".to_owned()));
    from_env.validate().unwrap();
}

#[test]
fn bad_urls_are_refused_with_the_value_and_the_reason() {
    let server =
        parse("listen = \"127.0.0.1:8080\"\nserver = \"ftp://auth.example\"\ncredential = \"c\"\n")
            .unwrap_err();
    assert_eq!(
        server.to_string(),
        "server `ftp://auth.example`: must start with http:// or https://"
    );
    let upstream = refusal("[[route]]\nprefix = \"/a\"\nupstream = \"http://h:1/base\"\n");
    assert_eq!(
        upstream,
        "route `/a`: upstream `http://h:1/base`: must be http(s)://host[:port] without a path: the request path is forwarded unchanged"
    );
}

#[test]
fn a_duplicate_prefix_is_refused_by_name() {
    let route = "[[route]]\nprefix = \"/a\"\nupstream = \"http://h:1\"\n";
    let error = refusal(&format!("{route}{}", route.replace("\"/a\"", "\"/a/\"")));
    assert_eq!(error, "route `/a` is defined more than once");
}

#[test]
fn an_unknown_method_key_is_refused_with_the_methods_allowed() {
    let error = refusal(
        "[[route]]\nprefix = \"/a\"\nupstream = \"http://h:1\"\nscopes = { get = [\"a:r\"] }\n",
    );
    assert!(
        error.starts_with("route `/a`: unknown method key `get` in scopes (use GET,"),
        "{error}"
    );
}

#[test]
fn an_unknown_key_is_a_syntax_error_not_an_open_route() {
    let error = refusal(
        "[[route]]\nprefix = \"/a\"\nupstream = \"http://h:1\"\nscope = { GET = [\"a:r\"] }\n",
    );
    assert!(error.contains("unknown field `scope`"), "{error}");
}

#[test]
fn timeouts_must_be_positive() {
    let error = refusal("upstream_timeout_seconds = 0\n");
    assert!(
        error.starts_with("`upstream_timeout_seconds` must be more than 0"),
        "{error}"
    );
}

const TLS_BASE: &str = "listen = \"127.0.0.1:8080\"\ncredential = \"c\"\n";

#[test]
fn an_existing_loopback_config_keeps_its_meaning_issuer_and_connect_are_the_server() {
    let config = parse(&format!("{TLS_BASE}server = \"http://127.0.0.1:7700/\"\n")).unwrap();
    assert_eq!(config.issuer().unwrap(), "http://127.0.0.1:7700/");
    assert!(config.tls_ca_file.is_none());
    assert!(!config.allow_insecure_issuer);
    let options = config
        .verifier_options(std::sync::Arc::new(latchkey_verify::NoRevocationList))
        .unwrap();
    assert_eq!(options.connect, None);
    assert_eq!(options.tls_ca_file, None);
    assert!(!options.allow_insecure_issuer);
}

#[test]
fn an_https_issuer_reached_at_an_internal_server_address_is_accepted() {
    let ca = latchkey_listener::test_pki::TestCa::new("internal");
    let config = parse(&format!(
        "{TLS_BASE}server = \"http://10.0.0.5:7700\"\nissuer = \"https://auth.example.com\"\n\
         tls_ca_file = \"{}\"\nallow_insecure_issuer = true\n",
        ca.pem_file.display()
    ))
    .unwrap();
    assert_eq!(config.issuer().unwrap(), "https://auth.example.com");
    let options = config
        .verifier_options(std::sync::Arc::new(latchkey_verify::NoRevocationList))
        .unwrap();
    assert_eq!(options.connect.as_deref(), Some("http://10.0.0.5:7700"));
    assert_eq!(options.tls_ca_file.as_deref(), Some(ca.pem_file.as_path()));
    // A CA file that is not there stops the configuration, naming the setting.
    let error = parse(&format!(
        "{TLS_BASE}server = \"https://auth.example.com\"\ntls_ca_file = \"/nonexistent/ca.pem\"\n"
    ))
    .unwrap_err()
    .to_string();
    assert!(error.starts_with("`tls_ca_file`"), "{error}");
    assert!(options.allow_insecure_issuer);
    assert_eq!(
        options.audience, None,
        "the verifier defaults it to the issuer"
    );

    // An https server needs no issuer of its own.
    let https = parse(&format!(
        "{TLS_BASE}server = \"https://auth.example.com\"\n"
    ))
    .unwrap();
    assert_eq!(https.issuer().unwrap(), "https://auth.example.com");
}

#[test]
fn a_bad_issuer_or_a_server_with_a_path_is_refused_naming_the_setting() {
    for (extra, expected) in [
        (
            "server = \"http://127.0.0.1:7700\"\nissuer = \"auth.example.com\"\n",
            "`issuer` `auth.example.com`: must start with http:// or https://",
        ),
        (
            "server = \"http://127.0.0.1:7700\"\nissuer = \"https://u@auth.example.com\"\n",
            "`issuer` `https://u@auth.example.com`: must name a host, without user information",
        ),
        (
            "server = \"http://127.0.0.1:7700/auth\"\nissuer = \"https://auth.example.com/auth\"\n",
            "server `http://127.0.0.1:7700/auth`: must not have a path: it is where the server is reached; put the public URL in `issuer`",
        ),
    ] {
        let error = parse(&format!("{TLS_BASE}{extra}")).unwrap_err();
        assert_eq!(error.to_string(), expected);
    }
    let typo = GatewayConfig::from_toml(&format!(
        "{TLS_BASE}server = \"http://127.0.0.1:7700\"\ntls_ca = \"x\"\n"
    ))
    .unwrap_err();
    assert!(typo.to_string().contains("tls_ca"), "{typo}");
}

#[tokio::test]
async fn a_plain_http_server_beyond_loopback_is_refused_at_start_without_allow_insecure_issuer() {
    let config = parse(&format!(
        "{TLS_BASE}server = \"http://10.0.0.5:7700\"\nissuer = \"https://auth.example.com\"\n"
    ))
    .unwrap();
    let error = latchkey_gateway::assemble(config).await.unwrap_err();
    assert!(matches!(error, ConfigError::Server(_)), "{error:?}");
    let text = error.to_string();
    assert!(text.contains("http://10.0.0.5:7700"), "{text}");
    assert!(text.contains("allow_insecure_issuer"), "{text}");
}

#[tokio::test]
async fn a_geoip_database_is_opened_with_the_verifier_and_a_bad_one_stops_the_configuration() {
    let base = format!("{TLS_BASE}server = \"http://127.0.0.1:7700/\"\n");
    let missing = parse(&format!(
        "{base}geoip_database_file = \"/nonexistent/countries.mmdb\"\n"
    ))
    .unwrap()
    .verifier_options(std::sync::Arc::new(latchkey_verify::NoRevocationList))
    .unwrap_err()
    .to_string();
    assert!(
        missing.starts_with("`geoip_database_file`")
            && missing.contains("/nonexistent/countries.mmdb"),
        "{missing}"
    );
    let dir = tempfile::tempdir().unwrap();
    let corrupt = dir.path().join("corrupt.mmdb");
    std::fs::write(&corrupt, b"not a database").unwrap();
    let refused = parse(&format!(
        "{base}geoip_database_file = {:?}\n",
        corrupt.to_str().unwrap()
    ))
    .unwrap()
    .verifier_options(std::sync::Arc::new(latchkey_verify::NoRevocationList));
    assert!(refused.is_err());
    // The control: no database, no GeoIP in the verifier.
    let options = parse(&base)
        .unwrap()
        .verifier_options(std::sync::Arc::new(latchkey_verify::NoRevocationList))
        .unwrap();
    assert!(options.geoip.is_none());
}
