//! The replay cache of DPoP proofs: each proof's key is remembered until the window
//! would refuse the proof anyway, and a second use inside it is refused.
//!
//! Policy: memory is bounded by a number of entries (each a 16-byte digest and a
//! deadline, about 64 bytes with the map and the expiry queue), split over shards.
//! Expired entries are dropped as new ones come. A shard that is full of live entries
//! refuses new proofs rather than forgetting old ones: forgetting would let a captured
//! proof be replayed, so the cache fails closed and says so in the log.

use foldhash::fast::RandomState;
use std::collections::{HashMap, VecDeque};
use std::hash::BuildHasher;
use std::sync::{Mutex, PoisonError};

const SHARDS: usize = 16;

#[derive(Default)]
struct Shard {
    seen: HashMap<[u8; 16], i64, RandomState>,
    /// Key and deadline, in insertion order; deadlines are nearly in order, so pruning
    /// from the front frees almost everything that has expired.
    order: VecDeque<([u8; 16], i64)>,
}

/// What [`ReplayCache::first_use`] found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Seen {
    /// Not seen within its window; now remembered.
    First,
    /// Seen before: a replay.
    Again,
    /// The cache is full of live entries, so the proof cannot be remembered.
    Full,
}

/// See the module docs.
pub struct ReplayCache {
    shards: Box<[Mutex<Shard>]>,
    picker: RandomState,
    per_shard: usize,
}

impl std::fmt::Debug for ReplayCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReplayCache")
            .field("capacity", &(self.per_shard * self.shards.len()))
            .finish_non_exhaustive()
    }
}

impl ReplayCache {
    /// A cache holding at most `capacity` live proofs (at least one per shard).
    pub fn new(capacity: usize) -> Self {
        Self {
            shards: (0..SHARDS).map(|_| Mutex::new(Shard::default())).collect(),
            picker: RandomState::default(),
            per_shard: capacity.div_ceil(SHARDS).max(1),
        }
    }

    /// Remembers `key` until `deadline_ms` unless it is remembered already.
    pub fn first_use(&self, key: &[u8; 32], deadline_ms: i64, now_ms: i64) -> Seen {
        let mut short = [0u8; 16];
        short.copy_from_slice(&key[..16]);
        let index = (self.picker.hash_one(short) % self.shards.len() as u64) as usize;
        let mut shard = self.shards[index]
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if let Some(&deadline) = shard.seen.get(&short)
            && deadline > now_ms
        {
            return Seen::Again;
        }
        while let Some(&(old, deadline)) = shard.order.front() {
            if deadline > now_ms && shard.order.len() < self.per_shard {
                break;
            }
            if deadline > now_ms {
                // Full of entries still live at the front: look for expired ones
                // behind them before giving up.
                shard.order.retain(|(_, deadline)| *deadline > now_ms);
                let Shard { seen, order } = &mut *shard;
                seen.retain(|_, deadline| *deadline > now_ms);
                if order.len() >= self.per_shard {
                    tracing::warn!(
                        capacity = self.per_shard * self.shards.len(),
                        "the DPoP replay cache is full; refusing proofs until entries expire"
                    );
                    return Seen::Full;
                }
                break;
            }
            shard.order.pop_front();
            if shard.seen.get(&old) == Some(&deadline) {
                shard.seen.remove(&old);
            }
        }
        shard.seen.insert(short, deadline_ms);
        shard.order.push_back((short, deadline_ms));
        Seen::First
    }

    /// How many proofs are remembered (live or not yet pruned).
    pub fn len(&self) -> usize {
        self.shards
            .iter()
            .map(|shard| {
                shard
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .seen
                    .len()
            })
            .sum()
    }

    /// True when nothing is remembered.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(n: u8) -> [u8; 32] {
        [n; 32]
    }

    #[test]
    fn a_key_is_refused_a_second_time_until_its_deadline() {
        let cache = ReplayCache::new(100);
        assert_eq!(cache.first_use(&key(1), 1_000, 0), Seen::First);
        assert_eq!(cache.first_use(&key(1), 1_000, 999), Seen::Again);
        assert_eq!(cache.first_use(&key(2), 1_000, 999), Seen::First);
        // Past the deadline the window refuses the proof anyway; the slot is reused.
        assert_eq!(cache.first_use(&key(1), 3_000, 1_000), Seen::First);
    }

    #[test]
    fn a_full_cache_refuses_rather_than_forgets_and_recovers_as_entries_expire() {
        let cache = ReplayCache::new(16);
        let mut full = false;
        for n in 0..=255u8 {
            match cache.first_use(&key(n), 1_000, 0) {
                Seen::First => {}
                Seen::Full => {
                    full = true;
                    break;
                }
                Seen::Again => panic!("fresh key {n} seen again"),
            }
        }
        assert!(full, "capacity is bounded");
        assert!(cache.len() <= 16 + SHARDS);
        // Nothing remembered was forgotten.
        assert_eq!(cache.first_use(&key(0), 1_000, 10), Seen::Again);
        // Once the entries expire, new proofs are remembered again, and so is an old
        // one once what came after it has expired too: the two keys may share a shard,
        // which holds one live entry at this capacity.
        assert_eq!(cache.first_use(&key(200), 5_000, 1_000), Seen::First);
        assert_eq!(cache.first_use(&key(0), 9_000, 5_000), Seen::First);
    }
}
