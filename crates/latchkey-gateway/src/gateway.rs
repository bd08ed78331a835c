//! [`Gateway`]: building it, serving a listener until shutdown, and reloading its
//! routes while it serves.
//!
//! Policy: the gateway is given its [`Verifier`] rather than building one, so the
//! caller decides discovery, the deny-list replica and the clock, and tests pin keys.
//! Serving speaks HTTP/1.1 to clients and upstreams (plain or TLS). A reload swaps the
//! routing table (prefixes, upstreams, scopes, timeouts, and route CA files, read
//! again) atomically between requests without touching the listener or open
//! connections; settings that shape the process itself (`listen`, `server`, `issuer`,
//! `tls_ca_file`, `allow_insecure_issuer`, `credential`, `audience`,
//! `max_staleness_seconds`, `drain_timeout_seconds` and the listener's limits) are
//! only read at start, and a reload that changes them says so in the log. The listener times request heads and
//! bodies and caps connections (see `listener`). On shutdown the gateway stops
//! accepting, lets requests in flight finish for up to the drain timeout, then sends
//! the last usage batch.

use crate::config::{ConfigError, GatewayConfig, system_upstream};
use crate::listener::StallGuard;
use crate::proxy::handle;
use crate::route::RouteTable;
use crate::stats::{Counters, GatewayStats};
use crate::upstream::Upstream;
use crate::usage::{UsageClient, UsageOptions, UsageReporter};
use hyper::Request;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use latchkey_verify::{
    Credential, ReplicaOptions, RevocationCheck, RevocationReplica, Verifier, VerifierOptions,
};
use std::convert::Infallible;
use std::fmt;
use std::future::Future;
use std::pin::pin;
use std::sync::{Arc, PoisonError, RwLock};
use std::time::{Duration, Instant};
use tokio::net::TcpListener;
use tokio::sync::{Semaphore, watch};

/// The pause after a failed `accept` (out of file descriptors, …), so the loop does
/// not spin.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);

/// The least time between two "max_connections reached" warnings, so a flood does not
/// also flood the log.
const FULL_WARNING_INTERVAL: Duration = Duration::from_secs(60);

/// What a gateway is built from besides its configuration.
#[derive(Debug, Clone)]
pub struct GatewayDeps {
    /// Verifies bearer credentials; give it the deny-list replica as its
    /// [`VerifierOptions::revocation`] (see [`GatewayConfig::verifier_options`]).
    pub verifier: Verifier,
    /// How usage is batched and sent to `{server}/v1/usage`.
    pub usage: UsageOptions,
}

impl GatewayDeps {
    /// `verifier` with the default usage options.
    pub fn new(verifier: Verifier) -> Self {
        Self {
            verifier,
            usage: UsageOptions::default(),
        }
    }
}

impl GatewayConfig {
    /// Verifier options for this configuration: its credential (for introspecting api
    /// keys and long-lived JWTs), its audience, its `trusted_proxies`, and `revocation`
    /// as the deny list —
    /// normally a `RevocationReplica` following `server`'s feed with
    /// [`max_staleness`](Self::max_staleness).
    pub fn verifier_options(
        &self,
        revocation: Arc<dyn RevocationCheck>,
    ) -> Result<VerifierOptions, ConfigError> {
        Ok(VerifierOptions {
            credential: Some(Credential::new(self.credential()?)),
            audience: self.audience.clone(),
            revocation,
            trusted_proxies: self.trusted_proxies.clone(),
            connect: self.connect()?,
            tls_ca_file: self.tls_ca_file.clone(),
            allow_insecure_issuer: self.allow_insecure_issuer,
            ..VerifierOptions::default()
        })
    }
}

/// Builds a gateway the way `latchkey gateway` runs one: a deny-list replica following
/// the server's revocation feed (failing closed after `max_staleness_seconds`), a
/// verifier discovered from the server that consults it, and the gateway itself. The
/// replica is returned so a caller can watch it (`metrics()`, `is_stale()`).
pub async fn assemble(config: GatewayConfig) -> Result<(Gateway, RevocationReplica), ConfigError> {
    config.validate()?;
    let replica = RevocationReplica::start(
        config.server_base()?,
        Credential::new(config.credential()?),
        ReplicaOptions {
            max_staleness: config.max_staleness(),
            tls_ca_file: config.tls_ca_file.clone(),
            allow_insecure_issuer: config.allow_insecure_issuer,
            ..ReplicaOptions::default()
        },
    )
    .map_err(|e| ConfigError::Server(e.to_string()))?;
    let options = config.verifier_options(Arc::new(replica.clone()))?;
    let verifier = Verifier::discover(config.issuer()?, options)
        .await
        .map_err(|e| ConfigError::Server(e.to_string()))?;
    replica.attach(verifier.evictor());
    let gateway = Gateway::build(config, GatewayDeps::new(verifier))?;
    Ok((gateway, replica))
}

/// What every request and the background tasks share.
pub(crate) struct Shared {
    pub(crate) verifier: Verifier,
    /// The client of routes without `tls_ca_file`; reloads reuse it, so their
    /// connection pools survive a reload.
    upstream: Upstream,
    pub(crate) usage: Option<Arc<UsageReporter>>,
    pub(crate) counters: Counters,
    routes: RwLock<Arc<RouteTable>>,
    /// The configuration the gateway started with, to tell which changes need a
    /// restart.
    started_with: GatewayConfig,
}

impl Shared {
    /// The current routing table.
    pub(crate) fn routes(&self) -> Arc<RouteTable> {
        self.routes
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }
}

/// The latchkey gateway: a reverse proxy that authenticates and authorizes each
/// request before forwarding it. Cheap to clone; clones are the same gateway, so one
/// can serve while another reloads.
#[derive(Clone)]
pub struct Gateway {
    shared: Arc<Shared>,
}

impl fmt::Debug for Gateway {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Gateway")
            .field("routes", &self.shared.routes().len())
            .field("verifier", &self.shared.verifier)
            .finish_non_exhaustive()
    }
}

impl Gateway {
    /// Validates `config` and builds the gateway. Nothing is bound or started yet:
    /// see [`serve`](Self::serve).
    pub fn build(config: GatewayConfig, deps: GatewayDeps) -> Result<Self, ConfigError> {
        config.validate()?;
        let upstream = system_upstream()?;
        let routes = RouteTable::compile(&config, &upstream)?;
        let usage = if deps.usage.enabled {
            let client = UsageClient::new(config.tls_ca_file.as_deref()).map_err(|reason| {
                ConfigError::BadValue {
                    field: "tls_ca_file".to_owned(),
                    reason,
                }
            })?;
            Some(Arc::new(UsageReporter::new(
                config.server_base()?,
                config.credential()?,
                deps.usage,
                client,
            )))
        } else {
            None
        };
        if routes.len() == 0 {
            tracing::warn!("the gateway has no routes; every request will be answered 404");
        }
        Ok(Self {
            shared: Arc::new(Shared {
                verifier: deps.verifier,
                upstream,
                usage,
                counters: Counters::default(),
                routes: RwLock::new(Arc::new(routes)),
                started_with: config,
            }),
        })
    }

    /// Serves `listener` until `shutdown` completes, then drains: no new connections,
    /// requests in flight get up to `drain_timeout_seconds` to finish, and pending
    /// usage is sent once more. Usage is sent every second while serving.
    pub async fn serve(&self, listener: TcpListener, shutdown: impl Future<Output = ()>) {
        let (stop, stopped) = watch::channel(false);
        let flusher = self
            .shared
            .usage
            .clone()
            .map(|usage| tokio::spawn(usage.run(stopped)));
        let graceful = GracefulShutdown::new();
        let limits = self.shared.started_with.limits();
        let slots = Arc::new(Semaphore::new(limits.max_connections));
        let mut builder = http1::Builder::new();
        builder
            .timer(TokioTimer::new())
            .header_read_timeout(limits.header_read_timeout);
        if let Ok(address) = listener.local_addr() {
            tracing::info!(%address, routes = self.shared.routes().len(), "gateway listening");
        }
        let mut shutdown = pin!(shutdown);
        let mut last_full_warning: Option<Instant> = None;
        loop {
            let slot = match slots.clone().try_acquire_owned() {
                Ok(slot) => slot,
                Err(_) => {
                    if last_full_warning.is_none_or(|at| at.elapsed() >= FULL_WARNING_INTERVAL) {
                        last_full_warning = Some(Instant::now());
                        tracing::warn!(
                            max_connections = limits.max_connections,
                            "max_connections reached; new connections wait until one closes"
                        );
                    }
                    tokio::select! {
                        slot = slots.clone().acquire_owned() => match slot {
                            Ok(slot) => slot,
                            // Never closed; if it were, nothing more could be served.
                            Err(_) => break,
                        },
                        () = &mut shutdown => break,
                    }
                }
            };
            let (stream, peer) = tokio::select! {
                accepted = listener.accept() => match accepted {
                    Ok(accepted) => accepted,
                    Err(error) => {
                        tracing::warn!(%error, "accepting a connection failed");
                        tokio::time::sleep(ACCEPT_BACKOFF).await;
                        continue;
                    }
                },
                () = &mut shutdown => break,
            };
            if let Err(error) = stream.set_nodelay(true) {
                tracing::debug!(%error, "TCP_NODELAY not set");
            }
            let shared = self.shared.clone();
            let body_timeout = limits.body_read_timeout;
            let service = service_fn(move |request: Request<Incoming>| {
                let shared = shared.clone();
                let request = request.map(|body| StallGuard::new(body, body_timeout));
                async move { Ok::<_, Infallible>(handle(&shared, peer, request).await) }
            });
            let connection =
                graceful.watch(builder.serve_connection(TokioIo::new(stream), service));
            tokio::spawn(async move {
                if let Err(error) = connection.await {
                    tracing::debug!(%error, %peer, "client connection ended with an error");
                }
                drop(slot);
            });
        }
        drop(listener);
        let drain = self.shared.started_with.drain_timeout();
        tracing::info!(?drain, "gateway shutting down; draining requests in flight");
        tokio::select! {
            () = graceful.shutdown() => {}
            () = tokio::time::sleep(drain) => {
                tracing::warn!("requests still in flight after the drain timeout; closing them");
            }
        }
        // The receiver may already be gone if the flusher ended; nothing to stop then.
        let _ = stop.send(true);
        if let Some(flusher) = flusher
            && let Err(error) = flusher.await
        {
            tracing::error!(%error, "the usage task failed");
        }
    }

    /// Applies a new configuration's routes, upstreams, scopes and timeouts to every
    /// request that starts from now on. On error nothing changes. Settings read only
    /// at start are logged when they differ, and keep their old value.
    pub fn reload(&self, config: GatewayConfig) -> Result<(), ConfigError> {
        config.validate()?;
        let routes = RouteTable::compile(&config, &self.shared.upstream)?;
        for field in needs_restart(&self.shared.started_with, &config) {
            tracing::warn!(
                field,
                "changed in the configuration; takes effect on restart"
            );
        }
        let count = routes.len();
        *self
            .shared
            .routes
            .write()
            .unwrap_or_else(PoisonError::into_inner) = Arc::new(routes);
        tracing::info!(routes = count, "gateway configuration reloaded");
        Ok(())
    }

    /// Counters since the gateway was built.
    pub fn stats(&self) -> GatewayStats {
        let usage = self
            .shared
            .usage
            .as_ref()
            .map(|u| u.stats())
            .unwrap_or_default();
        self.shared.counters.snapshot(usage)
    }

    /// The verifier the gateway uses.
    pub fn verifier(&self) -> &Verifier {
        &self.shared.verifier
    }
}

/// The start-only settings that differ between `old` and `new`.
fn needs_restart(old: &GatewayConfig, new: &GatewayConfig) -> Vec<&'static str> {
    let mut changed = Vec::new();
    if old.listen != new.listen {
        changed.push("listen");
    }
    if old.server != new.server {
        changed.push("server");
    }
    if old.issuer != new.issuer {
        changed.push("issuer");
    }
    if old.tls_ca_file != new.tls_ca_file {
        changed.push("tls_ca_file");
    }
    if old.allow_insecure_issuer != new.allow_insecure_issuer {
        changed.push("allow_insecure_issuer");
    }
    if old.credential != new.credential {
        changed.push("credential");
    }
    if old.audience != new.audience {
        changed.push("audience");
    }
    if old.max_staleness_seconds != new.max_staleness_seconds {
        changed.push("max_staleness_seconds");
    }
    if old.drain_timeout_seconds != new.drain_timeout_seconds {
        changed.push("drain_timeout_seconds");
    }
    if old.header_read_timeout_seconds != new.header_read_timeout_seconds {
        changed.push("header_read_timeout_seconds");
    }
    if old.body_read_timeout_seconds != new.body_read_timeout_seconds {
        changed.push("body_read_timeout_seconds");
    }
    if old.max_connections != new.max_connections {
        changed.push("max_connections");
    }
    // Held by the verifier, which is built once.
    if old.trusted_proxies != new.trusted_proxies {
        changed.push("trusted_proxies");
    }
    changed
}

/// Reloads `gateway` from the file at `path` on every SIGHUP.
///
/// The signal handler is installed before this returns, so a SIGHUP sent afterwards
/// can no longer end the process; spawn the returned future to act on it. A file that
/// fails to read or validate is logged and the running configuration is kept. Must be
/// called within a tokio runtime.
#[cfg(unix)]
pub fn reload_on_sighup(
    gateway: Gateway,
    path: impl Into<std::path::PathBuf>,
) -> std::io::Result<impl Future<Output = ()> + Send + 'static> {
    use tokio::signal::unix::{SignalKind, signal};
    let path = path.into();
    let mut hangups = signal(SignalKind::hangup())?;
    Ok(async move {
        while hangups.recv().await.is_some() {
            tracing::info!(path = %path.display(), "SIGHUP: reloading the configuration");
            if let Err(error) = GatewayConfig::load(&path).and_then(|c| gateway.reload(c)) {
                tracing::error!(%error, "reload failed; keeping the running configuration");
            }
        }
    })
}
