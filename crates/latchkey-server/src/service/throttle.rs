//! Throttling of failed client authentications, in fixed one-minute windows, so that
//! guessing is slow and a stranger cannot lock a client out (docs/API.md, "Failed
//! authentications").
//!
//! Three buckets count failures:
//! - **per address**: every failure from an IP, whatever it presented;
//! - **per client and address**: failures from one IP against one client id;
//! - **per client**: failures against one client id from any address.
//!
//! A client id is the `sub` of every access token, so it is no secret. Only a guess at
//! its secret counts against it: a well-formed client secret (right prefix, type, length
//! and checksum) under a well-formed client id. Anything else (garbage, a typo the
//! checksum catches, an api key) counts against the address alone. The checksum is
//! public, though, so well-formed wrong secrets are the real attack; they fill the
//! per-client-and-address bucket of the stranger's own address, and the per-client bucket
//! never blocks an address that authenticated as that client in the last day. A client
//! keeps working from where it usually works while its attacker is refused.
//!
//! Only failures count, and every map is bounded: when one is full of live entries, new
//! keys go uncounted rather than grow it (an attacker able to fill 100,000 live windows
//! in a minute has that many addresses anyway). The IP is the client's as
//! the HTTP layer finds it (`trusted_proxies`), so clients behind a trusted proxy are counted
//! apart rather than as the proxy.

use latchkey_core::TokenId;
use std::collections::HashMap;
use std::collections::hash_map::Entry;
use std::hash::Hash;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

const WINDOW: Duration = Duration::from_secs(60);
/// How long a successful authentication vouches for its address.
const KNOWN_FOR: Duration = Duration::from_secs(86_400);
const MAX_TRACKED: usize = 100_000;

/// How many failures a minute each bucket allows before it answers 429.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Per client id and address (`client_failures_per_minute`).
    pub client_per_address: u32,
    /// Per client id from all addresses together
    /// (`client_failures_all_addresses_per_minute`).
    pub client_all_addresses: u32,
    /// Per address (`ip_failures_per_minute`).
    pub ip: u32,
}

/// A client id at an address; no address when the server has no connect info.
type Pair = (TokenId, Option<IpAddr>);

/// Failure counters and the addresses each client authenticated from lately.
pub struct Throttle {
    per_ip: Mutex<Bounded<IpAddr, Window>>,
    per_pair: Mutex<Bounded<Pair, Window>>,
    per_client: Mutex<Bounded<TokenId, Window>>,
    known: Mutex<Bounded<Pair, Instant>>,
    limits: Limits,
}

#[derive(Clone, Copy)]
struct Window {
    started: Instant,
    failures: u32,
}

impl Throttle {
    /// Empty counters with these limits.
    pub fn new(limits: Limits) -> Self {
        Self {
            per_ip: Mutex::new(Bounded::default()),
            per_pair: Mutex::new(Bounded::default()),
            per_client: Mutex::new(Bounded::default()),
            known: Mutex::new(Bounded::default()),
            limits,
        }
    }

    /// `Some(seconds to wait)` when the address, the client at this address, or the
    /// client everywhere (unless this address is one it authenticated from lately) is
    /// over its limit. `client` is the presented client id when it is a well-formed one.
    pub fn blocked(&self, client: Option<TokenId>, ip: Option<IpAddr>) -> Option<u64> {
        self.blocked_at(client, ip, Instant::now())
    }

    fn blocked_at(&self, client: Option<TokenId>, ip: Option<IpAddr>, now: Instant) -> Option<u64> {
        let by_ip = ip.and_then(|ip| lookup(&self.per_ip, &ip, now, self.limits.ip));
        let by_pair = client.and_then(|client| {
            lookup(
                &self.per_pair,
                &(client, ip),
                now,
                self.limits.client_per_address,
            )
        });
        let by_client = client
            .filter(|&client| !self.is_known(client, ip, now))
            .and_then(|client| {
                lookup(
                    &self.per_client,
                    &client,
                    now,
                    self.limits.client_all_addresses,
                )
            });
        by_ip.max(by_pair).max(by_client)
    }

    /// Counts one failed authentication from `ip`, and against `guessed` when the
    /// attempt was a guess at that client's secret (see the module docs).
    pub fn failed(&self, guessed: Option<TokenId>, ip: Option<IpAddr>) {
        self.failed_at(guessed, ip, Instant::now());
    }

    fn failed_at(&self, guessed: Option<TokenId>, ip: Option<IpAddr>, now: Instant) {
        if let Some(ip) = ip {
            bump(&self.per_ip, ip, now);
        }
        if let Some(client) = guessed {
            bump(&self.per_pair, (client, ip), now);
            bump(&self.per_client, client, now);
        }
    }

    /// Remembers that `client` authenticated from `ip`, which the per-client bucket will
    /// not block for a day.
    pub fn succeeded(&self, client: TokenId, ip: Option<IpAddr>) {
        self.succeeded_at(client, ip, Instant::now());
    }

    fn succeeded_at(&self, client: TokenId, ip: Option<IpAddr>, now: Instant) {
        let Ok(mut known) = self.known.lock() else {
            return;
        };
        if !known.make_room(&(client, ip), now, |at| {
            now.saturating_duration_since(*at) < KNOWN_FOR
        }) {
            // Still full of fresh addresses: one goes, since only a client holding its
            // secret can add one.
            let any = known.keys().next().copied();
            if let Some(any) = any {
                known.remove(&any);
            }
        }
        known.insert((client, ip), now);
    }

    fn is_known(&self, client: TokenId, ip: Option<IpAddr>, now: Instant) -> bool {
        self.known.lock().is_ok_and(|known| {
            known
                .get(&(client, ip))
                .is_some_and(|at| now.saturating_duration_since(*at) < KNOWN_FOR)
        })
    }
}

/// A limit on every request from one address to an endpoint anyone may call without
/// credentials (`POST /v1/leaks`, docs/API.md, "Leak reports"): its answers are all the
/// same, so there are no failures to count, only requests. In the same bounded
/// one-minute windows as the failure buckets.
pub struct RequestLimit {
    per_ip: Mutex<Bounded<IpAddr, Window>>,
    limit: u32,
}

impl RequestLimit {
    /// At most `limit` requests a minute from one address.
    pub fn new(limit: u32) -> Self {
        Self {
            per_ip: Mutex::new(Bounded::default()),
            limit,
        }
    }

    /// Counts one request from `ip`: `Some(seconds to wait)` when the address has had
    /// its `limit` this minute (the refused request is not counted). An unknown address
    /// (no connect info) is never limited.
    pub fn take(&self, ip: Option<IpAddr>) -> Option<u64> {
        self.take_at(ip, Instant::now())
    }

    fn take_at(&self, ip: Option<IpAddr>, now: Instant) -> Option<u64> {
        let ip = ip?;
        if let Some(wait) = lookup(&self.per_ip, &ip, now, self.limit) {
            return Some(wait);
        }
        bump(&self.per_ip, ip, now);
        None
    }
}

/// A map of at most [`MAX_TRACKED`] keys. When it is full, dropping its stale entries
/// walks all of them, so that walk runs at most once per [`PURGE_INTERVAL`]: a flood of
/// new keys (random client ids, many addresses) cannot make every request pay for it
/// under the lock that every authentication takes.
struct Bounded<K, V> {
    map: HashMap<K, V>,
    purged: Option<Instant>,
}

/// The least time between two walks of a full map.
const PURGE_INTERVAL: Duration = Duration::from_secs(1);

impl<K, V> Default for Bounded<K, V> {
    fn default() -> Self {
        Self {
            map: HashMap::new(),
            purged: None,
        }
    }
}

impl<K: Hash + Eq, V> Bounded<K, V> {
    /// Whether `key` fits: it is held already, or there is room, or a walk (when one is
    /// due) dropped what `fresh` says is stale.
    fn make_room(&mut self, key: &K, now: Instant, fresh: impl Fn(&V) -> bool) -> bool {
        if self.map.len() < MAX_TRACKED || self.map.contains_key(key) {
            return true;
        }
        let due = self
            .purged
            .is_none_or(|at| now.saturating_duration_since(at) >= PURGE_INTERVAL);
        if due {
            self.purged = Some(now);
            self.map.retain(|_, value| fresh(value));
        }
        self.map.len() < MAX_TRACKED
    }
}

impl<K, V> std::ops::Deref for Bounded<K, V> {
    type Target = HashMap<K, V>;

    fn deref(&self) -> &Self::Target {
        &self.map
    }
}

impl<K, V> std::ops::DerefMut for Bounded<K, V> {
    fn deref_mut(&mut self) -> &mut Self::Target {
        &mut self.map
    }
}

/// Seconds to wait when `key`'s window has reached `limit` failures.
fn lookup<K: Hash + Eq>(
    map: &Mutex<Bounded<K, Window>>,
    key: &K,
    now: Instant,
    limit: u32,
) -> Option<u64> {
    let window = *map.lock().ok()?.get(key)?;
    let elapsed = now.saturating_duration_since(window.started);
    if elapsed >= WINDOW || window.failures < limit {
        return None;
    }
    Some((WINDOW - elapsed).as_secs().max(1))
}

fn bump<K: Hash + Eq>(map: &Mutex<Bounded<K, Window>>, key: K, now: Instant) {
    let Ok(mut map) = map.lock() else {
        return;
    };
    if !map.make_room(&key, now, |w| {
        now.saturating_duration_since(w.started) < WINDOW
    }) {
        return;
    }
    let fresh = Window {
        started: now,
        failures: 0,
    };
    let window = match map.entry(key) {
        Entry::Occupied(entry) => entry.into_mut(),
        Entry::Vacant(entry) => entry.insert(fresh),
    };
    if now.saturating_duration_since(window.started) >= WINDOW {
        *window = fresh;
    }
    window.failures = window.failures.saturating_add(1);
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIMITS: Limits = Limits {
        client_per_address: 3,
        client_all_addresses: 5,
        ip: 100,
    };

    fn ip(text: &str) -> Option<IpAddr> {
        Some(text.parse().unwrap())
    }

    fn client(n: u128) -> TokenId {
        TokenId::from_u128(n)
    }

    #[test]
    fn a_client_is_blocked_at_an_address_after_its_limit_and_elsewhere_is_not() {
        let throttle = Throttle::new(LIMITS);
        let (a, b) = (client(1), client(2));
        for _ in 0..3 {
            assert_eq!(throttle.blocked(Some(a), ip("192.0.2.1")), None);
            throttle.failed(Some(a), ip("192.0.2.1"));
        }
        let wait = throttle.blocked(Some(a), ip("192.0.2.1")).unwrap();
        assert!((1..=60).contains(&wait));
        assert_eq!(throttle.blocked(Some(a), ip("192.0.2.2")), None);
        assert_eq!(throttle.blocked(Some(b), ip("192.0.2.1")), None);
    }

    #[test]
    fn an_address_is_blocked_after_its_limit_whatever_it_presents() {
        let throttle = Throttle::new(Limits { ip: 2, ..LIMITS });
        throttle.failed(None, ip("10.0.0.1"));
        throttle.failed(None, ip("10.0.0.1"));
        assert!(throttle.blocked(None, ip("10.0.0.1")).is_some());
        assert!(throttle.blocked(Some(client(1)), ip("10.0.0.1")).is_some());
        assert!(throttle.blocked(Some(client(1)), ip("10.0.0.2")).is_none());
    }

    #[test]
    fn failures_that_were_no_guess_never_count_against_the_client() {
        let throttle = Throttle::new(LIMITS);
        for _ in 0..50 {
            throttle.failed(None, ip("192.0.2.1"));
        }
        assert_eq!(throttle.blocked(Some(client(1)), ip("192.0.2.1")), None);
    }

    #[test]
    fn the_client_wide_limit_spares_addresses_the_client_used_lately() {
        let throttle = Throttle::new(LIMITS);
        let now = Instant::now();
        let victim = client(7);
        throttle.succeeded_at(victim, ip("203.0.113.9"), now);
        // Two strangers, each under the per-address limit, together over the client's.
        for stranger in ["198.51.100.1", "198.51.100.2"] {
            for _ in 0..3 {
                throttle.failed_at(Some(victim), ip(stranger), now);
            }
        }
        assert!(
            throttle
                .blocked_at(Some(victim), ip("198.51.100.1"), now)
                .is_some()
        );
        assert!(
            throttle
                .blocked_at(Some(victim), ip("192.0.2.50"), now)
                .is_some()
        );
        assert_eq!(
            throttle.blocked_at(Some(victim), ip("203.0.113.9"), now),
            None
        );
        // The vouching lasts a day, the block a minute.
        let later = now + KNOWN_FOR;
        throttle.failed_at(Some(victim), ip("198.51.100.3"), later);
        for _ in 0..5 {
            throttle.failed_at(Some(victim), ip("198.51.100.10"), later);
        }
        assert!(
            throttle
                .blocked_at(Some(victim), ip("203.0.113.9"), later)
                .is_some()
        );
        let after = later + WINDOW;
        assert_eq!(
            throttle.blocked_at(Some(victim), ip("192.0.2.50"), after),
            None
        );
    }

    #[test]
    fn a_request_limit_counts_every_request_per_address_for_a_minute() {
        let limit = RequestLimit::new(2);
        let now = Instant::now();
        assert_eq!(limit.take_at(ip("192.0.2.1"), now), None);
        assert_eq!(limit.take_at(ip("192.0.2.1"), now), None);
        assert_eq!(limit.take_at(ip("192.0.2.1"), now), Some(60));
        // Another address has its own window; no address is never limited.
        assert_eq!(limit.take_at(ip("192.0.2.2"), now), None);
        for _ in 0..5 {
            assert_eq!(limit.take_at(None, now), None);
        }
        assert_eq!(limit.take_at(ip("192.0.2.1"), now + WINDOW / 4), Some(45));
        assert_eq!(limit.take_at(ip("192.0.2.1"), now + WINDOW), None);
    }

    #[test]
    fn a_window_starts_afresh_after_a_minute() {
        let throttle = Throttle::new(LIMITS);
        let now = Instant::now();
        for _ in 0..3 {
            throttle.failed_at(Some(client(1)), ip("192.0.2.1"), now);
        }
        assert_eq!(
            throttle.blocked_at(Some(client(1)), ip("192.0.2.1"), now + WINDOW / 2),
            Some(30)
        );
        let next = now + WINDOW;
        assert_eq!(
            throttle.blocked_at(Some(client(1)), ip("192.0.2.1"), next),
            None
        );
        throttle.failed_at(Some(client(1)), ip("192.0.2.1"), next);
        assert_eq!(
            throttle.blocked_at(Some(client(1)), ip("192.0.2.1"), next),
            None
        );
    }

    #[test]
    fn the_maps_never_grow_past_their_bound() {
        let throttle = Throttle::new(LIMITS);
        let now = Instant::now();
        for n in 0..(MAX_TRACKED as u128 + 10) {
            let address = IpAddr::from(std::net::Ipv6Addr::from(n));
            throttle.failed_at(Some(client(n)), Some(address), now);
            throttle.succeeded_at(client(n), Some(address), now);
        }
        assert_eq!(throttle.per_ip.lock().unwrap().len(), MAX_TRACKED);
        assert_eq!(throttle.per_pair.lock().unwrap().len(), MAX_TRACKED);
        assert_eq!(throttle.per_client.lock().unwrap().len(), MAX_TRACKED);
        assert_eq!(throttle.known.lock().unwrap().len(), MAX_TRACKED);
        // Once the windows are over, new keys are counted again.
        let later = now + WINDOW;
        let fresh = ip("192.0.2.1");
        for _ in 0..3 {
            throttle.failed_at(Some(client(u128::MAX)), fresh, later);
        }
        assert!(
            throttle
                .blocked_at(Some(client(u128::MAX)), fresh, later)
                .is_some()
        );
        assert!(throttle.per_ip.lock().unwrap().len() < MAX_TRACKED);
    }

    #[test]
    fn a_full_map_is_walked_at_most_once_a_second_however_many_new_keys_arrive() {
        let mut map: Bounded<u128, Instant> = Bounded::default();
        let start = Instant::now();
        for n in 0..MAX_TRACKED as u128 {
            map.insert(n, start);
        }
        let fresh_for_a_minute =
            |now: Instant| move |at: &Instant| now.saturating_duration_since(*at) < WINDOW;
        // Just before the entries go stale: a walk, which frees nothing.
        let before = start + WINDOW - Duration::from_millis(500);
        assert!(!map.make_room(&u128::MAX, before, fresh_for_a_minute(before)));
        // Half a second later everything is stale, but no walk is due yet.
        let stale = start + WINDOW;
        assert!(!map.make_room(&u128::MAX, stale, fresh_for_a_minute(stale)));
        assert_eq!(map.len(), MAX_TRACKED);
        // A held key always fits; a second after the last walk, the next one frees room.
        assert!(map.make_room(&7, stale, fresh_for_a_minute(stale)));
        let due = before + PURGE_INTERVAL;
        assert!(map.make_room(&u128::MAX, due, fresh_for_a_minute(due)));
        assert!(map.is_empty());
    }
}
