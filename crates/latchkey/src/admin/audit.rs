//! `latchkey audit list|verify|export`: read the audit trail, and check its hash chain
//! here, on the operator's side, against what the server says its head is.

use super::Format;
use super::client::Client;
use super::output::{emit, items, table, text};
use anyhow::{Context, bail};
use clap::{Args, Subcommand, ValueEnum};
use latchkey_core::audit::{AuditContext, AuditEvent, ChainLink, GENESIS_HASH, first_broken_link};
use serde_json::Value;

const CHAIN_PAGE: u32 = 5_000;

#[derive(Debug, Subcommand)]
pub enum AuditCommand {
    /// List events, newest first.
    List(ListArgs),
    /// Walk the hash chain and report the first broken or missing link.
    Verify,
    /// Print the whole chain in order.
    Export {
        /// Output format.
        #[arg(long, value_enum, default_value = "jsonl")]
        format: ExportFormat,
    },
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum ExportFormat {
    /// One JSON object per line, with `prev_hash` and `hash`.
    Jsonl,
}

#[derive(Debug, Args)]
pub struct ListArgs {
    /// Only this tenant's events.
    #[arg(long)]
    tenant: Option<String>,
    /// Only events about this token (`--token` is the credential).
    #[arg(long)]
    token_id: Option<String>,
    /// Only this actor's events.
    #[arg(long)]
    actor: Option<String>,
    /// Only this action (e.g. token.created).
    #[arg(long)]
    action: Option<String>,
    /// At or after this instant (RFC 3339).
    #[arg(long)]
    since: Option<String>,
    /// Before this instant (RFC 3339).
    #[arg(long)]
    until: Option<String>,
    /// At most this many events.
    #[arg(long, default_value_t = 50)]
    limit: u32,
}

pub async fn run(client: &Client, format: Format, command: AuditCommand) -> anyhow::Result<()> {
    match command {
        AuditCommand::List(args) => {
            let mut query = vec![("limit", args.limit.min(200).to_string())];
            for (key, value) in [
                ("tenant_id", args.tenant),
                ("token_id", args.token_id),
                ("actor", args.actor),
                ("action", args.action),
                ("since", args.since),
                ("until", args.until),
            ] {
                if let Some(value) = value {
                    query.push((key, value));
                }
            }
            let page = client.get_query(&["v1", "audit"], &query).await?;
            emit(format, &page, |page| {
                let rows = items(page)
                    .iter()
                    .map(|event| {
                        ["seq", "at", "action", "actor", "tenant_id", "target", "ip"]
                            .iter()
                            .map(|key| text(&event[*key]))
                            .collect()
                    })
                    .collect();
                table(
                    &["SEQ", "AT", "ACTION", "ACTOR", "TENANT", "TARGET", "IP"],
                    rows,
                    "no events",
                )
            });
            Ok(())
        }
        AuditCommand::Export {
            format: ExportFormat::Jsonl,
        } => {
            let mut after = 0;
            loop {
                let page = chain_page(client, after).await?;
                if page.is_empty() {
                    return Ok(());
                }
                for line in page.lines() {
                    println!("{line}");
                }
                after = last_seq(&page)?;
            }
        }
        AuditCommand::Verify => verify(client, format).await,
    }
}

async fn chain_page(client: &Client, after: i64) -> anyhow::Result<String> {
    client
        .get_text(
            &["v1", "audit", "chain"],
            &[
                ("after", after.to_string()),
                ("limit", CHAIN_PAGE.to_string()),
            ],
        )
        .await
}

fn last_seq(page: &str) -> anyhow::Result<i64> {
    let last = page.lines().last().context("an empty page")?;
    let value: Value = serde_json::from_str(last).context("a chain line is not JSON")?;
    value["seq"].as_i64().context("a chain line has no seq")
}

fn link(line: &str) -> anyhow::Result<ChainLink> {
    let value: Value = serde_json::from_str(line).context("a chain line is not JSON")?;
    let context: AuditContext =
        serde_json::from_value(value.clone()).context("a chain line's context")?;
    let event: AuditEvent =
        serde_json::from_value(value.clone()).context("a chain line's event")?;
    let unhex = |field: &str| -> anyhow::Result<Vec<u8>> {
        let hex = value[field]
            .as_str()
            .with_context(|| format!("no {field}"))?;
        (0..hex.len())
            .step_by(2)
            .map(|i| {
                hex.get(i..i + 2)
                    .and_then(|pair| u8::from_str_radix(pair, 16).ok())
                    .with_context(|| format!("{field} is not hex"))
            })
            .collect()
    };
    Ok((
        value["seq"].as_i64().context("no seq")?,
        context,
        event,
        unhex("prev_hash")?,
        unhex("hash")?,
    ))
}

async fn verify(client: &Client, format: Format) -> anyhow::Result<()> {
    let head = client.get(&["v1", "audit", "head"]).await?;
    let head_seq = head["seq"].as_i64().context("the head has no seq")?;
    let mut links = Vec::new();
    let mut after = 0;
    loop {
        let page = chain_page(client, after).await?;
        if page.is_empty() {
            break;
        }
        for line in page.lines() {
            links.push(link(line)?);
        }
        after = last_seq(&page)?;
    }
    let count = links.len();
    let last_hash = links
        .last()
        .map(|l| l.4.clone())
        .unwrap_or_else(|| GENESIS_HASH.to_vec());
    let broken = first_broken_link(GENESIS_HASH.to_vec(), 1, links).or_else(|| {
        // Every stored event links up; events missing at the end show against the head.
        let stored = i64::try_from(count).unwrap_or(i64::MAX);
        (stored < head_seq).then_some(stored + 1)
    });
    let head_hash = head["hash"].as_str().unwrap_or("");
    let last_hex: String = last_hash.iter().map(|b| format!("{b:02x}")).collect();
    let report = serde_json::json!({
        "events": count,
        "head_seq": head_seq,
        "head_hash": head_hash,
        "intact": broken.is_none() && (count == 0 || last_hex == head_hash),
        "first_broken_seq": broken,
    });
    emit(format, &report, |_| match broken {
        None => format!("audit chain intact: {count} events, head {head_seq} {head_hash}\n"),
        Some(seq) => format!("audit chain broken: first bad or missing event is seq {seq}\n"),
    });
    if let Some(seq) = broken {
        bail!("the audit chain is broken at seq {seq}");
    }
    Ok(())
}
