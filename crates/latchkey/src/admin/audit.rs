//! `latchkey audit list|verify|export`: read the audit trail, and verify it.
//!
//! `verify` checks the hash chain here, on the operator's side, against what the server
//! says its head is; asks the server for its verdict on the MACs, whose key only the
//! server holds; and, with `--expect-head`, checks that the chain still reaches a head
//! the operator saved earlier, which is what catches a deleted tail (README.md, Audit).
//! Any failure of the three exits 1, whether the report is text or `--json`.

use super::Format;
use super::client::Client;
use super::output::{emit, items, table, text};
use anyhow::{Context, bail};
use clap::{Args, Subcommand, ValueEnum};
use latchkey_core::audit::{AuditRecord, Break, ChainLink, ChainVerifier, hex, unhex};
use serde_json::{Value, json};

const CHAIN_PAGE: u32 = 5_000;

#[derive(Debug, Subcommand)]
pub enum AuditCommand {
    /// List events, newest first.
    List(ListArgs),
    /// Walk the hash chain, have the server check the MACs, and report the first
    /// broken or missing link; exits 1 if there is one.
    Verify(VerifyArgs),
    /// Print the whole chain in order.
    Export {
        /// Output format.
        #[arg(long, value_enum, default_value = "jsonl")]
        format: ExportFormat,
    },
}

#[derive(Debug, Args)]
pub struct VerifyArgs {
    /// Also fail unless the chain still reaches this head, saved earlier from `audit
    /// verify` or `GET /v1/audit/head`: the event at SEQ must exist with exactly this
    /// HASH (64 hex digits). Catches a deleted tail, which nothing else can.
    #[arg(long, value_name = "SEQ:HASH", value_parser = ExpectedHead::parse)]
    expect_head: Option<ExpectedHead>,
}

/// A head the chain must still reach.
#[derive(Debug, Clone)]
pub struct ExpectedHead {
    seq: i64,
    /// Lower-case hex, as the server shows hashes.
    hash: String,
}

impl ExpectedHead {
    fn parse(text: &str) -> Result<Self, String> {
        let (seq, hash) = text
            .split_once(':')
            .ok_or("must be SEQ:HASH, a sequence number and a hash joined by a colon")?;
        // Digits only: `parse` alone would take "+1".
        let seq = Some(seq)
            .filter(|seq| seq.bytes().all(|b| b.is_ascii_digit()))
            .and_then(|seq| seq.parse::<i64>().ok())
            .filter(|seq| *seq >= 1)
            .ok_or("SEQ must be a whole number, 1 or more")?;
        if hash.len() != 64 || unhex(hash).is_none() {
            return Err("HASH must be 64 hex digits (a SHA-256)".to_owned());
        }
        Ok(Self {
            seq,
            hash: hash.to_ascii_lowercase(),
        })
    }
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
        AuditCommand::Verify(args) => verify(client, format, args.expect_head).await,
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
    let record: AuditRecord = serde_json::from_str(line).context("a chain line is not a record")?;
    ChainLink::from_record(record).context("a chain line's hash or MAC is not hex")
}

/// The stored head's seq and hash.
async fn head(client: &Client) -> anyhow::Result<(i64, String)> {
    let head = client.get(&["v1", "audit", "head"]).await?;
    Ok((
        head["seq"].as_i64().context("the head has no seq")?,
        head["hash"]
            .as_str()
            .context("the head has no hash")?
            .to_owned(),
    ))
}

/// What the walk over the export found.
struct Walk {
    /// How many events the export holds.
    events: i64,
    /// The stored head read before the walk: seq and hash (hex).
    head: (i64, String),
    /// The first broken link, judged on hashes alone.
    broken: Option<Break>,
    /// The hash (hex) of the event at the expected head's seq, if the export has one.
    at_expected: Option<String>,
}

/// Walks the exported chain and checks its hash links against the stored head.
async fn walk(client: &Client, expected_seq: Option<i64>) -> anyhow::Result<Walk> {
    let (head_seq, head_hash) = head(client).await?;
    let mut links = ChainVerifier::links(
        head_seq,
        unhex(&head_hash).context("the head's hash is not hex")?,
    );
    let mut events = 0i64;
    let mut at_expected = None;
    let mut after = 0;
    loop {
        let page = chain_page(client, after).await?;
        if page.is_empty() {
            break;
        }
        for line in page.lines() {
            let link = link(line)?;
            if expected_seq == Some(link.seq) {
                at_expected = Some(hex(&link.hash));
            }
            links.check(&link);
            events += 1;
        }
        after = last_seq(&page)?;
    }
    let (head_seq_after, _) = head(client).await?;
    Ok(Walk {
        events,
        head: (head_seq, head_hash),
        broken: links.finish(head_seq_after).first_broken,
        at_expected,
    })
}

async fn verify(
    client: &Client,
    format: Format,
    expected: Option<ExpectedHead>,
) -> anyhow::Result<()> {
    let walk = walk(client, expected.as_ref().map(|e| e.seq)).await?;
    let server = client.get(&["v1", "audit", "verify"]).await?;
    let server_broken: Option<Break> = serde_json::from_value(server["first_broken"].clone())
        .context("the server's verdict is not one this command reads")?;
    let server_intact = server["intact"].as_bool() == Some(true) && server_broken.is_none();
    let reached = expected
        .as_ref()
        .map(|e| walk.at_expected.as_deref() == Some(e.hash.as_str()));
    let first_broken = [walk.broken, server_broken]
        .into_iter()
        .flatten()
        .min_by_key(|b| b.seq);
    let intact = walk.broken.is_none() && server_intact && reached != Some(false);
    let report = json!({
        "events": walk.events,
        "head_seq": walk.head.0,
        "head_hash": walk.head.1,
        "intact": intact,
        "first_broken_seq": first_broken.map(|b| b.seq),
        "first_broken": first_broken,
        "links": { "intact": walk.broken.is_none(), "first_broken": walk.broken },
        "server": server,
        "expected_head": expected.as_ref().map(|e| json!({
            "seq": e.seq, "hash": e.hash, "reached": reached, "found_hash": walk.at_expected,
        })),
    });
    emit(format, &report, |_| {
        let mut lines = vec![links_line(&walk)];
        lines.push(match server_broken {
            Some(broken) => format!(
                "server verification failed at seq {}: {}",
                broken.seq,
                broken.reason.describe()
            ),
            None if server_intact => format!(
                "server verification: {} events, MACs valid; {} legacy events without a MAC",
                text(&server["checked"]),
                text(&server["legacy"])
            ),
            None => "server verification failed".to_owned(),
        });
        if let Some(expected) = &expected {
            lines.push(expected_line(expected, &walk));
        }
        lines.join("\n")
    });
    if let Some(broken) = first_broken {
        bail!("the audit chain is broken at seq {}", broken.seq);
    }
    if !server_intact {
        bail!("the server did not find the audit chain intact");
    }
    if let (Some(expected), Some(false)) = (&expected, reached) {
        bail!(
            "the audit chain no longer reaches the expected head at seq {}",
            expected.seq
        );
    }
    Ok(())
}

fn links_line(walk: &Walk) -> String {
    match walk.broken {
        Some(broken) => format!(
            "audit chain broken: first bad or missing event is seq {}: {}",
            broken.seq,
            broken.reason.describe()
        ),
        None => format!(
            "audit chain intact: {} events, head {} {}",
            walk.events, walk.head.0, walk.head.1
        ),
    }
}

fn expected_line(expected: &ExpectedHead, walk: &Walk) -> String {
    match &walk.at_expected {
        Some(found) if *found == expected.hash => {
            format!("expected head {} {} reached", expected.seq, expected.hash)
        }
        Some(found) => format!(
            "expected head not reached: the event at seq {} has hash {found}, not {}",
            expected.seq, expected.hash
        ),
        None => format!(
            "expected head not reached: there is no event at seq {} (the chain has {} events)",
            expected.seq, walk.events
        ),
    }
}
