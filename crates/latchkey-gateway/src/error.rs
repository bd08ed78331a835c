//! Answers the gateway makes itself, and whose fault each one is.
//!
//! Policy (docs/API.md, "The gateway's edge"): the status says who must act.
//!
//! | status | `error` | fault |
//! | --- | --- | --- |
//! | 400 | `invalid_request` | client: ambiguous path, malformed `Authorization`, body aborted |
//! | 401 | `missing_token` / `invalid_token` | client: no token, or a refused one |
//! | 403 | `insufficient_scope` | client: the token lacks the route's scopes |
//! | 404 | `not_found` | client: no route matches |
//! | 405 | `method_not_allowed` | client: the route lists no scopes for the method |
//! | 408 | `request_timeout` | client: the request body stopped arriving (connection closed) |
//! | 500 | `internal_error` | the gateway |
//! | 502 | `bad_gateway` | upstream: refused the connection or broke the exchange |
//! | 503 | `temporarily_unavailable` | latchkey: the deny list is stale, introspection down |
//! | 504 | `gateway_timeout` | upstream: no response head in time |
//!
//! Every such answer has a JSON body `{"error": …, "error_description": …}` and
//! `Cache-Control: no-store`. Authentication failures carry exactly the status and
//! `WWW-Authenticate` challenge that [`VerifyError`] gives (RFC 6750), so a client
//! sees the same thing from the gateway as from a service using the tower layer; the
//! description never says which check failed. Upstream answers, errors included, are
//! passed through untouched.

use crate::body::{GatewayBody, full};
use crate::path::PathError;
use hyper::header::{self, HeaderValue};
use hyper::{Response, StatusCode};
use latchkey_verify::VerifyError;
use serde::Serialize;

/// Why the gateway answered instead of the upstream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum ProxyError {
    /// The request path could be read two ways (see `path` and `route`).
    AmbiguousPath(PathError),
    /// No route matches the path.
    NoRoute,
    /// Authentication or authorization failed, or could not be decided.
    Verify(VerifyError),
    /// The route has no scopes for this method; `allow` lists those it has.
    MethodNotAllowed { allow: String },
    /// The client's request body failed while it was being forwarded.
    ClientAborted,
    /// The client's request body sent nothing for the body read timeout.
    ClientTimeout,
    /// The upstream could not be reached or broke the exchange.
    UpstreamUnreachable,
    /// The upstream sent no response head in time.
    UpstreamTimeout,
    /// A fault of the gateway itself (logged where it happens).
    Internal,
}

#[derive(Serialize)]
struct ErrorBody<'a> {
    error: &'a str,
    error_description: String,
    /// On a 500 only: the request's id, to find the cause in the log.
    #[serde(skip_serializing_if = "Option::is_none")]
    request_id: Option<String>,
}

impl ProxyError {
    /// The status of the answer.
    pub(crate) fn status(&self) -> StatusCode {
        match self {
            Self::AmbiguousPath(_) | Self::ClientAborted => StatusCode::BAD_REQUEST,
            Self::ClientTimeout => StatusCode::REQUEST_TIMEOUT,
            Self::NoRoute => StatusCode::NOT_FOUND,
            Self::Verify(error) => error.status(),
            Self::MethodNotAllowed { .. } => StatusCode::METHOD_NOT_ALLOWED,
            Self::UpstreamUnreachable => StatusCode::BAD_GATEWAY,
            Self::UpstreamTimeout => StatusCode::GATEWAY_TIMEOUT,
            Self::Internal => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// The `error` code and its description.
    fn body(&self) -> ErrorBody<'static> {
        let (error, description) = match self {
            Self::AmbiguousPath(error) => ("invalid_request", error.to_string()),
            Self::ClientAborted => (
                "invalid_request",
                "the request body could not be read".to_owned(),
            ),
            Self::ClientTimeout => (
                "request_timeout",
                "the request body stopped arriving".to_owned(),
            ),
            Self::NoRoute => ("not_found", "no route matches this path".to_owned()),
            Self::Verify(error) => verify_body(error),
            Self::MethodNotAllowed { .. } => (
                "method_not_allowed",
                "this route does not accept this method".to_owned(),
            ),
            Self::UpstreamUnreachable => (
                "bad_gateway",
                "the upstream service could not be reached".to_owned(),
            ),
            Self::UpstreamTimeout => (
                "gateway_timeout",
                "the upstream service did not answer in time".to_owned(),
            ),
            Self::Internal => ("internal_error", "the gateway failed".to_owned()),
        };
        ErrorBody {
            error,
            error_description: description,
            request_id: None,
        }
    }

    /// The complete answer.
    #[cfg(test)]
    pub(crate) fn into_response(self) -> Response<GatewayBody> {
        self.into_response_for(None)
    }

    /// The answer, naming `request_id` in the body when it is a 500
    /// (docs/OPERATIONS.md, "Request ids").
    pub(crate) fn into_response_for(self, request_id: Option<&str>) -> Response<GatewayBody> {
        let mut body = self.body();
        if self == Self::Internal {
            body.request_id = request_id.map(str::to_owned);
        }
        let body = serde_json::to_vec(&body).unwrap_or_default();
        let mut response = Response::new(full(body));
        *response.status_mut() = self.status();
        let headers = response.headers_mut();
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        match &self {
            Self::Verify(error) => {
                if let Some(challenge) = error.www_authenticate() {
                    headers.insert(header::WWW_AUTHENTICATE, challenge);
                }
            }
            Self::MethodNotAllowed { allow } => {
                if let Ok(value) = HeaderValue::from_str(allow) {
                    headers.insert(header::ALLOW, value);
                }
            }
            // The rest of the body may still arrive; the connection cannot be reused.
            Self::ClientTimeout => {
                headers.insert(header::CONNECTION, HeaderValue::from_static("close"));
            }
            _ => {}
        }
        response
    }
}

fn verify_body(error: &VerifyError) -> (&'static str, String) {
    match error {
        VerifyError::MissingToken => ("missing_token", "a bearer token is required".to_owned()),
        VerifyError::InvalidRequest => (
            "invalid_request",
            "the Authorization header is malformed".to_owned(),
        ),
        VerifyError::InsufficientScope { scope } => (
            "insufficient_scope",
            format!("the token lacks the scope this route needs: {scope}"),
        ),
        VerifyError::Unavailable(_) => (
            "temporarily_unavailable",
            "credentials cannot be checked right now; retry shortly".to_owned(),
        ),
        VerifyError::InvalidDpopProof(_) => (
            "invalid_dpop_proof",
            "the DPoP proof is missing or not valid for this request".to_owned(),
        ),
        // `InvalidToken` and any later variant: say no more than the status does.
        _ => match error.status() {
            StatusCode::SERVICE_UNAVAILABLE => (
                "temporarily_unavailable",
                "credentials cannot be checked right now; retry shortly".to_owned(),
            ),
            StatusCode::BAD_REQUEST => ("invalid_request", "the request is malformed".to_owned()),
            _ => ("invalid_token", "the bearer token is not valid".to_owned()),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::BodyExt;
    use latchkey_verify::InvalidReason;

    async fn json(response: Response<GatewayBody>) -> serde_json::Value {
        let bytes = response.into_body().collect().await.unwrap().to_bytes();
        serde_json::from_slice(&bytes).unwrap()
    }

    #[tokio::test]
    async fn an_invalid_token_gets_the_verifier_challenge_and_no_reason() {
        let response = ProxyError::Verify(VerifyError::InvalidToken(InvalidReason::BadSignature))
            .into_response();
        assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
        assert_eq!(
            response.headers()[header::WWW_AUTHENTICATE],
            "Bearer error=\"invalid_token\""
        );
        assert_eq!(response.headers()[header::CACHE_CONTROL], "no-store");
        let body = json(response).await;
        assert_eq!(body["error"], "invalid_token");
        assert!(!body.to_string().contains("signature"));
    }

    #[tokio::test]
    async fn upstream_faults_are_502_and_504_with_json_bodies() {
        let unreachable = ProxyError::UpstreamUnreachable.into_response();
        assert_eq!(unreachable.status(), StatusCode::BAD_GATEWAY);
        assert_eq!(json(unreachable).await["error"], "bad_gateway");
        let slow = ProxyError::UpstreamTimeout.into_response();
        assert_eq!(slow.status(), StatusCode::GATEWAY_TIMEOUT);
        assert_eq!(json(slow).await["error"], "gateway_timeout");
    }

    #[test]
    fn a_405_lists_the_allowed_methods() {
        let response = ProxyError::MethodNotAllowed {
            allow: "GET, HEAD".to_owned(),
        }
        .into_response();
        assert_eq!(response.headers()[header::ALLOW], "GET, HEAD");
    }
}
