//! The tower [`VerifyLayer`] / [`VerifyService`] pair and the axum extractor for the
//! verified [`Principal`].
//!
//! Policy: the service takes the bearer token from the `Authorization` header only
//! (RFC 6750 §2.1; query and form tokens leak into logs), verifies it for the client's
//! address, checks the route's [`Scopes`], and either answers the RFC 6750 error itself
//! or passes the request on with the principal in its extensions. Shaped like
//! tower-http's `AsyncRequireAuthorizationLayer`.
//!
//! The client's address is, in this order: a [`ClientAddress`] extension the app
//! inserted (it knows its own network best); else axum's `ConnectInfo<SocketAddr>`, the
//! TCP peer, with `X-Forwarded-For` believed only from
//! [`VerifierOptions::trusted_proxies`](crate::VerifierOptions::trusted_proxies); else
//! unknown, and then a credential with an IP allowlist is refused (README.md,
//! "Narrowing and IP allowlists").
//!
//! A DPoP-bound token comes with the `DPoP` scheme and a proof for the request's method
//! and URI (docs/MACHINES.md, "Binding tokens with DPoP"); the URI is worked out only for such
//! requests, so bearer requests pay nothing for it.

use crate::principal::{Principal, Scopes};
use crate::verifier::Verifier;
use axum::extract::{ConnectInfo, FromRequestParts};
use axum::http::request::Parts;
use axum::http::{HeaderMap, Request, Response, StatusCode, Uri};
use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use tower::{Layer, Service};

pub use crate::bearer::{bearer_token, presented_token};

/// The client's address as the app knows it, for IP allowlists: insert it as a request
/// extension before the [`VerifyLayer`] runs when the app sits behind its own proxies
/// and has already worked out who the client is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClientAddress(pub IpAddr);

/// The client address of a request: see the module docs.
fn client_address<B>(request: &Request<B>, verifier: &Verifier) -> Option<IpAddr> {
    if let Some(ClientAddress(ip)) = request.extensions().get::<ClientAddress>() {
        return Some(ip.to_canonical());
    }
    let ConnectInfo(peer) = request.extensions().get::<ConnectInfo<SocketAddr>>()?;
    let forwarded = request
        .headers()
        .get_all("x-forwarded-for")
        .iter()
        .map(|value| value.to_str().ok());
    Some(latchkey_core::forwarded::client_address(
        peer.ip(),
        forwarded,
        verifier.trusted_proxies(),
    ))
}

/// The absolute URI of `request` as its client addressed it, for a DPoP proof's `htu`:
/// the configured public origin and the request's path; else the request's own
/// absolute URI (HTTP/2, or a proxy's absolute-form request); else `http://`, its
/// `Host` and its path. The query is left out, as `htu` ignores it.
pub fn request_uri(uri: &Uri, headers: &HeaderMap, origin: Option<&str>) -> String {
    let path = uri.path();
    if let Some(origin) = origin {
        return format!("{origin}{path}");
    }
    if let (Some(scheme), Some(authority)) = (uri.scheme_str(), uri.authority()) {
        return format!("{scheme}://{authority}{path}");
    }
    let host = headers
        .get(axum::http::header::HOST)
        .and_then(|host| host.to_str().ok())
        .unwrap_or_default();
    format!("http://{host}{path}")
}

/// A tower layer requiring a valid bearer token that meets a scope requirement. Made
/// by [`Verifier::layer`] and [`Verifier::require`].
#[derive(Debug, Clone)]
pub struct VerifyLayer {
    verifier: Verifier,
    scopes: Scopes,
}

impl VerifyLayer {
    pub(crate) fn new(verifier: Verifier, scopes: Scopes) -> Self {
        Self { verifier, scopes }
    }
}

impl<S> Layer<S> for VerifyLayer {
    type Service = VerifyService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        VerifyService {
            inner,
            verifier: self.verifier.clone(),
            scopes: self.scopes.clone(),
        }
    }
}

/// The service made by [`VerifyLayer`]: answers 400/401/403/503 itself, or calls the
/// inner service with an `Arc<Principal>` in the request extensions.
#[derive(Debug, Clone)]
pub struct VerifyService<S> {
    inner: S,
    verifier: Verifier,
    scopes: Scopes,
}

impl<S, ReqBody, ResBody> Service<Request<ReqBody>> for VerifyService<S>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    ReqBody: Send + 'static,
    ResBody: Default + Send + 'static,
{
    type Response = Response<ResBody>;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Self::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: Request<ReqBody>) -> Self::Future {
        // The clone is not ready; take the one that was polled (tower's usual dance).
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let verifier = self.verifier.clone();
        let scopes = self.scopes.clone();
        Box::pin(async move {
            let client = client_address(&request, &verifier);
            let (target, headers) = (request.uri(), request.headers());
            let uri = || request_uri(target, headers, verifier.public_origin());
            let method = request.method().as_str();
            let authenticated = verifier
                .authenticate_request(method, headers, uri, client)
                .await;
            let verified = match authenticated {
                Ok(principal) => scopes.check(&principal).map(|()| principal),
                Err(error) => Err(error),
            };
            match verified {
                Ok(principal) => {
                    request.extensions_mut().insert(principal);
                    inner.call(request).await
                }
                Err(error) => Ok(error.to_response()),
            }
        })
    }
}

/// Extracts the principal a [`VerifyLayer`] verified. A handler asking for it behind no
/// such layer is a wiring mistake, answered with a 500.
impl<S: Send + Sync> FromRequestParts<S> for Principal {
    type Rejection = (StatusCode, &'static str);

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        match parts.extensions.get::<Arc<Principal>>() {
            Some(principal) => Ok(Principal::clone(principal)),
            None => {
                tracing::error!("a handler wants a Principal but no VerifyLayer runs before it");
                Err((
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "authentication is not configured for this route",
                ))
            }
        }
    }
}

impl Verifier {
    /// A tower layer that lets through requests with a valid token.
    pub fn layer(&self) -> VerifyLayer {
        self.require(Scopes::none())
    }

    /// A tower layer that lets through requests with a valid token meeting `scopes`.
    pub fn require(&self, scopes: Scopes) -> VerifyLayer {
        VerifyLayer::new(self.clone(), scopes)
    }
}
