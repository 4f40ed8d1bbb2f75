//! Per-sender lanes (README: "The request"): one sender's stanzas are handled one after another, so its
//! replies leave in the order its stanzas arrived; different senders are handled concurrently.

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;

/// Work queued per key. A key with an entry is busy: a task is working through its queue.
#[derive(Debug)]
pub struct Lanes<T> {
    busy: Mutex<HashMap<String, VecDeque<T>>>,
}

impl<T> Default for Lanes<T> {
    fn default() -> Self {
        Lanes { busy: Mutex::new(HashMap::new()) }
    }
}

impl<T> Lanes<T> {
    /// Offers `item` for `key`. Returns it back when the lane was idle: the caller now owns the
    /// lane and must call `next` after each item until it returns `None`. Otherwise the item
    /// waits behind the ones before it.
    pub fn enter(&self, key: &str, item: T) -> Option<T> {
        let mut busy = self.busy.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        match busy.get_mut(key) {
            Some(queue) => {
                queue.push_back(item);
                None
            }
            None => {
                busy.insert(key.to_owned(), VecDeque::new());
                Some(item)
            }
        }
    }

    /// The next item of the lane `key`, or `None`, which closes the lane.
    pub fn next(&self, key: &str) -> Option<T> {
        let mut busy = self.busy.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        let queue = busy.get_mut(key)?;
        let item = queue.pop_front();
        if item.is_none() {
            busy.remove(key);
        }
        item
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_lane_per_key_in_arrival_order() {
        let lanes = Lanes::default();
        assert_eq!(lanes.enter("alice", 1), Some(1), "an idle lane is handed over");
        assert_eq!(lanes.enter("alice", 2), None, "a busy lane queues");
        assert_eq!(lanes.enter("bob", 10), Some(10), "another sender is not held up");
        assert_eq!(lanes.enter("alice", 3), None);
        assert_eq!(lanes.next("alice"), Some(2));
        assert_eq!(lanes.next("alice"), Some(3));
        assert_eq!(lanes.next("alice"), None, "an empty lane closes");
        assert_eq!(lanes.enter("alice", 4), Some(4), "and opens again for the next stanza");
        assert_eq!(lanes.next("bob"), None);
    }
}
