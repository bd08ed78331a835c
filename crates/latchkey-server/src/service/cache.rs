//! Hot records in process memory, since a store read costs far more than a map lookup
//! on the hot paths (docs/BENCHMARKS.md, "Where the time goes"). Tokens are cached with their effective permissions for a
//! short time; every local change that can affect authentication (revocation, role and
//! membership changes, deletions) clears the cache at once, and the time limit bounds how
//! long another replica's change can go unseen.

use latchkey_core::network::NetworkRules;
use latchkey_core::token::TokenRecord;
use latchkey_core::usable::{Client, Refusal};
use latchkey_core::{PermissionSet, TokenId};
use latchkey_geoip::ReloadingGeoIp;
use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};

/// How often one cached token passes a use on to `last_used_at`: a minute, so
/// `last_used_at` is exact to a minute (docs/API.md, "Tenant policies").
pub const USE_RECORD_INTERVAL_MS: i64 = 60_000;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// A token as authentication needs it.
#[derive(Debug)]
pub struct CachedToken {
    /// The token and its stored secret.
    pub record: TokenRecord,
    /// What it grants now (docs/API.md, "When a token is usable").
    pub effective: PermissionSet,
    /// False for a personal token whose user has left the tenant.
    pub member: bool,
    /// Its tenant's network rules.
    pub network: Arc<NetworkRules>,
    /// Its tenant's policy (or the floor) requires DPoP: no access token without a
    /// proof (docs/API.md, "DPoP").
    pub require_dpop: bool,
    /// The GeoIP database, when the rules name countries and the server has one.
    geoip: Option<Arc<ReloadingGeoIp>>,
    /// When this copy last passed a use on to the store's `last_used_at` (unix
    /// milliseconds): see [`CachedToken::due_for_use_record`].
    touched: AtomicI64,
}

impl CachedToken {
    /// A token with what it grants now.
    pub fn new(record: TokenRecord, effective: PermissionSet, member: bool) -> Self {
        Self {
            record,
            effective,
            member,
            network: Arc::default(),
            require_dpop: false,
            geoip: None,
            touched: AtomicI64::new(i64::MIN),
        }
    }

    /// The token under its tenant's network rules, judged with `geoip` when they name
    /// countries.
    pub fn with_network(
        mut self,
        network: Arc<NetworkRules>,
        geoip: Option<Arc<ReloadingGeoIp>>,
    ) -> Self {
        self.geoip = geoip.filter(|_| network.has_country_rules());
        self.network = network;
        self
    }

    /// Its tenant's network rules applied to `client` (docs/API.md, "Where tokens may
    /// be used from").
    pub fn admits(&self, client: Client) -> Result<(), Refusal> {
        let lookup = self
            .geoip
            .as_ref()
            .map(|geoip| move |ip: IpAddr| geoip.country(ip));
        let lookup = lookup
            .as_ref()
            .map(|f| f as &dyn Fn(IpAddr) -> Option<latchkey_core::country::CountryCode>);
        latchkey_core::usable::admitted(&self.network, client, lookup)
    }

    /// True at most once per [`USE_RECORD_INTERVAL_MS`] for this copy: whether a use at
    /// `now` should be passed on to the store's `last_used_at`. A token used thousands
    /// of times a second costs the store one update per interval, and the hot path one
    /// atomic load.
    pub fn due_for_use_record(&self, now: latchkey_core::Timestamp) -> bool {
        let now = now.millis();
        let last = self.touched.load(Ordering::Relaxed);
        now.saturating_sub(last) >= USE_RECORD_INTERVAL_MS
            && self
                .touched
                .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
    }

    /// What the token grants now, or `None` when its user has left the tenant: the
    /// `grant` that [`latchkey_core::usable::usable`] takes.
    pub fn grant(&self) -> Option<&PermissionSet> {
        self.member.then_some(&self.effective)
    }

    /// The one usability rule (docs/API.md, "When a token is usable") applied to this
    /// token at `now` for `client`, and its tenant's network rules (docs/API.md, "Where
    /// tokens may be used from").
    pub fn usable(
        &self,
        now: latchkey_core::Timestamp,
        client: latchkey_core::usable::Client,
    ) -> Result<&PermissionSet, latchkey_core::usable::Refusal> {
        let grant = latchkey_core::usable::usable(&self.record.token, now, client, self.grant())?;
        self.admits(client)?;
        Ok(grant)
    }

    /// True when the token grants a permission stronger than `latchkey:manage`
    /// (`latchkey:admin`, `latchkey:introspect`), which only an admin may act on.
    /// Its direct permissions count too: a personal token whose user lost the role
    /// would regain it with the role.
    pub fn holds_system_permission(&self) -> bool {
        self.effective
            .iter()
            .chain(&self.record.token.permissions)
            .any(latchkey_core::Permission::is_system_only)
    }
}

/// The token cache.
pub type TokenCache = Cache<TokenId, Lookup>;

/// A cache of store reads, kept for a short time and cleared at once by a local change
/// (see the module's comment); cheap to share.
pub struct Cache<K, V> {
    entries: Mutex<HashMap<K, Entry<V>>>,
    generation: AtomicU64,
    ttl: Duration,
    capacity: usize,
}

/// A lookup result: the token, or `None` for an id the store does not have (kept too, so
/// an unknown client costs what a known one does).
pub type Lookup = Option<Arc<CachedToken>>;

struct Entry<V> {
    value: V,
    loaded: Instant,
}

/// The cache's generation when a load began; a load that overlaps a clear is not kept.
#[derive(Debug, Clone, Copy)]
pub struct Generation(u64);

impl<K: std::hash::Hash + Eq, V: Clone> Cache<K, V> {
    /// A cache keeping entries for `ttl`, at most `capacity` of them.
    pub fn new(ttl: Duration, capacity: usize) -> Self {
        Self {
            entries: Mutex::new(HashMap::new()),
            generation: AtomicU64::new(0),
            ttl,
            capacity,
        }
    }

    /// An empty cache with the same lifetime and capacity.
    pub fn sibling<K2: std::hash::Hash + Eq, V2: Clone>(&self) -> Cache<K2, V2> {
        Cache::new(self.ttl, self.capacity)
    }

    /// A fresh entry, if any.
    pub fn get<Q>(&self, key: &Q) -> Option<V>
    where
        K: std::borrow::Borrow<Q>,
        Q: std::hash::Hash + Eq + ?Sized,
    {
        let entries = self.entries.lock().ok()?;
        let entry = entries.get(key)?;
        (entry.loaded.elapsed() < self.ttl).then(|| entry.value.clone())
    }

    /// Call before loading from the store.
    pub fn generation(&self) -> Generation {
        Generation(self.generation.load(Ordering::Acquire))
    }

    /// Keeps `value` unless the cache was cleared since `generation`.
    pub fn put(&self, key: K, value: V, generation: Generation) {
        let Ok(mut entries) = self.entries.lock() else {
            return;
        };
        if self.generation.load(Ordering::Acquire) != generation.0 {
            return;
        }
        if entries.len() >= self.capacity {
            let ttl = self.ttl;
            entries.retain(|_, entry| entry.loaded.elapsed() < ttl);
            if entries.len() >= self.capacity {
                entries.clear();
            }
        }
        entries.insert(
            key,
            Entry {
                value,
                loaded: Instant::now(),
            },
        );
    }

    /// Forgets everything, now.
    pub fn clear(&self) {
        self.generation.fetch_add(1, Ordering::AcqRel);
        if let Ok(mut entries) = self.entries.lock() {
            entries.clear();
        }
    }
}
