//! The commands around the server: `demo`, `gateway` and `audit`.

use super::{BIN, LATCHKEY_VARS, Server};
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// Runs `latchkey ARGS` with no LATCHKEY_* variables, expects success, answers stdout.
fn succeeds(args: &[&str]) -> String {
    let mut command = Command::new(BIN);
    command.args(args).stdin(Stdio::null());
    for var in LATCHKEY_VARS {
        command.env_remove(var);
    }
    let output = command.output().unwrap();
    let stdout = String::from_utf8(output.stdout).unwrap();
    assert!(
        output.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    stdout
}

#[test]
fn the_demo_walks_the_whole_flow_and_ends_with_a_refusal() {
    let stdout = succeeds(&["demo"]);
    for expected in [
        "exchange client credentials for a JWT",
        "200 OK",
        "403 Forbidden",
        "revoke the token",
        "401 Unauthorized",
    ] {
        assert!(
            stdout.contains(expected),
            "missing {expected:?} in:\n{stdout}"
        );
    }
    assert!(
        stdout
            .lines()
            .filter(|l| l.trim_end().ends_with("ms"))
            .count()
            >= 12,
        "every step is timed"
    );
}

/// Runs SQL against the server's SQLite file, as an attacker with the file would.
fn tamper(server: &Server, sql: &str) {
    let database = server._data.path().join("data").join("latchkey.db");
    let script = format!(
        "import sqlite3; c = sqlite3.connect({:?}); c.executescript({sql:?}); c.commit()",
        database.display().to_string()
    );
    let status = Command::new("python3")
        .args(["-c", &script])
        .status()
        .unwrap();
    assert!(status.success(), "editing the database with: {sql}");
}

#[test]
fn audit_verify_names_the_first_edited_deleted_or_reordered_event() {
    let server = Server::start();
    for id in ["acme", "globex", "initech", "umbrella"] {
        server.run(&["tenant", "create", id]).ok();
    }
    let intact = server.run(&["audit", "verify"]).ok();
    assert!(intact.starts_with("audit chain intact: "), "{intact}");
    let report = server.json(&["audit", "verify"]);
    assert_eq!(report["intact"], true);
    let events = report["events"].as_i64().unwrap();
    assert!(events >= 8, "bootstrap, keys and four tenants: {events}");
    let export = server.run(&["audit", "export", "--format", "jsonl"]).ok();
    assert_eq!(export.lines().count() as i64, events);

    // Reorder: swap which tenants two rows say were created (seq 6 and 7).
    tamper(
        &server,
        "UPDATE audit_events SET target = CASE seq WHEN 6 THEN (SELECT target FROM audit_events WHERE seq = 7) \
         ELSE (SELECT target FROM audit_events WHERE seq = 6) END WHERE seq IN (6, 7);",
    );
    let failed = server.run(&["audit", "verify"]);
    assert!(!failed.status.success());
    assert!(failed.stdout.contains("seq 6"), "{}", failed.stdout);
    // Edit an earlier one.
    tamper(
        &server,
        "UPDATE audit_events SET ip = '203.0.113.66' WHERE seq = 4;",
    );
    let failed = server.run(&["audit", "verify"]);
    assert!(failed.stdout.contains("seq 4"), "{}", failed.stdout);
    // Delete one before that.
    tamper(&server, "DELETE FROM audit_events WHERE seq = 2;");
    let failed = server.run(&["audit", "verify"]);
    assert!(failed.stdout.contains("seq 2"), "{}", failed.stdout);
    assert!(
        failed.stderr.contains("the audit chain is broken at seq 2"),
        "{}",
        failed.stderr
    );

    let listed = server.json(&[
        "audit",
        "list",
        "--action",
        "tenant.created",
        "--limit",
        "2",
    ]);
    assert_eq!(listed["items"].as_array().unwrap().len(), 2);
    assert_eq!(listed["items"][0]["target"], "umbrella", "newest first");
}

#[test]
fn the_gateway_command_serves_the_routes_of_its_config_file() {
    let server = Server::start();
    server.run(&["permission", "put", "reports:read"]).ok();
    server.run(&["tenant", "create", "acme"]).ok();
    let key = server.gateway_key();
    let credential = key["api_key"].as_str().unwrap().to_owned();
    let upstream = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let upstream_port = upstream.local_addr().unwrap().port();
    // A one-shot upstream: answers one request with 200.
    std::thread::spawn(move || {
        use std::io::{Read, Write};
        if let Ok((mut socket, _)) = upstream.accept() {
            let mut buffer = [0u8; 4096];
            let _ = socket.read(&mut buffer);
            let _ = socket
                .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\nconnection: close\r\n\r\nok");
        }
    });
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("gateway.toml");
    std::fs::write(
        &config,
        format!(
            "listen = \"127.0.0.1:0\"\nserver = \"{}\"\n\n[[route]]\nprefix = \"/reports\"\n\
             upstream = \"http://127.0.0.1:{upstream_port}\"\nscopes = {{ GET = [\"reports:read\"] }}\n",
            server.url
        ),
    )
    .unwrap();
    let mut command = Command::new(BIN);
    command
        .args(["gateway", "--config"])
        .arg(&config)
        .env("LATCHKEY_GATEWAY_CREDENTIAL", &credential)
        .env("NO_COLOR", "1")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    for var in LATCHKEY_VARS {
        command.env_remove(var);
    }
    let mut child = command.spawn().unwrap();
    let stderr = child.stderr.take().unwrap();
    // Keep draining the gateway's stderr so it never blocks on a full pipe.
    let (lines, received) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            let _ = lines.send(line);
        }
    });
    let deadline = Instant::now() + Duration::from_secs(30);
    let address = loop {
        let line = received
            .recv_timeout(deadline.saturating_duration_since(Instant::now()))
            .expect("the gateway says where it listens");
        if let Some((_, rest)) = line.split_once("gateway listening on http://") {
            break rest.split_whitespace().next().unwrap().to_owned();
        }
    };
    let created = server.json(&[
        "token",
        "create",
        "--tenant",
        "acme",
        "--name",
        "reader",
        "--kind",
        "api_key",
        "--permission",
        "reports:read",
    ]);
    let api_key = created["api_key"].as_str().unwrap();
    let status = |bearer: Option<&str>| {
        let mut curl = Command::new("curl");
        curl.args([
            "-s",
            "-o",
            "/dev/null",
            "-w",
            "%{http_code}",
            "--noproxy",
            "*",
        ]);
        if let Some(bearer) = bearer {
            curl.args(["-H", &format!("Authorization: Bearer {bearer}")]);
        }
        let output = curl
            .arg(format!("http://{address}/reports"))
            .output()
            .unwrap();
        String::from_utf8(output.stdout).unwrap()
    };
    assert_eq!(status(None), "401");
    assert_eq!(status(Some(api_key)), "200");
    let _ = child.kill();
    let _ = child.wait();
}

#[test]
fn bench_edge_measures_the_gateway_and_revocation_propagation() {
    let stdout = succeeds(&[
        "bench",
        "--edge",
        "--duration",
        "1",
        "--warmup",
        "0",
        "--connections",
        "2",
        "--revocations",
        "5",
    ]);
    for row in [
        "upstream directly",
        "gateway, public route (no auth)",
        "gateway, JWT auth (cached)",
    ] {
        let line = stdout
            .lines()
            .find(|l| l.contains(row))
            .unwrap_or_else(|| panic!("no {row} in {stdout}"));
        let rate: f64 = line.split('|').nth(2).unwrap().trim().parse().unwrap();
        assert!(rate > 0.0, "{line}");
    }
    assert!(
        stdout.contains("Revocation propagation over 5 revocations"),
        "{stdout}"
    );
    assert!(
        stdout.contains("Narrowing propagation over 5 role edits"),
        "{stdout}"
    );
}
