//! The console (docs/CONSOLE.md): session URLs that open once, the session cookie and
//! its limits, CSRF on every form, what a session may see and touch, the secret shown
//! once, the security headers, and the audit actor. Each rule is tested as an attacker
//! would break it, beside the control that shows legitimate use still works. The
//! real-browser tests are in `console::browser`.

mod browser;

use crate::both_backends;
use crate::helpers::TestApp;
use reqwest::header::HeaderMap;
use serde_json::{Value, json};
use std::time::Duration;

both_backends!(
    a_session_url_opens_once_with_a_strict_cookie_and_is_stored_hashed,
    an_expired_session_url_opens_nothing,
    a_session_ends_after_an_hour,
    a_removed_member_or_deleted_user_loses_the_session,
    a_personal_token_is_made_and_its_secret_shown_once,
    forms_without_this_sessions_csrf_token_change_nothing,
    a_plain_member_sees_and_touches_only_their_own_tokens,
    a_session_never_acts_on_a_token_holding_a_builtin_the_user_lacks,
    bad_input_re_renders_the_form_with_the_error_beside_the_field,
    rename_roll_and_revoke_go_through_the_apis_rules,
    managers_see_tenant_tokens_members_policy_and_audit,
    operators_sign_in_with_an_admin_key_and_sign_out,
    a_session_can_be_ended_through_the_api,
    only_admins_and_that_tenants_managers_make_session_urls,
    a_tokens_page_charts_its_requests_per_day_by_route_and_by_address,
);

/// A browser without one: no redirects followed, cookies kept by hand.
pub struct Agent {
    base: String,
    client: reqwest::Client,
    pub cookie: Option<String>,
}

/// A console reply, read whole.
pub struct Page {
    pub status: u16,
    pub headers: HeaderMap,
    pub text: String,
}

impl Page {
    pub fn header(&self, name: &str) -> &str {
        self.headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
    }

    /// The CSRF token of the page's first form.
    pub fn csrf(&self) -> String {
        let at = self
            .text
            .find("name=\"csrf\" value=\"")
            .expect("a form with csrf")
            + 19;
        let end = self.text[at..].find('"').unwrap();
        self.text[at..at + end].to_owned()
    }
}

impl Agent {
    pub fn new(app: &TestApp) -> Self {
        Self {
            base: app.base.clone(),
            client: reqwest::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .build()
                .unwrap(),
            cookie: None,
        }
    }

    async fn send(&mut self, request: reqwest::RequestBuilder) -> Page {
        let request = match &self.cookie {
            Some(cookie) => request.header("cookie", cookie.clone()),
            None => request,
        };
        let response = request.send().await.unwrap();
        let status = response.status().as_u16();
        let headers = response.headers().clone();
        let text = response.text().await.unwrap();
        Page {
            status,
            headers,
            text,
        }
    }

    pub async fn get(&mut self, path: &str) -> Page {
        let url = if path.starts_with("http") {
            path.to_owned()
        } else {
            format!("{}{path}", self.base)
        };
        self.send(self.client.get(url)).await
    }

    pub async fn post(&mut self, path: &str, fields: &[(&str, &str)]) -> Page {
        let request = self
            .client
            .post(format!("{}{path}", self.base))
            .form(fields);
        self.send(request).await
    }

    /// Opens a session URL and keeps the cookie it sets.
    pub async fn open(&mut self, url: &str) -> Page {
        let page = self.get(url).await;
        if let Some(set) = page.headers.get("set-cookie") {
            let pair = set.to_str().unwrap().split(';').next().unwrap().to_owned();
            self.cookie = Some(pair);
        }
        page
    }
}

async fn acme(app: &TestApp) {
    app.seed_catalogue().await;
    app.create_tenant("acme").await;
    app.put_member("acme", "u_42", &["viewer"]).await;
}

/// `POST …/console-sessions` as root: the whole answer.
async fn session_url(app: &TestApp, tenant: &str, user: &str) -> Value {
    let reply = app
        .call(
            reqwest::Method::POST,
            &format!("/v1/tenants/{tenant}/users/{user}/console-sessions"),
            Some(&app.root_key),
            None,
        )
        .await;
    reply.assert_status(201);
    reply.body
}

/// An agent with an open session of `user` in `tenant`.
async fn signed_in(app: &TestApp, tenant: &str, user: &str) -> (Agent, String) {
    let made = session_url(app, tenant, user).await;
    let mut agent = Agent::new(app);
    agent.open(made["url"].as_str().unwrap()).await;
    assert!(agent.cookie.is_some());
    (agent, made["id"].as_str().unwrap().to_owned())
}

async fn count(app: &TestApp, sql: &str) -> i64 {
    let db = app.db().await;
    let n: i64 = sqlx::query_scalar(sql).fetch_one(&db).await.unwrap();
    db.close().await;
    n
}

async fn personal_tokens(app: &TestApp, user: &str) -> Vec<Value> {
    let reply = app
        .get(&format!("/v1/tenants/acme/users/{user}/tokens"))
        .await;
    reply.assert_status(200);
    reply.body["items"].as_array().unwrap().clone()
}

/// Creates a personal token through the console's form; returns the redirect.
async fn create_in_console(agent: &mut Agent, fields: &[(&str, &str)]) -> Page {
    let form = agent.get("/console/t/acme/tokens/new?owner=me").await;
    assert_eq!(form.status, 200, "{}", form.text);
    let csrf = form.csrf();
    let mut all = vec![("csrf", csrf.as_str())];
    all.extend_from_slice(fields);
    agent.post("/console/t/acme/tokens/new", &all).await
}

async fn a_session_url_opens_once_with_a_strict_cookie_and_is_stored_hashed(app: TestApp) {
    acme(&app).await;
    let made = session_url(&app, "acme", "u_42").await;
    let url = made["url"].as_str().unwrap();
    let prefix = format!("{}/console/session/", app.base);
    assert!(url.starts_with(&prefix), "{url}");
    let code = &url[prefix.len()..];
    assert_eq!(code.len(), 43);
    assert_eq!(
        made["expires_at"].as_str().unwrap(),
        app.in_millis(300_000).to_string()
    );
    // Nothing in the database holds the code readable.
    let db = app.db().await;
    let hashes: Vec<Vec<u8>> = sqlx::query_scalar("SELECT code_hash FROM console_sessions")
        .fetch_all(&db)
        .await
        .unwrap();
    db.close().await;
    assert_eq!(hashes.len(), 1);
    assert!(!String::from_utf8_lossy(&hashes[0]).contains(code));
    assert_eq!(hashes[0].len(), 32);

    let mut agent = Agent::new(&app);
    let opened = agent.open(url).await;
    assert_eq!(opened.status, 303);
    assert_eq!(opened.header("location"), "/console/");
    assert_eq!(opened.header("referrer-policy"), "no-referrer");
    assert_eq!(opened.header("cache-control"), "no-store");
    let cookie = opened.header("set-cookie").to_owned();
    for flag in [
        "HttpOnly",
        "SameSite=Strict",
        "Path=/console",
        "Max-Age=3600",
    ] {
        assert!(cookie.contains(flag), "{cookie}");
    }
    assert!(
        !cookie.contains("Secure"),
        "plain http has no Secure: {cookie}"
    );
    assert!(!cookie.contains(code));

    let home = agent.get("/console/").await;
    assert_eq!(home.status, 303);
    assert_eq!(home.header("location"), "/console/t/acme/tokens");
    let tokens = agent.get("/console/t/acme/tokens").await;
    assert_eq!(tokens.status, 200);
    assert_eq!(
        tokens.header("content-security-policy"),
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
         form-action 'self'; base-uri 'none'; frame-ancestors 'none'"
    );
    assert_eq!(tokens.header("x-frame-options"), "DENY");
    assert_eq!(tokens.header("cache-control"), "no-store");
    assert!(tokens.text.contains("No tokens yet"));
    assert!(!tokens.text.contains("style=") && !tokens.text.contains("<script>"));

    // The second opening fails with a clear page and starts nothing.
    let mut thief = Agent::new(&app);
    let again = thief.open(url).await;
    assert_eq!(again.status, 410);
    assert!(again.text.contains("no longer works"));
    assert!(again.headers.get("set-cookie").is_none());
    assert_eq!(again.header("referrer-policy"), "no-referrer");
    // Neither does a code one character off.
    let mut forged = url.to_owned();
    let last = forged.pop().unwrap();
    forged.push(if last == 'A' { 'B' } else { 'A' });
    assert_eq!(Agent::new(&app).open(&forged).await.status, 410);
    assert_eq!(app.audit_count("console.session_created").await, 1);
}

async fn an_expired_session_url_opens_nothing(app: TestApp) {
    acme(&app).await;
    let late = session_url(&app, "acme", "u_42").await;
    let in_time = session_url(&app, "acme", "u_42").await;
    app.clock.advance(Duration::from_secs(299));
    let mut agent = Agent::new(&app);
    assert_eq!(
        agent.open(in_time["url"].as_str().unwrap()).await.status,
        303
    );
    app.clock.advance(Duration::from_secs(2));
    let mut late_agent = Agent::new(&app);
    let page = late_agent.open(late["url"].as_str().unwrap()).await;
    assert_eq!(page.status, 410);
    assert!(late_agent.cookie.is_none());
}

async fn a_session_ends_after_an_hour(app: TestApp) {
    acme(&app).await;
    let (mut agent, _) = signed_in(&app, "acme", "u_42").await;
    app.clock.advance(Duration::from_secs(3599));
    assert_eq!(agent.get("/console/t/acme/tokens").await.status, 200);
    app.clock.advance(Duration::from_secs(2));
    let ended = agent.get("/console/t/acme/tokens").await;
    assert_eq!(ended.status, 401);
    assert!(ended.text.contains("session has ended"));
}

async fn a_removed_member_or_deleted_user_loses_the_session(app: TestApp) {
    acme(&app).await;
    app.put_member("acme", "u_7", &["viewer"]).await;
    let (mut removed, _) = signed_in(&app, "acme", "u_42").await;
    let (mut deleted, _) = signed_in(&app, "acme", "u_7").await;
    assert_eq!(removed.get("/console/t/acme/tokens").await.status, 200);
    assert_eq!(deleted.get("/console/t/acme/tokens").await.status, 200);
    app.delete("/v1/tenants/acme/users/u_42")
        .await
        .assert_status(204);
    app.delete("/v1/users/u_7").await.assert_status(204);
    assert_eq!(removed.get("/console/t/acme/tokens").await.status, 401);
    assert_eq!(deleted.get("/console/t/acme/tokens").await.status, 401);
    // Membership is re-read on every request: a member put back has the session again.
    app.put_member("acme", "u_42", &["viewer"]).await;
    assert_eq!(removed.get("/console/t/acme/tokens").await.status, 200);
}

async fn a_personal_token_is_made_and_its_secret_shown_once(app: TestApp) {
    acme(&app).await;
    let (mut agent, session) = signed_in(&app, "acme", "u_42").await;
    let form = agent.get("/console/t/acme/tokens/new?owner=me").await;
    // The picker offers only what u_42 holds (viewer: reports:read).
    assert!(form.text.contains("value=\"reports:read\""));
    assert!(!form.text.contains("value=\"reports:write\""));
    assert!(!form.text.contains("value=\"latchkey:"));
    assert!(form.text.contains("<label for=\"name\">"));
    let made = create_in_console(
        &mut agent,
        &[
            ("owner", "me"),
            ("name", "ci deploy"),
            ("kind", "api_key"),
            ("permissions", "reports:read"),
            ("days", "30"),
        ],
    )
    .await;
    assert_eq!(made.status, 303, "{}", made.text);
    let location = made.header("location").to_owned();
    assert!(
        location.starts_with("/console/t/acme/reveal/"),
        "{location}"
    );
    let tokens = personal_tokens(&app, "u_42").await;
    assert_eq!(tokens.len(), 1);
    let token = &tokens[0];
    assert_eq!(token["name"], "ci deploy");
    assert_eq!(token["permissions"], json!(["reports:read"]));
    assert_eq!(token["owner"]["user_id"], "u_42");
    assert_eq!(
        token["expires_at"].as_str().unwrap(),
        app.in_millis(30 * 86_400_000).to_string()
    );
    let id = token["id"].as_str().unwrap();
    assert!(location.ends_with(&format!("?token={id}")));

    let shown = agent.get(&location).await;
    assert_eq!(shown.status, 200);
    assert!(shown.text.contains("You won't see it again"));
    let at = shown.text.find("value=\"lk_ak_").expect("the secret") + 7;
    let secret = shown.text[at..at + shown.text[at..].find('"').unwrap()].to_owned();
    assert!(shown.text.contains("data-copy=\"secret\""));
    // The secret works.
    let key_works = app
        .call(reqwest::Method::GET, "/v1/tenants", Some(&secret), None)
        .await;
    assert_ne!(key_works.status, 401, "{}", key_works.text);

    // A reload shows it no more; neither does any later page.
    let reload = agent.get(&location).await;
    assert_eq!(reload.status, 410);
    assert!(!reload.text.contains(&secret));
    for path in [
        "/console/t/acme/tokens".to_owned(),
        format!("/console/t/acme/token/{id}"),
    ] {
        let page = agent.get(&path).await;
        assert_eq!(page.status, 200);
        assert!(!page.text.contains(&secret), "{path}");
        assert!(page.text.contains("ci deploy"));
    }
    assert_eq!(count(&app, "SELECT COUNT(*) FROM console_reveals").await, 0);
    // Nor is it anywhere in the audit trail, and the actor is the console session.
    let audit = app.get(&format!("/v1/audit?token_id={id}")).await;
    assert!(!audit.text.contains(&secret));
    let created = audit.body["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["action"] == "token.created")
        .unwrap()
        .clone();
    assert_eq!(created["actor"], format!("console:{session}"));
    assert_eq!(created["actor_user"], "u_42");
}

async fn forms_without_this_sessions_csrf_token_change_nothing(app: TestApp) {
    acme(&app).await;
    app.put_member("acme", "u_7", &["viewer"]).await;
    let (mut agent, _) = signed_in(&app, "acme", "u_42").await;
    let (mut other, _) = signed_in(&app, "acme", "u_7").await;
    let others_csrf = other.get("/console/t/acme/tokens/new").await.csrf();
    let own_csrf = agent.get("/console/t/acme/tokens/new").await.csrf();
    assert_ne!(own_csrf, others_csrf);
    let fields = |csrf: Option<&str>| {
        let mut all = vec![
            ("owner", "me".to_owned()),
            ("name", "forged".to_owned()),
            ("kind", "api_key".to_owned()),
            ("permissions", "reports:read".to_owned()),
        ];
        if let Some(csrf) = csrf {
            all.push(("csrf", csrf.to_owned()));
        }
        all
    };
    for csrf in [None, Some(""), Some("AAAA"), Some(others_csrf.as_str())] {
        let form = fields(csrf);
        let form: Vec<(&str, &str)> = form.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let refused = agent.post("/console/t/acme/tokens/new", &form).await;
        assert_eq!(refused.status, 403, "{csrf:?}");
        assert!(
            refused
                .text
                .contains("did not come from this console session")
        );
    }
    // A cross-site request is refused even with the right token.
    let form = fields(Some(&own_csrf));
    let form: Vec<(&str, &str)> = form.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let request = agent
        .client
        .post(format!("{}/console/t/acme/tokens/new", agent.base))
        .header("sec-fetch-site", "cross-site")
        .form(&form);
    assert_eq!(agent.send(request).await.status, 403);
    // A form without a session is refused before anything else.
    let mut anonymous = Agent::new(&app);
    assert_eq!(
        anonymous
            .post("/console/t/acme/tokens/new", &form)
            .await
            .status,
        401
    );
    assert!(personal_tokens(&app, "u_42").await.is_empty());
    // Control: the same form with this session's token works.
    assert_eq!(
        agent.post("/console/t/acme/tokens/new", &form).await.status,
        303
    );
    assert_eq!(personal_tokens(&app, "u_42").await.len(), 1);
}

async fn a_plain_member_sees_and_touches_only_their_own_tokens(app: TestApp) {
    acme(&app).await;
    app.create_tenant("globex").await;
    app.put_member("acme", "u_7", &["viewer"]).await;
    let tenant_token = app
        .create_tenant_token(
            "acme",
            json!({"name": "shared", "kind": "api_key", "roles": ["viewer"]}),
        )
        .await;
    let tenant_id = tenant_token["token"]["id"].as_str().unwrap().to_owned();
    let others = app
        .create_personal_token("acme", "u_7", json!({"name": "u7 key", "kind": "api_key"}))
        .await;
    let others_id = others["token"]["id"].as_str().unwrap().to_owned();
    let (mut agent, _) = signed_in(&app, "acme", "u_42").await;
    let mine = agent.get("/console/t/acme/tokens").await;
    assert!(!mine.text.contains("u7 key") && !mine.text.contains("shared"));
    assert!(!mine.text.contains("Tenant tokens"));
    for path in [
        "/console/t/acme/tenant-tokens".to_owned(),
        "/console/t/acme/members".to_owned(),
        "/console/t/acme/policy".to_owned(),
        "/console/t/acme/audit".to_owned(),
        "/console/t/acme/tokens/new?owner=tenant".to_owned(),
        format!("/console/t/acme/token/{tenant_id}"),
        format!("/console/t/acme/token/{others_id}"),
        format!("/console/t/acme/token/{others_id}/revoke"),
        "/console/t/globex/tokens".to_owned(),
    ] {
        assert_eq!(agent.get(&path).await.status, 404, "{path}");
    }
    let csrf = agent.get("/console/t/acme/tokens").await.csrf();
    for id in [&tenant_id, &others_id] {
        let refused = agent
            .post(
                &format!("/console/t/acme/token/{id}/revoke"),
                &[("csrf", &csrf)],
            )
            .await;
        assert_eq!(refused.status, 404);
        let token = app.get(&format!("/v1/tokens/{id}")).await;
        assert!(token.body["revoked_at"].is_null());
    }
    // Asking for a tenant token through the form's owner field is refused too.
    let refused = agent
        .post(
            "/console/t/acme/tokens/new",
            &[
                ("csrf", &csrf),
                ("owner", "tenant"),
                ("name", "x"),
                ("kind", "api_key"),
            ],
        )
        .await;
    assert_eq!(refused.status, 404);
    let list = app.get("/v1/tenants/acme/tokens").await;
    assert_eq!(list.body["items"].as_array().unwrap().len(), 1);
}

async fn a_session_never_acts_on_a_token_holding_a_builtin_the_user_lacks(app: TestApp) {
    acme(&app).await;
    app.put(
        "/v1/roles/boss",
        json!({"permissions": ["latchkey:manage", "reports:read"]}),
    )
    .await
    .assert_status(200);
    app.put_member("acme", "u_42", &["boss"]).await;
    let strong = app
        .create_personal_token(
            "acme",
            "u_42",
            json!({"name": "strong", "kind": "api_key", "permissions": ["latchkey:manage"]}),
        )
        .await;
    let strong_id = strong["token"]["id"].as_str().unwrap().to_owned();
    let (mut agent, _) = signed_in(&app, "acme", "u_42").await;
    // Control: while u_42 manages acme, the token is theirs to see.
    assert_eq!(
        agent
            .get(&format!("/console/t/acme/token/{strong_id}"))
            .await
            .status,
        200
    );
    let csrf = agent.get("/console/t/acme/tokens").await.csrf();
    // Demoted to viewer: the session no longer reaches the stronger token.
    app.put_member("acme", "u_42", &["viewer"]).await;
    assert_eq!(
        agent
            .get(&format!("/console/t/acme/token/{strong_id}"))
            .await
            .status,
        404
    );
    let list = agent.get("/console/t/acme/tokens").await;
    assert!(!list.text.contains("strong"));
    for action in ["revoke", "roll", "rename"] {
        let refused = agent
            .post(
                &format!("/console/t/acme/token/{strong_id}/{action}"),
                &[("csrf", &csrf), ("name", "renamed")],
            )
            .await;
        assert_eq!(refused.status, 404, "{action}");
    }
    let token = app.get(&format!("/v1/tokens/{strong_id}")).await;
    assert!(token.body["revoked_at"].is_null());
    assert!(token.body["rolled_to"].is_null());
    assert_eq!(token.body["name"], "strong");
    // Nor can the form mint a built-in permission for a plain member.
    let refused = agent
        .post(
            "/console/t/acme/tokens/new",
            &[
                ("csrf", &csrf),
                ("owner", "me"),
                ("name", "sneaky"),
                ("kind", "api_key"),
                ("permissions", "latchkey:manage"),
            ],
        )
        .await;
    assert_eq!(refused.status, 422);
    assert_eq!(personal_tokens(&app, "u_42").await.len(), 1);
}

/// Form fields, the status they get, and the id of the error beside the field.
type FormCase<'a> = (&'a [(&'a str, &'a str)], u16, &'a str);

async fn bad_input_re_renders_the_form_with_the_error_beside_the_field(app: TestApp) {
    acme(&app).await;
    let (mut agent, _) = signed_in(&app, "acme", "u_42").await;
    let events_before = app.audit_count("token.created").await;
    let cases: [FormCase; 5] = [
        (&[("name", ""), ("kind", "api_key")], 422, "name-error"),
        (
            &[("name", "x"), ("kind", "api_key"), ("days", "0")],
            422,
            "days-error",
        ),
        (
            &[("name", "x"), ("kind", "api_key"), ("days", "soon")],
            422,
            "days-error",
        ),
        (
            &[
                ("name", "x"),
                ("kind", "api_key"),
                ("permissions", "billing:read"),
            ],
            422,
            "permissions-error",
        ),
        (
            &[("name", "x"), ("kind", "carrier-pigeon")],
            400,
            "kind-error",
        ),
    ];
    for (fields, status, slot) in cases {
        let mut all = vec![("owner", "me")];
        all.extend_from_slice(fields);
        let page = create_in_console(&mut agent, &all).await;
        assert_eq!(page.status, status, "{fields:?}: {}", page.text);
        assert!(page.text.contains(&format!("id=\"{slot}\"")), "{fields:?}");
        assert!(page.text.contains("aria-describedby"), "{fields:?}");
        // The form keeps what was typed.
        assert!(page.text.contains("<form"), "{fields:?}");
    }
    let long = "n".repeat(201);
    let page = create_in_console(
        &mut agent,
        &[("owner", "me"), ("name", &long), ("kind", "api_key")],
    )
    .await;
    assert_eq!(page.status, 400);
    assert!(page.text.contains("id=\"name-error\""));
    assert!(personal_tokens(&app, "u_42").await.is_empty());
    assert_eq!(app.audit_count("token.created").await, events_before);
}

async fn rename_roll_and_revoke_go_through_the_apis_rules(app: TestApp) {
    acme(&app).await;
    let created = app
        .create_personal_token(
            "acme",
            "u_42",
            json!({"name": "old name", "kind": "api_key", "permissions": ["reports:read"]}),
        )
        .await;
    let id = created["token"]["id"].as_str().unwrap().to_owned();
    let (mut agent, session) = signed_in(&app, "acme", "u_42").await;
    let page = agent.get(&format!("/console/t/acme/token/{id}")).await;
    let csrf = page.csrf();
    for heading in ["Who", "What", "When", "Where", "How"] {
        assert!(page.text.contains(&format!("<h2>{heading}")), "{heading}");
    }
    // Rename: a bad name re-renders with the error; a good one is kept.
    let bad = agent
        .post(
            &format!("/console/t/acme/token/{id}/rename"),
            &[("csrf", &csrf), ("name", "")],
        )
        .await;
    assert_eq!(bad.status, 400);
    assert!(bad.text.contains("id=\"rename-error\""));
    let renamed = agent
        .post(
            &format!("/console/t/acme/token/{id}/rename"),
            &[("csrf", &csrf), ("name", "new name")],
        )
        .await;
    assert_eq!(renamed.status, 303);
    assert_eq!(
        app.get(&format!("/v1/tokens/{id}")).await.body["name"],
        "new name"
    );

    // Roll: confirmation first; the successor's secret is shown once.
    let confirm = agent.get(&format!("/console/t/acme/token/{id}/roll")).await;
    assert_eq!(confirm.status, 200);
    let rolled = agent
        .post(
            &format!("/console/t/acme/token/{id}/roll"),
            &[("csrf", &confirm.csrf()), ("grace_seconds", "0")],
        )
        .await;
    assert_eq!(rolled.status, 303, "{}", rolled.text);
    let old = app.get(&format!("/v1/tokens/{id}")).await.body;
    let successor = old["rolled_to"].as_str().unwrap().to_owned();
    assert!(
        rolled
            .header("location")
            .ends_with(&format!("?token={successor}"))
    );
    let shown = agent.get(rolled.header("location")).await;
    assert!(shown.text.contains("value=\"lk_ak_"));

    // Revoke: the confirmation page does nothing by itself.
    let confirm = agent
        .get(&format!("/console/t/acme/token/{successor}/revoke"))
        .await;
    assert_eq!(confirm.status, 200);
    assert!(confirm.text.contains("cannot be undone"));
    assert!(app.get(&format!("/v1/tokens/{successor}")).await.body["revoked_at"].is_null());
    let revoked = agent
        .post(
            &format!("/console/t/acme/token/{successor}/revoke"),
            &[("csrf", &confirm.csrf())],
        )
        .await;
    assert_eq!(revoked.status, 303);
    assert!(!app.get(&format!("/v1/tokens/{successor}")).await.body["revoked_at"].is_null());
    let after = agent
        .get(&format!("/console/t/acme/token/{successor}"))
        .await;
    assert!(after.text.contains("Revoked"));
    assert!(!after.text.contains("Revoke…"));

    let audit = app.get("/v1/audit?tenant_id=acme&limit=200").await;
    let actions: Vec<(&str, &str, &str)> = audit.body["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["actor"].as_str().unwrap().starts_with("console:"))
        .map(|e| {
            (
                e["action"].as_str().unwrap(),
                e["actor"].as_str().unwrap(),
                e["actor_user"].as_str().unwrap(),
            )
        })
        .collect();
    let actor = format!("console:{session}");
    for action in ["token.renamed", "token.rolled", "token.revoked"] {
        assert!(
            actions
                .iter()
                .any(|(a, who, user)| *a == action && *who == actor && *user == "u_42"),
            "{action}: {actions:?}"
        );
    }
}

async fn managers_see_tenant_tokens_members_policy_and_audit(app: TestApp) {
    acme(&app).await;
    app.put(
        "/v1/roles/boss",
        json!({"permissions": ["latchkey:manage", "reports:read", "reports:write"]}),
    )
    .await
    .assert_status(200);
    app.put_member("acme", "u_1", &["boss"]).await;
    app.create_tenant_token(
        "acme",
        json!({"name": "shared", "kind": "api_key", "roles": ["viewer"]}),
    )
    .await;
    let (mut agent, session) = signed_in(&app, "acme", "u_1").await;
    let tokens = agent.get("/console/t/acme/tenant-tokens").await;
    assert_eq!(tokens.status, 200);
    assert!(tokens.text.contains("shared"));
    let members = agent.get("/console/t/acme/members").await;
    assert!(members.text.contains("u_42") && members.text.contains("viewer"));

    // A tenant token made in the console records its maker and is bounded by them.
    let form = agent.get("/console/t/acme/tokens/new?owner=tenant").await;
    assert!(form.text.contains("value=\"reports:write\""));
    let made = agent
        .post(
            "/console/t/acme/tokens/new",
            &[
                ("csrf", &form.csrf()),
                ("owner", "tenant"),
                ("name", "deploy"),
                ("kind", "client_credentials"),
                ("permissions", "reports:write"),
            ],
        )
        .await;
    assert_eq!(made.status, 303, "{}", made.text);
    let shown = agent.get(made.header("location")).await;
    assert!(shown.text.contains("value=\"lk_sk_"));
    assert!(shown.text.contains("Client ID"));
    let list = app.get("/v1/tenants/acme/tokens").await;
    let deploy = list.body["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["name"] == "deploy")
        .unwrap()
        .clone();
    assert_eq!(deploy["created_by"], "u_1");

    // The policy: a bad one re-renders with the error and changes nothing.
    let policy = agent.get("/console/t/acme/policy").await;
    assert_eq!(policy.status, 200);
    let bad = agent
        .post(
            "/console/t/acme/policy",
            &[
                ("csrf", &policy.csrf()),
                ("policy", "{\"require_expiry\": \"yes\"}"),
            ],
        )
        .await;
    assert_eq!(bad.status, 400);
    assert!(bad.text.contains("id=\"policy-error\""));
    assert_eq!(app.audit_count("policy.put").await, 0);
    let good = agent
        .post(
            "/console/t/acme/policy",
            &[
                ("csrf", &policy.csrf()),
                ("policy", "{\"require_expiry\": true}"),
            ],
        )
        .await;
    assert_eq!(good.status, 200, "{}", good.text);
    assert!(good.text.contains("Policy saved"));
    assert_eq!(
        app.get("/v1/tenants/acme/policy").await.body["policy"]["require_expiry"],
        true
    );

    // The audit trail, filtered by action.
    let audit = agent.get("/console/t/acme/audit?action=policy.put").await;
    assert_eq!(audit.status, 200);
    assert!(audit.text.contains(&format!("console:{session}")));
    assert!(!audit.text.contains("<code>token.created</code>"));
    let bad_filter = agent.get("/console/t/acme/audit?since=yesterday").await;
    assert_eq!(bad_filter.status, 422);
}

async fn operators_sign_in_with_an_admin_key_and_sign_out(app: TestApp) {
    acme(&app).await;
    let mut agent = Agent::new(&app);
    let form = agent.get("/console/login").await;
    assert_eq!(form.status, 200);
    let nonce = form
        .header("set-cookie")
        .split(';')
        .next()
        .unwrap()
        .to_owned();
    assert!(form.header("set-cookie").contains("SameSite=Strict"));
    let csrf = form.csrf();
    // Without the form's cookie, or with another token, nothing happens.
    assert_eq!(
        agent
            .post("/console/login", &[("csrf", &csrf), ("key", &app.root_key)])
            .await
            .status,
        403
    );
    agent.cookie = Some(nonce.clone());
    assert_eq!(
        agent
            .post(
                "/console/login",
                &[("csrf", "AAAA"), ("key", &app.root_key)]
            )
            .await
            .status,
        403
    );
    // A wrong key, or a key without latchkey:admin, is refused.
    let manager = app.manager_key("acme").await;
    for key in ["lk_ak_nonsense", manager.as_str()] {
        let refused = agent
            .post("/console/login", &[("csrf", &csrf), ("key", key)])
            .await;
        assert_eq!(refused.status, 401);
        assert!(refused.text.contains("not a valid admin key"));
        assert!(!refused.text.contains(key));
    }
    let signed = agent
        .post("/console/login", &[("csrf", &csrf), ("key", &app.root_key)])
        .await;
    assert_eq!(signed.status, 303);
    let cookie = signed
        .headers
        .get_all("set-cookie")
        .iter()
        .map(|v| v.to_str().unwrap().to_owned())
        .find(|v| v.starts_with("lk_console="))
        .unwrap();
    agent.cookie = Some(cookie.split(';').next().unwrap().to_owned());
    let home = agent.get("/console/").await;
    assert_eq!(home.status, 200);
    assert!(home.text.contains("/console/t/acme/tenant-tokens"));
    assert_eq!(agent.get("/console/t/acme/tenant-tokens").await.status, 200);

    let logout = agent
        .post("/console/logout", &[("csrf", &home.csrf())])
        .await;
    assert_eq!(logout.status, 200);
    assert!(logout.header("set-cookie").contains("Max-Age=0"));
    assert_eq!(agent.get("/console/").await.status, 401);
    assert_eq!(app.audit_count("console.session_ended").await, 1);
}

async fn a_session_can_be_ended_through_the_api(app: TestApp) {
    acme(&app).await;
    let (mut agent, id) = signed_in(&app, "acme", "u_42").await;
    assert_eq!(agent.get("/console/t/acme/tokens").await.status, 200);
    app.create_tenant("globex").await;
    let outsider = app.manager_key("globex").await;
    let hidden = app
        .call(
            reqwest::Method::DELETE,
            &format!("/v1/console-sessions/{id}"),
            Some(&outsider),
            None,
        )
        .await;
    hidden.assert_problem(404, "not-found");
    assert_eq!(agent.get("/console/t/acme/tokens").await.status, 200);
    let manager = app.manager_key("acme").await;
    let ended = app
        .call(
            reqwest::Method::DELETE,
            &format!("/v1/console-sessions/{id}"),
            Some(&manager),
            None,
        )
        .await;
    ended.assert_status(204);
    assert_eq!(agent.get("/console/t/acme/tokens").await.status, 401);
    app.delete("/v1/console-sessions/not-a-uuid")
        .await
        .assert_problem(400, "invalid-field");
}

async fn only_admins_and_that_tenants_managers_make_session_urls(app: TestApp) {
    acme(&app).await;
    app.create_tenant("globex").await;
    let outsider = app.manager_key("globex").await;
    let path = "/v1/tenants/acme/users/u_42/console-sessions";
    app.call(reqwest::Method::POST, path, Some(&outsider), None)
        .await
        .assert_problem(404, "not-found");
    let plain = app
        .create_personal_token(
            "acme",
            "u_42",
            json!({"name": "k", "kind": "api_key", "permissions": ["reports:read"]}),
        )
        .await;
    app.call(reqwest::Method::POST, path, plain["api_key"].as_str(), None)
        .await
        .assert_problem(403, "insufficient-scope");
    app.call(
        reqwest::Method::POST,
        "/v1/tenants/acme/users/nobody/console-sessions",
        Some(&app.root_key),
        None,
    )
    .await
    .assert_problem(404, "not-found");
    assert_eq!(
        count(&app, "SELECT COUNT(*) FROM console_sessions").await,
        0
    );
    let manager = app.manager_key("acme").await;
    let made = app
        .call(reqwest::Method::POST, path, Some(&manager), None)
        .await;
    made.assert_status(201);
    assert_eq!(made.header("cache-control"), "no-store");
}

/// Reports usage of `token` the way a gateway does (docs/API.md, "Usage"): `entries` are
/// (route, client address, count, days ago).
pub async fn report_usage(app: &TestApp, token: &str, entries: &[(&str, &str, i64, i64)]) {
    let key = app.introspection_key().await;
    for (route, ip, count, days_ago) in entries {
        let at = app.now().millis() - days_ago * 86_400_000 - 120_000;
        let minute = latchkey_core::Timestamp::from_millis(at - at.rem_euclid(60_000));
        let batch = json!({ "window_start": minute.to_rfc3339(), "entries": [{
            "token_id": token, "route": route, "method": "GET", "status_class": "2xx",
            "client_ip": ip, "count": count, "last_used_at": minute.plus_seconds(5).to_rfc3339(),
        }]});
        let reply = app
            .call(reqwest::Method::POST, "/v1/usage", Some(&key), Some(batch))
            .await;
        reply.assert_status(202);
        assert_eq!(reply.body["accepted"], 1, "{}", reply.text);
    }
}

async fn a_tokens_page_charts_its_requests_per_day_by_route_and_by_address(app: TestApp) {
    acme(&app).await;
    let (mut agent, _) = signed_in(&app, "acme", "u_42").await;
    let made = create_in_console(
        &mut agent,
        &[
            ("name", "laptop"),
            ("kind", "api_key"),
            ("permissions", "reports:read"),
        ],
    )
    .await;
    assert_eq!(made.status, 303, "{}", made.text);
    let token = personal_tokens(&app, "u_42").await[0]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let page = format!("/console/t/acme/token/{token}");
    // Control: no usage yet says so, and draws no chart.
    let empty = agent.get(&page).await;
    assert_eq!(empty.status, 200);
    assert!(empty.text.contains("No requests recorded yet"));
    assert!(!empty.text.contains("<rect x="));

    report_usage(
        &app,
        &token,
        &[
            ("/reports", "203.0.113.7", 3, 0),
            ("/reports", "198.51.100.2", 2, 0),
            ("/billing", "203.0.113.7", 4, 1),
        ],
    )
    .await;
    let charted = agent.get(&page).await;
    assert_eq!(charted.status, 200);
    let text = &charted.text;
    assert!(!text.contains("No requests recorded yet"));
    assert!(text.contains("aria-label=\"Requests per day by route\""));
    assert!(text.contains("aria-label=\"Requests per day by client address\""));
    let day = |days_ago: i64| {
        latchkey_core::Timestamp::from_millis(app.now().millis() - days_ago * 86_400_000 - 120_000)
            .to_rfc3339()[..10]
            .to_owned()
    };
    // One bar segment per series and day, its count in its title: by route today the
    // two addresses add up, by address they stay apart.
    for title in [
        format!("GET /reports: 5 on {}", day(0)),
        format!("GET /billing: 4 on {}", day(1)),
        format!("203.0.113.7: 3 on {}", day(0)),
        format!("198.51.100.2: 2 on {}", day(0)),
        format!("203.0.113.7: 4 on {}", day(1)),
    ] {
        assert!(
            text.contains(&format!("<title>{title}</title>")),
            "{title} missing"
        );
    }
    // The legends total each series over the 30 days.
    assert!(text.contains("<code>GET /reports</code> 5"));
    assert!(text.contains("<code>203.0.113.7</code> 7"));
}
