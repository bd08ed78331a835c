//! `GET /v1/audit/verify`: the server walks the whole chain and checks every link and
//! every event's MAC (docs/API.md, Audit).
//!
//! The MACs can only be checked here: their key is derived from the master key, which
//! the server holds and the CLI does not. The walk reads the stored head before and
//! after it, so events appended meanwhile are not mistaken for tampering (see
//! [`ChainVerifier`]). It reads the chain a page at a time and keeps only the previous
//! link, so a long chain costs time, not memory.

use crate::auth::Caller;
use crate::extract::form_pairs;
use crate::problem::{ApiError, ApiResult};
use crate::state::AppState;
use axum::Json;
use axum::extract::State;
use axum::http::request::Parts;
use latchkey_core::audit::{ChainLink, ChainVerifier, unhex};
use serde_json::{Value, json};

/// Events read per page of the walk.
const PAGE: u32 = 1_000;

/// `GET /v1/audit/verify`: `{intact, checked, legacy, head: {seq, hash}, first_broken}`.
/// It takes no parameters: the verdict is always about the whole chain.
pub async fn verify(
    State(state): State<AppState>,
    caller: Caller,
    parts: Parts,
) -> ApiResult<Json<Value>> {
    caller.require_admin()?;
    if let Some((key, _)) = form_pairs(parts.uri.query().unwrap_or(""))
        .into_iter()
        .next()
    {
        return Err(ApiError::field(
            key,
            "is not a query parameter of this endpoint",
        ));
    }
    let store = state.store();
    let head = store.audit_head().await?;
    let head_hash = unhex(&head.hash)
        .ok_or_else(|| ApiError::Internal("the stored audit head is not hex".to_owned()))?;
    let mut verifier =
        ChainVerifier::with_macs(head.seq, head_hash, state.audit_key(), head.macs_from);
    let mut after = 0;
    while !verifier.is_broken() {
        let records = store.audit_chain(after, PAGE).await?;
        let Some(last) = records.last() else {
            break;
        };
        after = last.seq;
        for record in records {
            let link = ChainLink::from_record(record).ok_or_else(|| {
                ApiError::Internal("an audit record's hash is not hex".to_owned())
            })?;
            verifier.check(&link);
        }
    }
    let head_after = store.audit_head().await?;
    let verdict = verifier.finish(head_after.seq);
    if let Some(broken) = &verdict.first_broken {
        tracing::warn!(
            seq = broken.seq,
            reason = ?broken.reason,
            "audit verification found a broken chain"
        );
    }
    Ok(Json(json!({
        "intact": verdict.intact(),
        "checked": verdict.checked,
        "legacy": verdict.legacy,
        "head": { "seq": head.seq, "hash": head.hash },
        "first_broken": verdict.first_broken,
    })))
}
