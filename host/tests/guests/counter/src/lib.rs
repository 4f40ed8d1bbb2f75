//! Counts the stanzas its instance has seen, in a static, and appends the count to the body: a
//! fresh instance always says #1. It allows reuse; with its `trap_at` setting it panics on that
//! count, so that an instance kept after a failed call would show. With `reuse_nap_ms` it sleeps
//! that long before allowing reuse: an answer that comes after its deadline is no answer. With
//! `leak_kib` it leaks that much memory per stanza, as an interpreter's heap creeps up.
use std::sync::atomic::{AtomicU32, Ordering};

use stanzahook_guest::{Before, Event, Filter, Result, config, export_filter};

static SEEN: AtomicU32 = AtomicU32::new(0);

struct Counter;

impl Filter for Counter {
    fn before(mut event: Event) -> Result<Before> {
        let seen = SEEN.fetch_add(1, Ordering::Relaxed) + 1;
        if config("trap_at").and_then(|n| n.parse().ok()) == Some(seen) {
            panic!("trapping on stanza #{seen} of this instance");
        }
        if let Some(kib) = config("leak_kib").and_then(|n| n.parse::<usize>().ok()) {
            std::hint::black_box(vec![1u8; kib << 10].leak());
        }
        let body = format!("{} #{seen}", event.body().unwrap_or_default());
        event.set("body", body);
        Ok(Before::Rewrite(event))
    }

    fn reuse() -> bool {
        let nap = config("reuse_nap_ms").and_then(|n| n.parse().ok()).unwrap_or(0);
        std::thread::sleep(std::time::Duration::from_millis(nap));
        true
    }
}

export_filter!(Counter);
