//! A bare HTTP/1.1 reverse proxy on hyper, the floor under the gateway
//! (docs/BENCHMARKS.md, "The gateway against nginx"): the same server and client
//! protocol code the gateway runs, and nothing else — no routing, no path or header
//! rules, no token check, no usage, no metrics, no timeouts. Each client connection
//! gets one upstream connection of its own, kept alive with it, so it has no pool to
//! manage either. `scripts/bench-gateway-vs-nginx.sh` runs it beside nginx and the
//! gateway, so the gap it leaves to nginx is hyper's and the rest is the gateway's.
//! Not for any use but measuring.
//!
//! `bare_proxy LISTEN UPSTREAM`, both `host:port`.

use http_body_util::BodyExt;
use http_body_util::combinators::BoxBody;
use hyper::body::{Bytes, Incoming};
use hyper::client::conn::http1 as client;
use hyper::server::conn::http1 as server;
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use std::net::SocketAddr;
use std::sync::Arc;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Mutex;

type Body = BoxBody<Bytes, hyper::Error>;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let usage = "usage: bare_proxy LISTEN UPSTREAM (host:port each)";
    let listen: SocketAddr = args.next().ok_or(usage)?.parse()?;
    let upstream: SocketAddr = args.next().ok_or(usage)?.parse()?;
    let listener = TcpListener::bind(listen).await?;
    loop {
        let (stream, _) = listener.accept().await?;
        stream.set_nodelay(true)?;
        tokio::spawn(async move {
            let sender: Arc<Mutex<Option<client::SendRequest<Incoming>>>> = Arc::default();
            let service = service_fn(move |request: Request<Incoming>| {
                let sender = sender.clone();
                async move { Ok::<_, hyper::Error>(forward(&sender, upstream, request).await) }
            });
            let _ = server::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}

/// Sends `request` over this client connection's upstream connection, made on first use.
async fn forward(
    sender: &Mutex<Option<client::SendRequest<Incoming>>>,
    upstream: SocketAddr,
    request: Request<Incoming>,
) -> Response<Body> {
    let mut slot = sender.lock().await;
    if slot.as_ref().is_none_or(client::SendRequest::is_closed) {
        match connect(upstream).await {
            Some(fresh) => *slot = Some(fresh),
            None => return bad_gateway(),
        }
    }
    let Some(sender) = slot.as_mut() else {
        return bad_gateway();
    };
    if sender.ready().await.is_err() {
        *slot = None;
        return bad_gateway();
    }
    match sender.send_request(request).await {
        Ok(response) => response.map(BodyExt::boxed),
        Err(_) => {
            *slot = None;
            bad_gateway()
        }
    }
}

async fn connect(upstream: SocketAddr) -> Option<client::SendRequest<Incoming>> {
    let stream = TcpStream::connect(upstream).await.ok()?;
    stream.set_nodelay(true).ok()?;
    let (sender, connection) = client::handshake(TokioIo::new(stream)).await.ok()?;
    tokio::spawn(connection);
    Some(sender)
}

fn bad_gateway() -> Response<Body> {
    let mut response = Response::new(http_body_util::Empty::new().map_err(|e| match e {}).boxed());
    *response.status_mut() = StatusCode::BAD_GATEWAY;
    response
}
