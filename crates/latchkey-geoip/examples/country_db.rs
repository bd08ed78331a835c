//! Writes a country database for benchmarks (docs/BENCHMARKS.md): every IPv4 /16 in
//! one of eight countries.
//!
//!     cargo run --release -p latchkey-geoip --features test-mmdb --example country_db -- OUT

#![allow(clippy::unwrap_used, clippy::expect_used)]

use latchkey_geoip::test_mmdb::{Layout, write_country_db};
use std::net::Ipv4Addr;

const CODES: [&str; 8] = ["DE", "FR", "US", "JP", "BR", "NL", "CA", "AU"];

fn main() {
    let out = std::env::args().nth(1).expect("usage: country_db OUT");
    let owned: Vec<(String, &str)> = (0..65_536u32)
        .map(|i| {
            let net = Ipv4Addr::from(i << 16);
            (format!("{net}/16"), CODES[(i % 8) as usize])
        })
        .collect();
    let nets: Vec<(&str, &str)> = owned.iter().map(|(n, c)| (n.as_str(), *c)).collect();
    write_country_db(std::path::Path::new(&out), &nets, 6, Layout::IsoCode);
}
