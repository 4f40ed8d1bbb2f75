//! Messages through the whole bridge: client → Prosody → stanzahook → webhook → reply → client.

use testkit::client::body;

use crate::harness::{Bridge, DOMAIN, Options, Server, WAIT, message, on_each_server};

on_each_server!(
    message_round_trips,
    message_to_domain_bare_and_full_jid_round_trips,
    message_to_domain_bare_and_full_jid_round_trips_through_ejabberd
);

async fn message_round_trips(server: Server) {
    let Some(mut b) = Bridge::start(Options { server, ..Options::default() }).await else {
        return;
    };
    let targets = [DOMAIN.to_owned(), format!("echo@{DOMAIN}"), format!("echo@{DOMAIN}/x")];
    for (i, to) in targets.iter().enumerate() {
        let text = format!("hello {i} <&> 😀");
        b.alice.send(&message(to, &text)).await.expect("send");
        let (reply, others) = b.alice.expect(WAIT, "echo reply", |el| el.name() == "message").await.expect("reply");
        assert!(others.is_empty(), "unexpected: {others:?}");
        assert_eq!(body(&reply).as_deref(), Some(text.as_str()));
        assert_eq!(reply.attr("from"), Some(to.as_str()), "reply comes from the address written to");
        assert_eq!(reply.attr("to"), Some(b.alice.jid.as_str()));
        assert_eq!(reply.attr("type"), Some("chat"));
        let requests = b.webhook_saw(i + 1).await;
        let event = &requests[i].event;
        assert_eq!(event["to"], to.as_str());
        assert_eq!(event["from"], b.alice.jid.as_str());
        assert_eq!(event["kind"], "message");
        assert_eq!(event["body"], text.as_str());
        assert_eq!(event["type"], "chat");
        let stanza = event["stanza"].as_str().expect("stanza is a string");
        assert!(stanza.starts_with("<message "), "{stanza}");
        assert!(!stanza.contains("jabber:component:accept"), "stream namespace leaked: {stanza}");
        assert!(stanza.contains("<body>hello"), "{stanza}");
    }
}

#[tokio::test]
async fn request_headers_name_json_and_stanzahook() {
    let Some(mut b) = Bridge::start(Options::default()).await else {
        return;
    };
    b.alice.send(&message(&format!("echo@{DOMAIN}"), "hi")).await.expect("send");
    b.alice.expect(WAIT, "reply", |el| el.name() == "message").await.expect("reply");
    let request = &b.webhook_saw(1).await[0];
    assert_eq!(request.headers["content-type"], "application/json");
    let agent = request.headers["user-agent"].to_str().expect("ascii");
    assert_eq!(agent, format!("stanzahook/{}", env!("CARGO_PKG_VERSION")));
}

#[tokio::test]
async fn large_body_and_unknown_children_survive_the_round_trip() {
    let Some(mut b) = Bridge::start(Options::default()).await else {
        return;
    };
    let text = "x".repeat(100 * 1024);
    b.alice.send(&message(&format!("echo@{DOMAIN}"), &text)).await.expect("send");
    let (reply, _) = b.alice.expect(WAIT, "echo reply", |el| el.name() == "message").await.expect("reply");
    assert_eq!(body(&reply).map(|b| b.len()), Some(text.len()));

    b.alice
        .send(&format!(
            "<message to='echo@{DOMAIN}' type='chat' id='u1'><body>with extras</body><thing xmlns='urn:example:unknown' a='1'><deep>text</deep></thing></message>"
        ))
        .await
        .expect("send");
    b.alice.expect(WAIT, "echo reply", |el| el.name() == "message").await.expect("reply");
    let stanza = b.webhook_saw(2).await[1].event["stanza"].as_str().expect("string").to_owned();
    assert!(
        stanza.contains(r#"<thing a="1" xmlns="urn:example:unknown"><deep>text</deep></thing>"#)
            || stanza.contains(r#"<thing xmlns="urn:example:unknown" a="1"><deep>text</deep></thing>"#),
        "unknown child not kept as received: {stanza}"
    );
}

#[tokio::test]
async fn error_messages_are_forwarded_but_never_answered() {
    let Some(mut b) = Bridge::start(Options::default()).await else {
        return;
    };
    b.alice
        .send(&format!(
            "<message to='echo@{DOMAIN}' type='error' id='e1'><body>bounced</body><error type='cancel'><item-not-found xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/></error></message>"
        ))
        .await
        .expect("send");
    let requests = b.webhook_saw(1).await;
    assert_eq!(requests[0].event["type"], "error");
    b.expect_silence().await;
}
