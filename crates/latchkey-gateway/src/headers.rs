//! Header rewriting between the client, the gateway and the upstream.
//!
//! Policy:
//! - **Identity headers are the gateway's alone.** Every request header whose name,
//!   case-folded and with every character other than a letter or digit read as `-`,
//!   starts with `x-latchkey-` is removed before anything is set, on every route, so a
//!   client can never supply `X-Latchkey-Token-Id`, `X-Latchkey-Tenant`,
//!   `X-Latchkey-User` or `X-Latchkey-Scopes` (nor any such header a later version
//!   adds) under any spelling an upstream might fold into those names: CGI and WSGI
//!   (and nginx with `underscores_in_headers`) read `X_Latchkey_User` as
//!   `X-Latchkey-User`, and some servers turn every other punctuation mark (`.`, `~`,
//!   …) into `_` too. After a successful
//!   authentication the gateway sets them from the verified principal: the token id,
//!   the tenant, the user (personal tokens only; absent otherwise) and the effective
//!   scopes, space-separated and sorted (present, possibly empty); and for an access
//!   token issued through a trust (the JWT-bearer grant) the trust's id and the outside
//!   caller's subject, absent otherwise. Public routes get none.
//! - **A subject is any string its issuer wrote**, so it is percent-encoded: every byte
//!   of its UTF-8 that is not visible ASCII (`!`–`~`), and `%` itself, becomes `%XX`.
//!   The subjects CI platforms write (`repo:acme/app:ref:refs/heads/main`,
//!   `system:serviceaccount:ci:deployer`, `spiffe://example.org/ci`) hold none of
//!   those and arrive as issued; one with a space, a control character or non-ASCII
//!   cannot break or add a header, and one percent-decoding gives it back exactly.
//! - **Hop-by-hop headers stop here** (RFC 9110 §7.6.1): `Connection` and every header
//!   it names, `Keep-Alive`, `Proxy-Connection`, `Proxy-Authenticate`,
//!   `Proxy-Authorization`, `TE`, `Trailer`, `Transfer-Encoding` and `Upgrade`, both
//!   ways. `Expect` is dropped too: the gateway already answered `100-continue` to the
//!   client when it started reading the body. Upgrades (WebSocket) are therefore not
//!   proxied.
//! - **`X-Forwarded-For`** gets the client's address appended: the TCP peer, or the
//!   address a trusted proxy named (`trusted_proxies`); earlier values are kept for the
//!   upstream to judge, and the gateway believes them only from trusted proxies.
//! - **`Authorization` is kept** unless the route says `strip_authorization`: upstreams
//!   that re-verify with the tower layer, or relay the token, keep working. `Host` is
//!   kept as the client sent it.

use hyper::HeaderMap;
use hyper::body::Bytes;
use hyper::header::{self, Entry, HeaderName, HeaderValue};
use latchkey_core::permission::format_scope;
use latchkey_telemetry::request_id;
use latchkey_verify::Principal;
use std::net::IpAddr;
use std::sync::{Arc, Mutex, PoisonError};

/// The token id of the verified caller.
pub const TOKEN_ID: HeaderName = HeaderName::from_static("x-latchkey-token-id");
/// The caller's tenant.
pub const TENANT: HeaderName = HeaderName::from_static("x-latchkey-tenant");
/// The caller's user, for personal tokens.
pub const USER: HeaderName = HeaderName::from_static("x-latchkey-user");
/// The caller's effective scopes, space-separated.
pub const SCOPES: HeaderName = HeaderName::from_static("x-latchkey-scopes");
/// The trust that issued the caller's access token (the JWT-bearer grant).
pub const TRUST: HeaderName = HeaderName::from_static("x-latchkey-trust");
/// The outside caller's subject on a trust-issued access token, percent-encoded.
pub const SUBJECT: HeaderName = HeaderName::from_static("x-latchkey-subject");

const IDENTITY_PREFIX: &str = "x-latchkey-";

pub(crate) const X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");

/// The hop-by-hop names (RFC 9110 §7.6.1), and `Proxy-Connection`.
const HOP_BY_HOP_NAMES: [&str; 9] = [
    "connection",
    "keep-alive",
    "proxy-connection",
    "proxy-authenticate",
    "proxy-authorization",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
];

// A static, not a const: a const array of `HeaderName`s (which have drop glue) may be
// built and dropped at every use. `from_static` gives standard names their standard
// form, so these compare as `header::CONNECTION` and the others do.
static HOP_BY_HOP: [HeaderName; 9] = {
    let n = HOP_BY_HOP_NAMES;
    [
        HeaderName::from_static(n[0]),
        HeaderName::from_static(n[1]),
        HeaderName::from_static(n[2]),
        HeaderName::from_static(n[3]),
        HeaderName::from_static(n[4]),
        HeaderName::from_static(n[5]),
        HeaderName::from_static(n[6]),
        HeaderName::from_static(n[7]),
        HeaderName::from_static(n[8]),
    ]
};

/// The lengths of the [`HOP_BY_HOP`] names, as a set of bits: most names are ruled out
/// by their length alone.
const HOP_BY_HOP_LENGTHS: u32 = {
    let mut bits = 0u32;
    let mut i = 0;
    while i < HOP_BY_HOP_NAMES.len() {
        bits |= 1 << HOP_BY_HOP_NAMES[i].len();
        i += 1;
    }
    bits
};

/// Removes a request's hop-by-hop headers, including those `Connection` names (an
/// upstream's answer is filtered as it is read, by [`passed_back`]). One pass over the
/// names finds them, marking which of [`HOP_BY_HOP`] are present; the map is searched
/// only for those, and most requests carry none or one (`Connection: keep-alive`). Only a name `Connection` lists beyond those, present in the map, is
/// collected, so the common case allocates nothing.
pub(crate) fn remove_hop_by_hop(headers: &mut HeaderMap) {
    let mut present = 0u16;
    let mut named: Vec<HeaderName> = Vec::new();
    for (name, value) in headers.iter() {
        let length = name.as_str().len();
        if length >= 32 || HOP_BY_HOP_LENGTHS & (1 << length) == 0 {
            continue;
        }
        let Some(i) = HOP_BY_HOP.iter().position(|hop| hop == name) else {
            continue;
        };
        present |= 1 << i;
        if name != header::CONNECTION {
            continue;
        }
        let listed = value.to_str().into_iter().flat_map(|v| v.split(','));
        for option in listed.map(str::trim) {
            let standard = is_hop_by_hop_name(option.as_bytes());
            // A listed hop-by-hop name is found by this pass anyway; another is only
            // parsed when the map holds it.
            if standard || !headers.contains_key(option) {
                continue;
            }
            if let Ok(name) = HeaderName::from_bytes(option.as_bytes()) {
                named.push(name);
            }
        }
    }
    for (i, hop) in HOP_BY_HOP.iter().enumerate() {
        if present & (1 << i) != 0 {
            headers.remove(hop);
        }
    }
    for name in named {
        headers.remove(name);
    }
}

/// Whether `option`, a name `Connection` lists, is one of [`HOP_BY_HOP_NAMES`], case
/// ignored. Most options (`keep-alive`, `close`) are settled by their length alone or
/// by one or two comparisons.
fn is_hop_by_hop_name(option: &[u8]) -> bool {
    let length = option.len();
    length < 32
        && HOP_BY_HOP_LENGTHS & (1 << length) != 0
        && HOP_BY_HOP_NAMES
            .iter()
            .any(|name| name.len() == length && name.as_bytes().eq_ignore_ascii_case(option))
}

/// Which fields of an upstream's answer, read as `fields` (name, value), go on to the
/// client, as the module policy says: none of the hop-by-hop ones, none its
/// `Connection` fields list, and not `X-Request-Id`, which the gateway answers with its
/// own. The `Connection` values are searched for each name only when they list a name
/// beyond the hop-by-hop ones, which few answers do.
pub(crate) fn passed_back<'a, F>(fields: F) -> impl Fn(&[u8]) -> bool
where
    F: Iterator<Item = (&'a [u8], &'a [u8])> + Clone,
{
    let listed = move || {
        fields
            .clone()
            .filter(|(name, _)| name.eq_ignore_ascii_case(b"connection"))
            .flat_map(|(_, value)| value.split(|&byte| byte == b','))
            .map(<[u8]>::trim_ascii)
    };
    let lists_others = listed().any(|option| !option.is_empty() && !is_hop_by_hop_name(option));
    move |name: &[u8]| {
        let stops = is_hop_by_hop_name(name)
            || name.eq_ignore_ascii_case(request_id::NAME.as_str().as_bytes())
            || (lists_others && listed().any(|option| option.eq_ignore_ascii_case(name)));
        !stops
    }
}

/// Removes every header an upstream could read as an `x-latchkey-*` one.
pub(crate) fn strip_identity(headers: &mut HeaderMap) {
    let spoofed: Vec<HeaderName> = headers
        .keys()
        .filter(|name| is_identity(name))
        .cloned()
        .collect();
    for name in spoofed {
        headers.remove(name);
    }
}

/// Whether `name`, folded as the module policy says, starts with `x-latchkey-`.
fn is_identity(name: &HeaderName) -> bool {
    let name = name.as_str();
    // Most names are ruled out by their length or their first letter (names are
    // lower-case in a `HeaderName`, and `x` is a letter, so it folds to itself).
    if name.len() < IDENTITY_PREFIX.len() || !name.starts_with('x') {
        return false;
    }
    let folded = name.bytes().map(|b| {
        if b.is_ascii_alphanumeric() {
            b.to_ascii_lowercase()
        } else {
            b'-'
        }
    });
    folded
        .take(IDENTITY_PREFIX.len())
        .eq(IDENTITY_PREFIX.bytes())
}

/// The identity headers of one verified principal, encoded once: the values are shared
/// bytes, so setting them on each of its requests copies none.
#[derive(Debug)]
pub(crate) struct Identity {
    of: Arc<Principal>,
    values: Vec<(HeaderName, HeaderValue)>,
}

impl Identity {
    /// The headers the module policy gives `principal`. Fails only if an id held a byte
    /// no header may carry, which the id types rule out.
    pub(crate) fn encode(principal: Arc<Principal>) -> Result<Self, header::InvalidHeaderValue> {
        let value = |text: String| HeaderValue::from_maybe_shared(Bytes::from(text));
        let mut values = Vec::with_capacity(6);
        values.push((TOKEN_ID, value(principal.token_id.to_string())?));
        values.push((TENANT, value(principal.tenant.as_str().to_owned())?));
        if let Some(user) = &principal.user {
            values.push((USER, value(user.as_str().to_owned())?));
        }
        values.push((SCOPES, value(format_scope(&principal.scopes))?));
        if let Some(trust) = &principal.trust {
            values.push((TRUST, value(trust.trust_id.to_string())?));
            values.push((SUBJECT, value(encode_subject(&trust.subject))?));
        }
        Ok(Self {
            of: principal,
            values,
        })
    }

    /// Whether these are the headers of `principal`, the very same one: the verifier
    /// hands back one `Arc` for a token while what it grants is unchanged, and a new one
    /// when it changes. Holding `of` keeps its address from being reused.
    fn is_of(&self, principal: &Arc<Principal>) -> bool {
        Arc::ptr_eq(&self.of, principal)
    }

    /// Sets the headers on a request.
    fn set(&self, headers: &mut HeaderMap) {
        for (name, value) in &self.values {
            headers.insert(name.clone(), value.clone());
        }
    }
}

/// The identity last encoded on one client connection. A client sends a connection's
/// requests with one token as a rule, so its headers are encoded once per connection
/// (and again when what the token grants changes) instead of once per request. With
/// other tokens mixed in it is encoded as often as before, never wrongly: a principal
/// is recognised by identity, not by value.
#[derive(Debug, Default)]
pub(crate) struct LastIdentity(Mutex<Option<Arc<Identity>>>);

impl LastIdentity {
    /// The identity headers of `principal`, from this connection's last ones when they
    /// are its own.
    pub(crate) fn of(
        &self,
        principal: &Arc<Principal>,
    ) -> Result<Arc<Identity>, header::InvalidHeaderValue> {
        let mut last = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(identity) = last.as_ref().filter(|last| last.is_of(principal)) {
            return Ok(identity.clone());
        }
        let identity = Arc::new(Identity::encode(principal.clone())?);
        *last = Some(identity.clone());
        Ok(identity)
    }
}

/// `subject` with every byte outside visible ASCII, and `%`, percent-encoded (upper-case
/// hex), so that it is always a valid header value that decodes back to `subject`.
fn encode_subject(subject: &str) -> String {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    let mut out = String::with_capacity(subject.len());
    for byte in subject.bytes() {
        if byte.is_ascii_graphic() && byte != b'%' {
            out.push(char::from(byte));
        } else {
            out.push('%');
            out.push(char::from(HEX[usize::from(byte >> 4)]));
            out.push(char::from(HEX[usize::from(byte & 0x0F)]));
        }
    }
    out
}

/// Appends `client` to `X-Forwarded-For`, folding repeated headers into one. The map is
/// searched once; without an earlier header (the common case) the address is written on
/// the stack and copied once into the header.
pub(crate) fn append_forwarded_for(headers: &mut HeaderMap, client: IpAddr) {
    let address = AddressText::of(client);
    match headers.entry(X_FORWARDED_FOR) {
        Entry::Vacant(vacant) => {
            // Digits, dots, colons and hex letters: always a valid header value.
            if let Ok(value) = HeaderValue::from_bytes(address.as_bytes()) {
                vacant.insert(value);
            }
        }
        Entry::Occupied(mut occupied) => {
            let mut value = String::new();
            for earlier in occupied.iter() {
                let Some(earlier) = earlier.to_str().ok().map(str::trim) else {
                    continue;
                };
                if !earlier.is_empty() {
                    value.push_str(earlier);
                    value.push_str(", ");
                }
            }
            value.extend(address.as_bytes().iter().copied().map(char::from));
            match HeaderValue::from_str(&value) {
                Ok(value) => {
                    occupied.insert(value);
                }
                Err(_) => {
                    occupied.remove_entry_mult();
                }
            }
        }
    }
}

/// An address written as `Display` writes it, on the stack.
struct AddressText {
    bytes: [u8; AddressText::MAX],
    len: usize,
}

impl AddressText {
    /// The longest text: an IPv6 address with an IPv4 tail.
    const MAX: usize = "ffff:ffff:ffff:ffff:ffff:ffff:255.255.255.255".len();

    /// `address`'s text. An IPv4 address, the common case, is written digit by digit:
    /// the formatter's general machinery cost more than the rest of the header
    /// rewriting.
    fn of(address: IpAddr) -> Self {
        let mut text = Self {
            bytes: [0; Self::MAX],
            len: 0,
        };
        match address {
            IpAddr::V4(v4) => {
                for (i, octet) in v4.octets().into_iter().enumerate() {
                    if i > 0 {
                        text.push(b'.');
                    }
                    if octet >= 100 {
                        text.push(b'0' + octet / 100);
                    }
                    if octet >= 10 {
                        text.push(b'0' + octet / 10 % 10);
                    }
                    text.push(b'0' + octet % 10);
                }
            }
            IpAddr::V6(v6) => {
                let mut rest = &mut text.bytes[..];
                // The buffer holds the longest text, so the write cannot fail.
                if std::io::Write::write_fmt(&mut rest, format_args!("{v6}")).is_ok() {
                    text.len = Self::MAX - rest.len();
                }
            }
        }
        text
    }

    fn push(&mut self, byte: u8) {
        if let Some(slot) = self.bytes.get_mut(self.len) {
            *slot = byte;
            self.len += 1;
        }
    }

    fn as_bytes(&self) -> &[u8] {
        &self.bytes[..self.len]
    }
}

/// Rewrites a client's request headers for the upstream.
pub(crate) fn to_upstream(
    headers: &mut HeaderMap,
    identity: Option<&Identity>,
    client: IpAddr,
    strip_authorization: bool,
) {
    remove_hop_by_hop(headers);
    headers.remove(header::EXPECT);
    strip_identity(headers);
    if strip_authorization {
        headers.remove(header::AUTHORIZATION);
    }
    if let Some(identity) = identity {
        identity.set(headers);
    }
    append_forwarded_for(headers, client);
}

#[cfg(test)]
mod tests {
    use super::*;
    use latchkey_core::jwt::TokenOwnerType;
    use latchkey_core::permission::parse_scope;
    use latchkey_core::{TenantId, TokenId, UserId};
    use latchkey_verify::TokenKind;
    use proptest::prelude::*;

    fn principal(user: Option<&str>) -> Principal {
        Principal {
            token_id: TokenId::from_u128(42),
            tenant: TenantId::parse("acme").unwrap(),
            user: user.map(|u| UserId::parse(u).unwrap()),
            owner: TokenOwnerType::Tenant,
            kind: TokenKind::ClientCredentials,
            scopes: parse_scope("reports:write reports:read").unwrap(),
            jti: None,
            expires_at: None,
            ip_allowlist: Vec::new(),
            trust: None,
        }
    }

    /// [`to_upstream`] for a request of `principal`, its identity encoded afresh.
    fn rewrite(
        headers: &mut HeaderMap,
        principal: Option<&Principal>,
        client: IpAddr,
        strip_authorization: bool,
    ) -> Result<(), header::InvalidHeaderValue> {
        let identity = principal
            .map(|principal| Identity::encode(Arc::new(principal.clone())))
            .transpose()?;
        to_upstream(headers, identity.as_ref(), client, strip_authorization);
        Ok(())
    }

    /// Sets the identity headers of `principal`.
    fn set_identity(
        headers: &mut HeaderMap,
        principal: &Principal,
    ) -> Result<(), header::InvalidHeaderValue> {
        Identity::encode(Arc::new(principal.clone()))?.set(headers);
        Ok(())
    }

    fn map(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut headers = HeaderMap::new();
        for (name, value) in pairs {
            headers.append(
                HeaderName::from_bytes(name.as_bytes()).unwrap(),
                HeaderValue::from_str(value).unwrap(),
            );
        }
        headers
    }

    proptest! {
        #[test]
        fn an_address_is_written_as_display_writes_it(address in any::<IpAddr>()) {
            let text = AddressText::of(address);
            let expected = address.to_string();
            prop_assert_eq!(text.as_bytes(), expected.as_bytes());
        }

    }

    #[test]
    fn the_longest_addresses_are_written_whole() {
        for address in [
            "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff",
            "::ffff:255.255.255.255",
            "255.255.255.255",
        ] {
            let ip: IpAddr = address.parse().unwrap();
            assert_eq!(AddressText::of(ip).as_bytes(), address.as_bytes());
        }
    }

    #[test]
    fn spoofed_identity_headers_are_replaced_and_a_stray_user_removed() {
        let mut headers = map(&[
            ("x-latchkey-tenant", "evil"),
            ("X-Latchkey-User", "root"),
            ("x-latchkey-future", "1"),
            ("authorization", "Bearer t"),
        ]);
        rewrite(
            &mut headers,
            Some(&principal(None)),
            [10, 0, 0, 1].into(),
            false,
        )
        .unwrap();
        assert_eq!(headers[&TENANT], "acme");
        assert!(headers.get(&USER).is_none());
        assert!(headers.get("x-latchkey-future").is_none());
        assert_eq!(headers[&SCOPES], "reports:read reports:write");
        assert_eq!(
            headers[&TOKEN_ID],
            TokenId::from_u128(42).to_string().as_str()
        );
        assert_eq!(headers[header::AUTHORIZATION], "Bearer t");
    }

    #[test]
    fn a_public_request_keeps_no_identity_header() {
        let mut headers = map(&[("x-latchkey-token-id", "forged")]);
        rewrite(&mut headers, None, [10, 0, 0, 1].into(), true).unwrap();
        assert!(
            headers
                .keys()
                .all(|k| !k.as_str().starts_with("x-latchkey-"))
        );
    }

    #[test]
    fn hop_by_hop_headers_and_those_connection_names_are_removed() {
        let mut headers = map(&[
            ("connection", "close, x-private"),
            ("x-private", "1"),
            ("keep-alive", "timeout=5"),
            ("te", "trailers"),
            ("upgrade", "websocket"),
            ("transfer-encoding", "chunked"),
            ("expect", "100-continue"),
            ("x-kept", "1"),
        ]);
        rewrite(&mut headers, None, [10, 0, 0, 1].into(), false).unwrap();
        let names: Vec<&str> = headers.keys().map(HeaderName::as_str).collect();
        assert_eq!(names, ["x-kept", "x-forwarded-for"]);
    }

    #[test]
    fn the_client_address_is_appended_to_x_forwarded_for() {
        let mut headers = map(&[
            ("x-forwarded-for", "203.0.113.9"),
            ("x-forwarded-for", "198.51.100.1"),
        ]);
        append_forwarded_for(&mut headers, "::1".parse().unwrap());
        assert_eq!(headers[&X_FORWARDED_FOR], "203.0.113.9, 198.51.100.1, ::1");
    }

    #[test]
    fn identity_headers_are_stripped_under_every_spelling_on_every_route() {
        let spellings = [
            "X_Latchkey_User",
            "x_latchkey_user",
            "X-Latchkey_User",
            "x_latchkey-user",
            "X-LATCHKEY_USER",
            "x-latchkey-user",
            "X.Latchkey.User",
            "x~latchkey~tenant",
            "x_latchkey_anything",
        ];
        for principal in [None, Some(principal(None))] {
            let pairs: Vec<(&str, &str)> = spellings.iter().map(|n| (*n, "ceo")).collect();
            let mut headers = map(&pairs);
            headers.append("x-latchkeyuser", HeaderValue::from_static("kept"));
            headers.append("x-latchkey", HeaderValue::from_static("kept"));
            headers.append("latchkey-user", HeaderValue::from_static("kept"));
            rewrite(
                &mut headers,
                principal.as_ref(),
                [10, 0, 0, 1].into(),
                false,
            )
            .unwrap();
            assert!(headers.get(&USER).is_none());
            let values: Vec<&HeaderValue> = headers.values().collect();
            assert!(values.iter().all(|v| *v != "ceo"), "{headers:?}");
            for kept in ["x-latchkeyuser", "x-latchkey", "latchkey-user"] {
                assert_eq!(headers[kept], "kept");
            }
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(500))]

        #[test]
        fn stripping_removes_every_folded_identity_name_and_keeps_all_others(
            names in prop::collection::vec(
                prop_oneof![
                    "[xX][-_.~][lL][aA][tT][cC][hH][kK][eE][yY][-_.~+!][a-zA-Z_-]{0,8}",
                    "[a-zA-Z0-9!#$%&'*+.^_`|~-]{1,16}",
                ],
                0..8,
            )
        ) {
            let mut headers = HeaderMap::new();
            for name in &names {
                headers.append(
                    HeaderName::from_bytes(name.as_bytes()).unwrap(),
                    HeaderValue::from_static("v"),
                );
            }
            let before = headers.clone();
            strip_identity(&mut headers);
            let fold = |name: &str| -> String {
                name.chars()
                    .map(|c| if c.is_ascii_alphanumeric() { c.to_ascii_lowercase() } else { '-' })
                    .collect()
            };
            for name in before.keys() {
                let spoofed = fold(name.as_str()).starts_with("x-latchkey-");
                prop_assert_eq!(headers.contains_key(name), !spoofed, "{}", name);
                if !spoofed {
                    prop_assert_eq!(headers.get_all(name).iter().count(), before.get_all(name).iter().count());
                }
            }
            prop_assert!(headers.keys().all(|n| before.contains_key(n)));
        }
    }

    fn trust_principal(subject: &str) -> Principal {
        Principal {
            trust: Some(latchkey_verify::TrustCaller {
                trust_id: TokenId::from_u128(42),
                subject: subject.to_owned(),
            }),
            ..principal(None)
        }
    }

    /// Percent-decodes `text` once.
    fn decode(text: &str) -> Vec<u8> {
        let bytes = text.as_bytes();
        let mut out = Vec::new();
        let mut i = 0;
        while i < bytes.len() {
            if bytes[i] == b'%' {
                let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).unwrap();
                out.push(u8::from_str_radix(hex, 16).unwrap());
                i += 3;
            } else {
                out.push(bytes[i]);
                i += 1;
            }
        }
        out
    }

    #[test]
    fn a_trust_token_sets_its_trust_and_subject_and_a_plain_token_neither() {
        let mut headers = map(&[("x-latchkey-subject", "forged"), ("X_Latchkey_Trust", "x")]);
        let subject = "repo:acme/app:ref:refs/heads/main";
        rewrite(
            &mut headers,
            Some(&trust_principal(subject)),
            [10, 0, 0, 1].into(),
            false,
        )
        .unwrap();
        assert_eq!(headers[&SUBJECT], subject);
        assert_eq!(headers[&TRUST], TokenId::from_u128(42).to_string().as_str());
        assert_eq!(headers.get_all(&SUBJECT).iter().count(), 1);
        assert!(headers.get("x_latchkey_trust").is_none());

        let mut plain = map(&[("x-latchkey-subject", "forged"), ("x-latchkey-trust", "x")]);
        rewrite(
            &mut plain,
            Some(&principal(None)),
            [10, 0, 0, 1].into(),
            false,
        )
        .unwrap();
        assert!(plain.get(&SUBJECT).is_none());
        assert!(plain.get(&TRUST).is_none());
    }

    #[test]
    fn a_subject_that_no_header_may_carry_is_percent_encoded() {
        for (subject, sent) in [
            ("a b", "a%20b"),
            ("100%", "100%25"),
            (
                "x\r\nX-Latchkey-Tenant: evil",
                "x%0D%0AX-Latchkey-Tenant:%20evil",
            ),
            ("main\u{7f}", "main%7F"),
            ("réf", "r%C3%A9f"),
            ("spiffe://example.org/ci", "spiffe://example.org/ci"),
        ] {
            let mut headers = HeaderMap::new();
            set_identity(&mut headers, &trust_principal(subject)).unwrap();
            assert_eq!(headers[&SUBJECT], sent, "{subject:?}");
            assert_eq!(decode(sent), subject.as_bytes());
        }
    }

    proptest! {
        #[test]
        fn any_subject_makes_a_visible_ascii_header_that_decodes_back(subject in any::<String>()) {
            let mut headers = HeaderMap::new();
            set_identity(&mut headers, &trust_principal(&subject)).unwrap();
            let value = headers[&SUBJECT].as_bytes();
            prop_assert!(value.iter().all(u8::is_ascii_graphic));
            prop_assert_eq!(decode(std::str::from_utf8(value).unwrap()), subject.as_bytes());
        }
    }

    #[test]
    fn a_personal_token_sets_the_user() {
        let mut headers = HeaderMap::new();
        set_identity(&mut headers, &principal(Some("u_42"))).unwrap();
        assert_eq!(headers[&USER], "u_42");
    }

    #[test]
    fn a_connection_encodes_a_principal_once_and_a_changed_one_again() {
        let last = LastIdentity::default();
        let first = Arc::new(principal(None));
        let encoded = last.of(&first).unwrap();
        assert!(Arc::ptr_eq(&encoded, &last.of(&first).unwrap()));

        // Equal by value is not enough: only the very same principal reuses them.
        let twin = Arc::new(principal(None));
        let again = last.of(&twin).unwrap();
        assert!(!Arc::ptr_eq(&encoded, &again));

        // What the token grants changed: the verifier hands back another principal, whose
        // scopes are sent.
        let narrowed = Arc::new(Principal {
            scopes: parse_scope("reports:read").unwrap(),
            ..principal(None)
        });
        let scopes_sent = |principal: &Arc<Principal>| {
            let mut headers = HeaderMap::new();
            let identity = last.of(principal).unwrap();
            to_upstream(&mut headers, Some(&identity), [10, 0, 0, 1].into(), false);
            headers[&SCOPES].clone()
        };
        assert_eq!(scopes_sent(&narrowed), "reports:read");
        assert_eq!(scopes_sent(&first), "reports:read reports:write");
    }

    /// Hop-by-hop removal as the policy states it, without the fast path: every listed
    /// name and every name `Connection` lists.
    fn remove_hop_by_hop_plainly(headers: &mut HeaderMap) {
        let mut doomed: Vec<HeaderName> = HOP_BY_HOP.to_vec();
        for value in headers.get_all(header::CONNECTION) {
            let listed = value.to_str().into_iter().flat_map(|v| v.split(','));
            doomed.extend(
                listed.filter_map(|name| HeaderName::from_bytes(name.trim().as_bytes()).ok()),
            );
        }
        for name in doomed {
            headers.remove(name);
        }
    }

    proptest! {
        #[test]
        fn identity_names_are_recognised_as_the_plain_fold_recognises_them(
            name in prop_oneof![
                "[a-zA-Z0-9!#$%&'*+.^_`|~-]{1,24}",
                "[xX][-_.~+][lL][aA][tT][cC][hH][kK][eE][yY][-_.~+][a-zA-Z0-9_-]{0,8}",
            ]
        ) {
            let name = HeaderName::from_bytes(name.as_bytes()).unwrap();
            let plain: String = name
                .as_str()
                .chars()
                .map(|c| if c.is_ascii_alphanumeric() { c.to_ascii_lowercase() } else { '-' })
                .collect();
            prop_assert_eq!(is_identity(&name), plain.starts_with(IDENTITY_PREFIX));
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(1000))]

        #[test]
        fn hop_by_hop_removal_matches_the_plain_reading_of_the_policy(
            pairs in prop::collection::vec(
                (
                    prop_oneof![
                        Just("connection".to_owned()),
                        Just("keep-alive".to_owned()),
                        Just("te".to_owned()),
                        Just("upgrade".to_owned()),
                        Just("transfer-encoding".to_owned()),
                        Just("proxy-authorization".to_owned()),
                        "x-[a-c]{1,2}",
                        "[a-z-]{1,10}",
                    ],
                    prop_oneof![
                        "(close|keep-alive|Keep-Alive|TE|upgrade|x-[a-c]{1,2}|X-[A-C]{1,2}| |,|[a-z]{1,3})( ?, ?(close|keep-alive|x-[a-c]{1,2}|X-A|,|))*",
                        "[ -~]{0,12}",
                    ],
                ),
                0..8,
            )
        ) {
            let mut headers = HeaderMap::new();
            for (name, value) in &pairs {
                headers.append(
                    HeaderName::from_bytes(name.as_bytes()).unwrap(),
                    HeaderValue::from_str(value).unwrap(),
                );
            }
            let mut expected = headers.clone();
            remove_hop_by_hop_plainly(&mut expected);
            remove_hop_by_hop(&mut headers);
            prop_assert_eq!(headers, expected);
        }
    }
}
