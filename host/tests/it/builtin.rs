//! Presence and iq answered without the webhook (README: "Built-in answers"), and iq forwarded (README: "The answer",
//! "When something goes wrong").

use testkit::Element;
use testkit::client::{body, error_of};

use crate::harness::{Bridge, DOMAIN, Options, Server, WAIT, on_each_server};

fn iq_with_id(id: &'static str) -> impl Fn(&Element) -> bool {
    move |el| el.name() == "iq" && el.attr("id") == Some(id)
}

/// Alice sends the iq `xml`, whose id is `id`; returns the iq that answers it.
async fn ask_iq(b: &mut Bridge, xml: &str, id: &'static str) -> Element {
    b.alice.send(xml).await.expect("send");
    let (answer, _) = b.alice.expect(WAIT, &format!("the answer to iq {id}"), iq_with_id(id)).await.expect("answer");
    answer
}

on_each_server!(
    presence_probe_subscribe_unsubscribe_on,
    presence_probe_subscribe_unsubscribe,
    presence_probe_subscribe_unsubscribe_through_ejabberd
);

async fn presence_probe_subscribe_unsubscribe_on(server: Server) {
    let Some(mut b) = Bridge::start(Options { server, ..Options::default() }).await else {
        return;
    };
    let bot = format!("echo@{DOMAIN}");
    let bot_res = format!("{bot}/default");

    b.alice.send(&format!("<presence to='{bot}' type='subscribe'/>")).await.expect("send");
    let (available, _) = b
        .alice
        .expect(WAIT, "available presence", |el| el.name() == "presence" && el.attr("type").is_none())
        .await
        .expect("available");
    assert_eq!(available.attr("from"), Some(bot_res.as_str()));
    // The server applied the bot's `subscribed`: alice's roster shows a subscription to the bot.
    let roster = ask_iq(&mut b, "<iq type='get' id='roster1'><query xmlns='jabber:iq:roster'/></iq>", "roster1").await;
    let item = roster
        .children()
        .flat_map(Element::children)
        .find(|item| item.attr("jid") == Some(bot.as_str()))
        .unwrap_or_else(|| panic!("bot not in roster: {}", String::from(&roster)));
    assert!(matches!(item.attr("subscription"), Some("to" | "both")), "{}", String::from(&roster));
    // Prosody may probe the new contact by itself; let those answers pass before our own probe.
    b.alice.drain(crate::harness::QUIET).await.expect("drain");

    b.alice.send(&format!("<presence to='{bot}' type='probe'/>")).await.expect("send");
    let (probed, _) = b
        .alice
        .expect(WAIT, "probe answer", |el| el.name() == "presence" && el.attr("type").is_none())
        .await
        .expect("probe answer");
    assert_eq!(probed.attr("from"), Some(bot_res.as_str()));

    b.alice.send(&format!("<presence to='{bot}' type='unsubscribe'/>")).await.expect("send");
    let (gone, _) = b
        .alice
        .expect(WAIT, "unavailable", |el| el.name() == "presence" && el.attr("type") == Some("unavailable"))
        .await
        .expect("unavailable");
    assert_eq!(gone.attr("from"), Some(bot_res.as_str()));
    assert!(b.webhook.requests().is_empty(), "presence is not forwarded by default");
}

on_each_server!(
    disco_ping_version_and_unknown_iq_on,
    disco_ping_version_and_unknown_iq,
    disco_ping_version_and_unknown_iq_through_ejabberd
);

async fn disco_ping_version_and_unknown_iq_on(server: Server) {
    let Some(mut b) = Bridge::start(Options { server, ..Options::default() }).await else {
        return;
    };
    let info = ask_iq(
        &mut b,
        &format!("<iq to='{DOMAIN}' type='get' id='d1'><query xmlns='http://jabber.org/protocol/disco#info'/></iq>"),
        "d1",
    )
    .await;
    assert_eq!(info.attr("type"), Some("result"));
    let query = info.get_child("query", "http://jabber.org/protocol/disco#info").expect("query");
    let identity = query.get_child("identity", "http://jabber.org/protocol/disco#info").expect("identity");
    assert_eq!((identity.attr("category"), identity.attr("type")), (Some("client"), Some("bot")));
    let features: Vec<_> = query.children().filter_map(|c| c.attr("var")).collect();
    for f in ["http://jabber.org/protocol/disco#info", "urn:xmpp:ping", "jabber:iq:version"] {
        assert!(features.contains(&f), "missing feature {f}: {features:?}");
    }

    let items = ask_iq(
        &mut b,
        &format!(
            "<iq to='echo@{DOMAIN}' type='get' id='d2'><query xmlns='http://jabber.org/protocol/disco#items'/></iq>"
        ),
        "d2",
    )
    .await;
    assert_eq!(items.attr("type"), Some("result"));

    let pong =
        ask_iq(&mut b, &format!("<iq to='{DOMAIN}' type='get' id='p1'><ping xmlns='urn:xmpp:ping'/></iq>"), "p1").await;
    assert_eq!(pong.attr("type"), Some("result"));

    let version =
        ask_iq(&mut b, &format!("<iq to='{DOMAIN}' type='get' id='v1'><query xmlns='jabber:iq:version'/></iq>"), "v1")
            .await;
    let query = version.get_child("query", "jabber:iq:version").expect("query");
    assert_eq!(query.get_child("name", "jabber:iq:version").map(Element::text).as_deref(), Some("stanzahook"));

    let refused = ask_iq(
        &mut b,
        &format!("<iq to='{DOMAIN}' type='set' id='u1'><thing xmlns='urn:example:unknown'/></iq>"),
        "u1",
    )
    .await;
    assert_eq!(error_of(&refused), Some(("service-unavailable".into(), "cancel".into())));
    assert!(b.webhook.requests().is_empty(), "iq is not forwarded by default");
}

on_each_server!(
    forwarded_iq_gets_exactly_one_answer_with_its_id_on,
    forwarded_iq_gets_exactly_one_answer_with_its_id,
    forwarded_iq_gets_exactly_one_answer_with_its_id_through_ejabberd
);

async fn forwarded_iq_gets_exactly_one_answer_with_its_id_on(server: Server) {
    let Some(mut b) = Bridge::start(Options { server, stanzas: Some("message,iq"), ..Options::default() }).await else {
        return;
    };
    // The webhook answers with an iq stanza: it becomes the result, carrying the request's id.
    b.alice
        .send(&format!("<iq to='iq@{DOMAIN}' type='get' id='q1'><query xmlns='urn:example:ask'/></iq>"))
        .await
        .expect("send");
    let (answer, others) = b.alice.expect(WAIT, "iq answer", iq_with_id("q1")).await.expect("answer");
    assert_eq!(answer.attr("type"), Some("result"));
    assert!(answer.has_child("query", "urn:example:answer"), "{answer:?}");
    assert!(others.is_empty(), "{others:?}");
    let event = &b.webhook_saw(1).await[0].event;
    assert_eq!(
        (event["kind"].as_str(), event["id"].as_str(), event["type"].as_str()),
        (Some("iq"), Some("q1"), Some("get"))
    );

    // 204: an empty result all the same.
    let empty =
        ask_iq(&mut b, &format!("<iq to='s204@{DOMAIN}' type='set' id='q2'><x xmlns='urn:example:ask'/></iq>"), "q2")
            .await;
    assert_eq!(empty.attr("type"), Some("result"));
    assert_eq!(empty.children().count(), 0);

    // A message answer to an iq: the message, and the iq still gets its empty result.
    b.alice
        .send(&format!("<iq to='text@{DOMAIN}' type='get' id='q3'><x xmlns='urn:example:ask'/></iq>"))
        .await
        .expect("send");
    let (result, mut seen) = b.alice.expect(WAIT, "the iq's result", iq_with_id("q3")).await.expect("result");
    assert_eq!(result.attr("type"), Some("result"));
    seen.extend(b.alice.drain(crate::harness::QUIET).await.expect("drain"));
    seen.retain(|el| el.name() == "message" || iq_with_id("q3")(el));
    assert_eq!(seen.len(), 1, "one message and no second iq answer: {seen:?}");
    assert_eq!(body(&seen[0]).as_deref(), Some("text answer"));

    // An iq result is forwarded but never answered.
    let before = b.webhook.requests().len();
    b.alice.send(&format!("<iq to='echo@{DOMAIN}' type='result' id='r1'/>")).await.expect("send");
    b.webhook_saw(before + 1).await;
    b.expect_silence().await;
}

#[tokio::test]
async fn messages_not_forwarded_are_ignored() {
    let Some(mut b) = Bridge::start(Options { stanzas: Some("iq"), ..Options::default() }).await else { return };
    b.alice.send(&crate::harness::message(&format!("echo@{DOMAIN}"), "anyone?")).await.expect("send");
    b.expect_silence().await;
    // The iq kind is forwarded instead: its request reaches the webhook.
    ask_iq(&mut b, &format!("<iq to='s204@{DOMAIN}' type='get' id='f1'><x xmlns='urn:example:ask'/></iq>"), "f1").await;
    let requests = b.webhook_saw(1).await;
    assert_eq!(requests[0].event["kind"], "iq", "only the iq was forwarded");
}
