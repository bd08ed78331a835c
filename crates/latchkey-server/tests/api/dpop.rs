//! DPoP at the authorization server (docs/API.md, "DPoP"): a token request with a proof
//! gets a token bound to the proof's key, a refresh family started so stays bound, and
//! every bad proof is `invalid_dpop_proof` with nothing issued and `auth.failed`
//! audited. Each attack runs beside its control. A maintained client library
//! (Python's joserfc) makes proofs the server accepts.

use crate::both_backends;
use crate::helpers::{Reply, TestApp, basic, documented_python, run_python};
use latchkey_core::jwt::b64url_decode;
use latchkey_verify::dpop::testing::ProofKey;
use serde_json::{Value, json};

both_backends!(
    a_token_request_with_a_proof_gets_a_bound_jwt_and_introspection_shows_it,
    bad_proofs_at_the_token_endpoint_issue_nothing,
    a_bound_refresh_token_needs_a_proof_by_the_same_key,
    a_policy_requiring_dpop_issues_no_bearer_tokens_and_forbids_kinds_without_proofs,
    the_management_api_takes_a_bound_token_only_with_a_proof,
);

async fn acme(app: &TestApp, refresh: bool) -> (String, String) {
    app.seed_catalogue().await;
    app.create_tenant("acme").await;
    app.client(
        "acme",
        json!({ "roles": ["viewer"], "refresh_tokens": refresh }),
    )
    .await
}

fn token_url(app: &TestApp) -> String {
    format!("{}/oauth/token", app.base)
}

fn claims(jwt: &str) -> Value {
    let part = jwt.split('.').nth(1).unwrap();
    serde_json::from_slice(&b64url_decode(part).unwrap()).unwrap()
}

/// A token request with `DPoP: proof` (each of `proofs` as its own header).
async fn token_request(
    app: &TestApp,
    id: &str,
    secret: &str,
    form: &str,
    proofs: &[&str],
) -> Reply {
    let mut request = app
        .request(reqwest::Method::POST, "/oauth/token")
        .header("authorization", basic(id, secret))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(form.to_owned());
    for proof in proofs {
        request = request.header("dpop", *proof);
    }
    app.send(request).await
}

fn assert_invalid_proof(reply: &Reply, why: &str) {
    assert_eq!(reply.status, 400, "{why}: {}", reply.text);
    assert_eq!(reply.body["error"], "invalid_dpop_proof", "{why}");
    assert_eq!(reply.header("cache-control"), "no-store", "{why}");
    assert!(reply.body.get("access_token").is_none(), "{why}");
}

async fn a_token_request_with_a_proof_gets_a_bound_jwt_and_introspection_shows_it(app: TestApp) {
    let (id, secret) = acme(&app, false).await;
    let key = ProofKey::es256();
    let now = app.now().unix_seconds();
    let proof = key.proof("POST", &token_url(&app), now, None);
    let reply = token_request(
        &app,
        &id,
        &secret,
        "grant_type=client_credentials",
        &[&proof],
    )
    .await;
    reply.assert_status(200);
    assert_eq!(reply.body["token_type"], "DPoP");
    let jwt = reply.body["access_token"].as_str().unwrap();
    assert_eq!(claims(jwt)["cnf"], json!({ "jkt": key.jkt() }));
    let introspected = app.introspect(jwt).await;
    assert_eq!(introspected["active"], true);
    assert_eq!(introspected["token_type"], "DPoP");
    assert_eq!(introspected["cnf"]["jkt"], key.jkt());
    // Control: without a proof, a plain bearer token without `cnf`.
    let plain = app.exchange(&id, &secret, &[]).await;
    plain.assert_status(200);
    assert_eq!(plain.body["token_type"], "Bearer");
    let plain_jwt = plain.body["access_token"].as_str().unwrap();
    assert!(claims(plain_jwt).get("cnf").is_none());
    let introspected = app.introspect(plain_jwt).await;
    assert_eq!(introspected["token_type"], "Bearer");
    assert!(introspected.get("cnf").is_none());
    // Every algorithm the metadata lists works.
    let metadata = app.get("/.well-known/oauth-authorization-server").await;
    assert_eq!(
        metadata.body["dpop_signing_alg_values_supported"],
        json!(["ES256", "EdDSA", "RS256"])
    );
    for key in [ProofKey::ed25519(), ProofKey::rs256()] {
        let proof = key.proof("POST", &token_url(&app), now, None);
        let reply = token_request(
            &app,
            &id,
            &secret,
            "grant_type=client_credentials",
            &[&proof],
        )
        .await;
        reply.assert_status(200);
        assert_eq!(
            claims(reply.body["access_token"].as_str().unwrap())["cnf"]["jkt"],
            key.jkt()
        );
    }
}

async fn bad_proofs_at_the_token_endpoint_issue_nothing(app: TestApp) {
    let (id, secret) = acme(&app, false).await;
    let key = ProofKey::ed25519();
    let url = token_url(&app);
    let now = app.now().unix_seconds();
    let exchanged = app.audit_count("token.exchanged").await;
    let failed = app.audit_count("auth.failed").await;
    let grant = "grant_type=client_credentials";

    let mut attacks: Vec<(&str, Vec<String>)> = vec![
        ("another method", vec![key.proof("GET", &url, now, None)]),
        (
            "another URL",
            vec![key.proof("POST", &format!("{}/oauth/introspect", app.base), now, None)],
        ),
        (
            "another host",
            vec![key.proof("POST", "https://evil.example/oauth/token", now, None)],
        ),
        ("stale", vec![key.proof("POST", &url, now - 120, None)]),
        ("future", vec![key.proof("POST", &url, now + 120, None)]),
        ("not a JWT", vec!["not-a-proof".to_owned()]),
        (
            "two proofs",
            vec![
                key.proof("POST", &url, now, None),
                key.proof("POST", &url, now, None),
            ],
        ),
    ];
    for (why, alg) in [("alg none", "none"), ("HS256", "HS256")] {
        let mut header = key.header();
        header.insert("alg".into(), json!(alg));
        attacks.push((
            why,
            vec![key.sign(&header, &key.claims("POST", &url, now, None))],
        ));
    }
    let mut header = key.header();
    header["jwk"]["d"] = json!("nWGxne_9WmC6hEr0kuwsxERJxWl7MmkZcDusAxyuf2A");
    attacks.push((
        "private key in the jwk",
        vec![key.sign(&header, &key.claims("POST", &url, now, None))],
    ));
    let other = ProofKey::ed25519();
    attacks.push((
        "signed by another key",
        vec![other.sign(&key.header(), &key.claims("POST", &url, now, None))],
    ));
    let mut typ = key.header();
    typ.insert("typ".into(), json!("JWT"));
    attacks.push((
        "wrong typ",
        vec![key.sign(&typ, &key.claims("POST", &url, now, None))],
    ));
    for (why, proofs) in &attacks {
        let proofs: Vec<&str> = proofs.iter().map(String::as_str).collect();
        let reply = token_request(&app, &id, &secret, grant, &proofs).await;
        assert_invalid_proof(&reply, why);
    }

    // A replay: the first use works, the second is refused.
    let proof = key.proof("POST", &url, now, None);
    token_request(&app, &id, &secret, grant, &[&proof])
        .await
        .assert_status(200);
    let replay = token_request(&app, &id, &secret, grant, &[&proof]).await;
    assert_invalid_proof(&replay, "replayed jti");

    // Only the one honest request issued a token; every refusal was audited.
    let issued = app
        .wait_for_audit("action=token.exchanged&limit=100", exchanged as usize + 1)
        .await;
    assert_eq!(issued.len(), exchanged as usize + 1);
    let expected = failed as usize + attacks.len() + 1;
    let events = app
        .wait_for_audit("action=auth.failed&limit=100", expected)
        .await;
    assert!(
        events
            .iter()
            .filter(|e| e["details"]["reason"] == "invalid_dpop_proof")
            .count()
            > attacks.len()
    );
    // A proof from a client that fails to authenticate is never looked at.
    let reply = token_request(
        &app,
        &id,
        "lk_sk_wrong",
        grant,
        &[&key.proof("POST", &url, now, None)],
    )
    .await;
    assert_eq!(reply.status, 401);
    assert_eq!(reply.body["error"], "invalid_client");
}

async fn a_bound_refresh_token_needs_a_proof_by_the_same_key(app: TestApp) {
    let (id, secret) = acme(&app, true).await;
    let key = ProofKey::es256();
    let url = token_url(&app);
    let now = app.now().unix_seconds();
    let first = token_request(
        &app,
        &id,
        &secret,
        "grant_type=client_credentials",
        &[&key.proof("POST", &url, now, None)],
    )
    .await;
    first.assert_status(200);
    let refresh = first.body["refresh_token"].as_str().unwrap().to_owned();
    let form = format!("grant_type=refresh_token&refresh_token={refresh}");

    let other = ProofKey::es256();
    let stolen = token_request(
        &app,
        &id,
        &secret,
        &form,
        &[&other.proof("POST", &url, now, None)],
    )
    .await;
    assert_invalid_proof(&stolen, "another key");
    let bare = token_request(&app, &id, &secret, &form, &[]).await;
    assert_invalid_proof(&bare, "no proof");

    // Control: the refresh token was not used up by the refusals, and the right key
    // refreshes into a token bound to it.
    let good = token_request(
        &app,
        &id,
        &secret,
        &form,
        &[&key.proof("POST", &url, now, None)],
    )
    .await;
    good.assert_status(200);
    assert_eq!(good.body["token_type"], "DPoP");
    assert_eq!(
        claims(good.body["access_token"].as_str().unwrap())["cnf"]["jkt"],
        key.jkt()
    );
    let db = app.db().await;
    let bound: Option<String> =
        sqlx::query_scalar("SELECT dpop_jkt FROM refresh_families WHERE token_id = $1")
            .bind(id.clone())
            .fetch_one(&db)
            .await
            .unwrap();
    assert_eq!(bound.as_deref(), Some(key.jkt().as_str()));
    db.close().await;
}

/// The Python client of docs/MACHINES.md (joserfc, a maintained JOSE library), run as
/// shown, gets a bound token.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_python_joserfc_client_gets_a_dpop_bound_token() {
    let dir = tempfile::tempdir().unwrap();
    let Some(script) = documented_python(
        "Binding tokens with DPoP",
        "import joserfc",
        dir.path(),
        "dpop_client.py",
    ) else {
        return;
    };
    // The README shows the same client, word for word.
    let readme =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../../README.md")).unwrap();
    let shown = readme
        .split_once("## Binding tokens with DPoP\n")
        .and_then(|(_, section)| section.split_once("```python\n"))
        .and_then(|(_, rest)| rest.split_once("```"))
        .expect("the README's DPoP section has a Python block")
        .0;
    assert_eq!(shown, std::fs::read_to_string(&script).unwrap());
    let app = TestApp::sqlite().await;
    let (id, secret) = acme(&app, false).await;
    let result = run_python(script, vec![app.base.clone(), id, secret]).await;
    assert_eq!(result["token"]["token_type"], "DPoP");
    let jwt = result["token"]["access_token"].as_str().unwrap();
    assert_eq!(claims(jwt)["cnf"]["jkt"], result["jkt"]);
}

async fn a_policy_requiring_dpop_issues_no_bearer_tokens_and_forbids_kinds_without_proofs(
    app: TestApp,
) {
    let (id, secret) = acme(&app, false).await;
    let reply = app
        .put("/v1/tenants/acme/policy", json!({ "require_dpop": true }))
        .await;
    reply.assert_status(200);
    assert_eq!(reply.body["effective"]["require_dpop"], true);
    let exchanged = app.audit_count("token.exchanged").await;
    let bare = app.exchange(&id, &secret, &[]).await;
    assert_invalid_proof(&bare, "no proof under require_dpop");
    assert_eq!(app.audit_count("token.exchanged").await, exchanged);
    // Control: with a proof the same client gets a bound token.
    let key = ProofKey::ed25519();
    let proof = key.proof("POST", &token_url(&app), app.now().unix_seconds(), None);
    let bound = token_request(
        &app,
        &id,
        &secret,
        "grant_type=client_credentials",
        &[&proof],
    )
    .await;
    bound.assert_status(200);
    assert_eq!(bound.body["token_type"], "DPoP");
    // Kinds that cannot carry a proof are refused at creation; nothing is created.
    for kind in ["api_key", "jwt"] {
        let reply = app
            .post(
                "/v1/tenants/acme/tokens",
                json!({ "name": "x", "kind": kind, "roles": ["viewer"] }),
            )
            .await;
        reply.assert_problem(422, "policy-violation");
        assert!(
            reply.body["detail"].as_str().unwrap().contains("DPoP"),
            "{}",
            reply.text
        );
    }
    // A policy that requires DPoP but allows no client-credentials token is refused.
    let reply = app
        .put(
            "/v1/tenants/acme/policy",
            json!({ "require_dpop": true, "allowed_kinds": ["api_key"] }),
        )
        .await;
    assert_eq!(reply.status, 422, "{}", reply.text);
    // Control: lifting the rule lets bearer tokens out again.
    app.put("/v1/tenants/acme/policy", json!({}))
        .await
        .assert_status(200);
    app.exchange(&id, &secret, &[]).await.assert_status(200);
}

async fn the_management_api_takes_a_bound_token_only_with_a_proof(app: TestApp) {
    app.seed_catalogue().await;
    app.create_tenant("acme").await;
    let manager = app
        .create_tenant_token(
            "acme",
            json!({ "name": "mgr", "kind": "client_credentials", "permissions": ["latchkey:manage"] }),
        )
        .await;
    let id = manager["client_id"].as_str().unwrap();
    let secret = manager["client_secret"].as_str().unwrap();
    let key = ProofKey::es256();
    let now = app.now().unix_seconds();
    let proof = key.proof("POST", &token_url(&app), now, None);
    let reply = token_request(&app, id, secret, "grant_type=client_credentials", &[&proof]).await;
    reply.assert_status(200);
    let jwt = reply.body["access_token"].as_str().unwrap().to_owned();
    let url = format!("{}/v1/tenants/acme/tokens", app.base);
    let list = |authorization: String, proof: Option<String>| {
        let mut request = app
            .request(reqwest::Method::GET, "/v1/tenants/acme/tokens")
            .header("authorization", authorization);
        if let Some(proof) = proof {
            request = request.header("dpop", proof);
        }
        request
    };
    // The stolen JWT alone, as a bearer credential: refused.
    let reply = app.send(list(format!("Bearer {jwt}"), None)).await;
    reply.assert_problem(401, "invalid-token");
    // DPoP without a proof, with a proof for another URL or by another key: refused.
    let reply = app.send(list(format!("DPoP {jwt}"), None)).await;
    reply.assert_problem(401, "invalid-token");
    let wrong_url = key.proof("GET", &format!("{}/v1/tenants", app.base), now, Some(&jwt));
    let reply = app.send(list(format!("DPoP {jwt}"), Some(wrong_url))).await;
    reply.assert_problem(401, "invalid-token");
    let other = ProofKey::es256().proof("GET", &url, now, Some(&jwt));
    let reply = app.send(list(format!("DPoP {jwt}"), Some(other))).await;
    reply.assert_problem(401, "invalid-token");
    // Control: with a proof by its key, the bound token manages its tenant; the same
    // proof a second time is a replay.
    let proof = key.proof("GET", &url, now, Some(&jwt));
    let reply = app
        .send(list(format!("DPoP {jwt}"), Some(proof.clone())))
        .await;
    reply.assert_status(200);
    let reply = app.send(list(format!("DPoP {jwt}"), Some(proof))).await;
    reply.assert_problem(401, "invalid-token");
}
