//! The authorization server's signing keys and its `jti` deny list (docs/API.md,
//! "Keys"), read from the store and swapped whole on reload.
//!
//! Policy: readers never wait for a writer and never fail. Each set is an `Arc` swapped
//! under a lock held only for the swap, so a poisoned lock still holds a whole set, and
//! every access takes it as it is.

use crate::service::error::{Error, Result};
use crate::service::keys::{self, KeySet, MasterKey};
use latchkey_core::Timestamp;
use latchkey_core::audit::AuditContext;
use latchkey_core::jwt::Algorithm;
use latchkey_core::store::{RotateWhen, Store};
use std::collections::HashSet;
use std::sync::{Arc, PoisonError, RwLock};

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

    /// The master key, which also seals webhook secrets (`service::webhooks`).
    pub fn master(&self) -> &MasterKey {
        &self.master
    }

    /// The published keys.
    pub fn keys(&self) -> Arc<KeySet> {
        self.keys
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// True when `jti` is on the deny list.
    pub fn is_jti_revoked(&self, jti: &str) -> bool {
        self.revoked_jtis
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .contains(jti)
    }

    /// Notes a `jti` revoked by this replica.
    pub fn add_revoked_jti(&self, jti: &str) {
        let mut set = self
            .revoked_jtis
            .write()
            .unwrap_or_else(PoisonError::into_inner);
        let mut next = (**set).clone();
        next.insert(jti.to_owned());
        *set = Arc::new(next);
    }

    /// Reads the published keys and the live part of the jti deny list from the store.
    pub async fn reload(&self, store: &dyn Store, now: Timestamp) -> Result<()> {
        let records = store.signing_keys(now).await?;
        let kids: Vec<String> = records.iter().map(|r| r.kid.clone()).collect();
        // The same keys as before: keep the set, and the tokens verified against it.
        if self.keys().kids() != kids {
            let mut opened = Vec::with_capacity(records.len());
            for record in &records {
                opened.push(Arc::new(keys::open(&self.master, record)?));
            }
            let set = Arc::new(KeySet::new(opened));
            *self.keys.write().unwrap_or_else(PoisonError::into_inner) = set;
        }
        let jtis: HashSet<String> = store.revoked_jtis(now).await?.into_iter().collect();
        *self
            .revoked_jtis
            .write()
            .unwrap_or_else(PoisonError::into_inner) = Arc::new(jtis);
        Ok(())
    }

    /// Adds a new key if `when` holds (checked under the store's rotation lock, so
    /// replicas rotate exactly once), then reloads. Returns whether it rotated.
    pub async fn rotate(
        &self,
        store: &dyn Store,
        when: RotateWhen,
        ctx: &AuditContext,
    ) -> Result<bool> {
        let record = keys::generate(&self.master, self.algorithm, ctx.at)?;
        let rotated = store.rotate_signing_key(&record, when, ctx).await?;
        self.reload(store, ctx.at).await?;
        Ok(rotated)
    }

    /// Makes sure there are a current and a next key (first start).
    pub async fn ensure_keys(&self, store: &dyn Store, now: Timestamp) -> Result<()> {
        for _ in 0..2 {
            self.rotate(store, RotateWhen::FewerThan(2), &AuditContext::system(now))
                .await?;
        }
        if self.keys().current().is_none() {
            return Err(Error::internal("no signing key could be made"));
        }
        Ok(())
    }
}
