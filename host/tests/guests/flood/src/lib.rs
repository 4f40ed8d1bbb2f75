//! Floods the host with output: as many log lines of its `line_bytes` setting (default 1 MiB) as
//! its `lines` setting says (default 200), and as much on stdout, then passes. Each line is the
//! same guest string, so the guest's own memory stays small while the host is handed hundreds of
//! megabytes: what the host keeps of it must stay bounded. `println!` panics when stdout
//! refuses a write, so passing also shows that a full stdout did not.

use stanzahook_guest::{Before, Event, Filter, Result, config, export_filter, log};

struct Flood;

fn setting(key: &str, default: usize) -> usize {
    config(key).and_then(|v| v.parse().ok()).unwrap_or(default)
}

impl Filter for Flood {
    fn before(_event: Event) -> Result<Before> {
        let line = "x".repeat(setting("line_bytes", 1 << 20));
        for _ in 0..setting("lines", 200) {
            log::info(line.as_str());
            println!("{line}");
        }
        Ok(Before::Pass)
    }
}

export_filter!(Flood);
