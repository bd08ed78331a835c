//! The server under load: a `latchkey serve` child on a free loopback port with a fresh
//! data directory (killed when dropped), or an already running server given by URL.
//!
//! Policy: the bench sends only to loopback addresses, so that it cannot be pointed at a
//! production server by accident. The child's environment loses every `LATCHKEY_*`
//! variable, so that a developer's shell cannot change what is measured.

use anyhow::{Context, anyhow, bail};
use reqwest::Url;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::process::Stdio;
use std::time::Duration;
use tempfile::TempDir;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};
use tokio::sync::mpsc;

/// How long the child may take to print its root key and address.
const START_TIMEOUT: Duration = Duration::from_secs(60);

/// How many of the child's last stderr lines an error message quotes.
const QUOTED_LINES: usize = 20;

/// Variables of `latchkey serve` that the child must not inherit.
const SERVE_VARS: [&str; 7] = [
    "LATCHKEY_LISTEN",
    "LATCHKEY_DATA_DIR",
    "LATCHKEY_PUBLIC_URL",
    "LATCHKEY_DATABASE_URL",
    "LATCHKEY_CONFIG",
    "LATCHKEY_ROOT_KEY_FILE",
    "LATCHKEY_TRUSTED_PROXIES",
];

/// A `latchkey serve` started by the bench.
pub struct ChildServer {
    child: Child,
    /// Where it listens.
    pub address: SocketAddr,
    /// The root key it printed on its first start.
    pub root_key: Option<String>,
    _data: TempDir,
}

impl ChildServer {
    /// Starts this binary's `serve` on 127.0.0.1:0 and waits until it listens.
    pub async fn start(database_url: Option<&str>) -> anyhow::Result<Self> {
        let data = tempfile::Builder::new()
            .prefix("latchkey-bench-")
            .tempdir()
            .context("creating a temporary data directory")?;
        let exe = std::env::current_exe().context("finding the latchkey binary")?;
        let mut command = Command::new(exe);
        command
            .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
            .arg(data.path())
            // The address is read from the `listening on` log line, which needs info.
            .env("RUST_LOG", "info")
            .env("NO_COLOR", "1")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        if let Some(url) = database_url {
            command.args(["--database-url", url]);
        }
        for var in SERVE_VARS {
            command.env_remove(var);
        }
        let mut child = command.spawn().context("starting `latchkey serve`")?;
        let stderr = child
            .stderr
            .take()
            .ok_or_else(|| anyhow!("the server's stderr is not piped"))?;
        let (lines, mut received) = mpsc::unbounded_channel();
        // Drains stderr for the child's whole life, so that it never blocks on a full pipe.
        tokio::spawn(async move {
            let mut reader = BufReader::new(stderr).lines();
            while let Ok(Some(line)) = reader.next_line().await {
                if lines.send(line).is_err() {
                    // Nobody listens any more; keep draining.
                    while let Ok(Some(_)) = reader.next_line().await {}
                    break;
                }
            }
        });
        let mut seen: Vec<String> = Vec::new();
        let mut root_key = None;
        let waited = tokio::time::timeout(START_TIMEOUT, async {
            while let Some(line) = received.recv().await {
                if let Some((_, key)) = line.split_once("root key: ") {
                    root_key = Some(key.trim().to_owned());
                }
                let address = line
                    .split_once("listening on http://")
                    .map(|(_, rest)| rest.split_whitespace().next().unwrap_or_default())
                    .map(str::parse::<SocketAddr>);
                seen.push(line);
                if let Some(address) = address {
                    return address.context("the server printed an address that is not one");
                }
            }
            Err(anyhow!("the server exited before listening"))
        })
        .await;
        let hint = if database_url.is_some() {
            "\n(--database-url must name an existing, empty database: create it first, e.g. \
             `createdb latchkey_bench`)"
        } else {
            ""
        };
        let quoted = || {
            let last = seen[seen.len().saturating_sub(QUOTED_LINES)..].join("\n");
            format!("{last}{hint}")
        };
        let address = match waited {
            Ok(Ok(address)) => address,
            Ok(Err(error)) => bail!("{error}; its last output:\n{}", quoted()),
            Err(_) => bail!(
                "the server did not listen within {} s; its last output:\n{}",
                START_TIMEOUT.as_secs(),
                quoted()
            ),
        };
        Ok(Self {
            child,
            address,
            root_key,
            _data: data,
        })
    }

    /// The child's process id, for reading its CPU time.
    pub fn pid(&self) -> Option<u32> {
        self.child.id()
    }

    /// Kills the child and waits for it.
    pub async fn stop(mut self) {
        let _ = self.child.kill().await;
    }
}

/// The address of `--server URL`, which must be plain HTTP on a loopback address.
pub fn loopback(server: &str) -> anyhow::Result<SocketAddr> {
    let url = Url::parse(server).with_context(|| format!("--server {server:?} is not a URL"))?;
    if url.scheme() != "http" {
        bail!("--server {server}: the bench speaks plain HTTP; use an http:// URL");
    }
    if url.path() != "/" || url.query().is_some() {
        bail!("--server {server}: give the server's root URL, without a path");
    }
    let host = url.host_str().unwrap_or_default();
    let ip = match host {
        "localhost" => IpAddr::V4(Ipv4Addr::LOCALHOST),
        // An IPv6 host comes in brackets.
        host => host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .parse::<IpAddr>()
            .map_err(|_| {
                anyhow!("--server {server}: the bench sends only to a loopback address")
            })?,
    };
    if !ip.is_loopback() {
        bail!("--server {server}: the bench sends only to a loopback address");
    }
    let port = url
        .port_or_known_default()
        .ok_or_else(|| anyhow!("--server {server} has no port"))?;
    Ok(SocketAddr::new(ip, port))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_loopback_servers_are_accepted() {
        assert_eq!(
            loopback("http://127.0.0.1:7700").unwrap(),
            "127.0.0.1:7700".parse().unwrap()
        );
        assert_eq!(
            loopback("http://localhost:7700/").unwrap(),
            "127.0.0.1:7700".parse().unwrap()
        );
        assert_eq!(
            loopback("http://[::1]:80").unwrap(),
            "[::1]:80".parse().unwrap()
        );
        for refused in [
            "http://10.0.0.1:7700",
            "http://example.com",
            "https://127.0.0.1:7700",
            "http://127.0.0.1:7700/admin",
        ] {
            assert!(loopback(refused).is_err(), "{refused}");
        }
    }
}
