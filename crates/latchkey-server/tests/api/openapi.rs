//! The OpenAPI document at `/openapi.json` (docs/API.md, "OpenAPI"): it lists every
//! route the server answers, and real answers match the schemas it documents.
//!
//! The validator below covers the JSON Schema keywords the document uses (`$ref`,
//! `type`, `properties`, `required`, `items`, `enum`, `oneOf`, `format` for `uuid` and
//! `date-time`, `minimum`/`maximum`); CI validates the document itself and fuzzes the
//! live server against it with independent tools (scripts/api-fuzz.sh).

use crate::helpers::{Reply, TestApp, basic};
use reqwest::Method;
use serde_json::{Value, json};
use std::collections::BTreeSet;
use std::path::Path;

const METHODS: [&str; 5] = ["get", "put", "post", "delete", "patch"];

async fn spec(app: &TestApp) -> Value {
    let reply = app.call(Method::GET, "/openapi.json", None, None).await;
    reply.assert_status(200);
    assert_eq!(reply.header("content-type"), "application/json");
    reply.body
}

/// Every (method, path) the document lists.
fn operations(spec: &Value) -> BTreeSet<(String, String)> {
    let mut found = BTreeSet::new();
    for (path, item) in spec["paths"].as_object().unwrap() {
        for method in METHODS {
            if item.get(method).is_some() {
                found.insert((method.to_owned(), path.clone()));
            }
        }
    }
    found
}

/// Every call in the server's sources that registers a route without its OpenAPI entry
/// (`.route(…)`, `.nest(…)`, …: anything but `routes!`), as `file:line: call`. The
/// console's HTML pages (`http/console.rs` and `http/console/`) are for browsers, not
/// part of the API or its document (docs/CONSOLE.md), and are not scanned.
fn routes_outside_the_spec(source: &Path) -> Vec<String> {
    let mut files = vec![source.to_path_buf()];
    let mut found = Vec::new();
    let console = [
        source.join("http").join("console"),
        source.join("http").join("console.rs"),
    ];
    while let Some(path) = files.pop() {
        if console.contains(&path) {
            continue;
        }
        if path.is_dir() {
            files.extend(std::fs::read_dir(&path).unwrap().map(|e| e.unwrap().path()));
            continue;
        }
        if path.extension().is_none_or(|ext| ext != "rs") {
            continue;
        }
        let text = std::fs::read_to_string(&path).unwrap();
        for (number, line) in text.lines().enumerate() {
            for call in [".route(", ".route_service(", ".nest(", ".nest_service("] {
                if let Some(at) = line.find(call) {
                    // The call's first argument may sit on the next line.
                    let rest: String = text
                        .lines()
                        .skip(number)
                        .collect::<Vec<_>>()
                        .join(" ")
                        .chars()
                        .skip(line[..at].chars().count() + call.len())
                        .take_while(|c| *c != ',')
                        .collect();
                    found.push(format!(
                        "{}:{}: {call}{}",
                        path.display(),
                        number + 1,
                        rest.trim()
                    ));
                }
            }
        }
    }
    found.sort();
    found
}

/// A route registered any other way than `routes!` exists in the router but not in
/// the document: this test names it, with how to fix it.
#[test]
fn every_route_is_registered_with_its_openapi_entry() {
    let outside = routes_outside_the_spec(&Path::new(env!("CARGO_MANIFEST_DIR")).join("src"));
    assert!(
        outside.is_empty(),
        "these routes are registered without an OpenAPI entry; annotate each handler with \
         #[utoipa::path(method, path = …, responses(…))] and register it with \
         .routes(routes!(handler)) (docs/API.md, \"OpenAPI\"):\n{}",
        outside.join("\n")
    );
}

/// The scan the route test relies on finds a route registered outside the spec, with
/// its path, and passes the documented registrations.
#[test]
fn the_route_scan_names_a_route_registered_outside_the_spec() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("http")).unwrap();
    std::fs::write(
        dir.path().join("http").join("metrics.rs"),
        "fn r() -> Router {\n    OpenApiRouter::new()\n        .routes(routes!(health::live))\n        .route(\n            \"/metrics\",\n            get(m),\n        )\n}\n",
    )
    .unwrap();
    let found = routes_outside_the_spec(dir.path());
    assert_eq!(found.len(), 1, "{found:?}");
    assert!(
        found[0].ends_with("metrics.rs:4: .route(\"/metrics\""),
        "{found:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_document_is_openapi_3_1_with_every_contract_endpoint_and_both_error_formats() {
    let app = TestApp::sqlite().await;
    let spec = spec(&app).await;
    assert_eq!(spec["openapi"], "3.1.0");
    let listed = operations(&spec);
    for (method, path) in [
        ("post", "/oauth/token"),
        ("post", "/oauth/introspect"),
        ("post", "/oauth/revoke"),
        ("get", "/.well-known/oauth-authorization-server"),
        ("get", "/.well-known/jwks.json"),
        ("post", "/v1/tenants"),
        ("get", "/v1/tenants/{tid}"),
        ("put", "/v1/permissions/{name}"),
        ("put", "/v1/roles/{name}"),
        ("put", "/v1/tenants/{tid}/users/{uid}"),
        ("delete", "/v1/users/{uid}"),
        ("post", "/v1/tenants/{tid}/tokens"),
        ("post", "/v1/tenants/{tid}/users/{uid}/tokens"),
        ("patch", "/v1/tokens/{id}"),
        ("delete", "/v1/tokens/{id}"),
        ("post", "/v1/tokens/{id}/roll"),
        ("get", "/v1/tokens/{id}/usage"),
        ("get", "/v1/audit"),
        ("get", "/v1/revocations"),
        ("get", "/v1/revocations/stream"),
        ("post", "/v1/usage"),
        ("put", "/v1/tenants/{tid}/policy"),
        ("post", "/v1/leaks"),
        ("post", "/v1/webhooks"),
        ("post", "/v1/tenants/{tid}/users/{uid}/console-sessions"),
        ("delete", "/v1/console-sessions/{id}"),
        ("get", "/healthz"),
        ("get", "/readyz"),
        ("get", "/openapi.json"),
    ] {
        assert!(
            listed.contains(&(method.to_owned(), path.to_owned())),
            "{method} {path} is missing"
        );
    }
    let schemes = &spec["components"]["securitySchemes"];
    assert_eq!(schemes["bearer"]["scheme"], "bearer");
    assert_eq!(schemes["client_basic"]["scheme"], "basic");
    let create = &spec["paths"]["/v1/tenants/{tid}/tokens"]["post"];
    assert_eq!(create["security"], json!([{ "bearer": [] }]));
    assert_eq!(
        create["responses"]["422"]["content"]["application/problem+json"]["schema"]["$ref"],
        "#/components/schemas/Problem"
    );
    assert!(create["responses"]["default"]["content"]["application/problem+json"].is_object());
    let token = &spec["paths"]["/oauth/token"]["post"];
    assert_eq!(
        token["responses"]["401"]["content"]["application/json"]["schema"]["$ref"],
        "#/components/schemas/OAuthErrorBody"
    );
    assert!(
        token["requestBody"]["content"]["application/x-www-form-urlencoded"].is_object(),
        "the token endpoint takes a form"
    );
    assert_eq!(token["security"], json!([{ "client_basic": [] }, {}]));
    assert_eq!(spec["paths"]["/v1/leaks"]["post"].get("security"), None);
    // Honest schemas: kinds are an enumeration, ids and instants have formats, and
    // members that are always present are required.
    let resource = &spec["components"]["schemas"]["TokenResource"];
    assert_eq!(
        spec["components"]["schemas"]["TokenKind"]["enum"],
        json!(["client_credentials", "api_key", "jwt"])
    );
    assert_eq!(resource["properties"]["id"]["format"], "uuid");
    assert_eq!(resource["properties"]["created_at"]["format"], "date-time");
    for member in [
        "id",
        "kind",
        "owner",
        "expires_at",
        "revoked_at",
        "secret_hint",
    ] {
        assert!(
            resource["required"]
                .as_array()
                .unwrap()
                .contains(&json!(member)),
            "{member} is not required"
        );
    }
    // Operation ids are unique, so generated clients get one method per operation.
    let mut ids = BTreeSet::new();
    for (method, path) in &listed {
        let id = spec["paths"][path][method]["operationId"].as_str().unwrap();
        assert!(ids.insert(id.to_owned()), "operationId {id} twice");
    }
}

/// Every documented (method, path) reaches a handler: none falls to the router's
/// fallback (404 `not-found` for an unknown path) or answers 405.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_documented_operation_is_routed() {
    let app = TestApp::sqlite().await;
    let spec = spec(&app).await;
    for (method, path) in operations(&spec) {
        if path == "/v1/revocations/stream" {
            continue; // a stream that stays open; routed like its siblings, tested below
        }
        let concrete = path
            .replace("{tid}", "acme")
            .replace("{uid}", "u_1")
            .replace("{id}", "0b9f6c1e-3c1a-4f7e-9b51-8a2f7d0e4c11")
            .replace("{name}", "reports:read")
            .replace("{delivery}", "evt_1");
        let method = Method::from_bytes(method.to_uppercase().as_bytes()).unwrap();
        let reply = app.call(method.clone(), &concrete, None, None).await;
        assert_ne!(reply.status, 405, "{method} {path}: {}", reply.text);
        let fallback = reply.status == 404 && reply.body["detail"] == "resource not found";
        assert!(!fallback, "{method} {path} is not routed: {}", reply.text);
    }
    let reply = app
        .call(Method::GET, "/v1/revocations/stream", None, None)
        .await;
    reply.assert_problem(401, "invalid-token");
}

/// Resolves a `$ref` into the document.
fn resolve<'a>(spec: &'a Value, schema: &'a Value) -> &'a Value {
    match schema["$ref"].as_str() {
        Some(pointer) => resolve(spec, spec.pointer(&pointer[1..]).unwrap()),
        None => schema,
    }
}

fn type_matches(name: &str, value: &Value) -> bool {
    match name {
        "null" => value.is_null(),
        "boolean" => value.is_boolean(),
        "integer" => value.is_i64() || value.is_u64(),
        "number" => value.is_number(),
        "string" => value.is_string(),
        "array" => value.is_array(),
        "object" => value.is_object(),
        _ => false,
    }
}

/// The reasons `value` breaks `schema`, with the JSON path of each.
fn violations(spec: &Value, schema: &Value, value: &Value, at: &str) -> Vec<String> {
    let schema = resolve(spec, schema);
    let mut found = Vec::new();
    if let Some(options) = schema["oneOf"].as_array() {
        let matching = options
            .iter()
            .filter(|option| violations(spec, option, value, at).is_empty())
            .count();
        if matching != 1 {
            found.push(format!("{at}: matches {matching} of oneOf"));
        }
    }
    if let Some(all) = schema["allOf"].as_array() {
        for part in all {
            found.extend(violations(spec, part, value, at));
        }
    }
    let types: Vec<&str> = match &schema["type"] {
        Value::String(one) => vec![one.as_str()],
        Value::Array(many) => many.iter().filter_map(Value::as_str).collect(),
        _ => vec![],
    };
    if !types.is_empty() && !types.iter().any(|name| type_matches(name, value)) {
        found.push(format!("{at}: {value} is not {types:?}"));
        return found;
    }
    if let Some(allowed) = schema["enum"].as_array()
        && !allowed.contains(value)
    {
        found.push(format!("{at}: {value} is not one of {allowed:?}"));
    }
    if let Some(text) = value.as_str() {
        let formatted = match schema["format"].as_str() {
            Some("uuid") => uuid::Uuid::parse_str(text).is_ok(),
            Some("date-time") => {
                time::OffsetDateTime::parse(text, &time::format_description::well_known::Rfc3339)
                    .is_ok()
            }
            _ => true,
        };
        if !formatted {
            found.push(format!("{at}: {text:?} is not a {}", schema["format"]));
        }
    }
    if let Some(number) = value.as_f64() {
        if schema["minimum"].as_f64().is_some_and(|min| number < min) {
            found.push(format!("{at}: {number} is below the minimum"));
        }
        if schema["maximum"].as_f64().is_some_and(|max| number > max) {
            found.push(format!("{at}: {number} is above the maximum"));
        }
    }
    if let Some(object) = value.as_object() {
        for name in schema["required"].as_array().into_iter().flatten() {
            let name = name.as_str().unwrap();
            if !object.contains_key(name) {
                found.push(format!("{at}: `{name}` is missing"));
            }
        }
        if let Some(properties) = schema["properties"].as_object() {
            for (name, member) in object {
                match properties.get(name) {
                    Some(property) => {
                        found.extend(violations(spec, property, member, &format!("{at}.{name}")))
                    }
                    None if schema["additionalProperties"] == false => {
                        found.push(format!("{at}: `{name}` is not documented"));
                    }
                    None => {}
                }
            }
        }
    }
    if let (Some(items), Some(array)) = (schema.get("items"), value.as_array()) {
        for (index, item) in array.iter().enumerate() {
            found.extend(violations(spec, items, item, &format!("{at}[{index}]")));
        }
    }
    found
}

/// Checks that `reply` is a documented answer of the operation: its status is listed
/// (or covered by `default`), its content type is the documented one, and its body
/// matches the schema.
#[track_caller]
fn assert_documented(spec: &Value, method: &str, path: &str, reply: &Reply) {
    let operation = &spec["paths"][path][method];
    assert!(operation.is_object(), "{method} {path} is not documented");
    let responses = &operation["responses"];
    let status = reply.status.to_string();
    assert!(
        responses.get(&status).is_some(),
        "{method} {path} answered {status}, which it does not document: {}",
        reply.text
    );
    let response = &responses[&status];
    let Some(content) = response["content"].as_object() else {
        assert!(reply.text.is_empty(), "{method} {path} {status}: a body");
        return;
    };
    let media = reply.header("content-type");
    let schema = &content
        .get(media)
        .unwrap_or_else(|| panic!("{method} {path} {status}: {media} is not documented"))["schema"];
    let broken = violations(spec, schema, &reply.body, "$");
    assert!(
        broken.is_empty(),
        "{method} {path} {status} breaks its schema:\n{}\nbody: {}",
        broken.join("\n"),
        reply.text
    );
}

/// A sample of endpoints, each with its success and its typical failures: the real
/// answers are documented and match their schemas.
async fn real_answers_match_the_documented_schemas(app: TestApp) {
    let spec = spec(&app).await;
    app.seed_catalogue().await;
    let check = |method: &'static str, path: &'static str, reply: &Reply| {
        assert_documented(&spec, method, path, reply)
    };

    let created = app
        .post("/v1/tenants", json!({ "id": "acme", "name": "Acme" }))
        .await;
    check("post", "/v1/tenants", &created);
    created.assert_status(201);
    check(
        "post",
        "/v1/tenants",
        &app.post("/v1/tenants", json!({ "id": "acme" })).await,
    );
    check(
        "post",
        "/v1/tenants",
        &app.post("/v1/tenants", json!({ "id": "a b" })).await,
    );
    check("get", "/v1/tenants", &app.get("/v1/tenants?limit=1").await);
    check(
        "get",
        "/v1/tenants/{tid}",
        &app.get("/v1/tenants/acme").await,
    );
    check(
        "get",
        "/v1/tenants/{tid}",
        &app.get("/v1/tenants/nobody").await,
    );
    let anonymous = app.call(Method::GET, "/v1/tenants", None, None).await;
    anonymous.assert_problem(401, "invalid-token");
    check("get", "/v1/tenants", &anonymous);

    check("get", "/v1/permissions", &app.get("/v1/permissions").await);
    check("get", "/v1/roles", &app.get("/v1/roles").await);
    let member = app
        .put(
            "/v1/tenants/acme/users/u_42",
            json!({ "roles": ["editor"] }),
        )
        .await;
    member.assert_status(200);
    check("put", "/v1/tenants/{tid}/users/{uid}", &member);
    check(
        "get",
        "/v1/tenants/{tid}/users",
        &app.get("/v1/tenants/acme/users").await,
    );

    for kind in ["client_credentials", "api_key", "jwt"] {
        let token = app
            .post(
                "/v1/tenants/acme/tokens",
                json!({
                    "name": format!("ci {kind}"), "kind": kind, "roles": ["viewer"],
                    "created_by": "u_42", "ip_allowlist": ["203.0.113.0/24"],
                    "expires_at": "2099-01-01T00:00:00Z"
                }),
            )
            .await;
        token.assert_status(201);
        check("post", "/v1/tenants/{tid}/tokens", &token);
    }
    let personal = app
        .post(
            "/v1/tenants/acme/users/u_42/tokens",
            json!({ "name": "mine", "kind": "api_key", "permissions": ["reports:write"] }),
        )
        .await;
    personal.assert_status(201);
    check("post", "/v1/tenants/{tid}/users/{uid}/tokens", &personal);
    let refused = app
        .post(
            "/v1/tenants/acme/users/u_42/tokens",
            json!({ "name": "x", "kind": "api_key", "permissions": ["billing:read"] }),
        )
        .await;
    refused.assert_problem(403, "permission-not-held");
    check("post", "/v1/tenants/{tid}/users/{uid}/tokens", &refused);
    let id = personal.body["token"]["id"].as_str().unwrap().to_owned();
    check(
        "get",
        "/v1/tenants/{tid}/tokens",
        &app.get("/v1/tenants/acme/tokens").await,
    );
    check(
        "get",
        "/v1/tokens/{id}",
        &app.get(&format!("/v1/tokens/{id}")).await,
    );
    let immutable = app
        .patch(&format!("/v1/tokens/{id}"), json!({ "permissions": [] }))
        .await;
    immutable.assert_problem(422, "immutable-field");
    check("patch", "/v1/tokens/{id}", &immutable);
    let rolled = app
        .post(
            &format!("/v1/tokens/{id}/roll"),
            json!({ "grace_seconds": 60 }),
        )
        .await;
    rolled.assert_status(201);
    check("post", "/v1/tokens/{id}/roll", &rolled);
    let again = app.post(&format!("/v1/tokens/{id}/roll"), json!({})).await;
    again.assert_problem(409, "already-rolled");
    check("post", "/v1/tokens/{id}/roll", &again);
    check(
        "get",
        "/v1/tokens/{id}",
        &app.get(&format!("/v1/tokens/{id}")).await,
    );
    check(
        "get",
        "/v1/tokens/{id}/usage",
        &app.get(&format!("/v1/tokens/{id}/usage?group_by=day"))
            .await,
    );
    let revoked = app.delete(&format!("/v1/tokens/{id}")).await;
    revoked.assert_status(204);
    check("delete", "/v1/tokens/{id}", &revoked);

    // On another tenant: acme keeps minting tokens without an expiry below.
    app.create_tenant("globex").await;
    let policy = app
        .put(
            "/v1/tenants/globex/policy",
            json!({ "require_expiry": true, "allowed_kinds": ["api_key"] }),
        )
        .await;
    policy.assert_status(200);
    check("put", "/v1/tenants/{tid}/policy", &policy);
    check(
        "get",
        "/v1/tenants/{tid}/policy",
        &app.get("/v1/tenants/globex/policy").await,
    );
    check("get", "/v1/audit", &app.get("/v1/audit?limit=20").await);
    check("get", "/v1/audit/head", &app.get("/v1/audit/head").await);
    check(
        "get",
        "/v1/audit/verify",
        &app.get("/v1/audit/verify").await,
    );
    check("get", "/v1/revocations", &app.get("/v1/revocations").await);
    check(
        "post",
        "/v1/keys/rotate",
        &app.post("/v1/keys/rotate", json!({})).await,
    );

    // The authorization server: a client-credentials token is exchanged, introspected
    // and revoked; its failures are RFC 6749 error objects.
    let (client_id, secret) = app
        .client("acme", json!({ "name": "svc", "kind": "client_credentials", "roles": ["viewer"], "created_by": "u_42" }))
        .await;
    let exchanged = app.exchange(&client_id, &secret, &[]).await;
    exchanged.assert_status(200);
    check("post", "/oauth/token", &exchanged);
    let wrong = app.exchange(&client_id, "lk_sk_wrong", &[]).await;
    wrong.assert_status(401);
    check("post", "/oauth/token", &wrong);
    let bad_scope = app
        .exchange(&client_id, &secret, &[("scope", "billing:read")])
        .await;
    check("post", "/oauth/token", &bad_scope);
    let access = exchanged.body["access_token"].as_str().unwrap().to_owned();
    let introspector = app.introspection_key().await;
    let active = app
        .client_request_raw(
            "/oauth/introspect",
            &format!("Bearer {introspector}"),
            "application/x-www-form-urlencoded",
            format!("token={access}").into_bytes(),
        )
        .await;
    active.assert_status(200);
    assert_eq!(active.body["active"], true);
    check("post", "/oauth/introspect", &active);
    let revoked = app
        .client_request_raw(
            "/oauth/revoke",
            &basic(&client_id, &secret),
            "application/x-www-form-urlencoded",
            format!("token={access}").into_bytes(),
        )
        .await;
    check("post", "/oauth/revoke", &revoked);
    let wrong_method = app.call(Method::GET, "/oauth/token", None, None).await;
    check("post", "/oauth/token", &wrong_method);
    assert_eq!(wrong_method.status, 405);
    let metadata = app
        .call(
            Method::GET,
            "/.well-known/oauth-authorization-server",
            None,
            None,
        )
        .await;
    check("get", "/.well-known/oauth-authorization-server", &metadata);
    let jwks = app
        .call(Method::GET, "/.well-known/jwks.json", None, None)
        .await;
    check("get", "/.well-known/jwks.json", &jwks);
    let leak = app
        .call(
            Method::POST,
            "/v1/leaks",
            None,
            Some(json!({ "secret": "nothing" })),
        )
        .await;
    leak.assert_status(202);
    check("post", "/v1/leaks", &leak);
    let webhook = app
        .post(
            "/v1/webhooks",
            json!({ "url": "https://hooks.example/x", "events": ["token.created"], "tenant_id": "acme" }),
        )
        .await;
    check("post", "/v1/webhooks", &webhook);
    check("get", "/v1/webhooks", &app.get("/v1/webhooks").await);
    check(
        "get",
        "/healthz",
        &app.call(Method::GET, "/healthz", None, None).await,
    );
    check(
        "get",
        "/readyz",
        &app.call(Method::GET, "/readyz", None, None).await,
    );
}

crate::both_backends!(real_answers_match_the_documented_schemas);

/// The validator is not vacuous: a body that breaks the schema is caught.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_body_that_breaks_its_schema_is_caught() {
    let app = TestApp::sqlite().await;
    let spec = spec(&app).await;
    let schema = json!({ "$ref": "#/components/schemas/TokenResource" });
    let broken = json!({ "id": "not-a-uuid", "kind": "password", "created_at": "yesterday" });
    let found = violations(&spec, &schema, &broken, "$").join("\n");
    for reason in ["$.id", "$.kind", "$.created_at", "`owner` is missing"] {
        assert!(found.contains(reason), "{reason} not in:\n{found}");
    }
}
