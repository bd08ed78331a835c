//! Throttling of failed client authentications: per client id and per client IP, in
//! fixed one-minute windows. Only failures count, so a client with the right secret is
//! never slowed by someone else's guessing, unless they share an address that itself
//! crossed the (higher) per-IP limit. The IP is the client's as
//! [`crate::extract::client_ip`] finds it, so clients behind a trusted proxy are counted
//! apart rather than as the proxy.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

const WINDOW: Duration = Duration::from_secs(60);
const MAX_TRACKED: usize = 100_000;

/// Failure counters.
pub struct Throttle {
    per_client: Mutex<HashMap<String, Window>>,
    per_ip: Mutex<HashMap<IpAddr, Window>>,
    client_limit: u32,
    ip_limit: u32,
}

#[derive(Clone, Copy)]
struct Window {
    started: Instant,
    failures: u32,
}

impl Throttle {
    /// At most `client_limit` failures per client id and `ip_limit` per IP a minute.
    pub fn new(client_limit: u32, ip_limit: u32) -> Self {
        Self {
            per_client: Mutex::new(HashMap::new()),
            per_ip: Mutex::new(HashMap::new()),
            client_limit,
            ip_limit,
        }
    }

    /// `Some(seconds to wait)` when the client id or the IP is over its limit.
    pub fn blocked(&self, client: &str, ip: Option<IpAddr>) -> Option<u64> {
        let by_client = self
            .per_client
            .lock()
            .ok()
            .and_then(|map| wait(map.get(client), self.client_limit));
        let by_ip = ip.and_then(|ip| {
            self.per_ip
                .lock()
                .ok()
                .and_then(|map| wait(map.get(&ip), self.ip_limit))
        });
        by_client.max(by_ip)
    }

    /// Counts one failed authentication.
    pub fn failed(&self, client: &str, ip: Option<IpAddr>) {
        if let Ok(mut map) = self.per_client.lock() {
            bump(&mut map, client.chars().take(64).collect());
        }
        if let (Some(ip), Ok(mut map)) = (ip, self.per_ip.lock()) {
            bump(&mut map, ip);
        }
    }
}

fn wait(window: Option<&Window>, limit: u32) -> Option<u64> {
    let window = window?;
    let elapsed = window.started.elapsed();
    if elapsed >= WINDOW || window.failures < limit {
        return None;
    }
    Some((WINDOW - elapsed).as_secs().max(1))
}

fn bump<K: std::hash::Hash + Eq>(map: &mut HashMap<K, Window>, key: K) {
    if map.len() >= MAX_TRACKED {
        map.retain(|_, w| w.started.elapsed() < WINDOW);
    }
    let now = Instant::now();
    let window = map.entry(key).or_insert(Window {
        started: now,
        failures: 0,
    });
    if window.started.elapsed() >= WINDOW {
        *window = Window {
            started: now,
            failures: 0,
        };
    }
    window.failures = window.failures.saturating_add(1);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_client_is_blocked_after_its_limit_and_others_are_not() {
        let throttle = Throttle::new(3, 100);
        let ip: IpAddr = "127.0.0.1".parse().unwrap();
        for _ in 0..3 {
            assert_eq!(throttle.blocked("a", Some(ip)), None);
            throttle.failed("a", Some(ip));
        }
        let wait = throttle.blocked("a", Some(ip)).unwrap();
        assert!((1..=60).contains(&wait));
        assert_eq!(throttle.blocked("b", Some(ip)), None);
    }

    #[test]
    fn an_address_is_blocked_after_its_limit() {
        let throttle = Throttle::new(100, 2);
        let ip: IpAddr = "10.0.0.1".parse().unwrap();
        throttle.failed("a", Some(ip));
        throttle.failed("b", Some(ip));
        assert!(throttle.blocked("c", Some(ip)).is_some());
        assert!(
            throttle
                .blocked("c", Some("10.0.0.2".parse().unwrap()))
                .is_none()
        );
    }
}
