//! Processes the bench starts from its own binary, or the one `--children` names
//! (`latchkey serve`, `latchkey gateway`):
//! started with a clean environment, their stderr drained for their whole life, their
//! listening address read from the `listening on http://…` log line, and killed when
//! dropped.
//!
//! Policy: a child loses every `LATCHKEY_*` variable, so that a developer's shell cannot
//! change what is measured; it logs at `info`, which the address line needs.

use anyhow::{Context, anyhow, bail};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::OnceLock;
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};
use tokio::sync::mpsc;

/// How long a child may take to print its address.
const START_TIMEOUT: Duration = Duration::from_secs(60);

/// How many of the child's last stderr lines an error message quotes.
const QUOTED_LINES: usize = 20;

/// A child process of the bench, listening on loopback.
pub struct Listening {
    child: Child,
    /// Where it listens.
    pub address: SocketAddr,
    /// Every stderr line up to and including the address line.
    pub startup: Vec<String>,
}

/// The binary children start from, when not this one (`--children`).
static BINARY: OnceLock<PathBuf> = OnceLock::new();

/// Makes every child start from `binary`, once, before the first: the bench then
/// measures that build. It must be an executable file.
pub fn start_from(binary: &Path) -> anyhow::Result<()> {
    let metadata =
        std::fs::metadata(binary).with_context(|| format!("--children {}", binary.display()))?;
    if !metadata.is_file() {
        bail!("--children {}: not a file", binary.display());
    }
    let binary = binary
        .canonicalize()
        .with_context(|| format!("--children {}", binary.display()))?;
    BINARY
        .set(binary)
        .map_err(|_| anyhow!("the children's binary is already chosen"))
}

/// The latchkey binary with `args`, its environment cleaned, ready for [`start`]: this
/// one, or the one [`start_from`] chose.
pub fn command(args: &[&str]) -> anyhow::Result<Command> {
    let exe = match BINARY.get() {
        Some(binary) => binary.clone(),
        None => std::env::current_exe().context("finding the latchkey binary")?,
    };
    let mut command = Command::new(exe);
    command
        .args(args)
        .env("RUST_LOG", "info")
        .env("NO_COLOR", "1")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    for (var, _) in std::env::vars_os() {
        if var.to_string_lossy().starts_with("LATCHKEY_") {
            command.env_remove(var);
        }
    }
    Ok(command)
}

/// Spawns `command` and waits until it logs its address. `what` names it in errors;
/// `hint` is appended to an error's quoted output.
pub async fn start(mut command: Command, what: &str, hint: &str) -> anyhow::Result<Listening> {
    let mut child = command
        .spawn()
        .with_context(|| format!("starting {what}"))?;
    let stderr = child
        .stderr
        .take()
        .ok_or_else(|| anyhow!("the stderr of {what} is not piped"))?;
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
    let waited = tokio::time::timeout(START_TIMEOUT, async {
        while let Some(line) = received.recv().await {
            let address = listening_address(&line);
            seen.push(line);
            if let Some(address) = address {
                return address
                    .with_context(|| format!("{what} printed an address that is not one"));
            }
        }
        Err(anyhow!("{what} exited before listening"))
    })
    .await;
    let quoted = |seen: &[String]| {
        let last = seen[seen.len().saturating_sub(QUOTED_LINES)..].join("\n");
        format!("{last}{hint}")
    };
    let address = match waited {
        Ok(Ok(address)) => address,
        Ok(Err(error)) => bail!("{error}; its last output:\n{}", quoted(&seen)),
        Err(_) => bail!(
            "{what} did not listen within {} s; its last output:\n{}",
            START_TIMEOUT.as_secs(),
            quoted(&seen)
        ),
    };
    Ok(Listening {
        child,
        address,
        startup: seen,
    })
}

/// The address of a `listening on http://ADDRESS` log line, or `None` for another line.
fn listening_address(line: &str) -> Option<Result<SocketAddr, std::net::AddrParseError>> {
    line.split_once("listening on http://")
        .map(|(_, rest)| rest.split_whitespace().next().unwrap_or_default())
        .map(str::parse)
}

impl Listening {
    /// The child's process id, for reading its CPU time and memory.
    pub fn pid(&self) -> Option<u32> {
        self.child.id()
    }

    /// Kills the child and waits for it.
    pub async fn stop(mut self) {
        let _ = self.child.kill().await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_address_is_read_from_the_server_and_the_gateway_log_lines() {
        let at = |line| listening_address(line).map(|parsed| parsed.ok());
        assert_eq!(
            at("2026-11-30T09:00:00Z  INFO latchkey::serve: listening on http://127.0.0.1:7700"),
            Some(Some("127.0.0.1:7700".parse().unwrap()))
        );
        assert_eq!(
            at("INFO latchkey::gateway: gateway listening on http://127.0.0.1:8080 server_seq=12"),
            Some(Some("127.0.0.1:8080".parse().unwrap()))
        );
        assert_eq!(
            at("INFO listening on http://[::1]:9000"),
            Some(Some("[::1]:9000".parse().unwrap()))
        );
        assert_eq!(at("INFO listening on http://nowhere"), Some(None));
        assert_eq!(at("root key: lk_ak_…"), None);
    }
}
