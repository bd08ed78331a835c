//! `latchkey bench`: a load generator that measures the OAuth hot paths of a real
//! `latchkey serve` over HTTP/1.1 keep-alive on loopback: client-credentials grants,
//! introspection of an access JWT, and introspection of an api key.
//!
//! By default it starts the server itself (this binary's `serve`, on 127.0.0.1:0 with a
//! fresh data directory, SQLite unless `--database-url` says otherwise) and kills it at
//! the end; `--server` measures one already running on loopback instead. It sets up what
//! the runs need through the management API, runs each for a fixed time, and stops.
//! Before each run it waits for the server to go idle, so that work a run leaves behind
//! (the audit backlog of the grants) is not charged to the next.
//! Figures are throughput and latency quantiles of one run each; it is a benchmark, not
//! a test, and it asserts nothing about speed. Any failed request fails the command.
//! `--edge` measures the gateway instead (`edge`), `--followers N` the revocation feed's
//! fan-out (`followers`); `--jwt-bearer` the JWT-bearer grant against client
//! credentials (`federation`), and `--edge --dpop` the gateway's DPoP overhead, both in
//! alternating rounds; docs/BENCHMARKS.md says how to read each.

mod child;
mod edge;
mod federation;
mod followers;
mod keys;
mod load;
mod report;
mod server;
mod setup;

use crate::admin::client::Credential;
use anyhow::{anyhow, bail};
use clap::Args;
use load::{Plan, Target};
use report::Report;
use server::ChildServer;
use setup::Fixture;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

#[derive(Debug, Args)]
pub struct BenchArgs {
    /// Seconds each run is measured (at most 600, the access token's default lifetime
    /// being 900).
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u64).range(1..=600))]
    duration: u64,
    /// Seconds of load before each run's measurement starts.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u64).range(0..=60))]
    warmup: u64,
    /// Concurrent keep-alive connections, each with one request in flight.
    #[arg(long, default_value_t = 32, value_parser = clap::value_parser!(u16).range(1..=1024))]
    connections: u16,
    /// Database for the server the bench starts: sqlite://… or postgres://… naming an
    /// empty database, which the caller creates (e.g. `createdb latchkey_bench`)
    /// [default: SQLite in a temporary directory].
    #[arg(long, value_name = "URL", conflicts_with = "server")]
    database_url: Option<String>,
    /// Measure this running server instead of starting one; loopback addresses only.
    /// Needs an admin credential in LATCHKEY_TOKEN.
    #[arg(long, value_name = "URL")]
    server: Option<String>,
    /// Credential holding latchkey:admin, for --server (a server the bench starts gives
    /// its root key).
    #[arg(long, env = "LATCHKEY_TOKEN", hide_env_values = true)]
    token: Option<Credential>,
    /// Also append the results as a markdown section to this file.
    #[arg(long, value_name = "FILE")]
    output: Option<PathBuf>,
    /// Measure the gateway instead: throughput straight to an upstream, through the
    /// gateway without and with JWT auth, then revocation and narrowing propagation.
    #[arg(long)]
    edge: bool,
    /// Measure only the client-credentials grant run.
    #[arg(long, conflicts_with = "edge")]
    grants_only: bool,
    /// Measure the JWT-bearer grant against the client-credentials grant instead, in
    /// alternating rounds (--rounds): the bench serves a fake OpenID Connect issuer on
    /// loopback and creates trusts for it, with replay protection off and on.
    #[arg(long, conflicts_with_all = ["edge", "grants_only"])]
    jwt_bearer: bool,
    /// With --edge: measure the gateway's DPoP overhead instead, in alternating rounds
    /// (--rounds) of a Bearer JWT and of a DPoP-bound JWT with a fresh proof per request;
    /// the CPU column is then the gateway's.
    #[arg(long, requires = "edge")]
    dpop: bool,
    /// With --jwt-bearer or --dpop: rounds of each run.
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u64).range(1..=20))]
    rounds: u64,
    /// Measure the fan-out instead: this many followers of the revocation stream, then
    /// --revocations revocations timed to the last follower, and the server's memory per
    /// follower.
    #[arg(long, value_name = "N", conflicts_with_all = ["edge", "grants_only", "jwt_bearer"],
          value_parser = clap::value_parser!(u64).range(1..=100_000))]
    followers: Option<u64>,
    /// With --followers: run this many server replicas on the --database-url PostgreSQL
    /// database, the followers spread evenly over them; revocations go through the first.
    #[arg(long, default_value_t = 1, requires = "followers",
          value_parser = clap::value_parser!(u64).range(1..=8))]
    replicas: u64,
    /// With --edge: how many revocations, as many role narrowings and as many synchronous
    /// revocations to time; with --followers: how many revocations to time.
    #[arg(long, default_value_t = 1000, value_parser = clap::value_parser!(u64).range(1..=100_000))]
    revocations: u64,
    /// With --edge: leave out the narrowing runs, for a build (--children) from before
    /// the gateway narrowed a token to what its roles grant now, which cannot pass them.
    #[arg(long, requires = "edge")]
    skip_narrowing: bool,
    /// Start the server and the gateway from this latchkey binary instead of this one:
    /// another build measured by the same bench, say the one before a change, to put
    /// its figures beside this build's (docs/BENCHMARKS.md).
    #[arg(long, value_name = "FILE", conflicts_with = "server")]
    children: Option<PathBuf>,
}

pub async fn run(args: BenchArgs) -> anyhow::Result<()> {
    let command = report::command_line(std::env::args());
    if let Some(binary) = &args.children {
        child::start_from(binary)?;
    }
    if let Some(followers) = args.followers {
        // Before the server starts, so that it inherits the raised limit.
        followers::raise_open_files(followers)?;
    }
    let server = ServerUnderTest::open(&args).await?;
    let plan = Plan {
        address: server.address,
        connections: usize::from(args.connections),
        warmup: Duration::from_secs(args.warmup),
        duration: Duration::from_secs(args.duration),
        server_pid: server.child.as_ref().and_then(ChildServer::pid),
    };
    let revocations = usize::try_from(args.revocations).unwrap_or(usize::MAX);
    if let Some(followers) = args.followers {
        let replicas = server.replicas(&args).await?;
        let mut addresses = vec![plan.address];
        addresses.extend(replicas.iter().map(|replica| replica.address));
        let mut pids: Vec<u32> = plan.server_pid.into_iter().collect();
        pids.extend(replicas.iter().filter_map(ChildServer::pid));
        let report = followers::run(
            &addresses,
            server.admin.clone(),
            (pids.len() == addresses.len()).then_some(pids),
            usize::try_from(followers).unwrap_or(usize::MAX),
            revocations,
        )
        .await?;
        for replica in replicas {
            replica.stop().await;
        }
        if let Some(child) = server.child {
            child.stop().await;
        }
        let cores = std::thread::available_parallelism().map_or(0, usize::from);
        let text = report.markdown(&command, cores, &server.backend);
        println!("{text}");
        return append_section(args.output.as_deref(), "revocation fan-out", &text);
    }
    eprintln!(
        "latchkey bench: {} connections to http://{}, {} s + {} s warm-up per run",
        plan.connections, plan.address, args.duration, args.warmup
    );
    if args.edge && args.dpop {
        let runs = edge::run_dpop(plan.address, server.admin.clone(), &plan, args.rounds).await?;
        let notes = Vec::from_iter(report::comparison(
            &runs,
            edge::BEARER,
            edge::DPOP,
            "gateway",
        ));
        return finish(&args, command, server, &plan, runs, "gateway", notes).await;
    }
    if args.edge {
        let narrowings = if args.skip_narrowing { 0 } else { revocations };
        let report = edge::run(
            plan.address,
            server.admin.clone(),
            &plan,
            (revocations, narrowings),
        )
        .await?;
        if let Some(child) = server.child {
            child.stop().await;
        }
        let cores = std::thread::available_parallelism().map_or(0, usize::from);
        let text = report.markdown(&command, cores);
        println!("{text}");
        append_section(
            args.output.as_deref(),
            "the gateway and revocation propagation",
            &text,
        )?;
        let errors: u64 = report.loads.iter().map(|(_, o)| o.errors.total()).sum();
        if errors > 0 {
            bail!("{errors} requests failed");
        }
        return Ok(());
    }
    let fixture = setup::prepare(plan.address, server.admin.clone()).await?;
    if args.jwt_bearer {
        let admin = server.admin.clone();
        let runs = federation::alternate(plan.address, admin, &fixture, &plan, args.rounds).await?;
        let notes = [federation::REUSED, federation::FRESH]
            .iter()
            .filter_map(|candidate| {
                report::comparison(&runs, federation::CLIENT_CREDENTIALS, candidate, "server")
            })
            .collect();
        return finish(&args, command, server, &plan, runs, "server", notes).await;
    }
    let runs = measure_all(&fixture, &plan, args.grants_only).await?;
    finish(&args, command, server, &plan, runs, "server", Vec::new()).await
}

/// Stops the server the bench started, prints the report of `runs` and appends it to
/// `--output`; fails when any request failed.
async fn finish(
    args: &BenchArgs,
    command: String,
    server: ServerUnderTest,
    plan: &Plan,
    runs: Vec<load::Outcome>,
    measured: &'static str,
    notes: Vec<String>,
) -> anyhow::Result<()> {
    if let Some(child) = server.child {
        child.stop().await;
    }
    let report = Report {
        command,
        cores: std::thread::available_parallelism().map_or(0, usize::from),
        cpu_model: report::cpu_model(),
        backend: server.backend,
        connections: plan.connections,
        warmup: plan.warmup,
        duration: plan.duration,
        runs,
        measured,
        notes,
    };
    println!("{}", report.text());
    if let Some(path) = &args.output {
        report.append_to(path, &now())?;
        eprintln!("appended the results to {}", path.display());
    }
    match report.errors() {
        0 => Ok(()),
        failed => bail!("{failed} requests failed; see the WARNING lines above"),
    }
}

/// Appends `text` to `path`, if any, as a markdown section headed with the date and
/// `title`.
fn append_section(path: Option<&std::path::Path>, title: &str, text: &str) -> anyhow::Result<()> {
    let Some(path) = path else {
        return Ok(());
    };
    let mut file = std::fs::OpenOptions::new()
        .append(true)
        .create(true)
        .open(path)?;
    std::io::Write::write_all(
        &mut file,
        format!("\n## {}: {title}\n\n{text}", now()).as_bytes(),
    )?;
    eprintln!("appended the results to {}", path.display());
    Ok(())
}

/// The server to load, and how the bench reaches it.
struct ServerUnderTest {
    /// The `latchkey serve` the bench started, if it did.
    child: Option<ChildServer>,
    address: SocketAddr,
    admin: Credential,
    /// The backend, in words.
    backend: String,
}

impl ServerUnderTest {
    /// The replicas beyond this server that `--replicas` asks for, on its database.
    async fn replicas(&self, args: &BenchArgs) -> anyhow::Result<Vec<ChildServer>> {
        if args.replicas < 2 {
            return Ok(Vec::new());
        }
        let (Some(child), Some(url)) = (&self.child, args.database_url.as_deref()) else {
            bail!("--replicas needs a server the bench starts, on --database-url postgres://…");
        };
        if !url.starts_with("postgres") {
            bail!("--replicas needs a PostgreSQL --database-url: replicas share one database");
        }
        let mut replicas = Vec::new();
        for _ in 1..args.replicas {
            replicas.push(child.replica(url).await?);
        }
        Ok(replicas)
    }

    async fn open(args: &BenchArgs) -> anyhow::Result<Self> {
        if let Some(url) = &args.server {
            let admin = args
                .token
                .clone()
                .ok_or_else(|| anyhow!("--server needs an admin credential: set LATCHKEY_TOKEN"))?;
            return Ok(Self {
                child: None,
                address: server::loopback(url)?,
                admin,
                backend: format!("external server at {url} (backend not known to the bench)"),
            });
        }
        let child = ChildServer::start(args.database_url.as_deref()).await?;
        // Its data directory, and so its master key, is new: a database that already
        // holds keys would not open, so a server that listens has printed its root key.
        let admin = child
            .root_key
            .as_deref()
            .ok_or_else(|| anyhow!("the server printed no root key: is its database empty?"))?
            .parse()?;
        Ok(Self {
            address: child.address,
            child: Some(child),
            admin,
            backend: backend(args.database_url.as_deref()),
        })
    }
}

/// The three runs, one after the other, or only the first.
async fn measure_all(
    fixture: &Fixture,
    plan: &Plan,
    grants_only: bool,
) -> anyhow::Result<Vec<load::Outcome>> {
    let grants = fixture.grants_target();
    let mut runs = vec![measure(&grants, plan).await?];
    if grants_only {
        return Ok(runs);
    }
    // Obtained now rather than at setup, so that it lives through the run however long
    // the grant run was.
    let access_token = fixture.access_token(plan.address).await?;
    let introspect = |name: &str, token: &str| Target {
        name: name.to_owned(),
        path: "/oauth/introspect",
        authorization: format!("Bearer {}", fixture.introspect_key),
        body: format!("token={}", form_encode(token)),
        expect: "\"active\":true",
        fresh: None,
    };
    runs.push(measure(&introspect("introspect access JWT", &access_token), plan).await?);
    runs.push(measure(&introspect("introspect api key", &fixture.api_key), plan).await?);
    Ok(runs)
}

async fn measure(target: &Target, plan: &Plan) -> anyhow::Result<load::Outcome> {
    let waited = load::settle(plan.server_pid).await;
    eprintln!(
        "running: {} (after {:.1} s for the server to settle)",
        target.name,
        waited.as_secs_f64()
    );
    load::run(target, plan).await
}

/// The backend of the server the bench starts, in words.
fn backend(database_url: Option<&str>) -> String {
    match database_url {
        None => "SQLite (fresh database in a temporary directory)".to_owned(),
        Some(url) if url.starts_with("postgres") => "PostgreSQL".to_owned(),
        Some(url) if url.starts_with("sqlite") => "SQLite".to_owned(),
        Some(_) => "the database given by --database-url".to_owned(),
    }
}

/// `application/x-www-form-urlencoded` encoding of one value.
fn form_encode(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for byte in value.bytes() {
        match byte {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'*' | b'-' | b'.' | b'_' => {
                out.push(char::from(byte));
            }
            b' ' => out.push('+'),
            _ => out.push_str(&format!("%{byte:02X}")),
        }
    }
    out
}

/// The current UTC time for the report's heading.
fn now() -> String {
    let format = time::macros::format_description!("[year]-[month]-[day] [hour]:[minute] UTC");
    time::OffsetDateTime::now_utc()
        .format(format)
        .unwrap_or_else(|_| "unknown date".to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn form_values_are_percent_encoded() {
        assert_eq!(form_encode("lk_ak_AZaz09-."), "lk_ak_AZaz09-.");
        assert_eq!(form_encode("a b+c/=é"), "a+b%2Bc%2F%3D%C3%A9");
    }
}
