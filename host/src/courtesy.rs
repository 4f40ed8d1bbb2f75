//! What stanzahook does for a sender on the bot's behalf (the `[courtesy]` section): a receipt
//! (XEP-0184) when the sender asked for one and the webhook took the message, and `composing`
//! (XEP-0085) while a chat message's webhook call takes long, ended by the reply or by `active`.
//! What a stanza built here says goes through the same gate as every reply.

use std::future::Future;

use tokio_xmpp::minidom::Element;

use crate::config::Courtesy;
use crate::stanza::{Kind, NS_COMPONENT, new_stanza, set_attr};
use crate::vocabulary::{NS_CHATSTATES, NS_RECEIPTS};

/// The receipt for `original` (a message that asks for one and has an id), or `None`. Not in a
/// room: XEP-0184 §5.3 leaves receipts out of group chat.
pub fn receipt(courtesy: &Courtesy, original: &Element) -> Option<Element> {
    if !courtesy.receipts || original.name() != "message" || original.attr("type") == Some("groupchat") {
        return None;
    }
    original.get_child("request", NS_RECEIPTS)?;
    let id = original.attr("id")?;
    let mut receipt = reply_message(original);
    set_attr(&mut receipt, "id", &format!("sh-receipt-{id}"));
    let mut received = Element::builder("received", NS_RECEIPTS).build();
    set_attr(&mut received, "id", id);
    receipt.append_child(received);
    Some(receipt)
}

/// Runs `work` (the filters and the webhook call for `original`); when it takes longer than
/// `typing_after` and `original` is a chat message, `show` is given a `composing` message for the
/// sender meanwhile. Returns what `work` returned, and whether `composing` was shown.
pub async fn typing_while<T>(
    courtesy: &Courtesy,
    original: &Element,
    work: impl Future<Output = T>,
    show: impl FnOnce(Element),
) -> (T, bool) {
    let chat = original.name() == "message" && original.attr("type") == Some("chat");
    if !courtesy.typing || !chat {
        return (work.await, false);
    }
    tokio::pin!(work);
    tokio::select! {
        done = &mut work => return (done, false),
        () = tokio::time::sleep(courtesy.typing_after) => {}
    }
    show(chat_state(original, "composing"));
    (work.await, true)
}

/// Ends a `composing` shown to `original`'s sender: the first reply to the sender with a body
/// gets `active` unless it has a chat state of its own; without one, a message of its own says
/// `active`.
pub fn end_typing(original: &Element, replies: &mut Vec<Element>) {
    let sender = original.attr("from").unwrap_or("");
    let reply = replies.iter_mut().find(|r| {
        r.name() == "message"
            && r.attr("to") == Some(sender)
            && r.attr("type") != Some("error")
            && r.get_child("body", NS_COMPONENT).is_some()
    });
    match reply {
        Some(reply) if reply.children().any(|c| c.has_ns(NS_CHATSTATES)) => {}
        Some(reply) => {
            reply.append_child(Element::builder("active", NS_CHATSTATES).build());
        }
        None => replies.push(chat_state(original, "active")),
    }
}

/// A chat message from the address written to, to the sender, with only a chat state.
fn chat_state(original: &Element, state: &str) -> Element {
    let mut message = reply_message(original);
    set_attr(&mut message, "type", "chat");
    message.append_child(Element::builder(state, NS_CHATSTATES).build());
    message
}

fn reply_message(original: &Element) -> Element {
    let from = original.attr("to").unwrap_or("");
    let to = original.attr("from").unwrap_or("");
    let mut message = new_stanza(Kind::Message, from, to);
    if let Some(t) = original.attr("type").filter(|t| *t != "error") {
        set_attr(&mut message, "type", t);
    }
    message
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chat(extra: &str) -> Element {
        format!(
            "<message xmlns='jabber:component:accept' from='a@b/c' to='echo@bot' id='m1' type='chat'><body>hi</body>{extra}</message>"
        )
        .parse()
        .expect("xml")
    }

    #[test]
    fn a_receipt_only_when_asked_for() {
        let courtesy = Courtesy::default();
        assert!(receipt(&courtesy, &chat("")).is_none());
        let asked = chat("<request xmlns='urn:xmpp:receipts'/>");
        let got = receipt(&courtesy, &asked).expect("a receipt");
        assert_eq!((got.attr("to"), got.attr("from")), (Some("a@b/c"), Some("echo@bot")));
        assert_eq!(got.get_child("received", NS_RECEIPTS).and_then(|r| r.attr("id")), Some("m1"));
        assert!(receipt(&Courtesy { receipts: false, ..courtesy }, &asked).is_none(), "switched off");
    }

    #[test]
    fn typing_ends_in_the_reply_or_in_a_message_of_its_own() {
        let original = chat("");
        let mut reply = reply_message(&original);
        reply.append_child(Element::builder("body", NS_COMPONENT).append("hello").build());
        let mut replies =
            vec![receipt(&Courtesy::default(), &chat("<request xmlns='urn:xmpp:receipts'/>")).expect("receipt"), reply];
        end_typing(&original, &mut replies);
        assert_eq!(replies.len(), 2);
        assert!(replies[0].get_child("active", NS_CHATSTATES).is_none(), "not in the receipt");
        assert!(replies[1].get_child("active", NS_CHATSTATES).is_some(), "in the reply with a body");
        let mut none = Vec::new();
        end_typing(&original, &mut none);
        assert_eq!(none.len(), 1);
        assert!(none[0].get_child("active", NS_CHATSTATES).is_some());
    }

    #[tokio::test(start_paused = true)]
    async fn composing_only_for_a_slow_call() {
        let courtesy = Courtesy::default();
        let mut shown = Vec::new();
        let (_, was) = typing_while(&courtesy, &chat(""), async {}, |m| shown.push(m)).await;
        assert!(!was && shown.is_empty(), "a quick call shows nothing");
        let slow = tokio::time::sleep(std::time::Duration::from_secs(2));
        let (_, was) = typing_while(&courtesy, &chat(""), slow, |m| shown.push(m)).await;
        assert!(was);
        assert!(shown[0].get_child("composing", NS_CHATSTATES).is_some());
    }
}
