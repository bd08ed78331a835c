//! The GeoIP database in use, swapped for a new one when its file changes.
//!
//! Policy:
//! - **Lookups never wait for a reload.** A lookup clones the current `Arc<GeoIp>` under
//!   a read lock held for that clone only; a reload reads and checks the new file with
//!   no lock held and takes the write lock just to swap the `Arc`.
//! - **A change is a new modification time or length.** Tools that replace the file
//!   (rename over it) and tools that write it in place both change one of them.
//! - **A bad new file keeps the last good database**, logged once at warn with the
//!   path and the reason. The failed file's stamp is remembered, so the same bad file
//!   is not re-read and re-logged on every check; the next change is tried again.

use crate::{GeoIp, GeoIpError};
use latchkey_core::country::CountryCode;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::time::{Duration, SystemTime};

/// A [`GeoIp`] that follows its file.
#[derive(Debug)]
pub struct ReloadingGeoIp {
    path: PathBuf,
    current: RwLock<Arc<GeoIp>>,
    /// The file's stamp when last read, good or bad.
    seen: Mutex<Option<Stamp>>,
}

/// What [`ReloadingGeoIp::reload_if_changed`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reload {
    /// The file has the stamp it had at the last read.
    Unchanged,
    /// The changed file was read and is now in use.
    Reloaded,
    /// The changed file could not be used; the last good database stays (logged).
    KeptLastGood,
}

/// A file's modification time and length.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Stamp {
    modified: Option<SystemTime>,
    len: u64,
}

fn stamp(path: &Path) -> Option<Stamp> {
    let meta = std::fs::metadata(path).ok()?;
    Some(Stamp {
        modified: meta.modified().ok(),
        len: meta.len(),
    })
}

impl ReloadingGeoIp {
    /// Opens the database at `path`; an error here is a startup error.
    pub fn open(path: impl AsRef<Path>) -> Result<Self, GeoIpError> {
        let path = path.as_ref().to_owned();
        // The stamp is taken before the read: a change during the read is seen later.
        let seen = stamp(&path);
        let db = GeoIp::open(&path)?;
        Ok(Self {
            path,
            current: RwLock::new(Arc::new(db)),
            seen: Mutex::new(seen),
        })
    }

    /// The database in use now.
    pub fn current(&self) -> Arc<GeoIp> {
        self.current
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// The country `ip` is in, from the database in use now ([`GeoIp::country`]).
    pub fn country(&self, ip: IpAddr) -> Option<CountryCode> {
        self.current().country(ip)
    }

    /// The file this follows.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Reads the file again if its modification time or length changed since the last
    /// read. Never fails: a bad file is logged and the last good database stays.
    pub fn reload_if_changed(&self) -> Reload {
        let now = stamp(&self.path);
        {
            let mut seen = self.seen.lock().unwrap_or_else(PoisonError::into_inner);
            if *seen == now {
                return Reload::Unchanged;
            }
            *seen = now;
        }
        match GeoIp::open(&self.path) {
            Ok(db) => {
                tracing::info!(
                    path = %self.path.display(),
                    database_type = db.database_type(),
                    build_epoch = db.build_epoch(),
                    "GeoIP database reloaded"
                );
                *self.current.write().unwrap_or_else(PoisonError::into_inner) = Arc::new(db);
                Reload::Reloaded
            }
            Err(error) => {
                tracing::warn!(
                    path = %self.path.display(),
                    %error,
                    "GeoIP database not reloaded; the last good one stays"
                );
                Reload::KeptLastGood
            }
        }
    }

    /// Checks the file every `every` on the tokio runtime and reloads it when it
    /// changed. The read runs on the blocking pool, off the request threads. The task
    /// ends once every other `Arc` to this database is dropped.
    pub fn spawn_watch(self: Arc<Self>, every: Duration) -> tokio::task::JoinHandle<()> {
        let weak = Arc::downgrade(&self);
        drop(self);
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(every);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            tick.tick().await;
            loop {
                tick.tick().await;
                let Some(geoip) = weak.upgrade() else { return };
                let checked = tokio::task::spawn_blocking(move || geoip.reload_if_changed()).await;
                if let Err(error) = checked {
                    tracing::warn!(%error, "GeoIP reload check did not finish");
                }
            }
        })
    }
}
