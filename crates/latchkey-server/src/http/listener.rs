//! The server's side of the accept loop (`latchkey-listener`): what each request
//! carries from its connection, and the 408 a stalled body gets (docs/DEPLOYMENT.md,
//! "Slow clients and connection limits" and "TLS at latchkey").
//!
//! Policy: every limit of the shared listener applies (request heads and TLS
//! handshakes timed, bodies that stop arriving cut, connections capped, responses
//! never timed). The server speaks HTTP/1.1 only, over TLS too: its clients (gateways,
//! latchkey-verify, OAuth libraries) keep connections alive and gain nothing from
//! HTTP/2, so it would only add attack surface. Each request carries the client's
//! address (`ConnectInfo`) and whether it presented a certificate from
//! `tls_client_ca_file` ([`ClientCertificate`]). On shutdown the loop stops accepting
//! and waits for requests in flight.

use crate::http::problem::PROBLEM_PREFIX;
use axum::Router;
use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::http::{HeaderValue, Request, Response, StatusCode, header};
use hyper::service::service_fn;
use latchkey_listener::{Accepted, Listener, RequestBody, StallGuard};
use serde_json::json;
use std::convert::Infallible;
use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;
use tower::ServiceExt;

pub use latchkey_listener::Limits;

/// Whether the request's connection presented a client certificate that chains to
/// `tls_client_ca_file` (false on plain HTTP and without one).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClientCertificate(pub bool);

/// Serves `router` on `listener` until `shutdown` completes, then stops accepting and
/// waits until every open connection has finished its request.
pub async fn serve(listener: Listener, router: Router, shutdown: impl Future<Output = ()>) {
    let body_timeout = listener.limits().body_read_timeout;
    let make = move |accepted: Accepted| {
        let router = router.clone();
        service_fn(move |request: Request<RequestBody>| {
            let router = router.clone();
            async move {
                let stalled = Arc::new(AtomicBool::new(false));
                let oauth = request.uri().path().starts_with("/oauth/");
                let (mut parts, body) = request.into_parts();
                parts.extensions.insert(ConnectInfo(accepted.peer));
                parts
                    .extensions
                    .insert(ClientCertificate(accepted.client_certificate));
                let body = Body::new(StallGuard::new(body, body_timeout).flagging(stalled.clone()));
                let response = router.oneshot(Request::from_parts(parts, body)).await;
                // The handler saw a failed body and answered for that; the client needs
                // to know it was too slow instead.
                if stalled.load(Ordering::Relaxed) {
                    return Ok::<_, Infallible>(request_timeout(oauth, body_timeout));
                }
                response
            }
        })
    };
    listener.serve(make, shutdown, None).await;
}

/// The 408 for a stalled body, in the error format of the endpoint: RFC 6749's shape on
/// `/oauth/…`, problem+json elsewhere (docs/API.md, "Slow clients").
fn request_timeout(oauth: bool, timeout: Duration) -> Response<Body> {
    let detail = format!("the request body sent nothing for {} s", timeout.as_secs());
    let (content_type, body) = if oauth {
        (
            "application/json",
            json!({ "error": "invalid_request", "error_description": detail }),
        )
    } else {
        (
            "application/problem+json",
            json!({
                "type": format!("{PROBLEM_PREFIX}request-timeout"),
                "title": "Request timeout",
                "status": StatusCode::REQUEST_TIMEOUT.as_u16(),
                "detail": detail,
            }),
        )
    };
    let mut response = Response::new(Body::from(body.to_string()));
    *response.status_mut() = StatusCode::REQUEST_TIMEOUT;
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    // The rest of the body may still arrive; the connection cannot be reused.
    headers.insert(header::CONNECTION, HeaderValue::from_static("close"));
    response
}
