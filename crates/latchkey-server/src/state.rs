//! The application state shared by every handler: the store, the secret codec, the
//! randomness source and the settings. Handlers receive it through axum's `State`.

use aws_lc_rs::rand::SystemRandom;
use latchkey_core::secret::SecretCodec;
use latchkey_core::store::Store;
use latchkey_core::token::Token;
use latchkey_core::{PermissionSet, Timestamp, permission};
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use crate::problem::ApiResult;

/// Settings the handlers consult.
#[derive(Debug, Clone)]
pub struct Settings {
    /// The public URL (`iss`).
    pub public_url: String,
    /// Default lifetime of access tokens.
    pub default_access_token_ttl_seconds: u32,
    /// The most a token may ask for.
    pub max_access_token_ttl_seconds: u32,
}

/// Shared state, cheap to clone.
#[derive(Clone)]
pub struct AppState {
    inner: Arc<Inner>,
}

struct Inner {
    store: Arc<dyn Store>,
    codec: SecretCodec,
    rng: SystemRandom,
    settings: Settings,
}

impl AppState {
    /// Assembles the state.
    pub fn new(store: Arc<dyn Store>, codec: SecretCodec, settings: Settings) -> Self {
        Self {
            inner: Arc::new(Inner {
                store,
                codec,
                rng: SystemRandom::new(),
                settings,
            }),
        }
    }

    /// The store.
    pub fn store(&self) -> &dyn Store {
        self.inner.store.as_ref()
    }

    /// The secret codec (prefix and pepper).
    pub fn codec(&self) -> &SecretCodec {
        &self.inner.codec
    }

    /// The randomness source.
    pub fn rng(&self) -> &SystemRandom {
        &self.inner.rng
    }

    /// The settings.
    pub fn settings(&self) -> &Settings {
        &self.inner.settings
    }

    /// The current time. The only place the server reads the clock.
    pub fn now(&self) -> Timestamp {
        let millis = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_millis())
            .unwrap_or(0);
        Timestamp::from_millis(i64::try_from(millis).unwrap_or(i64::MAX))
    }

    /// What `token` grants right now (ARCHITECTURE.md §4): a tenant token its permissions
    /// and its roles' current permissions; a personal token its permissions cut down to
    /// what its user holds in the tenant now (nothing once the membership is gone).
    pub async fn effective_permissions(&self, token: &Token) -> ApiResult<PermissionSet> {
        let own: PermissionSet = token.permissions.iter().cloned().collect();
        let tenant = token.owner.tenant_id();
        Ok(match token.owner.user_id() {
            None => {
                let from_roles = self.store().role_permissions(&token.roles).await?;
                permission::effective_for_tenant_token(tenant, &own, &from_roles)
            }
            Some(user) => {
                let holds = self
                    .store()
                    .get_membership(tenant, user)
                    .await?
                    .map(|m| m.permission_set())
                    .unwrap_or_default();
                permission::effective_for_personal_token(tenant, &own, &holds)
            }
        })
    }
}
