//! The vocabulary bots use, as JSON both ways (README: "The JSON contract"): chat states,
//! receipts, markers, attachments, replies, reactions, corrections, delay, stanza ids, occupant
//! ids, thread, subject and nick. `event` reads them out of a received stanza into its event's
//! keys; `answer` writes an answer's keys back as the elements of its reply. Names and shapes are
//! those of Prosody's mod_rest JSON mapping where it has one, so a webhook written for mod_rest
//! reads them unchanged; the published schemas (`schema/`) describe both directions.

mod answer;
mod event;

pub use answer::{AnswerElements, answer_elements};
pub use event::event_keys;

pub(crate) const NS_CHATSTATES: &str = "http://jabber.org/protocol/chatstates";
pub(crate) const NS_RECEIPTS: &str = "urn:xmpp:receipts";
pub(crate) const NS_MARKERS: &str = "urn:xmpp:chat-markers:0";
pub(crate) const NS_OOB: &str = "jabber:x:oob";
pub(crate) const NS_REPLY: &str = "urn:xmpp:reply:0";
pub(crate) const NS_FALLBACK: &str = "urn:xmpp:fallback:0";
pub(crate) const NS_REACTIONS: &str = "urn:xmpp:reactions:0";
pub(crate) const NS_CORRECTION: &str = "urn:xmpp:message-correct:0";
pub(crate) const NS_DELAY: &str = "urn:xmpp:delay";
pub(crate) const NS_SID: &str = "urn:xmpp:sid:0";
pub(crate) const NS_OCCUPANT_ID: &str = "urn:xmpp:occupant-id:0";
pub(crate) const NS_NICK: &str = "http://jabber.org/protocol/nick";

/// The chat states of XEP-0085, each an element of that name.
pub(crate) const CHAT_STATES: [&str; 5] = ["active", "composing", "paused", "inactive", "gone"];

/// The chat markers of XEP-0333 that name a message, each an element of that name with its `id`.
pub(crate) const MARKERS: [&str; 3] = ["received", "displayed", "acknowledged"];
