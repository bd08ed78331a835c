//! The cost of one country lookup, which a network rule adds to each request that has
//! country rules: it must stay well under one signature check.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use criterion::{Criterion, black_box, criterion_group, criterion_main};
use latchkey_geoip::test_mmdb::{Layout, write_country_db};
use latchkey_geoip::{GeoIp, ReloadingGeoIp};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// 2000::/16, under which the v6 networks sit.
const V6_BASE: u128 = 0x2000 << 112;

const CODES: [&str; 8] = ["DE", "FR", "US", "JP", "BR", "NL", "CA", "AU"];

/// About 100,000 networks, every v4 /16 and 32,768 v6 /31s: a search tree as deep
/// as a real country database's.
fn networks() -> Vec<(String, &'static str)> {
    let mut nets = Vec::new();
    for i in 0..65_536u32 {
        let v4 = Ipv4Addr::from(i << 16);
        nets.push((format!("{v4}/16"), CODES[(i % 8) as usize]));
    }
    for i in 0..32_768u128 {
        let v6 = Ipv6Addr::from(V6_BASE | (i << 97));
        nets.push((format!("{v6}/31"), CODES[(i % 7) as usize]));
    }
    nets
}

fn lookups(c: &mut Criterion) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bench.mmdb");
    let owned = networks();
    let nets: Vec<(&str, &str)> = owned.iter().map(|(n, c)| (n.as_str(), *c)).collect();
    write_country_db(&path, &nets, 6, Layout::IsoCode);
    let db = GeoIp::open(&path).unwrap();
    let reloading = ReloadingGeoIp::open(&path).unwrap();

    let v4: Vec<IpAddr> = (0..1024u32)
        .map(|i| IpAddr::V4(Ipv4Addr::from(i.wrapping_mul(2_654_435_761))))
        .collect();
    let v6: Vec<IpAddr> = (0..1024u128)
        .map(|i| {
            let network = (i * 7919 % 32_768) << 97;
            let host = u128::from(
                u64::try_from(i)
                    .unwrap()
                    .wrapping_mul(0x9e37_79b9_7f4a_7c15),
            );
            IpAddr::V6(Ipv6Addr::from(V6_BASE | network | host))
        })
        .collect();
    assert!(v4.iter().filter(|ip| db.country(**ip).is_some()).count() == 1024);
    assert!(v6.iter().filter(|ip| db.country(**ip).is_some()).count() == 1024);

    let mut i = 0usize;
    c.bench_function("country ipv4", |b| {
        b.iter(|| {
            i = (i + 1) % v4.len();
            black_box(db.country(black_box(v4[i])))
        })
    });
    c.bench_function("country ipv6", |b| {
        b.iter(|| {
            i = (i + 1) % v6.len();
            black_box(db.country(black_box(v6[i])))
        })
    });
    c.bench_function("country ipv4 through ReloadingGeoIp", |b| {
        b.iter(|| {
            i = (i + 1) % v4.len();
            black_box(reloading.country(black_box(v4[i])))
        })
    });
}

criterion_group!(benches, lookups);
criterion_main!(benches);
