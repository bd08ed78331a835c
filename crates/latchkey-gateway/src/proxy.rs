//! One request's way through the gateway, as phases over a [`RequestContext`]:
//! route → authenticate → authorize → forward → record.
//!
//! Policy: each phase is a small function that reads the context and the request, and
//! either fills in the context or ends the request with a [`ProxyError`] saying whose
//! fault it is; [`handle`] only sequences them. Recording runs for every request,
//! whatever phase ended it. The routing table is read once per request, so a reload
//! in the middle of a request does not change what that request sees.

use crate::error::ProxyError;
use crate::gateway::Shared;
use crate::headers;
use crate::route::{Access, Route, RouteTable, path_is_unambiguous};
use crate::upstream::{BoxError, GatewayBody, Progress, Upstream, streamed};
use crate::usage::UsageKey;
use hyper::body::{Body, Bytes};
use hyper::http::uri::{PathAndQuery, Scheme};
use hyper::{HeaderMap, Method, Request, Response, Uri, Version};
use latchkey_core::Timestamp;
use latchkey_verify::{Clock, InvalidReason, Principal, SystemClock, Verifier, VerifyError};
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

/// What the phases learn about a request.
#[derive(Debug)]
pub(crate) struct RequestContext {
    /// The client's address (the TCP peer).
    pub(crate) client: IpAddr,
    pub(crate) method: Method,
    pub(crate) received_at: Timestamp,
    /// Set by the route phase.
    pub(crate) route: Option<Arc<Route>>,
    /// Set by the authenticate phase, on protected routes.
    pub(crate) principal: Option<Arc<Principal>>,
}

impl RequestContext {
    pub(crate) fn new(peer: SocketAddr, method: Method) -> Self {
        Self {
            client: peer.ip().to_canonical(),
            method,
            received_at: SystemClock.now(),
            route: None,
            principal: None,
        }
    }
}

/// Route: the route of the longest prefix matching `path`.
pub(crate) fn route(table: &RouteTable, path: &str) -> Result<Arc<Route>, ProxyError> {
    if !path_is_unambiguous(path) {
        return Err(ProxyError::AmbiguousPath);
    }
    table.find(path).cloned().ok_or(ProxyError::NoRoute)
}

/// Authenticate: the verified caller of a protected route; `None` on a public route,
/// whose requests are not looked at.
pub(crate) async fn authenticate(
    verifier: &Verifier,
    route: &Route,
    headers: &HeaderMap,
) -> Result<Option<Arc<Principal>>, ProxyError> {
    match route.access {
        Access::Public => Ok(None),
        Access::Token(_) => verifier
            .authenticate(headers)
            .await
            .map(Some)
            .map_err(ProxyError::Verify),
    }
}

/// Authorize: the caller meets the scopes the route needs for `method`. The token's IP
/// allowlist is enforced by the server when the token is exchanged or introspected; a
/// [`Principal`] carries no allowlist, so nothing more is checked here.
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

/// Forward: sends the request to the route's upstream with rewritten headers, and
/// returns its answer, both bodies streaming.
pub(crate) async fn forward<B>(
    upstream: &Upstream,
    context: &RequestContext,
    route: &Route,
    request: Request<B>,
) -> Result<Response<GatewayBody>, ProxyError>
where
    B: Body<Data = Bytes> + Send + Unpin + 'static,
    B::Error: Into<BoxError>,
{
    let (mut parts, body) = request.into_parts();
    headers::to_upstream(
        &mut parts.headers,
        context.principal.as_deref(),
        context.client,
        route.strip_authorization,
    )
    .map_err(|error| {
        tracing::error!(%error, "an identity header could not be encoded");
        ProxyError::Internal
    })?;
    let path = parts
        .uri
        .path_and_query()
        .cloned()
        .unwrap_or_else(|| PathAndQuery::from_static("/"));
    parts.uri = Uri::builder()
        .scheme(Scheme::HTTP)
        .authority(route.upstream.clone())
        .path_and_query(path)
        .build()
        .map_err(|error| {
            tracing::error!(%error, "the upstream URI could not be built");
            ProxyError::Internal
        })?;
    parts.version = Version::HTTP_11;
    let progress = Progress::new();
    let request = Request::from_parts(parts, progress.track(body));
    let response = upstream.send(request, route.timeout, &progress).await?;
    let (mut parts, body) = response.into_parts();
    headers::remove_hop_by_hop(&mut parts.headers);
    Ok(Response::from_parts(parts, streamed(body)))
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
    peer: SocketAddr,
    request: Request<B>,
) -> Response<GatewayBody>
where
    B: Body<Data = Bytes> + Send + Unpin + 'static,
    B::Error: Into<BoxError>,
{
    let table = shared.routes();
    let mut context = RequestContext::new(peer, request.method().clone());
    let result = phases(shared, &table, &mut context, request).await;
    let (response, refused) = match result {
        Ok(response) => (response, None),
        Err(error) => {
            tracing::debug!(
                client = %context.client,
                method = %context.method,
                status = error.status().as_u16(),
                ?error,
                "request answered by the gateway"
            );
            (error.clone().into_response(), Some(error))
        }
    };
    record(shared, &context, response.status(), refused.as_ref());
    response
}

async fn phases<B>(
    shared: &Shared,
    table: &RouteTable,
    context: &mut RequestContext,
    request: Request<B>,
) -> Result<Response<GatewayBody>, ProxyError>
where
    B: Body<Data = Bytes> + Send + Unpin + 'static,
    B::Error: Into<BoxError>,
{
    let route = route(table, request.uri().path())?;
    context.route = Some(route.clone());
    context.principal = authenticate(&shared.verifier, &route, request.headers()).await?;
    if let Some(principal) = context.principal.as_deref()
        && !principal.allowed_from(context.client)
    {
        return Err(ProxyError::Verify(VerifyError::InvalidToken(
            InvalidReason::AddressNotAllowed,
        )));
    }
    authorize(&route, request.method(), context.principal.as_deref())?;
    forward(&shared.upstream, context, &route, request).await
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::GatewayConfig;
    use latchkey_core::jwt::TokenOwnerType;
    use latchkey_core::permission::parse_scope;
    use latchkey_core::{TenantId, TokenId};
    use latchkey_verify::TokenKind;

    fn table() -> RouteTable {
        let config = GatewayConfig::from_toml(
            r#"
listen = "127.0.0.1:0"
server = "http://127.0.0.1:1"
credential = "c"
[[route]]
prefix = "/reports"
upstream = "http://127.0.0.1:9"
scopes = { GET = ["reports:read"], "*" = ["reports:admin"] }
[[route]]
prefix = "/health"
upstream = "http://127.0.0.1:9"
public = true
"#,
        )
        .unwrap();
        RouteTable::compile(&config).unwrap()
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
        }
    }

    #[test]
    fn routing_refuses_ambiguous_paths_before_matching() {
        let t = table();
        assert_eq!(
            route(&t, "/health/../reports").unwrap_err(),
            ProxyError::AmbiguousPath
        );
        assert_eq!(route(&t, "/nowhere").unwrap_err(), ProxyError::NoRoute);
        assert_eq!(&*route(&t, "/reports/7").unwrap().prefix, "/reports");
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
