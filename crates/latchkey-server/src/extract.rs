//! Request extractors that turn wire input into domain values at the boundary, and
//! every rejection into the problem format: bodies (JSON only, at most 64 KiB, unknown
//! or repeated members refused, the offending member named), queries, and who the
//! client is.
//!
//! The client's IP is the socket peer unless that peer is a configured trusted proxy;
//! only then is `X-Forwarded-For` read (see [`client_ip`]). Audit events, token IP
//! allowlists and the per-IP throttle all use that one answer.

use crate::problem::ApiError;
use crate::state::AppState;
use axum::body::Bytes;
use axum::extract::{ConnectInfo, FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, header};
use latchkey_core::cidr::IpNet;
use serde::de::DeserializeOwned;
use std::net::{IpAddr, SocketAddr};

/// The largest request body any endpoint takes.
pub const BODY_LIMIT: usize = 64 * 1024;

/// The largest usage batch a gateway may send (`POST /v1/usage`): its 10,000 entries
/// at most take about 3 MiB.
pub const USAGE_BODY_LIMIT: usize = 4 * 1024 * 1024;

/// A JSON body deserialized into `T`; `LIMIT` is the route's body limit, named in the
/// 413 answer.
#[derive(Debug)]
pub struct ApiJson<T, const LIMIT: usize = BODY_LIMIT>(pub T);

impl<S: Send + Sync, T: DeserializeOwned, const LIMIT: usize> FromRequest<S> for ApiJson<T, LIMIT> {
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &S) -> Result<Self, Self::Rejection> {
        let is_json = request
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split(';').next())
            .map(|mime| {
                let mime = mime.trim().to_ascii_lowercase();
                mime == "application/json" || mime.ends_with("+json")
            })
            .unwrap_or(false);
        if !is_json {
            return Err(ApiError::InvalidBody(
                "expected a JSON body with Content-Type: application/json".to_owned(),
            ));
        }
        let bytes = Bytes::from_request(request, state)
            .await
            .map_err(|rejection| {
                if rejection.status() == axum::http::StatusCode::PAYLOAD_TOO_LARGE {
                    ApiError::PayloadTooLarge(LIMIT)
                } else {
                    ApiError::InvalidBody(rejection.body_text())
                }
            })?;
        parse_json(&bytes).map(ApiJson)
    }
}

/// Deserializes `bytes`, naming the failing field by its JSON path.
pub fn parse_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    let mut deserializer = serde_json::Deserializer::from_slice(bytes);
    let value = serde_path_to_error::deserialize(&mut deserializer).map_err(|error| {
        let path = error.path().to_string();
        let inner = error.into_inner();
        if inner.is_syntax() || inner.is_eof() {
            ApiError::InvalidBody(format!("request body is not valid JSON: {inner}"))
        } else if let Some(name) = strip_position(&inner)
            .strip_prefix("duplicate field `")
            .and_then(|rest| rest.strip_suffix('`'))
        {
            // The same answer `refuse_repeated_members` gives for a map.
            ApiError::field(member_path(&path, name), REPEATED)
        } else if path == "." || path.is_empty() {
            ApiError::InvalidBody(strip_position(&inner))
        } else {
            let message = strip_position(&inner);
            let reason = match message.split_once("`, ") {
                Some((head, expected)) if head.starts_with("unknown field `") => {
                    format!("is not a field of this request ({expected})")
                }
                _ if message.starts_with("unknown field") => {
                    "is not a field of this request".to_owned()
                }
                _ => message,
            };
            ApiError::field(path, reason)
        }
    })?;
    deserializer.end().map_err(|_| {
        ApiError::InvalidBody("trailing characters after the JSON value".to_owned())
    })?;
    refuse_repeated_members(bytes)?;
    Ok(value)
}

/// Refuses a body in which one object names a member twice. Derived request structs
/// refuse that themselves, but a map keeps the last silently, and two readers of one
/// body (a proxy that keeps the first, say) would then disagree on what it said. Runs
/// only on bodies that already parsed, so it sees well-formed JSON.
fn refuse_repeated_members(bytes: &[u8]) -> Result<(), ApiError> {
    let mut deserializer = serde_json::Deserializer::from_slice(bytes);
    serde_path_to_error::deserialize::<_, DistinctMembers>(&mut deserializer)
        .map(|_| ())
        .map_err(|error| {
            let name = strip_position(error.inner());
            ApiError::field(member_path(&error.path().to_string(), &name), REPEATED)
        })
}

const REPEATED: &str = "appears more than once in its object";

/// The JSON path of member `name` of the object at `path`.
fn member_path(path: &str, name: &str) -> String {
    if path == "." || path.is_empty() {
        name.to_owned()
    } else {
        format!("{path}.{name}")
    }
}

/// A JSON value whose objects each name a member at most once.
struct DistinctMembers;

impl<'de> serde::Deserialize<'de> for DistinctMembers {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(DistinctMembers)
    }
}

impl<'de> serde::de::Visitor<'de> for DistinctMembers {
    type Value = DistinctMembers;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_bool<E>(self, _: bool) -> Result<Self, E> {
        Ok(self)
    }

    fn visit_i64<E>(self, _: i64) -> Result<Self, E> {
        Ok(self)
    }

    fn visit_u64<E>(self, _: u64) -> Result<Self, E> {
        Ok(self)
    }

    fn visit_f64<E>(self, _: f64) -> Result<Self, E> {
        Ok(self)
    }

    fn visit_str<E>(self, _: &str) -> Result<Self, E> {
        Ok(self)
    }

    fn visit_unit<E>(self) -> Result<Self, E> {
        Ok(self)
    }

    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<Self, A::Error> {
        while seq.next_element::<DistinctMembers>()?.is_some() {}
        Ok(self)
    }

    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<Self, A::Error> {
        let mut names = std::collections::HashSet::new();
        while let Some(name) = map.next_key::<String>()? {
            if names.contains(&name) {
                // The message is the name: `refuse_repeated_members` puts it in the path.
                return Err(serde::de::Error::custom(name));
            }
            map.next_value::<DistinctMembers>()?;
            names.insert(name);
        }
        Ok(self)
    }
}

fn strip_position(error: &serde_json::Error) -> String {
    let text = error.to_string();
    match text.rfind(" at line ") {
        Some(index) => text[..index].to_owned(),
        None => text,
    }
}

/// The client's address and agent, for the audit trail.
#[derive(Debug, Clone, Default)]
pub struct ClientMeta {
    /// The client's IP address, as [`client_ip`] determines it.
    pub ip: Option<IpAddr>,
    /// The `User-Agent` header, cut to 256 characters.
    pub user_agent: Option<String>,
}

impl FromRequestParts<AppState> for ClientMeta {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        Ok(client_meta(parts, state))
    }
}

/// Reads the client address (when the server was started with connect info) and agent.
pub fn client_meta(parts: &Parts, state: &AppState) -> ClientMeta {
    ClientMeta {
        ip: client_addr(parts, state),
        user_agent: parts.headers.get(header::USER_AGENT).and_then(user_agent),
    }
}

/// The client's address (see [`client_ip`]), when the server was started with connect
/// info.
pub fn client_addr(parts: &Parts, state: &AppState) -> Option<IpAddr> {
    parts
        .extensions
        .get::<ConnectInfo<SocketAddr>>()
        .map(|info| {
            client_ip(
                info.0.ip(),
                &parts.headers,
                &state.settings().trusted_proxies,
            )
        })
}

/// A `User-Agent` header as the audit trail keeps it: text, cut to 256 characters.
pub fn user_agent(value: &HeaderValue) -> Option<String> {
    value
        .to_str()
        .ok()
        .map(|agent| agent.chars().take(256).collect())
}

/// The client of a request that arrived from `peer`.
///
/// From a peer outside `trusted_proxies` (or with none configured) that is the peer
/// itself, and `X-Forwarded-For` is ignored: anyone can send it. From a trusted proxy,
/// the addresses of every `X-Forwarded-For` header (in order, comma-separated) are read
/// from the right, the end the proxies appended to, skipping trusted proxies; the first
/// other address is the client, and the leftmost when all are trusted. An entry that is
/// not a plain IPv4 or IPv6 address ends the walk at the last address accepted (or the
/// peer): nothing to the left of it was written by a proxy we trust.
pub fn client_ip(peer: IpAddr, headers: &HeaderMap, trusted_proxies: &[IpNet]) -> IpAddr {
    // The same walk as the gateway's and latchkey-verify's.
    latchkey_core::forwarded::client_address(
        peer,
        headers
            .get_all("x-forwarded-for")
            .iter()
            .map(|value| value.to_str().ok()),
        trusted_proxies,
    )
}

/// Query parameters of list endpoints.
#[derive(Debug, Clone, Default)]
pub struct ListQuery {
    /// Page size, 1–200, default 50.
    pub limit: u32,
    /// The opaque cursor from a previous page.
    pub cursor: Option<String>,
}

const DEFAULT_LIMIT: u32 = 50;
const MAX_LIMIT: u32 = 200;

impl<S: Send + Sync> FromRequestParts<S> for ListQuery {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        let mut query = ListQuery {
            limit: DEFAULT_LIMIT,
            cursor: None,
        };
        for (key, value) in form_pairs(parts.uri.query().unwrap_or("")) {
            match key.as_str() {
                "limit" => {
                    query.limit = value
                        .parse()
                        .ok()
                        .filter(|n| (1..=MAX_LIMIT).contains(n))
                        .ok_or_else(|| {
                            ApiError::field(
                                "limit",
                                format!("must be a whole number from 1 to {MAX_LIMIT}"),
                            )
                        })?;
                }
                "cursor" => query.cursor = Some(crate::api::decode_cursor(&value)?),
                other => {
                    return Err(ApiError::field(
                        other,
                        "is not a query parameter of this endpoint",
                    ));
                }
            }
        }
        Ok(query)
    }
}

/// Decodes `application/x-www-form-urlencoded` pairs (also the query-string syntax).
pub fn form_pairs(text: &str) -> Vec<(String, String)> {
    text.split('&')
        .filter(|pair| !pair.is_empty())
        .map(|pair| {
            let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
            (percent_decode(key), percent_decode(value))
        })
        .collect()
}

fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < bytes.len() => {
                // Two hex digits exactly: `from_str_radix` alone would take a sign, so
                // that `%+a` read as a newline where every other reader sees text.
                let hex = std::str::from_utf8(&bytes[i + 1..i + 3])
                    .ok()
                    .filter(|h| h.bytes().all(|b| b.is_ascii_hexdigit()));
                match hex.and_then(|h| u8::from_str_radix(h, 16).ok()) {
                    Some(byte) => {
                        out.push(byte);
                        i += 2;
                    }
                    None => out.push(b'%'),
                }
            }
            byte => out.push(byte),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap()
    }

    fn nets(texts: &[&str]) -> Vec<IpNet> {
        texts.iter().map(|t| IpNet::parse(t).unwrap()).collect()
    }

    /// Headers with one `X-Forwarded-For` line per value.
    fn forwarded(values: &[&str]) -> HeaderMap {
        let mut headers = HeaderMap::new();
        for value in values {
            headers.append("x-forwarded-for", HeaderValue::from_str(value).unwrap());
        }
        headers
    }

    const PROXY: &str = "10.0.0.5";

    fn behind_proxy(values: &[&str]) -> IpAddr {
        client_ip(ip(PROXY), &forwarded(values), &nets(&["10.0.0.0/24"]))
    }

    #[test]
    fn without_trusted_proxies_the_header_is_ignored() {
        let headers = forwarded(&["203.0.113.9"]);
        assert_eq!(client_ip(ip(PROXY), &headers, &[]), ip(PROXY));
    }

    #[test]
    fn an_untrusted_peer_cannot_spoof_its_address() {
        let headers = forwarded(&["203.0.113.9"]);
        let trusted = nets(&["10.0.0.0/24"]);
        assert_eq!(
            client_ip(ip("198.51.100.7"), &headers, &trusted),
            ip("198.51.100.7")
        );
    }

    #[test]
    fn a_trusted_peer_names_the_client() {
        assert_eq!(behind_proxy(&["203.0.113.9"]), ip("203.0.113.9"));
        assert_eq!(behind_proxy(&[" 203.0.113.9 "]), ip("203.0.113.9"));
        assert_eq!(behind_proxy(&[]), ip(PROXY), "no header: the peer");
    }

    #[test]
    fn trusted_proxies_in_the_chain_are_skipped() {
        assert_eq!(behind_proxy(&["203.0.113.9, 10.0.0.7"]), ip("203.0.113.9"));
    }

    #[test]
    fn what_the_client_wrote_left_of_its_address_is_ignored() {
        assert_eq!(
            behind_proxy(&["203.0.113.9, 198.51.100.7"]),
            ip("198.51.100.7")
        );
    }

    #[test]
    fn when_every_address_is_trusted_the_leftmost_is_the_client() {
        assert_eq!(behind_proxy(&["10.0.0.8, 10.0.0.7"]), ip("10.0.0.8"));
    }

    #[test]
    fn a_malformed_entry_ends_the_walk() {
        assert_eq!(
            behind_proxy(&["203.0.113.9, garbage, 10.0.0.7"]),
            ip("10.0.0.7")
        );
        assert_eq!(behind_proxy(&["203.0.113.9, unknown"]), ip(PROXY));
        assert_eq!(behind_proxy(&["203.0.113.9,"]), ip(PROXY), "empty entry");
        assert_eq!(behind_proxy(&["203.0.113.9:443"]), ip(PROXY), "with a port");
        assert_eq!(behind_proxy(&["[2001:db8::1]"]), ip(PROXY), "in brackets");
        let mut headers = forwarded(&["203.0.113.9"]);
        headers.append(
            "x-forwarded-for",
            HeaderValue::from_bytes(b"\xff10.0.0.7").unwrap(),
        );
        let trusted = nets(&["10.0.0.0/24"]);
        assert_eq!(
            client_ip(ip(PROXY), &headers, &trusted),
            ip(PROXY),
            "not text"
        );
    }

    #[test]
    fn several_header_lines_read_as_one_list() {
        assert_eq!(
            behind_proxy(&["198.51.100.7, 203.0.113.9", "10.0.0.7"]),
            ip("203.0.113.9")
        );
        assert_eq!(
            behind_proxy(&["203.0.113.9", "10.0.0.7, 10.0.0.8"]),
            ip("203.0.113.9")
        );
    }

    #[test]
    fn ipv6_clients_and_proxies_work() {
        let trusted = nets(&["2001:db8:ffff::/48"]);
        let headers = forwarded(&["2001:db8::1, 2001:db8:ffff::2"]);
        assert_eq!(
            client_ip(ip("2001:db8:ffff::1"), &headers, &trusted),
            ip("2001:db8::1")
        );
        assert_eq!(
            behind_proxy(&["2001:db8::7"]),
            ip("2001:db8::7"),
            "an IPv6 client behind an IPv4 proxy"
        );
        let mapped = client_ip(
            ip("::ffff:10.0.0.5"),
            &forwarded(&["203.0.113.9"]),
            &nets(&["10.0.0.0/24"]),
        );
        assert_eq!(
            mapped,
            ip("203.0.113.9"),
            "an IPv4-mapped peer matches IPv4 networks"
        );
    }

    #[test]
    fn form_pairs_decode_percent_and_plus() {
        let pairs = form_pairs("a=1&scope=reports%3Aread+x&empty=&flag");
        assert_eq!(
            pairs,
            vec![
                ("a".into(), "1".into()),
                ("scope".into(), "reports:read x".into()),
                ("empty".into(), "".into()),
                ("flag".into(), "".into())
            ]
        );
        assert_eq!(form_pairs("x=%zz%4")[0].1, "%zz%4");
    }
}

#[cfg(test)]
mod proptests;
