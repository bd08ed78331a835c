//! Outbound HTTP: the webhook sender's one request per attempt (docs/API.md,
//! "Webhooks"), over a connection opened here to the address the service layer
//! resolved and checked (`service::webhooks`), so the host is never resolved again.
//! HTTP/1.1, TLS with the system's trusted roots for https, no redirect followed, and
//! at most [`MAX_RESPONSE_BODY`] bytes of the answer read.

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
    let address = outbound.address;
    let tcp = tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(address))
        .await
        .map_err(|_| format!("connecting to {address} timed out"))?
        .map_err(|error| format!("connecting to {address}: {error}"))?;
    let _ = tcp.set_nodelay(true);
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
    let exchange = async {
        if target.https {
            let config = tls_config()?;
            let name = rustls::pki_types::ServerName::try_from(target.host.clone())
                .map_err(|_| format!("{} is not a valid TLS server name", target.host))?;
            let tls = tokio_rustls::TlsConnector::from(config)
                .connect(name, tcp)
                .await
                .map_err(|error| format!("TLS with {}: {error}", target.host))?;
            exchange(tls, request).await
        } else {
            exchange(tcp, request).await
        }
    };
    tokio::time::timeout(RESPONSE_TIMEOUT, exchange)
        .await
        .map_err(|_| "the receiver did not answer in time".to_owned())?
}

/// One request over a fresh connection: the status, after reading at most
/// [`MAX_RESPONSE_BODY`] bytes of the answer.
async fn exchange<S>(stream: S, request: http::Request<Full<Bytes>>) -> Result<u16, String>
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
        let mut read = 0usize;
        while read < MAX_RESPONSE_BODY {
            match body.frame().await {
                Some(Ok(frame)) => read += frame.data_ref().map_or(0, Bytes::len),
                _ => break,
            }
        }
        Ok(status)
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
