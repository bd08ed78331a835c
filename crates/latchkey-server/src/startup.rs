//! Building and running the server: open the store, load the pepper, create the system
//! tenant and root key on first start, bind the listener.

use crate::config::Config;
use crate::keyfile;
use crate::router;
use crate::state::{AppState, Settings};
use anyhow::Context;
use latchkey_core::audit::AuditContext;
use latchkey_core::permission::ADMIN;
use latchkey_core::secret::{Secret, SecretCodec, SecretPrefix, SecretType};
use latchkey_core::store::Tenant;
use latchkey_core::token::{Owner, Token, TokenKind, TokenName, TokenRecord};
use latchkey_core::{Permission, TenantId, TokenId};
use latchkey_store::StoreOptions;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use tokio::net::TcpListener;

/// A built server, bound and ready to run.
pub struct Application {
    listener: TcpListener,
    state: AppState,
    root_key: Option<Secret>,
    public_url: String,
}

impl Application {
    /// Opens the store (running migrations), loads or creates the server secrets,
    /// bootstraps the system tenant, and binds `config.listen`.
    pub async fn build(config: Config) -> anyhow::Result<Self> {
        std::fs::create_dir_all(&config.data_dir)
            .with_context(|| format!("creating data directory {}", config.data_dir.display()))?;
        let pepper = keyfile::load_or_create(&config.pepper_path(), "pepper")?;
        keyfile::load_or_create(&config.master_key_path(), "master key")?;
        let prefix = SecretPrefix::parse(&config.secret_prefix)
            .map_err(|e| anyhow::anyhow!("secret_prefix {e}"))?;
        let store_options = StoreOptions {
            max_connections: config.database_max_connections.max(1),
            ..StoreOptions::default()
        };
        let store = latchkey_store::connect(&config.database_url(), &store_options)
            .await
            .map_err(|e| anyhow::anyhow!("opening the database: {e:?}"))?;
        let listener = TcpListener::bind(config.listen)
            .await
            .with_context(|| format!("binding {}", config.listen))?;
        let local = listener.local_addr()?;
        let public_url = config
            .public_url
            .clone()
            .unwrap_or_else(|| format!("http://{local}"))
            .trim_end_matches('/')
            .to_owned();
        let settings = Settings {
            public_url: public_url.clone(),
            default_access_token_ttl_seconds: config.default_access_token_ttl_seconds,
            max_access_token_ttl_seconds: config.max_access_token_ttl_seconds,
        };
        let state = AppState::new(Arc::new(store), SecretCodec::new(prefix, &pepper), settings);
        let root_key = bootstrap(&state).await?;
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

    /// The public URL.
    pub fn public_url(&self) -> &str {
        &self.public_url
    }

    /// The root key, on the first start only.
    pub fn root_key(&self) -> Option<&Secret> {
        self.root_key.as_ref()
    }

    /// The shared state, for tests that call the router directly.
    pub fn state(&self) -> AppState {
        self.state.clone()
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
        let app = router(self.state).into_make_service_with_connect_info::<SocketAddr>();
        tracing::info!("listening on http://{}", self.listener.local_addr()?);
        axum::serve(self.listener, app)
            .with_graceful_shutdown(shutdown)
            .await
    }
}

/// Creates the system tenant and its root api key (holding `latchkey:admin`) unless the
/// tenant exists. Returns the key when it was created.
async fn bootstrap(state: &AppState) -> anyhow::Result<Option<Secret>> {
    let now = state.now();
    let id = TokenId::generate(state.rng())?;
    let issued = state
        .codec()
        .generate(SecretType::ApiKey, id, state.rng())?;
    let system = Tenant {
        id: TenantId::system(),
        name: "latchkey".to_owned(),
        created_at: now,
    };
    let root = TokenRecord {
        token: Token {
            id,
            kind: TokenKind::ApiKey,
            owner: Owner::Tenant {
                tenant_id: TenantId::system(),
            },
            name: TokenName::parse("root").map_err(|e| anyhow::anyhow!(e))?,
            roles: Vec::new(),
            permissions: vec![Permission::parse(ADMIN).map_err(|e| anyhow::anyhow!(e))?],
            created_by: None,
            created_at: now,
            expires_at: None,
            revoked_at: None,
            last_used_at: None,
            last_used_ip: None,
            ip_allowlist: Vec::new(),
            access_token_ttl_seconds: state.settings().default_access_token_ttl_seconds,
            refresh_tokens: false,
            secret_hint: Some(issued.secret.hint()),
        },
        secret: Some(issued.stored),
    };
    let created = state
        .store()
        .bootstrap(&system, &root, &AuditContext::system(now))
        .await
        .map_err(|e| anyhow::anyhow!("bootstrapping the system tenant: {e:?}"))?;
    Ok(created.then_some(issued.secret))
}
