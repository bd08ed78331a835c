//! Building and running the server: open the store, load the pepper, create the system
//! tenant and root key on first start, bind the listener and serve it (`listener`).

use crate::config::Config;
use crate::http::listener::{self, Limits};
use crate::http::router;
use crate::keyfile;
use crate::service::audit::AuditQueue;
use crate::service::cache::TokenCache;
use crate::service::federation::{FetchPolicy, IssuerKeys};
use crate::service::keyring::KeyRing;
use crate::service::keys::MasterKey;
use crate::service::leaks::remote::RemoteKeys;
use crate::service::leaks::{LeakIntake, PartnerKeys};
use crate::service::metrics::ServerMetrics;
use crate::service::policy;
use crate::service::state::{AppState, Parts, Settings};
use crate::service::throttle::{self, RequestLimit, Throttle};
use anyhow::Context;
use latchkey_core::audit::{AuditContext, AuditMacKey};
use latchkey_core::clock::{Clock, SystemClock};
use latchkey_core::jwt::Algorithm;
use latchkey_core::permission::ADMIN;
use latchkey_core::secret::{Secret, SecretCodec, SecretPrefix, SecretType};
use latchkey_core::store::RotateWhen;
use latchkey_core::store::Tenant;
use latchkey_core::token::{Owner, Token, TokenKind, TokenName, TokenRecord};
use latchkey_core::{Permission, TenantId, TokenId};
use latchkey_geoip::ReloadingGeoIp;
use latchkey_listener::{Listener, Protocols, ServerTls};
use latchkey_store::StoreOptions;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;

/// How often a server serving TLS looks whether its certificate or key file changed.
pub const CERT_WATCH_INTERVAL: Duration = Duration::from_secs(10);

/// A built server, bound and ready to run.
pub struct Application {
    listener: Listener,
    state: AppState,
    root_key: Option<Secret>,
    public_url: String,
}

impl Application {
    /// Opens the store (running migrations), loads or creates the server secrets,
    /// bootstraps the system tenant, and binds `config.listen`. Time is the system's.
    pub async fn build(config: Config) -> anyhow::Result<Self> {
        Self::build_with_clock(config, Arc::new(SystemClock)).await
    }

    /// [`Self::build`] with time read from `clock`: every expiry, lifetime, schedule and
    /// timestamp the server decides goes by it (tests move a `ManualClock`).
    pub async fn build_with_clock(config: Config, clock: Arc<dyn Clock>) -> anyhow::Result<Self> {
        config.validate().map_err(|e| anyhow::anyhow!(e))?;
        // Owner-only when latchkey creates it; the files in it are 0600 (docs/DEPLOYMENT.md).
        keyfile::create_private_dir(&config.data_dir)
            .with_context(|| format!("creating data directory {}", config.data_dir.display()))?;
        let data_dir = &config.data_dir;
        let pepper = keyfile::load_or_create(&config.pepper_path(), "pepper", data_dir)?;
        let master = keyfile::load_or_create(&config.master_key_path(), "master key", data_dir)?;
        let algorithm = Algorithm::parse(&config.signing_algorithm).ok_or_else(|| {
            anyhow::anyhow!(
                "signing_algorithm must be EdDSA, ES256 or RS256, not {}",
                config.signing_algorithm
            )
        })?;
        let prefix = SecretPrefix::parse(&config.secret_prefix)
            .map_err(|e| anyhow::anyhow!("secret_prefix {e}"))?;
        let store_options = StoreOptions {
            max_connections: config.database_max_connections.max(1),
            acquire_timeout: Duration::from_millis(config.database_timeout_ms.max(1)),
        };
        let database_url = config.database_url();
        // The store signs every audit event as it appends it; the same key checks them.
        let audit_key = AuditMacKey::derive(&master);
        let store = latchkey_store::connect(&database_url, &store_options, audit_key.clone())
            .await
            .map_err(|e| anyhow::anyhow!("opening the database: {e:?}"))?;
        // The certificate is read before the port is taken, so a bad file stops the
        // start without holding the port.
        let tls = match config.tls_files() {
            Some(files) => Some(ServerTls::load(files, Protocols::Http1)?),
            None => None,
        };
        let partner = config
            .leak_report_public_keys_file
            .as_deref()
            .map(PartnerKeys::load)
            .transpose()
            .map_err(|e| anyhow::anyhow!(e))?;
        let remote = match config.leak_report_public_keys_url.as_deref() {
            Some(url) => Some(
                RemoteKeys::fetch_first(url)
                    .await
                    .map_err(|e| anyhow::anyhow!(e))?,
            ),
            None => None,
        };
        let tcp = TcpListener::bind(config.listen)
            .await
            .with_context(|| format!("binding {}", config.listen))?;
        let local = tcp.local_addr()?;
        let limits = Limits {
            header_read_timeout: Duration::from_secs(config.header_read_timeout_seconds),
            body_read_timeout: Duration::from_secs(config.body_read_timeout_seconds),
            max_connections: usize::try_from(config.max_connections).unwrap_or(usize::MAX),
            handshake_timeout: Duration::from_secs(config.tls_handshake_timeout_seconds),
        };
        let listener = Listener::new(tcp, tls, limits);
        let scheme = listener.scheme();
        let public_url = config
            .public_url
            .clone()
            .unwrap_or_else(|| format!("{scheme}://{local}"))
            .trim_end_matches('/')
            .to_owned();
        let audiences = if config.audiences.is_empty() {
            vec![public_url.clone()]
        } else {
            config.audiences.clone()
        };
        let settings = Settings {
            public_url: public_url.clone(),
            default_audience: config
                .default_audience
                .clone()
                .unwrap_or_else(|| public_url.clone()),
            audiences,
            default_access_token_ttl_seconds: config.default_access_token_ttl_seconds,
            max_access_token_ttl_seconds: config.max_access_token_ttl_seconds,
            refresh_token_lifetime_seconds: config.refresh_token_lifetime_seconds,
            max_refresh_families: config.max_refresh_families,
            key_rotation_seconds: config.key_rotation_seconds.max(1),
            usage_retention_days: config.usage_retention_days.max(1),
            trusted_proxies: config.trusted_proxies.clone(),
            mutual_tls: config.tls_client_ca_file.is_some(),
            policy_floor: config.policy_floor.clone(),
            webhook_allow_private_targets: config.webhook_allow_private_targets,
            webhook_poll_interval: Duration::from_millis(config.webhook_poll_interval_ms),
            console_frame_ancestors: config.console_frame_ancestors.trim().to_owned(),
            console_login: config.console_login,
            trust_allow_insecure_issuers: config.trust_allow_insecure_issuers,
        };
        let store: Arc<dyn latchkey_core::store::Store> = Arc::new(store);
        let audit = AuditQueue::start(store.clone(), config.audit_authentications);
        // The GeoIP database (docs/API.md, "Where tokens may be used from"): a missing or
        // corrupt file stops the start; a change is picked up within GEOIP_CHECK.
        let geoip = match &config.geoip_database_file {
            Some(path) => {
                let geoip = Arc::new(ReloadingGeoIp::open(path)?);
                geoip.clone().spawn_watch(GEOIP_CHECK);
                Some(geoip)
            }
            None => None,
        };
        let state = AppState::new(Parts {
            geoip,
            clock,
            audit,
            audit_key,
            store,
            codec: SecretCodec::new(prefix, &pepper),
            settings,
            keyring: KeyRing::new(MasterKey::new(&master)?, algorithm),
            tokens: TokenCache::new(Duration::from_millis(config.token_cache_ttl_ms), 100_000),
            throttle: Throttle::new(throttle::Limits {
                client_per_address: config.client_failures_per_minute,
                client_all_addresses: config.client_failures_all_addresses_per_minute,
                ip: config.ip_failures_per_minute,
            }),
            heartbeat: Duration::from_secs(config.revocation_heartbeat_seconds.max(1)),
            metrics: Arc::new(ServerMetrics::new(config.metrics_enabled)),
            leaks: LeakIntake {
                limit: RequestLimit::new(config.leak_reports_per_minute),
                partner,
                remote: remote.clone(),
            },
            issuers: IssuerKeys::new(
                crate::http::outbound::get,
                FetchPolicy {
                    allow_insecure: config.trust_allow_insecure_issuers,
                    allow_private: config.trust_allow_private_issuers,
                    min_refresh: Duration::from_secs(config.trust_jwks_min_refresh_seconds),
                },
            ),
        });
        if let Some(remote) = &remote {
            remote.spawn_refresh(Duration::from_secs(
                config.leak_report_public_keys_refresh_seconds,
            ));
        }
        let waker = state.clone();
        if let Some(listener) =
            latchkey_store::spawn_revocation_listener(&database_url, move || {
                waker.revocations().wake()
            })
        {
            // LISTEN can miss a notification across a reconnect; a poll bounds the delay.
            let poller = state.clone();
            tokio::spawn(async move {
                let mut tick = tokio::time::interval(Duration::from_secs(1));
                while !listener.is_finished() {
                    tick.tick().await;
                    poller.revocations().wake();
                }
            });
        }
        state
            .keyring()
            .ensure_keys(state.store(), state.now())
            .await
            .map_err(|e| anyhow::anyhow!("preparing signing keys: {e:?}"))?;
        let root_key = bootstrap(&state).await?;
        let backfilled = state
            .store()
            .backfill_feed_state(state.now())
            .await
            .map_err(|e| anyhow::anyhow!("writing roles and memberships to the feed: {e:?}"))?;
        if backfilled > 0 {
            tracing::info!(
                entries = backfilled,
                "the revocation feed now carries every role and membership"
            );
        }
        if let (Some(key), Some(path)) = (&root_key, &config.root_key_file) {
            keyfile::write_private(path, format!("{}\n", key.expose()).as_bytes())
                .with_context(|| format!("writing the root key to {}", path.display()))?;
        }
        Ok(Self {
            listener,
            state,
            root_key,
            public_url,
        })
    }

    /// The bound port.
    pub fn port(&self) -> u16 {
        self.local_addr().port()
    }

    /// The bound address.
    pub fn local_addr(&self) -> SocketAddr {
        self.listener
            .local_addr()
            .unwrap_or_else(|_| SocketAddr::from(([127, 0, 0, 1], 0)))
    }

    /// The TLS the server serves, if it serves TLS itself: [`ServerTls::reload`] it on
    /// SIGHUP. File changes are picked up without it, every [`CERT_WATCH_INTERVAL`].
    pub fn tls(&self) -> Option<ServerTls> {
        self.listener.tls().cloned()
    }

    /// A handle that runs one round of maintenance on this server (see
    /// [`Maintenance::run_once`]); it stays usable after the server was moved into
    /// [`run_until`](Self::run_until).
    pub fn maintenance(&self) -> Maintenance {
        Maintenance(self.state.clone())
    }

    /// The public URL.
    pub fn public_url(&self) -> &str {
        &self.public_url
    }

    /// The root key, on the first start only.
    pub fn root_key(&self) -> Option<&Secret> {
        self.root_key.as_ref()
    }

    /// Serves until the process is stopped.
    pub async fn run_until_stopped(self) -> std::io::Result<()> {
        self.run_until(std::future::pending()).await
    }

    /// Serves until `shutdown` completes, then drains in-flight requests.
    pub async fn run_until(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> std::io::Result<()> {
        let maintenance = tokio::spawn(maintain(self.state.clone()));
        // The webhook outbox survives a stop: what is not sent now is sent after the next
        // start, by this server or another replica (docs/API.md, "Webhooks").
        let (stop_webhooks, webhooks_stopped) = tokio::sync::watch::channel(false);
        let webhooks = tokio::spawn(crate::service::webhooks::run(
            self.state.clone(),
            crate::http::outbound::post,
            webhooks_stopped,
        ));
        let flush = self.state.clone();
        let closer = self.state.clone();
        let app = router(self.state);
        let watch = self
            .listener
            .tls()
            .map(|tls| tls.watch(CERT_WATCH_INTERVAL));
        tracing::info!(
            "listening on {}://{}",
            self.listener.scheme(),
            self.listener.local_addr()?
        );
        let shutdown = async move {
            shutdown.await;
            // Streams never finish on their own; end them so the drain can complete.
            closer.revocations().close();
        };
        listener::serve(self.listener, app, shutdown).await;
        maintenance.abort();
        // Attempts under way are recorded before the server stops, within a bound; one
        // cut off is sent again once its lease ends (at least once).
        let _ = stop_webhooks.send(true);
        let abort = webhooks.abort_handle();
        if tokio::time::timeout(WEBHOOK_DRAIN, webhooks).await.is_err() {
            abort.abort();
        }
        if let Some(watch) = watch {
            watch.abort();
        }
        flush.audit().flush().await;
        Ok(())
    }
}

/// How often a server looks at the key schedule and reloads keys and the jti deny list
/// (which another replica may have changed).
const MAINTENANCE_INTERVAL: Duration = Duration::from_secs(5);

/// How often the unused-token sweep runs (docs/API.md, "Tenant policies"); a policy
/// speaks in days, and the sweep reads every live token of the tenants it binds.
const UNUSED_SWEEP_INTERVAL_MS: i64 = 10 * 60 * 1000;

/// How long a stopping server waits for the webhook attempts under way.
const WEBHOOK_DRAIN: Duration = Duration::from_secs(10);

/// How often the GeoIP database file is checked for a change.
const GEOIP_CHECK: Duration = Duration::from_secs(10);

/// How long a deny-list entry outlives the last credential it matches.
const COMPACTION_MARGIN_SECONDS: i64 = 300;

/// Runs [`maintain_once`] every [`MAINTENANCE_INTERVAL`].
async fn maintain(state: AppState) {
    let mut ticker = tokio::time::interval(MAINTENANCE_INTERVAL);
    loop {
        ticker.tick().await;
        maintain_once(&state).await;
    }
}

/// One round of maintenance at the clock's now: rotates signing keys on schedule
/// (exactly once across replicas: the store checks the schedule under its rotation
/// lock) and reloads the key set and the jti deny list, which another replica may have
/// changed; revokes rolled tokens whose grace window ended; deletes usage past
/// retention and compacts the revocation log. A running server does this every few
/// seconds; a test that moves the clock calls it to see the schedule act without
/// waiting for the next round. Failures are logged, and the next round retries.
/// One server's maintenance, run on demand: for a program (or a test) that moved the
/// server's clock and wants the key schedule and the deny list acted on now rather
/// than at the next round.
#[derive(Clone)]
pub struct Maintenance(AppState);

impl Maintenance {
    /// Runs one round of maintenance now.
    pub async fn run_once(&self) {
        maintain_once(&self.0).await;
    }
}

pub(crate) async fn maintain_once(state: &AppState) {
    let now = state.now();
    let due_before = now.plus_seconds(-state.settings().key_rotation_seconds);
    let outcome = state
        .keyring()
        .rotate(
            state.store(),
            RotateWhen::NewestOlderThan(due_before),
            &AuditContext::system(now),
        )
        .await;
    if let Err(error) = outcome {
        tracing::warn!(?error, "key maintenance failed; retrying shortly");
    }
    // A rolled token whose grace window has ended is revoked like any revocation
    // (docs/API.md, "Rolling a token").
    match state
        .store()
        .revoke_rolled(&AuditContext::system(now))
        .await
    {
        Ok(revoked) if revoked.is_empty() => {}
        Ok(revoked) => {
            state.auth_changed();
            tracing::info!(
                count = revoked.len(),
                "revoked rolled tokens at the end of their grace"
            );
        }
        Err(error) => tracing::warn!(?error, "revoking rolled tokens failed; retrying shortly"),
    }
    // Uses first, so that the sweep below sees them.
    state.uses().flush(state.store()).await;
    if state.unused_sweep_due(now, UNUSED_SWEEP_INTERVAL_MS) {
        match policy::sweep_unused(state, now).await {
            Ok(revoked) if revoked.is_empty() => {}
            Ok(revoked) => tracing::info!(count = revoked.len(), "revoked unused tokens"),
            Err(error) => tracing::warn!(?error, "the unused-token sweep failed; retrying later"),
        }
    }
    // Each token's expiry is announced a week and a day ahead, once (docs/API.md,
    // "Webhooks").
    match state
        .store()
        .notify_expiring(&AuditContext::system(now))
        .await
    {
        Ok(0) => {}
        Ok(count) => tracing::info!(count, "announced expiring tokens"),
        Err(error) => tracing::warn!(?error, "announcing expiring tokens failed"),
    }
    // Assertion `jti`s are kept until their assertion expired (docs/API.md, "The
    // JWT-bearer grant"); after that a replay fails on `exp` anyway.
    if let Err(error) = state.store().prune_assertion_jtis(now).await {
        tracing::warn!(?error, "forgetting expired assertion jtis failed");
    }
    let retention = now.plus_seconds(-state.settings().usage_retention_days * 86_400);
    if let Err(error) = state.store().compact_usage(retention).await {
        tracing::warn!(?error, "deleting old usage aggregates failed");
    }
    // Verifiers accept a JWT a little past its `exp` (leeway, 60 s by default), so an
    // entry is kept a while after it stops mattering.
    match state
        .store()
        .compact_revocations(now.plus_seconds(-COMPACTION_MARGIN_SECONDS))
        .await
    {
        Ok(0) => {}
        Ok(removed) => tracing::info!(removed, "compacted the revocation log"),
        Err(error) => tracing::warn!(?error, "compacting the revocation log failed"),
    }
}

/// Creates the system tenant and its root api key (holding `latchkey:admin`) unless the
/// tenant exists. Returns the key when it was created.
async fn bootstrap(state: &AppState) -> anyhow::Result<Option<Secret>> {
    let now = state.now();
    let (root, secret) = root_record(
        state.codec(),
        state.rng(),
        now,
        state.settings().default_access_token_ttl_seconds,
        "root",
    )?;
    let system = Tenant {
        id: TenantId::system(),
        name: "latchkey".to_owned(),
        created_at: now,
    };
    let created = state
        .store()
        .bootstrap(&system, &root, &AuditContext::system(now))
        .await
        .map_err(|e| anyhow::anyhow!("bootstrapping the system tenant: {e:?}"))?;
    Ok(created.then_some(secret))
}

/// A new api key of the system tenant holding `latchkey:admin`, named `name`.
fn root_record(
    codec: &SecretCodec,
    rng: &dyn aws_lc_rs::rand::SecureRandom,
    now: latchkey_core::Timestamp,
    access_token_ttl_seconds: u32,
    name: &str,
) -> anyhow::Result<(TokenRecord, Secret)> {
    let id = TokenId::generate(rng)?;
    let issued = codec.generate(SecretType::ApiKey, id, rng)?;
    let root = TokenRecord {
        token: Token {
            id,
            kind: TokenKind::ApiKey,
            owner: Owner::Tenant {
                tenant_id: TenantId::system(),
            },
            name: TokenName::parse(name).map_err(|e| anyhow::anyhow!(e))?,
            roles: Vec::new(),
            permissions: vec![Permission::parse(ADMIN).map_err(|e| anyhow::anyhow!(e))?],
            created_by: None,
            created_at: now,
            expires_at: None,
            revoked_at: None,
            revoked_reason: None,
            rolled_from: None,
            rolled_to: None,
            revokes_at: None,
            last_used_at: None,
            last_used_ip: None,
            ip_allowlist: Vec::new(),
            access_token_ttl_seconds,
            refresh_tokens: false,
            secret_hint: Some(issued.secret.hint()),
            public_key: None,
        },
        secret: Some(issued.stored),
        signing_kid: None,
        secret_lookup: Some(issued.lookup),
    };
    Ok((root, issued.secret))
}

/// `latchkey serve --check-config` (docs/OPERATIONS.md, "Checking a configuration"):
/// everything a start would check without opening the database or taking the port:
/// the settings, the pepper and master key files (their mode and contents, when they
/// exist), the signing algorithm and prefix, the TLS files, the GeoIP database and the
/// partner keys. Returns a summary, one line a setting; the error names the key.
pub fn check_config(config: &Config) -> anyhow::Result<Vec<String>> {
    config.validate().map_err(|e| anyhow::anyhow!(e))?;
    let mut summary = vec![format!("listen: {}", config.listen)];
    let url = config.database_url();
    let backend = latchkey_store::Backend::of_url(&url)
        .map_err(|_| anyhow::anyhow!("database_url must start with sqlite: or postgres://"))?;
    summary.push(format!(
        "database: {}",
        match backend {
            latchkey_store::Backend::Sqlite => "SQLite",
            latchkey_store::Backend::Postgres => "PostgreSQL",
        }
    ));
    summary.push(format!("data_dir: {}", config.data_dir.display()));
    for (key, path, what) in [
        ("pepper_file", config.pepper_path(), "pepper"),
        ("master_key_file", config.master_key_path(), "master key"),
    ] {
        if path.exists() {
            keyfile::load_existing(&path, what, &config.data_dir).context(key)?;
            summary.push(format!("{key}: {} (ok)", path.display()));
        } else {
            summary.push(format!(
                "{key}: {} (absent: created on first start)",
                path.display()
            ));
        }
    }
    Algorithm::parse(&config.signing_algorithm).ok_or_else(|| {
        anyhow::anyhow!(
            "signing_algorithm must be EdDSA, ES256 or RS256, not {}",
            config.signing_algorithm
        )
    })?;
    summary.push(format!("signing_algorithm: {}", config.signing_algorithm));
    SecretPrefix::parse(&config.secret_prefix).map_err(|e| anyhow::anyhow!("secret_prefix {e}"))?;
    if let Some(files) = config.tls_files() {
        ServerTls::load(files, Protocols::Http1).context("tls_cert_file / tls_key_file")?;
        summary.push("tls: certificate and key load".to_owned());
    }
    if let Some(path) = &config.geoip_database_file {
        ReloadingGeoIp::open(path).context("geoip_database_file")?;
        summary.push(format!("geoip_database_file: {} (ok)", path.display()));
    }
    if let Some(path) = &config.leak_report_public_keys_file {
        PartnerKeys::load(path)
            .map_err(|e| anyhow::anyhow!("leak_report_public_keys_file: {e}"))?;
        summary.push(format!(
            "leak_report_public_keys_file: {} (ok)",
            path.display()
        ));
    }
    summary.push(format!("metrics_enabled: {}", config.metrics_enabled));
    Ok(summary)
}

/// The actor of the audit event `latchkey admin recover` writes.
pub const RECOVER_ACTOR: &str = "break-glass:recover";

/// `latchkey admin recover` (docs/OPERATIONS.md, "Break-glass recovery"): with the
/// server's own files (the configuration, the pepper and master key, the database),
/// creates a new root api key in the system tenant holding `latchkey:admin`, audited
/// as `token.created` by the actor [`RECOVER_ACTOR`], and returns it to be shown once.
/// The pepper and master key must exist: new ones would make a key no server accepts.
pub async fn recover(config: &Config) -> anyhow::Result<Secret> {
    config.validate().map_err(|e| anyhow::anyhow!(e))?;
    let data_dir = &config.data_dir;
    let pepper = keyfile::load_existing(&config.pepper_path(), "pepper", data_dir)?;
    let master = keyfile::load_existing(&config.master_key_path(), "master key", data_dir)?;
    let prefix = SecretPrefix::parse(&config.secret_prefix)
        .map_err(|e| anyhow::anyhow!("secret_prefix {e}"))?;
    let url = config.database_url();
    if url.starts_with("sqlite:")
        && !config.data_dir.join("latchkey.db").exists()
        && config.database_url.is_none()
    {
        anyhow::bail!(
            "no database in {}; is this the server's data directory?",
            data_dir.display()
        );
    }
    let options = StoreOptions {
        max_connections: 1,
        acquire_timeout: Duration::from_millis(config.database_timeout_ms.max(1)),
    };
    let store = latchkey_store::connect(&url, &options, AuditMacKey::derive(&master))
        .await
        .map_err(|e| anyhow::anyhow!("opening the database: {e:?}"))?;
    let codec = SecretCodec::new(prefix, &pepper);
    let now = SystemClock.now();
    let rng = aws_lc_rs::rand::SystemRandom::new();
    let name = format!("recovered root {}", now.unix_seconds());
    let (record, secret) = root_record(
        &codec,
        &rng,
        now,
        config.default_access_token_ttl_seconds,
        &name,
    )?;
    use latchkey_core::store::Store;
    let outcome = store
        .create_token(&record, &AuditContext::new(RECOVER_ACTOR, now))
        .await
        .map_err(|e| anyhow::anyhow!("creating the recovery key: {e:?}"));
    store.close().await;
    outcome?;
    tracing::warn!(token_id = %record.token.id, "break-glass: a new root key was created");
    Ok(secret)
}
