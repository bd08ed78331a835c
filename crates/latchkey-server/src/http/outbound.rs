//! Outbound HTTP: the webhook sender's one request per attempt (docs/API.md,
//! "Webhooks") and the trust issuers' discovery and key fetches (docs/API.md, "The
//! JWT-bearer grant"), over a connection opened here to the address the service layer
//! resolved and checked (`service::webhooks`, `service::federation`), so the host is
//! never resolved again. HTTP/1.1, TLS with the system's trusted roots for https, no
//! redirect followed, and a bounded part of the answer read.

use crate::service::federation::{Fetch, Fetched};
use crate::service::webhooks::{CONNECT_TIMEOUT, Outbound, RESPONSE_TIMEOUT};
use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper_util::rt::TokioIo;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, OnceLock};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;

/// At most this much of a receiver's answer is read (and discarded).
const MAX_RESPONSE_BODY: usize = 64 * 1024;

/// Sends `request`: the receiver's status, or why there was none. A
/// [`service::webhooks::Post`](crate::service::webhooks::Post).
pub fn post(request: Outbound) -> Pin<Box<dyn Future<Output = Result<u16, String>> + Send>> {
    Box::pin(send(request))
}

async fn send(outbound: Outbound) -> Result<u16, String> {
    let tcp = connect(outbound.address, CONNECT_TIMEOUT).await?;
    let target = &outbound.target;
    let mut request = http::Request::post(target.path_and_query.as_str())
        .header(http::header::HOST, target.authority.as_str())
        .header(http::header::CONTENT_TYPE, "application/json")
        .header(http::header::USER_AGENT, "latchkey-webhooks");
    for (name, value) in &outbound.headers {
        request = request.header(*name, value.as_str());
    }
    let request = request
        .body(Full::new(Bytes::from(outbound.body.clone())))
        .map_err(|error| format!("building the request: {error}"))?;
    let exchange = over(tcp, &target.host, target.https, request, MAX_RESPONSE_BODY);
    let (status, _) = tokio::time::timeout(RESPONSE_TIMEOUT, exchange)
        .await
        .map_err(|_| "the receiver did not answer in time".to_owned())??;
    Ok(status)
}

/// Fetches a trust issuer's document with GET: the status and at most
/// `fetch.max_body` bytes of the body (a longer body is an error). A
/// [`service::federation::Get`](crate::service::federation::Get).
pub fn get(fetch: Fetch) -> Pin<Box<dyn Future<Output = Result<Fetched, String>> + Send>> {
    Box::pin(fetch_document(fetch))
}

async fn fetch_document(fetch: Fetch) -> Result<Fetched, String> {
    let work = async {
        let tcp = connect(fetch.address, fetch.timeout).await?;
        let target = &fetch.target;
        let request = http::Request::get(target.path_and_query.as_str())
            .header(http::header::HOST, target.authority.as_str())
            .header(http::header::ACCEPT, "application/json")
            .header(http::header::USER_AGENT, "latchkey-federation")
            .body(Full::new(Bytes::new()))
            .map_err(|error| format!("building the request: {error}"))?;
        let (status, body) =
            over(tcp, &target.host, target.https, request, fetch.max_body + 1).await?;
        if body.len() > fetch.max_body {
            return Err(format!(
                "the answer is longer than {} bytes",
                fetch.max_body
            ));
        }
        Ok(Fetched { status, body })
    };
    tokio::time::timeout(fetch.timeout, work)
        .await
        .map_err(|_| "the issuer did not answer in time".to_owned())?
}

async fn connect(
    address: std::net::SocketAddr,
    timeout: std::time::Duration,
) -> Result<TcpStream, String> {
    let tcp = tokio::time::timeout(timeout, TcpStream::connect(address))
        .await
        .map_err(|_| format!("connecting to {address} timed out"))?
        .map_err(|error| format!("connecting to {address}: {error}"))?;
    let _ = tcp.set_nodelay(true);
    Ok(tcp)
}

/// One request over `tcp`, in TLS for https with `host` as the server name.
async fn over(
    tcp: TcpStream,
    host: &str,
    https: bool,
    request: http::Request<Full<Bytes>>,
    max_body: usize,
) -> Result<(u16, Vec<u8>), String> {
    if https {
        let config = tls_config()?;
        let name = rustls::pki_types::ServerName::try_from(host.to_owned())
            .map_err(|_| format!("{host} is not a valid TLS server name"))?;
        let tls = tokio_rustls::TlsConnector::from(config)
            .connect(name, tcp)
            .await
            .map_err(|error| format!("TLS with {host}: {error}"))?;
        exchange(tls, request, max_body).await
    } else {
        exchange(tcp, request, max_body).await
    }
}

/// One request over a fresh connection: the status and at most `max_body` bytes of the
/// answer.
async fn exchange<S>(
    stream: S,
    request: http::Request<Full<Bytes>>,
    max_body: usize,
) -> Result<(u16, Vec<u8>), String>
where
    S: AsyncRead + AsyncWrite + Send + Unpin + 'static,
{
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|error| format!("HTTP handshake: {error}"))?;
    let driver = tokio::spawn(connection);
    let result = async {
        let response = sender
            .send_request(request)
            .await
            .map_err(|error| format!("sending: {error}"))?;
        let status = response.status().as_u16();
        let mut body = response.into_body();
        let mut read = Vec::new();
        while read.len() < max_body {
            match body.frame().await {
                Some(Ok(frame)) => {
                    if let Some(data) = frame.data_ref() {
                        let room = max_body - read.len();
                        read.extend_from_slice(&data[..data.len().min(room)]);
                    }
                }
                _ => break,
            }
        }
        Ok((status, read))
    }
    .await;
    driver.abort();
    result
}

/// The TLS client configuration: the system's trusted roots, HTTP/1.1.
fn tls_config() -> Result<Arc<rustls::ClientConfig>, String> {
    static CONFIG: OnceLock<Result<Arc<rustls::ClientConfig>, String>> = OnceLock::new();
    CONFIG
        .get_or_init(|| {
            latchkey_verify::tls_client_config(None, None)
                .map(Arc::new)
                .map_err(|error| format!("TLS client configuration: {error}"))
        })
        .clone()
}
