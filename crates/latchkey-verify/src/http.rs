//! The verifier's outbound HTTP: metadata, JWKS, introspection and the revocation feed,
//! and nothing else.
//!
//! Policy: only the URLs the issuer's own metadata names (and, for the feed, the
//! issuer's fixed `/v1/revocations` paths) are ever requested — never a URL from a
//! token. Redirects are not followed (a key set must come from where the issuer said),
//! every request has a deadline (the feed's stream an idle one), and bodies are read up
//! to a size limit so a misbehaving endpoint cannot exhaust memory. The client speaks
//! HTTP/1.1, over TLS for `https://` with the configuration of [`crate::transport`].

use reqwest::{Client, Response, StatusCode, header};
use std::time::Duration;

use crate::transport::{TransportPolicy, client_config};

/// Largest metadata or JWKS document accepted.
pub(crate) const MAX_DOCUMENT_BYTES: usize = 1024 * 1024;

/// Largest introspection answer accepted.
pub(crate) const MAX_INTROSPECTION_BYTES: usize = 64 * 1024;

/// A failed exchange, in words for logs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct HttpError(pub(crate) String);

/// The shared client.
#[derive(Debug, Clone)]
pub(crate) struct Http {
    client: Client,
}

impl Http {
    pub(crate) fn new(timeout: Duration, policy: &TransportPolicy) -> Result<Self, String> {
        let client = Client::builder()
            .use_preconfigured_tls(client_config(
                policy.tls_ca_file.as_deref(),
                policy.identity.as_ref(),
            )?)
            .timeout(timeout)
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|e| e.to_string())?;
        Ok(Self { client })
    }

    /// A client for the revocation feed, whose stream stays open indefinitely: only
    /// connecting has a client-wide timeout, and each request sets its own deadline.
    pub(crate) fn for_feed(
        connect_timeout: Duration,
        policy: &TransportPolicy,
    ) -> Result<Self, String> {
        let client = Client::builder()
            .use_preconfigured_tls(client_config(
                policy.tls_ca_file.as_deref(),
                policy.identity.as_ref(),
            )?)
            .connect_timeout(connect_timeout)
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|e| e.to_string())?;
        Ok(Self { client })
    }

    /// GETs `url` and returns the body of a 200 answer.
    pub(crate) async fn get(&self, url: &str) -> Result<Vec<u8>, HttpError> {
        let response = self
            .client
            .get(url)
            .header(header::ACCEPT, "application/json")
            .send()
            .await
            .map_err(|e| HttpError(describe(&e)))?;
        if response.status() != StatusCode::OK {
            return Err(HttpError(format!("status {}", response.status())));
        }
        read_limited(response, MAX_DOCUMENT_BYTES).await
    }

    /// POSTs the form `token=…` with a bearer credential (RFC 7662 §2.1) and returns
    /// the status and body.
    pub(crate) async fn introspect(
        &self,
        url: &str,
        token: &str,
        credential: &str,
    ) -> Result<(StatusCode, Vec<u8>), HttpError> {
        let response = self
            .client
            .post(url)
            .bearer_auth(credential)
            .header(header::ACCEPT, "application/json")
            .form(&[("token", token)])
            .send()
            .await
            .map_err(|e| HttpError(describe(&e)))?;
        let status = response.status();
        Ok((
            status,
            read_limited(response, MAX_INTROSPECTION_BYTES).await?,
        ))
    }

    /// GETs `url` with a bearer credential and returns the body of a 200 answer, all
    /// of it within `timeout` and at most `limit` bytes.
    pub(crate) async fn get_authorized(
        &self,
        url: &str,
        credential: &str,
        timeout: Duration,
        limit: usize,
    ) -> Result<Vec<u8>, HttpError> {
        let response = self
            .client
            .get(url)
            .bearer_auth(credential)
            .header(header::ACCEPT, "application/json")
            .timeout(timeout)
            .send()
            .await
            .map_err(|e| HttpError(describe(&e)))?;
        if response.status() != StatusCode::OK {
            return Err(HttpError(format!("status {}", response.status())));
        }
        read_limited(response, limit).await
    }

    /// POSTs a JSON body with a bearer credential and returns the status.
    pub(crate) async fn post_json_authorized(
        &self,
        url: &str,
        credential: &str,
        body: &serde_json::Value,
        timeout: Duration,
    ) -> Result<StatusCode, HttpError> {
        let response = self
            .client
            .post(url)
            .bearer_auth(credential)
            .json(body)
            .timeout(timeout)
            .send()
            .await
            .map_err(|e| HttpError(describe(&e)))?;
        Ok(response.status())
    }

    /// Opens `url` as a Server-Sent Events stream resuming after `last_event_id`, and
    /// returns the response once a 200 `text/event-stream` answer has arrived within
    /// `timeout`. The caller reads the body with its own idle deadline.
    pub(crate) async fn open_event_stream(
        &self,
        url: &str,
        credential: &str,
        last_event_id: i64,
        timeout: Duration,
    ) -> Result<Response, HttpError> {
        let request = self
            .client
            .get(url)
            .bearer_auth(credential)
            .header(header::ACCEPT, "text/event-stream")
            .header("last-event-id", last_event_id.to_string())
            .send();
        let response = tokio::time::timeout(timeout, request)
            .await
            .map_err(|_| HttpError(format!("no answer within {timeout:?}")))?
            .map_err(|e| HttpError(describe(&e)))?;
        if response.status() != StatusCode::OK {
            return Err(HttpError(format!("status {}", response.status())));
        }
        let event_stream = response
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.starts_with("text/event-stream"));
        if !event_stream {
            return Err(HttpError("not a text/event-stream answer".to_owned()));
        }
        Ok(response)
    }
}

async fn read_limited(mut response: Response, limit: usize) -> Result<Vec<u8>, HttpError> {
    let mut body = Vec::new();
    while let Some(chunk) = response
        .chunk()
        .await
        .map_err(|e| HttpError(e.to_string()))?
    {
        if body.len() + chunk.len() > limit {
            return Err(HttpError(format!("body larger than {limit} bytes")));
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

/// An error with its chain of causes ("error sending request: … connection refused"),
/// which reqwest's own message leaves out.
pub(crate) fn describe(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}
