//! Write [stanzahook](https://example.invalid/stanzahook) filters in Rust.
//!
//! A filter is a WebAssembly component that sees each stanza's event JSON before stanzahook POSTs
//! it to the webhook, and the webhook's reply JSON after. Implement [`Filter`] on a type (both
//! methods default to passing everything through), export it with [`export_filter!`], and build
//! with `cargo build --target wasm32-wasip2 --release`:
//!
//! ```ignore
//! use stanzahook_guest::{Before, Event, Filter, Result, export_filter};
//!
//! struct Ping;
//!
//! impl Filter for Ping {
//!     fn before(event: Event) -> Result<Before> {
//!         Ok(match event.body() {
//!             Some("/ping") => Before::reply("pong"),
//!             _ => Before::Pass,
//!         })
//!     }
//! }
//!
//! export_filter!(Ping);
//! ```
//!
//! Every call runs in a fresh instance, so statics do not survive from one stanza to the next,
//! unless the filter says with [`Filter::reuse`] that its instance may be kept. Read settings with
//! [`config`], write to stanzahook's log with the [`log`] functions.
#![deny(missing_docs)]

pub use serde_json::{self, Value, json};

use std::cell::OnceCell;

/// The bindings of `wit/filter.wit` (world `reusable-filter`: the hooks and `instances`); used by
/// [`export_filter!`], not meant to be named directly.
#[doc(hidden)]
pub mod wit {
    #![allow(missing_docs)]
    wit_bindgen::generate!({
        world: "reusable-filter",
        path: "../wit",
        pub_export_macro: true,
        default_bindings_module: "::stanzahook_guest::wit",
    });
}

use wit::stanzahook::filter::{host, types};

/// The error a hook returns: stanzahook logs it and applies the filter's `on_error` setting.
/// Anything that displays converts into it, so `?` works on most errors.
#[derive(Debug)]
pub struct Error(String);

impl<E: std::fmt::Display> From<E> for Error {
    fn from(e: E) -> Self {
        Error(e.to_string())
    }
}

/// The result of a hook.
pub type Result<T> = std::result::Result<T, Error>;

/// The event stanzahook is about to POST (README: "The request"): `to`, `from`, `kind`, `stanza`, `body` (for
/// messages with one), `type`, `id`, and whatever earlier filters added.
///
/// The `after` hook's event is parsed only when the hook first reads it: most `after` hooks look
/// at the reply alone, and parsing a 500-byte event took ~2 µs of such a call's ~5 µs.
#[derive(Clone)]
pub struct Event {
    json: OnceCell<Value>,
    /// The JSON text from the host, read only while `json` is unset; empty for [`Event::new`].
    text: String,
}

impl Event {
    /// Wraps a JSON value (an object) as an event.
    pub fn new(json: Value) -> Event {
        Event { json: OnceCell::from(json), text: String::new() }
    }

    /// An event parsed now, for hooks that report text that is not JSON as an error.
    fn parse(text: &str) -> std::result::Result<Event, String> {
        serde_json::from_str(text).map(Event::new).map_err(|e| format!("event is not JSON: {e}"))
    }

    /// An event parsed on first use. The host passes `after` the very text `before` parsed, so
    /// it is JSON; were it not, the event would read as `null` (every accessor `None`).
    fn unparsed(text: String) -> Event {
        Event { json: OnceCell::new(), text }
    }

    fn str(&self, key: &str) -> Option<&str> {
        self.json().get(key).and_then(Value::as_str)
    }

    /// The stanza's recipient: an address at stanzahook's domain.
    pub fn to(&self) -> Option<&str> {
        self.str("to")
    }

    /// The stanza's sender.
    pub fn from(&self) -> Option<&str> {
        self.str("from")
    }

    /// `"message"`, `"presence"` or `"iq"`.
    pub fn kind(&self) -> Option<&str> {
        self.str("kind")
    }

    /// The text of a message's `<body/>`.
    pub fn body(&self) -> Option<&str> {
        self.str("body")
    }

    /// The whole stanza as received, as XML.
    pub fn stanza(&self) -> Option<&str> {
        self.str("stanza")
    }

    /// What the sender wrote: the body without the quote of the message it replies to (the
    /// fallback a client that knows no replies shows), else the body.
    pub fn text(&self) -> Option<&str> {
        self.json().pointer("/reply/body_without_fallback").and_then(Value::as_str).or_else(|| self.body())
    }

    /// The message this one replies to (XEP-0461), from the event's `reply`.
    pub fn reply_to(&self) -> Option<ReplyTo<'_>> {
        let reply = self.json().get("reply")?;
        Some(ReplyTo { id: reply.get("id").and_then(Value::as_str)?, to: reply.get("to").and_then(Value::as_str) })
    }

    /// The sender's reactions to a message (XEP-0444), from the event's `reactions`.
    pub fn reactions(&self) -> Option<Reactions<'_>> {
        let reactions = self.json().get("reactions")?;
        Some(Reactions {
            id: reactions.get("id").and_then(Value::as_str)?,
            emoji: reactions.get("reactions")?.as_array()?.iter().filter_map(Value::as_str).collect(),
        })
    }

    /// The attachment the message carries (XEP-0066), from the event's `oob`.
    pub fn oob(&self) -> Option<Attachment<'_>> {
        let oob = self.json().get("oob")?;
        Some(Attachment { url: oob.get("url").and_then(Value::as_str)?, desc: oob.get("desc").and_then(Value::as_str) })
    }

    /// The chat state (XEP-0085): `"active"`, `"composing"`, `"paused"`, `"inactive"`, `"gone"`.
    pub fn state(&self) -> Option<&str> {
        self.str("state")
    }

    /// The event as JSON, for keys without an accessor.
    pub fn json(&self) -> &Value {
        self.json.get_or_init(|| serde_json::from_str(&self.text).unwrap_or(Value::Null))
    }

    /// The event as mutable JSON, to rewrite it.
    pub fn json_mut(&mut self) -> &mut Value {
        self.json();
        // Set by the line above; the fallback only satisfies the type.
        self.json.get_mut().unwrap_or_else(|| unreachable!("the event was parsed just above"))
    }

    /// Sets (or adds) a key; does nothing if the event is not an object.
    pub fn set(&mut self, key: &str, value: impl Into<Value>) {
        if let Some(map) = self.json_mut().as_object_mut() {
            map.insert(key.to_owned(), value.into());
        }
    }

    /// The event as JSON.
    pub fn into_json(mut self) -> Value {
        std::mem::take(self.json_mut())
    }

    /// The event as JSON text: the host's own text when nothing parsed it.
    fn into_text(self) -> String {
        match self.json.into_inner() {
            Some(json) => json.to_string(),
            None => self.text,
        }
    }
}

impl std::fmt::Debug for Event {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("Event").field(self.json()).finish()
    }
}

impl PartialEq for Event {
    fn eq(&self, other: &Event) -> bool {
        self.json() == other.json()
    }
}

/// The message an event's message replies to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReplyTo<'a> {
    /// Its id (in a room, the id the room gave it).
    pub id: &'a str,
    /// Who sent it, when the reply says.
    pub to: Option<&'a str>,
}

/// A sender's whole set of reactions to one message; an empty set takes them all back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reactions<'a> {
    /// The message reacted to.
    pub id: &'a str,
    /// The reactions, each an emoji.
    pub emoji: Vec<&'a str>,
}

/// A file or page a message points to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Attachment<'a> {
    /// Where it is.
    pub url: &'a str,
    /// What it is, when the sender says.
    pub desc: Option<&'a str>,
}

/// What a filter decides before the webhook call.
#[derive(Debug, Clone, PartialEq)]
pub enum Before {
    /// Go on with the event as it is.
    Pass,
    /// Go on with this event instead.
    Rewrite(Event),
    /// Answer with this reply JSON (README: "The answer") without calling the webhook.
    Answer(Value),
    /// Drop the stanza: nothing is posted or sent.
    Drop,
}

impl Before {
    /// Answers with a message whose body is `text`.
    pub fn reply(text: impl Into<String>) -> Before {
        Before::Answer(json!({ "body": text.into() }))
    }
}

/// What the webhook answered, as the `after` hook sees it.
#[derive(Debug, Clone, PartialEq)]
pub struct Answer {
    /// The HTTP status; 0 when there was no HTTP answer (a later filter answered, or the
    /// connection failed).
    pub status: u16,
    /// The reply JSON, if any.
    pub reply: Option<Value>,
}

/// What a filter decides after the webhook call.
#[derive(Debug, Clone, PartialEq)]
pub enum After {
    /// Go on with the reply as it is.
    Pass,
    /// Use this reply JSON instead.
    Replace(Value),
    /// Send nothing back.
    Drop,
}

/// A filter. Both hooks pass everything through unless overridden.
pub trait Filter {
    /// Called with the event before the webhook call.
    fn before(event: Event) -> Result<Before> {
        let _ = event;
        Ok(Before::Pass)
    }

    /// Called after the webhook call (or another filter's answer), with the event as this
    /// filter saw it and what came back.
    fn after(event: Event, answer: Answer) -> Result<After> {
        let _ = (event, answer);
        Ok(After::Pass)
    }

    /// Whether stanzahook may keep this filter's instance after a call that succeeded and use it
    /// for later stanzas, of any sender, instead of a fresh instance per call. Asked whenever
    /// stanzahook loads the filter (at start and on each reload); [`config`] already answers.
    /// The default, `false`, keeps every stanza apart.
    ///
    /// Reuse saves most of a call's cost (instantiating and tearing down take about as long as a
    /// small hook), but statics, `thread_local!`s, caches and the allocator's memory then outlive
    /// the stanza: answer `true` only for a filter that keeps nothing of one stanza that could
    /// reach another's answer. The operator can still refuse (`reuse_instances = false`).
    fn reuse() -> bool {
        false
    }
}

/// This filter's setting `key` (the `[filter.config]` table of stanzahook's config).
pub fn config(key: &str) -> Option<String> {
    host::config(key)
}

/// All of this filter's settings, sorted by key.
pub fn config_entries() -> Vec<(String, String)> {
    host::config_entries()
}

/// Writing to stanzahook's log; each line names the filter and the stanza.
pub mod log {
    use super::host::{self, Level};

    /// Logs at debug level.
    pub fn debug(message: impl AsRef<str>) {
        host::log(Level::Debug, message.as_ref());
    }

    /// Logs at info level.
    pub fn info(message: impl AsRef<str>) {
        host::log(Level::Info, message.as_ref());
    }

    /// Logs at warn level.
    pub fn warn(message: impl AsRef<str>) {
        host::log(Level::Warn, message.as_ref());
    }

    /// Logs at error level.
    pub fn error(message: impl AsRef<str>) {
        host::log(Level::Error, message.as_ref());
    }
}

/// Runs a `before` hook across the boundary. Used by [`export_filter!`].
#[doc(hidden)]
pub fn __before<F: Filter>(event: String) -> std::result::Result<types::BeforeVerdict, String> {
    let event = Event::parse(&event)?;
    match F::before(event) {
        Ok(Before::Pass) => Ok(types::BeforeVerdict::Pass),
        Ok(Before::Rewrite(event)) => Ok(types::BeforeVerdict::Rewrite(event.into_text())),
        Ok(Before::Answer(reply)) => Ok(types::BeforeVerdict::Answer(reply.to_string())),
        Ok(Before::Drop) => Ok(types::BeforeVerdict::Drop),
        Err(Error(message)) => Err(message),
    }
}

/// Runs an `after` hook across the boundary. Used by [`export_filter!`].
#[doc(hidden)]
pub fn __after<F: Filter>(
    event: String,
    answer: types::WebhookAnswer,
) -> std::result::Result<types::AfterVerdict, String> {
    let event = Event::unparsed(event);
    let reply = match answer.reply {
        Some(text) => Some(serde_json::from_str(&text).map_err(|e| format!("reply is not JSON: {e}"))?),
        None => None,
    };
    match F::after(event, Answer { status: answer.status, reply }) {
        Ok(After::Pass) => Ok(types::AfterVerdict::Pass),
        Ok(After::Replace(reply)) => Ok(types::AfterVerdict::Replace(reply.to_string())),
        Ok(After::Drop) => Ok(types::AfterVerdict::Drop),
        Err(Error(message)) => Err(message),
    }
}

/// Exports a type implementing [`Filter`] as this component's filter. Use it once, at the top
/// level of the crate: `export_filter!(MyFilter);`
#[macro_export]
macro_rules! export_filter {
    ($filter:ty) => {
        const _: () = {
            struct __StanzahookFilter;

            impl $crate::wit::Guest for __StanzahookFilter {
                fn before(
                    event: ::std::string::String,
                ) -> ::std::result::Result<$crate::wit::BeforeVerdict, ::std::string::String> {
                    $crate::__before::<$filter>(event)
                }

                fn after(
                    event: ::std::string::String,
                    answer: $crate::wit::WebhookAnswer,
                ) -> ::std::result::Result<$crate::wit::AfterVerdict, ::std::string::String> {
                    $crate::__after::<$filter>(event, answer)
                }
            }

            impl $crate::wit::exports::stanzahook::filter::instances::Guest for __StanzahookFilter {
                fn reuse() -> bool {
                    <$filter as $crate::Filter>::reuse()
                }
            }

    $crate::wit::export!(__StanzahookFilter with_types_in $crate::wit);
        };
    };
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Echo;

    impl Filter for Echo {
        fn before(mut event: Event) -> Result<Before> {
            Ok(match event.body() {
                Some("drop") => Before::Drop,
                Some("ping") => Before::reply("pong"),
                Some(_) => {
                    event.set("seen", true);
                    Before::Rewrite(event)
                }
                None => Before::Pass,
            })
        }
    }

    struct Defaults;

    impl Filter for Defaults {}

    fn event(body: &str) -> String {
        json!({"to": "a@b", "from": "c@d/e", "kind": "message", "body": body, "stanza": "<message/>"}).to_string()
    }

    #[test]
    fn accessors_read_the_event() {
        let e = Event::new(serde_json::from_str(&event("hi")).expect("json"));
        assert_eq!(
            (e.to(), e.from(), e.kind(), e.body(), e.stanza()),
            (Some("a@b"), Some("c@d/e"), Some("message"), Some("hi"), Some("<message/>"))
        );
        assert_eq!((e.text(), e.reply_to(), e.reactions(), e.oob(), e.state()), (Some("hi"), None, None, None, None));
    }

    #[test]
    fn vocabulary_accessors_read_the_payloads() {
        let e = Event::new(json!({
            "body": "> Anna wrote: hi\nyes",
            "reply": {"id": "m-1", "to": "anna@x/y", "body_without_fallback": "yes"},
            "reactions": {"id": "m-2", "reactions": ["👍", "🎉"]},
            "oob": {"url": "https://x.example/cat.jpg"},
            "state": "active",
        }));
        assert_eq!(e.text(), Some("yes"), "the quote is left out");
        assert_eq!(e.reply_to(), Some(ReplyTo { id: "m-1", to: Some("anna@x/y") }));
        assert_eq!(e.reactions(), Some(Reactions { id: "m-2", emoji: vec!["👍", "🎉"] }));
        assert_eq!(e.oob(), Some(Attachment { url: "https://x.example/cat.jpg", desc: None }));
        assert_eq!(e.state(), Some("active"));
    }

    #[test]
    fn verdicts_cross_the_boundary_as_json_text() {
        assert!(matches!(__before::<Echo>(event("drop")), Ok(types::BeforeVerdict::Drop)));
        match __before::<Echo>(event("ping")) {
            Ok(types::BeforeVerdict::Answer(text)) => assert_eq!(text, r#"{"body":"pong"}"#),
            other => panic!("{other:?}"),
        }
        match __before::<Echo>(event("x")) {
            Ok(types::BeforeVerdict::Rewrite(text)) => {
                let v: Value = serde_json::from_str(&text).expect("json");
                assert_eq!(v["seen"], true);
                assert_eq!(v["body"], "x");
            }
            other => panic!("{other:?}"),
        }
        assert!(__before::<Echo>("not json".into()).is_err());
    }

    #[test]
    fn an_after_event_is_parsed_when_read() {
        let text = event("hi");
        let lazy = Event::unparsed(text.clone());
        assert_eq!(lazy.body(), Some("hi"));
        assert_eq!(lazy, Event::parse(&text).expect("json"));
        let mut edited = Event::unparsed(text.clone());
        edited.set("body", "changed");
        assert_eq!(edited.clone().into_json()["body"], "changed");
        assert!(edited.into_text().contains("changed"));
        assert_eq!(Event::unparsed(text.clone()).into_text(), text, "untouched: the host's text as it came");
        assert_eq!(Event::unparsed("{".into()).body(), None);
    }

    #[test]
    fn unimplemented_hooks_pass_everything() {
        assert!(matches!(__before::<Defaults>(event("x")), Ok(types::BeforeVerdict::Pass)));
        let answer = types::WebhookAnswer { status: 200, reply: Some(r#"{"body":"r"}"#.into()) };
        assert!(matches!(__after::<Defaults>(event("x"), answer), Ok(types::AfterVerdict::Pass)));
        let bad = types::WebhookAnswer { status: 200, reply: Some("{".into()) };
        assert!(__after::<Defaults>(event("x"), bad).is_err(), "a reply that is not JSON is an error");
    }
}
