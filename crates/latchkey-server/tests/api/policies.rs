//! Tenant policies (docs/API.md, "Tenant policies"): every rule refusing a create and a
//! roll while the compliant request passes, the violations a new policy finds, who may
//! set one, bad policies refused without a change, the operator's floor, and the sweep
//! that revokes unused tokens.

use crate::helpers::TestApp;
use crate::{both_backends, both_backends_with};
use latchkey_server::Config;
use serde_json::{Value, json};
use std::time::Duration;

both_backends!(
    every_rule_refuses_a_create_and_nothing_is_created,
    a_roll_is_held_to_the_policy,
    a_put_replaces_the_policy_and_names_the_tokens_that_break_it,
    bad_policies_are_refused_and_change_nothing,
    a_tenant_manager_sets_its_own_policy_but_not_the_system_tenants,
    tokens_unused_too_long_are_revoked_by_the_sweep,
);

both_backends_with!(
    with_floor;
    the_operator_floor_binds_every_tenant_and_may_only_be_tightened,
);

const DAY: i64 = 86_400_000;

fn with_floor(config: &mut Config) {
    config.policy_floor = latchkey_core::policy::TenantPolicy {
        max_token_lifetime_days: Some(90),
        ..Default::default()
    };
}

async fn acme(app: &TestApp) {
    app.seed_catalogue().await;
    app.create_tenant("acme").await;
    app.put_member("acme", "u_42", &["editor"]).await;
}

async fn put_policy(app: &TestApp, tenant: &str, policy: Value) -> Value {
    let reply = app
        .put(&format!("/v1/tenants/{tenant}/policy"), policy)
        .await;
    reply.assert_status(200);
    reply.body
}

/// How many tokens acme has, tenant and personal, as the API lists them.
async fn token_count(app: &TestApp) -> usize {
    let mut count = 0;
    for path in [
        "/v1/tenants/acme/tokens",
        "/v1/tenants/acme/users/u_42/tokens",
    ] {
        let page = app.get(&format!("{path}?limit=200")).await;
        page.assert_status(200);
        count += page.body["items"].as_array().unwrap().len();
    }
    count
}

/// A policy that sets every rule a create can break.
fn every_rule() -> Value {
    json!({
        "max_token_lifetime_days": 30,
        "require_expiry": true,
        "allowed_kinds": ["client_credentials", "jwt"],
        "require_ip_allowlist": true,
        "max_access_token_ttl_seconds": 600,
    })
}

fn expiring_in(app: &TestApp, days: i64) -> Value {
    json!(app.in_millis(days * DAY))
}

async fn every_rule_refuses_a_create_and_nothing_is_created(app: TestApp) {
    acme(&app).await;
    put_policy(&app, "acme", every_rule()).await;
    let compliant = json!({
        "name": "ci",
        "kind": "client_credentials",
        "roles": ["viewer"],
        "expires_at": expiring_in(&app, 30),
        "ip_allowlist": ["10.0.0.0/8"],
        "access_token_ttl_seconds": 600,
    });
    let breaking = |field: &str, value: Value| {
        let mut body = compliant.clone();
        match value {
            Value::Null => {
                body.as_object_mut().unwrap().remove(field);
            }
            value => body[field] = value,
        }
        body
    };
    let cases = [
        (
            breaking("expires_at", expiring_in(&app, 31)),
            "max_token_lifetime_days",
        ),
        // Without an expiry the lifetime rule is the first broken.
        (
            breaking("expires_at", Value::Null),
            "max_token_lifetime_days",
        ),
        (breaking("kind", json!("api_key")), "allowed_kinds"),
        (breaking("ip_allowlist", json!([])), "require_ip_allowlist"),
        (
            breaking("access_token_ttl_seconds", json!(601)),
            "max_access_token_ttl_seconds",
        ),
    ];
    let before = token_count(&app).await;
    let created_before = app.audit_count("token.created").await;
    for (body, rule) in cases {
        let reply = app.post("/v1/tenants/acme/tokens", body).await;
        reply.assert_problem(422, "policy-violation");
        assert_eq!(reply.body["rule"], rule, "{}", reply.body);
        assert!(
            reply.body["detail"].as_str().unwrap().contains("\"ci\""),
            "{}",
            reply.body
        );
    }
    // Personal tokens are held to the same rules.
    let personal = app
        .post(
            "/v1/tenants/acme/users/u_42/tokens",
            json!({ "name": "laptop", "kind": "api_key", "permissions": ["reports:read"] }),
        )
        .await;
    personal.assert_problem(422, "policy-violation");
    assert_eq!(personal.body["rule"], "max_token_lifetime_days");
    assert_eq!(token_count(&app).await, before, "nothing was created");
    assert_eq!(app.audit_count("token.created").await, created_before);

    // The require_expiry rule on its own.
    put_policy(&app, "acme", json!({ "require_expiry": true })).await;
    let forever = app
        .post(
            "/v1/tenants/acme/tokens",
            json!({ "name": "forever", "kind": "api_key", "roles": ["viewer"] }),
        )
        .await;
    forever.assert_problem(422, "policy-violation");
    assert_eq!(forever.body["rule"], "require_expiry");
    assert_eq!(token_count(&app).await, before);

    // The control: what the policy allows is created.
    put_policy(&app, "acme", every_rule()).await;
    let created = app.create_tenant_token("acme", compliant.clone()).await;
    assert_eq!(created["token"]["access_token_ttl_seconds"], 600);
    // A request naming no access-token lifetime gets the policy's bound, not a refusal.
    let mut unnamed = breaking("access_token_ttl_seconds", Value::Null);
    unnamed["name"] = json!("ci-2");
    let created = app.create_tenant_token("acme", unnamed).await;
    assert_eq!(created["token"]["access_token_ttl_seconds"], 600);
    assert_eq!(token_count(&app).await, before + 2);
}

async fn a_roll_is_held_to_the_policy(app: TestApp) {
    acme(&app).await;
    let old = app
        .create_tenant_token(
            "acme",
            json!({ "name": "ci", "kind": "api_key", "roles": ["viewer"] }),
        )
        .await;
    let id = old["token"]["id"].as_str().unwrap();
    put_policy(&app, "acme", json!({ "max_token_lifetime_days": 7 })).await;

    // The successor keeps the old token's (missing) expiry by default: refused.
    let refused = app
        .post(
            &format!("/v1/tokens/{id}/roll"),
            json!({ "grace_seconds": 0 }),
        )
        .await;
    refused.assert_problem(422, "policy-violation");
    assert_eq!(refused.body["rule"], "max_token_lifetime_days");
    let unchanged = app.get(&format!("/v1/tokens/{id}")).await;
    assert_eq!(unchanged.body["rolled_to"], Value::Null);
    assert_eq!(unchanged.body["revoked_at"], Value::Null);
    assert_eq!(app.audit_count("token.rolled").await, 0);

    // With an expiry inside the bound the roll goes through.
    let rolled = app
        .post(
            &format!("/v1/tokens/{id}/roll"),
            json!({ "grace_seconds": 0, "expires_at": expiring_in(&app, 7) }),
        )
        .await;
    rolled.assert_status(201);
    assert_eq!(rolled.body["token"]["rolled_from"], id);
}

async fn a_put_replaces_the_policy_and_names_the_tokens_that_break_it(app: TestApp) {
    acme(&app).await;
    let fresh = app.get("/v1/tenants/acme/policy").await;
    fresh.assert_status(200);
    assert_eq!(fresh.body["updated_at"], Value::Null);
    assert_eq!(fresh.body["policy"]["require_expiry"], false);
    assert_eq!(fresh.body["policy"]["allowed_kinds"], Value::Null);
    assert!(fresh.body.get("violations").is_none());

    let open = app
        .create_tenant_token(
            "acme",
            json!({ "name": "open", "kind": "api_key", "roles": ["viewer"] }),
        )
        .await;
    let open_id = open["token"]["id"].as_str().unwrap();
    app.create_tenant_token(
        "acme",
        json!({
            "name": "tidy", "kind": "client_credentials", "roles": ["viewer"],
            "expires_at": expiring_in(&app, 5), "ip_allowlist": ["10.0.0.0/8"],
        }),
    )
    .await;
    let answer = put_policy(
        &app,
        "acme",
        json!({ "require_expiry": true, "require_ip_allowlist": true }),
    )
    .await;
    assert_eq!(answer["tenant_id"], "acme");
    assert_eq!(answer["policy"]["require_expiry"], true);
    assert_eq!(answer["effective"]["require_expiry"], true);
    assert_eq!(answer["updated_at"], json!(app.now()));
    // `open` breaks both rules; `tidy` neither.
    let violations = &answer["violations"];
    let listed = violations["tokens"].as_array().unwrap();
    assert_eq!(violations["total"], 1);
    assert_eq!(listed.len(), 1);
    let open_entry = listed
        .iter()
        .find(|entry| entry["id"] == open_id)
        .expect("the open token is named");
    assert_eq!(
        open_entry["rules"],
        json!(["require_expiry", "require_ip_allowlist"])
    );
    assert_eq!(open_entry["name"], "open");
    assert!(listed.iter().all(|entry| entry["name"] != "tidy"));
    // Existing tokens are not changed by a policy.
    let still = app.get(&format!("/v1/tokens/{open_id}")).await;
    assert_eq!(still.body["revoked_at"], Value::Null);

    // A PUT replaces the whole policy: what it leaves out is no rule any more.
    let replaced = put_policy(&app, "acme", json!({ "allowed_kinds": ["api_key"] })).await;
    assert_eq!(replaced["policy"]["require_expiry"], false);
    assert_eq!(replaced["policy"]["allowed_kinds"], json!(["api_key"]));
    let read = app.get("/v1/tenants/acme/policy").await;
    assert_eq!(read.body["policy"], replaced["policy"]);
    assert!(read.body.get("violations").is_none());

    let events = app
        .wait_for_audit("action=policy.put&tenant_id=acme", 2)
        .await;
    assert_eq!(events[0]["target"], "acme");
    assert_eq!(
        events[0]["details"]["policy"]["allowed_kinds"],
        json!(["api_key"])
    );
}

async fn bad_policies_are_refused_and_change_nothing(app: TestApp) {
    acme(&app).await;
    let set = put_policy(&app, "acme", json!({ "max_token_lifetime_days": 30 })).await;
    for (body, field) in [
        (
            json!({ "max_token_lifetime_days": 0 }),
            "max_token_lifetime_days",
        ),
        (
            json!({ "max_token_lifetime_days": -1 }),
            "max_token_lifetime_days",
        ),
        (
            json!({ "max_token_lifetime_days": 36_501 }),
            "max_token_lifetime_days",
        ),
        (
            json!({ "max_token_lifetime_days": 1_u64 << 40 }),
            "max_token_lifetime_days",
        ),
        (
            json!({ "revoke_unused_after_days": 0 }),
            "revoke_unused_after_days",
        ),
        (
            json!({ "max_access_token_ttl_seconds": 86_401 }),
            "max_access_token_ttl_seconds",
        ),
        (json!({ "allowed_kinds": [] }), "allowed_kinds"),
        (json!({ "allowed_kinds": ["jwt", "jwt"] }), "allowed_kinds"),
        (
            json!({ "allowed_kinds": ["api_key"], "max_access_token_ttl_seconds": 60 }),
            "max_access_token_ttl_seconds",
        ),
    ] {
        let reply = app.put("/v1/tenants/acme/policy", body.clone()).await;
        reply.assert_problem(422, "invalid-value");
        assert_eq!(reply.body["field"], field, "{body}");
    }
    for body in [
        json!({ "allowed_kinds": ["password"] }),
        json!({ "require_expiry": "yes" }),
        json!({ "max_lifetime": 3 }),
    ] {
        app.put("/v1/tenants/acme/policy", body)
            .await
            .assert_problem(400, "invalid-field");
    }
    // Read by position, an array would be a policy with no rules.
    for body in [json!([]), json!([30, true])] {
        app.put("/v1/tenants/acme/policy", body)
            .await
            .assert_problem(400, "invalid-body");
    }
    let read = app.get("/v1/tenants/acme/policy").await;
    assert_eq!(read.body["policy"], set["policy"]);
    assert_eq!(read.body["updated_at"], set["updated_at"]);
    assert_eq!(app.audit_count("policy.put").await, 1);
    app.put("/v1/tenants/nobody/policy", json!({}))
        .await
        .assert_problem(404, "not-found");
}

async fn a_tenant_manager_sets_its_own_policy_but_not_the_system_tenants(app: TestApp) {
    acme(&app).await;
    app.create_tenant("globex").await;
    let manager = app.manager_key("acme").await;
    for (tenant, status) in [("acme", 200), ("globex", 404)] {
        let reply = app
            .call(
                reqwest::Method::PUT,
                &format!("/v1/tenants/{tenant}/policy"),
                Some(&manager),
                Some(json!({ "require_expiry": true })),
            )
            .await;
        reply.assert_status(status);
    }
    let system_manager = app.manager_key("latchkey").await;
    let system = app
        .call(
            reqwest::Method::PUT,
            "/v1/tenants/latchkey/policy",
            Some(&system_manager),
            Some(json!({ "require_expiry": true })),
        )
        .await;
    system.assert_problem(403, "insufficient-scope");
    let globex = app.get("/v1/tenants/globex/policy").await;
    assert_eq!(globex.body["updated_at"], Value::Null);
    let latchkey = app.get("/v1/tenants/latchkey/policy").await;
    assert_eq!(latchkey.body["updated_at"], Value::Null);
    // The admin may set the system tenant's.
    put_policy(&app, "latchkey", json!({ "require_expiry": true })).await;
}

async fn tokens_unused_too_long_are_revoked_by_the_sweep(app: TestApp) {
    acme(&app).await;
    let (used_id, used_secret) = app
        .client("acme", json!({ "name": "used", "roles": ["viewer"] }))
        .await;
    let idle = app
        .create_tenant_token(
            "acme",
            json!({ "name": "idle", "kind": "api_key", "roles": ["viewer"] }),
        )
        .await;
    let idle_id = idle["token"]["id"].as_str().unwrap().to_owned();
    let idle_key = idle["api_key"].as_str().unwrap().to_owned();
    // A manager's key holds a built-in permission: the sweep never revokes it.
    let manager = app.manager_key("acme").await;
    put_policy(&app, "acme", json!({ "revoke_unused_after_days": 30 })).await;

    app.clock.advance(Duration::from_secs(20 * 86_400));
    app.exchange(&used_id, &used_secret, &[])
        .await
        .assert_status(200);
    app.maintain().await;
    let used = app.get(&format!("/v1/tokens/{used_id}")).await;
    assert_eq!(
        used.body["last_used_at"],
        json!(app.now()),
        "the use is recorded"
    );
    assert_eq!(used.body["last_used_ip"], "127.0.0.1");

    app.clock.advance(Duration::from_secs(11 * 86_400));
    app.maintain().await;
    let gone = app.get(&format!("/v1/tokens/{idle_id}")).await;
    assert_eq!(gone.body["revoked_reason"], "unused", "{}", gone.body);
    assert_eq!(gone.body["revoked_at"], json!(app.now()));
    let kept = app.get(&format!("/v1/tokens/{used_id}")).await;
    assert_eq!(kept.body["revoked_at"], Value::Null, "used 11 days ago");
    app.call(
        reqwest::Method::GET,
        "/v1/tenants/acme",
        Some(&manager),
        None,
    )
    .await
    .assert_status(200);
    // The revoked key no longer authenticates anywhere.
    let refused = app.introspect(&idle_key).await;
    assert_eq!(refused["active"], false);
    let events = app
        .wait_for_audit(&format!("action=token.revoked&token_id={idle_id}"), 1)
        .await;
    assert_eq!(events[0]["details"]["reason"], "unused");
    assert_eq!(events[0]["actor"], "system");
    assert_eq!(app.audit_count("token.revoked").await, 1);
}

async fn the_operator_floor_binds_every_tenant_and_may_only_be_tightened(app: TestApp) {
    acme(&app).await;
    let read = app.get("/v1/tenants/acme/policy").await;
    assert_eq!(read.body["policy"]["max_token_lifetime_days"], Value::Null);
    assert_eq!(read.body["effective"]["max_token_lifetime_days"], 90);

    let forever = app
        .post(
            "/v1/tenants/acme/tokens",
            json!({ "name": "forever", "kind": "api_key", "roles": ["viewer"] }),
        )
        .await;
    forever.assert_problem(422, "policy-violation");
    assert_eq!(forever.body["rule"], "max_token_lifetime_days");

    let looser = app
        .put(
            "/v1/tenants/acme/policy",
            json!({ "max_token_lifetime_days": 91 }),
        )
        .await;
    looser.assert_problem(422, "invalid-value");
    assert!(
        looser.body["detail"]
            .as_str()
            .unwrap()
            .contains("policy floor"),
        "{}",
        looser.body
    );
    let tighter = put_policy(&app, "acme", json!({ "max_token_lifetime_days": 30 })).await;
    assert_eq!(tighter["effective"]["max_token_lifetime_days"], 30);
    let sixty = app
        .post(
            "/v1/tenants/acme/tokens",
            json!({
                "name": "sixty", "kind": "api_key", "roles": ["viewer"],
                "expires_at": expiring_in(&app, 60),
            }),
        )
        .await;
    sixty.assert_problem(422, "policy-violation");
    let thirty = app
        .post(
            "/v1/tenants/acme/tokens",
            json!({
                "name": "thirty", "kind": "api_key", "roles": ["viewer"],
                "expires_at": expiring_in(&app, 30),
            }),
        )
        .await;
    thirty.assert_status(201);
}
