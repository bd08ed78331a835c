//! Tenant and personal tokens: create (the secret is in this response and nowhere
//! else, ever), list, read, rename (the only change a token admits), revoke, and roll
//! (a successor with the same grant; docs/API.md, "Rolling a token").

use super::tenants::visible_tenant;
use crate::http::auth::Caller;
use crate::http::extract::{ApiJson, ListQuery, Query, query_param};
use crate::http::problem::{ApiError, ApiResult};
use crate::http::{page_body, path_param};
use crate::service::state::AppState;
use crate::service::tokens::{self, Minted, NewToken, Rolled};
use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::IntoResponse;
use latchkey_core::cidr::IpNet;
use latchkey_core::permission::{self, Authority, check_caller_grant, check_user_grant};
use latchkey_core::store::{RollOutcome, TokenOwnerFilter};
use latchkey_core::token::{
    ClientKey, IMMUTABLE_FIELDS, MUTABLE_FIELD, Owner, Token, TokenKind, TokenName,
};
use latchkey_core::{Permission, PermissionSet, RoleName, TenantId, Timestamp, TokenId, UserId};
use latchkey_verify::assertion::{PRIVATE_JWK_MEMBERS, PublicKey};
use latchkey_wire::{CreatedToken, Page, TokenResource};
use serde::Deserialize;
use serde_json::{Map, Value, json};

const MAX_ITEMS: usize = 64;

/// The body of both create endpoints. Personal tokens take neither `roles` nor
/// `created_by`: their owner is their creator and they hold no roles.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateToken {
    name: TokenName,
    kind: TokenKind,
    roles: Option<Vec<RoleName>>,
    #[serde(default)]
    permissions: Vec<Permission>,
    #[serde(default)]
    expires_at: Option<Timestamp>,
    #[serde(default)]
    access_token_ttl_seconds: Option<u32>,
    #[serde(default)]
    ip_allowlist: Vec<IpNet>,
    created_by: Option<UserId>,
    #[serde(default)]
    refresh_tokens: bool,
    #[serde(default)]
    public_key: Option<Value>,
}

impl CreateToken {
    /// The same request made on behalf of `user` (the console's tenant tokens).
    pub fn created_by(mut self, user: UserId) -> Self {
        self.created_by = Some(user);
        self
    }
}

pub(crate) fn sorted_unique<T: Ord>(field: &str, mut items: Vec<T>) -> ApiResult<Vec<T>> {
    items.sort();
    items.dedup();
    if items.len() > MAX_ITEMS {
        return Err(ApiError::field(
            field,
            format!("must hold at most {MAX_ITEMS} entries"),
        ));
    }
    Ok(items)
}

/// Everything a new token needs, checked, before the grant checks.
struct Draft {
    owner: Owner,
    /// What the token grants at creation: the scope of a long-lived JWT.
    effective: PermissionSet,
    roles: Vec<RoleName>,
    permissions: Vec<Permission>,
    created_by: Option<UserId>,
    body: CreateToken,
}

impl Draft {
    fn check_values(&self, state: &AppState) -> ApiResult<()> {
        let now = state.now();
        if self.body.expires_at.is_some_and(|expiry| expiry <= now) {
            return Err(ApiError::value("expires_at", "must be in the future"));
        }
        let max = state.settings().max_access_token_ttl_seconds;
        if let Some(ttl) = self.body.access_token_ttl_seconds
            && !(1..=max).contains(&ttl)
        {
            return Err(ApiError::value(
                "access_token_ttl_seconds",
                format!("must be between 1 and {max}"),
            ));
        }
        if self.body.refresh_tokens && self.body.kind != TokenKind::ClientCredentials {
            return Err(ApiError::value(
                "refresh_tokens",
                "only client_credentials tokens can use refresh tokens",
            ));
        }
        if self.body.ip_allowlist.len() > MAX_ITEMS {
            return Err(ApiError::field(
                "ip_allowlist",
                format!("must hold at most {MAX_ITEMS} entries"),
            ));
        }
        Ok(())
    }

    /// The public key of a `private_key_jwt` client, when the body gives one.
    fn client_key(&self) -> ApiResult<Option<ClientKey>> {
        let Some(value) = &self.body.public_key else {
            return Ok(None);
        };
        if self.body.kind != TokenKind::ClientCredentials {
            return Err(ApiError::field(
                "public_key",
                "only client_credentials tokens authenticate with a key",
            ));
        }
        client_key(value).map(Some)
    }
}

/// Checks a client's public JWK (docs/API.md, "Clients with a private key"): an
/// Ed25519, P-256 or RSA (≥ 2048 bits) public key. A key with private material is
/// refused as `private-key`; nothing of it is kept or echoed.
fn client_key(value: &Value) -> ApiResult<ClientKey> {
    const FIELD: &str = "public_key";
    let Value::Object(jwk) = value else {
        return Err(ApiError::field(FIELD, "must be a JWK (a JSON object)"));
    };
    if jwk.get("kty").and_then(Value::as_str) == Some("oct") {
        return Err(ApiError::field(
            FIELD,
            "is a symmetric (oct) key; only EdDSA, ES256 and RS256 public keys are accepted",
        ));
    }
    if PRIVATE_JWK_MEMBERS.iter().any(|m| jwk.contains_key(*m)) {
        return Err(ApiError::PrivateKey(FIELD.to_owned()));
    }
    PublicKey::from_jwk_object(jwk).map_err(|why| ApiError::field(FIELD, why))?;
    ClientKey::from_jwk(jwk).ok_or_else(|| ApiError::field(FIELD, "is not a public JWK"))
}

#[utoipa::path(
    post,
    path = "/v1/tenants/{tid}/tokens",
    operation_id = "tokens_create_tenant",
    tag = "tokens",
    summary = "Create a tenant token",
    params(("tid" = String, Path, pattern = "^[A-Za-z0-9._-]{1,128}$", description = "The tenant id")),
    request_body = latchkey_wire::CreateToken,
    responses((status = 201, description = "The token and its secret, shown once", body = latchkey_wire::CreatedToken), (status = 400, description = "Malformed body, path or query"), (status = 401, description = "No valid credential"), (status = 403, description = "The credential may not do this"), (status = 404, description = "No such resource, or not visible to the caller"), (status = 422, description = "A value is out of range, unknown or breaks a rule"))
)]
pub async fn create_tenant(
    State(state): State<AppState>,
    caller: Caller,
    Path(tid): Path<String>,
    ApiJson(mut body): ApiJson<CreateToken>,
) -> ApiResult<(StatusCode, Json<CreatedToken>)> {
    let tenant = visible_tenant(&state, &caller, &tid).await?;
    let draft = Draft {
        owner: Owner::Tenant {
            tenant_id: tenant.id.clone(),
        },
        effective: PermissionSet::new(),
        roles: sorted_unique("roles", body.roles.take().unwrap_or_default())?,
        permissions: sorted_unique("permissions", std::mem::take(&mut body.permissions))?,
        created_by: body.created_by.take(),
        body,
    };
    draft.check_values(&state)?;
    let public_key = draft.client_key()?;
    let requested = requested_permissions(&state, &draft).await?;
    check_caller_grant(&caller.authority, &tenant.id, &requested)?;
    if let Some(user) = &draft.created_by {
        let holds = member_permissions(&state, &tenant.id, user).await?;
        check_user_grant(user, &tenant.id, &holds, &requested)?;
    }
    let mut draft = draft;
    draft.effective =
        permission::effective_for_tenant_token(&tenant.id, &requested, &PermissionSet::new());
    mint(&state, &caller, draft, public_key).await
}

#[utoipa::path(
    post,
    path = "/v1/tenants/{tid}/users/{uid}/tokens",
    operation_id = "tokens_create_personal",
    tag = "tokens",
    summary = "Create a personal token",
    params(("tid" = String, Path, pattern = "^[A-Za-z0-9._-]{1,128}$", description = "The tenant id"), ("uid" = String, Path, pattern = "^[A-Za-z0-9._-]{1,128}$", description = "The user id")),
    request_body = latchkey_wire::CreateToken,
    responses((status = 201, description = "The token and its secret, shown once", body = latchkey_wire::CreatedToken), (status = 400, description = "Malformed body, path or query"), (status = 401, description = "No valid credential"), (status = 403, description = "The credential may not do this"), (status = 404, description = "No such resource, or not visible to the caller"), (status = 422, description = "A value is out of range, unknown or breaks a rule"))
)]
pub async fn create_personal(
    State(state): State<AppState>,
    caller: Caller,
    Path((tid, uid)): Path<(String, String)>,
    ApiJson(mut body): ApiJson<CreateToken>,
) -> ApiResult<(StatusCode, Json<CreatedToken>)> {
    let tenant = visible_tenant(&state, &caller, &tid).await?;
    let user = path_param("user_id", &uid, UserId::parse)?;
    if body.roles.is_some() {
        return Err(ApiError::field("roles", "personal tokens hold no roles"));
    }
    if body.created_by.is_some() {
        return Err(ApiError::field(
            "created_by",
            "the owner of a personal token is its creator",
        ));
    }
    let holds = state
        .store()
        .get_membership(&tenant.id, &user)
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("user {user} in tenant {}", tenant.id)))?
        .permission_set();
    let draft = Draft {
        owner: Owner::User {
            tenant_id: tenant.id.clone(),
            user_id: user.clone(),
        },
        effective: PermissionSet::new(),
        roles: Vec::new(),
        permissions: sorted_unique("permissions", std::mem::take(&mut body.permissions))?,
        created_by: Some(user.clone()),
        body,
    };
    draft.check_values(&state)?;
    let public_key = draft.client_key()?;
    let requested = requested_permissions(&state, &draft).await?;
    check_caller_grant(&caller.authority, &tenant.id, &requested)?;
    check_user_grant(&user, &tenant.id, &holds, &requested)?;
    let mut draft = draft;
    draft.effective = permission::effective_for_personal_token(&tenant.id, &requested, &holds);
    mint(&state, &caller, draft, public_key).await
}

/// The token's permissions together with its roles' current permissions; refuses
/// unknown roles and permissions.
async fn requested_permissions(state: &AppState, draft: &Draft) -> ApiResult<PermissionSet> {
    state
        .store()
        .check_permissions_exist(&draft.permissions)
        .await?;
    let mut requested = state.store().role_permissions(&draft.roles).await?;
    requested.extend(draft.permissions.iter().cloned());
    Ok(requested)
}

pub(crate) async fn member_permissions(
    state: &AppState,
    tenant: &TenantId,
    user: &UserId,
) -> ApiResult<PermissionSet> {
    let membership = state.store().get_membership(tenant, user).await?;
    membership
        .map(|m| m.permission_set())
        .ok_or_else(|| ApiError::UnknownMember {
            detail: format!("created_by: user {user} is not a member of tenant {tenant}"),
            user: user.to_string(),
        })
}

/// Makes the token and answers with its secret once (a client with `public_key` has
/// none).
async fn mint(
    state: &AppState,
    caller: &Caller,
    draft: Draft,
    public_key: Option<ClientKey>,
) -> ApiResult<(StatusCode, Json<CreatedToken>)> {
    let mut ctx = caller.audit(state);
    if draft.created_by.is_some() {
        ctx.actor_user = draft.created_by.as_ref().map(ToString::to_string);
    }
    let new = NewToken {
        kind: draft.body.kind,
        owner: draft.owner,
        name: draft.body.name,
        roles: draft.roles,
        permissions: draft.permissions,
        created_by: draft.created_by,
        expires_at: draft.body.expires_at,
        ip_allowlist: draft.body.ip_allowlist,
        access_token_ttl_seconds: draft.body.access_token_ttl_seconds,
        refresh_tokens: draft.body.refresh_tokens,
        effective: draft.effective,
        rolled_from: None,
        public_key,
    };
    let minted = tokens::mint(state, &ctx, new).await?;
    Ok(created(minted))
}

/// The 201 of a create or a roll: the token and its secret, in the member its kind names.
fn created(minted: Minted) -> (StatusCode, Json<CreatedToken>) {
    let token = minted.record.token;
    let id = token.id;
    let secret = minted.secret.map(|secret| secret.expose().to_owned());
    let mut body = CreatedToken {
        token: token.into(),
        client_id: None,
        client_secret: None,
        api_key: None,
        jwt: minted.jwt,
    };
    match body.token.kind {
        TokenKind::ClientCredentials => {
            body.client_id = Some(id);
            body.client_secret = secret;
        }
        TokenKind::ApiKey => body.api_key = secret,
        TokenKind::Jwt => {}
    }
    (StatusCode::CREATED, Json(body))
}

/// The longest grace window of a roll: 30 days.
const MAX_GRACE_SECONDS: i64 = 2_592_000;

/// The body of `POST /v1/tokens/{id}/roll`. `grace_seconds` is read wide so that a
/// negative window is refused as out of range, like one too long.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RollToken {
    #[serde(default)]
    grace_seconds: Option<i64>,
    #[serde(default)]
    expires_at: Option<Timestamp>,
    #[serde(default)]
    public_key: Option<Value>,
}

/// `POST /v1/tokens/{id}/roll`: 201 with the successor and its secret, as a create.
/// Whoever may read the token may roll it; nothing is written on a refusal.
#[utoipa::path(
    post,
    path = "/v1/tokens/{id}/roll",
    operation_id = "tokens_roll",
    tag = "tokens",
    summary = "Roll a token to a successor",
    params(("id" = String, Path, format = Uuid, description = "The token id")),
    request_body = latchkey_wire::RollToken,
    responses((status = 201, description = "The successor and its secret, shown once", body = latchkey_wire::CreatedToken), (status = 400, description = "Malformed body, path or query"), (status = 401, description = "No valid credential"), (status = 403, description = "The credential may not do this"), (status = 404, description = "No such resource, or not visible to the caller"), (status = 409, description = "Conflicts with the current state"), (status = 422, description = "A value is out of range, unknown or breaks a rule"))
)]
pub async fn roll(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    ApiJson(body): ApiJson<RollToken>,
) -> ApiResult<(StatusCode, Json<CreatedToken>)> {
    let old = visible_token(&state, &caller, &id).await?;
    let ctx = caller.audit(&state);
    let now = ctx.at;
    let grace = body.grace_seconds.unwrap_or(86_400);
    if !(0..=MAX_GRACE_SECONDS).contains(&grace) {
        return Err(ApiError::value(
            "grace_seconds",
            format!("must be between 0 and {MAX_GRACE_SECONDS}"),
        ));
    }
    if body.expires_at.is_some_and(|expiry| expiry <= now) {
        return Err(ApiError::value("expires_at", "must be in the future"));
    }
    let public_key = successor_key(&old, body.public_key.as_ref())?;
    let refused = |outcome| match outcome {
        RollOutcome::AlreadyRolled => ApiError::AlreadyRolled(format!("token {}", old.id)),
        RollOutcome::Revoked => ApiError::Revoked(format!("token {}", old.id)),
        RollOutcome::NotFound | RollOutcome::Rolled(_) => {
            ApiError::NotFound(format!("token {}", old.id))
        }
    };
    if old.rolled_to.is_some() {
        return Err(refused(RollOutcome::AlreadyRolled));
    }
    if !old.is_active(now) {
        return Err(refused(RollOutcome::Revoked));
    }
    // A long-lived JWT successor is signed with what the old token grants now.
    let effective = state
        .token(old.id)
        .await?
        .map(|cached| cached.effective.clone())
        .unwrap_or_default();
    let revokes_at = old.expires_at.map_or(now.plus_seconds(grace), |expiry| {
        expiry.min(now.plus_seconds(grace))
    });
    let mut new = NewToken::successor(&old, body.expires_at, effective);
    new.public_key = public_key;
    let outcome = tokens::roll(&state, &ctx, old.id, new, revokes_at).await?;
    state.auth_changed();
    match outcome {
        Rolled::Made(minted) => Ok(created(*minted)),
        Rolled::Refused(outcome) => Err(refused(outcome)),
    }
}

/// The successor's key in a roll: a `private_key_jwt` client's roll names a new one, and
/// no other token's roll names any.
fn successor_key(old: &Token, given: Option<&Value>) -> ApiResult<Option<ClientKey>> {
    match (&old.public_key, given) {
        (None, None) => Ok(None),
        (None, Some(_)) => Err(ApiError::field(
            "public_key",
            "only a private_key_jwt client's roll takes a key; this token has none",
        )),
        (Some(_), None) => Err(ApiError::field(
            "public_key",
            "is required: a private_key_jwt client rolls to a new key",
        )),
        (Some(current), Some(value)) => {
            let key = client_key(value)?;
            if key.thumbprint() == current.thumbprint() {
                return Err(ApiError::value(
                    "public_key",
                    "is the key the token has; roll to a new key",
                ));
            }
            Ok(Some(key))
        }
    }
}

#[utoipa::path(
    get,
    path = "/v1/tenants/{tid}/tokens",
    operation_id = "tokens_list_tenant",
    tag = "tokens",
    summary = "List a tenant's tokens",
    params(("tid" = String, Path, pattern = "^[A-Za-z0-9._-]{1,128}$", description = "The tenant id"), ("limit" = Option<u32>, Query, minimum = 1, maximum = 200, description = "Page size, 1–200, default 50"), ("cursor" = Option<String>, Query, description = "The `next_cursor` of the previous page")),
    responses((status = 200, description = "A page of tokens", body = latchkey_wire::Page<latchkey_wire::TokenResource>), (status = 400, description = "Malformed body, path or query"), (status = 401, description = "No valid credential"), (status = 403, description = "The credential may not do this"), (status = 404, description = "No such resource, or not visible to the caller"))
)]
pub async fn list_tenant(
    State(state): State<AppState>,
    caller: Caller,
    Path(tid): Path<String>,
    Query(query): Query<ListQuery>,
) -> ApiResult<Json<Page<TokenResource>>> {
    let tenant = visible_tenant(&state, &caller, &tid).await?;
    let filter = TokenOwnerFilter::Tenant(tenant.id);
    list(&state, &caller, &filter, query).await
}

#[utoipa::path(
    get,
    path = "/v1/tenants/{tid}/users/{uid}/tokens",
    operation_id = "tokens_list_personal",
    tag = "tokens",
    summary = "List a user's personal tokens",
    params(("tid" = String, Path, pattern = "^[A-Za-z0-9._-]{1,128}$", description = "The tenant id"), ("uid" = String, Path, pattern = "^[A-Za-z0-9._-]{1,128}$", description = "The user id"), ("limit" = Option<u32>, Query, minimum = 1, maximum = 200, description = "Page size, 1–200, default 50"), ("cursor" = Option<String>, Query, description = "The `next_cursor` of the previous page")),
    responses((status = 200, description = "A page of tokens", body = latchkey_wire::Page<latchkey_wire::TokenResource>), (status = 400, description = "Malformed body, path or query"), (status = 401, description = "No valid credential"), (status = 403, description = "The credential may not do this"), (status = 404, description = "No such resource, or not visible to the caller"))
)]
pub async fn list_personal(
    State(state): State<AppState>,
    caller: Caller,
    Path((tid, uid)): Path<(String, String)>,
    Query(query): Query<ListQuery>,
) -> ApiResult<Json<Page<TokenResource>>> {
    let tenant = visible_tenant(&state, &caller, &tid).await?;
    let user = path_param("user_id", &uid, UserId::parse)?;
    let filter = TokenOwnerFilter::User(tenant.id, user);
    list(&state, &caller, &filter, query).await
}

/// A page of tokens, without those the caller may not act on (a manager never sees
/// tokens holding `latchkey:admin` or `latchkey:introspect`; a page may then hold fewer
/// items than `limit`, and its cursor still continues after the last token read).
async fn list(
    state: &AppState,
    caller: &Caller,
    filter: &TokenOwnerFilter,
    query: ListQuery,
) -> ApiResult<Json<Page<TokenResource>>> {
    let mut page = state.store().list_tokens(filter, &query.into()).await?;
    if caller.authority != Authority::Admin {
        let mut kept = Vec::with_capacity(page.items.len());
        for token in page.items {
            if !holds_system_permission(state, &token).await? {
                kept.push(token);
            }
        }
        page.items = kept;
    }
    Ok(Json(page_body(page)))
}

/// Whether `token` grants `latchkey:admin` or `latchkey:introspect`, which are stronger
/// than `latchkey:manage`: a manager, even of the system tenant, neither sees nor acts on
/// such a token, so it cannot disarm the admin keys or the gateways' credentials
/// (docs/API.md, "Who may call the management API"). Only system-tenant tokens can.
async fn holds_system_permission(state: &AppState, token: &Token) -> ApiResult<bool> {
    if !token.owner.tenant_id().is_system() {
        return Ok(false);
    }
    Ok(state
        .token(token.id)
        .await?
        .is_none_or(|cached| cached.holds_system_permission()))
}

/// Loads a token the caller may see, or answers 404 as if it did not exist.
pub(crate) async fn visible_token(
    state: &AppState,
    caller: &Caller,
    raw: &str,
) -> ApiResult<Token> {
    let id = path_param("token_id", raw, TokenId::parse)?;
    let not_found = || ApiError::NotFound(format!("token {id}"));
    let record = state.store().get_token(id).await?.ok_or_else(not_found)?;
    if !caller.authority.covers(record.token.owner.tenant_id())
        || (caller.authority != Authority::Admin
            && holds_system_permission(state, &record.token).await?)
    {
        return Err(not_found());
    }
    Ok(record.token)
}

#[utoipa::path(
    get,
    path = "/v1/tokens/{id}",
    operation_id = "tokens_show",
    tag = "tokens",
    summary = "Read a token",
    params(("id" = String, Path, format = Uuid, description = "The token id")),
    responses((status = 200, description = "The token", body = latchkey_wire::TokenResource), (status = 400, description = "Malformed body, path or query"), (status = 401, description = "No valid credential"), (status = 403, description = "The credential may not do this"), (status = 404, description = "No such resource, or not visible to the caller"))
)]
pub async fn show(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> ApiResult<Json<TokenResource>> {
    Ok(Json(visible_token(&state, &caller, &id).await?.into()))
}

/// Only `name` may change. Any other token field is refused as immutable (422), any
/// other key as unknown (400), before anything is written.
#[utoipa::path(
    patch,
    path = "/v1/tokens/{id}",
    operation_id = "tokens_rename",
    tag = "tokens",
    summary = "Rename a token (only `name` may change)",
    params(("id" = String, Path, format = Uuid, description = "The token id")),
    request_body = latchkey_wire::RenameToken,
    responses((status = 200, description = "The token", body = latchkey_wire::TokenResource), (status = 400, description = "Malformed body, path or query"), (status = 401, description = "No valid credential"), (status = 403, description = "The credential may not do this"), (status = 404, description = "No such resource, or not visible to the caller"), (status = 422, description = "A value is out of range, unknown or breaks a rule"))
)]
pub async fn rename(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    ApiJson(body): ApiJson<Map<String, Value>>,
) -> ApiResult<Json<TokenResource>> {
    let token = visible_token(&state, &caller, &id).await?;
    let name = rename_body(&body, &IMMUTABLE_FIELDS, "token")?;
    let renamed = state
        .store()
        .rename_token(token.id, &name, &caller.audit(&state))
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("token {}", token.id)))?;
    state.auth_changed();
    Ok(Json(renamed.into()))
}

/// The new name in a rename body (`{"name": …}`) of a resource whose other fields are
/// `immutable`: an immutable field is `immutable-field`, an unknown one `invalid-field`,
/// so a client never thinks it changed what it cannot. `what` names the resource in
/// the refusal.
pub(super) fn rename_body(
    body: &Map<String, Value>,
    immutable: &[&str],
    what: &str,
) -> ApiResult<TokenName> {
    let mut keys: Vec<&String> = body
        .keys()
        .filter(|k| k.as_str() != MUTABLE_FIELD)
        .collect();
    keys.sort();
    if let Some(key) = keys.iter().find(|k| immutable.contains(&k.as_str())) {
        return Err(ApiError::ImmutableField((*key).clone()));
    }
    if let Some(key) = keys.first() {
        return Err(ApiError::field(
            key.as_str(),
            format!("is not a field of a {what}"),
        ));
    }
    body.get(MUTABLE_FIELD)
        .ok_or_else(|| ApiError::field(MUTABLE_FIELD, "is required"))?
        .as_str()
        .ok_or_else(|| ApiError::field(MUTABLE_FIELD, "must be a string"))
        .and_then(|text| TokenName::parse(text).map_err(|e| ApiError::field(MUTABLE_FIELD, e)))
}

/// The query of `DELETE /v1/tokens/{id}`: `wait=propagated`, and how long to wait.
#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RevokeQuery {
    wait: Option<Propagated>,
    timeout_ms: TimeoutMs,
}

/// `wait`: only `propagated`.
#[derive(Debug, Clone, Copy)]
pub struct Propagated;

impl Propagated {
    fn parse(text: &str) -> Result<Self, &'static str> {
        (text == "propagated")
            .then_some(Self)
            .ok_or("must be `propagated`")
    }
}

query_param!(Propagated);

/// `timeout_ms`: 1–30,000, default 5,000.
#[derive(Debug, Clone, Copy)]
pub struct TimeoutMs(u64);

impl Default for TimeoutMs {
    fn default() -> Self {
        Self(5_000)
    }
}

impl TimeoutMs {
    fn parse(text: &str) -> Result<Self, &'static str> {
        text.parse()
            .ok()
            .filter(|n| (1..=30_000).contains(n))
            .map(Self)
            .ok_or("must be from 1 to 30000")
    }
}

query_param!(TimeoutMs);

/// `DELETE /v1/tokens/{id}`: 204. With `?wait=propagated` (and optionally
/// `timeout_ms`, default 5000, at most 30000) it answers 200 only once every follower of
/// the revocation feed connected to this server has acknowledged the revocation, or the
/// timeout passed, saying how many acknowledged out of how many were connected.
#[utoipa::path(
    delete,
    path = "/v1/tokens/{id}",
    operation_id = "tokens_revoke",
    tag = "tokens",
    summary = "Revoke a token",
    params(("id" = String, Path, format = Uuid, description = "The token id"), ("wait" = Option<String>, Query, description = "`propagated`: answer once connected gateways acknowledge"), ("timeout_ms" = Option<u64>, Query, description = "How long to wait for them")),
    responses((status = 204, description = "Revoked"), (status = 504, description = "Revoked, but not every gateway acknowledged in time"), (status = 400, description = "Malformed body, path or query"), (status = 401, description = "No valid credential"), (status = 403, description = "The credential may not do this"), (status = 404, description = "No such resource, or not visible to the caller"))
)]
pub async fn revoke(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    Query(query): Query<RevokeQuery>,
) -> ApiResult<axum::response::Response> {
    let token = visible_token(&state, &caller, &id).await?;
    let revoked = state
        .store()
        .revoke_token(token.id, &caller.audit(&state))
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("token {}", token.id)))?;
    state.auth_changed();
    if query.wait.is_none() {
        return Ok(StatusCode::NO_CONTENT.into_response());
    }
    // Our entry is at or below the head once the revocation has committed.
    let (_, head) = state.store().revocations_after(i64::MAX, 1).await?;
    let progress = state
        .revocations()
        .wait_for(head, std::time::Duration::from_millis(query.timeout_ms.0))
        .await;
    Ok(Json(json!({
        "token_id": revoked.id,
        "revoked_at": revoked.revoked_at,
        "seq": head,
        "connected": progress.connected,
        "acknowledged": progress.acknowledged,
        "propagated": progress.acknowledged == progress.connected,
    }))
    .into_response())
}
