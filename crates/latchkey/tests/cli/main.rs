//! End-to-end tests of the admin commands. Each test starts the real `latchkey serve` on
//! a free port with a fresh data directory, then runs the binary as an operator would,
//! checking exit status, output, and the server's state afterwards. Servers are few and
//! each test runs a whole flow, since every start costs time.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod deployments;
mod operations;
mod readme;
mod tour;

use serde_json::{Value, json};
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};
use tempfile::TempDir;
use time::format_description::well_known::Rfc3339;
use time::{Duration as Span, OffsetDateTime};

const BIN: &str = env!("CARGO_BIN_EXE_latchkey");

/// Variables of the binary that a developer's shell might set and that would change what
/// the tests run against.
const LATCHKEY_VARS: [&str; 13] = [
    "LATCHKEY_LISTEN",
    "LATCHKEY_DATA_DIR",
    "LATCHKEY_PUBLIC_URL",
    "LATCHKEY_DATABASE_URL",
    "LATCHKEY_CONFIG",
    "LATCHKEY_ROOT_KEY_FILE",
    "LATCHKEY_TRUSTED_PROXIES",
    "LATCHKEY_TLS_CERT_FILE",
    "LATCHKEY_TLS_KEY_FILE",
    "LATCHKEY_SERVER",
    "LATCHKEY_TOKEN",
    "LATCHKEY_LOG_FORMAT",
    "LATCHKEY_METRICS_ENABLED",
];

/// `latchkey ARGS` with no standard input and none of [`LATCHKEY_VARS`].
fn command(args: &[&str]) -> Command {
    let mut command = Command::new(BIN);
    command.args(args).stdin(Stdio::null());
    for var in LATCHKEY_VARS {
        command.env_remove(var);
    }
    command
}

/// A running `latchkey serve`, killed when dropped.
struct Server {
    child: Child,
    url: String,
    root_key: String,
    _data: TempDir,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Server {
    /// Starts a server and waits for its root key and address on stderr.
    fn start() -> Self {
        Self::start_with(&[])
    }

    /// [`start`](Self::start) with more arguments for `latchkey serve`.
    fn start_with(extra: &[&std::ffi::OsStr]) -> Self {
        let data = tempfile::tempdir().unwrap();
        let mut command = command(&["serve", "--listen", "127.0.0.1:0", "--data-dir"]);
        command
            .arg(data.path().join("data"))
            .args(extra)
            .env("RUST_LOG", "info")
            .env("NO_COLOR", "1")
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        let mut server = Server {
            child: command.spawn().unwrap(),
            url: String::new(),
            root_key: String::new(),
            _data: data,
        };
        let stderr = server.child.stderr.take().unwrap();
        let (lines, received) = mpsc::channel();
        // Keeps draining stderr after start-up so that the server never blocks on a full pipe.
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                let _ = lines.send(line);
            }
        });
        let deadline = Instant::now() + Duration::from_secs(60);
        let mut seen = Vec::new();
        while server.root_key.is_empty() || server.url.is_empty() {
            let wait = deadline.saturating_duration_since(Instant::now());
            let line = received.recv_timeout(wait).unwrap_or_else(|error| {
                panic!(
                    "server did not start ({error}); stderr:\n{}",
                    seen.join("\n")
                )
            });
            if let Some((_, key)) = line.split_once("root key: ") {
                server.root_key = key.trim().to_owned();
            }
            for scheme in ["http", "https"] {
                if let Some((_, rest)) = line.split_once(&format!("listening on {scheme}://")) {
                    let address: String = rest
                        .chars()
                        .take_while(|c| !c.is_whitespace() && !c.is_control())
                        .collect();
                    server.url = format!("{scheme}://{address}");
                }
            }
            seen.push(line);
        }
        server
    }

    /// Runs `latchkey ARGS` against this server with the root key.
    fn run(&self, args: &[&str]) -> Run {
        latchkey(&self.url, Some(&self.root_key), args)
    }

    /// Runs `latchkey ARGS --json`, expects success and parses what it printed.
    fn json(&self, args: &[&str]) -> Value {
        let args: Vec<&str> = args.iter().copied().chain(["--json"]).collect();
        let stdout = self.run(&args).ok();
        serde_json::from_str(&stdout).unwrap_or_else(|error| {
            panic!("`{}` printed no JSON ({error}):\n{stdout}", args.join(" "))
        })
    }

    /// The catalogue, tenant and member most tests start from: `reports:read` and
    /// `reports:write`, role `viewer` (read only), tenant `acme`, member `u_42` (viewer).
    fn with_acme(self) -> Self {
        self.run(&[
            "permission",
            "put",
            "reports:read",
            "--description",
            "Read reports",
        ])
        .ok();
        self.run(&["permission", "put", "reports:write"]).ok();
        self.run(&["role", "put", "viewer", "--permission", "reports:read"])
            .ok();
        self.run(&["tenant", "create", "acme", "--name", "Acme Inc."])
            .ok();
        self.run(&["member", "put", "acme", "u_42", "--role", "viewer"])
            .ok();
        self
    }

    /// Creates acme's "ci deploy" client (role viewer, created by u_42, allowed from
    /// 203.0.113.0/24) with `extra` flags; answers what `token create` printed.
    fn create_ci_deploy(&self, extra: &[&str]) -> String {
        let mut args = vec![
            "token",
            "create",
            "--tenant",
            "acme",
            "--name",
            "ci deploy",
            "--kind",
            "client_credentials",
            "--role",
            "viewer",
            "--created-by",
            "u_42",
            "--allow",
            "203.0.113.0/24",
        ];
        args.extend(extra);
        self.run(&args).ok()
    }

    /// Creates a system api key holding `latchkey:introspect`, as a gateway uses.
    fn gateway_key(&self) -> Value {
        self.json(&[
            "token",
            "create",
            "--tenant",
            "latchkey",
            "--name",
            "gateway",
            "--kind",
            "api_key",
            "--permission",
            "latchkey:introspect",
        ])
    }
}

/// One finished run of the binary.
struct Run {
    command: String,
    status: ExitStatus,
    stdout: String,
    stderr: String,
}

impl Run {
    /// Expects success and no complaint; answers stdout.
    fn ok(self) -> String {
        assert!(
            self.status.success() && self.stderr.is_empty(),
            "`{}` failed ({}):\nstdout: {}\nstderr: {}",
            self.command,
            self.status,
            self.stdout,
            self.stderr
        );
        self.stdout
    }

    /// Expects failure, nothing on stdout and exactly one error line; answers that line.
    fn fails(self) -> String {
        assert!(
            !self.status.success(),
            "`{}` succeeded:\n{}",
            self.command,
            self.stdout
        );
        assert_eq!(self.stdout, "", "`{}` printed to stdout", self.command);
        assert_eq!(
            self.stderr.matches("error:").count(),
            1,
            "`{}` should print one error:\n{}",
            self.command,
            self.stderr
        );
        self.stderr.trim_end().to_owned()
    }
}

fn latchkey(server: &str, token: Option<&str>, args: &[&str]) -> Run {
    let mut command = command(args);
    command.env("LATCHKEY_SERVER", server);
    if let Some(token) = token {
        command.env("LATCHKEY_TOKEN", token);
    }
    let output = command.output().unwrap();
    Run {
        command: format!("latchkey {}", args.join(" ")),
        status: output.status,
        stdout: String::from_utf8(output.stdout).unwrap(),
        stderr: String::from_utf8(output.stderr).unwrap(),
    }
}

fn items(list: &Value) -> &Vec<Value> {
    list["items"].as_array().unwrap()
}

/// The value after `label:` on the line that starts with it.
fn labelled<'a>(text: &'a str, label: &str) -> &'a str {
    let prefix = format!("{label}:");
    text.lines()
        .find_map(|line| line.strip_prefix(&prefix))
        .unwrap_or_else(|| panic!("no `{prefix}` line in:\n{text}"))
        .trim()
}

/// The paragraph under `heading` (WHO, WHEN, …) in `token show` output, its wrapped
/// lines joined again.
fn section(shown: &str, heading: &str) -> String {
    let mut lines = shown
        .lines()
        .skip_while(|line| !line.starts_with(&format!("{heading} ")));
    let first = lines
        .next()
        .unwrap_or_else(|| panic!("no {heading} section in:\n{shown}"));
    std::iter::once(first[heading.len()..].trim())
        .chain(
            lines
                .take_while(|line| line.starts_with("       "))
                .map(str::trim),
        )
        .collect::<Vec<_>>()
        .join(" ")
}

/// Runs `future` to completion, for the few requests a test sends without the CLI.
fn block_on<F: std::future::Future>(future: F) -> F::Output {
    // reqwest has no TLS provider of its own in this workspace (README.md, "Following
    // an https issuer").
    latchkey_verify::install_crypto_provider();
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(future)
}

#[test]
fn tenant_role_member_and_token_commands_round_trip() {
    let server = Server::start();

    let saved = server
        .run(&[
            "permission",
            "put",
            "reports:read",
            "--description",
            "Read reports",
        ])
        .ok();
    assert_eq!(saved, "saved permission reports:read\n");
    server.run(&["permission", "put", "reports:write"]).ok();
    let permissions = server.json(&["permission", "list"]);
    let read = items(&permissions)
        .iter()
        .find(|p| p["name"] == "reports:read")
        .unwrap();
    assert_eq!(read["description"], "Read reports");
    assert_eq!(read["builtin"], false);
    let listed = server.run(&["permission", "list"]).ok();
    assert!(listed.starts_with("NAME"), "{listed}");
    assert!(listed.contains("latchkey:admin"), "{listed}");
    assert!(listed.contains("Read reports"), "{listed}");

    let saved = server
        .run(&[
            "role",
            "put",
            "viewer",
            "--permission",
            "reports:read",
            "--description",
            "Read-only",
        ])
        .ok();
    assert_eq!(saved, "saved role viewer with permissions: reports:read\n");
    let roles = server.json(&["role", "list"]);
    assert_eq!(items(&roles)[0]["name"], "viewer");
    assert_eq!(
        items(&roles)[0]["permissions"],
        serde_json::json!(["reports:read"])
    );
    assert_eq!(items(&roles)[0]["description"], "Read-only");
    assert!(server.run(&["role", "list"]).ok().contains("Read-only"));

    let created = server
        .run(&["tenant", "create", "acme", "--name", "Acme Inc."])
        .ok();
    assert_eq!(created, "created tenant acme (Acme Inc.)\n");
    let listed = server.run(&["tenant", "list"]).ok();
    assert!(listed.contains("Acme Inc."), "{listed}");
    assert!(listed.contains("latchkey"), "{listed}");

    let member = server
        .run(&["member", "put", "acme", "u_42", "--role", "viewer"])
        .ok();
    assert_eq!(
        member,
        "user u_42 in tenant acme: roles viewer; permissions reports:read\n"
    );
    let members = server.json(&["member", "list", "acme"]);
    assert_eq!(
        members,
        serde_json::json!({
            "items": [{
                "tenant_id": "acme",
                "user_id": "u_42",
                "roles": ["viewer"],
                "permissions": ["reports:read"],
            }],
            "next_cursor": null,
        })
    );
    let listed = server.run(&["member", "list", "acme"]).ok();
    assert_eq!(
        listed,
        "USER  ROLES   PERMISSIONS\nu_42  viewer  reports:read\n"
    );

    let created = server.json(&[
        "token",
        "create",
        "--tenant",
        "acme",
        "--user",
        "u_42",
        "--name",
        "laptop",
        "--kind",
        "api_key",
        "--permission",
        "reports:read",
    ]);
    let token = &created["token"];
    let id = token["id"].as_str().unwrap();
    assert_eq!(token["owner"]["user_id"], "u_42");
    assert_eq!(token["permissions"], serde_json::json!(["reports:read"]));
    let listed = server
        .run(&["token", "list", "--tenant", "acme", "--user", "u_42"])
        .ok();
    assert!(listed.contains(id), "{listed}");
    assert!(listed.contains("user u_42 in tenant acme"), "{listed}");
    let tenant_tokens = server.json(&["token", "list", "--tenant", "acme"]);
    assert!(
        items(&tenant_tokens).is_empty(),
        "personal tokens are not the tenant's"
    );

    let renamed = server.run(&["token", "rename", id, "work laptop"]).ok();
    assert_eq!(renamed, format!("renamed token {id} to \"work laptop\"\n"));
    assert_eq!(
        server.json(&["token", "show", id])["token"]["name"],
        "work laptop"
    );

    // Removing the member revokes their personal tokens.
    let removed = server.run(&["member", "remove", "acme", "u_42"]).ok();
    assert!(
        removed.starts_with("removed user u_42 from tenant acme"),
        "{removed}"
    );
    assert!(server.json(&["token", "show", id])["token"]["revoked_at"].is_string());
    let members = server.json(&["member", "list", "acme"]);
    assert_eq!(
        members,
        serde_json::json!({"items": [], "next_cursor": null})
    );
    let listed = server.run(&["member", "list", "acme"]).ok();
    assert_eq!(listed, "no members in tenant acme\n");
    let again = server.run(&["member", "remove", "acme", "u_42"]).fails();
    assert_eq!(
        again,
        "error: user u_42 in tenant acme not found (404 not-found)"
    );

    // More tenants than fit in one page (the server's default is 50): list follows the
    // cursor to the end.
    for n in 0..50 {
        server.run(&["tenant", "create", &format!("t{n:02}")]).ok();
    }
    let tenants = server.json(&["tenant", "list"]);
    assert_eq!(items(&tenants).len(), 52);
    assert_eq!(tenants["next_cursor"], Value::Null);
    let listed = server.run(&["tenant", "list"]).ok();
    assert_eq!(
        listed.lines().count(),
        53,
        "a header and 52 rows:\n{listed}"
    );
    assert!(listed.contains("t49"), "{listed}");
}

#[test]
fn token_create_prints_the_secret_once_and_list_never_does() {
    let server = Server::start().with_acme();

    let created = server.create_ci_deploy(&[
        "--ttl",
        "600",
        "--refresh-tokens",
        "--expires-at",
        "2099-01-01T00:00:00Z",
    ]);
    let id = labelled(&created, "client_id").to_owned();
    let secret = labelled(&created, "client_secret").to_owned();
    assert!(secret.starts_with("lk_sk_"), "{created}");
    assert_eq!(created.matches(&secret).count(), 1, "{created}");
    assert!(created.contains("shown only this once"), "{created}");

    let shown = server.json(&["token", "show", &id]);
    let token = &shown["token"];
    assert_eq!(token["kind"], "client_credentials");
    assert_eq!(token["name"], "ci deploy");
    assert_eq!(token["roles"], serde_json::json!(["viewer"]));
    assert_eq!(token["created_by"], "u_42");
    assert_eq!(token["access_token_ttl_seconds"], 600);
    assert_eq!(token["ip_allowlist"], serde_json::json!(["203.0.113.0/24"]));
    assert_eq!(token["refresh_tokens"], true);
    assert!(
        token["expires_at"]
            .as_str()
            .unwrap()
            .starts_with("2099-01-01T00:00:00")
    );
    let hint = token["secret_hint"].as_str().unwrap();
    assert!(hint.ends_with(&secret[secret.len() - 4..]), "{hint}");

    let created = server
        .run(&[
            "token",
            "create",
            "--tenant",
            "acme",
            "--name",
            "reporting",
            "--kind",
            "api_key",
            "--permission",
            "reports:read",
        ])
        .ok();
    let api_key = labelled(&created, "api_key").to_owned();
    assert!(api_key.starts_with("lk_ak_"), "{created}");
    assert!(created.contains("shown only this once"), "{created}");

    // With --json the create response is printed as the server sent it, secret included.
    let created = server.json(&[
        "token", "create", "--tenant", "acme", "--name", "scripted", "--kind", "api_key",
    ]);
    let scripted_key = created["api_key"].as_str().unwrap().to_owned();
    assert!(scripted_key.starts_with("lk_ak_"));
    assert_eq!(created["token"]["name"], "scripted");

    let outputs = [
        server.run(&["token", "list", "--tenant", "acme"]).ok(),
        server
            .run(&["token", "list", "--tenant", "acme", "--json"])
            .ok(),
        server.run(&["token", "show", &id]).ok(),
        server.run(&["token", "show", &id, "--json"]).ok(),
    ];
    for output in &outputs {
        for secret in [&secret, &api_key, &scripted_key] {
            assert!(
                !output.contains(secret.as_str()),
                "a secret leaked:\n{output}"
            );
        }
    }
    assert!(outputs[0].contains(&id) && outputs[0].contains("ci deploy"));
    assert_eq!(items(&serde_json::from_str(&outputs[1]).unwrap()).len(), 3);
    assert!(
        outputs[2].contains(hint),
        "show gives the hint:\n{}",
        outputs[2]
    );
}

#[test]
fn a_refused_request_prints_the_problem_detail_and_fails() {
    let server = Server::start().with_acme();
    let personal_tokens = || {
        let list = server.json(&["token", "list", "--tenant", "acme", "--user", "u_42"]);
        items(&list).len()
    };

    let refused = server
        .run(&[
            "token",
            "create",
            "--tenant",
            "acme",
            "--user",
            "u_42",
            "--name",
            "x",
            "--kind",
            "api_key",
            "--permission",
            "reports:write",
        ])
        .fails();
    assert_eq!(
        refused,
        "error: user u_42 does not hold reports:write in tenant acme (403 permission-not-held)"
    );
    assert_eq!(personal_tokens(), 0);

    let refused = server
        .run(&[
            "token", "create", "--tenant", "acme", "--user", "u_42", "--name", "x", "--kind",
            "api_key", "--role", "viewer",
        ])
        .fails();
    assert!(
        refused.starts_with("error: --role cannot be used with --user"),
        "{refused}"
    );
    assert_eq!(personal_tokens(), 0);

    let refused = server.run(&["tenant", "create", "acme"]).fails();
    assert_eq!(
        refused,
        "error: tenant acme already exists (409 already-exists)"
    );
    let tenants = server.json(&["tenant", "list"]);
    let acme: Vec<_> = items(&tenants)
        .iter()
        .filter(|t| t["id"] == "acme")
        .collect();
    assert_eq!(acme.len(), 1);
    assert_eq!(
        acme[0]["name"], "Acme Inc.",
        "the first tenant is untouched"
    );

    let refused = latchkey(&server.url, Some("lk_ak_not-a-key"), &["tenant", "list"]).fails();
    assert!(refused.ends_with("(401 invalid-token)"), "{refused}");
    let refused = latchkey(&server.url, None, &["tenant", "list"]).fails();
    assert!(refused.contains("LATCHKEY_TOKEN"), "{refused}");

    // A port nothing listens on: the message names the server that could not be reached.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let nowhere = format!("http://{}", closed.local_addr().unwrap());
    drop(closed);
    let refused = latchkey(&nowhere, Some(&server.root_key), &["tenant", "list"]).fails();
    assert!(
        refused.starts_with(&format!(
            "error: cannot connect to the latchkey server at {nowhere}"
        )),
        "{refused}"
    );
}

#[test]
fn revoke_then_show_reports_revoked_at() {
    let server = Server::start().with_acme();
    let created = server.json(&[
        "token", "create", "--tenant", "acme", "--name", "deploy", "--kind", "api_key",
    ]);
    let id = created["token"]["id"].as_str().unwrap().to_owned();
    let shown = server.run(&["token", "show", &id]).ok();
    assert!(
        section(&shown, "WHEN").ends_with(" · revoked no"),
        "{shown}"
    );

    let revoked = server.run(&["token", "revoke", &id]).ok();
    assert_eq!(revoked, format!("revoked token {id}\n"));

    let shown = server.json(&["token", "show", &id]);
    let revoked_at = shown["token"]["revoked_at"].as_str().unwrap();
    let shown = server.run(&["token", "show", &id]).ok();
    assert!(
        section(&shown, "WHEN").ends_with(&format!(" · revoked {revoked_at}")),
        "{shown}"
    );
    let listed = server.run(&["token", "list", "--tenant", "acme"]).ok();
    let row = listed.lines().find(|line| line.contains(&id)).unwrap();
    assert!(row.ends_with(revoked_at), "{listed}");

    // With --json a 204 has nothing to print.
    let unknown = "00000000-0000-4000-8000-000000000000";
    let refused = server.run(&["token", "revoke", unknown, "--json"]).fails();
    assert_eq!(
        refused,
        format!("error: token {unknown} not found (404 not-found)")
    );
    let other = server.json(&[
        "token", "create", "--tenant", "acme", "--name", "other", "--kind", "api_key",
    ]);
    let other_id = other["token"]["id"].as_str().unwrap();
    assert_eq!(
        server.run(&["token", "revoke", other_id, "--json"]).ok(),
        ""
    );
    assert!(server.json(&["token", "show", other_id])["token"]["revoked_at"].is_string());
}

#[test]
fn token_roll_prints_the_successors_secret_once_and_json_prints_the_raw_body() {
    let server = Server::start().with_acme();
    let created = server.create_ci_deploy(&[]);
    let id = labelled(&created, "client_id").to_owned();
    let old_secret = labelled(&created, "client_secret").to_owned();

    let rolled = server.run(&["token", "roll", &id, "--grace", "2h"]).ok();
    assert!(
        rolled.starts_with(&format!("rolled token {id}: ")),
        "{rolled}"
    );
    assert!(rolled.contains("7200 s"), "{rolled}");
    let new_id = labelled(&rolled, "client_id").to_owned();
    let secret = labelled(&rolled, "client_secret").to_owned();
    assert!(
        secret.starts_with("lk_sk_") && secret != old_secret,
        "{rolled}"
    );
    assert_eq!(rolled.matches(&secret).count(), 1, "{rolled}");
    assert!(rolled.contains("shown only this once"), "{rolled}");
    let old = server.json(&["token", "show", &id]);
    assert_eq!(old["token"]["rolled_to"], new_id.as_str());
    let shown = server.run(&["token", "show", &id]).ok();
    let revokes_at = old["token"]["revokes_at"].as_str().unwrap();
    assert!(
        section(&shown, "WHEN")
            .ends_with(&format!(" · rolled to {new_id}, revokes at {revokes_at}")),
        "{shown}"
    );
    let new = server.json(&["token", "show", &new_id]);
    assert_eq!(new["token"]["rolled_from"], id.as_str());
    assert_eq!(new["token"]["name"], "ci deploy");

    let again = server.run(&["token", "roll", &id]).fails();
    assert!(again.ends_with("(409 already-rolled)"), "{again}");
    let bad = server
        .run(&["token", "roll", &new_id, "--grace", "1w"])
        .fails();
    assert!(bad.contains("--grace"), "{bad}");

    let raw = server.json(&[
        "token",
        "roll",
        &new_id,
        "--grace",
        "0s",
        "--expires-at",
        "2099-01-01T00:00:00Z",
    ]);
    assert!(raw["client_secret"].as_str().unwrap().starts_with("lk_sk_"));
    assert_eq!(raw["token"]["rolled_from"], new_id.as_str());
    assert!(
        raw["token"]["expires_at"]
            .as_str()
            .unwrap()
            .starts_with("2099-01-01T00:00:00")
    );
    let revoked = server.json(&["token", "show", &new_id]);
    assert_eq!(revoked["token"]["revoked_reason"], "rolled");
}

/// Sends `batch` to `POST /v1/usage` as a gateway holding `credential` would.
fn report_usage(server: &Server, credential: &str, batch: &Value) {
    let url = format!("{}/v1/usage", server.url);
    let status = block_on(async {
        reqwest::Client::new()
            .post(&url)
            .bearer_auth(credential)
            .json(batch)
            .send()
            .await
            .unwrap()
            .status()
    });
    assert_eq!(status, 202, "usage batch refused");
}

#[test]
fn token_show_answers_who_when_what_where_and_how() {
    let server = Server::start().with_acme();
    let created = server.create_ci_deploy(&[]);
    let id = labelled(&created, "client_id").to_owned();
    let secret = labelled(&created, "client_secret").to_owned();
    let system_tokens = server.json(&["token", "list", "--tenant", "latchkey"]);
    let root = items(&system_tokens)
        .iter()
        .find(|t| t["name"] == "root")
        .unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();

    let shown = server.run(&["token", "show", &id]).ok();
    assert_eq!(section(&shown, "WHERE"), "never used", "{shown}");
    assert_eq!(section(&shown, "HOW"), "never used", "{shown}");

    // A gateway reports a minute of use an hour ago: two addresses, two routes.
    let gateway = server.gateway_key();
    let hour_ago = (OffsetDateTime::now_utc() - Span::hours(1)).unix_timestamp();
    let minute = OffsetDateTime::from_unix_timestamp(hour_ago.div_euclid(60) * 60).unwrap();
    let at = |seconds: i64| (minute + Span::seconds(seconds)).format(&Rfc3339).unwrap();
    let entry = |route: &str, method: &str, ip: &str, count: i64, seconds: i64| {
        json!({ "token_id": id, "route": route, "method": method, "status_class": "2xx",
                "client_ip": ip, "count": count, "last_used_at": at(seconds) })
    };
    let batch = json!({ "window_start": at(0), "entries": [
        entry("/jobs", "POST", "198.51.100.7", 3, 10),
        entry("/jobs", "POST", "203.0.113.9", 104, 20),
        entry("/reports", "GET", "203.0.113.9", 1100, 50),
    ]});
    report_usage(&server, gateway["api_key"].as_str().unwrap(), &batch);

    let shown = server.run(&["token", "show", &id]).ok();
    let hint = server.json(&["token", "list", "--tenant", "acme"])["items"][0]["secret_hint"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(
        shown.starts_with(&format!(
            "token {id} \"ci deploy\" (client_credentials), tenant acme,"
        )),
        "{shown}"
    );
    assert!(shown.contains(&format!("secret {hint}")), "{shown}");
    assert!(!shown.contains(&secret), "a secret leaked:\n{shown}");
    assert_eq!(
        section(&shown, "WHO"),
        format!(
            "created by credential {root} · user u_42 · from 127.0.0.1 · agent latchkey-cli/{}",
            env!("CARGO_PKG_VERSION")
        ),
        "{shown}"
    );
    let when = section(&shown, "WHEN");
    assert!(
        when.starts_with("created ") && when.ends_with(" · expires never · revoked no"),
        "{shown}"
    );
    assert_eq!(
        section(&shown, "WHAT"),
        "roles viewer · permissions none · allowlist 203.0.113.0/24 · access tokens 900 s · \
         refresh tokens no",
        "{shown}"
    );
    assert_eq!(
        section(&shown, "WHERE"),
        "last used from 203.0.113.9; in the last 30 days: 203.0.113.9 (1,204), 198.51.100.7 (3)",
        "{shown}"
    );
    assert_eq!(
        section(&shown, "HOW"),
        format!(
            "last used {}; in the last 30 days: /reports (1,100), /jobs (107)",
            at(50)
        ),
        "{shown}"
    );
    assert!(
        shown.lines().all(|line| line.chars().count() <= 100),
        "{shown}"
    );

    let report = server.json(&["token", "show", &id, "--days", "7"]);
    let keys = |value: &Value| {
        value
            .as_object()
            .unwrap()
            .keys()
            .cloned()
            .collect::<Vec<_>>()
    };
    assert_eq!(keys(&report), ["created", "token", "usage"]);
    assert_eq!(report["token"]["id"], id.as_str());
    assert_eq!(report["token"]["last_used_ip"], "203.0.113.9");
    let event = &report["created"];
    assert_eq!(event["action"], "token.created");
    assert_eq!(event["target"], id.as_str());
    assert_eq!(event["actor"], root.as_str());
    assert_eq!(event["actor_user"], "u_42");
    assert_eq!(event["ip"], "127.0.0.1");
    let usage = &report["usage"];
    assert_eq!(
        keys(usage),
        ["by_country", "by_ip", "by_route", "since", "until"]
    );
    // This server has no GeoIP database: every use is of an unknown country.
    assert_eq!(
        usage["by_country"],
        json!([{"key": "unknown", "count": 1207}])
    );
    assert_eq!(
        usage["by_ip"],
        json!([{"key": "203.0.113.9", "count": 1204}, {"key": "198.51.100.7", "count": 3}])
    );
    assert_eq!(
        usage["by_route"],
        json!([{"key": "/reports", "count": 1100}, {"key": "/jobs", "count": 107}])
    );
    let instant =
        |field: &str| OffsetDateTime::parse(usage[field].as_str().unwrap(), &Rfc3339).unwrap();
    assert_eq!(instant("until") - instant("since"), Span::days(7));

    // The server answers at most 31 days; the CLI refuses more before sending.
    let refused = server.run(&["token", "show", &id, "--days", "32"]).fails();
    assert!(refused.contains("1..=31"), "{refused}");
    let shown = server.run(&["token", "show", &id, "--days", "31"]).ok();
    assert!(section(&shown, "HOW").contains("in the last 31 days: /reports"));
}

/// The key ids the server publishes, newest first.
fn jwks_kids(server: &Server) -> Vec<String> {
    let url = format!("{}/.well-known/jwks.json", server.url);
    let jwks: Value = block_on(async {
        let response = reqwest::get(&url).await.unwrap();
        assert_eq!(response.status(), 200);
        response.json().await.unwrap()
    });
    jwks["keys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|key| key["kid"].as_str().unwrap().to_owned())
        .collect()
}

#[test]
fn keys_rotate_publishes_a_new_key_and_prints_the_signing_kid() {
    let server = Server::start();
    let before = jwks_kids(&server);

    let rotated = server.run(&["keys", "rotate"]).ok();
    let after = jwks_kids(&server);
    assert_eq!(after.len(), before.len() + 1, "{before:?} -> {after:?}");
    assert!(before.iter().all(|kid| after.contains(kid)), "{after:?}");
    assert!(
        rotated.starts_with("rotated the signing keys\n"),
        "{rotated}"
    );
    // The key announced as next now signs.
    assert_eq!(labelled(&rotated, "current kid"), before[0]);
    assert_eq!(labelled(&rotated, "published kids"), after.join(", "));

    // With --json the server's answer, which agrees with the JWKS.
    let rotated = server.json(&["keys", "rotate"]);
    let published = jwks_kids(&server);
    assert_eq!(rotated["current_kid"], after[0].as_str());
    assert_eq!(rotated["published_kids"], serde_json::json!(published));
    assert_ne!(published[0], after[0], "a new next key is announced");
}

#[test]
fn bench_measures_the_three_runs_against_a_server_it_starts() {
    let results = tempfile::tempdir().unwrap();
    let markdown = results.path().join("BENCHMARKS.md");
    let output = command(&[
        "bench",
        "--duration",
        "1",
        "--connections",
        "2",
        "--warmup",
        "0",
    ])
    .arg("--output")
    .arg(&markdown)
    .output()
    .unwrap();
    let stdout = String::from_utf8(output.stdout).unwrap();
    let stderr = String::from_utf8(output.stderr).unwrap();
    assert!(
        output.status.success(),
        "bench failed ({}):\n{stdout}\n{stderr}",
        output.status
    );
    assert!(stdout.contains("backend: SQLite"), "{stdout}");
    assert!(stdout.contains("command: "), "{stdout}");
    let written = std::fs::read_to_string(&markdown).unwrap();
    for run in [
        "client_credentials grant",
        "introspect access JWT",
        "introspect api key",
    ] {
        let row = stdout
            .lines()
            .find_map(|line| line.strip_prefix(run))
            .unwrap_or_else(|| panic!("no `{run}` row:\n{stdout}"));
        let cells: Vec<&str> = row.split_whitespace().collect();
        let rate: u64 = cells[0].replace(',', "").parse().unwrap();
        assert!(rate > 0, "{run}: {row}");
        assert_eq!(cells[4], "0", "{run} had errors: {row}");
        assert!(written.contains(&format!("| {run} | ")), "{written}");
    }
}

#[test]
fn tenant_policy_set_replaces_the_policy_names_its_breaches_and_show_reads_it() {
    let server = Server::start().with_acme();
    let open = server.json(&[
        "token", "create", "--tenant", "acme", "--name", "open", "--kind", "api_key", "--role",
        "viewer",
    ]);
    let open_id = open["token"]["id"].as_str().unwrap().to_owned();

    let set = server
        .run(&[
            "tenant",
            "policy",
            "set",
            "acme",
            "--max-lifetime",
            "90d",
            "--allowed-kinds",
            "client_credentials,api_key",
            "--revoke-unused-after",
            "60d",
            "--max-access-token-ttl",
            "15m",
        ])
        .ok();
    assert!(set.starts_with("policy of tenant acme (set "), "{set}");
    assert!(set.contains("max lifetime:"), "{set}");
    assert!(set.contains("90d"), "{set}");
    assert!(set.contains("client_credentials, api_key"), "{set}");
    assert!(set.contains("900s"), "{set}");
    assert!(set.contains("1 live token(s) break it"), "{set}");
    assert!(set.contains(&open_id), "{set}");
    assert!(set.contains("max_token_lifetime_days"), "{set}");

    let shown = server.json(&["tenant", "policy", "show", "acme"]);
    assert_eq!(shown["policy"]["max_token_lifetime_days"], 90);
    assert_eq!(shown["policy"]["revoke_unused_after_days"], 60);
    assert_eq!(shown["policy"]["max_access_token_ttl_seconds"], 900);
    assert!(shown.get("violations").is_none());

    // A create that breaks it is refused, naming the type.
    let refused = server
        .run(&[
            "token", "create", "--tenant", "acme", "--name", "jwt", "--kind", "jwt", "--role",
            "viewer",
        ])
        .fails();
    assert!(refused.ends_with("(422 policy-violation)"), "{refused}");

    // Network rules.
    let networks = server.json(&[
        "tenant",
        "policy",
        "set",
        "acme",
        "--allow-network",
        "203.0.113.0/24,2001:db8::/32",
        "--deny-network",
        "203.0.113.128/25",
    ]);
    assert_eq!(
        networks["policy"]["network"],
        serde_json::json!({"allow": ["203.0.113.0/24", "2001:db8::/32"], "deny": ["203.0.113.128/25"],
            "allow_countries": null, "deny_countries": []})
    );
    let text = server.run(&["tenant", "policy", "show", "acme"]).ok();
    assert!(text.contains("203.0.113.0/24, 2001:db8::/32"), "{text}");
    let bad_net = server
        .run(&[
            "tenant",
            "policy",
            "set",
            "acme",
            "--allow-network",
            "10.0.0.1/8",
        ])
        .fails();
    assert!(bad_net.ends_with("(400 invalid-field)"), "{bad_net}");

    // `set` with no rules replaces the policy with an empty one.
    let cleared = server.json(&["tenant", "policy", "set", "acme"]);
    assert_eq!(cleared["policy"]["max_token_lifetime_days"], Value::Null);
    assert_eq!(cleared["violations"]["total"], 0);
    let bad = server
        .run(&["tenant", "policy", "set", "acme", "--max-lifetime", "36h"])
        .fails();
    assert!(bad.contains("whole days"), "{bad}");
    let range = server
        .run(&["tenant", "policy", "set", "acme", "--max-lifetime", "0d"])
        .fails();
    assert!(range.ends_with("(422 invalid-value)"), "{range}");
}

#[test]
fn trust_create_list_show_and_revoke_round_trip() {
    let server = Server::start().with_acme();
    let created = server.json(&[
        "trust",
        "create",
        "acme",
        "--name",
        "deploy from main",
        "--issuer",
        "https://token.actions.githubusercontent.com",
        "--audience",
        "https://latchkey.example.com",
        "--subject",
        "repo:acme/app:ref:refs/heads/main",
        "--claim",
        "repository=acme/app",
        "--claim",
        "workflow=deploy",
        "--role",
        "viewer",
        "--access-token-ttl",
        "10m",
    ]);
    let id = created["id"].as_str().unwrap().to_owned();
    assert_eq!(created["claims"]["repository"], "acme/app");
    assert_eq!(created["access_token_ttl_seconds"], 600);
    assert_eq!(created["replay_protection"], true);

    let shown = server.run(&["trust", "show", &id]).ok();
    assert_eq!(
        labelled(&shown, "subject"),
        "repo:acme/app:ref:refs/heads/main"
    );
    assert_eq!(
        labelled(&shown, "claims"),
        "repository=acme/app, workflow=deploy"
    );
    assert_eq!(labelled(&shown, "roles"), "viewer");
    let listed = server.run(&["trust", "list", "acme"]).ok();
    let row = listed.lines().find(|line| line.contains(&id)).unwrap();
    assert!(row.ends_with("active"), "{listed}");

    assert_eq!(
        server.run(&["trust", "revoke", &id]).ok(),
        format!("revoked trust {id}\n")
    );
    assert!(server.json(&["trust", "show", &id])["revoked_at"].is_string());
    let listed = server.run(&["trust", "list", "acme"]).ok();
    assert!(
        listed
            .lines()
            .any(|l| l.contains(&id) && l.ends_with("revoked"))
    );

    // The server's refusal is printed: plain http beyond loopback, a bad claim flag.
    let refused = server
        .run(&[
            "trust",
            "create",
            "acme",
            "--name",
            "x",
            "--issuer",
            "http://ci.example",
            "--audience",
            "a",
            "--subject",
            "s",
            "--role",
            "viewer",
        ])
        .fails();
    assert!(refused.contains("must be https"), "{refused}");
    let bad = server.run(&[
        "trust",
        "create",
        "acme",
        "--name",
        "x",
        "--issuer",
        "https://ci.example",
        "--audience",
        "a",
        "--subject",
        "s",
        "--claim",
        "novalue",
    ]);
    assert!(!bad.status.success());
    assert_eq!(items(&server.json(&["trust", "list", "acme"])).len(), 1);
}

#[test]
fn a_client_with_a_public_key_is_created_and_rolled_with_key_files() {
    let server = Server::start().with_acme();
    let dir = tempfile::tempdir().unwrap();
    // RFC 8037's Ed25519 example key, and RFC 8032's second test key.
    let public =
        r#"{"kty":"OKP","crv":"Ed25519","x":"11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"}"#;
    let private = r#"{"kty":"OKP","crv":"Ed25519","x":"11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo","d":"nWGxne_9WmC6hEr0kuwsxERJxWl7MmkZcDusAxyuf2A"}"#;
    let next = r#"{"kty":"OKP","crv":"Ed25519","x":"PUAXw-hDiVqStwqnTRt-vJyYLM8uxJaMwM1V8Sr0Zgw"}"#;
    let file = |name: &str, text: &str| {
        let path = dir.path().join(name);
        std::fs::write(&path, text).unwrap();
        path.to_str().unwrap().to_owned()
    };
    let (public, private, next) = (
        file("key.jwk", public),
        file("private.jwk", private),
        file("next.jwk", next),
    );
    let create = |key: &str| {
        server.run(&[
            "token",
            "create",
            "--tenant",
            "acme",
            "--name",
            "signer",
            "--kind",
            "client_credentials",
            "--role",
            "viewer",
            "--public-key",
            key,
        ])
    };

    // A private key never leaves the machine: refused before anything is sent.
    let refused = create(&private).fails();
    assert!(refused.contains("holds a private key"), "{refused}");
    assert!(!refused.contains("nWGxne"), "{refused}");
    let listed = server.json(&["token", "list", "--tenant", "acme"]);
    assert!(items(&listed).is_empty(), "{listed}");

    let created = create(&public).ok();
    let id = labelled(&created, "client_id").to_owned();
    // RFC 8037 §A.3: the key's thumbprint.
    let thumbprint = "kPrK_qmxVWaYVA9wwBF6Iuo3vVzz7TxHCTwXBygrS4k";
    assert_eq!(labelled(&created, "public_key_thumbprint"), thumbprint);
    assert!(created.contains("private_key_jwt"), "{created}");
    assert!(!created.contains("client_secret"), "{created}");
    let shown = server.json(&["token", "show", &id]);
    assert_eq!(shown["token"]["auth_method"], "private_key_jwt");
    assert_eq!(shown["token"]["public_key_thumbprint"], thumbprint);
    let shown = server.run(&["token", "show", &id]).ok();
    assert!(
        section(&shown, "WHAT").contains(&format!("private_key_jwt with key {thumbprint}")),
        "{shown}"
    );

    // A roll takes the next key; without one the server refuses.
    let bare = server.run(&["token", "roll", &id]).fails();
    assert!(bare.ends_with("(400 invalid-field)"), "{bare}");
    let rolled = server.json(&["token", "roll", &id, "--public-key", &next]);
    assert_eq!(rolled["token"]["rolled_from"], id.as_str());
    assert_eq!(
        rolled["token"]["public_key"]["x"],
        "PUAXw-hDiVqStwqnTRt-vJyYLM8uxJaMwM1V8Sr0Zgw"
    );
    assert!(rolled.get("client_secret").is_none(), "{rolled}");
}
