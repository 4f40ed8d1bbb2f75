//! Sleeps for its `millis` setting (default an hour) before passing: a guest that waits uses no
//! CPU, so only a deadline on the wait itself can keep it from holding a filter thread.
use std::time::Duration;

use stanzahook_guest::{Before, Event, Filter, Result, config, export_filter};

struct Nap;

impl Filter for Nap {
    fn before(_event: Event) -> Result<Before> {
        let millis = config("millis").and_then(|v| v.parse().ok()).unwrap_or(3_600_000);
        std::thread::sleep(Duration::from_millis(millis));
        Ok(Before::Pass)
    }
}

export_filter!(Nap);
