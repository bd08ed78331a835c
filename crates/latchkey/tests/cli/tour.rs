//! The commands around the server: `demo`, `gateway` and `audit`.

use super::{BIN, LATCHKEY_VARS, Run, Server, command};
use serde_json::Value;
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// Runs `latchkey ARGS` with no LATCHKEY_* variables, expects success, answers stdout.
fn succeeds(args: &[&str]) -> String {
    let output = command(args).output().unwrap();
    let stdout = String::from_utf8(output.stdout).unwrap();
    assert!(
        output.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    stdout
}

/// Runs `latchkey demo` until it prints its console URL, opens that URL once over
/// HTTP, stops the demo (it keeps serving until interrupted) and answers its output.
fn demo_until_console() -> String {
    let mut child = command(&["demo"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut stdout = String::new();
    let mut url = None;
    for line in lines.by_ref() {
        let line = line.unwrap();
        stdout.push_str(&line);
        stdout.push('\n');
        if let Some(found) = line.strip_prefix("console: ") {
            url = Some(found.to_owned());
            break;
        }
    }
    let url = url.unwrap_or_else(|| {
        let _ = child.kill();
        panic!("the demo printed no console URL:\n{stdout}")
    });
    // The URL opens a session: 303 to the console with a cookie, once.
    let opened = http_get(&url);
    let again = http_get(&url);
    assert!(
        child.try_wait().unwrap().is_none(),
        "the demo keeps serving"
    );
    let _ = child.kill();
    let _ = child.wait();
    assert!(opened.starts_with("HTTP/1.1 303"), "{opened}");
    assert!(
        opened
            .to_ascii_lowercase()
            .contains("set-cookie: lk_console="),
        "{opened}"
    );
    assert!(again.starts_with("HTTP/1.1 410"), "{again}");
    stdout
}

/// A bare HTTP/1.1 GET of a loopback URL; answers the response head.
fn http_get(url: &str) -> String {
    use std::io::{Read, Write};
    let rest = url.strip_prefix("http://").unwrap();
    let (host, path) = rest.split_at(rest.find('/').unwrap());
    let mut stream = std::net::TcpStream::connect(host).unwrap();
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut answer = String::new();
    stream.read_to_string(&mut answer).unwrap();
    answer.split("\r\n\r\n").next().unwrap_or("").to_owned()
}

#[test]
fn the_demo_walks_the_whole_flow_and_ends_with_a_refusal() {
    let stdout = demo_until_console();
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

/// Rewrites the target of the event at `seq` and re-hashes it (SHA-256 over the previous
/// hash and the canonical encoding, docs/API.md), moving the stored head's hash along
/// when `seq` is the head: what someone with the database file but no key can do.
fn rewrite_and_rehash(server: &Server, seq: i64) {
    let database = server._data.path().join("data").join("latchkey.db");
    let script = format!(
        r#"
import hashlib, json, sqlite3
c = sqlite3.connect({database:?})
row = c.execute("SELECT at, action, actor, actor_user, tenant_id, ip, user_agent, details, prev_hash FROM audit_events WHERE seq = ?", ({seq},)).fetchone()
at, action, actor, actor_user, tenant_id, ip, user_agent, details, prev_hash = row
fields = [{seq}, at, action, actor, actor_user, tenant_id, "forged", ip, user_agent]
canonical = json.dumps(fields, separators=(",", ":"), ensure_ascii=False)[:-1] + "," + details + "]"
digest = hashlib.sha256(prev_hash + canonical.encode()).digest()
c.execute("UPDATE audit_events SET target = 'forged', hash = ? WHERE seq = ?", (digest, {seq}))
c.execute("UPDATE chain_heads SET hash = ? WHERE name = 'audit' AND seq = ?", (digest, {seq}))
c.commit()
"#,
        database = database.display().to_string()
    );
    let status = Command::new("python3")
        .args(["-c", &script])
        .status()
        .unwrap();
    assert!(status.success(), "rewriting event {seq}");
}

/// Expects exit code 1 from a verify run.
#[track_caller]
fn exits_1(run: &Run) {
    assert_eq!(
        run.status.code(),
        Some(1),
        "`{}`:\nstdout: {}\nstderr: {}",
        run.command,
        run.stdout,
        run.stderr
    );
}

#[test]
fn audit_verify_exits_1_when_the_last_event_is_rewritten_and_rehashed() {
    let server = Server::start();
    for id in ["acme", "globex"] {
        server.run(&["tenant", "create", id]).ok();
    }
    // Control: an intact chain exits 0 and says so, in JSON too.
    let intact = server.json(&["audit", "verify"]);
    assert_eq!(intact["intact"], true);
    assert_eq!(intact["server"]["intact"], true);
    assert_eq!(intact["server"]["legacy"], 0);
    let last = intact["head_seq"].as_i64().unwrap();
    assert_eq!(intact["server"]["checked"], last);

    rewrite_and_rehash(&server, last);
    let failed = server.run(&["audit", "verify"]);
    exits_1(&failed);
    // The links still hold: only the MAC, which needs the server's key, tells.
    assert!(
        failed.stdout.starts_with("audit chain intact: "),
        "{}",
        failed.stdout
    );
    assert!(
        failed.stdout.contains(&format!(
            "server verification failed at seq {last}: its MAC does not match its hash"
        )),
        "{}",
        failed.stdout
    );
    assert!(
        failed
            .stderr
            .contains(&format!("the audit chain is broken at seq {last}")),
        "{}",
        failed.stderr
    );
    let json = server.run(&["audit", "verify", "--json"]);
    exits_1(&json);
    let report: Value = serde_json::from_str(&json.stdout).unwrap();
    assert_eq!(report["intact"], false);
    assert_eq!(report["first_broken_seq"], last);
    assert_eq!(report["links"]["intact"], true);
    assert_eq!(
        report["server"]["first_broken"],
        serde_json::json!({ "seq": last, "reason": "mac" })
    );
}

#[test]
fn audit_verify_expect_head_catches_a_deleted_tail_that_plain_verify_cannot() {
    let server = Server::start();
    server.run(&["tenant", "create", "acme"]).ok();
    let early = server.json(&["audit", "verify"]);
    let early_head = format!(
        "{}:{}",
        early["head_seq"],
        early["head_hash"].as_str().unwrap()
    );
    server.run(&["tenant", "create", "globex"]).ok();
    let saved = server.json(&["audit", "verify"]);
    let last = saved["head_seq"].as_i64().unwrap();
    let saved_head = format!("{last}:{}", saved["head_hash"].as_str().unwrap());
    // Control: an anchor from earlier still holds as the chain grows, in either case.
    for anchor in [early_head.clone(), early_head.to_ascii_uppercase()] {
        let reached = server
            .run(&["audit", "verify", "--expect-head", &anchor])
            .ok();
        assert!(reached.contains("reached"), "{reached}");
    }

    tamper(
        &server,
        &format!(
            "DELETE FROM audit_events WHERE seq = {last}; \
             UPDATE chain_heads SET seq = {prev}, \
               hash = (SELECT hash FROM audit_events WHERE seq = {prev}) WHERE name = 'audit';",
            prev = last - 1
        ),
    );
    // A valid, shorter chain: hashes and MACs cannot tell.
    let plain = server.json(&["audit", "verify"]);
    assert_eq!(plain["intact"], true);
    assert_eq!(plain["head_seq"], last - 1);
    let current = format!(
        "{}:{}",
        plain["head_seq"],
        plain["head_hash"].as_str().unwrap()
    );
    // The head saved before does.
    let failed = server.run(&["audit", "verify", "--expect-head", &saved_head]);
    exits_1(&failed);
    assert!(
        failed.stdout.contains(&format!(
            "expected head not reached: there is no event at seq {last}"
        )),
        "{}",
        failed.stdout
    );
    assert!(
        failed.stderr.contains(&format!(
            "the audit chain no longer reaches the expected head at seq {last}"
        )),
        "{}",
        failed.stderr
    );
    let json = server.run(&["audit", "verify", "--json", "--expect-head", &saved_head]);
    exits_1(&json);
    let report: Value = serde_json::from_str(&json.stdout).unwrap();
    assert_eq!(report["intact"], false);
    assert_eq!(report["expected_head"]["reached"], false);
    assert_eq!(report["expected_head"]["found_hash"], Value::Null);
    // A head at a seq that is still there but with another hash.
    let (seq, hash) = early_head.split_once(':').unwrap();
    let other: String = hash.chars().rev().collect();
    let failed = server.run(&[
        "audit",
        "verify",
        "--expect-head",
        &format!("{seq}:{other}"),
    ]);
    exits_1(&failed);
    assert!(
        failed.stdout.contains(&format!(
            "the event at seq {seq} has hash {hash}, not {other}"
        )),
        "{}",
        failed.stdout
    );
    // Control: the current head and the early one are still reached.
    for anchor in [&current, &early_head] {
        server
            .run(&["audit", "verify", "--expect-head", anchor])
            .ok();
    }
}

#[test]
fn a_malformed_expect_head_is_a_usage_error() {
    let hash = "ab".repeat(32);
    for bad in [
        String::new(),
        "12".to_owned(),
        hash.clone(),
        format!(":{hash}"),
        format!("x:{hash}"),
        format!("-1:{hash}"),
        format!("0:{hash}"),
        format!("+1:{hash}"),
        format!("1.0:{hash}"),
        "1:".to_owned(),
        format!("1:{}", &hash[..63]),
        format!("1:{hash}00"),
        format!("1:{}", "zz".repeat(32)),
        format!("1:+{}", &hash[..63]),
        format!("1:{hash}:1"),
        format!("1: {}", &hash[..63]),
    ] {
        // No server: the argument is refused before anything is sent. `=` keeps a
        // value starting with `-` a value.
        let flag = format!("--expect-head={bad}");
        let run = super::latchkey(
            "http://127.0.0.1:9",
            Some("unused"),
            &["audit", "verify", &flag],
        );
        assert_eq!(run.status.code(), Some(2), "{bad:?}: {}", run.stderr);
        assert!(
            run.stderr.contains("invalid value") && run.stderr.contains("--expect-head"),
            "{bad:?}: {}",
            run.stderr
        );
        assert_eq!(run.stdout, "");
    }
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
    let mut child = command(&["gateway", "--config"])
        .arg(&config)
        .env("LATCHKEY_GATEWAY_CREDENTIAL", &credential)
        .env("NO_COLOR", "1")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
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

/// A short edge bench: one second of load, no warm-up, two connections.
const QUICK_EDGE: &[&str] = &["--duration", "1", "--warmup", "0", "--connections", "2"];

#[test]
fn bench_edge_measures_the_gateway_and_revocation_propagation() {
    let stdout = succeeds(&[&["bench", "--edge"], QUICK_EDGE, &["--revocations", "5"]].concat());
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
    let synchronous = stdout
        .lines()
        .find(|l| l.starts_with("Synchronous revocation over 5 revocations"))
        .unwrap_or_else(|| panic!("no wait=propagated line in {stdout}"));
    assert!(
        synchronous.contains("?wait=propagated") && synchronous.contains("p99"),
        "{synchronous}"
    );
    assert!(
        stdout.contains("server and gateway processes"),
        "the gateway is its own process: {stdout}"
    );
}

#[test]
fn bench_edge_with_children_starts_the_server_and_the_gateway_from_that_binary() {
    // Another build, as the bench sees it: a script that notes each start and runs
    // this binary.
    let dir = tempfile::tempdir().unwrap();
    let started = dir.path().join("started");
    let other = dir.path().join("other-latchkey");
    std::fs::write(
        &other,
        format!(
            "#!/bin/sh\necho \"$1\" >> '{}'\nexec '{BIN}' \"$@\"\n",
            started.display()
        ),
    )
    .unwrap();
    std::fs::set_permissions(&other, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let children = ["--children", other.to_str().unwrap()];
    let stdout = succeeds(
        &[
            &["bench", "--edge", "--skip-narrowing"],
            &children[..],
            QUICK_EDGE,
            &["--revocations", "3"],
        ]
        .concat(),
    );
    let starts = std::fs::read_to_string(&started).unwrap();
    assert_eq!(starts.lines().collect::<Vec<_>>(), ["serve", "gateway"]);
    for line in [
        "Revocation propagation over 3 revocations",
        "Synchronous revocation over 3 revocations",
        "--children",
    ] {
        assert!(stdout.contains(line), "{line}: {stdout}");
    }
    assert!(!stdout.contains("Narrowing propagation"), "{stdout}");
}

#[test]
fn bench_children_must_be_a_file() {
    for (path, says) in [
        ("/nonexistent/latchkey", "--children /nonexistent/latchkey"),
        ("/", "--children /: not a file"),
    ] {
        let output = command(&["bench", "--children", path]).output().unwrap();
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(1), "{path}: {stderr}");
        assert!(stderr.contains(says), "{path}: {stderr}");
        assert!(output.stdout.is_empty(), "nothing measured");
    }
}

#[test]
fn bench_followers_reports_the_fan_out_to_the_last_follower_and_memory_per_follower() {
    let stdout = succeeds(&["bench", "--followers", "5", "--revocations", "4"]);
    let fan_out = stdout
        .lines()
        .find(|l| l.starts_with("Fan-out to 5 followers over 4 revocations"))
        .unwrap_or_else(|| panic!("no fan-out line in {stdout}"));
    assert!(
        fan_out.contains("the last follower saw the entry")
            && fan_out.contains("p50 ")
            && fan_out.contains("p99 "),
        "{fan_out}"
    );
    let memory = stdout
        .lines()
        .find(|l| l.starts_with("Server memory per follower: "))
        .unwrap_or_else(|| panic!("no memory line in {stdout}"));
    let per_follower: f64 = memory
        .trim_start_matches("Server memory per follower: ")
        .split_whitespace()
        .next()
        .unwrap()
        .parse()
        .unwrap_or_else(|_| {
            panic!("the bench started the server, so its memory is known: {memory}")
        });
    assert!(per_follower >= 0.0, "{memory}");
    assert!(memory.contains("before connecting 5 followers"), "{memory}");
}

#[test]
fn bench_followers_beyond_the_hard_open_file_limit_says_how_to_raise_it() {
    let mut command = Command::new("sh");
    command
        .args([
            "-c",
            r#"ulimit -n 300 && exec "$0" bench --followers 1000"#,
            BIN,
        ])
        .stdin(Stdio::null());
    for var in LATCHKEY_VARS {
        command.env_remove(var);
    }
    let output = command.output().unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("--followers 1000 needs about 1256 open files")
            && stderr.contains("at most 300 (its hard limit)")
            && stderr.contains("raise the hard limit"),
        "{stderr}"
    );
    assert!(output.stdout.is_empty(), "no report without the followers");
}

/// The requests/s of the table row starting with `run` in a bench's text report.
fn rate_of(stdout: &str, run: &str) -> f64 {
    let line = stdout
        .lines()
        .find(|l| l.starts_with(run))
        .unwrap_or_else(|| panic!("no {run} in {stdout}"));
    let rest = line[run.len()..].trim_start();
    let rate = rest.split_whitespace().next().unwrap().replace(',', "");
    rate.parse().unwrap_or_else(|_| panic!("{line}"))
}

#[test]
fn bench_jwt_bearer_alternates_rounds_against_client_credentials() {
    let stdout = succeeds(&[
        "bench",
        "--jwt-bearer",
        "--rounds",
        "2",
        "--duration",
        "1",
        "--warmup",
        "0",
        "--connections",
        "2",
    ]);
    for round in 1..=2 {
        for run in [
            "client_credentials grant",
            "jwt-bearer grant, replay protection off",
            "jwt-bearer grant, replay protection on",
        ] {
            assert!(rate_of(&stdout, &format!("{run}, round {round}")) > 0.0);
        }
    }
    for candidate in ["replay protection off", "replay protection on"] {
        let line = stdout
            .lines()
            .find(|l| l.starts_with(&format!("jwt-bearer grant, {candidate} against")))
            .unwrap_or_else(|| panic!("no comparison for {candidate} in {stdout}"));
        assert!(
            line.contains("medians of 2 alternating rounds")
                && line.contains("server CPU per request"),
            "{line}"
        );
    }
}

#[test]
fn bench_edge_dpop_alternates_bearer_and_dpop_through_the_gateway() {
    let stdout = succeeds(&[
        "bench",
        "--edge",
        "--dpop",
        "--rounds",
        "1",
        "--duration",
        "1",
        "--warmup",
        "0",
        "--connections",
        "2",
    ]);
    assert!(rate_of(&stdout, "gateway, Bearer JWT, round 1") > 0.0);
    assert!(rate_of(&stdout, "gateway, DPoP-bound JWT + fresh proof, round 1") > 0.0);
    assert!(stdout.contains("gateway CPU"), "{stdout}");
    assert!(
        stdout.lines().any(|l| l.starts_with(
            "gateway, DPoP-bound JWT + fresh proof against gateway, Bearer JWT, medians of 1"
        ) && l.contains("gateway CPU per request")),
        "{stdout}"
    );
}

#[test]
fn bench_dpop_needs_edge_and_jwt_bearer_excludes_edge() {
    for (args, says) in [
        (&["bench", "--dpop"][..], "required"),
        (&["bench", "--skip-narrowing"][..], "required"),
        (
            &["bench", "--jwt-bearer", "--edge"][..],
            "cannot be used with",
        ),
        (
            &["bench", "--jwt-bearer", "--followers", "2"][..],
            "cannot be used with",
        ),
    ] {
        let output = command(args).output().unwrap();
        assert_eq!(output.status.code(), Some(2), "{args:?}");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(stderr.contains(says), "{args:?}: {stderr}");
    }
}

#[test]
fn bench_followers_conflicts_with_edge() {
    let output = command(&["bench", "--edge", "--followers", "5"])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&output.stderr).contains("cannot be used with"),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
}
