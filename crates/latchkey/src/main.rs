//! `latchkey`: the one binary. `serve` runs the server; the admin commands talk HTTP to a
//! running server with `LATCHKEY_TOKEN` as the credential; `bench` measures a server
//! under load.

mod admin;
mod bench;
mod demo;
mod gateway;
mod ops;
mod serve;

use clap::{Parser, Subcommand};
use std::process::ExitCode;

#[derive(Debug, Parser)]
#[command(
    name = "latchkey",
    version,
    about = "Machine-to-machine authentication: API tokens, OAuth client credentials, instant revocation"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the latchkey server.
    Serve(serve::ServeArgs),
    /// Run the gateway: a reverse proxy that checks tokens and scopes and follows
    /// revocations live.
    Gateway(gateway::GatewayArgs),
    /// A one-command tour: server, upstream and gateway on loopback, and the whole flow.
    Demo,
    /// Measure grants and introspections per second against a real server on loopback.
    Bench(bench::BenchArgs),
    /// Copy the SQLite database while the server runs (`--to FILE`, created 0600).
    Backup(ops::BackupArgs),
    /// Local administration with the server's own files (break-glass).
    #[command(subcommand)]
    Admin(ops::LocalAdmin),
    #[command(flatten)]
    Remote(admin::AdminCommand),
}

/// The server and the gateway allocate a few dozen small, short-lived blocks per
/// request (headers, bodies, futures); mimalloc serves them in about two fifths of the
/// instructions glibc's allocator takes, for more memory held per thread
/// (docs/BENCHMARKS.md, "The allocator, and smaller request futures").
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    // Every HTTP client of the binary (admin commands, the demo, the gateway) speaks
    // TLS through rustls on aws-lc-rs; reqwest brings no provider of its own.
    latchkey_verify::install_crypto_provider();
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("error: starting the runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async move {
        match cli.command {
            Command::Serve(args) => serve::run(args).await,
            Command::Gateway(args) => gateway::run(args).await,
            Command::Demo => demo::run().await,
            Command::Bench(args) => bench::run(args).await,
            Command::Backup(args) => ops::backup(args).await,
            Command::Admin(command) => ops::admin(command).await,
            Command::Remote(command) => admin::run(command).await,
        }
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::FAILURE
        }
    }
}
