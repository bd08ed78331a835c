//! Admin commands: thin HTTP clients of the management API.

use clap::Subcommand;

#[derive(Debug, Subcommand)]
pub enum AdminCommand {}

pub async fn run(command: AdminCommand) -> anyhow::Result<()> {
    match command {}
}
