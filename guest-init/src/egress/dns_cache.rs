//! The DNS stub's memory of the host's answers: name → answer for [`ANSWER_LIFETIME`], at most
//! [`MAX_CACHED_NAMES`] names (the expired ones, then the oldest, make room).

use paddock_protocol::ResolveAnswer;
use std::collections::HashMap;
use std::time::{Duration, Instant};

/// How long an answer of the host is reused.
pub const ANSWER_LIFETIME: Duration = Duration::from_secs(30);
/// Names remembered at most.
pub const MAX_CACHED_NAMES: usize = 1024;

/// Answers of the host by name.
#[derive(Debug)]
pub struct AnswerCache {
    lifetime: Duration,
    capacity: usize,
    entries: HashMap<String, (ResolveAnswer, Instant)>,
}

impl Default for AnswerCache {
    fn default() -> Self {
        Self::new(ANSWER_LIFETIME, MAX_CACHED_NAMES)
    }
}

impl AnswerCache {
    pub fn new(lifetime: Duration, capacity: usize) -> Self {
        Self {
            lifetime,
            capacity,
            entries: HashMap::new(),
        }
    }

    /// Names held (expired ones included until they make room).
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The answer for `name` if it is still fresh at `now`.
    pub fn get(&self, name: &str, now: Instant) -> Option<ResolveAnswer> {
        let (answer, stored) = self.entries.get(name)?;
        (now.saturating_duration_since(*stored) < self.lifetime).then_some(*answer)
    }

    /// Remembers `answer` for `name` from `now`.
    pub fn insert(&mut self, name: &str, answer: ResolveAnswer, now: Instant) {
        if self.capacity == 0 {
            return;
        }
        if !self.entries.contains_key(name) && self.entries.len() >= self.capacity {
            self.make_room(now);
        }
        self.entries.insert(name.to_string(), (answer, now));
    }

    /// Drops the expired entries; if none was, the oldest one.
    fn make_room(&mut self, now: Instant) {
        let lifetime = self.lifetime;
        self.entries
            .retain(|_, (_, stored)| now.saturating_duration_since(*stored) < lifetime);
        if self.entries.len() < self.capacity {
            return;
        }
        let oldest = self
            .entries
            .iter()
            .min_by_key(|(_, (_, stored))| *stored)
            .map(|(name, _)| name.clone());
        if let Some(oldest) = oldest {
            self.entries.remove(&oldest);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::Ipv4Addr;

    const ADDRESS: ResolveAnswer = ResolveAnswer::Address(Ipv4Addr::new(198, 18, 0, 7));

    #[test]
    fn answers_expire_after_their_lifetime() {
        let mut cache = AnswerCache::new(Duration::from_secs(30), 8);
        let start = Instant::now();
        cache.insert("example.com", ADDRESS, start);
        assert_eq!(
            cache.get("example.com", start + Duration::from_secs(29)),
            Some(ADDRESS)
        );
        assert_eq!(
            cache.get("example.com", start + Duration::from_secs(30)),
            None
        );
        assert_eq!(cache.get("other.com", start), None);
    }

    #[test]
    fn the_bound_holds_by_dropping_expired_then_oldest_names() {
        let mut cache = AnswerCache::new(Duration::from_secs(30), 3);
        let start = Instant::now();
        let at = |secs| start + Duration::from_secs(secs);
        cache.insert("a.com", ADDRESS, at(0));
        cache.insert("b.com", ResolveAnswer::NxDomain, at(10));
        cache.insert("c.com", ADDRESS, at(20));
        // Full, none expired: the oldest goes.
        cache.insert("d.com", ADDRESS, at(25));
        assert_eq!(cache.len(), 3);
        assert_eq!(cache.get("a.com", at(25)), None);
        assert_eq!(cache.get("b.com", at(25)), Some(ResolveAnswer::NxDomain));
        // b.com and c.com have expired by 54 (d.com not yet): both make room.
        cache.insert("e.com", ADDRESS, at(54));
        assert_eq!(cache.len(), 2);
        assert_eq!(cache.get("d.com", at(54)), Some(ADDRESS));
        assert_eq!(cache.get("e.com", at(54)), Some(ADDRESS));
        // Refreshing a held name never evicts another.
        cache.insert("e.com", ResolveAnswer::NxDomain, at(56));
        cache.insert("f.com", ADDRESS, at(56));
        cache.insert("f.com", ADDRESS, at(57));
        assert_eq!(cache.len(), 3);
        for n in 0..1000 {
            cache.insert(&format!("n{n}.com"), ADDRESS, at(58));
            assert!(cache.len() <= 3);
        }
    }
}
