//! Local operator commands, run on the server's machine with its files
//! (docs/OPERATIONS.md): `latchkey backup` and `latchkey admin recover`. They talk to
//! the database directly, not to a running server.

use anyhow::Context;
use clap::{Args, Subcommand};
use latchkey_server::Config;
use std::path::PathBuf;

/// Where the server's files are: its configuration file and the flags that override it.
#[derive(Debug, Args)]
pub struct ServerFiles {
    /// The server's TOML configuration file.
    #[arg(long, env = "LATCHKEY_CONFIG")]
    config: Option<PathBuf>,
    /// The server's data directory [default: ./latchkey-data].
    #[arg(long, env = "LATCHKEY_DATA_DIR")]
    data_dir: Option<PathBuf>,
    /// sqlite://… or postgres://… [default: SQLite in the data directory].
    #[arg(long, env = "LATCHKEY_DATABASE_URL")]
    database_url: Option<String>,
}

impl ServerFiles {
    fn config(&self) -> anyhow::Result<Config> {
        let mut config = match &self.config {
            Some(path) => crate::serve::read_config(path)?,
            None => Config::default(),
        };
        if let Some(dir) = &self.data_dir {
            config.data_dir = dir.clone();
        }
        if self.database_url.is_some() {
            config.database_url = self.database_url.clone();
        }
        Ok(config)
    }
}

#[derive(Debug, Args)]
pub struct BackupArgs {
    /// The new file to write the copy to (created 0600; never overwritten).
    #[arg(long)]
    to: PathBuf,
    #[command(flatten)]
    files: ServerFiles,
}

/// `latchkey backup --to FILE`: a consistent copy of the SQLite database, taken while
/// the server runs.
pub async fn backup(args: BackupArgs) -> anyhow::Result<()> {
    let config = args.files.config()?;
    let bytes = latchkey_store::backup_sqlite(&config.database_url(), &args.to).await?;
    eprintln!(
        "backed up the database to {} ({bytes} bytes). The copy is useless without the \
         pepper and master key: keep them, separately (docs/OPERATIONS.md, \"Backups\").",
        args.to.display()
    );
    Ok(())
}

#[derive(Debug, Subcommand)]
pub enum LocalAdmin {
    /// Break-glass: create a new root key (latchkey:admin) from the server's own files,
    /// when every admin key is lost or revoked. Audited; the key is printed once.
    Recover(ServerFiles),
}

pub async fn admin(command: LocalAdmin) -> anyhow::Result<()> {
    match command {
        LocalAdmin::Recover(files) => {
            let config = files.config()?;
            let key = latchkey_server::recover(&config)
                .await
                .context("recovering a root key")?;
            println!("{}", key.expose());
            eprintln!(
                "A new root key holding latchkey:admin was created and audited (actor {}). \
                 It is not shown again; revoke the ones you lost.",
                latchkey_server::RECOVER_ACTOR
            );
            Ok(())
        }
    }
}
