//! Answers chat commands itself, without calling the webhook: `/ping` and `/help`. Everything
//! else goes on to the webhook unchanged.
//!
//! Config: `prefix` (default `/`).

use stanzahook_guest::{Before, Event, Filter, Result, config, export_filter};

struct Commands;

impl Filter for Commands {
    fn before(event: Event) -> Result<Before> {
        let prefix = config("prefix").unwrap_or_else(|| "/".into());
        let Some(command) = event.body().and_then(|b| b.trim().strip_prefix(prefix.as_str())) else {
            return Ok(Before::Pass);
        };
        Ok(match command {
            "ping" => Before::reply("pong"),
            "help" => Before::reply(format!("Commands: {prefix}ping, {prefix}help. Anything else goes to the bot.")),
            _ => Before::Pass,
        })
    }

    // Nothing of one stanza stays behind (no statics, no caches), so stanzahook may keep the
    // instance for the next call instead of starting a fresh one: about twice as fast.
    fn reuse() -> bool {
        true
    }
}

export_filter!(Commands);
