//! Countries for the network rules of a tenant policy: which country an address is in,
//! from a MaxMind DB file the operator supplies (`geoip_database_file`;
//! docs/DEPLOYMENT.md, "GeoIP database").
//!
//! Policy:
//! - **The whole file is read into memory and checked at open.** A file that is missing,
//!   is not a MaxMind DB, or whose search tree or data section is damaged is refused
//!   with an error naming the path, so a bad file stops a start instead of answering
//!   wrongly later.
//! - **Two layouts.** A record's country is `country.iso_code` (GeoLite2 and DB-IP
//!   style) or a top-level `country_code` (some lite databases).
//! - **Unknown is no country.** An address the database does not know, a record with
//!   neither field, or a value that is not an assigned code (`XK`, `EU`, lowercase)
//!   answers `None`: it matches no country rule, allow or deny.
//! - **IPv4 everywhere.** An IPv4 address is found in an IPv6 database (the IPv4
//!   networks live under `::/96`), and an IPv4-mapped IPv6 address (`::ffff:a.b.c.d`,
//!   what a dual-stack socket reports) is looked up as the IPv4 address it carries.
//! - **Reloaded without a restart.** [`ReloadingGeoIp`] swaps in a changed file and keeps
//!   the last good database when the new one is bad.

mod reload;
#[cfg(feature = "test-mmdb")]
pub mod test_mmdb;
#[cfg(test)]
mod tests;

pub use reload::{Reload, ReloadingGeoIp};

use latchkey_core::country::CountryCode;
use maxminddb::{MaxMindDbError, PathElement, Reader};
use std::fmt;
use std::net::IpAddr;
use std::path::{Path, PathBuf};

/// Why a GeoIP database could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum GeoIpError {
    /// The file could not be read (missing, a directory, no permission).
    #[error("cannot read the GeoIP database file {}: {source}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// What the operating system said.
        source: std::io::Error,
    },
    /// The file was read but is not a usable MaxMind DB.
    #[error("the GeoIP database file {} is not a valid MaxMind DB: {reason}", path.display())]
    Invalid {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
}

/// One opened country database, in memory.
pub struct GeoIp {
    reader: Reader<Vec<u8>>,
    path: PathBuf,
}

/// `country.iso_code`: GeoLite2 Country and DB-IP Lite.
const ISO_CODE: [PathElement<'static>; 2] =
    [PathElement::Key("country"), PathElement::Key("iso_code")];
/// A top-level `country_code`.
const COUNTRY_CODE: [PathElement<'static>; 1] = [PathElement::Key("country_code")];

impl GeoIp {
    /// Reads the MaxMind DB at `path` and checks all of it: its metadata, its search
    /// tree and every value in its data section.
    pub fn open(path: impl AsRef<Path>) -> Result<Self, GeoIpError> {
        let path = path.as_ref();
        let bytes = std::fs::read(path).map_err(|source| GeoIpError::Read {
            path: path.to_owned(),
            source,
        })?;
        let invalid = |error: MaxMindDbError| GeoIpError::Invalid {
            path: path.to_owned(),
            reason: error.to_string(),
        };
        let reader = Reader::from_source(bytes).map_err(invalid)?;
        reader.verify().map_err(invalid)?;
        Ok(Self {
            reader,
            path: path.to_owned(),
        })
    }

    /// The country `ip` is in, or `None` when the database does not say (see the
    /// module's policy).
    pub fn country(&self, ip: IpAddr) -> Option<CountryCode> {
        let result = self.reader.lookup(ip.to_canonical()).ok()?;
        if !result.has_data() {
            return None;
        }
        let code: &str = match result.decode_path(&ISO_CODE) {
            Ok(Some(code)) => code,
            _ => result.decode_path(&COUNTRY_CODE).ok()??,
        };
        CountryCode::parse(code).ok()
    }

    /// The file this database was read from.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The database's own name for its kind, e.g. `GeoLite2-Country`.
    pub fn database_type(&self) -> &str {
        &self.reader.metadata().database_type
    }

    /// When the database was built, in seconds since the Unix epoch.
    pub fn build_epoch(&self) -> u64 {
        self.reader.metadata().build_epoch
    }
}

impl fmt::Debug for GeoIp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GeoIp")
            .field("path", &self.path)
            .field("database_type", &self.database_type())
            .field("build_epoch", &self.build_epoch())
            .finish_non_exhaustive()
    }
}
