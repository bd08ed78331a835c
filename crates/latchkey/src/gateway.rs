//! `latchkey gateway --config gateway.toml`: the reverse proxy in front of the vendor's
//! services, following the server's revocation feed.

use crate::serve::shutdown_signal;
use anyhow::Context;
use clap::Args;
use latchkey_gateway::{GatewayConfig, assemble};
use std::path::PathBuf;
use tokio::net::TcpListener;

#[derive(Debug, Args)]
pub struct GatewayArgs {
    /// The gateway's TOML configuration (routes, upstreams, scopes, the server).
    #[arg(long, env = "LATCHKEY_GATEWAY_CONFIG")]
    config: PathBuf,
}

pub async fn run(args: GatewayArgs) -> anyhow::Result<()> {
    crate::serve::init_logging();
    let config = GatewayConfig::load(&args.config)?;
    let listen = config.listen;
    let scheme = if config.tls_files().is_some() {
        "https"
    } else {
        "http"
    };
    let (gateway, replica) = assemble(config).await.context("starting the gateway")?;
    let listener = TcpListener::bind(listen)
        .await
        .with_context(|| format!("binding {listen}"))?;
    tracing::info!(
        server_seq = replica.head_seq(),
        "gateway listening on {scheme}://{}",
        listener.local_addr()?
    );
    #[cfg(unix)]
    tokio::spawn(latchkey_gateway::reload_on_sighup(
        gateway.clone(),
        args.config.clone(),
    )?);
    gateway.serve(listener, shutdown_signal()).await;
    Ok(())
}
