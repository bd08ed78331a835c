//! One request's way through the gateway, as phases over a [`RequestContext`]:
//! route → authenticate → authorize → forward → record.
//!
//! Policy: each phase is a small function that reads the context and the request, and
//! either fills in the context or ends the request with a [`ProxyError`] saying whose
//! fault it is; [`handle`] only sequences them. Recording runs for every request,
//! whatever phase ended it. The routing table is read once per request, so a reload
//! in the middle of a request does not change what that request sees.

use crate::body::{BoxError, GatewayBody};
use crate::error::ProxyError;
use crate::headers::{self, LastIdentity};
use crate::metrics::UNMATCHED;
use crate::path::NormalisedPath;
use crate::route::{Access, Route, RouteTable};
use crate::shared::Shared;
use crate::upstream::Progress;
use crate::usage::UsageKey;
use hyper::body::{Body, Bytes};
use hyper::http::uri::{Authority, PathAndQuery};
use hyper::{HeaderMap, Method, Request, Response, Uri, Version};
use latchkey_core::Timestamp;
use latchkey_core::forwarded;
use latchkey_listener::WireFields;
use latchkey_telemetry::request_id;
use latchkey_verify::{Principal, Verifier, VerifyError, request_uri};
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Instant;
use tracing::Instrument;

/// What the phases learn about a request.
#[derive(Debug)]
pub(crate) struct RequestContext {
    /// The client's address: the TCP peer, or when the peer is one of the
    /// `trusted_proxies` the right-most address of `X-Forwarded-For` that is not
    /// (README.md, "Narrowing and IP allowlists"). IP allowlists, usage records and the `X-Forwarded-For`
    /// sent upstream all use it.
    pub(crate) client: IpAddr,
    pub(crate) method: Method,
    pub(crate) received_at: Timestamp,
    /// Set by the route phase.
    pub(crate) route: Option<Arc<Route>>,
    /// Set by the authenticate phase, on protected routes.
    pub(crate) principal: Option<Arc<Principal>>,
}

impl RequestContext {
    /// The context of a request received now by `verifier`'s clock, the one that also
    /// judges its token: usage is dated by the time that decided the request.
    pub(crate) fn new(
        peer: SocketAddr,
        method: Method,
        headers: &HeaderMap,
        verifier: &Verifier,
    ) -> Self {
        // Looked up only if `client_address` reads it: when the peer is a trusted proxy.
        let forwarded_for = std::iter::once(headers).flat_map(|headers| {
            headers
                .get_all(headers::X_FORWARDED_FOR)
                .iter()
                .map(|value| value.to_str().ok())
        });
        Self {
            client: forwarded::client_address(peer.ip(), forwarded_for, verifier.trusted_proxies()),
            method,
            received_at: verifier.clock().now(),
            route: None,
            principal: None,
        }
    }
}

/// Route: normalises the request's path, once, and finds the route of the longest
/// prefix matching it. [`forward`] sends that same [`NormalisedPath`], so the path the
/// gateway judged is by construction the path the upstream receives.
pub(crate) fn route(
    table: &RouteTable,
    uri: &Uri,
) -> Result<(Arc<Route>, NormalisedPath), ProxyError> {
    let path = NormalisedPath::parse(uri.path().as_bytes()).map_err(ProxyError::AmbiguousPath)?;
    let route = table
        .route(&path)
        .map_err(ProxyError::AmbiguousPath)?
        .cloned()
        .ok_or(ProxyError::NoRoute)?;
    Ok((route, path))
}

/// Authenticate: the verified caller of a protected route, with the scopes its token
/// grants now, usable from `client` (its IP allowlist, if any, holds the address);
/// `None` on a public route, whose requests are not looked at. A credential whose
/// allowlist does not hold `client` is refused as an invalid token (401).
///
/// A DPoP-bound token needs its proof for `method` and the URI the client addressed
/// (docs/MACHINES.md, "Binding tokens with DPoP"): `public_origin` and the path when it is
/// set; else the request's own absolute URI (HTTP/2); else `https` when the gateway
/// serves TLS (`tls`), `http` otherwise, with the `Host` header.
pub(crate) async fn authenticate(
    verifier: &Verifier,
    route: &Route,
    request: (&Method, &Uri, &HeaderMap),
    client: IpAddr,
    tls: bool,
) -> Result<Option<Arc<Principal>>, ProxyError> {
    let (method, uri, headers) = request;
    match route.access {
        Access::Public => Ok(None),
        Access::Token(_) => {
            let htu = || match (verifier.public_origin(), uri.scheme_str(), tls) {
                (None, None, true) => {
                    let host = headers
                        .get(hyper::header::HOST)
                        .and_then(|host| host.to_str().ok())
                        .unwrap_or_default();
                    format!("https://{host}{}", uri.path())
                }
                (origin, _, _) => request_uri(uri, headers, origin),
            };
            verifier
                .authenticate_request(method.as_str(), headers, htu, Some(client))
                .await
                .map(Some)
                .map_err(ProxyError::Verify)
        }
    }
}

/// Authorize: the caller meets the scopes the route needs for `method`. The scopes are
/// already narrowed to what the token grants now, and its allowlist was judged when it
/// was authenticated.
pub(crate) fn authorize(
    route: &Route,
    method: &Method,
    principal: Option<&Principal>,
) -> Result<(), ProxyError> {
    let Access::Token(scopes) = &route.access else {
        return Ok(());
    };
    let Some(needed) = scopes.for_method(method) else {
        return Err(ProxyError::MethodNotAllowed {
            allow: scopes.allowed(),
        });
    };
    let Some(principal) = principal else {
        // A protected route always has a principal by now; refuse rather than trust.
        return Err(ProxyError::Verify(VerifyError::MissingToken));
    };
    needed.check(principal).map_err(ProxyError::Verify)
}

/// Forward: sends the request to the route's upstream through the route's client, at
/// the normalised `path` with the query as sent, with rewritten headers, and returns
/// its answer, both bodies streaming. The upstream's clock starts at `started`, when
/// the request was received. The identity headers come from `last_identity`, the
/// connection's.
pub(crate) async fn forward<B>(
    last_identity: &LastIdentity,
    context: &RequestContext,
    route: &Route,
    path: &NormalisedPath,
    request: Request<B>,
    started: Instant,
) -> Result<Response<GatewayBody>, ProxyError>
where
    B: Body<Data = Bytes> + Send + Unpin + 'static,
    B::Error: Into<BoxError>,
{
    let identity = context
        .principal
        .as_ref()
        .map(|principal| last_identity.of(principal))
        .transpose()
        .map_err(|error| {
            tracing::error!(%error, "an identity header could not be encoded");
            ProxyError::Internal
        })?;
    let (mut parts, body) = request.into_parts();
    headers::to_upstream(
        &mut parts.headers,
        identity.as_deref(),
        context.client,
        route.strip_authorization,
    );
    keep_host(&mut parts.headers, &parts.uri, &route.upstream);
    parts.uri = upstream_uri(route, path, parts.uri.query())?;
    parts.version = Version::HTTP_11;
    let progress = Progress::since(started);
    let request = Request::from_parts(parts, progress.track(body));
    // The answer's hop-by-hop fields were left out as it was read (`h1`, with
    // `headers::passed_back`).
    route.client.send(request, route.timeout, &progress).await
}

/// An HTTP/2 client names the host in `:authority`, not in `Host`; the upstream, spoken
/// to in HTTP/1.1, gets it as `Host`, as it would have from an HTTP/1.1 client (the
/// host and port only: user information is never forwarded). A request that named no
/// host at all (HTTP/1.0) gets the `upstream`'s, as HTTP/1.1 requires one.
fn keep_host(headers: &mut HeaderMap, uri: &Uri, upstream: &Authority) {
    if headers.contains_key(hyper::header::HOST) {
        return;
    }
    let host = match uri.authority() {
        Some(authority) => match authority.port_u16() {
            Some(port) => format!("{}:{port}", authority.host()),
            None => authority.host().to_owned(),
        },
        None => upstream.as_str().to_owned(),
    };
    if let Ok(value) = hyper::header::HeaderValue::from_str(&host) {
        headers.insert(hyper::header::HOST, value);
    }
}

/// The URI the upstream is sent: the route's scheme and authority, `path`, and `query`
/// as the client sent it, put together from their parts with one allocation for the
/// path and query. Fails only if the query held a byte the client's URI could not,
/// which hyper rules out.
fn upstream_uri(
    route: &Route,
    path: &NormalisedPath,
    query: Option<&str>,
) -> Result<Uri, ProxyError> {
    let path = path.as_str();
    let mut target = String::with_capacity(path.len() + query.map_or(0, |q| q.len() + 1));
    target.push_str(path);
    if let Some(query) = query {
        target.push('?');
        target.push_str(query);
    }
    let mut parts = hyper::http::uri::Parts::default();
    parts.scheme = Some(route.scheme.clone());
    parts.authority = Some(route.upstream.clone());
    parts.path_and_query = Some(
        PathAndQuery::from_maybe_shared(Bytes::from(target)).map_err(|error| {
            tracing::error!(%error, "the upstream path could not be built");
            ProxyError::Internal
        })?,
    );
    Uri::from_parts(parts).map_err(|error| {
        tracing::error!(%error, "the upstream URI could not be built");
        ProxyError::Internal
    })
}

/// Record: counts the request, and its usage when a token was verified.
pub(crate) fn record(
    shared: &Shared,
    context: &RequestContext,
    status: hyper::StatusCode,
    refused: Option<&ProxyError>,
) {
    shared.counters.count(refused);
    if let (Some(usage), Some(route), Some(principal)) =
        (&shared.usage, &context.route, &context.principal)
    {
        usage.record(
            UsageKey::new(
                principal.token_id,
                route.prefix.clone(),
                context.method.clone(),
                status,
                context.client,
            ),
            context.received_at,
        );
    }
}

/// The whole way of one request.
pub(crate) async fn handle<B>(
    shared: &Shared,
    last_identity: &LastIdentity,
    peer: SocketAddr,
    request: Request<B>,
) -> Response<GatewayBody>
where
    B: Body<Data = Bytes> + Send + Unpin + 'static,
    B::Error: Into<BoxError>,
{
    let started = Instant::now();
    let table = shared.routes();
    let mut context = RequestContext::new(
        peer,
        request.method().clone(),
        request.headers(),
        &shared.verifier,
    );
    // The client's id if sane, else a new one; forwarded upstream, answered in
    // `X-Request-Id`, and in every log line of the request (docs/OPERATIONS.md).
    let id = request_id::from_client(request.headers().get(request_id::NAME));
    let span = tracing::info_span!(
        "request",
        request_id = id.to_str().unwrap_or_default(),
        method = %context.method,
        route = tracing::field::Empty,
        token_id = tracing::field::Empty,
        tenant = tracing::field::Empty,
    );
    let mut request = request;
    request.headers_mut().insert(request_id::NAME, id.clone());
    // A disabled span (RUST_LOG above info) is not entered on every poll: the phases
    // run in `Span::none()`, which costs nothing to enter, and their own events see no
    // parent either way. One await point, so the phases' future is stored once.
    let entered = if span.is_disabled() {
        tracing::Span::none()
    } else {
        span.clone()
    };
    let phases = phases(
        shared,
        last_identity,
        &table,
        &mut context,
        request,
        started,
    )
    .instrument(entered);
    let result = phases.await;
    let (mut response, refused) = match result {
        Ok(response) => (response, None),
        Err(error) => {
            tracing::debug!(
                parent: &span,
                client = %context.client,
                status = error.status().as_u16(),
                ?error,
                "request answered by the gateway"
            );
            (
                error.clone().into_response_for(id.to_str().ok()),
                Some(error),
            )
        }
    };
    record(shared, &context, response.status(), refused.as_ref());
    let elapsed = started.elapsed();
    let route = context
        .route
        .as_ref()
        .map_or(UNMATCHED, |route| &*route.prefix);
    shared
        .metrics
        .request(route, &context.method, response.status().as_u16(), elapsed);
    if let Some(principal) = &context.principal {
        span.record("token_id", tracing::field::display(principal.token_id));
        span.record("tenant", tracing::field::display(&principal.tenant));
    }
    span.record("route", route);
    tracing::info!(
        target: "latchkey::access",
        parent: &span,
        status = response.status().as_u16(),
        duration_us = u64::try_from(elapsed.as_micros()).unwrap_or(u64::MAX),
        "request"
    );
    // An upstream's answer carries its fields in wire form, without its own id
    // (`headers::passed_back`); the id joins them there rather than starting a map.
    let passed = response.extensions_mut().get_mut::<WireFields>();
    let name = request_id::NAME;
    if passed.is_none_or(|fields| {
        fields
            .push(name.as_str().as_bytes(), id.as_bytes())
            .is_err()
    }) {
        response.headers_mut().insert(name, id);
    }
    response
}

async fn phases<B>(
    shared: &Shared,
    last_identity: &LastIdentity,
    table: &RouteTable,
    context: &mut RequestContext,
    request: Request<B>,
    started: Instant,
) -> Result<Response<GatewayBody>, ProxyError>
where
    B: Body<Data = Bytes> + Send + Unpin + 'static,
    B::Error: Into<BoxError>,
{
    let (route, path) = route(table, request.uri())?;
    context.route = Some(route.clone());
    let head = (request.method(), request.uri(), request.headers());
    let tls = shared.tls.is_some();
    context.principal = authenticate(&shared.verifier, &route, head, context.client, tls).await?;
    authorize(&route, request.method(), context.principal.as_deref())?;
    forward(last_identity, context, &route, &path, request, started).await
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::GatewayConfig;
    use crate::path::PathError;
    use latchkey_core::jwt::TokenOwnerType;
    use latchkey_core::permission::parse_scope;
    use latchkey_core::{TenantId, TokenId};
    use latchkey_verify::TokenKind;
    use proptest::prelude::*;

    fn table() -> RouteTable {
        table_with("")
    }

    /// The test routes, and `extra` ones.
    fn table_with(extra: &str) -> RouteTable {
        let config = GatewayConfig::from_toml(&format!(
            r#"
listen = "127.0.0.1:0"
server = "http://127.0.0.1:1"
credential = "c"
{extra}
[[route]]
prefix = "/reports"
upstream = "http://127.0.0.1:9"
scopes = {{ GET = ["reports:read"], "*" = ["reports:admin"] }}
[[route]]
prefix = "/health"
upstream = "http://127.0.0.1:9"
public = true
"#,
        ))
        .unwrap();
        RouteTable::compile(&config, &crate::upstream::Upstream::new(None).unwrap()).unwrap()
    }

    fn principal(scope: &str) -> Principal {
        Principal {
            token_id: TokenId::from_u128(1),
            tenant: TenantId::parse("acme").unwrap(),
            user: None,
            owner: TokenOwnerType::Tenant,
            kind: TokenKind::ApiKey,
            scopes: parse_scope(scope).unwrap(),
            jti: None,
            expires_at: None,
            ip_allowlist: Vec::new(),
            trust: None,
        }
    }

    fn routed(t: &RouteTable, target: &str) -> Result<(String, String), ProxyError> {
        let uri: Uri = target.parse().unwrap();
        route(t, &uri).map(|(r, path)| (r.prefix.to_string(), path.to_string()))
    }

    #[test]
    fn the_upstream_always_gets_a_host() {
        let upstream = Authority::from_static("backend:8080");
        let host = |headers: &HeaderMap| headers[hyper::header::HOST].to_str().unwrap().to_owned();
        // An HTTP/1.1 client's own Host is kept, even beside an absolute URI.
        let mut headers = HeaderMap::new();
        headers.insert(hyper::header::HOST, "api.example".parse().unwrap());
        let absolute: Uri = "https://other.example/x".parse().unwrap();
        keep_host(&mut headers, &absolute, &upstream);
        assert_eq!(host(&headers), "api.example");
        // An HTTP/2 client's :authority, without its user information.
        let mut headers = HeaderMap::new();
        let with_user: Uri = "https://user:pw@api.example:8443/x".parse().unwrap();
        keep_host(&mut headers, &with_user, &upstream);
        assert_eq!(host(&headers), "api.example:8443");
        // No host named at all (HTTP/1.0): the upstream's.
        let mut headers = HeaderMap::new();
        let origin_form: Uri = "/x".parse().unwrap();
        keep_host(&mut headers, &origin_form, &upstream);
        assert_eq!(host(&headers), "backend:8080");
        assert_eq!(headers.len(), 1);
    }

    #[test]
    fn routing_refuses_ambiguous_paths_before_matching() {
        let t = table();
        assert_eq!(
            routed(&t, "/health/../reports"),
            Err(ProxyError::AmbiguousPath(PathError::DotSegment))
        );
        assert_eq!(
            routed(&t, "/health/x%2F..%2Freports"),
            Err(ProxyError::AmbiguousPath(PathError::Separator))
        );
        assert_eq!(routed(&t, "/nowhere"), Err(ProxyError::NoRoute));
        assert_eq!(
            routed(&t, "/reports/7?x=%2F"),
            Ok(("/reports".to_owned(), "/reports/7".to_owned()))
        );
        assert_eq!(
            routed(&t, "/%72eports/%7e%c3%a9"),
            Ok(("/reports".to_owned(), "/reports/~%C3%A9".to_owned()))
        );
    }

    #[test]
    fn the_upstream_gets_the_normalised_path_and_the_query_as_sent() {
        let t = table();
        let uri: Uri = "/%72eports/a%2c?b=%2f%61&c".parse().unwrap();
        let (reports, path) = route(&t, &uri).unwrap();
        let sent = upstream_uri(&reports, &path, uri.query()).unwrap();
        assert_eq!(
            sent.to_string(),
            "http://127.0.0.1:9/reports/a%2C?b=%2f%61&c"
        );
        let bare = upstream_uri(&reports, &path, None).unwrap();
        assert_eq!(bare.path_and_query().unwrap().as_str(), "/reports/a%2C");
    }

    #[test]
    fn each_route_keeps_its_upstream_scheme() {
        let t = table_with(
            "[[route]]\nprefix = \"/billing\"\nupstream = \"https://billing.internal:8443\"\n",
        );
        let uri: Uri = "/billing/7?x=1".parse().unwrap();
        let (billing, path) = route(&t, &uri).unwrap();
        let sent = upstream_uri(&billing, &path, uri.query()).unwrap();
        assert_eq!(
            sent.to_string(),
            "https://billing.internal:8443/billing/7?x=1"
        );
        let uri: Uri = "/reports/7".parse().unwrap();
        let (reports, path) = route(&t, &uri).unwrap();
        let sent = upstream_uri(&reports, &path, None).unwrap();
        assert_eq!(sent.to_string(), "http://127.0.0.1:9/reports/7");
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(1000))]

        #[test]
        fn the_path_the_upstream_receives_is_exactly_the_normalised_one(
            raw in crate::path::tests::path_bytes(),
            query in proptest::option::of("[a-z0-9=&%/?]{0,12}"),
        ) {
            // Every path has a route: the public root or a protected `/api` under it.
            let t = table_with(
                "[[route]]\nprefix = \"/\"\nupstream = \"http://127.0.0.1:9\"\npublic = true\n\
                 [[route]]\nprefix = \"/api\"\nupstream = \"http://127.0.0.1:9\"\n",
            );
            let target = match &query {
                Some(q) => format!("{}?{q}", String::from_utf8_lossy(&raw)),
                None => String::from_utf8_lossy(&raw).into_owned(),
            };
            // Targets hyper would refuse never reach the gateway.
            let Ok(uri) = target.parse::<Uri>() else {
                return Ok(());
            };
            let Ok((chosen, path)) = route(&t, &uri) else {
                return Ok(());
            };
            let sent = upstream_uri(&chosen, &path, uri.query()).unwrap();
            prop_assert_eq!(sent.path(), path.as_str());
            prop_assert_eq!(sent.query(), uri.query());
            prop_assert_eq!(NormalisedPath::parse(sent.path().as_bytes()), Ok(path));
        }
    }

    #[test]
    fn authorization_uses_the_method_then_star() {
        let t = table();
        let reports = t.find("/reports").unwrap();
        let reader = principal("reports:read");
        assert!(authorize(reports, &Method::GET, Some(&reader)).is_ok());
        let denied = authorize(reports, &Method::DELETE, Some(&reader)).unwrap_err();
        assert_eq!(
            denied,
            ProxyError::Verify(VerifyError::InsufficientScope {
                scope: "reports:admin".to_owned()
            })
        );
        let admin = principal("reports:admin");
        assert!(authorize(reports, &Method::DELETE, Some(&admin)).is_ok());
        assert!(authorize(reports, &Method::GET, None).is_err());
    }

    #[test]
    fn public_routes_need_nothing() {
        let t = table();
        assert!(authorize(t.find("/health").unwrap(), &Method::POST, None).is_ok());
    }
}
