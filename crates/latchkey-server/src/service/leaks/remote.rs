//! A scanning partner's public keys read from a URL (`leak_report_public_keys_url`,
//! docs/SECRET_SCANNING.md): fetched at start — a failure stops the start — and again
//! every refresh interval, when a failure keeps the keys last read.
//!
//! Policy: the URL is `https://` (certificates checked against the system's roots), or
//! plain `http://` on loopback only; redirects are not followed, a fetch takes at most
//! [`FETCH_TIMEOUT`], and a document over [`MAX_DOCUMENT_BYTES`] is refused, so a
//! misbehaving host can neither stall the server nor fill its memory.

use super::PartnerKeys;
use std::net::IpAddr;
use std::sync::{Arc, PoisonError, RwLock};
use std::time::Duration;

/// The longest a fetch of the key document may take.
pub const FETCH_TIMEOUT: Duration = Duration::from_secs(10);

/// The largest key document accepted.
pub const MAX_DOCUMENT_BYTES: usize = 64 * 1024;

/// The partner's keys as last read from its URL.
pub struct RemoteKeys {
    url: reqwest::Url,
    client: reqwest::Client,
    keys: RwLock<Arc<PartnerKeys>>,
}

impl RemoteKeys {
    /// Checks `url` and reads its keys once.
    pub async fn fetch_first(url: &str) -> Result<Arc<Self>, String> {
        let url = checked_url(url)?;
        let client = client()?;
        let keys = fetch(&client, &url).await?;
        Ok(Arc::new(Self {
            url,
            client,
            keys: RwLock::new(Arc::new(keys)),
        }))
    }

    /// The keys last read.
    pub fn current(&self) -> Arc<PartnerKeys> {
        self.keys
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Reads the keys again; on failure keeps the old ones and says why.
    pub async fn refresh(&self) -> Result<(), String> {
        let keys = fetch(&self.client, &self.url).await?;
        *self.keys.write().unwrap_or_else(PoisonError::into_inner) = Arc::new(keys);
        Ok(())
    }

    /// Refreshes every `every` until the runtime stops.
    pub fn spawn_refresh(self: &Arc<Self>, every: Duration) {
        let remote = Arc::clone(self);
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(every);
            tick.tick().await;
            loop {
                tick.tick().await;
                if let Err(error) = remote.refresh().await {
                    tracing::warn!(%error, "refreshing the scanning partner's keys failed; keeping the last ones");
                }
            }
        });
    }
}

/// `https://`, or `http://` to a loopback address.
fn checked_url(text: &str) -> Result<reqwest::Url, String> {
    let url = reqwest::Url::parse(text)
        .map_err(|e| format!("leak_report_public_keys_url {text:?} is not a URL: {e}"))?;
    let host = url.host_str().unwrap_or("");
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    let loopback = bare
        .parse::<IpAddr>()
        .map_or(host.eq_ignore_ascii_case("localhost"), |ip| {
            ip.is_loopback()
        });
    match url.scheme() {
        "https" => Ok(url),
        "http" if loopback => Ok(url),
        _ => Err(format!(
            "leak_report_public_keys_url {text:?} must be https:// (plain http:// only on loopback)"
        )),
    }
}

fn client() -> Result<reqwest::Client, String> {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let mut roots = rustls::RootCertStore::empty();
    for cert in rustls_native_certs::load_native_certs().certs {
        // A system store may hold certificates webpki cannot parse; skipping one only
        // narrows trust.
        let _ = roots.add(cert);
    }
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let tls = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_root_certificates(roots)
        .with_no_client_auth();
    reqwest::Client::builder()
        .use_preconfigured_tls(tls)
        .redirect(reqwest::redirect::Policy::none())
        .timeout(FETCH_TIMEOUT)
        .build()
        .map_err(|e| e.to_string())
}

async fn fetch(client: &reqwest::Client, url: &reqwest::Url) -> Result<PartnerKeys, String> {
    let fault = |what: String| format!("leak_report_public_keys_url {url}: {what}");
    let mut response = client
        .get(url.clone())
        .send()
        .await
        .map_err(|e| fault(format!("fetching failed: {e}")))?;
    if !response.status().is_success() {
        return Err(fault(format!("answered {}", response.status())));
    }
    let mut body = Vec::new();
    while let Some(chunk) = response
        .chunk()
        .await
        .map_err(|e| fault(format!("reading failed: {e}")))?
    {
        if body.len() + chunk.len() > MAX_DOCUMENT_BYTES {
            return Err(fault(format!("is larger than {MAX_DOCUMENT_BYTES} bytes")));
        }
        body.extend_from_slice(&chunk);
    }
    let text = String::from_utf8(body).map_err(|_| fault("is not UTF-8".to_owned()))?;
    PartnerKeys::parse(&text).map_err(fault)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_https_or_loopback_http_is_accepted() {
        for good in [
            "https://keys.example/meta/public_keys/secret_scanning",
            "http://127.0.0.1:8080/keys",
            "http://[::1]/keys",
            "http://localhost/keys",
        ] {
            assert!(checked_url(good).is_ok(), "{good}");
        }
        for bad in [
            "http://keys.example/keys",
            "http://10.0.0.1/keys",
            "ftp://127.0.0.1/keys",
            "file:///etc/keys.json",
            "keys.json",
        ] {
            let error = checked_url(bad).unwrap_err();
            assert!(
                error.starts_with("leak_report_public_keys_url"),
                "{bad}: {error}"
            );
        }
    }
}
