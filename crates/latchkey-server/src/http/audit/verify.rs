//! `GET /v1/audit/verify`: the server walks the whole chain and checks every link and
//! every event's MAC (docs/API.md, "Audit MACs"); `service::audit::verify_chain` walks.

use crate::http::auth::Caller;
use crate::http::extract::{NoParameters, Query};
use crate::http::problem::ApiResult;
use crate::service::audit::verify_chain;
use crate::service::state::AppState;
use axum::Json;
use axum::extract::State;
use serde_json::{Value, json};

/// `GET /v1/audit/verify`: `{intact, checked, legacy, head: {seq, hash}, first_broken}`.
/// It takes no parameters: the verdict is always about the whole chain.
#[utoipa::path(
    get,
    path = "/v1/audit/verify",
    operation_id = "audit_verify",
    tag = "audit",
    summary = "Verify the whole audit chain",
    responses((status = 200, description = "The verdict", body = crate::http::openapi::AuditVerdictSchema), (status = 400, description = "Malformed body, path or query"), (status = 401, description = "No valid credential"), (status = 403, description = "The credential may not do this"))
)]
pub async fn verify(
    State(state): State<AppState>,
    caller: Caller,
    Query(NoParameters {}): Query<NoParameters>,
) -> ApiResult<Json<Value>> {
    caller.require_admin()?;
    let (head, verdict) = verify_chain(&state).await?;
    Ok(Json(json!({
        "intact": verdict.intact(),
        "checked": verdict.checked,
        "legacy": verdict.legacy,
        "head": { "seq": head.seq, "hash": head.hash },
        "first_broken": verdict.first_broken,
    })))
}
