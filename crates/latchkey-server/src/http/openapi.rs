//! The OpenAPI 3.1 document served at `GET /openapi.json` (docs/API.md, "OpenAPI").
//!
//! Policy: the document is generated from the code so it cannot drift. Every route is
//! registered with `utoipa_axum`'s `routes!`, which takes the method and path from the
//! handler's `#[utoipa::path]` annotation, so a route and its entry are one
//! declaration; the request and response bodies are latchkey-wire's types (`ToSchema`)
//! or, where a handler writes JSON from latchkey-core's values, the stand-ins below,
//! which describe exactly what it writes (the API tests validate real answers against
//! them). The error bodies and the security requirements are the same for a whole
//! family of endpoints, so [`finish`] adds them by path prefix: an RFC 9457 problem for
//! every error on `/v1` and the probes, an RFC 6749 error object on `/oauth`.

use axum::Extension;
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use latchkey_wire::Problem;
use latchkey_wire::schema::{NetworkRulesSchema, TokenKindSchema};
use std::sync::Arc;
use utoipa::openapi::content::ContentBuilder;
use utoipa::openapi::path::Operation;
use utoipa::openapi::response::ResponseBuilder;
use utoipa::openapi::security::{Http, HttpAuthScheme, SecurityRequirement, SecurityScheme};
use utoipa::openapi::{OpenApi, RefOr};
use utoipa::{Modify, ToSchema};

/// The media type of the management API's errors.
pub const PROBLEM_JSON: &str = "application/problem+json";

/// The document's fixed parts: what it describes and its security schemes.
#[derive(utoipa::OpenApi)]
#[openapi(
    info(
        title = "latchkey",
        description = "Machine-to-machine authentication: the management API (`/v1`), the \
                       OAuth 2.0 authorization server (`/oauth`), its metadata \
                       (`/.well-known`) and the health probes. docs/API.md is the prose \
                       contract; this document is generated from the server's code.",
        license(name = "Apache-2.0", identifier = "Apache-2.0")
    ),
    modifiers(&SecuritySchemes),
    components(schemas(Problem, latchkey_wire::OAuthErrorBody)),
    tags(
        (name = "tenants", description = "Tenants and their members"),
        (name = "catalogue", description = "Permissions and roles"),
        (name = "tokens", description = "Tenant and personal tokens"),
        (name = "policies", description = "Tenant policies"),
        (name = "audit", description = "The audit trail"),
        (name = "usage", description = "Usage reports from gateways"),
        (name = "revocations", description = "The revocation feed"),
        (name = "webhooks", description = "Webhook endpoints and deliveries"),
        (name = "leaks", description = "Leaked-secret reports"),
        (name = "keys", description = "Signing keys"),
        (name = "console", description = "Console sessions (docs/CONSOLE.md)"),
        (name = "trusts", description = "Trust relationships for the JWT-bearer grant"),
        (name = "oauth", description = "The OAuth 2.0 authorization server"),
        (name = "health", description = "Probes and this document"),
    )
)]
pub struct ApiDoc;

/// The names of the security schemes.
pub const BEARER: &str = "bearer";
/// HTTP Basic client authentication on `/oauth` (`client_secret_basic`).
pub const CLIENT_BASIC: &str = "client_basic";

struct SecuritySchemes;

impl Modify for SecuritySchemes {
    fn modify(&self, openapi: &mut OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        let mut bearer = Http::new(HttpAuthScheme::Bearer);
        bearer.description = Some(
            "A latchkey api key (`lk_ak_…`), long-lived JWT or access JWT holding \
             `latchkey:admin`, or `latchkey:manage` for its own tenant."
                .to_owned(),
        );
        components.add_security_scheme(BEARER, SecurityScheme::Http(bearer));
        let mut basic = Http::new(HttpAuthScheme::Basic);
        basic.description = Some(
            "`client_secret_basic`: the client id and secret of a client-credentials token. \
             `client_secret_post` (both in the form) works too."
                .to_owned(),
        );
        components.add_security_scheme(CLIENT_BASIC, SecurityScheme::Http(basic));
    }
}

/// The document as served: completed by [`finish`] and serialized once, at start.
#[derive(Clone)]
pub struct Spec(Arc<str>);

impl Spec {
    pub fn new(generated: OpenApi) -> Self {
        // A tree of strings and maps always serializes; should it ever not, the
        // document says so rather than the server refusing to start.
        let json = finish(generated).to_json().unwrap_or_else(|error| {
            tracing::error!(%error, "the OpenAPI document could not be serialized");
            r#"{"error":"the OpenAPI document could not be serialized"}"#.to_owned()
        });
        Self(json.into())
    }
}

/// `GET /openapi.json`: this document.
#[utoipa::path(
    get,
    path = "/openapi.json",
    tag = "health",
    responses((status = 200, description = "The OpenAPI 3.1 document", content_type = "application/json", body = Object))
)]
pub async fn document(Extension(spec): Extension<Spec>) -> Response {
    let mut response = spec.0.to_string().into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    response
}

/// Which error format and credential an endpoint takes, by its path.
enum Family {
    /// `/v1`: problems, bearer credentials.
    Management { public: bool },
    /// `/oauth`: RFC 6749 error objects.
    OAuth { introspection: bool },
    /// `/.well-known`, `/healthz`, `/readyz`, `/openapi.json`: public; problems.
    Public,
}

fn family(path: &str) -> Family {
    if let Some(rest) = path.strip_prefix("/oauth/") {
        Family::OAuth {
            introspection: rest == "introspect",
        }
    } else if path.starts_with("/v1/") {
        // Leak reports take no credential: anyone who finds a secret may report it.
        Family::Management {
            public: path.starts_with("/v1/leaks"),
        }
    } else {
        Family::Public
    }
}

/// Completes the generated document: each operation's error responses get their body
/// (problem or OAuth error) and a `default` of the same shape, and each operation its
/// security requirement.
pub fn finish(mut openapi: OpenApi) -> OpenApi {
    for (path, item) in openapi.paths.paths.iter_mut() {
        let family = family(path);
        for operation in [
            &mut item.get,
            &mut item.put,
            &mut item.post,
            &mut item.delete,
            &mut item.patch,
        ]
        .into_iter()
        .flatten()
        {
            complete(operation, &family);
        }
    }
    openapi
}

fn complete(operation: &mut Operation, family: &Family) {
    let (media, schema, default_text) = match family {
        Family::OAuth { .. } => (
            "application/json",
            "OAuthErrorBody",
            "An RFC 6749 §5.2 error object",
        ),
        _ => (PROBLEM_JSON, "Problem", "An RFC 9457 problem"),
    };
    let error_body = || {
        ContentBuilder::new()
            .schema(Some(RefOr::Ref(utoipa::openapi::Ref::from_schema_name(
                schema,
            ))))
            .build()
    };
    let responses = &mut operation.responses.responses;
    for (status, response) in responses.iter_mut() {
        let is_error = status.starts_with('4') || status.starts_with('5');
        if let (true, RefOr::T(response)) = (is_error, response) {
            if response.content.is_empty() {
                response.content.insert(media.to_owned(), error_body());
            }
        }
    }
    responses.insert(
        "default".to_owned(),
        RefOr::T(
            ResponseBuilder::new()
                .description(default_text)
                .content(media, error_body())
                .build(),
        ),
    );
    let requirement = |scheme: &str| SecurityRequirement::new::<_, _, &str>(scheme, []);
    operation.security = match family {
        Family::Management { public: false } => Some(vec![requirement(BEARER)]),
        Family::OAuth {
            introspection: true,
        } => Some(vec![requirement(BEARER)]),
        // client_secret_post carries the credential in the form instead.
        Family::OAuth {
            introspection: false,
        } => Some(vec![
            requirement(CLIENT_BASIC),
            SecurityRequirement::default(),
        ]),
        Family::Management { public: true } | Family::Public => None,
    };
}

// The stand-ins: JSON that handlers write from latchkey-core's values. Each describes
// what that value's `Serialize` writes (docs/API.md shows the same by example).

/// A tenant.
#[derive(ToSchema)]
#[schema(as = Tenant)]
#[allow(dead_code)]
pub struct TenantSchema {
    /// Chosen by the host application: `[A-Za-z0-9._-]`, 1–128.
    id: String,
    /// Display name.
    name: String,
    /// Creation time.
    #[schema(format = DateTime)]
    created_at: String,
}

/// An entry of the permission catalogue.
#[derive(ToSchema)]
#[schema(as = Permission)]
#[allow(dead_code)]
pub struct PermissionSchema {
    /// The permission.
    name: String,
    /// What it allows.
    description: String,
    /// Built in: always present, never editable.
    builtin: bool,
}

/// The permission catalogue.
#[derive(ToSchema)]
#[schema(as = PermissionList)]
#[allow(dead_code)]
pub struct PermissionList {
    items: Vec<PermissionSchema>,
}

/// A role.
#[derive(ToSchema)]
#[schema(as = Role)]
#[allow(dead_code)]
pub struct RoleSchema {
    /// The role name.
    name: String,
    /// Its permissions, sorted.
    permissions: Vec<String>,
    /// What it is for.
    description: String,
}

/// Every role.
#[derive(ToSchema)]
#[schema(as = RoleList)]
#[allow(dead_code)]
pub struct RoleList {
    items: Vec<RoleSchema>,
}

/// A user's membership in a tenant, with the permissions its roles give now.
#[derive(ToSchema)]
#[schema(as = Membership)]
#[allow(dead_code)]
pub struct MembershipSchema {
    tenant_id: String,
    user_id: String,
    /// The roles held there, sorted.
    roles: Vec<String>,
    /// The union of those roles' permissions, sorted.
    permissions: Vec<String>,
}

/// The body of `PUT /v1/tenants/{tid}/policy`: the whole policy; an absent rule is no
/// rule.
#[derive(ToSchema)]
#[schema(as = PutPolicy)]
#[allow(dead_code)]
pub struct PolicyBodySchema {
    max_token_lifetime_days: Option<i64>,
    #[serde(default)]
    require_expiry: bool,
    #[schema(value_type = Option<Vec<TokenKindSchema>>)]
    allowed_kinds: Option<Vec<String>>,
    #[serde(default)]
    require_ip_allowlist: bool,
    revoke_unused_after_days: Option<i64>,
    max_access_token_ttl_seconds: Option<i64>,
    /// Tokens are issued only against a DPoP proof (docs/API.md, "DPoP").
    #[serde(default)]
    require_dpop: bool,
    #[serde(default)]
    network: Option<NetworkRulesSchema>,
}

/// A trust relationship (docs/API.md, "Trusts"). It holds no secret.
#[derive(ToSchema)]
#[schema(as = Trust)]
#[allow(dead_code)]
pub struct TrustSchema {
    /// Also the `client_id` of the access tokens it issues.
    #[schema(format = Uuid)]
    id: String,
    tenant_id: String,
    name: String,
    issuer: String,
    audience: String,
    /// Exact, or a prefix ending in `*`.
    subject: String,
    /// Claims the assertion must carry with these exact values.
    claims: std::collections::BTreeMap<String, String>,
    roles: Vec<String>,
    permissions: Vec<String>,
    access_token_ttl_seconds: u32,
    replay_protection: bool,
    created_by: Option<String>,
    #[schema(format = DateTime)]
    created_at: String,
    #[schema(format = DateTime)]
    revoked_at: Option<String>,
}

/// The body of `POST /v1/tenants/{tid}/trusts`.
#[derive(ToSchema)]
#[schema(as = CreateTrust)]
#[allow(dead_code)]
pub struct CreateTrustSchema {
    name: String,
    issuer: String,
    audience: String,
    subject: String,
    claims: Option<std::collections::BTreeMap<String, String>>,
    roles: Option<Vec<String>>,
    permissions: Option<Vec<String>>,
    access_token_ttl_seconds: Option<u32>,
    replay_protection: Option<bool>,
    created_by: Option<String>,
}

/// A console session's single-use URL (docs/CONSOLE.md).
#[derive(ToSchema)]
#[schema(as = ConsoleSession)]
#[allow(dead_code)]
pub struct ConsoleSessionSchema {
    #[schema(format = Uuid)]
    id: String,
    /// Send the user here; the code in it opens once.
    url: String,
    #[schema(format = DateTime)]
    expires_at: String,
}

/// A webhook endpoint.
#[derive(ToSchema)]
#[schema(as = Webhook)]
#[allow(dead_code)]
pub struct WebhookSchema {
    #[schema(format = Uuid)]
    id: String,
    /// The one tenant whose events it receives; `null`: every tenant's.
    #[schema(required = true)]
    tenant_id: Option<String>,
    url: String,
    events: Vec<String>,
    #[schema(format = DateTime)]
    created_at: String,
    /// The credential (token id) that created it.
    created_by: String,
    #[schema(format = DateTime, required = true)]
    disabled_at: Option<String>,
    #[schema(required = true)]
    disabled_reason: Option<String>,
    #[schema(format = DateTime, required = true)]
    previous_secret_expires_at: Option<String>,
}

/// The body of `POST /v1/webhooks`.
#[derive(ToSchema)]
#[schema(as = CreateWebhook)]
#[allow(dead_code)]
pub struct CreateWebhookSchema {
    url: String,
    events: Vec<String>,
    tenant_id: Option<String>,
}

/// A webhook and its signing secret (`whsec_…`), shown in this answer only.
#[derive(ToSchema)]
#[schema(as = CreatedWebhook)]
#[allow(dead_code)]
pub struct CreatedWebhookSchema {
    webhook: WebhookSchema,
    secret: String,
}

/// The body of `POST /v1/webhooks/{id}/rotate-secret`.
#[derive(ToSchema)]
#[schema(as = RotateWebhookSecret)]
#[allow(dead_code)]
pub struct RotateSecretSchema {
    /// Seconds the old secret keeps signing, 0–604,800; 86,400 when absent.
    #[schema(minimum = 0, maximum = 604800)]
    overlap_seconds: Option<i64>,
}

/// A delivery queued, by its `webhook-id`.
#[derive(ToSchema)]
#[schema(as = Queued)]
#[allow(dead_code)]
pub struct QueuedSchema {
    id: String,
}

/// One try at sending a delivery.
#[derive(ToSchema)]
#[schema(as = WebhookAttempt)]
#[allow(dead_code)]
pub struct AttemptSchema {
    attempt: i64,
    #[schema(format = DateTime)]
    at: String,
    duration_ms: i64,
    #[schema(required = true)]
    status_code: Option<i64>,
    #[schema(required = true)]
    error: Option<String>,
}

/// A delivery of an event to a webhook.
#[derive(ToSchema)]
#[schema(as = WebhookDelivery)]
#[allow(dead_code)]
pub struct DeliverySchema {
    /// The `webhook-id` it is sent under (`evt_…`).
    id: String,
    #[schema(format = Uuid)]
    webhook_id: String,
    seq: i64,
    event: String,
    /// The body sent.
    payload: serde_json::Value,
    #[schema(format = DateTime)]
    created_at: String,
    /// `pending`, `delivered` or `failed`.
    status: String,
    #[schema(format = DateTime)]
    next_attempt_at: String,
    #[schema(format = DateTime, required = true)]
    finished_at: Option<String>,
    attempts: Vec<AttemptSchema>,
}

/// One aggregate of a gateway's usage batch.
#[derive(ToSchema)]
#[schema(as = UsageEntry)]
#[allow(dead_code)]
pub struct UsageEntrySchema {
    #[schema(format = Uuid)]
    token_id: String,
    route: String,
    method: String,
    status_class: String,
    client_ip: String,
    count: i64,
    #[schema(format = DateTime)]
    last_used_at: String,
}

/// A gateway's usage batch for one minute.
#[derive(ToSchema)]
#[schema(as = UsageBatch)]
#[allow(dead_code)]
pub struct UsageBatchSchema {
    #[schema(format = DateTime)]
    window_start: String,
    entries: Vec<UsageEntrySchema>,
}

/// How many aggregates of a batch were kept.
#[derive(ToSchema)]
#[schema(as = UsageAccepted)]
#[allow(dead_code)]
pub struct UsageAcceptedSchema {
    accepted: u64,
}

/// One point of a usage series.
#[derive(ToSchema)]
#[schema(as = UsagePoint)]
#[allow(dead_code)]
pub struct UsagePointSchema {
    #[schema(format = DateTime)]
    at: String,
    count: i64,
}

/// One group of a usage report.
#[derive(ToSchema)]
#[schema(as = UsageGroup)]
#[allow(dead_code)]
pub struct UsageGroupSchema {
    key: String,
    total: i64,
    series: Vec<UsagePointSchema>,
}

/// How a usage report is grouped.
#[derive(ToSchema)]
#[schema(as = UsageGrouping)]
#[serde(rename_all = "snake_case")]
#[allow(dead_code)]
pub enum UsageGroupingSchema {
    Route,
    Ip,
    Status,
    Method,
    Day,
    Country,
}

/// The "how" of a token.
#[derive(ToSchema)]
#[schema(as = TokenUsage)]
#[allow(dead_code)]
pub struct TokenUsageSchema {
    #[schema(format = Uuid)]
    token_id: String,
    #[schema(format = DateTime)]
    since: String,
    #[schema(format = DateTime)]
    until: String,
    group_by: UsageGroupingSchema,
    total: i64,
    #[schema(format = DateTime, required = true)]
    last_used_at: Option<String>,
    #[schema(required = true)]
    last_used_ip: Option<String>,
    groups: Vec<UsageGroupSchema>,
}

/// An audit event with its context and its place in the chain.
#[derive(ToSchema)]
#[schema(as = AuditEvent)]
#[allow(dead_code)]
pub struct AuditEventSchema {
    seq: i64,
    /// The credential (token id) that acted, `system`, or `console:<session>`.
    actor: String,
    #[schema(required = true)]
    actor_user: Option<String>,
    #[schema(required = true)]
    ip: Option<String>,
    #[schema(required = true)]
    user_agent: Option<String>,
    #[schema(format = DateTime)]
    at: String,
    /// What happened, such as `token.created`.
    action: String,
    #[schema(required = true)]
    tenant_id: Option<String>,
    #[schema(required = true)]
    target: Option<String>,
    /// Action-specific facts; never a secret.
    details: serde_json::Value,
    prev_hash: String,
    hash: String,
    #[schema(required = true)]
    mac: Option<String>,
}

/// The audit chain's head.
#[derive(ToSchema)]
#[schema(as = AuditHead)]
#[allow(dead_code)]
pub struct AuditHeadSchema {
    seq: i64,
    hash: String,
}

/// The server's verdict on the whole audit chain.
#[derive(ToSchema)]
#[schema(as = AuditVerdict)]
#[allow(dead_code)]
pub struct AuditVerdictSchema {
    intact: bool,
    checked: u64,
    legacy: u64,
    head: AuditHeadSchema,
    #[schema(required = true)]
    first_broken: Option<i64>,
}

/// What a revocation-feed entry names.
#[derive(ToSchema)]
#[schema(as = FeedKind)]
#[serde(rename_all = "snake_case")]
#[allow(dead_code)]
pub enum FeedKindSchema {
    Token,
    Jti,
    Family,
    Role,
    Member,
    TenantPolicy,
}

/// One entry of the revocation feed.
#[derive(ToSchema)]
#[schema(as = RevocationEntry)]
#[allow(dead_code)]
pub struct RevocationEntrySchema {
    seq: i64,
    kind: FeedKindSchema,
    subject: String,
    #[schema(required = true)]
    tenant_id: Option<String>,
    #[schema(format = DateTime)]
    revoked_at: String,
    #[schema(format = DateTime, required = true)]
    expires_at: Option<String>,
    permissions: Option<Vec<String>>,
    roles: Option<Vec<String>>,
    network: Option<NetworkRulesSchema>,
}

/// A page of the revocation feed and the head seq.
#[derive(ToSchema)]
#[schema(as = RevocationPage)]
#[allow(dead_code)]
pub struct RevocationPageSchema {
    entries: Vec<RevocationEntrySchema>,
    head: i64,
}

/// The body of `POST /v1/revocations/ack`.
#[derive(ToSchema)]
#[schema(as = RevocationAck)]
#[allow(dead_code)]
pub struct AckSchema {
    /// The subscriber id the stream's first heartbeat gave.
    #[schema(format = Uuid)]
    subscriber: String,
    seq: i64,
}

/// The signing keys after a rotation.
#[derive(ToSchema)]
#[schema(as = KeyRotation)]
#[allow(dead_code)]
pub struct KeyRotationSchema {
    #[schema(required = true)]
    current_kid: Option<String>,
    published_kids: Vec<String>,
}

/// A probe's answer.
#[derive(ToSchema)]
#[schema(as = Health)]
#[allow(dead_code)]
pub struct HealthSchema {
    /// `ok` (liveness) or `ready` (readiness).
    status: String,
}

/// The body of `POST /v1/leaks`: any JSON is accepted; `secret` is looked at.
#[derive(ToSchema)]
#[schema(as = LeakReport)]
#[allow(dead_code)]
pub struct LeakReportSchema {
    /// The secret found.
    secret: Option<String>,
    /// Where it was found.
    url: Option<String>,
}

/// One finding of a secret-scanning partner.
#[derive(ToSchema)]
#[schema(as = PartnerReport)]
#[allow(dead_code)]
pub struct PartnerReportSchema {
    token: String,
    r#type: Option<String>,
    url: Option<String>,
    source: Option<String>,
}

/// The verdict on one finding.
#[derive(ToSchema)]
#[schema(as = PartnerVerdict)]
#[allow(dead_code)]
pub struct PartnerVerdictSchema {
    token_raw: String,
    #[schema(required = true)]
    token_type: Option<String>,
    label: PartnerLabel,
}

/// Whether a reported secret is one of ours.
#[derive(ToSchema)]
#[serde(rename_all = "snake_case")]
#[allow(dead_code)]
pub enum PartnerLabel {
    TruePositive,
    FalsePositive,
}

/// RFC 8414 authorization-server metadata.
#[derive(ToSchema)]
#[schema(as = ServerMetadata)]
#[allow(dead_code)]
pub struct MetadataSchema {
    issuer: String,
    token_endpoint: String,
    jwks_uri: String,
    introspection_endpoint: String,
    revocation_endpoint: String,
    grant_types_supported: Vec<String>,
    response_types_supported: Vec<String>,
    token_endpoint_auth_methods_supported: Vec<String>,
    token_endpoint_auth_signing_alg_values_supported: Vec<String>,
    revocation_endpoint_auth_methods_supported: Vec<String>,
    revocation_endpoint_auth_signing_alg_values_supported: Vec<String>,
    introspection_endpoint_auth_methods_supported: Vec<String>,
    access_token_signing_alg_values_supported: Vec<String>,
}

/// A JSON Web Key Set (RFC 7517).
#[derive(ToSchema)]
#[schema(as = Jwks)]
#[allow(dead_code)]
pub struct JwksSchema {
    /// The public keys: next, current and previous.
    keys: Vec<serde_json::Value>,
}

/// The form of `POST /oauth/token`.
#[derive(ToSchema)]
#[schema(as = TokenRequest)]
#[allow(dead_code)]
pub struct TokenRequestSchema {
    /// `client_credentials` or `refresh_token`.
    grant_type: String,
    /// Space-separated permissions, narrowing the grant.
    scope: Option<String>,
    /// The audience asked for; one of the configured audiences.
    resource: Option<String>,
    /// The refresh token (`lk_rt_…`), for `refresh_token`.
    refresh_token: Option<String>,
    /// `client_secret_post`: the client id; with `private_key_jwt` optional, and then
    /// the assertion's `iss` and `sub`.
    #[schema(format = Uuid)]
    client_id: Option<String>,
    /// `client_secret_post`: the client secret.
    client_secret: Option<String>,
    /// `private_key_jwt`: `urn:ietf:params:oauth:client-assertion-type:jwt-bearer`.
    client_assertion_type: Option<String>,
    /// `private_key_jwt`: the JWT the client signed with its private key.
    client_assertion: Option<String>,
}

/// The form of `POST /oauth/introspect`.
#[derive(ToSchema)]
#[schema(as = IntrospectionRequest)]
#[allow(dead_code)]
pub struct IntrospectRequestSchema {
    /// A JWT, api key or refresh token.
    token: String,
    token_type_hint: Option<String>,
    /// The client address to judge network rules for.
    client_ip: Option<String>,
}

/// The form of `POST /oauth/revoke`.
#[derive(ToSchema)]
#[schema(as = RevocationRequest)]
#[allow(dead_code)]
pub struct RevokeRequestSchema {
    /// An access JWT or refresh token of the authenticated client.
    token: String,
    token_type_hint: Option<String>,
    #[schema(format = Uuid)]
    client_id: Option<String>,
    client_secret: Option<String>,
    /// `private_key_jwt`: `urn:ietf:params:oauth:client-assertion-type:jwt-bearer`.
    client_assertion_type: Option<String>,
    /// `private_key_jwt`: the JWT the client signed with its private key.
    client_assertion: Option<String>,
}
