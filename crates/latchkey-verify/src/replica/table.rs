//! The replica's deny table: revoked token ids and `jti`s, looked up on every request.
//!
//! Policy: subjects are UUIDs (token ids and the `jti`s latchkey issues), kept as 128-bit
//! keys in hash maps split into shards behind read-write locks, so a lookup is one hash
//! and one probe under an uncontended read lock, and applying an entry blocks only one
//! shard. A slot is 24 bytes (key, expiry in unix seconds, which kinds of entry name
//! it), so a million entries take about 50 MiB. A `jti` that is not a UUID — latchkey
//! issues none, but the feed does not promise it — goes to a small side map by text
//! rather than being dropped: a revocation is never silently ignored.

use foldhash::fast::RandomState;
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{PoisonError, RwLock};

/// Shards of the table; a power of two.
const SHARDS: usize = 16;

/// The entry names a token id: every JWT with that `client_id`, and the api key.
pub(crate) const TOKEN: u8 = 1;
/// The entry names one JWT by its `jti`.
pub(crate) const JTI: u8 = 2;

/// Unix seconds meaning "never expires".
pub(crate) const NEVER: u32 = u32::MAX;

/// A UUID as two words: 8-byte alignment keeps a slot at 24 bytes, where `u128`'s
/// 16-byte alignment would pad it to 32.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
struct Key(u64, u64);

impl Key {
    fn new(value: u128) -> Self {
        // The halves of the u128: the truncation is the point.
        Self((value >> 64) as u64, value as u64)
    }

    /// Token ids and `jti`s are random (v4) or end in random bits (v7), so the low bits
    /// spread the shards evenly without hashing twice.
    fn shard(self) -> usize {
        (self.1 as usize) & (SHARDS - 1)
    }
}

#[derive(Debug, Clone, Copy)]
struct Slot {
    /// Unix seconds after which the entry may be dropped, or [`NEVER`].
    expires: u32,
    /// [`TOKEN`], [`JTI`] or both.
    kinds: u8,
}

impl Slot {
    fn merge(&mut self, kind: u8, expires: u32) {
        self.kinds |= kind;
        self.expires = self.expires.max(expires);
    }
}

type Map<K> = HashMap<K, Slot, RandomState>;

/// The sharded table.
pub(crate) struct Table {
    shards: Box<[RwLock<Map<Key>>]>,
    /// `jti`s that are not UUIDs, by text.
    texts: RwLock<Map<Box<str>>>,
    has_texts: AtomicBool,
    len: AtomicUsize,
}

impl Table {
    pub(crate) fn new() -> Self {
        Self {
            shards: (0..SHARDS).map(|_| RwLock::new(Map::default())).collect(),
            texts: RwLock::new(Map::default()),
            has_texts: AtomicBool::new(false),
            len: AtomicUsize::new(0),
        }
    }

    /// Adds `subject` as a `kind` entry that matters until `expires`.
    pub(crate) fn insert(&self, subject: &str, kind: u8, expires: u32) {
        let slot = Slot {
            expires,
            kinds: kind,
        };
        let added = match uuid::Uuid::try_parse(subject) {
            Ok(uuid) => {
                let key = Key::new(uuid.as_u128());
                let mut shard = write(&self.shards[key.shard()]);
                upsert(&mut shard, key, slot)
            }
            Err(_) => {
                let mut texts = write(&self.texts);
                self.has_texts.store(true, Ordering::Release);
                upsert(&mut texts, Box::from(subject), slot)
            }
        };
        if added {
            self.len.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Whether `id` is on the table as a `kind` entry.
    pub(crate) fn contains(&self, id: u128, kind: u8) -> bool {
        let key = Key::new(id);
        read(&self.shards[key.shard()])
            .get(&key)
            .is_some_and(|slot| slot.kinds & kind != 0)
    }

    /// Whether the JWT whose `jti` is `jti` is on the table.
    pub(crate) fn contains_jti(&self, jti: &str) -> bool {
        match uuid::Uuid::try_parse(jti) {
            Ok(uuid) if self.contains(uuid.as_u128(), JTI) => true,
            _ if self.has_texts.load(Ordering::Acquire) => read(&self.texts)
                .get(jti)
                .is_some_and(|slot| slot.kinds & JTI != 0),
            _ => false,
        }
    }

    /// Drops the entries that expired before `now` (unix seconds); returns how many.
    pub(crate) fn prune(&self, now: u32) -> usize {
        let mut removed = 0;
        for shard in self.shards.iter() {
            removed += retain_live(&mut write(shard), now);
        }
        removed += retain_live(&mut write(&self.texts), now);
        self.len.fetch_sub(removed, Ordering::Relaxed);
        removed
    }

    pub(crate) fn len(&self) -> usize {
        self.len.load(Ordering::Relaxed)
    }

    /// The memory the maps hold, in bytes: buckets times (slot plus control byte). Side
    /// map text and allocator overhead are not counted.
    pub(crate) fn memory_bytes(&self) -> usize {
        let uuid_bytes: usize = self
            .shards
            .iter()
            .map(|shard| table_bytes::<Key>(read(shard).capacity()))
            .sum();
        uuid_bytes + table_bytes::<Box<str>>(read(&self.texts).capacity())
    }
}

fn upsert<K: Eq + std::hash::Hash>(map: &mut Map<K>, key: K, slot: Slot) -> bool {
    match map.get_mut(&key) {
        Some(existing) => {
            existing.merge(slot.kinds, slot.expires);
            false
        }
        None => {
            map.insert(key, slot);
            true
        }
    }
}

fn retain_live<K: Eq + std::hash::Hash>(map: &mut Map<K>, now: u32) -> usize {
    let before = map.len();
    map.retain(|_, slot| slot.expires >= now);
    if map.capacity() > 4 * map.len().max(64) {
        map.shrink_to_fit();
    }
    before - map.len()
}

/// The bytes of a hashbrown table of this capacity: it keeps 7/8 of a power-of-two
/// bucket count usable, with one control byte per bucket.
fn table_bytes<K>(capacity: usize) -> usize {
    if capacity == 0 {
        return 0;
    }
    let buckets = (capacity.saturating_mul(8) / 7).next_power_of_two();
    buckets * (size_of::<(K, Slot)>() + 1)
}

fn read<T>(lock: &RwLock<T>) -> std::sync::RwLockReadGuard<'_, T> {
    lock.read().unwrap_or_else(PoisonError::into_inner)
}

fn write<T>(lock: &RwLock<T>) -> std::sync::RwLockWriteGuard<'_, T> {
    lock.write().unwrap_or_else(PoisonError::into_inner)
}

#[cfg(test)]
mod tests {
    use super::*;

    const ID: &str = "0b9f6c1e-3c1a-4f7e-9b51-8a2f7d0e4c11";

    fn value(text: &str) -> u128 {
        uuid::Uuid::try_parse(text).unwrap().as_u128()
    }

    #[test]
    fn a_slot_is_24_bytes() {
        assert_eq!(size_of::<(Key, Slot)>(), 24);
    }

    #[test]
    fn kinds_are_kept_apart_and_merged() {
        let table = Table::new();
        table.insert(ID, TOKEN, NEVER);
        assert!(table.contains(value(ID), TOKEN));
        assert!(!table.contains_jti(ID), "a token entry is not a jti entry");
        table.insert(ID, JTI, 10);
        assert!(table.contains_jti(ID));
        assert_eq!(table.len(), 1);
        assert_eq!(table.prune(11), 0, "the later expiry wins");
    }

    #[test]
    fn a_jti_that_is_not_a_uuid_is_kept_by_text() {
        let table = Table::new();
        assert!(!table.contains_jti("j-1"));
        table.insert("j-1", JTI, NEVER);
        assert!(table.contains_jti("j-1"));
        assert!(!table.contains_jti("j-2"));
        assert!(!table.contains_jti(ID));
    }

    #[test]
    fn pruning_drops_only_what_expired() {
        let table = Table::new();
        table.insert(ID, TOKEN, 100);
        table.insert("5f1c2b7e-8d1a-4c3e-9f0b-2a6d4e8c1b37", JTI, 200);
        table.insert("j", JTI, 50);
        assert_eq!(table.prune(150), 2);
        assert_eq!(table.len(), 1);
        assert!(!table.contains(value(ID), TOKEN));
        assert!(table.contains_jti("5f1c2b7e-8d1a-4c3e-9f0b-2a6d4e8c1b37"));
    }
}
