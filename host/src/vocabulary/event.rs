//! A received stanza's payloads as event keys. One pass over the stanza's children; a key
//! appears only when the stanza carries its element, so a plain message's event stays as small
//! as it was.

use serde_json::{Map, Value, json};
use tokio_xmpp::minidom::Element;

use super::*;
use crate::stanza::NS_COMPONENT;

/// The vocabulary's keys for what `el` carries, besides the event's own keys (the five of the
/// reference, `type`, `id`, `invite`), which none of them names. `body` is the message's body, which
/// a reply's fallback quote is cut from.
pub fn event_keys(el: &Element, body: Option<&str>) -> Map<String, Value> {
    let mut map = Map::new();
    match el.name() {
        "message" => message_keys(el, body, &mut map),
        "presence" => presence_keys(el, &mut map),
        _ => {}
    }
    map
}

fn message_keys(el: &Element, body: Option<&str>, map: &mut Map<String, Value>) {
    let mut stanza_ids = Vec::new();
    let mut reply_fallback = None;
    // Matched by name first: an element's namespace is compared in place, where reading it
    // would copy it (a third of this function's time on a plain message).
    for child in el.children() {
        let is = |ns: &str| child.has_ns(ns);
        match child.name() {
            "subject" if is(NS_COMPONENT) => insert(map, "subject", child.text()),
            "thread" if is(NS_COMPONENT) => {
                let mut thread = json!({ "id": child.text() });
                if let Some(parent) = child.attr("parent") {
                    thread["parent"] = parent.into();
                }
                map.insert("thread".into(), thread);
            }
            state if CHAT_STATES.contains(&state) && is(NS_CHATSTATES) => insert(map, "state", state),
            "request" if is(NS_RECEIPTS) => insert(map, "receipt_request", true),
            "received" if is(NS_RECEIPTS) => insert(map, "receipt", child.attr("id").unwrap_or("")),
            "markable" if is(NS_MARKERS) => insert(map, "markable", true),
            marker if MARKERS.contains(&marker) && is(NS_MARKERS) => {
                insert(map, marker, child.attr("id").unwrap_or(""));
            }
            "x" if is(NS_OOB) => {
                let mut oob = Map::new();
                if let Some(url) = child.get_child("url", NS_OOB) {
                    oob.insert("url".into(), url.text().into());
                }
                if let Some(desc) = child.get_child("desc", NS_OOB) {
                    oob.insert("desc".into(), desc.text().into());
                }
                // The first attachment: a message with several is rare, and `stanza` has all.
                map.entry("oob").or_insert(Value::Object(oob));
            }
            "reply" if is(NS_REPLY) => {
                let mut reply = Map::new();
                if let Some(id) = child.attr("id") {
                    reply.insert("id".into(), id.into());
                }
                if let Some(to) = child.attr("to") {
                    reply.insert("to".into(), to.into());
                }
                map.insert("reply".into(), Value::Object(reply));
            }
            "fallback" if is(NS_FALLBACK) => {
                insert(map, "fallback", true);
                if child.attr("for") == Some(NS_REPLY) {
                    reply_fallback = Some(child);
                }
            }
            "reactions" if is(NS_REACTIONS) => {
                let reactions: Vec<Value> =
                    child.children().filter(|r| r.name() == "reaction").map(|r| r.text().into()).collect();
                map.insert("reactions".into(), json!({ "id": child.attr("id").unwrap_or(""), "reactions": reactions }));
            }
            "replace" if is(NS_CORRECTION) => insert(map, "replace", child.attr("id").unwrap_or("")),
            "delay" if is(NS_DELAY) => insert(map, "delay", child.attr("stamp").unwrap_or("")),
            "stanza-id" if is(NS_SID) => stanza_ids.push(json!({
                "id": child.attr("id").unwrap_or(""),
                "by": child.attr("by").unwrap_or(""),
            })),
            "origin-id" if is(NS_SID) => insert(map, "origin_id", child.attr("id").unwrap_or("")),
            "occupant-id" if is(NS_OCCUPANT_ID) => insert(map, "occupant_id", child.attr("id").unwrap_or("")),
            "nick" if is(NS_NICK) => insert(map, "nick", child.text()),
            _ => {}
        }
    }
    if !stanza_ids.is_empty() {
        map.insert("stanza_ids".into(), stanza_ids.into());
    }
    // What the sender wrote, without the quote a client that knows no replies shows instead.
    if let (Some(fallback), Some(Value::Object(reply)), Some(body)) = (reply_fallback, map.get("reply"), body) {
        let unquoted = without_fallback(body, fallback);
        let mut reply = reply.clone();
        reply.insert("body_without_fallback".into(), unquoted.into());
        map.insert("reply".into(), Value::Object(reply));
    }
}

fn presence_keys(el: &Element, map: &mut Map<String, Value>) {
    for child in el.children() {
        let is = |ns: &str| child.has_ns(ns);
        match child.name() {
            name @ ("show" | "status") if is(NS_COMPONENT) => insert(map, name, child.text()),
            "priority" if is(NS_COMPONENT) => {
                if let Ok(priority) = child.text().trim().parse::<i8>() {
                    insert(map, "priority", priority);
                }
            }
            "nick" if is(NS_NICK) => insert(map, "nick", child.text()),
            "delay" if is(NS_DELAY) => insert(map, "delay", child.attr("stamp").unwrap_or("")),
            _ => {}
        }
    }
}

/// Keeps the first value of a key: a stanza repeating an element says no more.
fn insert(map: &mut Map<String, Value>, key: &str, value: impl Into<Value>) {
    if !map.contains_key(key) {
        map.insert(key.to_owned(), value.into());
    }
}

/// `body` without the ranges the fallback marks (XEP-0428: `start` and `end` count Unicode code
/// points; a fallback without ranges covers the whole body). Ranges out of order or beyond the
/// body are cut to it, so a sender's mistake cannot make this fail.
fn without_fallback(body: &str, fallback: &Element) -> String {
    let ranges: Vec<(usize, usize)> = fallback
        .children()
        .filter(|c| c.name() == "body")
        .filter_map(|c| {
            let start = c.attr("start")?.parse().ok()?;
            let end = c.attr("end")?.parse().ok()?;
            Some((start, end))
        })
        .collect();
    if ranges.is_empty() {
        return String::new();
    }
    body.chars()
        .enumerate()
        .filter(|(i, _)| !ranges.iter().any(|&(start, end)| (start..end).contains(i)))
        .map(|(_, c)| c)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fallback(xml: &str) -> Element {
        format!("<fallback xmlns='urn:xmpp:fallback:0' for='urn:xmpp:reply:0'>{xml}</fallback>")
            .replace("<body", "<body xmlns='urn:xmpp:fallback:0'")
            .parse()
            .expect("xml")
    }

    #[test]
    fn the_fallback_quote_is_cut_by_code_points() {
        let body = "> Anna wrote:\n> ça va?\nyes";
        let quote = "> Anna wrote:\n> ça va?\n".chars().count();
        assert_eq!(without_fallback(body, &fallback(&format!("<body start='0' end='{quote}'/>"))), "yes");
        assert_eq!(without_fallback(body, &fallback("")), "", "no range: the whole body is fallback");
        assert_eq!(without_fallback("abc", &fallback("<body start='5' end='1'/>")), "abc", "a range out of order");
        assert_eq!(without_fallback("abc", &fallback("<body start='1' end='99'/>")), "a", "a range past the end");
    }
}
