//! Text a guest hands the host, treated as the outside input it is (README: "Filters"): strings are
//! measured in the guest's memory before they are copied, error messages are cut to a budget,
//! anything that reaches the log is kept to one line, and JSON is held to the checks a webhook's
//! JSON passes. A guest can return a string as large as its memory, put a line break in a log
//! message to forge a host log line, or nest JSON deeper than any parser downstream survives.

use std::borrow::Cow;
use std::fmt;

use serde::de::{Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};
use wasmtime::component::WasmStr;

/// Bytes of a guest's error message (a hook's `Err`, a trap's text) that are kept.
pub const MAX_MESSAGE_BYTES: usize = 2048;

/// A string a hook returned, if it is at most `limit` bytes. wasmtime has copied it already
/// (see `bindings.rs`: a result's memory is freed before the host sees it), at most the filter's
/// memory limit; nothing larger than `limit` goes further.
pub fn within(text: &str, limit: usize) -> Result<&str, Refused> {
    if text.len() > limit {
        return Err(Refused::TooLarge(text.len()));
    }
    Ok(text)
}

/// A string in the guest's memory that a host import was given, borrowed if it is at most
/// `limit` bytes: the host copies nothing larger. Guests using UTF-8 (Rust, componentize-py,
/// componentize-js) are measured without decoding; a UTF-16 guest's string is decoded first, as
/// wasmtime does not tell its length.
pub fn within_memory<'a, T: 'static>(
    text: &WasmStr,
    store: impl Into<wasmtime::StoreContext<'a, T>>,
    limit: usize,
) -> Result<Cow<'a, str>, Refused> {
    let text = text.to_str(store).map_err(|e| Refused::Encoding(format!("{e}")))?;
    within(&text, limit)?;
    Ok(text)
}

/// Why a guest's string was not taken.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refused {
    TooLarge(usize),
    Encoding(String),
}

/// `text` as one line of at most about `budget` bytes: cut on a character boundary, with the
/// number of bytes cut said at the end, and line breaks and other control characters escaped.
pub fn cut_line(text: &str, budget: usize) -> String {
    let kept = text.floor_char_boundary(budget.min(text.len()));
    let mut line = one_line(&text[..kept]).into_owned();
    if kept < text.len() {
        line.push_str(&format!(" … [{} more bytes cut]", text.len() - kept));
    }
    line
}

/// `text` with nothing that could start a new log line or steer a terminal: line breaks, other
/// control characters (C0, DEL, C1), the Unicode line and paragraph separators and the
/// bidirectional overrides are written as escapes (`\n`, `\r`, `\t`, `\u{…}`). Borrowed when
/// there is nothing to escape, which is nearly always.
pub fn one_line(text: &str) -> Cow<'_, str> {
    if !text.chars().any(needs_escape) {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        match c {
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if needs_escape(c) => out.push_str(&format!("\\u{{{:x}}}", u32::from(c))),
            c => out.push(c),
        }
    }
    Cow::Owned(out)
}

fn needs_escape(c: char) -> bool {
    c.is_control() || matches!(c, '\u{2028}' | '\u{2029}' | '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}')
}

/// Checks that `text` is one JSON value that the webhook's own JSON checks would accept:
/// well formed, nested at most 128 levels (serde_json's limit, which every other JSON path of
/// the host has), no lone surrogate in an escape (`"\ud800"`), nothing after it. Builds no tree:
/// an event travels between filters as checked text.
pub fn check_json(text: &str) -> Result<(), serde_json::Error> {
    let mut de = serde_json::Deserializer::from_str(text);
    Checked::deserialize(&mut de)?;
    de.end()
}

/// A JSON value seen whole, its strings decoded (which is where serde_json refuses lone
/// surrogates) and its nesting counted by serde_json's recursion limit. `IgnoredAny` would do
/// neither: serde_json skips it without decoding strings and without a depth limit.
struct Checked;

impl<'de> Deserialize<'de> for Checked {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Checked, D::Error> {
        deserializer.deserialize_any(CheckedVisitor)
    }
}

struct CheckedVisitor;

impl<'de> Visitor<'de> for CheckedVisitor {
    type Value = Checked;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_bool<E>(self, _: bool) -> Result<Checked, E> {
        Ok(Checked)
    }

    fn visit_i64<E>(self, _: i64) -> Result<Checked, E> {
        Ok(Checked)
    }

    fn visit_u64<E>(self, _: u64) -> Result<Checked, E> {
        Ok(Checked)
    }

    fn visit_f64<E>(self, _: f64) -> Result<Checked, E> {
        Ok(Checked)
    }

    fn visit_str<E>(self, _: &str) -> Result<Checked, E> {
        Ok(Checked)
    }

    fn visit_unit<E>(self) -> Result<Checked, E> {
        Ok(Checked)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Checked, A::Error> {
        while seq.next_element::<Checked>()?.is_some() {}
        Ok(Checked)
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Checked, A::Error> {
        while map.next_entry::<Checked, Checked>()?.is_some() {}
        Ok(Checked)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_log_line_cannot_start_another() {
        let forged = "ok\n2026-12-02T00:00:00Z ERROR stanzahook::xmpp: forged\rx\u{1b}[31mred\u{2028}\u{202e}";
        let line = one_line(forged);
        assert!(!line.chars().any(needs_escape), "{line}");
        assert_eq!(
            line,
            "ok\\n2026-12-02T00:00:00Z ERROR stanzahook::xmpp: forged\\rx\\u{1b}[31mred\\u{2028}\\u{202e}"
        );
        assert!(matches!(one_line("plain text, ünïcode ✓"), Cow::Borrowed(_)));
    }

    #[test]
    fn a_huge_message_is_cut_to_the_budget_on_a_char_boundary() {
        let huge = format!("a{}", "é".repeat(16 << 20));
        let line = cut_line(&huge, MAX_MESSAGE_BYTES);
        assert!(line.len() < MAX_MESSAGE_BYTES + 40, "{}", line.len());
        assert!(line.starts_with("aéé"));
        assert!(line.ends_with(&format!(" … [{} more bytes cut]", huge.len() - (MAX_MESSAGE_BYTES - 1))), "{line:.60}");
        assert_eq!(cut_line("short", MAX_MESSAGE_BYTES), "short");
    }

    #[test]
    fn json_a_webhook_could_not_send_is_refused() {
        let deep = |n: usize| format!("{{\"a\":{}1{}}}", "[".repeat(n), "]".repeat(n));
        assert!(check_json(&deep(126)).is_ok(), "127 levels, as serde_json allows");
        assert!(check_json(&deep(10_000)).is_err(), "10,000 levels");
        assert!(check_json(r#"{"body": "\ud800"}"#).is_err(), "a lone surrogate");
        assert!(check_json(r#"{"\udc00": 1}"#).is_err(), "a lone surrogate in a key");
        assert!(check_json(r#"{"body": "\ud83d\ude00 ok"}"#).is_ok(), "a surrogate pair");
        assert!(check_json(r#"{"a": 1} {"b": 2}"#).is_err(), "two values");
        for same_as_a_webhook in
            [deep(126), deep(127), deep(128), r#"{"n": 1e999}"#.into(), r#"[1, "x", null, {}]"#.into()]
        {
            assert_eq!(
                check_json(&same_as_a_webhook).is_ok(),
                serde_json::from_str::<serde_json::Value>(&same_as_a_webhook).is_ok(),
                "{same_as_a_webhook:.40}"
            );
        }
    }
}
