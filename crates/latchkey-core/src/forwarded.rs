//! Which address a request came from, when proxies stand in front of the one judging it
//! (docs/DEPLOYMENT.md, "Client addresses behind a proxy").
//!
//! Policy: `X-Forwarded-For` is believed only as far as trusted proxies wrote it. From a
//! peer outside the trusted list the client is the peer itself, whatever the header says:
//! anyone can send it. From a trusted proxy the header is read from the right — the end
//! the proxies appended to — skipping trusted proxies; the first other address is the
//! client, and the leftmost when all are trusted. An entry that is not a plain IPv4 or
//! IPv6 address ends the walk at the last address accepted (or the peer): nothing to its
//! left was written by a proxy we trust.

use crate::cidr::IpNet;
use std::net::IpAddr;

/// The client of a request that arrived from `peer` with the `X-Forwarded-For` header
/// values `forwarded_for`, in the order they came (`None` for a value that is not
/// text, which counts as garbage as a whole).
pub fn client_address<'a>(
    peer: IpAddr,
    forwarded_for: impl IntoIterator<Item = Option<&'a str>>,
    trusted_proxies: &[IpNet],
) -> IpAddr {
    let peer = peer.to_canonical();
    let trusted = |ip: IpAddr| trusted_proxies.iter().any(|net| net.contains(ip));
    if !trusted(peer) {
        return peer;
    }
    let entries: Vec<&str> = forwarded_for
        .into_iter()
        .flat_map(|value| value.unwrap_or("").split(','))
        .collect();
    let mut client = peer;
    for entry in entries.into_iter().rev() {
        let Ok(ip) = entry.trim().parse::<IpAddr>() else {
            break;
        };
        client = ip.to_canonical();
        if !trusted(client) {
            break;
        }
    }
    client
}

#[cfg(test)]
mod tests {
    use super::*;

    fn nets(list: &[&str]) -> Vec<IpNet> {
        list.iter().map(|n| IpNet::parse(n).unwrap()).collect()
    }

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap()
    }

    #[test]
    fn an_untrusted_peer_is_the_client_whatever_it_forwards() {
        let trusted = nets(&["10.0.0.0/8"]);
        let forged = [Some("203.0.113.9")];
        assert_eq!(
            client_address(ip("198.51.100.7"), forged, &trusted),
            ip("198.51.100.7")
        );
        assert_eq!(
            client_address(ip("10.0.0.1"), forged, &[]),
            ip("10.0.0.1"),
            "no trusted proxies: the header is ignored"
        );
    }

    #[test]
    fn from_a_trusted_proxy_the_right_most_untrusted_address_is_the_client() {
        let trusted = nets(&["10.0.0.0/8"]);
        let headers = [Some("1.1.1.1, 203.0.113.9"), Some("10.0.0.2")];
        assert_eq!(
            client_address(ip("10.0.0.1"), headers, &trusted),
            ip("203.0.113.9")
        );
        assert_eq!(
            client_address(ip("10.0.0.1"), [Some("10.0.0.3, 10.0.0.2")], &trusted),
            ip("10.0.0.3"),
            "all trusted: the left-most"
        );
        assert_eq!(client_address(ip("10.0.0.1"), [], &trusted), ip("10.0.0.1"));
    }

    #[test]
    fn garbage_ends_the_walk_at_the_last_address_accepted() {
        let trusted = nets(&["10.0.0.0/8"]);
        assert_eq!(
            client_address(
                ip("10.0.0.1"),
                [Some("203.0.113.9, junk, 10.0.0.2")],
                &trusted
            ),
            ip("10.0.0.2")
        );
        assert_eq!(
            client_address(ip("10.0.0.1"), [Some("203.0.113.9"), None], &trusted),
            ip("10.0.0.1")
        );
    }

    #[test]
    fn ipv4_mapped_addresses_are_judged_as_ipv4() {
        let trusted = nets(&["127.0.0.1/32"]);
        assert_eq!(
            client_address(
                ip("::ffff:127.0.0.1"),
                [Some("::ffff:203.0.113.9")],
                &trusted
            ),
            ip("203.0.113.9")
        );
    }
}
