//! Returns an error from both hooks.
use stanzahook_guest::{After, Answer, Before, Event, Filter, Result, export_filter};

struct Fail;

impl Filter for Fail {
    fn before(_event: Event) -> Result<Before> {
        Err("refusing on purpose".into())
    }

    fn after(_event: Event, _answer: Answer) -> Result<After> {
        Err("refusing after, too".into())
    }
}

export_filter!(Fail);
