//! The load generator: for one target request, `connections` tasks on the multi-thread
//! runtime, each owning one keep-alive HTTP/1.1 connection (hyper's connection-level
//! client, no pool) and sending the same pre-built request on it as fast as the server
//! answers, through a warm-up and then a measured window. hyper rather than reqwest
//! because the client shares the cores with the server: it costs about 30 µs of CPU per
//! request here against reqwest's 45, and every microsecond it saves goes to the server.
//!
//! Policy: a request counts when it both starts and ends inside the measured window;
//! requests in flight at its edges are dropped, as wrk does. Every answer is checked: a
//! status other than 200, or a 200 whose body lacks the expected text (an introspection
//! that says `{"active":false}` is fast and wrong), counts as an error, never as a
//! request served. A target may make part of each request anew ([`Fresh`]: a DPoP proof,
//! an assertion with its own `jti`); that work is the generator's, on the cores it
//! shares with the server, and shows in the bench's CPU column.

use anyhow::Context;
use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper::client::conn::http1::SendRequest;
use hyper::header::{AUTHORIZATION, CONTENT_TYPE, HOST, HeaderName, HeaderValue};
use hyper::{Request, StatusCode, Uri};
use hyper_util::rt::TokioIo;
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::net::TcpStream;
use tokio::task::JoinSet;

/// Pause after a transport error, so that a dead server is not hammered in a tight loop.
const ERROR_BACKOFF: Duration = Duration::from_millis(20);

/// One kind of request a run repeats.
pub struct Target {
    /// The run's name in the report.
    pub name: String,
    /// The path, e.g. `/oauth/token`.
    pub path: &'static str,
    /// The whole `Authorization` header value; empty sends none.
    pub authorization: String,
    /// The form body; empty makes the request a GET.
    pub body: String,
    /// Text every good answer's body contains.
    pub expect: &'static str,
    /// What is made anew for every request, if anything.
    pub fresh: Option<Fresh>,
}

/// A maker of one string per request.
pub type Maker = Arc<dyn Fn() -> anyhow::Result<String> + Send + Sync>;

/// The part of a request made anew for each send.
#[derive(Clone)]
pub enum Fresh {
    /// A header (`DPoP`, with a proof whose `jti` and `iat` are new).
    Header(HeaderName, Maker),
    /// The form body (an assertion with a new `jti`); replaces [`Target::body`], whose
    /// emptiness still makes the request a GET.
    Body(Maker),
}

/// How hard and how long to load the server.
#[derive(Debug, Clone, Copy)]
pub struct Plan {
    pub address: SocketAddr,
    pub connections: usize,
    pub warmup: Duration,
    pub duration: Duration,
    /// The server's process, when the bench started it, for its CPU time.
    pub server_pid: Option<u32>,
}

/// What went wrong during a run.
#[derive(Debug, Default, Clone)]
pub struct Errors {
    /// Answers by status other than 200.
    pub statuses: BTreeMap<u16, u64>,
    /// 200s without the expected body.
    pub unexpected_body: u64,
    /// Connections refused or broken, requests that got no answer.
    pub transport: u64,
}

impl Errors {
    pub fn total(&self) -> u64 {
        self.statuses.values().sum::<u64>() + self.unexpected_body + self.transport
    }

    fn merge(&mut self, other: Errors) {
        for (status, count) in other.statuses {
            *self.statuses.entry(status).or_default() += count;
        }
        self.unexpected_body += other.unexpected_body;
        self.transport += other.transport;
    }

    /// E.g. `429 ×12, 200 with an unexpected body ×3, transport ×1`.
    pub fn describe(&self) -> String {
        let mut parts: Vec<String> = self
            .statuses
            .iter()
            .map(|(status, count)| format!("status {status} ×{count}"))
            .collect();
        if self.unexpected_body > 0 {
            parts.push(format!(
                "200 with an unexpected body ×{}",
                self.unexpected_body
            ));
        }
        if self.transport > 0 {
            parts.push(format!("no answer ×{}", self.transport));
        }
        parts.join(", ")
    }
}

/// The measured window of one run.
#[derive(Debug)]
pub struct Outcome {
    pub name: String,
    /// Durations of the good requests, sorted.
    pub latencies: Vec<Duration>,
    pub errors: Errors,
    /// The window's length.
    pub window: Duration,
    /// CPU used during the window.
    pub cpu: CpuUse,
}

impl Outcome {
    /// Good requests per second.
    pub fn rate(&self) -> f64 {
        self.latencies.len() as f64 / self.window.as_secs_f64()
    }

    /// The `p`-th quantile (0 < p ≤ 1) of the latencies, by nearest rank.
    pub fn quantile(&self, p: f64) -> Option<Duration> {
        let n = self.latencies.len();
        let rank = (p * n as f64).ceil() as usize;
        self.latencies.get(rank.clamp(1, n.max(1)) - 1).copied()
    }
}

/// What one connection's task saw in the window.
#[derive(Default)]
struct Tally {
    latencies: Vec<Duration>,
    errors: Errors,
}

/// Loads the server with `target` per `plan` and measures.
pub async fn run(target: &Target, plan: &Plan) -> anyhow::Result<Outcome> {
    let request = Arc::new(Prepared {
        uri: Uri::from_static(target.path),
        host: HeaderValue::from_str(&plan.address.to_string()).context("host header")?,
        authorization: match target.authorization.as_str() {
            "" => None,
            value => Some(HeaderValue::from_str(value).context("authorization header")?),
        },
        body: Bytes::from(target.body.clone()),
        expect: target.expect,
        fresh: target.fresh.clone(),
    });
    let start = Instant::now();
    let window = Window {
        from: start + plan.warmup,
        until: start + plan.warmup + plan.duration,
    };
    let cpu = tokio::spawn(cpu_during(plan.server_pid, window));
    let mut tasks = JoinSet::new();
    for _ in 0..plan.connections {
        let request = Arc::clone(&request);
        let address = plan.address;
        tasks.spawn(async move { connection(address, &request, window).await });
    }
    let mut latencies = Vec::new();
    let mut errors = Errors::default();
    while let Some(tally) = tasks.join_next().await {
        let tally = tally.context("a load task failed")?;
        latencies.extend(tally.latencies);
        errors.merge(tally.errors);
    }
    latencies.sort_unstable();
    Ok(Outcome {
        name: target.name.clone(),
        latencies,
        errors,
        window: plan.duration,
        cpu: cpu.await.unwrap_or_default(),
    })
}

/// The parts of the target request, built once; each send clones them (reference
/// counts, no copies).
struct Prepared {
    uri: Uri,
    host: HeaderValue,
    /// `None` sends no `Authorization` header.
    authorization: Option<HeaderValue>,
    /// Empty: a GET; otherwise a form POST.
    body: Bytes,
    expect: &'static str,
    fresh: Option<Fresh>,
}

impl Prepared {
    fn request(&self) -> anyhow::Result<Request<Full<Bytes>>> {
        let mut builder = if self.body.is_empty() {
            Request::get(self.uri.clone())
        } else {
            Request::post(self.uri.clone()).header(CONTENT_TYPE, FORM)
        };
        builder = builder.header(HOST, self.host.clone());
        if let Some(authorization) = &self.authorization {
            builder = builder.header(AUTHORIZATION, authorization.clone());
        }
        let body = match &self.fresh {
            None => self.body.clone(),
            Some(Fresh::Header(name, make)) => {
                builder = builder.header(name, HeaderValue::from_str(&make()?)?);
                self.body.clone()
            }
            Some(Fresh::Body(make)) => Bytes::from(make()?),
        };
        Ok(builder.body(Full::new(body))?)
    }
}

const FORM: HeaderValue = HeaderValue::from_static("application/x-www-form-urlencoded");

/// The measured window.
#[derive(Debug, Clone, Copy)]
struct Window {
    from: Instant,
    until: Instant,
}

/// One keep-alive connection sending requests back to back until the window ends; it
/// reconnects after a transport error.
async fn connection(address: SocketAddr, request: &Prepared, window: Window) -> Tally {
    let mut tally = Tally::default();
    while Instant::now() < window.until {
        let mut sender = match connect(address).await {
            Ok(sender) => sender,
            Err(_) => {
                tally.errors.transport += u64::from(Instant::now() >= window.from);
                tokio::time::sleep(ERROR_BACKOFF).await;
                continue;
            }
        };
        loop {
            let started = Instant::now();
            if started >= window.until {
                break;
            }
            let answer = exchange(&mut sender, request).await;
            let ended = Instant::now();
            let counted = started >= window.from && ended <= window.until;
            match answer {
                Ok((StatusCode::OK, body)) if contains(&body, request.expect.as_bytes()) => {
                    if counted {
                        tally.latencies.push(ended - started);
                    }
                }
                Ok((StatusCode::OK, _)) => tally.errors.unexpected_body += u64::from(counted),
                Ok((status, _)) => {
                    *tally.errors.statuses.entry(status.as_u16()).or_default() +=
                        u64::from(counted);
                }
                Err(_) => {
                    tally.errors.transport += u64::from(counted);
                    tokio::time::sleep(ERROR_BACKOFF).await;
                    break;
                }
            }
        }
    }
    tally
}

async fn connect(address: SocketAddr) -> anyhow::Result<SendRequest<Full<Bytes>>> {
    let stream = TcpStream::connect(address).await?;
    // Requests are small and sent whole; Nagle would only add delay.
    stream.set_nodelay(true)?;
    let (sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
    tokio::spawn(connection);
    Ok(sender)
}

/// Sends one request and reads the whole answer.
async fn exchange(
    sender: &mut SendRequest<Full<Bytes>>,
    request: &Prepared,
) -> anyhow::Result<(StatusCode, Bytes)> {
    sender.ready().await?;
    let response = sender.send_request(request.request()?).await?;
    let status = response.status();
    let body = response.into_body().collect().await?.to_bytes();
    Ok((status, body))
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack
        .windows(needle.len())
        .any(|window| window == needle)
}

/// Cores' worth of CPU time used during a window.
#[derive(Debug, Default, Clone, Copy)]
pub struct CpuUse {
    /// By this process.
    pub bench: Option<f64>,
    /// By the server, when the bench started it.
    pub server: Option<f64>,
    /// By everything else on the machine: background load that skews the figures.
    pub other: Option<f64>,
}

/// Samples CPU times at both ends of the window (Linux; `None`s elsewhere).
async fn cpu_during(server_pid: Option<u32>, window: Window) -> CpuUse {
    let sample = || {
        (
            process_cpu_seconds("self"),
            server_pid.and_then(|pid| process_cpu_seconds(&pid.to_string())),
            machine_cpu_seconds(),
        )
    };
    tokio::time::sleep_until(window.from.into()).await;
    let before = sample();
    tokio::time::sleep_until(window.until.into()).await;
    let after = sample();
    let seconds = window.until.duration_since(window.from).as_secs_f64();
    let used = |before: Option<f64>, after: Option<f64>| Some((after? - before?) / seconds);
    let bench = used(before.0, after.0);
    let server = used(before.1, after.1);
    let machine = used(before.2, after.2);
    let other = match (machine, bench, server) {
        (Some(machine), Some(bench), Some(server)) => Some((machine - bench - server).max(0.0)),
        _ => None,
    };
    CpuUse {
        bench,
        server,
        other,
    }
}

/// Waits until the server has finished what the previous run left it (queued audit
/// writes, for one), so that a run does not pay for the one before: until it uses less
/// than a tenth of a core over a quarter second, for at most `SETTLE_LIMIT`. Without
/// its CPU time (a server the bench did not start, or not Linux), waits `SETTLE_BLIND`.
/// Answers how long it waited.
pub async fn settle(server_pid: Option<u32>) -> Duration {
    const STEP: Duration = Duration::from_millis(250);
    const IDLE_CORES: f64 = 0.1;
    const SETTLE_LIMIT: Duration = Duration::from_secs(60);
    const SETTLE_BLIND: Duration = Duration::from_secs(3);
    let started = Instant::now();
    let cpu = || server_pid.and_then(|pid| process_cpu_seconds(&pid.to_string()));
    let Some(mut before) = cpu() else {
        tokio::time::sleep(SETTLE_BLIND).await;
        return SETTLE_BLIND;
    };
    while started.elapsed() < SETTLE_LIMIT {
        tokio::time::sleep(STEP).await;
        let Some(now) = cpu() else { break };
        if now - before < IDLE_CORES * STEP.as_secs_f64() {
            break;
        }
        before = now;
    }
    started.elapsed()
}

/// USER_HZ, the unit of the times in `/proc`: 100 on every Linux architecture we run on.
const TICKS_PER_SECOND: f64 = 100.0;

/// User plus system CPU seconds of a process, all threads, from `/proc/<pid>/stat`.
fn process_cpu_seconds(pid: &str) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name may hold spaces and parentheses; the fields after it do not.
    let (_, fields) = stat.rsplit_once(')')?;
    let mut fields = fields.split_whitespace().skip(11);
    let user: f64 = fields.next()?.parse().ok()?;
    let system: f64 = fields.next()?.parse().ok()?;
    Some((user + system) / TICKS_PER_SECOND)
}

/// Busy CPU seconds of the whole machine, all cores, from `/proc/stat`.
fn machine_cpu_seconds() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/stat").ok()?;
    let line = stat.lines().next()?.strip_prefix("cpu ")?;
    let ticks: Vec<f64> = line
        .split_whitespace()
        .map(str::parse)
        .collect::<Result<_, _>>()
        .ok()?;
    // user nice system idle iowait irq softirq steal; guest time is already in user.
    let busy = [0, 1, 2, 5, 6, 7]
        .iter()
        .filter_map(|&i| ticks.get(i))
        .sum::<f64>();
    Some(busy / TICKS_PER_SECOND)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn outcome(millis: &[u64]) -> Outcome {
        Outcome {
            name: "t".to_owned(),
            latencies: millis.iter().copied().map(Duration::from_millis).collect(),
            errors: Errors::default(),
            window: Duration::from_secs(2),
            cpu: CpuUse::default(),
        }
    }

    #[test]
    fn quantiles_are_nearest_rank_and_rates_count_good_requests() {
        let run = outcome(&(1..=100).collect::<Vec<_>>());
        assert_eq!(run.quantile(0.5), Some(Duration::from_millis(50)));
        assert_eq!(run.quantile(0.99), Some(Duration::from_millis(99)));
        assert_eq!(run.rate(), 50.0);
        assert_eq!(outcome(&[7]).quantile(0.99), Some(Duration::from_millis(7)));
        assert_eq!(outcome(&[]).quantile(0.5), None);
    }

    #[test]
    fn errors_are_described_by_kind() {
        let mut errors = Errors::default();
        errors.statuses.insert(429, 12);
        errors.merge(Errors {
            statuses: BTreeMap::from([(429, 1), (500, 2)]),
            unexpected_body: 3,
            transport: 1,
        });
        assert_eq!(errors.total(), 19);
        assert_eq!(
            errors.describe(),
            "status 429 ×13, status 500 ×2, 200 with an unexpected body ×3, no answer ×1"
        );
    }

    #[test]
    fn this_process_and_the_machine_have_cpu_times_on_linux() {
        if cfg!(target_os = "linux") {
            assert!(process_cpu_seconds("self").is_some());
            assert!(machine_cpu_seconds().is_some());
        }
    }
}
