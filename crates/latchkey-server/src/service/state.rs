//! The application state shared by every handler: the store, the clock, the secret
//! codec, the signing keys, the caches and the settings. Handlers receive it through
//! axum's `State`.
//!
//! Policy: every decision that depends on the time of day (expiry, lifetimes, the key
//! rotation schedule, audit and usage timestamps, retention) takes its `now` from
//! [`AppState::now`], which asks the injected [`Clock`]. Waits and timeouts that are
//! about the machine rather than the domain (the listener's, the caches' freshness, the
//! throttle's windows) keep using `Instant`.

use crate::service::audit::AuditQueue;
use crate::service::cache::{Cache, CachedToken, Lookup, TokenCache};
use crate::service::error::Result;
use crate::service::federation::IssuerKeys;
use crate::service::keyring::KeyRing;
use crate::service::leaks::LeakIntake;
use crate::service::metrics::ServerMetrics;
use crate::service::revocation::RevocationHub;
use crate::service::throttle::Throttle;
use crate::service::used::UseLog;
use aws_lc_rs::rand::SystemRandom;
use latchkey_core::audit::AuditMacKey;
use latchkey_core::cidr::IpNet;
use latchkey_core::clock::Clock;
use latchkey_core::secret::SecretCodec;
use latchkey_core::store::Store;
use latchkey_core::token::{Token, TokenRecord};
use latchkey_core::trust::Trust;
use latchkey_core::usable::{self, Standing};
use latchkey_core::{PermissionSet, Timestamp, TokenId};
use latchkey_geoip::ReloadingGeoIp;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};

/// Settings the handlers consult.
#[derive(Debug, Clone)]
pub struct Settings {
    /// The public URL (`iss`).
    pub public_url: String,
    /// The audiences a `resource` parameter may name.
    pub audiences: Vec<String>,
    /// The `aud` when no `resource` is given.
    pub default_audience: String,
    /// Default lifetime of access tokens.
    pub default_access_token_ttl_seconds: u32,
    /// The most a token may ask for.
    pub max_access_token_ttl_seconds: u32,
    /// Absolute lifetime of a refresh-token family.
    pub refresh_token_lifetime_seconds: i64,
    /// Active refresh families per token; the oldest goes first.
    pub max_refresh_families: u32,
    /// Signing keys rotate this often.
    pub key_rotation_seconds: i64,
    /// Usage aggregates are kept this long.
    pub usage_retention_days: i64,
    /// Peers whose `X-Forwarded-For` names the client (docs/API.md, "Audit (the five Ws)").
    pub trusted_proxies: Vec<IpNet>,
    /// `tls_client_ca_file` is set: the follower endpoints need a client certificate.
    pub mutual_tls: bool,
    /// The operator's `[policy_floor]`, which every tenant's policy tightens.
    pub policy_floor: latchkey_core::policy::TenantPolicy,
    /// Webhooks may target non-public addresses (docs/API.md, "Webhooks").
    pub webhook_allow_private_targets: bool,
    /// How often the webhook sender looks for due deliveries.
    pub webhook_poll_interval: std::time::Duration,
    /// The console's `frame-ancestors` sources (docs/CONSOLE.md, "Embedding").
    pub console_frame_ancestors: String,
    /// Whether `/console/login` takes admin keys.
    pub console_login: bool,
    /// Trusts may name plain-http issuers beyond loopback (docs/API.md, "Trusts").
    pub trust_allow_insecure_issuers: bool,
}

/// Shared state, cheap to clone.
#[derive(Clone)]
pub struct AppState {
    inner: Arc<Inner>,
}

struct Inner {
    store: Arc<dyn Store>,
    clock: Arc<dyn Clock>,
    codec: SecretCodec,
    rng: SystemRandom,
    settings: Settings,
    keyring: KeyRing,
    tokens: TokenCache,
    /// Trusts as the tenant tokens their access tokens are judged by, apart from the
    /// tokens so that a trust's id never authenticates as a client.
    trusts: TokenCache,
    /// The unrevoked trusts naming each issuer, for the JWT-bearer grant.
    issuer_trusts: Cache<String, Arc<[Trust]>>,
    throttle: Throttle,
    revocations: RevocationHub,
    audit: AuditQueue,
    audit_key: AuditMacKey,
    uses: UseLog,
    /// The operator's GeoIP database (`geoip_database_file`), reloaded when it changes.
    geoip: Option<Arc<ReloadingGeoIp>>,
    /// When the next unused-token sweep is due (unix milliseconds of the clock).
    next_unused_sweep: AtomicI64,
    leaks: LeakIntake,
    metrics: Arc<ServerMetrics>,
    issuers: IssuerKeys,
}

/// The parts [`AppState::new`] assembles.
pub struct Parts {
    pub geoip: Option<Arc<ReloadingGeoIp>>,
    pub store: Arc<dyn Store>,
    /// Where [`AppState::now`] reads the time.
    pub clock: Arc<dyn Clock>,
    /// Prefix and pepper.
    pub codec: SecretCodec,
    pub settings: Settings,
    pub keyring: KeyRing,
    pub tokens: TokenCache,
    /// Failed-authentication throttle.
    pub throttle: Throttle,
    /// How often the revocation stream sends a heartbeat.
    pub heartbeat: std::time::Duration,
    /// Group commit of authentication events.
    pub audit: AuditQueue,
    /// The key of the audit events' MACs, derived from the master key.
    pub audit_key: AuditMacKey,
    /// The leak endpoints' limit and partner keys.
    pub leaks: LeakIntake,
    /// What requests count (docs/OPERATIONS.md, "Metrics").
    pub metrics: Arc<ServerMetrics>,
    /// The trust issuers' key sets.
    pub issuers: IssuerKeys,
}

impl AppState {
    pub fn new(parts: Parts) -> Self {
        Self {
            inner: Arc::new(Inner {
                store: parts.store,
                clock: parts.clock,
                codec: parts.codec,
                rng: SystemRandom::new(),
                settings: parts.settings,
                keyring: parts.keyring,
                trusts: parts.tokens.sibling(),
                issuer_trusts: parts.tokens.sibling(),
                tokens: parts.tokens,
                throttle: parts.throttle,
                revocations: RevocationHub::new(parts.heartbeat),
                audit: parts.audit,
                audit_key: parts.audit_key,
                uses: UseLog::default(),
                geoip: parts.geoip,
                next_unused_sweep: AtomicI64::new(i64::MIN),
                leaks: parts.leaks,
                metrics: parts.metrics,
                issuers: parts.issuers,
            }),
        }
    }

    /// The server's metrics.
    pub fn metrics(&self) -> &Arc<ServerMetrics> {
        &self.inner.metrics
    }

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

    pub fn settings(&self) -> &Settings {
        &self.inner.settings
    }

    /// Signing keys and the jti deny list.
    pub fn keyring(&self) -> &KeyRing {
        &self.inner.keyring
    }

    /// The failed-authentication throttle.
    pub fn throttle(&self) -> &Throttle {
        &self.inner.throttle
    }

    /// Call after any change that can affect authentication: forgets cached tokens and
    /// wakes the revocation feed's followers.
    pub fn auth_changed(&self) {
        self.inner.tokens.clear();
        self.inner.trusts.clear();
        self.inner.issuer_trusts.clear();
        self.inner.revocations.wake();
    }

    /// Group commit of authentication events.
    pub fn audit(&self) -> &AuditQueue {
        &self.inner.audit
    }

    /// The key of the audit events' MACs; it never leaves the server.
    pub fn audit_key(&self) -> &AuditMacKey {
        &self.inner.audit_key
    }

    /// The leak endpoints' limit and the scanning partner's keys.
    pub fn leaks(&self) -> &LeakIntake {
        &self.inner.leaks
    }

    /// The trust issuers' key sets (docs/API.md, "The JWT-bearer grant").
    pub fn issuers(&self) -> &IssuerKeys {
        &self.inner.issuers
    }

    /// The revocation feed's wake-up signal.
    pub fn revocations(&self) -> &RevocationHub {
        &self.inner.revocations
    }

    /// The GeoIP database, when the server has one.
    pub fn geoip(&self) -> Option<&ReloadingGeoIp> {
        self.inner.geoip.as_deref()
    }

    /// The uses of tokens not yet written to `last_used_at`.
    pub fn uses(&self) -> &UseLog {
        &self.inner.uses
    }

    /// Notes a successful authentication of `token` from `ip` (docs/API.md, "Tenant
    /// policies": what "used" means).
    pub fn used(&self, token: &CachedToken, ip: Option<std::net::IpAddr>) {
        self.inner.uses.used(token, self.now(), ip);
    }

    /// True when the unused-token sweep is due at `now`; then the next is due
    /// `interval_ms` later.
    pub fn unused_sweep_due(&self, now: Timestamp, interval_ms: i64) -> bool {
        let due = self.inner.next_unused_sweep.load(Ordering::Relaxed);
        now.millis() >= due
            && self
                .inner
                .next_unused_sweep
                .compare_exchange(
                    due,
                    now.millis().saturating_add(interval_ms),
                    Ordering::Relaxed,
                    Ordering::Relaxed,
                )
                .is_ok()
    }

    /// The current time, from the injected clock. The only place the server asks it.
    pub fn now(&self) -> Timestamp {
        self.inner.clock.now()
    }

    /// A token with its effective permissions, from the cache or the store.
    pub async fn token(&self, id: TokenId) -> Result<Lookup> {
        self.looked_up(&self.inner.tokens, id, async {
            Ok(self.store().get_token(id).await?)
        })
        .await
    }

    /// The unrevoked trusts that name `issuer`, oldest first, and whether they came
    /// from the cache; `fresh` reads the store. A trust made on another replica is
    /// unseen by this one's cache for up to the cache's lifetime, so a caller that
    /// finds no fitting trust among cached ones asks again with `fresh`.
    pub async fn trusts_for_issuer(
        &self,
        issuer: &str,
        fresh: bool,
    ) -> Result<(Arc<[Trust]>, bool)> {
        if !fresh && let Some(hit) = self.inner.issuer_trusts.get(issuer) {
            return Ok((hit, true));
        }
        let generation = self.inner.issuer_trusts.generation();
        let loaded: Arc<[Trust]> = self.store().trusts_for_issuer(issuer).await?.into();
        self.inner
            .issuer_trusts
            .put(issuer.to_owned(), loaded.clone(), generation);
        Ok((loaded, false))
    }

    /// The trust `id` as the tenant token its access tokens are judged by
    /// ([`Trust::as_token`](latchkey_core::trust::Trust::as_token): its grant, its
    /// revocation, its tenant's network rules), with what it grants now; from the
    /// cache or the store. Never a client: it has no secret.
    pub async fn trust_token(&self, id: TokenId) -> Result<Lookup> {
        self.looked_up(&self.inner.trusts, id, async {
            let trust = self.store().get_trust(id).await?;
            Ok(trust.map(|trust| TokenRecord {
                token: trust.as_token(),
                secret: None,
                signing_kid: None,
                secret_lookup: None,
            }))
        })
        .await
    }

    /// `id` from `cache`, or else the record `load` reads, with what it grants now and
    /// its tenant's policy, kept in `cache` unless a change cleared it meanwhile.
    async fn looked_up(
        &self,
        cache: &TokenCache,
        id: TokenId,
        load: impl Future<Output = Result<Option<TokenRecord>>>,
    ) -> Result<Lookup> {
        if let Some(hit) = cache.get(&id) {
            return Ok(hit);
        }
        let generation = cache.generation();
        let loaded = match load.await? {
            None => None,
            Some(record) => Some(self.cached(record).await?),
        };
        cache.put(id, loaded.clone(), generation);
        Ok(loaded)
    }

    /// `record` with what it grants now and its tenant's policy.
    async fn cached(&self, record: TokenRecord) -> Result<Arc<CachedToken>> {
        let (effective, member) = self.effective_permissions(&record.token).await?;
        let stored = self
            .store()
            .get_policy(record.token.owner.tenant_id())
            .await?;
        let require_dpop = self.settings().policy_floor.require_dpop
            || stored.as_ref().is_some_and(|s| s.policy.require_dpop);
        let network = match stored {
            Some(stored) if !stored.policy.network.is_empty() => Arc::new(stored.policy.network),
            _ => Arc::default(),
        };
        let mut cached = CachedToken::new(record, effective, member)
            .with_network(network, self.inner.geoip.clone());
        cached.require_dpop = require_dpop;
        Ok(Arc::new(cached))
    }

    /// What `token` grants right now (docs/API.md, "When a token is usable"), through
    /// [`usable::grant_now`] with what the store says of its roles and user now. The
    /// flag is false for a personal token whose user is no longer a member.
    async fn effective_permissions(&self, token: &Token) -> Result<(PermissionSet, bool)> {
        let tenant = token.owner.tenant_id();
        let standing = match token.owner.user_id() {
            None => Standing::Tenant {
                role_permissions: self.store().role_permissions(&token.roles).await?,
            },
            Some(user) => match self.store().get_membership(tenant, user).await? {
                Some(membership) => Standing::Member {
                    holds: membership.permission_set(),
                },
                None => Standing::Departed,
            },
        };
        Ok(match usable::grant_now(token, &standing) {
            Some(grant) => (grant, true),
            None => (PermissionSet::new(), false),
        })
    }
}
