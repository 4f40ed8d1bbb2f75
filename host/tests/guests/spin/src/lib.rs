//! Never returns: the CPU limit must stop it.
use stanzahook_guest::{Before, Event, Filter, Result, export_filter};

struct Spin;

impl Filter for Spin {
    fn before(_event: Event) -> Result<Before> {
        let mut n: u64 = 0;
        loop {
            n = std::hint::black_box(n.wrapping_add(1));
        }
    }
}

export_filter!(Spin);
