//! Narrowing every credential to what its roles and user hold now, from the replica's
//! `role` and `member` entries; failing closed on entry kinds not understood; and IP
//! allowlists judged against the client's trusted address.

use crate::feed::{Feed, entry};
use crate::support::{DenyList, Fixture, api_key, header, sign};
use axum::Router;
use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::http::{Request, StatusCode, header as http_header};
use axum::routing::get;
use latchkey_core::cidr::IpNet;
use latchkey_core::permission::parse_scope;
use latchkey_verify::{
    ClientAddress, InvalidReason, ReplicaOptions, Revocation, RevocationReplica, Scopes,
    StaleReason, VerifyError,
};
use serde_json::{Value, json};
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;
use tower::ServiceExt;

fn options() -> ReplicaOptions {
    ReplicaOptions {
        backoff_initial: Duration::from_millis(10),
        backoff_max: Duration::from_millis(40),
        ..ReplicaOptions::default()
    }
}

async fn applied(replica: &RevocationReplica, seq: i64) {
    tokio::time::timeout(
        Duration::from_secs(5),
        replica.applied().wait_for(|last| *last >= seq),
    )
    .await
    .expect("applied within 5 s")
    .unwrap();
}

/// A feed where `editor` may read and write reports, `viewer` may only read, and user
/// `u_1` of `acme` is an editor; a replica of it; a verifier on that replica.
async fn world() -> (Feed, RevocationReplica, Fixture) {
    let feed = Feed::start().await;
    feed.append("token", &uuid::Uuid::new_v4().to_string(), None);
    feed.set_role("editor", &["reports:read", "reports:write"]);
    feed.set_role("viewer", &["reports:read"]);
    feed.set_member("acme", "u_1", &["editor"]);
    let replica = feed.replica(options()).await;
    let f = Fixture::with(|o| o.revocation = Arc::new(replica.clone())).await;
    replica.attach(f.verifier.evictor());
    feed.wait_for_streams(1).await;
    (feed, replica, f)
}

fn app(f: &Fixture) -> Router {
    let route = |scope: &'static str| {
        get(|| async { "ok" }).route_layer(f.verifier.require(Scopes::all_of([scope])))
    };
    Router::new()
        .route("/read", route("reports:read"))
        .route("/write", route("reports:write"))
        .route("/admin", route("reports:admin"))
}

/// The status of `GET path` with `token`, the request carrying `extension` if any.
async fn status_with<E: Clone + Send + Sync + 'static>(
    f: &Fixture,
    token: &str,
    path: &str,
    extension: Option<E>,
    forwarded_for: Option<&str>,
) -> StatusCode {
    let mut request = Request::builder()
        .uri(path)
        .header(http_header::AUTHORIZATION, format!("Bearer {token}"));
    if let Some(forwarded) = forwarded_for {
        request = request.header("x-forwarded-for", forwarded);
    }
    let mut request = request.body(Body::empty()).unwrap();
    if let Some(extension) = extension {
        request.extensions_mut().insert(extension);
    }
    app(f).oneshot(request).await.unwrap().status()
}

async fn status(f: &Fixture, token: &str, path: &str) -> StatusCode {
    status_with::<ClientAddress>(f, token, path, None, None).await
}

/// A JWT with `claims` changed by `edit`.
fn jwt(f: &Fixture, edit: impl FnOnce(&mut Value)) -> String {
    let mut claims = f.claims();
    edit(&mut claims);
    sign(&f.ed, &header(&f.ed), &claims)
}

/// A long-lived personal JWT of `u_1` holding reports:read and reports:write.
fn personal_long_lived(f: &Fixture) -> String {
    jwt(f, |c| {
        c.as_object_mut().unwrap().remove("exp");
        c["knd"] = json!("jwt");
        c["tkt"] = json!("user");
        c["uid"] = json!("u_1");
        c["scope"] = json!("reports:read reports:write");
        c["rol"] = json!([]);
        c["prm"] = json!(["reports:read", "reports:write"]);
    })
}

#[tokio::test]
async fn a_personal_long_lived_jwt_loses_reports_write_once_its_user_moves_to_a_read_only_role() {
    let (feed, replica, f) = world().await;
    let token = personal_long_lived(&f);
    assert_eq!(status(&f, &token, "/write").await, StatusCode::OK);
    assert_eq!(status(&f, &token, "/read").await, StatusCode::OK);

    applied(&replica, feed.set_member("acme", "u_1", &["viewer"])).await;
    assert_eq!(status(&f, &token, "/write").await, StatusCode::FORBIDDEN);
    assert_eq!(status(&f, &token, "/read").await, StatusCode::OK, "control");
    let principal = f.verifier.verify(&token).await.unwrap();
    assert_eq!(principal.scopes, parse_scope("reports:read").unwrap());
    assert_eq!(f.issuer.introspections(), 0, "narrowed locally");
    assert!(replica.metrics().state_epoch >= 1);
}

#[tokio::test]
async fn a_tenant_jwt_loses_a_permission_once_its_role_drops_it() {
    let (feed, replica, f) = world().await;
    let token = jwt(&f, |c| {
        c.as_object_mut().unwrap().remove("exp");
        c["knd"] = json!("jwt");
        c["scope"] = json!("reports:read reports:write");
        c["rol"] = json!(["editor"]);
        c["prm"] = json!([]);
    });
    assert_eq!(status(&f, &token, "/write").await, StatusCode::OK);

    applied(&replica, feed.set_role("editor", &["reports:read"])).await;
    assert_eq!(status(&f, &token, "/write").await, StatusCode::FORBIDDEN);
    assert_eq!(status(&f, &token, "/read").await, StatusCode::OK, "control");
}

#[tokio::test]
async fn an_access_token_narrows_the_same_way_while_it_is_cached() {
    let (feed, replica, f) = world().await;
    let token = jwt(&f, |c| {
        c["scope"] = json!("reports:read reports:write");
        c["rol"] = json!(["editor"]);
        c["prm"] = json!([]);
    });
    assert_eq!(status(&f, &token, "/write").await, StatusCode::OK);
    assert_eq!(status(&f, &token, "/write").await, StatusCode::OK, "cached");

    applied(&replica, feed.set_role("editor", &["reports:read"])).await;
    assert_eq!(status(&f, &token, "/write").await, StatusCode::FORBIDDEN);
    assert_eq!(status(&f, &token, "/read").await, StatusCode::OK, "control");
    applied(
        &replica,
        feed.set_role("editor", &["reports:read", "reports:write"]),
    )
    .await;
    assert_eq!(
        status(&f, &token, "/write").await,
        StatusCode::OK,
        "given back within its scope"
    );
}

#[tokio::test]
async fn an_api_key_narrows_the_same_way_and_its_cached_answer_is_dropped() {
    let (feed, replica, f) = world().await;
    let (key, id) = api_key();
    f.issuer.answer(
        &key,
        json!({
            "active": true, "scope": "reports:read reports:write", "client_id": id.to_string(),
            "tid": "acme", "iss": f.issuer.url, "rol": ["editor"], "prm": [],
        }),
    );
    assert_eq!(status(&f, &key, "/write").await, StatusCode::OK);
    assert_eq!(status(&f, &key, "/write").await, StatusCode::OK);
    assert_eq!(f.issuer.introspections(), 1, "the second answer was cached");

    // The server has not caught up yet and still answers with the old scope: the
    // replica's state narrows it anyway.
    applied(&replica, feed.set_role("editor", &["reports:read"])).await;
    assert_eq!(status(&f, &key, "/write").await, StatusCode::FORBIDDEN);
    assert_eq!(
        f.issuer.introspections(),
        2,
        "the state change dropped the cache"
    );
    assert_eq!(status(&f, &key, "/read").await, StatusCode::OK, "control");
}

#[tokio::test]
async fn an_api_key_answer_without_rol_and_prm_keeps_the_scope_the_server_gave() {
    let (feed, replica, f) = world().await;
    let (key, id) = api_key();
    f.issuer.activate(&key, id, "reports:read reports:write");
    assert_eq!(status(&f, &key, "/write").await, StatusCode::OK);
    applied(&replica, feed.set_role("viewer", &[])).await;
    assert_eq!(status(&f, &key, "/write").await, StatusCode::OK);
    assert_eq!(
        f.issuer.introspections(),
        2,
        "asked again after the state change"
    );
    f.issuer.activate(&key, id, "reports:read");
    applied(&replica, feed.set_role("viewer", &["reports:read"])).await;
    assert_eq!(status(&f, &key, "/write").await, StatusCode::FORBIDDEN);
}

#[tokio::test]
async fn a_permission_added_to_a_role_never_widens_a_jwt_beyond_its_scope() {
    let (feed, replica, f) = world().await;
    let token = jwt(&f, |c| {
        c["scope"] = json!("reports:read");
        c["rol"] = json!(["editor"]);
        c["prm"] = json!([]);
    });
    let personal = jwt(&f, |c| {
        c["tkt"] = json!("user");
        c["uid"] = json!("u_1");
        c["scope"] = json!("reports:read");
        c["rol"] = json!([]);
        c["prm"] = json!(["reports:read"]);
    });
    applied(
        &replica,
        feed.set_role(
            "editor",
            &["reports:read", "reports:write", "reports:admin"],
        ),
    )
    .await;
    for token in [&token, &personal] {
        assert_eq!(status(&f, token, "/admin").await, StatusCode::FORBIDDEN);
        assert_eq!(status(&f, token, "/write").await, StatusCode::FORBIDDEN);
        assert_eq!(status(&f, token, "/read").await, StatusCode::OK, "control");
    }
}

#[tokio::test]
async fn a_member_entry_with_no_roles_refuses_the_personal_token() {
    let (feed, replica, f) = world().await;
    let token = personal_long_lived(&f);
    let tenant_token = jwt(&f, |c| {
        c["rol"] = json!(["viewer"]);
        c["prm"] = json!([]);
    });
    assert_eq!(status(&f, &token, "/read").await, StatusCode::OK);

    applied(&replica, feed.set_member("acme", "u_1", &[])).await;
    assert_eq!(status(&f, &token, "/read").await, StatusCode::UNAUTHORIZED);
    assert_eq!(
        f.verifier.verify(&token).await.unwrap_err(),
        VerifyError::InvalidToken(InvalidReason::UserLeft)
    );
    assert_eq!(
        status(&f, &tenant_token, "/read").await,
        StatusCode::OK,
        "control: a tenant token has no user to lose"
    );
}

#[tokio::test]
async fn a_personal_token_of_a_user_the_replica_never_heard_of_is_refused() {
    let (_feed, _replica, f) = world().await;
    let stranger = jwt(&f, |c| {
        c["tkt"] = json!("user");
        c["uid"] = json!("u_2");
    });
    assert_eq!(
        f.verifier.verify(&stranger).await.unwrap_err(),
        VerifyError::InvalidToken(InvalidReason::UserLeft)
    );
}

#[tokio::test]
async fn an_unknown_entry_kind_makes_the_replica_stale_and_the_verifier_answer_503() {
    let feed = Feed::start().await;
    feed.set_role("viewer", &["reports:read"]);
    let replica = feed
        .replica(ReplicaOptions {
            fail_open: true,
            ..options()
        })
        .await;
    let f = Fixture::with(|o| o.revocation = Arc::new(replica.clone())).await;
    feed.wait_for_streams(1).await;
    let token = jwt(&f, |c| {
        c["rol"] = json!(["viewer"]);
        c["prm"] = json!([]);
    });

    // Control: a kind it knows keeps it current.
    applied(&replica, feed.set_role("viewer", &["reports:read"])).await;
    assert_eq!(status(&f, &token, "/read").await, StatusCode::OK);
    assert_eq!(replica.metrics().stale_reason, None);

    feed.push_raw(entry(3, "group", "g_1", None));
    crate::feed::wait_until(|| replica.is_stale()).await;
    assert_eq!(
        status(&f, &token, "/read").await,
        StatusCode::SERVICE_UNAVAILABLE
    );
    assert!(matches!(
        f.verifier.verify(&token).await.unwrap_err(),
        VerifyError::Unavailable(_)
    ));
    let metrics = replica.metrics();
    assert_eq!(metrics.stale_reason, Some(StaleReason::UnknownEntryKind));
    assert_eq!(metrics.last_seq, 2, "the entry was not skipped");
    assert_eq!(
        latchkey_verify::RevocationCheck::check(&replica, &id(), None),
        Revocation::Stale,
        "even with fail_open"
    );

    // Later entries of known kinds do not make it current again.
    feed.heartbeat();
    feed.set_role("viewer", &["reports:read"]);
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(replica.is_stale());
}

fn id() -> latchkey_core::TokenId {
    latchkey_core::TokenId::parse(&uuid::Uuid::new_v4().to_string()).unwrap()
}

fn ip(text: &str) -> IpAddr {
    text.parse().unwrap()
}

fn allowlisted(f: &Fixture) -> String {
    jwt(f, |c| c["ipa"] = json!(["203.0.113.0/24", "2001:db8::/32"]))
}

#[tokio::test]
async fn a_jwt_with_an_allowlist_is_refused_without_an_address_and_from_outside_it() {
    let f = Fixture::start().await;
    let token = allowlisted(&f);
    assert_eq!(
        f.verifier.verify(&token).await.unwrap_err(),
        VerifyError::InvalidToken(InvalidReason::AddressUnknown)
    );
    assert_eq!(
        f.verifier
            .verify_from(&token, Some(ip("198.51.100.1")))
            .await
            .unwrap_err(),
        VerifyError::InvalidToken(InvalidReason::AddressNotAllowed)
    );
    for inside in ["203.0.113.9", "::ffff:203.0.113.9", "2001:db8::1"] {
        let principal = f.verifier.verify_from(&token, Some(ip(inside))).await;
        assert!(principal.is_ok(), "{inside}");
    }
    let open = f.token(&f.ed);
    assert!(
        f.verifier.verify(&open).await.is_ok(),
        "control: no allowlist"
    );
    // Refused from outside even once cached as verified.
    assert!(
        f.verifier
            .verify_from(&token, Some(ip("198.51.100.1")))
            .await
            .is_err()
    );
}

#[tokio::test]
async fn a_malformed_allowlist_claim_is_refused() {
    let f = Fixture::start().await;
    for bad in [
        json!(["not-a-network"]),
        json!("203.0.113.0/24"),
        json!([7]),
    ] {
        let token = jwt(&f, |c| c["ipa"] = bad.clone());
        assert!(
            matches!(
                f.verifier
                    .verify_from(&token, Some(ip("203.0.113.9")))
                    .await
                    .unwrap_err(),
                VerifyError::InvalidToken(
                    InvalidReason::InvalidClaim("ipa") | InvalidReason::ClaimType("ipa")
                )
            ),
            "{bad}"
        );
    }
}

#[tokio::test]
async fn the_layer_judges_the_client_address_from_the_app_or_the_tcp_peer() {
    let trusted = vec![IpNet::parse("10.0.0.0/8").unwrap()];
    let f = Fixture::with(|o| o.trusted_proxies = trusted).await;
    let token = allowlisted(&f);
    let peer = |text: &str| Some(ConnectInfo(SocketAddr::new(ip(text), 4000)));

    assert_eq!(
        status(&f, &token, "/read").await,
        StatusCode::UNAUTHORIZED,
        "no address known"
    );
    let app_says = |text: &str| Some(ClientAddress(ip(text)));
    assert_eq!(
        status_with(&f, &token, "/read", app_says("203.0.113.9"), None).await,
        StatusCode::OK
    );
    assert_eq!(
        status_with(&f, &token, "/read", app_says("198.51.100.1"), None).await,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        status_with(&f, &token, "/read", peer("203.0.113.9"), None).await,
        StatusCode::OK
    );
    // A trusted proxy names the client.
    assert_eq!(
        status_with(&f, &token, "/read", peer("10.0.0.1"), Some("203.0.113.9")).await,
        StatusCode::OK
    );
    assert_eq!(
        status_with(&f, &token, "/read", peer("10.0.0.1"), Some("198.51.100.1")).await,
        StatusCode::UNAUTHORIZED
    );
    // A peer that is no trusted proxy cannot name anyone else.
    assert_eq!(
        status_with(
            &f,
            &token,
            "/read",
            peer("198.51.100.1"),
            Some("203.0.113.9")
        )
        .await,
        StatusCode::UNAUTHORIZED
    );
}

#[tokio::test]
async fn an_api_keys_introspected_allowlist_is_enforced_too() {
    let f = Fixture::start().await;
    let (key, id) = api_key();
    f.issuer.answer(
        &key,
        json!({
            "active": true, "scope": "reports:read", "client_id": id.to_string(),
            "tid": "acme", "iss": f.issuer.url, "ip_allowlist": ["203.0.113.0/24"],
        }),
    );
    assert_eq!(
        f.verifier.verify(&key).await.unwrap_err(),
        VerifyError::InvalidToken(InvalidReason::AddressUnknown)
    );
    assert!(
        f.verifier
            .verify_from(&key, Some(ip("203.0.113.1")))
            .await
            .is_ok()
    );
    assert_eq!(
        f.verifier
            .verify_from(&key, Some(ip("198.51.100.1")))
            .await
            .unwrap_err(),
        VerifyError::InvalidToken(InvalidReason::AddressNotAllowed)
    );
}

#[tokio::test]
async fn an_old_style_jwt_without_rol_and_prm_goes_to_introspection() {
    let f = Fixture::start().await;
    let old = jwt(&f, |c| {
        let claims = c.as_object_mut().unwrap();
        claims.remove("rol");
        claims.remove("prm");
        claims.insert("scope".into(), json!("reports:read reports:write"));
    });
    assert_eq!(
        f.verifier.verify(&old).await.unwrap_err(),
        VerifyError::InvalidToken(InvalidReason::Inactive),
        "unknown to the issuer"
    );
    assert_eq!(f.issuer.introspections(), 1);
    f.issuer.answer(
        &old,
        json!({ "active": true, "scope": "reports:read", "iss": f.issuer.url }),
    );
    f.clock.advance(Duration::from_secs(6));
    let principal = f.verifier.verify(&old).await.unwrap();
    assert_eq!(principal.scopes, parse_scope("reports:read").unwrap());
    f.verifier.verify(&old).await.unwrap();
    assert_eq!(f.issuer.introspections(), 2, "the answer is cached");

    // Control: a token that carries them is taken as issued.
    let new = f.token(&f.ed);
    assert!(f.verifier.verify(&new).await.is_ok());
    assert_eq!(f.issuer.introspections(), 2);
}

#[tokio::test]
async fn a_jwt_with_only_one_of_rol_and_prm_is_not_a_token_latchkey_issued() {
    let f = Fixture::start().await;
    let half = jwt(&f, |c| {
        c.as_object_mut().unwrap().remove("prm");
    });
    assert_eq!(
        f.verifier.verify(&half).await.unwrap_err(),
        VerifyError::InvalidToken(InvalidReason::MissingClaim("prm"))
    );
}

#[tokio::test]
async fn a_deny_list_without_state_sends_long_lived_jwts_to_introspection() {
    let deny = DenyList::new(Revocation::NotRevoked);
    let f = Fixture::with(|o| o.revocation = deny.clone()).await;
    let token = personal_long_lived(&f);
    f.issuer.answer(
        &token,
        json!({ "active": true, "scope": "reports:read", "iss": f.issuer.url }),
    );
    let principal = f.verifier.verify(&token).await.unwrap();
    assert_eq!(principal.scopes, parse_scope("reports:read").unwrap());
    assert_eq!(f.issuer.introspections(), 1);

    // Once it knows the state, it narrows locally.
    deny.script(|s| {
        s.roles.insert("viewer".into(), vec!["reports:read".into()]);
        s.members.insert("u_1".into(), vec!["viewer".into()]);
    });
    let principal = f.verifier.verify(&token).await.unwrap();
    assert_eq!(principal.scopes, parse_scope("reports:read").unwrap());
    assert_eq!(f.issuer.introspections(), 1);
}

#[tokio::test]
async fn an_introspection_answer_is_only_served_at_the_state_it_was_asked_at() {
    let deny = DenyList::new(Revocation::NotRevoked);
    deny.script(|_| {});
    let f = Fixture::with(|o| o.revocation = deny.clone()).await;
    let (key, id) = api_key();
    f.issuer.activate(&key, id, "reports:read reports:write");
    let scopes = |p: Arc<latchkey_verify::Principal>| p.scopes.clone();
    let both = parse_scope("reports:read reports:write").unwrap();
    assert_eq!(scopes(f.verifier.verify(&key).await.unwrap()), both);
    assert_eq!(scopes(f.verifier.verify(&key).await.unwrap()), both);
    assert_eq!(f.issuer.introspections(), 1, "cached while nothing changed");

    // A role changes (this deny list evicts nothing itself); the server now answers
    // with the narrower grant.
    f.issuer.activate(&key, id, "reports:read");
    deny.script(|s| {
        s.roles.insert("viewer".into(), vec!["reports:read".into()]);
    });
    assert_eq!(
        scopes(f.verifier.verify(&key).await.unwrap()),
        parse_scope("reports:read").unwrap()
    );
    assert_eq!(f.issuer.introspections(), 2);
}
