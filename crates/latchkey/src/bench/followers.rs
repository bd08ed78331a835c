//! `latchkey bench --followers N`: how a revocation fans out to many followers of the
//! server's revocation stream, and what each follower costs the server in memory.
//!
//! N light followers run as tasks of the bench, each on its own loopback TCP connection
//! (hyper's connection-level client, no pool), following `GET /v1/revocations/stream`
//! (docs/API.md "The revocation feed") with a `latchkey:introspect` key the bench
//! creates. They parse only what they need: the first heartbeat says a follower is
//! connected, and a `revocation` event's `subject` says which token it saw. Then
//! `revocations` times, one after the other: a fresh token is revoked, and the time from
//! the revoke call returning to the LAST follower seeing its entry is recorded (zero when
//! every follower saw it before the call returned). The server's memory is its resident
//! set (`VmRSS` of /proc/PID/status) before the followers connect and once all have
//! received their first heartbeat; the difference over N is the memory per follower.
//! Only a server the bench started has a known PID.
//!
//! With several replicas on one PostgreSQL database (`--replicas`), the followers are
//! spread evenly over them and the revocations go through the first: the figure then
//! includes the hop from one replica to the others through the database, and the memory
//! is that of every replica together.
//!
//! Policy: a follower that fails, or a revocation that does not reach every follower
//! within 10 s, fails the command; a partial figure would flatter the server.

use super::edge::tenant_client_token;
use super::setup::unique_tenant;
use crate::admin::client::{Client, Credential};
use anyhow::{Context, anyhow, bail};
use http_body_util::{BodyExt, Empty};
use hyper::body::Bytes;
use hyper::header::{ACCEPT, AUTHORIZATION, HOST};
use hyper::{Request, StatusCode};
use hyper_util::rt::TokioIo;
use latchkey_core::permission::INTROSPECT;
use latchkey_core::store::FeedKind;
use serde_json::{Value, json};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::net::TcpStream;
use tokio::sync::{Semaphore, mpsc};
use tokio::task::JoinSet;

/// How long all followers together may take to connect.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(60);

/// How long one revocation may take to reach every follower.
const TIMEOUT: Duration = Duration::from_secs(10);

/// Followers connecting at once: more would only queue in the listen backlog.
const CONNECTING_AT_ONCE: usize = 64;

/// Open files the bench and the server need besides one per follower (database, logs,
/// the management client, the runtime).
pub const SPARE_FILES: u64 = 256;

/// What a fan-out run measured.
pub struct FanOutReport {
    pub followers: usize,
    /// Server replicas the followers were spread over.
    pub replicas: usize,
    /// Revoke-call-returned-to-last-follower latencies, sorted.
    pub latencies: Vec<Duration>,
    /// The server's resident set in KiB before and after connecting the followers.
    pub memory: Option<(u64, u64)>,
}

/// What a follower tells the bench.
enum Event {
    /// The first heartbeat arrived.
    Connected,
    /// The revocation of this subject arrived at this instant.
    Seen(String, Instant),
    /// The follower stopped.
    Failed(String),
}

/// Connects `followers` followers spread over the replicas at `servers`, then times
/// `revocations` revocations made through the first. `server_pids` are the replicas'
/// processes, for their memory.
pub async fn run(
    servers: &[SocketAddr],
    admin: Credential,
    server_pids: Option<Vec<u32>>,
    followers: usize,
    revocations: usize,
) -> anyhow::Result<FanOutReport> {
    let first = *servers.first().context("no server to follow")?;
    let client = Client::new(&format!("http://{first}"), Some(admin))?;
    let tenant = unique_tenant();
    super::edge::bench_tenant(&client, &tenant).await?;
    let key: Arc<str> = super::edge::system_key(&client, "bench followers", INTROSPECT)
        .await?
        .into();
    // Followers start at the head, so that a server with history does not replay it
    // to every one of them.
    let head = client
        .get_query(
            &["v1", "revocations"],
            &[("after", "0".to_owned()), ("limit", "1".to_owned())],
        )
        .await?["head"]
        .as_i64()
        .context("the revocation feed's head")?;

    let resident = || -> Option<u64> {
        server_pids
            .as_ref()?
            .iter()
            .map(|&pid| resident_kib(pid))
            .sum()
    };
    let before = resident();
    eprintln!("connecting {followers} followers");
    let (events, mut received) = mpsc::unbounded_channel();
    let connecting = Arc::new(Semaphore::new(CONNECTING_AT_ONCE));
    let mut tasks = JoinSet::new();
    for server in servers.iter().copied().cycle().take(followers) {
        let (events, key, connecting) = (events.clone(), key.clone(), connecting.clone());
        tasks.spawn(async move {
            if let Err(error) = follow(server, &key, head, &connecting, &events).await {
                let _ = events.send(Event::Failed(format!("{error:#}")));
            }
        });
    }
    drop(events);
    let mut connected = 0;
    let deadline = Instant::now() + CONNECT_TIMEOUT;
    while connected < followers {
        match tokio::time::timeout_at(deadline.into(), received.recv()).await {
            Ok(Some(Event::Connected)) => connected += 1,
            Ok(Some(Event::Seen(..))) => {}
            Ok(Some(Event::Failed(error))) => bail!("a follower failed to connect: {error}"),
            Ok(None) => bail!("every follower stopped"),
            Err(_) => bail!(
                "only {connected} of {followers} followers connected within {} s",
                CONNECT_TIMEOUT.as_secs()
            ),
        }
    }
    let after = resident();

    eprintln!("running: {revocations} revocations to {followers} followers");
    let mut latencies = Vec::with_capacity(revocations);
    for _ in 0..revocations {
        let (id, _) =
            tenant_client_token(&client, &tenant, json!({ "permissions": ["bench:read"] })).await?;
        client.delete(&["v1", "tokens", &id]).await?;
        let returned = Instant::now();
        let mut seen = 0;
        let mut last = returned;
        while seen < followers {
            match tokio::time::timeout_at((returned + TIMEOUT).into(), received.recv()).await {
                Ok(Some(Event::Seen(subject, at))) if subject == id => {
                    seen += 1;
                    last = last.max(at);
                }
                Ok(Some(Event::Seen(..) | Event::Connected)) => {}
                Ok(Some(Event::Failed(error))) => bail!("a follower failed: {error}"),
                Ok(None) => bail!("every follower stopped"),
                Err(_) => bail!(
                    "only {seen} of {followers} followers saw a revocation within {} s",
                    TIMEOUT.as_secs()
                ),
            }
        }
        latencies.push(last.saturating_duration_since(returned));
    }
    latencies.sort();
    tasks.abort_all();
    Ok(FanOutReport {
        followers,
        replicas: servers.len(),
        latencies,
        memory: before.zip(after),
    })
}

/// One follower: connects, reports its first heartbeat, then every token revocation it
/// reads, until the stream ends.
async fn follow(
    server: SocketAddr,
    key: &str,
    head: i64,
    connecting: &Semaphore,
    events: &mpsc::UnboundedSender<Event>,
) -> anyhow::Result<()> {
    let permit = connecting.acquire().await?;
    let stream = TcpStream::connect(server)
        .await
        .context("connecting to the server")?;
    stream.set_nodelay(true)?;
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .context("the HTTP handshake")?;
    tokio::spawn(connection);
    let request = Request::get(format!("/v1/revocations/stream?after={head}"))
        .header(HOST, server.to_string())
        .header(AUTHORIZATION, format!("Bearer {key}"))
        .header(ACCEPT, "text/event-stream")
        .body(Empty::<Bytes>::new())?;
    let response = sender.send_request(request).await?;
    if response.status() != StatusCode::OK {
        bail!("the stream answered {}", response.status());
    }
    let mut body = response.into_body();
    let mut permit = Some(permit);
    let mut pending: Vec<u8> = Vec::new();
    while let Some(frame) = body.frame().await {
        let Ok(data) = frame?.into_data() else {
            continue;
        };
        let at = Instant::now();
        pending.extend_from_slice(&data);
        while let Some(end) = pending.iter().position(|&b| b == b'\n') {
            let line: Vec<u8> = pending.drain(..=end).collect();
            let Some(data) = line.strip_prefix(b"data:") else {
                continue;
            };
            let event: Value = serde_json::from_slice(data.trim_ascii())
                .map_err(|e| anyhow!("an event that is not JSON: {e}"))?;
            if event.get("head").is_some() {
                if permit.take().is_some() {
                    events.send(Event::Connected)?;
                }
            } else if event["kind"] == FeedKind::Token.as_str() {
                if let Some(subject) = event["subject"].as_str() {
                    events.send(Event::Seen(subject.to_owned(), at))?;
                }
            }
        }
    }
    Err(anyhow!("the server ended the stream"))
}

/// The resident set of process `pid` in KiB (Linux).
fn resident_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

/// Raises this process's soft limit on open files to its hard limit (the server the
/// bench starts inherits it), and fails when that is still too low for `followers`.
pub fn raise_open_files(followers: u64) -> anyhow::Result<()> {
    let needed = followers + SPARE_FILES;
    let limit =
        rlimit::increase_nofile_limit(u64::MAX).context("raising the soft limit on open files")?;
    if limit < needed {
        bail!(
            "--followers {followers} needs about {needed} open files, and this process may \
             open at most {limit} (its hard limit): raise the hard limit (e.g. \
             `ulimit -Hn {needed}` as root, `LimitNOFILE=` in a systemd unit, or `nofile` in \
             /etc/security/limits.conf), or ask for fewer followers"
        );
    }
    Ok(())
}

impl FanOutReport {
    /// The report as text (and markdown).
    pub fn markdown(&self, command: &str, cores: usize, backend: &str) -> String {
        let mut text = format!(
            "- command: `{command}`\n- machine: {cores} cores; the bench (with its followers) \
             and the server processes share them\n- backend: {backend}\n"
        );
        if let Some(summary) = super::report::latency_summary(&self.latencies) {
            let spread = match self.replicas {
                1 => String::new(),
                n => format!(" spread over {n} replicas on one database"),
            };
            text.push_str(&format!(
                "\nFan-out to {} followers{spread} over {} revocations (revoke call returned \
                 → the last follower saw the entry): {summary}\n",
                self.followers,
                self.latencies.len()
            ));
        }
        let followers = self.followers.max(1) as f64;
        text.push_str(&match self.memory {
            Some((before, after)) => format!(
                "\nServer memory per follower: {:.1} KiB (resident set {:.1} MiB before \
                 connecting {} followers, {:.1} MiB after)\n",
                after.saturating_sub(before) as f64 / followers,
                before as f64 / 1024.0,
                self.followers,
                after as f64 / 1024.0
            ),
            None => "\nServer memory per follower: not known (the bench did not start the \
                     server, or this is not Linux)\n"
                .to_owned(),
        });
        text
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn this_process_has_a_resident_set_on_linux() {
        if cfg!(target_os = "linux") {
            assert!(resident_kib(std::process::id()).is_some_and(|kib| kib > 0));
        }
        assert_eq!(resident_kib(u32::MAX), None);
    }

    #[test]
    fn the_report_names_the_fan_out_and_the_memory_per_follower() {
        let report = FanOutReport {
            followers: 4,
            replicas: 1,
            latencies: vec![Duration::from_millis(1), Duration::from_millis(3)],
            memory: Some((10_240, 10_640)),
        };
        let text = report.markdown("latchkey bench --followers 4", 2, "SQLite");
        assert!(
            text.contains(
                "Fan-out to 4 followers over 2 revocations (revoke call returned → the last \
                 follower saw the entry): p50 1.00 ms, p99 3.00 ms, max 3.00 ms"
            ),
            "{text}"
        );
        assert!(
            text.contains(
                "Server memory per follower: 100.0 KiB (resident set 10.0 MiB before \
                 connecting 4 followers, 10.4 MiB after)"
            ),
            "{text}"
        );
    }
}
