//! Instances kept between calls, for filters that allow it (WIT `instances.reuse`). Each kept
//! instance holds a slot of the engine's instance pool, so all filters together keep at most
//! `budget` of them: past it, a call's instance ends as a fresh one would, and the pool keeps room
//! for the calls in flight.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

/// How many instances all filters of one engine keep at most.
#[derive(Debug)]
pub struct WarmBudget {
    limit: usize,
    kept: AtomicUsize,
}

impl WarmBudget {
    pub fn new(limit: usize) -> Arc<WarmBudget> {
        Arc::new(WarmBudget { limit, kept: AtomicUsize::new(0) })
    }

    fn reserve(&self) -> bool {
        self.kept.fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| (n < self.limit).then_some(n + 1)).is_ok()
    }

    fn release(&self, n: usize) {
        self.kept.fetch_sub(n, Ordering::AcqRel);
    }
}

/// One filter version's kept instances; dropped with the version (a reload gives the new version
/// a pool of its own).
pub struct WarmPool<T> {
    kept: Mutex<Vec<T>>,
    /// At most this many for this filter: one per call that can run at once.
    per_filter: usize,
    budget: Arc<WarmBudget>,
}

impl<T> WarmPool<T> {
    pub fn new(per_filter: usize, budget: Arc<WarmBudget>) -> WarmPool<T> {
        WarmPool { kept: Mutex::new(Vec::new()), per_filter, budget }
    }

    /// A kept instance, if there is one.
    pub fn take(&self) -> Option<T> {
        let taken = self.lock().pop();
        if taken.is_some() {
            self.budget.release(1);
        }
        taken
    }

    /// Keeps `instance` for a later call, or drops it when this filter or all filters keep
    /// enough already.
    pub fn put(&self, instance: T) {
        let mut kept = self.lock();
        if kept.len() < self.per_filter && self.budget.reserve() {
            kept.push(instance);
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<T>> {
        // A panic while holding the lock cannot leave the list half-changed: push and pop only.
        self.kept.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl<T> Drop for WarmPool<T> {
    fn drop(&mut self) {
        let n = self.lock().len();
        self.budget.release(n);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_up_to_its_share_and_the_shared_budget() {
        let budget = WarmBudget::new(3);
        let a = WarmPool::new(2, budget.clone());
        let b = WarmPool::new(2, budget.clone());
        for i in 0..3 {
            a.put(i);
        }
        assert_eq!(a.lock().len(), 2, "a keeps its share");
        b.put(10);
        b.put(11);
        assert_eq!(b.lock().len(), 1, "the budget is spent");
        assert_eq!(a.take(), Some(1));
        b.put(12);
        assert_eq!(b.lock().len(), 2, "a taken instance frees budget");
        drop(b);
        assert_eq!(budget.kept.load(Ordering::Acquire), 1, "a dropped pool returns its budget");
    }
}
