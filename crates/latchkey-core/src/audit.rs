//! Audit events, their hash chain and its MACs (docs/API.md, Audit).
//!
//! Each event is stored with the SHA-256 of its canonical encoding and of the previous
//! event's hash, so editing, deleting or reordering a row breaks the chain at that row.
//! The canonical encoding is a JSON array of the fields in a fixed order; JSON objects
//! inside `details` have their keys sorted (serde_json's default map is ordered).
//!
//! A hash chain alone does not stop someone who can write to the database: they can
//! rewrite an event and re-hash it and everything after it. So each event also carries
//! an HMAC-SHA256 of its chain hash under the [`AuditMacKey`], which is derived from the
//! server's master key and never stored in the database. Events written before MACs
//! existed have none; [`ChainVerifier`] counts them as legacy and accepts them only
//! before the point where MACs began. Truncation (deleting the tail and moving the
//! stored head back) leaves a valid, shorter chain that neither hashes nor MACs can
//! tell apart from the real one; only a head anchored elsewhere catches it
//! (`latchkey audit verify --expect-head`, README.md, Audit).

use crate::timestamp::Timestamp;
use aws_lc_rs::{digest, hmac};
use serde::Serialize;
use std::fmt;
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

/// Declares [`AuditAction`] from one table of variants and wire names, so the name a
/// variant writes and the name it is read back from cannot drift apart.
macro_rules! audit_actions {
    ($($(#[$doc:meta])* $variant:ident => $name:literal,)*) => {
        /// What an audit event records (docs/API.md, "Audit (the five Ws)").
        ///
        /// Writers name one of the known variants; the wire and storage form is the
        /// dotted name of [`AuditAction::as_str`]. A stored name this version does not
        /// know (written by a newer server, or by hand) reads as [`AuditAction::Other`]
        /// with its text unchanged, so the trail stays readable and the event hashes
        /// exactly as it was written. `Other` never holds a known name: parsing one
        /// always gives its variant, so each name has one value.
        #[derive(Debug, Clone, PartialEq, Eq, Hash)]
        pub enum AuditAction {
            $($(#[$doc])* $variant,)*
            /// A name this version does not write, kept as stored.
            Other(UnknownAction),
        }

        impl AuditAction {
            /// Every action this version writes.
            pub const KNOWN: &'static [AuditAction] = &[$(Self::$variant,)*];

            /// The dotted wire and storage name.
            pub fn as_str(&self) -> &str {
                match self {
                    $(Self::$variant => $name,)*
                    Self::Other(unknown) => unknown.as_str(),
                }
            }

            /// The action named `text`: a known variant, or [`AuditAction::Other`].
            pub fn parse(text: &str) -> Self {
                match text {
                    $($name => Self::$variant,)*
                    _ => Self::Other(UnknownAction(text.to_owned())),
                }
            }
        }
    };
}

audit_actions! {
    /// A tenant was created (the system tenant at bootstrap too).
    TenantCreated => "tenant.created",
    /// A tenant was deleted, and its tokens revoked.
    TenantDeleted => "tenant.deleted",
    /// A permission was put into the catalogue.
    PermissionPut => "permission.put",
    /// A role was created or replaced.
    RolePut => "role.put",
    /// A membership was created or replaced.
    MembershipPut => "membership.put",
    /// A membership ended.
    MembershipRemoved => "membership.removed",
    /// A user was deleted everywhere.
    UserDeleted => "user.deleted",
    /// A tenant's policy was set (docs/API.md, "Tenant policies").
    PolicyPut => "policy.put",
    /// A token was created.
    TokenCreated => "token.created",
    /// A token's name changed.
    TokenRenamed => "token.renamed",
    /// A token was revoked.
    TokenRevoked => "token.revoked",
    /// A token was rolled: a successor made, and the token revoked when its grace
    /// window ends.
    TokenRolled => "token.rolled",
    /// A credential was reported leaked and revoked; `details` say where it was seen.
    TokenLeaked => "token.leaked",
    /// One access token was revoked by its `jti` (RFC 7009).
    AccessTokenRevoked => "access_token.revoked",
    /// A refresh-token family was revoked (RFC 7009).
    RefreshRevoked => "refresh.revoked",
    /// A used refresh token was presented again: its family is revoked.
    RefreshReused => "refresh.reused",
    /// A signing key was rotated in.
    KeyRotated => "key.rotated",
    /// A token was used from an address for the first time.
    TokenFirstSeenIp => "token.first_seen_ip",
    /// A token was used from a country for the first time.
    TokenFirstSeenCountry => "token.first_seen_country",
    /// Client credentials were exchanged for access tokens.
    TokenExchanged => "token.exchanged",
    /// A refresh token was exchanged for a new access token.
    TokenRefreshed => "token.refreshed",
    /// An authentication failed; `details.reason` says why.
    AuthFailed => "auth.failed",
    /// A trust was created (docs/API.md, "Trusts").
    TrustCreated => "trust.created",
    /// A trust's name changed.
    TrustRenamed => "trust.renamed",
    /// A trust was revoked, and the access tokens it issued with it.
    TrustRevoked => "trust.revoked",
    /// An outside issuer's assertion was exchanged for an access token through a trust.
    TrustExchanged => "trust.exchanged",
    /// A token expires within 7 days, or within 1 day (`details.days`); written once
    /// for each by the maintenance round.
    TokenExpiring => "token.expiring",
    /// A webhook endpoint was created (docs/API.md, "Webhooks").
    WebhookCreated => "webhook.created",
    /// A webhook endpoint was deleted with its pending deliveries.
    WebhookDeleted => "webhook.deleted",
    /// The server disabled a webhook endpoint whose deliveries kept failing.
    WebhookDisabled => "webhook.disabled",
    /// A test ping was queued for a webhook endpoint (re-enabling it).
    WebhookPinged => "webhook.pinged",
    /// A delivery was queued again by hand (re-enabling its endpoint).
    WebhookRedelivered => "webhook.redelivered",
    /// A webhook's signing secret was replaced; the old one signs too for a while.
    WebhookSecretRotated => "webhook.secret_rotated",
    /// A console session was made (docs/CONSOLE.md): a code for a user, or an
    /// operator's sign-in.
    ConsoleSessionCreated => "console.session_created",
    /// A console session was ended by logout or through the API.
    ConsoleSessionEnded => "console.session_ended",
}

/// The audit actions a webhook can subscribe to (docs/API.md, "Webhooks"). Named by
/// text so that an action another part of the server adds (`token.leaked`) needs no
/// change here.
pub const WEBHOOK_EVENTS: &[&str] = &[
    "token.created",
    "token.revoked",
    "token.rolled",
    "token.leaked",
    "token.expiring",
    "token.first_seen_ip",
    "token.first_seen_country",
];

impl AuditAction {
    /// True for the actions webhooks receive. Cheap enough for every appended event:
    /// the hot paths (`token.exchanged`, `token.refreshed`, `auth.failed`) are refused
    /// by their variant, and no other action costs more than a few short comparisons;
    /// none costs a query.
    pub fn is_webhook_event(&self) -> bool {
        match self {
            // The authentication events, written by the thousand a second: no strings.
            Self::TokenExchanged
            | Self::TokenRefreshed
            | Self::AuthFailed
            | Self::TrustExchanged => false,
            _ => {
                let name = self.as_str();
                name.starts_with("token.") && WEBHOOK_EVENTS.contains(&name)
            }
        }
    }
}

/// The name of an [`AuditAction::Other`]: a stored action this version does not know.
/// Only [`AuditAction::parse`] makes one, and only of a name no variant has.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct UnknownAction(String);

impl UnknownAction {
    /// The name as stored.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl From<String> for AuditAction {
    fn from(text: String) -> Self {
        match Self::parse(&text) {
            // Keep the stored string rather than copying it again.
            Self::Other(_) => Self::Other(UnknownAction(text)),
            known => known,
        }
    }
}

impl fmt::Display for AuditAction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Serialize for AuditAction {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

impl<'de> serde::Deserialize<'de> for AuditAction {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        <String as serde::Deserialize>::deserialize(deserializer).map(Self::from)
    }
}

/// What happened, to what.
#[derive(Debug, Clone, PartialEq, Serialize, serde::Deserialize)]
pub struct AuditEvent {
    /// What happened, such as [`AuditAction::TokenCreated`] (`token.created`).
    pub action: AuditAction,
    /// The tenant concerned, if any.
    pub tenant_id: Option<String>,
    /// The object acted on (a token id, a role name, a user id).
    pub target: Option<String>,
    /// Action-specific facts. Never a secret.
    pub details: serde_json::Value,
}

impl AuditEvent {
    /// An event with no details.
    pub fn new(action: AuditAction, tenant_id: Option<&str>, target: Option<String>) -> Self {
        Self {
            action,
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

/// An audit event as stored: the event, its context, and its place in the chain.
#[derive(Debug, Clone, PartialEq, Serialize, serde::Deserialize)]
pub struct AuditRecord {
    /// Position in the chain.
    pub seq: i64,
    /// Who, from where, when.
    #[serde(flatten)]
    pub context: AuditContext,
    /// What happened, to what.
    #[serde(flatten)]
    pub event: AuditEvent,
    /// The previous event's hash, hex.
    pub prev_hash: String,
    /// This event's chain hash, hex.
    pub hash: String,
    /// The HMAC-SHA256 of the chain hash under the server's audit MAC key, hex; `None`
    /// for an event written before MACs existed.
    pub mac: Option<String>,
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

/// The bytes of lower-case or upper-case hex, or `None` if `text` is not hex.
pub fn unhex(text: &str) -> Option<Vec<u8>> {
    // `from_str_radix` alone would take a sign: "+1" is not hex.
    if text.len() % 2 != 0 || !text.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    (0..text.len())
        .step_by(2)
        .map(|i| {
            text.get(i..i + 2)
                .and_then(|pair| u8::from_str_radix(pair, 16).ok())
        })
        .collect()
}

/// What derives the MAC key from the master key; a new purpose gets a new label.
const MAC_KEY_LABEL: &[u8] = b"latchkey audit mac v1";

/// The key of the audit events' MACs: HMAC-SHA256(master key, `latchkey audit mac v1`).
///
/// A key of its own, so that the master key (which seals the signing keys) is never
/// used for a second purpose, and so that anyone holding the master key can check an
/// archived export offline. It is not printed by `Debug` and never leaves the server.
#[derive(Clone)]
pub struct AuditMacKey(hmac::Key);

impl fmt::Debug for AuditMacKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("AuditMacKey(..)")
    }
}

impl AuditMacKey {
    /// The MAC key of the server whose master key is `master_key`.
    pub fn derive(master_key: &[u8]) -> Self {
        let derived = hmac::sign(
            &hmac::Key::new(hmac::HMAC_SHA256, master_key),
            MAC_KEY_LABEL,
        );
        Self(hmac::Key::new(hmac::HMAC_SHA256, derived.as_ref()))
    }

    /// The MAC of the event whose chain hash is `hash`. The hash already covers the
    /// event's seq, content and the previous hash, so this one HMAC covers them too.
    pub fn sign(&self, hash: &[u8]) -> [u8; 32] {
        let mut mac = [0u8; 32];
        mac.copy_from_slice(hmac::sign(&self.0, hash).as_ref());
        mac
    }

    /// Whether `mac` is the MAC of `hash`, compared in constant time.
    pub fn verify(&self, hash: &[u8], mac: &[u8]) -> bool {
        hmac::verify(&self.0, hash, mac).is_ok()
    }
}

/// One stored link of the chain, with its hashes and MAC as bytes.
#[derive(Debug, Clone, PartialEq)]
pub struct ChainLink {
    /// Position in the chain.
    pub seq: i64,
    /// Who, from where, when.
    pub context: AuditContext,
    /// What happened.
    pub event: AuditEvent,
    /// The hash the row says came before it.
    pub prev_hash: Vec<u8>,
    /// The row's chain hash.
    pub hash: Vec<u8>,
    /// The row's MAC; `None` for an event written before MACs existed.
    pub mac: Option<Vec<u8>>,
}

impl ChainLink {
    /// The link of an exported or listed record, or `None` if a hash or the MAC is not
    /// hex.
    pub fn from_record(record: AuditRecord) -> Option<Self> {
        Some(Self {
            prev_hash: unhex(&record.prev_hash)?,
            hash: unhex(&record.hash)?,
            mac: match &record.mac {
                Some(mac) => Some(unhex(mac)?),
                None => None,
            },
            seq: record.seq,
            context: record.context,
            event: record.event,
        })
    }
}

/// Why verification stopped at an event.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BreakReason {
    /// The event is not there: a deleted row, or rows missing up to the stored head.
    Missing,
    /// Its `prev_hash` is not the previous event's hash.
    PrevHash,
    /// Its hash does not match its content.
    Hash,
    /// It has no MAC although MACs had begun.
    MacMissing,
    /// Its MAC is not this server's MAC of its hash.
    Mac,
    /// The stored head's hash is not the hash of the event at the head's seq.
    Head,
    /// It lies beyond the stored head: the head was moved back.
    BeyondHead,
}

impl BreakReason {
    /// A few words for people.
    pub fn describe(self) -> &'static str {
        match self {
            Self::Missing => "the event is missing",
            Self::PrevHash => "its prev_hash is not the previous event's hash",
            Self::Hash => "its hash does not match its content",
            Self::MacMissing => "it has no MAC although MACs had begun",
            Self::Mac => "its MAC does not match its hash",
            Self::Head => "the stored head's hash is not this event's hash",
            Self::BeyondHead => "it lies beyond the stored head",
        }
    }
}

/// The first event at which verification failed, and why.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct Break {
    /// The event's seq.
    pub seq: i64,
    /// Why.
    pub reason: BreakReason,
}

/// What a walk over the whole chain found.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Verdict {
    /// How many events were checked.
    pub checked: i64,
    /// How many of them carry no MAC because they predate MACs (or, for a walk without
    /// the key, how many carry none at all).
    pub legacy: i64,
    /// The first failure, or `None` if the chain is intact.
    pub first_broken: Option<Break>,
}

impl Verdict {
    /// No broken or missing link, no bad or missing MAC, and the stored head matches.
    pub fn intact(&self) -> bool {
        self.first_broken.is_none()
    }
}

/// Which MACs a walk checks.
struct MacCheck<'k> {
    key: &'k AuditMacKey,
    /// Every event from this seq on must carry a MAC.
    required_from: i64,
    /// Once one event carries a MAC, every later one must too.
    began: bool,
}

/// Walks the chain from its first event in seq order, checking each link, and at the
/// end compares the last event with the stored head.
///
/// The head is read before the walk (`head`) and again after it (see
/// [`ChainVerifier::finish`]), so events appended while the walk runs are not taken
/// for tampering: an event committed before the walk began is always seen, and the
/// head never moves back on its own.
pub struct ChainVerifier<'k> {
    head: (i64, Vec<u8>),
    previous: Vec<u8>,
    next_seq: i64,
    macs: Option<MacCheck<'k>>,
    hash_at_head: Option<Vec<u8>>,
    checked: i64,
    legacy: i64,
    broken: Option<Break>,
}

impl<'k> ChainVerifier<'k> {
    /// A walk that checks the hash links only, against the head `(seq, hash)` stored
    /// before the walk began. This is what anyone holding an export can check.
    pub fn links(head_seq: i64, head_hash: Vec<u8>) -> Self {
        Self {
            head: (head_seq, head_hash),
            previous: GENESIS_HASH.to_vec(),
            next_seq: 1,
            macs: None,
            hash_at_head: (head_seq == 0).then(|| GENESIS_HASH.to_vec()),
            checked: 0,
            legacy: 0,
            broken: None,
        }
    }

    /// A walk that also checks each event's MAC under `key`: events from seq
    /// `macs_from` on, and every event after the first one that carries a MAC, must
    /// carry a valid one.
    pub fn with_macs(
        head_seq: i64,
        head_hash: Vec<u8>,
        key: &'k AuditMacKey,
        macs_from: i64,
    ) -> Self {
        Self {
            macs: Some(MacCheck {
                key,
                required_from: macs_from,
                began: false,
            }),
            ..Self::links(head_seq, head_hash)
        }
    }

    /// Whether a failure has been found; later links are then not checked.
    pub fn is_broken(&self) -> bool {
        self.broken.is_some()
    }

    /// Checks the next link in seq order.
    pub fn check(&mut self, link: &ChainLink) {
        if self.broken.is_some() {
            return;
        }
        if let Err(reason) = self.check_link(link) {
            let seq = if reason == BreakReason::Missing {
                self.next_seq.min(link.seq)
            } else {
                link.seq
            };
            self.broken = Some(Break { seq, reason });
            return;
        }
        if link.seq == self.head.0 {
            self.hash_at_head = Some(link.hash.clone());
        }
        self.previous.clone_from(&link.hash);
        self.next_seq += 1;
        self.checked += 1;
    }

    fn check_link(&mut self, link: &ChainLink) -> Result<(), BreakReason> {
        if link.seq != self.next_seq {
            return Err(BreakReason::Missing);
        }
        if link.prev_hash != self.previous {
            return Err(BreakReason::PrevHash);
        }
        if chain_hash(&self.previous, link.seq, &link.context, &link.event) != link.hash {
            return Err(BreakReason::Hash);
        }
        match (&mut self.macs, &link.mac) {
            (Some(macs), Some(mac)) => {
                if !macs.key.verify(&link.hash, mac) {
                    return Err(BreakReason::Mac);
                }
                macs.began = true;
            }
            (Some(macs), None) => {
                if macs.began || link.seq >= macs.required_from {
                    return Err(BreakReason::MacMissing);
                }
                self.legacy += 1;
            }
            (None, None) => self.legacy += 1,
            (None, Some(_)) => {}
        }
        Ok(())
    }

    /// The verdict, given the seq of the stored head read after the walk.
    pub fn finish(self, head_seq_after: i64) -> Verdict {
        let last = self.next_seq - 1;
        let broken = self.broken.or_else(|| {
            let (head_seq, head_hash) = &self.head;
            if last < *head_seq {
                Some(Break {
                    seq: last + 1,
                    reason: BreakReason::Missing,
                })
            } else if self.hash_at_head.as_ref() != Some(head_hash) {
                Some(Break {
                    seq: *head_seq,
                    reason: BreakReason::Head,
                })
            } else if last > head_seq_after {
                Some(Break {
                    seq: head_seq_after + 1,
                    reason: BreakReason::BeyondHead,
                })
            } else {
                None
            }
        });
        Verdict {
            checked: self.checked,
            legacy: self.legacy,
            first_broken: broken,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_chain_hash_depends_on_every_field_and_the_previous_hash() {
        let at = Timestamp::from_millis(1);
        let context = AuditContext::system(at);
        let event = AuditEvent::new(AuditAction::TokenCreated, Some("acme"), Some("t1".into()));
        let base = chain_hash(&GENESIS_HASH, 1, &context, &event);
        assert_eq!(base.len(), 32);
        assert_ne!(base, chain_hash(&[1u8; 32], 1, &context, &event));
        assert_ne!(base, chain_hash(&GENESIS_HASH, 2, &context, &event));
        let other = AuditEvent::new(AuditAction::TokenRevoked, Some("acme"), Some("t1".into()));
        assert_ne!(base, chain_hash(&GENESIS_HASH, 1, &context, &other));
        let later = AuditContext::system(Timestamp::from_millis(2));
        assert_ne!(base, chain_hash(&GENESIS_HASH, 1, &later, &event));
    }

    #[test]
    fn the_canonical_encoding_is_a_compact_json_array_in_field_order() {
        let mut context = AuditContext::new("t0", Timestamp::from_millis(7));
        context.ip = Some("203.0.113.9".into());
        let event = AuditEvent::new(AuditAction::TokenExchanged, Some("acme"), Some("t1".into()))
            .with_details(serde_json::json!({"z": 1, "a": "\"q\""}));
        let mut out = Vec::new();
        let details = write_canonical(&mut out, 3, &context, &event);
        assert_eq!(&out[details], br#"{"a":"\"q\"","z":1}"#);
        assert_eq!(
            String::from_utf8(out).unwrap(),
            r#"[3,7,"token.exchanged","t0",null,"acme","t1","203.0.113.9",null,{"a":"\"q\"","z":1}]"#
        );
    }

    /// The names the server writes, as docs/API.md ("Audit (the five Ws)") lists them.
    const WRITTEN: [&str; 35] = [
        "tenant.created",
        "tenant.deleted",
        "permission.put",
        "role.put",
        "membership.put",
        "membership.removed",
        "user.deleted",
        "policy.put",
        "token.created",
        "token.renamed",
        "token.revoked",
        "token.rolled",
        "token.leaked",
        "access_token.revoked",
        "refresh.revoked",
        "refresh.reused",
        "key.rotated",
        "token.first_seen_ip",
        "token.first_seen_country",
        "token.exchanged",
        "token.refreshed",
        "auth.failed",
        "trust.created",
        "trust.renamed",
        "trust.revoked",
        "trust.exchanged",
        "token.expiring",
        "webhook.created",
        "webhook.deleted",
        "webhook.disabled",
        "webhook.pinged",
        "webhook.redelivered",
        "webhook.secret_rotated",
        "console.session_created",
        "console.session_ended",
    ];

    #[test]
    fn only_the_documented_token_events_reach_webhooks() {
        for name in WEBHOOK_EVENTS {
            assert!(AuditAction::parse(name).is_webhook_event(), "{name}");
        }
        for name in [
            "token.exchanged",
            "token.refreshed",
            "token.renamed",
            "auth.failed",
            "webhook.created",
            "tenant.created",
            "token.created.x",
        ] {
            assert!(!AuditAction::parse(name).is_webhook_event(), "{name}");
        }
    }

    #[test]
    fn every_action_the_server_writes_round_trips_through_its_wire_name() {
        let names: Vec<&str> = AuditAction::KNOWN.iter().map(AuditAction::as_str).collect();
        assert_eq!(names, WRITTEN, "the wire names stay exactly these");
        for action in AuditAction::KNOWN {
            let name = action.as_str();
            assert_eq!(&AuditAction::parse(name), action, "{name}");
            assert_eq!(&AuditAction::from(name.to_owned()), action, "{name}");
            assert_eq!(action.to_string(), name);
            let json = serde_json::to_string(action).unwrap();
            assert_eq!(json, format!("\"{name}\""));
            assert_eq!(&serde_json::from_str::<AuditAction>(&json).unwrap(), action);
            assert!(!matches!(action, AuditAction::Other(_)), "{name}");
        }
    }

    #[test]
    fn an_unknown_stored_action_reads_as_it_is_and_hashes_as_its_text() {
        let stored = "token.teleported";
        let action = AuditAction::parse(stored);
        assert!(matches!(&action, AuditAction::Other(name) if name.as_str() == stored));
        assert_eq!(action.as_str(), stored);
        assert_eq!(action.to_string(), stored);
        assert_eq!(AuditAction::from(stored.to_owned()), action);
        assert!(!AuditAction::KNOWN.contains(&action));
        let record = serde_json::json!({"action": stored, "tenant_id": null, "target": null,
            "details": {}});
        let event: AuditEvent = serde_json::from_value(record.clone()).unwrap();
        assert_eq!(event.action, action);
        assert_eq!(serde_json::to_value(&event).unwrap(), record);
        // The canonical encoding carries the stored text, so the chain still verifies.
        let mut out = Vec::new();
        write_canonical(
            &mut out,
            1,
            &AuditContext::new("t0", Timestamp::from_millis(7)),
            &event,
        );
        assert_eq!(
            String::from_utf8(out).unwrap(),
            r#"[1,7,"token.teleported","t0",null,null,null,null,null,{}]"#
        );
    }

    #[test]
    fn a_known_name_never_reads_as_an_unknown_action() {
        assert_eq!(AuditAction::parse("auth.failed"), AuditAction::AuthFailed);
        // Names are exact: another case or a stray space is some other action.
        for near in ["Auth.failed", "auth.failed ", "auth_failed", ""] {
            let action = AuditAction::parse(near);
            assert!(matches!(&action, AuditAction::Other(_)), "{near:?}");
            assert_ne!(action, AuditAction::AuthFailed);
            assert_eq!(action.as_str(), near);
        }
    }

    #[test]
    fn hex_is_lower_case_two_digits_a_byte() {
        assert_eq!(hex(&[0x00, 0x0f, 0xa0, 0xff]), "000fa0ff");
        assert_eq!(hex(&[]), "");
    }

    #[test]
    fn unhex_reads_either_case_and_refuses_what_is_not_hex() {
        assert_eq!(unhex("000fA0ff"), Some(vec![0x00, 0x0f, 0xa0, 0xff]));
        assert_eq!(unhex(""), Some(vec![]));
        for bad in ["0", "0g", "+1", "é0", "00 "] {
            assert_eq!(unhex(bad), None, "{bad:?}");
        }
    }

    const MASTER: [u8; 32] = [7u8; 32];

    #[test]
    fn the_mac_key_is_derived_from_the_master_key_and_never_is_it() {
        let key = AuditMacKey::derive(&MASTER);
        let hash = [3u8; 32];
        let mac = key.sign(&hash);
        // Anyone holding the master key can recompute it: HMAC(HMAC(master, label), hash).
        let derived = hmac::sign(&hmac::Key::new(hmac::HMAC_SHA256, &MASTER), MAC_KEY_LABEL);
        let expected = hmac::sign(&hmac::Key::new(hmac::HMAC_SHA256, derived.as_ref()), &hash);
        assert_eq!(&mac[..], expected.as_ref());
        let with_master = hmac::sign(&hmac::Key::new(hmac::HMAC_SHA256, &MASTER), &hash);
        assert_ne!(
            &mac[..],
            with_master.as_ref(),
            "the master key is not used directly"
        );
        assert_ne!(mac, AuditMacKey::derive(&[8u8; 32]).sign(&hash));
        assert!(key.verify(&hash, &mac));
        assert!(!key.verify(&[4u8; 32], &mac));
        assert!(!key.verify(&hash, &mac[..31]));
        let shown = format!("{key:?}");
        assert_eq!(shown, "AuditMacKey(..)");
        assert!(!shown.contains(&hex(derived.as_ref())));
    }

    /// A chain of `n` events; those from seq `macs_from` on are signed with `key`.
    fn chain(n: i64, key: &AuditMacKey, macs_from: i64) -> Vec<ChainLink> {
        let mut previous = GENESIS_HASH.to_vec();
        (1..=n)
            .map(|seq| {
                let context = AuditContext::system(Timestamp::from_millis(seq));
                let event =
                    AuditEvent::new(AuditAction::TenantCreated, None, Some(format!("t{seq}")));
                let hash = chain_hash(&previous, seq, &context, &event);
                ChainLink {
                    seq,
                    context,
                    event,
                    prev_hash: std::mem::replace(&mut previous, hash.clone()),
                    mac: (seq >= macs_from).then(|| key.sign(&hash).to_vec()),
                    hash,
                }
            })
            .collect()
    }

    /// What a walk with MACs makes of `links`, given the stored head before and after.
    fn verdict(links: &[ChainLink], head: (i64, &[u8]), after: i64, macs_from: i64) -> Verdict {
        let key = AuditMacKey::derive(&MASTER);
        let mut verifier = ChainVerifier::with_macs(head.0, head.1.to_vec(), &key, macs_from);
        for link in links {
            verifier.check(link);
        }
        verifier.finish(after)
    }

    fn broken(seq: i64, reason: BreakReason) -> Option<Break> {
        Some(Break { seq, reason })
    }

    /// Rewrites the event at `seq` and re-hashes it and every later one, as someone who
    /// can write to the database but has no key would.
    fn rewrite(links: &mut [ChainLink], seq: i64) {
        let mut previous = GENESIS_HASH.to_vec();
        for link in links.iter_mut() {
            if link.seq == seq {
                link.event.target = Some("forged".to_owned());
            }
            link.prev_hash = previous.clone();
            link.hash = chain_hash(&previous, link.seq, &link.context, &link.event);
            previous = link.hash.clone();
        }
    }

    #[test]
    fn an_intact_chain_verifies_and_counts_its_events() {
        let links = chain(5, &AuditMacKey::derive(&MASTER), 1);
        let head = links[4].hash.clone();
        let verdict = verdict(&links, (5, &head), 5, 1);
        assert!(verdict.intact(), "{verdict:?}");
        assert_eq!((verdict.checked, verdict.legacy), (5, 0));
        let empty = self::verdict(&[], (0, &GENESIS_HASH), 0, 1);
        assert!(empty.intact());
    }

    #[test]
    fn a_rewritten_and_rehashed_event_fails_its_mac_even_with_the_head_moved_along() {
        let mut links = chain(5, &AuditMacKey::derive(&MASTER), 1);
        rewrite(&mut links, 5);
        let head = links[4].hash.clone();
        assert_eq!(
            verdict(&links, (5, &head), 5, 1).first_broken,
            broken(5, BreakReason::Mac)
        );
        // The same with a MAC made under the master key itself.
        links[4].mac = Some(
            hmac::sign(&hmac::Key::new(hmac::HMAC_SHA256, &MASTER), &head)
                .as_ref()
                .to_vec(),
        );
        assert_eq!(
            verdict(&links, (5, &head), 5, 1).first_broken,
            broken(5, BreakReason::Mac)
        );
    }

    #[test]
    fn a_missing_mac_fails_once_macs_began_and_legacy_events_are_counted_before() {
        let key = AuditMacKey::derive(&MASTER);
        let links = chain(5, &key, 3);
        let head = links[4].hash.clone();
        let legacy = verdict(&links, (5, &head), 5, 3);
        assert!(legacy.intact(), "{legacy:?}");
        assert_eq!((legacy.checked, legacy.legacy), (5, 2));
        // Stripping a MAC after the first one.
        let mut stripped = links.clone();
        stripped[4].mac = None;
        assert_eq!(
            verdict(&stripped, (5, &head), 5, 3).first_broken,
            broken(5, BreakReason::MacMissing)
        );
        // Stripping every MAC: the stored start of MACs still demands them.
        let mut all = links.clone();
        for link in &mut all {
            link.mac = None;
        }
        assert_eq!(
            verdict(&all, (5, &head), 5, 3).first_broken,
            broken(3, BreakReason::MacMissing)
        );
        // Even with that start moved past the end, the first signed event seen demands
        // a MAC of every later one.
        all[2].mac = links[2].mac.clone();
        assert_eq!(
            verdict(&all, (5, &head), 5, i64::MAX).first_broken,
            broken(4, BreakReason::MacMissing)
        );
        let mut garbage = links;
        garbage[3].mac = Some(vec![0u8; 32]);
        assert_eq!(
            verdict(&garbage, (5, &head), 5, 3).first_broken,
            broken(4, BreakReason::Mac)
        );
    }

    #[test]
    fn the_walk_names_edited_deleted_and_reordered_links() {
        let links = chain(5, &AuditMacKey::derive(&MASTER), 1);
        let head = links[4].hash.clone();
        let mut edited = links.clone();
        edited[1].event.target = Some("forged".to_owned());
        assert_eq!(
            verdict(&edited, (5, &head), 5, 1).first_broken,
            broken(2, BreakReason::Hash)
        );
        let mut deleted = links.clone();
        deleted.remove(1);
        assert_eq!(
            verdict(&deleted, (5, &head), 5, 1).first_broken,
            broken(2, BreakReason::Missing)
        );
        let mut relinked = links.clone();
        relinked[2].prev_hash = vec![9u8; 32];
        assert_eq!(
            verdict(&relinked, (5, &head), 5, 1).first_broken,
            broken(3, BreakReason::PrevHash)
        );
        let mut swapped = links;
        swapped.swap(2, 3);
        assert_eq!(
            verdict(&swapped, (5, &head), 5, 1).first_broken,
            broken(3, BreakReason::Missing)
        );
    }

    #[test]
    fn the_walk_compares_the_end_of_the_chain_with_the_stored_head() {
        let links = chain(5, &AuditMacKey::derive(&MASTER), 1);
        let head = links[4].hash.clone();
        // A deleted tail with the head left where it was.
        assert_eq!(
            verdict(&links[..3], (5, &head), 5, 1).first_broken,
            broken(4, BreakReason::Missing)
        );
        // A head whose hash is not its event's.
        assert_eq!(
            verdict(&links, (5, &[1u8; 32]), 5, 1).first_broken,
            broken(5, BreakReason::Head)
        );
        // A head moved back over events that are still there.
        let back = links[2].hash.clone();
        assert_eq!(
            verdict(&links, (3, &back), 3, 1).first_broken,
            broken(4, BreakReason::BeyondHead)
        );
        // Events appended during the walk are not tampering.
        let appended = verdict(&links, (3, &back), 6, 1);
        assert!(appended.intact(), "{appended:?}");
        // A deleted tail with the head moved back to match is a valid, shorter chain:
        // only a head anchored elsewhere tells (`--expect-head`).
        assert!(verdict(&links[..3], (3, &back), 3, 1).intact());
    }

    #[test]
    fn a_walk_without_the_key_checks_links_and_counts_unsigned_events() {
        let links = chain(4, &AuditMacKey::derive(&[1u8; 32]), 3);
        let mut verifier = ChainVerifier::links(4, links[3].hash.clone());
        for link in &links {
            verifier.check(link);
        }
        let verdict = verifier.finish(4);
        assert!(verdict.intact());
        assert_eq!((verdict.checked, verdict.legacy), (4, 2));
    }
}
