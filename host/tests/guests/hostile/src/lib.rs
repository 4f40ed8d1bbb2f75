//! What a hostile guest hands the host, through the raw bindings (the SDK would refuse most of
//! it), chosen by its `mode` setting:
//! - `huge-error`: fails with an error message of `bytes` bytes (default 16 MiB);
//! - `forge-log`: logs, prints and prints to stderr text holding line breaks and a fake host log
//!   line, then passes;
//! - `deep`: rewrites the event into JSON nested 10,000 levels deep (60 KB);
//! - `surrogate`: rewrites the event into JSON holding a lone surrogate escape;
//! - `huge-rewrite`: rewrites the event into a string of `bytes` bytes (default 48 MiB).

use stanzahook_guest::wit::{self, AfterVerdict, BeforeVerdict, WebhookAnswer};
use stanzahook_guest::wit::stanzahook::filter::host::{self, Level};

/// A log line that reads like one of the host's own.
pub const FORGED: &str = "innocent\n2026-12-02T00:00:00.000000Z ERROR stanzahook::xmpp: FORGED line\rFORGED after a carriage return";

struct Hostile;

fn setting(key: &str) -> Option<String> {
    host::config(key)
}

fn bytes(default: usize) -> usize {
    setting("bytes").and_then(|v| v.parse().ok()).unwrap_or(default)
}

impl wit::Guest for Hostile {
    fn before(_event: String) -> Result<BeforeVerdict, String> {
        match setting("mode").as_deref() {
            Some("huge-error") => Err("E".repeat(bytes(16 << 20))),
            Some("forge-log") => {
                host::log(Level::Warn, FORGED);
                println!("{FORGED}");
                eprintln!("{FORGED}");
                Ok(BeforeVerdict::Pass)
            }
            Some("deep") => {
                let n = 10_000;
                Ok(BeforeVerdict::Rewrite(format!("{{\"body\": {}\"deep\"{}}}", "[".repeat(n), "]".repeat(n))))
            }
            Some("surrogate") => Ok(BeforeVerdict::Rewrite(r#"{"body": "lone \ud800 surrogate"}"#.into())),
            Some("huge-rewrite") => Ok(BeforeVerdict::Rewrite("x".repeat(bytes(48 << 20)))),
            other => Err(format!("unknown mode {other:?}")),
        }
    }

    fn after(_event: String, _answer: WebhookAnswer) -> Result<AfterVerdict, String> {
        Ok(AfterVerdict::Pass)
    }
}

impl wit::exports::stanzahook::filter::instances::Guest for Hostile {
    fn reuse() -> bool {
        false
    }
}

wit::export!(Hostile with_types_in stanzahook_guest::wit);
