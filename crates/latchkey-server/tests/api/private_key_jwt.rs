//! `private_key_jwt` client authentication (docs/API.md, "Clients with a private key"):
//! a client-credentials token made with a public JWK has no secret and authenticates
//! with assertions signed by its private key. Bad keys are refused at creation with
//! nothing stored; every bad assertion is `invalid_client` with nothing issued and an
//! `auth.failed` event naming the reason, each attack beside its control. Rolling takes
//! a new key. Python's authlib, run as docs/MACHINES.md shows it, gets a token.

use crate::both_backends;
use crate::helpers::{Reply, TestApp, basic, documented_python, run_python};
use aws_lc_rs::hmac;
use latchkey_core::jwt::{b64url_decode, b64url_encode};
use latchkey_verify::dpop::testing::ProofKey;
use serde_json::{Map, Value, json};

both_backends!(
    a_client_with_a_public_key_has_no_secret_and_shows_its_key,
    bad_public_keys_are_refused_and_nothing_is_created,
    a_signed_assertion_gets_a_token_and_each_attack_is_refused,
    the_revocation_endpoint_takes_an_assertion,
    rolling_a_key_client_takes_a_new_key,
    a_key_client_refreshes_with_an_assertion,
);

const ASSERTION_TYPE: &str = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";

async fn acme(app: &TestApp) {
    app.seed_catalogue().await;
    app.create_tenant("acme").await;
}

/// A `client_credentials` token of acme with `key`'s public JWK; returns the answer.
async fn key_client(app: &TestApp, jwk: Value) -> Reply {
    app.post(
        "/v1/tenants/acme/tokens",
        json!({ "name": "signer", "kind": "client_credentials", "roles": ["viewer"],
                "public_key": jwk }),
    )
    .await
}

/// The client id of a new key client of acme.
async fn client_of(app: &TestApp, key: &ProofKey) -> String {
    let created = key_client(app, key.public_jwk()).await;
    created.assert_status(201);
    created.body["client_id"].as_str().unwrap().to_owned()
}

fn token_url(app: &TestApp) -> String {
    format!("{}/oauth/token", app.base)
}

fn object(value: Value) -> Map<String, Value> {
    match value {
        Value::Object(map) => map,
        _ => unreachable!("an object"),
    }
}

/// The claims of an honest assertion of `client` for the token endpoint.
fn claims(app: &TestApp, client: &str) -> Map<String, Value> {
    let now = app.now().unix_seconds();
    object(json!({
        "iss": client, "sub": client, "aud": token_url(app),
        "iat": now, "exp": now + 60, "jti": uuid::Uuid::new_v4().to_string(),
    }))
}

fn header(key: &ProofKey) -> Map<String, Value> {
    object(json!({ "alg": key.alg(), "typ": "JWT" }))
}

fn honest(app: &TestApp, key: &ProofKey, client: &str) -> String {
    key.sign(&header(key), &claims(app, client))
}

/// `grant_type=client_credentials` with `client_assertion` and `extra` parameters.
async fn exchange(app: &TestApp, assertion: &str, extra: &[(&str, &str)]) -> Reply {
    let mut pairs = vec![
        ("grant_type", "client_credentials"),
        ("client_assertion_type", ASSERTION_TYPE),
        ("client_assertion", assertion),
    ];
    pairs.extend_from_slice(extra);
    app.form("/oauth/token", None, &pairs).await
}

async fn token_count(app: &TestApp) -> i64 {
    let db = app.db().await;
    let count: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM tokens")
        .fetch_one(&db)
        .await
        .unwrap();
    db.close().await;
    count
}

fn payload(jwt: &str) -> Value {
    let part = jwt.split('.').nth(1).unwrap();
    serde_json::from_slice(&b64url_decode(part).unwrap()).unwrap()
}

async fn a_client_with_a_public_key_has_no_secret_and_shows_its_key(app: TestApp) {
    acme(&app).await;
    for key in [ProofKey::ed25519(), ProofKey::es256(), ProofKey::rs256()] {
        let created = key_client(&app, key.public_jwk()).await;
        created.assert_status(201);
        let id = created.body["client_id"].as_str().unwrap().to_owned();
        assert_eq!(created.body["token"]["id"], id.as_str());
        assert!(
            created.body.get("client_secret").is_none(),
            "{}",
            created.text
        );
        let token = &created.body["token"];
        assert_eq!(token["auth_method"], "private_key_jwt");
        assert_eq!(token["public_key"], key.public_jwk());
        assert_eq!(token["public_key_thumbprint"], key.jkt());
        assert_eq!(token["secret_hint"], Value::Null);
        let read = app.get(&format!("/v1/tokens/{id}")).await;
        read.assert_status(200);
        assert_eq!(&read.body, token);
        let db = app.db().await;
        let (stored, salt): (Option<String>, Option<Vec<u8>>) =
            sqlx::query_as("SELECT public_key, secret_salt FROM tokens WHERE id = $1")
                .bind(id.clone())
                .fetch_one(&db)
                .await
                .unwrap();
        db.close().await;
        let stored: Value = serde_json::from_str(&stored.unwrap()).unwrap();
        assert_eq!(stored, key.public_jwk());
        assert_eq!(salt, None, "no secret is stored");
        let events = app
            .wait_for_audit(&format!("action=token.created&token_id={id}"), 1)
            .await;
        assert_eq!(events[0]["details"]["auth_method"], "private_key_jwt");
        assert_eq!(events[0]["details"]["public_key_thumbprint"], key.jkt());
    }
    // Control: a secret client says how it authenticates and has no key.
    let (id, _) = app.client("acme", json!({})).await;
    let read = app.get(&format!("/v1/tokens/{id}")).await;
    assert_eq!(read.body["auth_method"], "client_secret_basic");
    assert_eq!(read.body["public_key"], Value::Null);
    assert_eq!(read.body["public_key_thumbprint"], Value::Null);
    let events = app
        .wait_for_audit(&format!("action=token.created&token_id={id}"), 1)
        .await;
    assert_eq!(events[0]["details"]["auth_method"], "client_secret_basic");
}

async fn bad_public_keys_are_refused_and_nothing_is_created(app: TestApp) {
    acme(&app).await;
    let before = token_count(&app).await;
    let mut private = object(ProofKey::ed25519().public_jwk());
    private.insert(
        "d".into(),
        json!("nWGxne_9WmC6hEr0kuwsxERJxWl7MmkZcDusAxyuf2A"),
    );
    let reply = key_client(&app, Value::Object(private)).await;
    reply.assert_problem(400, "private-key");
    assert_eq!(reply.body["field"], "public_key");
    assert!(
        !reply.text.contains("nWGxne"),
        "the private key is never echoed"
    );
    let short_rsa = json!({ "kty": "RSA", "e": "AQAB", "n": b64url_encode(&[0xc5; 128]) });
    let refusals = [
        (
            json!({ "kty": "oct", "k": "c2VjcmV0LXNlY3JldC1zZWNyZXQ" }),
            "oct",
        ),
        (short_rsa, "2048"),
        (
            json!({ "kty": "EC", "crv": "P-384", "x": "AA", "y": "AA" }),
            "unsupported",
        ),
        (json!({ "kty": "XYZ", "x": "AA" }), "unsupported"),
        (
            json!({ "kty": "OKP", "crv": "X25519", "x": "AA" }),
            "unsupported",
        ),
        (
            json!({ "kty": "OKP", "crv": "Ed25519", "x": "AAAA" }),
            "32 bytes",
        ),
        (json!("not an object"), "JWK"),
    ];
    for (jwk, why) in refusals {
        let reply = key_client(&app, jwk.clone()).await;
        reply.assert_problem(400, "invalid-field");
        assert_eq!(reply.body["field"], "public_key", "{jwk}");
        assert!(
            reply.body["detail"].as_str().unwrap().contains(why),
            "{jwk}: {}",
            reply.text
        );
    }
    let key = ProofKey::ed25519().public_jwk();
    for kind in ["api_key", "jwt"] {
        let reply = app
            .post(
                "/v1/tenants/acme/tokens",
                json!({ "name": "x", "kind": kind, "permissions": ["reports:read"],
                        "public_key": key }),
            )
            .await;
        reply.assert_problem(400, "invalid-field");
        assert_eq!(reply.body["field"], "public_key");
    }
    // A secret and a key together: the create body has no place for a secret.
    let reply = app
        .post(
            "/v1/tenants/acme/tokens",
            json!({ "name": "x", "kind": "client_credentials", "public_key": key,
                    "client_secret": "lk_sk_mine" }),
        )
        .await;
    reply.assert_status(400);
    assert!(!reply.text.contains("lk_sk_mine"));
    assert_eq!(token_count(&app).await, before, "nothing was created");
    // Control: the same public key alone is taken.
    key_client(&app, key).await.assert_status(201);
    assert_eq!(token_count(&app).await, before + 1);
}

/// How many access tokens the client-credentials grant issued: alike exchanges fold into
/// one `token.exchanged` event with a `count`.
async fn issued_count(app: &TestApp) -> i64 {
    app.get("/v1/audit?action=token.exchanged&limit=200")
        .await
        .body["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["details"]["count"].as_i64().unwrap())
        .sum()
}

/// The refusals of attacks so far, to check each new one against.
struct Refusals<'a> {
    app: &'a TestApp,
    /// `auth.failed` events seen so far, by reason.
    seen: std::collections::HashMap<String, usize>,
    /// Access tokens issued so far (`token.exchanged` events).
    issued: i64,
}

impl<'a> Refusals<'a> {
    /// Starts counting once `issued` access tokens were issued (audit events are
    /// committed a moment after the answer).
    async fn new(app: &'a TestApp, issued: i64) -> Self {
        let refusals = Self {
            app,
            seen: std::collections::HashMap::new(),
            issued,
        };
        refusals.wait_for_issued().await;
        refusals
    }

    async fn wait_for_issued(&self) {
        let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(5);
        while issued_count(self.app).await < self.issued {
            assert!(
                tokio::time::Instant::now() < deadline,
                "{} token.exchanged events within 5 s",
                self.issued
            );
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
    }

    /// After a success: one more token issued.
    async fn issued_one(&mut self) {
        self.issued += 1;
        self.wait_for_issued().await;
    }

    /// Checks that `reply` is the refusal of an attack at `endpoint`: `invalid_client`,
    /// nothing issued, and one more `auth.failed` event there with `reason`.
    async fn check_at(&mut self, endpoint: &str, reply: &Reply, reason: &str) {
        assert_eq!(reply.status, 401, "{reason}: {}", reply.text);
        assert_eq!(reply.body["error"], "invalid_client", "{reason}");
        assert!(reply.body.get("access_token").is_none(), "{reason}");
        assert_eq!(reply.header("cache-control"), "no-store", "{reason}");
        let wanted = self.seen.get(reason).copied().unwrap_or(0) + 1;
        let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(5);
        loop {
            let events = self
                .app
                .get("/v1/audit?action=auth.failed&limit=200")
                .await
                .body["items"]
                .as_array()
                .unwrap()
                .clone();
            let count = events
                .iter()
                .filter(|e| {
                    e["details"]["reason"] == reason && e["details"]["endpoint"] == endpoint
                })
                .count();
            if count >= wanted {
                assert_eq!(count, wanted, "{reason}: one event per refusal");
                self.seen.insert(reason.to_owned(), count);
                // Committed in order: what the refused request issued would show by now.
                assert_eq!(
                    issued_count(self.app).await,
                    self.issued,
                    "{reason}: nothing issued"
                );
                return;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "an auth.failed event with reason {reason}: {events:?}"
            );
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
    }

    async fn check(&mut self, reply: &Reply, reason: &str) {
        self.check_at("/oauth/token", reply, reason).await;
    }
}

async fn a_signed_assertion_gets_a_token_and_each_attack_is_refused(app: TestApp) {
    acme(&app).await;
    let key = ProofKey::es256();
    let client = client_of(&app, &key).await;
    // The honest assertion, with and without `client_id`, for either audience.
    let good = exchange(&app, &honest(&app, &key, &client), &[]).await;
    good.assert_status(200);
    assert_eq!(good.body["token_type"], "Bearer");
    let jwt = good.body["access_token"].as_str().unwrap();
    assert_eq!(payload(jwt)["client_id"], client.as_str());
    let mut to_issuer = claims(&app, &client);
    to_issuer.insert("aud".into(), json!(app.base));
    let with_id = exchange(
        &app,
        &key.sign(&header(&key), &to_issuer),
        &[("client_id", &client)],
    )
    .await;
    with_id.assert_status(200);
    let mut refusals = Refusals::new(&app, 2).await;

    // Replay of an assertion that worked.
    let once = honest(&app, &key, &client);
    exchange(&app, &once, &[]).await.assert_status(200);
    refusals.issued_one().await;
    let replayed = exchange(&app, &once, &[]).await;
    refusals.check(&replayed, "replayed_jti").await;

    let now = app.now().unix_seconds();
    // The honest claims with `name` set to `value`, or removed when `None`.
    let signed = |name: &str, value: Option<Value>| {
        let mut c = claims(&app, &client);
        match value {
            Some(value) => c.insert(name.to_owned(), value),
            None => c.remove(name),
        };
        key.sign(&header(&key), &c)
    };
    let other = ProofKey::es256();
    let elsewhere = format!("{}/oauth/revoke", app.base);
    let cases: Vec<(String, &str)> = vec![
        (signed("jti", None), "missing_jti"),
        (signed("exp", Some(json!(now - 120))), "assertion_expired"),
        (signed("exp", Some(json!(now + 7200))), "exp_too_far"),
        (signed("exp", None), "missing_claim"),
        (
            signed("aud", Some(json!("https://elsewhere.example"))),
            "wrong_audience",
        ),
        (signed("aud", Some(json!(elsewhere))), "wrong_audience"),
        (
            signed("sub", Some(json!(uuid::Uuid::new_v4().to_string()))),
            "subject_mismatch",
        ),
        (signed("iat", Some(json!(now + 600))), "issued_in_future"),
        (
            other.sign(&header(&other), &claims(&app, &client)),
            "bad_signature",
        ),
        (none_signed(&claims(&app, &client)), "algorithm_not_allowed"),
        (
            hmac_signed(&key, &claims(&app, &client)),
            "algorithm_not_allowed",
        ),
        (
            {
                let mut h = header(&key);
                h.insert("jwk".into(), other.public_jwk());
                other.sign(&h, &claims(&app, &client))
            },
            "forbidden_header",
        ),
        (
            {
                let mut h = header(&key);
                h.insert("jku".into(), json!("https://attacker.example/jwks"));
                key.sign(&h, &claims(&app, &client))
            },
            "forbidden_header",
        ),
        (
            {
                let good = honest(&app, &key, &client);
                let (head, _) = good.rsplit_once('.').unwrap();
                head.to_owned()
            },
            "malformed_assertion",
        ),
        (
            {
                let good = honest(&app, &key, &client);
                let (head, sig) = good.rsplit_once('.').unwrap();
                format!("{head}.{sig}+/=")
            },
            "malformed_assertion",
        ),
        ("x".repeat(20_000), "assertion_too_large"),
    ];
    for (assertion, reason) in &cases {
        let reply = exchange(&app, assertion, &[]).await;
        refusals.check(&reply, reason).await;
    }

    // iss ≠ sub: `iss` names the client, `sub` someone else; and `client_id` that is
    // not the assertion's.
    let mut c = claims(&app, &client);
    c.insert("iss".into(), json!(uuid::Uuid::new_v4().to_string()));
    let reply = exchange(
        &app,
        &key.sign(&header(&key), &c),
        &[("client_id", &client)],
    )
    .await;
    refusals.check(&reply, "wrong_issuer").await;
    let stranger = client_of(&app, &ProofKey::es256()).await;
    let reply = exchange(
        &app,
        &honest(&app, &key, &client),
        &[("client_id", &stranger)],
    )
    .await;
    refusals.check(&reply, "bad_signature").await;

    // An unknown client id.
    let ghost = uuid::Uuid::new_v4().to_string();
    let reply = exchange(&app, &honest(&app, &key, &ghost), &[]).await;
    refusals.check(&reply, "unknown_client").await;

    // A secret client cannot authenticate by assertion, nor a key client by secret.
    let (secret_id, secret) = app.client("acme", json!({})).await;
    let reply = exchange(&app, &honest(&app, &key, &secret_id), &[]).await;
    refusals.check(&reply, "not_a_key_client").await;
    let reply = app.exchange(&client, &secret, &[]).await;
    refusals.check(&reply, "key_client_needs_assertion").await;

    // A secret and an assertion together.
    let both = app
        .form(
            "/oauth/token",
            Some(&basic(&secret_id, &secret)),
            &[
                ("grant_type", "client_credentials"),
                ("client_assertion_type", ASSERTION_TYPE),
                ("client_assertion", &honest(&app, &key, &client)),
            ],
        )
        .await;
    refusals.check(&both, "multiple_methods").await;
    let reply = exchange(
        &app,
        &honest(&app, &key, &client),
        &[("client_secret", &secret)],
    )
    .await;
    refusals.check(&reply, "multiple_methods").await;

    // Another assertion type.
    let reply = app
        .form(
            "/oauth/token",
            None,
            &[
                ("grant_type", "client_credentials"),
                (
                    "client_assertion_type",
                    "urn:ietf:params:oauth:client-assertion-type:saml2-bearer",
                ),
                ("client_assertion", &honest(&app, &key, &client)),
            ],
        )
        .await;
    refusals.check(&reply, "unsupported_assertion_type").await;

    // A revoked client: its assertions stop working.
    app.delete(&format!("/v1/tokens/{client}"))
        .await
        .assert_status(204);
    let reply = exchange(&app, &honest(&app, &key, &client), &[]).await;
    refusals.check(&reply, "revoked").await;

    // Control after all: the secret client still works, and so does the stranger.
    app.exchange(&secret_id, &secret, &[])
        .await
        .assert_status(200);
}

/// An unsigned (`alg: none`) assertion.
fn none_signed(claims: &Map<String, Value>) -> String {
    format!(
        "{}.{}.",
        b64url_encode(br#"{"alg":"none","typ":"JWT"}"#),
        b64url_encode(&serde_json::to_vec(claims).unwrap())
    )
}

/// An HS256 assertion keyed with the client's public key: the classic confusion attack.
fn hmac_signed(key: &ProofKey, claims: &Map<String, Value>) -> String {
    let input = format!(
        "{}.{}",
        b64url_encode(br#"{"alg":"HS256","typ":"JWT"}"#),
        b64url_encode(&serde_json::to_vec(claims).unwrap())
    );
    let secret = hmac::Key::new(hmac::HMAC_SHA256, key.public_jwk().to_string().as_bytes());
    let tag = hmac::sign(&secret, input.as_bytes());
    format!("{input}.{}", b64url_encode(tag.as_ref()))
}

async fn the_revocation_endpoint_takes_an_assertion(app: TestApp) {
    acme(&app).await;
    let key = ProofKey::ed25519();
    let client = client_of(&app, &key).await;
    let got = exchange(&app, &honest(&app, &key, &client), &[]).await;
    got.assert_status(200);
    let jwt = got.body["access_token"].as_str().unwrap().to_owned();
    // Attack: a replayed assertion at the revocation endpoint does not authenticate.
    let used = honest(&app, &key, &client);
    exchange(&app, &used, &[]).await.assert_status(200);
    let replayed = app
        .form(
            "/oauth/revoke",
            None,
            &[
                ("token", &jwt),
                ("client_assertion_type", ASSERTION_TYPE),
                ("client_assertion", &used),
            ],
        )
        .await;
    Refusals::new(&app, 2)
        .await
        .check_at("/oauth/revoke", &replayed, "replayed_jti")
        .await;
    assert_eq!(app.introspect(&jwt).await["active"], true);
    // Control: a fresh assertion revokes the client's own token.
    let revoked = app
        .form(
            "/oauth/revoke",
            None,
            &[
                ("token", &jwt),
                ("client_assertion_type", ASSERTION_TYPE),
                ("client_assertion", &honest(&app, &key, &client)),
            ],
        )
        .await;
    revoked.assert_status(200);
    assert_eq!(app.introspect(&jwt).await["active"], false);
}

async fn rolling_a_key_client_takes_a_new_key(app: TestApp) {
    acme(&app).await;
    let old_key = ProofKey::ed25519();
    let old = client_of(&app, &old_key).await;
    let before = token_count(&app).await;
    // A key client's roll needs a new key; a secret client's roll takes none.
    let roll = |id: &str, body: Value| {
        let path = format!("/v1/tokens/{id}/roll");
        let app = &app;
        async move { app.post(&path, body).await }
    };
    roll(&old, json!({}))
        .await
        .assert_problem(400, "invalid-field");
    roll(&old, json!({ "public_key": old_key.public_jwk() }))
        .await
        .assert_problem(422, "invalid-value");
    let mut private = object(ProofKey::ed25519().public_jwk());
    private.insert("d".into(), json!("AAAA"));
    roll(&old, json!({ "public_key": private }))
        .await
        .assert_problem(400, "private-key");
    let (secret_id, _) = app.client("acme", json!({})).await;
    roll(
        &secret_id,
        json!({ "public_key": ProofKey::ed25519().public_jwk() }),
    )
    .await
    .assert_problem(400, "invalid-field");
    assert_eq!(
        token_count(&app).await,
        before + 1,
        "only the secret client"
    );

    let new_key = ProofKey::ed25519();
    let rolled = roll(
        &old,
        json!({ "public_key": new_key.public_jwk(), "grace_seconds": 3600 }),
    )
    .await;
    rolled.assert_status(201);
    let new = rolled.body["client_id"].as_str().unwrap().to_owned();
    assert!(rolled.body.get("client_secret").is_none());
    assert_eq!(rolled.body["token"]["public_key_thumbprint"], new_key.jkt());
    assert_eq!(rolled.body["token"]["rolled_from"], old.as_str());
    // The successor authenticates with the new key only.
    exchange(&app, &honest(&app, &new_key, &new), &[])
        .await
        .assert_status(200);
    let mut refusals = Refusals::new(&app, 1).await;
    let reply = exchange(&app, &honest(&app, &old_key, &new), &[]).await;
    refusals.check(&reply, "bad_signature").await;
    // During the grace window the old client keeps its old key, as a rolled secret does.
    exchange(&app, &honest(&app, &old_key, &old), &[])
        .await
        .assert_status(200);
    refusals.issued_one().await;
    let reply = exchange(&app, &honest(&app, &new_key, &old), &[]).await;
    refusals.check(&reply, "bad_signature").await;
    // After it, the old client is refused whatever key signs.
    app.clock.advance(std::time::Duration::from_secs(3601));
    let reply = exchange(&app, &honest(&app, &old_key, &old), &[]).await;
    assert_eq!(reply.status, 401, "{}", reply.text);
    assert_eq!(reply.body["error"], "invalid_client");
    // Control: the successor, still with its key.
    exchange(&app, &honest(&app, &new_key, &new), &[])
        .await
        .assert_status(200);
}

async fn a_key_client_refreshes_with_an_assertion(app: TestApp) {
    acme(&app).await;
    let key = ProofKey::ed25519();
    let created = app
        .post(
            "/v1/tenants/acme/tokens",
            json!({ "name": "signer", "kind": "client_credentials", "roles": ["viewer"],
                    "refresh_tokens": true, "public_key": key.public_jwk() }),
        )
        .await;
    created.assert_status(201);
    let client = created.body["client_id"].as_str().unwrap().to_owned();
    let got = exchange(&app, &honest(&app, &key, &client), &[]).await;
    got.assert_status(200);
    let refresh = got.body["refresh_token"].as_str().unwrap().to_owned();
    // Attack: the refresh token alone, with no client authentication.
    let bare = app
        .form(
            "/oauth/token",
            None,
            &[("grant_type", "refresh_token"), ("refresh_token", &refresh)],
        )
        .await;
    assert_eq!(bare.status, 401, "{}", bare.text);
    assert_eq!(bare.body["error"], "invalid_client");
    // Control: with a fresh assertion the refresh rotates.
    let refreshed = app
        .form(
            "/oauth/token",
            None,
            &[
                ("grant_type", "refresh_token"),
                ("refresh_token", &refresh),
                ("client_assertion_type", ASSERTION_TYPE),
                ("client_assertion", &honest(&app, &key, &client)),
            ],
        )
        .await;
    refreshed.assert_status(200);
    assert_ne!(refreshed.body["refresh_token"], refresh.as_str());
}

/// One assertion sent to two servers on one database at once is accepted by exactly
/// one: the `jti` is remembered in the store, not per process. Replicas are a
/// PostgreSQL deployment (docs/DEPLOYMENT.md); two SQLite servers on one file contend
/// for its one writer, and under a loaded machine the token's creation timed out.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_assertion_is_accepted_once_across_replicas() {
    let Some(app) = TestApp::postgres().await else {
        return;
    };
    acme(&app).await;
    let other = app.replica(|_| {}).await;
    let key = ProofKey::es256();
    let client = client_of(&app, &key).await;
    for _ in 0..10 {
        let mut c = claims(&app, &client);
        c.insert(
            "aud".into(),
            json!([token_url(&app), format!("{}/oauth/token", other.base)]),
        );
        let assertion = key.sign(&header(&key), &c);
        let (a, b) = tokio::join!(
            exchange(&app, &assertion, &[]),
            exchange(&other, &assertion, &[])
        );
        let mut statuses = [a.status, b.status];
        statuses.sort_unstable();
        assert_eq!(statuses, [200, 401], "{} / {}", a.text, b.text);
    }
}

/// The Python client of docs/MACHINES.md (authlib), run as it is shown, authenticates with
/// `private_key_jwt` and gets a token, twice (each assertion has its own `jti`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_python_authlib_client_authenticates_with_private_key_jwt() {
    let dir = tempfile::tempdir().unwrap();
    let Some(script) = documented_python(
        "Clients with a private key (private_key_jwt)",
        "import authlib.oauth2.rfc7523, requests",
        dir.path(),
        "private_key_jwt_client.py",
    ) else {
        return;
    };
    let (pem, jwk) = p256_pem_and_jwk();
    let key_file = dir.path().join("client-key.pem");
    std::fs::write(&key_file, pem).unwrap();
    let app = TestApp::sqlite().await;
    acme(&app).await;
    let created = key_client(&app, jwk).await;
    created.assert_status(201);
    let id = created.body["client_id"].as_str().unwrap().to_owned();
    let key_file = key_file.to_str().unwrap().to_owned();
    let token = run_python(script, vec![app.base.clone(), id, key_file]).await;
    assert_eq!(token["token_type"], "Bearer");
    let jwt = token["access_token"].as_str().unwrap();
    assert_eq!(
        payload(jwt)["client_id"],
        created.body["client_id"],
        "{token}"
    );
    assert_eq!(app.introspect(jwt).await["active"], true);
    let exchanged = app.wait_for_audit("action=token.exchanged", 1).await;
    assert_eq!(exchanged[0]["actor"], created.body["client_id"]);
}

/// A fresh P-256 private key as PKCS#8 PEM, and its public JWK.
fn p256_pem_and_jwk() -> (String, Value) {
    use aws_lc_rs::rand::SystemRandom;
    use aws_lc_rs::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, KeyPair};
    use base64::Engine;
    let rng = SystemRandom::new();
    let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng).unwrap();
    let pair = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, pkcs8.as_ref()).unwrap();
    let point = pair.public_key().as_ref();
    let jwk = json!({
        "kty": "EC", "crv": "P-256",
        "x": b64url_encode(&point[1..33]), "y": b64url_encode(&point[33..65]),
    });
    let body = base64::engine::general_purpose::STANDARD.encode(pkcs8.as_ref());
    let lines: Vec<&str> = body
        .as_bytes()
        .chunks(64)
        .map(|chunk| std::str::from_utf8(chunk).unwrap())
        .collect();
    let pem = format!(
        "-----BEGIN PRIVATE KEY-----\n{}\n-----END PRIVATE KEY-----\n",
        lines.join("\n")
    );
    (pem, jwk)
}
