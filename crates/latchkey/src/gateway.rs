//! `latchkey gateway --config gateway.toml`: the reverse proxy in front of the vendor's
//! services, following the server's revocation feed.

use crate::serve::{LogFormat, shutdown_signal};
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
    /// Count requests and serve metrics_listen (true) or record nothing (false)
    /// [default: the file's metrics_enabled, else true].
    #[arg(long, env = "LATCHKEY_METRICS_ENABLED")]
    metrics_enabled: Option<bool>,
    /// Log lines as text or as one JSON object per line.
    #[arg(long, env = "LATCHKEY_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    log_format: LogFormat,
}

pub async fn run(args: GatewayArgs) -> anyhow::Result<()> {
    crate::serve::init_logging(args.log_format);
    let mut config = GatewayConfig::load(&args.config)?;
    if let Some(enabled) = args.metrics_enabled {
        config.metrics_enabled = enabled;
    }
    let listen = config.listen;
    let metrics_listen = config.metrics_listen;
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
    if let Some(address) = metrics_listen {
        let metrics = TcpListener::bind(address)
            .await
            .with_context(|| format!("binding metrics_listen {address}"))?;
        tracing::info!(
            "gateway metrics on http://{}/metrics",
            metrics.local_addr()?
        );
        let served = gateway.clone();
        tokio::spawn(async move {
            served
                .serve_metrics(metrics, Some(replica), std::future::pending())
                .await;
        });
    }
    gateway.serve(listener, shutdown_signal()).await;
    Ok(())
}
