//! Allocates without bound: the memory limit must stop it.
use stanzahook_guest::{Before, Event, Filter, Result, export_filter};

struct Hog;

impl Filter for Hog {
    fn before(_event: Event) -> Result<Before> {
        let mut held = Vec::new();
        loop {
            held.push(std::hint::black_box(vec![1u8; 1 << 20]));
        }
    }
}

export_filter!(Hog);
