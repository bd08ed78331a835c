//! Everything that differs between SQLite and PostgreSQL: how to connect, how many
//! connections write, and which migrations to run.

use crate::error::from_sqlx;
use crate::sql::SqlStore;
use latchkey_core::audit::AuditMacKey;
use latchkey_core::store::{StoreError, StoreResult};
use sqlx::Executor;
use sqlx::any::{AnyConnectOptions, AnyPoolOptions, install_default_drivers};
use sqlx::migrate::Migrator;
use sqlx::sqlite::SqliteConnectOptions;
use std::str::FromStr;
use std::time::Duration;

static SQLITE_MIGRATIONS: Migrator = sqlx::migrate!("migrations/sqlite");
static POSTGRES_MIGRATIONS: Migrator = sqlx::migrate!("migrations/postgres");

/// The database behind a store.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// An embedded SQLite file in WAL mode.
    Sqlite,
    /// A PostgreSQL server.
    Postgres,
}

impl Backend {
    /// The backend behind an open connection.
    pub(crate) fn of_connection(conn: &sqlx::AnyConnection) -> Self {
        if conn.backend_name().eq_ignore_ascii_case("sqlite") {
            Self::Sqlite
        } else {
            Self::Postgres
        }
    }

    /// The backend a database URL names.
    pub fn of_url(url: &str) -> StoreResult<Self> {
        if url.starts_with("sqlite:") {
            Ok(Self::Sqlite)
        } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            Ok(Self::Postgres)
        } else {
            Err(StoreError::Internal(
                "database URL must start with sqlite: or postgres://".to_owned(),
            ))
        }
    }
}

/// Pool sizing.
#[derive(Debug, Clone)]
pub struct StoreOptions {
    /// Connections for reads (and, on PostgreSQL, writes).
    pub max_connections: u32,
    /// How long a request waits for a connection before the store reports unavailable.
    pub acquire_timeout: Duration,
}

impl Default for StoreOptions {
    fn default() -> Self {
        Self {
            max_connections: 8,
            acquire_timeout: Duration::from_secs(5),
        }
    }
}

/// Connects to `url`, runs the backend's migrations and returns the store, which signs
/// the audit events it appends with `audit_key`.
pub async fn connect(
    url: &str,
    options: &StoreOptions,
    audit_key: AuditMacKey,
) -> StoreResult<SqlStore> {
    install_default_drivers();
    let backend = Backend::of_url(url)?;
    let connect_options =
        AnyConnectOptions::from_str(url).map_err(|e| StoreError::Internal(e.to_string()))?;
    match backend {
        Backend::Sqlite => {
            create_sqlite_file(url)?;
            // synchronous = FULL: an acknowledged write (a revocation above all) survives
            // power loss, at ~130 µs a commit; the hot paths batch their writes.
            // SQLite has one writer at a time; a single writing connection turns lock
            // contention into an orderly queue, and readers work beside it under WAL.
            let writer = sqlite_pool(1, options)
                .connect_with(connect_options.clone())
                .await
                .map_err(from_sqlx)?;
            writer
                .execute("PRAGMA journal_mode = WAL")
                .await
                .map_err(from_sqlx)?;
            SQLITE_MIGRATIONS
                .run(&writer)
                .await
                .map_err(|e| StoreError::Internal(e.to_string()))?;
            let reader = sqlite_pool(options.max_connections, options)
                .connect_with(connect_options)
                .await
                .map_err(from_sqlx)?;
            Ok(SqlStore::new(writer, reader, audit_key))
        }
        Backend::Postgres => {
            let pool = AnyPoolOptions::new()
                .max_connections(options.max_connections)
                .acquire_timeout(options.acquire_timeout)
                .connect_with(connect_options)
                .await
                .map_err(from_sqlx)?;
            POSTGRES_MIGRATIONS
                .run(&pool)
                .await
                .map_err(|e| StoreError::Internal(e.to_string()))?;
            let mut store = SqlStore::new(pool.clone(), pool, audit_key);
            store.one_pool = true;
            Ok(store)
        }
    }
}

/// Creates the SQLite database file of `url` readable and writable by its owner only
/// (0600, whatever the umask), before SQLite would create it 0644. SQLite gives the
/// `-wal` and `-shm` files it creates beside it the database file's mode, so they are
/// owner-only too (docs/DEPLOYMENT.md, "File permissions"). An existing file is left as
/// it is, with a warning when others may read it; an in-memory database, or a URL that
/// does not ask for creation (`mode=rwc`), is left to SQLite.
fn create_sqlite_file(url: &str) -> StoreResult<()> {
    let (database, query) = url.split_once('?').unwrap_or((url, ""));
    let mode = query
        .split('&')
        .filter_map(|pair| pair.strip_prefix("mode="))
        .next_back();
    let in_memory = database
        .trim_start_matches("sqlite:")
        .trim_start_matches("//")
        == ":memory:";
    if mode != Some("rwc") || in_memory {
        return Ok(());
    }
    let options = SqliteConnectOptions::from_str(url).map_err(from_sqlx)?;
    let path = options.get_filename();
    create_private_file(path).map_err(|error| {
        StoreError::Internal(format!(
            "creating the database file {}: {error}",
            path.display()
        ))
    })
}

#[cfg(unix)]
fn create_private_file(path: &std::path::Path) -> std::io::Result<()> {
    use std::fs::{OpenOptions, Permissions};
    use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
    match OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
    {
        // The mode given to open() is cut by the umask; this one is not.
        Ok(file) => file.set_permissions(Permissions::from_mode(0o600)),
        Err(error) if error.kind() == std::io::ErrorKind::AlreadyExists => {
            let mode = std::fs::metadata(path)?.permissions().mode() & 0o777;
            if mode & 0o077 != 0 {
                tracing::warn!(
                    path = %path.display(),
                    mode = format!("{mode:03o}"),
                    "the database file is open to group or others; `chmod 600` it and its \
                     -wal and -shm files"
                );
            }
            Ok(())
        }
        Err(error) => Err(error),
    }
}

#[cfg(not(unix))]
fn create_private_file(_path: &std::path::Path) -> std::io::Result<()> {
    Ok(())
}

fn sqlite_pool(size: u32, options: &StoreOptions) -> AnyPoolOptions {
    AnyPoolOptions::new()
        .max_connections(size)
        .acquire_timeout(options.acquire_timeout)
        .after_connect(|connection, _| {
            Box::pin(async move {
                connection
                    .execute(
                        "PRAGMA foreign_keys = ON; PRAGMA busy_timeout = 5000; \
                         PRAGMA synchronous = FULL;",
                    )
                    .await?;
                Ok(())
            })
        })
}

/// Calls `wake` whenever any replica commits a revocation, through PostgreSQL
/// LISTEN/NOTIFY (the trigger of migration 0003). Reconnects after a failure, waking once
/// more so followers re-read what they may have missed. On SQLite there is one server
/// process, which wakes its own feed, so this returns `None`.
pub fn spawn_revocation_listener(
    url: &str,
    wake: impl Fn() + Send + Sync + 'static,
) -> Option<tokio::task::JoinHandle<()>> {
    if Backend::of_url(url).ok()? != Backend::Postgres {
        return None;
    }
    let url = url.to_owned();
    Some(tokio::spawn(async move {
        loop {
            match sqlx::postgres::PgListener::connect(&url).await {
                Ok(mut listener) => {
                    if listener.listen("latchkey_revocations").await.is_ok() {
                        wake();
                        while listener.recv().await.is_ok() {
                            wake();
                        }
                    }
                }
                Err(error) => tracing::warn!(%error, "revocation listener cannot connect"),
            }
            tokio::time::sleep(Duration::from_secs(1)).await;
            wake();
        }
    }))
}

/// Why a backup was not taken.
#[derive(Debug, thiserror::Error)]
pub enum BackupError {
    /// PostgreSQL is backed up with its own tools.
    #[error(
        "latchkey backup copies SQLite databases; back up PostgreSQL with pg_dump (docs/OPERATIONS.md, \"Backups\")"
    )]
    Postgres,
    /// The target exists: a backup never overwrites.
    #[error("{0} exists; latchkey backup never overwrites a file")]
    Exists(String),
    /// The database could not be opened or copied.
    #[error("{0}")]
    Failed(String),
}

/// Copies the SQLite database at `url` to the new file `to` with `VACUUM INTO`: one
/// read transaction, so the copy is consistent while a server writes, and every
/// transaction committed before it began is in it (docs/OPERATIONS.md, "Backups").
/// `to` is created owner-only (0600) and must not exist. Returns the copy's size.
pub async fn backup_sqlite(url: &str, to: &std::path::Path) -> Result<u64, BackupError> {
    use sqlx::{ConnectOptions, Connection};
    if Backend::of_url(url).map_err(|e| BackupError::Failed(e.to_string()))? == Backend::Postgres {
        return Err(BackupError::Postgres);
    }
    let (database, _) = url.split_once('?').unwrap_or((url, ""));
    let source = database
        .trim_start_matches("sqlite://")
        .trim_start_matches("sqlite:");
    if !std::path::Path::new(source).is_file() {
        return Err(BackupError::Failed(format!("no database at {source}")));
    }
    if to.exists() {
        return Err(BackupError::Exists(to.display().to_string()));
    }
    // Created empty first, 0600, refusing a file that appeared meanwhile; VACUUM INTO
    // then fills the empty file and keeps its mode.
    create_new_private(to).map_err(|error| match error.kind() {
        std::io::ErrorKind::AlreadyExists => BackupError::Exists(to.display().to_string()),
        _ => BackupError::Failed(format!("creating {}: {error}", to.display())),
    })?;
    let copied = async {
        let mut connection = sqlx::sqlite::SqliteConnectOptions::new()
            .filename(source)
            .read_only(true)
            .busy_timeout(Duration::from_secs(30))
            .connect()
            .await?;
        sqlx::query("VACUUM INTO ?")
            .bind(to.to_string_lossy().into_owned())
            .execute(&mut connection)
            .await?;
        connection.close().await
    }
    .await;
    if let Err(error) = copied {
        let _ = std::fs::remove_file(to);
        return Err(BackupError::Failed(format!(
            "copying the database: {error}"
        )));
    }
    std::fs::metadata(to)
        .map(|m| m.len())
        .map_err(|e| BackupError::Failed(e.to_string()))
}

#[cfg(unix)]
fn create_new_private(path: &std::path::Path) -> std::io::Result<()> {
    use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
    let file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)?;
    file.set_permissions(std::fs::Permissions::from_mode(0o600))
}

#[cfg(not(unix))]
fn create_new_private(path: &std::path::Path) -> std::io::Result<()> {
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(path)
        .map(|_| ())
}
