//! Audit events and their hash chain (ARCHITECTURE.md §7).
//!
//! Each event is stored with the SHA-256 of its canonical encoding and of the previous
//! event's hash, so editing, deleting or reordering a row breaks the chain at that row.
//! The canonical encoding is a JSON array of the fields in a fixed order; JSON objects
//! inside `details` have their keys sorted (serde_json's default map is ordered).

use crate::timestamp::Timestamp;
use aws_lc_rs::digest;
use serde::Serialize;
use std::ops::Range;

/// Who did something and from where: attached to every write.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct AuditContext {
    /// The credential (token id) that made the request, or `system` for the server.
    pub actor: String,
    /// The acting user, where the request names one (`created_by`).
    pub actor_user: Option<String>,
    /// The client IP.
    pub ip: Option<String>,
    /// The client's `User-Agent`.
    pub user_agent: Option<String>,
    /// When it happened.
    pub at: Timestamp,
}

impl AuditContext {
    /// The context of the server acting on its own (bootstrap, rotation).
    pub fn system(at: Timestamp) -> Self {
        Self::new("system", at)
    }

    /// The context of `actor` acting at `at`, with no user, address or agent known yet.
    pub fn new(actor: &str, at: Timestamp) -> Self {
        Self {
            actor: actor.to_owned(),
            actor_user: None,
            ip: None,
            user_agent: None,
            at,
        }
    }
}

/// What happened, to what.
#[derive(Debug, Clone, PartialEq, Serialize, serde::Deserialize)]
pub struct AuditEvent {
    /// A dotted action name such as `token.created`.
    pub action: std::borrow::Cow<'static, str>,
    /// The tenant concerned, if any.
    pub tenant_id: Option<String>,
    /// The object acted on (a token id, a role name, a user id).
    pub target: Option<String>,
    /// Action-specific facts. Never a secret.
    pub details: serde_json::Value,
}

impl AuditEvent {
    /// An event with no details.
    pub fn new(action: &'static str, tenant_id: Option<&str>, target: Option<String>) -> Self {
        Self {
            action: std::borrow::Cow::Borrowed(action),
            tenant_id: tenant_id.map(str::to_owned),
            target,
            details: serde_json::Value::Object(serde_json::Map::new()),
        }
    }

    /// The same event with `details`.
    pub fn with_details(mut self, details: serde_json::Value) -> Self {
        self.details = details;
        self
    }
}

/// The hash of the event before the first one.
pub const GENESIS_HASH: [u8; 32] = [0u8; 32];

/// The chain hash of event `seq`: SHA-256 over the previous hash and the canonical
/// encoding of the event and its context.
pub fn chain_hash(
    previous: &[u8],
    seq: i64,
    context: &AuditContext,
    event: &AuditEvent,
) -> Vec<u8> {
    let mut canonical = Vec::with_capacity(256);
    write_canonical(&mut canonical, seq, context, event);
    link_hash(previous, &canonical).to_vec()
}

/// Appends the canonical encoding of event `seq` to `out`: the compact JSON array
/// `[seq, at, action, actor, actor_user, tenant_id, target, ip, user_agent, details]`.
/// Returns where `details` lies in `out`: the store writes those bytes as the row's
/// details, so each event is encoded once, for its hash and its row.
pub fn write_canonical(
    out: &mut Vec<u8>,
    seq: i64,
    context: &AuditContext,
    event: &AuditEvent,
) -> Range<usize> {
    let fields = (
        seq,
        context.at.millis(),
        &event.action,
        &context.actor,
        &context.actor_user,
        &event.tenant_id,
        &event.target,
        &context.ip,
        &context.user_agent,
    );
    encode(out, &fields);
    // Reopen the array for its last element.
    out.pop();
    out.push(b',');
    let start = out.len();
    encode(out, &event.details);
    let details = start..out.len();
    out.push(b']');
    details
}

fn encode(out: &mut Vec<u8>, value: &impl Serialize) {
    // Strings, numbers and JSON values always encode into memory.
    if let Err(error) = serde_json::to_writer(&mut *out, value) {
        unreachable!("encoding an audit event into memory failed: {error}");
    }
}

/// The hash of a link: SHA-256 over the previous hash and a canonical encoding.
pub fn link_hash(previous: &[u8], canonical: &[u8]) -> [u8; 32] {
    let mut hasher = digest::Context::new(&digest::SHA256);
    hasher.update(previous);
    hasher.update(canonical);
    let mut hash = [0u8; 32];
    hash.copy_from_slice(hasher.finish().as_ref());
    hash
}

/// Lower-case hex of `bytes`, as the API shows hashes.
pub fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut text = String::with_capacity(bytes.len() * 2);
    for byte in bytes {
        text.push(char::from(DIGITS[usize::from(byte >> 4)]));
        text.push(char::from(DIGITS[usize::from(byte & 0xf)]));
    }
    text
}

/// One stored link of the chain: seq, context, event, previous hash, hash.
pub type ChainLink = (i64, AuditContext, AuditEvent, Vec<u8>, Vec<u8>);

/// The first event whose chain link is broken, given events in seq order starting right
/// after `previous` (the genesis hash for a whole chain): a missing seq, a `prev_hash`
/// that is not the previous event's hash, or a hash that does not match the event.
pub fn first_broken_link(
    mut previous: Vec<u8>,
    mut expected_seq: i64,
    events: impl IntoIterator<Item = ChainLink>,
) -> Option<i64> {
    for (seq, context, event, prev_hash, hash) in events {
        if seq != expected_seq
            || prev_hash != previous
            || chain_hash(&previous, seq, &context, &event) != hash
        {
            return Some(expected_seq.min(seq));
        }
        previous = hash;
        expected_seq += 1;
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_chain_hash_depends_on_every_field_and_the_previous_hash() {
        let at = Timestamp::from_millis(1);
        let context = AuditContext::system(at);
        let event = AuditEvent::new("token.created", Some("acme"), Some("t1".into()));
        let base = chain_hash(&GENESIS_HASH, 1, &context, &event);
        assert_eq!(base.len(), 32);
        assert_ne!(base, chain_hash(&[1u8; 32], 1, &context, &event));
        assert_ne!(base, chain_hash(&GENESIS_HASH, 2, &context, &event));
        let other = AuditEvent::new("token.revoked", Some("acme"), Some("t1".into()));
        assert_ne!(base, chain_hash(&GENESIS_HASH, 1, &context, &other));
        let later = AuditContext::system(Timestamp::from_millis(2));
        assert_ne!(base, chain_hash(&GENESIS_HASH, 1, &later, &event));
    }

    #[test]
    fn the_canonical_encoding_is_a_compact_json_array_in_field_order() {
        let mut context = AuditContext::new("t0", Timestamp::from_millis(7));
        context.ip = Some("203.0.113.9".into());
        let event = AuditEvent::new("token.exchanged", Some("acme"), Some("t1".into()))
            .with_details(serde_json::json!({"z": 1, "a": "\"q\""}));
        let mut out = Vec::new();
        let details = write_canonical(&mut out, 3, &context, &event);
        assert_eq!(&out[details], br#"{"a":"\"q\"","z":1}"#);
        assert_eq!(
            String::from_utf8(out).unwrap(),
            r#"[3,7,"token.exchanged","t0",null,"acme","t1","203.0.113.9",null,{"a":"\"q\"","z":1}]"#
        );
    }

    #[test]
    fn hex_is_lower_case_two_digits_a_byte() {
        assert_eq!(hex(&[0x00, 0x0f, 0xa0, 0xff]), "000fa0ff");
        assert_eq!(hex(&[]), "");
    }
}
