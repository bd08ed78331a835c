//! The five Ws: every state change writes exactly one audit event with who, where and
//! what; authentications are audited too; the hash chain and its MACs show tampering.

use crate::both_backends;
use crate::helpers::{TestApp, captured_logs};
use aws_lc_rs::hmac;
use latchkey_core::audit::{
    AuditAction, AuditRecord, Break, BreakReason, ChainLink, ChainVerifier, chain_hash, hex, unhex,
};
use reqwest::Method;
use serde_json::{Value, json};
use std::time::Duration;

both_backends!(
    every_mutating_request_writes_exactly_one_event_with_its_five_ws,
    a_refused_request_writes_no_event,
    authentications_are_audited_without_secrets,
    every_exchange_is_recorded_and_alike_ones_share_an_event,
    the_audit_list_filters_pages_and_keeps_managers_in_their_tenant,
    the_chain_verifies_and_names_the_first_tampered_or_missing_event,
    only_an_admin_may_ask_the_server_to_verify_the_chain,
    a_fresh_chain_verifies_on_the_server_and_every_event_carries_its_mac,
    a_rewritten_and_rehashed_last_event_fails_the_servers_mac_check,
    a_deleted_tail_shows_against_the_stored_head_until_the_head_is_moved_back,
    the_mac_key_never_reaches_a_log_or_a_response,
    events_from_before_macs_are_legacy_and_new_events_are_signed,
    an_action_this_version_does_not_write_still_reads_as_stored,
);

/// A request and the event it must write: method, path, body, action, tenant, target.
type Step = (
    Method,
    String,
    Option<Value>,
    &'static str,
    Option<&'static str>,
    Option<&'static str>,
);

async fn newest(app: &TestApp) -> Value {
    app.get("/v1/audit?limit=1").await.body["items"][0].clone()
}

async fn total(app: &TestApp) -> i64 {
    app.get("/v1/audit/head").await.body["seq"]
        .as_i64()
        .unwrap()
}

async fn every_mutating_request_writes_exactly_one_event_with_its_five_ws(app: TestApp) {
    let root_id = app.get("/v1/tenants/latchkey/tokens").await.body["items"][0]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    app.put("/v1/permissions/reports:read", json!({}))
        .await
        .assert_status(200);
    let created = json!({ "name": "ci", "kind": "client_credentials", "roles": ["viewer"], "created_by": "u_42",
                          "ip_allowlist": ["10.0.0.0/8", "127.0.0.1"] });
    // (method, path, body, action, tenant, target)
    let steps: Vec<Step> = vec![
        (
            Method::PUT,
            "/v1/permissions/reports:write".into(),
            Some(json!({ "description": "w" })),
            "permission.put",
            None,
            Some("reports:write"),
        ),
        (
            Method::PUT,
            "/v1/roles/viewer".into(),
            Some(json!({ "permissions": ["reports:read"] })),
            "role.put",
            None,
            Some("viewer"),
        ),
        (
            Method::POST,
            "/v1/tenants".into(),
            Some(json!({ "id": "acme" })),
            "tenant.created",
            Some("acme"),
            Some("acme"),
        ),
        (
            Method::PUT,
            "/v1/tenants/acme/users/u_42".into(),
            Some(json!({ "roles": ["viewer"] })),
            "membership.put",
            Some("acme"),
            Some("u_42"),
        ),
        (
            Method::POST,
            "/v1/tenants/acme/tokens".into(),
            Some(created),
            "token.created",
            Some("acme"),
            None,
        ),
    ];
    for (method, path, body, action, tenant, target) in steps {
        let before = total(&app).await;
        let now = i128::from(app.now().millis()) * 1_000_000;
        let started = time::OffsetDateTime::from_unix_timestamp_nanos(now).unwrap()
            - time::Duration::seconds(1);
        let reply = app.call(method, &path, Some(&app.root_key), body).await;
        assert!(reply.status < 300, "{path}: {}", reply.text);
        assert_eq!(
            total(&app).await,
            before + 1,
            "{path} writes exactly one event"
        );
        let event = newest(&app).await;
        assert_eq!(event["action"], action);
        assert_eq!(event["actor"], root_id, "who: the calling credential");
        assert_eq!(event["ip"], "127.0.0.1", "where");
        assert_eq!(event["user_agent"], "latchkey-tests");
        assert_eq!(event["tenant_id"].as_str(), tenant);
        if let Some(target) = target {
            assert_eq!(event["target"], target);
        }
        let at = time::OffsetDateTime::parse(
            event["at"].as_str().unwrap(),
            &time::format_description::well_known::Rfc3339,
        )
        .unwrap();
        assert!(at >= started, "when");
        if action == "token.created" {
            let details = &event["details"];
            assert_eq!(details["kind"], "client_credentials");
            assert_eq!(details["roles"], json!(["viewer"]));
            assert_eq!(details["created_by"], "u_42");
            assert_eq!(
                details["ip_allowlist"],
                json!(["10.0.0.0/8", "127.0.0.1/32"])
            );
            assert_eq!(event["actor_user"], "u_42", "the acting user");
            assert_eq!(event["target"], reply.body["token"]["id"]);
        }
    }
    let token = app.get("/v1/tenants/acme/tokens").await.body["items"][0]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let more: Vec<(Method, String, Option<Value>, &str)> = vec![
        (
            Method::PATCH,
            format!("/v1/tokens/{token}"),
            Some(json!({ "name": "renamed" })),
            "token.renamed",
        ),
        (
            Method::DELETE,
            format!("/v1/tokens/{token}"),
            None,
            "token.revoked",
        ),
        (
            Method::DELETE,
            "/v1/tenants/acme/users/u_42".into(),
            None,
            "membership.removed",
        ),
        (
            Method::DELETE,
            "/v1/users/u_42".into(),
            None,
            "user.deleted",
        ),
        (
            Method::POST,
            "/v1/keys/rotate".into(),
            Some(json!({})),
            "key.rotated",
        ),
        (
            Method::DELETE,
            "/v1/tenants/acme".into(),
            None,
            "tenant.deleted",
        ),
    ];
    for (method, path, body, action) in more {
        // Deleting a user who is gone from every tenant still finds their tokens' trail.
        let before = total(&app).await;
        let reply = app.call(method, &path, Some(&app.root_key), body).await;
        if action == "user.deleted" && reply.status == 404 {
            continue;
        }
        assert!(reply.status < 300, "{path}: {}", reply.text);
        assert_eq!(
            total(&app).await,
            before + 1,
            "{path} writes exactly one event"
        );
        let event = newest(&app).await;
        assert_eq!(event["action"], action);
        assert_eq!(event["actor"], root_id);
        assert_eq!(event["ip"], "127.0.0.1");
    }
    let renamed = app.get("/v1/audit?action=token.renamed").await.body["items"][0].clone();
    assert_eq!(renamed["details"], json!({ "from": "ci", "to": "renamed" }));
}

async fn a_refused_request_writes_no_event(app: TestApp) {
    app.create_tenant("acme").await;
    let before = total(&app).await;
    app.post("/v1/tenants", json!({ "id": "acme" }))
        .await
        .assert_problem(409, "already-exists");
    app.put("/v1/roles/viewer", json!({ "permissions": ["nope:nope"] }))
        .await
        .assert_problem(422, "unknown-permission");
    app.post(
        "/v1/tenants/acme/tokens",
        json!({ "name": "x", "kind": "api_key", "roles": ["ghost"] }),
    )
    .await
    .assert_problem(422, "unknown-role");
    app.patch(
        "/v1/tokens/00000000-0000-4000-8000-000000000000",
        json!({ "name": "x" }),
    )
    .await
    .assert_problem(404, "not-found");
    assert_eq!(total(&app).await, before);
}

async fn authentications_are_audited_without_secrets(app: TestApp) {
    app.put("/v1/permissions/reports:read", json!({}))
        .await
        .assert_status(200);
    app.create_tenant("acme").await;
    let (id, secret) = app
        .client(
            "acme",
            json!({ "permissions": ["reports:read"], "refresh_tokens": true }),
        )
        .await;
    let granted = app.exchange(&id, &secret, &[]).await;
    granted.assert_status(200);
    let (_, wrong) = app.client("acme", json!({})).await;
    app.exchange(&id, &wrong, &[]).await;
    app.exchange("00000000-0000-4000-8000-000000000000", &secret, &[])
        .await;
    let refresh = granted.body["refresh_token"].as_str().unwrap().to_owned();
    app.form(
        "/oauth/token",
        Some(&crate::helpers::basic(&id, &secret)),
        &[("grant_type", "refresh_token"), ("refresh_token", &refresh)],
    )
    .await
    .assert_status(200);
    let exchanged = app.wait_for_audit("action=token.exchanged", 1).await;
    assert_eq!(exchanged[0]["target"], id);
    assert_eq!(exchanged[0]["tenant_id"], "acme");
    assert_eq!(exchanged[0]["ip"], "127.0.0.1");
    assert_eq!(exchanged[0]["details"]["scope"], "reports:read");
    // An exchange that starts a refresh-token family is an event of its own.
    assert_eq!(exchanged[0]["details"]["count"], 1);
    let jti = app
        .introspect(granted.body["access_token"].as_str().unwrap())
        .await["jti"]
        .clone();
    assert_eq!(exchanged[0]["details"]["jti"], json!([jti]));
    assert!(exchanged[0]["details"]["refresh_family"].is_string());
    let refreshed = app.wait_for_audit("action=token.refreshed", 1).await;
    assert_eq!(refreshed[0]["target"], id);
    let failed = app.wait_for_audit("action=auth.failed", 2).await;
    let reasons: Vec<&str> = failed
        .iter()
        .map(|e| e["details"]["reason"].as_str().unwrap())
        .collect();
    assert_eq!(reasons, ["unknown_client", "bad_secret"]);
    let everything = app.get("/v1/audit/chain?after=0").await.text;
    for needle in [
        &secret,
        &wrong,
        &refresh,
        &granted.body["access_token"].as_str().unwrap().to_owned(),
    ] {
        assert!(
            !everything.contains(needle.as_str()),
            "no secret in the audit trail"
        );
    }
}

async fn the_audit_list_filters_pages_and_keeps_managers_in_their_tenant(app: TestApp) {
    app.create_tenant("acme").await;
    app.create_tenant("globex").await;
    for n in 0..3 {
        app.create_tenant_token(
            "acme",
            json!({ "name": format!("a{n}"), "kind": "api_key" }),
        )
        .await;
    }
    let created = app
        .get("/v1/audit?action=token.created&tenant_id=acme")
        .await
        .body["items"]
        .clone();
    assert_eq!(created.as_array().unwrap().len(), 3);
    let first = app
        .get("/v1/audit?action=token.created&tenant_id=acme&limit=2")
        .await;
    assert_eq!(first.body["items"].as_array().unwrap().len(), 2);
    let cursor = first.body["next_cursor"].as_str().unwrap();
    let second = app
        .get(&format!(
            "/v1/audit?action=token.created&tenant_id=acme&limit=2&cursor={cursor}"
        ))
        .await;
    assert_eq!(second.body["items"].as_array().unwrap().len(), 1);
    assert!(second.body["next_cursor"].is_null());
    let seqs: Vec<i64> = created
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["seq"].as_i64().unwrap())
        .collect();
    assert!(seqs.windows(2).all(|w| w[0] > w[1]), "newest first");
    let token = created[0]["target"].as_str().unwrap();
    let by_token = app.get(&format!("/v1/audit?token_id={token}")).await.body["items"].clone();
    assert_eq!(by_token.as_array().unwrap().len(), 1);
    let manager = app.manager_key("globex").await;
    let own = app
        .call(Method::GET, "/v1/audit", Some(&manager), None)
        .await;
    own.assert_status(200);
    assert!(
        own.body["items"]
            .as_array()
            .unwrap()
            .iter()
            .all(|e| e["tenant_id"] == "globex")
    );
    let other = app
        .call(
            Method::GET,
            "/v1/audit?tenant_id=acme",
            Some(&manager),
            None,
        )
        .await;
    other.assert_problem(404, "not-found");
    app.get("/v1/audit?since=yesterday")
        .await
        .assert_problem(400, "invalid-field");
    let future = app.get("/v1/audit?since=2999-01-01T00:00:00Z").await;
    assert_eq!(future.body["items"], json!([]));
}

fn chain_of(text: &str) -> Vec<ChainLink> {
    text.lines()
        .map(|line| {
            let record: AuditRecord = serde_json::from_str(line).unwrap();
            ChainLink::from_record(record).unwrap()
        })
        .collect()
}

/// The first break a walk over the export finds, checking hash links only (what the
/// CLI checks on its own), against the stored head.
async fn first_broken_link(app: &TestApp) -> Option<Break> {
    let head = app.get("/v1/audit/head").await.body;
    let seq = head["seq"].as_i64().unwrap();
    let mut walk = ChainVerifier::links(seq, unhex(head["hash"].as_str().unwrap()).unwrap());
    for link in chain_of(&app.get("/v1/audit/chain?after=0").await.text) {
        walk.check(&link);
    }
    walk.finish(seq).first_broken
}

async fn the_chain_verifies_and_names_the_first_tampered_or_missing_event(app: TestApp) {
    app.create_tenant("acme").await;
    for n in 0..4 {
        app.create_tenant_token(
            "acme",
            json!({ "name": format!("t{n}"), "kind": "api_key" }),
        )
        .await;
    }
    let chain = app.get("/v1/audit/chain?after=0").await;
    assert_eq!(chain.header("content-type"), "application/jsonl");
    let events = chain_of(&chain.text);
    let head = app.get("/v1/audit/head").await.body;
    assert_eq!(events.len() as i64, head["seq"].as_i64().unwrap());
    assert_eq!(first_broken_link(&app).await, None);
    let db = app.db().await;
    // Edit one row.
    sqlx::query("UPDATE audit_events SET details = '{\"name\":\"forged\"}' WHERE seq = 4")
        .execute(&db)
        .await
        .unwrap();
    assert_eq!(
        first_broken_link(&app).await,
        Some(Break {
            seq: 4,
            reason: BreakReason::Hash
        })
    );
    assert_eq!(
        verdict(&app).await["first_broken"],
        json!({ "seq": 4, "reason": "hash" })
    );
    // Details that are not JSON at all.
    sqlx::query("UPDATE audit_events SET details = '{not json' WHERE seq = 3")
        .execute(&db)
        .await
        .unwrap();
    let export = app.get("/v1/audit/chain?after=0").await;
    export.assert_status(200);
    assert_eq!(chain_of(&export.text)[2].event.details, json!("{not json"));
    assert_eq!(
        verdict(&app).await["first_broken"],
        json!({ "seq": 3, "reason": "hash" })
    );
    // Delete an earlier one.
    sqlx::query("DELETE FROM audit_events WHERE seq = 2")
        .execute(&db)
        .await
        .unwrap();
    assert_eq!(
        first_broken_link(&app).await,
        Some(Break {
            seq: 2,
            reason: BreakReason::Missing
        })
    );
    assert_eq!(
        verdict(&app).await["first_broken"],
        json!({ "seq": 2, "reason": "missing" })
    );
}

/// The server's verdict, asserting the shape of a 200.
async fn verdict(app: &TestApp) -> Value {
    let reply = app.get("/v1/audit/verify").await;
    reply.assert_status(200);
    assert_eq!(reply.header("content-type"), "application/json");
    assert_eq!(reply.header("cache-control"), "no-store");
    let body = reply.body;
    assert_eq!(body["intact"], body["first_broken"].is_null(), "{body}");
    assert!(
        body["checked"].is_i64() && body["legacy"].is_i64(),
        "{body}"
    );
    assert!(body["head"]["seq"].is_i64() && body["head"]["hash"].is_string());
    body
}

/// The audit MAC key as docs/API.md describes it: HMAC-SHA256(master key, label).
fn mac_key(app: &TestApp) -> Vec<u8> {
    let master = std::fs::read_to_string(app.data_dir.path().join("master.key")).unwrap();
    let master = unhex(master.trim()).unwrap();
    hmac::sign(
        &hmac::Key::new(hmac::HMAC_SHA256, &master),
        b"latchkey audit mac v1",
    )
    .as_ref()
    .to_vec()
}

async fn only_an_admin_may_ask_the_server_to_verify_the_chain(app: TestApp) {
    app.create_tenant("acme").await;
    let manager = app.manager_key("acme").await;
    app.call(Method::GET, "/v1/audit/verify", Some(&manager), None)
        .await
        .assert_problem(403, "insufficient-scope");
    let plain = app
        .create_tenant_token("acme", json!({ "name": "plain", "kind": "api_key" }))
        .await["api_key"]
        .as_str()
        .unwrap()
        .to_owned();
    app.call(Method::GET, "/v1/audit/verify", Some(&plain), None)
        .await
        .assert_problem(403, "insufficient-scope");
    let anonymous = app.call(Method::GET, "/v1/audit/verify", None, None).await;
    anonymous.assert_status(401);
    assert_eq!(
        anonymous.header("www-authenticate"),
        "Bearer realm=\"latchkey\""
    );
    // Control: the admin may, and refused callers wrote nothing.
    assert_eq!(verdict(&app).await["intact"], true);
    app.get("/v1/audit/verify?after=3")
        .await
        .assert_problem(400, "invalid-field");
}

async fn a_fresh_chain_verifies_on_the_server_and_every_event_carries_its_mac(app: TestApp) {
    app.create_tenant("acme").await;
    let head = app.get("/v1/audit/head").await.body;
    let body = verdict(&app).await;
    assert_eq!(
        body,
        json!({ "intact": true, "checked": head["seq"], "legacy": 0, "head": head,
                "first_broken": null })
    );
    let key = hmac::Key::new(hmac::HMAC_SHA256, &mac_key(&app));
    let links = chain_of(&app.get("/v1/audit/chain?after=0").await.text);
    assert_eq!(links.len() as i64, head["seq"].as_i64().unwrap());
    for link in &links {
        let mac = link.mac.as_ref().expect("every new event carries a MAC");
        assert_eq!(mac.len(), 32);
        hmac::verify(&key, &link.hash, mac).expect("the MAC of the chain hash");
    }
    let listed = app.get("/v1/audit?limit=1").await.body["items"][0].clone();
    assert_eq!(
        listed["mac"],
        json!(hex(links.last().unwrap().mac.as_ref().unwrap()))
    );
}

/// Rewrites the target of the event at `seq` and re-hashes it, as someone who can write
/// to the database would; the stored head follows if `seq` is the head.
async fn rewrite_and_rehash(app: &TestApp, seq: i64) {
    let links = chain_of(&app.get("/v1/audit/chain?after=0").await.text);
    let mut link = links.into_iter().find(|l| l.seq == seq).unwrap();
    link.event.target = Some("forged".to_owned());
    let hash = chain_hash(&link.prev_hash, seq, &link.context, &link.event);
    let db = app.db().await;
    sqlx::query("UPDATE audit_events SET target = 'forged', hash = $1 WHERE seq = $2")
        .bind(hash.clone())
        .bind(seq)
        .execute(&db)
        .await
        .unwrap();
    sqlx::query("UPDATE chain_heads SET hash = $1 WHERE name = 'audit' AND seq = $2")
        .bind(hash)
        .bind(seq)
        .execute(&db)
        .await
        .unwrap();
    db.close().await;
}

async fn a_rewritten_and_rehashed_last_event_fails_the_servers_mac_check(app: TestApp) {
    app.create_tenant("acme").await;
    let last = app.get("/v1/audit/head").await.body["seq"]
        .as_i64()
        .unwrap();
    rewrite_and_rehash(&app, last).await;
    // The hash links alone cannot tell.
    assert_eq!(first_broken_link(&app).await, None);
    let body = verdict(&app).await;
    assert_eq!(body["intact"], false);
    assert_eq!(
        body["first_broken"],
        json!({ "seq": last, "reason": "mac" })
    );
    assert_eq!(body["checked"], last - 1);
    let db = app.db().await;
    // Dropping the MAC instead of leaving a wrong one.
    sqlx::query("UPDATE audit_events SET mac = NULL WHERE seq = $1")
        .bind(last)
        .execute(&db)
        .await
        .unwrap();
    assert_eq!(
        verdict(&app).await["first_broken"],
        json!({ "seq": last, "reason": "mac_missing" })
    );
    // Dropping every MAC, and where MACs began: the first signed event is gone, but
    // events from 1 on must still carry one.
    sqlx::query("UPDATE audit_events SET mac = NULL")
        .execute(&db)
        .await
        .unwrap();
    sqlx::query("UPDATE chain_heads SET macs_from = NULL WHERE name = 'audit'")
        .execute(&db)
        .await
        .unwrap();
    assert_eq!(
        verdict(&app).await["first_broken"],
        json!({ "seq": 1, "reason": "mac_missing" })
    );
    db.close().await;
}

async fn a_deleted_tail_shows_against_the_stored_head_until_the_head_is_moved_back(app: TestApp) {
    app.create_tenant("acme").await;
    app.create_tenant("globex").await;
    let saved = app.get("/v1/audit/head").await.body;
    let last = saved["seq"].as_i64().unwrap();
    let db = app.db().await;
    sqlx::query("DELETE FROM audit_events WHERE seq = $1")
        .bind(last)
        .execute(&db)
        .await
        .unwrap();
    assert_eq!(
        verdict(&app).await["first_broken"],
        json!({ "seq": last, "reason": "missing" })
    );
    assert_eq!(
        first_broken_link(&app).await,
        Some(Break {
            seq: last,
            reason: BreakReason::Missing
        })
    );
    // Moving the head back over the deleted event leaves a valid, shorter chain: the
    // server cannot tell, which is why operators anchor the head elsewhere.
    let previous = chain_of(&app.get("/v1/audit/chain?after=0").await.text)
        .pop()
        .unwrap();
    sqlx::query("UPDATE chain_heads SET seq = $1, hash = $2 WHERE name = 'audit'")
        .bind(previous.seq)
        .bind(previous.hash.clone())
        .execute(&db)
        .await
        .unwrap();
    let body = verdict(&app).await;
    assert_eq!(body["intact"], true);
    assert_eq!(body["head"]["seq"], last - 1);
    assert_ne!(body["head"]["hash"], saved["hash"]);
    // Moving the head back over events that are still there is caught.
    sqlx::query("UPDATE chain_heads SET seq = seq - 1 WHERE name = 'audit'")
        .execute(&db)
        .await
        .unwrap();
    assert_eq!(verdict(&app).await["first_broken"]["reason"], json!("head"));
    db.close().await;
}

async fn events_from_before_macs_are_legacy_and_new_events_are_signed(app: TestApp) {
    app.create_tenant("acme").await;
    let before = app.get("/v1/audit/head").await.body["seq"]
        .as_i64()
        .unwrap();
    // As the migration that added MACs leaves an older chain: no MACs up to the head,
    // and MACs required from the next event on.
    let db = app.db().await;
    sqlx::query("UPDATE audit_events SET mac = NULL")
        .execute(&db)
        .await
        .unwrap();
    sqlx::query("UPDATE chain_heads SET macs_from = seq + 1 WHERE name = 'audit'")
        .execute(&db)
        .await
        .unwrap();
    let body = verdict(&app).await;
    assert_eq!(body["intact"], true, "{body}");
    assert_eq!(body["legacy"], before);
    app.create_tenant("globex").await;
    let body = verdict(&app).await;
    assert_eq!(body["intact"], true, "{body}");
    assert_eq!(body["checked"], before + 1);
    assert_eq!(body["legacy"], before, "the new event is signed");
    let newest = app.get("/v1/audit?limit=1").await.body["items"][0].clone();
    assert!(newest["mac"].is_string(), "{newest}");
    // Stripping the new event's MAC does not make it legacy.
    sqlx::query("UPDATE audit_events SET mac = NULL WHERE seq = $1")
        .bind(before + 1)
        .execute(&db)
        .await
        .unwrap();
    assert_eq!(
        verdict(&app).await["first_broken"],
        json!({ "seq": before + 1, "reason": "mac_missing" })
    );
    db.close().await;
}

async fn the_mac_key_never_reaches_a_log_or_a_response(app: TestApp) {
    app.create_tenant("acme").await;
    let master = std::fs::read_to_string(app.data_dir.path().join("master.key")).unwrap();
    let master = master.trim().to_owned();
    let derived = hex(&mac_key(&app));
    let last = app.get("/v1/audit/head").await.body["seq"]
        .as_i64()
        .unwrap();
    rewrite_and_rehash(&app, last).await;
    let mut seen = vec![
        app.get("/v1/audit/chain?after=0").await.text,
        app.get("/v1/audit?limit=200").await.text,
        app.get("/v1/audit/head").await.text,
        app.get("/v1/audit/verify").await.text,
    ];
    seen.push(captured_logs());
    for text in &seen {
        for secret in [&master, &derived] {
            assert!(!text.contains(secret.as_str()), "a key leaked into: {text}");
            assert!(!text.contains(&secret.to_ascii_uppercase()));
        }
    }
    // The logs do say what was found.
    assert!(
        captured_logs().contains("audit verification found a broken chain"),
        "the failure is logged"
    );
}

async fn every_exchange_is_recorded_and_alike_ones_share_an_event(app: TestApp) {
    app.create_tenant("acme").await;
    let (id, secret) = app.client("acme", json!({})).await;
    let grants =
        futures_util::future::join_all((0..40).map(|_| app.exchange(&id, &secret, &[]))).await;
    let mut issued = Vec::new();
    for grant in &grants {
        grant.assert_status(200);
        let token = grant.body["access_token"].as_str().unwrap();
        issued.push(app.introspect(token).await["jti"].clone());
    }
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    let events = loop {
        let events = app
            .get("/v1/audit?action=token.exchanged&limit=200")
            .await
            .body["items"]
            .as_array()
            .unwrap()
            .clone();
        let recorded: u64 = events
            .iter()
            .map(|event| event["details"]["count"].as_u64().unwrap())
            .sum();
        if recorded >= 40 {
            assert_eq!(recorded, 40, "{events:?}");
            break events;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "group commit within 5 s"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let mut recorded = Vec::new();
    for event in &events {
        let details = &event["details"];
        let jtis = details["jti"].as_array().unwrap();
        assert_eq!(details["count"].as_u64().unwrap(), jtis.len() as u64);
        assert_eq!(details["iat"].as_array().unwrap().len(), jtis.len());
        assert_eq!(details["expires_in"], 900);
        assert_eq!(details["aud"], app.base);
        assert!(details.get("refresh_family").is_none(), "{details}");
        assert_eq!(event["target"], id);
        assert_eq!(event["actor"], id);
        assert_eq!(event["tenant_id"], "acme");
        assert_eq!(event["ip"], "127.0.0.1");
        recorded.extend(jtis.iter().cloned());
    }
    let sort = |list: &mut Vec<Value>| list.sort_by_key(|jti| jti.as_str().unwrap().to_owned());
    sort(&mut issued);
    sort(&mut recorded);
    assert_eq!(recorded, issued, "each access token once");
    // Nothing else was written after the client's creation.
    let created = app.get("/v1/audit?action=token.created&limit=1").await.body["items"][0]["seq"]
        .as_i64()
        .unwrap();
    assert_eq!(total(&app).await, created + events.len() as i64);
}

/// An event whose action a newer server (or a hand) wrote: stored as text, it must list,
/// filter and export as that text, and hash exactly as it was written.
async fn an_action_this_version_does_not_write_still_reads_as_stored(app: TestApp) {
    app.create_tenant("acme").await;
    let last = total(&app).await;
    let links = chain_of(&app.get("/v1/audit/chain?after=0").await.text);
    let mut link = links.into_iter().find(|l| l.seq == last).unwrap();
    assert_eq!(link.event.action, AuditAction::TenantCreated);
    link.event.action = AuditAction::parse("tenant.teleported");
    assert!(matches!(link.event.action, AuditAction::Other(_)));
    let hash = chain_hash(&link.prev_hash, last, &link.context, &link.event);
    let db = app.db().await;
    sqlx::query("UPDATE audit_events SET action = 'tenant.teleported', hash = $1 WHERE seq = $2")
        .bind(hash.clone())
        .bind(last)
        .execute(&db)
        .await
        .unwrap();
    sqlx::query("UPDATE chain_heads SET hash = $1 WHERE name = 'audit' AND seq = $2")
        .bind(hash)
        .bind(last)
        .execute(&db)
        .await
        .unwrap();
    db.close().await;
    let listed = app.get("/v1/audit?action=tenant.teleported").await;
    listed.assert_status(200);
    let items = listed.body["items"].as_array().unwrap();
    assert_eq!(items.len(), 1);
    assert_eq!(items[0]["seq"], json!(last));
    assert_eq!(items[0]["action"], "tenant.teleported");
    assert_eq!(items[0]["target"], "acme");
    // The known events around it still read as their own actions.
    let created = app.get("/v1/audit?action=tenant.created").await.body["items"].clone();
    assert!(
        created
            .as_array()
            .unwrap()
            .iter()
            .all(|e| e["seq"] != json!(last)),
        "{created}"
    );
    assert_eq!(newest(&app).await["action"], "tenant.teleported");
    // The export reads, and its links hold: the unknown action hashes as its text.
    let export = chain_of(&app.get("/v1/audit/chain?after=0").await.text);
    assert_eq!(
        export.last().unwrap().event.action.as_str(),
        "tenant.teleported"
    );
    assert_eq!(first_broken_link(&app).await, None);
    // Only the MAC, made over the hash of what was first written, tells.
    assert_eq!(
        verdict(&app).await["first_broken"],
        json!({ "seq": last, "reason": "mac" })
    );
}
