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

/// What a verifier adds to a request of a tenant with a 1,000-network policy and
/// country rules (docs/API.md, "Where tokens may be used from"), the client matching
/// only the last network (the worst case of the linear scan), beside one Ed25519
/// signature check, the cost every JWT verification already pays.
fn policy_beside_a_signature(c: &mut Criterion) {
    use aws_lc_rs::signature::{ED25519, Ed25519KeyPair, KeyPair, UnparsedPublicKey};
    use latchkey_core::cidr::IpNet;
    use latchkey_core::country::CountryCode;
    use latchkey_core::network::NetworkRules;

    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bench.mmdb");
    let owned = networks();
    let nets: Vec<(&str, &str)> = owned.iter().map(|(n, c)| (n.as_str(), *c)).collect();
    write_country_db(&path, &nets, 6, Layout::IsoCode);
    let geoip = ReloadingGeoIp::open(&path).unwrap();
    let mut allow: Vec<IpNet> = (0..999u32)
        .map(|i| IpNet::parse(&format!("10.{}.{}.0/24", i / 256, i % 256)).unwrap())
        .collect();
    allow.push(IpNet::parse("198.51.100.0/24").unwrap());
    let rules = NetworkRules::new(
        Some(allow),
        vec![IpNet::parse("192.0.2.0/24").unwrap()],
        None,
        vec![CountryCode::parse("KP").unwrap()],
    );
    let client: IpAddr = "198.51.100.7".parse().unwrap();
    let lookup = |ip: IpAddr| geoip.country(ip);
    assert!(rules.admits(Some(client), Some(&lookup)).is_ok());
    c.bench_function("policy: 1,000 networks and a country rule", |b| {
        b.iter(|| black_box(rules.admits(black_box(Some(client)), Some(&lookup))))
    });

    let rng = aws_lc_rs::rand::SystemRandom::new();
    let pkcs8 = Ed25519KeyPair::generate_pkcs8(&rng).unwrap();
    let pair = Ed25519KeyPair::from_pkcs8(pkcs8.as_ref()).unwrap();
    let message = [7u8; 200];
    let signature = pair.sign(&message);
    let public = UnparsedPublicKey::new(&ED25519, pair.public_key().as_ref().to_vec());
    c.bench_function("one Ed25519 signature check", |b| {
        b.iter(|| black_box(public.verify(black_box(&message), signature.as_ref())))
    });
}

criterion_group!(benches, lookups, policy_beside_a_signature);
criterion_main!(benches);
