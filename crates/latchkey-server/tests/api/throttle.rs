//! Throttling of failed client authentications, played by a stranger who knows a client
//! id (the `sub` of every access token) and tries to lock that client out. Failures count
//! per address, per client at one address, and per client everywhere except where it
//! authenticated lately; only well-formed client secrets count against a client. The
//! servers trust the loopback proxy, so `X-Forwarded-For` plays each address.

use crate::both_backends_with;
use crate::helpers::{Reply, TestApp, basic};
use aws_lc_rs::rand::SystemRandom;
use latchkey_core::TokenId;
use latchkey_core::cidr::IpNet;
use latchkey_core::secret::{SecretCodec, SecretPrefix, SecretType};
use latchkey_server::Config;
use reqwest::Method;
use serde_json::{Value, json};

fn behind_loopback_proxy(config: &mut Config) {
    config.trusted_proxies = vec![IpNet::parse("127.0.0.1/32").unwrap()];
}

/// Five failures block an address, five against a client block its unknown addresses.
fn with_low_address_and_client_limits(config: &mut Config) {
    behind_loopback_proxy(config);
    config.ip_failures_per_minute = 5;
    config.client_failures_all_addresses_per_minute = 5;
}

/// Fourteen failures against a client from all addresses together; ten from one.
fn with_low_client_limit(config: &mut Config) {
    behind_loopback_proxy(config);
    config.client_failures_all_addresses_per_minute = 14;
}

both_backends_with!(behind_loopback_proxy;
    strangers_cannot_lock_a_client_out_of_its_usual_address,
);

both_backends_with!(with_low_address_and_client_limits;
    malformed_secrets_count_against_the_address_and_never_the_client,
);

both_backends_with!(with_low_client_limit;
    failures_from_many_addresses_slow_only_addresses_the_client_has_not_used,
);

/// Where the legitimate client runs.
const HOME: &str = "203.0.113.9";
/// Where the stranger sends malformed secrets from.
const NOISY: &str = "198.51.100.7";
/// Where the stranger sends well-formed wrong secrets from.
const GUESSER: &str = "198.51.100.8";
/// An address nobody used before.
const FRESH: &str = "192.0.2.44";

/// A client-credentials exchange from `address`.
async fn exchange_from(app: &TestApp, id: &str, secret: &str, address: &str) -> Reply {
    let request = app
        .request(Method::POST, "/oauth/token")
        .header("authorization", basic(id, secret))
        .header("content-type", "application/x-www-form-urlencoded")
        .header("x-forwarded-for", address)
        .body("grant_type=client_credentials");
    app.send(request).await
}

#[track_caller]
fn assert_refused(reply: &Reply) {
    assert_eq!(reply.status, 401, "body: {}", reply.text);
    assert_eq!(reply.body["error"], "invalid_client");
    assert!(reply.headers.get("retry-after").is_none());
}

#[track_caller]
fn assert_throttled(reply: &Reply) {
    assert_eq!(reply.status, 429, "body: {}", reply.text);
    assert_eq!(reply.body["error"], "invalid_client");
    assert_eq!(reply.header("cache-control"), "no-store");
    let wait: u64 = reply.header("retry-after").parse().unwrap();
    assert!((1..=60).contains(&wait), "Retry-After: {wait}");
}

#[track_caller]
fn assert_granted(reply: &Reply) {
    reply.assert_status(200);
    assert!(reply.body["access_token"].is_string());
}

/// What a stranger who knows the checksum sends: a client secret of the right prefix,
/// type, length and checksum, and random otherwise.
fn well_formed_guess() -> String {
    let codec = SecretCodec::new(SecretPrefix::default(), b"not the server's pepper");
    let issued = codec
        .generate(
            SecretType::ClientSecret,
            TokenId::from_u128(1),
            &SystemRandom::new(),
        )
        .unwrap();
    issued.secret.expose().to_owned()
}

/// Secrets that fail the format or checksum check: garbage, the real secret with one
/// character changed (the checksum catches it), another prefix, and an api key.
async fn malformed_secrets(app: &TestApp, secret: &str) -> Vec<String> {
    let mut typo = secret.as_bytes().to_vec();
    let at = typo.len() - 10;
    typo[at] = if typo[at] == b'a' { b'b' } else { b'a' };
    let api_key = app
        .create_tenant_token("acme", json!({ "name": "key", "kind": "api_key" }))
        .await["api_key"]
        .as_str()
        .unwrap()
        .to_owned();
    vec![
        "hunter2".to_owned(),
        String::from_utf8(typo).unwrap(),
        secret.replacen("lk_", "xy_", 1),
        api_key,
    ]
}

/// The `auth.failed` events once there are `count`, newest first.
async fn failures(app: &TestApp, count: usize) -> Vec<Value> {
    let items = app.wait_for_audit("action=auth.failed", count).await;
    assert_eq!(items.len(), count, "{items:?}");
    items
}

async fn strangers_cannot_lock_a_client_out_of_its_usual_address(app: TestApp) {
    app.create_tenant("acme").await;
    let (id, secret) = app.client("acme", json!({})).await;
    assert_granted(&exchange_from(&app, &id, &secret, HOME).await);

    // The attack: every spelling of a malformed secret, then well-formed wrong ones.
    let malformed = malformed_secrets(&app, &secret).await;
    for attempt in malformed.iter().cycle().take(12) {
        assert_refused(&exchange_from(&app, &id, attempt, NOISY).await);
    }
    for _ in 0..10 {
        assert_refused(&exchange_from(&app, &id, &well_formed_guess(), GUESSER).await);
    }
    for _ in 0..3 {
        assert_throttled(&exchange_from(&app, &id, &well_formed_guess(), GUESSER).await);
    }

    // The client still works where it works, and even from the noisy address, against
    // which the malformed secrets never counted for this client.
    assert_granted(&exchange_from(&app, &id, &secret, HOME).await);
    assert_granted(&exchange_from(&app, &id, &secret, NOISY).await);
    // The guesser's address stays shut for this client, right secret or not.
    assert_throttled(&exchange_from(&app, &id, &secret, GUESSER).await);

    let events = failures(&app, 12 + 10 + 4).await;
    let throttled: Vec<&Value> = events
        .iter()
        .filter(|event| event["details"]["reason"] == "throttled")
        .collect();
    assert_eq!(throttled.len(), 4);
    assert!(throttled.iter().all(|event| event["ip"] == GUESSER));
    // Alike exchanges of one commit fold into one event, so there are two or three.
    let exchanged: Vec<Value> = app
        .wait_for_audit("action=token.exchanged", 2)
        .await
        .iter()
        .map(|event| event["ip"].clone())
        .collect();
    assert!(exchanged.contains(&json!(HOME)), "{exchanged:?}");
    assert!(exchanged.contains(&json!(NOISY)), "{exchanged:?}");
    assert!(!exchanged.contains(&json!(GUESSER)), "{exchanged:?}");
}

async fn malformed_secrets_count_against_the_address_and_never_the_client(app: TestApp) {
    app.create_tenant("acme").await;
    let (id, secret) = app.client("acme", json!({})).await;
    let malformed = malformed_secrets(&app, &secret).await;
    for attempt in malformed.iter().cycle().take(5) {
        assert_refused(&exchange_from(&app, &id, attempt, NOISY).await);
    }
    // The address reached its limit: shut for everything, the right secret included.
    assert_throttled(&exchange_from(&app, &id, &secret, NOISY).await);
    let (other_id, other_secret) = app.client("acme", json!({})).await;
    assert_throttled(&exchange_from(&app, &other_id, &other_secret, NOISY).await);
    // Five failures against the client would have shut every address it never used;
    // these five were no guess at its secret, so they did not count.
    assert_granted(&exchange_from(&app, &id, &secret, FRESH).await);
    assert_granted(&exchange_from(&app, &id, &secret, HOME).await);

    // Well-formed guesses do count against the client: five of them shut its unknown
    // addresses, but not the two it has just authenticated from.
    for _ in 0..5 {
        assert_refused(&exchange_from(&app, &id, &well_formed_guess(), GUESSER).await);
    }
    assert_throttled(&exchange_from(&app, &id, &secret, "192.0.2.45").await);
    assert_granted(&exchange_from(&app, &id, &secret, FRESH).await);
    assert_granted(&exchange_from(&app, &id, &secret, HOME).await);
}

async fn failures_from_many_addresses_slow_only_addresses_the_client_has_not_used(app: TestApp) {
    app.create_tenant("acme").await;
    let (id, secret) = app.client("acme", json!({})).await;
    assert_granted(&exchange_from(&app, &id, &secret, HOME).await);
    // Two guessers, each under the per-address limit (10), together at the client's
    // (14).
    for guesser in [GUESSER, "198.51.100.9"] {
        for _ in 0..7 {
            assert_refused(&exchange_from(&app, &id, &well_formed_guess(), guesser).await);
        }
    }
    assert_throttled(&exchange_from(&app, &id, &well_formed_guess(), GUESSER).await);
    // An address the client never used waits; the one it uses does not.
    assert_throttled(&exchange_from(&app, &id, &secret, FRESH).await);
    assert_granted(&exchange_from(&app, &id, &secret, HOME).await);
    // Other clients are not affected anywhere.
    let (other_id, other_secret) = app.client("acme", json!({})).await;
    assert_granted(&exchange_from(&app, &other_id, &other_secret, FRESH).await);
}
