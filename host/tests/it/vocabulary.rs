//! The vocabulary (README: "The JSON contract") through real servers: a real client sends each
//! payload of `golden/vocabulary.txt` through Prosody and ejabberd, and the event the webhook
//! receives carries the keys the golden case expects; each answer of
//! `golden/vocabulary_answers.txt` reaches the client with the elements the golden case expects.

use serde_json::Value;
use testkit::Element;

use crate::golden::{Case, golden_path, parse};
use crate::harness::{Bridge, DOMAIN, Options, Server, WAIT, on_each_server};

/// The cases a client can send as itself in a one-to-one chat (not a room's, not a presence).
fn chat_cases(file: &str) -> Vec<Case> {
    let (_, cases) = parse(&std::fs::read_to_string(golden_path(file)).expect("golden file"));
    cases.into_iter().filter(|c| c.inputs[0].starts_with("<message from='alice@example.org/phone'")).collect()
}

/// What is inside the golden stanza's `<message …>…</message>`.
fn inner(stanza: &str) -> &str {
    let start = stanza.find('>').map_or(0, |i| i + 1);
    let end = stanza.rfind("</message>").unwrap_or(stanza.len());
    &stanza[start..end]
}

/// The keys that depend on who sent it where; the rest is the payload's.
fn payload_keys(event: &Value) -> Value {
    let mut event = event.clone();
    if let Value::Object(map) = &mut event {
        for key in ["to", "from", "stanza", "id", "type", "kind"] {
            map.remove(key);
        }
    }
    event
}

async fn events_on(server: Server) {
    let Some(mut b) = Bridge::start(Options { server, ..Options::default() }).await else { return };
    let cases = chat_cases("vocabulary.txt");
    assert!(cases.len() >= 14, "{} cases", cases.len());
    let mut differences = Vec::new();
    for (n, case) in cases.iter().enumerate() {
        let stanza = format!("<message to='echo@{DOMAIN}' type='chat' id='v{n}'>{}</message>", inner(&case.inputs[0]));
        b.alice.send(&stanza).await.expect("send");
        let requests = b.webhook.wait_for(n + 1, WAIT).await.unwrap_or_else(|e| panic!("{}: {e}", case.name));
        let got = payload_keys(&requests[n].event);
        let expected: Value = serde_json::from_str(&case.expected).expect("golden JSON");
        if got != payload_keys(&expected) {
            differences.push(format!("{}:\n  expected {}\n  got      {}", case.name, payload_keys(&expected), got));
        }
    }
    assert!(differences.is_empty(), "through {}:\n{}", b.server.name(), differences.join("\n"));
}

on_each_server!(
    events_on,
    each_payload_reaches_the_webhook_as_its_keys_prosody,
    each_payload_reaches_the_webhook_as_its_keys_ejabberd
);

/// Every element of the expected reply (name, namespace, the attributes it has, text) is in the
/// received one; ids the host makes up are not compared.
fn missing_elements(expected: &str, got: &Element, sender: &str) -> Vec<String> {
    // The golden case's sender is this test's alice.
    let expected = expected.replace("alice@example.org/phone", sender);
    let expected =
        expected.replace("sh-<random>", "sh-random").replacen("<message ", "<message xmlns='jabber:client' ", 1);
    let expected: Element = expected.parse().expect("golden XML");
    let mut missing = Vec::new();
    for want in expected.children() {
        let found = got.children().any(|have| {
            have.name() == want.name()
                && have.ns() == want.ns()
                && have.text() == want.text()
                && want.attrs().iter().all(|((_, k), v)| have.attr(k.as_str()) == Some(v.as_str()))
                && want.children().count() == have.children().count()
        });
        if !found {
            missing.push(String::from(want));
        }
    }
    missing
}

async fn answers_on(server: Server) {
    let Some(mut b) = Bridge::start(Options { server, ..Options::default() }).await else { return };
    // An answer may be a chat state alone.
    b.alice.sees_typing = true;
    let cases = chat_cases("vocabulary_answers.txt");
    assert!(cases.len() >= 14, "{} cases", cases.len());
    let mut differences = Vec::new();
    for case in &cases {
        // As in the golden case: the message answered has the id m-7.
        let stanza = format!(
            "<message to='json@{DOMAIN}' type='chat' id='m-7'><body>{}</body></message>",
            testkit::muc::escape(&case.inputs[1])
        );
        b.alice.send(&stanza).await.expect("send");
        let (reply, _) = b.alice.expect(WAIT, &case.name, |el| el.name() == "message").await.expect("a reply");
        if case.expected.starts_with("error:") {
            if reply.attr("type") != Some("error") {
                differences.push(format!("{}: expected a stanza error, got {}", case.name, String::from(&reply)));
            }
            continue;
        }
        let missing = missing_elements(&case.expected, &reply, &b.alice.jid);
        if !missing.is_empty() {
            differences.push(format!("{}: missing {missing:?} in {}", case.name, String::from(&reply)));
        }
    }
    assert!(differences.is_empty(), "through {}:\n{}", b.server.name(), differences.join("\n"));
}

on_each_server!(answers_on, each_answer_key_reaches_the_client_prosody, each_answer_key_reaches_the_client_ejabberd);

const NS_CHATSTATES: &str = "http://jabber.org/protocol/chatstates";
const NS_RECEIPTS: &str = "urn:xmpp:receipts";

/// A webhook that answers after 3 s: the sender sees `composing` after `typing_after`, then the
/// receipt it asked for and the reply, which ends the typing with `active`.
async fn courtesy_on(server: Server) {
    let Some(mut b) = Bridge::start(Options { server, ..Options::default() }).await else { return };
    b.alice.sees_typing = true;
    let ask = |to: &str, id: &str| {
        format!(
            "<message to='{to}@{DOMAIN}' type='chat' id='{id}'><body>take your time</body><request xmlns='{NS_RECEIPTS}'/></message>"
        )
    };
    b.alice.send(&ask("slow", "c-1")).await.expect("send");
    let started = std::time::Instant::now();
    let (composing, _) = b
        .alice
        .expect(WAIT, "composing", |el| el.get_child("composing", NS_CHATSTATES).is_some())
        .await
        .expect("composing while the webhook works");
    let shown_after = started.elapsed();
    assert!(shown_after < std::time::Duration::from_millis(2_500), "composing after {shown_after:?}");
    assert!(testkit::client::body(&composing).is_none(), "{}", String::from(&composing));
    let (receipt, _) = b
        .alice
        .expect(WAIT, "the receipt", |el| el.get_child("received", NS_RECEIPTS).is_some())
        .await
        .expect("a receipt");
    assert_eq!(receipt.get_child("received", NS_RECEIPTS).and_then(|r| r.attr("id")), Some("c-1"));
    let (reply, _) =
        b.alice.expect(WAIT, "the reply", |el| testkit::client::body(el).is_some()).await.expect("the reply");
    assert!(started.elapsed() >= std::time::Duration::from_secs(3), "the webhook's own time");
    assert!(reply.get_child("active", NS_CHATSTATES).is_some(), "the reply ends the typing: {}", String::from(&reply));

    // A quick answer shows no typing; a message that asks no receipt gets none.
    b.alice.send(&crate::harness::message(&format!("echo@{DOMAIN}"), "quick")).await.expect("send");
    let (reply, others) =
        b.alice.expect(WAIT, "the echo", |el| testkit::client::body(el).is_some()).await.expect("echo");
    assert!(reply.get_child("active", NS_CHATSTATES).is_none(), "{}", String::from(&reply));
    assert!(others.is_empty(), "nothing but the echo: {others:?}");
    b.expect_silence().await;
}

on_each_server!(
    courtesy_on,
    a_slow_webhook_shows_composing_and_a_receipt_prosody,
    a_slow_webhook_shows_composing_and_a_receipt_ejabberd
);

/// `[courtesy]` switched off: neither typing nor receipts.
#[tokio::test]
async fn courtesy_can_be_switched_off() {
    let toml = "[courtesy]\nreceipts = false\ntyping = false\n";
    let Some(mut b) = Bridge::start(Options { toml, ..Options::default() }).await else { return };
    b.alice.sees_typing = true;
    b.alice
        .send(&format!(
            "<message to='slow@{DOMAIN}' type='chat' id='c-2'><body>no fuss</body><request xmlns='{NS_RECEIPTS}'/></message>"
        ))
        .await
        .expect("send");
    let (reply, others) =
        b.alice.expect(WAIT, "the reply", |el| testkit::client::body(el).is_some()).await.expect("reply");
    assert!(others.is_empty(), "no composing, no receipt: {others:?}");
    assert!(reply.get_child("active", NS_CHATSTATES).is_none());
    b.expect_silence().await;
}
