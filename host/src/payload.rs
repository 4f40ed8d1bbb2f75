//! The webhook JSON contract (README: "The request", "The answer"): a received stanza becomes the event JSON, and the
//! webhook's answer JSON becomes the reply stanzas. Pure functions, no I/O.

use serde_json::{Map, Value};
use tokio_xmpp::jid::Jid;
use tokio_xmpp::minidom::Element;

use crate::stanza::{
    self, ErrorType, Kind, NS_COMPONENT, ParseStanzaError, StanzaError, is_iq_request, new_stanza, set_attr,
};

/// The event posted for a received stanza (README: "The request"), as the JSON text the filters and the
/// webhook get. The five reference keys keep their meaning; `type` and `id` are added when the stanza has
/// them, the vocabulary's keys for what it carries, and for a room occupant's message the room's
/// (`occupancy`).
#[derive(Debug)]
pub struct Event {
    json: String,
    /// The stanza as XML when it has an `id`: what names its delivery (`webhook-id`), the same on a
    /// resend. Without an `id` there is nothing to tell a resend from a repeat.
    identified: Option<String>,
}

impl Event {
    /// The JSON text.
    pub fn as_str(&self) -> &str {
        &self.json
    }

    /// The JSON text, and the XML of a stanza that has an `id` (see `webhook::Webhook::post`).
    pub fn into_parts(self) -> (String, Option<String>) {
        (self.json, self.identified)
    }
}

/// The event for `el` (README: "The request", "Group chat"). Written as text straight from the stanza: building
/// a `serde_json::Value` first and printing it was a tenth of the CPU a stanza costs at moderate rates
/// (BENCHMARKS.md). The keys are written once each: the vocabulary never names a reference key, and an
/// occupant's `nick` is the room's, not what the message says.
pub fn event(el: &Element, occupancy: Option<&crate::rooms::Occupancy>) -> Event {
    let xml = stanza::to_xml_string(el);
    let body = if el.name() == "message" { el.get_child("body", NS_COMPONENT).map(Element::text) } else { None };
    let mut json = JsonObject::with_capacity(xml.len() + xml.len() / 8 + 128);
    json.entry("to", el.attr("to").unwrap_or(""));
    json.entry("from", el.attr("from").unwrap_or(""));
    json.entry("kind", el.name());
    json.entry("stanza", &xml);
    if let Some(body) = &body {
        json.entry("body", body);
    }
    if let Some(t) = el.attr("type") {
        json.entry("type", t);
    }
    let id = el.attr("id");
    if let Some(id) = id {
        json.entry("id", id);
    }
    if el.name() == "message"
        && let Some(invite) = invite(el)
    {
        json.entry("invite", &invite);
    }
    for (key, value) in &crate::vocabulary::event_keys(el, body.as_deref()) {
        if !(occupancy.is_some() && key == "nick") {
            json.entry(key, value);
        }
    }
    if let Some(occupancy) = occupancy {
        json.entry("room", &occupancy.room);
        json.entry("nick", &occupancy.nick);
        json.entry("mentioned", &occupancy.mentioned);
    }
    Event { json: json.finish(), identified: id.map(|_| xml) }
}

/// A JSON object written key by key.
struct JsonObject(Vec<u8>);

impl JsonObject {
    fn with_capacity(capacity: usize) -> JsonObject {
        let mut out = Vec::with_capacity(capacity);
        out.push(b'{');
        JsonObject(out)
    }

    fn entry(&mut self, key: &str, value: &(impl serde::Serialize + ?Sized)) {
        if self.0.len() > 1 {
            self.0.push(b',');
        }
        write_json(&mut self.0, key);
        self.0.push(b':');
        write_json(&mut self.0, value);
    }

    fn finish(mut self) -> String {
        self.0.push(b'}');
        String::from_utf8(self.0).expect("serde_json writes UTF-8")
    }
}

fn write_json(out: &mut Vec<u8>, value: &(impl serde::Serialize + ?Sized)) {
    // Into a Vec, serde_json fails only on a map whose keys are not strings; an event has none.
    serde_json::to_writer(out, value).expect("a string, a bool or a JSON value writes into a Vec");
}

/// An invitation as the event's `invite` object: `{room, from, reason, password}` with the keys
/// the invitation has (README: "Group chat").
fn invite(message: &Element) -> Option<Value> {
    let invite = crate::rooms::muc::invite(message)?;
    let mut map = Map::new();
    map.insert("room".into(), invite.room.into());
    map.insert("from".into(), invite.from.into());
    if let Some(reason) = invite.reason {
        map.insert("reason".into(), reason.into());
    }
    if let Some(password) = invite.password {
        map.insert("password".into(), password.into());
    }
    Some(Value::Object(map))
}

/// Why a webhook's answer could not become a reply.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum AnswerError {
    #[error("the answer is not a JSON object")]
    NotAnObject,
    #[error("`{key}` {why}")]
    BadKey { key: &'static str, why: String },
    #[error(transparent)]
    Stanza(#[from] ParseStanzaError),
    #[error("reply `from` {from:?} is not at this component's domain {domain}")]
    ForeignFrom { from: String, domain: String },
    #[error(
        "reply `to` {to:?} is at this component's own domain: the server would route it back, and the bot would answer itself forever"
    )]
    ToOwnDomain { to: String },
}

impl AnswerError {
    /// The stanza error the original sender receives instead of the reply (README: "The answer", "When something goes
    /// wrong").
    pub fn to_stanza_error(&self) -> StanzaError {
        match self {
            AnswerError::ForeignFrom { .. } => StanzaError::new(ErrorType::Cancel, "not-allowed")
                .with_text("The bot tried to answer from an address it does not own"),
            AnswerError::ToOwnDomain { .. } => StanzaError::new(ErrorType::Cancel, "undefined-condition")
                .with_text("The bot tried to send a reply to its own address, which would loop"),
            other => StanzaError::new(ErrorType::Cancel, "undefined-condition")
                .with_text(format!("The bot's answer was invalid: {other}")),
        }
    }
}

pub(crate) fn bad(key: &'static str, why: impl Into<String>) -> AnswerError {
    AnswerError::BadKey { key, why: why.into() }
}

/// Builds the reply stanzas for a 200 JSON `answer` to `original` (README: "The answer"), for the
/// component serving `domain`. An iq get/set always gets exactly one iq answer (README: "The answer").
pub fn replies(answer: &Value, original: &Element, domain: &str) -> Result<Vec<Element>, AnswerError> {
    let map = answer.as_object().ok_or(AnswerError::NotAnObject)?;
    // A room message is answered in the room: to its bare address (README: "Group chat"); the room takes
    // it only from the occupant address it was sent to, which is the default `from`.
    let original_from = original.attr("from").unwrap_or("");
    let default_to = if is_groupchat(original) { stanza::bare(original_from) } else { original_from };
    let default_from = original.attr("to").unwrap_or(domain);

    let mut reply = match map.get("stanza") {
        Some(Value::String(xml)) => {
            let mut el = stanza::parse_stanza_override(xml)?;
            if el.attr("to").is_none() {
                set_attr(&mut el, "to", default_to);
            }
            if el.attr("from").is_none() {
                set_attr(&mut el, "from", default_from);
            }
            if el.name() == "iq" && is_iq_request(original) {
                if el.attr("id").is_none()
                    && let Some(id) = original.attr("id")
                {
                    set_attr(&mut el, "id", id);
                }
                if el.attr("type").is_none() {
                    set_attr(&mut el, "type", "result");
                }
            }
            el
        }
        Some(_) => return Err(bad("stanza", "must be a string of XML")),
        None => from_keys(map, original, default_to, default_from)?,
    };
    check_addresses(&mut reply, original, domain)?;

    let mut out = vec![reply];
    if is_iq_request(original) && !out.iter().any(|r| answers_iq(r, original)) {
        out.push(empty_result(original));
    }
    Ok(out)
}

/// A reply built from `to`, `from`, `kind`, `type` and `body`.
fn from_keys(
    map: &Map<String, Value>,
    original: &Element,
    default_to: &str,
    default_from: &str,
) -> Result<Element, AnswerError> {
    let to = string_key(map, "to")?.unwrap_or(default_to);
    let from = string_key(map, "from")?.unwrap_or(default_from);
    let kind = match string_key(map, "kind")? {
        None => Kind::Message,
        Some(name) => {
            Kind::from_name(name).ok_or_else(|| bad("kind", format!("{name:?} is not message, presence or iq")))?
        }
    };
    let mut el = new_stanza(kind, from, to);
    let type_ = string_key(map, "type")?;
    if let Some(t) = type_ {
        xml_chars("type", t)?;
    }
    match (kind, type_) {
        (_, Some(t)) => set_attr(&mut el, "type", t),
        (Kind::Message, None) if is_groupchat(original) => set_attr(&mut el, "type", "groupchat"),
        (Kind::Message, None) => set_attr(&mut el, "type", "chat"),
        (Kind::Iq, None) if is_iq_request(original) => set_attr(&mut el, "type", "result"),
        (Kind::Iq, None) => {
            return Err(bad("type", "is required for an iq that answers no iq request"));
        }
        (Kind::Presence, None) => {}
    }
    if kind == Kind::Iq {
        match original.attr("id") {
            Some(id) if is_iq_request(original) => set_attr(&mut el, "id", id),
            _ => set_attr(&mut el, "id", &new_id()),
        }
    }
    let body = match map.get("body") {
        None | Some(Value::Null) => None,
        // Webhooks written for the reference send `body` with every reply, whatever its kind,
        // and the reference ignores it there (README: "The answer"): so does stanzahook.
        Some(_) if kind != Kind::Message => {
            tracing::debug!("ignoring `body` in a {kind} reply: only a message carries one");
            None
        }
        Some(Value::String(s)) => Some(s.clone()),
        Some(Value::Number(n)) => Some(n.to_string()),
        Some(Value::Bool(b)) => Some(b.to_string()),
        Some(_) => return Err(bad("body", "must be a string, number or boolean")),
    };
    // The vocabulary (attachments, reactions, replies, …) is a message's.
    let vocabulary =
        if kind == Kind::Message { crate::vocabulary::answer_elements(map, original)? } else { Default::default() };
    if kind == Kind::Message
        && let Some(id) = string_key(map, "id")?
    {
        xml_chars("id", id)?;
        set_attr(&mut el, "id", id);
    } else if vocabulary.needs_id {
        set_attr(&mut el, "id", &new_id());
    }
    if let Some(body) = body.or(vocabulary.url) {
        xml_chars("body", &body)?;
        el.append_child(Element::builder("body", NS_COMPONENT).append(body).build());
    }
    for element in vocabulary.elements {
        el.append_child(element);
    }
    if type_ == Some("error") {
        // RFC 6120 §8.3.2: an error stanza carries an <error/>; the webhook gave no detail.
        let undefined = StanzaError::new(ErrorType::Cancel, "undefined-condition");
        el.append_child(stanza::error_element(&undefined));
    }
    Ok(el)
}

/// Refuses text XML 1.0 cannot carry (control characters other than tab, newline and carriage
/// return; U+FFFE, U+FFFF): no stream may carry it, so the sender is told instead. Found by
/// fuzzing.
pub(crate) fn xml_chars(key: &'static str, text: &str) -> Result<(), AnswerError> {
    let allowed =
        |c: char| matches!(c, '\t' | '\n' | '\r' | '\u{20}'..='\u{D7FF}' | '\u{E000}'..='\u{FFFD}' | '\u{10000}'..);
    match text.chars().find(|&c| !allowed(c)) {
        Some(c) => Err(bad(key, format!("contains U+{:04X}, a character XML cannot carry", u32::from(c)))),
        None => Ok(()),
    }
}

pub(crate) fn string_key<'a>(map: &'a Map<String, Value>, key: &'static str) -> Result<Option<&'a str>, AnswerError> {
    match map.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(other) => Err(bad(key, format!("must be a string, not {other}"))),
    }
}

/// `to` must be an address outside our domain: the server routes a stanza to our domain back to
/// us, and the answer to it would be sent again, forever (README: "When something goes wrong"). `from` must be at exactly
/// our domain, since Prosody closes the whole stream for any other (README: "The answer"). Both are written
/// back normalised. An address the original stanza came with (the default `to` and `from`, what
/// most answers keep) was checked and normalised by the server already (RFC 6120 §8.1): it is
/// not parsed again, which spares the most expensive step of a plain answer (IDNA and PRECIS).
fn check_addresses(el: &mut Element, original: &Element, domain: &str) -> Result<(), AnswerError> {
    let original_from = original.attr("from").unwrap_or("");
    let given = |address: &str| {
        !address.is_empty()
            && (address == original_from
                || address == stanza::bare(original_from)
                || original.attr("to") == Some(address))
    };
    let to_text = el.attr("to").unwrap_or("").to_owned();
    let to = if given(&to_text) {
        None
    } else {
        Some(Jid::new(&to_text).map_err(|e| bad("to", format!("{to_text:?} is not an XMPP address: {e}")))?)
    };
    if stanza::is_at_domain(&to_text, domain) {
        return Err(AnswerError::ToOwnDomain { to: to_text });
    }
    let from_text = el.attr("from").unwrap_or("").to_owned();
    let from = if given(&from_text) && stanza::domain_part(&from_text) == domain {
        None
    } else {
        let from =
            Jid::new(&from_text).map_err(|e| bad("from", format!("{from_text:?} is not an XMPP address: {e}")))?;
        if from.domain().as_str() != domain {
            return Err(AnswerError::ForeignFrom { from: from_text, domain: domain.to_owned() });
        }
        Some(from)
    };
    if let Some(to) = to {
        set_attr(el, "to", to.as_str());
    }
    if let Some(from) = from {
        set_attr(el, "from", from.as_str());
    }
    Ok(())
}

fn is_groupchat(el: &Element) -> bool {
    el.name() == "message" && el.attr("type") == Some("groupchat")
}

/// True when `reply` is the iq answer (result or error, same id) to the request `original`.
fn answers_iq(reply: &Element, original: &Element) -> bool {
    reply.name() == "iq"
        && matches!(reply.attr("type"), Some("result" | "error"))
        && reply.attr("id") == original.attr("id")
}

/// The empty `result` that acknowledges an iq request.
pub fn empty_result(original: &Element) -> Element {
    let mut el = new_stanza(Kind::Iq, original.attr("to").unwrap_or(""), original.attr("from").unwrap_or(""));
    set_attr(&mut el, "type", "result");
    if let Some(id) = original.attr("id") {
        set_attr(&mut el, "id", id);
    }
    el
}

fn new_id() -> String {
    format!("sh-{:016x}", rand::random::<u64>())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn original() -> Element {
        stanza::parse_received("<message from='alice@example.org/phone' to='echo@bot.x' id='m1' type='chat'/>")
            .expect("stanza")
    }

    #[test]
    fn the_original_addresses_are_kept_as_given_and_new_ones_are_checked_and_normalised() {
        let kept = replies(&json!({"body": "hi"}), &original(), "bot.x").expect("reply");
        assert_eq!((kept[0].attr("to"), kept[0].attr("from")), (Some("alice@example.org/phone"), Some("echo@bot.x")));
        let new = replies(&json!({"body": "hi", "to": "Bob@Example.ORG", "from": "other@BOT.x"}), &original(), "bot.x")
            .expect("reply");
        assert_eq!((new[0].attr("to"), new[0].attr("from")), (Some("bob@example.org"), Some("other@bot.x")));
        assert!(matches!(
            replies(&json!({"body": "hi", "to": "bad@@x"}), &original(), "bot.x"),
            Err(AnswerError::BadKey { key: "to", .. })
        ));
    }

    #[test]
    fn an_original_address_in_the_wrong_place_is_still_refused() {
        // The original's `to` is at the domain: as a reply's `to` it would loop.
        assert!(matches!(
            replies(&json!({"body": "hi", "to": "echo@bot.x"}), &original(), "bot.x"),
            Err(AnswerError::ToOwnDomain { .. })
        ));
        // The original's `from` is not: as a reply's `from` the server would close the stream.
        assert!(matches!(
            replies(&json!({"body": "hi", "from": "alice@example.org/phone"}), &original(), "bot.x"),
            Err(AnswerError::ForeignFrom { .. })
        ));
    }
}
