//! Request extractors that turn wire input into domain values at the boundary, and
//! every rejection into the problem format: bodies ([`ApiJson`]: JSON only, at most
//! 64 KiB, unknown or repeated members refused, the offending member named), query
//! strings ([`Query`], the same rules), and who the client is.
//!
//! The client's IP is the socket peer unless that peer is a configured trusted proxy;
//! only then is `X-Forwarded-For` read (see [`client_ip`]). Audit events, token IP
//! allowlists and the per-IP throttle all use that one answer.

use crate::http::problem::ApiError;
use crate::service::client::ClientMeta;
use crate::service::state::AppState;
use axum::body::Bytes;
use axum::extract::{ConnectInfo, FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::{HeaderMap, header};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use latchkey_core::Timestamp;
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
        let bytes = json_body::<S, LIMIT>(request, state).await?;
        // Every request body of the API is an object (docs/API.md, "Reading request
        // input"): serde would read a derived struct from an array, member by position.
        if bytes.trim_ascii_start().first() != Some(&b'{') {
            // Not JSON at all is said as such; any other JSON value is not an object.
            parse_json::<serde::de::IgnoredAny>(&bytes)?;
            return Err(ApiError::InvalidBody(
                "the request body must be a JSON object".to_owned(),
            ));
        }
        parse_json(&bytes).map(ApiJson)
    }
}

/// Any JSON value deserialized into `T`, for the one endpoint that must answer every
/// JSON body alike (`POST /v1/leaks`); otherwise as [`ApiJson`].
#[derive(Debug)]
pub struct AnyJson<T, const LIMIT: usize = BODY_LIMIT>(pub T);

impl<S: Send + Sync, T: DeserializeOwned, const LIMIT: usize> FromRequest<S> for AnyJson<T, LIMIT> {
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &S) -> Result<Self, Self::Rejection> {
        let bytes = json_body::<S, LIMIT>(request, state).await?;
        parse_json(&bytes).map(AnyJson)
    }
}

/// The bytes of a body sent as JSON, within `LIMIT`.
async fn json_body<S: Send + Sync, const LIMIT: usize>(
    request: Request,
    state: &S,
) -> Result<Bytes, ApiError> {
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
    Bytes::from_request(request, state)
        .await
        .map_err(|rejection| {
            if rejection.status() == axum::http::StatusCode::PAYLOAD_TOO_LARGE {
                ApiError::PayloadTooLarge(LIMIT)
            } else {
                ApiError::InvalidBody(rejection.body_text())
            }
        })
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
        user_agent: parts.headers.get(header::USER_AGENT).cloned(),
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

/// A query string read into `T` (docs/API.md, "Reading request input"), the way
/// [`ApiJson`] reads a body: `T` derives `Deserialize` with `deny_unknown_fields`, and
/// its fields are the parameter types below, which check their values and say what is
/// wrong. A parameter named twice, an unknown parameter and a bad value are each
/// `invalid-field` naming the parameter.
#[derive(Debug)]
pub struct Query<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequestParts<S> for Query<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        parse_query(parts.uri.query().unwrap_or("")).map(Query)
    }
}

/// Reads a query string into `T`; see [`Query`].
pub fn parse_query<T: DeserializeOwned>(query: &str) -> Result<T, ApiError> {
    let pairs = form_pairs(query);
    // A set, not a scan of the names before each: a long query of distinct names must
    // not cost the square of its length.
    let mut seen = std::collections::HashSet::with_capacity(pairs.len());
    if let Some((name, _)) = pairs.iter().find(|(name, _)| !seen.insert(name.as_str())) {
        return Err(ApiError::field(name, "appears more than once"));
    }
    let deserializer = serde::de::value::MapDeserializer::new(
        pairs
            .iter()
            .map(|(name, value)| (name.as_str(), QueryValue(value))),
    );
    serde_path_to_error::deserialize(deserializer).map_err(|error| {
        let path = error.path().to_string();
        let message = error.into_inner().to_string();
        // serde names the field between backticks, then lists the expected ones; a
        // name may itself hold a backtick.
        let unknown = message.strip_prefix("unknown field `").and_then(|rest| {
            rest.split_once("`, expected")
                .or_else(|| rest.split_once("`, there are no fields"))
        });
        match unknown {
            Some((name, _)) => ApiError::field(name, "is not a query parameter of this endpoint"),
            None => ApiError::field(path, message),
        }
    })
}

/// One query value: a string, or `Some` of one for an optional parameter.
struct QueryValue<'a>(&'a str);

impl<'de> serde::de::IntoDeserializer<'de, serde::de::value::Error> for QueryValue<'_> {
    type Deserializer = Self;

    fn into_deserializer(self) -> Self {
        self
    }
}

impl<'de> serde::Deserializer<'de> for QueryValue<'_> {
    type Error = serde::de::value::Error;

    fn deserialize_any<V: serde::de::Visitor<'de>>(
        self,
        visitor: V,
    ) -> Result<V::Value, Self::Error> {
        visitor.visit_str(self.0)
    }

    fn deserialize_option<V: serde::de::Visitor<'de>>(
        self,
        visitor: V,
    ) -> Result<V::Value, Self::Error> {
        visitor.visit_some(self)
    }

    serde::forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string bytes
        byte_buf unit unit_struct newtype_struct seq tuple tuple_struct map struct enum
        identifier ignored_any
    }
}

/// Implements `Deserialize` for a query parameter type from its
/// `fn parse(&str) -> Result<Self, impl Display>`, whose error is the reason shown.
macro_rules! query_param {
    ($type:ty) => {
        impl<'de> serde::Deserialize<'de> for $type {
            fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
                let text = <std::borrow::Cow<'de, str>>::deserialize(deserializer)?;
                <$type>::parse(&text).map_err(serde::de::Error::custom)
            }
        }
    };
}

/// `limit`: a page size from 1 to `MAX`, `DEFAULT` when absent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limit<const MAX: u32, const DEFAULT: u32>(pub u32);

impl<const MAX: u32, const DEFAULT: u32> Default for Limit<MAX, DEFAULT> {
    fn default() -> Self {
        Self(DEFAULT)
    }
}

impl<const MAX: u32, const DEFAULT: u32> Limit<MAX, DEFAULT> {
    fn parse(text: &str) -> Result<Self, String> {
        text.parse()
            .ok()
            .filter(|n| (1..=MAX).contains(n))
            .map(Self)
            .ok_or_else(|| format!("must be a whole number from 1 to {MAX}"))
    }
}

impl<'de, const MAX: u32, const DEFAULT: u32> serde::Deserialize<'de> for Limit<MAX, DEFAULT> {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = <std::borrow::Cow<'de, str>>::deserialize(deserializer)?;
        Self::parse(&text).map_err(serde::de::Error::custom)
    }
}

/// `cursor`: the opaque position a previous page's `next_cursor` gave, in the one
/// spelling the server issues (base64url without padding) of a sort key with no
/// control characters; what it holds is the store's key of the last item shown.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cursor(pub String);

impl Cursor {
    /// The cursor that resumes after `key`.
    pub fn encode(key: &str) -> String {
        URL_SAFE_NO_PAD.encode(key)
    }

    fn parse(text: &str) -> Result<Self, &'static str> {
        URL_SAFE_NO_PAD
            .decode(text)
            .ok()
            .and_then(|bytes| String::from_utf8(bytes).ok())
            // Sort keys are ids, which hold no control characters; a key with one is no
            // cursor this server issued, and PostgreSQL would refuse its NUL.
            .filter(|key| !key.chars().any(char::is_control))
            .map(Self)
            .ok_or("is not a cursor this server issued")
    }
}

pub(crate) use query_param;

query_param!(Cursor);

/// `after`: a sequence number of an ordered log (the revocation feed, the audit
/// chain), 0 or more.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Seq(pub i64);

impl Seq {
    fn parse(text: &str) -> Result<Self, &'static str> {
        text.parse()
            .ok()
            .filter(|n: &i64| *n >= 0)
            .map(Self)
            .ok_or("must be a sequence number")
    }
}

query_param!(Seq);

/// An RFC 3339 instant (`since`, `until`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Time(pub Timestamp);

impl Time {
    fn parse(text: &str) -> Result<Self, &'static str> {
        Timestamp::parse_rfc3339(text)
            .map(Self)
            .ok_or("must be an RFC 3339 timestamp")
    }
}

query_param!(Time);

/// A text filter compared with stored text. A control character matches nothing, and
/// PostgreSQL refuses a NUL outright, so neither reaches the store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Text(pub String);

impl Text {
    fn parse(text: &str) -> Result<Self, &'static str> {
        if text.chars().any(char::is_control) {
            Err("must not contain control characters")
        } else {
            Ok(Self(text.to_owned()))
        }
    }
}

query_param!(Text);

/// The query of an endpoint that takes none.
#[derive(Debug, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NoParameters {}

/// The query of list endpoints: `limit` (1–200, default 50) and `cursor`.
#[derive(Debug, Clone, Default, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ListQuery {
    /// Page size.
    pub limit: Limit<200, 50>,
    /// Where the previous page ended.
    pub cursor: Option<Cursor>,
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

/// One `application/x-www-form-urlencoded` name or value, decoded (docs/API.md,
/// "Reading request input"): `+` is a space, `%` and two hex digits a byte, any other
/// `%` itself; bytes that are not UTF-8 read as U+FFFD.
pub fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    // Most names and values (ids, secrets, grant types, JWTs) need no decoding at all.
    if !has_plus_or_percent(bytes) {
        return text.to_owned();
    }
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
    String::from_utf8(out)
        .unwrap_or_else(|error| String::from_utf8_lossy(error.as_bytes()).into_owned())
}

/// Whether `bytes` holds a `+` or a `%`, in one pass: sixteen bytes at a time, each block
/// folded without branches so that it compiles to vector compares (two `contains`
/// were two scans, a plain fold over the slice stayed byte by byte).
fn has_plus_or_percent(bytes: &[u8]) -> bool {
    let hit = |b: u8| u8::from(b == b'+') | u8::from(b == b'%');
    let mut blocks = bytes.chunks_exact(16);
    blocks
        .by_ref()
        .any(|block| block.iter().fold(0, |seen, &b| seen | hit(b)) != 0)
        || blocks.remainder().iter().any(|&b| hit(b) != 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    proptest::proptest! {
        #[test]
        fn blocks_find_a_plus_or_percent_wherever_it_is(
            bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..80),
        ) {
            proptest::prop_assert_eq!(
                has_plus_or_percent(&bytes),
                bytes.contains(&b'+') || bytes.contains(&b'%')
            );
        }
    }

    #[test]
    fn a_query_names_its_first_unknown_parameter_however_long_or_odd_it_is() {
        // Many distinct names: refused, naming the first, as for a short query.
        let long: Vec<String> = (0..20_000).map(|n| format!("p{n}=1")).collect();
        let error = parse_query::<ListQuery>(&long.join("&")).unwrap_err();
        assert!(
            matches!(&error, ApiError::InvalidField { field, .. } if field == "p0"),
            "{error:?}"
        );
        // A name holding a backtick or a comma is named whole.
        for name in ["a`b", "x`, y", "`"] {
            let query = format!("limit=5&{}=1", name.replace('`', "%60").replace(' ', "+"));
            let error = parse_query::<ListQuery>(&query).unwrap_err();
            assert!(
                matches!(&error, ApiError::InvalidField { field, .. } if field == name),
                "{error:?}"
            );
            let error = parse_query::<NoParameters>(&query).unwrap_err();
            assert!(
                matches!(&error, ApiError::InvalidField { field, .. } if field == "limit"),
                "{error:?}"
            );
        }
        // A repeat late in a long query of distinct names is found.
        let mut names = long.clone();
        names.push("p19999=2".to_owned());
        let error = parse_query::<ListQuery>(&names.join("&")).unwrap_err();
        assert!(
            matches!(&error, ApiError::InvalidField { field, reason } if field == "p19999" && reason == "appears more than once"),
            "{error:?}"
        );
        // Control: the parameters of the endpoint, once each, are read.
        let query: ListQuery = parse_query("limit=7&cursor=YQ").unwrap();
        assert_eq!(query.limit.0, 7);
        assert_eq!(query.cursor, Some(Cursor("a".to_owned())));
    }
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
