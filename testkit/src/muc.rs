//! Group chat (XEP-0045) for the tests: the stanzas a room occupant sends, written as XML without
//! a `from` (a client's server adds it; a component adds its own with
//! `component_client::with_from`), and what the tests read in the room's answers.

use xmpp_client::minidom::Element;

pub const NS_MUC: &str = "http://jabber.org/protocol/muc";
pub const NS_MUC_USER: &str = "http://jabber.org/protocol/muc#user";
pub const NS_MUC_OWNER: &str = "http://jabber.org/protocol/muc#owner";
pub const NS_MUC_ADMIN: &str = "http://jabber.org/protocol/muc#admin";
pub const NS_DATA: &str = "jabber:x:data";

/// Status codes of XEP-0045 §15.6 the tests look for.
pub mod status {
    /// Non-anonymous room: every occupant sees real JIDs.
    pub const NON_ANONYMOUS: u16 = 100;
    /// The presence is about the recipient itself.
    pub const SELF: u16 = 110;
    /// The join created the room; it waits for its owner's configuration.
    pub const CREATED: u16 = 201;
    /// Nick assigned or changed by the service.
    pub const NICK_ASSIGNED: u16 = 210;
    /// Banned.
    pub const BANNED: u16 = 301;
    /// Kicked.
    pub const KICKED: u16 = 307;
    /// Removed because the service is shutting down.
    pub const SHUTDOWN: u16 = 332;
    /// Removed because of a technical problem (Prosody: an error stanza from the occupant).
    pub const ERROR_KICK: u16 = 333;
}

/// The presence that joins the room as `occupant` (`room@service/nick`), with `password` if
/// given, asking for no history (`<history maxstanzas='0'/>`).
pub fn join(occupant: &str, password: Option<&str>) -> String {
    let password = password.map(|p| format!("<password>{}</password>", escape(p))).unwrap_or_default();
    format!(
        "<presence to='{}'><x xmlns='{NS_MUC}'>{password}<history maxstanzas='0'/></x></presence>",
        escape(occupant)
    )
}

/// The presence that leaves the room `occupant` (`room@service/nick`) is in.
pub fn leave(occupant: &str) -> String {
    format!("<presence to='{}' type='unavailable'/>", escape(occupant))
}

/// A message of type `groupchat` with `body` to the room `room` (its bare JID).
pub fn groupchat(room: &str, body: &str) -> String {
    format!("<message to='{}' type='groupchat'><body>{}</body></message>", escape(room), escape(body))
}

/// The owner's answer to status 201 that accepts the default configuration (XEP-0045 §10.1.2,
/// "instant room"): an empty submitted form, as iq `id`.
pub fn instant_room(room: &str, id: &str) -> String {
    format!(
        "<iq type='set' to='{}' id='{}'><query xmlns='{NS_MUC_OWNER}'><x xmlns='{NS_DATA}' type='submit'/></query></iq>",
        escape(room),
        escape(id)
    )
}

/// What `configure` changes in a room's configuration; the rest stays as it is.
#[derive(Debug, Clone, Default)]
pub struct RoomConfig {
    /// Password-protect the room with this secret.
    pub password: Option<String>,
    /// Only members may enter.
    pub members_only: bool,
}

/// The owner's room configuration form (XEP-0045 §10.2) with the fields of `config`, as iq `id`.
/// Servers keep the fields a submitted form leaves out.
pub fn configure(room: &str, id: &str, config: &RoomConfig) -> String {
    let field = |var: &str, value: &str| format!("<field var='{var}'><value>{}</value></field>", escape(value));
    let mut fields = field("FORM_TYPE", "http://jabber.org/protocol/muc#roomconfig");
    if let Some(password) = &config.password {
        // ejabberd wants both; Prosody protects the room whenever the secret is not empty.
        fields.push_str(&field("muc#roomconfig_passwordprotectedroom", "1"));
        fields.push_str(&field("muc#roomconfig_roomsecret", password));
    }
    fields.push_str(&field("muc#roomconfig_membersonly", if config.members_only { "1" } else { "0" }));
    format!(
        "<iq type='set' to='{}' id='{}'><query xmlns='{NS_MUC_OWNER}'><x xmlns='{NS_DATA}' type='submit'>{fields}</x></query></iq>",
        escape(room),
        escape(id)
    )
}

/// A moderator's kick of `nick` (role `none`, XEP-0045 §8.2), as iq `id`.
pub fn kick(room: &str, id: &str, nick: &str, reason: Option<&str>) -> String {
    let reason = reason.map(|r| format!("<reason>{}</reason>", escape(r))).unwrap_or_default();
    format!(
        "<iq type='set' to='{}' id='{}'><query xmlns='{NS_MUC_ADMIN}'><item nick='{}' role='none'>{reason}</item></query></iq>",
        escape(room),
        escape(id),
        escape(nick)
    )
}

/// The owner's destruction of the room (XEP-0045 §10.9), as iq `id`.
pub fn destroy(room: &str, id: &str, reason: Option<&str>) -> String {
    let reason = reason.map(|r| format!("<reason>{}</reason>", escape(r))).unwrap_or_default();
    format!(
        "<iq type='set' to='{}' id='{}'><query xmlns='{NS_MUC_OWNER}'><destroy>{reason}</destroy></query></iq>",
        escape(room),
        escape(id)
    )
}

/// The `<x xmlns='…muc#user'/>` of a stanza from a room.
pub fn user_x(el: &Element) -> Option<&Element> {
    el.get_child("x", NS_MUC_USER)
}

/// The status codes of a stanza from a room (`<status code='…'/>` in its muc#user `x`), in order.
pub fn status_codes(el: &Element) -> Vec<u16> {
    let Some(x) = user_x(el) else { return Vec::new() };
    x.children()
        .filter(|c| c.is("status", NS_MUC_USER))
        .filter_map(|c| c.attr("code").and_then(|code| code.parse().ok()))
        .collect()
}

/// The `<item/>` of a room's presence (affiliation, role, and the real JID where shown).
pub fn item(el: &Element) -> Option<&Element> {
    user_x(el)?.get_child("item", NS_MUC_USER)
}

/// The `<destroy/>` of the presence that tells an occupant the room is gone (XEP-0045 §10.9).
pub fn destroyed(el: &Element) -> Option<&Element> {
    user_x(el)?.get_child("destroy", NS_MUC_USER)
}

/// Whether `el` is a presence from `occupant` (`room@service/nick`).
pub fn is_presence_from(el: &Element, occupant: &str) -> bool {
    el.name() == "presence" && el.attr("from") == Some(occupant)
}

/// Whether `el` is the room's presence about the recipient itself (status 110) as `occupant`:
/// the one that completes a join, or, of type `unavailable`, says it is out.
pub fn is_self_presence(el: &Element, occupant: &str) -> bool {
    is_presence_from(el, occupant) && el.attr("type") != Some("error") && status_codes(el).contains(&status::SELF)
}

/// Whether `el` is a room's subject message, which every join receives after the self-presence.
pub fn is_subject(el: &Element) -> bool {
    let ns = el.ns();
    el.name() == "message" && el.has_child("subject", ns.as_str()) && !el.has_child("body", ns.as_str())
}

/// Whether `el` is a groupchat message with a body (not a subject, not a status notice).
pub fn is_groupchat_body(el: &Element) -> bool {
    el.name() == "message" && el.attr("type") == Some("groupchat") && el.has_child("body", el.ns().as_str())
}

/// Text for XML, attribute values included.
pub fn escape(text: &str) -> String {
    let mut escaped = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '<' => escaped.push_str("&lt;"),
            '>' => escaped.push_str("&gt;"),
            '&' => escaped.push_str("&amp;"),
            '\'' => escaped.push_str("&apos;"),
            '"' => escaped.push_str("&quot;"),
            c => escaped.push(c),
        }
    }
    escaped
}
