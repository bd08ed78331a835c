//! IP networks for token allowlists (`203.0.113.0/24`, `2001:db8::/32`, or a bare address).

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::fmt;
use std::net::IpAddr;

use crate::ids::FieldError;

/// An IP network in CIDR notation with no host bits set.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct IpNet {
    addr: IpAddr,
    prefix: u8,
}

impl IpNet {
    /// Parses `ADDR/PREFIX` or a bare address (a single-host network).
    pub fn parse(text: &str) -> Result<Self, FieldError> {
        let invalid = || FieldError(format!("`{text}` is not an IP address or CIDR network"));
        let (addr_text, prefix_text) = match text.split_once('/') {
            Some((addr, prefix)) => (addr, Some(prefix)),
            None => (text, None),
        };
        let addr: IpAddr = addr_text.parse().map_err(|_| invalid())?;
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix_text {
            None => max,
            Some(p) if !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()) => {
                p.parse::<u8>().map_err(|_| invalid())?
            }
            Some(_) => return Err(invalid()),
        };
        if prefix > max {
            return Err(FieldError(format!(
                "`{text}` has a prefix longer than {max}"
            )));
        }
        let net = Self { addr, prefix };
        if net.masked(addr) != bits(addr) {
            return Err(FieldError(format!("`{text}` has host bits set")));
        }
        Ok(net)
    }

    /// True when `ip` lies in this network. IPv4-mapped IPv6 addresses match IPv4 networks.
    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = match ip {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map(IpAddr::V4).unwrap_or(ip),
            v4 => v4,
        };
        ip.is_ipv4() == self.addr.is_ipv4() && self.masked(ip) == bits(self.addr)
    }

    /// True when every address of `other` lies in this network.
    pub fn covers(&self, other: &IpNet) -> bool {
        self.prefix <= other.prefix
            && self.addr.is_ipv4() == other.addr.is_ipv4()
            && self.contains(other.addr)
    }

    fn masked(&self, ip: IpAddr) -> u128 {
        let width = if ip.is_ipv4() { 32 } else { 128 };
        let host_bits = u32::from(width - self.prefix);
        let mask = if host_bits >= 128 {
            0
        } else {
            u128::MAX << host_bits
        };
        bits(ip) & mask
    }
}

/// A set of networks that answers membership with one hash lookup per distinct prefix
/// length of the address's family, however many networks it holds: a tenant's 1,000
/// networks cost what two or three do (docs/BENCHMARKS.md, "Network and country rules").
#[derive(Debug, Clone, Default)]
pub struct NetSet {
    /// Per family (IPv4 first) and prefix length: the networks' masked bits.
    lengths: Vec<(bool, u8, std::collections::HashSet<u128>)>,
}

impl NetSet {
    /// The set of `nets`.
    pub fn new(nets: &[IpNet]) -> Self {
        let mut lengths: Vec<(bool, u8, std::collections::HashSet<u128>)> = Vec::new();
        for net in nets {
            let v4 = net.addr.is_ipv4();
            let key = bits(net.addr);
            match lengths
                .iter_mut()
                .find(|(family, prefix, _)| *family == v4 && *prefix == net.prefix)
            {
                Some((_, _, set)) => {
                    set.insert(key);
                }
                None => lengths.push((v4, net.prefix, std::iter::once(key).collect())),
            }
        }
        // Shorter prefixes first: they hold more addresses, so they match more often.
        lengths.sort_by_key(|(family, prefix, _)| (!*family, *prefix));
        Self { lengths }
    }

    /// True when some network of the set holds `ip`, as [`IpNet::contains`] says.
    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = match ip {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map(IpAddr::V4).unwrap_or(ip),
            v4 => v4,
        };
        let v4 = ip.is_ipv4();
        self.lengths.iter().any(|(family, prefix, set)| {
            *family == v4
                && set.contains(
                    &(IpNet {
                        addr: ip,
                        prefix: *prefix,
                    })
                    .masked(ip),
                )
        })
    }
}

fn bits(ip: IpAddr) -> u128 {
    match ip {
        IpAddr::V4(v4) => u128::from(u32::from(v4)),
        IpAddr::V6(v6) => u128::from(v6),
    }
}

/// True when `allowlist` is empty (no restriction) or some network in it holds `ip`.
pub fn allows(allowlist: &[IpNet], ip: IpAddr) -> bool {
    allowlist.is_empty() || allowlist.iter().any(|net| net.contains(ip))
}

impl fmt::Display for IpNet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix)
    }
}

impl Serialize for IpNet {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for IpNet {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        Self::parse(&text).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn networks_contain_their_addresses() {
        let net = IpNet::parse("203.0.113.0/24").unwrap();
        assert!(net.contains("203.0.113.9".parse().unwrap()));
        assert!(net.contains("::ffff:203.0.113.9".parse().unwrap()));
        assert!(!net.contains("203.0.114.1".parse().unwrap()));
        let everything = IpNet::parse("0.0.0.0/0").unwrap();
        assert!(everything.contains("8.8.8.8".parse().unwrap()));
        assert!(!everything.contains("::1".parse().unwrap()));
        assert_eq!(IpNet::parse("::1").unwrap().to_string(), "::1/128");
    }

    #[test]
    fn malformed_networks_are_refused() {
        for bad in [
            "203.0.113.5/24",
            "10.0.0.0/33",
            "10.0.0.0/",
            "nope",
            "10.0.0.0/+8",
        ] {
            assert!(IpNet::parse(bad).is_err(), "{bad}");
        }
    }
}
