//! Who sent a request, as far as the server can tell: its address and agent, for the
//! audit trail and for the usability rule's address check.

use http::HeaderValue;
use latchkey_core::usable::Client;
use std::net::IpAddr;

/// The client's address and agent, for the audit trail.
#[derive(Debug, Clone, Default)]
pub struct ClientMeta {
    /// The client's IP address: the peer, or the client a trusted proxy names
    /// (`trusted_proxies`, docs/API.md, "Audit (the five Ws)").
    pub ip: Option<IpAddr>,
    /// The `User-Agent` header as sent; [`ClientMeta::agent`] is what the audit trail
    /// keeps of it. Kept raw so that a request that records nothing copies nothing.
    pub user_agent: Option<HeaderValue>,
}

impl ClientMeta {
    /// The agent as the audit trail keeps it (see [`user_agent`]).
    pub fn agent(&self) -> Option<String> {
        self.user_agent.as_ref().and_then(user_agent)
    }

    /// The client a usability check judges (docs/API.md, "When a token is usable").
    pub fn judged(&self) -> Client {
        judged(self.ip)
    }
}

/// The client a usability check judges: the request's address, as far as it is known.
pub fn judged(ip: Option<IpAddr>) -> Client {
    ip.map_or(Client::Unknown, Client::Address)
}

/// A `User-Agent` header as the audit trail keeps it: text, cut to 256 characters.
pub fn user_agent(value: &HeaderValue) -> Option<String> {
    value
        .to_str()
        .ok()
        .map(|agent| agent.chars().take(256).collect())
}
