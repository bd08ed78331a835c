//! The gateway narrows every credential to what its roles and user hold now (the deny
//! list's grant state), and judges IP allowlists against the client's trusted address:
//! the TCP peer, or what a trusted proxy put in `X-Forwarded-For`.

use crate::support::{
    FakeServer, FakeUpstream, TestClient, TestGateway, Token, closed_port, eventually, routes,
};
use hyper::{Method, StatusCode};
use serde_json::json;

/// A gateway whose deny list knows that `editor` may read and write reports, `viewer`
/// only read, and that user `u_1` is an editor.
async fn gateway() -> TestGateway {
    let gw = TestGateway::start().await;
    gw.deny.script(|s| {
        s.roles.insert(
            "editor".into(),
            vec!["reports:read".into(), "reports:write".into()],
        );
        s.roles.insert("viewer".into(), vec!["reports:read".into()]);
        s.members.insert("u_1".into(), vec!["editor".into()]);
    });
    gw
}

/// (status of `POST /reports`, which needs reports:write; status of `GET /reports`).
async fn write_and_read(gw: &TestGateway, bearer: &str) -> (StatusCode, StatusCode) {
    let write = gw.call(Method::POST, "/reports", Some(bearer)).await.status;
    let read = gw.get("/reports", Some(bearer)).await.status;
    (write, read)
}

const ALLOWED: (StatusCode, StatusCode) = (StatusCode::OK, StatusCode::OK);
const READ_ONLY: (StatusCode, StatusCode) = (StatusCode::FORBIDDEN, StatusCode::OK);

fn personal_long_lived(gw: &TestGateway) -> Token {
    gw.token_with("reports:read reports:write", |c| {
        c.as_object_mut().unwrap().remove("exp");
        c["knd"] = json!("jwt");
        c["tkt"] = json!("user");
        c["uid"] = json!("u_1");
    })
}

#[tokio::test]
async fn a_personal_long_lived_jwt_loses_reports_write_once_its_user_moves_to_a_read_only_role() {
    let gw = gateway().await;
    let bearer = personal_long_lived(&gw).bearer();
    assert_eq!(write_and_read(&gw, &bearer).await, ALLOWED);

    gw.deny.script(|s| {
        s.members.insert("u_1".into(), vec!["viewer".into()]);
    });
    assert_eq!(write_and_read(&gw, &bearer).await, READ_ONLY);
    let answer = gw.get("/reports", Some(&bearer)).await;
    assert_eq!(
        answer.upstream_saw("x-latchkey-scopes"),
        Some(vec!["reports:read".to_owned()]),
        "the upstream is told the narrowed scopes"
    );
}

#[tokio::test]
async fn a_tenant_jwt_loses_a_permission_once_its_role_drops_it() {
    let gw = gateway().await;
    let bearer = gw
        .token_with("reports:read reports:write", |c| {
            c.as_object_mut().unwrap().remove("exp");
            c["knd"] = json!("jwt");
            c["rol"] = json!(["editor"]);
            c["prm"] = json!([]);
        })
        .bearer();
    assert_eq!(write_and_read(&gw, &bearer).await, ALLOWED);
    gw.deny.script(|s| {
        s.roles.insert("editor".into(), vec!["reports:read".into()]);
    });
    assert_eq!(write_and_read(&gw, &bearer).await, READ_ONLY);
}

#[tokio::test]
async fn an_access_token_narrows_the_same_way() {
    let gw = gateway().await;
    let bearer = gw
        .token_with("reports:read reports:write", |c| {
            c["rol"] = json!(["editor"]);
            c["prm"] = json!([]);
        })
        .bearer();
    assert_eq!(write_and_read(&gw, &bearer).await, ALLOWED);
    gw.deny.script(|s| {
        s.roles.insert("editor".into(), vec!["reports:read".into()]);
    });
    assert_eq!(write_and_read(&gw, &bearer).await, READ_ONLY);
}

#[tokio::test]
async fn an_api_key_narrows_the_same_way() {
    let gw = gateway().await;
    let (key, _) = gw.server.api_key_with(
        "reports:read reports:write",
        json!({ "rol": ["editor"], "prm": [] }),
    );
    let bearer = format!("Bearer {key}");
    assert_eq!(write_and_read(&gw, &bearer).await, ALLOWED);
    gw.deny.script(|s| {
        s.roles.insert("editor".into(), vec!["reports:read".into()]);
    });
    assert_eq!(write_and_read(&gw, &bearer).await, READ_ONLY);
}

#[tokio::test]
async fn a_permission_added_to_a_role_never_widens_a_jwt_beyond_its_scope() {
    let gw = gateway().await;
    let bearer = gw
        .token_with("reports:read", |c| {
            c["rol"] = json!(["editor"]);
            c["prm"] = json!([]);
        })
        .bearer();
    gw.deny.script(|s| {
        s.roles.insert(
            "editor".into(),
            vec![
                "reports:read".into(),
                "reports:write".into(),
                "reports:admin".into(),
            ],
        );
    });
    assert_eq!(write_and_read(&gw, &bearer).await, READ_ONLY);
    assert_eq!(
        gw.get("/reports/admin", Some(&bearer)).await.status,
        StatusCode::FORBIDDEN
    );
}

#[tokio::test]
async fn a_member_with_no_roles_left_has_its_personal_token_refused() {
    let gw = gateway().await;
    let bearer = personal_long_lived(&gw).bearer();
    assert_eq!(write_and_read(&gw, &bearer).await, ALLOWED);
    gw.deny.script(|s| {
        s.members.insert("u_1".into(), vec![]);
    });
    let answer = gw.get("/reports", Some(&bearer)).await;
    assert_eq!(answer.status, StatusCode::UNAUTHORIZED);
    assert!(
        answer
            .header("www-authenticate")
            .unwrap()
            .contains("invalid_token")
    );
    let tenant = gw.token("reports:read").bearer();
    assert_eq!(
        gw.get("/reports", Some(&tenant)).await.status,
        StatusCode::OK,
        "control"
    );
}

/// A gateway that trusts 127.0.0.1 as a proxy, and a client on 127.0.0.2 that it does
/// not trust.
async fn behind_a_proxy() -> (TestGateway, TestClient) {
    let server = FakeServer::start().await;
    let upstream = FakeUpstream::start("one").await;
    let routes = format!(
        "trusted_proxies = [\"127.0.0.1\"]\n{}",
        routes(&upstream.url, &closed_port().await)
    );
    let gw = TestGateway::start_with(server, upstream, &routes).await;
    (gw, TestClient::new(Some("127.0.0.2".parse().unwrap())))
}

/// A token usable only from 203.0.113.0/24 and from 127.0.0.2.
fn allowlisted(gw: &TestGateway) -> Token {
    gw.token_with("reports:read", |c| {
        c["ipa"] = json!(["203.0.113.0/24", "127.0.0.2/32"]);
    })
}

async fn get_via(
    gw: &TestGateway,
    client: &TestClient,
    bearer: &str,
    forwarded_for: Option<&str>,
) -> crate::support::Answer {
    let mut headers = vec![("authorization", bearer)];
    if let Some(forwarded) = forwarded_for {
        headers.push(("x-forwarded-for", forwarded));
    }
    client
        .call(Method::GET, &gw.at("/reports"), &headers, "")
        .await
}

#[tokio::test]
async fn a_jwt_allowlist_is_judged_on_the_address_a_trusted_proxy_forwards() {
    let (gw, _) = behind_a_proxy().await;
    let bearer = allowlisted(&gw).bearer();
    let inside = get_via(&gw, &gw.client, &bearer, Some("198.51.100.1, 203.0.113.9")).await;
    assert_eq!(inside.status, StatusCode::OK);
    assert_eq!(
        inside.upstream_saw("x-forwarded-for"),
        Some(vec!["198.51.100.1, 203.0.113.9, 203.0.113.9".to_owned()]),
        "the client the gateway judged is what it appends"
    );
    for outside in ["198.51.100.1", "203.0.113.9, 198.51.100.1"] {
        let answer = get_via(&gw, &gw.client, &bearer, Some(outside)).await;
        assert_eq!(answer.status, StatusCode::UNAUTHORIZED, "{outside}");
        assert!(
            answer
                .header("www-authenticate")
                .unwrap()
                .contains("invalid_token")
        );
    }
    // No header: the proxy itself is the client, and it is not on the list.
    assert_eq!(
        get_via(&gw, &gw.client, &bearer, None).await.status,
        StatusCode::UNAUTHORIZED
    );
    let open = gw.token("reports:read").bearer();
    assert_eq!(
        get_via(&gw, &gw.client, &open, Some("198.51.100.1"))
            .await
            .status,
        StatusCode::OK,
        "control: a token without an allowlist"
    );
}

#[tokio::test]
async fn a_forged_forwarded_for_from_an_untrusted_peer_changes_nothing() {
    let (gw, untrusted) = behind_a_proxy().await;
    let bearer = allowlisted(&gw).bearer();
    let only_proxy = gw
        .token_with("reports:read", |c| c["ipa"] = json!(["203.0.113.0/24"]))
        .bearer();
    // The peer 127.0.0.2 is judged, whatever it claims to forward.
    assert_eq!(
        get_via(&gw, &untrusted, &only_proxy, Some("203.0.113.9"))
            .await
            .status,
        StatusCode::UNAUTHORIZED
    );
    let answer = get_via(&gw, &untrusted, &bearer, Some("198.51.100.1")).await;
    assert_eq!(
        answer.status,
        StatusCode::OK,
        "control: the peer is allowed"
    );
    assert_eq!(
        answer.upstream_saw("x-forwarded-for"),
        Some(vec!["198.51.100.1, 127.0.0.2".to_owned()])
    );
}

#[tokio::test]
async fn usage_is_recorded_under_the_client_a_trusted_proxy_named() {
    let (gw, untrusted) = behind_a_proxy().await;
    let token = gw.token("reports:read");
    let bearer = token.bearer();
    assert_eq!(
        get_via(&gw, &gw.client, &bearer, Some("203.0.113.9"))
            .await
            .status,
        StatusCode::OK
    );
    assert_eq!(
        get_via(&gw, &untrusted, &bearer, Some("203.0.113.9"))
            .await
            .status,
        StatusCode::OK
    );
    eventually(|| gw.server.usage_total() >= 2).await;
    let ips: Vec<String> = gw
        .server
        .usage_by_key()
        .keys()
        .map(|(_, _, _, _, ip)| ip.clone())
        .collect();
    assert_eq!(ips, ["127.0.0.2", "203.0.113.9"]);
}

#[tokio::test]
async fn without_trusted_proxies_the_tcp_peer_is_judged() {
    let gw = TestGateway::start().await;
    let bearer = gw
        .token_with("reports:read", |c| c["ipa"] = json!(["203.0.113.0/24"]))
        .bearer();
    assert_eq!(
        get_via(&gw, &gw.client, &bearer, Some("203.0.113.9"))
            .await
            .status,
        StatusCode::UNAUTHORIZED
    );
    let local = gw
        .token_with("reports:read", |c| c["ipa"] = json!(["127.0.0.1"]))
        .bearer();
    assert_eq!(
        get_via(&gw, &gw.client, &local, Some("203.0.113.9"))
            .await
            .status,
        StatusCode::OK
    );
}
