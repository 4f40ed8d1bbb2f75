//! Reads the file named by its `file` setting and answers with its content: it must fail unless
//! the operator granted the directory.
use stanzahook_guest::{Before, Event, Filter, Result, config, export_filter};

struct Snoop;

impl Filter for Snoop {
    fn before(_event: Event) -> Result<Before> {
        let path = config("file").unwrap_or_else(|| "/etc/hostname".into());
        let content = std::fs::read_to_string(&path)?;
        Ok(Before::reply(content.trim()))
    }
}

export_filter!(Snoop);
