//! The HTTP client of the management API: builds URLs from path segments (each one
//! percent-encoded), sends the bearer credential, follows list pagination, and turns
//! RFC 9457 problem responses and transport failures into one-line errors.
//!
//! Request bodies are latchkey-wire's types. Responses arrive as `serde_json::Value`, so
//! `--json` shows whatever the server sent; text output reads them as wire types where a
//! command picks fields from them (`output::emit_read`).

use anyhow::{Context, anyhow, bail};
use reqwest::{Method, RequestBuilder, StatusCode, Url};
use serde::Serialize;
use serde_json::{Value, json};
use std::fmt;
use std::str::FromStr;
use std::time::Duration;

/// How long one request may take, connection included.
const TIMEOUT: Duration = Duration::from_secs(30);

/// How much of a body that is not a problem document goes into an error message.
const MAX_RAW_BODY: usize = 200;

/// A bearer credential. Its `Debug` never shows the value.
#[derive(Clone)]
pub struct Credential(String);

impl fmt::Debug for Credential {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Credential(…)")
    }
}

impl FromStr for Credential {
    type Err = std::convert::Infallible;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        Ok(Self(text.trim().to_owned()))
    }
}

/// A connection to one latchkey server with one credential.
#[derive(Debug)]
pub struct Client {
    http: reqwest::Client,
    base: Url,
    /// The URL as the user gave it, for messages.
    server: String,
    credential: Credential,
}

impl Client {
    pub fn new(server: &str, credential: Option<Credential>) -> anyhow::Result<Self> {
        let base =
            Url::parse(server).with_context(|| format!("--server {server:?} is not a URL"))?;
        match base.scheme() {
            "http" => {}
            // Built without TLS on purpose: the admin API is reached on a trusted network
            // or through a TLS-terminating proxy.
            "https" => bail!(
                "--server {server}: this build of latchkey speaks plain HTTP only; \
                 use an http:// URL"
            ),
            other => bail!("--server {server}: expected an http:// URL, not {other}://"),
        }
        let credential = credential.filter(|c| !c.0.is_empty()).ok_or_else(|| {
            anyhow!(
                "no credential: set LATCHKEY_TOKEN (or pass --token) to a key holding \
                 latchkey:admin or latchkey:manage"
            )
        })?;
        // reqwest brings no TLS provider of its own (README.md, "Following an https
        // issuer"); main installs one too, but this client may be built without it.
        latchkey_verify::install_crypto_provider();
        let http = reqwest::Client::builder()
            .timeout(TIMEOUT)
            .user_agent(concat!("latchkey-cli/", env!("CARGO_PKG_VERSION")))
            .build()
            .context("building the HTTP client")?;
        Ok(Self {
            http,
            base,
            server: server.trim_end_matches('/').to_owned(),
            credential,
        })
    }

    /// `GET`s one resource.
    pub async fn get(&self, segments: &[&str]) -> anyhow::Result<Value> {
        self.get_query(segments, &[]).await
    }

    /// `GET`s a resource with query parameters.
    pub async fn get_query(
        &self,
        segments: &[&str],
        query: &[(&str, String)],
    ) -> anyhow::Result<Value> {
        let response = self
            .execute(self.request(Method::GET, segments)?.query(query))
            .await?;
        self.required(response)
    }

    /// `GET`s a resource the credential may not be allowed to read: `None` where the
    /// server answers 403 or 404, for callers that can do without it.
    pub async fn get_query_if_allowed(
        &self,
        segments: &[&str],
        query: &[(&str, String)],
    ) -> anyhow::Result<Option<Value>> {
        let (status, body) = self
            .fetch(self.request(Method::GET, segments)?.query(query))
            .await?;
        if matches!(status, StatusCode::FORBIDDEN | StatusCode::NOT_FOUND) {
            return Ok(None);
        }
        self.json(status, &body)
    }

    /// `GET`s a resource that is not JSON (the audit chain's JSON lines) as text.
    pub async fn get_text(
        &self,
        segments: &[&str],
        query: &[(&str, String)],
    ) -> anyhow::Result<String> {
        let (status, body) = self
            .fetch(self.request(Method::GET, segments)?.query(query))
            .await?;
        if !status.is_success() {
            return Err(problem_error(status, &body));
        }
        String::from_utf8(body).context("the server's answer is not UTF-8")
    }

    /// Sends `body` as JSON and returns the response body.
    pub async fn send<B: Serialize + ?Sized>(
        &self,
        method: Method,
        segments: &[&str],
        body: &B,
    ) -> anyhow::Result<Value> {
        let request = self.request(method, segments)?.json(body);
        let response = self.execute(request).await?;
        self.required(response)
    }

    /// `DELETE`s one resource; the server answers 204 with no body.
    pub async fn delete(&self, segments: &[&str]) -> anyhow::Result<()> {
        self.execute(self.request(Method::DELETE, segments)?)
            .await
            .map(drop)
    }

    /// `GET`s every page of a list and answers one list in the server's shape:
    /// `{"items": [all of them], "next_cursor": null}`.
    pub async fn list_all(&self, segments: &[&str]) -> anyhow::Result<Value> {
        let mut items = Vec::new();
        let mut cursor: Option<String> = None;
        loop {
            let mut request = self.request(Method::GET, segments)?;
            if let Some(cursor) = &cursor {
                request = request.query(&[("cursor", cursor)]);
            }
            let page = self.execute(request).await?;
            let Value::Object(mut page) = self.required(page)? else {
                bail!("the server's list response is not a JSON object");
            };
            match page.remove("items") {
                Some(Value::Array(more)) => items.extend(more),
                _ => bail!("the server's list response has no `items` array"),
            }
            match page.remove("next_cursor") {
                None | Some(Value::Null) => break,
                Some(Value::String(next)) if cursor.as_ref() != Some(&next) => {
                    cursor = Some(next);
                }
                Some(Value::String(_)) => bail!("the server sent the same page cursor twice"),
                Some(_) => bail!("the server's `next_cursor` is not a string"),
            }
        }
        Ok(json!({ "items": items, "next_cursor": null }))
    }

    fn request(&self, method: Method, segments: &[&str]) -> anyhow::Result<RequestBuilder> {
        let mut url = self.base.clone();
        url.path_segments_mut()
            .map_err(|()| anyhow!("--server {} cannot take a path", self.server))?
            .pop_if_empty()
            .extend(segments);
        Ok(self
            .http
            .request(method, url)
            .bearer_auth(&self.credential.0))
    }

    /// Sends the request; a 2xx answers its JSON body (`None` when empty), anything else
    /// an error built from the problem document.
    async fn execute(&self, request: RequestBuilder) -> anyhow::Result<Option<Value>> {
        let (status, body) = self.fetch(request).await?;
        self.json(status, &body)
    }

    /// Sends the request and reads the whole answer, whatever its status.
    async fn fetch(&self, request: RequestBuilder) -> anyhow::Result<(StatusCode, Vec<u8>)> {
        let response = request
            .send()
            .await
            .map_err(|error| self.transport_error(&error))?;
        let status = response.status();
        let body = response
            .bytes()
            .await
            .map_err(|error| self.transport_error(&error))?;
        Ok((status, body.to_vec()))
    }

    /// A 2xx answer's JSON body (`None` when empty), or the error its problem names.
    fn json(&self, status: StatusCode, body: &[u8]) -> anyhow::Result<Option<Value>> {
        if !status.is_success() {
            return Err(problem_error(status, body));
        }
        if body.is_empty() {
            return Ok(None);
        }
        serde_json::from_slice(body).map(Some).with_context(|| {
            format!(
                "the server at {} answered {status} with a body that is not JSON",
                self.server
            )
        })
    }

    fn required(&self, body: Option<Value>) -> anyhow::Result<Value> {
        body.ok_or_else(|| anyhow!("the server at {} answered with no body", self.server))
    }

    fn transport_error(&self, error: &reqwest::Error) -> anyhow::Error {
        let server = &self.server;
        let cause = root_cause(error);
        if error.is_connect() {
            anyhow!(
                "cannot connect to the latchkey server at {server}: {cause} \
                 (is it running? set --server or LATCHKEY_SERVER)"
            )
        } else if error.is_timeout() {
            anyhow!(
                "the latchkey server at {server} did not answer within {} seconds",
                TIMEOUT.as_secs()
            )
        } else {
            anyhow!("request to the latchkey server at {server} failed: {cause}")
        }
    }
}

/// The innermost error, which names what actually went wrong (e.g. "Connection refused").
fn root_cause(error: &(dyn std::error::Error + 'static)) -> String {
    let mut cause = error;
    while let Some(next) = cause.source() {
        cause = next;
    }
    cause.to_string()
}

/// `<detail> (<status> <type suffix>)` from an RFC 9457 problem document, or the start
/// of whatever else the server (or a proxy in front of it) sent.
fn problem_error(status: StatusCode, body: &[u8]) -> anyhow::Error {
    let problem: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
    let field = |key: &str| problem.get(key).and_then(Value::as_str).map(printable);
    let detail = field("detail").or_else(|| field("title"));
    let code = field("type").map(|kind| type_suffix(&kind).to_owned());
    match (detail, code) {
        (Some(detail), Some(code)) => anyhow!("{detail} ({} {code})", status.as_u16()),
        (Some(detail), None) => anyhow!("{detail} ({status})"),
        (None, _) => {
            let text = printable(String::from_utf8_lossy(body).trim());
            if text.is_empty() {
                anyhow!("the server answered {status}")
            } else {
                let text: String = text.chars().take(MAX_RAW_BODY).collect();
                anyhow!("the server answered {status}: {text}")
            }
        }
    }
}

/// The last part of a problem type: `permission-not-held` of
/// `urn:latchkey:problem:permission-not-held`.
fn type_suffix(kind: &str) -> &str {
    kind.rsplit([':', '/']).next().unwrap_or(kind)
}

/// Replaces control characters, so that server-sent text cannot drive the terminal.
pub fn printable(text: &str) -> String {
    text.chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_problem_document_becomes_detail_status_and_type_suffix() {
        let body = br#"{"type":"urn:latchkey:problem:permission-not-held","title":"Permission not held","status":403,"detail":"user u_42 does not hold reports:write in tenant acme"}"#;
        let error = problem_error(StatusCode::FORBIDDEN, body);
        assert_eq!(
            error.to_string(),
            "user u_42 does not hold reports:write in tenant acme (403 permission-not-held)"
        );
    }

    #[test]
    fn a_body_that_is_not_a_problem_is_quoted_without_control_characters() {
        let error = problem_error(StatusCode::BAD_GATEWAY, b"<html>\x1b[31mbad</html>\n");
        assert_eq!(
            error.to_string(),
            "the server answered 502 Bad Gateway: <html> [31mbad</html>"
        );
        let error = problem_error(StatusCode::BAD_GATEWAY, b"");
        assert_eq!(error.to_string(), "the server answered 502 Bad Gateway");
    }

    #[test]
    fn path_segments_are_encoded_one_by_one() {
        let client =
            Client::new("http://127.0.0.1:7700/admin/", Some(Credential("k".into()))).unwrap();
        let request = client
            .request(Method::GET, &["v1", "tenants", "a/b?c", "users"])
            .unwrap()
            .build()
            .unwrap();
        assert_eq!(
            request.url().as_str(),
            "http://127.0.0.1:7700/admin/v1/tenants/a%2Fb%3Fc/users"
        );
    }

    #[test]
    fn a_missing_credential_or_an_https_server_is_refused_before_sending() {
        let error = Client::new("http://127.0.0.1:7700", None).unwrap_err();
        assert!(error.to_string().contains("LATCHKEY_TOKEN"), "{error}");
        let error = Client::new("https://example.com", Some(Credential("k".into()))).unwrap_err();
        assert!(error.to_string().contains("plain HTTP"), "{error}");
    }
}
