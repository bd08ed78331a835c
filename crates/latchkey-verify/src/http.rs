//! The verifier's outbound HTTP: metadata, JWKS and introspection, and nothing else.
//!
//! Policy: only the URLs the issuer's own metadata names are ever requested — never a
//! URL from a token. Redirects are not followed (a key set must come from where the
//! issuer said), every request has a timeout, and bodies are read up to a size limit so
//! a misbehaving endpoint cannot exhaust memory. The client speaks plain HTTP/1.1 for
//! now; TLS comes with a later issue.

use reqwest::{Client, Response, StatusCode, header};
use std::time::Duration;

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
    pub(crate) fn new(timeout: Duration) -> Result<Self, String> {
        let client = Client::builder()
            .timeout(timeout)
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
            .map_err(|e| HttpError(e.to_string()))?;
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
            .map_err(|e| HttpError(e.to_string()))?;
        let status = response.status();
        Ok((
            status,
            read_limited(response, MAX_INTROSPECTION_BYTES).await?,
        ))
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
