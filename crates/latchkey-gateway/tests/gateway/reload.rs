//! Reloading routes while serving: by call and by SIGHUP, on the same listener.

use crate::support::{FakeServer, FakeUpstream, TestGateway, closed_port, routes};
use hyper::StatusCode;
use latchkey_gateway::{ConfigError, GatewayConfig, reload_on_sighup};
use std::time::Duration;

/// `/reports` moved to a second upstream, `/public` gone, `/v2` added.
fn moved_routes(second: &str) -> String {
    format!(
        r#"
[[route]]
prefix = "/reports"
upstream = "{second}"
scopes = {{ GET = ["reports:read"] }}

[[route]]
prefix = "/v2"
upstream = "{second}"
public = true
"#
    )
}

#[tokio::test]
async fn a_reload_changes_routes_on_the_same_listener() {
    let gw = TestGateway::start().await;
    let second = FakeUpstream::start("two").await;
    let token = gw.token("reports:read").bearer();
    assert_eq!(
        gw.get("/reports", Some(&token)).await.json()["upstream"],
        "one"
    );
    assert_eq!(gw.get("/v2", None).await.status, StatusCode::NOT_FOUND);

    let text = TestGateway::config_text(&gw.server, &moved_routes(&second.url));
    gw.gateway
        .reload(GatewayConfig::from_toml(&text).unwrap())
        .unwrap();

    assert_eq!(
        gw.get("/reports", Some(&token)).await.json()["upstream"],
        "two"
    );
    assert_eq!(gw.get("/v2/x", None).await.json()["upstream"], "two");
    assert_eq!(gw.get("/public", None).await.status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn a_reload_with_a_bad_config_keeps_the_running_routes() {
    let gw = TestGateway::start().await;
    let bad = TestGateway::config_text(
        &gw.server,
        "[[route]]\nprefix = \"/v2\"\nupstream = \"ftp://x\"\n",
    );
    let error = gw
        .gateway
        .reload(GatewayConfig::from_toml(&bad).unwrap())
        .unwrap_err();
    assert!(matches!(error, ConfigError::BadUpstream { .. }), "{error}");
    assert_eq!(gw.get("/public", None).await.status, StatusCode::OK);
}

#[tokio::test]
async fn sighup_rereads_the_config_file() {
    let server = FakeServer::start().await;
    let first = FakeUpstream::start("one").await;
    let second = FakeUpstream::start("two").await;
    let initial = routes(&first.url, &closed_port().await);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("gateway.toml");
    std::fs::write(&path, TestGateway::config_text(&server, &initial)).unwrap();
    let gw = TestGateway::start_with(server, first, &initial).await;
    tokio::spawn(reload_on_sighup(gw.gateway.clone(), &path).unwrap());
    assert_eq!(gw.get("/v2", None).await.status, StatusCode::NOT_FOUND);

    std::fs::write(
        &path,
        TestGateway::config_text(&gw.server, &moved_routes(&second.url)),
    )
    .unwrap();
    let status = std::process::Command::new("kill")
        .args(["-HUP", &std::process::id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());

    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    loop {
        let answer = gw.get("/v2", None).await;
        if answer.status == StatusCode::OK {
            assert_eq!(answer.json()["upstream"], "two");
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "not reloaded");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // A broken file on the next SIGHUP changes nothing.
    std::fs::write(&path, "listen = ").unwrap();
    std::process::Command::new("kill")
        .args(["-HUP", &std::process::id().to_string()])
        .status()
        .unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(gw.get("/v2", None).await.status, StatusCode::OK);
}
