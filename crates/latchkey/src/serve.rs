//! `latchkey serve`: flags and `LATCHKEY_*` variables over a TOML file over defaults.

use anyhow::Context;
use clap::Args;
use latchkey_server::config::parse_trusted_proxies;
use latchkey_server::{Application, Config};
use std::net::SocketAddr;
use std::path::PathBuf;
use tracing_subscriber::EnvFilter;

#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Address to listen on [default: 127.0.0.1:7700].
    #[arg(long, env = "LATCHKEY_LISTEN")]
    listen: Option<SocketAddr>,
    /// Directory for the SQLite database, pepper and master key [default: ./latchkey-data].
    #[arg(long, env = "LATCHKEY_DATA_DIR")]
    data_dir: Option<PathBuf>,
    /// Public URL of this server, the `iss` of its tokens [default: http://LISTEN].
    #[arg(long, env = "LATCHKEY_PUBLIC_URL")]
    public_url: Option<String>,
    /// sqlite://… or postgres://… [default: SQLite in the data directory].
    #[arg(long, env = "LATCHKEY_DATABASE_URL")]
    database_url: Option<String>,
    /// TOML configuration file; flags and variables override it.
    #[arg(long, env = "LATCHKEY_CONFIG")]
    config: Option<PathBuf>,
    /// On first start, also write the root key to this file (mode 0600).
    #[arg(long, env = "LATCHKEY_ROOT_KEY_FILE")]
    root_key_file: Option<PathBuf>,
    /// Reverse proxies whose X-Forwarded-For is believed: addresses or CIDR networks,
    /// comma-separated [default: none].
    #[arg(long, env = "LATCHKEY_TRUSTED_PROXIES", value_name = "CIDRS")]
    trusted_proxies: Option<String>,
    /// Serve TLS with this PEM certificate chain (with --tls-key-file) [default: plain HTTP].
    #[arg(long, env = "LATCHKEY_TLS_CERT_FILE")]
    tls_cert_file: Option<PathBuf>,
    /// The PEM private key of --tls-cert-file.
    #[arg(long, env = "LATCHKEY_TLS_KEY_FILE")]
    tls_key_file: Option<PathBuf>,
    /// Count requests and serve /metrics (true) or record nothing (false)
    /// [default: the file's metrics_enabled, else true].
    #[arg(long, env = "LATCHKEY_METRICS_ENABLED")]
    metrics_enabled: Option<bool>,
    /// Log lines as text or as one JSON object per line.
    #[arg(long, env = "LATCHKEY_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    log_format: LogFormat,
    /// Check the configuration and the key files, print a summary and exit (non-zero
    /// with the key at fault).
    #[arg(long)]
    check_config: bool,
}

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

/// Reads a server TOML file; an error names the file, the key and the reason.
pub fn read_config(path: &std::path::Path) -> anyhow::Result<Config> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    Config::from_toml(&text).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))
}

impl ServeArgs {
    fn into_config(self) -> anyhow::Result<Config> {
        let mut config = match &self.config {
            Some(path) => read_config(path)?,
            None => Config::default(),
        };
        if let Some(enabled) = self.metrics_enabled {
            config.metrics_enabled = enabled;
        }
        if let Some(listen) = self.listen {
            config.listen = listen;
        }
        if let Some(dir) = self.data_dir {
            config.data_dir = dir;
        }
        if self.public_url.is_some() {
            config.public_url = self.public_url;
        }
        if self.database_url.is_some() {
            config.database_url = self.database_url;
        }
        if self.root_key_file.is_some() {
            config.root_key_file = self.root_key_file;
        }
        if self.tls_cert_file.is_some() {
            config.tls_cert_file = self.tls_cert_file;
        }
        if self.tls_key_file.is_some() {
            config.tls_key_file = self.tls_key_file;
        }
        if let Some(list) = &self.trusted_proxies {
            let entries = list.split(',').filter(|entry| !entry.trim().is_empty());
            config.trusted_proxies = parse_trusted_proxies(entries).map_err(|e| {
                anyhow::anyhow!("--trusted-proxies / LATCHKEY_TRUSTED_PROXIES: {e}")
            })?;
        }
        Ok(config)
    }
}

/// Logs to stderr at `RUST_LOG` (default `info`), as text or one JSON object per line
/// (docs/OPERATIONS.md, "Logs").
pub fn init_logging(format: LogFormat) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let _ = match format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder
            .json()
            .with_current_span(true)
            .with_span_list(false)
            .try_init(),
    };
}

pub async fn run(args: ServeArgs) -> anyhow::Result<()> {
    init_logging(args.log_format);
    let check = args.check_config;
    let config = args.into_config()?;
    if check {
        for line in latchkey_server::check_config(&config)? {
            println!("{line}");
        }
        println!("configuration ok");
        return Ok(());
    }
    let app = Application::build(config).await?;
    if let Some(key) = app.root_key() {
        // Shown once, on the first start; a later start prints no key.
        eprintln!("root key: {}", key.expose());
        eprintln!("Keep it safe: it holds latchkey:admin and is not shown again.");
    }
    #[cfg(unix)]
    if let Some(tls) = app.tls() {
        tokio::spawn(reload_tls_on_sighup(tls)?);
    }
    app.run_until(shutdown_signal()).await?;
    Ok(())
}

/// Reloads the TLS certificate and key on every SIGHUP; the signal handler is set up
/// before this returns, so a SIGHUP sent right after start is not lost.
#[cfg(unix)]
fn reload_tls_on_sighup(
    tls: latchkey_listener::ServerTls,
) -> anyhow::Result<impl std::future::Future<Output = ()>> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut hangup = signal(SignalKind::hangup()).context("listening for SIGHUP")?;
    Ok(async move {
        while hangup.recv().await.is_some() {
            tls.reload_logged();
        }
    })
}

/// Completes on Ctrl-C or SIGTERM.
pub async fn shutdown_signal() {
    let interrupt = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut terminate =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(signal) => signal,
                Err(_) => {
                    let _ = interrupt.await;
                    return;
                }
            };
        tokio::select! {
            _ = interrupt => {},
            _ = terminate.recv() => {},
        }
    }
    #[cfg(not(unix))]
    {
        let _ = interrupt.await;
    }
    tracing::info!("shutting down");
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        serve: ServeArgs,
    }

    fn config(args: &[&str]) -> anyhow::Result<Config> {
        let args = std::iter::once("serve").chain(args.iter().copied());
        Cli::parse_from(args).serve.into_config()
    }

    #[test]
    fn trusted_proxies_are_a_comma_separated_list() {
        let config = config(&["--trusted-proxies", "10.0.0.0/8, 192.0.2.7,"]).unwrap();
        let shown: Vec<String> = config
            .trusted_proxies
            .iter()
            .map(ToString::to_string)
            .collect();
        assert_eq!(shown, ["10.0.0.0/8", "192.0.2.7/32"]);
    }

    #[test]
    fn an_invalid_trusted_proxy_stops_the_start_naming_the_setting() {
        let error = config(&["--trusted-proxies", "10.0.0.0/8,nope"])
            .unwrap_err()
            .to_string();
        assert_eq!(
            error,
            "--trusted-proxies / LATCHKEY_TRUSTED_PROXIES: `nope` is not an IP address or CIDR network"
        );
    }
}
