//! How the verifier reaches its issuer: which base URLs it accepts, and the TLS it
//! speaks (README.md, "latchkey-verify"; docs/DEPLOYMENT.md, "Gateways in another
//! network following an https issuer").
//!
//! Policy: `https://` is always accepted, with certificates checked against the
//! system's trusted roots plus an optional private CA bundle (`tls_ca_file`) — an
//! unknown CA, an expired certificate or one for another host is refused, never
//! waved through. Plain `http://` carries the revocation feed and introspection
//! credentials in the clear, so it is accepted only on loopback unless the operator
//! says `allow_insecure_issuer`, and then a warning is logged at start. One crypto
//! stack: rustls on aws-lc-rs, the provider the rest of latchkey signs with.

use crate::error::DiscoveryError;
use reqwest::Url;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};

/// A certificate and key presented to a server that asks for mutual TLS (the server's
/// `tls_client_ca_file`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientIdentity {
    /// PEM certificate chain, leaf first (`tls_client_cert_file`).
    pub cert_file: PathBuf,
    /// PEM private key (`tls_client_key_file`).
    pub key_file: PathBuf,
}

/// What a verifier or replica needs to open connections to its issuer.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct TransportPolicy {
    /// A PEM bundle of extra trusted CAs.
    pub(crate) tls_ca_file: Option<PathBuf>,
    /// The client certificate for mutual TLS.
    pub(crate) identity: Option<ClientIdentity>,
    /// Plain `http://` beyond loopback is allowed.
    pub(crate) allow_insecure: bool,
}

/// Whether plain HTTP to a host may be used.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum PlainHttp {
    /// `https://`: nothing to decide.
    NotPlain,
    /// Plain HTTP on a loopback address: nothing leaves the machine.
    Loopback,
    /// Plain HTTP beyond loopback, allowed by `allow_insecure_issuer`: warn.
    AllowedInsecure,
    /// Plain HTTP beyond loopback without `allow_insecure_issuer`: refuse.
    Refused,
}

/// Decides whether `url` (already parsed as `http` or `https`) may be used.
pub(crate) fn plain_http_decision(url: &Url, allow_insecure: bool) -> PlainHttp {
    if url.scheme() != "http" {
        return PlainHttp::NotPlain;
    }
    let host = url.host_str().unwrap_or("");
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    let loopback = match bare.parse::<IpAddr>() {
        Ok(ip) => ip.is_loopback(),
        Err(_) => host.eq_ignore_ascii_case("localhost"),
    };
    if loopback {
        PlainHttp::Loopback
    } else if allow_insecure {
        PlainHttp::AllowedInsecure
    } else {
        PlainHttp::Refused
    }
}

/// Parses a base URL to reach the issuer at (`setting` names the option it came from,
/// for the error) and applies the plain-HTTP rule. Returns it without a trailing `/`.
pub(crate) fn checked_base(
    base: &str,
    setting: &str,
    allow_insecure: bool,
) -> Result<String, DiscoveryError> {
    let (trimmed, url) = parsed_base(base, setting)?;
    check_plain_http(&url, setting, allow_insecure)?;
    Ok(trimmed)
}

/// Parses a base URL (`setting` names the option it came from) without judging its
/// scheme: for an issuer that is only a name, never connected to.
pub(crate) fn checked_name(base: &str, setting: &str) -> Result<String, DiscoveryError> {
    parsed_base(base, setting).map(|(trimmed, _)| trimmed)
}

fn parsed_base(base: &str, setting: &str) -> Result<(String, Url), DiscoveryError> {
    let bad = |reason: &str| DiscoveryError::BadIssuer(format!("{setting} `{base}`: {reason}"));
    let trimmed = base.trim_end_matches('/');
    if trimmed.contains(['?', '#', ' ', '@']) {
        return Err(bad(
            "must not have a query, fragment, space or user information",
        ));
    }
    let url = Url::parse(trimmed).map_err(|_| bad("is not an absolute URL"))?;
    if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none_or(str::is_empty) {
        return Err(bad("must be an http:// or https:// URL naming a host"));
    }
    Ok((trimmed.to_owned(), url))
}

/// Applies the plain-HTTP rule to `url`, logging the warning when it is allowed only
/// by `allow_insecure_issuer`.
pub(crate) fn check_plain_http(
    url: &Url,
    setting: &str,
    allow_insecure: bool,
) -> Result<(), DiscoveryError> {
    match plain_http_decision(url, allow_insecure) {
        PlainHttp::NotPlain | PlainHttp::Loopback => Ok(()),
        PlainHttp::AllowedInsecure => {
            tracing::warn!(
                url = %url,
                "plain http:// to the issuer beyond loopback: tokens, keys and the revocation feed are not protected in transit (allow_insecure_issuer is set)"
            );
            Ok(())
        }
        PlainHttp::Refused => Err(DiscoveryError::InsecureIssuer {
            setting: setting.to_owned(),
            url: url.to_string(),
        }),
    }
}

/// The origin (`scheme://host[:port]`) of an absolute URL, without a trailing `/`.
pub(crate) fn origin(url: &str) -> Option<String> {
    let parsed = Url::parse(url).ok()?;
    let origin = parsed.origin();
    origin.is_tuple().then(|| origin.ascii_serialization())
}

/// Moves `url`, found in the issuer's metadata, from the issuer's public origin onto
/// the connect address's origin, keeping its path and query. A URL on any other
/// origin is refused: it could not be reached through the connect address, and
/// following it would send the credential somewhere the operator never named.
pub(crate) fn rebase(url: &str, issuer_origin: &str, connect_origin: &str) -> Option<String> {
    let parsed = Url::parse(url).ok()?;
    if parsed.origin().ascii_serialization() != issuer_origin {
        return None;
    }
    let mut rest = parsed.path().to_owned();
    if let Some(query) = parsed.query() {
        rest.push('?');
        rest.push_str(query);
    }
    Some(format!("{connect_origin}{rest}"))
}

/// Makes rustls on aws-lc-rs the process's default TLS provider, unless one is set
/// already. reqwest is built with TLS but without a provider of its own (so ring is
/// never compiled in), and a `reqwest::Client` built without `use_preconfigured_tls`
/// needs this default: call it at the start of a program, or of a test harness, that
/// builds such clients. The verifier's own clients do not need it; they call it
/// anyway, which is harmless.
pub fn install_crypto_provider() {
    // An error means a default is installed already, which is all this asks for.
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
}

/// The TLS client configuration the verifier uses (rustls on aws-lc-rs, TLS 1.2 and
/// 1.3, HTTP/1.1, the system's trusted roots plus the CAs of `tls_ca_file`, and the
/// client certificate for mutual TLS if any), for a program that sends its own
/// requests to the same server — the gateway's usage batches — and should trust
/// exactly what its verifier trusts.
pub fn tls_client_config(
    tls_ca_file: Option<&Path>,
    identity: Option<&ClientIdentity>,
) -> Result<rustls::ClientConfig, DiscoveryError> {
    client_config(tls_ca_file, identity).map_err(DiscoveryError::BadOption)
}

/// [`tls_client_config`], its error in words.
pub(crate) fn client_config(
    ca_file: Option<&Path>,
    identity: Option<&ClientIdentity>,
) -> Result<rustls::ClientConfig, String> {
    install_crypto_provider();
    let mut roots = rustls::RootCertStore::empty();
    for cert in system_roots() {
        // A system store may hold certificates webpki cannot parse; skipping one only
        // narrows trust.
        let _ = roots.add(cert.clone());
    }
    if let Some(path) = ca_file {
        let mut added = 0usize;
        let certs = CertificateDer::pem_file_iter(path)
            .map_err(|e| format!("tls_ca_file {}: {e}", path.display()))?;
        for cert in certs {
            let cert = cert.map_err(|e| format!("tls_ca_file {}: {e}", path.display()))?;
            roots
                .add(cert)
                .map_err(|e| format!("tls_ca_file {}: {e}", path.display()))?;
            added += 1;
        }
        if added == 0 {
            return Err(format!(
                "tls_ca_file {}: holds no PEM certificate",
                path.display()
            ));
        }
    }
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_root_certificates(roots);
    let mut config = match identity {
        None => builder.with_no_client_auth(),
        Some(identity) => {
            let (chain, key) = read_identity(identity)?;
            builder
                .with_client_auth_cert(chain, key)
                .map_err(|e| format!("tls_client_key_file {}: {e}", identity.key_file.display()))?
        }
    };
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(config)
}

/// Reads a client certificate chain and its key.
fn read_identity(
    identity: &ClientIdentity,
) -> Result<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>), String> {
    let cert = &identity.cert_file;
    let chain = CertificateDer::pem_file_iter(cert)
        .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
        .map_err(|e| format!("tls_client_cert_file {}: {e}", cert.display()))?;
    if chain.is_empty() {
        return Err(format!(
            "tls_client_cert_file {}: holds no PEM certificate",
            cert.display()
        ));
    }
    let key = PrivateKeyDer::from_pem_file(&identity.key_file)
        .map_err(|e| format!("tls_client_key_file {}: {e}", identity.key_file.display()))?;
    Ok((chain, key))
}

/// The operating system's trusted roots, read once per process: the store is what
/// operators already maintain (distribution updates, a corporate CA added with
/// `update-ca-certificates`), which a compiled-in list could not follow.
fn system_roots() -> &'static [CertificateDer<'static>] {
    static ROOTS: OnceLock<Vec<CertificateDer<'static>>> = OnceLock::new();
    ROOTS.get_or_init(|| {
        let found = rustls_native_certs::load_native_certs();
        for error in &found.errors {
            tracing::debug!(%error, "skipping part of the system certificate store");
        }
        found.certs
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decide(url: &str, allow: bool) -> PlainHttp {
        plain_http_decision(&Url::parse(url).unwrap(), allow)
    }

    #[test]
    fn plain_http_is_allowed_on_loopback_in_every_spelling() {
        for url in [
            "http://127.0.0.1:7700",
            "http://127.9.8.7",
            "http://localhost:7700",
            "http://LOCALHOST",
            "http://[::1]:7700",
        ] {
            assert_eq!(decide(url, false), PlainHttp::Loopback, "{url}");
        }
    }

    #[test]
    fn plain_http_beyond_loopback_is_refused_without_allow_insecure_issuer() {
        for url in [
            "http://10.0.0.5:7700",
            "http://auth.internal",
            "http://localhost.attacker.example",
            "http://0.0.0.0:7700",
            "http://[::ffff:10.0.0.5]",
            "http://[fe80::1]",
        ] {
            assert_eq!(decide(url, false), PlainHttp::Refused, "{url}");
            assert_eq!(decide(url, true), PlainHttp::AllowedInsecure, "{url}");
        }
    }

    #[test]
    fn https_needs_no_decision() {
        assert_eq!(
            decide("https://auth.example.com", false),
            PlainHttp::NotPlain
        );
    }

    #[test]
    fn a_refused_base_names_the_setting_and_the_way_out() {
        let error = checked_base("http://10.0.0.5:7700/", "connect", false).unwrap_err();
        let text = error.to_string();
        assert!(text.contains("connect"), "{text}");
        assert!(text.contains("http://10.0.0.5:7700"), "{text}");
        assert!(text.contains("allow_insecure_issuer"), "{text}");
        assert_eq!(
            checked_base("http://10.0.0.5:7700/", "connect", true).unwrap(),
            "http://10.0.0.5:7700"
        );
        assert_eq!(
            checked_base("https://auth.example.com/", "issuer", false).unwrap(),
            "https://auth.example.com"
        );
    }

    #[test]
    fn malformed_bases_are_refused() {
        for base in [
            "auth.example.com",
            "ftp://auth.example.com",
            "https://",
            "https://user@auth.example.com",
            "https://auth.example.com?x=1",
            "https://auth.example.com#f",
        ] {
            assert!(checked_base(base, "issuer", true).is_err(), "{base}");
        }
    }

    #[test]
    fn an_origin_is_normalised_so_default_ports_and_case_compare_equal() {
        assert_eq!(
            origin("https://Auth.Example.com:443").unwrap(),
            "https://auth.example.com"
        );
        assert_eq!(
            origin("http://127.0.0.1:7700").unwrap(),
            "http://127.0.0.1:7700"
        );
    }

    #[test]
    fn metadata_urls_move_onto_the_connect_origin_keeping_the_path() {
        assert_eq!(
            rebase(
                "https://auth.example.com/.well-known/jwks.json",
                "https://auth.example.com",
                "http://127.0.0.1:7700"
            )
            .unwrap(),
            "http://127.0.0.1:7700/.well-known/jwks.json"
        );
        assert_eq!(
            rebase(
                "https://auth.example.com:443/oauth/introspect?x=1",
                "https://auth.example.com",
                "https://10.0.0.5:8443"
            )
            .unwrap(),
            "https://10.0.0.5:8443/oauth/introspect?x=1"
        );
        // Another origin (host, scheme or port) is not moved.
        for foreign in [
            "https://keys.attacker.example/jwks.json",
            "http://auth.example.com/jwks.json",
            "https://auth.example.com:8443/jwks.json",
        ] {
            assert!(
                rebase(foreign, "https://auth.example.com", "http://127.0.0.1:7700").is_none(),
                "{foreign}"
            );
        }
    }

    #[test]
    fn a_ca_file_without_certificates_is_refused_naming_the_file() {
        let dir = std::env::temp_dir().join(format!("latchkey-ca-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("empty.pem");
        std::fs::write(&path, "not a certificate\n").unwrap();
        let error = client_config(Some(&path), None).unwrap_err();
        assert!(error.contains("empty.pem"), "{error}");
        let missing = client_config(Some(&dir.join("missing.pem")), None).unwrap_err();
        assert!(missing.contains("missing.pem"), "{missing}");
        assert!(client_config(None, None).is_ok());
        let no_cert = ClientIdentity {
            cert_file: path.clone(),
            key_file: path.clone(),
        };
        let error = client_config(None, Some(&no_cert)).unwrap_err();
        assert!(
            error.starts_with("tls_client_cert_file") && error.contains("empty.pem"),
            "{error}"
        );
    }
}
