//! The reader against databases written by [`crate::test_mmdb`], and the `maxminddb`
//! crate against the same files: the writer and the reader prove each other.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use crate::test_mmdb::{Layout, country_db, write_country_db};
use crate::{GeoIp, GeoIpError, Reload, ReloadingGeoIp};
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

const NETWORKS: &[(&str, &str)] = &[
    ("203.0.113.0/24", "DE"),
    ("198.51.100.0/24", "FR"),
    ("198.51.100.128/25", "NL"),
    ("10.0.0.0/8", "US"),
    ("2001:db8::/32", "JP"),
    ("2001:db8:abcd::/48", "BR"),
];

fn ip(text: &str) -> IpAddr {
    text.parse().unwrap()
}

fn country(db: &GeoIp, text: &str) -> Option<String> {
    db.country(ip(text)).map(|c| c.to_string())
}

fn db_file(
    dir: &tempfile::TempDir,
    networks: &[(&str, &str)],
    ip_version: u16,
    layout: Layout,
) -> PathBuf {
    let path = dir.path().join("country.mmdb");
    write_country_db(&path, networks, ip_version, layout);
    path
}

#[test]
fn ipv4_and_ipv6_networks_in_an_ipv6_database() {
    for layout in [Layout::IsoCode, Layout::CountryCode] {
        let dir = tempfile::tempdir().unwrap();
        let db = GeoIp::open(db_file(&dir, NETWORKS, 6, layout)).unwrap();
        assert_eq!(
            country(&db, "203.0.113.1").as_deref(),
            Some("DE"),
            "{layout:?}"
        );
        assert_eq!(country(&db, "203.0.113.255").as_deref(), Some("DE"));
        assert_eq!(country(&db, "198.51.100.1").as_deref(), Some("FR"));
        // The more specific network wins inside the wider one, only inside it.
        assert_eq!(country(&db, "198.51.100.200").as_deref(), Some("NL"));
        assert_eq!(country(&db, "198.51.100.127").as_deref(), Some("FR"));
        assert_eq!(country(&db, "10.200.3.4").as_deref(), Some("US"));
        assert_eq!(country(&db, "2001:db8::1").as_deref(), Some("JP"));
        assert_eq!(country(&db, "2001:db8:abcd:1::9").as_deref(), Some("BR"));
        assert_eq!(country(&db, "2001:db8:abce::1").as_deref(), Some("JP"));
        // The IPv4 networks live under ::/96 in the IPv6 tree.
        assert_eq!(country(&db, "::203.0.113.7").as_deref(), Some("DE"));
    }
}

#[test]
fn addresses_the_database_does_not_know_are_no_country() {
    let dir = tempfile::tempdir().unwrap();
    let db = GeoIp::open(db_file(&dir, NETWORKS, 6, Layout::IsoCode)).unwrap();
    for unknown in [
        "203.0.114.1",
        "192.0.2.1",
        "127.0.0.1",
        "11.0.0.0",
        "2001:db9::1",
        "::1",
        "fe80::1",
    ] {
        assert_eq!(country(&db, unknown), None, "{unknown}");
    }
}

#[test]
fn an_ipv4_mapped_address_is_looked_up_as_ipv4() {
    let dir = tempfile::tempdir().unwrap();
    let path = db_file(&dir, NETWORKS, 6, Layout::IsoCode);
    let db = GeoIp::open(&path).unwrap();
    assert_eq!(country(&db, "::ffff:203.0.113.9").as_deref(), Some("DE"));
    assert_eq!(country(&db, "::ffff:192.0.2.1"), None);
    // The crate itself walks ::ffff:0:0/96 literally, where this database (like any
    // that does not alias it) has nothing: the canonicalisation is ours.
    let raw = maxminddb::Reader::open_readfile(&path).unwrap();
    assert!(!raw.lookup(ip("::ffff:203.0.113.9")).unwrap().has_data());
    assert!(raw.lookup(ip("203.0.113.9")).unwrap().has_data());
}

#[test]
fn an_ipv4_database_answers_ipv4_and_no_country_for_ipv6() {
    let dir = tempfile::tempdir().unwrap();
    let v4_only: Vec<(&str, &str)> = NETWORKS
        .iter()
        .copied()
        .filter(|(n, _)| !n.contains(':'))
        .collect();
    let db = GeoIp::open(db_file(&dir, &v4_only, 4, Layout::CountryCode)).unwrap();
    assert_eq!(country(&db, "203.0.113.1").as_deref(), Some("DE"));
    assert_eq!(country(&db, "198.51.100.129").as_deref(), Some("NL"));
    assert_eq!(country(&db, "::ffff:10.1.1.1").as_deref(), Some("US"));
    assert_eq!(country(&db, "2001:db8::1"), None);
    assert_eq!(country(&db, "192.0.2.1"), None);
}

#[test]
fn values_that_are_not_assigned_codes_are_no_country() {
    let dir = tempfile::tempdir().unwrap();
    let networks = [
        ("192.0.2.0/26", "de"),
        ("192.0.2.64/26", "XK"),
        ("192.0.2.128/26", "EU"),
        ("192.0.2.192/26", ""),
        ("203.0.113.0/24", "DEU"),
        ("198.51.100.0/24", "CH"),
    ];
    let db = GeoIp::open(db_file(&dir, &networks, 6, Layout::IsoCode)).unwrap();
    for addr in [
        "192.0.2.1",
        "192.0.2.65",
        "192.0.2.129",
        "192.0.2.193",
        "203.0.113.1",
    ] {
        assert_eq!(country(&db, addr), None, "{addr}");
    }
    assert_eq!(country(&db, "198.51.100.1").as_deref(), Some("CH"));
}

#[test]
fn the_files_open_with_the_maxminddb_crate_and_carry_the_metadata() {
    for (ip_version, layout, path) in [
        (6, Layout::IsoCode, &["country", "iso_code"][..]),
        (6, Layout::CountryCode, &["country_code"][..]),
        (4, Layout::IsoCode, &["country", "iso_code"][..]),
    ] {
        let networks: Vec<(&str, &str)> = NETWORKS
            .iter()
            .copied()
            .filter(|(n, _)| ip_version == 6 || !n.contains(':'))
            .collect();
        let reader =
            maxminddb::Reader::from_source(country_db(&networks, ip_version, layout)).unwrap();
        reader.verify().unwrap();
        let meta = reader.metadata();
        assert_eq!(meta.ip_version, ip_version);
        assert_eq!(meta.record_size, 28);
        assert_eq!(
            (
                meta.binary_format_major_version,
                meta.binary_format_minor_version
            ),
            (2, 0)
        );
        assert_eq!(meta.database_type, "latchkey-Test-Country");
        assert_eq!(meta.languages, ["en"]);
        assert_eq!(meta.build_epoch, 1_700_000_000);
        assert_eq!(
            meta.description.get("en").map(String::as_str),
            Some("latchkey test country database")
        );
        assert!(meta.node_count > 32);
        let elements: Vec<maxminddb::PathElement<'_>> = path
            .iter()
            .map(|k| maxminddb::PathElement::Key(k))
            .collect();
        let result = reader.lookup(ip("198.51.100.130")).unwrap();
        assert_eq!(result.decode_path::<&str>(&elements).unwrap(), Some("NL"));
        assert_eq!(result.network().unwrap().to_string(), "198.51.100.128/25");
        assert!(!reader.lookup(ip("192.0.2.1")).unwrap().has_data());
    }
}

#[test]
fn an_empty_database_knows_no_address() {
    let dir = tempfile::tempdir().unwrap();
    let db = GeoIp::open(db_file(&dir, &[], 6, Layout::IsoCode)).unwrap();
    assert_eq!(country(&db, "203.0.113.1"), None);
    assert_eq!(country(&db, "2001:db8::1"), None);
}

#[test]
fn a_missing_file_is_a_read_error_naming_the_path() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("absent.mmdb");
    let error = GeoIp::open(&path).unwrap_err();
    assert!(matches!(error, GeoIpError::Read { .. }), "{error:?}");
    let message = error.to_string();
    assert!(
        message.starts_with(&format!(
            "cannot read the GeoIP database file {}: ",
            path.display()
        )),
        "{message}"
    );
    let error = ReloadingGeoIp::open(&path).unwrap_err();
    assert!(matches!(error, GeoIpError::Read { .. }), "{error:?}");
}

fn assert_invalid(path: &Path) -> String {
    let error = GeoIp::open(path).unwrap_err();
    let message = error.to_string();
    assert!(matches!(error, GeoIpError::Invalid { .. }), "{error:?}");
    let prefix = format!(
        "the GeoIP database file {} is not a valid MaxMind DB: ",
        path.display()
    );
    assert!(message.starts_with(&prefix), "{message}");
    message[prefix.len()..].to_owned()
}

#[test]
fn corrupt_files_are_refused_with_the_path_and_the_reason() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bad.mmdb");
    let good = country_db(NETWORKS, 6, Layout::IsoCode);

    // Not a database at all, and an empty file.
    std::fs::write(&path, b"this is a CSV file, not a MaxMind DB\n").unwrap();
    assert!(!assert_invalid(&path).is_empty());
    std::fs::write(&path, b"").unwrap();
    assert!(!assert_invalid(&path).is_empty());

    // Cut short: the metadata is gone.
    std::fs::write(&path, &good[..good.len() / 2]).unwrap();
    assert_invalid(&path);

    // The metadata is intact but the root points far past the search tree.
    let mut bad_tree = good.clone();
    bad_tree[..7].fill(0xff);
    std::fs::write(&path, &bad_tree).unwrap();
    assert_invalid(&path);

    // A data value's control byte says it is longer than the data section.
    let tree_len = good.windows(16).position(|w| w == [0u8; 16]).unwrap();
    let mut bad_data = good.clone();
    bad_data[tree_len + 16] = 0xff;
    std::fs::write(&path, &bad_data).unwrap();
    assert_invalid(&path);

    // A directory where the file should be.
    let error = GeoIp::open(dir.path()).unwrap_err();
    assert!(matches!(error, GeoIpError::Read { .. }), "{error:?}");
}

/// Replaces the file and moves its modification time, so the change is seen even on a
/// file system with coarse timestamps.
fn replace(path: &Path, bytes: &[u8], age: u64) {
    std::fs::write(path, bytes).unwrap();
    let file = std::fs::File::options().write(true).open(path).unwrap();
    file.set_modified(SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000 + age))
        .unwrap();
}

#[test]
fn a_changed_file_is_reloaded_and_an_unchanged_one_is_not() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("country.mmdb");
    replace(
        &path,
        &country_db(&[("203.0.113.0/24", "DE")], 6, Layout::IsoCode),
        1,
    );
    let geoip = ReloadingGeoIp::open(&path).unwrap();
    let before = geoip.current();
    assert_eq!(
        geoip
            .country(ip("203.0.113.1"))
            .map(|c| c.to_string())
            .as_deref(),
        Some("DE")
    );
    assert_eq!(geoip.reload_if_changed(), Reload::Unchanged);

    // The same length, another country: the modification time tells.
    replace(
        &path,
        &country_db(&[("203.0.113.0/24", "AT")], 6, Layout::IsoCode),
        2,
    );
    assert_eq!(geoip.reload_if_changed(), Reload::Reloaded);
    assert_eq!(
        geoip
            .country(ip("203.0.113.1"))
            .map(|c| c.to_string())
            .as_deref(),
        Some("AT")
    );
    assert_eq!(geoip.reload_if_changed(), Reload::Unchanged);
    // A lookup that held the old database keeps answering from it.
    assert_eq!(
        before
            .country(ip("203.0.113.1"))
            .map(|c| c.to_string())
            .as_deref(),
        Some("DE")
    );

    // Another layout and more networks, with the old modification time: the length tells.
    replace(&path, &country_db(NETWORKS, 6, Layout::CountryCode), 2);
    assert_eq!(geoip.reload_if_changed(), Reload::Reloaded);
    assert_eq!(
        geoip
            .country(ip("2001:db8::1"))
            .map(|c| c.to_string())
            .as_deref(),
        Some("JP")
    );
    assert_eq!(
        geoip
            .country(ip("203.0.113.1"))
            .map(|c| c.to_string())
            .as_deref(),
        Some("DE")
    );
}

#[test]
fn a_bad_replacement_keeps_the_last_good_database_until_a_good_one_comes() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("country.mmdb");
    let good = country_db(NETWORKS, 6, Layout::IsoCode);
    replace(&path, &good, 1);
    let geoip = ReloadingGeoIp::open(&path).unwrap();

    // Half written.
    replace(&path, &good[..good.len() - 40], 2);
    assert_eq!(geoip.reload_if_changed(), Reload::KeptLastGood);
    assert_eq!(
        geoip
            .country(ip("203.0.113.1"))
            .map(|c| c.to_string())
            .as_deref(),
        Some("DE")
    );
    // The same bad file is not read again.
    assert_eq!(geoip.reload_if_changed(), Reload::Unchanged);

    // Removed.
    std::fs::remove_file(&path).unwrap();
    assert_eq!(geoip.reload_if_changed(), Reload::KeptLastGood);
    assert_eq!(
        geoip
            .country(ip("2001:db8::1"))
            .map(|c| c.to_string())
            .as_deref(),
        Some("JP")
    );
    assert_eq!(geoip.reload_if_changed(), Reload::Unchanged);

    // Garbage.
    replace(&path, b"garbage", 3);
    assert_eq!(geoip.reload_if_changed(), Reload::KeptLastGood);
    assert_eq!(
        geoip
            .country(ip("10.0.0.1"))
            .map(|c| c.to_string())
            .as_deref(),
        Some("US")
    );

    // A good file again.
    replace(
        &path,
        &country_db(&[("10.0.0.0/8", "CA")], 6, Layout::IsoCode),
        4,
    );
    assert_eq!(geoip.reload_if_changed(), Reload::Reloaded);
    assert_eq!(
        geoip
            .country(ip("10.0.0.1"))
            .map(|c| c.to_string())
            .as_deref(),
        Some("CA")
    );
    assert_eq!(geoip.country(ip("203.0.113.1")), None);
}

#[tokio::test]
async fn the_watch_reloads_a_changed_file_and_ends_with_its_database() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("country.mmdb");
    replace(
        &path,
        &country_db(&[("203.0.113.0/24", "DE")], 6, Layout::IsoCode),
        1,
    );
    let geoip = Arc::new(ReloadingGeoIp::open(&path).unwrap());
    let watch = Arc::clone(&geoip).spawn_watch(Duration::from_millis(20));

    replace(
        &path,
        &country_db(&[("203.0.113.0/24", "PL")], 6, Layout::IsoCode),
        2,
    );
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while geoip
        .country(ip("203.0.113.1"))
        .map(|c| c.to_string())
        .as_deref()
        != Some("PL")
    {
        assert!(tokio::time::Instant::now() < deadline, "never reloaded");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }

    drop(geoip);
    tokio::time::timeout(Duration::from_secs(10), watch)
        .await
        .unwrap()
        .unwrap();
}
