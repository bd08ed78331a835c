//! The issuer's signing keys as this verifier knows them: fetched at discovery,
//! refreshed on a schedule, and refetched when a token names a `kid` not seen yet.
//!
//! Policy: an unknown `kid` may cause a refetch, but refetches are single-flight (one
//! at a time; everyone waiting re-checks the new set) and rate-limited (at most one per
//! `jwks_min_refetch_interval`), so a flood of tokens with made-up kids costs the issuer
//! at most one request per interval. The issuer publishes the next key ahead of use
//! (docs/API.md, "Keys"), so honest tokens almost never need this path. A failed fetch
//! keeps the previous keys; a successful one replaces them entirely, so a key the
//! issuer withdraws stops verifying at once. When a refresh withdraws a key the
//! `epoch` moves on, which tells the verified-token cache that its entries must be
//! verified afresh.

use crate::error::DiscoveryError;
use crate::http::Http;
use crate::jwk::{KeySet, MAX_KID_LEN, VerifyingKey, parse_jwks};
use latchkey_core::jwt::Algorithm;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, PoisonError, RwLock};

/// Where a key set comes from.
#[derive(Debug)]
pub(crate) struct KeySource {
    pub(crate) http: Http,
    pub(crate) jwks_uri: String,
}

/// See the module docs.
#[derive(Debug)]
pub(crate) struct KeyStore {
    source: Option<KeySource>,
    allowed: Vec<Algorithm>,
    current: RwLock<Arc<KeySet>>,
    epoch: AtomicU64,
    /// When the last fetch started; the lock makes fetches single-flight.
    last_fetch_ms: tokio::sync::Mutex<i64>,
    min_refetch_ms: i64,
}

impl KeyStore {
    /// A store holding `set`, fetched at `fetched_ms` from `source` (`None`: pinned keys
    /// that never change).
    pub(crate) fn new(
        set: KeySet,
        source: Option<KeySource>,
        allowed: Vec<Algorithm>,
        min_refetch_ms: i64,
        fetched_ms: i64,
    ) -> Self {
        Self {
            source,
            allowed,
            current: RwLock::new(Arc::new(set)),
            epoch: AtomicU64::new(0),
            last_fetch_ms: tokio::sync::Mutex::new(fetched_ms),
            min_refetch_ms,
        }
    }

    /// Fetches and parses a key set.
    pub(crate) async fn fetch(
        http: &Http,
        jwks_uri: &str,
        allowed: &[Algorithm],
    ) -> Result<KeySet, DiscoveryError> {
        let body = http.get(jwks_uri).await.map_err(|e| DiscoveryError::Http {
            url: jwks_uri.to_owned(),
            detail: e.0,
        })?;
        parse_jwks(&body, allowed).map_err(|detail| DiscoveryError::Document {
            url: jwks_uri.to_owned(),
            detail,
        })
    }

    /// Changes whenever a refresh withdraws a key.
    pub(crate) fn epoch(&self) -> u64 {
        self.epoch.load(Ordering::Acquire)
    }

    fn lookup(&self, kid: &str) -> Option<Arc<VerifyingKey>> {
        self.current
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .get(kid)
    }

    /// The key named `kid`, refetching the set first when `kid` is unknown and the rate
    /// limit allows.
    pub(crate) async fn key(&self, kid: &str, now_ms: i64) -> Option<Arc<VerifyingKey>> {
        if let Some(key) = self.lookup(kid) {
            return Some(key);
        }
        // No issuer names a key like this; do not let it cost a fetch.
        if kid.len() > MAX_KID_LEN {
            return None;
        }
        let source = self.source.as_ref()?;
        let mut last = self.last_fetch_ms.lock().await;
        // Whoever held the lock before may just have fetched the key.
        if let Some(key) = self.lookup(kid) {
            return Some(key);
        }
        if now_ms < last.saturating_add(self.min_refetch_ms) {
            return None;
        }
        *last = now_ms;
        if let Err(error) = self.fetch_and_install(source).await {
            tracing::warn!(%error, "JWKS refetch for an unknown kid failed; keeping the old keys");
        }
        drop(last);
        self.lookup(kid)
    }

    /// Refetches the set now (the periodic refresh), unless another fetch is running.
    pub(crate) async fn refresh(&self, now_ms: i64) -> Result<(), DiscoveryError> {
        let Some(source) = self.source.as_ref() else {
            return Ok(());
        };
        let Ok(mut last) = self.last_fetch_ms.try_lock() else {
            return Ok(());
        };
        *last = now_ms;
        self.fetch_and_install(source).await
    }

    async fn fetch_and_install(&self, source: &KeySource) -> Result<(), DiscoveryError> {
        let next = Self::fetch(&source.http, &source.jwks_uri, &self.allowed).await?;
        let mut current = self.current.write().unwrap_or_else(PoisonError::into_inner);
        if !current.is_covered_by(&next) {
            self.epoch.fetch_add(1, Ordering::AcqRel);
        }
        *current = Arc::new(next);
        Ok(())
    }
}
