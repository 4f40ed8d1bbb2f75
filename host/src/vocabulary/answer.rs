//! An answer's vocabulary keys as the elements of its reply message: an attachment, a reaction to
//! the sender's message, a correction of the bot's own earlier message, a reply to a message, a
//! chat state, markers, a receipt request, thread and subject. Every value is checked; a wrong
//! one refuses the whole answer, naming the key, like the keys of the reference.

use serde_json::{Map, Value};
use tokio_xmpp::minidom::Element;

use super::*;
use crate::payload::{AnswerError, bad, string_key, xml_chars};
use crate::stanza::{self, NS_COMPONENT, set_attr};

/// What an answer's vocabulary keys add to its reply message.
#[derive(Debug, Default)]
pub struct AnswerElements {
    /// In the order they go after the body.
    pub elements: Vec<Element>,
    /// The attachment's URL: the body when the answer gives none, since clients show a message
    /// whose body is the attachment's URL inline.
    pub url: Option<String>,
    /// A receipt or marker asked for: the message needs an `id` to be named by.
    pub needs_id: bool,
}

/// The elements `map` asks for in a reply message answering `original`.
pub fn answer_elements(map: &Map<String, Value>, original: &Element) -> Result<AnswerElements, AnswerError> {
    let mut out = AnswerElements::default();
    let el = &mut out.elements;
    if let Some(subject) = string_key(map, "subject")? {
        xml_chars("subject", subject)?;
        el.push(Element::builder("subject", NS_COMPONENT).append(subject).build());
    }
    if let Some(thread) = map.get("thread").filter(|v| !v.is_null()) {
        el.push(thread_element(thread)?);
    }
    if let Some(oob) = map.get("oob").filter(|v| !v.is_null()) {
        let (element, url) = oob_element(oob)?;
        el.push(element);
        out.url = Some(url);
    }
    if let Some(reply) = map.get("reply").filter(|v| !v.is_null())
        && let Some(element) = reply_element(reply, original)?
    {
        el.push(element);
    }
    if let Some(reactions) = map.get("reactions").filter(|v| !v.is_null()) {
        el.push(reactions_element(reactions, original)?);
    }
    if let Some(id) = string_key(map, "replace")? {
        el.push(with_attrs("replace", NS_CORRECTION, &[("id", checked("replace", id)?)]));
    }
    if let Some(state) = string_key(map, "state")? {
        if !CHAT_STATES.contains(&state) {
            return Err(bad("state", format!("{state:?} is not one of {}", CHAT_STATES.join(", "))));
        }
        el.push(Element::builder(state, NS_CHATSTATES).build());
    }
    if flag(map, "markable")? {
        el.push(Element::builder("markable", NS_MARKERS).build());
        out.needs_id = true;
    }
    for marker in MARKERS {
        if let Some(id) = string_key(map, marker)? {
            el.push(with_attrs(marker, NS_MARKERS, &[("id", checked(marker, id)?)]));
        }
    }
    if flag(map, "receipt_request")? {
        el.push(Element::builder("request", NS_RECEIPTS).build());
        out.needs_id = true;
    }
    Ok(out)
}

/// `oob`: a URL, or `{url, desc}` as in the event.
fn oob_element(oob: &Value) -> Result<(Element, String), AnswerError> {
    let (url, desc) = match oob {
        Value::String(url) => (url.as_str(), None),
        Value::Object(o) => {
            let url = member(o, "oob", "url")?;
            let desc = member(o, "oob", "desc")?;
            (url.ok_or_else(|| bad("oob", "needs a `url`"))?, desc)
        }
        _ => return Err(bad("oob", "must be a URL or an object {url, desc}")),
    };
    if url::Url::parse(url).is_err() {
        return Err(bad("oob", format!("{url:?} is not an absolute URL")));
    }
    xml_chars("oob", url)?;
    let mut x = Element::builder("x", NS_OOB).append(Element::builder("url", NS_OOB).append(url).build()).build();
    if let Some(desc) = desc {
        xml_chars("oob", desc)?;
        x.append_child(Element::builder("desc", NS_OOB).append(desc).build());
    }
    Ok((x, url.to_owned()))
}

/// `reply`: `true` answers the message being answered; `{id, to}` names another.
fn reply_element(reply: &Value, original: &Element) -> Result<Option<Element>, AnswerError> {
    let (id, to) = match reply {
        Value::Bool(false) => return Ok(None),
        Value::Bool(true) => {
            let id = message_id(original).ok_or_else(|| bad("reply", "the message being answered has no id"))?;
            (id, original.attr("from").map(str::to_owned))
        }
        Value::Object(o) => {
            let id = member(o, "reply", "id")?;
            let to = member(o, "reply", "to")?;
            (
                id.ok_or_else(|| bad("reply", "needs the `id` of the message replied to"))?.to_owned(),
                to.map(str::to_owned),
            )
        }
        _ => return Err(bad("reply", "must be true or an object {id, to}")),
    };
    let mut attrs = vec![("id", checked("reply", &id)?)];
    if let Some(to) = &to {
        attrs.push(("to", checked("reply", to)?));
    }
    Ok(Some(with_attrs("reply", NS_REPLY, &attrs)))
}

/// `reactions`: a list of emoji for the message being answered, or `{id, reactions}` as in the
/// event. The list replaces the bot's earlier reactions to that message (XEP-0444); an empty
/// one removes them.
fn reactions_element(reactions: &Value, original: &Element) -> Result<Element, AnswerError> {
    let (id, list) = match reactions {
        Value::Array(list) => {
            let id = message_id(original)
                .ok_or_else(|| bad("reactions", "the message being answered has no id to react to"))?;
            (id, list)
        }
        Value::Object(o) => {
            let id = member(o, "reactions", "id")?;
            let id = id.ok_or_else(|| bad("reactions", "needs the `id` of the message reacted to"))?;
            let Some(Value::Array(list)) = o.get("reactions") else {
                return Err(bad("reactions", "needs `reactions`, a list of emoji"));
            };
            (id.to_owned(), list)
        }
        _ => return Err(bad("reactions", "must be a list of emoji or an object {id, reactions}")),
    };
    let mut element = with_attrs("reactions", NS_REACTIONS, &[("id", checked("reactions", &id)?)]);
    for reaction in list {
        let Value::String(reaction) = reaction else {
            return Err(bad("reactions", "each reaction must be a string"));
        };
        xml_chars("reactions", reaction)?;
        element.append_child(Element::builder("reaction", NS_REACTIONS).append(reaction.as_str()).build());
    }
    Ok(element)
}

/// `thread`: an id, or `{id, parent}` as in the event.
fn thread_element(thread: &Value) -> Result<Element, AnswerError> {
    let (id, parent) = match thread {
        Value::String(id) => (id.as_str(), None),
        Value::Object(o) => {
            let id = member(o, "thread", "id")?;
            let parent = member(o, "thread", "parent")?;
            (id.ok_or_else(|| bad("thread", "needs an `id`"))?, parent)
        }
        _ => return Err(bad("thread", "must be an id or an object {id, parent}")),
    };
    xml_chars("thread", id)?;
    let mut element = Element::builder("thread", NS_COMPONENT).append(id).build();
    if let Some(parent) = parent {
        set_attr(&mut element, "parent", checked("thread", parent)?);
    }
    Ok(element)
}

/// The id a reaction or reply names the message being answered by: in a room, the id the room
/// gave it (XEP-0359 `stanza-id` by the room, as XEP-0444 and XEP-0461 ask), else its own.
fn message_id(original: &Element) -> Option<String> {
    if original.attr("type") == Some("groupchat") {
        let room = stanza::bare(original.attr("from").unwrap_or(""));
        return original
            .children()
            .find(|c| c.is("stanza-id", NS_SID) && c.attr("by") == Some(room))
            .and_then(|c| c.attr("id"))
            .map(str::to_owned);
    }
    original.attr("id").map(str::to_owned)
}

/// The string `inner` of the object given as `key`, if set.
fn member<'a>(o: &'a Map<String, Value>, key: &'static str, inner: &str) -> Result<Option<&'a str>, AnswerError> {
    match o.get(inner) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(_) => Err(bad(key, format!("`{inner}` must be a string"))),
    }
}

fn flag(map: &Map<String, Value>, key: &'static str) -> Result<bool, AnswerError> {
    match map.get(key) {
        None | Some(Value::Null) => Ok(false),
        Some(Value::Bool(b)) => Ok(*b),
        Some(other) => Err(bad(key, format!("must be true or false, not {other}"))),
    }
}

fn checked<'a>(key: &'static str, value: &'a str) -> Result<&'a str, AnswerError> {
    xml_chars(key, value)?;
    Ok(value)
}

fn with_attrs(name: &str, ns: &str, attrs: &[(&'static str, &str)]) -> Element {
    let mut element = Element::builder(name, ns).build();
    for (attr, value) in attrs {
        set_attr(&mut element, attr, value);
    }
    element
}
