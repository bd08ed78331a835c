//! Trusts and the JWT-bearer grant (docs/API.md, "Trusts", "The JWT-bearer grant"): a
//! fake OIDC issuer served on loopback by the test (discovery plus JWKS) signs
//! assertions shaped like GitHub Actions ID tokens; each refusal is tried alone, beside
//! the control that works.

use crate::both_backends;
use crate::helpers::{Reply, TestApp};
use aws_lc_rs::signature::{Ed25519KeyPair, KeyPair};
use latchkey_core::jwt::b64url_encode;
use latchkey_verify::{
    Credential, ReplicaOptions, RevocationReplica, Verifier, VerifierOptions, VerifyError,
};
use serde_json::{Value, json};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

both_backends!(
    trusts_are_created_listed_read_renamed_and_revoked_like_tokens,
    a_trust_grants_no_more_than_its_creator_holds,
    bad_trusts_are_refused_and_nothing_is_stored,
    a_github_actions_id_token_is_exchanged_for_the_trusts_grant,
    every_bad_assertion_is_refused_with_invalid_grant_and_audited,
    subject_patterns_match_exactly_or_by_prefix,
    a_jti_is_accepted_once_unless_the_trust_allows_reuse,
    revoking_a_trust_refuses_its_assertions_and_revokes_its_tokens_through_the_feed,
    an_unknown_kid_refetches_the_issuers_keys_at_most_once_per_interval,
    a_trust_issued_token_introspects_active_until_the_trust_is_revoked,
    a_tenants_network_rules_judge_exchanges_too,
    an_exchange_with_a_dpop_proof_is_bound_and_a_policy_can_require_one,
);

const GRANT: &str = "urn:ietf:params:oauth:grant-type:jwt-bearer";
const AUDIENCE: &str = "https://latchkey.test";
const REPO_SUBJECT: &str = "repo:acme/app:ref:refs/heads/main";

/// A fake OIDC issuer on loopback: discovery, a JWKS it can change, and an Ed25519 key.
struct Issuer {
    url: String,
    key: Ed25519KeyPair,
    kid: String,
    jwks: Arc<Mutex<Value>>,
    fetches: Arc<AtomicUsize>,
}

fn ed_jwk(key: &Ed25519KeyPair, kid: &str) -> Value {
    json!({
        "kty": "OKP", "crv": "Ed25519", "kid": kid, "use": "sig", "alg": "EdDSA",
        "x": b64url_encode(key.public_key().as_ref()),
    })
}

impl Issuer {
    async fn start() -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let key = Ed25519KeyPair::generate().unwrap();
        let kid = "key-1".to_owned();
        let jwks = Arc::new(Mutex::new(json!({ "keys": [ed_jwk(&key, &kid)] })));
        let fetches = Arc::new(AtomicUsize::new(0));
        let discovery = json!({
            "issuer": url,
            "jwks_uri": format!("{url}/.well-known/jwks"),
            "id_token_signing_alg_values_supported": ["EdDSA"],
        });
        let (served, counted) = (jwks.clone(), fetches.clone());
        let app = axum::Router::new()
            .route(
                "/.well-known/openid-configuration",
                axum::routing::get(move || {
                    let discovery = discovery.clone();
                    async move { axum::Json(discovery) }
                }),
            )
            .route(
                "/.well-known/jwks",
                axum::routing::get(move || {
                    counted.fetch_add(1, Ordering::SeqCst);
                    let keys = served.lock().unwrap().clone();
                    async move { axum::Json(keys) }
                }),
            );
        tokio::spawn(async move {
            axum::serve(listener, app).await.unwrap();
        });
        Self {
            url,
            key,
            kid,
            jwks,
            fetches,
        }
    }

    /// Claims shaped like a GitHub Actions ID token for `sub`, issued now by `app`'s clock.
    fn github(&self, app: &TestApp, sub: &str) -> Value {
        let now = app.now().unix_seconds();
        json!({
            "iss": self.url,
            "aud": AUDIENCE,
            "sub": sub,
            "jti": uuid::Uuid::new_v4().to_string(),
            "iat": now, "nbf": now - 5, "exp": now + 300,
            "repository": "acme/app", "repository_owner": "acme",
            "workflow": "deploy", "ref": "refs/heads/main", "sha": "0123abcd",
            "run_id": "4242", "run_attempt": "1", "actor": "octocat",
            "event_name": "push", "environment": "production",
        })
    }

    fn header(&self) -> Value {
        json!({ "alg": "EdDSA", "typ": "JWT", "kid": self.kid })
    }

    fn sign(&self, claims: &Value) -> String {
        sign_with(&self.key, &self.header(), claims)
    }
}

fn sign_with(key: &Ed25519KeyPair, header: &Value, claims: &Value) -> String {
    let input = format!(
        "{}.{}",
        b64url_encode(header.to_string().as_bytes()),
        b64url_encode(claims.to_string().as_bytes())
    );
    let signature = key.sign(input.as_bytes());
    format!("{input}.{}", b64url_encode(signature.as_ref()))
}

async fn acme(app: &TestApp) {
    app.seed_catalogue().await;
    app.create_tenant("acme").await;
    app.put_member("acme", "u_42", &["editor"]).await;
}

fn trust_body(issuer: &Issuer, subject: &str) -> Value {
    json!({
        "name": "deploy from main",
        "issuer": issuer.url,
        "audience": AUDIENCE,
        "subject": subject,
        "claims": { "repository": "acme/app", "workflow": "deploy" },
        "roles": ["viewer"],
        "permissions": ["billing:read"],
        "access_token_ttl_seconds": 600,
    })
}

async fn create_trust(app: &TestApp, tenant: &str, body: Value) -> Value {
    let reply = app
        .post(&format!("/v1/tenants/{tenant}/trusts"), body)
        .await;
    reply.assert_status(201);
    reply.body
}

async fn jwt_bearer(app: &TestApp, assertion: &str, extra: &[(&str, &str)]) -> Reply {
    let mut pairs = vec![("grant_type", GRANT), ("assertion", assertion)];
    pairs.extend_from_slice(extra);
    app.form("/oauth/token", None, &pairs).await
}

/// A refusal case: its name, the assertion, and extra form parameters.
type Case<'a> = (&'a str, String, Vec<(&'a str, &'a str)>);

#[track_caller]
fn assert_invalid_grant(reply: &Reply, case: &str) {
    assert_eq!(reply.status, 400, "{case}: {}", reply.text);
    assert_eq!(
        reply.body["error"], "invalid_grant",
        "{case}: {}",
        reply.text
    );
    assert!(reply.body.get("access_token").is_none(), "{case}");
    assert_eq!(reply.header("cache-control"), "no-store", "{case}");
}

fn claims_of(jwt: &str) -> Value {
    let payload = jwt.split('.').nth(1).unwrap();
    serde_json::from_slice(&latchkey_core::jwt::b64url_decode(payload).unwrap()).unwrap()
}

async fn trusts_are_created_listed_read_renamed_and_revoked_like_tokens(app: TestApp) {
    acme(&app).await;
    let issuer = Issuer::start().await;
    let trust = create_trust(&app, "acme", trust_body(&issuer, REPO_SUBJECT)).await;
    let id = trust["id"].as_str().unwrap().to_owned();
    assert_eq!(trust["tenant_id"], "acme");
    assert_eq!(trust["issuer"], issuer.url.as_str());
    assert_eq!(trust["subject"], REPO_SUBJECT);
    assert_eq!(trust["roles"], json!(["viewer"]));
    assert_eq!(trust["permissions"], json!(["billing:read"]));
    assert_eq!(trust["access_token_ttl_seconds"], 600);
    assert_eq!(trust["replay_protection"], true);
    assert_eq!(trust["revoked_at"], Value::Null);

    let listed = app.get("/v1/tenants/acme/trusts").await;
    listed.assert_status(200);
    assert_eq!(listed.body["items"].as_array().unwrap().len(), 1);
    assert_eq!(listed.body["items"][0]["id"], id.as_str());
    let shown = app.get(&format!("/v1/trusts/{id}")).await;
    shown.assert_status(200);
    assert_eq!(shown.body, trust);

    // Only the name changes; every other field is immutable, unknown keys are 400.
    for field in ["subject", "issuer", "claims", "roles", "permissions"] {
        app.patch(&format!("/v1/trusts/{id}"), json!({ field: "x" }))
            .await
            .assert_problem(422, "immutable-field");
    }
    app.patch(&format!("/v1/trusts/{id}"), json!({ "colour": "red" }))
        .await
        .assert_status(400);
    let renamed = app
        .patch(&format!("/v1/trusts/{id}"), json!({ "name": "deploys" }))
        .await;
    renamed.assert_status(200);
    assert_eq!(renamed.body["name"], "deploys");
    assert_eq!(renamed.body["subject"], REPO_SUBJECT);

    // Another tenant's manager does not learn it exists.
    app.create_tenant("globex").await;
    let globex = app.manager_key("globex").await;
    let other = app
        .call(
            reqwest::Method::GET,
            &format!("/v1/trusts/{id}"),
            Some(&globex),
            None,
        )
        .await;
    other.assert_problem(404, "not-found");
    let other = app
        .call(
            reqwest::Method::DELETE,
            &format!("/v1/trusts/{id}"),
            Some(&globex),
            None,
        )
        .await;
    other.assert_problem(404, "not-found");

    app.delete(&format!("/v1/trusts/{id}"))
        .await
        .assert_status(204);
    let revoked = app.get(&format!("/v1/trusts/{id}")).await;
    assert!(revoked.body["revoked_at"].is_number() || revoked.body["revoked_at"].is_string());
    app.delete(&format!("/v1/trusts/{id}"))
        .await
        .assert_status(204);
    assert_eq!(app.audit_count("trust.created").await, 1);
    assert_eq!(app.audit_count("trust.renamed").await, 1);
    assert_eq!(app.audit_count("trust.revoked").await, 1, "revoked once");
    app.get("/v1/trusts/not-an-id").await.assert_status(400);
}

async fn a_trust_grants_no_more_than_its_creator_holds(app: TestApp) {
    acme(&app).await;
    let issuer = Issuer::start().await;
    let manager = app.manager_key("acme").await;
    let as_manager = |body: Value| {
        let app = &app;
        let manager = manager.clone();
        async move {
            app.call(
                reqwest::Method::POST,
                "/v1/tenants/acme/trusts",
                Some(&manager),
                Some(body),
            )
            .await
        }
    };
    // A manager grants the tenant's permissions, never the built-in ones.
    let mut body = trust_body(&issuer, REPO_SUBJECT);
    as_manager(body.clone()).await.assert_status(201);
    body["permissions"] = json!(["latchkey:admin"]);
    let refused = as_manager(body.clone()).await;
    assert!(
        refused.status == 403 || refused.status == 422,
        "{}",
        refused.text
    );
    body["permissions"] = json!(["latchkey:manage"]);
    as_manager(body.clone())
        .await
        .assert_problem(422, "invalid-value");
    // created_by bounds the grant by what that user holds (u_42 is an editor).
    let mut body = trust_body(&issuer, REPO_SUBJECT);
    body["created_by"] = json!("u_42");
    body["roles"] = json!(["editor"]);
    body["permissions"] = json!([]);
    app.post("/v1/tenants/acme/trusts", body.clone())
        .await
        .assert_status(201);
    body["permissions"] = json!(["billing:read"]);
    let refused = app.post("/v1/tenants/acme/trusts", body).await;
    assert_eq!(refused.status, 403, "{}", refused.text);
    // The other tenant's manager cannot create one in acme.
    app.create_tenant("globex").await;
    let globex = app.manager_key("globex").await;
    app.call(
        reqwest::Method::POST,
        "/v1/tenants/acme/trusts",
        Some(&globex),
        Some(trust_body(&issuer, REPO_SUBJECT)),
    )
    .await
    .assert_problem(404, "not-found");
    assert_eq!(app.audit_count("trust.created").await, 2);
}

async fn bad_trusts_are_refused_and_nothing_is_stored(app: TestApp) {
    acme(&app).await;
    let issuer = Issuer::start().await;
    let good = trust_body(&issuer, REPO_SUBJECT);
    let cases: Vec<(&str, Value)> = vec![
        ("issuer", json!("http://ci.example")),
        ("issuer", json!("ftp://ci.example")),
        ("issuer", json!("https://ci.example/?a=b")),
        ("issuer", json!("https://user:pw@ci.example")),
        ("subject", json!("*")),
        ("subject", json!("repo:*:main")),
        ("subject", json!("")),
        ("claims", json!({ "sub": "x" })),
        ("claims", json!({ "repository": "" })),
        ("audience", json!("")),
        ("roles", json!(["no-such-role"])),
        ("permissions", json!(["no:such"])),
        ("access_token_ttl_seconds", json!(0)),
        ("access_token_ttl_seconds", json!(10_000_000)),
    ];
    for (field, value) in cases {
        let mut body = good.clone();
        body[field] = value.clone();
        let reply = app.post("/v1/tenants/acme/trusts", body).await;
        assert!(
            (400..500).contains(&reply.status) && reply.status != 404,
            "{field} = {value}: {} {}",
            reply.status,
            reply.text
        );
        assert_eq!(reply.header("content-type"), "application/problem+json");
    }
    let mut body = good.clone();
    body["roles"] = json!([]);
    body["permissions"] = json!([]);
    app.post("/v1/tenants/acme/trusts", body)
        .await
        .assert_problem(422, "invalid-value");
    app.post("/v1/tenants/nope/trusts", good)
        .await
        .assert_problem(404, "not-found");
    let listed = app.get("/v1/tenants/acme/trusts").await;
    assert_eq!(listed.body["items"], json!([]));
    assert_eq!(app.audit_count("trust.created").await, 0);
}

async fn following_verifier(app: &TestApp) -> (Verifier, RevocationReplica) {
    let credential = Credential::new(app.introspection_key().await);
    let replica =
        RevocationReplica::start(&app.base, credential.clone(), ReplicaOptions::default()).unwrap();
    let verifier = Verifier::discover(
        &app.base,
        VerifierOptions {
            credential: Some(credential),
            revocation: Arc::new(replica.clone()),
            ..VerifierOptions::default()
        },
    )
    .await
    .unwrap();
    replica.attach(verifier.evictor());
    tokio::time::timeout(Duration::from_secs(10), replica.ready())
        .await
        .unwrap();
    (verifier, replica)
}

async fn a_github_actions_id_token_is_exchanged_for_the_trusts_grant(app: TestApp) {
    acme(&app).await;
    let issuer = Issuer::start().await;
    let trust = create_trust(&app, "acme", trust_body(&issuer, "repo:acme/app:*")).await;
    let trust_id = trust["id"].as_str().unwrap();
    let claims = issuer.github(&app, REPO_SUBJECT);
    let reply = jwt_bearer(&app, &issuer.sign(&claims), &[]).await;
    reply.assert_status(200);
    assert_eq!(reply.header("cache-control"), "no-store");
    assert_eq!(reply.body["token_type"], "Bearer");
    assert_eq!(reply.body["expires_in"], 600);
    assert_eq!(reply.body["scope"], "billing:read reports:read");
    assert!(reply.body.get("refresh_token").is_none());
    let jwt = reply.body["access_token"].as_str().unwrap();
    let access = claims_of(jwt);
    assert_eq!(access["sub"], REPO_SUBJECT);
    assert_eq!(access["client_id"], trust_id);
    assert_eq!(access["trust_id"], trust_id);
    assert_eq!(access["tid"], "acme");
    assert_eq!(access["tkt"], "tenant");
    assert_eq!(access["rol"], json!(["viewer"]));
    assert_eq!(access["iss"], app.base.as_str());

    // A resource server accepts it with the trust's scopes.
    let (verifier, _replica) = following_verifier(&app).await;
    let principal = verifier
        .verify(jwt)
        .await
        .expect("the trust's JWT verifies");
    assert_eq!(principal.token_id.to_string(), trust_id);
    // Handlers behind the tower layer learn who the outside caller is.
    let caller = principal.trust.as_ref().expect("a trust caller");
    assert_eq!(caller.trust_id.to_string(), trust_id);
    assert_eq!(caller.subject, REPO_SUBJECT);
    assert!(
        principal
            .scopes
            .contains(&latchkey_core::Permission::parse("reports:read").unwrap())
    );

    // A narrower scope narrows it; a wider one is invalid_scope.
    let narrow = jwt_bearer(
        &app,
        &issuer.sign(&issuer.github(&app, REPO_SUBJECT)),
        &[("scope", "reports:read")],
    )
    .await;
    narrow.assert_status(200);
    assert_eq!(narrow.body["scope"], "reports:read");
    let wide = jwt_bearer(
        &app,
        &issuer.sign(&issuer.github(&app, REPO_SUBJECT)),
        &[("scope", "reports:write")],
    )
    .await;
    assert_eq!(wide.status, 400);
    assert_eq!(wide.body["error"], "invalid_scope");

    // The five Ws: who (issuer, subject, the run), what, when, where.
    let events = app
        .wait_for_audit(&format!("action=trust.exchanged&token_id={trust_id}"), 2)
        .await;
    let event = events.last().unwrap();
    let details = &event["details"];
    assert_eq!(details["issuer"], issuer.url.as_str());
    assert_eq!(details["subject"], REPO_SUBJECT);
    assert_eq!(details["run"]["repository"], "acme/app");
    assert_eq!(details["run"]["workflow"], "deploy");
    assert_eq!(details["run"]["run_id"], "4242");
    assert_eq!(details["assertion_jti"], claims["jti"]);
    assert_eq!(event["tenant_id"], "acme");
    assert!(!event.to_string().contains(&issuer.sign(&claims)[..40]));
    // The metadata lists the grant.
    let metadata = app.get("/.well-known/oauth-authorization-server").await;
    assert!(
        metadata.body["grant_types_supported"]
            .as_array()
            .unwrap()
            .contains(&json!(GRANT))
    );
}

async fn every_bad_assertion_is_refused_with_invalid_grant_and_audited(app: TestApp) {
    acme(&app).await;
    app.create_tenant("globex").await;
    let issuer = Issuer::start().await;
    create_trust(&app, "acme", trust_body(&issuer, REPO_SUBJECT)).await;
    let mut globex_body = trust_body(&issuer, "repo:globex/*");
    globex_body["claims"] = json!({});
    let globex = create_trust(&app, "globex", globex_body).await;
    let globex_id = globex["id"].as_str().unwrap().to_owned();
    let good = issuer.github(&app, REPO_SUBJECT);
    let now = app.now().unix_seconds();
    let with = |name: &str, value: Value| {
        let mut claims = issuer.github(&app, REPO_SUBJECT);
        claims[name] = value;
        claims
    };
    let without = |name: &str| {
        let mut claims = issuer.github(&app, REPO_SUBJECT);
        claims.as_object_mut().unwrap().remove(name);
        claims
    };
    let outsider = Ed25519KeyPair::generate().unwrap();
    let public_key = issuer.key.public_key().as_ref().to_vec();
    let hs256 = {
        let header = json!({ "alg": "HS256", "typ": "JWT", "kid": issuer.kid });
        let input = format!(
            "{}.{}",
            b64url_encode(header.to_string().as_bytes()),
            b64url_encode(good.to_string().as_bytes())
        );
        let key = aws_lc_rs::hmac::Key::new(aws_lc_rs::hmac::HMAC_SHA256, &public_key);
        let tag = aws_lc_rs::hmac::sign(&key, input.as_bytes());
        format!("{input}.{}", b64url_encode(tag.as_ref()))
    };
    let none = format!(
        "{}.{}.",
        b64url_encode(
            json!({ "alg": "none", "typ": "JWT" })
                .to_string()
                .as_bytes()
        ),
        b64url_encode(good.to_string().as_bytes())
    );
    let valid = issuer.sign(&good);
    let tampered = {
        let mut parts: Vec<String> = valid.split('.').map(str::to_owned).collect();
        parts[1] = b64url_encode(
            with("sub", json!("repo:acme/app:ref:refs/heads/evil"))
                .to_string()
                .as_bytes(),
        );
        parts.join(".")
    };
    let cases: Vec<Case> = vec![
        (
            "unknown issuer",
            issuer.sign(&with("iss", json!("https://evil.example"))),
            vec![],
        ),
        (
            "wrong audience",
            issuer.sign(&with("aud", json!("https://other.example"))),
            vec![],
        ),
        (
            "audience array without ours",
            issuer.sign(&with("aud", json!(["a", "b"]))),
            vec![],
        ),
        (
            "expired",
            issuer.sign(&with("exp", json!(now - 120))),
            vec![],
        ),
        (
            "nbf in the future",
            issuer.sign(&with("nbf", json!(now + 600))),
            vec![],
        ),
        (
            "iat in the future",
            issuer.sign(&with("iat", json!(now + 600))),
            vec![],
        ),
        ("no exp", issuer.sign(&without("exp")), vec![]),
        (
            "exp more than a day ahead",
            issuer.sign(&with("exp", json!(now + 2 * 86_400))),
            vec![],
        ),
        (
            "a jti longer than 256",
            issuer.sign(&with("jti", json!("j".repeat(257)))),
            vec![],
        ),
        (
            "a sub longer than 1,024",
            issuer.sign(&with(
                "sub",
                json!(format!(
                    "repo:acme/app:ref:refs/heads/main{}",
                    "x".repeat(1024)
                )),
            )),
            vec![],
        ),
        (
            "exp as a string",
            issuer.sign(&with("exp", json!("9999999999"))),
            vec![],
        ),
        ("alg none", none, vec![]),
        ("HS256 keyed with the public key", hs256, vec![]),
        (
            "unknown kid",
            sign_with(&issuer.key, &json!({"alg":"EdDSA","kid":"key-9"}), &good),
            vec![],
        ),
        (
            "no kid",
            sign_with(&issuer.key, &json!({"alg":"EdDSA"}), &good),
            vec![],
        ),
        (
            "a key outside the JWKS",
            sign_with(&outsider, &issuer.header(), &good),
            vec![],
        ),
        ("tampered payload", tampered, vec![]),
        (
            "token-supplied key",
            sign_with(
                &outsider,
                &json!({"alg":"EdDSA","kid":issuer.kid,"jwk":ed_jwk(&outsider, "x")}),
                &good,
            ),
            vec![],
        ),
        (
            "subject mismatch",
            issuer.sign(&with("sub", json!("repo:acme/app:ref:refs/heads/dev"))),
            vec![],
        ),
        (
            "missing required claim",
            issuer.sign(&without("workflow")),
            vec![],
        ),
        (
            "required claim differs",
            issuer.sign(&with("repository", json!("acme/other"))),
            vec![],
        ),
        (
            "required claim of another type",
            issuer.sign(&with("workflow", json!(["deploy"]))),
            vec![],
        ),
        ("no jti", issuer.sign(&without("jti")), vec![]),
        (
            "access token typ",
            sign_with(
                &issuer.key,
                &json!({"alg":"EdDSA","typ":"at+jwt","kid":issuer.kid}),
                &good,
            ),
            vec![],
        ),
        (
            "another tenant's trust",
            issuer.sign(&issuer.github(&app, REPO_SUBJECT)),
            vec![("client_id", globex_id.as_str())],
        ),
        ("malformed", "not.a.jwt".to_owned(), vec![]),
        ("two segments", "abc.def".to_owned(), vec![]),
    ];
    let failures_before = app.audit_count("auth.failed").await;
    let count = cases.len();
    for (case, assertion, extra) in &cases {
        let reply = jwt_bearer(&app, assertion, extra).await;
        assert_invalid_grant(&reply, case);
    }
    // The control: the good assertion works, once.
    jwt_bearer(&app, &valid, &[]).await.assert_status(200);
    let replay = jwt_bearer(&app, &valid, &[]).await;
    assert_invalid_grant(&replay, "replayed jti");
    // Nothing was issued for any refusal; each is audited with its reason.
    app.wait_for_audit("action=trust.exchanged", 1).await;
    assert_eq!(app.audit_count("trust.exchanged").await, 1);
    let events = app
        .wait_for_audit(
            "action=auth.failed&limit=200",
            failures_before as usize + count + 1,
        )
        .await;
    let reasons: Vec<&str> = events
        .iter()
        .filter_map(|e| e["details"]["reason"].as_str())
        .collect();
    for reason in [
        "unknown_issuer",
        "wrong_audience",
        "expired",
        "exp_too_far",
        "not_yet_valid",
        "issued_in_future",
        "algorithm_not_allowed",
        "unknown_key",
        "bad_signature",
        "subject_mismatch",
        "claim_mismatch",
        "missing_jti",
        "replayed_jti",
        "malformed_assertion",
    ] {
        assert!(reasons.contains(&reason), "{reason} in {reasons:?}");
    }
    // A missing assertion is a plain invalid_request.
    let missing = app
        .form("/oauth/token", None, &[("grant_type", GRANT)])
        .await;
    assert_eq!(missing.status, 400);
    assert_eq!(missing.body["error"], "invalid_request");
}

async fn subject_patterns_match_exactly_or_by_prefix(app: TestApp) {
    acme(&app).await;
    let issuer = Issuer::start().await;
    let mut body = trust_body(&issuer, "repo:acme/app:*");
    body["claims"] = json!({});
    create_trust(&app, "acme", body).await;
    for (subject, accepted) in [
        ("repo:acme/app:ref:refs/heads/main", true),
        ("repo:acme/app:environment:production", true),
        ("repo:acme/app:", true),
        ("repo:acme/app", false),
        ("repo:acme/apple:ref:refs/heads/main", false),
        ("repo:acme/*", false),
        ("REPO:acme/app:ref:x", false),
        ("", false),
    ] {
        let reply = jwt_bearer(&app, &issuer.sign(&issuer.github(&app, subject)), &[]).await;
        if accepted {
            reply.assert_status(200);
            assert_eq!(
                claims_of(reply.body["access_token"].as_str().unwrap())["sub"],
                subject
            );
        } else {
            assert_invalid_grant(&reply, subject);
        }
    }
}

async fn a_jti_is_accepted_once_unless_the_trust_allows_reuse(app: TestApp) {
    acme(&app).await;
    let issuer = Issuer::start().await;
    create_trust(&app, "acme", trust_body(&issuer, REPO_SUBJECT)).await;
    let assertion = issuer.sign(&issuer.github(&app, REPO_SUBJECT));
    jwt_bearer(&app, &assertion, &[]).await.assert_status(200);
    assert_invalid_grant(&jwt_bearer(&app, &assertion, &[]).await, "replay");
    // Expired rows are pruned by maintenance; the replay still fails, on exp.
    app.clock.advance(Duration::from_secs(3600));
    app.maintain().await;
    let db = app.db().await;
    let left: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM assertion_jtis")
        .fetch_one(&db)
        .await
        .unwrap();
    db.close().await;
    assert_eq!(left, 0);
    assert_invalid_grant(
        &jwt_bearer(&app, &assertion, &[]).await,
        "replay after pruning",
    );

    // A trust that allows reuse (a platform that retries with one token) takes it again.
    let other = Issuer::start().await;
    let mut body = trust_body(&other, REPO_SUBJECT);
    body["replay_protection"] = json!(false);
    create_trust(&app, "acme", body).await;
    let reused = other.sign(&other.github(&app, REPO_SUBJECT));
    jwt_bearer(&app, &reused, &[]).await.assert_status(200);
    jwt_bearer(&app, &reused, &[]).await.assert_status(200);
}

async fn revoking_a_trust_refuses_its_assertions_and_revokes_its_tokens_through_the_feed(
    app: TestApp,
) {
    acme(&app).await;
    let issuer = Issuer::start().await;
    let trust = create_trust(&app, "acme", trust_body(&issuer, REPO_SUBJECT)).await;
    let id = trust["id"].as_str().unwrap();
    let (verifier, _replica) = following_verifier(&app).await;
    let reply = jwt_bearer(&app, &issuer.sign(&issuer.github(&app, REPO_SUBJECT)), &[]).await;
    reply.assert_status(200);
    let jwt = reply.body["access_token"].as_str().unwrap().to_owned();
    verifier.verify(&jwt).await.expect("verifies before");
    app.delete(&format!("/v1/trusts/{id}"))
        .await
        .assert_status(204);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    loop {
        match verifier.verify(&jwt).await {
            Err(VerifyError::InvalidToken(_)) => break,
            other => {
                assert!(tokio::time::Instant::now() < deadline, "still {other:?}");
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    }
    let feed = app.get("/v1/revocations?after=0").await;
    let entries = feed.body["entries"].as_array().cloned().unwrap_or_default();
    assert!(
        entries
            .iter()
            .any(|e| e["kind"] == "token" && e["subject"] == id),
        "{}",
        feed.text
    );
    let refused = jwt_bearer(&app, &issuer.sign(&issuer.github(&app, REPO_SUBJECT)), &[]).await;
    assert_invalid_grant(&refused, "revoked trust");
}

async fn an_unknown_kid_refetches_the_issuers_keys_at_most_once_per_interval(app: TestApp) {
    acme(&app).await;
    let issuer = Issuer::start().await;
    create_trust(&app, "acme", trust_body(&issuer, REPO_SUBJECT)).await;
    jwt_bearer(&app, &issuer.sign(&issuer.github(&app, REPO_SUBJECT)), &[])
        .await
        .assert_status(200);
    jwt_bearer(&app, &issuer.sign(&issuer.github(&app, REPO_SUBJECT)), &[])
        .await
        .assert_status(200);
    assert_eq!(issuer.fetches.load(Ordering::SeqCst), 1, "cached");
    // The issuer rotates: a new kid is unknown, and within the interval no refetch runs.
    let next = Ed25519KeyPair::generate().unwrap();
    issuer.jwks.lock().unwrap()["keys"]
        .as_array_mut()
        .unwrap()
        .push(ed_jwk(&next, "key-2"));
    let rotated = |app: &TestApp| {
        sign_with(
            &next,
            &json!({ "alg": "EdDSA", "typ": "JWT", "kid": "key-2" }),
            &issuer.github(app, REPO_SUBJECT),
        )
    };
    for _ in 0..5 {
        assert_invalid_grant(&jwt_bearer(&app, &rotated(&app), &[]).await, "rate-limited");
    }
    assert_eq!(issuer.fetches.load(Ordering::SeqCst), 1, "rate-limited");
}

/// Two replicas on one PostgreSQL database (none without it), acme trusting the
/// issuer's main branch.
async fn replicas_trusting_main() -> Option<(TestApp, TestApp, Issuer)> {
    let a = TestApp::postgres().await?;
    let b = a.replica(|_| {}).await;
    acme(&a).await;
    let issuer = Issuer::start().await;
    create_trust(&a, "acme", trust_body(&issuer, REPO_SUBJECT)).await;
    Some((a, b, issuer))
}

/// Replay is refused across two server replicas sharing one PostgreSQL database.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_jti_used_on_one_replica_is_refused_on_the_other() {
    let Some((a, b, issuer)) = replicas_trusting_main().await else {
        return;
    };
    for _ in 0..5 {
        let assertion = issuer.sign(&issuer.github(&a, REPO_SUBJECT));
        // Both at once: exactly one wins.
        let (first, second) = tokio::join!(
            jwt_bearer(&a, &assertion, &[]),
            jwt_bearer(&b, &assertion, &[])
        );
        let won = [first.status, second.status];
        assert!(won.contains(&200) && won.contains(&400), "{won:?}");
        assert_invalid_grant(&jwt_bearer(&b, &assertion, &[]).await, "later on b");
        assert_invalid_grant(&jwt_bearer(&a, &assertion, &[]).await, "later on a");
    }
}

async fn a_trust_issued_token_introspects_active_until_the_trust_is_revoked(app: TestApp) {
    acme(&app).await;
    let issuer = Issuer::start().await;
    let trust = create_trust(&app, "acme", trust_body(&issuer, "repo:acme/app:*")).await;
    let id = trust["id"].as_str().unwrap().to_owned();
    let reply = jwt_bearer(&app, &issuer.sign(&issuer.github(&app, REPO_SUBJECT)), &[]).await;
    reply.assert_status(200);
    let jwt = reply.body["access_token"].as_str().unwrap().to_owned();
    let claims = claims_of(&jwt);
    let introspector = app.introspection_key().await;

    let answer = app.introspect_as(&introspector, &jwt, &[]).await;
    assert_eq!(answer["active"], true, "{answer}");
    assert_eq!(answer["sub"], REPO_SUBJECT);
    assert_eq!(answer["client_id"], id.as_str());
    assert_eq!(answer["trust_id"], id.as_str());
    assert_eq!(answer["tid"], "acme");
    assert!(answer.get("uid").is_none());
    assert_eq!(answer["scope"], "billing:read reports:read");
    assert_eq!(answer["token_type"], "Bearer");
    assert!(answer.get("cnf").is_none());
    assert_eq!(answer["iss"], app.base.as_str());
    for member in ["exp", "iat", "nbf", "jti", "aud"] {
        assert_eq!(answer[member], claims[member], "{member}");
    }
    assert_eq!(answer["rol"], json!(["viewer"]));
    assert_eq!(answer["prm"], json!(["billing:read"]));
    // The root key (latchkey:admin) sees the same, judged from its own address.
    let admin = app.introspect(&jwt).await;
    assert_eq!(admin["active"], true);
    assert_eq!(admin["trust_id"], id.as_str());

    // A narrowed token introspects with its own scope.
    let narrow = jwt_bearer(
        &app,
        &issuer.sign(&issuer.github(&app, REPO_SUBJECT)),
        &[("scope", "reports:read")],
    )
    .await;
    narrow.assert_status(200);
    let narrow = narrow.body["access_token"].as_str().unwrap().to_owned();
    let answer = app.introspect_as(&introspector, &narrow, &[]).await;
    assert_eq!(answer["scope"], "reports:read");

    // Control: a client-credentials token of the tenant names itself and no trust.
    let created = app
        .create_tenant_token(
            "acme",
            json!({ "name": "plain", "kind": "client_credentials", "roles": ["viewer"] }),
        )
        .await;
    let client_id = created["client_id"].as_str().unwrap();
    let plain = app
        .exchange(client_id, created["client_secret"].as_str().unwrap(), &[])
        .await;
    plain.assert_status(200);
    let plain = app
        .introspect_as(
            &introspector,
            plain.body["access_token"].as_str().unwrap(),
            &[],
        )
        .await;
    assert_eq!(plain["active"], true);
    assert_eq!(plain["sub"], client_id);
    assert!(plain.get("trust_id").is_none());

    // Attack: the trust's id is no client, so it authenticates nothing.
    let as_client = app.exchange(&id, "anything", &[]).await;
    assert_eq!(as_client.status, 401, "{}", as_client.text);
    assert_eq!(as_client.body["error"], "invalid_client");
    // Attack: a tampered payload (another subject) breaks the signature.
    let mut parts: Vec<String> = jwt.split('.').map(str::to_owned).collect();
    let mut forged = claims.clone();
    forged["sub"] = json!("repo:evil/app:ref:refs/heads/main");
    parts[1] = b64url_encode(forged.to_string().as_bytes());
    let answer = app
        .introspect_as(&introspector, &parts.join("."), &[])
        .await;
    assert_eq!(answer, json!({ "active": false }));

    // Revoking the trust makes every token it issued inactive, at once.
    app.delete(&format!("/v1/trusts/{id}"))
        .await
        .assert_status(204);
    for token in [&jwt, &narrow] {
        let answer = app.introspect_as(&introspector, token, &[]).await;
        assert_eq!(answer, json!({ "active": false }));
    }
    assert_eq!(app.introspect(&jwt).await, json!({ "active": false }));
    let shown = app.get(&format!("/v1/trusts/{id}")).await;
    shown.assert_status(200);
    assert!(!shown.body["revoked_at"].is_null());
    // The plain token is untouched.
    let still = app
        .introspect_as(&introspector, &created_jwt(&app, &created).await, &[])
        .await;
    assert_eq!(still["active"], true);
}

/// A fresh access token of the client-credentials token `created`.
async fn created_jwt(app: &TestApp, created: &Value) -> String {
    let reply = app
        .exchange(
            created["client_id"].as_str().unwrap(),
            created["client_secret"].as_str().unwrap(),
            &[],
        )
        .await;
    reply.assert_status(200);
    reply.body["access_token"].as_str().unwrap().to_owned()
}

/// The issuer's trusts are cached by each replica; a trust made on another one since is
/// still found at once (the grant reads the store again before refusing).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_trust_made_on_one_replica_is_used_at_once_on_the_other() {
    let Some((a, b, issuer)) = replicas_trusting_main().await else {
        return;
    };
    // b caches the issuer's one trust, for main only.
    let main = issuer.sign(&issuer.github(&b, REPO_SUBJECT));
    jwt_bearer(&b, &main, &[]).await.assert_status(200);
    let release = "repo:acme/app:ref:refs/heads/release";
    let early = issuer.sign(&issuer.github(&b, release));
    assert_invalid_grant(
        &jwt_bearer(&b, &early, &[]).await,
        "no trust for release yet",
    );
    // a trusts the release branch too; b accepts it on the next exchange.
    create_trust(&a, "acme", trust_body(&issuer, release)).await;
    let later = issuer.sign(&issuer.github(&b, release));
    let reply = jwt_bearer(&b, &later, &[]).await;
    reply.assert_status(200);
    assert_eq!(
        claims_of(reply.body["access_token"].as_str().unwrap())["sub"],
        release
    );
}

async fn a_tenants_network_rules_judge_exchanges_too(app: TestApp) {
    acme(&app).await;
    let issuer = Issuer::start().await;
    create_trust(&app, "acme", trust_body(&issuer, REPO_SUBJECT)).await;
    // Control: from loopback, allowed.
    let first = issuer.sign(&issuer.github(&app, REPO_SUBJECT));
    jwt_bearer(&app, &first, &[]).await.assert_status(200);
    app.wait_for_audit("action=trust.exchanged", 1).await;
    // The tenant's policy now admits only a network the tests never come from.
    app.put(
        "/v1/tenants/acme/policy",
        json!({ "network": { "allow": ["203.0.113.0/24"] } }),
    )
    .await
    .assert_status(200);
    let second = issuer.sign(&issuer.github(&app, REPO_SUBJECT));
    assert_invalid_grant(
        &jwt_bearer(&app, &second, &[]).await,
        "outside the networks",
    );
    assert_eq!(app.audit_count("trust.exchanged").await, 1);
    let events = app.wait_for_audit("action=auth.failed&limit=50", 1).await;
    assert!(
        events
            .iter()
            .any(|e| e["details"]["reason"] == "network_not_allowed"),
        "{events:?}"
    );
    // Loopback allowed again: the same kind of assertion works.
    app.put(
        "/v1/tenants/acme/policy",
        json!({ "network": { "allow": ["127.0.0.0/8", "::1/128"] } }),
    )
    .await
    .assert_status(200);
    let third = issuer.sign(&issuer.github(&app, REPO_SUBJECT));
    jwt_bearer(&app, &third, &[]).await.assert_status(200);
}

async fn an_exchange_with_a_dpop_proof_is_bound_and_a_policy_can_require_one(app: TestApp) {
    use latchkey_verify::dpop::testing::ProofKey;
    acme(&app).await;
    let issuer = Issuer::start().await;
    create_trust(&app, "acme", trust_body(&issuer, REPO_SUBJECT)).await;
    let token_url = format!("{}/oauth/token", app.base);
    let exchange = |assertion: String, proof: Option<String>| {
        let app = &app;
        async move {
            let mut request = app
                .request(reqwest::Method::POST, "/oauth/token")
                .form(&[("grant_type", GRANT), ("assertion", assertion.as_str())]);
            if let Some(proof) = proof {
                request = request.header("dpop", proof);
            }
            app.send(request).await
        }
    };
    // With a proof: a DPoP token bound to the proof's key.
    let key = ProofKey::ed25519();
    let proof = key.proof("POST", &token_url, app.now().unix_seconds(), None);
    let bound = exchange(issuer.sign(&issuer.github(&app, REPO_SUBJECT)), Some(proof)).await;
    bound.assert_status(200);
    assert_eq!(bound.body["token_type"], "DPoP");
    let jwt = bound.body["access_token"].as_str().unwrap();
    assert_eq!(claims_of(jwt)["cnf"]["jkt"], key.jkt().as_str());
    assert_eq!(app.introspect(jwt).await["cnf"]["jkt"], key.jkt().as_str());
    // A bad proof (for another URL) issues nothing.
    let wrong = key.proof(
        "POST",
        "https://elsewhere.test/oauth/token",
        app.now().unix_seconds(),
        None,
    );
    let refused = exchange(issuer.sign(&issuer.github(&app, REPO_SUBJECT)), Some(wrong)).await;
    assert_eq!(refused.status, 400, "{}", refused.text);
    assert_eq!(refused.body["error"], "invalid_dpop_proof");
    // Without one: a bearer token, until the tenant's policy requires DPoP.
    let plain = exchange(issuer.sign(&issuer.github(&app, REPO_SUBJECT)), None).await;
    plain.assert_status(200);
    assert_eq!(plain.body["token_type"], "Bearer");
    app.put("/v1/tenants/acme/policy", json!({ "require_dpop": true }))
        .await
        .assert_status(200);
    let bare = exchange(issuer.sign(&issuer.github(&app, REPO_SUBJECT)), None).await;
    assert_eq!(bare.status, 400, "{}", bare.text);
    assert_eq!(bare.body["error"], "invalid_dpop_proof");
    assert!(bare.body.get("access_token").is_none());
    let proof = key.proof("POST", &token_url, app.now().unix_seconds(), None);
    let required = exchange(issuer.sign(&issuer.github(&app, REPO_SUBJECT)), Some(proof)).await;
    required.assert_status(200);
    assert_eq!(required.body["token_type"], "DPoP");
}
