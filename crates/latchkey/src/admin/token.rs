//! `latchkey token …`: create, list, show, rename, revoke and roll tenant and personal
//! tokens.
//!
//! Secrets: the create and roll responses are the only ones that carry a secret, and
//! `create` and `roll` are the only commands that print one, once, labelled and with a
//! warning. Everything else shows at most the server's `secret_hint`.
//!
//! `show` answers the five Ws of a token on one screen: WHO created it (its
//! `token.created` audit event), WHEN, WHAT it grants, WHERE it was used from and HOW
//! (its usage by address and by route over the last `--days`). Fetching and printing are
//! apart: [`show_text`] only formats what was fetched.

use super::Format;
use super::client::{Client, printable};
use super::output::{emit, emit_read, fields, items, paragraph, table, text, thousands};
use anyhow::bail;
use clap::{Args, Subcommand, ValueEnum};
use latchkey_core::token::{AuthMethod, Owner, TokenKind};
use latchkey_core::{Timestamp, UserId};
use latchkey_wire::{CreateToken, CreatedToken, Page, RenameToken, RollToken, TokenResource};
use reqwest::Method;
use serde_json::{Value, json};

/// The longest usage window the server answers, in days.
const MAX_DAYS: i64 = 31;

/// How many addresses or routes `show` names before counting the rest.
const LISTED: usize = 10;

/// The longest user agent `show` prints; `--json` has all of it.
const MAX_AGENT: usize = 80;

#[derive(Debug, Subcommand)]
pub enum TokenCommand {
    /// Create a tenant token, or a personal token with --user; prints its secret once.
    Create(CreateArgs),
    /// List a tenant's tokens, or one user's personal tokens with --user.
    List {
        /// The tenant id.
        #[arg(long)]
        tenant: String,
        /// List this user's personal tokens instead of the tenant's.
        #[arg(long)]
        user: Option<String>,
    },
    /// Show who created a token, when, what it grants, and where from and how it is used.
    Show {
        /// The token id.
        id: String,
        /// Count usage over this many days up to now (the server keeps at most 31).
        #[arg(long, default_value_t = 30, value_parser = clap::value_parser!(u32).range(1..=MAX_DAYS))]
        days: u32,
    },
    /// Change a token's display name, the only thing about it that can change.
    Rename {
        /// The token id.
        id: String,
        /// The new name.
        name: String,
    },
    /// Revoke a token; it stops authenticating at once.
    Revoke {
        /// The token id.
        id: String,
    },
    /// Roll a token: make a successor with the same grant and print its secret once; the
    /// old token keeps working for the grace window, then is revoked.
    Roll {
        /// The token id.
        id: String,
        /// How long the old token keeps working: 30s, 15m, 2h, 1d (at most 30d; 0s
        /// revokes it at once).
        #[arg(long, default_value = "1d", value_parser = duration_seconds)]
        grace: u32,
        /// When the successor stops working, RFC 3339; the old token's expiry otherwise.
        #[arg(long, value_name = "RFC3339")]
        expires_at: Option<String>,
        /// The successor's public key, a JWK JSON file: required to roll a
        /// private_key_jwt client, refused for any other token.
        #[arg(long, value_name = "FILE")]
        public_key: Option<std::path::PathBuf>,
    },
}

/// A duration such as `30s`, `15m`, `2h` or `1d` (a grace window, a lifetime), in
/// seconds. The server checks the range (docs/API.md, "Rolling a token", "Tenant
/// policies").
pub(super) fn duration_seconds(text: &str) -> Result<u32, String> {
    let unit_at = text.len().saturating_sub(1);
    let (count, unit) = text.split_at(unit_at);
    let scale = match unit {
        "s" => 1,
        "m" => 60,
        "h" => 3_600,
        "d" => 86_400,
        _ => return Err("must be a number followed by s, m, h or d, e.g. 1d".to_owned()),
    };
    count
        .parse::<u32>()
        .ok()
        .and_then(|count| count.checked_mul(scale))
        .ok_or_else(|| format!("{count:?} is not a whole number of {unit} that fits"))
}

#[derive(Debug, Args)]
pub struct CreateArgs {
    /// The tenant the token belongs to.
    #[arg(long)]
    tenant: String,
    /// Make a personal token of this member; it can hold only what the user holds.
    #[arg(long)]
    user: Option<String>,
    /// Display name, e.g. "ci deploy".
    #[arg(long)]
    name: String,
    /// How the token is presented.
    #[arg(long)]
    kind: Kind,
    /// A role whose permissions the token carries (tenant tokens; repeatable).
    #[arg(long = "role", value_name = "ROLE")]
    roles: Vec<String>,
    /// A permission granted directly (repeatable).
    #[arg(long = "permission", value_name = "PERMISSION")]
    permissions: Vec<String>,
    /// When the token stops working, RFC 3339 (e.g. 2027-01-01T00:00:00Z).
    #[arg(long, value_name = "RFC3339")]
    expires_at: Option<String>,
    /// Lifetime of the access tokens it is exchanged for, in seconds.
    #[arg(long, value_name = "SECONDS")]
    ttl: Option<u32>,
    /// A client network it may be used from, e.g. 203.0.113.0/24 (repeatable).
    #[arg(long = "allow", value_name = "CIDR")]
    ip_allowlist: Vec<String>,
    /// The user who stands behind a tenant token; it may hold only what they hold.
    #[arg(long, value_name = "USER")]
    created_by: Option<String>,
    /// Also issue rotating refresh tokens on exchange (client_credentials only).
    #[arg(long)]
    refresh_tokens: bool,
    /// A public key, a JWK JSON file (Ed25519, P-256 or RSA ≥ 2048 bits), instead of a
    /// secret: the client authenticates with private_key_jwt (client_credentials only).
    #[arg(long, value_name = "FILE")]
    public_key: Option<std::path::PathBuf>,
}

/// Reads a public JWK from `path`. A key with private members is refused here, before
/// anything is sent: the private key stays on this machine.
fn read_public_key(path: &std::path::Path) -> anyhow::Result<serde_json::Map<String, Value>> {
    let text = std::fs::read(path)
        .map_err(|e| anyhow::anyhow!("cannot read the public key {}: {e}", path.display()))?;
    let Ok(Value::Object(jwk)) = serde_json::from_slice::<Value>(&text) else {
        bail!("{} is not a JWK (a JSON object)", path.display());
    };
    if latchkey_verify::assertion::PRIVATE_JWK_MEMBERS
        .iter()
        .any(|member| jwk.contains_key(*member))
    {
        bail!(
            "{} holds a private key; pass the public key only (without `d` and the other \
             private members)",
            path.display()
        );
    }
    Ok(jwk)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
#[value(rename_all = "snake_case")]
enum Kind {
    /// A client id and secret, exchanged at /oauth/token for short-lived JWTs.
    ClientCredentials,
    /// One opaque key, sent as a bearer token.
    ApiKey,
    /// One long-lived signed JWT.
    Jwt,
}

impl From<Kind> for TokenKind {
    fn from(kind: Kind) -> Self {
        match kind {
            Kind::ClientCredentials => Self::ClientCredentials,
            Kind::ApiKey => Self::ApiKey,
            Kind::Jwt => Self::Jwt,
        }
    }
}

impl CreateArgs {
    /// The path and body of the create request; refuses flags a personal token cannot
    /// take before anything is sent. `roles` and `created_by` are left out of personal
    /// tokens.
    fn request(&self) -> anyhow::Result<(Vec<&str>, CreateToken)> {
        let mut path = vec!["v1", "tenants", self.tenant.as_str()];
        let personal = match &self.user {
            Some(user) => {
                if !self.roles.is_empty() {
                    bail!(
                        "--role cannot be used with --user: a personal token holds no roles, \
                         only --permission entries its owner holds"
                    );
                }
                if self.created_by.is_some() {
                    bail!(
                        "--created-by cannot be used with --user: the owner of a personal \
                         token is its creator"
                    );
                }
                path.extend(["users", user.as_str()]);
                true
            }
            None => false,
        };
        path.push("tokens");
        let body = CreateToken {
            name: self.name.clone(),
            kind: self.kind.into(),
            roles: (!personal).then(|| self.roles.clone()),
            permissions: self.permissions.clone(),
            expires_at: self.expires_at.clone(),
            access_token_ttl_seconds: self.ttl,
            ip_allowlist: self.ip_allowlist.clone(),
            created_by: self.created_by.clone(),
            refresh_tokens: self.refresh_tokens,
            public_key: self
                .public_key
                .as_deref()
                .map(read_public_key)
                .transpose()?,
        };
        Ok((path, body))
    }
}

pub async fn run(client: &Client, format: Format, command: TokenCommand) -> anyhow::Result<()> {
    match command {
        TokenCommand::Create(args) => {
            let (path, body) = args.request()?;
            let created = client.send(Method::POST, &path, &body).await?;
            emit_read(format, &created, created_text)?;
        }
        TokenCommand::List { tenant, user } => {
            let mut path = vec!["v1", "tenants", tenant.as_str()];
            if let Some(user) = &user {
                path.extend(["users", user.as_str()]);
            }
            path.push("tokens");
            let list = client.list_all(&path).await?;
            emit_read(format, &list, list_text)?;
        }
        TokenCommand::Show { id, days } => {
            let report = show(client, &id, days).await?;
            emit(format, &report, |report| show_text(report, days));
        }
        TokenCommand::Rename { id, name } => {
            let token = client
                .send(Method::PATCH, &["v1", "tokens", &id], &RenameToken { name })
                .await?;
            emit_read(format, &token, |t: &TokenResource| {
                format!("renamed token {} to {:?}", t.id, printable(t.name.as_str()))
            })?;
        }
        TokenCommand::Revoke { id } => {
            client.delete(&["v1", "tokens", &id]).await?;
            // 204: there is no response to print with --json.
            if format == Format::Text {
                println!("revoked token {id}");
            }
        }
        TokenCommand::Roll {
            id,
            grace,
            expires_at,
            public_key,
        } => {
            let body = RollToken {
                grace_seconds: Some(grace),
                expires_at,
                public_key: public_key.as_deref().map(read_public_key).transpose()?,
            };
            let rolled = client
                .send(Method::POST, &["v1", "tokens", &id, "roll"], &body)
                .await?;
            emit_read(format, &rolled, |created: &CreatedToken| {
                format!(
                    "rolled token {id}: it is revoked after {grace} s of grace, or at its expiry \
                     if sooner\n{}",
                    created_text(created)
                )
            })?;
        }
    }
    Ok(())
}

/// Who owns a token, in words: `tenant acme` or `user u_42 in tenant acme`.
fn owner_words(tenant: &str, user: Option<&str>) -> String {
    match user {
        Some(user) => format!("user {user} in tenant {tenant}"),
        None => format!("tenant {tenant}"),
    }
}

fn owner(owner: &Owner) -> String {
    owner_words(
        owner.tenant_id().as_str(),
        owner.user_id().map(UserId::as_str),
    )
}

/// An instant as text, `-` when there is none.
fn instant(at: Option<Timestamp>) -> String {
    at.map_or_else(|| "-".to_owned(), Timestamp::to_rfc3339)
}

fn created_text(created: &CreatedToken) -> String {
    let token = &created.token;
    let summary = format!(
        "created {} token {} ({:?}) for {}",
        token.kind.as_str(),
        token.id,
        printable(token.name.as_str()),
        owner(&token.owner)
    );
    let client_id = created.client_id.map(|id| id.to_string());
    let secrets: Vec<(&str, String)> = [
        ("client_id", client_id.as_deref()),
        ("client_secret", created.client_secret.as_deref()),
        ("api_key", created.api_key.as_deref()),
        ("jwt", created.jwt.as_deref()),
    ]
    .into_iter()
    .filter_map(|(key, value)| value.map(|value| (key, printable(value))))
    .collect();
    if token.auth_method == Some(AuthMethod::PrivateKeyJwt) {
        return format!(
            "{summary}\n\n{}\n\nThe client authenticates with private_key_jwt: no secret, \
             assertions signed with the private key of this public key.",
            fields(&[
                ("client_id", client_id.clone().unwrap_or_default()),
                (
                    "public_key_thumbprint",
                    token.public_key_thumbprint.clone().unwrap_or_default(),
                ),
            ])
        );
    }
    if secrets.iter().all(|(key, _)| *key == "client_id") {
        return format!("{summary}\nwarning: the server returned no secret for this token");
    }
    format!(
        "{summary}\n\n{}\n\nStore the secret now: it is shown only this once and cannot be \
         retrieved again.",
        fields(&secrets)
    )
}

fn list_text(list: &Page<TokenResource>) -> String {
    let rows = list
        .items
        .iter()
        .map(|t| {
            vec![
                t.id.to_string(),
                t.kind.as_str().to_owned(),
                printable(t.name.as_str()),
                owner(&t.owner),
                instant(t.expires_at),
                instant(t.revoked_at),
            ]
        })
        .collect();
    table(
        &["ID", "KIND", "NAME", "OWNER", "EXPIRES", "REVOKED"],
        rows,
        "no tokens",
    )
}

/// Everything `show` prints: `{"token", "created", "usage": {"since", "until", "by_ip",
/// "by_route"}}`, where `created` is the `token.created` audit event, or null when the
/// credential may not read it or there is none.
async fn show(client: &Client, id: &str, days: u32) -> anyhow::Result<Value> {
    // First alone, so that an unknown token fails with the token's own 404.
    let token = client.get(&["v1", "tokens", id]).await?;
    let window = window(now(), days);
    let creation = [
        ("token_id", id.to_owned()),
        ("action", "token.created".to_owned()),
        ("limit", "1".to_owned()),
    ];
    let (created, by_ip, by_route, by_country) = tokio::try_join!(
        client.get_query_if_allowed(&["v1", "audit"], &creation),
        usage(client, id, &window, "ip"),
        usage(client, id, &window, "route"),
        usage(client, id, &window, "country"),
    )?;
    let created = created
        .and_then(|page| items(&page).first().cloned())
        .unwrap_or(Value::Null);
    Ok(json!({
        "token": token,
        "created": created,
        "usage": {
            "since": by_ip["since"],
            "until": by_ip["until"],
            "by_ip": totals(&by_ip),
            "by_route": totals(&by_route),
            "by_country": totals(&by_country),
        },
    }))
}

/// Now, by this machine's clock, to the second.
fn now() -> Timestamp {
    Timestamp::from_millis(
        time::OffsetDateTime::now_utc()
            .unix_timestamp()
            .saturating_mul(1000),
    )
}

/// `since` and `until` of the last `days` days before `now`. Both are sent: with only
/// `since`, the server would measure the window to its own clock, and a client clock a
/// little behind it would make a 31-day window too long. A skew only shifts the window.
fn window(now: Timestamp, days: u32) -> [(&'static str, String); 2] {
    let since = now.plus_seconds(-i64::from(days) * 86_400);
    [("since", since.to_rfc3339()), ("until", now.to_rfc3339())]
}

/// `GET /v1/tokens/{id}/usage` over `window`, grouped by `group_by`.
async fn usage(
    client: &Client,
    id: &str,
    window: &[(&'static str, String); 2],
    group_by: &str,
) -> anyhow::Result<Value> {
    let mut query = window.to_vec();
    query.push(("group_by", group_by.to_owned()));
    client
        .get_query(&["v1", "tokens", id, "usage"], &query)
        .await
}

/// A usage answer's groups as `[{"key", "count"}]`, most used first, then by key.
fn totals(usage: &Value) -> Vec<Value> {
    let mut totals: Vec<(&Value, u64)> = usage["groups"]
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or_default()
        .iter()
        .map(|group| (&group["key"], group["total"].as_u64().unwrap_or(0)))
        .collect();
    totals.sort_by(|(a_key, a), (b_key, b)| {
        b.cmp(a).then_with(|| a_key.as_str().cmp(&b_key.as_str()))
    });
    totals
        .into_iter()
        .map(|(key, count)| json!({ "key": key, "count": count }))
        .collect()
}

/// The five Ws of the report `show` fetched, each a paragraph under its heading.
fn show_text(report: &Value, days: u32) -> String {
    let token = &report["token"];
    let usage = &report["usage"];
    let sections = [
        ("WHO", who(token, &report["created"])),
        ("WHEN", when(token)),
        ("WHAT", what(token)),
        ("WHERE", {
            let used = used(
                "last used from",
                &token["last_used_ip"],
                &usage["by_ip"],
                days,
            );
            match countries(&usage["by_country"]) {
                Some(countries) => clauses(vec![used, countries], ";"),
                None => used,
            }
        }),
        (
            "HOW",
            used(
                "last used",
                &token["last_used_at"],
                &usage["by_route"],
                days,
            ),
        ),
    ];
    let mut text = paragraph("token", 6, &header(token));
    text.push('\n');
    for (heading, words) in sections {
        text.push('\n');
        text.push_str(&paragraph(heading, 7, &words));
    }
    text
}

/// `by country: DE (1,204), US (3)` when the server knows any country of the token's
/// uses (it has a GeoIP database); `None` otherwise.
fn countries(totals: &Value) -> Option<Vec<String>> {
    let totals = totals.as_array().map(Vec::as_slice).unwrap_or_default();
    if totals.iter().all(|total| total["key"] == "unknown") {
        return None;
    }
    let mut words = clause("by country:".to_owned());
    words.extend(counted(totals));
    Some(words)
}

/// `key (count), …` of the first [`LISTED`] totals, and how many more there are.
fn counted(totals: &[Value]) -> Vec<String> {
    let mut listed: Vec<Vec<String>> = totals
        .iter()
        .take(LISTED)
        .map(|total| {
            let count = total["count"]
                .as_u64()
                .map_or_else(|| text(&total["count"]), thousands);
            clause(format!("{} ({count})", text(&total["key"])))
        })
        .collect();
    if totals.len() > LISTED {
        listed.push(clause(format!("and {} more", totals.len() - LISTED)));
    }
    clauses(listed, ",")
}

/// One clause, kept on one line.
fn clause(text: String) -> Vec<String> {
    vec![text]
}

/// `<label> a, b, c`, or `<label> <absent>` for an empty list; a line may break between
/// items.
fn listing(label: &str, list: &Value, absent: &str) -> Vec<String> {
    let list = list.as_array().map(Vec::as_slice).unwrap_or_default();
    if list.is_empty() {
        return clause(format!("{label} {absent}"));
    }
    let items = list
        .iter()
        .enumerate()
        .map(|(i, item)| match i {
            0 => clause(format!("{label} {}", text(item))),
            _ => clause(text(item)),
        })
        .collect();
    clauses(items, ",")
}

/// The clauses' words in order, `separator` closing every clause but the last.
fn clauses(clauses: Vec<Vec<String>>, separator: &str) -> Vec<String> {
    let last = clauses.len().saturating_sub(1);
    clauses
        .into_iter()
        .enumerate()
        .flat_map(|(i, mut words)| {
            if i < last
                && let Some(word) = words.last_mut()
            {
                word.push_str(separator);
            }
            words
        })
        .collect()
}

/// `value` as text, or `absent` when the server sent null or `""`.
fn or(value: &Value, absent: &str) -> String {
    match value {
        Value::Null => absent.to_owned(),
        Value::String(s) if s.is_empty() => absent.to_owned(),
        other => text(other),
    }
}

/// `token <id> "<name>" (<kind>), <owner>, secret <hint>`.
fn header(token: &Value) -> Vec<String> {
    let mut parts = vec![
        clause(format!(
            "{} {:?} ({})",
            text(&token["id"]),
            text(&token["name"]),
            text(&token["kind"])
        )),
        clause(owner_words(
            &text(&token["owner"]["tenant_id"]),
            token["owner"]["user_id"]
                .as_str()
                .map(|_| text(&token["owner"]["user_id"]))
                .as_deref(),
        )),
    ];
    if !token["secret_hint"].is_null() {
        parts.push(clause(format!("secret {}", text(&token["secret_hint"]))));
    }
    clauses(parts, ",")
}

/// The credential, user, address and agent of the creation event.
fn who(token: &Value, created: &Value) -> Vec<String> {
    if created.is_null() {
        let mut parts = vec![clause(
            "created by an unknown credential (no creation event)".to_owned(),
        )];
        if !token["created_by"].is_null() {
            parts.push(clause(format!("user {}", text(&token["created_by"]))));
        }
        return clauses(parts, " ·");
    }
    let by = match created["actor"].as_str() {
        Some("system") => "the server itself".to_owned(),
        _ => format!("credential {}", or(&created["actor"], "unknown")),
    };
    let mut parts = vec![clause(format!("created by {by}"))];
    if !created["actor_user"].is_null() {
        parts.push(clause(format!("user {}", text(&created["actor_user"]))));
    }
    parts.push(clause(format!(
        "from {}",
        or(&created["ip"], "an unknown address")
    )));
    let agent = or(&created["user_agent"], "unknown");
    let mut shown: String = agent.chars().take(MAX_AGENT).collect();
    if shown.len() < agent.len() {
        shown.push('…');
    }
    parts.push(clause(format!("agent {shown}")));
    clauses(parts, " ·")
}

fn when(token: &Value) -> Vec<String> {
    let mut when = vec![
        clause(format!("created {}", text(&token["created_at"]))),
        clause(format!("expires {}", or(&token["expires_at"], "never"))),
        clause(format!("revoked {}", or(&token["revoked_at"], "no"))),
    ];
    // A roll's links, only on tokens that have them (docs/API.md, "Rolling a token").
    if !token["rolled_from"].is_null() {
        when.push(clause(format!(
            "rolled from {}",
            text(&token["rolled_from"])
        )));
    }
    if !token["rolled_to"].is_null() {
        when.push(clause(format!(
            "rolled to {}, revokes at {}",
            text(&token["rolled_to"]),
            text(&token["revokes_at"])
        )));
    }
    clauses(when, " ·")
}

/// What the token grants; exchange settings only where it is exchanged.
fn what(token: &Value) -> Vec<String> {
    let mut parts = Vec::new();
    // A personal token holds no roles, ever.
    if token["owner"]["user_id"].is_null() {
        parts.push(listing("roles", &token["roles"], "none"));
    }
    parts.push(listing("permissions", &token["permissions"], "none"));
    parts.push(listing("allowlist", &token["ip_allowlist"], "any address"));
    if token["kind"] == TokenKind::ClientCredentials.as_str() {
        parts.push(clause(format!(
            "access tokens {} s",
            text(&token["access_token_ttl_seconds"])
        )));
        let refresh = if token["refresh_tokens"] == true {
            "yes"
        } else {
            "no"
        };
        parts.push(clause(format!("refresh tokens {refresh}")));
        if token["auth_method"] == AuthMethod::PrivateKeyJwt.as_str() {
            parts.push(clause(format!(
                "private_key_jwt with key {}",
                text(&token["public_key_thumbprint"])
            )));
        }
    }
    clauses(parts, " ·")
}

/// `<lead> <last>; in the last N days: <key> (<count>), …, and N more`, or `never used`.
fn used(lead: &str, last: &Value, totals: &Value, days: u32) -> Vec<String> {
    let totals = totals.as_array().map(Vec::as_slice).unwrap_or_default();
    if last.is_null() && totals.is_empty() {
        return clause("never used".to_owned());
    }
    let period = match days {
        1 => "in the last day".to_owned(),
        days => format!("in the last {days} days"),
    };
    let recent = if totals.is_empty() {
        clause(format!("no use {period}"))
    } else {
        let mut words = clause(format!("{period}:"));
        words.extend(counted(totals));
        words
    };
    clauses(
        vec![clause(format!("{lead} {}", or(last, "unknown"))), recent],
        ";",
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::admin::output::WIDTH;
    use clap::Parser;

    #[derive(Debug, Parser)]
    struct Cli {
        #[command(subcommand)]
        command: TokenCommand,
    }

    #[test]
    fn a_grace_window_reads_seconds_minutes_hours_and_days() {
        assert_eq!(duration_seconds("30s"), Ok(30));
        assert_eq!(duration_seconds("15m"), Ok(900));
        assert_eq!(duration_seconds("2h"), Ok(7_200));
        assert_eq!(duration_seconds("1d"), Ok(86_400));
        assert_eq!(duration_seconds("0s"), Ok(0));
        for bad in ["", "d", "1", "1w", "-1d", "1.5h", "99999999999d"] {
            assert!(duration_seconds(bad).is_err(), "{bad}");
        }
        let cli = Cli::try_parse_from(["token", "roll", "t1"]).unwrap();
        assert!(matches!(
            cli.command,
            TokenCommand::Roll { grace: 86_400, .. }
        ));
    }

    fn create(args: &[&str]) -> CreateArgs {
        let argv = ["token", "create", "--tenant", "acme", "--name", "n"];
        match Cli::parse_from(argv.iter().chain(args)).command {
            TokenCommand::Create(args) => args,
            other => panic!("parsed {other:?}"),
        }
    }

    #[test]
    fn a_personal_token_goes_to_the_user_path_without_roles_or_created_by() {
        let args = create(&["--user", "u_42", "--kind", "api_key", "--permission", "p:r"]);
        let (path, body) = args.request().unwrap();
        assert_eq!(path, ["v1", "tenants", "acme", "users", "u_42", "tokens"]);
        let body = serde_json::to_value(&body).unwrap();
        assert_eq!(
            body,
            serde_json::json!({"name": "n", "kind": "api_key", "permissions": ["p:r"],
                "ip_allowlist": [], "refresh_tokens": false})
        );
        let refused = create(&["--user", "u", "--kind", "jwt", "--role", "viewer"]);
        assert!(
            refused
                .request()
                .unwrap_err()
                .to_string()
                .contains("--role")
        );
        let refused = create(&["--user", "u", "--kind", "jwt", "--created-by", "u"]);
        assert!(
            refused
                .request()
                .unwrap_err()
                .to_string()
                .contains("--created-by")
        );
    }

    /// A tenant token created by the CLI for u_42 and used from two addresses.
    fn used_report() -> Value {
        json!({
            "token": {
                "id": "7f3c0a1e-2b4d-4c6e-8f00-123456789abc",
                "kind": "client_credentials",
                "name": "ci deploy",
                "owner": {"type": "tenant", "tenant_id": "acme"},
                "roles": ["viewer"],
                "permissions": ["reports:read"],
                "created_by": "u_42",
                "created_at": "2026-11-29T03:00:00Z",
                "expires_at": null,
                "revoked_at": null,
                "last_used_at": "2026-11-29T03:10:00Z",
                "last_used_ip": "203.0.113.9",
                "ip_allowlist": ["203.0.113.0/24"],
                "access_token_ttl_seconds": 900,
                "refresh_tokens": false,
                "secret_hint": "lk_sk_…k9Qz",
            },
            "created": {
                "seq": 9,
                "at": "2026-11-29T03:00:00Z",
                "action": "token.created",
                "actor": "b55f9849-b477-4e0f-9926-1ee499e7d1c3",
                "actor_user": "u_42",
                "tenant_id": "acme",
                "target": "7f3c0a1e-2b4d-4c6e-8f00-123456789abc",
                "ip": "203.0.113.9",
                "user_agent": "latchkey-cli/0.1.0",
                "details": {},
            },
            "usage": {
                "since": "2026-10-30T03:20:00Z",
                "until": "2026-11-29T03:20:00Z",
                "by_ip": [
                    {"key": "203.0.113.9", "count": 1204},
                    {"key": "198.51.100.7", "count": 3},
                ],
                "by_route": [
                    {"key": "/reports", "count": 1100},
                    {"key": "/jobs", "count": 107},
                ],
            },
        })
    }

    #[test]
    fn show_answers_the_five_ws_of_a_used_token() {
        assert_eq!(
            show_text(&used_report(), 30),
            "\
token 7f3c0a1e-2b4d-4c6e-8f00-123456789abc \"ci deploy\" (client_credentials), tenant acme,
      secret lk_sk_…k9Qz

WHO    created by credential b55f9849-b477-4e0f-9926-1ee499e7d1c3 · user u_42 · from 203.0.113.9 ·
       agent latchkey-cli/0.1.0
WHEN   created 2026-11-29T03:00:00Z · expires never · revoked no
WHAT   roles viewer · permissions reports:read · allowlist 203.0.113.0/24 · access tokens 900 s ·
       refresh tokens no
WHERE  last used from 203.0.113.9; in the last 30 days: 203.0.113.9 (1,204), 198.51.100.7 (3)
HOW    last used 2026-11-29T03:10:00Z; in the last 30 days: /reports (1,100), /jobs (107)"
        );
    }

    #[test]
    fn show_says_unknown_and_never_for_a_token_without_creation_event_or_use() {
        let report = json!({
            "token": {
                "id": "0a1b2c3d-0000-4000-8000-000000000001",
                "kind": "api_key",
                "name": "laptop",
                "owner": {"type": "user", "tenant_id": "acme", "user_id": "u_42"},
                "roles": [],
                "permissions": [],
                "created_by": "u_42",
                "created_at": "2026-11-29T03:00:00Z",
                "expires_at": "2027-01-01T00:00:00Z",
                "revoked_at": "2026-12-01T00:00:00Z",
                "last_used_at": null,
                "last_used_ip": null,
                "ip_allowlist": [],
                "access_token_ttl_seconds": 900,
                "refresh_tokens": false,
                "secret_hint": "lk_ak_…Ab12",
            },
            "created": null,
            "usage": {
                "since": "2026-11-28T03:20:00Z",
                "until": "2026-11-29T03:20:00Z",
                "by_ip": [],
                "by_route": [],
            },
        });
        assert_eq!(
            show_text(&report, 1),
            "\
token 0a1b2c3d-0000-4000-8000-000000000001 \"laptop\" (api_key), user u_42 in tenant acme,
      secret lk_ak_…Ab12

WHO    created by an unknown credential (no creation event) · user u_42
WHEN   created 2026-11-29T03:00:00Z · expires 2027-01-01T00:00:00Z · revoked 2026-12-01T00:00:00Z
WHAT   permissions none · allowlist any address
WHERE  never used
HOW    never used"
        );
    }

    #[test]
    fn show_lists_the_ten_most_used_and_counts_the_rest_within_the_width() {
        let groups: Vec<Value> = (1..=12)
            .map(|n| json!({"key": format!("2001:db8::{n:x}"), "total": n % 4 + 1, "series": []}))
            .collect();
        let by_ip = totals(&json!({ "groups": groups }));
        let keys: Vec<&str> = by_ip.iter().map(|t| t["key"].as_str().unwrap()).collect();
        // Most used first; equal counts by address.
        assert_eq!(
            keys[..4],
            ["2001:db8::3", "2001:db8::7", "2001:db8::b", "2001:db8::2"]
        );
        assert_eq!(by_ip[0], json!({"key": "2001:db8::3", "count": 4}));

        let mut report = used_report();
        report["usage"]["by_ip"] = Value::Array(by_ip);
        let shown = show_text(&report, 30);
        let where_: String = shown
            .lines()
            .skip_while(|line| !line.starts_with("WHERE"))
            .take_while(|line| !line.starts_with("HOW"))
            .collect::<Vec<_>>()
            .join(" ");
        assert!(
            where_.contains("in the last 30 days: 2001:db8::3 (4), 2001:db8::7 (4),"),
            "{shown}"
        );
        assert!(
            where_.ends_with("2001:db8::9 (2), 2001:db8::4 (1), and 2 more"),
            "{shown}"
        );
        assert!(
            shown.lines().all(|line| line.chars().count() <= WIDTH),
            "{shown}"
        );
    }

    #[test]
    fn where_names_the_countries_the_server_knows_and_nothing_without_a_database() {
        let mut report = used_report();
        report["usage"]["by_country"] =
            json!([{"key": "DE", "count": 1204}, {"key": "unknown", "count": 3}]);
        let words = show_text(&report, 30)
            .split_whitespace()
            .collect::<Vec<_>>()
            .join(" ");
        assert!(
            words.contains("(3); by country: DE (1,204), unknown (3) HOW"),
            "{words}"
        );
        report["usage"]["by_country"] = json!([{"key": "unknown", "count": 3}]);
        assert!(!show_text(&report, 30).contains("by country"));
    }
}
