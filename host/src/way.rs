//! The way one stanza went through stanzahook, told in one line: each filter hook's verdict, the
//! webhook call (status, content type, time taken), and what was sent back. `--dev` shows it for
//! every stanza (target `stanzahook::way`, level debug); otherwise nothing is built, since
//! formatting it on every stanza would cost a served stanza its share of the CPU.

use std::fmt::Write as _;
use std::time::{Duration, Instant};

use tokio_xmpp::minidom::Element;

use crate::filter::Verdict;
use crate::webhook::{Outcome, Posted};

/// Where the line goes: `RUST_LOG=stanzahook::way=debug` shows it without the rest of `--dev`.
const TARGET: &str = "stanzahook::way";

/// The log directive that shows the line, added by `--dev` to whatever `RUST_LOG` says.
pub const DIRECTIVE: &str = "stanzahook::way=debug";

/// How much of a reply's body the line quotes.
const BODY_SHOWN: usize = 80;

/// One stanza's way, being written; a no-op unless its line would be shown.
#[derive(Debug)]
pub struct Way {
    told: Option<Told>,
}

#[derive(Debug)]
struct Told {
    started: Instant,
    steps: Vec<String>,
    sent: usize,
}

impl Way {
    pub fn start() -> Way {
        let shown = tracing::enabled!(target: TARGET, tracing::Level::DEBUG);
        Way { told: shown.then(|| Told { started: Instant::now(), steps: Vec::with_capacity(4), sent: 0 }) }
    }

    fn step(&mut self, step: impl FnOnce() -> String) {
        if let Some(told) = &mut self.told {
            told.steps.push(step());
        }
    }

    pub fn verdicts(&mut self, verdicts: &[Verdict]) {
        for v in verdicts {
            self.step(|| format!("{} {}: {} ({})", v.filter, v.hook, v.outcome, millis(v.took)));
        }
    }

    pub fn posted(&mut self, posted: &Posted) {
        self.step(|| {
            // `POST ×3 → 200 …`: the delivery took three attempts (README: "Retries").
            let mut step = match posted.attempts {
                0 | 1 => String::from("POST → "),
                n => format!("POST ×{n} → "),
            };
            match &posted.outcome {
                Outcome::Failed { status: 0, detail, .. } => step.push_str(detail),
                outcome => {
                    let _ = write!(step, "{}", outcome.status());
                    if let Some(content_type) = &posted.content_type {
                        let _ = write!(step, " {}", String::from_utf8_lossy(content_type.as_bytes()));
                    }
                    if let Outcome::Failed { detail, status, .. } = outcome
                        && *status < 300
                    {
                        let _ = write!(step, " ({detail})");
                    }
                }
            }
            let _ = write!(step, " in {}", millis(posted.took));
            step
        });
    }

    /// Something said on the way: "answered built-in", "dropped by commands".
    pub fn note(&mut self, note: &str) {
        self.step(|| note.to_owned());
    }

    /// A reply on its way to the server.
    pub fn sending(&mut self, reply: &Element) {
        if let Some(told) = &mut self.told {
            told.sent += 1;
            told.steps.push(format!("sent {}", describe(reply)));
        }
    }

    /// Ends the line and logs it.
    pub fn end(self) {
        let Some(mut told) = self.told else { return };
        if told.sent == 0 {
            told.steps.push("nothing sent back".to_owned());
        }
        tracing::debug!(target: TARGET, "{} · {} in all", told.steps.join(" · "), millis(told.started.elapsed()));
    }
}

/// `message chat to alice@localhost/phone "pong"`, `iq error (item-not-found) to …`.
fn describe(reply: &Element) -> String {
    let mut out = reply.name().to_owned();
    let kind = reply.attr("type");
    if let Some(kind) = kind {
        let _ = write!(out, " {kind}");
    }
    if kind == Some("error")
        && let Some(condition) = crate::rooms::muc::error_condition(reply)
    {
        let _ = write!(out, " ({condition})");
    }
    let _ = write!(out, " to {}", reply.attr("to").unwrap_or("?"));
    if let Some(body) = reply.children().find(|c| c.name() == "body") {
        let text = body.text();
        let mut shown: String = text.chars().take(BODY_SHOWN).collect();
        if shown.len() < text.len() {
            shown.push('…');
        }
        let _ = write!(out, " {shown:?}");
    }
    out
}

fn millis(d: Duration) -> String {
    format!("{:.1} ms", d.as_secs_f64() * 1000.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_reply_is_described_by_kind_type_address_and_body() {
        let reply: Element =
            "<message xmlns='jabber:component:accept' type='chat' to='a@b/c'><body>pong</body></message>"
                .parse()
                .expect("xml");
        assert_eq!(describe(&reply), "message chat to a@b/c \"pong\"");
        let error: Element = "<iq xmlns='jabber:component:accept' type='error' to='a@b/c'><error type='cancel'>\
             <item-not-found xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/></error></iq>"
            .parse()
            .expect("xml");
        assert_eq!(describe(&error), "iq error (item-not-found) to a@b/c");
    }

    #[test]
    fn a_long_body_is_cut() {
        let long = "x".repeat(500);
        let reply: Element = format!("<message xmlns='jabber:component:accept' to='a@b'><body>{long}</body></message>")
            .parse()
            .expect("xml");
        let described = describe(&reply);
        assert!(described.len() < 120 && described.ends_with("…\""), "{described}");
    }
}
