//! The XEP-0045 vocabulary stanzahook speaks as a room occupant: the join and leave presences,
//! the instant-room form, and what the room's presences about the bot's own occupant say.
//! Pure functions over minidom elements.

use tokio_xmpp::minidom::Element;

use crate::stanza::{self, Kind, NS_COMPONENT, NS_STANZAS, new_stanza, set_attr};

pub const NS_MUC: &str = "http://jabber.org/protocol/muc";
pub const NS_MUC_USER: &str = "http://jabber.org/protocol/muc#user";
pub const NS_MUC_OWNER: &str = "http://jabber.org/protocol/muc#owner";
const NS_DATA: &str = "jabber:x:data";
const NS_DELAY: &str = "urn:xmpp:delay";
const NS_REFERENCE: &str = "urn:xmpp:reference:0";

/// The presence that enters `room` as `nick` from `address`, asking for no history.
pub fn join(address: &str, room: &str, nick: &str, password: Option<&str>, id: &str) -> Element {
    let mut x = Element::builder("x", NS_MUC)
        .append(
            Element::builder("history", NS_MUC)
                .attr(tokio_xmpp::minidom::rxml::xml_ncname!("maxstanzas").to_owned(), "0"),
        )
        .build();
    if let Some(password) = password {
        x.append_child(Element::builder("password", NS_MUC).append(password).build());
    }
    let mut presence = new_stanza(Kind::Presence, address, &format!("{room}/{nick}"));
    set_attr(&mut presence, "id", id);
    presence.append_child(x);
    presence
}

/// The self-ping of XEP-0410: an XMPP ping to the bot's own occupant, which the room answers
/// with an error when the bot is no longer in it.
pub fn self_ping(address: &str, room: &str, nick: &str, id: &str) -> Element {
    let mut iq = new_stanza(Kind::Iq, address, &format!("{room}/{nick}"));
    set_attr(&mut iq, "type", "get");
    set_attr(&mut iq, "id", id);
    iq.append_child(Element::bare("ping", stanza::NS_PING));
    iq
}

/// What an answer to a self-ping says (XEP-0410 §3): only these errors mean the bot is not in
/// the room; a result, or a client that does not answer pings, means it is.
pub fn ping_says_joined(answer: &Element) -> bool {
    !is_error(answer)
        || !matches!(
            error_condition(answer).as_deref(),
            Some("not-acceptable" | "item-not-found" | "remote-server-not-found" | "remote-server-timeout" | "gone")
        )
}

/// The presence that leaves `room`.
pub fn leave(address: &str, room: &str, nick: &str) -> Element {
    let mut presence = new_stanza(Kind::Presence, address, &format!("{room}/{nick}"));
    set_attr(&mut presence, "type", "unavailable");
    presence
}

/// The owner's answer that makes a room the join just created an instant room with the default
/// configuration (XEP-0045 §10.1.2): until then Prosody keeps it locked to everyone else.
pub fn accept_default_configuration(address: &str, room: &str, id: &str) -> Element {
    let mut iq = new_stanza(Kind::Iq, address, room);
    set_attr(&mut iq, "type", "set");
    set_attr(&mut iq, "id", id);
    let form = Element::builder("x", NS_DATA)
        .attr(tokio_xmpp::minidom::rxml::xml_ncname!("type").to_owned(), "submit")
        .build();
    iq.append_child(Element::builder("query", NS_MUC_OWNER).append(form).build());
    iq
}

/// The status codes of a room presence's `muc#user` payload.
pub fn status_codes(presence: &Element) -> Vec<u16> {
    presence
        .get_child("x", NS_MUC_USER)
        .map(|x| {
            x.children()
                .filter(|c| c.is("status", NS_MUC_USER))
                .filter_map(|c| c.attr("code").and_then(|code| code.parse().ok()))
                .collect()
        })
        .unwrap_or_default()
}

/// The defined condition of a stanza error (`conflict`, `not-authorized`, …), if it has one.
pub fn error_condition(el: &Element) -> Option<String> {
    let error = el.get_child("error", NS_COMPONENT)?;
    let condition = error.children().find(|c| c.ns() == NS_STANZAS && c.name() != "text")?;
    Some(condition.name().to_owned())
}

/// What a join failure's condition means for the operator.
pub fn explain(condition: &str) -> &'static str {
    match condition {
        "not-authorized" => "the room needs a password, or the configured one is wrong",
        "registration-required" => "the room is members-only and the bot is not a member",
        "conflict" => "the nick is taken by another occupant",
        "forbidden" => "the bot is banned from the room",
        "service-unavailable" => "the room is full or the service refuses new occupants",
        "item-not-found" => "the room does not exist and the service does not let the bot create it",
        "not-allowed" => "the service does not let the bot create the room",
        "remote-server-not-found" | "remote-server-timeout" => "the room's service cannot be reached",
        _ => "see the room service's configuration",
    }
}

/// True for a groupchat message the room replays from before the bot joined (XEP-0203 delay).
pub fn is_history(message: &Element) -> bool {
    message.has_child("delay", NS_DELAY)
}

/// True for a subject change: a `<subject/>` and no body.
pub fn is_subject_change(message: &Element) -> bool {
    message.has_child("subject", NS_COMPONENT) && !message.has_child("body", NS_COMPONENT)
}

/// Whether `message` mentions `nick`: its body names it as a word (case does not matter), or a
/// XEP-0372 mention reference points at the bot's occupant (`xmpp:room/nick`).
pub fn mentions(message: &Element, room: &str, nick: &str) -> bool {
    let occupant = format!("xmpp:{room}/{nick}");
    let referenced = message
        .children()
        .filter(|c| c.is("reference", NS_REFERENCE) && c.attr("type") == Some("mention"))
        .any(|c| c.attr("uri").is_some_and(|uri| uri.eq_ignore_ascii_case(&occupant)));
    referenced || message.get_child("body", NS_COMPONENT).is_some_and(|body| names(&body.text(), nick))
}

/// `text` holds `word` with no letter or digit right before or after it.
fn names(text: &str, word: &str) -> bool {
    if word.is_empty() {
        return false;
    }
    let text = text.to_lowercase();
    let word = word.to_lowercase();
    text.match_indices(&word).any(|(at, found)| {
        let before = text[..at].chars().next_back();
        let after = text[at + found.len()..].chars().next();
        !before.is_some_and(char::is_alphanumeric) && !after.is_some_and(char::is_alphanumeric)
    })
}

/// The bare room address and the nick of an occupant address `room@service/nick`.
pub fn split_occupant(addr: &str) -> (&str, Option<&str>) {
    match addr.split_once('/') {
        Some((room, nick)) => (room, Some(nick)),
        None => (addr, None),
    }
}

const NS_CONFERENCE: &str = "jabber:x:conference";

/// An invitation to a room.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Invite {
    /// The room's bare address.
    pub room: String,
    /// Who invites.
    pub from: String,
    pub reason: Option<String>,
    pub password: Option<String>,
}

/// The invitation `message` carries, if any: direct (XEP-0249, from the inviter, naming the
/// room) or mediated (XEP-0045 §7.8.2, from the room, naming the inviter).
pub fn invite(message: &Element) -> Option<Invite> {
    if let Some(x) = message.get_child("x", NS_CONFERENCE) {
        return Some(Invite {
            room: x.attr("jid")?.to_owned(),
            from: message.attr("from").unwrap_or("").to_owned(),
            reason: x.attr("reason").map(str::to_owned),
            password: x.attr("password").map(str::to_owned),
        });
    }
    let x = message.get_child("x", NS_MUC_USER)?;
    let mediated = x.get_child("invite", NS_MUC_USER)?;
    let (room, _) = split_occupant(message.attr("from").unwrap_or(""));
    Some(Invite {
        room: room.to_owned(),
        from: mediated.attr("from").unwrap_or("").to_owned(),
        reason: mediated.get_child("reason", NS_MUC_USER).map(Element::text),
        password: x.get_child("password", NS_MUC_USER).map(Element::text),
    })
}

/// True when `el` is of type `error` (errors are never answered, and never sent to a room).
pub fn is_error(el: &Element) -> bool {
    stanza::stanza_type(el) == Some("error")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(xml: &str) -> Element {
        stanza::parse_received(xml).expect("parses")
    }

    #[test]
    fn the_join_asks_for_no_history_and_carries_the_password() {
        let join = join("bot.example", "room@muc.example", "Bot", Some("s3cret"), "j1");
        assert_eq!(
            stanza::to_xml_string(&join),
            r#"<presence from="bot.example" id="j1" to="room@muc.example/Bot"><x xmlns="http://jabber.org/protocol/muc"><history maxstanzas="0"/><password>s3cret</password></x></presence>"#
        );
    }

    #[test]
    fn status_codes_and_conditions_are_read() {
        let joined = parse(
            "<presence from='r@m/Bot'><x xmlns='http://jabber.org/protocol/muc#user'><item affiliation='owner' role='moderator'/><status code='110'/><status code='201'/></x></presence>",
        );
        assert_eq!(status_codes(&joined), [110, 201]);
        let refused = parse(
            "<presence from='r@m/Bot' type='error'><error type='auth'><not-authorized xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/><text xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'>no</text></error></presence>",
        );
        assert_eq!(error_condition(&refused).as_deref(), Some("not-authorized"));
    }

    #[test]
    fn a_mention_is_the_nick_as_a_word_or_a_reference() {
        let body = |text: &str| parse(&format!("<message type='groupchat'><body>{text}</body></message>"));
        assert!(mentions(&body("hey Bot, roll"), "r@m", "bot"));
        assert!(mentions(&body("bot: roll"), "r@m", "Bot"));
        assert!(!mentions(&body("robotics"), "r@m", "bot"));
        assert!(!mentions(&body("bots"), "r@m", "bot"));
        let referenced = parse(
            "<message type='groupchat'><body>hi</body><reference xmlns='urn:xmpp:reference:0' type='mention' uri='xmpp:r@m/Bot'/></message>",
        );
        assert!(mentions(&referenced, "r@m", "Bot"));
    }

    #[test]
    fn history_and_subject_changes_are_told_apart() {
        assert!(is_history(&parse(
            "<message type='groupchat'><body>old</body><delay xmlns='urn:xmpp:delay' stamp='2020-01-01T00:00:00Z'/></message>"
        )));
        assert!(is_subject_change(&parse("<message type='groupchat'><subject>topic</subject></message>")));
        assert!(!is_subject_change(&parse("<message type='groupchat'><subject>t</subject><body>b</body></message>")));
    }
}
