//! Every type's JSON, pinned to the example docs/API.md marks for it: the example reads
//! into the type and writes back as the same JSON, member for member.

use super::*;
use latchkey_core::Timestamp;
use latchkey_core::token::{Owner, Token, TokenKind, TokenName};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};

const API: &str = include_str!("../../../docs/API.md");

/// The JSON block that follows `<!-- wire: NAME -->` in docs/API.md.
fn example(name: &str) -> Value {
    let marker = format!("<!-- wire: {name} -->");
    let (_, after) = API
        .split_once(&marker)
        .unwrap_or_else(|| panic!("docs/API.md has no {marker}"));
    let block = after
        .trim_start()
        .strip_prefix("```json\n")
        .unwrap_or_else(|| panic!("no JSON block follows {marker}"));
    let (json, _) = block.split_once("```").unwrap();
    serde_json::from_str(json).unwrap_or_else(|e| panic!("{marker}: {e}"))
}

/// Reads the example for `name` as `T` and checks that it writes back unchanged.
fn round_trip<T: Serialize + DeserializeOwned>(name: &str) -> T {
    let documented = example(name);
    let read: T = serde_json::from_value(documented.clone())
        .unwrap_or_else(|e| panic!("{name} does not read its example: {e}"));
    assert_eq!(serde_json::to_value(&read).unwrap(), documented, "{name}");
    read
}

#[test]
fn the_token_resource_is_the_documented_token() {
    let token: TokenResource = round_trip("TokenResource");
    assert_eq!(token.kind, TokenKind::ClientCredentials);
    assert_eq!(
        token.last_used_at,
        Timestamp::parse_rfc3339("2026-11-29T03:10:00.25Z")
    );
}

#[test]
fn the_token_resource_writes_what_the_server_writes_for_a_token() {
    let token = Token {
        id: latchkey_core::TokenId::from_u128(7),
        kind: TokenKind::ApiKey,
        owner: Owner::User {
            tenant_id: latchkey_core::TenantId::parse("acme").unwrap(),
            user_id: latchkey_core::UserId::parse("u_42").unwrap(),
        },
        name: TokenName::parse("laptop").unwrap(),
        roles: Vec::new(),
        permissions: vec![latchkey_core::Permission::parse("reports:read").unwrap()],
        created_by: Some(latchkey_core::UserId::parse("u_42").unwrap()),
        created_at: Timestamp::from_millis(1_764_385_200_123),
        expires_at: None,
        revoked_at: Some(Timestamp::from_millis(1_764_385_300_000)),
        revoked_reason: Some(latchkey_core::token::RevokedReason::Revoked),
        rolled_from: None,
        rolled_to: None,
        revokes_at: None,
        last_used_at: None,
        last_used_ip: None,
        ip_allowlist: vec![latchkey_core::cidr::IpNet::parse("2001:db8::/32").unwrap()],
        access_token_ttl_seconds: 600,
        refresh_tokens: false,
        secret_hint: Some("lk_ak_…Ab12".into()),
        public_key: None,
    };
    let server = serde_json::to_value(&token).unwrap();
    let wire = serde_json::to_value(TokenResource::from(token)).unwrap();
    assert_eq!(wire, server);
    assert_eq!(
        serde_json::from_value::<TokenResource>(server.clone())
            .map(|t| serde_json::to_value(t).unwrap())
            .unwrap(),
        server
    );
}

#[test]
fn the_create_answer_carries_the_secret_its_kind_names() {
    let created: CreatedToken = round_trip("CreatedToken");
    assert_eq!(created.client_id, Some(created.token.id));
    assert!(created.client_secret.is_some());
    assert_eq!((created.api_key, created.jwt), (None, None));
    let api_key = json!({"token": example("TokenResource"), "api_key": "lk_ak_…Ab12"});
    let read: CreatedToken = serde_json::from_value(api_key.clone()).unwrap();
    assert_eq!(serde_json::to_value(read).unwrap(), api_key);
}

#[test]
fn request_bodies_are_the_documented_ones() {
    let create: CreateToken = round_trip("CreateToken");
    assert_eq!(create.roles, Some(vec!["viewer".to_owned()]));
    let rename: RenameToken = round_trip("RenameToken");
    assert_eq!(rename.name, "work laptop");
    round_trip::<CreateTenant>("CreateTenant");
    round_trip::<PutMembership>("PutMembership");
    round_trip::<PutPermission>("PutPermission");
    round_trip::<PutRole>("PutRole");
}

#[test]
fn a_create_body_needs_only_name_and_kind_and_refuses_unknown_members() {
    let minimal: CreateToken = serde_json::from_value(json!({"name": "n", "kind": "jwt"})).unwrap();
    assert_eq!(
        serde_json::to_value(&minimal).unwrap(),
        json!({"name": "n", "kind": "jwt", "permissions": [], "ip_allowlist": [],
               "refresh_tokens": false})
    );
    let unknown = json!({"name": "n", "kind": "jwt", "secret": "x"});
    assert!(serde_json::from_value::<CreateToken>(unknown).is_err());
    assert!(serde_json::from_value::<PutPermission>(json!({"name": "x"})).is_err());
    assert_eq!(
        serde_json::to_value(PutPermission::default()).unwrap(),
        json!({})
    );
}

#[test]
fn a_page_holds_items_and_the_next_cursor_or_null() {
    let page: Page<TokenResource> = round_trip("Page");
    assert_eq!(page.items.len(), 1);
    let last = Page::<TokenResource> {
        items: Vec::new(),
        next_cursor: None,
    };
    assert_eq!(
        serde_json::to_value(last).unwrap(),
        json!({"items": [], "next_cursor": null})
    );
}

#[test]
fn a_problem_names_its_extension_member_only() {
    let problem: Problem = round_trip("Problem");
    assert_eq!(problem.permission.as_deref(), Some("reports:write"));
    assert_eq!((problem.field, problem.role), (None, None));
}

#[test]
fn oauth_answers_are_the_documented_ones() {
    let granted: TokenResponse = round_trip("TokenResponse");
    assert_eq!(granted.refresh_token.as_deref(), Some("lk_rt_…"));
    let refused: OAuthErrorBody = round_trip("OAuthErrorBody");
    assert_eq!(refused.error, "invalid_scope");
}

#[test]
fn introspection_answers_are_active_with_members_or_exactly_inactive() {
    let active: IntrospectionResponse = round_trip("IntrospectionResponse");
    assert!(active.active && active.uid.is_some());
    assert!(API.contains("exactly `{\"active\":false}`"));
    assert_eq!(
        serde_json::to_string(&IntrospectionResponse::inactive()).unwrap(),
        r#"{"active":false}"#
    );
    let inactive: IntrospectionResponse = serde_json::from_str(r#"{"active":false}"#).unwrap();
    assert_eq!(inactive, IntrospectionResponse::inactive());
}

#[test]
fn the_roll_body_is_the_documented_one_and_every_member_is_optional() {
    let roll: RollToken = round_trip("RollToken");
    assert_eq!(roll.grace_seconds, Some(86_400));
    let empty: RollToken = serde_json::from_value(json!({})).unwrap();
    assert_eq!(serde_json::to_value(empty).unwrap(), json!({}));
    assert!(serde_json::from_value::<RollToken>(json!({"grace": 1})).is_err());
}

#[test]
fn a_policy_reads_and_writes_as_documented() {
    let put: PutPolicy = round_trip("PutPolicy");
    assert_eq!(put.max_token_lifetime_days, Some(90));
    let network = put.network.expect("the example sets network rules");
    assert_eq!(network.deny, vec!["203.0.113.128/25".to_owned()]);
    assert_eq!(
        put.allowed_kinds,
        Some(vec!["client_credentials".to_owned(), "api_key".to_owned()])
    );
    let resource: PolicyResource = round_trip("PolicyResource");
    assert_eq!(resource.effective.max_access_token_ttl_seconds, Some(3600));
    assert_eq!(resource.policy.network.allow, None);
    assert_eq!(resource.policy.network.deny.len(), 1);
    let violations = resource.violations.expect("a PUT's answer has violations");
    assert_eq!(violations.total, 1);
    assert_eq!(
        violations.tokens[0].rules,
        vec![
            latchkey_core::policy::PolicyRule::MaxTokenLifetimeDays,
            latchkey_core::policy::PolicyRule::RequireExpiry
        ]
    );
    // A GET's answer has no `violations` member at all.
    let read = PolicyResource {
        violations: None,
        ..resource
    };
    assert!(
        serde_json::to_value(read)
            .unwrap()
            .get("violations")
            .is_none()
    );
}

/// The OpenAPI stand-ins describe what latchkey-core's values serialize to.
mod schemas {
    use crate::schema::{auth_methods, policy_rules, revoked_reasons, token_kinds};
    use latchkey_core::token::Owner;
    use latchkey_core::{TenantId, UserId};
    use utoipa::PartialSchema;

    fn enum_values<T: PartialSchema>() -> serde_json::Value {
        serde_json::to_value(T::schema()).unwrap()["enum"].clone()
    }

    #[test]
    fn enumerations_list_what_core_serializes() {
        let kinds: Vec<_> = token_kinds().iter().map(|k| serde_json::json!(k)).collect();
        assert_eq!(
            enum_values::<crate::schema::TokenKindSchema>(),
            serde_json::json!(kinds)
        );
        let reasons: Vec<_> = revoked_reasons()
            .iter()
            .map(|r| serde_json::json!(r))
            .collect();
        assert_eq!(
            enum_values::<crate::schema::RevokedReasonSchema>(),
            serde_json::json!(reasons)
        );
        let methods: Vec<_> = auth_methods()
            .iter()
            .map(|m| serde_json::json!(m))
            .collect();
        assert_eq!(
            enum_values::<crate::schema::AuthMethodSchema>(),
            serde_json::json!(methods)
        );
        let rules: Vec<_> = policy_rules()
            .iter()
            .map(|r| serde_json::json!(r))
            .collect();
        assert_eq!(
            enum_values::<crate::schema::PolicyRuleSchema>(),
            serde_json::json!(rules)
        );
    }

    #[test]
    fn the_owner_schema_has_the_members_core_writes() {
        let schema = serde_json::to_value(crate::schema::OwnerSchema::schema()).unwrap();
        let owner = Owner::User {
            tenant_id: TenantId::parse("acme").unwrap(),
            user_id: UserId::parse("u_42").unwrap(),
        };
        let written = serde_json::to_value(&owner).unwrap();
        let variant = schema["oneOf"]
            .as_array()
            .unwrap()
            .iter()
            .find(|v| v["properties"]["type"]["enum"] == serde_json::json!(["user"]))
            .expect("a user variant");
        let mut documented: Vec<_> = variant["properties"]
            .as_object()
            .unwrap()
            .keys()
            .cloned()
            .collect();
        let mut keys: Vec<_> = written.as_object().unwrap().keys().cloned().collect();
        documented.sort();
        keys.sort();
        assert_eq!(documented, keys);
    }
}
