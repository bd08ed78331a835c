//! A bounded, sharded, expiring map: the storage behind the verified-token cache and the
//! introspection cache.
//!
//! Policy: memory is bounded by a budget in cost units (bytes for tokens, entries for
//! introspection results), split evenly over the shards; when a shard is over budget
//! the oldest insertions go first (FIFO — cheap, and a cache of credentials has no
//! better predictor of reuse that an attacker could not game). Every entry has a
//! deadline and is never returned at or after it. Keys hash with foldhash under a
//! per-process random seed, and the shard is chosen by a second, independent seed so a
//! shard's keys still spread over its own table.

use foldhash::fast::RandomState;
use std::borrow::Borrow;
use std::collections::{HashMap, VecDeque};
use std::hash::{BuildHasher, Hash, Hasher};
use std::sync::{Mutex, MutexGuard, PoisonError};

struct Slot<V> {
    value: V,
    deadline_ms: i64,
    seq: u64,
}

struct Shard<K, V, S> {
    map: HashMap<K, Slot<V>, S>,
    /// Insertion order: key, the insertion's sequence number, its cost.
    order: VecDeque<(K, u64, usize)>,
    cost: usize,
    next_seq: u64,
}

/// See the module docs.
pub(crate) struct BoundedCache<K, V, S = RandomState> {
    shards: Box<[Mutex<Shard<K, V, S>>]>,
    shard_picker: S,
    shard_budget: usize,
}

impl<K: Hash + Eq + Clone, V: Clone, S: BuildHasher + Default> BoundedCache<K, V, S> {
    /// A cache of `shards` shards holding at most `budget` cost units in all.
    pub(crate) fn new(shards: usize, budget: usize) -> Self {
        let shards = shards.max(1);
        Self {
            shards: (0..shards)
                .map(|_| {
                    Mutex::new(Shard {
                        map: HashMap::default(),
                        order: VecDeque::new(),
                        cost: 0,
                        next_seq: 0,
                    })
                })
                .collect(),
            shard_picker: S::default(),
            shard_budget: budget / shards,
        }
    }

    fn shard<Q: Hash + ?Sized>(&self, key: &Q) -> MutexGuard<'_, Shard<K, V, S>> {
        let index = (self.shard_picker.hash_one(key) % self.shards.len() as u64) as usize;
        // A panic while holding the lock cannot leave a shard inconsistent in a way
        // that matters (worst case an entry is missing), so poisoning is ignored.
        self.shards[index]
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// The value under `key`, unless absent or past its deadline at `now_ms`.
    pub(crate) fn get<Q>(&self, key: &Q, now_ms: i64) -> Option<V>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        let mut shard = self.shard(key);
        match shard.map.get(key) {
            Some(slot) if now_ms < slot.deadline_ms => Some(slot.value.clone()),
            Some(_) => {
                shard.map.remove(key);
                None
            }
            None => None,
        }
    }

    /// Stores `value` under `key` until `deadline_ms`, evicting the oldest entries of
    /// the shard while it is over budget. Entries costing more than a whole shard's
    /// budget, or already past their deadline, are not stored.
    pub(crate) fn insert(&self, key: K, value: V, deadline_ms: i64, cost: usize, now_ms: i64) {
        if cost > self.shard_budget || deadline_ms <= now_ms {
            return;
        }
        let mut guard = self.shard(&key);
        let shard = &mut *guard;
        let seq = shard.next_seq;
        shard.next_seq += 1;
        shard.order.push_back((key.clone(), seq, cost));
        shard.cost += cost;
        shard.map.insert(
            key,
            Slot {
                value,
                deadline_ms,
                seq,
            },
        );
        while shard.cost > self.shard_budget {
            let Some((old, old_seq, old_cost)) = shard.order.pop_front() else {
                break;
            };
            shard.cost -= old_cost;
            // The key may have been re-inserted since; only its latest insertion owns
            // the map entry.
            if shard.map.get(&old).is_some_and(|slot| slot.seq == old_seq) {
                shard.map.remove(&old);
            }
        }
    }

    /// Removes `key`.
    pub(crate) fn remove<Q>(&self, key: &Q)
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        self.shard(key).map.remove(key);
    }

    /// Removes every entry whose value matches `doomed`.
    pub(crate) fn remove_where(&self, doomed: impl Fn(&V) -> bool) {
        for shard in self.shards.iter() {
            shard
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .map
                .retain(|_, slot| !doomed(&slot.value));
        }
    }
}

/// Hashes a JWT (as bytes) by its length and its last [`TokenTail::BYTES`] bytes, all
/// within its signature, instead of the whole token: equality still compares whole
/// tokens, so two tokens differing elsewhere are two entries, only in one bucket. Only
/// verified tokens are stored, and a forger cannot make many with one signature.
#[derive(Clone, Default)]
pub(crate) struct TokenTail(RandomState);

impl TokenTail {
    /// 32 base64url characters, 192 bits of the signature; the shortest signature
    /// latchkey accepts (ES256, 64 bytes) is 86.
    const BYTES: usize = 32;
}

impl BuildHasher for TokenTail {
    type Hasher = TokenTailHasher;

    fn build_hasher(&self) -> TokenTailHasher {
        TokenTailHasher(self.0.build_hasher())
    }
}

/// See [`TokenTail`].
pub(crate) struct TokenTailHasher(<RandomState as BuildHasher>::Hasher);

impl Hasher for TokenTailHasher {
    fn finish(&self) -> u64 {
        self.0.finish()
    }

    fn write(&mut self, bytes: &[u8]) {
        let tail = bytes.len().saturating_sub(TokenTail::BYTES);
        self.0.write(bytes.get(tail..).unwrap_or(bytes));
    }

    fn write_usize(&mut self, n: usize) {
        self.0.write_usize(n);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[test]
    fn entries_vanish_at_their_deadline() {
        let cache = BoundedCache::<_, _>::new(1, 10);
        cache.insert("a", 1, 100, 1, 0);
        assert_eq!(cache.get("a", 99), Some(1));
        assert_eq!(cache.get("a", 100), None);
        assert_eq!(cache.get("a", 0), None, "removed once seen expired");
    }

    #[test]
    fn the_oldest_entries_go_first_when_over_budget() {
        let cache = BoundedCache::<_, _>::new(1, 3);
        for (i, key) in ["a", "b", "c", "d"].into_iter().enumerate() {
            cache.insert(key, i, 1000, 1, 0);
        }
        assert_eq!(cache.get("a", 0), None);
        assert_eq!(cache.get("d", 0), Some(3));
        // Re-inserting refreshes the value without the stale order entry evicting it.
        cache.insert("b", 9, 1000, 1, 0);
        cache.insert("e", 4, 1000, 1, 0);
        assert_eq!(cache.get("b", 0), Some(9));
        cache.insert("f", 5, 1000, 1, 0);
        cache.insert("g", 6, 1000, 1, 0);
        assert_eq!(cache.get("c", 0), None);
    }

    #[test]
    fn tokens_sharing_a_tail_are_still_told_apart() {
        let cache: BoundedCache<Arc<[u8]>, u32, TokenTail> = BoundedCache::new(4, 1000);
        let tail = "s".repeat(86);
        let good = format!("h.good.{tail}");
        let forged = format!("h.evil.{tail}");
        cache.insert(Arc::from(good.as_bytes()), 1, 1000, 1, 0);
        assert_eq!(cache.get(good.as_bytes(), 0), Some(1));
        assert_eq!(cache.get(forged.as_bytes(), 0), None);
        cache.remove(forged.as_bytes());
        assert_eq!(cache.get(good.as_bytes(), 0), Some(1));
        let build = TokenTail::default();
        assert_eq!(
            build.hash_one(good.as_bytes()),
            build.hash_one(Arc::<[u8]>::from(good.as_bytes()))
        );
        let other = format!("h.good.{}t", "s".repeat(85));
        assert_ne!(
            build.hash_one(good.as_bytes()),
            build.hash_one(other.as_bytes())
        );
    }

    #[test]
    fn oversized_or_expired_entries_are_not_stored() {
        let cache = BoundedCache::<_, _>::new(2, 10);
        cache.insert("big", 1, 1000, 6, 0);
        cache.insert("old", 1, 5, 1, 5);
        assert_eq!(cache.get("big", 0), None);
        assert_eq!(cache.get("old", 0), None);
    }
}
