//! A MaxMind DB writer for tests (feature `test-mmdb`): country databases made by the
//! test itself, in the binary format the reader expects (a search tree of 28-bit
//! records, a data section of maps and strings, and the metadata map after the
//! `\xAB\xCD\xEFMaxMind.com` marker). Test code: it panics on bad input.
//!
//! IPv4 networks in an IPv6 database are stored under `::/96`, as the format asks.
//! `::ffff:0:0/96` is not aliased to them: [`crate::GeoIp`] looks up an IPv4-mapped
//! address as IPv4 itself, and the tests show it does.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::path::Path;

/// Where a record keeps its country code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Layout {
    /// `{"country": {"iso_code": "DE"}}`, as GeoLite2 Country and DB-IP Lite.
    IsoCode,
    /// `{"country_code": "DE"}`, as some lite databases.
    CountryCode,
}

/// Writes a country database to `path`: each `(network, code)` pair maps the network
/// (`"203.0.113.0/24"`, `"2001:db8::/32"`) to the code, written as given (so tests can
/// store invalid ones). A more specific network overrides a wider one it sits in.
/// `ip_version` is 4 or 6.
pub fn write_country_db(path: &Path, networks: &[(&str, &str)], ip_version: u16, layout: Layout) {
    std::fs::write(path, country_db(networks, ip_version, layout)).unwrap();
}

/// The bytes [`write_country_db`] writes.
pub fn country_db(networks: &[(&str, &str)], ip_version: u16, layout: Layout) -> Vec<u8> {
    assert!(ip_version == 4 || ip_version == 6, "ip_version is 4 or 6");
    let mut parsed: Vec<(u128, u32, &str)> = networks
        .iter()
        .map(|(net, code)| {
            let (bits, prefix) = tree_bits(net, ip_version);
            (bits, prefix, *code)
        })
        .collect();
    // Wider networks first, so a more specific one splits the wider one's record.
    parsed.sort_by_key(|(_, prefix, _)| *prefix);

    let mut data = Vec::new();
    let mut offsets: BTreeMap<&str, u32> = BTreeMap::new();
    let mut tree = Tree::default();
    for (bits, prefix, code) in parsed {
        let offset = *offsets.entry(code).or_insert_with(|| {
            let offset = u32::try_from(data.len()).unwrap();
            write_record(&mut data, code, layout);
            offset
        });
        tree.insert(bits, prefix, offset);
    }

    let node_count = u32::try_from(tree.nodes.len()).unwrap();
    let mut out = tree.encode(node_count);
    out.extend_from_slice(&[0u8; 16]);
    out.extend_from_slice(&data);
    out.extend_from_slice(b"\xAB\xCD\xEFMaxMind.com");
    write_metadata(&mut out, node_count, ip_version);
    out
}

/// A network as the bits the tree walks (left-aligned in a u128) and how many.
fn tree_bits(net: &str, ip_version: u16) -> (u128, u32) {
    let (addr, prefix) = net.split_once('/').unwrap_or((net, ""));
    let addr: IpAddr = addr.parse().unwrap_or_else(|_| panic!("bad network {net}"));
    let max = if addr.is_ipv4() { 32 } else { 128 };
    let prefix: u32 = if prefix.is_empty() {
        max
    } else {
        prefix.parse().unwrap()
    };
    assert!(prefix >= 1 && prefix <= max, "bad prefix in {net}");
    match (addr, ip_version) {
        (IpAddr::V4(v4), 4) => (u128::from(u32::from(v4)) << 96, prefix),
        // IPv4 in an IPv6 tree: under ::/96.
        (IpAddr::V4(v4), _) => (u128::from(u32::from(v4)), prefix + 96),
        (IpAddr::V6(v6), 6) => (u128::from(v6), prefix),
        (IpAddr::V6(_), _) => panic!("an IPv4 database cannot hold {net}"),
    }
}

#[derive(Debug, Clone, Copy)]
enum Record {
    Empty,
    Node(u32),
    /// An offset into the data section.
    Data(u32),
}

/// The search tree: node 0 is the root; each node has a left (bit 0) and right record.
struct Tree {
    nodes: Vec<[Record; 2]>,
}

impl Default for Tree {
    fn default() -> Self {
        Self {
            nodes: vec![[Record::Empty; 2]],
        }
    }
}

impl Tree {
    fn insert(&mut self, bits: u128, prefix: u32, data: u32) {
        let mut node = 0usize;
        for depth in 0..prefix {
            let bit = ((bits >> (127 - depth)) & 1) as usize;
            if depth + 1 == prefix {
                self.nodes[node][bit] = Record::Data(data);
                return;
            }
            node = match self.nodes[node][bit] {
                Record::Node(next) => next as usize,
                // An empty record or a wider network's data: split it in two.
                other => {
                    let next = self.nodes.len();
                    self.nodes.push([other, other]);
                    self.nodes[node][bit] = Record::Node(u32::try_from(next).unwrap());
                    next
                }
            };
        }
    }

    /// 28-bit records: 3 bytes of the left record's low bits, a byte whose high nibble
    /// is the left record's top bits and low nibble the right's, 3 bytes of the right.
    fn encode(&self, node_count: u32) -> Vec<u8> {
        let value = |record: Record| -> u32 {
            let value = match record {
                Record::Empty => node_count,
                Record::Node(index) => index,
                Record::Data(offset) => node_count + 16 + offset,
            };
            assert!(value < 1 << 28, "the test database outgrew 28-bit records");
            value
        };
        let mut out = Vec::with_capacity(self.nodes.len() * 7);
        for [left, right] in &self.nodes {
            let (left, right) = (value(*left), value(*right));
            out.extend_from_slice(&left.to_be_bytes()[1..]);
            out.push((((left >> 24) & 0x0f) << 4 | ((right >> 24) & 0x0f)) as u8);
            out.extend_from_slice(&right.to_be_bytes()[1..]);
        }
        out
    }
}

fn write_record(out: &mut Vec<u8>, code: &str, layout: Layout) {
    map(out, 1);
    match layout {
        Layout::IsoCode => {
            string(out, "country");
            map(out, 1);
            string(out, "iso_code");
            string(out, code);
        }
        Layout::CountryCode => {
            string(out, "country_code");
            string(out, code);
        }
    }
}

fn write_metadata(out: &mut Vec<u8>, node_count: u32, ip_version: u16) {
    map(out, 9);
    string(out, "node_count");
    uint(out, UINT32, node_count.into());
    string(out, "record_size");
    uint(out, UINT16, 28);
    string(out, "ip_version");
    uint(out, UINT16, ip_version.into());
    string(out, "database_type");
    string(out, "latchkey-Test-Country");
    string(out, "languages");
    control(out, ARRAY, 1);
    string(out, "en");
    string(out, "binary_format_major_version");
    uint(out, UINT16, 2);
    string(out, "binary_format_minor_version");
    uint(out, UINT16, 0);
    string(out, "build_epoch");
    uint(out, UINT64, 1_700_000_000);
    string(out, "description");
    map(out, 1);
    string(out, "en");
    string(out, "latchkey test country database");
}

const STRING: u8 = 2;
const UINT16: u8 = 5;
const UINT32: u8 = 6;
const MAP: u8 = 7;
const UINT64: u8 = 9;
const ARRAY: u8 = 11;

/// A field's control byte: the type in the top 3 bits (0 and an extra byte of type − 7
/// for the extended types) and the size in the low 5, with 1–3 more bytes past 28.
fn control(out: &mut Vec<u8>, kind: u8, size: usize) {
    let (small, extra): (u8, Vec<u8>) = match size {
        0..29 => (size as u8, vec![]),
        29..285 => (29, vec![(size - 29) as u8]),
        285..65_821 => (
            30,
            u16::try_from(size - 285).unwrap().to_be_bytes().to_vec(),
        ),
        _ => (
            31,
            u32::try_from(size - 65_821).unwrap().to_be_bytes()[1..].to_vec(),
        ),
    };
    if kind <= 7 {
        out.push(kind << 5 | small);
    } else {
        out.push(small);
        out.push(kind - 7);
    }
    out.extend_from_slice(&extra);
}

fn map(out: &mut Vec<u8>, pairs: usize) {
    control(out, MAP, pairs);
}

fn string(out: &mut Vec<u8>, text: &str) {
    control(out, STRING, text.len());
    out.extend_from_slice(text.as_bytes());
}

/// An unsigned integer in as few big-endian bytes as it needs.
fn uint(out: &mut Vec<u8>, kind: u8, value: u64) {
    let bytes = value.to_be_bytes();
    let skip = bytes.iter().take_while(|b| **b == 0).count();
    control(out, kind, bytes.len() - skip);
    out.extend_from_slice(&bytes[skip..]);
}
