//! When each token was last used, batched (docs/API.md, "Tenant policies": "used" means
//! any successful authentication anywhere). Every successful authentication at this
//! server — an exchange, a refresh, an api key or JWT on the management API, an
//! introspection of the token's JWTs — notes the use here, at most once a minute per
//! token (see [`CachedToken::due_for_use_record`]); maintenance writes what gathered in
//! one transaction. Gateways report their uses through usage batches, which move
//! `last_used_at` the same way.

use crate::service::cache::CachedToken;
use latchkey_core::store::{Store, TokenUse};
use latchkey_core::{Timestamp, TokenId};
use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;

/// Uses not yet written.
#[derive(Default)]
pub struct UseLog {
    pending: Mutex<HashMap<TokenId, (Timestamp, Option<IpAddr>)>>,
}

impl UseLog {
    /// Notes that `token` authenticated at `now` from `ip`.
    pub fn used(&self, token: &CachedToken, now: Timestamp, ip: Option<IpAddr>) {
        if !token.due_for_use_record(now) {
            return;
        }
        let mut pending = self.pending.lock().unwrap_or_else(|e| e.into_inner());
        let entry = pending.entry(token.record.token.id).or_insert((now, ip));
        if entry.0 <= now {
            *entry = (now, ip.or(entry.1));
        }
    }

    /// Writes what gathered; on failure keeps it for the next round.
    pub async fn flush(&self, store: &dyn Store) {
        let taken = std::mem::take(&mut *self.pending.lock().unwrap_or_else(|e| e.into_inner()));
        if taken.is_empty() {
            return;
        }
        let mut uses: Vec<TokenUse> = taken
            .iter()
            .map(|(id, (at, ip))| TokenUse {
                token_id: *id,
                at: *at,
                ip: ip.map(|ip| ip.to_string()),
            })
            .collect();
        // One order for every writer, so two replicas' batches cannot deadlock.
        uses.sort_by_key(|used| used.token_id);
        if let Err(error) = store.touch_tokens(&uses).await {
            tracing::warn!(
                ?error,
                tokens = uses.len(),
                "recording token uses failed; retrying"
            );
            let mut pending = self.pending.lock().unwrap_or_else(|e| e.into_inner());
            for (id, use_) in taken {
                pending.entry(id).or_insert(use_);
            }
        }
    }
}
