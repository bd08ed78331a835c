//! [`RevocationReplica`]: a local copy of the issuer's revocation feed (docs/API.md,
//! "The revocation feed"), the deny list a [`Verifier`](crate::Verifier) consults on
//! every request.
//!
//! Policy:
//! - **Complete and in order.** The replica pages `GET /v1/revocations` from seq 0 to the
//!   head, then follows `GET /v1/revocations/stream` from its last seq. It applies entries
//!   strictly in seq order and ignores any at or below the last one applied. A gap (an
//!   entry beyond the next seq, or a heartbeat whose head is beyond the last entry) makes
//!   it page the missing range before going on; seqs are gap-free on the server except
//!   where compaction removed entries that match nothing, so after a gap the page decides.
//!   On an error, an end of stream or a silent connection it reconnects with capped,
//!   jittered exponential backoff and resumes after its last seq, so it never misses an
//!   entry.
//! - **Fail closed when stale.** The replica is stale until its first snapshot has loaded,
//!   and afterwards whenever it has heard nothing from the feed — no entry, no heartbeat,
//!   no page — for longer than [`ReplicaOptions::max_staleness`]. A stale replica answers
//!   [`Revocation::Stale`], which the verifier turns into a 503. With
//!   [`ReplicaOptions::fail_open`] it answers from what it has instead and logs a warning
//!   (at most every ten seconds); never before its first snapshot, when it has nothing.
//!   Each change of state is logged once and counted in [`ReplicaMetrics`].
//! - **Evict at once.** Each applied entry is reported to the attached verifiers'
//!   [`Evictor`]s, so cached results for it are dropped before [`RevocationReplica::applied`]
//!   announces its seq. Correctness does not depend on it: the check runs on every hit.
//! - **Grants as they stand now.** `role` entries (a role's permissions now) and
//!   `member` entries (a member's roles now; none once the membership ended) are kept as
//!   two maps, latest entry wins, and answer [`RevocationCheck::standing`]; each applied
//!   batch that holds one moves the state epoch and drops the verifiers' cached
//!   introspection answers (README.md, "Narrowing and IP allowlists").
//! - **Never skip what it does not understand.** An entry of a kind this version does
//!   not know may carry state that narrows grants, and ignoring it could leave a token
//!   more than it holds. The replica stops at it and stays stale — failing closed even
//!   with `fail_open` — until it is restarted with a version that knows the kind; the
//!   reason is logged and shown by [`ReplicaMetrics::stale_reason`].
//! - **Small and O(1).** Only what a verifier can meet is kept: token ids (`token`
//!   entries), `jti`s, roles and members. `family` entries name refresh-token families,
//!   which a resource server never sees (the server also appends a `jti` entry for each
//!   live access token of a revoked family), so they only advance the seq. Entries are
//!   dropped once [`ReplicaOptions::expiry_grace`] has passed after
//!   their `expires_at`; the grace must cover the verifier's leeway on `exp`, or a revoked
//!   JWT that has just expired would be accepted again within the leeway. See
//!   `replica/table.rs` for the layout: about 50 MiB for a million entries.

mod follow;
mod sse;
mod table;

use crate::error::DiscoveryError;
use crate::http::Http;
use crate::options::{Credential, millis};
use crate::revocation::{Revocation, RevocationCheck};
use crate::transport::{self, ClientIdentity, TransportPolicy};
use crate::verifier::Evictor;
use follow::{Entry, Follower, Kind};
use latchkey_core::clock::{Clock, SystemClock};
use latchkey_core::network::NetworkRules;
use latchkey_core::store::FeedKind;
use latchkey_core::usable::Standing;
use latchkey_core::{Permission, PermissionSet, RoleName, TenantId, Timestamp, TokenId, UserId};
use std::collections::HashMap;
use std::fmt;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::time::{Duration, Instant};
use table::{JTI, NEVER, TOKEN, Table};
use tokio::sync::watch;

/// The largest page the server serves.
const MAX_PAGE_SIZE: u32 = 10_000;

/// How often expired entries are dropped.
const PRUNE_INTERVAL: Duration = Duration::from_secs(60);

/// The least time between two "answering while stale" warnings.
const FAIL_OPEN_WARNING_INTERVAL_MS: u64 = 10_000;

/// How a [`RevocationReplica`] follows the feed. Start from `Default`:
///
/// ```
/// use latchkey_verify::ReplicaOptions;
/// use std::time::Duration;
/// let options = ReplicaOptions {
///     max_staleness: Duration::from_secs(10),
///     ..ReplicaOptions::default()
/// };
/// assert!(!options.fail_open);
/// ```
#[derive(Clone)]
pub struct ReplicaOptions {
    /// How long the feed may be silent (no entry, no heartbeat) before the replica is
    /// stale. The server sends a heartbeat every 5 s by default.
    pub max_staleness: Duration,
    /// When stale, answer from the entries already held instead of failing closed.
    /// Never applies before the first snapshot has loaded.
    pub fail_open: bool,
    /// Entries asked for per page, from 1 to 10 000.
    pub page_size: u32,
    /// The first delay before reconnecting; it doubles on each failure in a row.
    pub backoff_initial: Duration,
    /// The longest delay before reconnecting. Keep it well under `max_staleness`, so a
    /// server that comes back is noticed before the replica goes stale.
    pub backoff_max: Duration,
    /// A stream that delivers nothing, not even a heartbeat, for this long is taken for
    /// dead and reopened.
    pub idle_timeout: Duration,
    /// Deadline of each page request, and of opening the stream.
    pub http_timeout: Duration,
    /// How long after its `expires_at` an entry is kept. At least the verifier's leeway.
    pub expiry_grace: Duration,
    /// The clock that decides when entries expire; [`SystemClock`] by default.
    pub clock: Arc<dyn Clock>,
    /// A PEM file of CA certificates trusted for an `https://` feed beside the system's
    /// roots (a private CA).
    pub tls_ca_file: Option<PathBuf>,
    /// The certificate and key to present to an `https://` server that asks for mutual
    /// TLS.
    pub tls_client_identity: Option<ClientIdentity>,
    /// Accept a plain `http://` feed beyond loopback; a warning is logged at start.
    pub allow_insecure_issuer: bool,
}

impl Default for ReplicaOptions {
    fn default() -> Self {
        Self {
            max_staleness: Duration::from_secs(30),
            fail_open: false,
            page_size: MAX_PAGE_SIZE,
            backoff_initial: Duration::from_millis(250),
            backoff_max: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(15),
            http_timeout: Duration::from_secs(10),
            expiry_grace: Duration::from_secs(300),
            clock: Arc::new(SystemClock),
            tls_ca_file: None,
            tls_client_identity: None,
            allow_insecure_issuer: false,
        }
    }
}

impl fmt::Debug for ReplicaOptions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ReplicaOptions")
            .field("max_staleness", &self.max_staleness)
            .field("fail_open", &self.fail_open)
            .field("page_size", &self.page_size)
            .field("backoff_initial", &self.backoff_initial)
            .field("backoff_max", &self.backoff_max)
            .field("idle_timeout", &self.idle_timeout)
            .field("http_timeout", &self.http_timeout)
            .field("expiry_grace", &self.expiry_grace)
            .field("tls_ca_file", &self.tls_ca_file)
            .field("tls_client_identity", &self.tls_client_identity)
            .field("allow_insecure_issuer", &self.allow_insecure_issuer)
            .finish_non_exhaustive()
    }
}

impl ReplicaOptions {
    fn check(&self) -> Result<(), DiscoveryError> {
        let bad = |what: &str| Err(DiscoveryError::BadOption(what.to_owned()));
        if !(1..=MAX_PAGE_SIZE).contains(&self.page_size) {
            return bad("page_size must be from 1 to 10000");
        }
        if self.max_staleness.is_zero()
            || self.backoff_initial.is_zero()
            || self.idle_timeout.is_zero()
            || self.http_timeout.is_zero()
        {
            return bad(
                "max_staleness, backoff_initial, idle_timeout and http_timeout must not be zero",
            );
        }
        if self.backoff_max < self.backoff_initial {
            return bad("backoff_max must not be less than backoff_initial");
        }
        Ok(())
    }
}

/// Why a replica answers [`Revocation::Stale`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum StaleReason {
    /// Its first snapshot has not loaded yet.
    NotLoaded,
    /// It has heard nothing from the feed for longer than `max_staleness`.
    Silent,
    /// The feed sent an entry of a kind this version does not know; only a restart with
    /// a version that knows it ends this.
    UnknownEntryKind,
}

impl StaleReason {
    /// A stable name, for metrics labels and logs.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::NotLoaded => "not_loaded",
            Self::Silent => "silent",
            Self::UnknownEntryKind => "unknown_entry_kind",
        }
    }
}

/// A snapshot of a replica's state and counters, for `/metrics`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct ReplicaMetrics {
    /// Entries held.
    pub entries: usize,
    /// Memory of the lookup tables, in bytes.
    pub memory_bytes: usize,
    /// The seq of the last entry applied.
    pub last_seq: i64,
    /// The highest seq the server has announced.
    pub head_seq: i64,
    /// Whether lookups currently answer [`Revocation::Stale`] (or would, but for
    /// `fail_open`).
    pub stale: bool,
    /// Why it is stale, when it is.
    pub stale_reason: Option<StaleReason>,
    /// Roles and memberships held, from `role` and `member` entries.
    pub state_entries: usize,
    /// Moves each time a role or membership changes.
    pub state_epoch: u64,
    /// Since the feed was last heard from; `None` before the first snapshot.
    pub since_heard: Option<Duration>,
    /// Entries applied since start.
    pub entries_applied: u64,
    /// Entries ignored because their seq was not beyond the last one applied.
    pub entries_ignored: u64,
    /// Times a gap made the replica page the missing range.
    pub resyncs: u64,
    /// Times the connection to the feed ended or failed and was retried.
    pub reconnects: u64,
    /// Times the replica went from current to stale.
    pub stale_transitions: u64,
}

/// A local, continuously updated copy of the issuer's deny list, answering
/// [`RevocationCheck`] in well under a microsecond. Cheap to clone: clones share the
/// table and the background task, which stops when the last clone is dropped.
///
/// ```no_run
/// use latchkey_verify::{Credential, ReplicaOptions, RevocationReplica, Verifier, VerifierOptions};
/// use std::sync::Arc;
///
/// # async fn run() -> Result<(), Box<dyn std::error::Error>> {
/// let issuer = "http://127.0.0.1:7700";
/// let credential = Credential::new("lk_ak_…"); // a system-tenant key with latchkey:introspect
/// let replica = RevocationReplica::start(issuer, credential.clone(), ReplicaOptions::default())?;
/// let verifier = Verifier::discover(issuer, VerifierOptions {
///     credential: Some(credential),
///     revocation: Arc::new(replica.clone()),
///     ..VerifierOptions::default()
/// }).await?;
/// replica.attach(verifier.evictor());
/// replica.ready().await; // until then, tokens are refused with 503
/// # Ok(())
/// # }
/// ```
#[derive(Clone)]
pub struct RevocationReplica {
    shared: Arc<Shared>,
    _task: Arc<Task>,
}

impl fmt::Debug for RevocationReplica {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RevocationReplica")
            .field("entries", &self.len())
            .field("last_seq", &self.last_seq())
            .field("head_seq", &self.head_seq())
            .finish_non_exhaustive()
    }
}

/// Aborts the background task when the last handle goes.
struct Task(tokio::task::AbortHandle);

impl Drop for Task {
    fn drop(&mut self) {
        self.0.abort();
    }
}

impl RevocationReplica {
    /// Starts following the feed of the server at `server` — the base URL the server
    /// is reached at: its issuer URL, or the verifier's
    /// [`connect`](crate::VerifierOptions::connect) address when that differs — with
    /// `credential`, a system-tenant key holding `latchkey:introspect`. `https://` is
    /// checked against the system's roots and [`ReplicaOptions::tls_ca_file`]; plain
    /// `http://` is accepted only on loopback unless
    /// [`ReplicaOptions::allow_insecure_issuer`]. Returns at once; the snapshot loads in
    /// the background (see [`ready`](Self::ready)). Must be called within a tokio
    /// runtime.
    pub fn start(
        server: &str,
        credential: Credential,
        options: ReplicaOptions,
    ) -> Result<Self, DiscoveryError> {
        options.check()?;
        let base = transport::checked_base(server, "server", options.allow_insecure_issuer)?;
        let runtime = tokio::runtime::Handle::try_current().map_err(|_| {
            DiscoveryError::BadOption("RevocationReplica::start needs a tokio runtime".to_owned())
        })?;
        let policy = TransportPolicy {
            tls_ca_file: options.tls_ca_file.clone(),
            identity: options.tls_client_identity.clone(),
            allow_insecure: options.allow_insecure_issuer,
        };
        let http =
            Http::for_feed(options.http_timeout, &policy).map_err(DiscoveryError::BadOption)?;
        let shared = Arc::new(Shared::new(&options));
        let follower = Follower::new(shared.clone(), http, &base, credential, &options);
        let housekeeping = housekeeping(shared.clone(), options.clock.clone());
        let task = runtime.spawn(async move {
            tokio::join!(follower.run(), housekeeping);
        });
        Ok(Self {
            shared,
            _task: Arc::new(Task(task.abort_handle())),
        })
    }

    /// Reports every applied entry to `evictor`, so its verifier drops cached results
    /// for revoked tokens at once.
    pub fn attach(&self, evictor: Evictor) {
        lock(&self.shared.evictors).push(evictor);
    }

    /// Waits until the first snapshot has loaded. It waits for as long as that takes:
    /// wrap it in a timeout to bound startup.
    pub async fn ready(&self) {
        let mut applied = self.shared.applied.subscribe();
        // The sender lives as long as `shared`, which `self` holds.
        let _ = applied.wait_for(|_| self.shared.synced()).await;
    }

    /// The seq of the last applied entry, as it changes. When it reads N, every entry up
    /// to N is on the list and the attached verifiers have dropped what it revoked: what
    /// a gateway acknowledges for synchronous revocation.
    pub fn applied(&self) -> watch::Receiver<i64> {
        self.shared.applied.subscribe()
    }

    /// Whether lookups answer [`Revocation::Stale`] (or would, but for `fail_open`).
    pub fn is_stale(&self) -> bool {
        self.shared.is_stale()
    }

    /// The seq of the last entry applied; 0 before any.
    pub fn last_seq(&self) -> i64 {
        self.shared.last_seq()
    }

    /// The highest seq the server has announced.
    pub fn head_seq(&self) -> i64 {
        self.shared.head_seq.load(Ordering::Relaxed)
    }

    /// How many entries are held.
    pub fn len(&self) -> usize {
        self.shared.table.len()
    }

    /// Whether no entry is held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// A snapshot of the state and counters.
    pub fn metrics(&self) -> ReplicaMetrics {
        let shared = &self.shared;
        let counters = &shared.counters;
        let stale = shared.is_stale();
        ReplicaMetrics {
            entries: shared.table.len(),
            memory_bytes: shared.table.memory_bytes(),
            last_seq: shared.last_seq(),
            head_seq: self.head_seq(),
            stale,
            stale_reason: shared.stale_reason(),
            state_entries: shared.state_len(),
            state_epoch: shared.state_epoch.load(Ordering::Acquire),
            since_heard: shared
                .synced()
                .then(|| Duration::from_millis(shared.silent_ms())),
            entries_applied: counters.applied.load(Ordering::Relaxed),
            entries_ignored: counters.ignored.load(Ordering::Relaxed),
            resyncs: counters.resyncs.load(Ordering::Relaxed),
            reconnects: counters.reconnects.load(Ordering::Relaxed),
            stale_transitions: counters.stale_transitions.load(Ordering::Relaxed),
        }
    }
}

impl RevocationCheck for RevocationReplica {
    fn check(&self, token_id: &TokenId, jti: Option<&str>) -> Revocation {
        let shared = &self.shared;
        if shared.is_stale() {
            // An entry not understood is not an old list but a wrong one: no fail_open.
            if !shared.fail_open || !shared.synced() || shared.incompatible() {
                return Revocation::Stale;
            }
            shared.warn_failing_open();
        }
        let table = &shared.table;
        if table.contains(token_id.as_u128(), TOKEN) || jti.is_some_and(|j| table.contains_jti(j)) {
            Revocation::Revoked
        } else {
            Revocation::NotRevoked
        }
    }

    fn standing(
        &self,
        tenant: &TenantId,
        user: Option<&UserId>,
        roles: &[RoleName],
    ) -> Option<Standing> {
        let state = self
            .shared
            .state
            .read()
            .unwrap_or_else(PoisonError::into_inner);
        Some(state.standing(tenant, user, roles))
    }

    fn state_epoch(&self) -> u64 {
        self.shared.state_epoch.load(Ordering::Acquire)
    }

    fn network(&self, tenant: &TenantId) -> Option<Arc<NetworkRules>> {
        self.shared
            .state
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .networks
            .get(tenant)
            .cloned()
    }
}

/// What every grant is computed from, as the feed last said.
#[derive(Default)]
struct GrantState {
    /// A role's permissions now, by role name.
    roles: HashMap<RoleName, PermissionSet>,
    /// A member's roles now, by tenant and user; absent once the membership ended.
    members: HashMap<(TenantId, UserId), Vec<RoleName>>,
    /// A tenant's network rules now; absent when it has none.
    networks: HashMap<TenantId, Arc<NetworkRules>>,
}

impl GrantState {
    fn permissions_of<'a>(&self, roles: impl IntoIterator<Item = &'a RoleName>) -> PermissionSet {
        roles
            .into_iter()
            .filter_map(|role| self.roles.get(role))
            .flatten()
            .cloned()
            .collect()
    }

    fn standing(&self, tenant: &TenantId, user: Option<&UserId>, roles: &[RoleName]) -> Standing {
        match user {
            None => Standing::Tenant {
                role_permissions: self.permissions_of(roles),
            },
            // The key is cloned only on a miss of the memo in the verifier, once per
            // state change per credential.
            Some(user) => match self.members.get(&(tenant.clone(), user.clone())) {
                Some(held) => Standing::Member {
                    holds: self.permissions_of(held),
                },
                None => Standing::Departed,
            },
        }
    }

    /// Applies a `role` or `member` entry. Names that do not parse are dropped: that
    /// can only take away from a grant, never add to it.
    fn apply(&mut self, entry: &Entry) {
        match entry.kind {
            Kind::Known(FeedKind::Role) => {
                let Ok(role) = RoleName::parse(&entry.subject) else {
                    return;
                };
                let permissions = entry
                    .permissions
                    .iter()
                    .flatten()
                    .filter_map(|p| Permission::parse(p).ok())
                    .collect();
                self.roles.insert(role, permissions);
            }
            Kind::Known(FeedKind::Member) => {
                let (Some(Ok(tenant)), Ok(user)) = (
                    entry.tenant_id.as_deref().map(TenantId::parse),
                    UserId::parse(&entry.subject),
                ) else {
                    return;
                };
                let roles: Vec<RoleName> = entry
                    .roles
                    .iter()
                    .flatten()
                    .filter_map(|r| RoleName::parse(r).ok())
                    .collect();
                if roles.is_empty() {
                    self.members.remove(&(tenant, user));
                } else {
                    self.members.insert((tenant, user), roles);
                }
            }
            Kind::Known(FeedKind::TenantPolicy) => {
                let Ok(tenant) = TenantId::parse(&entry.subject) else {
                    return;
                };
                // Rules that do not read refuse every client of the tenant (fail closed)
                // rather than letting all in.
                let rules = entry
                    .network
                    .clone()
                    .and_then(|value| serde_json::from_value::<NetworkRules>(value).ok())
                    .unwrap_or_else(NetworkRules::refusing_everyone);
                if rules.is_empty() {
                    self.networks.remove(&tenant);
                } else {
                    self.networks.insert(tenant, Arc::new(rules));
                }
            }
            _ => {}
        }
    }
}

#[derive(Default)]
struct Counters {
    applied: AtomicU64,
    ignored: AtomicU64,
    resyncs: AtomicU64,
    reconnects: AtomicU64,
    stale_transitions: AtomicU64,
}

/// What the handles, the follower and the housekeeping share.
struct Shared {
    table: Table,
    state: RwLock<GrantState>,
    /// Moves whenever `state` changes.
    state_epoch: AtomicU64,
    /// The name of the first entry kind met that this version does not know.
    unknown_kind: Mutex<Option<String>>,
    /// Set together with `unknown_kind`, read on every lookup.
    incompatible_flag: AtomicBool,
    /// The origin of the millisecond counts below: a monotonic clock, so staleness is
    /// immune to wall-clock steps.
    started: Instant,
    /// When the feed was last heard from, in ms since `started`.
    heard_ms: AtomicU64,
    /// The first snapshot has loaded.
    synced: AtomicBool,
    /// The staleness last reported, to log and count each change once.
    stale: AtomicBool,
    /// When the last fail-open warning went out, in ms since `started`.
    warned_ms: AtomicU64,
    last_seq: AtomicI64,
    head_seq: AtomicI64,
    counters: Counters,
    evictors: Mutex<Vec<Evictor>>,
    applied: watch::Sender<i64>,
    max_staleness_ms: u64,
    fail_open: bool,
    grace_ms: i64,
}

impl Shared {
    fn new(options: &ReplicaOptions) -> Self {
        Self {
            table: Table::new(),
            state: RwLock::new(GrantState::default()),
            state_epoch: AtomicU64::new(0),
            unknown_kind: Mutex::new(None),
            incompatible_flag: AtomicBool::new(false),
            started: Instant::now(),
            heard_ms: AtomicU64::new(0),
            synced: AtomicBool::new(false),
            stale: AtomicBool::new(true),
            warned_ms: AtomicU64::new(u64::MAX),
            last_seq: AtomicI64::new(0),
            head_seq: AtomicI64::new(0),
            counters: Counters::default(),
            evictors: Mutex::new(Vec::new()),
            applied: watch::Sender::new(0),
            max_staleness_ms: millis(options.max_staleness).unsigned_abs(),
            fail_open: options.fail_open,
            grace_ms: millis(options.expiry_grace),
        }
    }

    fn elapsed_ms(&self) -> u64 {
        u64::try_from(self.started.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    fn silent_ms(&self) -> u64 {
        self.elapsed_ms()
            .saturating_sub(self.heard_ms.load(Ordering::Acquire))
    }

    fn synced(&self) -> bool {
        self.synced.load(Ordering::Acquire)
    }

    fn last_seq(&self) -> i64 {
        self.last_seq.load(Ordering::Acquire)
    }

    /// The feed answered: an entry, a heartbeat or a page.
    fn heard(&self) {
        self.heard_ms.store(self.elapsed_ms(), Ordering::Release);
    }

    fn note_head(&self, head: i64) {
        self.head_seq.fetch_max(head, Ordering::Relaxed);
    }

    /// The first snapshot has loaded.
    fn mark_synced(&self) {
        self.heard();
        self.synced.store(true, Ordering::Release);
        tracing::info!(
            entries = self.table.len(),
            last_seq = self.last_seq(),
            "revocation replica loaded its snapshot"
        );
        self.applied.send_replace(self.last_seq());
        self.is_stale();
    }

    fn incompatible(&self) -> bool {
        self.incompatible_flag.load(Ordering::Acquire)
    }

    fn stale_reason(&self) -> Option<StaleReason> {
        if self.incompatible() {
            Some(StaleReason::UnknownEntryKind)
        } else if !self.synced() {
            Some(StaleReason::NotLoaded)
        } else if self.silent_ms() > self.max_staleness_ms {
            Some(StaleReason::Silent)
        } else {
            None
        }
    }

    fn state_len(&self) -> usize {
        let state = self.state.read().unwrap_or_else(PoisonError::into_inner);
        state.roles.len() + state.members.len()
    }

    /// The feed sent an entry of a kind this version does not know: stale for good.
    fn met_unknown_kind(&self, kind: &str, seq: i64) {
        let mut unknown = lock(&self.unknown_kind);
        if unknown.is_some() {
            return;
        }
        *unknown = Some(kind.to_owned());
        self.incompatible_flag.store(true, Ordering::Release);
        tracing::error!(
            kind,
            seq,
            "the revocation feed sent an entry of a kind this version does not know; \
             refusing tokens until restarted with a version that knows it"
        );
        self.is_stale();
    }

    fn is_stale(&self) -> bool {
        let stale =
            self.incompatible() || !self.synced() || self.silent_ms() > self.max_staleness_ms;
        if stale != self.stale.load(Ordering::Relaxed) {
            self.changed(stale);
        }
        stale
    }

    fn changed(&self, stale: bool) {
        if self
            .stale
            .compare_exchange(!stale, stale, Ordering::AcqRel, Ordering::Relaxed)
            .is_err()
        {
            return; // another thread reported it
        }
        let silent_ms = self.silent_ms();
        if stale && self.incompatible() {
            self.counters
                .stale_transitions
                .fetch_add(1, Ordering::Relaxed);
            // met_unknown_kind logged the reason.
            return;
        }
        if !stale {
            tracing::info!(last_seq = self.last_seq(), "revocation replica is current");
        } else {
            self.counters
                .stale_transitions
                .fetch_add(1, Ordering::Relaxed);
            if self.fail_open {
                tracing::warn!(
                    silent_ms,
                    "revocation feed silent for longer than max_staleness; \
                     answering from the deny list held (fail_open)"
                );
            } else {
                tracing::error!(
                    silent_ms,
                    "revocation feed silent for longer than max_staleness; \
                     refusing tokens until it is heard from again"
                );
            }
        }
    }

    fn warn_failing_open(&self) {
        let now = self.elapsed_ms();
        let last = self.warned_ms.load(Ordering::Relaxed);
        let due = last == u64::MAX || now.saturating_sub(last) >= FAIL_OPEN_WARNING_INTERVAL_MS;
        if due
            && self
                .warned_ms
                .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
        {
            tracing::warn!(
                silent_ms = self.silent_ms(),
                "answering from a stale deny list (fail_open)"
            );
        }
    }

    /// Applies `entries`, sorted by seq, skipping those at or below the last seq; then
    /// tells the evictors and announces the new last seq.
    fn apply(&self, entries: &[Entry], now: Timestamp) {
        let now_seconds = unix_seconds(now.millis());
        let mut last = self.last_seq();
        let mut token_ids = Vec::new();
        let mut jtis = Vec::new();
        let mut applied = 0;
        let mut state_changed = false;
        for entry in entries {
            if self.incompatible() {
                break;
            }
            if entry.seq <= last {
                self.counters.ignored.fetch_add(1, Ordering::Relaxed);
                continue;
            }
            let kind = match &entry.kind {
                Kind::Known(FeedKind::Token) => TOKEN,
                Kind::Known(FeedKind::Jti) => JTI,
                Kind::Known(FeedKind::Family) => {
                    (last, applied) = (entry.seq, applied + 1);
                    continue;
                }
                Kind::Known(FeedKind::Role | FeedKind::Member | FeedKind::TenantPolicy) => {
                    (last, applied) = (entry.seq, applied + 1);
                    self.state
                        .write()
                        .unwrap_or_else(PoisonError::into_inner)
                        .apply(entry);
                    state_changed = true;
                    continue;
                }
                Kind::Other(name) => {
                    self.met_unknown_kind(name, entry.seq);
                    break;
                }
            };
            (last, applied) = (entry.seq, applied + 1);
            let expires = entry.expires_at.map_or(NEVER, |at| {
                unix_seconds(at.millis().saturating_add(self.grace_ms)).min(NEVER - 1)
            });
            if expires < now_seconds {
                continue; // no credential it matches is still valid
            }
            self.table.insert(&entry.subject, kind, expires);
            if kind == JTI {
                jtis.push(entry.subject.as_str());
            } else if let Ok(id) = uuid::Uuid::try_parse(&entry.subject) {
                token_ids.push(TokenId::from_u128(id.as_u128()));
            }
        }
        if applied == 0 {
            return;
        }
        if state_changed {
            self.state_epoch.fetch_add(1, Ordering::AcqRel);
        }
        self.last_seq.store(last, Ordering::Release);
        self.counters.applied.fetch_add(applied, Ordering::Relaxed);
        {
            let mut evictors = lock(&self.evictors);
            evictors.retain(Evictor::is_alive);
            for evictor in evictors.iter() {
                evictor.revoked(&token_ids, &jtis);
                if state_changed {
                    evictor.state_changed();
                }
            }
        }
        self.applied.send_replace(last);
    }
}

/// Reports staleness changes even when no request asks, and drops expired entries.
async fn housekeeping(shared: Arc<Shared>, clock: Arc<dyn Clock>) {
    let period = Duration::from_millis(shared.max_staleness_ms / 4)
        .clamp(Duration::from_millis(10), Duration::from_secs(1));
    let mut ticker = tokio::time::interval(period);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut pruned = Instant::now();
    loop {
        ticker.tick().await;
        shared.is_stale();
        if pruned.elapsed() >= PRUNE_INTERVAL {
            pruned = Instant::now();
            let removed = shared.table.prune(unix_seconds(clock.now().millis()));
            if removed > 0 {
                tracing::debug!(removed, "dropped expired revocation entries");
            }
        }
    }
}

/// Unix seconds from milliseconds, rounded up and clamped to the table's range.
fn unix_seconds(millis: i64) -> u32 {
    let seconds = millis.saturating_add(999).div_euclid(1000);
    u32::try_from(seconds.max(0)).unwrap_or(NEVER)
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

#[cfg(test)]
mod tests {
    use super::follow::Entry;
    use super::*;

    fn entry(json: &str) -> Entry {
        serde_json::from_str(json).unwrap()
    }

    #[test]
    fn tenant_policy_entries_set_and_clear_a_tenants_rules_and_unreadable_ones_fail_closed() {
        let acme = TenantId::parse("acme").unwrap();
        let mut state = GrantState::default();
        state.apply(&entry(
            r#"{"seq":1,"kind":"tenant_policy","subject":"acme","tenant_id":"acme",
                "network":{"allow":null,"deny":["192.0.2.0/24"],
                           "allow_countries":null,"deny_countries":[]}}"#,
        ));
        let rules = state.networks.get(&acme).expect("acme has rules").clone();
        assert!(rules.admits("198.51.100.1".parse().ok(), None).is_ok());
        assert!(rules.admits("192.0.2.1".parse().ok(), None).is_err());

        // A shape this version cannot read refuses every client of that tenant.
        state.apply(&entry(
            r#"{"seq":2,"kind":"tenant_policy","subject":"acme","tenant_id":"acme",
                "network":{"allow":"everything"}}"#,
        ));
        let closed = state.networks.get(&acme).unwrap().clone();
        assert!(closed.admits("198.51.100.1".parse().ok(), None).is_err());

        // Rules that say nothing remove the tenant's entry.
        state.apply(&entry(
            r#"{"seq":3,"kind":"tenant_policy","subject":"acme","tenant_id":"acme",
                "network":{"allow":null,"deny":[],"allow_countries":null,"deny_countries":[]}}"#,
        ));
        assert!(!state.networks.contains_key(&acme));
    }
}
