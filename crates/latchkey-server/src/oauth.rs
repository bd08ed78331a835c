//! The authorization server (docs/API.md, "The authorization server"): client credentials and refresh
//! tokens exchanged for signed JWTs at `/oauth/token`, RFC 7662 introspection, RFC 7009
//! revocation, RFC 8414 metadata and the JWKS.
//!
//! Policy: every endpoint here answers RFC 6749 error objects ([`error::OAuthError`]),
//! never problem+json, and every answer carries `Cache-Control: no-store`. A client that
//! fails to authenticate learns nothing about why.

pub mod client;
pub mod error;
pub mod introspect;
pub mod jwt;
pub mod keys;
pub mod metadata;
pub mod revoke;
pub mod throttle;
pub mod token;

use crate::problem::{ApiError, ApiResult};
use keys::{KeySet, MasterKey};
use latchkey_core::Timestamp;
use latchkey_core::audit::AuditContext;
use latchkey_core::jwt::Algorithm;
use latchkey_core::store::{RotateWhen, Store};
use std::collections::HashSet;
use std::sync::{Arc, RwLock};

/// Keys and deny list of the authorization server, shared by the endpoints.
pub struct KeyRing {
    master: MasterKey,
    algorithm: Algorithm,
    keys: RwLock<Arc<KeySet>>,
    revoked_jtis: RwLock<Arc<HashSet<String>>>,
}

impl KeyRing {
    /// A ring that makes new keys with `algorithm`; call [`KeyRing::reload`] before use.
    pub fn new(master: MasterKey, algorithm: Algorithm) -> Self {
        Self {
            master,
            algorithm,
            keys: RwLock::new(Arc::new(KeySet::new(Vec::new()))),
            revoked_jtis: RwLock::new(Arc::new(HashSet::new())),
        }
    }

    /// The published keys.
    pub fn keys(&self) -> Arc<KeySet> {
        self.keys
            .read()
            .map(|keys| keys.clone())
            .unwrap_or_else(|poisoned| poisoned.into_inner().clone())
    }

    /// True when `jti` is on the deny list.
    pub fn is_jti_revoked(&self, jti: &str) -> bool {
        self.revoked_jtis
            .read()
            .map(|set| set.contains(jti))
            .unwrap_or(true)
    }

    /// Notes a `jti` revoked by this replica.
    pub fn add_revoked_jti(&self, jti: &str) {
        if let Ok(mut set) = self.revoked_jtis.write() {
            let mut next = (**set).clone();
            next.insert(jti.to_owned());
            *set = Arc::new(next);
        }
    }

    /// Reads the published keys and the live part of the jti deny list from the store.
    pub async fn reload(&self, store: &dyn Store, now: Timestamp) -> ApiResult<()> {
        let records = store.signing_keys(now).await?;
        let kids: Vec<String> = records.iter().map(|r| r.kid.clone()).collect();
        // The same keys as before: keep the set, and the tokens verified against it.
        if self.keys().kids() != kids {
            let mut opened = Vec::with_capacity(records.len());
            for record in &records {
                opened.push(Arc::new(keys::open(&self.master, record)?));
            }
            let set = Arc::new(KeySet::new(opened));
            if let Ok(mut keys) = self.keys.write() {
                *keys = set;
            }
        }
        let jtis: HashSet<String> = store.revoked_jtis(now).await?.into_iter().collect();
        if let Ok(mut revoked) = self.revoked_jtis.write() {
            *revoked = Arc::new(jtis);
        }
        Ok(())
    }

    /// Adds a new key if `when` holds (checked under the store's rotation lock, so
    /// replicas rotate exactly once), then reloads. Returns whether it rotated.
    pub async fn rotate(
        &self,
        store: &dyn Store,
        when: RotateWhen,
        ctx: &AuditContext,
    ) -> ApiResult<bool> {
        let record = keys::generate(&self.master, self.algorithm, ctx.at)?;
        let rotated = store.rotate_signing_key(&record, when, ctx).await?;
        self.reload(store, ctx.at).await?;
        Ok(rotated)
    }

    /// Makes sure there are a current and a next key (first start).
    pub async fn ensure_keys(&self, store: &dyn Store, now: Timestamp) -> ApiResult<()> {
        for _ in 0..2 {
            self.rotate(store, RotateWhen::FewerThan(2), &AuditContext::system(now))
                .await?;
        }
        if self.keys().current().is_none() {
            return Err(ApiError::Internal(
                "no signing key could be made".to_owned(),
            ));
        }
        Ok(())
    }
}
