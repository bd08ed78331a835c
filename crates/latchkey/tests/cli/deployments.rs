//! docs/DEPLOYMENT.md's configurations are real: every ```toml block there that starts
//! with `# file: NAME` is loaded as a server or gateway configuration and checked, and
//! the server of "TLS at latchkey" is started from its block, with only its files and
//! address swapped for this test's, then served over TLS, renewed on SIGHUP.

use super::Server;
use latchkey_gateway::GatewayConfig;
use latchkey_listener::test_pki::{TestCa, Use};
use std::ffi::OsStr;
use std::process::Command;
use std::time::{Duration, Instant};

const DEPLOYMENT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../docs/DEPLOYMENT.md");

/// The `# file:` blocks of docs/DEPLOYMENT.md: name and text.
fn blocks() -> Vec<(String, String)> {
    let text = std::fs::read_to_string(DEPLOYMENT).unwrap();
    let mut found = Vec::new();
    let mut lines = text.lines();
    while let Some(line) = lines.next() {
        if line.trim_end() != "```toml" {
            continue;
        }
        let body: Vec<&str> = lines
            .by_ref()
            .take_while(|l| l.trim_end() != "```")
            .collect();
        if let Some(name) = body.first().and_then(|l| l.strip_prefix("# file: ")) {
            found.push((name.trim().to_owned(), body.join("\n")));
        }
    }
    found
}

#[test]
fn every_deployment_configuration_loads_and_validates() {
    let blocks = blocks();
    let names: Vec<&str> = blocks.iter().map(|(name, _)| name.as_str()).collect();
    for expected in [
        "load-balancer/server.toml",
        "load-balancer/gateway.toml",
        "latchkey-tls/server.toml",
        "latchkey-tls/gateway.toml",
        "another-network/gateway-public.toml",
        "another-network/gateway-internal.toml",
    ] {
        assert!(
            names.contains(&expected),
            "{expected} missing from {names:?}"
        );
    }
    // The files they name exist here, as they would on the operator's machine.
    let ca = TestCa::new("deployments");
    for (name, text) in &blocks {
        let text = &materialise(text, &ca);
        if name.ends_with("server.toml") {
            let config =
                latchkey_server::Config::from_toml(text).unwrap_or_else(|e| panic!("{name}: {e}"));
            config.validate().unwrap_or_else(|e| panic!("{name}: {e}"));
            assert!(config.public_url.is_some(), "{name} sets the public URL");
        } else {
            let config = GatewayConfig::from_toml(text).unwrap_or_else(|e| panic!("{name}: {e}"));
            config.validate().unwrap_or_else(|e| panic!("{name}: {e}"));
        }
    }
    // What each deployment is about is really in its configuration.
    let find = |wanted: &str| &blocks.iter().find(|(n, _)| n == wanted).unwrap().1;
    let server = latchkey_server::Config::from_toml(find("latchkey-tls/server.toml")).unwrap();
    assert!(server.tls_files().is_some_and(|f| f.client_ca.is_some()));
    let gateway = GatewayConfig::from_toml(find("latchkey-tls/gateway.toml")).unwrap();
    assert!(gateway.tls_files().is_some() && gateway.client_identity().is_some());
    let internal = GatewayConfig::from_toml(find("another-network/gateway-internal.toml")).unwrap();
    assert_eq!(internal.issuer.as_deref(), Some("https://auth.example.com"));
    assert!(internal.tls_ca_file.is_some());
}

#[test]
fn the_tls_server_of_the_docs_starts_serves_https_and_renews_on_sighup() {
    let ca = TestCa::new("docs");
    let first = ca.issue("auth", &["127.0.0.1"], Use::Server);
    let clients = TestCa::new("followers");
    let (_, text) = blocks()
        .into_iter()
        .find(|(name, _)| name == "latchkey-tls/server.toml")
        .unwrap();
    let swapped = text
        .replace(
            "/etc/latchkey/auth.example.com.pem",
            &path(&first.cert_file),
        )
        .replace("/etc/latchkey/auth.example.com.key", &path(&first.key_file))
        .replace("/etc/latchkey/followers-ca.pem", &path(&clients.pem_file));
    assert_ne!(swapped, text);
    let config = ca.dir().join("server.toml");
    std::fs::write(&config, swapped).unwrap();
    let mut server = Server::start_with(&[OsStr::new("--config"), config.as_os_str()]);
    assert!(
        server.url.starts_with("https://127.0.0.1:"),
        "{}",
        server.url
    );
    let port = server.url.rsplit(':').next().unwrap().to_owned();

    let curl = |host: &str| {
        Command::new("curl")
            .args(["-q", "--silent", "--show-error", "--fail", "--noproxy", "*"])
            .args(["--max-time", "10", "--cacert"])
            .arg(&ca.pem_file)
            .args(["--resolve", &format!("{host}:{port}:127.0.0.1")])
            .arg(format!("https://{host}:{port}/healthz"))
            .output()
            .unwrap()
    };
    let served = curl("127.0.0.1");
    assert!(served.status.success(), "{served:?}");
    assert!(
        !curl("auth.test").status.success(),
        "not yet a name it serves"
    );

    // Renewal: new files in place, then SIGHUP.
    let renewed = ca.issue("renewed", &["auth.test"], Use::Server);
    std::fs::copy(&renewed.key_file, &first.key_file).unwrap();
    std::fs::copy(&renewed.cert_file, &first.cert_file).unwrap();
    let pid = server.child.id().to_string();
    assert!(
        Command::new("kill")
            .args(["-HUP", &pid])
            .status()
            .unwrap()
            .success()
    );
    let deadline = Instant::now() + Duration::from_secs(20);
    while !curl("auth.test").status.success() {
        assert!(
            Instant::now() < deadline,
            "the renewed certificate was never served"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(
        server.child.try_wait().unwrap().is_none(),
        "SIGHUP did not stop the server"
    );
}

/// `text` with every `/etc/latchkey/NAME` replaced by a file of that name in `ca`'s
/// directory: the CA certificate for a name with `ca` in it, else a certificate
/// (`.pem`) or its key (`.key`).
fn materialise(text: &str, ca: &TestCa) -> String {
    const PREFIX: &str = "/etc/latchkey/";
    let issued = ca.issue("deployment-leaf", &["localhost"], Use::Server);
    let mut out = String::new();
    let mut rest = text;
    while let Some(at) = rest.find(PREFIX) {
        out.push_str(&rest[..at]);
        let after = &rest[at + PREFIX.len()..];
        let end = after
            .find(|c: char| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_')))
            .unwrap_or(after.len());
        let name = &after[..end];
        let source = if name.contains("ca") {
            &ca.pem_file
        } else if name.ends_with(".key") {
            &issued.key_file
        } else {
            &issued.cert_file
        };
        let target = ca.dir().join(name);
        std::fs::copy(source, &target).unwrap();
        out.push_str(&path(&target));
        rest = &after[end..];
    }
    out.push_str(rest);
    out
}

fn path(path: &std::path::Path) -> String {
    path.display().to_string()
}
