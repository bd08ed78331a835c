//! Folding alike client-credentials exchanges into one `token.exchanged` event.
//!
//! A busy client exchanges its credentials many times a second from one place. Each
//! exchange is still recorded, with its access token's `jti` and time, but the exchanges
//! of one commit that share client, address, agent, scope, audience and lifetime become
//! one event: `{"count", "jti": [...], "iat": [...], "scope", "aud", "expires_in"}`, at
//! the time and chain position of the first. An exchange alone is an event with a
//! count of 1, so a quiet client's trail reads one event per exchange; one that started
//! a refresh-token family is always alone, with its `refresh_family`.

use crate::service::cache::CachedToken;
use crate::service::client::user_agent;
use http::HeaderValue;
use latchkey_core::Timestamp;
use latchkey_core::TokenId;
use latchkey_core::audit::{AuditAction, AuditContext, AuditEvent};
use latchkey_core::permission::format_scope;
use serde_json::{Value, json};
use std::collections::HashMap;
use std::hash::{BuildHasher, Hash, Hasher, RandomState};
use std::net::IpAddr;
use std::sync::Arc;

/// A successful client-credentials exchange.
pub struct Exchange {
    pub client: Arc<CachedToken>,
    /// The client's address.
    pub ip: Option<IpAddr>,
    /// The client's `User-Agent` header.
    pub user_agent: Option<HeaderValue>,
    /// The granted scope, space-separated, when the client asked for one; `None` when
    /// it was granted everything it holds.
    pub scope: Option<String>,
    /// The access token's `aud`.
    pub audience: String,
    /// The access token's `jti`.
    pub jti: String,
    /// When the access token was issued.
    pub issued_at: Timestamp,
    /// Its lifetime in seconds.
    pub expires_in: i64,
    /// The refresh-token family the exchange started, if it did.
    pub refresh_family: Option<TokenId>,
}

impl Exchange {
    fn alike(&self, other: &Exchange) -> bool {
        // Each refresh-token family is its own story.
        self.refresh_family.is_none()
            && other.refresh_family.is_none()
            && self.client.record.token.id == other.client.record.token.id
            && self.ip == other.ip
            && self.user_agent == other.user_agent
            && self.scope == other.scope
            // "Everything it holds" means the same only for the same snapshot.
            && (self.scope.is_some() || Arc::ptr_eq(&self.client, &other.client))
            && self.audience == other.audience
            && self.expires_in == other.expires_in
    }

    fn group_hash(&self, state: &RandomState) -> u64 {
        let mut hasher = state.build_hasher();
        self.client.record.token.id.hash(&mut hasher);
        self.ip.hash(&mut hasher);
        self.user_agent.hash(&mut hasher);
        self.scope.hash(&mut hasher);
        self.audience.hash(&mut hasher);
        self.expires_in.hash(&mut hasher);
        hasher.finish()
    }
}

/// One queued authentication record.
pub enum Recorded {
    /// An event as it is written.
    Event(Box<(AuditContext, AuditEvent)>),
    /// An exchange, folded with alike ones.
    Exchange(Box<Exchange>),
}

/// The exchanges of one folded event: the first, and the `jti` and `iat` of each.
struct Grants {
    first: Box<Exchange>,
    jtis: Vec<Value>,
    iats: Vec<Value>,
}

impl Grants {
    fn new(first: Box<Exchange>) -> Self {
        let mut grants = Self {
            jtis: Vec::new(),
            iats: Vec::new(),
            first,
        };
        let (jti, at) = (
            std::mem::take(&mut grants.first.jti),
            grants.first.issued_at,
        );
        grants.add(jti, at);
        grants
    }

    fn add(&mut self, jti: String, issued_at: Timestamp) {
        self.jtis.push(Value::String(jti));
        // The JWT's `iat`: whole seconds.
        self.iats
            .push(Value::from(issued_at.millis().div_euclid(1000)));
    }

    fn into_event(self) -> (AuditContext, AuditEvent) {
        let first = self.first;
        let token = &first.client.record.token;
        let context = AuditContext {
            actor: token.id.to_string(),
            actor_user: token.owner.user_id().map(ToString::to_string),
            ip: first.ip.map(|ip| ip.to_string()),
            user_agent: first.user_agent.as_ref().and_then(user_agent),
            at: first.issued_at,
        };
        let mut event = AuditEvent::new(
            AuditAction::TokenExchanged,
            Some(token.owner.tenant_id().as_str()),
            Some(token.id.to_string()),
        )
        .with_details(json!({
            "count": self.jtis.len(),
            "jti": self.jtis,
            "iat": self.iats,
            "scope": first.scope.clone().unwrap_or_else(|| format_scope(&first.client.effective)),
            "aud": first.audience,
            "expires_in": first.expires_in,
        }));
        if let (Some(family), Value::Object(details)) = (first.refresh_family, &mut event.details) {
            details.insert("refresh_family".to_owned(), json!(family));
        }
        (context, event)
    }
}

enum Slot {
    Event(Box<(AuditContext, AuditEvent)>),
    Grants(Grants),
}

/// The events of a batch in queue order, alike exchanges folded into the event of the
/// first of them.
pub fn fold(batch: impl ExactSizeIterator<Item = Recorded>) -> Vec<(AuditContext, AuditEvent)> {
    let state = RandomState::new();
    let mut slots: Vec<Slot> = Vec::with_capacity(batch.len());
    // Slots holding exchanges, by the hash of what makes exchanges alike.
    let mut open: HashMap<u64, Vec<usize>> = HashMap::new();
    for item in batch {
        match item {
            Recorded::Event(event) => slots.push(Slot::Event(event)),
            Recorded::Exchange(exchange) => {
                let candidates = open.entry(exchange.group_hash(&state)).or_default();
                let alike = candidates.iter().copied().find(|&slot| {
                    matches!(&slots[slot], Slot::Grants(grants) if grants.first.alike(&exchange))
                });
                match alike {
                    Some(slot) => {
                        if let Slot::Grants(grants) = &mut slots[slot] {
                            let exchange = *exchange;
                            grants.add(exchange.jti, exchange.issued_at);
                        }
                    }
                    None => {
                        candidates.push(slots.len());
                        slots.push(Slot::Grants(Grants::new(exchange)));
                    }
                }
            }
        }
    }
    slots
        .into_iter()
        .map(|slot| match slot {
            Slot::Event(event) => *event,
            Slot::Grants(grants) => grants.into_event(),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use latchkey_core::token::{Owner, Token, TokenKind, TokenName, TokenRecord};
    use latchkey_core::{PermissionSet, TenantId};

    fn client(id: u128) -> Arc<CachedToken> {
        let token = Token {
            id: TokenId::from_u128(id),
            kind: TokenKind::ClientCredentials,
            owner: Owner::Tenant {
                tenant_id: TenantId::parse("acme").unwrap(),
            },
            name: TokenName::parse("ci").unwrap(),
            roles: Vec::new(),
            permissions: Vec::new(),
            created_by: None,
            created_at: Timestamp::from_millis(0),
            expires_at: None,
            revoked_at: None,
            revoked_reason: None,
            rolled_from: None,
            rolled_to: None,
            revokes_at: None,
            last_used_at: None,
            last_used_ip: None,
            ip_allowlist: Vec::new(),
            access_token_ttl_seconds: 900,
            refresh_tokens: false,
            secret_hint: None,
            public_key: None,
        };
        Arc::new(CachedToken::new(
            TokenRecord {
                token,
                secret: None,
                signing_kid: None,
                secret_lookup: None,
            },
            PermissionSet::new(),
            true,
        ))
    }

    fn exchange(client: &Arc<CachedToken>, ip: &str, jti: &str, at: i64) -> Recorded {
        Recorded::Exchange(Box::new(Exchange {
            client: Arc::clone(client),
            ip: Some(ip.parse().unwrap()),
            user_agent: Some(HeaderValue::from_static("ci/1")),
            scope: Some("reports:read".to_owned()),
            audience: "https://api".to_owned(),
            jti: jti.to_owned(),
            issued_at: Timestamp::from_millis(at),
            expires_in: 900,
            refresh_family: None,
        }))
    }

    fn other_event() -> Recorded {
        let context = AuditContext::new("x", Timestamp::from_millis(5));
        let event = AuditEvent::new(AuditAction::AuthFailed, Some("acme"), None);
        Recorded::Event(Box::new((context, event)))
    }

    #[test]
    fn alike_exchanges_become_one_event_listing_each_access_token() {
        let (a, b) = (client(1), client(2));
        let events = fold(
            vec![
                exchange(&a, "203.0.113.9", "j1", 1_000),
                other_event(),
                exchange(&b, "203.0.113.9", "j2", 2_000),
                exchange(&a, "203.0.113.9", "j3", 3_000),
                exchange(&a, "198.51.100.7", "j4", 4_000),
            ]
            .into_iter(),
        );
        let summary: Vec<(&str, Option<&str>, &Value)> = events
            .iter()
            .map(|(context, event)| {
                (
                    event.action.as_str(),
                    context.ip.as_deref(),
                    &event.details["jti"],
                )
            })
            .collect();
        assert_eq!(
            summary,
            [
                ("token.exchanged", Some("203.0.113.9"), &json!(["j1", "j3"])),
                ("auth.failed", None, &Value::Null),
                ("token.exchanged", Some("203.0.113.9"), &json!(["j2"])),
                ("token.exchanged", Some("198.51.100.7"), &json!(["j4"])),
            ]
        );
        let (context, event) = &events[0];
        assert_eq!(
            context.at,
            Timestamp::from_millis(1_000),
            "the first's time"
        );
        assert_eq!(context.actor, TokenId::from_u128(1).to_string());
        assert_eq!(context.user_agent.as_deref(), Some("ci/1"));
        assert_eq!(event.target.as_deref(), Some(context.actor.as_str()));
        assert_eq!(event.tenant_id.as_deref(), Some("acme"));
        assert_eq!(
            event.details,
            json!({
                "count": 2,
                "jti": ["j1", "j3"],
                "iat": [1, 3],
                "scope": "reports:read",
                "aud": "https://api",
                "expires_in": 900,
            })
        );
    }

    #[test]
    fn exchanges_that_differ_in_scope_agent_audience_lifetime_or_holdings_stay_apart() {
        let a = client(1);
        let mut variants = Vec::new();
        for change in 0..6 {
            let Recorded::Exchange(mut exchange) = exchange(&a, "203.0.113.9", "j", 0) else {
                unreachable!()
            };
            match change {
                0 => exchange.scope = Some("reports:write".to_owned()),
                1 => exchange.user_agent = None,
                2 => exchange.audience = "https://other".to_owned(),
                3 => exchange.expires_in = 60,
                4 => exchange.refresh_family = Some(TokenId::from_u128(9)),
                // Everything another snapshot of the client held.
                _ => {
                    exchange.scope = None;
                    exchange.client = client(1);
                }
            }
            variants.push(Recorded::Exchange(exchange));
        }
        variants.push(exchange(&a, "203.0.113.9", "j", 0));
        let events = fold(variants.into_iter());
        assert_eq!(events.len(), 7);
        assert_eq!(
            events[4].1.details["refresh_family"],
            TokenId::from_u128(9).to_string()
        );
        assert!(events[0].1.details.get("refresh_family").is_none());
    }
}
