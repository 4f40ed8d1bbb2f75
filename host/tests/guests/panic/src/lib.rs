//! Panics: a trap the host must survive.
use stanzahook_guest::{Before, Event, Filter, Result, export_filter};

struct Panic;

impl Filter for Panic {
    fn before(_event: Event) -> Result<Before> {
        panic!("this filter always panics")
    }
}

export_filter!(Panic);
