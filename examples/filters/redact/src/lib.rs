//! Keeps secrets out of the webhook: a message whose body contains a configured pattern is
//! dropped (`action = "drop"`) or has each occurrence masked (`action = "mask"`, the default).
//!
//! Config: `patterns`, comma-separated words (e.g. `password,api_key`); `action`; `mask` (default
//! `[redacted]`).

use stanzahook_guest::{Before, Event, Filter, Result, config, export_filter, log};

/// It sees what must stay secret, so it keeps the SDK's default: a fresh instance per stanza,
/// nothing left in memory for the next one (see `Filter::reuse`).
struct Redact;

impl Filter for Redact {
    fn before(mut event: Event) -> Result<Before> {
        let patterns = config("patterns").unwrap_or_default();
        let patterns: Vec<&str> = patterns.split(',').map(str::trim).filter(|p| !p.is_empty()).collect();
        let Some(body) = event.body().map(str::to_owned) else {
            return Ok(Before::Pass);
        };
        let lower = body.to_lowercase();
        if !patterns.iter().any(|p| lower.contains(&p.to_lowercase())) {
            return Ok(Before::Pass);
        }
        if config("action").as_deref() == Some("drop") {
            log::info("dropped a message with a redacted pattern");
            return Ok(Before::Drop);
        }
        let mask = config("mask").unwrap_or_else(|| "[redacted]".into());
        let mut masked = body;
        for pattern in &patterns {
            masked = replace_ignoring_case(&masked, pattern, &mask);
        }
        event.set("body", masked);
        // The raw stanza still holds the original text: the webhook must not see it either.
        event.set("stanza", "");
        Ok(Before::Rewrite(event))
    }
}

fn replace_ignoring_case(text: &str, pattern: &str, with: &str) -> String {
    let lower = text.to_lowercase();
    let needle = pattern.to_lowercase();
    if needle.is_empty() || lower.len() != text.len() {
        return text.replace(pattern, with);
    }
    let mut out = String::new();
    let mut rest = 0;
    while let Some(i) = lower[rest..].find(&needle) {
        out.push_str(&text[rest..rest + i]);
        out.push_str(with);
        rest += i + needle.len();
    }
    out.push_str(&text[rest..]);
    out
}

export_filter!(Redact);
