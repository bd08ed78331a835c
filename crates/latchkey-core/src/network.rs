//! Where a tenant's tokens may be used from (docs/API.md, "Where tokens may be used
//! from"): the `network` rules of a tenant policy, and the one judgement every verifier
//! makes with them — the server at exchange, api-key authentication and introspection,
//! the gateway and latchkey-verify on every request.
//!
//! A deny wins over an allow; an absent allow list allows every address. A token's own
//! `ip_allowlist` narrows further (docs/API.md, "When a token is usable") and never
//! widens what the tenant allows. Countries come from the operator's GeoIP database: an
//! address it does not know matches no country, so a country allow list refuses it and
//! a deny list lets it through; without a database, country rules refuse every client
//! (fail closed).

use crate::cidr::{IpNet, NetSet};
use crate::country::CountryCode;
use serde::{Deserialize, Serialize};
use std::net::IpAddr;

/// The most networks one list may hold.
pub const MAX_NETWORKS: usize = 10_000;

/// A tenant's network rules.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NetworkRules {
    /// Only these networks; `None` allows every address.
    #[serde(default)]
    pub allow: Option<Vec<IpNet>>,
    /// Never these networks, whatever `allow` says.
    #[serde(default)]
    pub deny: Vec<IpNet>,
    /// Only clients in these countries; `None` allows every country.
    #[serde(default)]
    pub allow_countries: Option<Vec<CountryCode>>,
    /// Never clients in these countries.
    #[serde(default)]
    pub deny_countries: Vec<CountryCode>,
    /// `allow` and `deny` as sets, made on the first judgement: the rules are shared
    /// (`Arc`) by every cached token of the tenant, so once per rule change.
    #[serde(skip)]
    sets: Compiled,
}

/// The sets of a [`NetworkRules`]. Never part of what the rules are: equal rules are
/// equal whether or not either has judged a client yet.
#[derive(Debug, Clone, Default)]
struct Compiled(std::sync::OnceLock<(Option<NetSet>, NetSet)>);

impl PartialEq for Compiled {
    fn eq(&self, _: &Self) -> bool {
        true
    }
}

impl Eq for Compiled {}

/// Why the rules refuse a client.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum NetworkRefusal {
    /// Its address is denied, or not allowed, or unknown where rules apply.
    #[error("the tenant does not allow this client's network")]
    NetworkNotAllowed,
    /// Its country is denied or not allowed, or not known where country rules apply.
    #[error("the tenant does not allow this client's country")]
    CountryNotAllowed,
}

impl NetworkRules {
    /// Rules of these lists.
    pub fn new(
        allow: Option<Vec<IpNet>>,
        deny: Vec<IpNet>,
        allow_countries: Option<Vec<CountryCode>>,
        deny_countries: Vec<CountryCode>,
    ) -> Self {
        Self {
            allow,
            deny,
            allow_countries,
            deny_countries,
            sets: Compiled::default(),
        }
    }

    /// Rules that admit no client: what a verifier applies for rules it cannot read.
    pub fn refusing_everyone() -> Self {
        Self::new(Some(Vec::new()), Vec::new(), None, Vec::new())
    }

    /// True when the rules restrict nothing.
    pub fn is_empty(&self) -> bool {
        self.allow.is_none() && self.deny.is_empty() && !self.has_country_rules()
    }

    /// True when the rules name countries, which need a GeoIP database.
    pub fn has_country_rules(&self) -> bool {
        self.allow_countries.is_some() || !self.deny_countries.is_empty()
    }

    /// Checks the lists on their own: bounded, and allowing at least something.
    /// Returns the field at fault (`network.allow`, …) and why.
    pub fn validate(&self) -> Result<(), (&'static str, String)> {
        for (field, list) in [
            ("network.allow", self.allow.as_deref().unwrap_or_default()),
            ("network.deny", self.deny.as_slice()),
        ] {
            if list.len() > MAX_NETWORKS {
                return Err((field, format!("must hold at most {MAX_NETWORKS} networks")));
            }
        }
        if self.allow_countries.as_ref().is_some_and(Vec::is_empty) {
            return Err((
                "network.allow_countries",
                "allows no country; null allows every country".to_owned(),
            ));
        }
        if let Some(allowed) = &self.allow_countries
            && allowed.iter().all(|cc| self.deny_countries.contains(cc))
        {
            return Err((
                "network.deny_countries",
                "denies every country network.allow_countries allows, so nothing is allowed"
                    .to_owned(),
            ));
        }
        if let Some(allow) = &self.allow {
            if allow.is_empty() {
                return Err((
                    "network.allow",
                    "allows no network; null allows every address".to_owned(),
                ));
            }
            if allow
                .iter()
                .all(|net| self.deny.iter().any(|denied| denied.covers(net)))
            {
                return Err((
                    "network.deny",
                    "denies every network network.allow allows, so nothing is allowed".to_owned(),
                ));
            }
        }
        Ok(())
    }

    /// Judges a client whose address is `ip`; `None` is a client whose address is not
    /// known here, which rules refuse (fail closed). `country` looks an address up in
    /// the GeoIP database; `None` when there is no database, and then country rules
    /// refuse every client.
    pub fn admits(
        &self,
        ip: Option<IpAddr>,
        country: Option<&dyn Fn(IpAddr) -> Option<CountryCode>>,
    ) -> Result<(), NetworkRefusal> {
        if self.is_empty() {
            return Ok(());
        }
        let ip = ip.ok_or(NetworkRefusal::NetworkNotAllowed)?;
        let (allow, deny) = self.sets.0.get_or_init(|| {
            (
                self.allow.as_deref().map(NetSet::new),
                NetSet::new(&self.deny),
            )
        });
        if deny.contains(ip) {
            return Err(NetworkRefusal::NetworkNotAllowed);
        }
        if let Some(allow) = allow
            && !allow.contains(ip)
        {
            return Err(NetworkRefusal::NetworkNotAllowed);
        }
        if self.has_country_rules() {
            let lookup = country.ok_or(NetworkRefusal::CountryNotAllowed)?;
            let found = lookup(ip);
            if found.is_some_and(|cc| self.deny_countries.contains(&cc)) {
                return Err(NetworkRefusal::CountryNotAllowed);
            }
            if let Some(allowed) = &self.allow_countries
                && !found.is_some_and(|cc| allowed.contains(&cc))
            {
                return Err(NetworkRefusal::CountryNotAllowed);
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn nets(list: &[&str]) -> Vec<IpNet> {
        list.iter().map(|n| IpNet::parse(n).unwrap()).collect()
    }

    fn ip(text: &str) -> Option<IpAddr> {
        Some(text.parse().unwrap())
    }

    #[test]
    fn a_deny_wins_over_an_allow_and_no_allow_list_allows_all() {
        let rules = NetworkRules {
            allow: Some(nets(&["10.0.0.0/8", "2001:db8::/32"])),
            deny: nets(&["10.66.0.0/16"]),
            ..NetworkRules::default()
        };
        assert_eq!(rules.admits(ip("10.1.2.3"), None), Ok(()));
        assert_eq!(rules.admits(ip("2001:db8::1"), None), Ok(()));
        // IPv4-mapped IPv6 is the IPv4 address, in both lists.
        assert_eq!(rules.admits(ip("::ffff:10.1.2.3"), None), Ok(()));
        for refused in ["10.66.0.1", "::ffff:10.66.0.1", "192.0.2.1", "2001:db9::1"] {
            assert_eq!(
                rules.admits(ip(refused), None),
                Err(NetworkRefusal::NetworkNotAllowed),
                "{refused}"
            );
        }
        assert_eq!(
            rules.admits(None, None),
            Err(NetworkRefusal::NetworkNotAllowed)
        );

        let deny_only = NetworkRules {
            allow: None,
            deny: nets(&["192.0.2.0/24"]),
            ..NetworkRules::default()
        };
        assert_eq!(deny_only.admits(ip("198.51.100.7"), None), Ok(()));
        assert!(deny_only.admits(ip("192.0.2.9"), None).is_err());
        // No rules: every client, even one whose address is unknown.
        assert_eq!(NetworkRules::default().admits(None, None), Ok(()));
    }

    #[test]
    fn rules_that_allow_nothing_are_refused() {
        let empty = NetworkRules {
            allow: Some(vec![]),
            ..NetworkRules::default()
        };
        assert_eq!(empty.validate().unwrap_err().0, "network.allow");
        let covered = NetworkRules {
            allow: Some(nets(&["10.1.0.0/16", "10.2.0.0/16"])),
            deny: nets(&["10.0.0.0/8"]),
            ..NetworkRules::default()
        };
        assert_eq!(covered.validate().unwrap_err().0, "network.deny");
        let partly = NetworkRules {
            allow: Some(nets(&["10.0.0.0/8"])),
            deny: nets(&["10.1.0.0/16"]),
            ..NetworkRules::default()
        };
        assert_eq!(partly.validate(), Ok(()));
        let huge = NetworkRules {
            allow: None,
            deny: vec![IpNet::parse("10.0.0.1").unwrap(); MAX_NETWORKS + 1],
            ..NetworkRules::default()
        };
        assert_eq!(huge.validate().unwrap_err().0, "network.deny");
    }

    #[test]
    fn countries_are_judged_after_networks_and_fail_closed_without_a_database() {
        let de = CountryCode::parse("DE").unwrap();
        let us = CountryCode::parse("US").unwrap();
        let lookup = |ip: IpAddr| match ip.to_string().as_str() {
            "203.0.113.9" => Some(de),
            "198.51.100.7" => Some(us),
            _ => None,
        };
        let deny_de = NetworkRules {
            deny_countries: vec![de],
            ..NetworkRules::default()
        };
        assert_eq!(
            deny_de.admits(ip("203.0.113.9"), Some(&lookup)),
            Err(NetworkRefusal::CountryNotAllowed)
        );
        assert_eq!(deny_de.admits(ip("198.51.100.7"), Some(&lookup)), Ok(()));
        // An address the database does not know matches no country: a deny list lets
        // it through...
        assert_eq!(deny_de.admits(ip("192.0.2.1"), Some(&lookup)), Ok(()));
        let only_us = NetworkRules {
            allow_countries: Some(vec![us]),
            ..NetworkRules::default()
        };
        assert_eq!(only_us.admits(ip("198.51.100.7"), Some(&lookup)), Ok(()));
        // ...and an allow list refuses it.
        for refused in ["203.0.113.9", "192.0.2.1"] {
            assert_eq!(
                only_us.admits(ip(refused), Some(&lookup)),
                Err(NetworkRefusal::CountryNotAllowed),
                "{refused}"
            );
        }
        // Without a database, country rules refuse every client.
        assert_eq!(
            only_us.admits(ip("198.51.100.7"), None),
            Err(NetworkRefusal::CountryNotAllowed)
        );
        assert_eq!(
            deny_de.admits(ip("198.51.100.7"), None),
            Err(NetworkRefusal::CountryNotAllowed)
        );
        let nothing = NetworkRules {
            allow_countries: Some(vec![de]),
            deny_countries: vec![de],
            ..NetworkRules::default()
        };
        assert_eq!(nothing.validate().unwrap_err().0, "network.deny_countries");
        let empty = NetworkRules {
            allow_countries: Some(vec![]),
            ..NetworkRules::default()
        };
        assert_eq!(empty.validate().unwrap_err().0, "network.allow_countries");
    }

    #[test]
    fn a_thousand_networks_judge_as_a_scan_would() {
        // Networks of every length and both families, with a client on each side of
        // each boundary: the sets answer what a scan of the lists answers.
        let allow: Vec<IpNet> = (0..1000u32)
            .map(|i| match i % 4 {
                0 => IpNet::parse(&format!("10.{}.{}.0/24", i / 256, i % 256)).unwrap(),
                1 => IpNet::parse(&format!("172.16.{}.{}/32", i / 256, i % 256)).unwrap(),
                2 => IpNet::parse(&format!("2001:db8:{i:x}::/48")).unwrap(),
                _ => IpNet::parse(&format!("{}.0.0.0/8", 11 + i % 200)).unwrap(),
            })
            .collect();
        let deny = nets(&["10.0.5.0/24", "12.34.0.0/16", "2001:db8:2::1"]);
        let rules = NetworkRules {
            allow: Some(allow.clone()),
            deny: deny.clone(),
            ..NetworkRules::default()
        };
        let scan = |ip: IpAddr| {
            !deny.iter().any(|net| net.contains(ip)) && allow.iter().any(|net| net.contains(ip))
        };
        for text in [
            "10.0.4.1",
            "10.0.5.1",
            "10.0.6.255",
            "172.16.0.1",
            "172.16.0.2",
            "172.16.3.229",
            "12.34.5.6",
            "12.35.5.6",
            "9.9.9.9",
            "2001:db8:2::1",
            "2001:db8:2::2",
            "2001:db8:3e7::9",
            "2001:db9::1",
            "::ffff:10.0.4.1",
            "::ffff:10.0.5.1",
            "0.0.0.0",
            "255.255.255.255",
            "::",
        ] {
            let address: IpAddr = text.parse().unwrap();
            assert_eq!(
                rules.admits(Some(address), None).is_ok(),
                scan(address),
                "{text}"
            );
        }
        // Judging compiles the sets; the rules still equal an uncompiled copy.
        assert_eq!(rules, rules.clone());
        let fresh = NetworkRules {
            allow: Some(allow),
            deny,
            ..NetworkRules::default()
        };
        assert_eq!(rules, fresh);
    }
}
