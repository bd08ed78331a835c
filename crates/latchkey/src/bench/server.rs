//! The server under load: a `latchkey serve` child on a free loopback port with a fresh
//! data directory (killed when dropped), or an already running server given by URL.
//!
//! Policy: the bench sends only to loopback addresses, so that it cannot be pointed at a
//! production server by accident. The child is started as `bench::child` says.

use super::child::{self, Listening};
use anyhow::{Context, anyhow, bail};
use reqwest::Url;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use tempfile::TempDir;

/// A `latchkey serve` started by the bench.
pub struct ChildServer {
    process: Listening,
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
        Self::start_in(data, database_url).await
    }

    /// Starts another replica of this server: the same database, and a data directory
    /// holding copies of its pepper and master key, which every replica must share
    /// (docs/DEPLOYMENT.md).
    pub async fn replica(&self, database_url: &str) -> anyhow::Result<Self> {
        let data = tempfile::Builder::new()
            .prefix("latchkey-bench-")
            .tempdir()
            .context("creating a temporary data directory")?;
        for file in ["pepper", "master.key"] {
            let from = self._data.path().join(file);
            let to = data.path().join(file);
            std::fs::copy(&from, &to)
                .with_context(|| format!("copying {} for the replica", from.display()))?;
        }
        Self::start_in(data, Some(database_url)).await
    }

    async fn start_in(data: TempDir, database_url: Option<&str>) -> anyhow::Result<Self> {
        let mut command = child::command(&["serve", "--listen", "127.0.0.1:0", "--data-dir"])?;
        command.arg(data.path());
        if let Some(url) = database_url {
            command.args(["--database-url", url]);
        }
        let hint = if database_url.is_some() {
            "\n(--database-url must name an existing, empty database: create it first, e.g. \
             `createdb latchkey_bench`)"
        } else {
            ""
        };
        let process = child::start(command, "the server", hint).await?;
        let root_key = process.startup.iter().find_map(|line| {
            line.split_once("root key: ")
                .map(|(_, key)| key.trim().to_owned())
        });
        Ok(Self {
            address: process.address,
            process,
            root_key,
            _data: data,
        })
    }

    /// The child's process id, for reading its CPU time and memory.
    pub fn pid(&self) -> Option<u32> {
        self.process.pid()
    }

    /// Kills the child and waits for it.
    pub async fn stop(self) {
        self.process.stop().await;
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
