//! The README's quickstart runs as written. Each test reads README.md at test time, takes
//! one of its ```sh blocks, swaps only the lines that name the reader's root key and
//! server address for the test server's, and runs the block with `bash -euo pipefail`.
//! Any other change to a block either still works or fails the test: every `curl` fails
//! on an HTTP error and every `latchkey` command on a refusal.

use super::{BIN, LATCHKEY_VARS, Server, items};
use serde_json::Value;
use std::process::{Command, Stdio};

const README: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../README.md");

/// The line that introduces the curl walk-through; the CLI block is the next ```sh block.
const WALKTHROUGH_INTRO: &str = "In a second terminal";

const TOKEN_LINE: &str = "export LATCHKEY_TOKEN=lk_ak_…   # the root key printed above";
const CURL_ADDRESS_LINE: &str = "export LATCHKEY=http://127.0.0.1:7700";
const CLI_ADDRESS_LINE: &str = "export LATCHKEY_SERVER=http://127.0.0.1:7700";

/// Makes every `curl` of a block fail the script on a 4xx or 5xx (printing the problem
/// document), ignore any `~/.curlrc` and proxy, and end each response with a newline.
const CURL_PRELUDE: &str = "curl() {\n  command curl -q --fail-with-body --show-error \
                            --noproxy '*' --max-time 30 \"$@\"\n  echo\n}\n";

/// Proxy variables that would send requests for 127.0.0.1 elsewhere.
const PROXY_VARS: [&str; 4] = ["http_proxy", "HTTP_PROXY", "all_proxy", "ALL_PROXY"];

/// The curl block and the CLI block of the quickstart.
struct Walkthrough {
    curl: String,
    cli: String,
}

impl Walkthrough {
    fn read() -> Self {
        let readme = std::fs::read_to_string(README)
            .unwrap_or_else(|error| panic!("cannot read {README}: {error}"));
        let lines: Vec<&str> = readme.lines().collect();
        let intro = lines
            .iter()
            .position(|line| line.starts_with(WALKTHROUGH_INTRO))
            .unwrap_or_else(|| panic!("README.md has no line starting {WALKTHROUGH_INTRO:?}"));
        let (curl, after_curl) = sh_block(&lines, intro);
        let (cli, _) = sh_block(&lines, after_curl);
        Walkthrough { curl, cli }
    }
}

/// The first ```sh block at or after line `from`, and the index of the line after it.
fn sh_block(lines: &[&str], from: usize) -> (String, usize) {
    let open = (from..lines.len())
        .find(|&i| lines[i].trim_end() == "```sh")
        .unwrap_or_else(|| panic!("README.md has no ```sh block after line {}", from + 1));
    let close = (open + 1..lines.len())
        .find(|&i| lines[i].trim_end() == "```")
        .unwrap_or_else(|| {
            panic!(
                "the ```sh block at README.md line {} is not closed",
                open + 1
            )
        });
    let mut block = lines[open + 1..close].join("\n");
    block.push('\n');
    (block, close + 1)
}

/// `block` with its one line that reads exactly `line` replaced by `with`.
fn replace_line(block: &str, line: &str, with: &str) -> String {
    let found = block.lines().filter(|l| *l == line).count();
    assert_eq!(
        found, 1,
        "the README block should contain the line {line:?} exactly once:\n{block}"
    );
    block
        .lines()
        .map(|l| if l == line { with } else { l })
        .collect::<Vec<_>>()
        .join("\n")
        + "\n"
}

/// `text` quoted for the shell.
fn quoted(text: &str) -> String {
    format!("'{}'", text.replace('\'', r"'\''"))
}

/// One finished `bash -euo pipefail` run.
struct Script {
    source: String,
    success: bool,
    status: String,
    stdout: String,
    stderr: String,
}

impl Script {
    /// Expects exit 0; answers stdout.
    fn ok(self) -> String {
        assert!(
            self.success,
            "the script failed ({}):\n{}\nstdout:\n{}\nstderr:\n{}",
            self.status, self.source, self.stdout, self.stderr
        );
        self.stdout
    }
}

/// Runs `source` with `bash -euo pipefail`, with none of the variables a developer's shell
/// might set for latchkey except `token` as `LATCHKEY_TOKEN`.
fn bash(source: String, token: Option<&str>) -> Script {
    let mut command = Command::new("bash");
    command
        .args(["-euo", "pipefail", "-c", &source])
        .stdin(Stdio::null())
        .env_remove("LATCHKEY");
    for var in LATCHKEY_VARS.iter().chain(&PROXY_VARS) {
        command.env_remove(var);
    }
    if let Some(token) = token {
        command.env("LATCHKEY_TOKEN", token);
    }
    let output = command.output().expect("bash runs");
    Script {
        source,
        success: output.status.success(),
        status: output.status.to_string(),
        stdout: String::from_utf8(output.stdout).unwrap(),
        stderr: String::from_utf8(output.stderr).unwrap(),
    }
}

/// The curl walk-through's block made to run against `server`.
fn curl_script(server: &Server, block: &str) -> String {
    let block = replace_line(
        block,
        TOKEN_LINE,
        &format!("export LATCHKEY_TOKEN={}", quoted(&server.root_key)),
    );
    let block = replace_line(
        &block,
        CURL_ADDRESS_LINE,
        &format!("export LATCHKEY={}", quoted(&server.url)),
    );
    format!("{CURL_PRELUDE}{block}")
}

#[test]
fn the_readme_curl_walkthrough_runs_as_written() {
    let walkthrough = Walkthrough::read();
    let server = Server::start();

    let stdout = bash(curl_script(&server, &walkthrough.curl), None).ok();
    let responses: Vec<Value> = serde_json::Deserializer::from_str(&stdout)
        .into_iter()
        .collect::<Result<_, _>>()
        .unwrap_or_else(|error| panic!("a response is not JSON ({error}):\n{stdout}"));

    assert!(
        responses
            .iter()
            .any(|r| r["id"] == "acme" && r["name"] == "Acme Inc."),
        "no tenant acme created:\n{stdout}"
    );
    assert!(
        responses
            .iter()
            .any(|r| r["name"] == "viewer"
                && r["permissions"] == serde_json::json!(["reports:read"])),
        "no role viewer created:\n{stdout}"
    );
    let secret = responses
        .iter()
        .find_map(|r| r["client_secret"].as_str())
        .unwrap_or_else(|| panic!("no client_secret shown:\n{stdout}"));
    assert!(secret.starts_with("lk_sk_"), "{secret}");
    assert_eq!(stdout.matches(secret).count(), 1, "{stdout}");

    let list = responses.last().unwrap();
    let tokens = items(list);
    assert_eq!(tokens.len(), 1, "the final list:\n{list:#}");
    assert_eq!(tokens[0]["name"], "ci deploy");
    let hint = tokens[0]["secret_hint"]
        .as_str()
        .unwrap_or_else(|| panic!("the final list shows no secret_hint:\n{list:#}"));
    assert!(hint.ends_with(&secret[secret.len() - 4..]), "{hint}");
    assert!(!list.to_string().contains(secret), "{list:#}");

    // The harness itself: a request the server refuses fails the script.
    let refused = curl_script(
        &server,
        &format!(
            "{TOKEN_LINE}\n{CURL_ADDRESS_LINE}\n\
             curl -s \"$LATCHKEY/v1/tenants/nope/tokens\" \
             -H \"Authorization: Bearer $LATCHKEY_TOKEN\"\n"
        ),
    );
    let refused = bash(refused, None);
    assert!(!refused.success, "a 404 did not fail:\n{}", refused.stdout);
    assert!(refused.stdout.contains("not-found"), "{}", refused.stdout);
}

#[test]
fn the_readme_cli_walkthrough_runs_as_written() {
    let walkthrough = Walkthrough::read();
    // A server of its own: the curl walk-through's server already holds these objects.
    let server = Server::start();

    let block = replace_line(
        &walkthrough.cli,
        CLI_ADDRESS_LINE,
        &format!("export LATCHKEY_SERVER={}", quoted(&server.url)),
    );
    let source = format!("latchkey() {{\n  {} \"$@\"\n}}\n{block}", quoted(BIN));
    let stdout = bash(source, Some(&server.root_key)).ok();

    let secret = stdout
        .lines()
        .find_map(|line| line.strip_prefix("client_secret:"))
        .unwrap_or_else(|| panic!("no client_secret shown:\n{stdout}"))
        .trim();
    assert!(secret.starts_with("lk_sk_"), "{stdout}");
    assert_eq!(stdout.matches(secret).count(), 1, "{stdout}");
    let tokens = server.json(&["token", "list", "--tenant", "acme"]);
    assert_eq!(items(&tokens).len(), 1, "{tokens:#}");
    assert_eq!(items(&tokens)[0]["name"], "ci deploy");
    assert_eq!(items(&tokens)[0]["created_by"], "u_42");
}
